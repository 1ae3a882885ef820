//! [`PingCollector`]: the ping bot's [`Collector`], with the Python ping bot's
//! behaviour.
//!
//! Every entity becomes one job `entity.<id>` that fires at its sensors'
//! intervals. A run that is due for at least one of the entity's sensors
//! sends `n_packets` echo requests, one after another, and returns:
//!
//! | path | value |
//! |---|---|
//! | `entity.<id>.ping.p<i>.ok` | 1.0 if packet `i` was answered, else 0.0 |
//! | `entity.<id>.ping.p<i>.rtt` | its round-trip time in seconds; only for answered packets |
//! | `entity.<id>.ping.success` | the fraction of packets answered |
//!
//! These are the paths of the entity's address, exactly as the Python bot
//! writes them for `details.ipv4`. The Python bot ignores `details.ipv6`; this
//! one pings it too. An entity with only an IPv6 address gets the same plain
//! paths for it. An entity with both gets the IPv4 results on the plain paths
//! and the IPv6 results, pinged at the same time, under
//! `entity.<id>.ping.ipv6.…` (`…ping.ipv6.p<i>.ok`, `…ping.ipv6.p<i>.rtt`,
//! `…ping.ipv6.success`), so dashboards built for the Python bot keep working.
//!
//! With the credential field `stats` switched on (it is off by default, so
//! the paths stay the Python bot's), each address also gets `….rtt_min`,
//! `….rtt_avg`, `….rtt_max`, `….jitter` and `….loss` (see [`stats_for`]).
//! Every answered packet's RTT also goes into a histogram per target on
//! `/metrics` (see [`crate::metrics`]).
//!
//! Either field may hold a host name instead of an address, as the Python
//! bot allows: `details.ipv4` is pinged at the name's A record and
//! `details.ipv6` at its AAAA record, through the [`Resolver`]'s cache. The
//! paths depend on which fields are set, not on what resolved. While a name
//! is unresolved its address gets no values, and the run is counted on
//! `/metrics` (see [`crate::metrics`]). A literal address is never looked up.

use std::net::IpAddr;
use std::time::Duration;

use grafolean_collector::{
    BoxError, Collector, EntityConfig, JobConfigs, JobSpec, Problems, Tick, Value,
};

use crate::icmp::{Family, PingError, Pinger};
use crate::metrics::{PingMetrics, TargetSeries};
use crate::resolve::Resolver;
use crate::settings::{self, Host, PingSettings, SettingsError};

/// What one entity's job needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingParams {
    /// The entity's id; the paths start with `entity.<id>.ping`.
    pub entity_id: u64,
    /// `details.ipv4`: an IPv4 address or a host name.
    pub ipv4: Option<Host>,
    /// `details.ipv6`: an IPv6 address or a host name.
    pub ipv6: Option<Host>,
    /// The credential's settings.
    pub settings: PingSettings,
    /// The interval of every sensor, in seconds. A run does nothing unless
    /// one of them is among the tick's affecting intervals.
    pub sensor_intervals: Vec<u32>,
    /// The `/metrics` series of `ipv4` and `ipv6` when they are literal
    /// addresses, made once when the job is built (names are looked up per
    /// run, since their address can change). Ignored by `==`.
    pub series: [TargetSeries; 2],
}

impl PingParams {
    /// Reads an entity's config.
    ///
    /// ```
    /// use grafolean_collector::{EntityConfig, SensorConfig};
    /// use grafolean_ping_bot::PingParams;
    /// let entity = EntityConfig {
    ///     account_id: 1, entity_id: 2, name: "localhost".into(), entity_type: "device".into(),
    ///     details: serde_json::json!({"ipv4": "127.0.0.1"}),
    ///     credential_id: Some(3),
    ///     credential_details: serde_json::json!({"n_packets": "2"}).into(),
    ///     sensors: vec![SensorConfig { sensor_id: 4, interval: Some(10), details: serde_json::json!({}).into(), origin: None }],
    ///     origin: None,
    /// };
    /// let params = PingParams::from_entity(&entity).unwrap();
    /// assert_eq!(params.settings.n_packets, 2);
    /// assert_eq!(params.sensor_intervals, vec![10]);
    /// ```
    pub fn from_entity(entity: &EntityConfig) -> Result<Self, SettingsError> {
        let (ipv4, ipv6) = settings::addresses(&entity.details)?;
        let settings = PingSettings::from_credential(&entity.credential_details)?;
        let mut sensor_intervals: Vec<u32> =
            entity.sensors.iter().filter_map(|s| s.interval).collect();
        sensor_intervals.sort_unstable();
        sensor_intervals.dedup();
        Ok(Self {
            entity_id: entity.entity_id,
            ipv4,
            ipv6,
            settings,
            sensor_intervals,
            series: Default::default(),
        })
    }

