//! The interfaces job: keeps one `interface` entity per row of the device's
//! ifTable in Grafolean, as the Python bot's `update_if_entities` does.
//!
//! Every 300 s it walks ifDescr and ifSpeed, lists the entity's child
//! interfaces, creates the new ones (`POST`), updates the changed ones
//! (`PUT`, without `parent`) and deletes the vanished ones (`DELETE`). Their
//! `details` are `{"snmp_index": "<index>", "speed_bps": "<speed>"}`, both
//! **strings**, as the Python bot writes them and Grafolean's frontend
//! matches them.
//!
//! Grafolean's UI grants a bot only GET on entities, so these writes are
//! often refused (403). That is said once per account, in one warning; the
//! account's interface jobs then do nothing until [`FORBIDDEN_RECHECK`] has
//! passed, when one of them asks again. The entity's values are collected by
//! its other job and flow regardless.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_snmp::{Oid, VarBind};
use grafolean_collector::BoxError;
use grafolean_collector::api::{ApiError, Client, EntityInput};
use serde_json::json;

use crate::agent::Agent;
use crate::job::InterfacesParams;

/// ifDescr.
pub const IF_DESCR: [u32; 10] = [1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
/// ifSpeed.
pub const IF_SPEED: [u32; 10] = [1, 3, 6, 1, 2, 1, 2, 2, 1, 5];

/// How long an account whose entity writes were refused is left alone.
pub const FORBIDDEN_RECHECK: Duration = Duration::from_secs(3600);

/// The accounts whose entity writes were refused, and until when.
#[derive(Debug)]
pub struct Forbidden {
    recheck: Duration,
    until: Mutex<HashMap<u64, Instant>>,
    said: Mutex<HashSet<u64>>,
}

impl Forbidden {
    /// Leaves a refused account alone for `recheck`.
    pub fn new(recheck: Duration) -> Self {
        Self {
            recheck,
            until: Mutex::default(),
            said: Mutex::default(),
        }
    }

    fn blocked(&self, account: u64) -> bool {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        match until.get(&account) {
            Some(t) if Instant::now() < *t => true,
            Some(_) => {
                // Time to ask again; let this one job through.
                until.insert(account, Instant::now() + self.recheck);
                false
            }
            None => false,
        }
    }

    fn refused(&self, account: u64, error: &ApiError) {
        self.until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(account, Instant::now() + self.recheck);
        if self
            .said
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(account)
        {
            tracing::warn!(
                account_id = account,
                %error,
                recheck_s = self.recheck.as_secs(),
                "cannot write interface entities (grant the bot POST/PUT/DELETE on accounts/{account}/entities to enable it); values are still sent; asking again later"
            );
        } else {
            tracing::debug!(account_id = account, %error, "interface entity writes still refused");
        }
    }

    fn allowed(&self, account: u64) {
        self.until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&account);
        if self
            .said
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&account)
        {
            tracing::info!(
                account_id = account,
                "interface entity writes are allowed now"
            );
        }
    }
}

/// The rows of a walk as (index, text).
fn rows(base: &Oid, rows: &[VarBind]) -> Vec<(String, String)> {
    rows.iter()
        .map(|vb| {
            let index = vb.oid.arcs()[base.len().min(vb.oid.len())..]
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".");
            let text = match &vb.value {
                async_snmp::Value::OctetString(b) => String::from_utf8_lossy(b).into_owned(),
                other => other
                    .as_u64()
                    .map_or_else(|| other.to_string(), |n| n.to_string()),
            };
            (index, text)
        })
        .collect()
}

/// One run of the interfaces job.
pub async fn update(
    api: &Client,
    agent: &Agent,
    p: &InterfacesParams,
    forbidden: &Forbidden,
) -> Result<(), BoxError> {
    if forbidden.blocked(p.account_id) {
        return Ok(());
    }
    let descr_oid = Oid::from_slice(&IF_DESCR);
    let speed_oid = Oid::from_slice(&IF_SPEED);
    let reps = p.settings.max_repetitions;
    agent.begin_firing();
    let (descr, speed) = tokio::join!(agent.walk(&descr_oid, reps), agent.walk(&speed_oid, reps));
    let descr = rows(&descr_oid, &descr?);
    let speed = rows(&speed_oid, &speed?);
    if descr.len() != speed.len() || descr.iter().zip(&speed).any(|(d, s)| d.0 != s.0) {
        return Err(format!(
            "ifDescr and ifSpeed of entity {} have different indexes; interfaces not updated",
            p.entity_id
        )
        .into());
    }
    let result = sync(api, p, &descr, &speed).await;
    match result {
        Err(e @ ApiError::Forbidden { .. }) => {
            forbidden.refused(p.account_id, &e);
            Ok(())
        }
        Err(e) => Err(e.into()),
        Ok(()) => {
            forbidden.allowed(p.account_id);
            Ok(())
        }
    }
}

async fn sync(
    api: &Client,
    p: &InterfacesParams,
    descr: &[(String, String)],
    speed: &[(String, String)],
) -> Result<(), ApiError> {
    let existing = api
        .entities_filtered(p.account_id, Some(p.entity_id), Some("interface"))
        .await?;
    let mut by_index: HashMap<String, (u64, String, Option<String>)> = existing
        .into_iter()
        .filter_map(|e| {
            let index = e.details.get("snmp_index")?.as_str()?.to_string();
            let speed = e
                .details
                .get("speed_bps")
                .and_then(|s| s.as_str())
                .map(str::to_string);
            Some((index, (e.id, e.name, speed)))
        })
        .collect();
    let (mut created, mut updated, mut deleted) = (0, 0, 0);
    for ((index, name), (_, speed_bps)) in descr.iter().zip(speed) {
        let input = EntityInput::new(
            name.clone(),
            "interface",
            json!({"snmp_index": index, "speed_bps": speed_bps}),
        );
        match by_index.remove(index) {
            None => {
                api.create_entity(p.account_id, &input.with_parent(p.entity_id))
                    .await?;
                created += 1;
            }
            Some((id, old_name, old_speed)) => {
                if old_name != *name || old_speed.as_deref() != Some(speed_bps.as_str()) {
                    api.update_entity(p.account_id, id, &input).await?;
                    updated += 1;
                }
            }
        }
    }
    for (id, _, _) in by_index.into_values() {
        match api.delete_entity(p.account_id, id).await {
            Ok(()) | Err(ApiError::NotFound { .. }) => deleted += 1,
            Err(e) => return Err(e),
        }
    }
    tracing::info!(
        entity_id = p.entity_id,
        interfaces = descr.len(),
        created,
        updated,
        deleted,
        "interface entities updated"
    );
    Ok(())
}
