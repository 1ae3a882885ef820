use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use super::test_certs::Ca;
use super::{WebConfig, load};

/// A directory for one test's files, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "grafolean-web-config-{name}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        // Written aside and renamed, as an editor or a config tool does, so
        // that a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A bcrypt hash at the lowest cost, so that tests are quick.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

fn error_of(dir: &Dir, yaml: &str) -> super::WebConfigError {
    let path = dir.write("web.yml", yaml);
    load(&path).expect_err(yaml)
}

#[test]
fn a_bad_file_is_an_error_naming_the_field() {
    let dir = Dir::new("errors");
    let ca = Ca::new("test CA");
    let server = ca.server();
    dir.write("server.crt", &server.cert);
    dir.write("server.key", &server.key);
    dir.write("ca.crt", &ca.cert);
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let cases: &[(String, Option<&str>, &str)] = &[
        ("".into(), None, "the file is empty"),
        (
            "nonsense: 1\n".into(),
            Some("nonsense"),
            "unknown field `nonsense`",
        ),
        (
            "basic_auth_users:\n  alice: secret\n".into(),
            Some("basic_auth_users.alice"),
            "is not a bcrypt hash",
        ),
        (
            format!("basic_auth_users:\n  'a:b': '{}'\n", hash("x")),
            Some("basic_auth_users.a:b"),
            "must not be empty nor hold `:`",
        ),
        (
            "http_server_config:\n  headers:\n    Server: me\n".into(),
            Some("http_server_config.headers.Server"),
            "cannot be configured",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into(),
            Some("http_server_config.headers.X-Frame-Options"),
            "must be one of",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n".into(),
            Some("tls_server_config.key_file"),
            "missing one of key or key_file",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n".into(),
            Some("tls_server_config.cert_file"),
            "missing.crt cannot be read",
        ),
        (
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n".into(),
            Some("tls_server_config.cert_file"),
            "holds no PEM certificate",
        ),
        (
            format!("{tls}  min_version: TLS10\n"),
            Some("tls_server_config.min_version"),
            "TLS 1.2 and 1.3 only",
        ),
        (
            format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            Some("tls_server_config.client_ca_file"),
            "needs client_ca_file",
        ),
        (
            format!("{tls}  client_ca_file: ca.crt\n"),
            Some("tls_server_config.client_auth_type"),
            "without a client auth policy",
        ),
        (
            format!("{tls}  client_auth_type: Sometimes\n"),
            Some("tls_server_config.client_auth_type"),
            "is not one of",
        ),
        (
            format!("{tls}  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n"),
            Some("tls_server_config.client_auth_type"),
            "is not offered",
        ),
        (
            format!("{tls}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"),
            Some("tls_server_config.cipher_suites"),
            "is not a TLS 1.2 cipher suite rustls offers",
        ),
        (
            format!("{tls}  tls_version: TLS13\n"),
            Some("tls_server_config.tls_version"),
            "unknown field `tls_version`",
        ),
        (
            "unauthenticated_paths: [/metrics]\n".into(),
            Some("unauthenticated_paths"),
            "cannot be served without authentication",
        ),
        (
            "rate_limit:\n  burst: 0\n  interval: 1s\n".into(),
            Some("rate_limit.burst"),
            "at least 1",
        ),
    ];
    for (yaml, field, message) in cases {
        let e = error_of(&dir, yaml);
        assert_eq!(e.field(), *field, "{yaml}: {e}");
        assert!(e.to_string().contains(message), "{yaml}: {e}");
        assert!(
            e.to_string().starts_with("--web.config.file "),
            "names the flag: {e}"
        );
    }
}

#[test]
fn a_good_file_loads_with_paths_relative_to_it() {
    let dir = Dir::new("good");
    let ca = Ca::new("test CA");
    let server = ca.server();
    std::fs::create_dir_all(dir.0.join("tls")).unwrap();
    dir.write("tls/server.crt", &server.cert);
    dir.write("tls/server.key", &server.key);
    dir.write("tls/ca.crt", &ca.cert);
    let yaml = format!(
        "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  \
         client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: tls/ca.crt\n  min_version: TLS13\n\
         http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n\
         basic_auth_users:\n  alice: {}\n\
         rate_limit:\n  burst: 10\n  interval: 100ms\n",
        hash("secret")
    );
    let path = dir.write("web.yml", &yaml);
    // From another working directory: the paths are the file's.
    let active = load(&path).unwrap();
    assert!(active.tls.is_some());
    assert_eq!(active.users.len(), 1);
    assert_eq!(active.headers.len(), 1);
    assert_eq!(active.describe(), "HTTPS, basic auth for 1 user");
    // Inline PEM works as well.
    let yaml = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}",
        indent(&server.cert),
        indent(&server.key)
    );
    let path = dir.write("inline.yml", &yaml);
    assert!(load(&path).unwrap().tls.is_some());
    // A tls_server_config without certificates is plain HTTP, as in
    // exporter-toolkit.
    let path = dir.write("plain.yml", "tls_server_config:\n  min_version: TLS12\n");
    assert!(load(&path).unwrap().tls.is_none());
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

