//! The sender's task: one loop that owns the batches, the backlog and the
//! backend's health, and spawns the deliveries.
//!
//! The loop never waits for the network itself: each request runs in its own
//! task, and the loop reacts to results, timers and submissions. Its state
//! is *up* (live batches are sent by PUT, or POST where PUT is forbidden, and
//! the backlog is replayed beside them) or
//! *down* (everything goes to the backlog, and one probe, a PUT of the oldest
//! buffered values, is tried at each backoff deadline).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tracing::{info, warn};

use super::metrics::{DropReason, SenderMetrics};
use crate::api::{Client, PostValue, PutValue};
use crate::job::JobId;
use crate::value::Value;

use super::ShutdownReport;
use super::backlog::{Backlog, Record};
use super::batch::{Batches, Item, dedup_latest, micros_to_t};
use super::deliver::{Body, Delivery, deliver};
use super::spool::Spool;
use super::state::{Link, Mode};

mod results;
mod shutdown;

/// How long the task keeps flushing when every handle was dropped without
/// a shutdown.
const DROP_DEADLINE: Duration = Duration::from_secs(5);
/// The least time between two repeated error logs of one kind.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The sender's settings (see the builder for what each means).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) window: Duration,
    pub(crate) max_batch: usize,
    pub(crate) buffer_limit: usize,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_in_flight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window: super::DEFAULT_BATCH_WINDOW,
            max_batch: super::DEFAULT_MAX_BATCH,
            buffer_limit: super::DEFAULT_BUFFER_LIMIT,
            backoff_min: super::DEFAULT_BACKOFF_MIN,
            backoff_max: super::DEFAULT_BACKOFF_MAX,
            max_in_flight: super::DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// A message from a [`Sender`](super::Sender) handle.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Validated values of one run.
    Values {
        account: u64,
        at: i64,
        job: Arc<JobId>,
        values: Vec<Value>,
    },
    /// The backend answered another request of the bot's: if down, try the
    /// backlog now rather than at the backoff's deadline.
    BackendAnswered,
    /// Flush and stop.
    Shutdown {
        deadline: Duration,
        reply: oneshot::Sender<ShutdownReport>,
    },
}

/// What a request in flight carries, index-aligned with its body.
#[derive(Debug)]
enum Kind {
    /// A live POST: measurement times and jobs.
    Live {
        ats: Vec<i64>,
        jobs: Vec<Arc<JobId>>,
    },
    /// A replay PUT: the backlog's sequence numbers and segments.
    Replay { keys: Vec<(u64, u64)> },
    /// A POST of the newest buffered values (PUT is forbidden); `superseded`
    /// are the older values it replaces.
    Newest {
        kept: Vec<Record>,
        superseded: Vec<Record>,
    },
}

#[derive(Debug)]
struct InFlight {
    account: u64,
    body: Body,
    kind: Kind,
    probe: bool,
}

#[derive(Debug)]
struct Shutdown {
    deadline: Instant,
    replies: Vec<oneshot::Sender<ShutdownReport>>,
    sent_before: u64,
}

/// The sender's task.
#[derive(Debug)]
pub(crate) struct Worker {
    rx: mpsc::UnboundedReceiver<Msg>,
    rx_open: bool,
    client: Client,
    metrics: SenderMetrics,
    cfg: Config,
    batches: Batches,
    ready: VecDeque<(u64, Vec<Item>)>,
    backlog: Backlog,
    tasks: JoinSet<Delivery>,
    in_flight: HashMap<Id, InFlight>,
    live_in_flight: usize,
    replay_in_flight: usize,
    /// The backend's health, the backoff, and each account's send mode.
    link: Link,
    last_auth_error: Option<Instant>,
    last_post_forbidden: Option<Instant>,
    last_full: Option<Instant>,
    shutdown: Option<Shutdown>,
}

