//! Tests of [`super::map_values`]: varbinds built by hand, mapped to paths
//! and values.

use super::*;
use bytes::Bytes;
use serde_json::json;

const IF_DESCR: &str = "1.3.6.1.2.1.2.2.1.2";
const IF_IN_OCTETS: &str = "1.3.6.1.2.1.2.2.1.10";
const SYS_UPTIME: &str = "1.3.6.1.2.1.1.3.0";
const SYS_NAME: &str = "1.3.6.1.2.1.1.5.0";

fn oid(s: &str) -> Oid {
    Oid::parse(s).unwrap()
}

fn text(s: &str) -> SnmpValue {
    SnmpValue::OctetString(Bytes::copy_from_slice(s.as_bytes()))
}

/// A sensor with `(oid, "get"|"walk")` OIDs.
fn sensor(id: u64, oids: &[(&str, &str)], expression: &str, path: &str) -> SensorSpec {
    let oids: Vec<_> = oids
        .iter()
        .map(|(o, f)| json!({"oid": o, "fetch_method": f}))
        .collect();
    let details = json!({"oids": oids, "expression": expression, "output_path": path});
    SensorSpec::parse(id, 60, &details).unwrap()
}

/// A walk of `base`: one row per `(index, value)`.
fn walk(base: &str, rows: &[(&str, SnmpValue)]) -> (Oid, Vec<VarBind>) {
    let rows = rows
        .iter()
        .map(|(i, v)| VarBind::new(oid(&format!("{base}.{i}")), v.clone()))
        .collect();
    (oid(base), rows)
}

fn got(values: &[(&str, SnmpValue)]) -> Option<HashMap<Oid, SnmpValue>> {
    Some(values.iter().map(|(o, v)| (oid(o), v.clone())).collect())
}

fn values(mapped: &Mapped) -> Vec<(&str, f64)> {
    mapped
        .values
        .iter()
        .map(|v| (v.path.as_str(), v.value))
        .collect()
}

#[test]
fn counter32_rates_joined_by_index_with_slugged_names() {
    // Grafolean's default traffic sensor, with the rate in bits.
    let s = sensor(
        1,
        &[(IF_DESCR, "walk"), (IF_IN_OCTETS, "walk")],
        "$2 * 8",
        "if.in-bits.{$index}.{$1}",
    );
    let answers = Answers {
        got: got(&[]),
        walks: HashMap::from([
            walk(
                IF_DESCR,
                &[("1", text("lo")), ("2", text("eth 0")), ("3", text("wg0"))],
            ),
            // wg0 (index 3) has no ifInOctets: its row is skipped.
            walk(
                IF_IN_OCTETS,
                &[
                    ("1", SnmpValue::Counter32(7000)),
                    ("2", SnmpValue::Counter32(4_000_000)),
                ],
            ),
        ]),
    };
    let outcomes = HashMap::from([
        (oid("1.3.6.1.2.1.2.2.1.10.1"), Outcome::Rate(10.0)),
        (oid("1.3.6.1.2.1.2.2.1.10.2"), Outcome::Wrapped(2.5)),
    ]);
    let mapped = map_values(&[&s], &answers, &outcomes, 7);
    assert_eq!(
        values(&mapped),
        vec![
            ("entity.7.snmp.if.in-bits.1.lo", 80.0),
            ("entity.7.snmp.if.in-bits.2.eth-0", 20.0)
        ]
    );
    assert_eq!(mapped.skipped_rows, 1);
    assert!(mapped.failed_sensors.is_empty());
}

#[test]
fn a_counter_without_a_rate_skips_its_row() {
    let s = sensor(1, &[(IF_IN_OCTETS, "walk")], "$1", "in.{$index}");
    let answers = Answers {
        got: got(&[]),
        walks: HashMap::from([walk(
            IF_IN_OCTETS,
            &[
                ("1", SnmpValue::Counter32(5)),
                ("2", SnmpValue::Counter64(6)),
                ("3", SnmpValue::Counter32(7)),
                ("4", SnmpValue::Counter64(8)),
            ],
        )]),
    };
    // A first reading, a reset, a rate, and none at all.
    let outcomes = HashMap::from([
        (oid("1.3.6.1.2.1.2.2.1.10.1"), Outcome::First),
        (oid("1.3.6.1.2.1.2.2.1.10.2"), Outcome::Reset),
        (oid("1.3.6.1.2.1.2.2.1.10.3"), Outcome::Rate(1.5)),
    ]);
    let mapped = map_values(&[&s], &answers, &outcomes, 7);
    assert_eq!(values(&mapped), vec![("entity.7.snmp.in.3", 1.5)]);
    assert_eq!(mapped.skipped_rows, 3);
}

