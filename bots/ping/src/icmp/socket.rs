//! Opening the one ICMP socket per address family.
//!
//! A raw socket (`SOCK_RAW`) needs root or `CAP_NET_RAW`; it sees every ICMP
//! packet the host receives, IPv4 ones with their IP header in front. An
//! unprivileged "ping socket" (`SOCK_DGRAM` with `IPPROTO_ICMP`/`IPPROTO_ICMPV6`)
//! needs the process's group to be inside `net.ipv4.ping_group_range` (which
//! governs IPv6 too); the kernel then owns the echo identifier (it is the
//! socket's "port") and delivers only the replies meant for this socket.
//!
//! Both kinds are driven as a [`tokio::net::UdpSocket`]: `sendto`/`recvfrom`
//! with port 0 are all they need, so no `unsafe` is required.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use super::PingError;
use super::packet::Family;

/// The kind of ICMP socket that was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    /// A raw socket (`SOCK_RAW`); needs root or `CAP_NET_RAW`.
    Raw,
    /// An unprivileged ping socket (`SOCK_DGRAM`); needs the process's group in
    /// `net.ipv4.ping_group_range`.
    Datagram,
}

impl std::fmt::Display for SocketKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Raw => "raw socket",
            Self::Datagram => "ping socket",
        })
    }
}

/// Which kind of socket [`Pinger::new`](super::Pinger::new) should open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SocketChoice {
    /// A raw socket when permitted, else a ping socket.
    #[default]
    Auto,
    /// Only a raw socket.
    Raw,
    /// Only a ping socket.
    Datagram,
}

/// An open, configured ICMP socket.
#[derive(Debug)]
pub(crate) struct IcmpSocket {
    pub(crate) socket: tokio::net::UdpSocket,
    pub(crate) kind: SocketKind,
    /// For ping sockets, the identifier the kernel writes into every request.
    pub(crate) kernel_identifier: Option<u16>,
}

/// Socket options beyond the defaults, for packet options
/// ([`PacketOptions`](super::PacketOptions)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Tweaks {
    /// `IP_TTL` or `IPV6_UNICAST_HOPS`.
    pub(crate) ttl: Option<u8>,
    /// `IP_HDRINCL` (IPv4 raw sockets only): the pinger writes the IP header.
    pub(crate) header_included: bool,
    /// The address to bind to.
    pub(crate) source: Option<IpAddr>,
}

/// Opens the socket for `family`, as `choice` allows.
///
/// Must be called within a Tokio runtime.
pub(crate) fn open(
    family: Family,
    choice: SocketChoice,
    recv_buffer: usize,
    send_buffer: usize,
) -> Result<IcmpSocket, PingError> {
    open_with(family, choice, recv_buffer, send_buffer, Tweaks::default())
}

/// [`open`] with socket options.
pub(crate) fn open_with(
    family: Family,
    choice: SocketChoice,
    recv_buffer: usize,
    send_buffer: usize,
    tweaks: Tweaks,
) -> Result<IcmpSocket, PingError> {
    let kinds: &[SocketKind] = match choice {
        SocketChoice::Auto => &[SocketKind::Raw, SocketKind::Datagram],
        SocketChoice::Raw => &[SocketKind::Raw],
        SocketChoice::Datagram => &[SocketKind::Datagram],
    };
    let mut refused = Vec::new();
    for &kind in kinds {
        match try_open(family, kind) {
            Ok(socket) => {
                return configure(family, kind, socket, (recv_buffer, send_buffer), tweaks);
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                refused.push(format!("{kind}: {e}"));
            }
            Err(source) => return Err(PingError::Socket { family, source }),
        }
    }
    Err(PingError::NoPermission {
        family,
        tried: refused.join("; "),
    })
}

fn try_open(family: Family, kind: SocketKind) -> io::Result<Socket> {
    let (domain, protocol) = match family {
        Family::V4 => (Domain::IPV4, Protocol::ICMPV4),
        Family::V6 => (Domain::IPV6, Protocol::ICMPV6),
    };
    let ty = match kind {
        SocketKind::Raw => Type::RAW,
        SocketKind::Datagram => Type::DGRAM,
    };
    Socket::new(domain, ty, Some(protocol))
}

fn configure(
    family: Family,
    kind: SocketKind,
    socket: Socket,
    (recv_buffer, send_buffer): (usize, usize),
    tweaks: Tweaks,
) -> Result<IcmpSocket, PingError> {
    let err = |source| PingError::Socket { family, source };
    if let Some(ttl) = tweaks.ttl {
        match family {
            Family::V4 => socket.set_ttl_v4(u32::from(ttl)),
            Family::V6 => socket.set_unicast_hops_v6(u32::from(ttl)),
        }
        .map_err(err)?;
    }
    if tweaks.header_included {
        if kind != SocketKind::Raw || family != Family::V4 {
            return Err(err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the DF bit needs a raw IPv4 socket (root or CAP_NET_RAW)",
            )));
        }
        socket.set_header_included_v4(true).map_err(err)?;
    }
    if let (Some(source), SocketKind::Raw) = (tweaks.source, kind) {
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    // The kernel caps these at net.core.rmem_max / wmem_max; a smaller buffer
    // still works, it only drops replies sooner under a burst.
    socket.set_recv_buffer_size(recv_buffer).map_err(err)?;
    // With CAP_NET_ADMIN (root) the buffer may exceed net.core.rmem_max
    // (208 KiB by default, too small for a burst of thousands of replies,
    // which a raw socket on loopback sees together with the requests).
    if socket.recv_buffer_size().unwrap_or(0) < recv_buffer {
        let _ = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &recv_buffer,
        );
    }
    socket.set_send_buffer_size(send_buffer).map_err(err)?;
    // The kernel's receive time on every reply, so the RTT does not include
    // the time a busy process takes to read it. Without it the RTT is taken
    // when the reply is read.
    if let Err(e) = nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::ReceiveTimestampns,
        &true,
    ) {
        tracing::debug!(error = %e, family = family.name(), "no kernel receive timestamps");
    }
    let kernel_identifier = match kind {
        SocketKind::Raw => None,
        SocketKind::Datagram => {
            // Binding to port 0 makes the kernel pick the echo identifier now,
            // so replies can be matched against it.
            let any: SocketAddr = match (family, tweaks.source) {
                (_, Some(source)) => (source, 0).into(),
                (Family::V4, None) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                (Family::V6, None) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            socket.bind(&any.into()).map_err(err)?;
            let local = socket.local_addr().map_err(err)?;
            Some(local.as_socket().map_or(0, |a| a.port()))
        }
    };
    tracing::debug!(
        family = family.name(),
        %kind,
        recv_buffer = socket.recv_buffer_size().unwrap_or(0),
        send_buffer = socket.send_buffer_size().unwrap_or(0),
        "opened the ICMP socket"
    );
    let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(err)?;
    Ok(IcmpSocket {
        socket,
        kind,
        kernel_identifier,
    })
}
