//! The request handler: it records each request, applies the faults, and then
//! answers as the real backend would (routing, bot auth, permissions, errors).

use std::sync::{Arc, PoisonError};

use axum::body::{Body, to_bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State as AxumState};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::conn::ConnAddr;
use super::fault::{FaultKind, judge};
use super::http::{
    Req, access_denied, detail, forbidden, internal, json_response, not_found, query_pairs,
    text_response,
};
use super::model::{RecordedRequest, StoredValue, ValueMethod, unix_now};
use super::state::{self, State};
use super::values::{self, Reject};

/// The largest request body the fake reads.
const MAX_BODY: usize = 64 << 20;

/// Records, applies faults, answers.
pub(crate) async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let kill = req
        .extensions()
        .get::<ConnectInfo<ConnAddr>>()
        .map(|c| c.0.kill.clone());
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let arrived = tokio::time::Instant::now();
    let seq = shared.record(RecordedRequest {
        seq: 0,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at: std::time::SystemTime::now(),
        arrived,
        status: None,
    });
    let verdict = judge(
        &mut shared.faults.lock().unwrap_or_else(PoisonError::into_inner),
        parts.method.as_str(),
        parts.uri.path(),
    );
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    if !verdict.latency.is_zero() {
        super::latency::sleep_until(arrived.into_std() + verdict.latency).await;
    }
    let answer = |shared: &Shared| {
        let query = query_pairs(parts.uri.query());
        let req = Req {
            method: &parts.method,
            path: parts.uri.path(),
            raw_query: parts.uri.query(),
            query: &query,
            headers: &parts.headers,
            body: &body,
            arrived,
        };
        route(
            &mut shared.state.lock().unwrap_or_else(PoisonError::into_inner),
            &req,
        )
    };
    let cut = |kill: Option<CancellationToken>| {
        if let Some(kill) = kill {
            kill.cancel();
        }
        // Whatever is returned now is never written: the connection is cut.
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    };
    let response = match verdict.action {
        Some(FaultKind::Drop) => return cut(kill),
        Some(FaultKind::DropAfterHandling) => {
            answer(&shared);
            shared.notify();
            return cut(kill);
        }
        Some(FaultKind::Status(code)) => fault_response(code),
        Some(FaultKind::Body(body)) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Some(FaultKind::EndlessBody) => endless_body(),
        Some(FaultKind::Delay(_) | FaultKind::Latency(_)) | None => answer(&shared),
    };
    shared.set_status(seq, response.status().as_u16());
    response
}

/// `{"list":[` and then `{"id":1,…},` forever, in 64 KiB chunks. Each chunk
/// is one shared buffer, so the server's memory stays flat however much the
/// client reads.
fn endless_body() -> Response {
    let item = br#"{"id":1,"name":"endless","entity_type":"device","details":{}},"#;
    let chunk = axum::body::Bytes::from(item.repeat(65_536 / item.len()));
    let head = futures::stream::once(async {
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(b"{\"list\":["))
    });
    let rest = futures::stream::repeat_with(move || Ok(chunk.clone()));
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(head.chain(rest)),
    )
        .into_response()
}

fn fault_response(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match code {
        401 => access_denied(),
        403 => forbidden(),
        500 => internal(),
        _ => status.into_response(),
    }
}

