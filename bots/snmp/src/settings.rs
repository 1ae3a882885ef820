//! Turning one entity's config into what an SNMP job needs: the agent's
//! address and the credential, with the Python bot's fields and defaults.
//!
//! The credential fields are Grafolean's (`version`, `snmpv12_community`,
//! `snmpv3_*`). The bot also reads a few optional fields the Grafolean UI
//! does not offer (`timeout`, `retries`, `max_repetitions`, `budget`), each
//! bounded; a value out of range skips the entity with an error that names
//! the field. The backend sends numbers as strings; both are accepted.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::Value as Json;

/// The default SNMP port.
pub const DEFAULT_PORT: u16 = 161;

/// Why an entity's config cannot be used. The entity is skipped; the others
/// go on. (The caller says where to fix it: Grafolean, or a file's line.)
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A field has a value that cannot be used.
    #[error("{field} is {value}, but it must be {expected}")]
    Invalid {
        /// The field, such as `credential.timeout` or `details.ipv4`.
        field: String,
        /// The value that was found, as JSON.
        value: String,
        /// What the value should be.
        expected: String,
    },
    /// A required field is missing.
    #[error("{field} is missing")]
    Missing {
        /// The field.
        field: String,
    },
    /// The sensor's expression cannot be used.
    #[error("{0}")]
    Expression(#[from] crate::expr::ExprError),
}

/// How to authenticate with SNMPv3.
#[derive(Clone, PartialEq, Eq)]
pub enum V3Security {
    /// `noAuthNoPriv`.
    NoAuthNoPriv,
    /// `authNoPriv`: an authentication protocol and passphrase.
    AuthNoPriv {
        /// `MD5`, `SHA`, `SHA-224`, `SHA-256`, `SHA-384` or `SHA-512`.
        auth: AuthProto,
        /// The passphrase (at least 8 characters).
        auth_key: String,
    },
    /// `authPriv`: authentication and privacy.
    AuthPriv {
        /// The authentication protocol.
        auth: AuthProto,
        /// Its passphrase.
        auth_key: String,
        /// `DES`, `AES` (AES-128), `AES-192` or `AES-256`.
        privacy: PrivProto,
        /// Its passphrase (at least 8 characters).
        priv_key: String,
    },
}

impl std::fmt::Debug for V3Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys.
        match self {
            Self::NoAuthNoPriv => f.write_str("noAuthNoPriv"),
            Self::AuthNoPriv { auth, .. } => write!(f, "authNoPriv({auth:?})"),
            Self::AuthPriv { auth, privacy, .. } => write!(f, "authPriv({auth:?}, {privacy:?})"),
        }
    }
}

/// An SNMPv3 authentication protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum AuthProto {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// An SNMPv3 privacy protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum PrivProto {
    Des,
    Aes128,
    Aes192,
    Aes256,
}

/// The longest community string taken (net-snmp's limit).
pub const MAX_COMMUNITY: usize = 256;

/// The SNMP version and its secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum SnmpAuth {
    /// SNMPv1 with a community.
    V1 {
        /// The community.
        community: String,
    },
    /// SNMPv2c with a community.
    V2c {
        /// The community.
        community: String,
    },
    /// SNMPv3 USM.
    V3 {
        /// `snmpv3_securityName`.
        user: String,
        /// The security level with its protocols and keys.
        security: V3Security,
    },
}

impl std::fmt::Debug for SnmpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print communities or keys.
        match self {
            Self::V1 { .. } => f.write_str("V1"),
            Self::V2c { .. } => f.write_str("V2c"),
            Self::V3 { user, security } => write!(f, "V3({user}, {security:?})"),
        }
    }
}

