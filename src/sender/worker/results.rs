//! What the sender does with the result of a request: count it, settle the
//! backlog, and update the backend's health.
//!
//! Delivered and rejected values are done (acked in the spool). Values that
//! failed with a network error, a timeout, a 5xx or a 401 are retried: a live
//! batch goes to the backlog with its measurement times, a replayed chunk goes
//! back to the backlog's front. A 403 on PUT switches the account to POST:
//! a live batch goes again by POST, buffered values newest-only; a 403 on
//! POST drops the values.

use std::collections::HashSet;

use tokio::task::Id;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::api::{ApiError, PutValue};

use super::super::backlog::Record;
use super::super::batch::{Item, micros_to_t};
use super::super::deliver::{Body, Delivery};
use super::super::state::{Change, Failure, Mode, classify};
use super::{InFlight, Kind, LOG_EVERY, Worker};

impl Worker {
    pub(super) fn on_result(&mut self, id: Id, mut delivery: Delivery) {
        let Some(flight) = self.in_flight.remove(&id) else {
            return;
        };
        if delivery.delivered.is_empty()
            && delivery.rejected.is_empty()
            && delivery.failed.is_empty()
        {
            // The task panicked: retry everything.
            delivery.failed.push(0..flight.body.len());
        }
        match &flight.kind {
            Kind::Live { .. } => self.live_in_flight -= 1,
            _ => self.replay_in_flight -= 1,
        }
        let answered = delivery
            .error
            .as_ref()
            .is_none_or(ApiError::backend_answered);
        self.metrics.backend_up.set(i64::from(answered));
        let delivered = delivery.delivered_count() as u64;
        self.metrics.values_sent.inc_by(delivered);
        if delivered > 0
            && matches!(flight.body, Body::Put(_))
            && self.link.on_put_delivered(flight.account)
        {
            self.log_mode(flight.account, Mode::Put);
        }
        if matches!(flight.kind, Kind::Replay { .. }) {
            self.metrics.values_replayed.inc_by(delivered);
        }
        for (range, reason) in &delivery.rejected {
            for i in range.clone() {
                let job = match &flight.kind {
                    Kind::Live { jobs, .. } => jobs[i].as_str(),
                    _ => "(replayed)",
                };
                warn!(account = flight.account, job, path = flight.body.path(i), error = %reason,
                    "the backend rejected a value; dropping it");
            }
            self.metrics.dropped(
                crate::sender::metrics::DropReason::rejected,
                range.len() as u64,
            );
        }
        let failed: Vec<usize> = delivery.failed.iter().flat_map(Clone::clone).collect();
        let error = delivery.error.take();
        // Failed values are retried, except after a 403.
        let put = matches!(flight.body, Body::Put(_));
        let retry = !failed.is_empty()
            && match classify(error.as_ref(), put) {
                Failure::Retry => true,
                Failure::PutForbidden => {
                    self.on_put_forbidden(&flight, &failed);
                    false
                }
                Failure::PostForbidden => {
                    self.on_post_forbidden(&flight, error.as_ref(), &failed);
                    false
                }
            };
        self.settle(flight.account, &flight, &failed, retry);
        if retry {
            self.metrics.values_retried.inc_by(failed.len() as u64);
            if let Some(ApiError::Unauthorized { .. }) = &error {
                let now = Instant::now();
                if self.last_auth_error.is_none_or(|t| now - t >= LOG_EVERY) {
                    self.last_auth_error = Some(now);
                    error!(error = %error.as_ref().map(ToString::to_string).unwrap_or_default(),
                        buffered = self.backlog.len(), "values are buffered until the token is accepted again");
                }
            }
            self.mark_down(flight.probe, error.as_ref());
        } else if answered {
            let change = self.link.on_answer();
            self.on_change(change);
        }
        self.metrics.values_buffered.set(self.backlog.len() as i64);
    }

    /// A 403 on PUT: the account goes by POST; a live batch goes again, first
    /// in line, and buffered values go back to the backlog (sent newest-only).
    fn on_put_forbidden(&mut self, flight: &InFlight, failed: &[usize]) {
        if self.link.on_put_forbidden(flight.account, Instant::now()) {
            self.log_mode(flight.account, Mode::Post);
        }
        match (&flight.kind, &flight.body) {
            (Kind::Live { ats, jobs }, Body::Put(body)) => {
                let items = failed
                    .iter()
                    .map(|&i| Item {
                        path: body[i].p.clone(),
                        value: body[i].v,
                        at: ats[i],
                        job: jobs[i].clone(),
                    })
                    .collect();
                self.ready.push_front((flight.account, items));
            }
            _ => {
                let records = self.records(flight, failed);
                self.backlog.put_back(flight.account, records);
            }
        }
    }

