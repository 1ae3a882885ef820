//! Replays every recorded fixture against the fake backend, over loopback.
//!
//! Each fixture in `tests/fixtures/grafolean-api/` is a request sent to the
//! real Grafolean backend and its response. Here the request is sent to a fresh
//! [`FakeGrafolean::with_fixture_data`] (same ids as the recording, the fake's
//! tokens in place of the placeholders), and the status, the Content-Type
//! header and the body must match exactly. Fixtures that need an admin JWT are
//! skipped; the list of skips is fixed, so none can be skipped silently.

use std::path::PathBuf;

use grafolean_collector::testing::{BOT_TOKEN, FakeGrafolean, OTHER_BOT_TOKEN, SNMP_BOT_TOKEN};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::Value as Json;

/// Fixtures the fake does not replay, and why.
const SKIPPED: &[(&str, &str)] = &[
    ("get-paths-jwt", "admin JWT login is not implemented"),
    (
        "get-values-p0-ok-jwt",
        "admin JWT login; data from a real ping run",
    ),
    (
        "get-values-p0-rtt-jwt",
        "admin JWT login; data from a real ping run",
    ),
    (
        "get-values-p1-ok-jwt",
        "admin JWT login; data from a real ping run",
    ),
    (
        "get-values-success-jwt",
        "admin JWT login; data from a real ping run",
    ),
    (
        "get-values-put-jwt",
        "admin JWT login; data from put-values",
    ),
    (
        "post-values-missing-account-superuser-jwt",
        "admin JWT login is not implemented",
    ),
];

fn fixtures() -> Vec<(String, Json)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grafolean-api");
    let mut list: Vec<(String, Json)> = std::fs::read_dir(&dir)
        .expect("the fixtures directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let json = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (name, json)
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

fn substitute(s: &str) -> String {
    s.replace("<BOT_TOKEN_UPPERCASE>", &BOT_TOKEN.to_uppercase())
        .replace("<BOT_TOKEN>", BOT_TOKEN)
        .replace("<OTHER_BOT_TOKEN>", OTHER_BOT_TOKEN)
        .replace("<SNMP_BOT_TOKEN>", SNMP_BOT_TOKEN)
}

fn uses_jwt(fixture: &Json) -> bool {
    fixture["request"]["headers"].as_object().is_some_and(|h| {
        h.values()
            .any(|v| v.as_str().is_some_and(|v| v.contains("<JWT>")))
    })
}

/// Collects mismatches instead of stopping at the first one.
macro_rules! check_eq {
    ($errors:expr, $got:expr, $want:expr, $($what:tt)+) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            $errors.push(format!("{}: got {:?}, want {:?}", format!($($what)+), got, want));
        }
    }};
}

/// Sends the fixture's request to `fake` and compares the answer; returns the
/// status and the mismatches.
async fn replay(
    name: &str,
    fixture: &Json,
    fake: &FakeGrafolean,
    client: &reqwest::Client,
) -> (u16, Vec<String>) {
    let mut errors = Vec::new();
    let req = &fixture["request"];
    let want = &fixture["response"];
    let path = req["path"].as_str().unwrap();
    let url = format!("http://{}{path}", fake.addr());
    let method = reqwest::Method::from_bytes(req["method"].as_str().unwrap().as_bytes()).unwrap();
    let query: Vec<(String, String)> = req["query"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), substitute(v.as_str().unwrap())))
        .collect();
    let mut builder = client.request(method, &url).query(&query);
    let mut has_content_type = false;
    if let Some(headers) = req["headers"].as_object() {
        for (k, v) in headers {
            has_content_type |= k.eq_ignore_ascii_case("content-type");
            builder = builder.header(k.as_str(), substitute(v.as_str().unwrap()));
        }
    }
    // `body: null` means no body, except that a JSON `null` was sent when the
    // Content-Type was set without a body_text (post-values-query-params-null-body).
    if let Some(text) = req["body_text"].as_str() {
        builder = builder.body(text.to_owned());
    } else if !req["body"].is_null() || has_content_type {
        builder = builder.body(serde_json::to_vec(&req["body"]).unwrap());
    }
    let response = builder
        .send()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));

    let status = response.status().as_u16();
    check_eq!(
        errors,
        status,
        want["status"].as_u64().unwrap() as u16,
        "{name}: status"
    );
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    check_eq!(
        errors,
        content_type.as_deref(),
        want["content_type"].as_str(),
        "{name}: content type"
    );
    if let Some(location) = want["location"].as_str() {
        let got = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let expected = substitute(location).replace("127.0.0.1:8510", &fake.addr().to_string());
        check_eq!(errors, got, Some(expected), "{name}: location");
    }
    let body = response.bytes().await.unwrap();
    if content_type.as_deref() == Some("application/json") {
        let got: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
        check_eq!(errors, got, want["body"], "{name}: body");
    } else {
        let got = String::from_utf8_lossy(&body);
        check_eq!(
            errors,
            got,
            want["body"].as_str().unwrap_or(""),
            "{name}: body"
        );
    }
    (status, errors)
}

