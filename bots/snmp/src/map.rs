//! From what an agent answered to Grafolean values: each sensor's rows, the
//! numbers its expression reads (counters as rates), and the path of each
//! row. Pure: the answers come in as [`Answers`], the counters' outcomes as
//! a map (see [`crate::rates`]).
//!
//! A sensor without walks has one row, index `0`. With walks, the rows are
//! those of its first walked column, and every other walked column is
//! joined to them by index. A row is skipped (and counted) when a joined
//! column has no value at its index, a counter has no rate yet, a value the
//! expression reads is not a number, the expression gives no number (see
//! [`crate::expr::EvalError`]), or its path was already given in this
//! firing. A sensor fails as
//! a whole when one of its GETs or walks failed, or a GET answered
//! `noSuchObject`, `noSuchInstance` or `endOfMibView`.

use std::collections::{HashMap, HashSet};

use async_snmp::{Oid, Value as SnmpValue, VarBind};
use grafolean_collector::Value;

use crate::counters::Outcome;
use crate::sensor::{Fetch, PathPart, SensorSpec};

/// What the agent answered in one firing, by OID.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answers {
    /// The values of the GET, or `None` if it failed.
    pub got: Option<HashMap<Oid, SnmpValue>>,
    /// The rows of each walked column whose walk succeeded.
    pub walks: HashMap<Oid, Vec<VarBind>>,
}

/// What one firing's sensors gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapped {
    /// The values, in the sensors' order and then their rows'.
    pub values: Vec<Value>,
    /// The rows skipped (see the module's docs).
    pub skipped_rows: usize,
    /// Why rows were skipped, per sensor (a counter's first reading, which
    /// gives no rate yet, is not a reason): `(sensor, reason, rows)`.
    pub skips: Vec<(u64, String, usize)>,
    /// One line per sensor that gave nothing: `sensor <id>: <why>`.
    pub failed_sensors: Vec<String>,
}

/// The values of `sensors` for entity `entity_id` (paths
/// `entity.<id>.snmp.<output path>`), from `answers` and the counters'
/// `outcomes`.
pub fn map_values(
    sensors: &[&SensorSpec],
    answers: &Answers,
    outcomes: &HashMap<Oid, Outcome>,
    entity_id: u64,
) -> Mapped {
    let mut mapped = Mapped::default();
    let mut seen = HashSet::new();
    let prefix = format!("entity.{entity_id}.snmp.");
    for s in sensors {
        let before = mapped.values.len();
        match sensor_values(s, answers, outcomes, &prefix, &mut mapped.values, &mut seen) {
            Ok(skipped) if skipped.is_empty() && mapped.values.len() == before => {
                // Not a failure, but nothing: say so (once per change).
                mapped
                    .skips
                    .push((s.sensor_id, "its walks found no rows".into(), 0));
            }
            Ok(skipped) => {
                for (reason, rows) in skipped {
                    mapped.skipped_rows += rows;
                    if let Some(reason) = reason {
                        mapped.skips.push((s.sensor_id, reason, rows));
                    }
                }
            }
            Err(why) => mapped
                .failed_sensors
                .push(format!("sensor {}: {why}", s.sensor_id)),
        }
    }
    mapped
}

/// The fetched data of one of a sensor's OIDs.
enum Col<'a> {
    /// A GET's value.
    One(&'a Oid, &'a SnmpValue),
    /// A walk's rows.
    Rows(&'a Oid, &'a [VarBind]),
}

/// The data of each of `s`'s OIDs, or why the sensor cannot be mapped.
fn columns<'a>(s: &'a SensorSpec, answers: &'a Answers) -> Result<Vec<Col<'a>>, String> {
    let mut cols = Vec::with_capacity(s.oids.len());
    for (oid, fetch) in &s.oids {
        match fetch {
            Fetch::Get => {
                let map = answers
                    .got
                    .as_ref()
                    .ok_or_else(|| format!("the GET of {oid} failed"))?;
                let value = map.get(oid).ok_or_else(|| format!("{oid}: no value"))?;
                if matches!(
                    value,
                    SnmpValue::NoSuchObject | SnmpValue::NoSuchInstance | SnmpValue::EndOfMibView
                ) {
                    return Err(format!("{oid}: {value}"));
                }
                cols.push(Col::One(oid, value));
            }
            Fetch::Walk => {
                let rows = answers
                    .walks
                    .get(oid)
                    .ok_or_else(|| format!("the walk of {oid} failed"))?;
                cols.push(Col::Rows(oid, rows));
            }
        }
    }
    Ok(cols)
}

/// A sensor's columns, arranged in rows.
struct Table<'a> {
    cols: Vec<Col<'a>>,
    /// The first walked column, whose rows are the sensor's.
    first_walk: Option<usize>,
    /// Each row's index and, with walks, its varbind in the first walk.
    rows: Vec<(String, Option<&'a VarBind>)>,
    /// The other walked columns' rows, by index.
    indexed: Vec<Option<HashMap<String, &'a VarBind>>>,
}

