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
//! ([`generic_mapping`]):
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
//!   [`JobSpec::labels`](crate::JobSpec::labels)) are added, unless the path
//!   already produced a label of that name;
//! - metric and label names are sanitised to Prometheus' character sets, and
//!   label values are escaped;
//! - the value is multiplied by [`MappedPath::scale`] (1 unless a mapper says
//!   otherwise, for instance 0.001 to turn milliseconds into seconds).
//!
//! A mapper must not produce names that the bot or the SDK already registers
//! (`grafolean_bot_*`, `process_*`); such names fall back to the generic rule.
//!
//! ```
//! use grafolean_collector::exposition::{MappedPath, ValueStore};
//! use grafolean_collector::{JobId, Value};
//!
//! let store = ValueStore::new().with_mapper(|path| {
//!     let (entity, rest) = grafolean_collector::exposition::split_entity(path);
//!     (rest == "ping.success").then(|| {
//!         MappedPath::new("ping_success_ratio").with_label("entity", entity.unwrap_or(""))
//!     })
//! });
//! let labels = [("target".to_string(), "127.0.0.1".to_string())];
//! store.update(&JobId::new("ping.1"), &labels, &[Value::new("entity.42.ping.success", 1.0)]);
//! let mut text = String::new();
//! store.render(&mut text);
//! assert_eq!(
//!     text,
//!     "# TYPE ping_success_ratio gauge\n\
//!      ping_success_ratio{entity=\"42\",target=\"127.0.0.1\"} 1.0\n"
//! );
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::{JobId, Value};

/// What a path becomes on `/metrics`: a metric name, labels, and a scale.
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
}

/// A bot's own path → series rule. `None` means "use [`generic_mapping`]".
pub type PathMapper = Arc<dyn Fn(&str) -> Option<MappedPath> + Send + Sync>;

