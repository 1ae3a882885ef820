//! The API client against the fake backend (here, not in `tests/`, to reach
//! the client's crate-private requests): typed errors, the start-up wait,
//! and no token anywhere in what it logs or returns.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ApiError, BotToken, Client, PostValue, PutValue};
use crate::fetch::{FetchOptions, fetch_job_configs};
use crate::testing::{ACCOUNT_ID, BOT_TOKEN, FakeGrafolean, Fault};

fn client(fake: &FakeGrafolean, timeout: Duration) -> Client {
    Client::builder(fake.url(), BotToken::new(BOT_TOKEN).unwrap())
        .with_timeout(timeout)
        .build()
        .unwrap()
}

#[tokio::test]
async fn errors_are_typed_and_distinguishable() {
    let fake = FakeGrafolean::with_fixture_data().await;
    let c = client(&fake, Duration::from_millis(500));

    // 403: a resource without a grant names the resource.
    let err = c.entities(1).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Forbidden { resource, .. } if resource == "accounts/1/entities"),
        "{err:?}"
    );
    // 404 with the backend's detail.
    let err = c.entity(ACCOUNT_ID, 12345).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::NotFound { detail, .. } if detail == "No such entity"),
        "{err:?}"
    );
    // 5xx.
    fake.inject(Fault::status(503).times(1));
    let err = c.profile().await.unwrap_err();
    assert!(
        matches!(err, ApiError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    // 429 and 408 (a busy or slow backend or proxy) are failures to retry,
    // not a rejection of the request: values are sent again, and a refresh
    // keeps what it had.
    for status in [429, 408] {
        fake.inject(Fault::status(status).times(1));
        let err = c.credential(ACCOUNT_ID, 1).await.unwrap_err();
        assert!(
            matches!(err, ApiError::Server { status: s, .. } if s == status),
            "{err:?}"
        );
        assert!(err.is_transient());
    }
    // A timeout.
    fake.inject(Fault::delay(Duration::from_secs(2)).times(1));
    let err = c.profile().await.unwrap_err();
    assert!(matches!(err, ApiError::Timeout { .. }), "{err:?}");
    // A dropped connection.
    fake.inject(Fault::drop_connection().times(1));
    let err = c.profile().await.unwrap_err();
    assert!(matches!(err, ApiError::Network { .. }), "{err:?}");
    // 400 for a batch the backend rejects whole.
    let err = c
        .post_values(
            ACCOUNT_ID,
            &[PostValue {
                p: "a b".into(),
                v: 1.0,
            }],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    // Success for POST and PUT.
    c.post_values(
        ACCOUNT_ID,
        &[PostValue {
            p: "a.b".into(),
            v: 1.0,
        }],
    )
    .await
    .unwrap();
    c.put_values(
        ACCOUNT_ID,
        &[PutValue {
            p: "a.c".into(),
            t: 1_700_000_000.25,
            v: 2.0,
        }],
    )
    .await
    .unwrap();
    let stored = fake.values(ACCOUNT_ID);
    assert_eq!(stored.len(), 2);
}

#[tokio::test]
async fn connection_refused_is_a_network_error() {
    let fake = FakeGrafolean::with_fixture_data().await;
    fake.refuse_connections().await;
    let err = client(&fake, Duration::from_secs(1))
        .profile()
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Network { .. }), "{err:?}");
    assert!(err.to_string().contains("check BACKEND_URL"), "{err}");
}

#[tokio::test]
async fn malformed_json_is_its_own_error() {
    // A server that answers 200 with broken JSON, on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let body = "{\"user_id\": ";
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    let c = Client::builder(
        format!("http://{addr}/api"),
        BotToken::new(BOT_TOKEN).unwrap(),
    )
    .build()
    .unwrap();
    let err = c.profile().await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Malformed { resource, .. } if resource == "profile"),
        "{err:?}"
    );
}

/// A server on loopback that answers every request with `status` and a
/// body that never ends; returns its address and how many bytes it wrote.
/// The answer to every request: `status`, then a body that never ends. It
/// counts the bytes written, and how many connections the client dropped
/// (a write failed).
async fn endless_server(
    status: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = written.clone();
    let drops = dropped.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            let drops = drops.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!("HTTP/1.1 {status}\r\nconnection: close\r\n\r\n");
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                drops.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    (addr, written, dropped)
}

/// Waits (at most 5 s) until the client has dropped `n` connections.
async fn wait_for_drops(dropped: &std::sync::atomic::AtomicU64, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while dropped.load(std::sync::atomic::Ordering::Relaxed) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client kept {} of {n} connections open",
            n - dropped.load(std::sync::atomic::Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_endless_error_body_is_read_only_in_part() {
    let (addr, written, dropped) = endless_server("500 Internal Server Error").await;
    let c = Client::builder(
        format!("http://{addr}/api"),
        BotToken::new(BOT_TOKEN).unwrap(),
    )
    .with_timeout(Duration::from_secs(5))
    .build()
    .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), c.profile())
        .await
        .expect("the client does not read the whole body")
        .unwrap_err();
    let ApiError::Server { status, body, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 500);
    assert_eq!(body.len(), 300, "the body is cut for the log line");
    // The client read only the start and dropped the connection: the server's
    // writes stop once the socket buffers are full.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stalled = written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(stalled < 64 << 20, "the server wrote {stalled} bytes");
    wait_for_drops(&dropped, 1).await;
}

