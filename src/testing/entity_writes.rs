//! Entity writes, as the real backend answers them (`backend/api/accounts.py`
//! and `Entity` in `backend/datatypes.py`):
//!
//! | request | answer |
//! |---|---|
//! | `POST accounts/{a}/entities` | 201 `{"id": …}` |
//! | `PUT accounts/{a}/entities/{e}` | 204; name, type, details and protocols replaced, parent kept; 404 `{"detail": "No such entity"}` |
//! | `DELETE accounts/{a}/entities/{e}` | 204; 404 `{"detail": "No such entity"}` |
//! | a body that fails `EntitySchemaInputs` or names a credential, bot or sensor of another account or protocol | 400, plain text `Input validation failed: …` |
//!
//! Permissions are checked by the caller, as for every route.

use std::collections::BTreeMap;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use super::http::{Req, detail, json_response, text_response};
use super::model::{Entity, ProtocolConfig, SensorRef, random_id};
use super::state::State;

struct Input {
    name: String,
    entity_type: String,
    parent: Option<u64>,
    details: Json,
    protocols: BTreeMap<String, ProtocolConfig>,
}

fn invalid(req: &Req<'_>, message: &str) -> Response {
    let json_ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    let message = if json_ct {
        message.to_string()
    } else {
        format!("{message} - maybe Content-Type header was not set to application/json?")
    };
    text_response(
        StatusCode::BAD_REQUEST,
        &format!("Input validation failed: {message}"),
    )
}

fn id_of(v: &Json) -> Option<u64> {
    match v {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Parses and validates a body against `EntitySchemaInputs` and the
/// account's credentials, bots and sensors.
fn parse(state: &State, req: &Req<'_>, account: u64) -> Result<Input, Box<Response>> {
    let fail = |m: &str| Box::new(invalid(req, m));
    let body: Json = serde_json::from_slice(req.body).map_err(|_| fail("invalid JSON"))?;
    let obj = body
        .as_object()
        .ok_or_else(|| fail("body is not of type 'object'"))?;
    let string = |k: &str| -> Result<String, Box<Response>> {
        match obj.get(k) {
            Some(Json::String(s)) => Ok(s.clone()),
            Some(other) => Err(fail(&format!("{other} is not of type 'string'"))),
            None => Err(fail(&format!("'{k}' is a required property"))),
        }
    };
    let name = string("name")?;
    let entity_type = string("entity_type")?;
    let details = match obj.get("details") {
        Some(d @ Json::Object(_)) => d.clone(),
        Some(other) => return Err(fail(&format!("{other} is not of type 'object'"))),
        None => return Err(fail("'details' is a required property")),
    };
    let parent = match obj.get("parent") {
        None | Some(Json::Null) => None,
        Some(Json::Number(n)) => Some(
            n.as_u64()
                .ok_or_else(|| fail(&format!("{n} is not a valid parent")))?,
        ),
        Some(other) => return Err(fail(&format!("{other} is not of type 'number', 'null'"))),
    };
    let mut protocols = BTreeMap::new();
    if let Some(p) = obj.get("protocols") {
        let p = p
            .as_object()
            .ok_or_else(|| fail(&format!("{p} is not of type 'object'")))?;
        for (protocol, config) in p {
            let credential = config.get("credential").and_then(id_of);
            let credential = credential
                .filter(|c| {
                    state
                        .credentials
                        .get(c)
                        .is_some_and(|c| c.account_id == account && c.protocol == *protocol)
                })
                .ok_or_else(|| {
                    fail(&format!(
                        "Invalid credential for this account/protocol combination: {}",
                        config.get("credential").unwrap_or(&Json::Null)
                    ))
                })?;
            let bot = config.get("bot").and_then(id_of);
            let bot_ok = bot.is_some_and(|b| {
                state.bots.get(&b).is_some_and(|b| {
                    b.tied_to_account.is_none_or(|a| a == account)
                        && b.protocol.as_deref() == Some(protocol.as_str())
                })
            });
            if !bot_ok {
                return Err(fail(&format!(
                    "Invalid bot for this account: {}",
                    config.get("bot").unwrap_or(&Json::Null)
                )));
            }
            let mut sensors = Vec::new();
            for s in config
                .get("sensors")
                .and_then(Json::as_array)
                .map_or(&[][..], Vec::as_slice)
            {
                let id = s
                    .get("sensor")
                    .and_then(id_of)
                    .filter(|id| {
                        state
                            .sensors
                            .get(id)
                            .is_some_and(|x| x.account_id == account && x.protocol == *protocol)
                    })
                    .ok_or_else(|| {
                        fail(&format!(
                            "Invalid sensor for this account/protocol combination: {}",
                            s.get("sensor").unwrap_or(&Json::Null)
                        ))
                    })?;
                let interval = s.get("interval").and_then(Json::as_f64).map(|f| f as u32);
                sensors.push(SensorRef {
                    sensor: id,
                    interval,
                });
            }
            protocols.insert(
                protocol.clone(),
                ProtocolConfig {
                    credential,
                    sensors,
                    bot,
                },
            );
        }
    }
    Ok(Input {
        name,
        entity_type,
        parent,
        details,
        protocols,
    })
}

/// `POST accounts/{a}/entities`.
pub(crate) fn create(state: &mut State, req: &Req<'_>, account: u64) -> Response {
    let input = match parse(state, req, account) {
        Ok(input) => input,
        Err(r) => return *r,
    };
    let mut id = random_id();
    while state.entities.contains_key(&id) {
        id = random_id();
    }
    state.entities.insert(
        id,
        Entity {
            id,
            account_id: account,
            name: input.name,
            entity_type: input.entity_type,
            parent: input.parent,
            details: input.details,
            protocols: input.protocols,
        },
    );
    json_response(StatusCode::CREATED, json!({ "id": id }))
}

/// `PUT accounts/{a}/entities/{e}`.
pub(crate) fn update(state: &mut State, req: &Req<'_>, account: u64, id: u64) -> Response {
    let input = match parse(state, req, account) {
        Ok(input) => input,
        Err(r) => return *r,
    };
    match state
        .entities
        .get_mut(&id)
        .filter(|e| e.account_id == account)
    {
        Some(e) => {
            // The backend's UPDATE never touches `parent`.
            e.name = input.name;
            e.entity_type = input.entity_type;
            e.details = input.details;
            e.protocols = input.protocols;
            StatusCode::NO_CONTENT.into_response()
        }
        None => detail(StatusCode::NOT_FOUND, "No such entity"),
    }
}

/// `DELETE accounts/{a}/entities/{e}`.
pub(crate) fn delete(state: &mut State, account: u64, id: u64) -> Response {
    if state
        .entities
        .get(&id)
        .is_some_and(|e| e.account_id == account)
    {
        state.entities.remove(&id);
        StatusCode::NO_CONTENT.into_response()
    } else {
        detail(StatusCode::NOT_FOUND, "No such entity")
    }
}
