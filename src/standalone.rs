//! The standalone config source: job configs from a local TOML file.
//!
//! With it, every bot runs with no Grafolean at all, as a plain Prometheus
//! exporter. The file has the same shapes as the backend's configs: entities
//! with details, a credential and sensors with intervals.
//!
//! ```toml
//! [[entity]]
//! id = 1                               # optional; defaults to the position, from 1
//! name = "localhost"                   # required, not empty
//! details = { ipv4 = "127.0.0.1" }
//! credential = { n_packets = 3 }       # the credential's details
//! sensors = [{ interval = 5 }]         # required; interval: 1 to 4294967295 s; optional `id`, `details`
//! ```
//!
//! The file is validated when it is read, and every error names its line.
//! It is read one `[[entity]]` table at a time (at most 1 MB each), so that
//! its parse never holds a document of the whole file.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::config::{EntityConfig, JobConfigs, SensorConfig};
use crate::interval::Interval;

/// Why a standalone config file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// The file could not be read.
    #[error("could not read the config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}: line {line}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    entity: Vec<Spanned<EntityEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityEntry {
    id: Option<Spanned<u64>>,
    name: Spanned<String>,
    #[serde(default = "device")]
    entity_type: String,
    #[serde(default)]
    account: u64,
    #[serde(default)]
    details: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    credential: SharedTable,
    sensors: Spanned<Vec<Spanned<SensorEntry>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SensorEntry {
    id: Option<u64>,
    /// Checked after the parse, so that its message can name the field's
    /// path (see [`crate::interval`]).
    interval: Spanned<toml::Value>,
    #[serde(default)]
    details: SharedTable,
}

fn device() -> String {
    "device".to_string()
}

