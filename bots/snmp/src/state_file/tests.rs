//! Tests of the state file: writing, reading, restoring, and the keeper.

use super::*;
use crate::counters::Outcome;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "snmp-state-{name}-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn data(now: f64, n: usize) -> StateData {
    StateData {
        format: FORMAT,
        saved_at: now,
        entities: vec![EntityRecord {
            entity_id: 7,
            longest_interval: 60,
            agent: Some("192.0.2.1:161".into()),
            counters: (0..n)
                .map(|i| CounterRecord {
                    oid: format!("1.3.6.1.2.1.2.2.1.10.{i}"),
                    value: u64::MAX - i as u64,
                    at: now - 1.0,
                    wide: i % 2 == 0,
                })
                .collect(),
        }],
    }
}

#[test]
fn a_write_is_complete_json_and_leaves_no_temp_file() {
    let d = dir("write");
    let path = d.join("state.json");
    let now = unix_now();
    save(&path, &data(now, 3)).unwrap();
    // Replaced atomically by a larger one.
    let big = data(now, 5000);
    save(&path, &big).unwrap();
    assert_eq!(names(&d), vec!["state.json".to_string()]);
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        parsed["entities"][0]["counters"].as_array().unwrap().len(),
        5000
    );
    let loaded = load(&path).unwrap().unwrap();
    assert_eq!(loaded.entities[0].counters.len(), 5000);
    assert_eq!(
        loaded.entities[0].counters[4999].oid,
        big.entities[0].counters[4999].oid
    );
    // u64 values are kept whole.
    assert_eq!(
        parsed["entities"][0]["counters"][0]["value"].as_u64(),
        Some(u64::MAX)
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_failed_write_keeps_the_old_file_and_no_temp_file() {
    let d = dir("fail");
    let path = d.join("state.json");
    save(&path, &data(1.0, 1)).unwrap();
    let before = std::fs::read(&path).unwrap();
    // The target is a directory now: the rename fails.
    let blocked = d.join("blocked");
    std::fs::create_dir_all(blocked.join("inside")).unwrap();
    let err = save(&blocked, &data(2.0, 1)).unwrap_err();
    assert!(matches!(err, StateFileError::Write { .. }), "{err}");
    assert!(err.to_string().contains("blocked"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        names(&d),
        vec!["blocked".to_string(), "state.json".to_string()]
    );
    // A directory that does not exist.
    let err = save(&d.join("nope/state.json"), &data(2.0, 1)).unwrap_err();
    assert!(matches!(err, StateFileError::Write { .. }), "{err}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn missing_corrupt_foreign_and_oversized_files() {
    let d = dir("bad");
    let path = d.join("state.json");
    assert!(load(&path).unwrap().is_none());
    for (text, what) in [
        ("", "empty"),
        (
            "{\"format\": 1, \"saved_at\": 1, \"entities\": [",
            "truncated",
        ),
        ("not json", "garbage"),
        (
            "{\"format\": 1, \"saved_at\": 1, \"entities\": [{\"entity_id\": -1, \"counters\": []}]}",
            "negative id",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, StateFileError::Parse { .. }), "{what}: {err}");
        assert!(err.to_string().contains("state.json"), "{err}");
    }
    std::fs::write(&path, r#"{"format": 2, "saved_at": 1, "entities": []}"#).unwrap();
    assert!(matches!(
        load(&path).unwrap_err(),
        StateFileError::Format { found: 2, .. }
    ));
    // Larger than the limit: refused unread (a sparse file).
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(MAX_FILE_BYTES + 1).unwrap();
    let err = load(&path).unwrap_err();
    assert!(
        matches!(err, StateFileError::TooLarge { size, .. } if size == MAX_FILE_BYTES + 1),
        "{err}"
    );
    assert!(err.to_string().contains("state.json"), "{err}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_corrupt_file_leaves_the_counters_empty_and_the_bot_usable() {
    let d = dir("corrupt");
    let path = d.join("state.json");
    std::fs::write(&path, "{\"format\": 1, \"entities\": [{").unwrap();
    let store = CounterStore::default();
    let keeper = StateKeeper::new(store.clone(), path.clone());
    assert!(matches!(
        keeper.load(),
        LoadOutcome::Failed(StateFileError::Parse { .. })
    ));
    assert_eq!(store.len(), 0);
    // The next write replaces it with a valid file.
    keeper.save().unwrap();
    assert_eq!(load(&path).unwrap().unwrap().entities, vec![]);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn stale_and_invalid_readings_are_dropped() {
    let now = 10_000.0;
    let reading = |oid: &str, at: f64| CounterRecord {
        oid: oid.into(),
        value: 5,
        at,
        wide: false,
    };
    let data = StateData {
        format: FORMAT,
        saved_at: now,
        entities: vec![
            // Every 60 s: kept for 2 × 60 + 60 = 180 s.
            EntityRecord {
                entity_id: 1,
                longest_interval: 60,
                agent: Some("192.0.2.1:1161".into()),
                counters: vec![
                    reading("1.3.6.1.9.1", now - 179.0),
                    reading("1.3.6.1.9.2", now - 181.0),
                    reading("not an oid", now - 1.0),
                ],
            },
            // Every 600 s: kept for 1260 s.
            EntityRecord {
                entity_id: 2,
                longest_interval: 600,
                agent: Some("not an address".into()),
                counters: vec![reading("1.3.6.1.9.1", now - 1000.0)],
            },
            // Unknown interval: as 60 s. All stale: no state at all.
            EntityRecord {
                entity_id: 3,
                longest_interval: 0,
                agent: None,
                counters: vec![reading("1.3.6.1.9.1", now - 181.0)],
            },
        ],
    };
    let (entities, r) = restore(data, now);
    assert_eq!((r.entities, r.counters, r.stale, r.invalid), (2, 2, 2, 1));
    assert_eq!(entities[&1].counters.len(), 1);
    assert_eq!(entities[&1].agent, Some("192.0.2.1:1161".parse().unwrap()));
    assert_eq!(entities[&2].counters.len(), 1);
    assert_eq!(entities[&2].agent, None);
    assert!(!entities.contains_key(&3));
    // A kept reading gives a rate at once.
    let mut counters = entities[&1].counters.clone();
    let oid = Oid::parse("1.3.6.1.9.1").unwrap();
    assert_eq!(
        counters.update(&oid, 1795, false, now, None, Default::default()),
        Outcome::Rate(10.0)
    );
}

#[test]
fn a_collectors_counters_survive_a_save_and_load() {
    let d = dir("roundtrip");
    let path = d.join("state.json");
    let now = unix_now();
    save(&path, &data(now, 4)).unwrap();
    let store = CounterStore::default();
    let keeper = StateKeeper::new(store.clone(), path.clone());
    match keeper.load() {
        LoadOutcome::Loaded(r) => assert_eq!((r.entities, r.counters), (1, 4)),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.len(), 1);
    std::fs::remove_file(&path).unwrap();
    keeper.save().unwrap();
    let again = load(&path).unwrap().unwrap();
    let mut counters = again.entities[0].counters.clone();
    counters.sort_by(|a, b| a.oid.cmp(&b.oid));
    let mut want = data(now, 4).entities[0].counters.clone();
    want.sort_by(|a, b| a.oid.cmp(&b.oid));
    // serde_json reads a float back to within one ULP (1e-7 s here).
    assert_eq!(counters.len(), want.len());
    for (got, want) in counters.iter().zip(&want) {
        assert_eq!(
            (&got.oid, got.value, got.wide),
            (&want.oid, want.value, want.wide)
        );
        assert!((got.at - want.at).abs() < 1e-6, "{got:?} {want:?}");
    }
    assert_eq!(again.entities[0].longest_interval, 60);
    assert_eq!(again.entities[0].agent.as_deref(), Some("192.0.2.1:161"));
    std::fs::remove_dir_all(d).unwrap();
}

#[tokio::test]
async fn the_periodic_write_runs_until_shutdown_then_writes_once_more() {
    let d = dir("periodic");
    let path = d.join("state.json");
    let keeper = StateKeeper::new(CounterStore::default(), path.clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(keeper.run(Duration::from_millis(50), shutdown.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let periodic = load(&path).unwrap().unwrap().saved_at;
    tokio::time::sleep(Duration::from_millis(20)).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let last = load(&path).unwrap().unwrap().saved_at;
    assert!(last > periodic, "written once more at shutdown");
    // Nothing is written after the task returned.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(load(&path).unwrap().unwrap().saved_at, last);
    assert_eq!(names(&d), vec!["state.json".to_string()]);
    std::fs::remove_dir_all(d).unwrap();
}

fn keeper_at(d: &Path) -> Result<StateKeeper, StateFileError> {
    StateKeeper::open(CounterStore::default(), d.join("state.json"))
}

#[test]
fn a_fifo_or_a_device_is_refused_unread_and_without_blocking() {
    let d = dir("fifo");
    let fifo = d.join("state.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(load(&fifo), Err(StateFileError::NotAFile { .. })));
    assert!(started.elapsed() < Duration::from_secs(1));
    let link = d.join("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let e = load(&link).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

#[test]
fn a_file_that_cannot_be_loaded_is_moved_aside_never_overwritten() {
    let d = dir("corrupt");
    let path = d.join("state.json");
    let foreign = b"{\"not\": \"ours\"} and more bytes that matter to someone";
    std::fs::write(&path, foreign).unwrap();
    let keeper = keeper_at(&d).unwrap();
    assert!(matches!(keeper.load(), LoadOutcome::Failed(_)));
    let aside: Vec<String> = names(&d)
        .into_iter()
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{:?}", names(&d));
    assert_eq!(std::fs::read(d.join(&aside[0])).unwrap(), foreign);
    assert!(!path.exists());
    // The first save writes a fresh file beside it.
    keeper.save().unwrap();
    assert!(load(&path).unwrap().is_some());
    assert_eq!(std::fs::read(d.join(&aside[0])).unwrap(), foreign);
}

#[test]
fn a_crash_temp_file_is_removed_at_start_and_others_are_left() {
    let d = dir("leftover");
    std::fs::write(d.join(".state.json.Xy12ab.tmp"), vec![b'x'; 4096]).unwrap();
    std::fs::write(d.join(".other.json.Xy12ab.tmp"), b"not ours").unwrap();
    let _keeper = keeper_at(&d).unwrap();
    assert_eq!(names(&d), vec![".other.json.Xy12ab.tmp", "state.json.lock"]);
}

#[test]
fn a_second_keeper_of_the_same_file_is_refused_with_the_holder_s_pid() {
    let d = dir("twice");
    let first = keeper_at(&d).unwrap();
    let e = keeper_at(&d).unwrap_err();
    assert!(matches!(e, StateFileError::InUse { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("PID {}", std::process::id())),
        "{e}"
    );
    // Freed with the first (and its clones).
    let clone = first.clone();
    drop(first);
    assert!(keeper_at(&d).is_err());
    drop(clone);
    assert!(keeper_at(&d).is_ok());
}

#[test]
fn a_directory_that_does_not_exist_is_an_error_at_start() {
    let d = dir("missing");
    let e =
        StateKeeper::open(CounterStore::default(), d.join("no/such/dir/state.json")).unwrap_err();
    assert!(matches!(e, StateFileError::Directory { .. }), "{e}");
}
