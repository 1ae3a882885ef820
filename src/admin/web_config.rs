//! `--web.config.file`: TLS and basic auth for the admin server, in the
//! format of [prometheus/exporter-toolkit](https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md),
//! which node_exporter, blackbox_exporter and smokeping_prober take.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: bot.crt            # or cert: (PEM text)
//!   key_file: bot.key             # or key:
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt        # or client_ca:
//!   min_version: TLS12            # TLS12 (default) or TLS13
//! http_server_config:
//!   headers:
//!     X-Frame-Options: deny
//! basic_auth_users:
//!   prometheus: $2y$10$...        # bcrypt hashes
//! rate_limit:                     # requests: one per interval, bursts of burst
//!   interval: 100ms
//!   burst: 20
//! unauthenticated_paths: [/live]  # this SDK's own key: no basic auth on these
//! ```
//!
//! Semantics as exporter-toolkit's: relative paths are relative to the file;
//! an unknown key is an error; every path needs basic auth when users are
//! set; a bcrypt check is done once per (user, hash, password), then its
//! result is cached; an unknown user costs a bcrypt check too (no user
//! enumeration by timing); at most one bcrypt check runs at a time.
//!
//! Differences, each refused with a clear error rather than ignored: rustls
//! offers TLS 1.2 and 1.3 only, verifies every client certificate it asks for
//! (so `RequestClientCert` and `RequireAnyClientCert` are refused), and
//! `client_allowed_sans` is not implemented. HTTP/2 is not served
//! (`http2:` is accepted and ignored).
//!
//! The file and the files it names are checked for changes at most once a
//! second, when a connection or request comes: a changed file is loaded
//! again, and an invalid one keeps the last good one (logged once per
//! change).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

/// How often, at most, the file and its certificates are checked for changes.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The most cached bcrypt results; the cache is emptied when it is full.
const AUTH_CACHE: usize = 100;

/// The largest web config file read (it holds a few hashes and PEM blocks).
const MAX_FILE: u64 = 1 << 20;

/// The headers a file may set, and their allowed values where they are an
/// enumeration: exporter-toolkit's list, for consistency between exporters.
const HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// The paths that `unauthenticated_paths` may name.
const OPENABLE: &[&str] = &["/live", "/ready"];

/// Why a web config file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    path: PathBuf,
    field: Option<String>,
    message: String,
}

impl WebConfigError {
    fn new(path: &Path, field: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The field at fault, such as `tls_server_config.client_auth_type`,
    /// when the fault is in one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--web.config.file {}: ", self.path.display())?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for WebConfigError {}

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<RateLimitFile>,
    #[serde(default)]
    unauthenticated_paths: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    #[allow(dead_code)] // accepted as exporter-toolkit does; HTTP/2 is not served
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    burst: u32,
    interval: String,
}

/// A file's modification stamp, to see that it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// A loaded, valid file: what the admin server applies.
pub(crate) struct Active {
    /// TLS, when the file configures it.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    users: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    open_paths: Vec<String>,
    limiter: Option<Limiter>,
    /// The file and the files it names, as they were when loaded.
    stamps: Vec<(PathBuf, Option<Stamp>)>,
}

impl fmt::Debug for Active {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Active")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .field("open_paths", &self.open_paths)
            .finish_non_exhaustive()
    }
}

impl Active {
    fn describe(&self) -> String {
        let tls = match &self.tls {
            None => "plain HTTP".to_string(),
            Some(_) => "HTTPS".to_string(),
        };
        let auth = match self.users.len() {
            0 => "no basic auth".to_string(),
            1 => "basic auth for 1 user".to_string(),
            n => format!("basic auth for {n} users"),
        };
        format!("{tls}, {auth}")
    }
}

