//! The job model: what a bot asks the scheduler to run, and what a run is told.
//!
//! A job is identified by a stable [`JobId`]. It fires at one or more
//! [`Intervals`], aligned either to an explicit start time or to a phase that
//! is derived from its id ([`Align`]). When several intervals coincide, the job
//! fires once, and the [`Tick`] it receives names every interval that caused it.

use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A job's identity, stable across config refreshes and restarts.
///
/// The scheduler reconciles jobs by id: a job whose id and spec did not change
/// keeps its phase and its next firing. Cloning it is cheap (it is shared).
///
/// ```
/// use grafolean_collector::JobId;
/// let id = JobId::new("entity.1127398355");
/// assert_eq!(id.as_str(), "entity.1127398355");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(Arc<str>);

impl JobId {
    /// Creates a job id from any string.
    pub fn new(id: impl Into<String>) -> Self {
        Self(Arc::from(id.into()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for JobId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for JobId {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

/// Why a set of intervals was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntervalError {
    /// An interval of 0 seconds was given.
    #[error("an interval of 0 seconds is not allowed; use a whole number of seconds >= 1")]
    Zero,
    /// No interval was given at all.
    #[error("a job needs at least one interval; the set of intervals was empty")]
    Empty,
}

/// A non-empty set of intervals, in whole seconds. Cloning it is cheap (it is
/// shared), since every tick carries one.
///
/// ```
/// use grafolean_collector::Intervals;
/// let iv = Intervals::new([10, 60, 10]).unwrap();
/// assert_eq!(iv.iter().collect::<Vec<_>>(), vec![10, 60]);
/// assert!(Intervals::new([0]).is_err());
/// assert!(Intervals::new(Vec::<u32>::new()).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Intervals(Repr);

/// The intervals, sorted and without duplicates. One interval, the common
/// case, is kept inline, so that copying it for every firing reads no other
/// memory.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    One(NonZeroU32),
    Many(Arc<[NonZeroU32]>),
}

impl Intervals {
    /// Builds a set from seconds. Rejects 0 and an empty set.
    pub fn new(seconds: impl IntoIterator<Item = u32>) -> Result<Self, IntervalError> {
        let mut set = BTreeSet::new();
        for s in seconds {
            set.insert(NonZeroU32::new(s).ok_or(IntervalError::Zero)?);
        }
        let mut sorted = set.into_iter();
        match (sorted.next(), sorted.len()) {
            (None, _) => Err(IntervalError::Empty),
            (Some(one), 0) => Ok(Self(Repr::One(one))),
            (Some(first), _) => Ok(Self(Repr::Many(
                std::iter::once(first).chain(sorted).collect(),
            ))),
        }
    }

    /// The intervals, sorted.
    fn as_slice(&self) -> &[NonZeroU32] {
        match &self.0 {
            Repr::One(one) => std::slice::from_ref(one),
            Repr::Many(many) => many,
        }
    }

    /// A set of exactly one interval.
    ///
    /// ```
    /// use grafolean_collector::Intervals;
    /// assert_eq!(Intervals::one(5).unwrap().smallest(), 5);
    /// ```
    pub fn one(seconds: u32) -> Result<Self, IntervalError> {
        Self::new([seconds])
    }

    /// The intervals in seconds, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.as_slice().iter().map(|s| s.get())
    }

    /// Whether `seconds` is one of the intervals.
    pub fn contains(&self, seconds: u32) -> bool {
        NonZeroU32::new(seconds).is_some_and(|s| self.as_slice().binary_search(&s).is_ok())
    }

    /// The smallest interval, in seconds.
    pub fn smallest(&self) -> u32 {
        self.as_slice()[0].get()
    }

    /// The number of intervals (always at least one).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }
}

impl fmt::Debug for Intervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Intervals")
            .field(&self.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Display for Intervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

/// Where a job's firings fall within each interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Align {
    /// A phase derived deterministically from the job id, so that many jobs with
    /// the same interval are spread evenly across it. It is the same across
    /// refreshes and restarts. It falls on a step of 1 ms for jobs every few
    /// seconds and up to 10 ms for jobs every minute or less often (one
    /// 6,000th of the smallest interval), so that their firings share the
    /// timer's wakes.
    #[default]
    Spread,
    /// Firings at `start + k·interval` for every interval, as the Python
    /// library's `start_ts`.
    Start(SystemTime),
}

/// One job: an id, when it fires, and the parameters its runs receive.
///
/// A job made from an entity should be made with [`JobSpec::for_entity`], which
/// also sets the Grafolean account its values go to; a job without an account
/// is refused while the bot sends to Grafolean (with a warning naming it).
///
/// ```
/// use grafolean_collector::{Intervals, JobSpec};
/// let spec = JobSpec::new("ping.localhost", Intervals::one(5).unwrap(), "127.0.0.1".to_string())
///     .with_account(667410879);
/// assert_eq!(spec.account, Some(667410879));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec<P> {
    /// The stable id.
    pub id: JobId,
    /// When it fires.
    pub intervals: Intervals,
    /// How its firings are aligned.
    pub align: Align,
    /// The Grafolean account its values are sent to; `None` keeps them local
    /// (Prometheus, `--once`).
    pub account: Option<u64>,
    /// Labels that describe the job on `/metrics` and the status page, such as
    /// `target="127.0.0.1"`. Shared, so that every run's report carries them
    /// for the cost of a reference count.
    pub labels: Arc<[(String, String)]>,
    /// What the run needs. A change of params reschedules the job.
    pub params: P,
}

impl<P> JobSpec<P> {
    /// A spec with the default alignment, no account and no labels.
    pub fn new(id: impl Into<JobId>, intervals: Intervals, params: P) -> Self {
        Self {
            id: id.into(),
            intervals,
            align: Align::default(),
            account: None,
            labels: Arc::new([]),
            params,
        }
    }

