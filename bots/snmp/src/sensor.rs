//! A sensor's `details` as the Python bot reads them: `oids` (each fetched
//! with `get` or `walk`), `expression` and `output_path`.
//!
//! ```json
//! {"oids": [{"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
//!           {"oid": "1.3.6.1.2.1.2.2.1.10", "fetch_method": "walk"}],
//!  "expression": "$2", "output_path": "if.in-octets.{$index}.{$1}"}
//! ```
//!
//! The output path must match `^([.0-9a-zA-Z_-]+|[{][^}]+[}])+$`, with
//! `{$index}` (the row's index) and `{$N}` (the N-th OID's value, slugged as
//! the Python bot slugs it: see [`crate::slug`]) as the only placeholders.
//! A sensor whose details are invalid is skipped with a warning when the
//! jobs are built; the entity's other sensors go on.

use std::collections::HashMap;
use std::sync::Arc;

use async_snmp::Oid;
use serde_json::Value as Json;

use crate::expr::SensorExpr;
use crate::settings::{SettingsError, invalid};
use crate::slug::slugify_into;

/// Whether an agent can be asked for `oid`: BER encodes the first two arcs
/// in one (the first 0, 1 or 2; the second below 40 unless the first is 2),
/// and RFC 2578 allows at most 128 arcs.
fn encodable(oid: &Oid) -> bool {
    let arcs = oid.arcs();
    (2..=128).contains(&arcs.len()) && arcs[0] <= 2 && (arcs[0] == 2 || arcs[1] < 40)
}

/// How one OID is fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fetch {
    /// One GET of the OID itself.
    Get,
    /// A walk of the subtree under it; each row's index is what follows it.
    Walk,
}

/// What one refresh has parsed, shared by the entities that use it: the
/// compiled expressions by (text, number of OIDs), and the parsed sensors by
/// (sensor id, interval, details). 10,000 entities with Grafolean's default
/// sensors have 3 distinct sensors among 30,000, and hold each once.
#[derive(Debug, Default)]
pub struct ParseCache {
    exprs: HashMap<(String, usize), Arc<SensorExpr>>,
    /// Keyed by the details' address: the backend's configs share one
    /// `details` per sensor. The `Arc` in the value keeps that address
    /// taken while the cache lives.
    sensors: HashMap<(u64, u32, usize), (Arc<Json>, Parsed)>,
}

/// A sensor's details, parsed once.
type Parsed = Result<Arc<SensorSpec>, SettingsError>;

impl ParseCache {
    /// The sensor parsed from `details` ([`SensorSpec::parse_with`]),
    /// parsed once for every entity whose config shares these details.
    pub fn sensor(
        &mut self,
        sensor_id: u64,
        interval: u32,
        details: &Arc<Json>,
    ) -> Result<Arc<SensorSpec>, SettingsError> {
        let key = (sensor_id, interval, Arc::as_ptr(details) as usize);
        if let Some((_, parsed)) = self.sensors.get(&key) {
            return parsed.clone();
        }
        let parsed = SensorSpec::parse_with(sensor_id, interval, details, self).map(Arc::new);
        self.sensors.insert(key, (details.clone(), parsed.clone()));
        parsed
    }
}

/// One piece of an output path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPart {
    /// Literal text.
    Text(String),
    /// `{$index}`.
    Index,
    /// `{$N}`: the slugged value of OID N-1 (0-based here).
    Value(usize),
}

/// The most OIDs a sensor may have.
pub const MAX_OIDS: usize = 64;

/// The longest expression, in bytes.
pub const MAX_EXPRESSION: usize = 1024;

/// The longest output path template, in bytes.
pub const MAX_OUTPUT_PATH: usize = 512;

/// One sensor of an entity, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct SensorSpec {
    /// The sensor's id (part of the counter state's key).
    pub sensor_id: u64,
    /// The sensor's interval, in seconds.
    pub interval: u32,
    /// The OIDs and how each is fetched; `$N` is `oids[N-1]`.
    pub oids: Vec<(Oid, Fetch)>,
    /// The compiled expression, shared by every sensor with the same one
    /// (see [`ParseCache`]).
    pub expression: Arc<SensorExpr>,
    /// The output path template.
    pub path: Vec<PathPart>,
}

