//! A whole bot: TCP connect time to each entity's `address` ("host:port").
use grafolean_collector::{Bot, BoxError, Collector, JobConfigs, JobSpec, Tick, Value};

pub struct TcpConnect;

impl Collector for TcpConnect {
    type Params = (u64, String); // the entity id, and "host:port"

    fn jobs(&self, configs: &JobConfigs) -> Vec<JobSpec<Self::Params>> {
        let job = |e: &grafolean_collector::EntityConfig| {
            let address = e.details.get("address")?.as_str()?.to_string();
            let params = (e.entity_id, address.clone());
            let spec = JobSpec::for_entity(e, e.entity_id.to_string(), e.intervals()?, params);
            Some(spec.with_label("target", address))
        };
        configs.entities.iter().filter_map(job).collect()
    }

    async fn run(&self, _: Tick, (id, address): &Self::Params) -> Result<Vec<Value>, BoxError> {
        let started = std::time::Instant::now();
        tokio::net::TcpStream::connect(address).await?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(vec![Value::new(
            format!("entity.{id}.tcp.connect_seconds"),
            seconds,
        )])
    }
}

#[tokio::main]
pub async fn main() -> std::process::ExitCode {
    Bot::new("tcp-connect", TcpConnect)
        .with_about("TCP connect time to each entity's address")
        .with_protocol("tcp")
        .with_default_listen(([127, 0, 0, 1], 9099).into())
        .main()
        .await
}
