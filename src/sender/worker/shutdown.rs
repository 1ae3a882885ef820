//! Shutting down: flush within the deadline, then spool or drop the rest.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::super::ShutdownReport;
use super::super::state::leftover;
use super::{InFlight, Msg, Shutdown, Worker};

impl Worker {
    pub(super) fn start_shutdown(
        &mut self,
        deadline: Duration,
        reply: Option<oneshot::Sender<ShutdownReport>>,
    ) {
        match &mut self.shutdown {
            Some(s) => s.replies.extend(reply),
            None => {
                debug!(?deadline, "sender shutting down");
                self.shutdown = Some(Shutdown {
                    deadline: Instant::now() + deadline,
                    replies: reply.into_iter().collect(),
                    sent_before: self.metrics.values_sent.get(),
                });
                for (account, items) in self.batches.take_all() {
                    self.close_batch(account, items);
                }
                // Down, with values waiting and the next try after the
                // deadline: one try now, rather than none before they are
                // dropped (the backend may be back since).
                if self.backlog.queued() > 0 && self.link.retry_now(Instant::now()) {
                    debug!("sender shutting down while the backend seemed down: one more try now");
                }
            }
        }
    }

    /// Whether shutdown is complete: nothing queued, nothing in flight, and
    /// nothing more that could be delivered before the deadline.
    pub(super) fn finished(&self) -> bool {
        let Some(s) = &self.shutdown else {
            return false;
        };
        let idle = self.batches.is_empty() && self.ready.is_empty() && self.tasks.is_empty();
        self.link
            .shutdown_complete(idle, self.backlog.queued(), s.deadline)
    }

    /// Ends the task: whatever was not delivered goes to the spool, or is
    /// dropped, and the shutdown callers get their report.
    pub(super) fn finish(mut self, timed_out: bool) {
        self.tasks.abort_all();
        let flights: Vec<InFlight> = self.in_flight.drain().map(|(_, f)| f).collect();
        for flight in flights {
            let all: Vec<usize> = (0..flight.body.len()).collect();
            self.settle(flight.account, &flight, &all, true);
        }
        for (account, items) in self.batches.take_all() {
            self.buffer_items(account, items);
        }
        while let Some((account, items)) = self.ready.pop_front() {
            self.buffer_items(account, items);
        }
        // Values submitted after the shutdown began but never read.
        self.rx.close();
        let mut late = 0;
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Values { values, .. } => late += values.len() as u64,
                Msg::Shutdown { reply, .. } => self
                    .shutdown
                    .get_or_insert_with(|| Shutdown {
                        deadline: Instant::now(),
                        replies: Vec::new(),
                        sent_before: 0,
                    })
                    .replies
                    .push(reply),
                Msg::BackendAnswered => {}
            }
        }
        if late > 0 {
            warn!(
                count = late,
                "values arrived after the sender shut down; dropping them"
            );
            self.metrics
                .dropped(crate::sender::metrics::DropReason::shutdown, late);
        }
        let mut report = ShutdownReport {
            timed_out: timed_out || self.backlog.len() > 0,
            ..ShutdownReport::default()
        };
        let left = leftover(self.backlog.is_durable(), self.backlog.len() as u64);
        if self.backlog.is_durable() {
            self.backlog.sync();
            report.spooled = left.spooled;
            if report.spooled > 0 {
                info!(
                    count = report.spooled,
                    "values left in the spool; they will be replayed on the next start"
                );
            }
        } else {
            let drained = self.backlog.drain_all() as u64;
            debug_assert_eq!(drained, left.dropped, "nothing is in flight any more");
            report.dropped = drained;
            if report.dropped > 0 {
                warn!(
                    count = report.dropped,
                    "could not deliver values before the shutdown deadline; dropping them"
                );
                self.metrics
                    .dropped(crate::sender::metrics::DropReason::shutdown, report.dropped);
            }
        }
        self.metrics.values_buffered.set(self.backlog.len() as i64);
        self.metrics.values_unsent.set(self.backlog.len() as i64);
        if let Some(s) = self.shutdown.take() {
            report.delivered = self.metrics.values_sent.get().saturating_sub(s.sent_before);
            for reply in s.replies {
                let _ = reply.send(report);
            }
        }
    }
}
