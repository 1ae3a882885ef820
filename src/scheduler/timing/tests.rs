//! Unit tests of the pure firing math.

use super::*;

fn iv(s: &[u32]) -> Intervals {
    Intervals::new(s.iter().copied()).unwrap()
}

#[test]
fn start_alignment_fires_at_start_plus_multiples() {
    let start = 1_000_500; // ms
    assert_eq!(next_after(start, &iv(&[10]), start - 1), (start, iv(&[10])));
    assert_eq!(
        next_after(start, &iv(&[10]), start),
        (start + 10_000, iv(&[10]))
    );
    assert_eq!(
        next_after(start, &iv(&[10]), start + 9_999),
        (start + 10_000, iv(&[10]))
    );
    // Before the start, the firings extend backwards: start - k·i.
    assert_eq!(
        next_after(start, &iv(&[10]), start - 25_000),
        (start - 20_000, iv(&[10]))
    );
}

#[test]
fn coinciding_intervals_fire_once_with_all_of_them_affecting() {
    let set = iv(&[2, 3, 60]);
    // From 0: 2, 3, 4, 6 (2 and 3), ..., 60 (all three).
    assert_eq!(next_after(0, &set, 0), (2_000, iv(&[2])));
    assert_eq!(next_after(0, &set, 2_000), (3_000, iv(&[3])));
    assert_eq!(next_after(0, &set, 4_000), (6_000, iv(&[2, 3])));
    assert_eq!(next_after(0, &set, 59_000), (60_000, iv(&[2, 3, 60])));
}

#[test]
fn next_after_matches_brute_force_on_random_sets() {
    // A hand-written property test: xorshift-generated interval sets, starts
    // and query times; compare with a millisecond-by-millisecond scan.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _ in 0..300 {
        let count = 1 + rnd(4) as usize;
        let secs: Vec<u32> = (0..count).map(|_| 1 + rnd(12) as u32).collect();
        let set = iv(&secs);
        let start = rnd(10_000_000) as Millis - 5_000_000;
        let t = rnd(100_000_000) as Millis - 50_000_000;
        let (at, affecting) = next_after(start, &set, t);
        let mut probe = t + 1;
        let expected = loop {
            let due: Vec<u32> = set
                .iter()
                .filter(|&i| (probe - start).rem_euclid(Millis::from(i) * 1000) == 0)
                .collect();
            if !due.is_empty() {
                break (probe, iv(&due));
            }
            probe += 1;
        };
        assert_eq!((at, affecting), expected, "set {set}, start {start}, t {t}");
    }
}

#[test]
fn on_time_firing_is_not_coalesced() {
    let set = iv(&[10, 60]);
    let c = coalesce(0, &set, 60_000, 60_003);
    assert_eq!(
        c,
        Coalesced {
            at: 60_000,
            affecting: iv(&[10, 60]),
            missed: 0
        }
    );
    let c = coalesce(0, &set, 70_000, 70_000);
    assert_eq!(
        c,
        Coalesced {
            at: 70_000,
            affecting: iv(&[10]),
            missed: 0
        }
    );
}

#[test]
fn stall_folds_missed_firings_into_the_latest() {
    let set = iv(&[10, 60]);
    // Due at 50 s, woke at 135 s: 10 s firings at 50..=130 (9 of them, 8
    // missed), a 60 s firing at 60 and 120: the run is at 130 s for both.
    let c = coalesce(0, &set, 50_000, 135_000);
    assert_eq!(
        c,
        Coalesced {
            at: 130_000,
            affecting: iv(&[10, 60]),
            missed: 8
        }
    );
}

#[test]
fn spread_phase_is_stable_and_shared_by_all_intervals() {
    let id = JobId::new("entity.1127398355");
    let a = job_start(&id, &iv(&[10]), Align::Spread);
    let b = job_start(&id, &iv(&[10]), Align::Spread);
    assert_eq!(a, b);
    assert!((0..10_000).contains(&a));
    // The hash itself is pinned: a change would move every job on upgrade.
    assert_eq!(stable_hash(b""), 17_280_346_270_528_514_342);
    assert_eq!(stable_hash(b"entity.1127398355"), PINNED_HASH);
    // Both intervals of one job fire at the shared start's multiples.
    let set = iv(&[10, 60]);
    let s = job_start(&id, &set, Align::Spread);
    assert!((0..60_000).contains(&s));
    let (at, affecting) = next_after(s, &set, s + 59_999);
    assert_eq!((at, affecting), (s + 60_000, set));
}

/// FNV-1a + fmix64 of `entity.1127398355`, checked with an independent Python
/// implementation.
const PINNED_HASH: u64 = 16_914_681_764_970_871_700;

#[test]
fn spread_phases_are_uniform_over_the_interval() {
    // 10,000 ids with a 1 s interval: each 100 ms bucket holds ~1,000. For a
    // uniform hash the standard deviation is ~30; allow ±150 (5σ).
    let one = iv(&[1]);
    let mut buckets = [0u32; 10];
    for n in 0..10_000 {
        let start = job_start(&JobId::new(format!("job-{n}")), &one, Align::Spread);
        assert!((0..1000).contains(&start));
        buckets[(start / 100) as usize] += 1;
    }
    for (b, &count) in buckets.iter().enumerate() {
        assert!(
            (850..=1150).contains(&count),
            "bucket {b} holds {count}: {buckets:?}"
        );
    }
}

#[test]
fn phase_steps_grow_with_the_interval_and_divide_a_second() {
    let steps: Vec<Millis> = [1, 5, 9, 10, 20, 30, 45, 48, 59, 60, 3600]
        .into_iter()
        .map(phase_step)
        .collect();
    assert_eq!(steps, [1, 1, 1, 1, 2, 5, 5, 8, 8, 10, 10]);
    for step in steps {
        assert_eq!(1000 % step, 0);
    }
    // Spread phases fall on the step, and still cover the whole interval.
    let minute = iv(&[60]);
    let mut buckets = [0u32; 6];
    for n in 0..6_000 {
        let start = job_start(&JobId::new(format!("job-{n}")), &minute, Align::Spread);
        assert_eq!(start % 10, 0);
        buckets[(start / 10_000) as usize] += 1;
    }
    assert!(
        buckets.iter().all(|&b| (850..=1150).contains(&b)),
        "{buckets:?}"
    );
    // A job with a short interval among long ones keeps the short one's step.
    let start = job_start(&JobId::new("x"), &iv(&[1, 60]), Align::Spread);
    assert!((0..60_000).contains(&start));
}

#[test]
fn start_alignment_uses_the_given_time() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    assert_eq!(
        job_start(&JobId::new("x"), &iv(&[5]), Align::Start(t)),
        1_700_000_000_123
    );
    assert_eq!(millis_to_system(system_to_millis(t)), t);
    let before = SystemTime::UNIX_EPOCH - Duration::from_millis(1500);
    assert_eq!(system_to_millis(before), -1500);
    assert_eq!(millis_to_system(-1500), before);
}

#[test]
fn single_interval_fast_path_agrees_with_the_general_rule() {
    let one = iv(&[7]);
    assert_eq!(
        coalesce(500, &one, 7_500, 7_501),
        Coalesced {
            at: 7_500,
            affecting: one.clone(),
            missed: 0
        }
    );
    assert_eq!(
        coalesce(500, &one, 7_500, 29_000),
        Coalesced {
            at: 28_500,
            affecting: one,
            missed: 3
        }
    );
}
