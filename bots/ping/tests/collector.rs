//! `PingCollector` against real ICMP on loopback: the jobs it builds from
//! entity configs, and the values a run returns for the tick's affecting
//! intervals. Needs root or CAP_NET_RAW.

use std::time::{Duration, SystemTime};

use grafolean_collector::{
    Collector, EntityConfig, Intervals, JobConfigs, JobId, Problems, SensorConfig, Tick,
};
use grafolean_ping_bot::settings::Host;
use grafolean_ping_bot::{PingCollector, PingParams, PingSettings, Pinger, PingerOptions};
use serde_json::{Value as Json, json};

fn sensor(sensor_id: u64, interval: Option<u32>) -> SensorConfig {
    SensorConfig {
        sensor_id,
        interval,
        details: json!({}).into(),
        origin: None,
    }
}

fn entity(
    entity_id: u64,
    details: Json,
    credential: Json,
    sensors: Vec<SensorConfig>,
) -> EntityConfig {
    EntityConfig {
        account_id: 667410879,
        entity_id,
        name: format!("device {entity_id}"),
        entity_type: "device".into(),
        details,
        credential_id: Some(884419450),
        credential_details: credential.into(),
        sensors,
        origin: None,
    }
}

/// The backend's own credential style: every number is a string.
fn backend_credential() -> Json {
    json!({"n_packets":"2","sleep_packets":"0.5","timeout":"1.0","retry":"0"})
}

fn collector() -> PingCollector {
    PingCollector::new(Pinger::new(PingerOptions::default()).unwrap())
}

#[tokio::test]
async fn jobs_follow_entities_and_skip_invalid_ones() {
    let configs = JobConfigs {
        entities: vec![
            entity(
                1127398355,
                json!({"ipv4": "127.0.0.1"}),
                backend_credential(),
                vec![sensor(1, Some(10)), sensor(2, Some(60)), sensor(3, None)],
            ),
            entity(
                2,
                json!({"ipv4": "127.0.0.1"}),
                json!({"timeout": "soon"}),
                vec![sensor(1, Some(10))],
            ),
            entity(
                3,
                json!({"ipv4": "127.0.0.1"}),
                json!({"n_packets": 0}),
                vec![sensor(1, Some(10))],
            ),
            entity(
                4,
                json!({}),
                backend_credential(),
                vec![sensor(1, Some(10))],
            ),
            entity(
                5,
                json!({"ipv4": "127.0.0.1"}),
                backend_credential(),
                vec![sensor(1, None)],
            ),
            entity(
                6,
                json!({"ipv4": "127.0.0.2", "ipv6": "::1"}),
                json!({}),
                vec![sensor(1, Some(30))],
            ),
        ],
    };
    let jobs = collector().jobs(&configs, &mut Problems::default());
    let ids: Vec<&JobId> = jobs.iter().map(|j| &j.id).collect();
    assert_eq!(
        ids,
        [&JobId::new("entity.1127398355"), &JobId::new("entity.6")]
    );

    let first = &jobs[0];
    assert_eq!(first.intervals, Intervals::new([10, 60]).unwrap());
    assert_eq!(first.account, Some(667410879));
    let labels: Vec<(&str, &str)> = first
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("entity", "1127398355"),
            ("name", "device 1127398355"),
            ("target", "127.0.0.1")
        ]
    );
    let expected = PingParams {
        entity_id: 1127398355,
        ipv4: Some(Host::Ip("127.0.0.1".parse().unwrap())),
        ipv6: None,
        settings: PingSettings {
            n_packets: 2,
            timeout: Duration::from_secs(1),
            retry: 0,
            sleep_packets: Duration::from_millis(500),
            stats: false,
            packet: Default::default(),
        },
        sensor_intervals: vec![10, 60],
        series: Default::default(),
    };
    assert_eq!(first.params, expected);

    let dual = &jobs[1];
    assert_eq!(dual.params.settings, PingSettings::default());
    assert_eq!(
        dual.labels[2],
        ("target".to_string(), "127.0.0.2,::1".to_string())
    );
}

#[tokio::test]
async fn run_writes_python_paths_for_affected_sensors_only() {
    let collector = collector();
    let credential = json!({"n_packets": 3, "sleep_packets": "0.01", "timeout": "1.0"});
    let configs = JobConfigs {
        entities: vec![entity(
            42,
            json!({"ipv4": "127.0.0.1", "ipv6": "::1"}),
            credential,
            vec![sensor(1, Some(10)), sensor(2, Some(60))],
        )],
    };
    let params = collector
        .jobs(&configs, &mut Problems::default())
        .remove(0)
        .params;
    let tick = |intervals: &[u32]| Tick {
        at: SystemTime::now(),
        affecting: Intervals::new(intervals.iter().copied()).unwrap(),
    };

    // No sensor runs every 30 s: nothing is pinged, nothing is returned.
    assert_eq!(collector.run(tick(&[30]), &params).await.unwrap(), vec![]);

    for affecting in [&[10][..], &[60], &[10, 60], &[10, 30]] {
        let values = collector.run(tick(affecting), &params).await.unwrap();
        let paths: Vec<&str> = values.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "entity.42.ping.p0.ok",
                "entity.42.ping.p0.rtt",
                "entity.42.ping.p1.ok",
                "entity.42.ping.p1.rtt",
                "entity.42.ping.p2.ok",
                "entity.42.ping.p2.rtt",
                "entity.42.ping.success",
                "entity.42.ping.ipv6.p0.ok",
                "entity.42.ping.ipv6.p0.rtt",
                "entity.42.ping.ipv6.p1.ok",
                "entity.42.ping.ipv6.p1.rtt",
                "entity.42.ping.ipv6.p2.ok",
                "entity.42.ping.ipv6.p2.rtt",
                "entity.42.ping.ipv6.success",
            ],
            "affecting {affecting:?}"
        );
        for v in &values {
            assert!(v.validate().is_ok(), "{v}");
            if v.path.ends_with(".rtt") {
                assert!(v.value > 0.0 && v.value < 0.5, "{v}");
            } else {
                assert_eq!(v.value, 1.0, "{v}");
            }
        }
    }
}