#[tokio::test]
async fn a_config_answer_over_the_limit_is_a_typed_error() {
    let (addr, _, dropped) = endless_server("200 OK").await;
    let c = Client::builder(
        format!("http://{addr}/api"),
        BotToken::new(BOT_TOKEN).unwrap(),
    )
    .with_max_response_bytes(1 << 20)
    .build()
    .unwrap();
    let err = c.entities(42).await.unwrap_err();
    wait_for_drops(&dropped, 1).await;
    assert!(
        matches!(&err, ApiError::TooLarge { method, resource, limit: 1_048_576 }
            if method == "GET" && resource == "accounts/42/entities"),
        "{err:?}"
    );
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("GET accounts/42/entities") && text.contains("1048576 bytes"),
        "{text}"
    );
    assert!(!text.contains(BOT_TOKEN), "{text}");
}

#[tokio::test]
async fn every_answer_is_read_with_a_limit() {
    let (addr, _, dropped) = endless_server("200 OK").await;
    let c = Client::builder(
        format!("http://{addr}/api"),
        BotToken::new(BOT_TOKEN).unwrap(),
    )
    .with_max_response_bytes(1 << 20)
    .build()
    .unwrap();
    let too_large = |err: ApiError, m: &str, r: &str, l: usize| match &err {
        ApiError::TooLarge {
            method,
            resource,
            limit,
        } if method == m && resource == r && *limit == l => {}
        _ => panic!("expected TooLarge {{ {m} {r} {l} }}, got {err:?}"),
    };
    // A filtered entity list is a config answer: the configurable limit.
    let err = c
        .entities_filtered(42, Some(7), Some("interface"))
        .await
        .unwrap_err();
    too_large(err, "GET", "accounts/42/entities", 1 << 20);
    // The answers to writes are small: 4 KiB.
    let put = [PutValue {
        p: "a.b".into(),
        t: 1.0,
        v: 1.0,
    }];
    let err = c.put_values(42, &put).await.unwrap_err();
    too_large(err, "PUT", "accounts/42/values", 4096);
    let post = [PostValue {
        p: "a.b".into(),
        v: 1.0,
    }];
    let err = c.post_values(42, &post).await.unwrap_err();
    too_large(err, "POST", "accounts/42/values", 4096);
    let entity = super::EntityInput::new("eth0", "interface", serde_json::json!({}));
    let err = c.create_entity(42, &entity).await.unwrap_err();
    too_large(err, "POST", "accounts/42/entities", 4096);
    wait_for_drops(&dropped, 4).await;
}

#[tokio::test(start_paused = true)]
async fn start_up_waits_for_the_backend_then_gives_up() {
    let fake = FakeGrafolean::with_fixture_data().await;
    fake.set_db_migration_needed(true);
    let c = client(&fake, Duration::from_secs(5));
    let err = c
        .wait_until_ready(3, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::NotReady { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("db_migration_needed=true"),
        "{err}"
    );
    fake.set_db_migration_needed(false);
    c.wait_until_ready(3, Duration::from_secs(1)).await.unwrap();
}

/// A `MakeWriter` that keeps every log line in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every error path, logged at TRACE by every crate (reqwest and hyper
/// included), and every error's `Display` and `Debug`: the token is nowhere.
#[tokio::test]
async fn the_token_never_leaks() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = FakeGrafolean::with_fixture_data().await;
    let good = client(&fake, Duration::from_millis(300));
    let wrong_token = "0badc0de-0000-4000-8000-000000000000";
    let wrong = Client::builder(fake.url(), BotToken::new(wrong_token).unwrap())
        .build()
        .unwrap();
    let mut seen = vec![format!("{good:?}"), format!("{wrong:?}")];
    let mut errors: Vec<ApiError> = Vec::new();

    errors.push(wrong.profile().await.unwrap_err());
    errors.push(good.entities(1).await.unwrap_err());
    errors.push(good.entity(ACCOUNT_ID, 1).await.unwrap_err());
    fake.inject(Fault::status(500).times(1));
    errors.push(good.accounts().await.unwrap_err());
    fake.inject(Fault::delay(Duration::from_secs(1)).times(1));
    errors.push(good.profile().await.unwrap_err());
    fake.inject(Fault::drop_connection().times(1));
    errors.push(good.profile().await.unwrap_err());
    errors.push(
        good.post_values(
            ACCOUNT_ID,
            &[PostValue {
                p: "system.x".into(),
                v: 1.0,
            }],
        )
        .await
        .unwrap_err(),
    );
    errors.push(
        good.post_values(
            ACCOUNT_ID,
            &[
                PostValue {
                    p: "a.a".into(),
                    v: 1.0,
                },
                PostValue {
                    p: "a.a".into(),
                    v: 2.0,
                },
            ],
        )
        .await
        .unwrap_err(),
    );
    let _ = fetch_job_configs(&good, "ping", &FetchOptions::default())
        .await
        .unwrap();
    let _ = fetch_job_configs(&wrong, "ping", &FetchOptions::default())
        .await
        .unwrap_err();
    fake.refuse_connections().await;
    errors.push(good.profile().await.unwrap_err());
    assert_eq!(errors.len(), 9);
    for e in &errors {
        seen.push(e.to_string());
        seen.push(format!("{e:?}"));
    }

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.lines().count() > 20,
        "TRACE logging captured too little:\n{logs}"
    );
    seen.push(logs);
    for text in &seen {
        for token in [BOT_TOKEN, wrong_token] {
            assert!(
                !text.to_ascii_lowercase().contains(token),
                "the token leaked into: {text}"
            );
        }
    }
}
