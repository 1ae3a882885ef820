//! A sensor's interval as a config writes it: a whole number of seconds from
//! 1 to 4294967295 (`u32::MAX`). A standalone TOML (`standalone`) is read
//! with this deserializer; the backend's JSON is read as `Option<u32>`, and
//! when that fails at an `interval` ([`problem_at`]) the message is this
//! deserializer's. So both say the same thing about `-5`, `1e12`, `"60"` or
//! `0`: what was given and [`EXPECTING`].

use std::fmt;
use std::num::NonZeroU32;

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

/// What an interval must be, as error messages say it.
pub(crate) const EXPECTING: &str = "a whole number of seconds from 1 to 4294967295";

/// A valid interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interval(pub(crate) NonZeroU32);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_u32(IntervalVisitor)
    }
}

struct IntervalVisitor;

impl Visitor<'_> for IntervalVisitor {
    type Value = Interval;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTING)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Interval, E> {
        u32::try_from(v)
            .ok()
            .and_then(NonZeroU32::new)
            .map(Interval)
            .ok_or_else(|| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Interval, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Interval, E> {
        Err(E::invalid_type(Unexpected::Float(v), &self))
    }
}

/// The message for `value` when it is not a valid interval (`None` when it
/// is), for a value that was accepted as some other type first.
pub(crate) fn problem<'de, D: Deserializer<'de>>(value: D) -> Option<String> {
    Interval::deserialize(value).err().map(|e| e.to_string())
}

/// When `path` in `item` is an interval that failed to parse: what is wrong
/// with it, in this module's words.
pub(crate) fn problem_at(
    item: &serde_json::Value,
    path: &serde_path_to_error::Path,
) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut value = item;
    let mut last = None;
    for segment in path.iter() {
        value = match segment {
            Segment::Map { key } => {
                last = Some(key.as_str());
                value.get(key)?
            }
            Segment::Seq { index } => {
                last = None;
                value.get(index)?
            }
            _ => return None,
        };
    }
    if last != Some("interval") {
        return None;
    }
    problem(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<u32, String> {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        Interval::deserialize(&value)
            .map(|i| i.0.get())
            .map_err(|e| e.to_string())
    }

    fn toml(text: &str) -> Result<u32, String> {
        #[derive(serde::Deserialize)]
        struct S {
            interval: Interval,
        }
        toml::from_str::<S>(&format!("interval = {text}"))
            .map(|s| s.interval.0.get())
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn accepts_one_to_u32_max_only() {
        for parse in [json, toml] {
            assert_eq!(parse("1"), Ok(1));
            assert_eq!(parse("4294967295"), Ok(u32::MAX));
            for bad in ["0", "-5", "1e12", "\"60\"", "4294967296", "60.0"] {
                let err = parse(bad).expect_err(bad);
                assert!(err.contains(EXPECTING), "{bad}: {err}");
            }
            assert!(parse("-5").unwrap_err().contains("-5"));
            assert!(parse("\"60\"").unwrap_err().contains("string \"60\""));
        }
    }
}
