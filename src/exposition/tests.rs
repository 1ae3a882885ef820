//! Unit tests of the path mapping, the escaping and the series lifecycle.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The store's series as prometheus-client encodes them on `/metrics`,
/// without the `# HELP` lines and the final `# EOF`.
fn rendered(store: &ValueStore) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(store.clone()));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out.lines()
        .filter(|l| !l.starts_with("# HELP ") && *l != "# EOF")
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The ping bot's mapping, as the ping bot is expected to install it.
fn ping_mapper(path: &str) -> Option<MappedPath> {
    let (entity, rest) = split_entity(path);
    let entity = entity?;
    let mapped = match rest.split('.').collect::<Vec<_>>().as_slice() {
        ["ping", "success"] => MappedPath::new("ping_success_ratio"),
        ["ping", p, "ok"] => {
            MappedPath::new("ping_packet_ok").with_label("packet", p.strip_prefix('p')?)
        }
        ["ping", p, "rtt"] => {
            MappedPath::new("ping_rtt_seconds").with_label("packet", p.strip_prefix('p')?)
        }
        _ => return None,
    };
    Some(mapped.with_label("entity", entity))
}

#[test]
fn generic_rule_strips_entity_and_joins_segments() {
    let m = generic_mapping("entity.42.ping.p0.ok");
    assert_eq!(m.name, "grafolean_value_ping_p0_ok");
    assert_eq!(m.labels, labels(&[("entity", "42")]));
    assert_eq!(m.scale, 1.0);

    let m = generic_mapping("snmp.if-in.%2e3");
    assert_eq!(m.name, "grafolean_value_snmp_if_in__2e3");
    assert!(m.labels.is_empty());

    // Too short to carry an entity pair: kept as segments.
    assert_eq!(
        generic_mapping("entity.42").name,
        "grafolean_value_entity_42"
    );
}

#[test]
fn names_are_sanitised() {
    assert_eq!(sanitize_metric_name("a:b.c-d"), "a:b_c_d");
    assert_eq!(sanitize_metric_name("ü"), "_");
    assert_eq!(sanitize_label_name("a:b"), "a_b");
    assert_eq!(sanitize_label_name("1x"), "_1x");
    assert_eq!(sanitize_label_name("___x"), "_x");
    assert_eq!(sanitize_label_name(""), "_");
}

#[test]
fn label_values_are_escaped() {
    let store = ValueStore::new();
    let job = JobId::new("j");
    store.update(
        &job,
        &labels(&[("target", "a\"b\\c\nd}{,")]),
        &[Value::new("x", 1.0)],
    );
    assert_eq!(
        rendered(&store),
        "# TYPE grafolean_value_x gauge\ngrafolean_value_x{target=\"a\\\"b\\\\c\\nd}{,\"} 1.0\n"
    );
}

