//! Fetching a [`Plan`] from an agent: the only part of a firing that talks
//! to the device.
//!
//! The agent sits behind [`SnmpClient`], two requests wide (a GET of many
//! OIDs, a walk of one column), so that the rest of a firing is tested with
//! a double instead of a device. [`Agent`] is the real one.
//!
//! [`fetch`] sends the plan's GET PDU and all its walks at once, each within
//! the device's time budget, and returns every request's own result
//! ([`Fetched`]); [`Fetched::into_answers`] splits them into what the
//! mapping reads ([`Answers`]) and what failed ([`Failures`]).

use std::collections::HashMap;
use std::future::Future;

use async_snmp::{Oid, Value as SnmpValue, VarBind};
use tokio::time::Instant;

use crate::agent::{Agent, AgentError};
use crate::map::Answers;
use crate::plan::Plan;
use crate::rates::Context;
use crate::settings::{SnmpAuth, SnmpSettings};

/// sysUpTime.0, read when a Counter32 went down.
pub const SYS_UP_TIME: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];
/// IF-MIB's ifCounterDiscontinuityTime (a column: the ifIndex follows).
const IF_COUNTER_DISCONTINUITY_TIME: [u32; 11] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 19];
/// IF-MIB's ifSpeed (bit/s).
const IF_SPEED: [u32; 10] = [1, 3, 6, 1, 2, 1, 2, 2, 1, 5];
/// IF-MIB's ifHighSpeed (Mbit/s).
const IF_HIGH_SPEED: [u32; 11] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15];

/// The requests a firing makes of an agent.
pub trait SnmpClient: Sync {
    /// GETs `oids` in one PDU (a missing OID comes back as
    /// `NoSuchObject`/`NoSuchInstance`, or not at all).
    fn get(
        &self,
        oids: &[Oid],
    ) -> impl Future<Output = Result<HashMap<Oid, SnmpValue>, AgentError>> + Send;

    /// Starts a firing (the rows of its walks are counted from 0).
    fn begin_firing(&self) {}

    /// Walks the subtree under `oid`, asking for `repetitions` rows at a time.
    fn walk(
        &self,
        oid: &Oid,
        repetitions: u32,
    ) -> impl Future<Output = Result<Vec<VarBind>, AgentError>> + Send;
}

impl SnmpClient for Agent {
    fn get(
        &self,
        oids: &[Oid],
    ) -> impl Future<Output = Result<HashMap<Oid, SnmpValue>, AgentError>> + Send {
        Agent::get(self, oids)
    }

    fn walk(
        &self,
        oid: &Oid,
        repetitions: u32,
    ) -> impl Future<Output = Result<Vec<VarBind>, AgentError>> + Send {
        Agent::walk(self, oid, repetitions)
    }

    fn begin_firing(&self) {
        Agent::begin_firing(self);
    }
}

/// Every request's result of one firing.
#[derive(Debug)]
pub struct Fetched {
    /// The requests made ([`Plan::requests`]: a GET of no OID is none).
    pub requests: usize,
    /// The GET of [`Plan::gets`] (an empty map if there were none).
    pub got: Result<HashMap<Oid, SnmpValue>, AgentError>,
    /// Each walk of [`Plan::walks`], in its order.
    pub walks: Vec<(Oid, Result<Vec<VarBind>, AgentError>)>,
}

/// What failed in one firing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    /// The requests made ([`Plan::requests`]).
    pub requests: usize,
    /// How many of them timed out (no answer, or the budget ran out).
    pub timeouts: usize,
    /// One line per failed request: `GET: …` or `walk <oid>: …`.
    pub errors: Vec<String>,
    /// The distinct causes of the failures ([`AgentError::cause`]).
    pub causes: Vec<&'static str>,
}

/// Sends `plan`'s GET and walks (`repetitions` in the order of
/// [`Plan::walks`]) at once; a request still running at `deadline` fails
/// with [`AgentError::Budget`].
pub async fn fetch<C: SnmpClient>(
    client: &C,
    plan: &Plan<'_>,
    repetitions: &[u32],
    deadline: Instant,
) -> Fetched {
    client.begin_firing();
    let (got, walked) = tokio::join!(
        within(deadline, client.get(&plan.gets)),
        futures::future::join_all(
            plan.walks
                .iter()
                .zip(repetitions)
                .map(|(o, &r)| within(deadline, client.walk(o, r)))
        )
    );
    Fetched {
        requests: plan.requests(),
        got,
        walks: plan.walks.iter().cloned().zip(walked).collect(),
    }
}