    /// The addresses, comma-separated, for labels and logs.
    pub fn target(&self) -> String {
        let v4 = self.ipv4.as_ref().map(|a| a.to_string());
        let v6 = self.ipv6.as_ref().map(|a| a.to_string());
        v4.into_iter().chain(v6).collect::<Vec<_>>().join(",")
    }
}

/// The ping bot's collector. It shares one [`Pinger`] and one [`Resolver`]
/// between all jobs.
#[derive(Clone, Debug)]
pub struct PingCollector {
    pinger: Pinger,
    resolver: Resolver,
    metrics: PingMetrics,
}

impl PingCollector {
    /// A collector that pings through `pinger`, with the default [`Resolver`].
    pub fn new(pinger: Pinger) -> Self {
        Self {
            pinger,
            resolver: Resolver::default(),
            metrics: PingMetrics::default(),
        }
    }

    /// Uses `resolver` for host names.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// The collector's own metrics; [`crate::bot()`] registers them.
    pub fn metrics(&self) -> &PingMetrics {
        &self.metrics
    }

    /// The address to ping for one `details` field: `None` when the field is
    /// not set, `Some(None)` when its host name is unresolved.
    async fn address(
        &self,
        entity_id: u64,
        host: Option<&Host>,
        family: Family,
    ) -> Option<Option<IpAddr>> {
        match host? {
            Host::Ip(ip) => Some(Some(*ip)),
            Host::Name(name) => {
                let addr = self.resolver.resolve(name, family).await.addr();
                let field = match family {
                    Family::V4 => "ipv4",
                    Family::V6 => "ipv6",
                };
                self.metrics
                    .unresolved(entity_id, field, name, addr.is_none());
                Some(addr)
            }
        }
    }
}

impl Collector for PingCollector {
    type Params = PingParams;

    fn jobs(&self, configs: &JobConfigs, problems: &mut Problems) -> Vec<JobSpec<PingParams>> {
        let jobs: Vec<JobSpec<PingParams>> = configs
            .entities
            .iter()
            .filter_map(|e| {
                let (job, problem) = job_for(e, &self.pinger, &self.metrics);
                if let Some(problem) = problem {
                    problems.entity(e, problem);
                }
                job
            })
            .collect();
        let live: std::collections::HashSet<u64> =
            jobs.iter().map(|j| j.params.entity_id).collect();
        self.metrics
            .retain_entities(|entity| live.contains(&entity));
        jobs
    }

    async fn run(&self, tick: Tick, params: &PingParams) -> Result<Vec<Value>, BoxError> {
        // As the Python bot: only sensors due at this tick count, and with none
        // there is nothing to do.
        if !params
            .sensor_intervals
            .iter()
            .any(|&s| tick.affecting.contains(s))
        {
            return Ok(Vec::new());
        }
        let prefix = format!("entity.{}.ping", params.entity_id);
        let s = params.settings;
        let (v4, v6) = tokio::join!(
            self.address(params.entity_id, params.ipv4.as_ref(), Family::V4),
            self.address(params.entity_id, params.ipv6.as_ref(), Family::V6)
        );
        let probe = |addr: Option<Option<IpAddr>>| async move {
            let addr = addr.flatten()?;
            let results = self
                .pinger
                .probe(
                    addr,
                    s.n_packets,
                    s.timeout,
                    s.sleep_packets,
                    s.retry,
                    &s.packet,
                )
                .await;
            Some((addr, results))
        };
        let (v4, v6) = tokio::join!(probe(v4), probe(v6));
        let mut values = Vec::new();
        let mut unavailable = None;
        // IPv6 gets the plain paths when it is the only address, and its own
        // `….ping.ipv6.…` paths beside an IPv4 address.
        let v6_prefix = match &params.ipv4 {
            Some(_) => format!("{prefix}.ipv6"),
            None => prefix.clone(),
        };
        let targets = [(v4, prefix, &params.ipv4), (v6, v6_prefix, &params.ipv6)];
        for ((probed, prefix, host), series) in targets.into_iter().zip(&params.series) {
            let (Some((addr, results)), Some(host)) = (probed, host) else {
                continue;
            };
            match results.first() {
                Some(Err(
                    e @ (PingError::FamilyUnavailable { .. } | PingError::Unsupported { .. }),
                )) => {
                    tracing::warn!(entity_id = params.entity_id, error = %e, "cannot ping this address");
                    unavailable = Some(e.to_string());
                }
                _ => {
                    // A literal address's series were made with the job; a
                    // name's address may change, so its are looked up.
                    if series.is_some() {
                        series.record(&results);
                    } else {
                        self.metrics.observe(params.entity_id, host, addr, &results);
                    }
                    values.extend(values_for(&prefix, &results));
                    if s.stats {
                        values.extend(stats_for(&prefix, &results));
                    }
                }
            }
        }
        match unavailable {
            Some(e) if values.is_empty() => Err(e.into()),
            _ => Ok(values),
        }
    }
}

