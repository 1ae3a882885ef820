//! `--web.config.file` on the binary: an invalid file stops the bot before
//! it starts (exit 2, naming the field); a valid one puts basic auth in
//! front of the admin server, with `/live` and `/ready` left open as the file
//! says. (TLS, client certificates, reloading the file and a real Prometheus
//! scraping over HTTPS are tested in the SDK.) Needs root or CAP_NET_RAW, as
//! every ping test.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::BIN;
use grafolean_collector::testing::process::{BotCommand, TestDir, free_port};

/// `GET path` with an optional `Authorization` header: the status code.
fn status(port: u16, path: &str, authorization: Option<&str>) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn an_invalid_web_config_file_is_exit_2_naming_the_field() {
    let dir = TestDir::new("ping-web-config-bad");
    let file = dir.join("web.yml");
    std::fs::write(&file, "basic_auth_users:\n  prometheus: secret\n").unwrap();
    let out = Command::new(BIN)
        .env("WEB_CONFIG_FILE", &file)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let said = format!("{stdout}{stderr}");
    assert!(
        said.contains("--web.config.file")
            && said.contains("basic_auth_users.prometheus: is not a bcrypt hash"),
        "{said}"
    );
}

#[test]
fn basic_auth_guards_the_admin_server() {
    let dir = TestDir::new("ping-web-config");
    let file = dir.join("web.yml");
    std::fs::write(
        &file,
        format!(
            "basic_auth_users:\n  prometheus: {}\nunauthenticated_paths: [/live, /ready]\n",
            bcrypt::hash("secret", 4).unwrap()
        ),
    )
    .unwrap();
    let mut command = BotCommand::new(BIN);
    command.arg("--web.config.file").arg(&file);
    let mut bot = command.start();
    bot.wait_ready(Duration::from_secs(20));
    let port = bot.port();
    assert_eq!(status(port, "/live", None), 200);
    assert_eq!(status(port, "/metrics", None), 401);
    assert_eq!(status(port, "/", None), 401, "the status page too");
    assert_eq!(
        status(port, "/metrics", Some("Basic cHJvbWV0aGV1czpndWVzcw==")),
        401,
        "prometheus:guess"
    );
    assert_eq!(
        status(port, "/metrics", Some("Basic cHJvbWV0aGV1czpzZWNyZXQ=")),
        200,
        "prometheus:secret"
    );
    let stopped = bot.stop();
    assert!(stopped.success(), "{stopped:?}\n{}", bot.log().join("\n"));
}
