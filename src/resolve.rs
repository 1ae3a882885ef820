//! Host names in entities' addresses (`details.ipv4` / `details.ipv6`): a
//! cache in front of the system resolver, shared by the bots (the ping bot's
//! targets, the SNMP bot's agents, the NetFlow bot's exporters).
//!
//! A name is looked up with the system resolver (`getaddrinfo`, on Tokio's
//! blocking pool), as the Python bots did (multiping, net-snmp), so `/etc/hosts`,
//! search domains, systemd-resolved, nscd and mDNS all work as they do for
//! every other program on the host. `getaddrinfo` does not tell the record's
//! TTL, so each name is looked up again every [`ResolverOptions::refresh`]
//! (60 s by default, kept between 1 s and 1 h): a changed record is seen
//! within that time. A literal address never comes here; a bot uses it as it
//! is.
//!
//! One cache entry per `(name, family)`, shared by every entity that names
//! it. A lookup that fails (or finds no address of the family) keeps the last
//! good address for [`ResolverOptions::keep_last_good`] (5 min), so a short
//! DNS outage costs nothing; after that, or at once for a name that never
//! resolved, the name is *unresolved*: the collector writes no values for it.
//! The resolver logs one warning when a name becomes unresolved and one line
//! when it resolves again; lookups that fail while the last address is kept
//! are logged at debug level.
//!
//! ```no_run
//! # async fn demo() {
//! use grafolean_collector::resolve::{Family, Resolved, Resolver, ResolverOptions};
//! let resolver = Resolver::new(ResolverOptions::default());
//! match resolver.resolve("router.example.net", Family::V4).await {
//!     Resolved::Fresh(addr) => println!("poll {addr}"),
//!     Resolved::Kept(addr) => println!("lookups fail; still polling {addr}"),
//!     _ => println!("unresolved: no values"),
//! }
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

/// An address family: which record of a name is looked up (A or AAAA).
///
/// ```
/// use grafolean_collector::resolve::Family;
/// assert_eq!(Family::of("::1".parse().unwrap()), Family::V6);
/// assert_eq!(Family::V4.name(), "IPv4");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4: the A record.
    V4,
    /// IPv6: the AAAA record.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// `"IPv4"` or `"IPv6"`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }
}

/// The shortest [`ResolverOptions::refresh`].
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// The longest [`ResolverOptions::refresh`].
const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// Lookups running at once, at most: each holds a blocking thread.
const MAX_CONCURRENT_LOOKUPS: usize = 16;
/// A cache entry that no run asked for in this long is dropped.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// How the [`Resolver`] refreshes and keeps addresses.
///
/// ```
/// use grafolean_collector::resolve::ResolverOptions;
/// use std::time::Duration;
/// let opts = ResolverOptions::default().with_refresh(Duration::from_millis(10));
/// assert_eq!(opts.refresh, Duration::from_secs(1)); // the floor
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolverOptions {
    /// How long an answer is used before the name is looked up again.
    /// Default 60 s; 1 s to 1 h.
    pub refresh: Duration,
    /// How long the last good address is still used while lookups fail.
    /// Default 5 min.
    pub keep_last_good: Duration,
    /// How long one lookup may take before it counts as failed. Default 5 s.
    pub lookup_timeout: Duration,
}

impl Default for ResolverOptions {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(60),
            keep_last_good: Duration::from_secs(300),
            lookup_timeout: Duration::from_secs(5),
        }
    }
}

impl ResolverOptions {
    /// Sets the refresh period, clamped to 1 s..=1 h.
    #[must_use]
    pub fn with_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh.clamp(MIN_REFRESH, MAX_REFRESH);
        self
    }

    /// Sets how long the last good address is kept while lookups fail.
    #[must_use]
    pub fn with_keep_last_good(mut self, keep: Duration) -> Self {
        self.keep_last_good = keep;
        self
    }

    /// Sets the timeout of one lookup.
    #[must_use]
    pub fn with_lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }
}

