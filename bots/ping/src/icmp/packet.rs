//! ICMP echo packets: building requests and parsing replies, for both families.
//!
//! A request is an 8-byte ICMP header followed by a payload of at least 16
//! bytes: the pinger's random cookie and the probe's token, then zeros up to
//! the payload size asked for. A reply echoes the payload
//! back, so the receiver can tell a reply to *this* probe from a late reply to
//! an older probe that happened to reuse the same identifier and sequence.
//!
//! ```text
//!  0      1      2             4             6             8                16               24
//! +------+------+-------------+-------------+-------------+----------------+----------------+
//! | type | code |  checksum   | identifier  |  sequence   | cookie (u64 BE) | token (u64 BE) |
//! +------+------+-------------+-------------+-------------+----------------+----------------+
//! ```

use std::net::Ipv4Addr;

/// ICMPv4 echo request type.
const V4_ECHO_REQUEST: u8 = 8;
/// ICMPv4 echo reply type.
const V4_ECHO_REPLY: u8 = 0;
/// ICMPv6 echo request type.
const V6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply type.
const V6_ECHO_REPLY: u8 = 129;

/// The length of the shortest request: header and the 16-byte payload.
pub(crate) const REQUEST_LEN: usize = 24;

/// The smallest payload: the cookie and the token.
pub const MIN_PAYLOAD: u16 = 16;
/// The largest payload: enough for an MTU check of a 9,000-byte jumbo frame.
pub const MAX_PAYLOAD: u16 = 9_000;

/// The fields of an IPv4 header written by the pinger itself, on a raw
/// socket with `IP_HDRINCL` (how the DF bit is set without `unsafe`; the
/// kernel fills in the total length, the identification and the checksum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct V4Header {
    pub(crate) ttl: u8,
    pub(crate) dont_fragment: bool,
    /// `0.0.0.0` lets the kernel pick the source address.
    pub(crate) source: Ipv4Addr,
}

impl V4Header {
    /// The 20-byte header for a request to `dst`.
    pub(crate) fn bytes(&self, dst: Ipv4Addr) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        if self.dont_fragment {
            h[6] = 0x40;
        }
        h[8] = self.ttl;
        h[9] = 1; // ICMP
        h[12..16].copy_from_slice(&self.source.octets());
        h[16..20].copy_from_slice(&dst.octets());
        h
    }
}

pub use grafolean_collector::resolve::Family;

/// The fields of an echo reply that matter for matching it to its probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EchoReply {
    pub(crate) identifier: u16,
    pub(crate) sequence: u16,
    pub(crate) cookie: u64,
    pub(crate) token: u64,
}

/// What a received datagram turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// An echo reply carrying our payload layout.
    Reply(EchoReply),
    /// Anything else: our own requests seen on a raw socket, errors, other
    /// programs' traffic, truncated packets.
    Other,
}

/// Builds an echo request with the smallest payload. The ICMPv4 checksum is
/// filled in; for ICMPv6 the kernel computes it (it needs the
/// pseudo-header), so it is left at zero.
pub(crate) fn echo_request(
    family: Family,
    identifier: u16,
    sequence: u16,
    cookie: u64,
    token: u64,
) -> [u8; REQUEST_LEN] {
    let mut buf = [0u8; REQUEST_LEN];
    fill_request(&mut buf, family, identifier, sequence, cookie, token);
    buf
}

/// Appends an echo request with a `payload`-byte payload (at least
/// [`MIN_PAYLOAD`]) to `out`, after an IPv4 header when `header` is given.
pub(crate) fn echo_request_into(
    out: &mut Vec<u8>,
    family: Family,
    (identifier, sequence, cookie, token): (u16, u16, u64, u64),
    payload: u16,
    header: Option<(V4Header, Ipv4Addr)>,
) {
    if let Some((header, dst)) = header {
        out.extend_from_slice(&header.bytes(dst));
    }
    let start = out.len();
    out.resize(start + 8 + usize::from(payload.max(MIN_PAYLOAD)), 0);
    fill_request(
        &mut out[start..],
        family,
        identifier,
        sequence,
        cookie,
        token,
    );
}