/// The endpoints the fake knows, with their raw path parameters.
enum Route<'a> {
    StatusInfo,
    Profile,
    Permissions,
    Accounts,
    Account(&'a str),
    List(&'a str, Kind),
    One(&'a str, Kind, &'a str),
    Values(&'a str),
    ValuesGet(&'a str, &'a str),
}

#[derive(Clone, Copy)]
enum Kind {
    Entities,
    Credentials,
    Sensors,
}

impl Kind {
    fn id_name(self) -> &'static str {
        match self {
            Kind::Entities => "entity_id",
            Kind::Credentials => "credential_id",
            Kind::Sensors => "sensor_id",
        }
    }
}

fn route(state: &mut State, req: &Req<'_>) -> Response {
    let Some(rest) = req.path.strip_prefix("/api/") else {
        return not_found();
    };
    // Starlette redirects `…//` to the slash-less URL, but only for a known route.
    let double_slash = rest.ends_with("//");
    let resource = if double_slash {
        rest.trim_end_matches('/')
    } else {
        rest.strip_suffix('/').unwrap_or(rest)
    };
    let segments: Vec<&str> = resource.split('/').collect();
    let route = match segments.as_slice() {
        ["status", "info"] => Route::StatusInfo,
        ["profile"] => Route::Profile,
        ["profile", "permissions"] => Route::Permissions,
        ["accounts"] => Route::Accounts,
        ["accounts", a] => Route::Account(a),
        ["accounts", a, "values"] => Route::Values(a),
        ["accounts", a, "values", p] => Route::ValuesGet(a, p),
        ["accounts", a, kind] => match kind_of(kind) {
            Some(k) => Route::List(a, k),
            None => return not_found(),
        },
        ["accounts", a, kind, id] => match kind_of(kind) {
            Some(k) => Route::One(a, k, id),
            None => return not_found(),
        },
        _ => return not_found(),
    };
    if double_slash {
        return redirect_without_slashes(req);
    }
    let method = req.method;
    let method_ok = match route {
        Route::Values(_) => method == Method::POST || method == Method::PUT,
        // Entity writes: see `entity_writes`.
        Route::List(_, Kind::Entities) => method == Method::GET || method == Method::POST,
        Route::One(_, Kind::Entities, _) => {
            method == Method::GET || method == Method::PUT || method == Method::DELETE
        }
        _ => method == Method::GET,
    };
    if !method_ok {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"detail": "Method Not Allowed"}),
        );
    }
    if let Route::StatusInfo = route {
        return Json200(json!({
            "alive": true,
            "db_migration_needed": state.db_migration_needed,
            "db_version": 30,
            "user_exists": state.user_exists,
            "cors_domains": [],
            "mqtt_ws_hostname": "",
            "mqtt_ws_port": "",
            "enable_signup": false,
        }))
        .into_response();
    }
    let bot_id = match authenticate(state, req) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let open = method == Method::GET
        && ["profile", "profile/permissions", "accounts", "bots"].contains(&resource);
    if !open && !state.allowed(bot_id, method.as_str(), resource) {
        return forbidden();
    }
    match route {
        Route::StatusInfo => unreachable!("answered before authentication"),
        Route::Profile => Json200(state::profile_json(&state.bots[&bot_id])).into_response(),
        Route::Permissions => {
            let list: Vec<Json> = state
                .permissions_of(bot_id)
                .into_iter()
                .map(state::permission_json)
                .collect();
            Json200(json!({ "list": list })).into_response()
        }
        Route::Accounts => {
            let list: Vec<Json> = state
                .accounts_of(bot_id)
                .into_iter()
                .map(state::account_json)
                .collect();
            Json200(json!({ "list": list })).into_response()
        }
        Route::Account(a) => match ids(&[("account_id", a)]) {
            Err(r) => *r,
            Ok(ids) => match state.accounts.get(&ids[0]) {
                Some(acc) => Json200(state::account_json(acc)).into_response(),
                None => detail(StatusCode::NOT_FOUND, "No such account"),
            },
        },
        Route::List(a, Kind::Entities) if method == Method::POST => {
            match ids(&[("account_id", a)]) {
                Err(r) => *r,
                Ok(ids) => super::entity_writes::create(state, req, ids[0]),
            }
        }
        Route::One(a, Kind::Entities, id) if method != Method::GET => {
            match ids(&[("account_id", a), ("entity_id", id)]) {
                Err(r) => *r,
                Ok(ids) if method == Method::PUT => {
                    super::entity_writes::update(state, req, ids[0], ids[1])
                }
                Ok(ids) => super::entity_writes::delete(state, ids[0], ids[1]),
            }
        }
        Route::List(a, kind) => match ids(&[("account_id", a)]) {
            Err(r) => *r,
            Ok(ids) => Json200(json!({ "list": list(state, ids[0], kind) })).into_response(),
        },
        Route::One(a, kind, id) => match ids(&[("account_id", a), (kind.id_name(), id)]) {
            Err(r) => *r,
            Ok(ids) => one(state, ids[0], kind, ids[1]),
        },
        Route::Values(a) => match ids(&[("account_id", a)]) {
            Err(r) => *r,
            Ok(ids) => store_values(state, req, ids[0]),
        },
        Route::ValuesGet(a, path) => match ids(&[("account_id", a)]) {
            Err(r) => *r,
            Ok(ids) => read_values(state, req, ids[0], path),
        },
    }
}

fn kind_of(segment: &str) -> Option<Kind> {
    match segment {
        "entities" => Some(Kind::Entities),
        "credentials" => Some(Kind::Credentials),
        "sensors" => Some(Kind::Sensors),
        _ => None,
    }
}

/// Bot auth as the backend does it: `?b=<uuid>` only, and never with an
/// `Authorization` header (which is always parsed as a JWT).
fn authenticate(state: &State, req: &Req<'_>) -> Result<u64, Box<Response>> {
    if req.headers.contains_key(header::AUTHORIZATION) {
        return Err(Box::new(access_denied()));
    }
    let Some(token) = req.param("b") else {
        return Err(Box::new(access_denied()));
    };
    let (token, newline) = match token.strip_suffix('\n') {
        Some(t) => (t, true),
        None => (token, false),
    };
    if !is_uuid(token) {
        return Err(Box::new(access_denied()));
    }
    if newline {
        // The regex lets it through; PostgreSQL then refuses it as a UUID.
        return Err(Box::new(text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not validate access",
        )));
    }
    state
        .bot_by_token(token)
        .map(|b| b.id)
        .ok_or_else(|| Box::new(access_denied()))
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// Parses integer path parameters; all failures are listed, as FastAPI does.
fn ids(params: &[(&str, &str)]) -> Result<Vec<u64>, Box<Response>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (name, raw) in params {
        let digits = raw.strip_prefix('+').unwrap_or(raw);
        match digits.parse::<u64>() {
            Ok(id) if !digits.is_empty() => out.push(id),
            _ => errors.push(json!({
                "loc": ["path", name],
                "msg": "value is not a valid integer",
                "type": "type_error.integer",
            })),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Box::new(json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "detail": errors }),
        )))
    }
}