impl Worker {
    /// Creates the task's state, opening the spool if `spool_dir` is set.
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Msg>,
        client: Client,
        metrics: SenderMetrics,
        cfg: Config,
        spool_dir: Option<&Path>,
    ) -> std::io::Result<Self> {
        let backlog = match spool_dir {
            None => Backlog::new(cfg.buffer_limit),
            Some(dir) => {
                let (spool, stored, next_seq) = Spool::open(dir)?;
                if !stored.is_empty() {
                    info!(count = stored.len(), dir = %dir.display(), "found buffered values in the spool; they will be replayed");
                }
                Backlog::with_spool(cfg.buffer_limit, spool, stored, next_seq)
            }
        };
        metrics.values_buffered.set(backlog.len() as i64);
        Ok(Self {
            rx,
            rx_open: true,
            client,
            metrics,
            link: Link::new(cfg.backoff_min, cfg.backoff_max),
            cfg,
            batches: Batches::default(),
            ready: VecDeque::new(),
            backlog,
            tasks: JoinSet::new(),
            in_flight: HashMap::new(),
            live_in_flight: 0,
            replay_in_flight: 0,
            last_auth_error: None,
            last_post_forbidden: None,
            last_full: None,
            shutdown: None,
        })
    }

    /// Runs until shut down (or until every handle is dropped and the queue
    /// is flushed).
    pub(crate) async fn run(mut self) {
        let mut sync = tokio::time::interval(Duration::from_secs(1));
        sync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let timed_out = loop {
            self.pump();
            self.metrics.values_unsent.set(self.unsent() as i64);
            if self.finished() {
                break false;
            }
            let next_close = self.batches.next_close();
            let retry_at = self.link.retry_at();
            let deadline = self.shutdown.as_ref().map(|s| s.deadline);
            tokio::select! {
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    match joined {
                        Ok((id, delivery)) => self.on_result(id, delivery),
                        Err(e) => self.on_result(e.id(), Delivery::default()),
                    }
                }
                msg = self.rx.recv(), if self.rx_open => match msg {
                    Some(msg) => self.on_msg(msg),
                    None => {
                        self.rx_open = false;
                        self.start_shutdown(DROP_DEADLINE, None);
                    }
                },
                _ = sleep_until(next_close.unwrap_or(far)), if next_close.is_some() => {
                    for (account, items) in self.batches.take_due(Instant::now()) {
                        self.close_batch(account, items);
                    }
                }
                _ = sleep_until(retry_at.unwrap_or(far)), if retry_at.is_some() => {
                    self.start_probe();
                }
                _ = sync.tick(), if self.backlog.is_durable() => self.sync_spool(),
                _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => break true,
            }
        };
        self.finish(timed_out);
    }

    /// Every value not yet taken by the backend: the backlog (replays in
    /// flight included), the open batches, the batches waiting for a
    /// connection, and the live requests in flight. It costs a walk over the
    /// accounts and at most three times `max_in_flight` batches.
    fn unsent(&self) -> usize {
        let ready: usize = self.ready.iter().map(|(_, items)| items.len()).sum();
        let live: usize = self
            .in_flight
            .values()
            .filter(|f| matches!(f.kind, Kind::Live { .. }))
            .map(|f| f.body.len())
            .sum();
        self.backlog.len() + self.batches.values() + ready + live
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Values {
                account,
                at,
                job,
                values,
            } => {
                let items: Vec<Item> = values
                    .into_iter()
                    .map(|v| Item {
                        path: v.path,
                        value: v.value,
                        at,
                        job: job.clone(),
                    })
                    .collect();
                if self.link.is_down() {
                    self.buffer_items(account, items);
                    return;
                }
                let closes_at = Instant::now()
                    + if self.shutdown.is_some() {
                        Duration::ZERO
                    } else {
                        self.cfg.window
                    };
                for full in self
                    .batches
                    .add(account, items, closes_at, self.cfg.max_batch)
                {
                    self.close_batch(account, full);
                }
            }
            Msg::Shutdown { deadline, reply } => self.start_shutdown(deadline, Some(reply)),
            Msg::BackendAnswered => {
                if self.backlog.queued() > 0 && self.link.retry_now(Instant::now()) {
                    tracing::debug!(
                        "the backend answered a config refresh: trying the waiting values now"
                    );
                }
            }
        }
    }

    /// A batch closed: queue it for a live PUT or POST (or, while the
    /// backend is down, put it in the backlog).
    fn close_batch(&mut self, account: u64, items: Vec<Item>) {
        if self.link.is_down() {
            self.buffer_items(account, items);
            return;
        }
        self.ready.push_back((account, items));
        // Too many batches waiting for a free connection: the oldest waits in
        // the backlog instead, to be sent by PUT with its measurement time
        // (unless the account may not PUT: then it waits here for a POST).
        while self.ready.len() > 2 * self.cfg.max_in_flight {
            let link = &self.link;
            let now = Instant::now();
            let Some(i) = self
                .ready
                .iter()
                .position(|(a, _)| link.mode(*a, now) == Mode::Put)
            else {
                break;
            };
            if let Some((account, items)) = self.ready.remove(i) {
                self.buffer_items(account, items);
            }
        }
    }

    fn buffer_items(&mut self, account: u64, items: Vec<Item>) {
        let values = items
            .into_iter()
            .map(|i| PutValue {
                p: i.path,
                t: micros_to_t(i.at),
                v: i.value,
            })
            .collect();
        self.buffer_values(account, values);
    }

    fn buffer_values(&mut self, account: u64, values: Vec<PutValue>) {
        let dropped = self.backlog.push(account, values);
        if dropped > 0 {
            self.metrics.dropped(DropReason::buffer_full, dropped);
            let now = Instant::now();
            if self.last_full.is_none_or(|t| now - t >= LOG_EVERY) {
                self.last_full = Some(now);
                warn!(
                    limit = self.cfg.buffer_limit,
                    dropped, "the send buffer is full; dropping the oldest values"
                );
            }
        }
        self.metrics.values_buffered.set(self.backlog.len() as i64);
    }

    /// Starts what can be started: live requests and replay PUTs while up.
    fn pump(&mut self) {
        if self.link.is_down() {
            return;
        }
        while self.live_in_flight < self.cfg.max_in_flight {
            let Some((account, items)) = self.ready.pop_front() else {
                break;
            };
            self.spawn_live(account, items);
        }
        let replay_limit = (self.cfg.max_in_flight / 2).max(1);
        while self.replay_in_flight < replay_limit && self.backlog.queued() > 0 {
            if !self.spawn_replay(false) {
                break;
            }
        }
    }

    /// At a backoff deadline: try the oldest buffered values; with nothing
    /// to try, assume the backend is back.
    fn start_probe(&mut self) {
        let has_backlog = self.backlog.queued() > 0;
        let change = self.link.start_probe(has_backlog);
        self.on_change(change);
        if has_backlog && !self.spawn_replay(true) {
            let change = self.link.probe_not_sent();
            self.on_change(change);
        }
    }

    /// Sends a live batch: by PUT with each value's tick time when the
    /// account may PUT, else by POST.
    fn spawn_live(&mut self, account: u64, mut items: Vec<Item>) {
        let put = self.link.mode(account, Instant::now()) == Mode::Put;
        // The backend refuses a path twice in one POST, and a (path, t)
        // twice in one PUT: the latest value is kept.
        let dups = if put {
            dedup_latest(&mut items, |i| (i.path.as_str(), i.at as u64)).len()
        } else {
            dedup_latest(&mut items, |i| (i.path.as_str(), 0)).len()
        };
        if dups > 0 {
            warn!(
                account,
                count = dups,
                "a batch had the same path more than once; kept the latest value"
            );
            self.metrics.dropped(DropReason::duplicate, dups as u64);
        }
        if items.is_empty() {
            return;
        }
        let mut ats = Vec::with_capacity(items.len());
        let mut jobs = Vec::with_capacity(items.len());
        let body = if put {
            let mut body = Vec::with_capacity(items.len());
            for item in items {
                body.push(PutValue {
                    p: item.path,
                    t: micros_to_t(item.at),
                    v: item.value,
                });
                ats.push(item.at);
                jobs.push(item.job);
            }
            Body::Put(Arc::new(body))
        } else {
            let mut body = Vec::with_capacity(items.len());
            for item in items {
                body.push(PostValue {
                    p: item.path,
                    v: item.value,
                });
                ats.push(item.at);
                jobs.push(item.job);
            }
            Body::Post(Arc::new(body))
        };
        self.live_in_flight += 1;
        self.spawn(InFlight {
            account,
            body,
            kind: Kind::Live { ats, jobs },
            probe: false,
        });
    }

    /// Takes a chunk from the backlog and replays it. Returns false when the
    /// chunk turned out to be empty (every value in it was a duplicate).
    fn spawn_replay(&mut self, probe: bool) -> bool {
        let link = &self.link;
        let now = Instant::now();
        let Some((account, mut records)) = self
            .backlog
            .take(self.cfg.max_batch, |a| link.mode(a, now) == Mode::Post)
        else {
            return false;
        };
        let (body, kind) = if self.link.mode(account, now) == Mode::Post {
            // Oldest first, so that the value kept for each path is the newest.
            records.sort_by(|a, b| a.value.t.total_cmp(&b.value.t).then(a.seq.cmp(&b.seq)));
            let mut kept = records;
            let superseded = dedup_latest(&mut kept, |r| (r.value.p.as_str(), 0));
            let body = kept
                .iter()
                .map(|r| PostValue {
                    p: r.value.p.clone(),
                    v: r.value.v,
                })
                .collect();
            (
                Body::Post(Arc::new(body)),
                Kind::Newest { kept, superseded },
            )
        } else {
            // The backend refuses the same (path, t) twice in one batch.
            let gone = dedup_latest(&mut records, |r| (r.value.p.as_str(), r.value.t.to_bits()));
            if !gone.is_empty() {
                self.backlog.done(&gone);
                self.metrics
                    .dropped(DropReason::duplicate, gone.len() as u64);
            }
            if records.is_empty() {
                return false;
            }
            let keys = records.iter().map(|r| (r.seq, r.segment)).collect();
            let body = records.into_iter().map(|r| r.value).collect();
            (Body::Put(Arc::new(body)), Kind::Replay { keys })
        };
        self.replay_in_flight += 1;
        self.spawn(InFlight {
            account,
            body,
            kind,
            probe,
        });
        true
    }

    fn spawn(&mut self, flight: InFlight) {
        let client = self.client.clone();
        let (account, body) = (flight.account, flight.body.clone());
        let handle = self
            .tasks
            .spawn(async move { deliver(&client, account, &body).await });
        self.in_flight.insert(handle.id(), flight);
    }

    /// Says in one log line, and in the `send_mode` metric, how
    /// `account`'s values go now that it changed.
    pub(super) fn log_mode(&self, account: u64, mode: Mode) {
        match mode {
            Mode::Put => info!(
                account,
                mode = "PUT",
                "values go by PUT (the backend accepted PUT on accounts/{account}/values), each stamped \
                 with its tick's time: a retried request overwrites what it already stored, so every \
                 value is stored exactly once"
            ),
            Mode::Post => warn!(
                account,
                mode = "POST",
                "the bot may not PUT values (403 on PUT accounts/{account}/values): live values go by POST, \
                 stamped by the backend on arrival and delivered at least once (a retry after a lost answer \
                 can store a value twice), and of the buffered values only the newest of each path is sent \
                 and the rest dropped. Grant the bot PUT on accounts/{account}/values to fix it; \
                 PUT is tried again every 10 minutes"
            ),
        }
        let (put, post) = self.link.mode_counts();
        self.metrics.set_send_mode(put, post);
    }

    fn sync_spool(&mut self) {
        if let Some(file) = self.backlog.take_dirty() {
            tokio::task::spawn_blocking(move || {
                if let Err(e) = file.sync_data() {
                    warn!(error = %e, "could not fsync the spool");
                }
            });
        }
    }
}
