//! `POST`/`PUT …/values`: how the real backend parses and checks a batch.
//!
//! It follows the backend's Python code step by step, so that a client meets
//! the same answers here as in production (see the POST table in the fixtures'
//! README): first the body is parsed, then every item's keys are read, then
//! each item is validated in order, and only then the database refuses
//! booleans and duplicate `(path, t)` pairs. Any failure rejects the whole batch.

use serde_json::Value as Json;

/// One item that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub path: String,
    pub t: f64,
    pub v: f64,
}

/// Why a batch was refused, as the backend says it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Reject {
    /// 400, plain text, no Content-Type (a `ValidationError`).
    Validation(String),
    /// 400, JSON `{"detail": …}` (an `HTTPException`).
    Detail(&'static str),
    /// 500, text/plain `Internal Server Error` (an unhandled exception).
    Internal,
}

/// Handles a POST body. `query` holds the decoded query pairs, `now` the server time.
pub(crate) fn post(
    body: &[u8],
    json_content_type: bool,
    query: &[(String, String)],
    now: f64,
) -> Result<Vec<Item>, Reject> {
    let data: Json = serde_json::from_slice(body).map_err(|_| Reject::Internal)?;
    let last = |name: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let query_p = last("p").filter(|p| !p.is_empty());
    let mut raw: Vec<(Json, Json)> = Vec::new();
    if truthy(&data) {
        let list = data.as_array().ok_or(Reject::Internal)?;
        for x in list {
            let x = x.as_object().ok_or(Reject::Internal)?;
            if x.get("t").is_some_and(truthy) {
                return Err(Reject::Detail(
                    "Parameter 't' shouldn't be specified with POST",
                ));
            }
        }
        for x in list {
            let x = x.as_object().ok_or(Reject::Internal)?;
            let p = x.get("p").ok_or(Reject::Internal)?;
            let v = x.get("v").ok_or(Reject::Internal)?;
            raw.push((p.clone(), v.clone()));
        }
    } else if let Some(p) = query_p {
        if last("t").is_some_and(|t| !t.is_empty()) {
            return Err(Reject::Detail(
                "Query parameter 't' shouldn't be specified with POST",
            ));
        }
        raw.push((Json::String(p), last("v").map_or(Json::Null, Json::String)));
    } else {
        return Err(Reject::Detail("Missing data"));
    }
    let mut items = Vec::with_capacity(raw.len());
    for (p, v) in &raw {
        let path = check_path(p, json_content_type)?;
        let v = check_value(v, json_content_type)?;
        items.push(Item { path, t: now, v });
    }
    database_checks(&raw.iter().map(|(_, v)| v).collect::<Vec<_>>(), &items)?;
    Ok(items)
}

/// Handles a PUT body: a list of `{"p", "t", "v"}`.
pub(crate) fn put(body: &[u8], json_content_type: bool) -> Result<Vec<Item>, Reject> {
    let data: Json = serde_json::from_slice(body).map_err(|_| Reject::Internal)?;
    let list = match &data {
        Json::Array(list) => list.as_slice(),
        // Python iterates an empty dict or string without complaint.
        Json::Object(o) if o.is_empty() => &[],
        Json::String(s) if s.is_empty() => &[],
        _ => return Err(Reject::Internal),
    };
    let mut items = Vec::with_capacity(list.len());
    let mut raw_values = Vec::with_capacity(list.len());
    for x in list {
        let x = x.as_object().ok_or(Reject::Internal)?;
        let path = check_path(x.get("p").ok_or(Reject::Internal)?, json_content_type)?;
        let t = check_timestamp(x.get("t").ok_or(Reject::Internal)?, json_content_type)?;
        let raw_v = x.get("v").ok_or(Reject::Internal)?;
        let v = check_value(raw_v, json_content_type)?;
        raw_values.push(raw_v);
        items.push(Item { path, t, v });
    }
    database_checks(&raw_values, &items)?;
    Ok(items)
}

/// What PostgreSQL refuses after validation: `True`/`False` as a NUMERIC, and
/// one `(path, ts)` twice in one `INSERT … ON CONFLICT`.
fn database_checks(raw_values: &[&Json], items: &[Item]) -> Result<(), Reject> {
    if raw_values.iter().any(|v| v.is_boolean()) {
        return Err(Reject::Internal);
    }
    let mut seen = std::collections::HashSet::new();
    for i in items {
        if !seen.insert((i.path.as_str(), i.t.to_bits())) {
            return Err(Reject::Internal);
        }
    }
    Ok(())
}