    /// Sets the alignment.
    #[must_use]
    pub fn with_align(mut self, align: Align) -> Self {
        self.align = align;
        self
    }

    /// Sets the Grafolean account that the values go to.
    #[must_use]
    pub fn with_account(mut self, account: u64) -> Self {
        self.account = Some(account);
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut labels = self.labels.to_vec();
        labels.push((name.into(), value.into()));
        self.labels = labels.into();
        self
    }
}

/// What a run is told: when it was meant to fire, and which intervals caused it.
///
/// ```
/// use grafolean_collector::{Intervals, Tick};
/// use std::time::SystemTime;
/// let tick = Tick { at: SystemTime::UNIX_EPOCH, affecting: Intervals::new([10, 60]).unwrap() };
/// assert!(tick.affecting.contains(60));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The firing's intended time. Values are stamped with it.
    pub at: SystemTime,
    /// The intervals whose firing coincided at `at`.
    pub affecting: Intervals,
}

impl Tick {
    /// A tick at the current time, affecting all of `intervals` (used by `--once`).
    pub fn now(intervals: &Intervals) -> Self {
        Self {
            at: SystemTime::now(),
            affecting: intervals.clone(),
        }
    }

    /// Seconds since the UNIX epoch, as a float.
    pub fn unix_seconds(&self) -> f64 {
        self.at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_reject_zero_and_empty() {
        assert_eq!(Intervals::new([5, 0]), Err(IntervalError::Zero));
        assert_eq!(Intervals::new([]), Err(IntervalError::Empty));
    }

    #[test]
    fn intervals_dedupe_and_sort() {
        let iv = Intervals::new([60, 10, 60]).unwrap();
        assert_eq!(iv.iter().collect::<Vec<_>>(), vec![10, 60]);
        assert_eq!(iv.smallest(), 10);
        assert_eq!(iv.to_string(), "10s,60s");
    }
}
