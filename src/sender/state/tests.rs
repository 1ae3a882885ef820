//! Every transition of the sender's state machine, driven by hand: no
//! clock, no network.

use super::*;

const MIN: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(1);

fn link() -> Link {
    Link::new(MIN, MAX)
}

fn forbidden() -> ApiError {
    ApiError::Forbidden {
        method: "PUT".into(),
        resource: "accounts/1/values".into(),
    }
}

/// The probe deadline, checked to lie within the jittered backoff of
/// `full` after `now`.
fn retry_within(l: &Link, now: Instant, full: Duration) -> Instant {
    let at = l.retry_at().expect("a probe is due");
    assert!(
        at >= now + full / 2 && at <= now + full,
        "{:?} not within [{:?}, {full:?}]",
        at - now,
        full / 2
    );
    at
}

#[test]
fn healthy_failing_backlog_replay_healthy() {
    let mut l = link();
    let t0 = Instant::now();
    // Healthy: live values flow.
    assert_eq!(l.phase(), Phase::Up);
    assert!(!l.is_down());
    assert_eq!(l.retry_at(), None);
    // An answer while up changes nothing.
    assert_eq!(l.on_answer(), Change::None);

    // Failing: the first transient failure takes it down once; values now
    // wait in the backlog, and a probe is due after the first backoff.
    assert_eq!(l.on_failure(t0, false), Change::WentDown);
    assert!(l.is_down());
    retry_within(&l, t0, MIN);
    // Other live requests that were in flight fail too: no new deadline.
    let due = l.retry_at();
    assert_eq!(l.on_failure(t0 + MIN / 4, false), Change::None);
    assert_eq!(l.retry_at(), due);

    // Backlog: at the deadline one probe (a replay PUT) goes out.
    let t1 = due.unwrap();
    assert_eq!(l.start_probe(true), Change::None);
    assert_eq!(l.phase(), Phase::Probing);
    assert!(l.is_down(), "values still wait while the probe is out");
    assert_eq!(l.retry_at(), None, "no second probe while one is out");
    // The probe fails: the next deadline backs off further.
    assert_eq!(l.on_failure(t1, true), Change::StillDown);
    retry_within(&l, t1, MIN * 2);
    assert_eq!(l.attempt(), 2);
    let t2 = l.retry_at().unwrap();
    assert_eq!(l.start_probe(true), Change::None);
    assert_eq!(l.on_failure(t2, true), Change::StillDown);
    retry_within(&l, t2, MIN * 4);

    // Replay: the next probe is answered; the backend is back and the
    // backlog is replayed beside live values.
    assert_eq!(l.start_probe(true), Change::None);
    assert_eq!(l.on_answer(), Change::CameBack);
    assert_eq!(l.phase(), Phase::Up);
    assert_eq!(l.attempt(), 0, "the backoff starts over");

    // Healthy again: a new failure starts from the first delay.
    let t3 = t2 + MAX;
    assert_eq!(l.on_failure(t3, false), Change::WentDown);
    retry_within(&l, t3, MIN);
}

#[test]
fn the_backoff_is_capped() {
    let mut l = link();
    let mut now = Instant::now();
    assert_eq!(l.on_failure(now, false), Change::WentDown);
    for _ in 0..10 {
        now = l.retry_at().unwrap();
        l.start_probe(true);
        assert_eq!(l.on_failure(now, true), Change::StillDown);
    }
    retry_within(&l, now, MAX);
}

#[test]
fn a_probe_with_an_empty_backlog_means_the_backend_is_back() {
    let mut l = link();
    let t0 = Instant::now();
    l.on_failure(t0, false);
    assert_eq!(l.start_probe(false), Change::CameBack);
    assert_eq!(l.phase(), Phase::Up);
    // A probe whose chunk turned out empty (all duplicates) likewise.
    l.on_failure(t0, false);
    assert_eq!(l.start_probe(true), Change::None);
    assert_eq!(l.probe_not_sent(), Change::CameBack);
}

#[test]
fn a_live_answer_while_down_brings_it_back() {
    // A request that was in flight when the backend went down, and then
    // got an answer, proves the backend is back.
    let mut l = link();
    l.on_failure(Instant::now(), false);
    assert_eq!(l.on_answer(), Change::CameBack);
    assert!(!l.is_down());
}