/// What a name stands for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resolved {
    /// The address from a lookup that succeeded within the refresh period.
    Fresh(IpAddr),
    /// Lookups are failing; this is the last good address, still within
    /// [`ResolverOptions::keep_last_good`].
    Kept(IpAddr),
    /// No usable address: the name never resolved, or has failed for longer
    /// than [`ResolverOptions::keep_last_good`].
    Unresolved,
}

impl Resolved {
    /// The address to use, if any.
    pub fn addr(self) -> Option<IpAddr> {
        match self {
            Self::Fresh(a) | Self::Kept(a) => Some(a),
            Self::Unresolved => None,
        }
    }
}

/// Counters since the resolver was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolverStats {
    /// Lookups started (cache misses and refreshes).
    pub lookups: u64,
    /// Lookups that failed, timed out or found no address of the family.
    pub failures: u64,
}

type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;
type LookupFn = dyn Fn(String) -> LookupFuture + Send + Sync;

/// One name's state.
#[derive(Debug, Default)]
struct Entry {
    /// The last good address.
    addr: Option<IpAddr>,
    /// When the name is to be looked up again; `None` before the first lookup.
    next_at: Option<Instant>,
    /// When the current run of failures began.
    failing_since: Option<Instant>,
    /// Whether the unresolved state has been logged (and not yet its end).
    logged_unresolved: bool,
}

/// The cache of host names. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    opts: ResolverOptions,
    #[allow(clippy::type_complexity)]
    cache: Mutex<HashMap<(String, Family), (Arc<tokio::sync::Mutex<Entry>>, Instant)>>,
    lookups: AtomicU64,
    failures: AtomicU64,
    lookup: Box<LookupFn>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("opts", &self.inner.opts)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new(ResolverOptions::default())
    }
}