impl SensorSpec {
    /// Parses a sensor's `details`.
    ///
    /// ```
    /// use grafolean_snmp_bot::sensor::{Fetch, SensorSpec};
    /// let s = SensorSpec::parse(7, 60, &serde_json::json!({
    ///     "oids": [{"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
    ///              {"oid": ".1.3.6.1.2.1.2.2.1.10", "fetch_method": "walk"}],
    ///     "expression": "$2", "output_path": "if.in-octets.{$index}.{$1}"})).unwrap();
    /// assert_eq!(s.oids[1].1, Fetch::Walk);
    /// assert_eq!(s.render_path("4", &["eth 0".into(), "".into()]), "if.in-octets.4.eth-0");
    /// ```
    pub fn parse(sensor_id: u64, interval: u32, details: &Json) -> Result<Self, SettingsError> {
        Self::parse_with(sensor_id, interval, details, &mut ParseCache::default())
    }

    /// [`SensorSpec::parse`], sharing compiled expressions through `cache`:
    /// a compiled expression carries its operator table (kilobytes), and
    /// 10,000 entities with Grafolean's default sensors have 3 distinct
    /// expressions among 30,000.
    pub fn parse_with(
        sensor_id: u64,
        interval: u32,
        details: &Json,
        cache: &mut ParseCache,
    ) -> Result<Self, SettingsError> {
        let list = details
            .get("oids")
            .and_then(Json::as_array)
            .filter(|l| !l.is_empty() && l.len() <= MAX_OIDS)
            .ok_or_else(|| {
                invalid(
                    "sensor.oids",
                    details.get("oids").unwrap_or(&Json::Null),
                    "a list of 1-64 {\"oid\": …, \"fetch_method\": \"get\"|\"walk\"}",
                )
            })?;
        let mut oids = Vec::with_capacity(list.len());
        for item in list {
            let oid = item
                .get("oid")
                .and_then(Json::as_str)
                .map(|s| s.trim().trim_start_matches('.'))
                .and_then(|s| Oid::parse(s).ok())
                .filter(encodable)
                .ok_or_else(|| {
                    invalid(
                        "sensor.oids[].oid",
                        item,
                        "a numeric OID such as 1.3.6.1.2.1.1.3.0 (2 to 128 arcs, the first 0, 1 or 2, the second below 40 unless the first is 2)",
                    )
                })?;
            let fetch = match item.get("fetch_method").and_then(Json::as_str) {
                Some("get") => Fetch::Get,
                Some("walk") => Fetch::Walk,
                _ => {
                    return Err(invalid(
                        "sensor.oids[].fetch_method",
                        item,
                        "\"get\" or \"walk\"",
                    ));
                }
            };
            oids.push((oid, fetch));
        }
        let expression = details
            .get("expression")
            .and_then(Json::as_str)
            .ok_or_else(|| SettingsError::Missing {
                field: "sensor.expression".into(),
            })?;
        if expression.len() > MAX_EXPRESSION {
            return Err(SettingsError::Invalid {
                field: "sensor.expression".into(),
                value: format!("({} bytes)", expression.len()),
                expected: format!("at most {MAX_EXPRESSION} bytes"),
            });
        }
        let key = (expression.to_string(), oids.len());
        let expression = match cache.exprs.get(&key) {
            Some(e) => e.clone(),
            None => {
                let e = Arc::new(SensorExpr::parse(expression, oids.len())?);
                cache.exprs.insert(key, e.clone());
                e
            }
        };
        let template = details
            .get("output_path")
            .and_then(Json::as_str)
            .ok_or_else(|| SettingsError::Missing {
                field: "sensor.output_path".into(),
            })?;
        if template.len() > MAX_OUTPUT_PATH {
            return Err(SettingsError::Invalid {
                field: "sensor.output_path".into(),
                value: format!("({} bytes)", template.len()),
                expected: format!("at most {MAX_OUTPUT_PATH} bytes"),
            });
        }
        if template.is_empty()
            || template.starts_with('.')
            || template.ends_with('.')
            || template.contains("..")
        {
            return Err(invalid(
                "sensor.output_path",
                &Json::String(template.into()),
                "a path without empty parts (no leading, trailing or doubled dot)",
            ));
        }
        let path = parse_template(template, oids.len()).ok_or_else(|| {
            invalid(
                "sensor.output_path",
                &Json::String(template.into()),
                "letters, digits, . _ - with {$index} and {$1}, {$2}, … placeholders",
            )
        })?;
        Ok(Self {
            sensor_id,
            interval,
            oids,
            expression,
            path,
        })
    }

    /// Whether any OID is walked.
    pub fn walks(&self) -> bool {
        self.oids.iter().any(|(_, f)| *f == Fetch::Walk)
    }

