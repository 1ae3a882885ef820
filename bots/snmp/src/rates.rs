//! One firing's counters: every Counter32 and Counter64 the agent answered
//! ([`readings`]), turned into outcomes against the entity's last readings
//! ([`update`]). Pure: what tells a wrap from a restart or a cleared
//! counter ([`Context`]: the agent's sysUpTime, and for IF-MIB counters
//! their interface's `ifCounterDiscontinuityTime` and speed), needed only
//! when a Counter32 went down ([`decreased`]), is fetched by the caller.
//!
//! An OID read twice in one firing (by a GET and a walk, or by two walks
//! that overlap) is updated twice at the same time: its second outcome,
//! [`Outcome::First`], is the one kept.

use std::collections::HashMap;

use async_snmp::{Oid, Value as SnmpValue};

use crate::counters::{Counters, Outcome, WrapCheck};
use crate::map::Answers;

/// One counter read in a firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading<'a> {
    /// Its OID.
    pub oid: &'a Oid,
    /// Its value.
    pub value: u64,
    /// Whether it is a Counter64.
    pub wide: bool,
}

/// The outcomes of one firing's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rates {
    /// Each counter's outcome.
    pub outcomes: HashMap<Oid, Outcome>,
    /// How many were reset (no value this time).
    pub resets: usize,
    /// How many went down while the agent stayed up, and were not wraps
    /// (no value this time).
    pub discontinuities: usize,
    /// How many Counter32 wraps were corrected.
    pub wraps: usize,
}

/// Every counter in `answers`: the GET's first, then the walks'.
pub fn readings(answers: &Answers) -> Vec<Reading<'_>> {
    let all = answers.got.iter().flat_map(|m| m.iter()).chain(
        answers
            .walks
            .values()
            .flatten()
            .map(|vb| (&vb.oid, &vb.value)),
    );
    let mut readings = Vec::new();
    for (oid, value) in all {
        let (value, wide) = match value {
            SnmpValue::Counter32(v) => (u64::from(*v), false),
            SnmpValue::Counter64(v) => (*v, true),
            _ => continue,
        };
        readings.push(Reading { oid, value, wide });
    }
    readings
}

/// What a firing knows of its agent when a Counter32 went down.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    /// The agent's sysUpTime, in seconds.
    pub uptime: Option<f64>,
    /// Per ifIndex: its `ifCounterDiscontinuityTime` (as sysUpTime, in
    /// seconds) and its speed in bits per second, where the agent told them.
    pub interfaces: HashMap<u32, (Option<f64>, Option<f64>)>,
}

