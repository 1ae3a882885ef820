//! Fault injection: make the fake fail the way real networks and servers do.
//!
//! A [`Fault`] says what goes wrong (a status, a delay, a dropped connection
//! before or after the request was handled),
//! for which requests (a method, a path prefix or substring), and for how long
//! (a number of requests, a period of tokio time, or until removed). Delays add
//! up; of the status and drop faults, the first one injected that matches wins.
//! A matching request uses up one of each matching fault's count.
//!
//! ```
//! use std::time::Duration;
//! use grafolean_collector::testing::Fault;
//!
//! // The next 3 POSTs to any values endpoint get a 500.
//! let f = Fault::status(500).method("POST").path_contains("/values").times(3);
//! // Every response is 2 ms late, for the next minute.
//! let g = Fault::delay(Duration::from_millis(2)).for_duration(Duration::from_secs(60));
//! // The next request gets no answer: the connection is closed.
//! let h = Fault::drop_connection().times(1);
//! # let _ = (f, g, h);
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// What goes wrong.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// Answer with this status instead. 401 and 403 get the backend's plain-text
    /// bodies without a Content-Type, 500 gets `Internal Server Error`; other
    /// codes get an empty body.
    Status(u16),
    /// Wait this long before handling the request normally (or failing it).
    /// Follows tokio's clock (so it works with a paused test clock), which
    /// rounds short sleeps up to the next millisecond and more.
    Delay(Duration),
    /// Like [`Delay`](Self::Delay), but on the system clock, never short and
    /// at most about 0.1 ms long (one thread serves every delay), for
    /// benchmarks that add network latency.
    Latency(Duration),
    /// Close the connection without answering.
    Drop,
    /// Handle the request (values are stored), then close the connection
    /// without answering: the client cannot know that it succeeded.
    DropAfterHandling,
    /// Answer 200 with this body as `application/json`, without handling the
    /// request: for malformed answers.
    Body(String),
    /// Answer 200 as `application/json` with a body that never ends (no
    /// Content-Length; a JSON list whose items keep coming), without handling
    /// the request: a broken backend, or a file server at a wrong URL.
    EndlessBody,
}

/// A fault to inject with [`FakeGrafolean::inject`](super::FakeGrafolean::inject).
#[derive(Clone, Debug)]
#[must_use]
pub struct Fault {
    pub(crate) kind: FaultKind,
    pub(crate) method: Option<String>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) path_contains: Option<String>,
    pub(crate) remaining: Option<u64>,
    pub(crate) duration: Option<Duration>,
    pub(crate) until: Option<Instant>,
}

impl Fault {
    fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            method: None,
            path_prefix: None,
            path_contains: None,
            remaining: None,
            duration: None,
            until: None,
        }
    }

    /// Answer with `status` (for example 500 or 401).
    pub fn status(status: u16) -> Self {
        Self::new(FaultKind::Status(status))
    }

    /// Delay the response by `by`.
    pub fn delay(by: Duration) -> Self {
        Self::new(FaultKind::Delay(by))
    }

    /// Adds `by` of latency to every matching request, precisely, on the
    /// system clock (not tokio's: it does not work with a paused clock).
    pub fn latency(by: Duration) -> Self {
        Self::new(FaultKind::Latency(by))
    }

    /// Close the connection without answering.
    pub fn drop_connection() -> Self {
        Self::new(FaultKind::Drop)
    }

    /// Handle the request, then close the connection without answering.
    pub fn drop_after_handling() -> Self {
        Self::new(FaultKind::DropAfterHandling)
    }

    /// Answer 200 with `body` as `application/json` instead of handling the
    /// request, for example broken JSON.
    pub fn body(body: impl Into<String>) -> Self {
        Self::new(FaultKind::Body(body.into()))
    }

    /// Answer 200 with a JSON body that never ends, instead of handling the
    /// request.
    pub fn endless_body() -> Self {
        Self::new(FaultKind::EndlessBody)
    }

    /// Only requests with this method (`"POST"`, …).
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose path starts with `prefix` (for example `/api/accounts/1/values`).
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Only requests whose path contains `part` (for example `/values`).
    pub fn path_contains(mut self, part: impl Into<String>) -> Self {
        self.path_contains = Some(part.into());
        self
    }

    /// Only for the next `n` matching requests.
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Only for this long after it is injected, on tokio's clock.
    pub fn for_duration(mut self, d: Duration) -> Self {
        self.duration = Some(d);
        self
    }

    /// Starts the clock of [`for_duration`](Self::for_duration).
    pub(crate) fn armed(mut self) -> Self {
        self.until = self.duration.map(|d| Instant::now() + d);
        self
    }

    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.remaining == Some(0) || self.until.is_some_and(|u| now >= u)
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// An injected fault's handle, for [`FakeGrafolean::remove_fault`](super::FakeGrafolean::remove_fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultId(pub(crate) u64);

/// What the injected faults decided for one request.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub delay: Duration,
    pub latency: Duration,
    pub action: Option<FaultKind>,
}

/// Applies the faults to one request, using up their counts.
pub(crate) fn judge(faults: &mut Vec<(FaultId, Fault)>, method: &str, path: &str) -> Verdict {
    let now = Instant::now();
    faults.retain(|(_, f)| !f.expired(now));
    let mut verdict = Verdict::default();
    for (_, f) in faults.iter_mut() {
        if !f.matches(method, path) {
            continue;
        }
        match &f.kind {
            FaultKind::Delay(d) => verdict.delay += *d,
            FaultKind::Latency(d) => verdict.latency += *d,
            kind if verdict.action.is_none() => verdict.action = Some(kind.clone()),
            _ => continue,
        }
        if let Some(n) = f.remaining.as_mut() {
            *n -= 1;
        }
    }
    faults.retain(|(_, f)| !f.expired(now));
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_scopes_and_periods() {
        let mut faults = vec![
            (
                FaultId(1),
                Fault::status(500)
                    .method("POST")
                    .path_contains("/values")
                    .times(2)
                    .armed(),
            ),
            (FaultId(2), Fault::drop_connection().times(5).armed()),
            (
                FaultId(3),
                Fault::delay(Duration::from_secs(1))
                    .for_duration(Duration::from_secs(10))
                    .armed(),
            ),
        ];
        let v = judge(&mut faults, "GET", "/api/profile");
        assert_eq!(
            (v.delay, v.action),
            (Duration::from_secs(1), Some(FaultKind::Drop))
        );
        let v = judge(&mut faults, "POST", "/api/accounts/1/values/");
        assert_eq!(v.action, Some(FaultKind::Status(500)));
        let v = judge(&mut faults, "POST", "/api/accounts/1/values/");
        assert_eq!(v.action, Some(FaultKind::Status(500)));
        // The status fault is used up; the drop fault (4 left) was not consumed meanwhile.
        assert_eq!(faults.len(), 2);
        tokio::time::advance(Duration::from_secs(10)).await;
        let v = judge(&mut faults, "POST", "/api/accounts/1/values/");
        assert_eq!((v.delay, v.action), (Duration::ZERO, Some(FaultKind::Drop)));
        assert_eq!(faults[0].1.remaining, Some(3));
    }
}