/// How an entity is polled, from its credential's `details`.
///
/// ```
/// use grafolean_snmp_bot::SnmpSettings;
/// use std::time::Duration;
/// let s = SnmpSettings::from_credential(&serde_json::json!({
///     "version": "snmpv2c", "snmpv12_community": "public", "timeout": "2"
/// })).unwrap();
/// assert_eq!(s.timeout, Duration::from_secs(2));
/// assert_eq!(s.retries, 2);
/// assert!(SnmpSettings::from_credential(&serde_json::json!({"version": "snmpv2c", "retries": 99})).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnmpSettings {
    /// The version and its secrets.
    pub auth: SnmpAuth,
    /// How long to wait for each answer (`timeout`, seconds, 0.1-60,
    /// default 1, as easysnmp's).
    pub timeout: Duration,
    /// Resends of an unanswered request (`retries`, 0-10, default 2).
    pub retries: u32,
    /// The largest GETBULK max-repetitions (`max_repetitions`, 1-100,
    /// default 50): used for a column's first walk, and the cap of the
    /// learned value (last row count + 1).
    pub max_repetitions: u32,
    /// The most time one firing may spend on this device (`budget`,
    /// seconds, 1-300, default 10). Sensors not done by then are given up
    /// for this firing; the others' values are kept.
    pub budget: Duration,
    /// Walk with GETNEXT even on v2c and v3 (`walk_with: "getnext"`; the
    /// default `"getbulk"` falls back to GETNEXT by itself when GETBULK
    /// gets no usable answer). v1 always walks with GETNEXT.
    pub getnext: bool,
    /// The most requests of one firing in flight to this device at once
    /// (`max_requests_in_flight`, 1-64, default 8: Grafolean's default
    /// sensors make 5, and more wait for a slot): small agents drop bursts.
    pub in_flight: u32,
}

const TIMEOUT: RangeInclusive<f64> = 0.1..=60.0;
const RETRIES: RangeInclusive<u32> = 0..=10;
const MAX_REPETITIONS: RangeInclusive<u32> = 1..=100;
const BUDGET: RangeInclusive<f64> = 1.0..=300.0;
const IN_FLIGHT: RangeInclusive<u32> = 1..=64;