/// The Counter32s among `readings` that went down since their last reading
/// in `counters`: `None` if none did, else the ifIndexes of those that are
/// IF-MIB counters (whose interface tells a wrap from a cleared counter).
pub fn decreased(counters: &Counters, readings: &[Reading<'_>]) -> Option<Vec<u32>> {
    let mut interfaces = Vec::new();
    let mut any = false;
    for r in readings
        .iter()
        .filter(|r| counters.decreased(r.oid, r.value, r.wide))
    {
        any = true;
        if let Some((index, _)) = interface_counter(r.oid) {
            interfaces.push(index);
        }
    }
    interfaces.sort_unstable();
    interfaces.dedup();
    any.then_some(interfaces)
}

/// IF-MIB's ifTable (`1.3.6.1.2.1.2.2.1`) and ifXTable (`1.3.6.1.2.1.31.1.1.1`).
const IF_TABLE: [u32; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IF_X_TABLE: [u32; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];

/// The ifIndex of an IF-MIB Counter32 (ifTable columns 10 to 20, ifXTable
/// columns 2 to 5), and whether it counts octets (ifInOctets, ifOutOctets)
/// rather than packets.
pub fn interface_counter(oid: &Oid) -> Option<(u32, bool)> {
    let arcs = oid.arcs();
    let (column, index) = match arcs.len() {
        11 if arcs[..9] == IF_TABLE && (10..=20).contains(&arcs[9]) => (arcs[9], arcs[10]),
        12 if arcs[..10] == IF_X_TABLE && (2..=5).contains(&arcs[10]) => (arcs[10], arcs[11]),
        _ => return None,
    };
    let octets = arcs.len() == 11 && (column == 10 || column == 16);
    Some((index, octets))
}

/// The most a counter can grow per second on an interface of `bits` per
/// second: its octets, or its packets of at least 64 bytes, with half
/// again as much room (agents round their speeds).
fn max_rate(bits: f64, octets: bool) -> f64 {
    let bytes = bits / 8.0 * 1.5;
    if octets { bytes } else { bytes / 64.0 }
}

/// Records `readings`, taken at `now` (UNIX seconds), in `counters`, with
/// what is known of the agent (see [`Context`]).
pub fn update(
    counters: &mut Counters,
    readings: &[Reading<'_>],
    now: f64,
    context: &Context,
) -> Rates {
    let mut rates = Rates::default();
    for r in readings {
        let check = interface_counter(r.oid)
            .and_then(|(index, octets)| {
                let (discontinuity_at, speed) = context.interfaces.get(&index)?;
                Some(WrapCheck {
                    discontinuity_at: *discontinuity_at,
                    max_rate: speed.map(|bits| max_rate(bits, octets)),
                })
            })
            .unwrap_or_default();
        let outcome = counters.update(r.oid, r.value, r.wide, now, context.uptime, check);
        match outcome {
            Outcome::Reset => rates.resets += 1,
            Outcome::Discontinuity => rates.discontinuities += 1,
            Outcome::Wrapped(_) => rates.wraps += 1,
            _ => {}
        }
        rates.outcomes.insert(r.oid.clone(), outcome);
    }
    rates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::map_values;
    use crate::sensor::SensorSpec;
    use async_snmp::VarBind;
    use bytes::Bytes;

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    /// ifDescr and ifInOctets of two interfaces, and a Counter64 by GET.
    fn answers(lo: u32, eth0: u32, hc: u64) -> Answers {
        let row = |col: &str, i: u32, v: SnmpValue| VarBind::new(oid(&format!("{col}.{i}")), v);
        let descr = "1.3.6.1.2.1.2.2.1.2";
        let octets = "1.3.6.1.2.1.2.2.1.10";
        let name = |s: &'static str| SnmpValue::OctetString(Bytes::from_static(s.as_bytes()));
        Answers {
            got: Some(HashMap::from([
                (oid("1.3.6.1.2.1.31.1.1.1.6.1"), SnmpValue::Counter64(hc)),
                (oid("1.3.6.1.2.1.1.3.0"), SnmpValue::TimeTicks(1)),
            ])),
            walks: HashMap::from([
                (
                    oid(descr),
                    vec![row(descr, 1, name("lo")), row(descr, 2, name("eth0"))],
                ),
                (
                    oid(octets),
                    vec![
                        row(octets, 1, SnmpValue::Counter32(lo)),
                        row(octets, 2, SnmpValue::Counter32(eth0)),
                    ],
                ),
            ]),
        }
    }

    #[test]
    fn if_mib_counters_are_told_by_their_interface() {
        assert_eq!(
            interface_counter(&oid("1.3.6.1.2.1.2.2.1.10.7")),
            Some((7, true))
        );
        assert_eq!(
            interface_counter(&oid("1.3.6.1.2.1.2.2.1.11.7")),
            Some((7, false))
        );
        assert_eq!(
            interface_counter(&oid("1.3.6.1.2.1.31.1.1.1.3.9")),
            Some((9, false))
        );
        for other in [
            "1.3.6.1.2.1.2.2.1.5.7",
            "1.3.6.1.2.1.31.1.1.1.6.7",
            "1.3.6.1.4.1.99999.1.1",
            "1.3.6.1.2.1.2.2.1.10",
        ] {
            assert_eq!(interface_counter(&oid(other)), None, "{other}");
        }
    }

    #[test]
    fn readings_are_the_counters_only() {
        let a = answers(1, 2, 3);
        let mut r: Vec<(String, u64, bool)> = readings(&a)
            .iter()
            .map(|r| (r.oid.to_string(), r.value, r.wide))
            .collect();
        r.sort();
        assert_eq!(
            r,
            vec![
                ("1.3.6.1.2.1.2.2.1.10.1".into(), 1, false),
                ("1.3.6.1.2.1.2.2.1.10.2".into(), 2, false),
                ("1.3.6.1.2.1.31.1.1.1.6.1".into(), 3, true),
            ]
        );
        assert!(readings(&Answers::default()).is_empty());
    }

    #[test]
    fn a_counter32_gives_a_rate_at_its_second_firing() {
        let s = SensorSpec::parse(
            1,
            60,
            &serde_json::json!({
                "oids": [{"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
                         {"oid": "1.3.6.1.2.1.2.2.1.10", "fetch_method": "walk"}],
                "expression": "$2", "output_path": "if.in-octets.{$index}.{$1}"}),
        )
        .unwrap();
        let mut counters = Counters::default();
        let first = answers(1000, 50, 7);
        let r = readings(&first);
        assert_eq!(decreased(&counters, &r), None);
        let rates = update(&mut counters, &r, 1000.0, &Context::default());
        assert!(rates.outcomes.values().all(|o| *o == Outcome::First));
        assert!(
            map_values(&[&s], &first, &rates.outcomes, 9)
                .values
                .is_empty()
        );

        // 60 s later: lo +600 (10/s), eth0 +6000 (100/s).
        let second = answers(1600, 6050, 7);
        let r = readings(&second);
        assert_eq!(decreased(&counters, &r), None);
        let rates = update(&mut counters, &r, 1060.0, &Context::default());
        assert_eq!((rates.resets, rates.wraps), (0, 0));
        let mapped = map_values(&[&s], &second, &rates.outcomes, 9);
        let got: Vec<(&str, f64)> = mapped
            .values
            .iter()
            .map(|v| (v.path.as_str(), v.value))
            .collect();
        assert_eq!(
            got,
            vec![
                ("entity.9.snmp.if.in-octets.1.lo", 10.0),
                ("entity.9.snmp.if.in-octets.2.eth0", 100.0)
            ]
        );
    }

    #[test]
    fn a_counter32_that_went_down_wraps_or_resets_by_uptime() {
        let mut counters = Counters::default();
        update(
            &mut counters,
            &readings(&answers(4_294_967_000, 500, 10)),
            0.0,
            &Context::default(),
        );
        // lo went down (a wrap: +296 + 304 = 600 in 60 s); eth0 did not.
        let later = answers(304, 1100, 10);
        let r = readings(&later);
        assert_eq!(decreased(&counters, &r), Some(vec![1]));
        let mut again = counters.clone();
        let up = |uptime| Context {
            uptime,
            interfaces: HashMap::new(),
        };
        let rates = update(&mut counters.clone(), &r, 60.0, &up(Some(86_400.0)));
        assert_eq!((rates.resets, rates.wraps), (0, 1));
        let lo = oid("1.3.6.1.2.1.2.2.1.10.1");
        assert_eq!(rates.outcomes[&lo], Outcome::Wrapped(10.0));
        assert_eq!(
            rates.outcomes[&oid("1.3.6.1.2.1.2.2.1.10.2")],
            Outcome::Rate(10.0)
        );
        // The Counter64 did not move: a rate of 0.
        assert_eq!(
            rates.outcomes[&oid("1.3.6.1.2.1.31.1.1.1.6.1")],
            Outcome::Rate(0.0)
        );
        // Up for 30 s only, or sysUpTime unknown: a restart.
        let rates = update(&mut again.clone(), &r, 60.0, &up(Some(30.0)));
        assert_eq!((rates.resets, rates.outcomes[&lo]), (1, Outcome::Reset));
        let rates = update(&mut again.clone(), &r, 60.0, &up(None));
        assert_eq!((rates.resets, rates.outcomes[&lo]), (1, Outcome::Reset));
        // Up, but lo's counters were cleared at uptime 86,390 s (after the
        // last reading, at 86,340 s): not a wrap.
        let cleared = Context {
            uptime: Some(86_400.0),
            interfaces: HashMap::from([(1, (Some(86_390.0), None))]),
        };
        let rates = update(&mut again.clone(), &r, 60.0, &cleared);
        assert_eq!(
            (rates.discontinuities, rates.outcomes[&lo]),
            (1, Outcome::Discontinuity)
        );
        // Or lo runs at 10 bit/s: 10 B/s is more than it can carry.
        let slow = Context {
            uptime: Some(86_400.0),
            interfaces: HashMap::from([(1, (None, Some(10.0)))]),
        };
        let rates = update(&mut again.clone(), &r, 60.0, &slow);
        assert_eq!(rates.outcomes[&lo], Outcome::Discontinuity);
        // At 1 Mbit/s it is a wrap.
        let fast = Context {
            uptime: Some(86_400.0),
            interfaces: HashMap::from([(1, (None, Some(1e6)))]),
        };
        let rates = update(&mut again, &r, 60.0, &fast);
        assert_eq!(rates.outcomes[&lo], Outcome::Wrapped(10.0));
    }
}
