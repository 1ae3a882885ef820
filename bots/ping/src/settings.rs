//! Turning one entity's config into what a ping job needs: its addresses and
//! the credential's settings, with the Python bot's defaults.
//!
//! The backend sends the credential's numbers as strings
//! (`{"n_packets":"2","sleep_packets":"0.5","timeout":"1.0","retry":"0"}`); a
//! local TOML file naturally has numbers. Both are accepted. A missing or
//! `null` field takes its default.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value as Json;

use crate::icmp::{MAX_PAYLOAD, MIN_PAYLOAD, PacketOptions};

/// The shortest timeout, and the shortest time between retries, that the
/// Python bot's multiping accepts.
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// The accepted range of `n_packets`.
pub const N_PACKETS: std::ops::RangeInclusive<u32> = 1..=100;
/// The accepted range of `retry`.
pub const RETRY: std::ops::RangeInclusive<u32> = 0..=100;
/// The longest `timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `sleep_packets`.
pub const MAX_SLEEP_PACKETS: Duration = Duration::from_secs(60);

/// How an entity is pinged, from its credential's `details`.
///
/// ```
/// use grafolean_ping_bot::PingSettings;
/// use std::time::Duration;
/// let s = PingSettings::from_credential(&serde_json::json!({"n_packets": "2", "timeout": 1.5})).unwrap();
/// assert_eq!(s.n_packets, 2);
/// assert_eq!(s.timeout, Duration::from_millis(1500));
/// assert_eq!(s, PingSettings { n_packets: 2, timeout: Duration::from_millis(1500), ..PingSettings::default() });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingSettings {
    /// Packets per run (`n_packets`, default 3, 1 to 100).
    pub n_packets: u32,
    /// How long to wait for each packet's reply, retries included (`timeout`,
    /// seconds, default 2.0, 0.1 to 60).
    pub timeout: Duration,
    /// Extra requests sent within `timeout` while a packet is unanswered
    /// (`retry`, default 0, 0 to 100; `timeout / (retry + 1)` must be at
    /// least 0.1 s).
    pub retry: u32,
    /// The pause between packets (`sleep_packets`, seconds, default 1.0, 0 to
    /// 60).
    pub sleep_packets: Duration,
    /// Whether to write the extra RTT statistics paths (`stats`, `true` or
    /// `false`, default `false`); see
    /// [`stats_for`](crate::collector::stats_for).
    pub stats: bool,
    /// The packet options: `payload_size` (bytes of ICMP payload, default
    /// 16, 16 to 9000), `ttl` (1 to 255, default the system's),
    /// `dont_fragment` (`true`/`false`, default `false`; IPv4 with a raw
    /// socket only) and `source` (an address of this host, default the
    /// system's choice).
    pub packet: PacketOptions,
}

impl Default for PingSettings {
    fn default() -> Self {
        Self {
            n_packets: 3,
            timeout: Duration::from_secs(2),
            retry: 0,
            sleep_packets: Duration::from_secs(1),
            stats: false,
            packet: PacketOptions::default(),
        }
    }
}

/// Why an entity's config cannot be used. The entity is skipped; the others
/// go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A field has a value that cannot be used.
    #[error("{field} is {value}, but it must be {expected}")]
    Invalid {
        /// The field, such as `credential.timeout` or `details.ipv4`.
        field: &'static str,
        /// The value that was found, as JSON.
        value: String,
        /// What the value should be.
        expected: &'static str,
    },
    /// The entity has neither `details.ipv4` nor `details.ipv6`.
    #[error("the entity has no address; set details.ipv4 (or details.ipv6)")]
    NoAddress,
}

