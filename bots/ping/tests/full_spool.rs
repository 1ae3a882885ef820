//! The released ping bot with its spool on a disk that fills up during a
//! backend outage: it keeps what it could not write in memory, delivers
//! everything once the backend is back, and a restart then replays nothing
//! that was delivered (a replayed PUT would overwrite a stored point, which
//! the fake counts).
//!
//! The disk is a 32 KiB tmpfs in a private mount namespace: the test runs
//! itself again under `unshare -m` (see `common/netns.rs`), as root.
//!
//! tmpfs counts whole pages, so the last page of the spool's segment keeps a
//! few hundred bytes free after the disk is "full": room for the acks of the
//! delivered values. The case where even an ack does not fit is tested
//! against a simulated disk in `src/sender/spool/tests.rs`.

mod common;

use std::time::Duration;

use common::{BIN, netns};
use grafolean_collector::testing::process::{BotCommand, BotProcess, wait_until};
use grafolean_collector::testing::{
    ACCOUNT_ID, BOT_TOKEN, FakeEntity, FakeGrafolean, Fault, ProtocolConfig,
};

#[test]
fn a_spool_on_a_full_disk_replays_nothing_that_was_delivered() {
    netns::run_isolated(
        "a_spool_on_a_full_disk_replays_nothing_that_was_delivered_inner",
        &["-m"],
    );
}

/// The bot with its spool in `spool`, against `fake`.
fn start(fake: &FakeGrafolean, spool: &std::path::Path) -> BotProcess {
    let mut command = BotCommand::new(BIN);
    command
        .arg("--spool-dir")
        .arg(spool)
        .env("BACKEND_URL", fake.url())
        .env("BOT_TOKEN", BOT_TOKEN);
    command.start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a private mount namespace, started by a_spool_on_a_full_disk_replays_nothing_that_was_delivered"]
async fn a_spool_on_a_full_disk_replays_nothing_that_was_delivered_inner() {
    if !netns::inside() {
        return;
    }
    let spool = std::env::temp_dir().join(format!("gc-full-spool-{}", std::process::id()));
    std::fs::create_dir_all(&spool).unwrap();
    netns::sh(&format!(
        "mount -t tmpfs -o size=32k tmpfs {}",
        spool.display()
    ));

    // 40 loopback targets every 3 s: about 70 values a second, so the 32 KiB
    // disk fills within seconds of the outage.
    let fake = FakeGrafolean::with_fixture_data().await;
    for i in 0..40u64 {
        fake.put_entity(
            FakeEntity::device(ACCOUNT_ID, format!("t{i}"), &format!("127.0.9.{}", i + 1))
                .with_id(7000 + i)
                .with_protocol("ping", ProtocolConfig::fixture_ping(Some(3))),
        );
    }
    let outage = fake.inject(Fault::status(500).path_contains("/values"));
    let mut bot = start(&fake, &spool);
    wait_until(
        Duration::from_secs(60),
        "the spool's disk to fill up",
        || bot.count(&["could not write to the spool"]) > 0,
    )
    .await;
    // The spool cuts off a record that did not fit, which frees its room
    // again: fill the disk to the last byte, as the rest of a host's disk
    // does, so that no ack fits either.
    let filler = spool.join("filler");
    netns::sh(&format!(
        "cat /dev/zero > {} 2>/dev/null; true",
        filler.display()
    ));
    // The backend is back: everything held in memory or on disk goes out.
    fake.remove_fault(outage);
    wait_until(Duration::from_secs(30), "values after the outage", || {
        !fake.values(ACCOUNT_ID).is_empty()
    })
    .await;
    // A few more seconds of normal sending, so that the backlog is drained.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = bot.stop_within(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let delivered = fake.values(ACCOUNT_ID).len();
    // Nothing was lost: each target's runs, every 3 s, all arrived.
    let mut runs: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let stored = fake.values(ACCOUNT_ID);
    for v in &stored {
        // The 40 targets every 3 s (not the fixture's own entity, every 10 s).
        let ours = v.path.starts_with("entity.70");
        if let Some(entity) = v.path.strip_suffix(".ping.success").filter(|_| ours) {
            runs.entry(entity).or_default().push(v.t);
        }
    }
    assert_eq!(runs.len(), 40, "{:?}", runs.keys());
    for (entity, t) in &mut runs {
        t.sort_by(f64::total_cmp);
        for pair in t.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                (gap - 3.0).abs() < 1e-3,
                "{entity}: a run is missing ({gap} s)"
            );
        }
    }
    // The operator frees the disk, and restarts the bot.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        fake.overwrites(),
        0,
        "a value arrived twice before the restart"
    );

    // A restart replays nothing: no stored point is written again.
    let restarted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut bot = start(&fake, &spool);
    wait_until(Duration::from_secs(30), "values after the restart", || {
        fake.values(ACCOUNT_ID).len() > delivered + 40
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replayed = fake
        .values(ACCOUNT_ID)
        .iter()
        .skip(delivered)
        .filter(|v| v.t < restarted_at)
        .count();
    assert_eq!(fake.overwrites(), 0, "delivered values were replayed");
    assert_eq!(
        replayed, 0,
        "values older than the restart arrived after it"
    );
    assert!(bot.stop_within(Duration::from_secs(30)).success());
    netns::sh(&format!("umount {}", spool.display()));
    println!(
        "delivered {delivered} values around a full spool; {}",
        netns::MARKER
    );
}