#[test]
fn a_missing_oid_fails_its_sensor_and_not_the_others() {
    let ok = sensor(1, &[(SYS_UPTIME, "get")], "$1 / 100", "uptime");
    let missing = sensor(2, &[(SYS_NAME, "get")], "1", "name.{$1}");
    let no_such = sensor(3, &[("1.3.6.1.4.1.9.9", "get")], "$1", "x");
    let not_walked = sensor(4, &[("1.3.6.1.4.1.8", "walk")], "$1", "y.{$index}");
    let answers = Answers {
        got: got(&[
            (SYS_UPTIME, SnmpValue::TimeTicks(12_345)),
            ("1.3.6.1.4.1.9.9", SnmpValue::NoSuchInstance),
        ]),
        walks: HashMap::new(),
    };
    let sensors = [&ok, &missing, &no_such, &not_walked];
    let mapped = map_values(&sensors, &answers, &HashMap::new(), 7);
    assert_eq!(values(&mapped), vec![("entity.7.snmp.uptime", 123.45)]);
    assert_eq!(
        mapped.failed_sensors,
        vec![
            "sensor 2: 1.3.6.1.2.1.1.5.0: no value".to_string(),
            "sensor 3: 1.3.6.1.4.1.9.9: noSuchInstance".to_string(),
            "sensor 4: the walk of 1.3.6.1.4.1.8 failed".to_string(),
        ]
    );
    // The GET failed as a whole: every sensor with a GET fails.
    let failed = Answers {
        got: None,
        walks: HashMap::new(),
    };
    let mapped = map_values(&[&ok], &failed, &HashMap::new(), 7);
    assert_eq!(
        mapped.failed_sensors,
        vec!["sensor 1: the GET of 1.3.6.1.2.1.1.3.0 failed".to_string()]
    );
    assert!(mapped.values.is_empty());
}

#[test]
fn a_non_numeric_value_skips_its_row_and_numeric_text_counts() {
    let s = sensor(1, &[("1.3.6.1.4.1.99999.1", "walk")], "$1", "t.{$index}");
    let answers = Answers {
        got: got(&[]),
        walks: HashMap::from([walk(
            "1.3.6.1.4.1.99999.1",
            &[
                ("1", text(" 42.5 ")),
                ("2", text("n/a")),
                ("3", SnmpValue::Integer(-3)),
                ("4", SnmpValue::ObjectIdentifier(oid("1.3.6"))),
                // Python's float() of easysnmp's Latin-1 text: NBSP around,
                // `_` between digits.
                (
                    "5",
                    SnmpValue::OctetString(bytes::Bytes::from_static(b"\xa01_000\xa0")),
                ),
                // net-snmp's Opaque float (laLoadFloat): 0.25.
                (
                    "6",
                    SnmpValue::Opaque(bytes::Bytes::from_static(&[
                        0x9f, 0x78, 0x04, 0x3e, 0x80, 0x00, 0x00,
                    ])),
                ),
            ],
        )]),
    };
    let mapped = map_values(&[&s], &answers, &HashMap::new(), 7);
    assert_eq!(
        values(&mapped),
        vec![
            ("entity.7.snmp.t.1", 42.5),
            ("entity.7.snmp.t.3", -3.0),
            ("entity.7.snmp.t.5", 1000.0),
            ("entity.7.snmp.t.6", 0.25)
        ]
    );
    assert_eq!(mapped.skipped_rows, 2);
    // A value only in the path need not be a number.
    let named = sensor(
        2,
        &[(SYS_NAME, "get"), (SYS_UPTIME, "get")],
        "$2",
        "up.{$1}",
    );
    let answers = Answers {
        got: got(&[
            (SYS_NAME, text("core router")),
            (SYS_UPTIME, SnmpValue::TimeTicks(5)),
        ]),
        walks: HashMap::new(),
    };
    let mapped = map_values(&[&named], &answers, &HashMap::new(), 7);
    assert_eq!(values(&mapped), vec![("entity.7.snmp.up.core-router", 5.0)]);
}