fn list(state: &State, account: u64, kind: Kind) -> Vec<Json> {
    match kind {
        Kind::Entities => state
            .entities
            .values()
            .filter(|e| e.account_id == account)
            .map(|e| {
                let mut json = state::entity_json(e);
                if state.list_without_protocols {
                    json.as_object_mut().map(|o| o.remove("protocols"));
                }
                json
            })
            .collect(),
        Kind::Credentials => state
            .credentials
            .values()
            .filter(|c| c.account_id == account)
            .map(state::credential_json)
            .collect(),
        Kind::Sensors => state
            .sensors
            .values()
            .filter(|s| s.account_id == account)
            .map(state::sensor_json)
            .collect(),
    }
}

fn one(state: &State, account: u64, kind: Kind, id: u64) -> Response {
    let found = match kind {
        Kind::Entities => state
            .entities
            .get(&id)
            .filter(|e| e.account_id == account)
            .map(state::entity_json),
        Kind::Credentials => state
            .credentials
            .get(&id)
            .filter(|c| c.account_id == account)
            .map(state::credential_json),
        Kind::Sensors => state
            .sensors
            .get(&id)
            .filter(|s| s.account_id == account)
            .map(state::sensor_json),
    };
    match (found, kind) {
        (Some(body), _) => Json200(body).into_response(),
        (None, Kind::Entities) => detail(StatusCode::NOT_FOUND, "No such entity"),
        (None, Kind::Credentials) => detail(StatusCode::NOT_FOUND, "No such credential"),
        (None, Kind::Sensors) => detail(StatusCode::NOT_FOUND, "No such sensor"),
    }
}

fn store_values(state: &mut State, req: &Req<'_>, account: u64) -> Response {
    let json_ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    let (result, method) = if req.method == Method::POST {
        (
            values::post(req.body, json_ct, req.query, unix_now()),
            ValueMethod::Post,
        )
    } else {
        (values::put(req.body, json_ct), ValueMethod::Put)
    };
    match result {
        Err(Reject::Validation(text)) => text_response(StatusCode::BAD_REQUEST, &text),
        Err(Reject::Detail(d)) => detail(StatusCode::BAD_REQUEST, d),
        Err(Reject::Internal) => internal(),
        // The values table's foreign key refuses an account that does not exist.
        Ok(items) if !items.is_empty() && !state.accounts.contains_key(&account) => {
            detail(StatusCode::BAD_REQUEST, "Invalid input format")
        }
        Ok(items) => {
            for i in items {
                state.store(StoredValue {
                    account_id: account,
                    path: i.path,
                    t: i.t,
                    v: i.v,
                    method,
                    arrived: req.arrived,
                });
            }
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

/// `GET …/values/<path>?t0=&t1=`, for bots that were granted it.
fn read_values(state: &State, req: &Req<'_>, account: u64, path: &str) -> Response {
    let bound = |name| req.param(name).and_then(values::py_float);
    let (t0, t1) = (
        bound("t0").unwrap_or(f64::MIN),
        bound("t1").unwrap_or(f64::MAX),
    );
    let mut data: Vec<(f64, f64)> = state
        .values
        .iter()
        .filter(|v| v.account_id == account && v.path == path && v.t >= t0 && v.t <= t1)
        .map(|v| (v.t, v.v))
        .collect();
    data.sort_by(|a, b| a.0.total_cmp(&b.0));
    let data: Vec<Json> = data
        .into_iter()
        .map(|(t, v)| json!({ "t": t, "v": v }))
        .collect();
    Json200(json!({ "paths": { path: { "next_data_point": null, "data": data } } })).into_response()
}

/// `…//` → 307 to the URL without trailing slashes, query kept (Starlette).
fn redirect_without_slashes(req: &Req<'_>) -> Response {
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let mut location = format!("http://{host}{}", req.path.trim_end_matches('/'));
    if let Some(q) = req.raw_query {
        location.push('?');
        location.push_str(q);
    }
    Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .unwrap_or_default()
}

/// A JSON 200.
struct Json200(Json);

impl IntoResponse for Json200 {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let pairs = query_pairs(Some("b=abc%0A&p=a.b&v=1+2&x&e=%zz"));
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("b"), Some("abc\n"));
        assert_eq!(get("v"), Some("1 2"));
        assert_eq!(get("x"), Some(""));
        assert_eq!(get("e"), Some("%zz"));
        assert_eq!(query_pairs(Some("a=%4")), vec![("a".into(), "%4".into())]);
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid(crate::testing::BOT_TOKEN));
        assert!(is_uuid(&crate::testing::BOT_TOKEN.to_uppercase()));
        assert!(!is_uuid("not-a-valid-token"));
        assert!(!is_uuid(""));
    }
}
