//! Per-entity state between firings, and [`CounterStore`], the handle on it
//! that the collector and the state file share.
//!
//! An entity's state is its cached client, the GETBULK max-repetitions
//! learned for each walked column, and its counters' last readings
//! ([`EntityCounters`]). The collector creates it at an entity's first
//! firing and drops it when the entity's jobs are gone; the state file
//! ([`crate::state_file`]) reads the counters to save them, and puts saved
//! ones back after a restart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_snmp::Oid;

use crate::agent::Agent;
use crate::counters::Counters;

/// One entity's counters and what their age limit and validity depend on:
/// what the state file keeps across restarts.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct EntityCounters {
    /// Its longest sensor interval in seconds at the last firing (0: not
    /// known yet), for the age limit of its readings.
    pub longest_interval: u32,
    /// The agent the readings came from, if known: readings from another
    /// agent are not this one's.
    pub agent: Option<SocketAddr>,
    /// The counters' last readings.
    pub counters: Counters,
}

impl EntityCounters {
    /// Counters read from `agent`, for an entity whose longest interval was
    /// `longest_interval` seconds (0: not known).
    pub fn new(longest_interval: u32, agent: Option<SocketAddr>, counters: Counters) -> Self {
        Self {
            longest_interval,
            agent,
            counters,
        }
    }
}

/// One entity's state between firings.
#[derive(Debug, Default)]
pub(crate) struct EntityState {
    /// The cached client.
    pub(crate) client: Option<Agent>,
    /// Learned GETBULK max-repetitions per walked column.
    pub(crate) repetitions: HashMap<Oid, u32>,
    /// Its counters, with the agent they came from.
    pub(crate) kept: EntityCounters,
    /// Per sensor, why its rows were skipped at the last firing that said
    /// so (see [`crate::map::Mapped::skips`]).
    pub(crate) row_problems: HashMap<u64, Vec<String>>,
    /// Per sensor with walks, the rows they gave at its last firing; and,
    /// when they gave none after giving some, how many they gave before.
    pub(crate) walk_rows: HashMap<u64, WalkRows>,
}

/// What a sensor's walks gave at its last firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalkRows {
    /// This many rows (0 when they never gave any: an empty table).
    Rows(usize),
    /// None, after giving this many (said once, counted at each firing).
    EmptyAfter(usize),
}

impl EntityState {
    /// Notes that the entity's agent is `addr`, and returns the cached
    /// client. Readings and learned repetitions from another agent (the
    /// entity's address changed, or the state file came from another
    /// config) are dropped: they are not this one's.
    pub(crate) fn use_agent(&mut self, addr: SocketAddr) -> Option<Agent> {
        if self.kept.agent.is_some_and(|a| a != addr) {
            self.kept.counters = Counters::default();
            self.repetitions.clear();
        }
        self.kept.agent = Some(addr);
        self.client.clone()
    }

    /// Notes the entity's longest sensor interval, and forgets the counters
    /// of rows that went away: not read for two of those intervals plus
    /// 60 s before `now` (UNIX seconds).
    pub(crate) fn age_out(&mut self, longest_interval: u32, now: f64) {
        self.kept.longest_interval = longest_interval;
        self.kept
            .counters
            .forget_older_than(now - 2.0 * f64::from(longest_interval) - 60.0);
    }
}

/// Every entity's state, shared by the collector and the state file
/// (clones share it).
///
/// ```
/// use grafolean_snmp_bot::counters::Counters;
/// use grafolean_snmp_bot::state::{CounterStore, EntityCounters};
/// let oid = async_snmp::Oid::parse("1.3.6.1.2.1.2.2.1.10.1").unwrap();
/// let mut counters = Counters::default();
/// counters.update(&oid, 100, false, 1.0, None, Default::default());
/// let store = CounterStore::default();
/// store.restore([(7, EntityCounters::new(60, None, counters))].into());
/// assert_eq!(store.len(), 1);
/// let mut seen = Vec::new();
/// store.for_each(|id, kept| seen.push((id, kept.counters.len())));
/// assert_eq!(seen, vec![(7, 1)]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct CounterStore {
    entities: Arc<Mutex<HashMap<u64, Arc<Mutex<EntityState>>>>>,
}

/// Locks `m`, going on with the data of a holder that panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CounterStore {
    /// How many entities have state.
    pub fn len(&self) -> usize {
        lock(&self.entities).len()
    }

    /// Whether no entity has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every entity's counters, one entity locked at a time.
    pub fn for_each(&self, mut f: impl FnMut(u64, &EntityCounters)) {
        let entities: Vec<(u64, Arc<Mutex<EntityState>>)> = lock(&self.entities)
            .iter()
            .map(|(id, st)| (*id, st.clone()))
            .collect();
        for (entity_id, st) in entities {
            f(entity_id, &lock(&st).kept);
        }
    }

    /// Puts back counters kept from before a restart. An entity whose
    /// readings already come from another agent keeps its own; otherwise a
    /// reading already taken since is kept, and the others are added.
    pub fn restore(&self, entities: HashMap<u64, EntityCounters>) {
        let mut map = lock(&self.entities);
        for (entity_id, entity) in entities {
            let st = map.entry(entity_id).or_default().clone();
            let mut st = lock(&st);
            let kept = &mut st.kept;
            if kept.agent.is_some() && entity.agent.is_some() && kept.agent != entity.agent {
                continue;
            }
            if kept.longest_interval == 0 {
                kept.longest_interval = entity.longest_interval;
            }
            kept.agent = kept.agent.or(entity.agent);
            for (oid, sample) in entity.counters.iter() {
                kept.counters.restore(oid, *sample);
            }
        }
    }

    /// The state of `entity_id`, created empty if it has none.
    pub(crate) fn entity(&self, entity_id: u64) -> Arc<Mutex<EntityState>> {
        lock(&self.entities).entry(entity_id).or_default().clone()
    }

    /// Keeps the state of the entities for which `keep` is true.
    pub(crate) fn retain(&self, mut keep: impl FnMut(u64) -> bool) {
        lock(&self.entities).retain(|id, _| keep(*id));
    }
}
