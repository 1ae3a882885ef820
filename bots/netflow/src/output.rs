//! A closed window's traffic as the Python bot's values: the account's
//! totals, per entity, per interface, and the top 10 lists.
//!
//! | path | value |
//! |---|---|
//! | `netflow.<w>.<d>` | the account's bytes: the sum over its entities |
//! | `netflow.<w>.<d>.entity.<id>` | the entity's bytes (written even when 0) |
//! | `….entity.<id>.if.<ifindex>` | per interface with traffic |
//! | `….entity.<id>[.if.<ifindex>].topip.<ip>` | top 10 source (ingress) or destination (egress) IPs |
//! | `….entity.<id>[.if.<ifindex>].topprotocol.<label>` | top 10 protocols |
//! | `….entity.<id>.topconn.<src>.<dst>` | top 10 (source, destination) pairs |
//! | `….entity.<id>.topdstports.<port>` | top 10 destination ports |
//!
//! `<w>` is `1min`, `15min`, `1h`, `4h` or `24h`; `<d>` is `ingress` or
//! `egress`. Values are bytes per window, as the Python bot sends them.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::IpAddr;

use grafolean_collector::Value;

use crate::aggregate::{DirectionTraffic, TOP_N, Traffic};
use crate::flow::Direction;
use crate::labels::{push_ip, push_protocol};
use crate::topn::TopMap;
use crate::window::Window;

/// An entity whose flows are counted: its id and its exporter addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityFlows {
    /// The entity's id.
    pub entity_id: u64,
    /// The exporter addresses (`details.ipv4`, resolved when a name).
    pub addresses: Vec<IpAddr>,
}

/// The values of one account's entities for `window`, appended to `out`.
pub fn account_values(
    window: Window,
    traffic: &Traffic,
    entities: &[EntityFlows],
    out: &mut Vec<Value>,
) {
    for direction in Direction::BOTH {
        let prefix = format!("netflow.{}.{}", window.label(), direction.as_str());
        let mut account = 0u64;
        for entity in entities {
            let parts: Vec<&DirectionTraffic> = entity
                .addresses
                .iter()
                .filter_map(|ip| traffic.get(ip, direction))
                .collect();
            // One address, as nearly always: no copy.
            let merged: Option<Cow<'_, DirectionTraffic>> = match parts.as_slice() {
                [] => None,
                [one] => Some(Cow::Borrowed(*one)),
                [first, rest @ ..] => {
                    let mut all = (*first).clone();
                    for part in rest {
                        all.merge(part);
                    }
                    Some(Cow::Owned(all))
                }
            };
            let entity_prefix = format!("{prefix}.entity.{}", entity.entity_id);
            let bytes = merged.as_ref().map_or(0, |t| t.bytes);
            account = account.saturating_add(bytes);
            out.push(Value::new(entity_prefix.clone(), bytes as f64));
            if let Some(t) = merged {
                entity_values(&entity_prefix, &t, out);
            }
        }
        out.push(Value::new(prefix, account as f64));
    }
}

fn entity_values(prefix: &str, t: &DirectionTraffic, out: &mut Vec<Value>) {
    let mut interfaces: Vec<_> = t.interfaces.iter().collect();
    interfaces.sort_unstable_by_key(|(index, _)| **index);
    for (index, i) in interfaces {
        let if_prefix = format!("{prefix}.if.{index}");
        out.push(Value::new(if_prefix.clone(), i.bytes as f64));
        top(&if_prefix, "topip", &i.ips, |p, ip| push_ip(p, *ip), out);
        top(
            &if_prefix,
            "topprotocol",
            &i.protocols,
            |p, n| push_protocol(p, *n),
            out,
        );
    }
    top(prefix, "topip", &t.ips, |p, ip| push_ip(p, *ip), out);
    top(
        prefix,
        "topprotocol",
        &t.protocols,
        |p, n| push_protocol(p, *n),
        out,
    );
    top(
        prefix,
        "topconn",
        &t.connections,
        |p, (src, dst)| {
            push_ip(p, *src);
            p.push('.');
            push_ip(p, *dst);
        },
        out,
    );
    top(
        prefix,
        "topdstports",
        &t.dst_ports,
        |p, port| {
            let _ = write!(p, "{port}");
        },
        out,
    );
}

fn top<K: std::hash::Hash + Eq + Clone + Ord>(
    prefix: &str,
    kind: &str,
    map: &TopMap<K>,
    mut key: impl FnMut(&mut String, &K),
    out: &mut Vec<Value>,
) {
    for (k, count) in map.top(TOP_N) {
        let mut path = String::with_capacity(prefix.len() + kind.len() + 48);
        path.push_str(prefix);
        path.push('.');
        path.push_str(kind);
        path.push('.');
        key(&mut path, k);
        out.push(Value::new(path, count.bytes as f64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Flow;

    #[test]
    fn the_paths_are_the_python_bots() {
        let exporter: IpAddr = "192.0.2.1".parse().unwrap();
        let mut t = Traffic::new(100);
        t.add(
            exporter,
            &Flow {
                bytes: 1000,
                packets: 1,
                protocol: 17,
                src: "10.0.0.1".parse().unwrap(),
                dst: "2001:db8::2".parse().unwrap(),
                src_port: 5000,
                dst_port: 53,
                input: 3,
                output: 4,
                direction: Direction::Ingress,
            },
        );
        let entities = [
            EntityFlows {
                entity_id: 7,
                addresses: vec![exporter],
            },
            EntityFlows {
                entity_id: 8,
                addresses: vec!["192.0.2.99".parse().unwrap()],
            },
        ];
        let mut out = Vec::new();
        account_values(Window::OneMinute, &t, &entities, &mut out);
        let got: Vec<String> = out
            .iter()
            .map(|v| format!("{} {}", v.path, v.value))
            .collect();
        assert_eq!(
            got,
            [
                "netflow.1min.ingress.entity.7 1000",
                "netflow.1min.ingress.entity.7.if.3 1000",
                "netflow.1min.ingress.entity.7.if.3.topip.10%2e0%2e0%2e1 1000",
                "netflow.1min.ingress.entity.7.if.3.topprotocol.UDP 1000",
                "netflow.1min.ingress.entity.7.topip.10%2e0%2e0%2e1 1000",
                "netflow.1min.ingress.entity.7.topprotocol.UDP 1000",
                "netflow.1min.ingress.entity.7.topconn.10%2e0%2e0%2e1.2001%3adb8%3a%3a2 1000",
                "netflow.1min.ingress.entity.7.topdstports.53 1000",
                "netflow.1min.ingress.entity.8 0",
                "netflow.1min.ingress 1000",
                "netflow.1min.egress.entity.7 0",
                "netflow.1min.egress.entity.8 0",
                "netflow.1min.egress 0",
            ]
        );
        for v in &out {
            v.validate().unwrap();
        }
    }
}