#[test]
fn expressions_combine_values_and_a_non_finite_result_skips_the_row() {
    // Used percentage of a storage table: $2 used of $1 size.
    let s = sensor(
        1,
        &[
            ("1.3.6.1.2.1.25.2.3.1.5", "walk"),
            ("1.3.6.1.2.1.25.2.3.1.6", "walk"),
        ],
        "round($2 / $1 * 1000) / 10",
        "disk.used.{$index}",
    );
    let answers = Answers {
        got: got(&[]),
        walks: HashMap::from([
            walk(
                "1.3.6.1.2.1.25.2.3.1.5",
                &[
                    ("31", SnmpValue::Integer(3000)),
                    ("32", SnmpValue::Integer(0)),
                ],
            ),
            walk(
                "1.3.6.1.2.1.25.2.3.1.6",
                &[
                    ("31", SnmpValue::Integer(1000)),
                    ("32", SnmpValue::Integer(0)),
                ],
            ),
        ]),
    };
    let mapped = map_values(&[&s], &answers, &HashMap::new(), 3);
    // 0 / 0 is not a number: that row is skipped.
    assert_eq!(values(&mapped), vec![("entity.3.snmp.disk.used.31", 33.3)]);
    assert_eq!(mapped.skipped_rows, 1);
    // A GET-only sensor has one row, index 0; GETs and walks mix.
    let mixed = sensor(
        2,
        &[(SYS_UPTIME, "get"), ("1.3.6.1.2.1.25.2.3.1.5", "walk")],
        "$2 + $1 % 7",
        "mix.{$index}",
    );
    let scalar = sensor(3, &[(SYS_UPTIME, "get")], "$1 * 2", "scalar.{$index}");
    let answers = Answers {
        got: got(&[(SYS_UPTIME, SnmpValue::TimeTicks(100))]),
        ..answers
    };
    let mapped = map_values(&[&mixed, &scalar], &answers, &HashMap::new(), 3);
    assert_eq!(
        values(&mapped),
        vec![
            ("entity.3.snmp.mix.31", 3002.0),
            ("entity.3.snmp.mix.32", 2.0),
            ("entity.3.snmp.scalar.0", 200.0)
        ]
    );
}

#[test]
fn a_path_given_twice_in_one_firing_is_skipped() {
    let a = sensor(1, &[(SYS_UPTIME, "get")], "$1", "same");
    let b = sensor(2, &[(SYS_UPTIME, "get")], "$1 + 1", "same");
    let answers = Answers {
        got: got(&[(SYS_UPTIME, SnmpValue::TimeTicks(9))]),
        walks: HashMap::new(),
    };
    let mapped = map_values(&[&a, &b], &answers, &HashMap::new(), 1);
    assert_eq!(values(&mapped), vec![("entity.1.snmp.same", 9.0)]);
    assert_eq!(mapped.skipped_rows, 1);
}

#[test]
fn value_texts_are_easysnmps() {
    // An OCTET STRING is read byte by byte as Latin-1, as easysnmp did: UTF-8
    // `é` is two characters, which the slug makes `A-c`.
    assert_eq!(value_text(&text("Température"), Fetch::Get), "TempÃ©rature");
    let s = sensor(1, &[(IF_DESCR, "walk")], "1", "if.{$1}");
    let answers = Answers {
        got: got(&[]),
        walks: HashMap::from([walk(
            IF_DESCR,
            &[
                ("1", text("Température")),
                ("2", SnmpValue::OctetString(Bytes::from_static(b"caf\xe9"))),
            ],
        )]),
    };
    let mapped = map_values(&[&s], &answers, &HashMap::new(), 7);
    assert_eq!(
        values(&mapped),
        vec![
            ("entity.7.snmp.if.TempA-c-rature", 1.0),
            ("entity.7.snmp.if.cafe", 1.0)
        ]
    );
    // easysnmp's walk buffer holds 4,096 bytes; its GET's, a whole message.
    let long = SnmpValue::OctetString(Bytes::from(vec![b'a'; 5000]));
    assert_eq!(value_text(&long, Fetch::Walk).len(), 4096);
    assert_eq!(value_text(&long, Fetch::Get).len(), 5000);
    // net-snmp's Opaque float and Counter64, then printed by easysnmp.
    let float = SnmpValue::Opaque(Bytes::from_static(&[
        0x9f, 0x78, 0x04, 0x3e, 0x19, 0x99, 0x9a,
    ]));
    assert_eq!(value_text(&float, Fetch::Get), "0.150000");
    let c64 = SnmpValue::Opaque(Bytes::from_static(&[0x9f, 0x76, 0x02, 0x01, 0x00]));
    assert_eq!(value_text(&c64, Fetch::Get), "256");
    assert_eq!(
        value_text(&SnmpValue::Opaque(Bytes::from_static(b"x\xff")), Fetch::Get),
        "xÿ"
    );
    assert_eq!(c_float(f64::NAN), "nan");
    assert_eq!(c_float(-f64::INFINITY), "-inf");
    assert_eq!(c_float(2.5), "2.500000");
    for (v, t) in [
        (SnmpValue::Integer(-3), "-3"),
        (SnmpValue::TimeTicks(12345), "12345"),
        (SnmpValue::Counter64(u64::MAX), "18446744073709551615"),
        (SnmpValue::IpAddress([10, 0, 0, 1]), "10.0.0.1"),
        (SnmpValue::ObjectIdentifier(oid("1.3.6.1")), ".1.3.6.1"),
        (SnmpValue::Null, ""),
        (SnmpValue::NoSuchInstance, "NOSUCHINSTANCE"),
    ] {
        assert_eq!(value_text(&v, Fetch::Walk), t);
    }
}