impl SnmpSettings {
    /// Reads the settings from a credential's `details`.
    pub fn from_credential(details: &Json) -> Result<Self, SettingsError> {
        let fields = match details {
            Json::Object(fields) => fields,
            other => return Err(invalid("credential", other, "an object")),
        };
        let get = |name: &str| fields.get(name).filter(|v| !v.is_null());
        let text = |name: &str| -> Result<Option<String>, SettingsError> {
            match get(name) {
                None => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(invalid(&format!("credential.{name}"), other, "a string")),
            }
        };
        let version = text("version")?.ok_or_else(|| SettingsError::Missing {
            field: "credential.version".into(),
        })?;
        let community = || {
            let c = text("snmpv12_community")?.unwrap_or_default();
            if c.len() > MAX_COMMUNITY {
                return Err(SettingsError::Invalid {
                    field: "credential.snmpv12_community".into(),
                    value: format!("({} bytes)", c.len()),
                    expected: format!("at most {MAX_COMMUNITY} bytes (net-snmp's limit)"),
                });
            }
            Ok(c)
        };
        let auth = match version.as_str() {
            "snmpv1" => SnmpAuth::V1 {
                community: community()?,
            },
            "snmpv2c" => SnmpAuth::V2c {
                community: community()?,
            },
            "snmpv3" => {
                let user = text("snmpv3_securityName")?.ok_or_else(|| SettingsError::Missing {
                    field: "credential.snmpv3_securityName".into(),
                })?;
                let level = text("snmpv3_securityLevel")?.unwrap_or_else(|| "noAuthNoPriv".into());
                let key = |name: &str| -> Result<String, SettingsError> {
                    let field = format!("credential.{name}");
                    let key = text(name)?.ok_or_else(|| SettingsError::Missing {
                        field: field.clone(),
                    })?;
                    if key.len() < 8 {
                        return Err(SettingsError::Invalid {
                            field,
                            value: "(hidden)".into(),
                            expected: "a passphrase of at least 8 characters".into(),
                        });
                    }
                    Ok(key)
                };
                let auth_proto = || -> Result<AuthProto, SettingsError> {
                    match text("snmpv3_authProtocol")? {
                        None => Ok(AuthProto::Md5),
                        Some(p) => parse_auth(&p).ok_or_else(|| {
                            invalid(
                                "credential.snmpv3_authProtocol",
                                &Json::String(p),
                                "MD5, SHA, SHA-224, SHA-256, SHA-384 or SHA-512",
                            )
                        }),
                    }
                };
                let security = match level.as_str() {
                    "noAuthNoPriv" => V3Security::NoAuthNoPriv,
                    "authNoPriv" => V3Security::AuthNoPriv {
                        auth: auth_proto()?,
                        auth_key: key("snmpv3_authKey")?,
                    },
                    "authPriv" => V3Security::AuthPriv {
                        auth: auth_proto()?,
                        auth_key: key("snmpv3_authKey")?,
                        privacy: match text("snmpv3_privProtocol")? {
                            None => PrivProto::Des,
                            Some(p) => parse_priv(&p).ok_or_else(|| {
                                invalid(
                                    "credential.snmpv3_privProtocol",
                                    &Json::String(p),
                                    "DES, AES, AES-192 or AES-256",
                                )
                            })?,
                        },
                        priv_key: key("snmpv3_privKey")?,
                    },
                    other => {
                        return Err(invalid(
                            "credential.snmpv3_securityLevel",
                            &Json::String(other.into()),
                            "noAuthNoPriv, authNoPriv or authPriv",
                        ));
                    }
                };
                SnmpAuth::V3 { user, security }
            }
            other => {
                return Err(invalid(
                    "credential.version",
                    &Json::String(other.into()),
                    "snmpv1, snmpv2c or snmpv3",
                ));
            }
        };
        let timeout = match get("timeout") {
            None => Duration::from_secs(1),
            Some(v) => seconds(v, TIMEOUT)
                .ok_or_else(|| invalid("credential.timeout", v, "a number of seconds, 0.1-60"))?,
        };
        let retries = bounded(get("retries"), "credential.retries", RETRIES, 2)?;
        let max_repetitions = bounded(
            get("max_repetitions"),
            "credential.max_repetitions",
            MAX_REPETITIONS,
            50,
        )?;
        let budget = match get("budget") {
            None => Duration::from_secs(10),
            Some(v) => seconds(v, BUDGET)
                .ok_or_else(|| invalid("credential.budget", v, "a number of seconds, 1-300"))?,
        };
        let getnext = match text("walk_with")?.as_deref() {
            None | Some("getbulk") => false,
            Some("getnext") => true,
            Some(other) => {
                return Err(invalid(
                    "credential.walk_with",
                    &Json::String(other.into()),
                    "getbulk or getnext",
                ));
            }
        };
        let in_flight = bounded(
            get("max_requests_in_flight"),
            "credential.max_requests_in_flight",
            IN_FLIGHT,
            8,
        )?;
        Ok(Self {
            auth,
            timeout,
            retries,
            max_repetitions,
            budget,
            getnext,
            in_flight,
        })
    }
}

fn parse_auth(p: &str) -> Option<AuthProto> {
    Some(match p.to_ascii_uppercase().replace('_', "-").as_str() {
        "MD5" | "DEFAULT" => AuthProto::Md5,
        "SHA" | "SHA1" | "SHA-1" => AuthProto::Sha1,
        "SHA-224" | "SHA224" => AuthProto::Sha224,
        "SHA-256" | "SHA256" => AuthProto::Sha256,
        "SHA-384" | "SHA384" => AuthProto::Sha384,
        "SHA-512" | "SHA512" => AuthProto::Sha512,
        _ => return None,
    })
}

fn parse_priv(p: &str) -> Option<PrivProto> {
    Some(match p.to_ascii_uppercase().replace('_', "-").as_str() {
        "DES" | "DEFAULT" => PrivProto::Des,
        "AES" | "AES128" | "AES-128" => PrivProto::Aes128,
        "AES192" | "AES-192" => PrivProto::Aes192,
        "AES256" | "AES-256" => PrivProto::Aes256,
        _ => return None,
    })
}

/// Where an entity's agent is, from `details.ipv4`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AgentAddress {
    /// An IPv4 address and port.
    Addr(SocketAddr),
    /// A host name and port: the name is looked up (its A record) through
    /// the SDK's shared resolver, and again as its answer ages (see
    /// [`grafolean_collector::resolve`]).
    Name(String, u16),
}

