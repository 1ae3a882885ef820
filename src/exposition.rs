//! Collected values as Prometheus gauges: the "exporter" half of a bot.
//!
//! After every run the runtime hands the run's values to a [`ValueStore`]
//! ([`ValueStore::update`]); the admin server appends them to `/metrics` as
//! gauges ([`ValueStore::render`]). The store is on by default: every bot is
//! also an exporter. A job's series are exactly those of its last run, and a
//! removed job's series go with it ([`ValueStore::remove_job`],
//! [`ValueStore::retain_jobs`]), so nothing stale is ever exposed.
//!
//! # From a Grafolean path to a series
//!
//! A bot may install a [`PathMapper`] that names its own series
//! ([`ValueStore::with_mapper`]). For paths the mapper declines (it returns
//! `None`), and for bots without one, the generic rule applies
//! (`generic_mapping`):
//!
//! 1. A leading `entity.<id>.` pair is removed and becomes the label
//!    `entity="<id>"`.
//! 2. The metric name is `grafolean_value_` followed by the remaining
//!    segments joined with `_`. Characters outside `[a-zA-Z0-9_]` (such as
//!    `-` and the `%2e` escape's `%`) become `_`.
//!
//! So `entity.42.snmp.if-in.3` becomes `grafolean_value_snmp_if_in_3{entity="42"}`.
//! Paths that differ only in `.` versus `_` or `-` map to the same series;
//! the later value wins.
//!
//! Then, for both mapped and generic series:
//!
//! - the job's labels (such as `target="127.0.0.1"`, from
//!   [`JobSpec::labels`](crate::job::JobSpec::labels)) are added, unless the path
//!   already produced a label of that name;
//! - metric and label names are sanitised to Prometheus' character sets, and
//!   label values are escaped;
//! - the value is multiplied by [`MappedPath::scale`] (1 unless a mapper says
//!   otherwise, for instance 0.001 to turn milliseconds into seconds).
//!
//! A mapper must not produce names that the bot or the SDK already registers
//! (`grafolean_bot_*`, `process_*`); such names fall back to the generic rule.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;

use crate::job::JobId;
use crate::value::Value;

/// What a path becomes on `/metrics`: a metric name, labels, and a scale.
///
/// Every value a bot returns is also exported on `/metrics` as a gauge. By
/// default a path maps by the generic rule: a leading `entity.<id>.` becomes
/// the label `entity="<id>"`, and the rest becomes `grafolean_value_<segments
/// joined with _>`, so `entity.42.snmp.if-in.3` is
/// `grafolean_value_snmp_if_in_3{entity="42"}`. A bot names its own series with
/// [`Bot::with_path_mapper`](crate::runtime::Bot::with_path_mapper); the job's labels
/// ([`JobSpec::with_label`](crate::job::JobSpec::with_label)) are added to either.
/// Names are sanitised and label values escaped (and capped in length) by the
/// SDK.
///
/// ```
/// use grafolean_collector::MappedPath;
///
/// fn map(path: &str) -> Option<MappedPath> {
///     let (entity, rest) = MappedPath::split_entity(path);
///     (rest == "ping.success").then(|| {
///         MappedPath::new("ping_success_ratio").with_label("entity", entity.unwrap_or(""))
///     })
/// }
/// assert_eq!(map("entity.42.ping.success").unwrap().labels, [("entity".into(), "42".into())]);
/// assert!(map("entity.42.ping.p0.ok").is_none());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MappedPath {
    /// The metric name. It is sanitised before use.
    pub name: String,
    /// Labels derived from the path. The job's labels are added after these.
    pub labels: Vec<(String, String)>,
    /// The factor the value is multiplied by (1.0 by default).
    pub scale: f64,
}

impl MappedPath {
    /// A mapping to `name`, without labels, scale 1.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: Vec::new(),
            scale: 1.0,
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// Sets the factor the value is multiplied by, such as 0.001 for ms → s.
    #[must_use]
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Splits a leading `entity.<id>.` pair off a path, for a mapper.
    ///
    /// ```
    /// use grafolean_collector::MappedPath;
    /// assert_eq!(MappedPath::split_entity("entity.42.ping.success"), (Some("42"), "ping.success"));
    /// assert_eq!(MappedPath::split_entity("ping.success"), (None, "ping.success"));
    /// assert_eq!(MappedPath::split_entity("entity.42"), (None, "entity.42"));
    /// ```
    pub fn split_entity(path: &str) -> (Option<&str>, &str) {
        split_entity(path)
    }
}

/// A bot's own path → series rule. `None` means "use `generic_mapping`".
pub(crate) type PathMapper = Arc<dyn Fn(&str) -> Option<MappedPath> + Send + Sync>;