/// Builds one entity's job, and says what is wrong with its config: why it
/// is skipped, or what makes its runs fail.
fn job_for(
    entity: &EntityConfig,
    pinger: &Pinger,
    metrics: &PingMetrics,
) -> (Option<JobSpec<PingParams>>, Option<String>) {
    let params = PingParams::from_entity(entity).and_then(|p| check_packet_options(p, pinger));
    let mut params = match params {
        Ok(params) => params,
        Err(error) => {
            let problem = format!(
                "not pinging this entity: {error}; fix it in {}",
                entity.fix_in()
            );
            return (None, Some(problem));
        }
    };
    let Some(intervals) = entity.intervals() else {
        let problem = format!(
            "not pinging this entity: no sensor has an interval of at least 1 s (0 and none are \
             not intervals); fix it in {}",
            entity.fix_in()
        );
        return (None, Some(problem));
    };
    for (series, host) in params.series.iter_mut().zip([&params.ipv4, &params.ipv6]) {
        if let Some(host @ Host::Ip(ip)) = host {
            *series = metrics.target(entity.entity_id, host, *ip);
        }
    }
    let worst = params.settings.worst_case();
    let smallest = Duration::from_secs(u64::from(intervals.smallest()));
    let problem = (worst > smallest).then(|| {
        format!(
            "a run to a silent target can take {:.1} s, longer than this entity's shortest \
             interval ({} s), and is then cut off with no values: lower n_packets, timeout or \
             sleep_packets in {}",
            worst.as_secs_f64(),
            smallest.as_secs(),
            entity.fix_in()
        )
    });
    let target = params.target();
    let job = JobSpec::for_entity(
        entity,
        format!("entity.{}", entity.entity_id),
        intervals,
        params,
    )
    .with_label("name", entity.name.clone())
    .with_label("target", target);
    (Some(job), problem)
}

/// Refuses packet options this host cannot honour: a source address that is
/// not one of its own or has no target of its family, the DF bit without a
/// raw IPv4 socket.
fn check_packet_options(params: PingParams, pinger: &Pinger) -> Result<PingParams, SettingsError> {
    let packet = &params.settings.packet;
    if let Some(source) = packet.source {
        let target = match source {
            IpAddr::V4(_) => &params.ipv4,
            IpAddr::V6(_) => &params.ipv6,
        };
        let problem = if target.is_none() {
            Some("an address of the family of one of the entity's addresses")
        } else if std::net::UdpSocket::bind((source, 0)).is_err() {
            Some("an address of this host")
        } else {
            None
        };
        if let Some(expected) = problem {
            return Err(SettingsError::Invalid {
                field: "credential.source",
                value: format!("\"{source}\""),
                expected,
            });
        }
    }
    if packet.dont_fragment
        && params.ipv4.is_some()
        && pinger.socket_kind(Family::V4) != Some(crate::icmp::SocketKind::Raw)
    {
        return Err(SettingsError::Invalid {
            field: "credential.dont_fragment",
            value: "true".into(),
            expected: "false: the DF bit needs a raw socket (root or CAP_NET_RAW)",
        });
    }
    Ok(params)
}

