//! Entity problems: an entity that a refresh or a bot could not use, and why.
//!
//! The refresh finds some (an entity that does not parse, a sensor that
//! answers 404); a collector finds others while it makes its jobs (a value
//! out of range), and reports them through the [`Problems`] that
//! [`Collector::jobs`](crate::collector::Collector::jobs) is given. The runtime treats
//! both alike: it warns about a problem when it appears or changes, says when
//! it is gone, counts it at every refresh in
//! `grafolean_bot_entity_errors_total{cause}`, and shows it on the status
//! page.

use std::fmt;

use crate::config::EntityConfig;

/// Why an entity was left out: the `cause` label of
/// `grafolean_bot_entity_errors_total`.
///
/// ```
/// use grafolean_collector::SkipCause;
/// assert_eq!(SkipCause::InvalidConfig.as_str(), "invalid_config");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipCause {
    /// An account's entity list could not be read (`entity_list`).
    EntityList,
    /// An entity that does not parse (`malformed`).
    Malformed,
    /// An entity, its credential or a sensor could not be fetched, or is
    /// malformed on its own (`unreadable`).
    Unreadable,
    /// A bot found the entity's config unusable, in whole or in part
    /// (`invalid_config`).
    InvalidConfig,
}

impl SkipCause {
    /// The cause in one word, as the metric's label says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EntityList => "entity_list",
            Self::Malformed => "malformed",
            Self::Unreadable => "unreadable",
            Self::InvalidConfig => "invalid_config",
        }
    }
}

impl fmt::Display for SkipCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entity (or an account's entity list) that could not be used, and why.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EntityProblem {
    /// The account.
    pub account: u64,
    /// The entity, when known.
    pub entity: Option<u64>,
    /// The entity's id as the backend sent it (its JSON text: `5`, `"111"`,
    /// `-5`), or `None` when the problem is an account's (its entity list).
    /// Unlike [`EntityProblem::entity`] it is there for an id that is not a
    /// plain number, so that such entities can be told apart.
    pub raw_id: Option<String>,
    /// The entity's name, when known.
    pub name: Option<String>,
    /// What kind of problem.
    pub cause: SkipCause,
    /// What is wrong, and what to do about it.
    pub reason: String,
}

/// The config problems a collector found while making its jobs; see
/// [`Collector::jobs`](crate::collector::Collector::jobs).
///
/// ```
/// use grafolean_collector::{EntityConfig, Problems};
/// let entity: EntityConfig = serde_json::from_value(serde_json::json!({
///     "account_id": 1, "entity_id": 42, "name": "router", "entity_type": "device",
///     "details": {}, "credential_details": {}, "sensors": []
/// })).unwrap();
/// let mut problems = Problems::default();
/// problems.entity(&entity, "credential.timeout is -1, but it must be positive");
/// assert_eq!(problems.iter().next().unwrap().entity, Some(42));
/// ```
#[derive(Debug, Default)]
pub struct Problems(Vec<EntityProblem>);

impl Problems {
    /// Reports that `entity` cannot be used, in whole or in part, and why
    /// (say what to change). Report every problem at every call of
    /// [`Collector::jobs`](crate::collector::Collector::jobs): one that is not reported
    /// again is taken to be fixed.
    pub fn entity(&mut self, entity: &EntityConfig, problem: impl Into<String>) {
        self.0.push(EntityProblem {
            account: entity.account_id,
            entity: Some(entity.entity_id),
            raw_id: Some(entity.entity_id.to_string()),
            name: Some(entity.name.clone()),
            cause: SkipCause::InvalidConfig,
            reason: problem.into(),
        });
    }

    /// The problems reported so far.
    pub fn iter(&self) -> impl Iterator<Item = &EntityProblem> {
        self.0.iter()
    }

    /// Adds the problems a refresh found.
    pub(crate) fn extend(&mut self, problems: impl IntoIterator<Item = EntityProblem>) {
        self.0.extend(problems);
    }

    /// The problems, taken.
    pub(crate) fn into_vec(self) -> Vec<EntityProblem> {
        self.0
    }
}
