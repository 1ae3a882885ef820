//! The windows: 1 minute, 15 minutes, 1 hour, 4 hours and 24 hours, aligned
//! to the clock (UTC), each closed at its end.
//!
//! The receive threads count each flow in the minute it arrived in (their
//! [`Shard`]s). A minute after it ends (plus [`GRACE`]), the closer takes
//! that minute's traffic from every shard, keeps it as the closed 1-minute
//! window, and merges it into the open longer windows; a longer window that
//! ends then is closed too. So each flow is counted once per window, the
//! longer windows never hold the flows themselves, and their maps are
//! capped (see [`crate::topn`]).
//!
//! A window that began before the bot started is partial, and is not
//! given out, as the Python bot skips its first run.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::aggregate::{TOP_N, Traffic};

/// How long after a minute's end the closer takes it, so that datagrams
/// received just before the end are counted in it.
pub const GRACE: Duration = Duration::from_millis(250);

/// A window length, as the Python bot names them in paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// `1min`.
    OneMinute,
    /// `15min`.
    FifteenMinutes,
    /// `1h`.
    OneHour,
    /// `4h`.
    FourHours,
    /// `24h`.
    OneDay,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 5] = [
        Window::OneMinute,
        Window::FifteenMinutes,
        Window::OneHour,
        Window::FourHours,
        Window::OneDay,
    ];

    /// Its length in seconds.
    pub fn secs(self) -> u64 {
        match self {
            Window::OneMinute => 60,
            Window::FifteenMinutes => 900,
            Window::OneHour => 3600,
            Window::FourHours => 4 * 3600,
            Window::OneDay => 24 * 3600,
        }
    }

    /// Its name in a path: `1min`, `15min`, `1h`, `4h`, `24h`.
    pub fn label(self) -> &'static str {
        match self {
            Window::OneMinute => "1min",
            Window::FifteenMinutes => "15min",
            Window::OneHour => "1h",
            Window::FourHours => "4h",
            Window::OneDay => "24h",
        }
    }

    /// The window of a job interval, in seconds.
    pub fn from_secs(secs: u64) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.secs() == secs)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Seconds since the UNIX epoch.
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// One receive thread's counts, per minute of arrival.
#[derive(Debug)]
pub struct Shard {
    minute: u64,
    current: Traffic,
    done: Vec<(u64, Traffic)>,
    cap: usize,
}

impl Shard {
    /// An empty shard, with `cap` keys per map.
    pub fn new(cap: usize) -> Self {
        Self {
            minute: 0,
            current: Traffic::minute(cap),
            done: Vec::new(),
            cap,
        }
    }

    /// The traffic of `minute` (minutes since the epoch), to add flows to.
    pub fn minute(&mut self, minute: u64) -> &mut Traffic {
        if minute != self.minute {
            if !self.current.is_empty() {
                let done = std::mem::replace(&mut self.current, Traffic::minute(self.cap));
                self.done.push((self.minute, done));
            }
            self.minute = minute;
        }
        &mut self.current
    }

    /// Takes the traffic of the minutes before `minute`.
    fn take_before(&mut self, minute: u64) -> Vec<(u64, Traffic)> {
        if self.minute < minute && !self.current.is_empty() {
            let current = std::mem::replace(&mut self.current, Traffic::minute(self.cap));
            self.done.push((self.minute, current));
        }
        let (before, after): (Vec<_>, Vec<_>) = std::mem::take(&mut self.done)
            .into_iter()
            .partition(|(m, _)| *m < minute);
        self.done = after;
        before
    }
}

/// A closed window's traffic.
#[derive(Clone, Debug)]
pub struct Closed {
    /// When it ended (UNIX seconds), which is the `t` of its values.
    pub end: u64,
    /// Its traffic.
    pub traffic: Arc<Traffic>,
}

#[derive(Debug)]
struct Inner {
    /// The first full minute: windows that begin before it are partial.
    first_full: u64,
    /// The next minute (since the epoch) to close.
    next: u64,
    /// The open longer windows (15 min and up), with their start.
    open: [Option<(u64, Traffic)>; 4],
    /// The last closed window of each length.
    closed: [Option<Closed>; 5],
}

