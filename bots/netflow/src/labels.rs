//! The path parts the Python bot writes: escaped addresses, protocol labels.

use std::fmt::Write;
use std::net::IpAddr;

/// Appends `text` with `.` as `%2e` and `:` as `%3a`, the only escaping the
/// Python bot does (`path_part_encode`), and the only escapes the backend's
/// path check accepts.
pub fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '.' => out.push_str("%2e"),
            ':' => out.push_str("%3a"),
            c => out.push(c),
        }
    }
}

/// Appends an address as the Python bot writes it in a path: PostgreSQL's
/// `inet` text (which Rust's `Display` matches for every address the Python
/// bot could store), escaped.
///
/// ```
/// let mut s = String::new();
/// grafolean_netflow_bot::labels::push_ip(&mut s, "2001:db8::1".parse().unwrap());
/// assert_eq!(s, "2001%3adb8%3a%3a1");
/// ```
pub fn push_ip(out: &mut String, ip: IpAddr) {
    let mut text = String::with_capacity(40);
    let _ = write!(text, "{ip}");
    push_escaped(out, &text);
}

/// Appends a protocol's label: the Python bot's name for it (its
/// `lookup.py`), else `proto<N>`, escaped. Five of the Python bot's names
/// hold characters the backend refuses in a path (`TP++`, `TTP/IPTM`, `A/N`,
/// `IS-IS over IPv4`, `Mobility Header`), which made it lose the whole
/// batch; here each such character is written as `_` (`TP__`, `A_N`,
/// `IS-IS_over_IPv4`).
///
/// ```
/// let label = |p| { let mut s = String::new(); grafolean_netflow_bot::labels::push_protocol(&mut s, p); s };
/// assert_eq!(label(6), "TCP");
/// assert_eq!(label(93), "AX%2e25");
/// assert_eq!(label(124), "IS-IS_over_IPv4");
/// assert_eq!(label(200), "proto200");
/// ```
pub fn push_protocol(out: &mut String, protocol: u8) {
    match protocol_name(protocol) {
        Some(name) => {
            for c in name.chars() {
                match c {
                    '.' => out.push_str("%2e"),
                    ':' => out.push_str("%3a"),
                    c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => out.push(c),
                    _ => out.push('_'),
                }
            }
        }
        None => {
            let _ = write!(out, "proto{protocol}");
        }
    }
}

/// The Python bot's name for an IP protocol number, as in its `lookup.py`.
pub fn protocol_name(protocol: u8) -> Option<&'static str> {
    PROTOCOLS
        .binary_search_by_key(&protocol, |(p, _)| *p)
        .ok()
        .map(|i| PROTOCOLS[i].1)
}

/// The Python bot's protocol names (`lookup.py`, 139 entries), by number.
#[rustfmt::skip]
pub const PROTOCOLS: &[(u8, &str)] = &[
    (0, "HOPOPT"), (1, "ICMP"), (2, "IGMP"), (3, "GGP"), (4, "IP-in-IP"),
    (5, "ST"), (6, "TCP"), (7, "CBT"), (8, "EGP"), (9, "IGP"),
    (10, "BBN-RCC-MON"), (11, "NVP-II"), (12, "PUP"), (13, "ARGUS"), (14, "EMCON"),
    (15, "XNET"), (16, "CHAOS"), (17, "UDP"), (18, "MUX"), (19, "DCN-MEAS"),
    (20, "HMP"), (21, "PRM"), (22, "XNS-IDP"), (23, "TRUNK-1"), (24, "TRUNK-2"),
    (25, "LEAF-1"), (26, "LEAF-2"), (27, "RDP"), (28, "IRTP"), (29, "ISO-TP4"),
    (30, "NETBLT"), (31, "MFE-NSP"), (32, "MERIT-INP"), (33, "DCCP"), (34, "3PC"),
    (35, "IDPR"), (36, "XTP"), (37, "DDP"), (38, "IDPR-CMTP"), (39, "TP++"),
    (40, "IL"), (41, "IPv6"), (42, "SDRP"), (43, "IPv6-Route"), (44, "IPv6-Frag"),
    (45, "IDRP"), (46, "RSVP"), (47, "GREs"), (48, "DSR"), (49, "BNA"),
    (50, "ESP"), (51, "AH"), (52, "I-NLSP"), (53, "SwIPe"), (54, "NARP"),
    (55, "MOBILE"), (56, "TLSP"), (57, "SKIP"), (58, "IPv6-ICMP"), (59, "IPv6-NoNxt"),
    (60, "IPv6-Opts"), (62, "CFTP"), (64, "SAT-EXPAK"), (65, "KRYPTOLAN"), (66, "RVD"),
    (67, "IPPC"), (69, "SAT-MON"), (70, "VISA"), (71, "IPCU"), (72, "CPNX"),
    (73, "CPHB"), (74, "WSN"), (75, "PVP"), (76, "BR-SAT-MON"), (77, "SUN-ND"),
    (78, "WB-MON"), (79, "WB-EXPAK"), (80, "ISO-IP"), (81, "VMTP"), (82, "SECURE-VMTP"),
    (83, "VINES"), (84, "TTP/IPTM"), (85, "NSFNET-IGP"), (86, "DGP"), (87, "TCF"),
    (88, "EIGRP"), (89, "OSPF"), (90, "Sprite-RPC"), (91, "LARP"), (92, "MTP"),
    (93, "AX.25"), (94, "OS"), (95, "MICP"), (96, "SCC-SP"), (97, "ETHERIP"),
    (98, "ENCAP"), (100, "GMTP"), (101, "IFMP"), (102, "PNNI"), (103, "PIM"),
    (104, "ARIS"), (105, "SCPS"), (106, "QNX"), (107, "A/N"), (108, "IPComp"),
    (109, "SNP"), (110, "Compaq-Peer"), (111, "IPX-in-IP"), (112, "VRRP"), (113, "PGM"),
    (115, "L2TP"), (116, "DDX"), (117, "IATP"), (118, "STP"), (119, "SRP"),
    (120, "UTI"), (121, "SMP"), (122, "SM"), (123, "PTP"), (124, "IS-IS over IPv4"),
    (125, "FIRE"), (126, "CRTP"), (127, "CRUDP"), (128, "SSCOPMCE"), (129, "IPLT"),
    (130, "SPS"), (131, "PIPE"), (132, "SCTP"), (133, "FC"), (134, "RSVP-E2E-IGNORE"),
    (135, "Mobility Header"), (136, "UDPLite"), (137, "MPLS-in-IP"), (138, "manet"), (139, "HIP"),
    (140, "Shim6"), (141, "WESP"), (142, "ROHC"), (255, "Reserved"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use grafolean_collector::Value;

    #[test]
    fn the_table_is_sorted_and_every_label_passes_the_backend_path_check() {
        assert!(PROTOCOLS.windows(2).all(|w| w[0].0 < w[1].0));
        for p in 0..=255u8 {
            let mut path = String::from("netflow.1min.ingress.entity.1.topprotocol.");
            push_protocol(&mut path, p);
            Value::new(path.clone(), 1.0)
                .validate()
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    #[test]
    fn addresses_escape_dots_and_colons() {
        let mut s = String::new();
        push_ip(&mut s, "10.0.0.1".parse().unwrap());
        s.push('.');
        push_ip(&mut s, "::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(s, "10%2e0%2e0%2e1.%3a%3affff%3a10%2e1%2e2%2e3");
    }
}