fn validation(message: String, json_content_type: bool) -> Reject {
    let hint = if json_content_type {
        ""
    } else {
        " - maybe Content-Type header was not set to application/json?"
    };
    Reject::Validation(format!("Input validation failed: {message}{hint}"))
}

fn check_path(p: &Json, json_ct: bool) -> Result<String, Reject> {
    // A non-string path makes the backend's regex raise a TypeError.
    let p = p.as_str().ok_or(Reject::Internal)?;
    if !valid_path(p) {
        return Err(validation(
            format!("Invalid PathInputValue format: {p}"),
            json_ct,
        ));
    }
    if p.starts_with("system.") {
        return Err(validation(
            "Invalid path - should not start with 'system.'!".into(),
            json_ct,
        ));
    }
    Ok(p.to_owned())
}

fn check_value(v: &Json, json_ct: bool) -> Result<f64, Reject> {
    let parsed = match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => py_float(s),
        Json::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    };
    parsed.ok_or_else(|| {
        validation(
            format!("Invalid MeasuredValue format: {}", py_str(v)),
            json_ct,
        )
    })
}

fn check_timestamp(t: &Json, json_ct: bool) -> Result<f64, Reject> {
    let parsed = match t {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => py_float(s),
        _ => None,
    };
    parsed
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| validation(format!("Invalid Timestamp format: {}", py_str(t)), json_ct))
}

/// The backend's path rule:
/// `^([a-zA-Z0-9_-]|%2e|%3a)+([.]([a-zA-Z0-9_-]|%2e|%3a)+)*$`.
pub(crate) fn valid_path(p: &str) -> bool {
    p.split('.').all(|segment| {
        let mut rest = segment.as_bytes();
        if rest.is_empty() {
            return false;
        }
        while let Some(&c) = rest.first() {
            if rest.starts_with(b"%2e") || rest.starts_with(b"%3a") {
                rest = &rest[3..];
            } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' {
                rest = &rest[1..];
            } else {
                return false;
            }
        }
        true
    })
}

