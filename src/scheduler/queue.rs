//! The job table and the timer queue: which jobs exist and when each fires next.
//!
//! Jobs live in a slab (`Vec<Option<Entry>>`) indexed by a `HashMap` from id to
//! slot, and their next firings in an ordered set of `(wall ms, slot)`, one
//! item per job. A firing costs O(log n), a sync O(n).
//!
//! The set is a `BTreeSet` rather than a binary heap: taking the earliest
//! item walks the B-tree's leftmost path, which stays in cache, while a heap's
//! pop walks a fresh root-to-leaf path through the whole array every time. At
//! 100,000 jobs the heap's pop was the largest cost of an idle scheduler.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::timing::{self, Millis, millis_to_system};
use super::{JobStatus, SyncSummary};
use crate::job::{Intervals, JobId, JobSpec, Tick};

/// A job's runs: whether one is going, the queued firing, the last outcome.
///
/// Shared by the job's entry and its run in flight, behind its own mutex, so
/// that a finishing run never waits for the scheduler's state lock.
pub(crate) struct RunState<P> {
    /// Whether a run of this job is going (or waiting for a slot).
    pub running: bool,
    /// A firing waiting for the current run to finish (`OverlapPolicy::QueueOne`).
    pub queued: Option<Queued<P>>,
    /// Set when the job is removed: its queued firing must not run.
    pub removed: bool,
    /// The task of the run going now, for shutdown to abort; tagged with the
    /// run's number so that a finished run never clears a later one's.
    pub task: Option<(u64, AbortHandle)>,
    pub last_run: Option<Millis>,
    pub last_duration: Option<Duration>,
    pub last_error: Option<String>,
    /// Failed runs in a row, so that a failure is logged when it starts, when
    /// it ends, and sparsely in between, not at every firing.
    pub failures: u64,
}

/// A firing queued behind a run in flight, with the spec it runs with.
pub(crate) struct Queued<P> {
    pub spec: Arc<JobSpec<P>>,
    pub tick: Tick,
    pub missed: u64,
}

impl<P> Default for RunState<P> {
    fn default() -> Self {
        Self {
            running: false,
            queued: None,
            removed: false,
            task: None,
            last_run: None,
            last_duration: None,
            last_error: None,
            failures: 0,
        }
    }
}

/// Locks a job's [`RunState`] (never poisoned in practice; see `Shared::lock`).
pub(crate) fn lock_run<P>(run: &Mutex<RunState<P>>) -> MutexGuard<'_, RunState<P>> {
    run.lock().unwrap_or_else(|e| e.into_inner())
}

/// What an entry keeps of its intervals: the interval in ms if there is only
/// one (else 0), and the smallest in seconds.
fn interval_cache(intervals: &Intervals) -> (Millis, u32) {
    let single = if intervals.len() == 1 {
        Millis::from(intervals.smallest()) * 1000
    } else {
        0
    };
    (single, intervals.smallest())
}

/// One scheduled job.
pub(crate) struct Entry<P> {
    pub spec: Arc<JobSpec<P>>,
    /// The instant its firings are aligned to (`timing::job_start`).
    pub start: Millis,
    /// Its next firing, queued as `(next_at, slot)`.
    pub next_at: Millis,
    /// Its interval in ms if it has only one, else 0: the common case, whose
    /// firings are computed without reading the spec.
    pub single_ms: Millis,
    /// Its smallest interval, in seconds (the default run timeout).
    pub smallest: u32,
    /// The sync that last saw this id (to find removed and duplicated ids).
    pub seen: u64,
    /// Its runs; kept when the spec changes.
    pub run: Arc<Mutex<RunState<P>>>,
}

/// What a sync let go of, to be freed outside the lock.
pub(crate) struct Garbage<P> {
    specs: Vec<JobSpec<P>>,
    replaced: Vec<Arc<JobSpec<P>>>,
    removed: Vec<Entry<P>>,
}

impl<P> Default for Garbage<P> {
    fn default() -> Self {
        Self {
            specs: Vec::new(),
            replaced: Vec::new(),
            removed: Vec::new(),
        }
    }
}