impl Resolver {
    /// A resolver that asks the system resolver.
    pub fn new(opts: ResolverOptions) -> Self {
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_LOOKUPS));
        Self::with_lookup(opts, move |name| {
            let permits = permits.clone();
            Box::pin(async move {
                // The permit moves into the blocking closure: getaddrinfo
                // cannot be cancelled, so a lookup that outlives its timeout
                // still holds its slot until it returns.
                let permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|_| io::Error::other("the resolver is closed"))?;
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    (name.as_str(), 0)
                        .to_socket_addrs()
                        .map(|addrs| addrs.map(|a| a.ip()).collect())
                })
                .await
                .map_err(io::Error::other)?
            })
        })
    }

    /// A resolver with its own lookup function, for tests of the cache.
    fn with_lookup(
        opts: ResolverOptions,
        lookup: impl Fn(String) -> LookupFuture + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                opts,
                cache: Mutex::new(HashMap::new()),
                lookups: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                lookup: Box::new(lookup),
            }),
        }
    }

    /// The options in use.
    pub fn options(&self) -> ResolverOptions {
        self.inner.opts
    }

    /// The counters so far.
    pub fn stats(&self) -> ResolverStats {
        ResolverStats {
            lookups: self.inner.lookups.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
        }
    }

    /// The address `name` stands for in `family` (its A or AAAA record),
    /// looking it up when the cached answer is older than the refresh period.
    /// Callers asking for the same name at once share one lookup.
    pub async fn resolve(&self, name: &str, family: Family) -> Resolved {
        let entry = self.entry(name, family);
        let mut entry = entry.lock().await;
        let now = Instant::now();
        if entry.next_at.is_none_or(|at| at <= now) {
            self.refresh(name, family, &mut entry).await;
        }
        let now = Instant::now();
        let resolved = match (entry.addr, entry.failing_since) {
            (Some(addr), None) => Resolved::Fresh(addr),
            (Some(addr), Some(since)) if now - since < self.inner.opts.keep_last_good => {
                Resolved::Kept(addr)
            }
            _ => Resolved::Unresolved,
        };
        match (resolved, entry.logged_unresolved) {
            (Resolved::Unresolved, false) => {
                entry.logged_unresolved = true;
                tracing::warn!(
                    name,
                    family = family.name(),
                    last_address = ?entry.addr,
                    "host name unresolved: its entities get no values until it resolves again"
                );
            }
            (Resolved::Fresh(addr), true) => {
                entry.logged_unresolved = false;
                tracing::info!(name, family = family.name(), %addr, "host name resolved again");
            }
            _ => {}
        }
        resolved
    }

    /// The entry for `(name, family)`, created when missing. Forgets entries
    /// that nobody asked for in [`FORGET_AFTER`].
    fn entry(&self, name: &str, family: Family) -> Arc<tokio::sync::Mutex<Entry>> {
        let now = Instant::now();
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        let key = (name.to_string(), family);
        if !cache.contains_key(&key) {
            cache.retain(|_, (_, used)| now - *used < FORGET_AFTER);
        }
        let slot = cache.entry(key).or_insert_with(|| (Arc::default(), now));
        slot.1 = now;
        slot.0.clone()
    }

    /// Looks the name up and updates its entry.
    async fn refresh(&self, name: &str, family: Family, entry: &mut Entry) {
        let inner = &self.inner;
        inner.lookups.fetch_add(1, Ordering::Relaxed);
        let lookup = tokio::time::timeout(inner.opts.lookup_timeout, (inner.lookup)(name.into()));
        let outcome = match lookup.await {
            Ok(Ok(addrs)) => {
                let addrs: Vec<IpAddr> = addrs
                    .into_iter()
                    .map(|a| a.to_canonical())
                    .filter(|a| Family::of(*a) == family)
                    .collect();
                // Keep the address in use while the record still holds it, so
                // a round-robin name does not hop between its addresses.
                match entry
                    .addr
                    .filter(|a| addrs.contains(a))
                    .or(addrs.first().copied())
                {
                    Some(addr) => Ok(addr),
                    None => Err(format!("no {} address", family.name())),
                }
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the lookup took longer than {:?}",
                inner.opts.lookup_timeout
            )),
        };
        let now = Instant::now();
        entry.next_at = Some(now + inner.opts.refresh);
        match outcome {
            Ok(addr) => {
                if entry.addr.is_some_and(|old| old != addr) && !entry.logged_unresolved {
                    tracing::info!(name, family = family.name(), old = ?entry.addr, new = %addr, "host name has a new address");
                }
                entry.addr = Some(addr);
                entry.failing_since = None;
            }
            Err(error) => {
                inner.failures.fetch_add(1, Ordering::Relaxed);
                entry.failing_since.get_or_insert(now);
                tracing::debug!(name, family = family.name(), %error, kept = ?entry.addr, "host name lookup failed");
            }
        }
    }
}