/// Splits a leading `entity.<id>.` pair off a path; see [`MappedPath::split_entity`].
pub(crate) fn split_entity(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("entity.") {
        if let Some((id, rest)) = rest.split_once('.') {
            if !id.is_empty() && !rest.is_empty() {
                return (Some(id), rest);
            }
        }
    }
    (None, path)
}

/// The generic path → series rule (see the [module docs](self)).
pub(crate) fn generic_mapping(path: &str) -> MappedPath {
    let (entity, rest) = split_entity(path);
    let mut name = String::with_capacity(16 + rest.len());
    name.push_str("grafolean_value_");
    name.extend(rest.chars().map(|c| if c == '.' { '_' } else { c }));
    let mut mapped = MappedPath::new(sanitize_metric_name(&name));
    if let Some(entity) = entity {
        mapped.labels.push(("entity".into(), entity.into()));
    }
    mapped
}

/// Turns any string into a valid metric name: characters outside
/// `[a-zA-Z0-9_:]` become `_`, and a leading digit gets a `_` in front.
pub(crate) fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// Turns any string into a valid label name: characters outside
/// `[a-zA-Z0-9_]` become `_`, a leading digit gets a `_` in front, and the
/// reserved `__` prefix is cut to `_`.
pub(crate) fn sanitize_label_name(name: &str) -> String {
    let mut out = sanitize(name, false);
    while out.starts_with("__") {
        out.remove(0);
    }
    out
}

fn sanitize(name: &str, colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':') {
            c
        } else {
            '_'
        }
    }));
    out
}

/// The most bytes of a label value that are exported (before escaping): a
/// 5 MB entity name must not make every scrape 26 MB.
pub(crate) const MAX_LABEL_VALUE: usize = 256;

/// What marks a label value that was cut at [`MAX_LABEL_VALUE`].
const LABEL_VALUE_CUT: &str = "…";

/// `value`, cut to at most [`MAX_LABEL_VALUE`] bytes on a character
/// boundary, and whether it was cut.
fn cap_label_value(value: &str) -> (&str, bool) {
    if value.len() <= MAX_LABEL_VALUE {
        return (value, false);
    }
    let mut end = MAX_LABEL_VALUE;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    (&value[..end], true)
}

/// A series' labels: sanitised names and capped values, sorted by name, in
/// one string `name\0value\0name\0value` (one allocation per series, read
/// in order at every scrape). Not escaped: prometheus-client's encoder
/// escapes label values, once.
type Labels = Arc<str>;

/// One series' key: the metric name and its labels.
type SeriesKey = (Arc<str>, Labels);

/// The current value of a series, and the job that last wrote it.
///
/// The value is an atomic cell shared with the writing job's
/// [`JobSeries`], so that a job whose paths and labels did not change since
/// its last update (the usual case: the same job, every interval) stores its
/// values straight into their cells, under the read lock, without mapping,
/// rendering or looking anything up.
#[derive(Debug)]
struct Sample {
    /// The value's `f64` bits.
    value: AtomicU64,
    owner: JobId,
    /// Set when another update replaced this cell in its family: the owner's
    /// shortcut must then take the slow path, which puts its own cell back.
    replaced: AtomicBool,
}

impl Sample {
    fn new(value: f64, owner: JobId) -> Arc<Self> {
        Arc::new(Self {
            value: AtomicU64::new(value.to_bits()),
            owner,
            replaced: AtomicBool::new(false),
        })
    }

    fn value(&self) -> f64 {
        f64::from_bits(self.value.load(Ordering::Relaxed))
    }
}

/// What a job wrote in its last update, and what it was made from.
#[derive(Debug, Default)]
struct JobSeries {
    /// The job's labels at that update.
    labels: Vec<(String, String)>,
    /// How many values, and a hash of their paths in order: kept instead of
    /// the paths themselves (about 70 bytes a series, 5.6 MB at 80,000).
    /// Two different path lists of one job hash alike with a chance of
    /// 2^-64 per update.
    paths: (usize, u64),
    /// Per value: its series, the mapping's scale, and the sample's cell.
    series: Vec<(SeriesKey, f64, Arc<Sample>)>,
}