impl<P> Garbage<P> {
    /// Makes room for the unchanged specs of a sync of `specs` jobs.
    pub fn reserve(&mut self, specs: usize) {
        self.specs.reserve(specs);
    }
}

impl<P: Send + Sync + 'static> Garbage<P> {
    /// Frees it: inline when small, else on tokio's blocking pool so that
    /// neither the caller nor the timer loop waits for it.
    pub fn dispose(self) {
        if self.specs.len() + self.replaced.len() + self.removed.len() < 1024 {
            drop(self);
        } else {
            tokio::task::spawn_blocking(move || drop(self));
        }
    }
}

/// Job ids to slots, with foldhash (already hashbrown's hasher): ids come from
/// the bot's own config, and foldhash is fast on short strings.
type IdMap = HashMap<JobId, u32, foldhash::fast::RandomState>;

/// A job's firing popped from the queue, to be run or skipped.
pub(crate) struct Due {
    pub slot: u32,
    pub tick: Tick,
    pub missed: u64,
}

/// The scheduler's mutable state, behind one mutex.
pub(crate) struct State<P> {
    slots: Vec<Option<Entry<P>>>,
    free: Vec<u32>,
    index: IdMap,
    queue: BTreeSet<(Millis, u32)>,
    syncs: u64,
    /// Removed jobs that had a run going, so that shutdown can still abort it.
    pub orphans: Vec<Arc<Mutex<RunState<P>>>>,
    /// The wall time at the previous wake, to notice the clock stepping back.
    pub last_now: Millis,
}

impl<P> State<P> {
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            index: IdMap::default(),
            queue: BTreeSet::new(),
            syncs: 0,
            orphans: Vec::new(),
            last_now: Millis::MIN,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn entry_mut(&mut self, slot: u32) -> Option<&mut Entry<P>> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// The earliest queued firing.
    pub fn next_wake(&self) -> Option<Millis> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// (Re)queues the job in `slot` at its first firing at or after `now`.
    fn schedule_from(&mut self, slot: u32, now: Millis) {
        let Some(e) = self.slots[slot as usize].as_mut() else {
            return;
        };
        self.queue.remove(&(e.next_at, slot));
        e.next_at = timing::next_at(e.start, &e.spec.intervals, now - 1);
        self.queue.insert((e.next_at, slot));
    }

    /// Pops up to `limit` firings due at or before `now`, queues each job's
    /// next firing (strictly after `now`, so a stall gives one firing per
    /// job, not a burst) and returns the firings.
    pub fn pop_due(&mut self, now: Millis, limit: usize) -> Vec<Due> {
        let mut due = Vec::new();
        while let Some(&(at, slot)) = self.queue.first() {
            if at > now || due.len() >= limit {
                break;
            }
            self.queue.pop_first();
            let Some(e) = self.slots[slot as usize].as_mut() else {
                continue;
            };
            let c = if e.single_ms > 0 {
                timing::coalesce_one(e.start, e.single_ms, &e.spec.intervals, at, now)
            } else {
                let c = timing::coalesce(e.start, &e.spec.intervals, at, now);
                e.next_at = timing::next_at(e.start, &e.spec.intervals, now);
                c
            };
            if e.single_ms > 0 {
                e.next_at = c.at + e.single_ms;
            }
            self.queue.insert((e.next_at, slot));
            let tick = Tick {
                at: millis_to_system(c.at),
                affecting: c.affecting,
            };
            due.push(Due {
                slot,
                tick,
                missed: c.missed,
            });
        }
        due
    }

    /// Recomputes every job's next firing from `now` (after the wall clock
    /// stepped backwards, which would otherwise delay every job by the step).
    pub fn reschedule_all(&mut self, now: Millis) {
        self.queue.clear();
        for slot in 0..self.slots.len() as u32 {
            self.schedule_from(slot, now);
        }
    }