    /// A 403 on POST: the bot may not write to the account; the values are
    /// dropped, with an error logged at most once a minute.
    fn on_post_forbidden(&mut self, flight: &InFlight, error: Option<&ApiError>, failed: &[usize]) {
        let now = Instant::now();
        if self
            .last_post_forbidden
            .is_none_or(|t| now - t >= LOG_EVERY)
        {
            self.last_post_forbidden = Some(now);
            error!(account = flight.account, error = %error.map(ToString::to_string).unwrap_or_default(),
                "the bot has no permission to send values to this account; dropping them");
        }
        self.metrics.dropped(
            crate::sender::metrics::DropReason::forbidden,
            failed.len() as u64,
        );
        if let Kind::Newest { .. } | Kind::Replay { .. } = &flight.kind {
            let records = self.records(flight, failed);
            self.backlog.done(&records);
        }
    }

    /// Updates the backlog for a finished request: acks what is done, and
    /// (with `retry`) gives back what failed.
    pub(super) fn settle(
        &mut self,
        account: u64,
        flight: &InFlight,
        failed: &[usize],
        retry: bool,
    ) {
        let failed_set: HashSet<usize> = failed.iter().copied().collect();
        match &flight.kind {
            Kind::Live { ats, .. } => {
                if retry {
                    let values = match &flight.body {
                        Body::Post(body) => failed
                            .iter()
                            .map(|&i| PutValue {
                                p: body[i].p.clone(),
                                t: micros_to_t(ats[i]),
                                v: body[i].v,
                            })
                            .collect(),
                        Body::Put(body) => failed.iter().map(|&i| body[i].clone()).collect(),
                    };
                    self.buffer_values(account, values);
                }
            }
            Kind::Replay { .. } => {
                let all: Vec<usize> = (0..flight.body.len())
                    .filter(|i| !failed_set.contains(i))
                    .collect();
                let done = self.records(flight, &all);
                self.backlog.done(&done);
                if retry {
                    let back = self.records(flight, failed);
                    self.backlog.put_back(account, back);
                }
            }
            Kind::Newest { kept, superseded } => {
                let done: Vec<Record> = (0..kept.len())
                    .filter(|i| !failed_set.contains(i))
                    .map(|i| kept[i].clone())
                    .collect();
                self.backlog.done(&done);
                // An older value goes back only with its path's newest value.
                let failed_paths: HashSet<&str> =
                    failed.iter().map(|&i| kept[i].value.p.as_str()).collect();
                let (back, gone): (Vec<Record>, Vec<Record>) = superseded
                    .iter()
                    .cloned()
                    .partition(|r| retry && failed_paths.contains(r.value.p.as_str()));
                self.backlog.done(&gone);
                self.metrics.dropped(
                    crate::sender::metrics::DropReason::put_forbidden,
                    gone.len() as u64,
                );
                if retry {
                    let mut back = back;
                    back.extend(self.records(flight, failed));
                    self.backlog.put_back(account, back);
                }
            }
        }
    }

    /// The backlog records of a request at the given indices.
    fn records(&self, flight: &InFlight, indices: &[usize]) -> Vec<Record> {
        match (&flight.kind, &flight.body) {
            (Kind::Replay { keys }, Body::Put(body)) => indices
                .iter()
                .map(|&i| Record {
                    seq: keys[i].0,
                    segment: keys[i].1,
                    value: body[i].clone(),
                })
                .collect(),
            (Kind::Newest { kept, .. }, _) => indices.iter().map(|&i| kept[i].clone()).collect(),
            _ => Vec::new(),
        }
    }

    fn mark_down(&mut self, probe: bool, error: Option<&ApiError>) {
        let reason = error
            .map(ToString::to_string)
            .unwrap_or_else(|| "the request task failed".into());
        let change = self.link.on_failure(Instant::now(), probe);
        if change == Change::WentDown {
            warn!(error = %reason, "could not deliver values; buffering them and retrying with backoff");
        }
        if change != Change::None {
            debug!(attempt = self.link.attempt(), retry_at = ?self.link.retry_at(), error = %reason, "retrying later");
        }
        self.on_change(change);
    }

    /// Does what a change of health asks.
    pub(super) fn on_change(&mut self, change: Change) {
        match change {
            Change::WentDown => {
                // Batches waiting for a connection wait in the backlog instead.
                while let Some((account, items)) = self.ready.pop_front() {
                    self.buffer_items(account, items);
                }
            }
            Change::CameBack => info!(
                buffered = self.backlog.len(),
                "the backend is back; replaying buffered values"
            ),
            Change::StillDown | Change::None => {}
        }
    }
}
