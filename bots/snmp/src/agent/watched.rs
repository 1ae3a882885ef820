//! One agent's view of the shared socket: the crate's [`UdpHandle`], with
//! every datagram that reaches one of the agent's requests looked at first.
//!
//! A datagram from another address than the agent's (another port, another
//! host) is dropped, as a spoofed or stray answer; a datagram that the
//! client could not use (undecodable, another v3 user, a msgID or PDU that
//! is not this request's, a failed v3 check) is counted. Both
//! counts are the agent's, so the bot can name them per entity: without
//! them, a device that answers garbage reads as a device that is down.
//!
//! A datagram whose request-id cannot even be read never reaches a request,
//! nor does one with another community (the crate refuses it first); the
//! crate counts those for the whole socket ([`async_snmp::UdpStats`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_snmp::{Candidate, RequestRegistration, Transport, UdpHandle};
use bytes::Bytes;

/// What came back to one agent's requests and was not used.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Datagrams from another address than the agent's: dropped.
    pub(super) other_source: AtomicU64,
    /// Datagrams the client could not use.
    pub(super) unusable: AtomicU64,
}

impl Seen {
    /// The counts since the last call, and zero from now.
    pub(super) fn take(&self) -> Dropped {
        Dropped {
            other_source: self.other_source.swap(0, Relaxed),
            unusable: self.unusable.swap(0, Relaxed),
        }
    }
}

/// The answers an agent's requests got and did not use, since it was last
/// asked ([`super::Agent::take_dropped`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Datagrams from another address or port than the agent's, dropped.
    pub other_source: u64,
    /// Datagrams for one of its requests that could not be used:
    /// undecodable, or not an answer to that request.
    pub unusable: u64,
}

impl Dropped {
    /// Both counts added up.
    pub fn add(&mut self, other: Dropped) {
        self.other_source += other.other_source;
        self.unusable += other.unusable;
    }

    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.other_source == 0 && self.unusable == 0
    }
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.unusable > 0 {
            parts.push(format!(
                "{} answers that could not be used (undecodable, another v3 user, or not an answer to the request)",
                self.unusable
            ));
        }
        if self.other_source > 0 {
            parts.push(format!(
                "{} answers from another address or port, dropped",
                self.other_source
            ));
        }
        f.write_str(&parts.join(" and "))
    }
}

/// The transport of one agent's client.
#[derive(Clone)]
pub(super) struct Watched {
    pub(super) handle: UdpHandle,
    pub(super) seen: Arc<Seen>,
}

impl Transport for Watched {
    fn send(&self, data: &[u8]) -> impl Future<Output = async_snmp::Result<()>> + Send {
        self.handle.send(data)
    }

    fn send_with_timeout(
        &self,
        data: &[u8],
        timeout: Duration,
    ) -> impl Future<Output = async_snmp::Result<()>> + Send {
        self.handle.send_with_timeout(data, timeout)
    }

    fn request_with<T, F>(
        &self,
        data: &[u8],
        registration: RequestRegistration,
        mut validate: F,
    ) -> impl Future<Output = async_snmp::Result<T>> + Send
    where
        T: Send,
        F: FnMut(Bytes, SocketAddr) -> async_snmp::Result<Candidate<T>> + Send,
    {
        let target = self.handle.peer_addr();
        let seen = Arc::clone(&self.seen);
        self.handle
            .request_with(data, registration, move |datagram, source| {
                if source != target {
                    seen.other_source.fetch_add(1, Relaxed);
                    return Ok(Candidate::Reject);
                }
                let candidate = validate(datagram, source);
                if matches!(candidate, Ok(Candidate::Reject)) {
                    seen.unusable.fetch_add(1, Relaxed);
                }
                candidate
            })
    }

    fn peer_addr(&self) -> SocketAddr {
        self.handle.peer_addr()
    }

    fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    fn alloc_request_id(&self) -> i32 {
        self.handle.alloc_request_id()
    }

    fn is_reliable(&self) -> bool {
        self.handle.is_reliable()
    }

    fn receive_limits(&self) -> async_snmp::ReceiveLimits {
        self.handle.receive_limits()
    }

    fn send_capacity(&self) -> usize {
        self.handle.send_capacity()
    }
}
