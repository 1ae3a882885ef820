//! The data set the fixtures in `tests/fixtures/grafolean-api/` were recorded
//! against, with the same ids, names and grants. The tokens are this crate's
//! own (the recorded ones are placeholders).

use serde_json::{Value as Json, json};

use super::model::{
    Account, Bot, Credential, Entity, Permission, ProtocolConfig, Sensor, SensorRef,
};
use super::state::State;

/// The id of the fixture account.
pub const ACCOUNT_ID: u64 = 667410879;
/// The user id of the fixture's main ping bot.
pub const BOT_ID: u64 = 550860747;
/// The user id of the fixture's second ping bot, which may only POST values.
pub const OTHER_BOT_ID: u64 = 1814513792;
/// The user id of the fixture's SNMP bot, which has no permissions.
pub const SNMP_BOT_ID: u64 = 1951286123;
/// The fixture's ping credential.
pub const CREDENTIAL_ID: u64 = 884419450;
/// The fixture's ping sensor (`default_interval` 10).
pub const SENSOR_ID: u64 = 1583109100;
/// The entity the main ping bot picks up.
pub const ENTITY_ID: u64 = 1127398355;
/// The token of the main ping bot (`<BOT_TOKEN>` in the fixtures).
pub const BOT_TOKEN: &str = "3f6c1a52-8d4e-4b7a-9e21-5c0d7f8a9b13";
/// The token of the POST-only bot (`<OTHER_BOT_TOKEN>`).
pub const OTHER_BOT_TOKEN: &str = "a7e2c9d4-1b3f-4e5a-8c6d-0f9e8d7c6b5a";
/// The token of the bot without permissions (`<SNMP_BOT_TOKEN>`).
pub const SNMP_BOT_TOKEN: &str = "c4d8e1f2-6a7b-4c9d-b0e1-2f3a4b5c6d7e";

