//! The SDK's one reporter of entity problems: warned about when a problem
//! appears or changes, said when it is gone, counted at every refresh.
//!
//! It serves the refresh's own skips (an entity that does not parse, a
//! sensor that answers 404) and a bot's problems (reported through
//! [`Problems`](crate::problem::Problems) in [`Collector::jobs`](crate::collector::Collector::jobs))
//! alike, so that a config that never changes does not repeat its warnings at
//! every refresh of a bot that runs for months.

use std::collections::{HashMap, HashSet};

use tracing::{debug, info, warn};

use crate::exposition::capped_label_value;
use crate::fetch::Unfetched;
use crate::metrics::{CauseLabels, Metrics};
use crate::problem::{EntityProblem, SkipCause};
use crate::text::{MAX_ERROR_BYTES, bounded};

/// What was said about each problem: by account and the entity's raw id
/// (`None` for an account's own problem), its cause and reason.
#[derive(Debug, Default)]
pub(crate) struct Reporter {
    said: HashMap<(u64, Option<String>), (SkipCause, String)>,
}

impl Reporter {
    /// Counts `problems`, warns about those that are new or changed, and
    /// says which of those said before are gone. The problem of an entity
    /// that the backend failed to give this time (`unfetched`) is neither
    /// gone nor new: it stays as it was.
    pub(crate) fn report(
        &mut self,
        problems: &[EntityProblem],
        unfetched: &[Unfetched],
        metrics: &Metrics,
    ) {
        for problem in problems {
            metrics
                .entity_errors
                .get_or_create(&CauseLabels {
                    cause: problem.cause.as_str(),
                })
                .inc();
        }
        // What the backend failed to give: whole accounts, and entities by
        // their raw id (one lookup per problem, not a scan of the failures).
        let failed_accounts: HashSet<u64> = unfetched
            .iter()
            .filter(|f| f.entity.is_none())
            .map(|f| f.account)
            .collect();
        let failed_entities: HashSet<(u64, String)> = unfetched
            .iter()
            .filter_map(|f| Some((f.account, f.entity?.to_string())))
            .collect();
        let unknown = |account: u64, entity: Option<&str>| {
            failed_accounts.contains(&account)
                || entity.is_some_and(|e| failed_entities.contains(&(account, e.to_string())))
        };
        let mut now: HashMap<(u64, Option<String>), (SkipCause, String)> = problems
            .iter()
            .map(|p| ((p.account, p.raw_id.clone()), (p.cause, p.reason.clone())))
            .collect();
        for (key, said) in &self.said {
            if unknown(key.0, key.1.as_deref()) {
                now.entry(key.clone()).or_insert_with(|| said.clone());
            }
        }
        for problem in problems {
            let key = (problem.account, problem.raw_id.clone());
            let new = self.said.get(&key).is_none_or(|(cause, reason)| {
                (*cause, reason.as_str()) != (problem.cause, problem.reason.as_str())
            });
            if new {
                warn_about(problem);
            } else {
                debug!(
                    account = problem.account,
                    entity = problem.raw_id.as_deref().unwrap_or("none"),
                    reason = %problem.reason,
                    "a config problem stays"
                );
            }
        }
        for ((account, entity), (cause, _)) in &self.said {
            if now.contains_key(&(*account, entity.clone())) {
                continue;
            }
            match (cause, entity) {
                (SkipCause::InvalidConfig, Some(entity)) => {
                    info!(account, entity_id = %entity, "the entity's config problem is gone")
                }
                (_, Some(entity)) => info!(
                    account,
                    entity = %entity,
                    "a skipped entity is fine again (or gone)"
                ),
                (_, None) => info!(account, "an account's entities can be listed again"),
            }
        }
        self.said = now;
    }
}

/// Warns about a problem that is new or changed.
fn warn_about(problem: &EntityProblem) {
    let account = problem.account;
    // One line, bounded: a reason can quote a device's or the backend's text.
    let reason = &bounded(&problem.reason, 2 * MAX_ERROR_BYTES);
    match (problem.cause, problem.raw_id.as_deref()) {
        (SkipCause::InvalidConfig, entity) => {
            let name = capped_label_value(problem.name.as_deref().unwrap_or(""));
            warn!(account, entity_id = %entity.unwrap_or("none"), entity = %name, "{reason}");
        }
        (SkipCause::EntityList, _) | (_, None) => {
            warn!(account, %reason, "skipping an account whose entities cannot be listed (said once)")
        }
        (_, Some(entity)) => {
            warn!(account, entity = %entity, %reason, "skipping an entity (said once; it stays skipped until fixed)")
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::{LogCapture, metric_value};

    /// This thread's log at `info`, while the guard lives.
    fn capture() -> (LogCapture, tracing::subscriber::DefaultGuard) {
        let logs = LogCapture::default();
        let writer = logs.clone();
        let guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish(),
        );
        (logs, guard)
    }

    fn problem(reason: &str, name: &str) -> EntityProblem {
        EntityProblem {
            account: 1,
            entity: Some(7),
            raw_id: Some("7".into()),
            name: Some(name.into()),
            cause: SkipCause::InvalidConfig,
            reason: reason.into(),
        }
    }

    #[test]
    fn a_problem_is_warned_once_per_change_counted_each_time_and_its_name_capped() {
        let (logs, _guard) = capture();
        let metrics = Metrics::new("test");
        let mut reporter = Reporter::default();
        let huge = "n".repeat(5 << 20);
        let mut report = |problem: Option<&str>| {
            let problems: Vec<_> = problem
                .map(|p| self::problem(p, &huge))
                .into_iter()
                .collect();
            reporter.report(&problems, &[], &metrics);
        };
        for _ in 0..3 {
            report(Some("n_packets is 0"));
        }
        report(Some("n_packets is 1000"));
        report(None);
        report(None);
        assert_eq!(logs.count(&["WARN", "entity_id=7", "n_packets is 0"]), 1);
        assert_eq!(logs.count(&["WARN", "entity_id=7", "n_packets is 1000"]), 1);
        assert_eq!(logs.count(&["entity_id=7", "problem is gone"]), 1);
        assert!(logs.text().len() < 4096, "the 5 MB name is cut");
        assert_eq!(
            metric_value(
                &metrics,
                "grafolean_bot_entity_errors_total{cause=\"invalid_config\"}"
            ),
            4.0
        );
    }

    #[test]
    fn the_problem_of_an_entity_the_backend_failed_to_give_stays() {
        let (logs, _guard) = capture();
        let metrics = Metrics::new("test");
        let mut reporter = Reporter::default();
        reporter.report(&[problem("bad", "e")], &[], &metrics);
        let unfetched = Unfetched {
            account: 1,
            entity: Some(7),
            cause: "server_error",
            reason: "500".into(),
        };
        reporter.report(&[], &[unfetched], &metrics);
        assert_eq!(logs.count(&["problem is gone"]), 0);
        reporter.report(&[problem("bad", "e")], &[], &metrics);
        assert_eq!(logs.count(&["WARN", "bad"]), 1, "not warned again");
        reporter.report(&[], &[], &metrics);
        assert_eq!(logs.count(&["problem is gone"]), 1);
    }
}
