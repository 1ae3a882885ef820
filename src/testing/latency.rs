//! Precise added latency for [`Fault::latency`](super::Fault::latency): one
//! thread for the whole process keeps every pending delay in a heap and wakes
//! when the earliest is due, on the system clock.
//!
//! tokio's timer rounds a delay up to the next millisecond tick and more under
//! load (a 2 ms delay came out at 3–4.6 ms), and a thread sleeping per request
//! costs several context switches each, which on 2 cores slows the client
//! being measured. Here a request costs one heap push, and the thread's wakes
//! are shared by every delay due within [`GRANULARITY`] of each other.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Delays due this close together are completed by one wake of the thread:
/// a delay ends up to this much late, never early.
const GRANULARITY: Duration = Duration::from_micros(100);

/// The pending delays, earliest first, and the signal for an earlier one.
#[derive(Default)]
struct Timer {
    pending: Mutex<BinaryHeap<Reverse<Pending>>>,
    earlier: Condvar,
}

/// One delay: when it ends, and whom to tell. Ordered by its end only.
struct Pending(Instant, oneshot::Sender<()>);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

static TIMER: OnceLock<&'static Timer> = OnceLock::new();

/// Waits until `deadline` on the system clock, within [`GRANULARITY`].
pub(crate) async fn sleep_until(deadline: Instant) {
    if deadline <= Instant::now() {
        return;
    }
    let timer = *TIMER.get_or_init(start);
    let (tx, rx) = oneshot::channel();
    {
        let mut pending = timer.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let earliest = pending.peek().map(|Reverse(p)| p.0);
        pending.push(Reverse(Pending(deadline, tx)));
        if earliest.is_none_or(|e| deadline < e) {
            timer.earlier.notify_one();
        }
    }
    // The thread never drops a sender without sending.
    let _ = rx.await;
}

/// Starts the thread (once per process); it lives as long as the process.
fn start() -> &'static Timer {
    let timer: &'static Timer = Box::leak(Box::default());
    std::thread::Builder::new()
        .name("fake-latency".into())
        .spawn(move || run(timer))
        .expect("the fake backend's latency thread starts");
    timer
}

fn run(timer: &Timer) {
    let mut pending = timer.pending.lock().unwrap_or_else(PoisonError::into_inner);
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        while pending.peek().is_some_and(|Reverse(p)| p.0 <= now) {
            due.push(pending.pop().expect("peeked").0);
        }
        if !due.is_empty() {
            drop(pending);
            for Pending(_, tx) in due.drain(..) {
                let _ = tx.send(());
            }
            pending = timer.pending.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        pending = match pending.peek().map(|Reverse(p)| p.0) {
            // Sleep a little past the earliest, so that the ones right after
            // it are done by the same wake.
            Some(earliest) => {
                let wait = (earliest - now).max(GRANULARITY);
                timer
                    .earlier
                    .wait_timeout(pending, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => timer
                .earlier
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delays_end_in_order_and_never_early() {
        let start = Instant::now();
        let delays = [7u64, 2, 5, 2, 9, 1];
        let ends = futures::future::join_all(delays.iter().map(|&ms| async move {
            let deadline = start + Duration::from_millis(ms);
            sleep_until(deadline).await;
            (ms, Instant::now() - start)
        }))
        .await;
        for (ms, took) in ends {
            assert!(took >= Duration::from_millis(ms), "{ms} ms took {took:?}");
            // Generous: a shared CI machine may stall.
            assert!(
                took < Duration::from_millis(ms + 50),
                "{ms} ms took {took:?}"
            );
        }
    }
}
