//! A whole bot: TCP connect time to each entity's `address` ("host:port").
use grafolean_collector::{Bot, BoxError, Collector, JobConfigs, JobSpec, Problems, Tick, Value};

pub struct TcpConnect;

impl Collector for TcpConnect {
    type Params = (u64, String); // the entity id, and "host:port"

    fn jobs(&self, configs: &JobConfigs, problems: &mut Problems) -> Vec<JobSpec<Self::Params>> {
        let job = |e: &grafolean_collector::EntityConfig| {
            let (id, address) = (e.entity_id, e.details["address"].as_str());
            let Some((address, intervals)) = address.zip(e.intervals()) else {
                problems.entity(e, "needs details.address (\"host:port\") and an interval");
                return None;
            };
            let spec = JobSpec::for_entity(e, id.to_string(), intervals, (id, address.into()));
            Some(spec.with_label("target", address))
        };
        configs.entities.iter().filter_map(job).collect()
    }

    async fn run(&self, _: Tick, (id, address): &Self::Params) -> Result<Vec<Value>, BoxError> {
        let started = std::time::Instant::now();
        tokio::net::TcpStream::connect(address).await?;
        let path = format!("entity.{id}.tcp.connect_seconds");
        Ok(vec![Value::new(path, started.elapsed().as_secs_f64())])
    }
}

#[tokio::main]
pub async fn main() -> std::process::ExitCode {
    Bot::new("tcp-connect", TcpConnect)
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_about("TCP connect time to each entity's address")
        .with_protocol("tcp")
        .with_default_listen(([127, 0, 0, 1], 9099).into()) // each bot has its own port
        .main()
        .await
}
