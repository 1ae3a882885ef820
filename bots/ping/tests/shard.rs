//! One bot token, several ping-bot processes (`--shard i/n`, issue 15),
//! against the fake Grafolean backend: 20,000 entities on loopback addresses
//! split by 4 replica processes, then a 5th joins and the 4 are rolled to
//! `i/5` in the order of `docs/sharding.md` (start the new replica first; start each `i/5`
//! before stopping its `i/4`).
//!
//! What each replica polls is read from its own `/metrics` (the entities in
//! its `ping_requests_total`); what the backend got, and when, from the
//! fake's stored values (PUT with each run's tick time). Asserted: the
//! replicas partition the entities, each polls exactly its rendezvous share,
//! each refresh costs the backend the same few requests whatever the share,
//! at most 21 % of the entities move from 4 to 5 replicas (and only onto the
//! new one), and across the whole roll no entity goes longer than one
//! interval (plus a small slack) without a point.
//!
//! Runs inside a private network namespace (re-executing its `_inner` twin
//! under `unshare -n`) so that its 2,000 pings a second stay off the host's
//! loopback and away from the other ICMP tests. Needs root, as they do.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{BIN, netns};
use grafolean_collector::Shard;
use grafolean_collector::testing::process::{BotCommand, BotProcess, sample};
use grafolean_collector::testing::{
    FakeAccount, FakeCredential, FakeEntity, FakeGrafolean, FakeSensor, FakeSensorRef,
    ProtocolConfig,
};

/// Entities.
const N: usize = 20_000;
/// Every entity's sensor interval, in seconds.
const INTERVAL: u64 = 6;
/// How much longer than [`INTERVAL`] a gap between an entity's points may
/// be: the points carry their tick's time, and a job keeps its phase on any
/// replica, so a gap is one interval unless a run was missed.
const SLACK: f64 = 1.0;
const ACCOUNT: u64 = 1_000_001;
/// What a replica asks the backend from its start to its first jobs: the
/// start-up check (`status/info`), then its refresh, `2 + A + C + S`
/// requests: the profile, the accounts, the account's entity list (which
/// carries each entity's protocols), the credential, the sensor. The same
/// for every replica whatever its share.
const START_REQUESTS: [&str; 6] = [
    "GET /api/status/info",
    "GET /api/profile/",
    "GET /api/accounts/",
    "GET /api/accounts/{account}/entities/",
    "GET /api/accounts/{account}/credentials/{credential}",
    "GET /api/accounts/{account}/sensors/{sensor}",
];

/// SplitMix64, seeded: the entity ids are fixed 31-bit numbers (as the
/// backend's are), so the shares, and the figures printed, are the same on
/// every run.
fn entity_ids() -> Vec<u64> {
    let mut state: u64 = 15;
    let mut seen = HashSet::new();
    let mut ids = Vec::with_capacity(N);
    while ids.len() < N {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let id = (z ^ (z >> 31)) & 0x7fff_ffff;
        if id != 0 && seen.insert(id) {
            ids.push(id);
        }
    }
    ids
}

/// One ping-bot process: replica `shard` of the bot with `token`.
struct Replica {
    shard: Shard,
    bot: BotProcess,
    started: Instant,
}

impl Replica {
    fn start(fake: &FakeGrafolean, token: &str, shard: Shard) -> Self {
        let mut command = BotCommand::new(BIN);
        command
            .args(["--shard", &shard.to_string()])
            .env("BACKEND_URL", fake.url())
            .env("BOT_TOKEN", token)
            // One refresh, at the start, in this test: each replica's
            // refresh requests are then the ones between its start and its
            // `entities_owned` (the replicas share a token, so the fake cannot
            // tell them apart otherwise).
            .env("JOBS_REFRESH_INTERVAL", "600")
            .env("RUST_LOG", "warn");
        Self {
            shard,
            bot: command.start(),
            started: Instant::now(),
        }
    }

    fn metrics(&self) -> String {
        self.bot.metrics()
    }

