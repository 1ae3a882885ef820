//! The fake backend's database: records and grants, the permission rule, and
//! the JSON shapes the backend answers with.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value as Json, json};

use super::model::{
    Account, Bot, Credential, Entity, Permission, RecordedRequest, Sensor, StoredValue,
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
    /// The entity list leaves out `protocols`, as an older backend's did.
    pub list_without_protocols: bool,
    /// How many stored values a later write replaced (same account, path, `t`).
    pub overwrites: u64,
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
            Some(&i) => {
                self.values[i] = v;
                self.overwrites += 1;
            }
            None => {
                self.value_index.insert(key, self.values.len());
                self.values.push(v);
            }
        }
    }

    pub fn clear_values(&mut self) {
        self.values.clear();
        self.value_index.clear();
        self.overwrites = 0;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture::*;

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