/// The agent's sysUpTime in seconds, or `None` if it cannot be had by
/// `deadline`.
pub async fn uptime<C: SnmpClient>(client: &C, deadline: Instant) -> Option<f64> {
    let oid = Oid::from_slice(&SYS_UP_TIME);
    match tokio::time::timeout_at(deadline, client.get(std::slice::from_ref(&oid))).await {
        Ok(Ok(m)) => match m.get(&oid) {
            Some(SnmpValue::TimeTicks(t)) => Some(f64::from(*t) / 100.0),
            _ => None,
        },
        _ => None,
    }
}

/// How many interfaces' facts one firing asks for when their counters went
/// down (an agent restart takes them all down, and sysUpTime says it).
const MAX_INTERFACES_ASKED: usize = 32;

/// What tells a wrap from a restart or a cleared counter, when a Counter32
/// went down: the agent's sysUpTime, and (in a request of its own, which a
/// v1 agent may refuse whole) each of `interfaces`'
/// `ifCounterDiscontinuityTime`, `ifSpeed` and `ifHighSpeed`. Whatever
/// cannot be had by `deadline` is unknown.
pub async fn decrease_context<C: SnmpClient>(
    client: &C,
    deadline: Instant,
    interfaces: &[u32],
) -> Context {
    let interfaces = &interfaces[..interfaces.len().min(MAX_INTERFACES_ASKED)];
    let column = |table: &[u32], index: u32| {
        let mut arcs = table.to_vec();
        arcs.push(index);
        Oid::from_slice(&arcs)
    };
    let oids: Vec<Oid> = interfaces
        .iter()
        .flat_map(|&i| {
            [
                column(&IF_COUNTER_DISCONTINUITY_TIME, i),
                column(&IF_SPEED, i),
                column(&IF_HIGH_SPEED, i),
            ]
        })
        .collect();
    let facts = async {
        if oids.is_empty() {
            return HashMap::new();
        }
        match tokio::time::timeout_at(deadline, client.get(&oids)).await {
            Ok(Ok(m)) => m,
            _ => HashMap::new(),
        }
    };
    let (uptime, facts) = tokio::join!(uptime(client, deadline), facts);
    let interfaces = interfaces
        .iter()
        .map(|&i| {
            let discontinuity = match facts.get(&column(&IF_COUNTER_DISCONTINUITY_TIME, i)) {
                Some(SnmpValue::TimeTicks(t)) => Some(f64::from(*t) / 100.0),
                _ => None,
            };
            // ifSpeed is capped at 2^32-1 bit/s; past it, ifHighSpeed (Mbit/s).
            let speed = match (
                facts.get(&column(&IF_SPEED, i)),
                facts.get(&column(&IF_HIGH_SPEED, i)),
            ) {
                (_, Some(SnmpValue::Gauge32(m))) if *m > 0 => Some(f64::from(*m) * 1e6),
                (Some(SnmpValue::Gauge32(b)), _) if *b > 0 && *b < u32::MAX => Some(f64::from(*b)),
                _ => None,
            };
            (i, (discontinuity, speed))
        })
        .collect();
    Context { uptime, interfaces }
}

/// `f`, or [`AgentError::Budget`] if `deadline` comes first.
async fn within<T>(
    deadline: Instant,
    f: impl Future<Output = Result<T, AgentError>>,
) -> Result<T, AgentError> {
    tokio::time::timeout_at(deadline, f)
        .await
        .unwrap_or(Err(AgentError::Budget))
}

impl Fetched {
    /// The answers (a failed GET is `got: None`, a failed walk is left
    /// out), and what failed.
    pub fn into_answers(self) -> (Answers, Failures) {
        let mut failures = Failures {
            requests: self.requests,
            timeouts: 0,
            errors: Vec::new(),
            causes: Vec::new(),
        };
        let got = match self.got {
            Ok(map) => Some(map),
            Err(e) => {
                failures.note(&e);
                failures.errors.push(format!("GET: {e}"));
                None
            }
        };
        let mut walks = HashMap::with_capacity(self.walks.len());
        for (oid, result) in self.walks {
            match result {
                Ok(rows) => {
                    walks.insert(oid, rows);
                }
                Err(e) => {
                    failures.note(&e);
                    failures.errors.push(format!("walk {oid}: {e}"));
                }
            }
        }
        (Answers { got, walks }, failures)
    }
}