/// Whether `s` is a host name (RFC 1123 labels of letters, digits and
/// hyphens, at most 253 characters, an optional final dot), and not something
/// the system resolver would read as a numeric address: the last label must
/// not be all digits, so `127.1` or `10.0.0.256` are refused rather than
/// looked up.
///
/// ```
/// use grafolean_collector::resolve::is_host_name;
/// assert!(is_host_name("router-1.example.net"));
/// assert!(is_host_name("localhost."));
/// assert!(!is_host_name("127.1"));
/// assert!(!is_host_name("-bad.example"));
/// assert!(!is_host_name("a b"));
/// ```
pub fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    s.split('.').all(label_ok)
        && !s
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Table = Arc<Mutex<HashMap<String, Option<Vec<IpAddr>>>>>;

    /// A resolver over a table the test edits: `None` fails the lookup.
    fn fake(opts: ResolverOptions) -> (Resolver, Table) {
        let table: Table = Arc::default();
        let t = table.clone();
        let resolver = Resolver::with_lookup(opts, move |name| {
            let answer = t.lock().unwrap().get(&name).cloned().flatten();
            Box::pin(async move {
                answer.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such name"))
            })
        });
        (resolver, table)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn opts() -> ResolverOptions {
        ResolverOptions::default()
            .with_refresh(Duration::from_secs(10))
            .with_keep_last_good(Duration::from_secs(30))
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_cached_for_the_refresh_period() {
        let (r, table) = fake(opts());
        table.lock().unwrap().insert(
            "h".into(),
            Some(vec![ip("::1"), ip("192.0.2.1"), ip("192.0.2.2")]),
        );
        assert_eq!(
            r.resolve("h", Family::V4).await,
            Resolved::Fresh(ip("192.0.2.1"))
        );
        assert_eq!(r.resolve("h", Family::V6).await, Resolved::Fresh(ip("::1")));
        assert_eq!(r.stats().lookups, 2);
        tokio::time::advance(Duration::from_secs(9)).await;
        // The record changes; the cached answer holds until the refresh.
        table
            .lock()
            .unwrap()
            .insert("h".into(), Some(vec![ip("192.0.2.3")]));
        assert_eq!(
            r.resolve("h", Family::V4).await,
            Resolved::Fresh(ip("192.0.2.1"))
        );
        assert_eq!(r.stats().lookups, 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            r.resolve("h", Family::V4).await,
            Resolved::Fresh(ip("192.0.2.3"))
        );
        assert_eq!(r.stats().lookups, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_address_in_use_is_kept_while_the_record_holds_it() {
        let (r, table) = fake(opts());
        let set = |v: &[&str]| {
            table
                .lock()
                .unwrap()
                .insert("rr".into(), Some(v.iter().map(|s| ip(s)).collect()));
        };
        set(&["192.0.2.1", "192.0.2.2"]);
        assert_eq!(
            r.resolve("rr", Family::V4).await.addr(),
            Some(ip("192.0.2.1"))
        );
        set(&["192.0.2.2", "192.0.2.1"]);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            r.resolve("rr", Family::V4).await.addr(),
            Some(ip("192.0.2.1"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_keeps_the_last_address_then_gives_up_then_recovers() {
        let (r, table) = fake(opts());
        table
            .lock()
            .unwrap()
            .insert("h".into(), Some(vec![ip("192.0.2.1")]));
        assert_eq!(
            r.resolve("h", Family::V4).await,
            Resolved::Fresh(ip("192.0.2.1"))
        );
        table.lock().unwrap().insert("h".into(), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        // Failing since now: kept for 30 s.
        assert_eq!(
            r.resolve("h", Family::V4).await,
            Resolved::Kept(ip("192.0.2.1"))
        );
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(
            r.resolve("h", Family::V4).await,
            Resolved::Kept(ip("192.0.2.1"))
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(r.resolve("h", Family::V4).await, Resolved::Unresolved);
        assert_eq!(r.stats().failures, 2);
        table
            .lock()
            .unwrap()
            .insert("h".into(), Some(vec![ip("192.0.2.9")]));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            r.resolve("h", Family::V4).await,
            Resolved::Fresh(ip("192.0.2.9"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_that_never_resolved_is_unresolved_at_once() {
        let (r, table) = fake(opts());
        assert_eq!(r.resolve("nope", Family::V4).await, Resolved::Unresolved);
        // A name with only an AAAA record has no IPv4 address.
        table
            .lock()
            .unwrap()
            .insert("v6only".into(), Some(vec![ip("2001:db8::1")]));
        assert_eq!(r.resolve("v6only", Family::V4).await, Resolved::Unresolved);
        assert_eq!(
            r.resolve("v6only", Family::V6).await,
            Resolved::Fresh(ip("2001:db8::1"))
        );
    }

    #[test]
    fn host_names_are_told_from_numbers() {
        for ok in [
            "a",
            "a.b",
            "xn--bcher-kva.example",
            "a1.b2.c3",
            "1a.2b",
            "localhost.",
        ] {
            assert!(is_host_name(ok), "{ok}");
        }
        let long = format!("{}.example", "a".repeat(64));
        for bad in [
            "",
            ".",
            "a..b",
            "127.0.0.1",
            "10.0.0.256",
            "127.1",
            "1",
            "a_b",
            &long,
            "a-.b",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