    /// Reconciles the job set with `specs` by id.
    ///
    /// What the sync drops (unchanged specs, replaced specs, removed jobs) is
    /// put in `garbage` instead, so that the caller can free it after
    /// releasing the lock: at 100,000 jobs, freeing is most of a sync's cost.
    #[cfg(test)]
    pub fn sync(
        &mut self,
        specs: Vec<JobSpec<P>>,
        now: Millis,
        garbage: &mut Garbage<P>,
    ) -> SyncSummary
    where
        P: PartialEq,
    {
        let sync = self.begin_sync();
        let mut summary = SyncSummary::default();
        self.sync_some(specs, sync, now, garbage, &mut summary);
        self.end_sync(sync, garbage, &mut summary);
        summary
    }

    /// Starts a sync in parts: [`sync_some`](Self::sync_some) for each batch
    /// of specs, then [`end_sync`](Self::end_sync). The lock may be released
    /// between the parts (so that due jobs fire meanwhile), but two syncs
    /// must not interleave.
    pub fn begin_sync(&mut self) -> u64 {
        self.syncs += 1;
        self.syncs
    }

    /// Adds, changes or keeps the jobs of `specs` (part of sync `sync`).
    pub fn sync_some(
        &mut self,
        specs: impl IntoIterator<Item = JobSpec<P>>,
        sync: u64,
        now: Millis,
        garbage: &mut Garbage<P>,
        summary: &mut SyncSummary,
    ) where
        P: PartialEq,
    {
        for spec in specs {
            if let Some(&slot) = self.index.get(&spec.id) {
                let e = self.slots[slot as usize]
                    .as_mut()
                    .expect("indexed slot is occupied");
                if e.seen == sync {
                    tracing::warn!(job = %spec.id, "duplicated job id in one sync; keeping the first spec");
                    summary.duplicates += 1;
                    garbage.specs.push(spec);
                    continue;
                }
                e.seen = sync;
                if *e.spec == spec {
                    summary.unchanged += 1;
                    garbage.specs.push(spec);
                    continue;
                }
                summary.changed += 1;
                // A firing queued under the old spec is dropped with it.
                lock_run(&e.run).queued = None;
                e.start = timing::job_start(&spec.id, &spec.intervals, spec.align);
                (e.single_ms, e.smallest) = interval_cache(&spec.intervals);
                garbage
                    .replaced
                    .push(std::mem::replace(&mut e.spec, Arc::new(spec)));
                self.schedule_from(slot, now);
            } else {
                summary.added += 1;
                let (single_ms, smallest) = interval_cache(&spec.intervals);
                let entry = Entry {
                    start: timing::job_start(&spec.id, &spec.intervals, spec.align),
                    single_ms,
                    smallest,
                    spec: Arc::new(spec),
                    next_at: Millis::MIN,
                    seen: sync,
                    run: Arc::default(),
                };
                let id = entry.spec.id.clone();
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot as usize] = Some(entry);
                        slot
                    }
                    None => {
                        self.slots.push(Some(entry));
                        (self.slots.len() - 1) as u32
                    }
                };
                self.index.insert(id, slot);
                self.schedule_from(slot, now);
            }
        }
    }

    /// Ends sync `sync`: removes every job it did not see.
    pub fn end_sync(&mut self, sync: u64, garbage: &mut Garbage<P>, summary: &mut SyncSummary) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].as_ref().is_some_and(|e| e.seen != sync) {
                let e = self.slots[slot].take().expect("checked above");
                self.index.remove(&e.spec.id);
                self.queue.remove(&(e.next_at, slot as u32));
                let mut run = lock_run(&e.run);
                run.removed = true;
                run.queued = None;
                if run.running {
                    self.orphans.push(e.run.clone());
                }
                drop(run);
                garbage.removed.push(e);
                self.free.push(slot as u32);
                summary.removed += 1;
            }
        }
        self.orphans.retain(|run| lock_run(run).running);
    }

    /// The tasks of every run going now, including runs of removed jobs.
    pub fn running_tasks(&self) -> Vec<AbortHandle> {
        let jobs = self.slots.iter().flatten().map(|e| &e.run);
        jobs.chain(self.orphans.iter())
            .filter_map(|run| lock_run(run).task.as_ref().map(|(_, t)| t.clone()))
            .collect()
    }

    pub fn status(&self) -> Vec<JobStatus> {
        self.slots
            .iter()
            .flatten()
            .map(|e| {
                let run = lock_run(&e.run);
                JobStatus {
                    id: e.spec.id.clone(),
                    intervals: e.spec.intervals.clone(),
                    labels: e.spec.labels.to_vec(),
                    next_firing: Some(millis_to_system(e.next_at)),
                    last_run: run.last_run.map(millis_to_system),
                    last_duration: run.last_duration,
                    last_error: run.last_error.clone(),
                    running: run.running,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Align, Intervals};

    fn spec(id: &str, secs: u32, params: u32) -> JobSpec<u32> {
        JobSpec::new(id, Intervals::one(secs).unwrap(), params)
            .with_align(Align::Start(std::time::SystemTime::UNIX_EPOCH))
    }

    fn sync(state: &mut State<u32>, specs: Vec<JobSpec<u32>>, now: Millis) -> SyncSummary {
        let mut garbage = Garbage::default();
        state.sync(specs, now, &mut garbage)
    }

    #[test]
    fn the_queue_holds_exactly_one_item_per_job() {
        let mut state = State::new();
        sync(
            &mut state,
            vec![spec("a", 10, 0), spec("b", 10, 0), spec("c", 5, 0)],
            1,
        );
        assert_eq!(state.queue.len(), 3);
        // Change one, remove one, add one: still one item each, no stale ones.
        let s = sync(
            &mut state,
            vec![spec("a", 10, 1), spec("b", 10, 0), spec("d", 7, 0)],
            2,
        );
        assert_eq!((s.added, s.changed, s.removed, s.unchanged), (1, 1, 1, 1));
        assert_eq!(state.queue.len(), 3);
        assert_eq!(state.len(), 3);
        // Firings requeue the job rather than adding items.
        let due = state.pop_due(60_000, usize::MAX);
        assert_eq!(due.len(), 3);
        assert_eq!(state.queue.len(), 3);
    }

    #[test]
    fn pop_due_stops_at_the_batch_limit_and_resumes() {
        let mut state = State::new();
        let specs = (0..10).map(|n| spec(&format!("j{n}"), 10, 0)).collect();
        sync(&mut state, specs, 0);
        assert_eq!(state.next_wake(), Some(0));
        assert_eq!(state.pop_due(0, 4).len(), 4);
        assert_eq!(state.pop_due(0, 4).len(), 4);
        assert_eq!(state.pop_due(0, 4).len(), 2);
        assert_eq!(state.pop_due(0, 4).len(), 0);
        assert_eq!(state.next_wake(), Some(10_000));
    }

    #[test]
    fn rescheduling_all_recovers_from_a_clock_step_back() {
        let mut state = State::new();
        sync(&mut state, vec![spec("a", 10, 0)], 100_000);
        state.pop_due(100_000, usize::MAX);
        assert_eq!(state.next_wake(), Some(110_000));
        // The wall clock steps back to 50 s: without a reschedule the job
        // would wait a minute; with one it fires at its next slot from now.
        state.reschedule_all(50_001);
        assert_eq!(state.next_wake(), Some(60_000));
        assert_eq!(state.queue.len(), 1);
    }

    #[test]
    fn sync_hands_what_it_drops_to_the_garbage() {
        let mut state = State::new();
        sync(&mut state, vec![spec("a", 10, 0), spec("b", 10, 0)], 0);
        let mut garbage = Garbage::default();
        let specs = vec![spec("a", 10, 0), spec("a", 10, 9), spec("c", 10, 0)];
        let s = state.sync(specs, 0, &mut garbage);
        assert_eq!(
            (s.unchanged, s.duplicates, s.added, s.removed),
            (1, 1, 1, 1)
        );
        // The unchanged "a" and the duplicate go to garbage, as does removed "b".
        assert_eq!(garbage.specs.len(), 2);
        assert_eq!(garbage.removed.len(), 1);
        assert_eq!(garbage.removed[0].spec.id.as_str(), "b");
    }
}