impl<'a> Table<'a> {
    fn new(cols: Vec<Col<'a>>) -> Self {
        let first_walk = cols.iter().position(|c| matches!(c, Col::Rows(..)));
        let indexed = cols
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Col::Rows(base, rows) if Some(i) != first_walk => Some(
                    rows.iter()
                        .map(|vb| (row_index(base, &vb.oid), vb))
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        let rows = match first_walk {
            None => vec![("0".to_string(), None)],
            Some(i) => match &cols[i] {
                Col::Rows(base, rows) => rows
                    .iter()
                    .map(|vb| (row_index(base, &vb.oid), Some(vb)))
                    .collect(),
                Col::One(..) => unreachable!("first_walk points at a walked column"),
            },
        };
        Self {
            cols,
            first_walk,
            rows,
            indexed,
        }
    }

    /// Column `i`'s OID and value in the row `index` (whose varbind in the
    /// first walk is `first`), or `None` if it has no value there.
    fn cell(
        &self,
        i: usize,
        index: &str,
        first: Option<&'a VarBind>,
    ) -> Option<(&'a Oid, &'a SnmpValue)> {
        match &self.cols[i] {
            Col::One(oid, v) => Some((*oid, *v)),
            Col::Rows(..) if Some(i) == self.first_walk => match first {
                Some(vb) => Some((&vb.oid, &vb.value)),
                None => unreachable!("rows of a walk carry their varbind"),
            },
            Col::Rows(..) => self.indexed[i]
                .as_ref()
                .and_then(|m| m.get(index))
                .map(|vb| (&vb.oid, &vb.value)),
        }
    }
}

/// Why a row gives no value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Skip {
    /// A counter's first reading: no rate yet (not a problem).
    NoRate,
    /// A problem, said in a sentence that does not change from row to row.
    Because(String),
}

/// One sensor's values, appended to `out`. Returns the rows skipped per
/// reason (`None`: no rate yet), or why the whole sensor failed.
fn sensor_values(
    s: &SensorSpec,
    answers: &Answers,
    outcomes: &HashMap<Oid, Outcome>,
    prefix: &str,
    out: &mut Vec<Value>,
    seen: &mut HashSet<String>,
) -> Result<Vec<(Option<String>, usize)>, String> {
    let table = Table::new(columns(s, answers)?);
    let n = s.oids.len();
    let in_path: Vec<bool> = (0..n)
        .map(|i| s.path.contains(&PathPart::Value(i)))
        .collect();
    let mut skipped: std::collections::BTreeMap<Skip, usize> = Default::default();
    let mut numbers = vec![f64::NAN; n];
    let mut texts = vec![String::new(); n];
    for (index, first) in &table.rows {
        let row = Row {
            s,
            table: &table,
            index,
            first: *first,
        };
        let value = row
            .read(outcomes, &in_path, &mut numbers, &mut texts)
            .and_then(|()| row.value(prefix, &numbers, &texts, seen));
        match value {
            Ok(v) => out.push(v),
            Err(why) => *skipped.entry(why).or_default() += 1,
        }
    }
    Ok(skipped
        .into_iter()
        .map(|(why, rows)| match why {
            Skip::NoRate => (None, rows),
            Skip::Because(reason) => (Some(reason), rows),
        })
        .collect())
}

/// One row of one sensor.
struct Row<'t, 'a> {
    s: &'t SensorSpec,
    table: &'t Table<'a>,
    index: &'t str,
    first: Option<&'a VarBind>,
}

impl Row<'_, '_> {
    /// Puts the numbers the expression reads into `numbers` and the texts
    /// the path shows into `texts`, or says why the row is skipped.
    fn read(
        &self,
        outcomes: &HashMap<Oid, Outcome>,
        in_path: &[bool],
        numbers: &mut [f64],
        texts: &mut [String],
    ) -> Result<(), Skip> {
        let (s, index) = (self.s, self.index);
        let uses = s.expression.uses();
        for i in 0..s.oids.len() {
            let Some((oid, value)) = self.table.cell(i, index, self.first) else {
                return Err(Skip::Because(format!(
                    "${} ({}) has no value at some of the first walk's indexes",
                    i + 1,
                    s.oids[i].0
                )));
            };
            if uses.contains(&i) {
                match value_number(oid, value, outcomes) {
                    Ok(x) => numbers[i] = x,
                    Err(Unusable::NoRate) => return Err(Skip::NoRate),
                    Err(Unusable::NotNumeric) => {
                        return Err(Skip::Because(format!(
                            "${} ({}) is not a number at some indexes",
                            i + 1,
                            s.oids[i].0
                        )));
                    }
                }
            }
            if in_path[i] {
                texts[i] = value_text(value, s.oids[i].1);
            }
        }
        Ok(())
    }

    /// The row's value from what [`Row::read`] put in `numbers` and
    /// `texts`, or why there is none: the expression gives no number, or
    /// the path was already given in this firing.
    fn value(
        &self,
        prefix: &str,
        numbers: &[f64],
        texts: &[String],
        seen: &mut HashSet<String>,
    ) -> Result<Value, Skip> {
        let (s, index) = (self.s, self.index);
        let v = s.expression.eval(numbers).map_err(|why| {
            Skip::Because(format!(
                "the expression {:?} gives no value at some indexes ({why})",
                s.expression.source()
            ))
        })?;
        let mut path = String::with_capacity(prefix.len() + 48);
        path.push_str(prefix);
        path.push_str(&s.render_path(index, texts));
        if !seen.insert(path.clone()) {
            return Err(Skip::Because(
                "its output path gives the same path for several rows (put {$index} in it)".into(),
            ));
        }
        Ok(Value::new(path, v))
    }
}