    fn assert_running(&mut self) {
        assert!(
            self.bot.is_running(),
            "replica {} exited: {}",
            self.shard,
            self.bot.log().join("\n")
        );
    }

    /// Waits for the first refresh to have loaded the jobs; returns the
    /// entities seen and owned.
    fn wait_refreshed(&mut self) -> (f64, f64) {
        loop {
            let text = self.metrics();
            if sample(&text, "grafolean_bot_refresh_duration_seconds_count").unwrap_or(0.0) >= 1.0 {
                let seen = sample(&text, "grafolean_bot_entities_seen").unwrap();
                let owned = sample(&text, "grafolean_bot_entities_owned").unwrap();
                println!(
                    "replica {}: refreshed {:.1} s after its start, {seen} seen, {owned} owned",
                    self.shard,
                    self.started.elapsed().as_secs_f64()
                );
                return (seen, owned);
            }
            self.assert_running();
            assert!(
                self.started.elapsed() < Duration::from_secs(60),
                "replica {} did not refresh: {}",
                self.shard,
                self.bot.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The entities this replica has pinged (each at least once), once it
    /// has pinged `owned` of them.
    fn wait_polled(&mut self, owned: usize) -> HashSet<u64> {
        loop {
            let scraped = Instant::now();
            let polled = polled(&self.metrics());
            if polled.len() >= owned {
                println!(
                    "replica {}: all {owned} pinged {:.1} s after its start (scrape: {:?})",
                    self.shard,
                    self.started.elapsed().as_secs_f64(),
                    scraped.elapsed()
                );
                return polled;
            }
            self.assert_running();
            assert!(
                self.started.elapsed() < Duration::from_secs(90),
                "replica {}: {} of {owned} entities pinged",
                self.shard,
                polled.len()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The CPU time this process has used so far (user and system).
    fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.bot.pid()))
    }

    /// SIGTERM; asserts a clean exit. Prints the CPU time it used.
    fn stop(mut self) {
        println!(
            "replica {}: {:.1} s of CPU over {:.0} s",
            self.shard,
            self.cpu().as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        );
        let log = self.bot.log();
        let status = self.bot.stop_within(Duration::from_secs(20));
        assert!(
            status.success(),
            "replica {}: {status}\n{}",
            self.shard,
            log.join("\n")
        );
    }
}

/// The entities in a `/metrics` page's `ping_requests_total` with at least
/// one request.
fn polled(text: &str) -> HashSet<u64> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("ping_requests_total{entity=\"")?;
            let (id, rest) = rest.split_once('"')?;
            let v: f64 = rest.rsplit(' ').next()?.parse().ok()?;
            (v >= 1.0).then(|| id.parse().ok())?
        })
        .collect()
}