/// Writes the header, the cookie and the token into `buf` (the rest of the
/// payload stays as it is, zeros) and the ICMPv4 checksum over all of it.
fn fill_request(
    buf: &mut [u8],
    family: Family,
    identifier: u16,
    sequence: u16,
    cookie: u64,
    token: u64,
) {
    buf[0] = match family {
        Family::V4 => V4_ECHO_REQUEST,
        Family::V6 => V6_ECHO_REQUEST,
    };
    buf[4..6].copy_from_slice(&identifier.to_be_bytes());
    buf[6..8].copy_from_slice(&sequence.to_be_bytes());
    buf[8..16].copy_from_slice(&cookie.to_be_bytes());
    buf[16..24].copy_from_slice(&token.to_be_bytes());
    if family == Family::V4 {
        let sum = checksum(buf);
        buf[2..4].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Parses a received datagram.
///
/// `has_ip_header` is true for raw IPv4 sockets, which deliver the IP header
/// in front of the ICMP message; its length is read from the IHL field.
pub(crate) fn parse(family: Family, has_ip_header: bool, datagram: &[u8]) -> Parsed {
    let icmp = if has_ip_header {
        let Some(&first) = datagram.first() else {
            return Parsed::Other;
        };
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < 20 || datagram.len() < ihl {
            return Parsed::Other;
        }
        &datagram[ihl..]
    } else {
        datagram
    };
    let reply_type = match family {
        Family::V4 => V4_ECHO_REPLY,
        Family::V6 => V6_ECHO_REPLY,
    };
    if icmp.len() < REQUEST_LEN || icmp[0] != reply_type || icmp[1] != 0 {
        return Parsed::Other;
    }
    let u16_at = |i: usize| u16::from_be_bytes([icmp[i], icmp[i + 1]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&icmp[i..i + 8]);
        u64::from_be_bytes(b)
    };
    Parsed::Reply(EchoReply {
        identifier: u16_at(4),
        sequence: u16_at(6),
        cookie: u64_at(8),
        token: u64_at(16),
    })
}

/// The Internet checksum (RFC 1071) of `data`.
pub(crate) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Turns a request into the reply a host would send back.
    fn as_reply(family: Family, mut req: [u8; REQUEST_LEN]) -> [u8; REQUEST_LEN] {
        req[0] = match family {
            Family::V4 => V4_ECHO_REPLY,
            Family::V6 => V6_ECHO_REPLY,
        };
        req
    }

    #[test]
    fn v4_checksum_verifies_to_zero() {
        let req = echo_request(Family::V4, 0x1234, 0xabcd, 7, 42);
        assert_eq!(checksum(&req), 0);
        // RFC 1071's worked example: the sum of these words is 0xddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // An odd length is padded with a zero byte.
        assert_eq!(checksum(&[0x01]), !0x0100);
    }

    #[test]
    fn large_payloads_and_own_headers() {
        let mut out = Vec::new();
        echo_request_into(&mut out, Family::V4, (1, 2, 3, 4), 1472, None);
        assert_eq!(out.len(), 8 + 1472);
        assert_eq!(checksum(&out), 0);
        assert_eq!(&out[..24], &echo_request(Family::V4, 1, 2, 3, 4)[..]);
        let header = V4Header {
            ttl: 7,
            dont_fragment: true,
            source: Ipv4Addr::new(192, 0, 2, 1),
        };
        let mut out = Vec::new();
        let dst = Ipv4Addr::new(192, 0, 2, 9);
        echo_request_into(&mut out, Family::V4, (1, 2, 3, 4), 0, Some((header, dst)));
        assert_eq!(out.len(), 20 + 24);
        assert_eq!((out[0], out[6], out[8], out[9]), (0x45, 0x40, 7, 1));
        assert_eq!(&out[12..20], &[192, 0, 2, 1, 192, 0, 2, 9]);
        // A reply to it parses like any other.
        let mut reply = out.clone();
        reply[20] = V4_ECHO_REPLY;
        let Parsed::Reply(r) = parse(Family::V4, true, &reply) else {
            panic!("not parsed");
        };
        assert_eq!((r.identifier, r.sequence, r.cookie, r.token), (1, 2, 3, 4));
    }

    #[test]
    fn v6_checksum_is_left_to_the_kernel() {
        let req = echo_request(Family::V6, 1, 2, 3, 4);
        assert_eq!(req[0], V6_ECHO_REQUEST);
        assert_eq!(&req[2..4], &[0, 0]);
    }

    #[test]
    fn replies_round_trip() {
        for family in [Family::V4, Family::V6] {
            let reply = as_reply(family, echo_request(family, 0x1234, 0xabcd, 7, 42));
            let expected = Parsed::Reply(EchoReply {
                identifier: 0x1234,
                sequence: 0xabcd,
                cookie: 7,
                token: 42,
            });
            assert_eq!(parse(family, false, &reply), expected);
        }
    }

    #[test]
    fn raw_v4_ip_header_is_skipped_by_its_length() {
        let reply = as_reply(Family::V4, echo_request(Family::V4, 9, 10, 11, 12));
        for options in [0usize, 4, 40] {
            let ihl = 20 + options;
            let mut datagram = vec![0u8; ihl];
            datagram[0] = 0x40 | (ihl / 4) as u8;
            datagram.extend_from_slice(&reply);
            let Parsed::Reply(r) = parse(Family::V4, true, &datagram) else {
                panic!("not parsed with IHL {ihl}");
            };
            assert_eq!(
                (r.identifier, r.sequence, r.cookie, r.token),
                (9, 10, 11, 12)
            );
        }
    }

    #[test]
    fn requests_errors_and_junk_are_other() {
        let req = echo_request(Family::V4, 1, 2, 3, 4);
        assert_eq!(parse(Family::V4, false, &req), Parsed::Other);
        assert_eq!(parse(Family::V4, false, &req[..10]), Parsed::Other);
        assert_eq!(parse(Family::V4, true, &[]), Parsed::Other);
        assert_eq!(parse(Family::V4, true, &[0x45, 0, 0]), Parsed::Other);
        // An IPv6 header where an IPv4 one is expected.
        assert_eq!(parse(Family::V4, true, &[0x60; 64]), Parsed::Other);
        // An ICMPv4 reply type on an ICMPv6 socket is not an ICMPv6 reply.
        let v4_reply = as_reply(Family::V4, req);
        assert_eq!(parse(Family::V6, false, &v4_reply), Parsed::Other);
        // Destination unreachable.
        let mut unreachable = v4_reply;
        unreachable[0] = 3;
        assert_eq!(parse(Family::V4, false, &unreachable), Parsed::Other);
    }
}