/// The admin server on a free port with `web`, serving `/metrics` and
/// `/live`.
async fn serve(web: WebConfig) -> (String, tokio::sync::oneshot::Sender<()>) {
    let app = Router::new()
        .route("/metrics", get(|| async { "metrics\n" }))
        .route("/live", get(|| async { "live\n" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::admin::serve(
        listener,
        app,
        async {
            let _ = stopped.await;
        },
        Some(web),
    ));
    (addr.to_string(), stop)
}

fn client(ca: &str, identity: Option<&super::test_certs::Pem>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10));
    if let Some(id) = identity {
        let pem = format!("{}{}", id.cert, id.key);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn https_with_basic_auth_and_headers() {
    let dir = Dir::new("https");
    let ca = Ca::new("test CA");
    let server = ca.server();
    dir.write("server.crt", &server.cert);
    dir.write("server.key", &server.key);
    let path = dir.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  alice: {}\n\
             unauthenticated_paths: [/live]\n",
            hash("secret")
        ),
    );
    let (addr, _stop) = serve(WebConfig::load(&path).unwrap()).await;
    let http = client(&ca.cert, None);
    let url = format!("https://{addr}/metrics");

    let none = http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Basic");
    assert_eq!(
        none.headers()["x-frame-options"],
        "deny",
        "headers on a refusal too"
    );
    let wrong = http
        .get(&url)
        .basic_auth("alice", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let unknown = http
        .get(&url)
        .basic_auth("mallory", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
    for _ in 0..2 {
        // The second time from the cache: the same answer.
        let right = http
            .get(&url)
            .basic_auth("alice", Some("secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200);
        assert_eq!(right.headers()["x-content-type-options"], "nosniff");
        assert_eq!(right.text().await.unwrap(), "metrics\n");
    }
    // /live, as the file says, without a password (but over TLS).
    let live = http
        .get(format!("https://{addr}/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    // Plain HTTP on the TLS port: refused, with a word why.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    assert!(
        plain
            .text()
            .await
            .unwrap()
            .contains("HTTP request to an HTTPS server")
    );
    // A client that does not trust the server's CA does not get in.
    let other = Ca::new("another CA");
    assert!(client(&other.cert, None).get(&url).send().await.is_err());
}

#[tokio::test]
async fn client_certificates_required_and_checked() {
    let dir = Dir::new("mtls");
    let ca = Ca::new("test CA");
    let server = ca.server();
    dir.write("server.crt", &server.cert);
    dir.write("server.key", &server.key);
    dir.write("ca.crt", &ca.cert);
    let path = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let (addr, _stop) = serve(WebConfig::load(&path).unwrap()).await;
    let url = format!("https://{addr}/metrics");

    let ours = ca.client("prometheus");
    let ok = client(&ca.cert, Some(&ours))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        client(&ca.cert, None).get(&url).send().await.is_err(),
        "no client certificate"
    );
    let stranger = Ca::new("another CA").client("prometheus");
    assert!(
        client(&ca.cert, Some(&stranger))
            .get(&url)
            .send()
            .await
            .is_err(),
        "a client certificate from another CA"
    );
}

#[tokio::test]
async fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_last_good() {
    let dir = Dir::new("reload");
    let path = dir.write(
        "web.yml",
        &format!("basic_auth_users:\n  alice: {}\n", hash("one")),
    );
    let (addr, _stop) = serve(WebConfig::load(&path).unwrap()).await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let status = |user: &'static str, password: &'static str| {
        let request = http.get(&url).basic_auth(user, Some(password));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("alice", "one").await, 200);

    dir.write(
        "web.yml",
        &format!("basic_auth_users:\n  bob: {}\n", hash("two")),
    );
    wait_until(|| status("bob", "two"), 200).await;
    assert_eq!(status("alice", "one").await, 401, "alice is gone");

    // Broken: the last good file stays in force.
    dir.write("web.yml", "basic_auth_users:\n  carol: not-a-hash\n");
    tokio::time::sleep(super::CHECK_EVERY * 2).await;
    assert_eq!(status("bob", "two").await, 200);
    assert_eq!(status("carol", "not-a-hash").await, 401);

    // Fixed again: read.
    dir.write(
        "web.yml",
        &format!("basic_auth_users:\n  carol: {}\n", hash("three")),
    );
    wait_until(|| status("carol", "three"), 200).await;
}

#[tokio::test]
async fn a_rate_limit_answers_429_past_its_burst() {
    let dir = Dir::new("rate");
    let path = dir.write("web.yml", "rate_limit:\n  burst: 3\n  interval: 1h\n");
    let (addr, _stop) = serve(WebConfig::load(&path).unwrap()).await;
    let http = reqwest::Client::new();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let r = http
            .get(format!("http://{addr}/live"))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
}

async fn wait_until<F, Fut>(status: F, want: u16)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if status().await == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the changed web config file was not read within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
