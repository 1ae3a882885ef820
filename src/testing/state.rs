//! The fake backend's database: records, grants, the permission rule, and
//! the fixture data set.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value as Json, json};

use super::model::{
    Account, Bot, Credential, Entity, Permission, ProtocolConfig, RecordedRequest, Sensor,
    SensorRef, StoredValue,
};

/// Everything the fake stores. Guarded by one mutex in [`super::Shared`].
#[derive(Default)]
pub(crate) struct State {
    pub accounts: BTreeMap<u64, Account>,
    pub bots: BTreeMap<u64, Bot>,
    pub permissions: BTreeMap<u64, Permission>,
    pub entities: BTreeMap<u64, Entity>,
    pub credentials: BTreeMap<u64, Credential>,
    pub sensors: BTreeMap<u64, Sensor>,
    pub values: Vec<StoredValue>,
    /// `(account, path, t bits)` → index in `values`, for the ON CONFLICT update.
    pub value_index: HashMap<(u64, String, u64), usize>,
    pub requests: Vec<RecordedRequest>,
    pub db_migration_needed: bool,
    pub user_exists: bool,
}

impl State {
    pub fn empty() -> Self {
        Self {
            user_exists: true,
            ..Self::default()
        }
    }

    /// The bot whose token this is (case-insensitive, as PostgreSQL compares UUIDs).
    pub fn bot_by_token(&self, token: &str) -> Option<&Bot> {
        self.bots
            .values()
            .find(|b| b.token.eq_ignore_ascii_case(token))
    }

    pub fn permissions_of(&self, user_id: u64) -> Vec<&Permission> {
        let mut list: Vec<_> = self
            .permissions
            .values()
            .filter(|p| p.user_id == user_id)
            .collect();
        list.sort_by(|a, b| {
            a.resource_prefix
                .cmp(&b.resource_prefix)
                .then(a.id.cmp(&b.id))
        });
        list
    }

    /// Whether `user_id` may use `method` on `resource` (the path after `/api/`).
    pub fn allowed(&self, user_id: u64, method: &str, resource: &str) -> bool {
        self.permissions
            .values()
            .filter(|p| p.user_id == user_id)
            .any(|p| {
                permits(
                    p.resource_prefix.as_deref(),
                    p.methods.as_deref(),
                    method,
                    resource,
                )
            })
    }

    /// Accounts named in the user's grants (all of them for a `None` prefix), sorted by name.
    pub fn accounts_of(&self, user_id: u64) -> Vec<&Account> {
        let mut list: Vec<&Account> = Vec::new();
        for p in self.permissions.values().filter(|p| p.user_id == user_id) {
            let ids: Vec<u64> = match p.resource_prefix.as_deref() {
                None => self.accounts.keys().copied().collect(),
                Some(prefix) => account_in_prefix(prefix).into_iter().collect(),
            };
            for id in ids {
                if let Some(a) = self.accounts.get(&id) {
                    if !list.iter().any(|x| x.id == id) {
                        list.push(a);
                    }
                }
            }
        }
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        list
    }

    /// Stores a value; one with the same account, path and `t` is replaced, as
    /// the backend's `INSERT … ON CONFLICT (path, ts) DO UPDATE` does.
    pub fn store(&mut self, v: StoredValue) {
        let key = (v.account_id, v.path.clone(), v.t.to_bits());
        match self.value_index.get(&key) {
            Some(&i) => self.values[i] = v,
            None => {
                self.value_index.insert(key, self.values.len());
                self.values.push(v);
            }
        }
    }

    pub fn clear_values(&mut self) {
        self.values.clear();
        self.value_index.clear();
    }

    pub fn remove_account(&mut self, id: u64) -> bool {
        self.entities.retain(|_, e| e.account_id != id);
        self.credentials.retain(|_, c| c.account_id != id);
        self.sensors.retain(|_, s| s.account_id != id);
        self.accounts.remove(&id).is_some()
    }
}

/// The backend's rule: the prefix is null, equal to the resource, or the resource
/// starts with the prefix and a `/`; the methods are null or include the method.
pub(crate) fn permits(
    prefix: Option<&str>,
    methods: Option<&[String]>,
    method: &str,
    resource: &str,
) -> bool {
    let prefix_ok = match prefix {
        None => true,
        Some(p) => {
            resource == p || (resource.starts_with(p) && resource[p.len()..].starts_with('/'))
        }
    };
    let method_ok = methods.is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)));
    prefix_ok && method_ok
}

