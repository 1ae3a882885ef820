//! The bot token: a secret that never shows up in logs, errors or `Debug` output.
//!
//! Grafolean accepts a bot token only as the query parameter `?b=TOKEN`, so the
//! token is part of request URLs. [`BotToken`] prints as `<redacted>`, and
//! [`redact`] removes it from any text that may contain a URL.

use std::fmt;
use std::path::Path;

/// The largest token file read: a token is 36 bytes.
const MAX_TOKEN_FILE: usize = 4096;

/// A bot token. Its `Debug` and `Display` output is `<redacted>`.
///
/// ```
/// use grafolean_collector::api::BotToken;
/// let token = BotToken::new(" 2c3f1e7a-0000-4000-8000-000000000001\n").unwrap();
/// assert_eq!(format!("{token:?}"), "BotToken(<redacted>)");
/// assert_eq!(token.expose(), "2c3f1e7a-0000-4000-8000-000000000001");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken(String);

/// Why a bot token could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token was empty after trimming whitespace.
    #[error("the bot token is empty; set BOT_TOKEN or BOT_TOKEN_FROM_FILE")]
    Empty,
    /// The token contains characters that cannot be part of a URL query.
    #[error(
        "the bot token contains whitespace or control characters inside it; it should be a UUID"
    )]
    Invalid,
    /// The token does not look like the tokens Grafolean issues.
    #[error(
        "the bot token does not look like a Grafolean bot token (a UUID such as \
         xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx); copy it again from the bot's page in Grafolean"
    )]
    NotUuid,
    /// The token file is far larger than a token.
    #[error(
        "the bot token file {path} is larger than {MAX_TOKEN_FILE} bytes; it holds something other than a token"
    )]
    FileTooLarge {
        /// The file's path.
        path: String,
    },
    /// The token file could not be read.
    #[error("could not read the bot token file {path}: {source}")]
    File {
        /// The file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl BotToken {
    /// Creates a token, stripping surrounding whitespace (a trailing newline
    /// makes the backend answer 500).
    pub fn new(token: &str) -> Result<Self, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '&' | '#' | '?'))
        {
            return Err(TokenError::Invalid);
        }
        Ok(Self(token.to_string()))
    }

    /// Reads a token from a file, as `BOT_TOKEN_FROM_FILE` does; a file of
    /// more than a few KiB is refused without being read whole.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        use std::io::Read as _;
        let file_error = |source| TokenError::File {
            path: path.display().to_string(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(file_error)?
            .take(MAX_TOKEN_FILE as u64 + 1)
            .read_to_string(&mut text)
            .map_err(file_error)?;
        if text.len() > MAX_TOKEN_FILE {
            return Err(TokenError::FileTooLarge {
                path: path.display().to_string(),
            });
        }
        Self::new(&text)
    }

    /// Checks that the token looks like the UUIDs Grafolean issues
    /// (`8-4-4-4-12` hexadecimal digits), case-insensitively.
    pub(crate) fn check_uuid_shape(&self) -> Result<(), TokenError> {
        let groups: Vec<&str> = self.0.split('-').collect();
        let shaped = groups.len() == 5
            && groups
                .iter()
                .zip([8, 4, 4, 4, 12])
                .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
        if shaped {
            Ok(())
        } else {
            Err(TokenError::NotUuid)
        }
    }

    /// The token itself. Use it only to build a request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the token in `text` with `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.0)
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

impl fmt::Display for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Replaces every occurrence of `secret` in `text` (in any letter case) with
/// `<redacted>`, and any `b=` query value with `b=<redacted>`.
pub fn redact(text: &str, secret: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let lower = text.to_ascii_lowercase();
    let secret = secret.to_ascii_lowercase();
    let mut i = 0;
    while i < text.len() {
        if !secret.is_empty() && lower[i..].starts_with(&secret) {
            out.push_str("<redacted>");
            i += secret.len();
        } else if (lower[i..].starts_with("?b=") || lower[i..].starts_with("&b="))
            && !lower[i + 3..].starts_with("<redacted>")
        {
            out.push_str(&text[i..i + 3]);
            out.push_str("<redacted>");
            i += 3;
            while i < text.len() && !matches!(text.as_bytes()[i], b'&' | b'#' | b' ' | b'"' | b')')
            {
                i += 1;
            }
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_trimmed_and_checked() {
        assert_eq!(BotToken::new(" a\n").unwrap().expose(), "a");
        assert!(matches!(BotToken::new(" \n"), Err(TokenError::Empty)));
        assert!(matches!(BotToken::new("a b"), Err(TokenError::Invalid)));
    }

    #[test]
    fn redact_removes_secret_and_query_values() {
        let t = "http://h/api/x?b=SeCrEt&c=1 and secret again";
        assert_eq!(
            redact(t, "secret"),
            "http://h/api/x?b=<redacted>&c=1 and <redacted> again"
        );
        assert_eq!(redact("no token here", "secret"), "no token here");
    }
}