#[test]
fn errors_are_classified_by_method() {
    let server = ApiError::Server {
        method: "PUT".into(),
        resource: "r".into(),
        status: 500,
        body: String::new(),
    };
    let unauthorized = ApiError::Unauthorized {
        backend: "http://b".into(),
    };
    assert_eq!(classify(Some(&server), true), Failure::Retry);
    assert_eq!(classify(Some(&unauthorized), false), Failure::Retry);
    assert_eq!(classify(None, true), Failure::Retry, "a panicked task");
    assert_eq!(classify(Some(&forbidden()), true), Failure::PutForbidden);
    assert_eq!(classify(Some(&forbidden()), false), Failure::PostForbidden);
}

#[test]
fn put_forbidden_switches_to_post_and_is_rechecked_every_10_minutes() {
    let mut l = link();
    let t0 = Instant::now();
    // By default every account goes by PUT.
    assert_eq!(l.mode(7, t0), Mode::Put);
    assert!(l.on_put_delivered(7), "the first PUT is news: logged once");
    assert!(!l.on_put_delivered(7));
    assert_eq!(l.mode_counts(), (1, 0));

    // A 403 on PUT: POST from now on, logged once.
    assert!(l.on_put_forbidden(7, t0));
    assert_eq!(l.mode(7, t0), Mode::Post);
    assert_eq!(l.mode(8, t0), Mode::Put, "other accounts keep PUT");
    assert_eq!(l.mode_counts(), (0, 1));
    assert_eq!(
        l.mode(7, t0 + PUT_RECHECK - Duration::from_secs(1)),
        Mode::Post
    );

    // After the re-check period PUT is tried again; a second 403 keeps POST
    // without a second log line.
    let recheck = t0 + PUT_RECHECK;
    assert_eq!(l.mode(7, recheck), Mode::Put);
    assert!(!l.on_put_forbidden(7, recheck));
    assert_eq!(l.mode(7, recheck), Mode::Post);
    assert_eq!(l.mode(7, recheck + PUT_RECHECK / 2), Mode::Post);

    // At the next re-check PUT is granted: back to PUT, logged once.
    let granted = recheck + PUT_RECHECK;
    assert_eq!(l.mode(7, granted), Mode::Put);
    assert!(l.on_put_delivered(7));
    assert_eq!(l.mode(7, granted + Duration::from_secs(1)), Mode::Put);
    assert_eq!(l.mode_counts(), (1, 0));
}

#[test]
fn the_health_does_not_depend_on_the_mode() {
    let mut l = link();
    let t0 = Instant::now();
    l.on_put_forbidden(3, t0);
    // A 403 is an answer, not an outage.
    assert_eq!(l.on_answer(), Change::None);
    assert!(!l.is_down());
}

#[test]
fn shutdown_without_a_spool_drops_what_is_left() {
    let mut l = link();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(10);
    // Anything open, waiting or in flight: not complete.
    assert!(!l.shutdown_complete(false, 0, deadline));
    // Up and nothing buffered: complete, nothing left.
    assert!(l.shutdown_complete(true, 0, deadline));
    // Up with a backlog: it is being replayed; wait.
    assert!(!l.shutdown_complete(true, 20, deadline));
    // Down, with the next probe before the deadline: wait for it.
    l.on_failure(t0, false);
    assert!(!l.shutdown_complete(true, 20, deadline));
    // Down, with the next probe after the deadline: stop now.
    assert!(l.shutdown_complete(true, 20, t0 + MIN / 4));
    assert_eq!(
        leftover(false, 20),
        Leftover {
            spooled: 0,
            dropped: 20
        }
    );
}

#[test]
fn shutdown_with_a_spool_keeps_what_is_left() {
    let mut l = link();
    let t0 = Instant::now();
    l.on_failure(t0, false);
    assert!(l.shutdown_complete(true, 20, t0));
    assert_eq!(
        leftover(true, 20),
        Leftover {
            spooled: 20,
            dropped: 0
        }
    );
    assert_eq!(
        leftover(true, 0),
        Leftover {
            spooled: 0,
            dropped: 0
        }
    );
}