impl JobSeries {
    /// Whether an update with these labels and values writes exactly the
    /// same series as this one did, and every cell is still in place.
    fn unchanged(&self, labels: &[(String, String)], values: &[Value]) -> bool {
        self.labels == labels
            && self.paths == paths_key(values)
            && self
                .series
                .iter()
                .all(|(_, _, s)| !s.replaced.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Metric name → label set → sample. Sorted, so each family is written
    /// once, in a stable order.
    families: BTreeMap<Arc<str>, BTreeMap<Labels, Arc<Sample>>>,
    /// The series each job wrote in its last update.
    jobs: HashMap<JobId, JobSeries>,
    /// The jobs currently scheduled, once [`ValueStore::retain_jobs`] was
    /// called: an update from any other job (a run that ended after its job
    /// was removed) is ignored, so a removed job's series never come back.
    live: Option<HashSet<JobId>>,
    series: usize,
}

impl Inner {
    /// Removes a series if `job` still owns it.
    fn remove_owned(&mut self, (name, labels): &SeriesKey, job: &JobId) {
        let Some(family) = self.families.get_mut(name) else {
            return;
        };
        if family.get(labels).is_some_and(|s| &s.owner == job) {
            family.remove(labels);
            self.series -= 1;
            if family.is_empty() {
                self.families.remove(name);
            }
        }
    }

    fn remove_job(&mut self, job: &JobId) {
        for (key, _, _) in self.jobs.remove(job).unwrap_or_default().series {
            self.remove_owned(&key, job);
        }
    }
}

/// The latest collected values, by job, ready to be rendered as gauges.
///
/// Cheap to clone; clones share the same series.
#[derive(Clone, Default)]
pub struct ValueStore {
    inner: Arc<RwLock<Inner>>,
    mapper: Option<PathMapper>,
}

impl fmt::Debug for ValueStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueStore")
            .field("series", &self.len())
            .field("mapper", &self.mapper.is_some())
            .finish()
    }
}

impl ValueStore {
    /// An empty store that uses the generic mapping rule.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the bot's own mapping rule; paths it returns `None` for use
    /// `generic_mapping`.
    #[must_use]
    pub fn with_mapper(
        mut self,
        mapper: impl Fn(&str) -> Option<MappedPath> + Send + Sync + 'static,
    ) -> Self {
        self.mapper = Some(Arc::new(mapper));
        self
    }

    /// Maps one path with the bot's rule or the generic one.
    pub fn map_path(&self, path: &str) -> MappedPath {
        self.mapper
            .as_ref()
            .and_then(|m| m(path))
            .filter(|m| !m.name.starts_with("grafolean_bot_") && !m.name.starts_with("process_"))
            .unwrap_or_else(|| generic_mapping(path))
    }

    /// Replaces the series of `job` with those of `values`; `labels` are the
    /// job's labels. Series the job had before and no longer has are removed.
    pub fn update(&self, job: &JobId, labels: &[(String, String)], values: &[Value]) {
        // The shortcut: the same series as last time, written into their
        // cells under the read lock.
        {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if let Some(last) = inner.jobs.get(job).filter(|j| j.unchanged(labels, values)) {
                for ((_, scale, sample), v) in last.series.iter().zip(values) {
                    sample
                        .value
                        .store((v.value * scale).to_bits(), Ordering::Relaxed);
                }
                return;
            }
        }
        // Map and render outside the lock.
        let mut fresh: Vec<(SeriesKey, f64, Arc<Sample>)> = Vec::with_capacity(values.len());
        for v in values {
            let mapped = self.map_path(&v.path);
            let key = (
                Arc::from(sanitize_metric_name(&mapped.name)),
                label_set(&mapped.labels, labels),
            );
            let sample = Sample::new(v.value * mapped.scale, job.clone());
            fresh.push((key, mapped.scale, sample));
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.live.as_ref().is_some_and(|live| !live.contains(job)) {
            return;
        }
        let old = inner.jobs.remove(job).unwrap_or_default();
        for ((name, lbl), _, sample) in &fresh {
            let family = inner.families.entry(name.clone()).or_default();
            match family.insert(lbl.clone(), sample.clone()) {
                None => inner.series += 1,
                Some(previous) => previous.replaced.store(true, Ordering::Relaxed),
            }
        }
        let kept: HashSet<&SeriesKey> = fresh.iter().map(|(k, _, _)| k).collect();
        let gone: Vec<SeriesKey> = old
            .series
            .into_iter()
            .map(|(k, _, _)| k)
            .filter(|k| !kept.contains(k))
            .collect();
        for key in &gone {
            inner.remove_owned(key, job);
        }
        if !fresh.is_empty() {
            let series = JobSeries {
                labels: labels.to_vec(),
                paths: paths_key(values),
                series: fresh,
            };
            inner.jobs.insert(job.clone(), series);
        }
    }

    /// Up to `max` of the series `job` wrote at its last update, as
    /// `name{labels}` without the job's own labels, with their values; and
    /// how many it wrote. For the status page.
    pub(crate) fn job_values(&self, job: &JobId, max: usize) -> (Vec<(String, f64)>, usize) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(written) = inner.jobs.get(job) else {
            return (Vec::new(), 0);
        };
        let own: Vec<String> = written
            .labels
            .iter()
            .map(|(n, _)| sanitize_label_name(n))
            .collect();
        let shown = written
            .series
            .iter()
            .take(max)
            .map(|((name, labels), _, sample)| {
                let mut series = name.to_string();
                let mut first = true;
                let mut parts = labels.split('\0');
                while let (Some(n), Some(v)) = (parts.next(), parts.next()) {
                    if own.iter().any(|o| o == n) {
                        continue;
                    }
                    series.push(if first { '{' } else { ',' });
                    first = false;
                    series.push_str(n);
                    series.push_str("=\"");
                    series.push_str(v);
                    series.push('"');
                }
                if !first {
                    series.push('}');
                }
                (series, sample.value())
            })
            .collect();
        (shown, written.series.len())
    }