#[test]
fn golden_text_with_ping_mapper() {
    let store = ValueStore::new().with_mapper(ping_mapper);
    let job_labels = labels(&[("target", "127.0.0.1")]);
    store.update(
        &JobId::new("entity.42"),
        &job_labels,
        &[
            Value::new("entity.42.ping.p0.ok", 1.0),
            Value::new("entity.42.ping.p0.rtt", 0.0125),
            Value::new("entity.42.ping.p1.ok", 0.0),
            Value::new("entity.42.ping.success", 0.5),
            Value::new("entity.42.other.thing", 3e-9),
            Value::new("entity.42.big", 1e21),
            Value::new("entity.42.nan", f64::NAN),
            Value::new("entity.42.inf", f64::NEG_INFINITY),
        ],
    );
    let expected = "\
# TYPE grafolean_value_big gauge
grafolean_value_big{entity=\"42\",target=\"127.0.0.1\"} 1e21
# TYPE grafolean_value_other_thing gauge
grafolean_value_other_thing{entity=\"42\",target=\"127.0.0.1\"} 3e-9
# TYPE ping_packet_ok gauge
ping_packet_ok{entity=\"42\",packet=\"0\",target=\"127.0.0.1\"} 1.0
ping_packet_ok{entity=\"42\",packet=\"1\",target=\"127.0.0.1\"} 0.0
# TYPE ping_rtt_seconds gauge
ping_rtt_seconds{entity=\"42\",packet=\"0\",target=\"127.0.0.1\"} 0.0125
# TYPE ping_success_ratio gauge
ping_success_ratio{entity=\"42\",target=\"127.0.0.1\"} 0.5
";
    // NaN and infinities are not values in Grafolean (the sender drops them),
    // and are not exported either.
    assert_eq!(rendered(&store), expected);
    assert_eq!(store.len(), 8, "kept as series, not exported");
}

#[test]
fn path_labels_win_over_job_labels_and_scale_applies() {
    let store = ValueStore::new().with_mapper(|_| {
        Some(
            MappedPath::new("m")
                .with_label("entity", "7")
                .with_scale(0.001),
        )
    });
    store.update(
        &JobId::new("j"),
        &labels(&[("entity", "job"), ("z", "1")]),
        &[Value::new("a", 250.0)],
    );
    assert_eq!(
        rendered(&store),
        "# TYPE m gauge\nm{entity=\"7\",z=\"1\"} 0.25\n"
    );
}

#[test]
fn mapper_cannot_shadow_sdk_or_process_metrics() {
    let store = ValueStore::new().with_mapper(|p| {
        Some(MappedPath::new(if p == "a" {
            "process_open_fds"
        } else {
            "grafolean_bot_runs"
        }))
    });
    assert_eq!(store.map_path("a").name, "grafolean_value_a");
    assert_eq!(store.map_path("b").name, "grafolean_value_b");
}

#[test]
fn update_replaces_a_jobs_series() {
    let store = ValueStore::new();
    let job = JobId::new("j");
    store.update(&job, &[], &[Value::new("a", 1.0), Value::new("b", 2.0)]);
    assert_eq!(store.len(), 2);
    store.update(&job, &[], &[Value::new("b", 3.0)]);
    assert_eq!(
        rendered(&store),
        "# TYPE grafolean_value_b gauge\ngrafolean_value_b 3.0\n"
    );
    // A run without values leaves no series behind.
    store.update(&job, &[], &[]);
    assert!(store.is_empty());
    assert_eq!(rendered(&store), "");
}

#[test]
fn removed_jobs_lose_their_series() {
    let store = ValueStore::new();
    let (a, b, c) = (JobId::new("a"), JobId::new("b"), JobId::new("c"));
    for job in [&a, &b, &c] {
        store.update(
            job,
            &labels(&[("job", job.as_str())]),
            &[Value::new("v", 1.0)],
        );
    }
    assert_eq!(store.len(), 3);
    store.remove_job(&b);
    assert_eq!(store.len(), 2);
    assert!(!rendered(&store).contains("job=\"b\""));
    store.retain_jobs([&c]);
    assert_eq!(
        rendered(&store),
        "# TYPE grafolean_value_v gauge\ngrafolean_value_v{job=\"c\"} 1.0\n"
    );
    store.retain_jobs([]);
    assert!(store.is_empty());
    assert_eq!(rendered(&store), "");
}

#[test]
fn a_series_taken_over_by_another_job_survives_the_first_jobs_removal() {
    let store = ValueStore::new();
    let (a, b) = (JobId::new("a"), JobId::new("b"));
    store.update(&a, &[], &[Value::new("shared", 1.0)]);
    store.update(&b, &[], &[Value::new("shared", 2.0)]);
    assert_eq!(store.len(), 1);
    store.remove_job(&a);
    assert_eq!(
        rendered(&store),
        "# TYPE grafolean_value_shared gauge\ngrafolean_value_shared 2.0\n"
    );
    store.remove_job(&b);
    assert!(store.is_empty());
}

#[test]
fn an_unchanged_job_updates_its_cells_and_the_last_writer_wins() {
    let store = ValueStore::new().with_mapper(ping_mapper);
    let (a, b) = (JobId::new("a"), JobId::new("b"));
    let lbl = labels(&[("name", "x")]);
    let run = |v: f64| {
        [
            Value::new("entity.1.ping.p0.rtt", v),
            Value::new("entity.1.ping.success", 1.0),
        ]
    };
    store.update(&a, &lbl, &run(0.5));
    // The same paths and labels: the shortcut.
    store.update(&a, &lbl, &run(0.25));
    let text = rendered(&store);
    assert!(
        text.contains("ping_rtt_seconds{entity=\"1\",name=\"x\",packet=\"0\"} 0.25\n"),
        "{text}"
    );
    assert_eq!(store.len(), 2);
    // Another job writes the same series; then the first one again: the
    // last writer's value shows, whichever path each took.
    store.update(&b, &lbl, &run(0.75));
    assert!(rendered(&store).contains("} 0.75\n"));
    store.update(&a, &lbl, &run(0.125));
    assert!(
        rendered(&store).contains("} 0.125\n"),
        "{}",
        rendered(&store)
    );
    store.update(&a, &lbl, &run(0.0625));
    assert!(
        rendered(&store).contains("} 0.0625\n"),
        "{}",
        rendered(&store)
    );
    assert_eq!(store.len(), 2);
    // Changed labels take the slow path and move the series.
    store.update(&a, &labels(&[("name", "y")]), &run(1.0));
    let text = rendered(&store);
    assert!(text.contains("name=\"y\",packet=\"0\"} 1.0\n"), "{text}");
    store.remove_job(&b);
    store.remove_job(&a);
    assert!(store.is_empty(), "{}", rendered(&store));
}

#[test]
fn numbers_format_like_debug() {
    for v in [
        0.0,
        -0.0,
        1.0,
        -1.0,
        3.0,
        10.0,
        123456789.0,
        -987654321.0,
        999_999_999_999_999.0,
        1e15,
        1e16,
        0.5,
        1e-7,
        1e300,
        -2.5e-300,
        f64::MAX,
        f64::MIN_POSITIVE,
    ] {
        let store = ValueStore::new();
        store.update(&JobId::new("j"), &[], &[Value::new("x", v)]);
        let text = rendered(&store);
        let line = text
            .lines()
            .find(|l| l.starts_with("grafolean_value_x "))
            .unwrap();
        let out = line.rsplit(' ').next().unwrap();
        assert_eq!(
            out.parse::<f64>().unwrap().to_bits(),
            v.to_bits(),
            "{v}: {out}"
        );
    }
}

#[test]
fn label_values_are_escaped_exactly_once() {
    // The value gauges and the SDK registry are written by one encoder,
    // prometheus-client's, which escapes label values (since 0.26); the SDK
    // must not escape them again.
    let metrics = crate::metrics::Metrics::new("a\"b\\c");
    let text = metrics.encode();
    assert!(
        text.contains(r#"bot="a\"b\\c""#),
        "build_info's bot label is not escaped exactly once:\n{text}"
    );
    assert!(!text.contains(r#"a\\\"b"#), "escaped twice:\n{text}");

    let store = ValueStore::new();
    store.update(
        &JobId::new("j"),
        &labels(&[("t", "\\\"")]),
        &[Value::new("x", 1.0)],
    );
    assert!(
        rendered(&store).contains(r#"t="\\\"""#),
        "{}",
        rendered(&store)
    );
}

#[test]
fn long_label_values_are_capped_on_a_character_boundary() {
    let store = ValueStore::new();
    let long = "é".repeat(1_000_000); // 2 MB
    store.update(
        &JobId::new("j"),
        &labels(&[("name", &long)]),
        &[Value::new("x", 1.0)],
    );
    let text = rendered(&store);
    assert!(text.len() < 400, "{} bytes", text.len());
    assert!(text.contains("é…\""), "the cut is marked: {text}");
}

#[test]
fn a_removed_jobs_late_update_is_ignored() {
    let store = ValueStore::new();
    let (a, b) = (JobId::new("a"), JobId::new("b"));
    store.retain_jobs([&a]);
    store.update(&b, &[], &[Value::new("late", 1.0)]);
    assert!(store.is_empty(), "{}", rendered(&store));
    store.update(&a, &[], &[Value::new("live", 1.0)]);
    assert_eq!(store.len(), 1);
}
