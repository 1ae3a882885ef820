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

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::aggregate::{Minute, TOP_N, Traffic};

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
    current: Minute,
    done: Vec<(u64, Traffic)>,
    cap: usize,
}

impl Shard {
    /// An empty shard, with `cap` keys per map.
    pub fn new(cap: usize) -> Self {
        Self {
            minute: 0,
            current: Minute::new(cap),
            done: Vec::new(),
            cap,
        }
    }

    /// The traffic of `minute` (minutes since the epoch), to add flows to.
    pub fn minute(&mut self, minute: u64) -> &mut Minute {
        if minute != self.minute {
            if !self.current.is_empty() {
                let done = std::mem::replace(&mut self.current, Minute::new(self.cap));
                self.done.push((self.minute, done.into_traffic()));
            }
            self.minute = minute;
        }
        &mut self.current
    }

    /// Takes the traffic of the minutes before `minute`.
    fn take_before(&mut self, minute: u64) -> Vec<(u64, Traffic)> {
        if self.minute < minute && !self.current.is_empty() {
            let current = std::mem::replace(&mut self.current, Minute::new(self.cap));
            self.done.push((self.minute, current.into_traffic()));
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
    /// Open windows put back from a windows file: complete when they close,
    /// though they began before this start.
    restored: [bool; 4],
}

/// The open longer windows as a windows file holds them.
#[derive(Serialize, Deserialize)]
struct Saved {
    /// (window label, start in UNIX seconds, traffic).
    open: Vec<(String, u64, Traffic)>,
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
                restored: [false; 4],
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

    /// Merges what the receivers counted since the last closed minute into
    /// the open longer windows, without closing anything: at shutdown,
    /// before [`Windows::save`], so that the minute in progress is kept.
    pub fn absorb_pending(&self) {
        let mut pieces = Vec::new();
        for shard in &self.shards {
            pieces.extend(lock(shard).take_before(u64::MAX));
        }
        let mut inner = lock(&self.inner);
        for (_, t) in &pieces {
            let start = inner.next * 60;
            for (i, window) in Window::ALL[1..].iter().enumerate() {
                let window_start = start - start % window.secs();
                let cap = self.cap;
                let open = inner.open[i].get_or_insert_with(|| (window_start, Traffic::new(cap)));
                if open.0 == window_start {
                    open.1.merge(t);
                }
            }
        }
    }

    /// Writes the open longer windows (15 min to 24 h) to `path`, atomically
    /// (a temporary file in the same directory, renamed).
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        let saved = {
            let inner = lock(&self.inner);
            Saved {
                open: Window::ALL[1..]
                    .iter()
                    .zip(&inner.open)
                    .filter_map(|(w, o)| {
                        o.as_ref()
                            .map(|(start, t)| (w.label().to_string(), *start, t.clone()))
                    })
                    .collect(),
            }
        };
        let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("windows")
        ));
        let result = (|| {
            std::fs::write(&tmp, &bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Puts back the windows of `path` that are still open at `now` (UNIX
    /// seconds): they go on counting, and are sent when they close, though
    /// they began before this start (without what came while the bot was
    /// down). Windows that ended meanwhile are dropped. Returns how many
    /// were put back; a missing file is none. A file that is not a windows
    /// file is an error, and is left alone.
    pub fn restore(&self, path: &std::path::Path, now: u64) -> std::io::Result<usize> {
        let bytes = match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            other => other?,
        };
        let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::other(format!(
                "{} is not a windows file of this bot: {e}",
                path.display()
            ))
        })?;
        let mut inner = lock(&self.inner);
        let mut restored = 0;
        for (label, start, traffic) in saved.open {
            let Some(i) = Window::ALL[1..].iter().position(|w| w.label() == label) else {
                continue;
            };
            let window = Window::ALL[1 + i];
            if start == now - now % window.secs() {
                inner.open[i] = Some((start, traffic));
                inner.restored[i] = true;
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// How many keys each exporter holds in each open longer window, for
    /// `/metrics`.
    pub fn open_exporter_keys(&self) -> Vec<(Window, Vec<(IpAddr, usize)>)> {
        let inner = lock(&self.inner);
        Window::ALL[1..]
            .iter()
            .zip(&inner.open)
            .filter_map(|(w, o)| Some((*w, o.as_ref()?.1.exporter_keys().collect())))
            .collect()
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
            inner.restored[i] = false;
        }
        open.1.merge(&traffic);
        if end.is_multiple_of(window.secs()) {
            let (began, mut t) = inner.open[i].take().expect("just inserted");
            let restored = std::mem::take(&mut inner.restored[i]);
            // A closed window is only asked for its top lists.
            t.keep_top(TOP_N);
            inner.closed[window.index()] = (full(began) || restored).then(|| Closed {
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
    fn the_keys_of_each_exporter_in_the_open_windows_are_told() {
        let day = 20_000 * 86_400;
        let w = Windows::new(1, UNIX_EPOCH + Duration::from_secs(day), 100);
        assert!(w.open_exporter_keys().is_empty());
        add(&w, day + 10, 5);
        w.close_until(day + 60);
        let keys = w.open_exporter_keys();
        assert_eq!(keys.len(), 4, "{keys:?}");
        for (_, exporters) in keys {
            // One flow: its IP, protocol, connection and port, and its
            // interface's IP and protocol.
            assert_eq!(exporters, vec![("192.0.2.1".parse().unwrap(), 6)]);
        }
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

#[cfg(test)]
mod restore_tests {
    use super::*;
    use crate::flow::{Direction, Flow};
    use std::net::IpAddr;

    #[test]
    fn a_restart_in_the_middle_of_a_day_keeps_what_was_counted() {
        let exporter: IpAddr = "192.0.2.1".parse().unwrap();
        let day = 20_000 * 86_400;
        let flow = |bytes| Flow {
            bytes,
            src: "10.0.0.1".parse().unwrap(),
            ..Flow::default()
        };
        let dir = std::env::temp_dir().join(format!("netflow-windows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("windows.json");
        // Up from the day's start; 10 h counted, then 30 s of minute 600.
        let before = Windows::new(1, UNIX_EPOCH + Duration::from_secs(day), 100);
        for m in 0..600u64 {
            lock(&before.shard(0))
                .minute(day / 60 + m)
                .add(exporter, &flow(1));
            before.close_until(day + (m + 1) * 60);
        }
        lock(&before.shard(0))
            .minute(day / 60 + 600)
            .add(exporter, &flow(5));
        before.absorb_pending();
        before.save(&path).unwrap();
        // Down for 4 minutes, then up again mid-minute.
        let now = day + 604 * 60 + 30;
        let after = Windows::new(1, UNIX_EPOCH + Duration::from_secs(now), 100);
        // 15 min (600-614) and 1 h (600-659) began at minute 600, 4 h
        // (480-719) and 24 h too: all still open.
        assert_eq!(after.restore(&path, now).unwrap(), 4);
        let bytes = |w: &Windows, window, end| {
            w.closed(window, end)
                .and_then(|t| t.get(&exporter, Direction::Ingress).map(|d| d.bytes))
        };
        let mut four_hours = None;
        for m in 605..(24 * 60) {
            lock(&after.shard(0))
                .minute(day / 60 + m)
                .add(exporter, &flow(2));
            after.close_until(day + (m + 1) * 60);
            if m + 1 == 720 {
                four_hours = bytes(&after, Window::FourHours, day + 720 * 60);
            }
        }
        // The day: 600 + 5 before, 2 per minute from 605 on.
        assert_eq!(
            bytes(&after, Window::OneDay, day + 86_400),
            Some(600 + 5 + 2 * (1440 - 605))
        );
        // The 4 h window of minutes 480-719, restored: sent.
        assert_eq!(four_hours, Some(120 + 5 + 2 * (720 - 605)));
        std::fs::remove_dir_all(&dir).unwrap();
        // A file that is not a windows file is refused.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, b"{}x").unwrap();
        assert!(
            Windows::new(1, SystemTime::now(), 100)
                .restore(&path, now)
                .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
