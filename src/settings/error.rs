//! The error of a setting that is invalid: what the settings, and the
//! parts they configure (such as a [`Shard`](crate::shard::Shard)), report.

/// A setting that is invalid.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
#[non_exhaustive]
pub struct SettingsError {
    /// The setting, as a flag and environment variable.
    pub setting: &'static str,
    /// Why it is invalid.
    pub reason: String,
}
