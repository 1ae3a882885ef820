//! A scheduler's budget of per-job failure and recovery lines: a network of
//! dead devices writes a few dozen lines a minute, not thousands.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The most per-job failure and recovery lines a scheduler logs a minute.
/// Past it they are counted, and said in one line at the next minute: 1,000
/// dead devices write a few dozen lines a minute, not thousands (every
/// failure is still on the status page and in `grafolean_bot_runs_total`).
pub(crate) const LOG_LINES_PER_MINUTE: u32 = 10;

/// A scheduler's budget of per-job log lines, in windows of a minute.
#[derive(Debug, Default)]
pub(crate) struct LogBudget {
    state: Mutex<BudgetState>,
}

#[derive(Debug, Default)]
struct BudgetState {
    window: Option<Instant>,
    used: u32,
    failures_left_out: u64,
    recoveries_left_out: u64,
}

impl LogBudget {
    /// Whether one more per-job line (a failure, or a `recovery`) may be
    /// logged now; if not, it is counted. At a new minute, says first what
    /// the last one left out.
    pub(crate) fn take(&self, recovery: bool) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if s.window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(60))
        {
            let (failures, recoveries) = (s.failures_left_out, s.recoveries_left_out);
            if failures + recoveries > 0 {
                tracing::warn!(
                    failures,
                    recoveries,
                    "{} job failure and recovery lines were left out of the log in the last minute (at most {LOG_LINES_PER_MINUTE} a minute): see the failing jobs on the status page (/?state=failing) or /api/jobs?state=failing",
                    failures + recoveries
                );
            }
            *s = BudgetState {
                window: Some(now),
                ..BudgetState::default()
            };
        }
        if s.used < LOG_LINES_PER_MINUTE {
            s.used += 1;
            return true;
        }
        if recovery {
            s.recoveries_left_out += 1;
        } else {
            s.failures_left_out += 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten lines a minute; the rest counted, and said once at the next
    /// minute.
    #[tokio::test(start_paused = true)]
    async fn ten_lines_a_minute_then_one_summary() {
        let budget = LogBudget::default();
        let allowed = (0..1000).filter(|i| budget.take(i % 10 == 0)).count();
        assert_eq!(allowed, LOG_LINES_PER_MINUTE as usize);
        {
            let s = budget.state.lock().unwrap();
            assert_eq!(s.failures_left_out + s.recoveries_left_out, 990);
            assert_eq!(s.recoveries_left_out, 99);
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(budget.take(false), "a new minute, a new budget");
        let s = budget.state.lock().unwrap();
        assert_eq!(
            (s.used, s.failures_left_out),
            (1, 0),
            "the count starts again"
        );
    }
}