/// Loads exactly the data set the fixtures were recorded against.
pub(crate) fn load_fixture_data(s: &mut State) {
    let a = ACCOUNT_ID;
    s.accounts.insert(
        a,
        Account {
            id: a,
            name: "Rust SDK test account".into(),
        },
    );
    let bot = |id, name: &str, token: &str, protocol: &str, last_login| Bot {
        id,
        name: name.into(),
        token: token.into(),
        protocol: Some(protocol.into()),
        tied_to_account: Some(a),
        config: None,
        insert_time: 1795311109,
        last_login: Some(last_login),
    };
    for b in [
        bot(BOT_ID, "Rust SDK ping bot", BOT_TOKEN, "ping", 1795311111),
        bot(
            OTHER_BOT_ID,
            "Other ping bot (POST only)",
            OTHER_BOT_TOKEN,
            "ping",
            1795311111,
        ),
        bot(
            SNMP_BOT_ID,
            "SNMP bot (never run)",
            SNMP_BOT_TOKEN,
            "snmp",
            1795311210,
        ),
    ] {
        s.bots.insert(b.id, b);
    }
    let perm = |id, user_id, what: &str, methods: &[&str]| Permission {
        id,
        user_id,
        resource_prefix: Some(format!("accounts/{a}/{what}")),
        methods: Some(methods.iter().map(|m| m.to_string()).collect()),
    };
    for p in [
        perm(584842597, BOT_ID, "credentials", &["GET"]),
        perm(665477159, BOT_ID, "entities", &["GET"]),
        perm(2112949097, BOT_ID, "sensors", &["GET"]),
        perm(1636411200, BOT_ID, "values", &["POST", "PUT"]),
        perm(1290345167, OTHER_BOT_ID, "values", &["POST"]),
    ] {
        s.permissions.insert(p.id, p);
    }
    let cred = |id, name: &str, protocol: &str, details: Json| Credential {
        id,
        account_id: a,
        name: name.into(),
        protocol: protocol.into(),
        details,
    };
    for c in [
        cred(
            731416007,
            "Default SNMP credential (SNMPv2c, 'public')",
            "snmp",
            json!({"version": "snmpv2c", "snmpv12_community": "public"}),
        ),
        cred(
            CREDENTIAL_ID,
            "Ping credential (2 packets)",
            "ping",
            json!({"n_packets": "2", "sleep_packets": "0.5", "timeout": "1.0", "retry": "0"}),
        ),
        cred(
            1218288228,
            "Default ICMP ping credential (3 packets)",
            "ping",
            json!({"n_packets": "3", "sleep_packets": "1.0", "timeout": "1.0", "retry": "0"}),
        ),
        cred(
            1792417484,
            "Default NetFlow credential",
            "netflow",
            json!({}),
        ),
    ] {
        s.credentials.insert(c.id, c);
    }
    let snmp = |oid2: &str, expression: &str, output_path: &str| {
        json!({
            "oids": [
                {"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
                {"oid": oid2, "fetch_method": "walk"},
            ],
            "expression": expression,
            "output_path": output_path,
        })
    };
    let sensor = |id, name: &str, protocol: &str, default_interval, details| Sensor {
        id,
        account_id: a,
        name: name.into(),
        protocol: protocol.into(),
        default_interval,
        details,
    };
    let lmsensors = json!({
        "oids": [
            {"oid": "1.3.6.1.4.1.2021.13.16.2.1.2", "fetch_method": "walk"},
            {"oid": "1.3.6.1.4.1.2021.13.16.2.1.3", "fetch_method": "walk"},
        ],
        "expression": "$2 / 1000.0",
        "output_path": "lmsensors.temp.{$index}.{$1}",
    });
    for x in [
        sensor(
            426721868,
            "Default NetFlow sensor",
            "netflow",
            None,
            json!({}),
        ),
        sensor(
            616902474,
            "Linux lmsensors - temperature [°C]",
            "snmp",
            Some(60),
            lmsensors,
        ),
        sensor(
            713411640,
            "Traffic IN [bps]",
            "snmp",
            Some(60),
            snmp("1.3.6.1.2.1.2.2.1.10", "$2", "if.in-octets.{$index}.{$1}"),
        ),
        sensor(
            790981265,
            "Default ICMP ping sensor",
            "ping",
            Some(60),
            json!({}),
        ),
        sensor(
            1428776592,
            "Traffic OUT [bps]",
            "snmp",
            Some(60),
            snmp("1.3.6.1.2.1.2.2.1.16", "$2", "if.out-octets.{$index}.{$1}"),
        ),
        sensor(SENSOR_ID, "Ping every 10s", "ping", Some(10), json!({})),
    ] {
        s.sensors.insert(x.id, x);
    }
    let ping = |interval, bot| ProtocolConfig {
        credential: CREDENTIAL_ID,
        sensors: vec![SensorRef {
            sensor: SENSOR_ID,
            interval,
        }],
        bot: Some(bot),
    };
    let entity =
        |id, name: &str, ty: &str, parent, ip: &str, protocols: Vec<(&str, ProtocolConfig)>| {
            Entity {
                id,
                account_id: a,
                name: name.into(),
                entity_type: ty.into(),
                parent,
                details: json!({ "ipv4": ip }),
                protocols: protocols
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            }
        };
    let no_sensors = ProtocolConfig {
        credential: CREDENTIAL_ID,
        sensors: vec![],
        bot: Some(BOT_ID),
    };
    let snmp_only = ProtocolConfig {
        credential: 731416007,
        sensors: vec![SensorRef {
            sensor: 616902474,
            interval: None,
        }],
        bot: Some(SNMP_BOT_ID),
    };
    for e in [
        entity(
            341329854,
            "lo interface (not a device)",
            "interface",
            Some(ENTITY_ID),
            "127.0.0.6",
            vec![("ping", ping(None, BOT_ID))],
        ),
        entity(
            935894165,
            "ping device assigned to other bot",
            "device",
            None,
            "127.0.0.4",
            vec![("ping", ping(Some(10), OTHER_BOT_ID))],
        ),
        entity(
            ENTITY_ID,
            "localhost (ping, our bot)",
            "device",
            None,
            "127.0.0.1",
            vec![("ping", ping(None, BOT_ID))],
        ),
        entity(
            1243554899,
            "device without protocols",
            "device",
            None,
            "127.0.0.3",
            vec![],
        ),
        entity(
            1480629348,
            "snmp-only device",
            "device",
            None,
            "127.0.0.2",
            vec![("snmp", snmp_only)],
        ),
        entity(
            1857249822,
            "ping device without sensors",
            "device",
            None,
            "127.0.0.5",
            vec![("ping", no_sensors)],
        ),
    ] {
        s.entities.insert(e.id, e);
    }
}

/// The fixture's ping setup, for entities of tests.
impl ProtocolConfig {
    /// The fixture data set's ping setup, assigned to the main bot: credential
    /// [`CREDENTIAL_ID`](CREDENTIAL_ID), sensor [`SENSOR_ID`](SENSOR_ID)
    /// with `interval` (`None` = the sensor's default, 10 s), bot [`BOT_ID`](BOT_ID).
    ///
    /// ```
    /// use grafolean_collector::testing::{ACCOUNT_ID, FakeEntity, ProtocolConfig};
    /// let entity = FakeEntity::device(ACCOUNT_ID, "router", "127.0.0.1")
    ///     .with_id(7)
    ///     .with_protocol("ping", ProtocolConfig::fixture_ping(Some(1)));
    /// assert_eq!(entity.protocols["ping"].sensors[0].interval, Some(1));
    /// ```
    pub fn fixture_ping(interval: Option<u32>) -> Self {
        Self {
            credential: CREDENTIAL_ID,
            sensors: vec![SensorRef {
                sensor: SENSOR_ID,
                interval,
            }],
            bot: Some(BOT_ID),
        }
    }
}