/// Reads and validates a standalone config file.
pub fn load(path: &Path) -> Result<JobConfigs, StandaloneError> {
    let text = std::fs::read_to_string(path).map_err(|source| StandaloneError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates a standalone config; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<JobConfigs, StandaloneError> {
    let invalid = |offset: usize, message: String| StandaloneError::Invalid {
        path: origin.to_string(),
        line: line_of(text, offset),
        message,
    };
    if text.trim().is_empty() {
        // An editor mid-save or a truncating `>` leaves a file like this; a
        // config with no entity says so with a comment.
        return Err(invalid(
            0,
            format!(
                "the file is empty ({} bytes): not read as a config with no entities \
                 (write a comment in it for that)",
                text.len()
            ),
        ));
    }
    // Identical credentials and sensor details are shared as they are read,
    // not after: a file of 10,000 devices repeating three sensors never
    // holds 30,000 copies of them at once.
    let _shared = SharedScope::enter();
    let parts = parts(text);
    if let Some(part) = parts
        .iter()
        .find(|&p| p.len() > MAX_ENTITY_BYTES && is_entity_header(&text[p.clone()]))
    {
        return Err(invalid(
            part.start,
            format!(
                "this [[entity]] runs for {:.1} MB, to line {}; one entity may take at most 1 MB of the file \
                 (thousands of sensors, far more than a bot polls for one device): check that the file is what you meant",
                part.len() as f64 / 1e6,
                line_of(text, part.end.saturating_sub(1))
            ),
        ));
    }
    let entries = match parse_in_parts(text, &parts) {
        Some(entries) => entries,
        None => {
            let file: File = toml::from_str(text).map_err(|e| {
                let offset = e.span().map_or(0, |s| s.start);
                invalid(offset, e.message().trim().to_string())
            })?;
            file.entity.into_iter().map(|e| (0, e)).collect()
        }
    };
    let mut seen = HashSet::new();
    let lines = Lines::new(text);
    let mut entities = Vec::with_capacity(entries.len());
    for (index, (base, entry)) in entries.into_iter().enumerate() {
        // Spans count from the start of the entry's part of the text.
        let at = |span: std::ops::Range<usize>| base + span.start;
        let start = at(entry.span());
        let entry = entry.into_inner();
        let entity_id = match &entry.id {
            Some(id) => *id.get_ref(),
            None => index as u64 + 1,
        };
        if !seen.insert(entity_id) {
            let offset = entry.id.as_ref().map_or(start, |id| at(id.span()));
            return Err(invalid(
                offset,
                format!("entity id {entity_id} is used twice"),
            ));
        }
        if entry.name.get_ref().trim().is_empty() {
            return Err(invalid(at(entry.name.span()), "the name is empty".into()));
        }
        if entry.sensors.get_ref().is_empty() {
            return Err(invalid(
                at(entry.sensors.span()),
                "an entity needs at least one sensor with an interval".into(),
            ));
        }
        let mut sensors = Vec::with_capacity(entry.sensors.get_ref().len());
        for (i, s) in entry.sensors.into_inner().into_iter().enumerate() {
            let sensor_start = at(s.span());
            let s = s.into_inner();
            let interval = Interval::deserialize(s.interval.get_ref().clone()).map_err(|e| {
                invalid(
                    at(s.interval.span()),
                    format!(
                        "entity[{index}].sensors[{i}].interval: {}",
                        e.message().trim()
                    ),
                )
            })?;
            sensors.push(SensorConfig {
                sensor_id: s.id.unwrap_or(i as u64 + 1),
                interval: Some(interval.0.get()),
                details: s.details.0,
                origin: Some(format!("{origin} line {}", lines.line(sensor_start))),
            });
        }
        entities.push(EntityConfig {
            account_id: entry.account,
            entity_id,
            name: entry.name.into_inner(),
            entity_type: entry.entity_type,
            details: serde_json::Value::Object(entry.details),
            credential_id: None,
            credential_details: entry.credential.0,
            sensors,
            origin: Some(format!("{origin} line {}", lines.line(start))),
        });
    }
    Ok(JobConfigs { entities })
}

/// The entities of `text`, each with the offset its spans count from, read
/// one `[[entity]]` table at a time; `None` if a part does not parse alone
/// (the whole text is parsed then, for its error).
///
/// toml builds a document of the whole text before deserializing it, at some
/// 38 times the text's size: 358 MB for a file of 10,000 devices. A part is
/// one device. Cutting at `[[entity]]` header lines keeps the meaning of a
/// valid file: a header ends the table before it, and a header line inside
/// a multi-line string leaves the part before it unparsable, so such a file
/// is parsed whole. A header the test below misses (a quoted key) leaves two
/// entities in one part, which reads them both.
fn parse_in_parts(
    text: &str,
    parts: &[Range<usize>],
) -> Option<Vec<(usize, Spanned<EntityEntry>)>> {
    let mut entries = Vec::new();
    for part in parts {
        let file: File = toml::from_str(&text[part.clone()]).ok()?;
        entries.extend(file.entity.into_iter().map(|e| (part.start, e)));
    }
    Some(entries)
}

/// The most bytes one `[[entity]]` table may take: its parse takes some 38
/// times that at its peak.
const MAX_ENTITY_BYTES: usize = 1 << 20;

/// `text` cut before each `[[entity]]` header line ([`parse_in_parts`]).
fn parts(text: &str) -> Vec<Range<usize>> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > 0 && is_entity_header(line) {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts.push(text.len());
    starts.windows(2).map(|w| w[0]..w[1]).collect()
}

/// Whether `text` starts with an `[[entity]]` header line (spaces and a
/// comment allowed).
fn is_entity_header(text: &str) -> bool {
    let line = text.split('\n').next().unwrap_or_default();
    let rest = line.trim_start().strip_prefix("[[").map(str::trim_start);
    let rest = rest
        .and_then(|r| r.strip_prefix("entity"))
        .map(str::trim_start);
    rest.and_then(|r| r.strip_prefix("]]"))
        .map(str::trim)
        .is_some_and(|r| r.is_empty() || r.starts_with('#'))
}

/// One copy of each distinct credential or sensor `details`, as the backend's
/// configs share one per credential and sensor: a file of 10,000 devices that
/// repeat the same three sensors holds each sensor's details once.
#[derive(Default)]
struct Shared(HashMap<String, Arc<serde_json::Value>>);

thread_local! {
    /// The tables read so far by the [`parse`] in progress on this thread.
    static SHARED: RefCell<Shared> = RefCell::new(Shared::default());
}

/// The [`parse`] in progress: its shared tables are forgotten when it ends,
/// however it ends.
struct SharedScope;

impl SharedScope {
    fn enter() -> Self {
        SHARED.with(|s| s.borrow_mut().0.clear());
        Self
    }
}

impl Drop for SharedScope {
    fn drop(&mut self) {
        SHARED.with(|s| *s.borrow_mut() = Shared::default());
    }
}

/// A credential's or sensor's `details` table, read straight into JSON and
/// shared with the identical tables read before it ([`SHARED`]).
struct SharedTable(Arc<serde_json::Value>);

impl SharedTable {
    fn of(table: serde_json::Map<String, serde_json::Value>) -> Self {
        Self(SHARED.with(|s| s.borrow_mut().get(serde_json::Value::Object(table))))
    }
}

impl Default for SharedTable {
    fn default() -> Self {
        Self::of(serde_json::Map::new())
    }
}

impl<'de> Deserialize<'de> for SharedTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Map::deserialize(deserializer).map(Self::of)
    }
}

