//! The HTTP pieces of the fake backend that its handlers share: a parsed
//! request, the backend's kinds of answers, and the query-string decoder.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

/// One request, parsed.
pub(crate) struct Req<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) raw_query: Option<&'a str>,
    pub(crate) query: &'a [(String, String)],
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
    pub(crate) arrived: tokio::time::Instant,
}

impl Req<'_> {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) fn json_response(status: StatusCode, body: Json) -> Response {
    (status, axum::Json(body)).into_response()
}

pub(crate) fn detail(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "detail": message }))
}

pub(crate) fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not Found")
}

/// A plain-text body without a Content-Type header, as the backend sends its 400/401/403s.
pub(crate) fn text_response(status: StatusCode, text: &str) -> Response {
    Response::builder()
        .status(status)
        .body(Body::from(text.to_owned()))
        .unwrap_or_default()
}

pub(crate) fn access_denied() -> Response {
    text_response(StatusCode::UNAUTHORIZED, "Access denied")
}

pub(crate) fn forbidden() -> Response {
    text_response(
        StatusCode::FORBIDDEN,
        "Access to resource denied, insufficient permissions",
    )
}

/// Starlette's answer to an unhandled exception.
pub(crate) fn internal() -> Response {
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from("Internal Server Error"))
        .unwrap_or_default()
}

/// Decodes `a=1&b=%20x` into pairs (`+` is a space).
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}