#[tokio::test]
async fn every_supported_fixture_replays_exactly() {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut replayed = Vec::new();
    let mut skipped = Vec::new();
    let mut errors = Vec::new();
    for (name, fixture) in fixtures() {
        if let Some((_, why)) = SKIPPED.iter().find(|(n, _)| *n == name) {
            assert!(
                uses_jwt(&fixture),
                "{name} is listed as skipped but needs no JWT"
            );
            println!("skip   {name}: {why}");
            skipped.push(name);
            continue;
        }
        assert!(
            !uses_jwt(&fixture),
            "{name} needs a JWT but is not in SKIPPED"
        );
        let fake = FakeGrafolean::with_fixture_data().await;
        let (status, mismatches) = replay(&name, &fixture, &fake, &client).await;
        errors.extend(mismatches);
        // Values are stored exactly when the backend answered 204, as a whole batch.
        let stored = fake.all_values().len();
        let is_values = fixture["request"]["path"]
            .as_str()
            .unwrap()
            .contains("/values");
        let method = fixture["request"]["method"].as_str().unwrap();
        if is_values && status == 204 {
            let body = &fixture["request"]["body"];
            let sent = body.as_array().map_or(1, |a| a.len().max(1));
            check_eq!(errors, stored, sent, "{name}: stored values");
        } else {
            check_eq!(errors, stored, 0, "{name}: stored values");
        }
        check_eq!(errors, fake.request_count(), 1, "{name}: recorded requests");
        println!("replay {name}: {method} -> {status}");
        replayed.push(name);
    }
    println!(
        "{} fixtures replayed, {} skipped",
        replayed.len(),
        skipped.len()
    );
    assert!(
        errors.is_empty(),
        "{} mismatches:\n{}",
        errors.len(),
        errors.join("\n")
    );
    assert_eq!(
        skipped.len(),
        SKIPPED.len(),
        "a listed skip has no fixture file"
    );
    assert_eq!(
        replayed.len(),
        66,
        "the fixture set changed; update this count"
    );
}

/// "A trailing slash is optional on every endpoint": each replayable fixture
/// gets the same answer with its trailing slash added or removed.
#[tokio::test]
async fn trailing_slash_is_optional_everywhere() {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut errors = Vec::new();
    let mut count = 0;
    for (name, mut fixture) in fixtures() {
        let path = fixture["request"]["path"].as_str().unwrap().to_owned();
        if uses_jwt(&fixture) || path.ends_with("//") {
            continue;
        }
        let toggled = match path.strip_suffix('/') {
            Some(p) => p.to_owned(),
            None => format!("{path}/"),
        };
        fixture["request"]["path"] = Json::String(toggled);
        let fake = FakeGrafolean::with_fixture_data().await;
        errors.extend(
            replay(&format!("{name} (slash toggled)"), &fixture, &fake, &client)
                .await
                .1,
        );
        count += 1;
    }
    println!("{count} fixtures replayed with the trailing slash toggled");
    assert_eq!(count, 65);
    assert!(
        errors.is_empty(),
        "{} mismatches:\n{}",
        errors.len(),
        errors.join("\n")
    );
}