/// The most bytes of an OCTET STRING that easysnmp gave from a walk (the
/// buffer of its `netsnmp_walk`); a GET's buffer, 65,536 bytes, holds more
/// than a message can.
const EASYSNMP_WALK_TEXT: usize = 4096;

/// The text of a value as easysnmp gave it to the Python bot (`v.value`,
/// which it slugged for `{$N}`): an OCTET STRING's bytes read as Latin-1, one
/// character per byte whatever the agent's encoding (UTF-8 `é` is `Ã©`), cut
/// to 4,096 bytes in a walk; numbers in decimal; net-snmp's Opaque-wrapped
/// float and double as C's `%f`, its 64-bit numbers in decimal, any other
/// Opaque as its bytes; an OID with a leading dot; the exceptions in
/// capitals; NULL and what net-snmp does not print, nothing.
fn value_text(v: &SnmpValue, fetch: Fetch) -> String {
    let latin1 = |b: &[u8]| {
        let cut = match fetch {
            Fetch::Walk => &b[..b.len().min(EASYSNMP_WALK_TEXT)],
            Fetch::Get => b,
        };
        cut.iter().copied().map(char::from).collect()
    };
    match v {
        SnmpValue::OctetString(b) => latin1(b),
        SnmpValue::Opaque(b) => {
            if let Some(x) = v.as_opaque_float() {
                c_float(f64::from(x))
            } else if let Some(x) = v.as_opaque_double() {
                c_float(x)
            } else if let Some(n) = v.as_opaque_counter64().or_else(|| v.as_opaque_u64()) {
                n.to_string()
            } else if let Some(n) = v.as_opaque_i64() {
                n.to_string()
            } else {
                latin1(b)
            }
        }
        SnmpValue::Integer(i) => i.to_string(),
        SnmpValue::Counter32(n)
        | SnmpValue::Gauge32(n)
        | SnmpValue::UInteger32(n)
        | SnmpValue::TimeTicks(n) => n.to_string(),
        SnmpValue::Counter64(n) => n.to_string(),
        SnmpValue::IpAddress(a) => std::net::Ipv4Addr::from(*a).to_string(),
        SnmpValue::ObjectIdentifier(o) => {
            use std::fmt::Write;
            let mut s = String::with_capacity(o.len() * 3);
            for a in o.arcs() {
                let _ = write!(s, ".{a}");
            }
            s
        }
        SnmpValue::NoSuchObject => "NOSUCHOBJECT".into(),
        SnmpValue::NoSuchInstance => "NOSUCHINSTANCE".into(),
        SnmpValue::EndOfMibView => "ENDOFMIBVIEW".into(),
        _ => String::new(),
    }
}

/// C's `printf("%f", x)`.
fn c_float(x: f64) -> String {
    match x {
        x if x.is_nan() && x.is_sign_negative() => "-nan".into(),
        x if x.is_nan() => "nan".into(),
        x => format!("{x:.6}"),
    }
}

/// Why a value cannot be used in an expression.
enum Unusable {
    /// A counter's first reading or a reset: skip the row.
    NoRate,
    /// Not a number.
    NotNumeric,
}

/// The number of a value (for `$N` in the expression); counters give rates.
fn value_number(
    oid: &Oid,
    v: &SnmpValue,
    outcomes: &HashMap<Oid, Outcome>,
) -> Result<f64, Unusable> {
    match v {
        SnmpValue::Counter32(_) | SnmpValue::Counter64(_) => outcomes
            .get(oid)
            .and_then(|o| o.rate())
            .ok_or(Unusable::NoRate),
        // The Python bot's `float(value)`, of easysnmp's Latin-1 text.
        SnmpValue::OctetString(b) => {
            let text: String = b.iter().map(|&c| char::from(c)).collect();
            crate::mathjs::py_float(text.trim_matches(crate::mathjs::py_space))
                .ok_or(Unusable::NotNumeric)
        }
        // net-snmp's Opaque float and double (UCD's laLoadFloat), which
        // easysnmp printed as numbers.
        SnmpValue::Opaque(_) => v
            .as_opaque_float()
            .map(f64::from)
            .or_else(|| v.as_opaque_double())
            .ok_or(Unusable::NotNumeric),
        other => other.as_f64().ok_or(Unusable::NotNumeric),
    }
}

/// The index of a walked row: every arc after the walked OID, dotted.
fn row_index(base: &Oid, oid: &Oid) -> String {
    let arcs = &oid.arcs()[base.len().min(oid.len())..];
    let mut s = String::with_capacity(arcs.len() * 3);
    for (i, a) in arcs.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        use std::fmt::Write;
        let _ = write!(s, "{a}");
    }
    s
}

#[cfg(test)]
mod tests;