/// `accounts/123/...` → 123.
fn account_in_prefix(prefix: &str) -> Option<u64> {
    let mut parts = prefix.split('/');
    if parts.next() != Some("accounts") {
        return None;
    }
    parts.next()?.parse().ok()
}

pub(crate) fn account_json(a: &Account) -> Json {
    json!({ "id": a.id, "name": a.name })
}

pub(crate) fn profile_json(b: &Bot) -> Json {
    json!({
        "user_id": b.id,
        "user_type": "bot",
        "record": {
            "id": b.id,
            "name": b.name,
            "protocol": b.protocol,
            "tied_to_account": b.tied_to_account,
            "config": b.config,
            "insert_time": b.insert_time,
            "last_login": b.last_login,
        },
    })
}

pub(crate) fn permission_json(p: &Permission) -> Json {
    json!({ "id": p.id, "resource_prefix": p.resource_prefix, "methods": p.methods })
}

pub(crate) fn entity_json(e: &Entity) -> Json {
    let protocols: serde_json::Map<String, Json> = e
        .protocols
        .iter()
        .map(|(name, p)| {
            let sensors: Vec<Json> = p
                .sensors
                .iter()
                .map(|s| json!({ "sensor": s.sensor, "interval": s.interval }))
                .collect();
            (
                name.clone(),
                json!({ "credential": p.credential, "sensors": sensors, "bot": p.bot }),
            )
        })
        .collect();
    json!({
        "id": e.id,
        "name": e.name,
        "entity_type": e.entity_type,
        "parent": e.parent,
        "details": e.details,
        "protocols": protocols,
    })
}

pub(crate) fn credential_json(c: &Credential) -> Json {
    json!({ "id": c.id, "name": c.name, "protocol": c.protocol, "details": c.details })
}

pub(crate) fn sensor_json(s: &Sensor) -> Json {
    json!({
        "id": s.id,
        "name": s.name,
        "protocol": s.protocol,
        "default_interval": s.default_interval,
        "details": s.details,
    })
}

/// The id of the fixture account.
pub const ACCOUNT_ID: u64 = 667410879;
/// The user id of the fixture's main ping bot.
pub const BOT_ID: u64 = 550860747;
/// The user id of the fixture's second ping bot, which may only POST values.
pub const OTHER_BOT_ID: u64 = 1814513792;
/// The user id of the fixture's SNMP bot, which has no permissions.
pub const SNMP_BOT_ID: u64 = 1951286123;
/// The fixture's ping credential.
pub const CREDENTIAL_ID: u64 = 884419450;
/// The fixture's ping sensor (`default_interval` 10).
pub const SENSOR_ID: u64 = 1583109100;
/// The entity the main ping bot picks up.
pub const ENTITY_ID: u64 = 1127398355;
/// The token of the main ping bot (`<BOT_TOKEN>` in the fixtures).
pub const BOT_TOKEN: &str = "3f6c1a52-8d4e-4b7a-9e21-5c0d7f8a9b13";
/// The token of the POST-only bot (`<OTHER_BOT_TOKEN>`).
pub const OTHER_BOT_TOKEN: &str = "a7e2c9d4-1b3f-4e5a-8c6d-0f9e8d7c6b5a";
/// The token of the bot without permissions (`<SNMP_BOT_TOKEN>`).
pub const SNMP_BOT_TOKEN: &str = "c4d8e1f2-6a7b-4c9d-b0e1-2f3a4b5c6d7e";