/// The requests other than values that the fake received since the last
/// call, as `METHOD path`, and forgets every recorded request. Called only while no
/// refresh is under way.
fn take_requests(fake: &FakeGrafolean) -> Vec<String> {
    let requests = fake
        .requests()
        .iter()
        .filter(|r| !r.path.contains("/values"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    fake.clear_requests();
    requests
}

/// The user and system CPU time in a `/proc/…/stat` file.
fn cpu_of(stat: &str) -> Duration {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // The fields after the command (in parentheses): utime and stime are
    // the 12th and 13th, in clock ticks (100 a second on Linux).
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn four_ping_replicas_split_20000_entities_and_a_fifth_joins_without_a_gap() {
    netns::run_in_private_netns(
        "four_ping_replicas_split_20000_entities_and_a_fifth_joins_without_a_gap_inner",
    );
}

#[test]
#[ignore = "runs inside a private network namespace, started by four_ping_replicas_split_20000_entities_and_a_fifth_joins_without_a_gap"]
fn four_ping_replicas_split_20000_entities_and_a_fifth_joins_without_a_gap_inner() {
    if !netns::inside() {
        return;
    }
    let test_started = Instant::now();
    netns::sh("ip link set lo up");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeGrafolean::start());
    fake.put_account(FakeAccount::new("shards").with_id(ACCOUNT));
    let bot = fake.add_account_bot(ACCOUNT, "ping");
    let credential = fake.put_credential(FakeCredential::new(
        ACCOUNT,
        "ping",
        serde_json::json!({"n_packets": 1, "sleep_packets": 0, "timeout": 1}),
    ));
    let sensor = fake.put_sensor(FakeSensor::new(ACCOUNT, "ping", Some(INTERVAL as u32)));
    let ids = entity_ids();
    fake.put_entities(ids.iter().enumerate().map(|(i, &id)| {
        let n = i + 1;
        let ip = format!("127.{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff);
        FakeEntity::device(ACCOUNT, format!("target {n}"), &ip)
            .with_id(id)
            .with_protocol(
                "ping",
                ProtocolConfig {
                    credential,
                    sensors: vec![FakeSensorRef {
                        sensor,
                        interval: None,
                    }],
                    bot: Some(bot.id),
                },
            )
    }));
    let start_requests: Vec<String> = START_REQUESTS
        .iter()
        .map(|r| {
            r.replace("{account}", &ACCOUNT.to_string())
                .replace("{credential}", &credential.to_string())
                .replace("{sensor}", &sensor.to_string())
        })
        .collect();
    let shard = |i, n| Shard::new(i, n).unwrap();
    let expected =
        |s: Shard| -> HashSet<u64> { ids.iter().copied().filter(|&id| s.owns(id)).collect() };

    // 4 replicas, started one after another so that each one's refresh
    // requests are told apart.
    take_requests(&fake);
    let mut four = Vec::new();
    let mut owned4 = Vec::new();
    for i in 0..4 {
        let mut r = Replica::start(&fake, &bot.token, shard(i, 4));
        let (seen, owned) = r.wait_refreshed();
        let requests = take_requests(&fake);
        println!(
            "replica {i}/4: {} requests to its first jobs",
            requests.len()
        );
        assert_eq!(seen, N as f64, "replica {i}/4 sees every entity");
        assert_eq!(requests, start_requests, "replica {i}/4's start");
        let share = owned / (N as f64 / 4.0);
        assert!(
            (0.95..=1.05).contains(&share),
            "replica {i}/4 owns {owned}, {share:.3} of N/4"
        );
        owned4.push(owned as usize);
        four.push(r);
    }
    // Each polls its share, and only it: the shares partition the entities.
    // Within one interval of its refresh a replica has pinged every entity
    // it owns (the phases are spread over the interval).
    std::thread::sleep(Duration::from_secs(INTERVAL));
    let mut before: HashMap<u64, u32> = HashMap::new();
    for (i, r) in four.iter_mut().enumerate() {
        let polled = r.wait_polled(owned4[i]);
        assert_eq!(polled.len(), owned4[i], "replica {i}/4");
        assert_eq!(polled, expected(shard(i as u32, 4)), "replica {i}/4");
        for id in polled {
            assert!(
                before.insert(id, i as u32).is_none(),
                "entity {id} polled by two replicas"
            );
        }
    }
    assert_eq!(before.len(), N, "every entity is polled");
    // Gaps are measured from here: every entity has been polled.
    let window_start = unix_now();
    println!(
        "4 replicas: every entity polled by exactly one, {:.1} s into the test",
        test_started.elapsed().as_secs_f64()
    );

    // Grow to 5, in the order of docs/sharding.md: the new replica first, then each old
    // replica's successor before the old one stops (its share is a subset of
    // the old one's), so that an entity is always polled by someone.
    let mut five: Vec<Option<Replica>> = (0..5).map(|_| None).collect();
    let mut after: HashMap<u64, u32> = HashMap::new();
    for (step, i) in [4, 0, 1, 2, 3].into_iter().enumerate() {
        let mut r = Replica::start(&fake, &bot.token, shard(i, 5));
        let (seen, owned) = r.wait_refreshed();
        let requests = take_requests(&fake);
        println!(
            "replica {i}/5: {} requests to its first jobs",
            requests.len()
        );
        assert_eq!(seen, N as f64);
        assert_eq!(requests, start_requests, "replica {i}/5's start");
        std::thread::sleep(Duration::from_secs(INTERVAL));
        let polled = r.wait_polled(owned as usize);
        assert_eq!(polled, expected(shard(i, 5)), "replica {i}/5");
        for id in polled {
            assert!(
                after.insert(id, i).is_none(),
                "entity {id} polled by two /5 replicas"
            );
        }
        five[i as usize] = Some(r);
        if step > 0 {
            four.remove(0).stop();
        }
        println!(
            "rolled replica {i}: {:.1} s into the test",
            test_started.elapsed().as_secs_f64()
        );
    }
    assert!(four.is_empty());
    assert_eq!(after.len(), N, "every entity is polled by one of the 5");
    // One more interval with the 5 alone, then the window closes.
    std::thread::sleep(Duration::from_secs(INTERVAL + 1));
    let window_end = unix_now();
    for r in five.iter_mut().flatten() {
        r.assert_running();
    }
    // The points of ticks before the window's end are sent within a second
    // or two (their time is the tick's, not their arrival's).
    std::thread::sleep(Duration::from_secs(3));

    // What moved: only onto the new replica, at most 21 %.
    let moved: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| before[id] != after[id])
        .collect();
    assert!(
        moved.iter().all(|id| after[id] == 4),
        "an entity moved between old replicas"
    );
    let share = moved.len() as f64 / N as f64;
    println!(
        "4 -> 5 replicas: {} of {N} entities moved ({:.2} %)",
        moved.len(),
        share * 100.0
    );
    assert!(share <= 0.21, "{:.2} % moved", share * 100.0);

    // No entity unpolled for longer than one interval (plus the slack)
    // across the roll, by the times of the points the backend stored.
    let mut times: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for v in fake.values(ACCOUNT) {
        if let Some(id) = v
            .path
            .strip_suffix(".ping.success")
            .and_then(|p| p.strip_prefix("entity."))
        {
            times.entry(id.parse().unwrap()).or_default().push(v.t);
        }
    }
    assert_eq!(times.len(), N);
    let limit = INTERVAL as f64 + SLACK;
    let (mut worst, mut worst_id) = (0.0f64, 0);
    for (&id, ts) in times.iter_mut() {
        ts.sort_by(f64::total_cmp);
        // The span measured: from the last point at or before the window's
        // start (or its start), to its end.
        let first = ts.iter().rposition(|&t| t <= window_start).unwrap_or(0);
        let mut previous = ts[first].min(window_start);
        for &t in &ts[first..] {
            if t - previous > worst {
                (worst, worst_id) = (t - previous, id);
            }
            previous = t;
        }
        if window_end - previous > worst {
            (worst, worst_id) = (window_end - previous, id);
        }
    }
    for r in five.into_iter().flatten() {
        r.stop();
    }
    println!(
        "this test's process (the fake backend): {:.1} s of CPU; {} points written twice \
         (by an old and a new replica, at the same time)",
        cpu_of("/proc/self/stat").as_secs_f64(),
        fake.overwrites()
    );
    println!(
        "longest time without a point: {worst:.2} s (entity {worst_id}; interval {INTERVAL} s), \
         over {:.0} s; whole test {:.1} s",
        window_end - window_start,
        test_started.elapsed().as_secs_f64()
    );
    // While an old and a new replica both polled an entity, they wrote its
    // points at the same times: the backend keeps one point per time.
    assert!(fake.overwrites() > 0, "no point was written twice");
    assert!(
        worst <= limit,
        "entity {worst_id} went {worst:.2} s without a point (interval {INTERVAL} s): {:?}",
        times[&worst_id]
    );
    println!("{}", netns::MARKER);
}