impl std::fmt::Display for AgentAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Addr(a) => a.fmt(f),
            Self::Name(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// Reads `details.ipv4`: an IPv4 address or a host name (as net-snmp
/// resolved them for the Python bot), with an optional `:port` (as easysnmp
/// accepted), default port 161.
///
/// ```
/// use grafolean_snmp_bot::settings::{AgentAddress, agent_address};
/// let a = agent_address(&serde_json::json!({"ipv4": "127.0.0.1:16161"})).unwrap();
/// assert_eq!(a.to_string(), "127.0.0.1:16161");
/// let a = agent_address(&serde_json::json!({"ipv4": "192.0.2.1"})).unwrap();
/// assert_eq!(a, AgentAddress::Addr("192.0.2.1:161".parse().unwrap()));
/// let a = agent_address(&serde_json::json!({"ipv4": "router.lan:1161"})).unwrap();
/// assert_eq!(a, AgentAddress::Name("router.lan".into(), 1161));
/// assert!(agent_address(&serde_json::json!({"ipv4": "not a host"})).is_err());
/// ```
pub fn agent_address(details: &Json) -> Result<AgentAddress, SettingsError> {
    let v = details
        .get("ipv4")
        .filter(|v| !v.is_null() && v.as_str() != Some(""))
        .ok_or_else(|| SettingsError::Missing {
            field: "details.ipv4".into(),
        })?;
    let s = v.as_str().map(str::trim).unwrap_or_default();
    let (host, port) = match s.split_once(':') {
        None => (s, Some(DEFAULT_PORT)),
        Some((host, port)) => (host, port.parse::<u16>().ok().filter(|&p| p != 0)),
    };
    let parsed = match (host.parse::<Ipv4Addr>(), port) {
        (Ok(ip), Some(port)) => Some(AgentAddress::Addr(SocketAddr::V4(SocketAddrV4::new(
            ip, port,
        )))),
        (Err(_), Some(port)) if grafolean_collector::resolve::is_host_name(host) => {
            Some(AgentAddress::Name(host.to_string(), port))
        }
        _ => None,
    };
    parsed.ok_or_else(|| {
        invalid(
            "details.ipv4",
            v,
            "an IPv4 address or a host name with an optional port, such as 192.0.2.1, 192.0.2.1:1161 or router.example.net",
        )
    })
}

pub(crate) fn invalid(field: &str, value: &Json, expected: &str) -> SettingsError {
    SettingsError::Invalid {
        field: field.into(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// A whole number in `range` (JSON number or string), or `default` if absent.
pub(crate) fn bounded(
    v: Option<&Json>,
    field: &str,
    range: RangeInclusive<u32>,
    default: u32,
) -> Result<u32, SettingsError> {
    let Some(v) = v else { return Ok(default) };
    let n = match v {
        Json::String(s) => s.trim().parse::<u64>().ok(),
        Json::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e12)
                .map(|f| f as u64)
        }),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok())
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            invalid(
                field,
                v,
                &format!("a whole number, {}-{}", range.start(), range.end()),
            )
        })
}