/// The extra values of the credential field `stats`, under `prefix`:
///
/// | path | value |
/// |---|---|
/// | `<prefix>.rtt_min`, `.rtt_avg`, `.rtt_max` | of the answered packets, in seconds; none when none was answered |
/// | `<prefix>.jitter` | the mean absolute difference of consecutive answered packets' RTTs, in seconds; needs two answers |
/// | `<prefix>.loss` | the fraction of packets unanswered |
///
/// ```
/// use grafolean_ping_bot::collector::stats_for;
/// use std::time::Duration;
/// let ms = |n| Ok(Some(Duration::from_millis(n)));
/// let values = stats_for("entity.7.ping", &[ms(10), Ok(None), ms(14), ms(12)]);
/// let got: Vec<_> = values.iter().map(|v| (v.path.as_str(), (v.value * 1e6).round() / 1e6)).collect();
/// assert_eq!(got, [
///     ("entity.7.ping.rtt_min", 0.010), ("entity.7.ping.rtt_avg", 0.012),
///     ("entity.7.ping.rtt_max", 0.014), ("entity.7.ping.jitter", 0.003),
///     ("entity.7.ping.loss", 0.25),
/// ]);
/// ```
pub fn stats_for(prefix: &str, results: &[Result<Option<Duration>, PingError>]) -> Vec<Value> {
    let rtts: Vec<f64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied().flatten())
        .map(|d| d.as_secs_f64())
        .collect();
    let mut values = Vec::with_capacity(5);
    if !rtts.is_empty() {
        let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rtts.iter().copied().fold(0.0, f64::max);
        let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
        values.push(Value::new(format!("{prefix}.rtt_min"), min));
        values.push(Value::new(format!("{prefix}.rtt_avg"), avg));
        values.push(Value::new(format!("{prefix}.rtt_max"), max));
    }
    if rtts.len() >= 2 {
        let diffs: f64 = rtts.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
        let jitter = diffs / (rtts.len() - 1) as f64;
        values.push(Value::new(format!("{prefix}.jitter"), jitter));
    }
    if !results.is_empty() {
        let loss = 1.0 - rtts.len() as f64 / results.len() as f64;
        values.push(Value::new(format!("{prefix}.loss"), loss));
    }
    values
}

/// The values for one address's packets, under `prefix` (`entity.<id>.ping`).
///
/// A packet that could not be sent counts as unanswered.
///
/// ```
/// use grafolean_ping_bot::collector::values_for;
/// use std::time::Duration;
/// let values = values_for("entity.7.ping", &[Ok(Some(Duration::from_millis(5))), Ok(None)]);
/// let paths: Vec<_> = values.iter().map(|v| v.path.as_str()).collect();
/// assert_eq!(paths, ["entity.7.ping.p0.ok", "entity.7.ping.p0.rtt", "entity.7.ping.p1.ok", "entity.7.ping.success"]);
/// assert_eq!(values[3].value, 0.5);
/// ```
pub fn values_for(prefix: &str, results: &[Result<Option<Duration>, PingError>]) -> Vec<Value> {
    let mut values = Vec::with_capacity(results.len() * 2 + 1);
    let mut answered = 0u32;
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(Some(rtt)) => {
                answered += 1;
                values.push(Value::new(format!("{prefix}.p{i}.ok"), 1.0));
                values.push(Value::new(format!("{prefix}.p{i}.rtt"), rtt.as_secs_f64()));
            }
            Ok(None) => values.push(Value::new(format!("{prefix}.p{i}.ok"), 0.0)),
            Err(error) => {
                tracing::debug!(%error, "packet {i} not sent; counted as unanswered");
                values.push(Value::new(format!("{prefix}.p{i}.ok"), 0.0));
            }
        }
    }
    if !results.is_empty() {
        values.push(Value::new(
            format!("{prefix}.success"),
            f64::from(answered) / results.len() as f64,
        ));
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn values_follow_python_paths() {
        let sent_error = PingError::Send {
            addr: "192.0.2.1".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::NetworkUnreachable),
        };
        let results = vec![
            Ok(Some(Duration::from_micros(1500))),
            Ok(None),
            Err(sent_error),
            Ok(Some(Duration::ZERO)),
        ];
        let got: Vec<(String, f64)> = values_for("entity.42.ping", &results)
            .into_iter()
            .map(|v| (v.path, v.value))
            .collect();
        let expected = [
            ("entity.42.ping.p0.ok", 1.0),
            ("entity.42.ping.p0.rtt", 0.0015),
            ("entity.42.ping.p1.ok", 0.0),
            ("entity.42.ping.p2.ok", 0.0),
            ("entity.42.ping.p3.ok", 1.0),
            ("entity.42.ping.p3.rtt", 0.0),
            ("entity.42.ping.success", 0.5),
        ];
        let expected: Vec<(String, f64)> =
            expected.iter().map(|(p, v)| (p.to_string(), *v)).collect();
        assert_eq!(got, expected);
    }
}
