//! Entity writes through the API client, against the fake backend, which
//! answers them as the real backend's `accounts.py` does: 201 `{"id"}` on
//! POST, 204 on PUT and DELETE, 404 `No such entity`, 400 plain text for an
//! invalid body, 403 without a grant; the list ignores `parent` and
//! `entity_type`, so the client filters.

use grafolean_collector::api::BotToken;
use grafolean_collector::api::{ApiError, Client, EntityInput};
use grafolean_collector::testing::{FakeAccount, FakeGrafolean};
use serde_json::json;

async fn setup(grant_writes: bool) -> (FakeGrafolean, Client, u64, u64) {
    let fake = FakeGrafolean::start().await;
    let account = fake.put_account(FakeAccount::new("writes"));
    let bot = fake.add_account_bot(account, "snmp");
    if grant_writes {
        fake.grant(
            bot.id,
            Some(&format!("accounts/{account}/entities")),
            Some(&["POST", "PUT", "DELETE"]),
        );
    }
    let device = fake.put_entity(grafolean_collector::testing::FakeEntity::device(
        account,
        "router",
        "192.0.2.1",
    ));
    let client = Client::builder(fake.url(), BotToken::new(&bot.token).unwrap())
        .build()
        .unwrap();
    (fake, client, account, device)
}

#[tokio::test]
async fn create_list_update_delete() {
    let (fake, c, account, device) = setup(true).await;
    let input = EntityInput::new(
        "eth0",
        "interface",
        json!({"snmp_index": "2", "speed_bps": "1000000000"}),
    )
    .with_parent(device);
    let id = c.create_entity(account, &input).await.unwrap();
    let stored = fake.entity(id).unwrap();
    assert_eq!(stored.parent, Some(device));
    assert_eq!(stored.details["snmp_index"], "2");
    assert_eq!(
        fake.requests().last().unwrap().status,
        Some(201),
        "POST answers 201"
    );

    // The list ignores the filters on the backend; the client applies them.
    let raw = c.entities(account).await.unwrap();
    assert_eq!(raw.len(), 2);
    let children = c
        .entities_filtered(account, Some(device), Some("interface"))
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].id, id);
    let q = fake.requests().last().unwrap().query.clone().unwrap();
    assert!(
        q.contains(&format!("parent={device}")) && q.contains("entity_type=interface"),
        "{q}"
    );

    // PUT replaces name and details but never the parent.
    let mut changed = EntityInput::new("eth0 renamed", "interface", json!({"snmp_index": "2"}));
    changed.parent = Some(12345);
    c.update_entity(account, id, &changed).await.unwrap();
    let stored = fake.entity(id).unwrap();
    assert_eq!(stored.name, "eth0 renamed");
    assert_eq!(stored.parent, Some(device));
    assert_eq!(stored.details, json!({"snmp_index": "2"}));
    assert_eq!(fake.requests().last().unwrap().status, Some(204));

    c.delete_entity(account, id).await.unwrap();
    assert!(fake.entity(id).is_none());
    let err = c.delete_entity(account, id).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::NotFound { detail, .. } if detail == "No such entity"),
        "{err:?}"
    );
    let err = c.update_entity(account, id, &changed).await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn invalid_bodies_are_400_plain_text() {
    let (_fake, c, account, _device) = setup(true).await;
    // details must be an object.
    let bad = EntityInput::new("x", "interface", json!("not an object"));
    match c.create_entity(account, &bad).await.unwrap_err() {
        ApiError::Rejected { status, body, .. } => {
            assert_eq!(status, 400);
            assert!(body.starts_with("Input validation failed:"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    // A protocol with a credential that does not exist.
    let mut bad = EntityInput::new("x", "device", json!({}));
    bad.protocols = Some(
        [(
            "snmp".to_string(),
            serde_json::from_value(json!({"credential": 1, "sensors": [], "bot": null})).unwrap(),
        )]
        .into(),
    );
    let err = c.create_entity(account, &bad).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Rejected { status: 400, body, .. } if body.contains("Invalid credential")),
        "{err:?}"
    );
}

#[tokio::test]
async fn writes_without_a_grant_are_forbidden() {
    // The grants the frontend gives an account bot: GET only on entities.
    let (fake, c, account, device) = setup(false).await;
    assert_eq!(c.entities(account).await.unwrap().len(), 1);
    let input = EntityInput::new("eth0", "interface", json!({})).with_parent(device);
    let err = c.create_entity(account, &input).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Forbidden { method, resource } if method == "POST" && resource == &format!("accounts/{account}/entities")),
        "{err:?}"
    );
    let err = c.update_entity(account, device, &input).await.unwrap_err();
    assert!(matches!(err, ApiError::Forbidden { .. }), "{err:?}");
    let err = c.delete_entity(account, device).await.unwrap_err();
    assert!(matches!(err, ApiError::Forbidden { .. }), "{err:?}");
    assert!(fake.entity(device).is_some());
}