fn seconds(v: &Json, range: RangeInclusive<f64>) -> Option<Duration> {
    let secs = match v {
        Json::String(s) => s.trim().parse::<f64>().ok()?,
        Json::Number(n) => n.as_f64()?,
        _ => return None,
    };
    range.contains(&secs).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backend_default_credential() {
        let s = SnmpSettings::from_credential(
            &json!({"version": "snmpv2c", "snmpv12_community": "public"}),
        )
        .unwrap();
        assert_eq!(
            s.auth,
            SnmpAuth::V2c {
                community: "public".into()
            }
        );
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!((s.retries, s.max_repetitions), (2, 50));
    }

    #[test]
    fn v3_fields() {
        let s = SnmpSettings::from_credential(&json!({
            "version": "snmpv3", "snmpv3_securityName": "grafolean", "snmpv3_securityLevel": "authPriv",
            "snmpv3_authProtocol": "SHA", "snmpv3_authKey": "authpass123",
            "snmpv3_privProtocol": "AES", "snmpv3_privKey": "privpass123"
        }))
        .unwrap();
        match s.auth {
            SnmpAuth::V3 {
                user,
                security: V3Security::AuthPriv { auth, privacy, .. },
            } => {
                assert_eq!(user, "grafolean");
                assert_eq!((auth, privacy), (AuthProto::Sha1, PrivProto::Aes128));
            }
            other => panic!("{other:?}"),
        }
        // Missing protocols mean DEFAULT: MD5 and DES, as net-snmp's.
        let s = SnmpSettings::from_credential(&json!({
            "version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "authPriv",
            "snmpv3_authKey": "authpass123", "snmpv3_privKey": "privpass123"
        }))
        .unwrap();
        assert!(format!("{:?}", s.auth).contains("Md5, Des"));
        assert!(!format!("{:?}", s.auth).contains("pass123"));
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            (json!({}), "credential.version"),
            (json!({"version": "snmpv4"}), "credential.version"),
            (
                json!({"version": "snmpv2c", "timeout": "0"}),
                "credential.timeout",
            ),
            (
                json!({"version": "snmpv2c", "timeout": 61}),
                "credential.timeout",
            ),
            (
                json!({"version": "snmpv2c", "timeout": "NaN"}),
                "credential.timeout",
            ),
            (
                json!({"version": "snmpv2c", "retries": 11}),
                "credential.retries",
            ),
            (
                json!({"version": "snmpv2c", "snmpv12_community": "c".repeat(1 << 20)}),
                "credential.snmpv12_community",
            ),
            (
                json!({"version": "snmpv2c", "walk_with": "bulk"}),
                "credential.walk_with",
            ),
            (
                json!({"version": "snmpv2c", "max_requests_in_flight": 0}),
                "credential.max_requests_in_flight",
            ),
            (
                json!({"version": "snmpv2c", "max_requests_in_flight": 65}),
                "credential.max_requests_in_flight",
            ),
            (
                json!({"version": "snmpv2c", "retries": "-1"}),
                "credential.retries",
            ),
            (
                json!({"version": "snmpv2c", "max_repetitions": 0}),
                "credential.max_repetitions",
            ),
            (
                json!({"version": "snmpv2c", "max_repetitions": "101"}),
                "credential.max_repetitions",
            ),
            (
                json!({"version": "snmpv2c", "budget": 0.5}),
                "credential.budget",
            ),
            (
                json!({"version": "snmpv2c", "snmpv12_community": 5}),
                "credential.snmpv12_community",
            ),
            (
                json!({"version": "snmpv3"}),
                "credential.snmpv3_securityName",
            ),
            (
                json!({"version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "authNoPriv", "snmpv3_authKey": "short"}),
                "credential.snmpv3_authKey",
            ),
            (
                json!({"version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "authNoPriv", "snmpv3_authKey": "longenough", "snmpv3_authProtocol": "SHA3"}),
                "credential.snmpv3_authProtocol",
            ),
            (
                json!({"version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "high"}),
                "credential.snmpv3_securityLevel",
            ),
        ];
        for (details, field) in cases {
            match SnmpSettings::from_credential(&details) {
                Err(
                    SettingsError::Invalid { field: f, .. } | SettingsError::Missing { field: f },
                ) => {
                    assert_eq!(f, field, "{details}")
                }
                other => panic!("{details}: expected an error for {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn addresses_with_ports() {
        assert_eq!(
            agent_address(&json!({"ipv4": " 10.0.0.1:1161 "})).unwrap(),
            AgentAddress::Addr("10.0.0.1:1161".parse().unwrap())
        );
        assert_eq!(
            agent_address(&json!({"ipv4": "localhost"})).unwrap(),
            AgentAddress::Name("localhost".into(), 161)
        );
        for bad in [
            json!({}),
            json!({"ipv4": "10.0.0.1:0"}),
            json!({"ipv4": "10.0.0.1:x"}),
            json!({"ipv4": "::1"}),
            json!({"ipv4": "router:0"}),
            json!({"ipv4": "a b"}),
            json!({"ipv4": "10.0.0.256"}),
            json!({"ipv4": 5}),
        ] {
            assert!(agent_address(&bad).is_err(), "{bad}");
        }
    }
}
