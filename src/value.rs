//! Values: what a job run produces, and the checks they pass before sending.
//!
//! A value is a Grafolean path and a number. The backend rejects a whole POST
//! when one item in it is invalid, so every value is checked here first and an
//! invalid one is dropped alone (see [`Value::validate`]).

use std::fmt;

/// One measured value: a dot-separated path and a number.
///
/// ```
/// use grafolean_collector::Value;
/// let v = Value::new("entity.1127398355.ping.success", 0.5);
/// assert!(v.validate().is_ok());
/// assert!(Value::new("system.x", 1.0).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// The Grafolean path, such as `entity.42.ping.p0.rtt`.
    pub path: String,
    /// The value. It must be finite.
    pub value: f64,
}

impl Value {
    /// Creates a value. It is checked when it is sent, not here.
    pub fn new(path: impl Into<String>, value: f64) -> Self {
        Self {
            path: path.into(),
            value,
        }
    }

    /// Checks the path and the value against the backend's rules.
    pub fn validate(&self) -> Result<(), ValueError> {
        validate_path(&self.path)?;
        if !self.value.is_finite() {
            return Err(ValueError::NotFinite {
                path: self.path.clone(),
                value: self.value,
            });
        }
        Ok(())
    }
}

/// Why a value cannot be sent.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The path is empty.
    #[error("the path is empty")]
    EmptyPath,
    /// A segment between dots is empty, as in `a..b` or `a.`.
    #[error("path {path:?} has an empty segment; segments are separated by single dots")]
    EmptySegment {
        /// The offending path.
        path: String,
    },
    /// A character outside `[a-zA-Z0-9_-]` and `.`.
    #[error(
        "path {path:?} has the invalid character {ch:?}; use only a-z, A-Z, 0-9, '_', '-' and '.'"
    )]
    InvalidChar {
        /// The offending path.
        path: String,
        /// The first invalid character.
        ch: char,
    },
    /// Paths under `system.` are reserved by the backend.
    #[error("path {path:?} starts with 'system.', which the backend reserves")]
    Reserved {
        /// The offending path.
        path: String,
    },
    /// NaN or an infinity.
    #[error("value of {path:?} is {value}, but only finite numbers can be sent")]
    NotFinite {
        /// The path of the value.
        path: String,
        /// The value.
        value: f64,
    },
}

/// Checks a path against the backend's rule: dot-separated, non-empty segments
/// of `[a-zA-Z0-9_-]`, not starting with `system.`.
///
pub(crate) fn validate_path(path: &str) -> Result<(), ValueError> {
    if path.is_empty() {
        return Err(ValueError::EmptyPath);
    }
    if path.starts_with("system.") {
        return Err(ValueError::Reserved { path: path.into() });
    }
    for segment in path.split('.') {
        if segment.is_empty() {
            return Err(ValueError::EmptySegment { path: path.into() });
        }
        // The backend also accepts the escapes `%2e` ('.') and `%3a` (':').
        let mut rest = segment;
        while let Some(ch) = rest.chars().next() {
            if rest.starts_with("%2e") || rest.starts_with("%3a") {
                rest = &rest[3..];
            } else if ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' {
                rest = &rest[1..];
            } else {
                return Err(ValueError::InvalidChar {
                    path: path.into(),
                    ch,
                });
            }
        }
    }
    Ok(())
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.path, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_backend_rule() {
        for ok in [
            "a",
            "entity.1.ping.p0.ok",
            "A-b_c.9",
            "system",
            "x.system.y",
            "a.%2eb%3a",
        ] {
            assert_eq!(validate_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", ".a", "a.", "a..b", "a b", "a/b", "ä", "system.x", "a.%2f", "a%",
        ] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn non_finite_values_are_rejected() {
        assert!(Value::new("a", f64::NAN).validate().is_err());
        assert!(Value::new("a", f64::INFINITY).validate().is_err());
        assert!(matches!(
            Value::new("a", f64::NAN).validate().unwrap_err(),
            ValueError::NotFinite { .. }
        ));
    }
}