impl PingSettings {
    /// Reads the settings from a credential's `details`. `null` (no
    /// credential) gives the defaults.
    pub fn from_credential(details: &Json) -> Result<Self, SettingsError> {
        let defaults = Self::default();
        let fields = match details {
            Json::Null => return Ok(defaults),
            Json::Object(fields) => fields,
            other => return Err(invalid("credential", other, "an object")),
        };
        let get = |name: &str| fields.get(name).filter(|v| !v.is_null());
        let n_packets = match get("n_packets") {
            None => defaults.n_packets,
            Some(v) => whole(v).filter(|n| N_PACKETS.contains(n)).ok_or_else(|| {
                invalid("credential.n_packets", v, "a whole number from 1 to 100")
            })?,
        };
        let retry = match get("retry") {
            None => defaults.retry,
            Some(v) => whole(v)
                .filter(|n| RETRY.contains(n))
                .ok_or_else(|| invalid("credential.retry", v, "a whole number from 0 to 100"))?,
        };
        let timeout = match get("timeout") {
            None => defaults.timeout,
            Some(v) => seconds(v)
                .filter(|d| (MIN_WINDOW..=MAX_TIMEOUT).contains(d))
                .ok_or_else(|| {
                    invalid(
                        "credential.timeout",
                        v,
                        "a number of seconds from 0.1 to 60",
                    )
                })?,
        };
        // As Python's multiping, which refuses retries less than 0.1 s apart.
        if timeout / retry.saturating_add(1) < MIN_WINDOW {
            return Err(SettingsError::Invalid {
                field: "credential.retry",
                value: retry.to_string(),
                expected: "small enough that timeout / (retry + 1) is at least 0.1 s",
            });
        }
        let sleep_packets = match get("sleep_packets") {
            None => defaults.sleep_packets,
            Some(v) => seconds(v)
                .filter(|d| *d <= MAX_SLEEP_PACKETS)
                .ok_or_else(|| {
                    invalid(
                        "credential.sleep_packets",
                        v,
                        "a number of seconds from 0 to 60",
                    )
                })?,
        };
        let stats = match get("stats") {
            None => defaults.stats,
            Some(v) => flag(v).ok_or_else(|| invalid("credential.stats", v, "true or false"))?,
        };
        let payload = match get("payload_size") {
            None => MIN_PAYLOAD,
            Some(v) => whole(v)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| (MIN_PAYLOAD..=MAX_PAYLOAD).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "credential.payload_size",
                        v,
                        "a whole number of bytes from 16 to 9000",
                    )
                })?,
        };
        let ttl = match get("ttl") {
            None => None,
            Some(v) => Some(
                whole(v)
                    .and_then(|n| u8::try_from(n).ok())
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| invalid("credential.ttl", v, "a whole number from 1 to 255"))?,
            ),
        };
        let dont_fragment = match get("dont_fragment") {
            None => false,
            Some(v) => {
                flag(v).ok_or_else(|| invalid("credential.dont_fragment", v, "true or false"))?
            }
        };
        let source = match get("source") {
            None => None,
            Some(Json::String(s)) if s.trim().is_empty() => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(|s| s.trim().parse::<IpAddr>().ok())
                    .ok_or_else(|| {
                        invalid(
                            "credential.source",
                            v,
                            "an IP address of this host, such as 192.0.2.1",
                        )
                    })?,
            ),
        };
        Ok(Self {
            n_packets,
            timeout,
            retry,
            sleep_packets,
            stats,
            packet: PacketOptions {
                payload,
                ttl,
                dont_fragment,
                source,
            },
        })
    }
}

impl PingSettings {
    /// The longest a run can take: every packet unanswered,
    /// `n_packets × timeout + (n_packets − 1) × sleep_packets`.
    pub fn worst_case(&self) -> Duration {
        self.timeout * self.n_packets + self.sleep_packets * self.n_packets.saturating_sub(1)
    }
}

/// An entity's address as configured in `details.ipv4` or `details.ipv6`: a
/// literal address, pinged as it is, or a host name, looked up by the
/// [`Resolver`](crate::resolve::Resolver) (its A record for `ipv4`, its AAAA
/// record for `ipv6`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal address, of the field's family.
    Ip(IpAddr),
    /// A host name, in lower case.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// Reads an entity's `details.ipv4` and `details.ipv6`: each an address of
/// its family or a host name. A missing, `null` or empty field is absent; at
/// least one must be present.
///
/// ```
/// use grafolean_ping_bot::settings::{addresses, Host};
/// let (v4, v6) = addresses(&serde_json::json!({"ipv4": "127.0.0.1"})).unwrap();
/// assert_eq!(v4, Some(Host::Ip("127.0.0.1".parse().unwrap())));
/// assert_eq!(v6, None);
/// let (v4, _) = addresses(&serde_json::json!({"ipv4": "Router.example.NET"})).unwrap();
/// assert_eq!(v4, Some(Host::Name("router.example.net".into())));
/// assert!(addresses(&serde_json::json!({"ipv4": "::1"})).is_err());
/// ```
pub fn addresses(details: &Json) -> Result<(Option<Host>, Option<Host>), SettingsError> {
    let field = |name: &str| {
        details
            .get(name)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
    };
    let host = |name: &'static str, v6: bool, expected: &'static str| {
        field(name.trim_start_matches("details."))
            .map(|v| {
                let s = v.as_str().map(str::trim).unwrap_or_default();
                match s.parse::<IpAddr>() {
                    Ok(ip) if ip.is_ipv6() == v6 => Some(Host::Ip(ip)),
                    Ok(_) => None,
                    Err(_) if crate::resolve::is_host_name(s) => {
                        Some(Host::Name(s.trim_end_matches('.').to_ascii_lowercase()))
                    }
                    Err(_) => None,
                }
                .ok_or_else(|| invalid(name, v, expected))
            })
            .transpose()
    };
    let ipv4 = host(
        "details.ipv4",
        false,
        "an IPv4 address such as 192.0.2.1, or a host name",
    )?;
    let ipv6 = host(
        "details.ipv6",
        true,
        "an IPv6 address such as 2001:db8::1, or a host name",
    )?;
    if ipv4.is_none() && ipv6.is_none() {
        return Err(SettingsError::NoAddress);
    }
    Ok((ipv4, ipv6))
}

