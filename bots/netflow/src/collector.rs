//! The NetFlow bot's collector: one job per account, at every window, that
//! turns the closed windows into the Python bot's values.
//!
//! The flows themselves arrive all the time, through the receivers that the
//! bot runs as supervised tasks (see [`crate::bot()`]); a job's run only
//! reads what the windows closed. Its tick is the window's end (the jobs are
//! aligned to the clock), and the SDK stamps the values with it, so a
//! repeated send of the same window overwrites, never adds.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use grafolean_collector::resolve::{Family, Resolver, ResolverOptions};
use grafolean_collector::{
    Align, BoxError, Collector, EntityConfig, Intervals, JobConfigs, JobSpec, Problems, Tick, Value,
};

use crate::output::{EntityFlows, account_values};
use crate::window::{GRACE, Window, Windows, unix_secs};

/// How long a resolved host name in `details.ipv4` is used before it is
/// looked up again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(300);

/// How long a run waits for the windows to close before it gives up.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// One account's job: its NetFlow entities and their exporter addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountJob {
    /// The account.
    pub account: u64,
    /// The entities, with `details.ipv4` as given (an address or a host name).
    pub entities: Vec<(u64, String)>,
}

/// Turns NetFlow entities into per-account jobs.
#[derive(Debug, Clone)]
pub struct NetflowCollector {
    windows: Arc<Windows>,
    resolver: Resolver,
    /// The addresses of the entities of the last refresh, to tell matched
    /// exporters from unmatched ones.
    known: Arc<Mutex<Vec<IpAddr>>>,
}

impl NetflowCollector {
    /// A collector over `windows`.
    pub fn new(windows: Arc<Windows>) -> Self {
        Self {
            windows,
            resolver: Resolver::new(ResolverOptions::default().with_refresh(RESOLVE_EVERY)),
            known: Arc::default(),
        }
    }

    /// The windows it reads.
    pub fn windows(&self) -> &Arc<Windows> {
        &self.windows
    }

    /// The exporter addresses of the configured entities (host names as
    /// last resolved).
    pub fn known_addresses(&self) -> Vec<IpAddr> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every window, in seconds.
    pub fn intervals() -> Intervals {
        Intervals::new(Window::ALL.map(|w| w.secs() as u32)).expect("five non-zero intervals")
    }

    /// The addresses of an entity's `details.ipv4`: the address, or a host
    /// name's A and AAAA records (through the shared resolver's cache).
    async fn addresses(&self, given: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = given.parse::<IpAddr>() {
            return Ok(vec![ip.to_canonical()]);
        }
        let (v4, v6) = tokio::join!(
            self.resolver.resolve(given, Family::V4),
            self.resolver.resolve(given, Family::V6)
        );
        let found: Vec<IpAddr> = [v4.addr(), v6.addr()].into_iter().flatten().collect();
        if found.is_empty() {
            return Err(format!("cannot resolve {given:?}"));
        }
        Ok(found)
    }
}

/// The host of a `details.ipv4`: trimmed, without a `:port` (as the SNMP
/// bot's users write `a.b.c.d:port` or `host:port`; the port does not
/// matter to a flow's source).
///
/// ```
/// use grafolean_netflow_bot::collector::exporter_host;
/// assert_eq!(exporter_host(" 192.0.2.1:2055 "), "192.0.2.1");
/// assert_eq!(exporter_host("2001:db8::1"), "2001:db8::1");
/// assert_eq!(exporter_host("router.lan"), "router.lan");
/// ```
pub fn exporter_host(given: &str) -> &str {
    let s = given.trim();
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => s,
    }
}

/// The exporter address in an entity's `details.ipv4`.
fn exporter_of(entity: &EntityConfig) -> Result<String, String> {
    match entity.details.get("ipv4") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
            Ok(exporter_host(s).to_string())
        }
        Some(other) => Err(format!(
            "details.ipv4 must be the exporter's address as a string, not {other}"
        )),
        None => Err("details.ipv4 is missing: it must be the exporter's address".into()),
    }
}

impl Collector for NetflowCollector {
    type Params = AccountJob;

    fn jobs(&self, configs: &JobConfigs, problems: &mut Problems) -> Vec<JobSpec<AccountJob>> {
        let mut accounts: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
        let mut known = Vec::new();
        for entity in &configs.entities {
            match exporter_of(entity) {
                Ok(address) => {
                    if let Ok(ip) = address.parse::<IpAddr>() {
                        known.push(ip.to_canonical());
                    }
                    accounts
                        .entry(entity.account_id)
                        .or_default()
                        .push((entity.entity_id, address));
                }
                Err(reason) => problems.entity(entity, reason),
            }
        }
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = known;
        accounts
            .into_iter()
            .map(|(account, entities)| {
                JobSpec::new(
                    format!("aggr/{account}"),
                    Self::intervals(),
                    AccountJob { account, entities },
                )
                .with_account(account)
                .with_align(Align::Start(UNIX_EPOCH))
            })
            .collect()
    }

    async fn run(&self, tick: Tick, job: &AccountJob) -> Result<Vec<Value>, BoxError> {
        let end = unix_secs(tick.at);
        // The receivers count flows until the minute's end; the closer
        // takes it GRACE later.
        if !self.windows.wait_closed(end, CLOSE_WAIT + GRACE).await {
            return Err(format!("the windows ending at {end} were not closed in time").into());
        }
        // Take the closed windows now: resolving names below may take a
        // while, and a window replaced meanwhile would be lost.
        let closed: Vec<_> = tick
            .affecting
            .iter()
            .filter_map(|secs| Window::from_secs(u64::from(secs)))
            .filter_map(|w| Some((w, self.windows.closed(w, end)?)))
            .collect();
        let mut entities = Vec::with_capacity(job.entities.len());
        let mut unresolved = Vec::new();
        for (entity_id, given) in &job.entities {
            match self.addresses(given).await {
                Ok(addresses) => entities.push(EntityFlows {
                    entity_id: *entity_id,
                    addresses,
                }),
                Err(e) => {
                    unresolved.push(format!("entity {entity_id}: {e}"));
                    entities.push(EntityFlows {
                        entity_id: *entity_id,
                        addresses: Vec::new(),
                    });
                }
            }
        }
        let mut values = Vec::new();
        // A partial window (the bot started during it) was not closed as
        // complete, and is not sent.
        for (window, traffic) in &closed {
            account_values(*window, traffic, &entities, &mut values);
        }
        if !unresolved.is_empty() {
            // The values of the others are sent regardless; the resolver
            // warned once when each name became unresolved.
            tracing::debug!(account = job.account, "{}", unresolved.join("; "));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_host_name_is_resolved_and_an_unknown_one_is_an_error_remembered() {
        let collector =
            NetflowCollector::new(Arc::new(Windows::new(1, std::time::SystemTime::now(), 100)));
        let found = collector.addresses("localhost").await.unwrap();
        assert!(found.contains(&"127.0.0.1".parse().unwrap()), "{found:?}");
        assert_eq!(
            collector.addresses(" 192.0.2.1 ".trim()).await.unwrap(),
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        // `.invalid` never resolves (RFC 6761).
        let e = collector.addresses("exporter.invalid").await.unwrap_err();
        assert!(e.contains("exporter.invalid"), "{e}");
        // Remembered: the next run does not look it up again.
        let lookups = collector.resolver.stats().lookups;
        assert!(collector.addresses("exporter.invalid").await.is_err());
        assert_eq!(collector.resolver.stats().lookups, lookups);
    }
}
