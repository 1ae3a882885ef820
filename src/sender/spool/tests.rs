//! Tests of the spool's file format and crash behaviour.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

fn temp_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gc-spool-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn v(p: &str, t: f64) -> PutValue {
    PutValue {
        p: p.into(),
        t,
        v: t * 2.0,
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    s.sort();
    s
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
}

#[test]
fn values_survive_reopening_and_acks_remove_them() {
    let dir = temp_dir();
    let (mut spool, stored, next) = Spool::open(&dir).unwrap();
    assert!(stored.is_empty());
    assert_eq!(next, 0);
    let a = [v("a.b", 1.5), v("c", 1_763_779_646.123_456), v("d", 3.0)];
    let seg = spool
        .append(a.iter().enumerate().map(|(i, x)| (i as u64, 7, x)))
        .unwrap();
    spool.ack(&mut [(1, seg)]).unwrap();
    drop(spool);
    let (_spool, stored, next) = Spool::open(&dir).unwrap();
    assert_eq!(next, 3);
    let got: Vec<(u64, u64, PutValue)> = stored
        .into_iter()
        .map(|s| (s.seq, s.account, s.value))
        .collect();
    assert_eq!(got, vec![(0, 7, a[0].clone()), (2, 7, a[2].clone())]);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_or_corrupt_tail_loses_only_that_record() {
    let dir = temp_dir();
    let (mut spool, _, _) = Spool::open(&dir).unwrap();
    for i in 0..3 {
        spool.append([(i, 1, &v("x", i as f64))]).unwrap();
    }
    drop(spool);
    let seg = segments(&dir).pop().unwrap();
    let full = fs::read(&seg).unwrap();
    // A crash in the middle of writing the third record.
    fs::write(&seg, &full[..full.len() - 5]).unwrap();
    let (spool, stored, next) = Spool::open(&dir).unwrap();
    assert_eq!(stored.iter().map(|s| s.seq).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(next, 2);
    drop(spool);
    // A flipped bit in the second record: it and what follows are ignored.
    let mut bad = full.clone();
    let second = full.len() / 3 + 10;
    bad[second] ^= 0x40;
    fs::write(&seg, &bad).unwrap();
    let (_, stored, _) = Spool::open(&dir).unwrap();
    assert_eq!(stored.iter().map(|s| s.seq).collect::<Vec<_>>(), [0]);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn fully_acked_segments_are_deleted_in_order() {
    let dir = temp_dir();
    let (mut spool, _, _) = Spool::open(&dir).unwrap();
    let first = spool.append([(0, 1, &v("x", 0.0))]).unwrap();
    drop(spool);
    // Reopening starts a new segment; the old one still holds value 0.
    let (mut spool, stored, next) = Spool::open(&dir).unwrap();
    assert_eq!(stored.len(), 1);
    spool.append([(next, 1, &v("y", 1.0))]).unwrap();
    assert_eq!(segments(&dir).len(), 2);
    spool.ack(&mut [(0, first)]).unwrap();
    assert_eq!(segments(&dir).len(), 1, "the first segment is gone");
    drop(spool);
    let (_, stored, _) = Spool::open(&dir).unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|s| s.value.p.as_str())
            .collect::<Vec<_>>(),
        ["y"]
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn values_name_the_segment_they_were_written_to_across_a_roll() {
    let dir = temp_dir();
    let (mut spool, _, _) = Spool::open(&dir).unwrap();
    spool.segment_bytes = 50;
    let a = spool
        .append([(0, 1, &v("a", 0.0)), (1, 1, &v("a", 1.0))])
        .unwrap();
    // The first segment is full (2 × 42 bytes > 50): the next write rolls.
    let b = spool.append([(2, 1, &v("b", 2.0))]).unwrap();
    assert_eq!(b, a + 1);
    assert_eq!(segments(&dir).len(), 2);
    spool.ack(&mut [(0, a), (1, a)]).unwrap();
    assert_eq!(segments(&dir).len(), 1, "the first segment was fully acked");
    drop(spool);
    let (_, stored, _) = Spool::open(&dir).unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|s| (s.seq, s.segment))
            .collect::<Vec<_>>(),
        [(2, b)]
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_segment_written_by_the_hand_written_crc_reads_back() {
    // Written by version 0.1's spool, whose CRC-32 was hand-written: three
    // values in account 7, the second acked. The CRC is now crc32fast's.
    let dir = temp_dir();
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        segment_path(&dir, 0),
        include_bytes!("testdata/segment-0.1.seg"),
    )
    .unwrap();
    let (_spool, stored, next) = Spool::open(&dir).unwrap();
    assert_eq!(next, 3);
    let got: Vec<(u64, u64, String, f64)> = stored
        .into_iter()
        .map(|s| (s.seq, s.account, s.value.p, s.value.t))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                0,
                7,
                "entity.1.ping.p0.ok".to_string(),
                1_763_779_646.123_456
            ),
            (2, 7, "entity.2.ping.success".to_string(), 1_763_779_647.0),
        ]
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn after_a_full_disk_delivered_values_are_not_replayed_and_later_ones_are() {
    let dir = temp_dir();
    let (mut spool, _, _) = Spool::open(&dir).unwrap();
    let values: Vec<PutValue> = (0..100).map(|i| v("entity.1.x", f64::from(i))).collect();
    let seg = spool
        .append(values.iter().enumerate().map(|(i, x)| (i as u64, 1, x)))
        .unwrap();
    // The disk is full: the next write is cut short and fails.
    spool.disk_bytes = spool.active_len + 10;
    let more = v("entity.1.y", 1.0);
    assert!(spool.append([(100, 1, &more)]).is_err());
    // The 100 values are delivered from memory; the ack cannot be written.
    let mut done: Vec<(u64, u64)> = (0..100).map(|i| (i, seg)).collect();
    assert!(spool.ack(&mut done).is_err(), "the disk is still full");
    drop(spool);
    let (mut spool, stored, _) = Spool::open(&dir).unwrap();
    assert!(
        stored.is_empty(),
        "{} delivered values would be replayed",
        stored.len()
    );
    // Space again: a value written now is read back after a restart (the torn
    // record of the failed write does not hide it).
    let later = v("entity.1.z", 2.0);
    spool.append([(200, 1, &later)]).unwrap();
    drop(spool);
    let (_spool, stored, _) = Spool::open(&dir).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].value, later);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_write_is_cut_off_so_that_later_records_count() {
    let dir = temp_dir();
    let (mut spool, _, _) = Spool::open(&dir).unwrap();
    let a = v("a", 1.0);
    spool.append([(0, 1, &a)]).unwrap();
    spool.disk_bytes = spool.active_len + 5;
    assert!(spool.append([(1, 1, &v("b", 2.0))]).is_err());
    spool.disk_bytes = u64::MAX;
    let c = v("c", 3.0);
    spool.append([(2, 1, &c)]).unwrap();
    drop(spool);
    let (_spool, stored, _) = Spool::open(&dir).unwrap();
    let got: Vec<PutValue> = stored.into_iter().map(|s| s.value).collect();
    assert_eq!(got, vec![a, c]);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn acks_that_could_not_be_written_are_written_with_the_next() {
    let dir = temp_dir();
    let (mut spool, _, _) = Spool::open(&dir).unwrap();
    // An older segment keeps one value pending throughout (its value is not
    // delivered), so the active segment is never simply emptied.
    spool.segment_bytes = 1;
    let old = v("entity.1.old", 0.0);
    let old_seg = spool.append([(0, 1, &old)]).unwrap();
    let values: Vec<PutValue> = (1..=50).map(|i| v("entity.1.x", f64::from(i))).collect();
    let seg = spool
        .append(values.iter().enumerate().map(|(i, x)| (i as u64 + 1, 1, x)))
        .unwrap();
    assert_ne!(seg, old_seg);
    spool.segment_bytes = SEGMENT_BYTES;
    // The disk is full: the 50 values are delivered, their ack is not written.
    spool.disk_bytes = spool.active_len;
    let mut done: Vec<(u64, u64)> = (1..=50).map(|i| (i, seg)).collect();
    assert!(spool.ack(&mut done).is_err());
    // Room again: the next ack (of a value written now) carries the old one.
    spool.disk_bytes = u64::MAX;
    let later = v("entity.1.later", 9.0);
    let later_seg = spool.append([(51, 1, &later)]).unwrap();
    spool.ack(&mut [(51, later_seg)]).unwrap();
    drop(spool);
    let (_spool, stored, _) = Spool::open(&dir).unwrap();
    let got: Vec<PutValue> = stored.into_iter().map(|s| s.value).collect();
    assert_eq!(got, vec![old], "only the undelivered value is replayed");
    fs::remove_dir_all(dir).unwrap();
}