    /// Removes every series of `job`.
    #[cfg(any(test, feature = "testing"))]
    pub fn remove_job(&self, job: &JobId) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.remove_job(job);
    }

    /// Makes `live` the jobs whose values are kept: removes the series of every
    /// other job, and ignores their updates from now on. The runtime calls
    /// this before it hands the new job set to the scheduler, so that a new
    /// job's first run is kept and a removed job's last run is not.
    pub fn retain_jobs<'a>(&self, live: impl IntoIterator<Item = &'a JobId>) {
        let live: HashSet<JobId> = live.into_iter().cloned().collect();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let dead: Vec<JobId> = inner
            .jobs
            .keys()
            .filter(|j| !live.contains(j))
            .cloned()
            .collect();
        for job in &dead {
            inner.remove_job(job);
        }
        inner.live = Some(live);
    }

    /// The number of series.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).series
    }

    /// Whether there are no series.
    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value gauges, encoded by prometheus-client with the rest of
/// `/metrics`: one `gauge` family per metric name.
impl Collector for ValueStore {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        for (name, series) in &inner.families {
            // NaN and infinities are not values in Grafolean (the sender drops
            // them), and are not exported either; nor is a family of only them.
            if !series.values().any(|s| s.value().is_finite()) {
                continue;
            }
            let mut family =
                encoder.encode_descriptor(name, "A collected value", None, MetricType::Gauge)?;
            for (labels, sample) in series {
                let value = sample.value();
                if value.is_finite() {
                    family
                        .encode_family(&LabelPairs(labels))?
                        .encode_gauge(&value)?;
                }
            }
        }
        Ok(())
    }
}

/// The number of `values` and a hash of their paths, in order (see
/// [`JobSeries`]). The seed is fixed: the key is compared only within one
/// process.
fn paths_key(values: &[Value]) -> (usize, u64) {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::quality::FixedState::with_seed(0x6772_6166_6f6c_6561).build_hasher();
    for v in values {
        h.write(v.path.as_bytes());
        h.write_u8(0);
    }
    (values.len(), h.finish())
}

/// The index of the first NUL in `s`, or its length.
fn nul(s: &str) -> usize {
    s.bytes().position(|b| b == 0).unwrap_or(s.len())
}

/// A stored label set, as prometheus-client encodes one.
struct LabelPairs<'a>(&'a str);

impl EncodeLabelSet for LabelPairs<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        // A plain scan: the strings are short, and `split` (memchr) costs
        // more than the rest of the encode here.
        let mut rest = self.0;
        loop {
            let name_end = nul(rest);
            let name = &rest[..name_end];
            let after = &rest[(name_end + 1).min(rest.len())..];
            let value_end = nul(after);
            (name, &after[..value_end]).encode(encoder.encode_label())?;
            if value_end >= after.len() {
                return Ok(());
            }
            rest = &after[value_end + 1..];
        }
    }
}

/// The label set of a series: the path's labels, then the job's labels whose
/// names are not taken yet, names sanitised, values capped, sorted by name.
fn label_set(path_labels: &[(String, String)], job_labels: &[(String, String)]) -> Labels {
    let mut all: Vec<(String, std::borrow::Cow<'_, str>)> =
        Vec::with_capacity(path_labels.len() + job_labels.len());
    for (name, value) in path_labels.iter().chain(job_labels) {
        let name = sanitize_label_name(name);
        if !all.iter().any(|(n, _)| *n == name) {
            all.push((name, capped_label_value(value)));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (i, (name, value)) in all.iter().enumerate() {
        if i > 0 {
            out.push('\0');
        }
        out.push_str(name);
        out.push('\0');
        // NUL separates the pairs; it has no place in a label value.
        out.extend(
            value
                .chars()
                .map(|c| if c == '\0' { '\u{fffd}' } else { c }),
        );
    }
    out.into()
}

/// `value`, cut to at most [`MAX_LABEL_VALUE`] bytes on a character
/// boundary and marked, if it is longer. The one place where every label
/// value the SDK exports is bounded; prometheus-client escapes them.
pub(crate) fn capped_label_value(value: &str) -> std::borrow::Cow<'_, str> {
    match cap_label_value(value) {
        (value, false) => value.into(),
        (value, true) => format!("{value}{LABEL_VALUE_CUT}").into(),
    }
}

#[cfg(test)]
mod tests;
