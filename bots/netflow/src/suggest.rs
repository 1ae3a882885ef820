//! Entity suggestions: an exporter that matches no device of an account gets
//! a device entity named `<ip> (NetFlow exporter)`, as the Python bot's
//! `maint/suggest_entities` job does, every 2 minutes
//! (`--suggest-interval`).
//!
//! Unlike the Python bot:
//! - an entity is suggested once per account and exporter: one the user
//!   deleted is not created again (until the bot restarts);
//! - a device without `details.ipv4` is passed over, not the end of the job;
//! - a 403 (Grafolean grants a bot only GET on entities by default) is said
//!   once per account, and the account is left alone for an hour.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grafolean_collector::api::{ApiError, Client, EntityInput};

use crate::collector::exporter_host;
use tokio_util::sync::CancellationToken;

/// How long an account whose entity writes were refused is left alone.
pub const FORBIDDEN_RECHECK: Duration = Duration::from_secs(3600);

/// The exporters heard from, for suggestions (bounded).
#[derive(Clone, Debug, Default)]
pub struct Exporters(Arc<Mutex<HashSet<IpAddr>>>);

impl Exporters {
    /// The most exporters remembered.
    pub const MAX: usize = 10_000;

    /// Remembers an exporter; returns false when it could not (the set is full).
    pub fn insert(&self, exporter: IpAddr) -> bool {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= Self::MAX {
            return set.contains(&exporter);
        }
        set.insert(exporter);
        true
    }

    /// Remembers exporters.
    pub fn extend(&self, exporters: impl IntoIterator<Item = IpAddr>) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for e in exporters {
            if set.len() >= Self::MAX {
                break;
            }
            set.insert(e);
        }
    }

    /// Every exporter heard from, sorted.
    pub fn all(&self) -> Vec<IpAddr> {
        let mut v: Vec<_> = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        v.sort();
        v
    }
}

/// The suggestion job's memory between runs.
#[derive(Debug, Default)]
pub struct Suggester {
    /// (account, exporter) pairs already suggested (or found).
    done: HashSet<(u64, IpAddr)>,
    /// Accounts that refused a write, and since when.
    forbidden: HashMap<u64, Instant>,
}

impl Suggester {
    /// Runs every `every` until `shutdown`.
    pub async fn run(
        mut self,
        client: Client,
        exporters: Exporters,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut every = tokio::time::interval(every.max(Duration::from_millis(100)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let heard = exporters.all();
            if heard.is_empty() {
                continue;
            }
            if let Err(e) = self.once(&client, &heard).await {
                tracing::warn!("entity suggestions: {e}");
            }
        }
    }

    /// One pass over every account: creates the missing exporter entities.
    /// Returns how many were created.
    pub async fn once(&mut self, client: &Client, exporters: &[IpAddr]) -> Result<usize, ApiError> {
        let mut created = 0;
        for account in client.account_ids().await? {
            if self
                .forbidden
                .get(&account)
                .is_some_and(|at| at.elapsed() < FORBIDDEN_RECHECK)
            {
                continue;
            }
            let missing: Vec<IpAddr> = exporters
                .iter()
                .copied()
                .filter(|e| !self.done.contains(&(account, *e)))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let entities = match client.entities(account).await {
                Ok(entities) => entities,
                Err(e) => {
                    tracing::warn!(account, "entity suggestions: cannot list the entities: {e}");
                    continue;
                }
            };
            let devices: HashSet<IpAddr> = entities
                .iter()
                .filter(|e| e.entity_type == "device")
                .filter_map(|e| {
                    let given = e.details.get("ipv4")?.as_str()?;
                    exporter_host(given).parse::<IpAddr>().ok()
                })
                .map(|ip| ip.to_canonical())
                .collect();
            for exporter in missing {
                if devices.contains(&exporter) {
                    self.done.insert((account, exporter));
                    continue;
                }
                let input = EntityInput::new(
                    format!("{exporter} (NetFlow exporter)"),
                    "device",
                    serde_json::json!({ "ipv4": exporter.to_string() }),
                );
                match client.create_entity(account, &input).await {
                    Ok(id) => {
                        tracing::info!(account, entity = id, %exporter, "suggested a NetFlow exporter entity");
                        self.done.insert((account, exporter));
                        created += 1;
                    }
                    Err(e @ ApiError::Forbidden { .. }) => {
                        tracing::warn!(
                            account,
                            "entity suggestions: the backend refused to create entities ({e}); \
                             grant the bot POST on entities to have exporters suggested. \
                             Asking again in an hour."
                        );
                        self.forbidden.insert(account, Instant::now());
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(account, %exporter, "entity suggestions: {e}");
                    }
                }
            }
        }
        Ok(created)
    }
}