/// The windows, shared by the receive threads' shards, the closer and the
/// jobs.
#[derive(Debug)]
pub struct Windows {
    shards: Vec<Arc<Mutex<Shard>>>,
    inner: Mutex<Inner>,
    cap: usize,
    closed_through: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Windows {
    /// Windows for `shards` receive threads, started at `started`, with
    /// `cap` keys per map.
    pub fn new(shards: usize, started: SystemTime, cap: usize) -> Self {
        let start = unix_secs(started);
        // A minute is full when the bot was up at its very beginning.
        let first_full = start.div_ceil(60);
        Self {
            shards: (0..shards.max(1))
                .map(|_| Arc::new(Mutex::new(Shard::new(cap))))
                .collect(),
            inner: Mutex::new(Inner {
                first_full,
                next: start / 60,
                open: Default::default(),
                closed: Default::default(),
            }),
            cap,
            closed_through: watch::Sender::new(0),
        }
    }

    /// The `i`th receive thread's shard.
    pub fn shard(&self, i: usize) -> Arc<Mutex<Shard>> {
        self.shards[i % self.shards.len()].clone()
    }

    /// How many shards there are.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Closes every minute that ended at or before `now` (UNIX seconds),
    /// and the longer windows that end with them. Returns how many minutes
    /// it closed.
    pub fn close_until(&self, now: u64) -> u64 {
        let end_minute = now / 60;
        let mut pieces = Vec::new();
        for shard in &self.shards {
            pieces.extend(lock(shard).take_before(end_minute));
        }
        let mut inner = lock(&self.inner);
        if end_minute <= inner.next {
            // Nothing to close yet; a piece from a minute already closed
            // (a datagram counted just after its minute was taken) goes
            // into the next one.
            if !pieces.is_empty() {
                let next = inner.next;
                drop(inner);
                let shard = &self.shards[0];
                let mut shard = lock(shard);
                for (_, t) in pieces {
                    shard.done.push((next, t));
                }
            }
            return 0;
        }
        // After a long stall (a suspended machine), only the last day is
        // worth closing minute by minute.
        if end_minute - inner.next > 1440 {
            inner.next = end_minute - 1440;
        }
        let mut closed = 0;
        while inner.next < end_minute {
            let minute = inner.next;
            let mut traffic = Traffic::new(self.cap);
            // Pieces of this minute, and late pieces of minutes closed already.
            for (_, t) in pieces.iter().filter(|(m, _)| *m <= minute) {
                traffic.merge(t);
            }
            pieces.retain(|(m, _)| *m > minute);
            close_minute(&mut inner, minute, traffic, self.cap);
            inner.next = minute + 1;
            closed += 1;
        }
        let through = inner.next * 60;
        drop(inner);
        self.closed_through.send_replace(through);
        closed
    }

    /// The traffic of `window` ending at `end` (UNIX seconds), if that
    /// window was closed and complete.
    pub fn closed(&self, window: Window, end: u64) -> Option<Arc<Traffic>> {
        let inner = lock(&self.inner);
        inner.closed[window.index()]
            .as_ref()
            .filter(|c| c.end == end)
            .map(|c| c.traffic.clone())
    }

    /// Waits until the minute ending at `end` (UNIX seconds) is closed, or
    /// `timeout` passes. Returns whether it was closed.
    pub async fn wait_closed(&self, end: u64, timeout: Duration) -> bool {
        let mut rx = self.closed_through.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|through| *through >= end))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How many keys the open longer windows hold, and whether each is
    /// still exact, for `/metrics`.
    pub fn open_keys(&self) -> Vec<(Window, usize, bool)> {
        let inner = lock(&self.inner);
        Window::ALL[1..]
            .iter()
            .zip(&inner.open)
            .map(|(w, o)| match o {
                Some((_, t)) => (*w, t.keys(), t.exact()),
                None => (*w, 0, true),
            })
            .collect()
    }
}