/// Splits a leading `entity.<id>.` pair off a path.
///
/// ```
/// use grafolean_collector::exposition::split_entity;
/// assert_eq!(split_entity("entity.42.ping.success"), (Some("42"), "ping.success"));
/// assert_eq!(split_entity("ping.success"), (None, "ping.success"));
/// assert_eq!(split_entity("entity.42"), (None, "entity.42"));
/// ```
pub fn split_entity(path: &str) -> (Option<&str>, &str) {
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
///
/// ```
/// use grafolean_collector::exposition::generic_mapping;
/// let m = generic_mapping("entity.42.ping.p0.rtt");
/// assert_eq!(m.name, "grafolean_value_ping_p0_rtt");
/// assert_eq!(m.labels, vec![("entity".to_string(), "42".to_string())]);
/// assert_eq!(generic_mapping("my-bot.temp").name, "grafolean_value_my_bot_temp");
/// ```
pub fn generic_mapping(path: &str) -> MappedPath {
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
///
/// ```
/// use grafolean_collector::exposition::sanitize_metric_name;
/// assert_eq!(sanitize_metric_name("ping-rtt.ms"), "ping_rtt_ms");
/// assert_eq!(sanitize_metric_name("9lives"), "_9lives");
/// assert_eq!(sanitize_metric_name(""), "_");
/// ```
pub fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// Turns any string into a valid label name: characters outside
/// `[a-zA-Z0-9_]` become `_`, a leading digit gets a `_` in front, and the
/// reserved `__` prefix is cut to `_`.
///
/// ```
/// use grafolean_collector::exposition::sanitize_label_name;
/// assert_eq!(sanitize_label_name("if:name"), "if_name");
/// assert_eq!(sanitize_label_name("__name__"), "_name__");
/// ```
pub fn sanitize_label_name(name: &str) -> String {
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

/// Appends `value` to `out` escaped for a quoted label value: `\`, `"` and
/// newlines are backslash-escaped.
///
/// ```
/// use grafolean_collector::exposition::escape_label_value;
/// let mut out = String::new();
/// escape_label_value(&mut out, "a\"b\\c\nd");
/// assert_eq!(out, r#"a\"b\\c\nd"#);
/// ```
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a sample value in the OpenMetrics number syntax.
fn write_number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 && !(v == 0.0 && v.is_sign_negative()) {
        // Whole numbers (counts, 0/1 flags) are common: format them by hand,
        // exactly as `{:?}` would ("3.0"), but several times faster.
        let mut n = v.abs() as u64;
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if v < 0.0 {
            out.push('-');
        }
        out.extend(digits[i..].iter().map(|&d| d as char));
        out.push_str(".0");
    } else {
        // `{:?}` is the shortest representation that round-trips, with an
        // exponent for very large or small numbers (both parse in Prometheus).
        let _ = write!(out, "{v:?}");
    }
}

/// One series' key: the metric name and the rendered label set.
type SeriesKey = (Arc<str>, Arc<str>);

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
    /// The values' paths, in order.
    paths: Vec<Box<str>>,
    /// Per value: its series, the mapping's scale, and the sample's cell.
    series: Vec<(SeriesKey, f64, Arc<Sample>)>,
}

impl JobSeries {
    /// Whether an update with these labels and values writes exactly the
    /// same series as this one did, and every cell is still in place.
    fn unchanged(&self, labels: &[(String, String)], values: &[Value]) -> bool {
        self.labels == labels
            && self.paths.len() == values.len()
            && self.paths.iter().zip(values).all(|(p, v)| **p == *v.path)
            && self
                .series
                .iter()
                .all(|(_, _, s)| !s.replaced.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Metric name → rendered label set (`{a="b"}` or empty) → sample. Sorted,
    /// so each family is written once, in a stable order.
    families: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Arc<Sample>>>,
    /// The series each job wrote in its last update.
    jobs: HashMap<JobId, JobSeries>,
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
    /// [`generic_mapping`].
    #[must_use]
    pub fn with_mapper(
        mut self,
        mapper: impl Fn(&str) -> Option<MappedPath> + Send + Sync + 'static,
    ) -> Self {
        self.mapper = Some(Arc::new(mapper));
        self
    }

    /// Maps one path with the bot's rule or the generic one.
    ///
    /// ```
    /// # use grafolean_collector::exposition::ValueStore;
    /// assert_eq!(ValueStore::new().map_path("a.b").name, "grafolean_value_a_b");
    /// ```
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
                Arc::from(render_labels(&mapped.labels, labels)),
            );
            let sample = Sample::new(v.value * mapped.scale, job.clone());
            fresh.push((key, mapped.scale, sample));
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
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
                paths: values.iter().map(|v| Box::from(v.path.as_str())).collect(),
                series: fresh,
            };
            inner.jobs.insert(job.clone(), series);
        }
    }

    /// Removes every series of `job`.
    pub fn remove_job(&self, job: &JobId) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.remove_job(job);
    }

    /// Removes the series of every job that is not in `live`.
    pub fn retain_jobs<'a>(&self, live: impl IntoIterator<Item = &'a JobId>) {
        let live: HashSet<&JobId> = live.into_iter().collect();
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
    }

    /// The number of series.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).series
    }

    /// Whether there are no series.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends every series to `out` in the OpenMetrics text format, one
    /// `# TYPE … gauge` line per metric name, without the final `# EOF`.
    pub fn render(&self, out: &mut String) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        for (name, series) in &inner.families {
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(" gauge\n");
            for (labels, sample) in series {
                out.push_str(name);
                out.push_str(labels);
                out.push(' ');
                write_number(out, sample.value());
                out.push('\n');
            }
        }
    }
}

/// Renders `{a="1",b="2"}` from the path's labels, then the job's labels whose
/// names are not taken yet, sorted by name. No labels render as "".
fn render_labels(path_labels: &[(String, String)], job_labels: &[(String, String)]) -> String {
    let mut all: Vec<(String, &str)> = Vec::with_capacity(path_labels.len() + job_labels.len());
    for (name, value) in path_labels.iter().chain(job_labels) {
        let name = sanitize_label_name(name);
        if !all.iter().any(|(n, _)| *n == name) {
            all.push((name, value));
        }
    }
    if all.is_empty() {
        return String::new();
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::from("{");
    for (i, (name, value)) in all.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(&mut out, value);
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests;