/// A token bucket: `burst` requests at once, then one per `every`
/// (exporter-toolkit's `rate_limit`).
#[derive(Debug)]
struct Limiter {
    every: Duration,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Limiter {
    fn new(every: Duration, burst: u32) -> Self {
        let burst = f64::from(burst);
        Self {
            every,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(state.1).as_secs_f64() / self.every.as_secs_f64();
        state.0 = (state.0 + refill).min(self.burst);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Reads and checks the file at `path`.
fn load(path: &Path) -> Result<Active, WebConfigError> {
    let err = |field: Option<String>, message: String| WebConfigError::new(path, field, message);
    let before = stamp(path);
    let text = read_limited(path).map_err(|e| err(None, e))?;
    if text.trim().is_empty() {
        return Err(err(
            None,
            "the file is empty; write the settings, or leave out --web.config.file for plain HTTP without authentication".into(),
        ));
    }
    let file: File = serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(&text))
        .map_err(|e| {
            let field = e.path().to_string();
            let field = (field != "." && !field.is_empty()).then_some(field);
            err(field, e.into_inner().to_string())
        })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut stamps = vec![(path.to_path_buf(), before)];

    let users = file.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        let field = Some(format!("basic_auth_users.{user}"));
        if user.is_empty() || user.contains(':') {
            return Err(err(
                field,
                "a user name must not be empty nor hold `:` (basic auth cannot send it)".into(),
            ));
        }
        if let Err(e) = hash.parse::<bcrypt::HashParts>() {
            return Err(err(
                field,
                format!(
                    "is not a bcrypt hash ({e}); make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                ),
            ));
        }
    }

    let mut headers = Vec::new();
    for (name, value) in file
        .http_server_config
        .and_then(|h| h.headers)
        .unwrap_or_default()
    {
        let field = Some(format!("http_server_config.headers.{name}"));
        let Some((_, allowed)) = HEADERS.iter().find(|(h, _)| *h == name) else {
            let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
            return Err(err(
                field,
                format!(
                    "this header cannot be configured (only {})",
                    names.join(", ")
                ),
            ));
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(err(
                field,
                format!("is {value:?}, but must be one of {allowed:?}"),
            ));
        }
        let value = HeaderValue::from_str(&value)
            .map_err(|_| err(field, format!("{value:?} is not a valid header value")))?;
        let name = HeaderName::try_from(name.to_ascii_lowercase())
            .map_err(|_| err(None, format!("{name:?} is not a header name")))?;
        headers.push((name, value));
    }

    let open_paths = file.unauthenticated_paths.unwrap_or_default();
    for p in &open_paths {
        if !OPENABLE.contains(&p.as_str()) {
            return Err(err(
                Some("unauthenticated_paths".into()),
                format!("{p:?} cannot be served without authentication (only {OPENABLE:?} can)"),
            ));
        }
    }

    let limiter = match file.rate_limit {
        None => None,
        Some(r) => {
            let every = humantime::parse_duration(&r.interval)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    err(
                        Some("rate_limit.interval".into()),
                        format!(
                            "{:?} is not a duration above zero, such as 100ms",
                            r.interval
                        ),
                    )
                })?;
            if r.burst == 0 {
                return Err(err(
                    Some("rate_limit.burst".into()),
                    "must be at least 1 (0 would refuse every request)".into(),
                ));
            }
            Some(Limiter::new(every, r.burst))
        }
    };

    let tls = match file.tls_server_config {
        None => None,
        Some(t) => tls_config(path, dir, t, &mut stamps)?,
    };
    Ok(Active {
        tls,
        users,
        headers,
        open_paths,
        limiter,
        stamps,
    })
}

fn read_limited(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot be read as UTF-8 text: {e}"))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!(
            "is over {} KiB; is it the right file?",
            MAX_FILE >> 10
        ));
    }
    Ok(text)
}

/// The PEM text of an inline field or of the file it names (relative to
/// `dir`), noting the file's stamp.
fn pem(
    path: &Path,
    dir: &Path,
    inline: (&str, Option<String>),
    file: (&str, Option<PathBuf>),
    stamps: &mut Vec<(PathBuf, Option<Stamp>)>,
) -> Result<Option<(String, Vec<u8>)>, WebConfigError> {
    match (inline.1, file.1) {
        (Some(_), Some(_)) => Err(WebConfigError::new(
            path,
            format!("tls_server_config.{}", file.0),
            format!("give {} or {}, not both", inline.0, file.0),
        )),
        (Some(text), None) => Ok(Some((
            format!("tls_server_config.{}", inline.0),
            text.into_bytes(),
        ))),
        (None, Some(f)) => {
            let f = dir.join(f);
            let field = format!("tls_server_config.{}", file.0);
            stamps.push((f.clone(), stamp(&f)));
            let bytes = std::fs::read(&f).map_err(|e| {
                WebConfigError::new(
                    path,
                    field.clone(),
                    format!("{} cannot be read: {e}", f.display()),
                )
            })?;
            Ok(Some((field, bytes)))
        }
        (None, None) => Ok(None),
    }
}