fn invalid(field: &'static str, value: &Json, expected: &'static str) -> SettingsError {
    SettingsError::Invalid {
        field,
        value: value.to_string(),
        expected,
    }
}

/// A yes/no, from a JSON boolean, `0`/`1`, or a string such as `"true"`.
fn flag(v: &Json) -> Option<bool> {
    match v {
        Json::Bool(b) => Some(*b),
        Json::Number(n) => match n.as_f64()? {
            0.0 => Some(false),
            1.0 => Some(true),
            _ => None,
        },
        Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A whole number >= 0, from a JSON number or a string.
fn whole(v: &Json) -> Option<u32> {
    match v {
        Json::String(s) => s.trim().parse().ok(),
        Json::Number(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

/// A finite number of seconds >= 0, from a JSON number or a string.
fn seconds(v: &Json) -> Option<Duration> {
    let secs = match v {
        Json::String(s) => s.trim().parse::<f64>().ok()?,
        Json::Number(n) => n.as_f64()?,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backend_strings_are_parsed() {
        let s = PingSettings::from_credential(
            &json!({"n_packets":"2","sleep_packets":"0.5","timeout":"1.0","retry":"0"}),
        )
        .unwrap();
        let expected = PingSettings {
            n_packets: 2,
            timeout: Duration::from_secs(1),
            retry: 0,
            sleep_packets: Duration::from_millis(500),
            stats: false,
            packet: PacketOptions::default(),
        };
        assert_eq!(s, expected);
    }

    #[test]
    fn numbers_are_parsed() {
        let s = PingSettings::from_credential(
            &json!({"n_packets":5,"sleep_packets":0,"timeout":0.6,"retry":2.0}),
        )
        .unwrap();
        let expected = PingSettings {
            n_packets: 5,
            timeout: Duration::from_millis(600),
            retry: 2,
            sleep_packets: Duration::ZERO,
            stats: false,
            packet: PacketOptions::default(),
        };
        assert_eq!(s, expected);
    }

    #[test]
    fn retries_may_be_as_close_as_a_tenth_of_a_second() {
        let s = PingSettings::from_credential(&json!({"timeout": "1.0", "retry": "9"})).unwrap();
        assert_eq!((s.timeout, s.retry), (Duration::from_secs(1), 9));
        let s = PingSettings::from_credential(&json!({"timeout": 0.1})).unwrap();
        assert_eq!(s.timeout, Duration::from_millis(100));
    }

    #[test]
    fn packet_options_are_read() {
        let s = PingSettings::from_credential(&json!({
            "payload_size": "1472", "ttl": 3, "dont_fragment": "true", "source": " 127.0.0.1 "
        }))
        .unwrap();
        let expected = PacketOptions {
            payload: 1472,
            ttl: Some(3),
            dont_fragment: true,
            source: Some("127.0.0.1".parse().unwrap()),
        };
        assert_eq!(s.packet, expected);
        let s = PingSettings::from_credential(
            &json!({"payload_size": 9000, "ttl": "255", "source": ""}),
        )
        .unwrap();
        assert_eq!(
            (s.packet.payload, s.packet.ttl, s.packet.source),
            (9000, Some(255), None)
        );
        assert_eq!(
            PingSettings::from_credential(&json!({})).unwrap().packet,
            PacketOptions::default()
        );
    }

    #[test]
    fn stats_is_a_flag() {
        for (v, expected) in [
            (json!(true), true),
            (json!("true"), true),
            (json!("1"), true),
            (json!(1), true),
            (json!(false), false),
            (json!("False"), false),
            (json!(0), false),
            (json!(null), false),
        ] {
            let s = PingSettings::from_credential(&json!({ "stats": v })).unwrap();
            assert_eq!(s.stats, expected, "{v}");
        }
    }

    #[test]
    fn the_ends_of_each_range_are_accepted() {
        let s = PingSettings::from_credential(
            &json!({"n_packets": 100, "retry": 100, "timeout": 60, "sleep_packets": 60}),
        )
        .unwrap();
        assert_eq!((s.n_packets, s.retry), (100, 100));
        assert_eq!(
            (s.timeout, s.sleep_packets),
            (MAX_TIMEOUT, MAX_SLEEP_PACKETS)
        );
        let s =
            PingSettings::from_credential(&json!({"n_packets": 1, "sleep_packets": 0})).unwrap();
        assert_eq!((s.n_packets, s.sleep_packets), (1, Duration::ZERO));
        assert_eq!(s.worst_case(), Duration::from_secs(2));
        assert_eq!(PingSettings::default().worst_case(), Duration::from_secs(8));
    }

    #[test]
    fn missing_and_null_fields_take_python_defaults() {
        let expected = PingSettings {
            n_packets: 3,
            timeout: Duration::from_secs(2),
            retry: 0,
            sleep_packets: Duration::from_secs(1),
            stats: false,
            packet: PacketOptions::default(),
        };
        assert_eq!(PingSettings::from_credential(&json!({})).unwrap(), expected);
        assert_eq!(
            PingSettings::from_credential(&Json::Null).unwrap(),
            expected
        );
        assert_eq!(
            PingSettings::from_credential(&json!({"timeout": null})).unwrap(),
            expected
        );
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            (json!({"n_packets": "0"}), "credential.n_packets"),
            (json!({"n_packets": "three"}), "credential.n_packets"),
            (json!({"n_packets": 2.5}), "credential.n_packets"),
            (json!({"n_packets": -1}), "credential.n_packets"),
            (json!({"retry": "-1"}), "credential.retry"),
            (json!({"timeout": "0"}), "credential.timeout"),
            (json!({"timeout": "0.05"}), "credential.timeout"),
            (json!({"timeout": "1.0", "retry": "10"}), "credential.retry"),
            (json!({"retry": 4_000_000_000u32}), "credential.retry"),
            (json!({"timeout": "-1.0"}), "credential.timeout"),
            (json!({"timeout": "NaN"}), "credential.timeout"),
            (json!({"timeout": "1e400"}), "credential.timeout"),
            (json!({"timeout": true}), "credential.timeout"),
            (json!({"sleep_packets": "-0.5"}), "credential.sleep_packets"),
            (json!({"n_packets": 1e9}), "credential.n_packets"),
            (json!({"n_packets": "101"}), "credential.n_packets"),
            (json!({"retry": 101}), "credential.retry"),
            (json!({"timeout": 60.001}), "credential.timeout"),
            (json!({"sleep_packets": "61"}), "credential.sleep_packets"),
            (json!({"stats": "maybe"}), "credential.stats"),
            (json!({"stats": 2}), "credential.stats"),
            (json!({"payload_size": 15}), "credential.payload_size"),
            (json!({"payload_size": "9001"}), "credential.payload_size"),
            (json!({"payload_size": 70000}), "credential.payload_size"),
            (json!({"ttl": 0}), "credential.ttl"),
            (json!({"ttl": "256"}), "credential.ttl"),
            (
                json!({"dont_fragment": "sometimes"}),
                "credential.dont_fragment",
            ),
            (json!({"source": "eth0"}), "credential.source"),
            (json!({"source": 10}), "credential.source"),
            (json!("n_packets=2"), "credential"),
        ];
        for (details, field) in cases {
            match PingSettings::from_credential(&details) {
                Err(SettingsError::Invalid { field: f, .. }) => assert_eq!(f, field, "{details}"),
                other => panic!("{details}: expected an error for {field}, got {other:?}"),
            }
        }
        let err = PingSettings::from_credential(&json!({"timeout": "soon"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "credential.timeout is \"soon\", but it must be a number of seconds from 0.1 to 60"
        );
    }

    #[test]
    fn addresses_are_read_from_details() {
        let ip = |s: &str| Some(Host::Ip(s.parse().unwrap()));
        let both = addresses(&json!({"ipv4": "192.0.2.1", "ipv6": "2001:db8::1"})).unwrap();
        assert_eq!(both, (ip("192.0.2.1"), ip("2001:db8::1")));
        let v6_only = addresses(&json!({"ipv4": "", "ipv6": "::1"})).unwrap();
        assert_eq!(v6_only, (None, ip("::1")));
        let names = addresses(&json!({"ipv4": " Host.Example. ", "ipv6": "host6"})).unwrap();
        assert_eq!(
            names,
            (
                Some(Host::Name("host.example".into())),
                Some(Host::Name("host6".into()))
            )
        );
        assert_eq!(addresses(&json!({})), Err(SettingsError::NoAddress));
        assert_eq!(
            addresses(&json!({"ipv4": null})),
            Err(SettingsError::NoAddress)
        );
        for (details, field) in [
            (json!({"ipv4": "::1"}), "details.ipv4"),
            (json!({"ipv4": 127}), "details.ipv4"),
            (json!({"ipv4": "127.1"}), "details.ipv4"),
            (json!({"ipv4": "10.0.0.256"}), "details.ipv4"),
            (json!({"ipv4": "a b"}), "details.ipv4"),
            (
                json!({"ipv4": "127.0.0.1", "ipv6": "127.0.0.1"}),
                "details.ipv6",
            ),
        ] {
            match addresses(&details) {
                Err(SettingsError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{details}: {other:?}"),
            }
        }
    }
}
