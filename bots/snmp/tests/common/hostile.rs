//! The project's own hostile SNMP agent (v1/v2c, any community), on a
//! thread, for tests of what real devices do wrong. It reads requests with
//! async-snmp's decoder and writes its answers with async-snmp's encoder,
//! then misbehaves as its [`Mode`] says. It serves:
//!
//! - `sysUpTime.0` (`1.3.6.1.2.1.1.3.0`): TimeTicks 4200;
//! - a table under [`TABLE`] (`1.3.6.1.4.1.99999.1`): columns 1 to 16, rows
//!   1 to 3 (endless in [`Mode::Endless`]), each value its row number.
//!
//! Stopped when dropped.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_snmp::message::CommunityMessage;
use async_snmp::pdu::{OutboundErrorStatus, PduType, ResponsePdu};
use async_snmp::{DecodeConfig, Oid, Value, VarBind, Version};

/// The table's OID.
pub const TABLE: &str = "1.3.6.1.4.1.99999.1";

const SYS_UPTIME: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 3, 0];

/// The text [`Mode::Inject`] answers with: a forged log line and an ANSI
/// clear-screen.
pub const INJECTED: &str =
    "x\n2026-12-07T00:00:00.000000Z ERROR grafolean_collector::runtime: FORGED LINE \u{1b}[2J";

/// How the agent misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers as it should.
    Good,
    /// Answers every request with 9,300 varbinds `0.0 = NULL`.
    Many,
    /// Every table value is [`INJECTED`].
    Inject,
    /// The table never ends: every column has rows 1, 2, 3, … forever.
    Endless,
    /// Every answer carries the request-id + 1.
    WrongId,
    /// A walk's first answer is endOfMibView.
    EndOfMib,
    /// The table's first column answers noSuchInstance.
    NoSuchFirst,
    /// A walk answers rows of the next subtree at once (as for an empty
    /// table).
    OutOfSubtree,
    /// Answers as it should, from another port than the one asked.
    OtherPort,
    /// Answers as it should, with the community `not-yours`.
    WrongCommunity,
    /// Answers as it should, with its last 3 bytes cut off (the lengths
    /// still count them).
    Truncated,
    /// Sends every request back as it came (a GetRequest for an answer).
    Echo,
    /// The table never ends, and every value is a 1,000-byte string.
    BigValues,
}

/// The size of a [`Mode::BigValues`] value.
pub const BIG_VALUE: usize = 1_000;

/// The agent: its address, and how many requests it answered.
pub struct Hostile {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Hostile {
    /// Starts the agent on a free port of 127.0.0.1.
    pub fn start(mode: Mode) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let mode = Arc::new(Mutex::new(mode));
        let thread = {
            let (stop, answered, mode) = (stop.clone(), answered.clone(), mode.clone());
            std::thread::spawn(move || {
                let other = UdpSocket::bind("127.0.0.1:0").unwrap();
                serve(&socket, &other, &mode, &stop, &answered)
            })
        };
        Self {
            addr,
            mode,
            stop,
            answered,
            thread: Some(thread),
        }
    }

    /// `details.ipv4` for this agent.
    pub fn ipv4(&self) -> String {
        self.addr.to_string()
    }