impl Shared {
    fn get(&mut self, value: serde_json::Value) -> Arc<serde_json::Value> {
        // Values are compared as their JSON text (`Value` is not `Hash`);
        // a table's keys are sorted, so equal tables give equal text.
        self.0
            .entry(value.to_string())
            .or_insert_with(|| Arc::new(value))
            .clone()
    }
}

/// Where each line of a text starts, for the line of every entity and sensor:
/// counting newlines from the start for each of them took minutes for a file
/// of 10,000 entities.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Self(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// The line of the byte at `offset`, from 1.
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&newline| newline < offset) + 1
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_line() {
        let cases = [
            (
                "[[entity]]\nname = \"a\"\nsensors = [{ interval = 5 }]\nbogus = 1\n",
                4,
            ),
            ("[[entity]]\nname = \"a\"\nsensors = []\n", 3),
            (
                "[[entity]]\nid = 1\nname = \"a\"\nsensors = [{ interval = 5 }]\n[[entity]]\nid = 1\nname = \"b\"\nsensors = [{ interval = 5 }]\n",
                6,
            ),
            (
                "[[entity]]\nname = \"a\"\nsensors = [{ interval = -5 }]\n",
                3,
            ),
            ("[[entity]]\nname = \"a\"\n", 1),
        ];
        for (text, line) in cases {
            match parse(text, "f.toml") {
                Err(StandaloneError::Invalid { line: got, .. }) => assert_eq!(got, line, "{text}"),
                other => panic!("{text}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_bad_interval_names_its_field_its_line_and_the_range() {
        for (bad, said) in [
            ("-5", "integer `-5`"),
            ("1e12", "floating point `1000000000000"),
            ("\"60\"", "string \"60\""),
            ("0", "integer `0`"),
            ("4294967296", "integer `4294967296`"),
        ] {
            let text = format!(
                "[[entity]]\nname = \"a\"\nsensors = [{{ interval = 5 }}]\n\n[[entity]]\nname = \"b\"\nsensors = [\n  {{ interval = 5 }},\n  {{ interval = {bad} }},\n]\n"
            );
            let err = parse(&text, "f.toml").expect_err(bad).to_string();
            assert!(
                err.starts_with("f.toml: line 9: entity[1].sensors[1].interval: "),
                "{bad}: {err}"
            );
            assert!(err.contains(crate::interval::EXPECTING), "{bad}: {err}");
            assert!(err.contains(said), "{bad}: {err}");
        }
    }

    #[test]
    fn details_keep_their_types() {
        let configs = parse(
            "[[entity]]\nid = 7\nname = \"a\"\ndetails = { ipv4 = \"127.0.0.1\" }\ncredential = { n_packets = 2, timeout = \"1.5\" }\nsensors = [{ interval = 5 }, { interval = 60 }]\n",
            "f.toml",
        )
        .unwrap();
        let e = &configs.entities[0];
        assert_eq!(e.entity_id, 7);
        assert_eq!(e.details["ipv4"], "127.0.0.1");
        assert_eq!(e.credential_details["n_packets"], 2);
        assert_eq!(e.credential_details["timeout"], "1.5");
        assert_eq!(
            e.intervals().unwrap().iter().collect::<Vec<_>>(),
            vec![5, 60]
        );
    }
}

#[cfg(test)]
mod origin_tests {
    #[test]
    fn each_entity_knows_its_file_and_line() {
        let text = "[[entity]]\nname = \"a\"\nsensors = [{ interval = 5 }]\n\n[[entity]]\nname = \"b\"\nsensors = [{ interval = 5 }]\n";
        let configs = super::parse(text, "jobs.toml").unwrap();
        let origins: Vec<&str> = configs.entities.iter().map(|e| e.fix_in()).collect();
        assert_eq!(origins, ["jobs.toml line 1", "jobs.toml line 5"]);
    }

    #[test]
    fn lines_are_counted_as_line_of_counts_them() {
        let text = "a\n\nbc\nd";
        let lines = super::Lines::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(lines.line(offset), super::line_of(text, offset), "{offset}");
        }
    }

    #[test]
    fn each_sensor_knows_its_line() {
        let text = "[[entity]]\nname = \"a\"\nsensors = [\n  { interval = 5 },\n  { interval = 60 },\n]\n\n\
                    [[entity]]\nname = \"b\"\n\n[[entity.sensors]]\ninterval = 5\n\n[[entity.sensors]]\n\
                    interval = 60\n";
        let configs = super::parse(text, "jobs.toml").unwrap();
        let lines: Vec<Vec<&str>> = configs
            .entities
            .iter()
            .map(|e| e.sensors.iter().map(|s| s.fix_in(e)).collect())
            .collect();
        assert_eq!(
            lines,
            [
                ["jobs.toml line 4", "jobs.toml line 5"],
                ["jobs.toml line 11", "jobs.toml line 14"]
            ]
        );
    }
}

#[cfg(test)]
mod part_tests {
    use super::*;

    /// The file parsed whole, as before it was read in parts.
    fn whole(text: &str) -> Vec<(u64, String, serde_json::Value, serde_json::Value, usize)> {
        let file: File = toml::from_str(text).unwrap();
        file.entity
            .into_iter()
            .map(|e| {
                let e = e.into_inner();
                (
                    e.id.map_or(0, |i| *i.get_ref()),
                    e.name.into_inner(),
                    serde_json::Value::Object(e.details),
                    (*e.credential.0).clone(),
                    e.sensors.into_inner().len(),
                )
            })
            .collect()
    }

    /// What the file gave, in [`whole`]'s form.
    fn summary(
        configs: &JobConfigs,
    ) -> Vec<(u64, String, serde_json::Value, serde_json::Value, usize)> {
        configs
            .entities
            .iter()
            .map(|e| {
                (
                    e.entity_id,
                    e.name.clone(),
                    e.details.clone(),
                    (*e.credential_details).clone(),
                    e.sensors.len(),
                )
            })
            .collect()
    }

    #[test]
    fn read_in_parts_it_means_what_it_means_whole() {
        let text = "# devices\n\n[[entity]]\nid = 1\nname = \"a\"\ncredential = { c = 1 }\n\
                    [entity.details]\nipv4 = \"10.0.0.1\"\n[[entity.sensors]]\ninterval = 5\n\
                    [[entity.sensors]]\ninterval = 6\n\n  [[ entity ]]  # the second\nid = 2\n\
                    name = \"b\"\nsensors = [{ interval = 7 }]\n[[entity]]\nid = 3\nname = \"\"\"c\n\
                    [[entity]]\n\"\"\"\nsensors = [{ interval = 8 }]\n";
        // The header line inside the multi-line string: read whole.
        assert!(parse_in_parts(text, &parts(text)).is_none());
        let configs = parse(text, "f.toml").unwrap();
        let got = summary(&configs);
        assert_eq!(got, whole(text));
        assert_eq!(got.len(), 3);
        // Without it: read in parts, the same entities, and the lines of
        // the later parts counted from the file's start.
        let text = text.replace("\"\"\"c\n[[entity]]\n\"\"\"", "\"c\"");
        let entries = parse_in_parts(&text, &parts(&text)).unwrap();
        assert_eq!(entries.len(), 3);
        let configs = parse(&text, "f.toml").unwrap();
        let got = summary(&configs);
        assert_eq!(got, whole(&text));
        let origins: Vec<&str> = configs.entities.iter().map(|e| e.fix_in()).collect();
        assert_eq!(
            origins,
            ["f.toml line 3", "f.toml line 14", "f.toml line 18"]
        );
        assert_eq!(
            configs.entities[0].sensors[1].fix_in(&configs.entities[0]),
            "f.toml line 11"
        );
    }

    #[test]
    fn a_header_is_known_by_its_line() {
        for yes in ["[[entity]]\n", "  [[ entity ]] # x\n", "[[entity]]"] {
            assert!(is_entity_header(yes), "{yes}");
        }
        for no in [
            "[[entity.sensors]]\n",
            "[[entitys]]\n",
            "[entity]\n",
            "x = \"[[entity]]\"\n",
            "[[entity]] x\n",
        ] {
            assert!(!is_entity_header(no), "{no}");
        }
    }

    #[test]
    fn an_entity_of_over_a_megabyte_is_refused_unread() {
        let sensor = "[[entity.sensors]]\ninterval = 60\ndetails = { oids = [{ oid = \"1.3.6.1.2.1.1.3.0\" }], output_path = \"uptime\" }\n";
        let text = format!(
            "[[entity]]\nname = \"a\"\nsensors = [{{ interval = 5 }}]\n\n[[entity]]\nname = \"b\"\n{}",
            sensor.repeat(12_000)
        );
        let err = parse(&text, "f.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("f.toml: line 5: this [[entity]] runs for 1.3 MB, to line 36006;"),
            "{err}"
        );
        // The same sensors as an inline array from the file's start are not
        // one part: read whole, as before.
        let text = format!(
            "entity = [{{ name = \"a\", sensors = [{}] }}]\n",
            vec!["{ interval = 60 }"; 60_000].join(", ")
        );
        assert!(text.len() > MAX_ENTITY_BYTES);
        assert_eq!(
            parse(&text, "f.toml").unwrap().entities[0].sensors.len(),
            60_000
        );
    }

    #[test]
    fn identical_tables_are_one_copy() {
        let text = "[[entity]]\nname = \"a\"\ncredential = { c = 1 }\nsensors = [{ interval = 5, details = { o = 1 } }]\n\
                    [[entity]]\nname = \"b\"\ncredential = { c = 1 }\nsensors = [{ interval = 5, details = { o = 1 } }]\n";
        let configs = parse(text, "f.toml").unwrap();
        let (a, b) = (&configs.entities[0], &configs.entities[1]);
        assert!(Arc::ptr_eq(&a.credential_details, &b.credential_details));
        assert!(Arc::ptr_eq(&a.sensors[0].details, &b.sensors[0].details));
        SHARED.with(|s| assert!(s.borrow().0.is_empty(), "forgotten after the parse"));
    }
}