fn close_minute(inner: &mut Inner, minute: u64, traffic: Traffic, cap: usize) {
    let end = (minute + 1) * 60;
    let start = minute * 60;
    let full = |window_start: u64| window_start >= inner.first_full * 60;
    for (i, window) in Window::ALL[1..].iter().enumerate() {
        let window_start = start - start % window.secs();
        let open = inner.open[i].get_or_insert_with(|| (window_start, Traffic::new(cap)));
        if open.0 != window_start {
            // A stall skipped this window's end: start afresh.
            *open = (window_start, Traffic::new(cap));
        }
        open.1.merge(&traffic);
        if end.is_multiple_of(window.secs()) {
            let (began, mut t) = inner.open[i].take().expect("just inserted");
            // A closed window is only asked for its top lists.
            t.keep_top(TOP_N);
            inner.closed[window.index()] = full(began).then(|| Closed {
                end,
                traffic: Arc::new(t),
            });
        }
    }
    let mut traffic = traffic;
    traffic.keep_top(TOP_N);
    inner.closed[Window::OneMinute.index()] = full(start).then(|| Closed {
        end,
        traffic: Arc::new(traffic),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, Flow};
    use std::net::IpAddr;

    fn flow(bytes: u64) -> Flow {
        Flow {
            bytes,
            src: "10.0.0.1".parse().unwrap(),
            ..Flow::default()
        }
    }

    const EXPORTER: &str = "192.0.2.1";

    fn add(w: &Windows, at: u64, bytes: u64) {
        let e: IpAddr = EXPORTER.parse().unwrap();
        lock(&w.shard(0)).minute(at / 60).add(e, &flow(bytes));
    }

    fn bytes(w: &Windows, window: Window, end: u64) -> Option<u64> {
        let e: IpAddr = EXPORTER.parse().unwrap();
        w.closed(window, end)
            .map(|t| t.get(&e, Direction::Ingress).map_or(0, |d| d.bytes))
    }

    #[test]
    fn the_first_partial_window_is_skipped_and_the_next_is_given() {
        // Started 30 s into a day's 10th minute.
        let day = 20_000 * 86_400;
        let w = Windows::new(1, UNIX_EPOCH + Duration::from_secs(day + 570), 100);
        add(&w, day + 580, 5);
        assert_eq!(w.close_until(day + 600), 1);
        assert_eq!(
            bytes(&w, Window::OneMinute, day + 600),
            None,
            "partial minute"
        );
        add(&w, day + 610, 7);
        add(&w, day + 659, 1);
        w.close_until(day + 660);
        assert_eq!(bytes(&w, Window::OneMinute, day + 660), Some(8));
        // The 15-minute window that began before the start is partial.
        for m in 11..15 {
            add(&w, day + m * 60 + 1, 1);
        }
        w.close_until(day + 900);
        assert_eq!(bytes(&w, Window::FifteenMinutes, day + 900), None);
        // The next one is full, and is the sum of its minutes.
        for m in 15..30 {
            add(&w, day + m * 60 + 1, 2);
        }
        w.close_until(day + 1800);
        assert_eq!(bytes(&w, Window::FifteenMinutes, day + 1800), Some(30));
        assert_eq!(bytes(&w, Window::OneMinute, day + 1800), Some(2));
    }

    #[test]
    fn every_window_adds_up_to_its_minutes() {
        let day = 20_000 * 86_400;
        let w = Windows::new(1, UNIX_EPOCH + Duration::from_secs(day), 100);
        let mut hour = 0;
        for m in 0..(24 * 60) {
            let b = 1 + m % 7;
            add(&w, day + m * 60 + 30, b);
            hour += b;
            w.close_until(day + (m + 1) * 60);
            if (m + 1) % 60 == 0 {
                assert_eq!(bytes(&w, Window::OneHour, day + (m + 1) * 60), Some(hour));
                hour = 0;
            }
        }
        let total: u64 = (0..24 * 60).map(|m| 1 + m % 7).sum();
        assert_eq!(bytes(&w, Window::OneDay, day + 86_400), Some(total));
    }

    #[test]
    fn a_late_closer_closes_each_missed_minute() {
        let day = 20_000 * 86_400;
        let w = Windows::new(1, UNIX_EPOCH + Duration::from_secs(day), 100);
        add(&w, day + 10, 1);
        add(&w, day + 70, 2);
        add(&w, day + 130, 4);
        assert_eq!(w.close_until(day + 185), 3);
        assert_eq!(bytes(&w, Window::OneMinute, day + 180), Some(4));
    }
}
