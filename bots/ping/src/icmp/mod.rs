//! A high-throughput ICMP echo pinger for IPv4 and IPv6.
//!
//! One [`Pinger`] serves the whole process. It opens **one** socket per
//! address family (see [`SocketChoice`]) and runs one receiver task per
//! socket. Every probe gets a unique `(identifier, sequence)` pair and a
//! token in its payload; it registers a oneshot channel under
//! `(target, identifier, sequence)`, sends its request and waits. The receiver
//! task reads every reply, looks the key up, checks the payload's cookie and
//! token, and wakes exactly that probe. A reply that matches nothing (a late
//! reply, another program's traffic) is counted in [`PingStats::unmatched`]
//! and dropped, so one target's reply can never be attributed to another.
//!
//! A semaphore caps the probes in flight ([`PingerOptions::with_max_in_flight`]),
//! so a burst of thousands of targets cannot overrun the receive buffer.
//!
//! ```no_run
//! # async fn demo() -> Result<(), grafolean_ping_bot::icmp::PingError> {
//! use grafolean_ping_bot::icmp::{Pinger, PingerOptions};
//! use std::time::Duration;
//!
//! let pinger = Pinger::new(PingerOptions::default())?;
//! match pinger.ping("127.0.0.1".parse().unwrap(), Duration::from_secs(1)).await? {
//!     Some(rtt) => println!("answered in {rtt:?}"),
//!     None => println!("no answer"),
//! }
//! # Ok(()) }
//! ```

mod packet;
mod pinger;
mod socket;

pub use packet::{Family, MAX_PAYLOAD, MIN_PAYLOAD};
pub use pinger::{
    MAX_IN_FLIGHT, MAX_SOCKET_VARIANTS, PacketOptions, PingStats, Pinger, PingerOptions,
};
pub use socket::{SocketChoice, SocketKind};

use std::net::IpAddr;

/// What went wrong while opening a socket or sending a probe.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// Neither a raw socket nor a ping socket may be opened.
    #[error(
        "cannot open an ICMP socket for {}: {tried}. A raw socket needs root or the CAP_NET_RAW \
         capability (e.g. `setcap cap_net_raw+ep <binary>`, or `--cap-add NET_RAW` in Docker); an \
         unprivileged ping socket needs the process's group inside the sysctl \
         net.ipv4.ping_group_range (e.g. `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`)",
        family.name()
    )]
    NoPermission {
        /// The address family.
        family: Family,
        /// Which kinds were tried, and how each was refused.
        tried: String,
    },
    /// A socket could not be opened or configured for another reason.
    #[error("cannot set up the ICMP socket for {}: {source}", family.name())]
    Socket {
        /// The address family.
        family: Family,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The pinger has no socket for this address family, because it could not
    /// be opened when the pinger was created.
    #[error("cannot ping {addr}: {} is not available in this pinger ({reason})", Family::of(*addr).name())]
    FamilyUnavailable {
        /// The target.
        addr: IpAddr,
        /// Why the socket could not be opened.
        reason: String,
    },
    /// A socket for these packet options could not be opened (the DF bit
    /// without a raw socket, a source address not on this host, too many
    /// different options).
    #[error("cannot ping {addr} with these packet options: {reason}")]
    Unsupported {
        /// The target.
        addr: IpAddr,
        /// Why.
        reason: String,
    },
    /// The request could not be sent, for example because there is no route.
    #[error("cannot send an echo request to {addr}: {source}")]
    Send {
        /// The target.
        addr: IpAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
}