    /// Misbehaves as `mode` says from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The requests it answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    socket: &UdpSocket,
    other: &UdpSocket,
    mode: &Mutex<Mode>,
    stop: &AtomicBool,
    answered: &AtomicU64,
) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let mode = *mode.lock().unwrap();
        let Some(answer) = answer(&buf[..n], mode) else {
            continue;
        };
        let out = if mode == Mode::OtherPort {
            other
        } else {
            socket
        };
        if out.send_to(&answer, from).is_ok() {
            answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The answer to one request, as `mode` makes it.
fn answer(request: &[u8], mode: Mode) -> Option<Vec<u8>> {
    if mode == Mode::Echo {
        return Some(request.to_vec());
    }
    let decoded = CommunityMessage::decode(
        bytes::Bytes::copy_from_slice(request),
        DecodeConfig::default(),
    )
    .ok()?
    .value;
    let version = decoded.version();
    let community = if mode == Mode::WrongCommunity {
        bytes::Bytes::from_static(b"not-yours").into()
    } else {
        decoded.community().clone()
    };
    let pdu = decoded.pdu().standard()?.clone();
    let asked: Vec<Oid> = pdu.varbinds().iter().map(|v| v.oid.clone()).collect();
    let varbinds = match mode {
        Mode::Many => (0..9_300)
            .map(|_| VarBind::new(Oid::from_slice(&[0, 0]), Value::Null))
            .collect(),
        _ => match pdu.pdu_type() {
            PduType::GetRequest => asked.iter().map(|o| get(o, mode)).collect(),
            PduType::GetNextRequest => asked.iter().map(|o| next(o, mode)).collect(),
            PduType::GetBulkRequest => {
                let (non_repeaters, repetitions) = pdu.get_bulk_fields().unwrap_or((0, 10));
                let split = (non_repeaters as usize).min(asked.len());
                let mut out: Vec<VarBind> = asked[..split].iter().map(|o| next(o, mode)).collect();
                let mut cursors: Vec<Oid> = asked[split..].to_vec();
                // 50 rows of 1,000 bytes still fit one datagram.
                for _ in 0..repetitions.clamp(1, 50) {
                    for cursor in &mut cursors {
                        let v = next(cursor, mode);
                        *cursor = v.oid.clone();
                        out.push(v);
                    }
                }
                out
            }
            _ => return None,
        },
    };
    let request_id = if mode == Mode::WrongId {
        pdu.request_id().wrapping_add(1)
    } else {
        pdu.request_id()
    };
    let response = ResponsePdu::new(
        version,
        request_id,
        OutboundErrorStatus::NoError,
        None,
        varbinds,
    )
    .ok()?;
    let message = match version {
        Version::V1 => CommunityMessage::v1(community, response),
        _ => CommunityMessage::v2c(community, response),
    }
    .ok()?;
    let mut bytes = message.encode().ok()?.to_vec();
    if mode == Mode::Truncated {
        bytes.truncate(bytes.len() - 3);
    }
    Some(bytes)
}

fn table() -> Oid {
    Oid::parse(TABLE).unwrap()
}

/// The value at `oid`, for a GET.
fn get(oid: &Oid, mode: Mode) -> VarBind {
    if oid.arcs() == SYS_UPTIME {
        return VarBind::new(oid.clone(), Value::TimeTicks(4200));
    }
    let t = table();
    let arcs = oid.arcs();
    if oid.starts_with(&t) && arcs.len() == t.arcs().len() + 2 {
        let (column, row) = (arcs[arcs.len() - 2], arcs[arcs.len() - 1]);
        if (1..=16).contains(&column) && (endless(mode) || (1..=3).contains(&row)) {
            return VarBind::new(oid.clone(), value(row, mode));
        }
    }
    VarBind::new(oid.clone(), Value::NoSuchInstance)
}

fn value(row: u32, mode: Mode) -> Value {
    match mode {
        Mode::Inject => Value::from(INJECTED),
        Mode::BigValues => Value::OctetString(bytes::Bytes::from(vec![b'x'; BIG_VALUE])),
        _ => Value::Integer(row as i32),
    }
}

fn endless(mode: Mode) -> bool {
    matches!(mode, Mode::Endless | Mode::BigValues)
}

/// The varbind after `oid` in the table, for GETNEXT and GETBULK.
fn next(oid: &Oid, mode: Mode) -> VarBind {
    let t = table();
    let base = t.arcs().len();
    let arcs = oid.arcs();
    let end = || VarBind::new(oid.clone(), Value::EndOfMibView);
    match mode {
        Mode::EndOfMib => return end(),
        Mode::OutOfSubtree => {
            // A row of the next subtree, past everything asked.
            let mut other = t.arcs().to_vec();
            *other.last_mut().unwrap() += 1;
            other.extend([1, 1]);
            return VarBind::new(Oid::from_slice(&other), Value::Integer(1));
        }
        _ => {}
    }
    // Where in the table `oid` is: (column, row) of the next cell.
    let (mut column, mut row) = if oid.starts_with(&t) && arcs.len() > base {
        let column = arcs[base];
        match arcs.get(base + 1) {
            Some(&r) => (column, r + 1),
            None => (column, 1),
        }
    } else if oid < &t {
        (1, 1)
    } else {
        return end();
    };
    if column == 0 {
        (column, row) = (1, 1);
    }
    if !endless(mode) && row > 3 {
        (column, row) = (column + 1, 1);
    }
    if column > 16 {
        return end();
    }
    let mut cell = t.arcs().to_vec();
    cell.extend([column, row]);
    let cell = Oid::from_slice(&cell);
    if mode == Mode::NoSuchFirst && column == 1 {
        return VarBind::new(cell, Value::NoSuchInstance);
    }
    VarBind::new(cell, value(row, mode))
}