/// `….p<i>.ok`, `….p<i>.rtt` or `….success`.
fn python_path(path: &str) -> bool {
    let mut parts = path.rsplit('.');
    let last = parts.next().unwrap();
    let packet = parts.next().unwrap();
    last == "success"
        || (matches!(last, "ok" | "rtt")
            && packet
                .strip_prefix('p')
                .is_some_and(|n| n.parse::<u32>().is_ok()))
}

#[tokio::test]
async fn stats_paths_are_written_only_when_switched_on() {
    let collector = collector();
    let tick = Tick {
        at: SystemTime::now(),
        affecting: Intervals::one(10).unwrap(),
    };
    let run = |stats: Json| {
        let configs = JobConfigs {
            entities: vec![entity(
                7,
                json!({"ipv4": "127.0.0.1", "ipv6": "::1"}),
                json!({"n_packets": 3, "sleep_packets": 0, "timeout": 1, "stats": stats}),
                vec![sensor(1, Some(10))],
            )],
        };
        let params = collector
            .jobs(&configs, &mut Problems::default())
            .remove(0)
            .params;
        let collector = collector.clone();
        let tick = tick.clone();
        async move { collector.run(tick, &params).await.unwrap() }
    };
    for off in [json!(null), json!(false), json!("false")] {
        let values = run(off.clone()).await;
        assert_eq!(values.len(), 14, "stats {off}: {values:?}");
        assert!(
            values
                .iter()
                .all(|v| v.path.contains(".p") || v.path.ends_with(".success")),
            "{values:?}"
        );
    }
    let values = run(json!("true")).await;
    let extra: Vec<(&str, f64)> = values
        .iter()
        .filter(|v| !python_path(&v.path))
        .map(|v| (v.path.as_str(), v.value))
        .collect();
    let paths: Vec<&str> = extra.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        paths,
        [
            "entity.7.ping.rtt_min",
            "entity.7.ping.rtt_avg",
            "entity.7.ping.rtt_max",
            "entity.7.ping.jitter",
            "entity.7.ping.loss",
            "entity.7.ping.ipv6.rtt_min",
            "entity.7.ping.ipv6.rtt_avg",
            "entity.7.ping.ipv6.rtt_max",
            "entity.7.ping.ipv6.jitter",
            "entity.7.ping.ipv6.loss",
        ]
    );
    let get = |p: &str| extra.iter().find(|(q, _)| *q == p).unwrap().1;
    for prefix in ["entity.7.ping", "entity.7.ping.ipv6"] {
        let (min, avg, max) = (
            get(&format!("{prefix}.rtt_min")),
            get(&format!("{prefix}.rtt_avg")),
            get(&format!("{prefix}.rtt_max")),
        );
        assert!(
            0.0 < min && min <= avg && avg <= max && max < 0.5,
            "{extra:?}"
        );
        let jitter = get(&format!("{prefix}.jitter"));
        assert!((0.0..=max - min).contains(&jitter), "{extra:?}");
        assert_eq!(get(&format!("{prefix}.loss")), 0.0);
    }
}

#[tokio::test]
async fn packet_options_are_checked_and_used() {
    let collector = collector();
    let with = |id, credential: Json| {
        entity(
            id,
            json!({"ipv4": "127.0.0.1"}),
            credential,
            vec![sensor(1, Some(10))],
        )
    };
    let configs = JobConfigs {
        entities: vec![
            with(
                1,
                json!({"n_packets": 2, "sleep_packets": 0, "payload_size": "1472", "ttl": "5", "source": "127.0.0.1", "dont_fragment": true}),
            ),
            // Not an address of this host.
            with(2, json!({"source": "192.0.2.77"})),
            // No IPv6 target for an IPv6 source.
            with(3, json!({"source": "::1"})),
            with(4, json!({"payload_size": 65_000})),
        ],
    };
    let jobs = collector.jobs(&configs, &mut Problems::default());
    let ids: Vec<&JobId> = jobs.iter().map(|j| &j.id).collect();
    assert_eq!(ids, [&JobId::new("entity.1")]);
    let packet = jobs[0].params.settings.packet;
    assert_eq!(
        (packet.payload, packet.ttl, packet.dont_fragment),
        (1472, Some(5), true)
    );
    let tick = Tick {
        at: SystemTime::now(),
        affecting: Intervals::one(10).unwrap(),
    };
    let values = collector.run(tick, &jobs[0].params).await.unwrap();
    let success = values
        .iter()
        .find(|v| v.path == "entity.1.ping.success")
        .unwrap();
    assert_eq!(success.value, 1.0, "{values:?}");
}

#[tokio::test]
async fn literal_addresses_get_their_series_with_the_job() {
    let collector = collector();
    let configs = JobConfigs {
        entities: vec![
            entity(
                1,
                json!({"ipv4": "127.0.0.1", "ipv6": "::1"}),
                json!({}),
                vec![sensor(1, Some(10))],
            ),
            entity(
                2,
                json!({"ipv4": "localhost"}),
                json!({}),
                vec![sensor(1, Some(10))],
            ),
        ],
    };
    let jobs = collector.jobs(&configs, &mut Problems::default());
    assert!(jobs[0].params.series.iter().all(|s| s.is_some()));
    assert!(jobs[1].params.series.iter().all(|s| !s.is_some()));
}