/// Python's `float(str)`: surrounding whitespace, a sign, `inf`/`infinity`/`nan`
/// in any case, and `_` between digits are accepted.
pub(crate) fn py_float(s: &str) -> Option<f64> {
    let s = s.trim();
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let magnitude = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if lower == "nan" {
        f64::NAN
    } else {
        let bytes = body.as_bytes();
        if !bytes
            .first()
            .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
        {
            return None;
        }
        for (i, c) in bytes.iter().enumerate() {
            let digit_at =
                |j: Option<usize>| j.and_then(|j| bytes.get(j)).is_some_and(u8::is_ascii_digit);
            if *c == b'_' && !(digit_at(i.checked_sub(1)) && digit_at(Some(i + 1))) {
                return None;
            }
        }
        body.replace('_', "").parse::<f64>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// Python's `str()` of a decoded JSON value, as used in the error messages.
fn py_str(v: &Json) -> String {
    match v {
        Json::Null => "None".into(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Python truthiness of a decoded JSON value.
fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post_json(body: &str) -> Result<Vec<Item>, Reject> {
        post(body.as_bytes(), true, &[], 1000.5)
    }

    fn text(s: &str) -> Result<Vec<Item>, Reject> {
        Err(Reject::Validation(format!("Input validation failed: {s}")))
    }

    #[test]
    fn path_rule_matches_the_backend_regex() {
        for ok in [
            "a",
            "entity.1.ping.p0.ok",
            "A-b_c.9",
            "system",
            "test.host%2eexample%3a8080",
        ] {
            assert!(valid_path(ok), "{ok}");
        }
        for bad in [
            "", ".a", "a.", "a..b", "a b", "a/b", "ä", "a.%2E", "a.%2f", "a%", "a\n",
        ] {
            assert!(!valid_path(bad), "{bad:?}");
        }
        assert!(valid_path(&format!("test.{}", "x".repeat(300))));
    }

    #[test]
    fn python_float_parsing() {
        assert_eq!(py_float("12.5"), Some(12.5));
        assert_eq!(py_float(" 1e-3\n"), Some(0.001));
        assert_eq!(py_float("1_000"), Some(1000.0));
        assert_eq!(py_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(py_float("NaN").unwrap().is_nan());
        for bad in ["abc", "", "1__0", "_1", "1_", "0x10", "--1", "e5", "."] {
            assert_eq!(py_float(bad), None, "{bad}");
        }
    }

    #[test]
    fn valid_batch_is_stamped_with_one_time() {
        let items =
            post_json(r#"[{"p":"a.b","v":1},{"p":"a.c","v":"NaN"},{"p":"a.d","v":2,"t":0}]"#)
                .unwrap();
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(|i| i.t == 1000.5));
        assert!(items[1].v.is_nan());
    }

    #[test]
    fn post_rejections_follow_the_fixture_table() {
        assert_eq!(
            post_json(r#"[{"p":"ok.x","v":1},{"p":"a b","v":1}]"#),
            text("Invalid PathInputValue format: a b")
        );
        assert_eq!(
            post_json(r#"[{"p":"system.x","v":1}]"#),
            text("Invalid path - should not start with 'system.'!")
        );
        assert_eq!(
            post_json(r#"[{"p":"a","v":"abc"}]"#),
            text("Invalid MeasuredValue format: abc")
        );
        assert_eq!(
            post_json(r#"[{"p":"a","v":null}]"#),
            text("Invalid MeasuredValue format: None")
        );
        assert_eq!(
            post(br#"[{"p":"a b","v":1}]"#, false, &[], 0.0),
            text(
                "Invalid PathInputValue format: a b - maybe Content-Type header was not set to application/json?"
            )
        );
        assert_eq!(
            post_json(r#"[{"p":"a","v":1,"t":5}]"#),
            Err(Reject::Detail(
                "Parameter 't' shouldn't be specified with POST"
            ))
        );
        assert_eq!(post_json("[]"), Err(Reject::Detail("Missing data")));
        for internal in [
            r#"[{"p":"a","v":true}]"#,
            r#"[{"p":"a"}]"#,
            r#"{"p":"a","v":1}"#,
            "nope",
            r#"[{"p":"a","v":1},{"p":"a","v":2}]"#,
            "",
            "[1]",
        ] {
            assert_eq!(post_json(internal), Err(Reject::Internal), "{internal}");
        }
        // A missing key fails before any item is validated.
        assert_eq!(
            post_json(r#"[{"p":"a b","v":1},{"p":"x"}]"#),
            Err(Reject::Internal)
        );
    }

    #[test]
    fn single_value_query_form_needs_a_falsy_json_body() {
        let q = vec![
            ("p".to_string(), "q.x".to_string()),
            ("v".to_string(), "3".to_string()),
        ];
        assert_eq!(
            post(b"null", true, &q, 7.0),
            Ok(vec![Item {
                path: "q.x".into(),
                t: 7.0,
                v: 3.0
            }])
        );
        assert_eq!(post(b"[]", true, &q, 7.0).unwrap().len(), 1);
        assert_eq!(post(b"", true, &q, 7.0), Err(Reject::Internal));
        let no_v = vec![("p".to_string(), "q.x".to_string())];
        assert_eq!(
            post(b"null", true, &no_v, 7.0),
            text("Invalid MeasuredValue format: None")
        );
    }

    #[test]
    fn put_needs_valid_t() {
        let items = put(
            br#"[{"p":"t.p","t":1795307512,"v":1.5},{"p":"t.p","t":"1795307512.25","v":2.5}]"#,
            true,
        )
        .unwrap();
        assert_eq!(items[1].t, 1795307512.25);
        assert_eq!(put(br#"[{"p":"t.p","v":1}]"#, true), Err(Reject::Internal));
        assert_eq!(
            put(br#"[{"p":"t.p","t":"yesterday","v":1}]"#, true),
            text("Invalid Timestamp format: yesterday")
        );
        assert_eq!(
            put(
                br#"[{"p":"t.p","t":1,"v":1},{"p":"t.p","t":1,"v":2}]"#,
                true
            ),
            Err(Reject::Internal)
        );
        assert_eq!(put(b"[]", true), Ok(vec![]));
        assert_eq!(put(b"null", true), Err(Reject::Internal));
    }
}