/// Loads exactly the data set the fixtures were recorded against.
pub(crate) fn load_fixture_data(s: &mut State) {
    let a = ACCOUNT_ID;
    s.accounts.insert(
        a,
        Account {
            id: a,
            name: "Rust SDK test account".into(),
        },
    );
    let bot = |id, name: &str, token: &str, protocol: &str, last_login| Bot {
        id,
        name: name.into(),
        token: token.into(),
        protocol: Some(protocol.into()),
        tied_to_account: Some(a),
        config: None,
        insert_time: 1795311109,
        last_login: Some(last_login),
    };
    for b in [
        bot(BOT_ID, "Rust SDK ping bot", BOT_TOKEN, "ping", 1795311111),
        bot(
            OTHER_BOT_ID,
            "Other ping bot (POST only)",
            OTHER_BOT_TOKEN,
            "ping",
            1795311111,
        ),
        bot(
            SNMP_BOT_ID,
            "SNMP bot (never run)",
            SNMP_BOT_TOKEN,
            "snmp",
            1795311210,
        ),
    ] {
        s.bots.insert(b.id, b);
    }
    let perm = |id, user_id, what: &str, methods: &[&str]| Permission {
        id,
        user_id,
        resource_prefix: Some(format!("accounts/{a}/{what}")),
        methods: Some(methods.iter().map(|m| m.to_string()).collect()),
    };
    for p in [
        perm(584842597, BOT_ID, "credentials", &["GET"]),
        perm(665477159, BOT_ID, "entities", &["GET"]),
        perm(2112949097, BOT_ID, "sensors", &["GET"]),
        perm(1636411200, BOT_ID, "values", &["POST", "PUT"]),
        perm(1290345167, OTHER_BOT_ID, "values", &["POST"]),
    ] {
        s.permissions.insert(p.id, p);
    }
    let cred = |id, name: &str, protocol: &str, details: Json| Credential {
        id,
        account_id: a,
        name: name.into(),
        protocol: protocol.into(),
        details,
    };
    for c in [
        cred(
            731416007,
            "Default SNMP credential (SNMPv2c, 'public')",
            "snmp",
            json!({"version": "snmpv2c", "snmpv12_community": "public"}),
        ),
        cred(
            CREDENTIAL_ID,
            "Ping credential (2 packets)",
            "ping",
            json!({"n_packets": "2", "sleep_packets": "0.5", "timeout": "1.0", "retry": "0"}),
        ),
        cred(
            1218288228,
            "Default ICMP ping credential (3 packets)",
            "ping",
            json!({"n_packets": "3", "sleep_packets": "1.0", "timeout": "1.0", "retry": "0"}),
        ),
        cred(
            1792417484,
            "Default NetFlow credential",
            "netflow",
            json!({}),
        ),
    ] {
        s.credentials.insert(c.id, c);
    }
    let snmp = |oid2: &str, expression: &str, output_path: &str| {
        json!({
            "oids": [
                {"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
                {"oid": oid2, "fetch_method": "walk"},
            ],
            "expression": expression,
            "output_path": output_path,
        })
    };
    let sensor = |id, name: &str, protocol: &str, default_interval, details| Sensor {
        id,
        account_id: a,
        name: name.into(),
        protocol: protocol.into(),
        default_interval,
        details,
    };
    let lmsensors = json!({
        "oids": [
            {"oid": "1.3.6.1.4.1.2021.13.16.2.1.2", "fetch_method": "walk"},
            {"oid": "1.3.6.1.4.1.2021.13.16.2.1.3", "fetch_method": "walk"},
        ],
        "expression": "$2 / 1000.0",
        "output_path": "lmsensors.temp.{$index}.{$1}",
    });
    for x in [
        sensor(
            426721868,
            "Default NetFlow sensor",
            "netflow",
            None,
            json!({}),
        ),
        sensor(
            616902474,
            "Linux lmsensors - temperature [°C]",
            "snmp",
            Some(60),
            lmsensors,
        ),
        sensor(
            713411640,
            "Traffic IN [bps]",
            "snmp",
            Some(60),
            snmp("1.3.6.1.2.1.2.2.1.10", "$2", "if.in-octets.{$index}.{$1}"),
        ),
        sensor(
            790981265,
            "Default ICMP ping sensor",
            "ping",
            Some(60),
            json!({}),
        ),
        sensor(
            1428776592,
            "Traffic OUT [bps]",
            "snmp",
            Some(60),
            snmp("1.3.6.1.2.1.2.2.1.16", "$2", "if.out-octets.{$index}.{$1}"),
        ),
        sensor(SENSOR_ID, "Ping every 10s", "ping", Some(10), json!({})),
    ] {
        s.sensors.insert(x.id, x);
    }
    let ping = |interval, bot| ProtocolConfig {
        credential: CREDENTIAL_ID,
        sensors: vec![SensorRef {
            sensor: SENSOR_ID,
            interval,
        }],
        bot: Some(bot),
    };
    let entity =
        |id, name: &str, ty: &str, parent, ip: &str, protocols: Vec<(&str, ProtocolConfig)>| {
            Entity {
                id,
                account_id: a,
                name: name.into(),
                entity_type: ty.into(),
                parent,
                details: json!({ "ipv4": ip }),
                protocols: protocols
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            }
        };
    let no_sensors = ProtocolConfig {
        credential: CREDENTIAL_ID,
        sensors: vec![],
        bot: Some(BOT_ID),
    };
    let snmp_only = ProtocolConfig {
        credential: 731416007,
        sensors: vec![SensorRef {
            sensor: 616902474,
            interval: None,
        }],
        bot: Some(SNMP_BOT_ID),
    };
    for e in [
        entity(
            341329854,
            "lo interface (not a device)",
            "interface",
            Some(ENTITY_ID),
            "127.0.0.6",
            vec![("ping", ping(None, BOT_ID))],
        ),
        entity(
            935894165,
            "ping device assigned to other bot",
            "device",
            None,
            "127.0.0.4",
            vec![("ping", ping(Some(10), OTHER_BOT_ID))],
        ),
        entity(
            ENTITY_ID,
            "localhost (ping, our bot)",
            "device",
            None,
            "127.0.0.1",
            vec![("ping", ping(None, BOT_ID))],
        ),
        entity(
            1243554899,
            "device without protocols",
            "device",
            None,
            "127.0.0.3",
            vec![],
        ),
        entity(
            1480629348,
            "snmp-only device",
            "device",
            None,
            "127.0.0.2",
            vec![("snmp", snmp_only)],
        ),
        entity(
            1857249822,
            "ping device without sensors",
            "device",
            None,
            "127.0.0.5",
            vec![("ping", no_sensors)],
        ),
    ] {
        s.entities.insert(e.id, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        let get = m(&["GET"]);
        let p = Some("accounts/1/entities");
        assert!(permits(p, Some(&get), "GET", "accounts/1/entities"));
        assert!(permits(p, Some(&get), "GET", "accounts/1/entities/5"));
        assert!(!permits(p, Some(&get), "GET", "accounts/1/entitiesx"));
        assert!(!permits(p, Some(&get), "GET", "accounts/1"));
        assert!(!permits(p, Some(&get), "GET", "accounts/12/entities"));
        assert!(!permits(p, Some(&get), "POST", "accounts/1/entities"));
    }

    #[test]
    fn null_prefix_and_null_methods_allow_everything() {
        assert!(permits(None, None, "DELETE", "accounts/9/values"));
        assert!(permits(None, Some(&m(&["PUT"])), "PUT", "anything"));
        assert!(!permits(None, Some(&m(&["PUT"])), "POST", "anything"));
        assert!(permits(
            Some("accounts/9"),
            None,
            "POST",
            "accounts/9/values"
        ));
    }

    #[test]
    fn fixture_bot_grants_behave_as_recorded() {
        let mut s = State::empty();
        load_fixture_data(&mut s);
        let a = ACCOUNT_ID;
        assert!(s.allowed(BOT_ID, "GET", &format!("accounts/{a}/entities/1")));
        assert!(s.allowed(BOT_ID, "PUT", &format!("accounts/{a}/values")));
        assert!(!s.allowed(BOT_ID, "GET", &format!("accounts/{a}")));
        assert!(!s.allowed(BOT_ID, "GET", &format!("accounts/{a}/values/x.y")));
        assert!(!s.allowed(BOT_ID, "GET", "accounts/999999999/entities"));
        assert!(s.allowed(OTHER_BOT_ID, "POST", &format!("accounts/{a}/values")));
        assert!(!s.allowed(OTHER_BOT_ID, "PUT", &format!("accounts/{a}/values")));
        assert!(!s.allowed(SNMP_BOT_ID, "GET", &format!("accounts/{a}/entities")));
        assert_eq!(s.accounts_of(BOT_ID).len(), 1);
        assert!(s.accounts_of(SNMP_BOT_ID).is_empty());
    }
}
