//! What one firing of an entity's polling job fetches: the sensors whose
//! interval is due, every GET among them in one PDU, and each walked column
//! once, with the max-repetitions learned for it. Pure: nothing here talks
//! to the agent (that is [`crate::fetch`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_snmp::Oid;
use grafolean_collector::Intervals;

use crate::sensor::{Fetch, SensorSpec};

/// One firing's requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan<'a> {
    /// The sensors due in this firing, in their configured order.
    pub sensors: Vec<&'a SensorSpec>,
    /// The OIDs to GET (in one PDU), each once, in the sensors' order.
    pub gets: Vec<Oid>,
    /// The columns to walk, each once, in the sensors' order.
    pub walks: Vec<Oid>,
}

impl<'a> Plan<'a> {
    /// The plan for the `sensors` whose interval is among `affecting` (the
    /// tick's intervals).
    ///
    /// ```
    /// use grafolean_snmp_bot::plan::Plan;
    /// use grafolean_snmp_bot::sensor::SensorSpec;
    /// let s = SensorSpec::parse(1, 60, &serde_json::json!({
    ///     "oids": [{"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
    ///              {"oid": "1.3.6.1.2.1.1.3.0", "fetch_method": "get"}],
    ///     "expression": "$2", "output_path": "up.{$index}"})).unwrap();
    /// let sensors = [std::sync::Arc::new(s)];
    /// let every = grafolean_collector::Intervals::one(60).unwrap();
    /// let plan = Plan::new(&sensors, &every);
    /// assert_eq!(plan.gets, vec![async_snmp::Oid::parse("1.3.6.1.2.1.1.3.0").unwrap()]);
    /// assert_eq!(plan.walks.len(), 1);
    /// ```
    pub fn new(sensors: &'a [Arc<SensorSpec>], affecting: &Intervals) -> Self {
        let sensors: Vec<&SensorSpec> = sensors
            .iter()
            .map(|s| &**s)
            .filter(|s| affecting.contains(s.interval))
            .collect();
        let mut gets: Vec<Oid> = Vec::new();
        let mut walks: Vec<Oid> = Vec::new();
        for s in &sensors {
            for (oid, fetch) in &s.oids {
                let list = match fetch {
                    Fetch::Get => &mut gets,
                    Fetch::Walk => &mut walks,
                };
                if !list.contains(oid) {
                    list.push(oid.clone());
                }
            }
        }
        Self {
            sensors,
            gets,
            walks,
        }
    }

    /// Whether no sensor is due (nothing to fetch).
    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }

    /// How many requests the plan makes: one GET PDU (if any OID is got),
    /// plus one walk per column.
    pub fn requests(&self) -> usize {
        usize::from(!self.gets.is_empty()) + self.walks.len()
    }

    /// The max-repetitions of each walk, in the order of
    /// [`Plan::walks`]: the one `learned` for the column, else `max`, and
    /// never more than `max`.
    pub fn repetitions(&self, learned: &HashMap<Oid, u32>, max: u32) -> Vec<u32> {
        self.walks
            .iter()
            .map(|o| learned.get(o).copied().unwrap_or(max).min(max))
            .collect()
    }
}

/// The max-repetitions to use next time for a column whose walk returned
/// `rows` rows: one more than that (so that one GETBULK ends the walk),
/// at most `max`.
pub fn learned_repetitions(rows: usize, max: u32) -> u32 {
    u32::try_from(rows)
        .unwrap_or(u32::MAX)
        .saturating_add(1)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sensor(id: u64, interval: u32, oids: &[(&str, &str)]) -> Arc<SensorSpec> {
        let oids: Vec<_> = oids
            .iter()
            .map(|(o, f)| json!({"oid": o, "fetch_method": f}))
            .collect();
        SensorSpec::parse(
            id,
            interval,
            &json!({"oids": oids, "expression": "$1", "output_path": "x"}),
        )
        .map(Arc::new)
        .unwrap()
    }

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    #[test]
    fn only_due_sensors_and_each_oid_once_in_order() {
        let sensors = [
            sensor(
                1,
                60,
                &[
                    ("1.3.6.1.2.1.2.2.1.2", "walk"),
                    ("1.3.6.1.2.1.1.3.0", "get"),
                ],
            ),
            sensor(2, 300, &[("1.3.6.1.2.1.2.2.1.16", "walk")]),
            sensor(
                3,
                60,
                &[
                    ("1.3.6.1.2.1.2.2.1.2", "walk"),
                    ("1.3.6.1.2.1.2.2.1.10", "walk"),
                ],
            ),
            sensor(
                4,
                60,
                &[("1.3.6.1.2.1.1.5.0", "get"), ("1.3.6.1.2.1.1.3.0", "get")],
            ),
        ];
        let plan = Plan::new(&sensors, &Intervals::one(60).unwrap());
        let ids: Vec<u64> = plan.sensors.iter().map(|s| s.sensor_id).collect();
        assert_eq!(ids, vec![1, 3, 4]);
        assert_eq!(
            plan.gets,
            vec![oid("1.3.6.1.2.1.1.3.0"), oid("1.3.6.1.2.1.1.5.0")]
        );
        assert_eq!(
            plan.walks,
            vec![oid("1.3.6.1.2.1.2.2.1.2"), oid("1.3.6.1.2.1.2.2.1.10")]
        );
        assert_eq!(plan.requests(), 3);

        let both = Intervals::new([60, 300]).unwrap();
        assert_eq!(Plan::new(&sensors, &both).sensors.len(), 4);
        let none = Plan::new(&sensors, &Intervals::one(10).unwrap());
        assert!(none.is_empty());
        assert_eq!(none.requests(), 0);
    }

    #[test]
    fn repetitions_are_learned_and_capped() {
        let sensors = [sensor(
            1,
            60,
            &[
                ("1.3.6.1.2.1.2.2.1.2", "walk"),
                ("1.3.6.1.2.1.2.2.1.10", "walk"),
            ],
        )];
        let plan = Plan::new(&sensors, &Intervals::one(60).unwrap());
        let learned = HashMap::from([(oid("1.3.6.1.2.1.2.2.1.10"), 3), (oid("1.3.6.1.9"), 1)]);
        assert_eq!(plan.repetitions(&learned, 25), vec![25, 3]);
        assert_eq!(plan.repetitions(&learned, 2), vec![2, 2]);
        assert_eq!(learned_repetitions(0, 25), 1);
        assert_eq!(learned_repetitions(4, 25), 5);
        assert_eq!(learned_repetitions(100, 25), 25);
        assert_eq!(learned_repetitions(usize::MAX, u32::MAX), u32::MAX);
    }
}