fn tls_config(
    path: &Path,
    dir: &Path,
    t: TlsFile,
    stamps: &mut Vec<(PathBuf, Option<Stamp>)>,
) -> Result<Option<Arc<rustls::ServerConfig>>, WebConfigError> {
    let err = |field: &str, message: String| {
        WebConfigError::new(path, Some(format!("tls_server_config.{field}")), message)
    };
    let cert = pem(
        path,
        dir,
        ("cert", t.cert),
        ("cert_file", t.cert_file),
        stamps,
    )?;
    let key = pem(path, dir, ("key", t.key), ("key_file", t.key_file), stamps)?;
    let client_ca = pem(
        path,
        dir,
        ("client_ca", t.client_ca),
        ("client_ca_file", t.client_ca_file),
        stamps,
    )?;
    let enabled =
        cert.is_some() || key.is_some() || client_ca.is_some() || t.client_auth_type.is_some();
    if !enabled {
        // As exporter-toolkit: a tls_server_config without any of these is
        // plain HTTP.
        return Ok(None);
    }
    let Some((cert_field, cert)) = cert else {
        return Err(err("cert_file", "missing one of cert or cert_file".into()));
    };
    let Some((key_field, key)) = key else {
        return Err(err("key_file", "missing one of key or key_file".into()));
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            WebConfigError::new(
                path,
                cert_field.clone(),
                format!("is not PEM certificates: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(WebConfigError::new(
            path,
            cert_field,
            "holds no PEM certificate",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
        WebConfigError::new(
            path,
            key_field.clone(),
            format!("holds no PEM private key: {e}"),
        )
    })?;

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &t.cipher_suites {
        let mut wanted = Vec::new();
        for name in names {
            let Some(suite) = provider
                .cipher_suites
                .iter()
                .find(|s| s.tls13().is_none() && format!("{:?}", s.suite()) == *name)
            else {
                let known: Vec<String> = provider
                    .cipher_suites
                    .iter()
                    .filter(|s| s.tls13().is_none())
                    .map(|s| format!("{:?}", s.suite()))
                    .collect();
                return Err(err(
                    "cipher_suites",
                    format!(
                        "{name:?} is not a TLS 1.2 cipher suite rustls offers ({})",
                        known.join(", ")
                    ),
                ));
            };
            wanted.push(*suite);
        }
        // As Go: the list orders the TLS 1.2 suites; TLS 1.3's are all kept.
        let tls13: Vec<_> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.tls13().is_some())
            .copied()
            .collect();
        provider.cipher_suites = tls13.into_iter().chain(wanted).collect();
    }
    if let Some(names) = &t.curve_preferences {
        let mut groups = Vec::new();
        for name in names {
            let group = match name.as_str() {
                "X25519" => rustls::NamedGroup::X25519,
                "CurveP256" => rustls::NamedGroup::secp256r1,
                "CurveP384" => rustls::NamedGroup::secp384r1,
                _ => {
                    return Err(err(
                        "curve_preferences",
                        format!("{name:?} is not offered (X25519, CurveP256 and CurveP384 are)"),
                    ));
                }
            };
            let Some(kx) = provider.kx_groups.iter().find(|g| g.name() == group) else {
                return Err(err("curve_preferences", format!("{name:?} is not offered")));
            };
            groups.push(*kx);
        }
        provider.kx_groups = groups;
    }
    let version = |field: &str, v: &Option<String>, default: u8| -> Result<u8, WebConfigError> {
        match v.as_deref() {
            None => Ok(default),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some(v @ ("TLS10" | "TLS11")) => Err(err(
                field,
                format!("{v} is not offered: rustls speaks TLS 1.2 and 1.3 only"),
            )),
            Some(v) => Err(err(field, format!("{v:?} is not TLS12 or TLS13"))),
        }
    };
    let min = version("min_version", &t.min_version, 12)?;
    let max = version("max_version", &t.max_version, 13)?;
    if min > max {
        return Err(err("max_version", "is below min_version".into()));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, v)| v)
            .collect();
    if t.client_allowed_sans.is_some() {
        return Err(err(
            "client_allowed_sans",
            "is not implemented by this bot; restrict clients with client_ca_file instead".into(),
        ));
    }
    let provider = Arc::new(provider);
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| {
            err(
                "cipher_suites",
                format!("leaves no usable cipher suite: {e}"),
            )
        })?;
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth {
        "NoClientCert" => {
            if client_ca.is_some() {
                return Err(err(
                    "client_auth_type",
                    "client CAs are configured without a client auth policy (RequireAndVerifyClientCert or VerifyClientCertIfGiven)".into(),
                ));
            }
            builder.with_no_client_auth()
        }
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some((ca_field, ca)) = client_ca else {
                return Err(err(
                    "client_ca_file",
                    format!("client_auth_type {auth} needs client_ca_file (or client_ca)"),
                ));
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca) {
                let c = c.map_err(|e| {
                    WebConfigError::new(
                        path,
                        ca_field.clone(),
                        format!("is not PEM certificates: {e}"),
                    )
                })?;
                roots.add(c).map_err(|e| {
                    WebConfigError::new(
                        path,
                        ca_field.clone(),
                        format!("holds a certificate rustls cannot use: {e}"),
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(WebConfigError::new(
                    path,
                    ca_field,
                    "holds no PEM certificate",
                ));
            }
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if auth == "VerifyClientCertIfGiven" {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| {
                err(
                    "client_ca_file",
                    format!("cannot verify clients with it: {e}"),
                )
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            return Err(err(
                "client_auth_type",
                format!(
                    "{auth} (a client certificate taken without checking it) is not offered; use \
                     RequireAndVerifyClientCert or VerifyClientCertIfGiven with client_ca_file"
                ),
            ));
        }
        other => {
            return Err(err(
                "client_auth_type",
                format!(
                    "{other:?} is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        WebConfigError::new(
            path,
            key_field,
            format!("does not go with the certificate: {e}"),
        )
    })?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The web config file in force, re-read when it (or a file it names)
/// changes; a later invalid version keeps the last good one.
#[derive(Clone)]
pub(crate) struct WebConfig {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    active: RwLock<Arc<Active>>,
    watch: Mutex<Watch>,
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// One bcrypt check at a time: each takes a core for tens of ms.
    bcrypt: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Watch {
    checked: Option<Instant>,
    /// The stamps of a version found invalid, so that it is reported once.
    refused: Option<Vec<Option<Stamp>>>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("path", &self.inner.path)
            .field("active", &*self.current())
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// Loads the file; an invalid file is an error naming the field.
    pub(crate) fn load(path: &Path) -> Result<Self, WebConfigError> {
        let active = load(path)?;
        info!(file = %path.display(), "admin server: {}", active.describe());
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                active: RwLock::new(Arc::new(active)),
                watch: Mutex::default(),
                cache: Mutex::default(),
                bcrypt: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The config in force, after loading the file again if it changed
    /// (checked at most once a second).
    pub(crate) fn current(&self) -> Arc<Active> {
        let active = self
            .inner
            .active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut watch = self.inner.watch.lock().unwrap_or_else(|e| e.into_inner());
        if watch.checked.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return active;
        }
        watch.checked = Some(Instant::now());
        let now: Vec<Option<Stamp>> = active.stamps.iter().map(|(p, _)| stamp(p)).collect();
        let same = active
            .stamps
            .iter()
            .zip(&now)
            .all(|((_, then), now)| then == now);
        if same || watch.refused.as_ref() == Some(&now) {
            return active;
        }
        match load(&self.inner.path) {
            Ok(fresh) => {
                info!(file = %self.inner.path.display(), "the web config file changed and was loaded: {}", fresh.describe());
                watch.refused = None;
                let fresh = Arc::new(fresh);
                *self.inner.active.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                self.inner
                    .cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                fresh
            }
            Err(e) => {
                warn!("{e}; the admin server keeps the last good web config");
                watch.refused = Some(now);
                active
            }
        }
    }

    /// Whether `user` and `password` are right, by a cached bcrypt check.
    async fn check(&self, active: &Active, user: &str, password: &str) -> bool {
        /// A hash compared against for unknown users, so that they cost as
        /// much as known ones.
        static UNKNOWN: OnceLock<String> = OnceLock::new();
        let known = active.users.get(user);
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            for part in [user, known.map_or("", String::as_str), password] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            h.finalize().into()
        };
        if let Some(&ok) = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return ok;
        }
        let _one = self.inner.bcrypt.lock().await;
        let hash = known.cloned();
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(|| {
                UNKNOWN
                    .get_or_init(|| {
                        bcrypt::hash("unknown user", bcrypt::DEFAULT_COST).unwrap_or_default()
                    })
                    .clone()
            });
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false)
            && known.is_some();
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= AUTH_CACHE {
            cache.clear();
        }
        cache.insert(key, ok);
        ok
    }
}

/// The user and password of a `Basic` `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The middleware: rate limit, basic auth and headers, as the file says.
pub(crate) async fn guard(State(web): State<WebConfig>, request: Request, next: Next) -> Response {
    let active = web.current();
    let mut response = if active.limiter.as_ref().is_some_and(|l| !l.allow()) {
        (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response()
    } else if active.users.is_empty() || active.open_paths.iter().any(|p| p == request.uri().path())
    {
        next.run(request).await
    } else {
        let allowed = match basic_credentials(request.headers()) {
            Some((user, password)) => web.check(&active, &user, &password).await,
            None => false,
        };
        if allowed {
            next.run(request).await
        } else {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic")],
                "Unauthorized\n",
            )
                .into_response()
        }
    };
    for (name, value) in &active.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

#[cfg(test)]
pub(crate) mod test_certs;
#[cfg(test)]
mod tests;
