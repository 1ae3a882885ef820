//! The released ping bot against a backend whose answers never end, at the
//! default read limit (64 MiB): it costs the bot one clear error per request
//! that names the resource and the limit, the bot's peak RSS stays under
//! 100 MB, and the bot recovers when the backend does. This is how the
//! problem was first seen: the bot's RSS climbed to 2.7 GB.

mod common;

use std::time::Duration;

use common::BIN;
use grafolean_collector::testing::process::{BotCommand, wait_until};
use grafolean_collector::testing::{ACCOUNT_ID, BOT_TOKEN, ENTITY_ID, FakeGrafolean, Fault};

/// The bound the issue sets on the bot's memory while it meets an endless
/// body.
const MAX_RSS: u64 = 100 << 20;

/// The default limit on a config answer, as the bot's log states it.
const LIMIT: &str = "limit of 67108864 bytes";

/// The peak resident set size of process `pid` in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_costs_the_bot_an_error_not_its_memory() {
    let fake = FakeGrafolean::with_fixture_data().await;
    assert!(fake.update_entity(ENTITY_ID, |e| {
        e.protocols.get_mut("ping").unwrap().sensors[0].interval = Some(2);
    }));
    let endless = fake.inject(Fault::endless_body().path_prefix("/api/profile"));
    let mut command = BotCommand::new(BIN);
    command
        .env("BACKEND_URL", fake.url())
        .env("BOT_TOKEN", BOT_TOKEN)
        .env("JOBS_REFRESH_INTERVAL", "1");
    let mut bot = command.start();
    let pid = bot.pid();

    // The profile never ends: each start-up attempt reads the limit and fails
    // with an error that names the resource and the limit (warned once for
    // the episode). A third request means that two failed.
    let requests = |path: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with(path))
            .count()
    };
    wait_until(Duration::from_secs(60), "two failed profile reads", || {
        requests("/api/profile") >= 3 && bot.count(&["GET profile", LIMIT]) == 1
    })
    .await;
    let rss = peak_rss(pid);
    eprintln!(
        "the bot's peak RSS after the endless profile: {} MB",
        rss >> 20
    );
    assert!(rss < MAX_RSS, "peak RSS {} MB", rss >> 20);
    assert!(bot.is_running(), "the bot exited");

    // The backend recovers: the bot loads its jobs and sends values.
    fake.remove_fault(endless);
    tokio::time::timeout(Duration::from_secs(30), fake.wait_for_values(ACCOUNT_ID, 2))
        .await
        .expect("values arrive after the backend recovered");

    // Now the entity list never ends: each refresh fails, and the bot keeps
    // its job and goes on sending.
    fake.clear_requests();
    let endless = fake.inject(Fault::endless_body().path_contains("/entities"));
    let entities = format!("GET accounts/{ACCOUNT_ID}/entities");
    let list = format!("/api/accounts/{ACCOUNT_ID}/entities");
    wait_until(Duration::from_secs(60), "two failed entity lists", || {
        requests(&list) >= 3 && bot.count(&[&entities, LIMIT]) == 1
    })
    .await;
    let before = fake.values(ACCOUNT_ID).len();
    wait_until(Duration::from_secs(20), "values during the fault", || {
        fake.values(ACCOUNT_ID).len() > before
    })
    .await;
    let rss = peak_rss(pid);
    eprintln!(
        "the bot's peak RSS after the endless entity lists: {} MB",
        rss >> 20
    );
    assert!(rss < MAX_RSS, "peak RSS {} MB", rss >> 20);
    fake.remove_fault(endless);
    assert!(bot.is_running(), "the bot exited");
}