impl Failures {
    fn note(&mut self, e: &AgentError) {
        self.timeouts += usize::from(e.is_timeout());
        if !self.causes.contains(&e.cause()) {
            self.causes.push(e.cause());
        }
    }

    /// If every request failed, why (for the firing's error); else `None`,
    /// and the firing goes on with what it got.
    pub fn all_failed(&self, settings: &SnmpSettings) -> Option<String> {
        let requests = self.requests;
        if self.errors.is_empty() || self.errors.len() != requests {
            return None;
        }
        Some(if self.timeouts == requests {
            let why = match settings.auth {
                SnmpAuth::V3 { .. } => {
                    "a wrong privacy key or protocol (net-snmp answers it with silence), or the agent is down"
                }
                _ => "a wrong community, or the agent is down",
            };
            format!(
                "no answer to any of {requests} requests (timeout {:?}, {} retries, device budget {:?}; {why})",
                settings.timeout, settings.retries, settings.budget
            )
        } else {
            let mut distinct: Vec<&str> = Vec::new();
            for e in &self.errors {
                if !distinct.contains(&e.as_str()) {
                    distinct.push(e);
                }
            }
            distinct.join("; ")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    use grafolean_collector::Intervals;
    use serde_json::json;

    use crate::sensor::SensorSpec;

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    /// An agent that answers from maps, fails walks it has no table for,
    /// never answers the `silent` ones, and records the walks asked.
    #[derive(Default)]
    struct Double {
        values: HashMap<Oid, SnmpValue>,
        tables: HashMap<Oid, Vec<VarBind>>,
        silent: Vec<Oid>,
        get_times_out: bool,
        asked: Mutex<Vec<(Oid, u32)>>,
    }

    impl SnmpClient for Double {
        fn get(
            &self,
            oids: &[Oid],
        ) -> impl Future<Output = Result<HashMap<Oid, SnmpValue>, AgentError>> + Send {
            let result = if self.get_times_out {
                Err(AgentError::Timeout {
                    addr: "192.0.2.1:161".parse().unwrap(),
                    retries: 2,
                })
            } else {
                Ok(oids
                    .iter()
                    .filter_map(|o| Some((o.clone(), self.values.get(o)?.clone())))
                    .collect())
            };
            async move { result }
        }

        fn walk(
            &self,
            oid: &Oid,
            repetitions: u32,
        ) -> impl Future<Output = Result<Vec<VarBind>, AgentError>> + Send {
            self.asked.lock().unwrap().push((oid.clone(), repetitions));
            let silent = self.silent.contains(oid);
            let result = self
                .tables
                .get(oid)
                .cloned()
                .ok_or_else(|| AgentError::Other(format!("genErr at {oid}")));
            async move {
                if silent {
                    std::future::pending::<()>().await;
                }
                result
            }
        }
    }

    fn sensors(oids: &[(&str, &str)]) -> Vec<std::sync::Arc<SensorSpec>> {
        oids.iter()
            .enumerate()
            .map(|(i, (o, f))| {
                let details = json!({"oids": [{"oid": o, "fetch_method": f}],
                                     "expression": "$1", "output_path": format!("s{i}")});
                std::sync::Arc::new(SensorSpec::parse(i as u64, 60, &details).unwrap())
            })
            .collect()
    }

    fn settings() -> SnmpSettings {
        SnmpSettings::from_credential(&json!({"version": "snmpv2c", "snmpv12_community": "public"}))
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_has_its_own_result_within_the_budget() {
        let up = oid("1.3.6.1.2.1.1.3.0");
        let table = oid("1.3.6.1.2.1.2.2.1.2");
        let row = VarBind::new(oid("1.3.6.1.2.1.2.2.1.2.1"), SnmpValue::Integer(1));
        let agent = Double {
            values: HashMap::from([(up.clone(), SnmpValue::TimeTicks(4200))]),
            tables: HashMap::from([(table.clone(), vec![row.clone()])]),
            silent: vec![oid("1.3.6.1.9.2")],
            ..Double::default()
        };
        let specs = sensors(&[
            ("1.3.6.1.2.1.1.3.0", "get"),
            ("1.3.6.1.2.1.2.2.1.2", "walk"),
            ("1.3.6.1.9.1", "walk"),
            ("1.3.6.1.9.2", "walk"),
        ]);
        let plan = Plan::new(&specs, &Intervals::one(60).unwrap());
        let start = Instant::now();
        let fetched = fetch(&agent, &plan, &[5, 6, 7], start + Duration::from_secs(3)).await;
        // The silent walk held the firing until the budget ran out, no longer.
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(
            *agent.asked.lock().unwrap(),
            vec![
                (table.clone(), 5),
                (oid("1.3.6.1.9.1"), 6),
                (oid("1.3.6.1.9.2"), 7)
            ]
        );
        let (answers, failures) = fetched.into_answers();
        assert_eq!(
            answers.got,
            Some(HashMap::from([(up, SnmpValue::TimeTicks(4200))]))
        );
        assert_eq!(answers.walks, HashMap::from([(table, vec![row])]));
        assert_eq!(
            failures,
            Failures {
                requests: 4,
                timeouts: 1,
                errors: vec![
                    "walk 1.3.6.1.9.1: genErr at 1.3.6.1.9.1".into(),
                    "walk 1.3.6.1.9.2: the device's time budget ran out".into(),
                ],
                causes: vec!["other", "budget"],
            }
        );
        assert_eq!(failures.all_failed(&settings()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn every_request_failing_fails_the_firing() {
        let specs = sensors(&[("1.3.6.1.2.1.1.3.0", "get"), ("1.3.6.1.9.2", "walk")]);
        let plan = Plan::new(&specs, &Intervals::one(60).unwrap());
        let deadline = Instant::now() + Duration::from_secs(1);
        // No answer at all.
        let agent = Double {
            get_times_out: true,
            silent: vec![oid("1.3.6.1.9.2")],
            ..Double::default()
        };
        let (answers, failures) = fetch(&agent, &plan, &[10], deadline).await.into_answers();
        assert_eq!(answers.got, None);
        let why = failures.all_failed(&settings()).unwrap();
        assert!(
            why.starts_with("no answer to any of 2 requests (timeout"),
            "{why}"
        );
        // Errors other than silence: each distinct one once.
        let specs = sensors(&[("1.3.6.1.9.1", "walk"), ("1.3.6.1.9.1", "walk")]);
        let plan = Plan::new(&specs, &Intervals::one(60).unwrap());
        assert_eq!(plan.walks.len(), 1);
        let (_, failures) = fetch(&Double::default(), &plan, &[10], deadline)
            .await
            .into_answers();
        assert_eq!(failures.requests, 1, "no GET PDU without OIDs to get");
        assert_eq!(
            failures.all_failed(&settings()).as_deref(),
            Some("walk 1.3.6.1.9.1: genErr at 1.3.6.1.9.1")
        );
        let twice = Failures {
            requests: 2,
            timeouts: 0,
            errors: vec!["GET: x".into(), "GET: x".into()],
            causes: vec!["other"],
        };
        assert_eq!(twice.all_failed(&settings()).as_deref(), Some("GET: x"));
    }

    #[tokio::test(start_paused = true)]
    async fn uptime_is_timeticks_in_seconds() {
        let deadline = Instant::now() + Duration::from_secs(1);
        let up = Oid::from_slice(&SYS_UP_TIME);
        let agent = Double {
            values: HashMap::from([(up.clone(), SnmpValue::TimeTicks(12_345))]),
            ..Double::default()
        };
        assert_eq!(uptime(&agent, deadline).await, Some(123.45));
        let wrong_type = Double {
            values: HashMap::from([(up, SnmpValue::Integer(5))]),
            ..Double::default()
        };
        assert_eq!(uptime(&wrong_type, deadline).await, None);
        let silent = Double {
            get_times_out: true,
            ..Double::default()
        };
        assert_eq!(uptime(&silent, deadline).await, None);
    }
}