    /// The path for one row (without the `entity.<id>.snmp.` prefix), with
    /// `texts[i]` the text of OID i's value in that row.
    pub fn render_path(&self, index: &str, texts: &[String]) -> String {
        let mut out = String::with_capacity(64);
        for part in &self.path {
            match part {
                PathPart::Text(t) => out.push_str(t),
                PathPart::Index => out.push_str(index),
                PathPart::Value(i) => {
                    slugify_into(texts.get(*i).map_or("", String::as_str), &mut out)
                }
            }
        }
        out
    }
}

fn parse_template(template: &str, oids: usize) -> Option<Vec<PathPart>> {
    let mut parts = Vec::new();
    let mut rest = template;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('{') {
            let end = after.find('}')?;
            let name = &after[..end];
            if name.is_empty() {
                return None;
            }
            parts.push(match name {
                "$index" => PathPart::Index,
                _ => {
                    let n: usize = name.strip_prefix('$')?.parse().ok()?;
                    if n == 0 || n > oids {
                        return None;
                    }
                    PathPart::Value(n - 1)
                }
            });
            rest = &after[end + 1..];
        } else {
            let end = rest.find('{').unwrap_or(rest.len());
            let text = &rest[..end];
            if !text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return None;
            }
            parts.push(PathPart::Text(text.into()));
            rest = &rest[end..];
        }
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn default_traffic_in() -> Json {
        json!({"oids": [{"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
                        {"oid": "1.3.6.1.2.1.2.2.1.10", "fetch_method": "walk"}],
               "expression": "$2", "output_path": "if.in-octets.{$index}.{$1}"})
    }

    #[test]
    fn grafolean_default_sensor() {
        let s = SensorSpec::parse(1, 60, &default_traffic_in()).unwrap();
        assert!(s.walks());
        assert_eq!(
            s.path,
            vec![
                PathPart::Text("if.in-octets.".into()),
                PathPart::Index,
                PathPart::Text(".".into()),
                PathPart::Value(0)
            ]
        );
        assert_eq!(
            s.render_path("1", &["lo".into(), "7".into()]),
            "if.in-octets.1.lo"
        );
    }

    #[test]
    fn invalid_templates() {
        for t in [
            "",
            "a b",
            "x.{$index",
            "x.{$3}",
            "x.{$0}",
            "x.{name}",
            "x.{}",
            "x/y",
            ".",
            "..",
            "x..y",
            ".x",
            "x.{$1}.",
        ] {
            let mut d = default_traffic_in();
            d["output_path"] = json!(t);
            assert!(SensorSpec::parse(1, 60, &d).is_err(), "{t}");
        }
    }

    #[test]
    fn invalid_oids() {
        for oids in [
            json!([]),
            json!("1.3"),
            json!([{"oid": "1.3.x", "fetch_method": "get"}]),
            json!([{"oid": "1.3.6", "fetch_method": "bulk"}]),
            // Not encodable: a first arc of 3, a second of 40 under 1, 129 arcs.
            json!([{"oid": "3.1.2", "fetch_method": "get"}]),
            json!([{"oid": "1.40.2", "fetch_method": "get"}]),
            json!([{"oid": format!("1.3{}", ".1".repeat(127)), "fetch_method": "walk"}]),
        ] {
            let mut d = default_traffic_in();
            d["oids"] = oids.clone();
            assert!(SensorSpec::parse(1, 60, &d).is_err(), "{oids}");
        }
    }

    #[test]
    fn encodable_oids_at_the_edges() {
        for oid in ["2.999.3", "1.39.1", "0.0"] {
            let mut d = default_traffic_in();
            d["oids"] = json!([{"oid": oid, "fetch_method": "get"}]);
            d["expression"] = json!("$1");
            assert!(SensorSpec::parse(1, 60, &d).is_ok(), "{oid}");
        }
        let mut d = default_traffic_in();
        d["oids"] = json!([{"oid": format!("1.3{}", ".1".repeat(126)), "fetch_method": "get"}]);
        d["expression"] = json!("$1");
        assert!(SensorSpec::parse(1, 60, &d).is_ok(), "128 arcs");
    }

    #[test]
    fn lengths_are_bounded() {
        let mut d = default_traffic_in();
        d["expression"] = json!(format!("$2{}", " + 1".repeat(300)));
        assert!(SensorSpec::parse(1, 60, &d).is_err());
        let mut d = default_traffic_in();
        d["output_path"] = json!("a".repeat(600));
        assert!(SensorSpec::parse(1, 60, &d).is_err());
        let mut d = default_traffic_in();
        d["oids"] = json!(vec![json!({"oid": "1.3.6.1", "fetch_method": "get"}); 65]);
        assert!(SensorSpec::parse(1, 60, &d).is_err());
    }
}
