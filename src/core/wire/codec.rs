//! The versioned binary codec for [`Message`].
//!
//! # Layout
//!
//! ```text
//! byte 0   PROTOCOL_VERSION
//! byte 1   kind: 1 Heartbeat, 2 Hello, 3 ConsoleRequest, 4 ConsoleResponse,
//!          5 DuraVipTable, 6 ReplicaUpdate, 7 CacheUpdate, 8 SnapshotRequest
//!          (no fields), 9 LogPull, 10 LogBatch, 11 LogGroupLine,
//!          12 MoveBegin, 13 MoveChunk, 14 MoveAck
//! then     the message's fields, in declaration order
//! ```
//!
//! | type      | encoding                                                    |
//! |-----------|-------------------------------------------------------------|
//! | u8..u64   | little-endian, fixed width                                  |
//! | bool      | u8, 0 or 1                                                  |
//! | String    | u32 byte length, then UTF-8                                 |
//! | `Vec<u32>`| u16 count, then the items                                   |
//! | Option    | u8 0 (none) or 1 (some), then the value                     |
//! | enums     | u8: NodeType Momentum 0, Manager 1; PeerState Alive 0, Suspect 1, Down 2 |
//! | IpAddr    | u8 4 or 6, then 4 or 16 bytes                               |
//! | Service   | u8 0 (binding) or 1 (listener, then its u16 port)           |
//! | Handoff   | its IP, the receiver's name (String), generation and number (u64 each) |
//! | lists     | of names and services: u16 count; of claims, IPs, handoffs and replica entries: u32 count |
//! | replica entry | its key (u32 length, at most `MAX_NAME` bytes), value (i64), version (u64) |
//! | cache entry | its key (u32 length, at most 4096 bytes), value (Option of u32 length and at most 65536 bytes; none is a delete), stamp (u64), origin (String, at most `MAX_NAME`), expiry (u64 ms, 0 never) |
//! | lists of cache entries | u32 count |
//! | move id   | String of 1 to 64 characters `A-Z a-z 0-9 . _ - : @ + =`, not starting with `.` |
//! | move envelope | mail_from (at most 1024 bytes), recipients (u32 count, each at most 1024), binding and binding_group (at most `MAX_NAME`), headers (u32 count of name, at most `MAX_NAME`, and value, at most 64 KiB) |
//! | move data | u32 length, at most `MOVE_CHUNK` (256 KiB) bytes |
//! | move outcome | u8: Accepted 0, Duplicate 1, Rejected 2 and Deferred 3, each of the last two followed by its reason (String, at most 1024 bytes) |
//!
//! No self-description, no optional trailing fields: a change to any message
//! bumps [`PROTOCOL_VERSION`], and a peer on another version is told so by
//! name instead of being misread.
//!
//! # Decoding is the defence
//!
//! Every byte string decodes to a message or to a [`DecodeError`] naming the
//! field at fault; nothing panics. Lengths and counts are checked against
//! the bytes still unread *before* anything is allocated, so a 10-byte
//! packet claiming a 4 GiB string costs nothing. Names are capped at
//! [`MAX_NAME`] bytes and console text at [`MAX_FRAME`]; an unknown enum
//! value, a bool other than 0/1 and trailing bytes are errors, so every
//! message has exactly one encoding.
//!
//! Encoding is infallible and does not enforce the caps: a sender that
//! builds an oversized name learns of it from the receiver's rejection. The
//! only things it cannot express are lengths beyond their prefix's width,
//! and for those it panics rather than write a lie (see
//! [`encode_message`]).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::core::duravip::{Claim, Handoff, Service, Table};

use super::{
    CacheUpdate, ConsoleRequest, ConsoleResponse, DuraVipTable, Heard, Heartbeat, Hello, LogBatch,
    LogGroupLine, LogLine, LogPull, MAX_FRAME, MAX_LOG_GROUP_LINE, MAX_NAME, Message, MoveAck,
    MoveBegin, MoveChunk, NodeType, Opinion, PROTOCOL_VERSION, PeerState, ReplicaUpdate, SelfInfo,
    SnapshotPart,
};
use crate::core::mmove::{
    MAX_ADDRESS, MAX_HEADER_VALUE, MAX_MOVE_ID, MAX_REASON, MOVE_CHUNK, MoveEnvelope, MoveId,
    MoveOutcome,
};
use crate::core::replicate::Entry;
use crate::core::replicate::cache::{CacheEntry, MAX_CACHE_KEY, MAX_CACHE_VALUE};
use crate::journal::format::LogId;

const KIND_HEARTBEAT: u8 = 1;
const KIND_HELLO: u8 = 2;
const KIND_CONSOLE_REQUEST: u8 = 3;
const KIND_CONSOLE_RESPONSE: u8 = 4;
const KIND_DURAVIP_TABLE: u8 = 5;
const KIND_REPLICA_UPDATE: u8 = 6;
const KIND_CACHE_UPDATE: u8 = 7;
const KIND_SNAPSHOT_REQUEST: u8 = 8;
const KIND_LOG_PULL: u8 = 9;
const KIND_LOG_BATCH: u8 = 10;
const KIND_LOG_GROUP_LINE: u8 = 11;
const KIND_MOVE_BEGIN: u8 = 12;
const KIND_MOVE_CHUNK: u8 = 13;
const KIND_MOVE_ACK: u8 = 14;

/// Why bytes are not a message: the field at fault and what was wrong,
/// e.g. `heartbeat.sender.name: length 300 exceeds 255`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Encodes a message; [`decode_message`] gives it back.
///
/// # Panics
///
/// If a string is longer than `u32::MAX` bytes or a `Vec<u32>` has more than
/// `u16::MAX` entries: neither fits its length prefix. Neither happens in
/// practice (console text stops at [`MAX_FRAME`], the config digest has one
/// entry per agreed option).
pub fn encode_message(m: &Message) -> Vec<u8> {
    let mut w = Vec::with_capacity(64);
    w.push(PROTOCOL_VERSION);
    match m {
        Message::Heartbeat(h) => {
            w.push(KIND_HEARTBEAT);
            put_self_info(&mut w, &h.sender);
            put_u64(&mut w, h.view_id);
            put_u32(&mut w, h.view_size);
            let count = u16::try_from(h.heard.len()).expect("heard list exceeds u16 entries");
            w.extend_from_slice(&count.to_le_bytes());
            for heard in &h.heard {
                put_str(&mut w, &heard.name);
                w.extend_from_slice(&heard.age_ms.to_le_bytes());
            }
            match &h.about_you {
                None => w.push(0),
                Some(o) => {
                    w.push(1);
                    w.push(peer_state_code(o.state));
                    put_u64(&mut w, o.generation);
                    put_u32(&mut w, o.incarnation);
                }
            }
        }
        Message::Hello(h) => {
            w.push(KIND_HELLO);
            put_str(&mut w, &h.name);
            put_u64(&mut w, h.generation);
            put_str(&mut w, &h.cluster_group);
        }
        Message::ConsoleRequest(r) => {
            w.push(KIND_CONSOLE_REQUEST);
            put_u64(&mut w, r.id);
            put_str(&mut w, &r.command);
        }
        Message::DuraVipTable(t) => {
            w.push(KIND_DURAVIP_TABLE);
            put_u64(&mut w, t.generation);
            put_u64(&mut w, t.table.version);
            put_u32(&mut w, len32(t.table.claims.len()));
            for c in t.table.claims.iter() {
                put_ip(&mut w, &c.ip);
                w.extend_from_slice(&len16(c.names.len()).to_le_bytes());
                for n in &c.names {
                    put_str(&mut w, n);
                }
                w.extend_from_slice(&len16(c.services.len()).to_le_bytes());
                for svc in &c.services {
                    match svc {
                        Service::Binding => w.push(0),
                        Service::Listener(port) => {
                            w.push(1);
                            w.extend_from_slice(&port.to_le_bytes());
                        }
                    }
                }
                match &c.preference {
                    None => w.push(0),
                    Some(p) => {
                        w.push(1);
                        put_str(&mut w, p);
                    }
                }
            }
            put_u32(&mut w, len32(t.table.owned.len()));
            for ip in &t.table.owned {
                put_ip(&mut w, ip);
            }
            put_u32(&mut w, len32(t.table.handoffs.len()));
            for h in &t.table.handoffs {
                put_ip(&mut w, &h.ip);
                put_str(&mut w, &h.to);
                put_u64(&mut w, h.generation);
                put_u64(&mut w, h.seq);
            }
        }
        Message::ReplicaUpdate(u) => {
            w.push(KIND_REPLICA_UPDATE);
            put_str(&mut w, &u.object);
            put_u64(&mut w, u.generation);
            // 0: a batch; 1: a snapshot, or its last part; 2: a part with
            // more to follow.
            match u.snapshot {
                None => w.push(0),
                Some(part) => {
                    w.push(if part.more { 2 } else { 1 });
                    put_u64(&mut w, part.as_of);
                }
            }
            put_u32(&mut w, len32(u.entries.len()));
            for e in &u.entries {
                put_u32(&mut w, len32(e.key.len()));
                w.extend_from_slice(&e.key);
                w.extend_from_slice(&e.value.to_le_bytes());
                put_u64(&mut w, e.version);
            }
        }
        Message::SnapshotRequest => w.push(KIND_SNAPSHOT_REQUEST),
        Message::CacheUpdate(u) => {
            w.push(KIND_CACHE_UPDATE);
            put_str(&mut w, &u.object);
            put_u32(&mut w, len32(u.entries.len()));
            for e in &u.entries {
                put_u32(&mut w, len32(e.key.len()));
                w.extend_from_slice(&e.key);
                match &e.value {
                    None => w.push(0),
                    Some(v) => {
                        w.push(1);
                        put_u32(&mut w, len32(v.len()));
                        w.extend_from_slice(v);
                    }
                }
                put_u64(&mut w, e.stamp);
                put_str(&mut w, &e.origin);
                put_u64(&mut w, e.expires_ms);
            }
        }
        Message::LogPull(p) => {
            w.push(KIND_LOG_PULL);
            put_u64(&mut w, p.job);
            put_str(&mut w, &p.log);
            w.extend_from_slice(&len16(p.subscribers.len()).to_le_bytes());
            for s in &p.subscribers {
                put_str(&mut w, s);
            }
            match &p.checkpoint {
                None => w.push(0),
                Some((subscriber, id)) => {
                    w.push(1);
                    put_str(&mut w, subscriber);
                    put_log_id(&mut w, *id);
                }
            }
        }
        Message::LogBatch(b) => {
            w.push(KIND_LOG_BATCH);
            put_u64(&mut w, b.job);
            put_str(&mut w, &b.log);
            put_str(&mut w, &b.subscriber);
            put_u32(&mut w, len32(b.records.len()));
            for r in &b.records {
                put_log_id(&mut w, r.id);
                put_u32(&mut w, r.tv_sec);
                put_u32(&mut w, len32(r.payload.len()));
                w.extend_from_slice(&r.payload);
            }
            w.push(u8::from(b.more));
            match &b.error {
                None => w.push(0),
                Some(e) => {
                    w.push(1);
                    put_str(&mut w, e);
                }
            }
        }
        Message::LogGroupLine(l) => {
            w.push(KIND_LOG_GROUP_LINE);
            put_str(&mut w, &l.group);
            put_str(&mut w, &l.log);
            put_u64(&mut w, l.time_us);
            put_u32(&mut w, len32(l.line.len()));
            w.extend_from_slice(&l.line);
        }
        Message::MoveBegin(b) => {
            w.push(KIND_MOVE_BEGIN);
            put_str(&mut w, b.id.as_str());
            put_envelope(&mut w, &b.envelope);
            put_u64(&mut w, b.body_len);
            put_u32(&mut w, len32(b.data.len()));
            w.extend_from_slice(&b.data);
        }
        Message::MoveChunk(c) => {
            w.push(KIND_MOVE_CHUNK);
            put_str(&mut w, c.id.as_str());
            put_u64(&mut w, c.offset);
            put_u32(&mut w, len32(c.data.len()));
            w.extend_from_slice(&c.data);
        }
        Message::MoveAck(a) => {
            w.push(KIND_MOVE_ACK);
            put_str(&mut w, a.id.as_str());
            match &a.outcome {
                MoveOutcome::Accepted => w.push(0),
                MoveOutcome::Duplicate => w.push(1),
                MoveOutcome::Rejected(reason) => {
                    w.push(2);
                    put_str(&mut w, reason);
                }
                MoveOutcome::Deferred(reason) => {
                    w.push(3);
                    put_str(&mut w, reason);
                }
            }
        }
        Message::ConsoleResponse(r) => {
            w.push(KIND_CONSOLE_RESPONSE);
            put_u64(&mut w, r.id);
            w.push(u8::from(r.ok));
            put_str(&mut w, &r.output);
        }
    }
    w
}

/// Decodes one whole message; see the module docs for what is rejected.
pub fn decode_message(b: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { rest: b };
    let version = r.u8("version")?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError(format!(
            "version: message is protocol version {version}, this build speaks version {PROTOCOL_VERSION}"
        )));
    }
    let (message, kind) = match r.u8("kind")? {
        KIND_HEARTBEAT => (Message::Heartbeat(heartbeat(&mut r)?), "heartbeat"),
        KIND_HELLO => (Message::Hello(hello(&mut r)?), "hello"),
        KIND_CONSOLE_REQUEST => (
            Message::ConsoleRequest(console_request(&mut r)?),
            "console_request",
        ),
        KIND_DURAVIP_TABLE => (
            Message::DuraVipTable(duravip_table(&mut r)?),
            "duravip_table",
        ),
        KIND_CONSOLE_RESPONSE => (
            Message::ConsoleResponse(console_response(&mut r)?),
            "console_response",
        ),
        KIND_REPLICA_UPDATE => (
            Message::ReplicaUpdate(replica_update(&mut r)?),
            "replica_update",
        ),
        KIND_CACHE_UPDATE => (Message::CacheUpdate(cache_update(&mut r)?), "cache_update"),
        KIND_SNAPSHOT_REQUEST => (Message::SnapshotRequest, "snapshot_request"),
        KIND_LOG_PULL => (Message::LogPull(log_pull(&mut r)?), "log_pull"),
        KIND_LOG_BATCH => (Message::LogBatch(log_batch(&mut r)?), "log_batch"),
        KIND_LOG_GROUP_LINE => (
            Message::LogGroupLine(log_group_line(&mut r)?),
            "log_group_line",
        ),
        KIND_MOVE_BEGIN => (Message::MoveBegin(move_begin(&mut r)?), "move_begin"),
        KIND_MOVE_CHUNK => (Message::MoveChunk(move_chunk(&mut r)?), "move_chunk"),
        KIND_MOVE_ACK => (Message::MoveAck(move_ack(&mut r)?), "move_ack"),
        other => return Err(DecodeError(format!("kind: unknown message kind {other}"))),
    };
    if !r.rest.is_empty() {
        return Err(DecodeError(format!(
            "{} trailing bytes after a complete {kind}",
            r.rest.len()
        )));
    }
    Ok(message)
}

fn heartbeat(r: &mut Reader<'_>) -> Result<Heartbeat, DecodeError> {
    let sender = SelfInfo {
        name: r.string("heartbeat.sender.name", MAX_NAME)?,
        generation: r.u64("heartbeat.sender.generation")?,
        incarnation: r.u32("heartbeat.sender.incarnation")?,
        node_type: node_type(r.u8("heartbeat.sender.node_type")?)?,
        subcluster: r.string("heartbeat.sender.subcluster", MAX_NAME)?,
        pid: r.u32("heartbeat.sender.pid")?,
        version: r.string("heartbeat.sender.version", MAX_NAME)?,
        port: r.u16("heartbeat.sender.port")?,
        config_digest: r.u32_list("heartbeat.sender.config_digest")?,
    };
    let view_id = r.u64("heartbeat.view_id")?;
    let view_size = r.u32("heartbeat.view_size")?;
    let count = r.u16("heartbeat.heard")?;
    // Each entry takes at least 6 bytes, so the count cannot make us allocate
    // more than the input justifies.
    let mut heard = Vec::with_capacity(usize::from(count).min(r.rest.len() / 6));
    for _ in 0..count {
        heard.push(Heard {
            name: r.string("heartbeat.heard.name", MAX_NAME)?,
            age_ms: r.u16("heartbeat.heard.age_ms")?,
        });
    }
    let about_you = if r.option("heartbeat.about_you")? {
        Some(Opinion {
            state: peer_state(r.u8("heartbeat.about_you.state")?)?,
            generation: r.u64("heartbeat.about_you.generation")?,
            incarnation: r.u32("heartbeat.about_you.incarnation")?,
        })
    } else {
        None
    };
    Ok(Heartbeat {
        sender,
        view_id,
        view_size,
        heard,
        about_you,
    })
}

fn hello(r: &mut Reader<'_>) -> Result<Hello, DecodeError> {
    Ok(Hello {
        name: r.string("hello.name", MAX_NAME)?,
        generation: r.u64("hello.generation")?,
        cluster_group: r.string("hello.cluster_group", MAX_NAME)?,
    })
}

fn console_request(r: &mut Reader<'_>) -> Result<ConsoleRequest, DecodeError> {
    Ok(ConsoleRequest {
        id: r.u64("console_request.id")?,
        command: r.string("console_request.command", MAX_FRAME)?,
    })
}

fn duravip_table(r: &mut Reader<'_>) -> Result<DuraVipTable, DecodeError> {
    let generation = r.u64("duravip_table.generation")?;
    let version = r.u64("duravip_table.version")?;
    // The smallest claim is 11 bytes (an IPv4 address, two empty counts, no
    // preference) and the smallest IP 5: counts beyond what is left are lies.
    let count = r.count32("duravip_table.claims", 11)?;
    let mut claims = Vec::with_capacity(count);
    for _ in 0..count {
        let ip = r.ip("duravip_table.claims.ip")?;
        let names_count = usize::from(r.u16("duravip_table.claims.names")?);
        let mut names = Vec::with_capacity(names_count.min(r.rest.len() / 4));
        for _ in 0..names_count {
            names.push(r.string("duravip_table.claims.names", MAX_NAME)?);
        }
        let services_count = usize::from(r.u16("duravip_table.claims.services")?);
        let mut services = Vec::with_capacity(services_count.min(r.rest.len()));
        for _ in 0..services_count {
            services.push(match r.u8("duravip_table.claims.services")? {
                0 => Service::Binding,
                1 => Service::Listener(r.u16("duravip_table.claims.services.port")?),
                other => {
                    return Err(DecodeError(format!(
                        "duravip_table.claims.services: unknown value {other}"
                    )));
                }
            });
        }
        let preference = if r.option("duravip_table.claims.preference")? {
            Some(r.string("duravip_table.claims.preference", MAX_NAME)?)
        } else {
            None
        };
        claims.push(Claim {
            ip,
            names,
            services,
            preference,
        });
    }
    let count = r.count32("duravip_table.owned", 5)?;
    let mut owned = Vec::with_capacity(count);
    for _ in 0..count {
        owned.push(r.ip("duravip_table.owned")?);
    }
    // An IPv4 address, an empty name, a generation and a number: 25 bytes
    // at least.
    let count = r.count32("duravip_table.handoffs", 25)?;
    let mut handoffs = Vec::with_capacity(count);
    for _ in 0..count {
        handoffs.push(Handoff {
            ip: r.ip("duravip_table.handoffs.ip")?,
            to: r.string("duravip_table.handoffs.to", MAX_NAME)?,
            generation: r.u64("duravip_table.handoffs.generation")?,
            seq: r.u64("duravip_table.handoffs.seq")?,
        });
    }
    Ok(DuraVipTable {
        generation,
        table: Table {
            version,
            claims: Arc::new(claims),
            owned,
            handoffs,
        },
    })
}

fn replica_update(r: &mut Reader<'_>) -> Result<ReplicaUpdate, DecodeError> {
    let object = r.string("replica_update.object", MAX_NAME)?;
    let generation = r.u64("replica_update.generation")?;
    let snapshot = match r.u8("replica_update.snapshot")? {
        0 => None,
        tag @ (1 | 2) => Some(SnapshotPart {
            as_of: r.u64("replica_update.snapshot.as_of")?,
            more: tag == 2,
        }),
        other => {
            return Err(DecodeError(format!(
                "replica_update.snapshot: tag {other} is not 0, 1 or 2"
            )));
        }
    };
    // An empty key, a value and a version: 20 bytes at least.
    let count = r.count32("replica_update.entries", 20)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let key = r.bytes("replica_update.entries.key", MAX_NAME)?;
        let value = r
            .fixed("replica_update.entries.value")
            .map(i64::from_le_bytes)?;
        let version = r.u64("replica_update.entries.version")?;
        entries.push(Entry {
            key,
            value,
            version,
        });
    }
    Ok(ReplicaUpdate {
        object,
        generation,
        snapshot,
        entries,
    })
}

fn cache_update(r: &mut Reader<'_>) -> Result<CacheUpdate, DecodeError> {
    let object = r.string("cache_update.object", MAX_NAME)?;
    // An empty key, a delete, a stamp, an empty origin and an expiry: 25
    // bytes at least.
    let count = r.count32("cache_update.entries", 25)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let key = r.bytes("cache_update.entries.key", MAX_CACHE_KEY)?;
        let value = if r.option("cache_update.entries.value")? {
            Some(r.bytes("cache_update.entries.value", MAX_CACHE_VALUE)?)
        } else {
            None
        };
        entries.push(CacheEntry {
            key,
            value,
            stamp: r.u64("cache_update.entries.stamp")?,
            origin: r.string("cache_update.entries.origin", MAX_NAME)?,
            expires_ms: r.u64("cache_update.entries.expires_ms")?,
        });
    }
    Ok(CacheUpdate { object, entries })
}

fn console_response(r: &mut Reader<'_>) -> Result<ConsoleResponse, DecodeError> {
    Ok(ConsoleResponse {
        id: r.u64("console_response.id")?,
        ok: r.bool("console_response.ok")?,
        output: r.string("console_response.output", MAX_FRAME)?,
    })
}

fn log_pull(r: &mut Reader<'_>) -> Result<LogPull, DecodeError> {
    let job = r.u64("log_pull.job")?;
    let log = r.string("log_pull.log", MAX_NAME)?;
    let count = r.u16("log_pull.subscribers")?;
    // Each name takes at least its 4-byte length.
    let mut subscribers = Vec::with_capacity(usize::from(count).min(r.rest.len() / 4));
    for _ in 0..count {
        subscribers.push(r.string("log_pull.subscribers", MAX_NAME)?);
    }
    let checkpoint = if r.option("log_pull.checkpoint")? {
        Some((
            r.string("log_pull.checkpoint.subscriber", MAX_NAME)?,
            r.log_id("log_pull.checkpoint.id")?,
        ))
    } else {
        None
    };
    Ok(LogPull {
        job,
        log,
        subscribers,
        checkpoint,
    })
}

fn log_batch(r: &mut Reader<'_>) -> Result<LogBatch, DecodeError> {
    let job = r.u64("log_batch.job")?;
    let log = r.string("log_batch.log", MAX_NAME)?;
    let subscriber = r.string("log_batch.subscriber", MAX_NAME)?;
    // Each record takes at least 16 bytes: id, time, payload length.
    let count = r.count32("log_batch.records", 16)?;
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(LogLine {
            id: r.log_id("log_batch.records.id")?,
            tv_sec: r.u32("log_batch.records.tv_sec")?,
            payload: r.bytes("log_batch.records.payload", MAX_FRAME)?,
        });
    }
    let more = r.bool("log_batch.more")?;
    let error = if r.option("log_batch.error")? {
        Some(r.string("log_batch.error", MAX_FRAME)?)
    } else {
        None
    };
    Ok(LogBatch {
        job,
        log,
        subscriber,
        records,
        more,
        error,
    })
}

fn log_group_line(r: &mut Reader<'_>) -> Result<LogGroupLine, DecodeError> {
    Ok(LogGroupLine {
        group: r.string("log_group_line.group", MAX_NAME)?,
        log: r.string("log_group_line.log", MAX_NAME)?,
        time_us: r.u64("log_group_line.time_us")?,
        line: r.bytes("log_group_line.line", MAX_LOG_GROUP_LINE)?,
    })
}

fn move_begin(r: &mut Reader<'_>) -> Result<MoveBegin, DecodeError> {
    let id = r.move_id("move_begin.id")?;
    let mail_from = r.string("move_begin.mail_from", MAX_ADDRESS)?;
    // Each recipient takes at least its 4-byte length.
    let count = r.count32("move_begin.recipients", 4)?;
    let mut recipients = Vec::with_capacity(count);
    for _ in 0..count {
        recipients.push(r.string("move_begin.recipients", MAX_ADDRESS)?);
    }
    let binding = r.string("move_begin.binding", MAX_NAME)?;
    let binding_group = r.string("move_begin.binding_group", MAX_NAME)?;
    // A name and a value: 8 bytes at least.
    let count = r.count32("move_begin.headers", 8)?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        headers.push((
            r.string("move_begin.headers.name", MAX_NAME)?,
            r.string("move_begin.headers.value", MAX_HEADER_VALUE)?,
        ));
    }
    Ok(MoveBegin {
        id,
        envelope: MoveEnvelope {
            mail_from,
            recipients,
            binding,
            binding_group,
            headers,
        },
        body_len: r.u64("move_begin.body_len")?,
        data: r.bytes("move_begin.data", MOVE_CHUNK)?,
    })
}

fn move_chunk(r: &mut Reader<'_>) -> Result<MoveChunk, DecodeError> {
    Ok(MoveChunk {
        id: r.move_id("move_chunk.id")?,
        offset: r.u64("move_chunk.offset")?,
        data: r.bytes("move_chunk.data", MOVE_CHUNK)?,
    })
}

fn move_ack(r: &mut Reader<'_>) -> Result<MoveAck, DecodeError> {
    let id = r.move_id("move_ack.id")?;
    let outcome = match r.u8("move_ack.outcome")? {
        0 => MoveOutcome::Accepted,
        1 => MoveOutcome::Duplicate,
        2 => MoveOutcome::Rejected(r.string("move_ack.reason", MAX_REASON)?),
        3 => MoveOutcome::Deferred(r.string("move_ack.reason", MAX_REASON)?),
        other => {
            return Err(DecodeError(format!(
                "move_ack.outcome: unknown value {other}"
            )));
        }
    };
    Ok(MoveAck { id, outcome })
}

fn put_envelope(w: &mut Vec<u8>, e: &MoveEnvelope) {
    put_str(w, &e.mail_from);
    put_u32(w, len32(e.recipients.len()));
    for r in &e.recipients {
        put_str(w, r);
    }
    put_str(w, &e.binding);
    put_str(w, &e.binding_group);
    put_u32(w, len32(e.headers.len()));
    for (name, value) in &e.headers {
        put_str(w, name);
        put_str(w, value);
    }
}

/// The encoded size of an envelope, which must fit one frame with the
/// first chunk of its body.
pub(crate) fn envelope_len(e: &MoveEnvelope) -> usize {
    let mut w = Vec::new();
    put_envelope(&mut w, e);
    w.len()
}

fn put_log_id(w: &mut Vec<u8>, id: LogId) {
    put_u32(w, id.log);
    put_u32(w, id.marker);
}

fn node_type(code: u8) -> Result<NodeType, DecodeError> {
    match code {
        0 => Ok(NodeType::Momentum),
        1 => Ok(NodeType::Manager),
        other => Err(DecodeError(format!(
            "heartbeat.sender.node_type: unknown value {other}"
        ))),
    }
}

fn peer_state_code(s: PeerState) -> u8 {
    match s {
        PeerState::Alive => 0,
        PeerState::Suspect => 1,
        PeerState::Down => 2,
    }
}

fn peer_state(code: u8) -> Result<PeerState, DecodeError> {
    match code {
        0 => Ok(PeerState::Alive),
        1 => Ok(PeerState::Suspect),
        2 => Ok(PeerState::Down),
        other => Err(DecodeError(format!(
            "heartbeat.about_you.state: unknown value {other}"
        ))),
    }
}

fn put_self_info(w: &mut Vec<u8>, s: &SelfInfo) {
    put_str(w, &s.name);
    put_u64(w, s.generation);
    put_u32(w, s.incarnation);
    w.push(match s.node_type {
        NodeType::Momentum => 0,
        NodeType::Manager => 1,
    });
    put_str(w, &s.subcluster);
    put_u32(w, s.pid);
    put_str(w, &s.version);
    w.extend_from_slice(&s.port.to_le_bytes());
    let count = u16::try_from(s.config_digest.len()).expect("config digest exceeds u16 entries");
    w.extend_from_slice(&count.to_le_bytes());
    for d in &s.config_digest {
        put_u32(w, *d);
    }
}

fn put_ip(w: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            w.push(4);
            w.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            w.push(6);
            w.extend_from_slice(&v6.octets());
        }
    }
}

/// A length for a u32 prefix; tables never come near it.
fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("list exceeds u32 entries")
}

/// A length for a u16 prefix.
fn len16(n: usize) -> u16 {
    u16::try_from(n).expect("list exceeds u16 entries")
}

fn put_u32(w: &mut Vec<u8>, v: u32) {
    w.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.extend_from_slice(&v.to_le_bytes());
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    put_u32(
        w,
        u32::try_from(s.len()).expect("string exceeds u32 length"),
    );
    w.extend_from_slice(s.as_bytes());
}

/// The unread part of the input. Every read splits it with the checked
/// slice methods, so no index can go out of bounds.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn fixed<const N: usize>(&mut self, field: &str) -> Result<[u8; N], DecodeError> {
        let Some((head, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err(DecodeError(format!(
                "{field}: truncated: needs {N} bytes, {} left",
                self.rest.len()
            )));
        };
        self.rest = rest;
        Ok(*head)
    }

    fn u8(&mut self, field: &str) -> Result<u8, DecodeError> {
        let [b] = self.fixed::<1>(field)?;
        Ok(b)
    }

    fn u16(&mut self, field: &str) -> Result<u16, DecodeError> {
        self.fixed(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &str) -> Result<u32, DecodeError> {
        self.fixed(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &str) -> Result<u64, DecodeError> {
        self.fixed(field).map(u64::from_le_bytes)
    }

    fn bool(&mut self, field: &str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError(format!(
                "{field}: invalid bool {other} (must be 0 or 1)"
            ))),
        }
    }

    /// An Option's tag: whether a value follows.
    fn option(&mut self, field: &str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError(format!(
                "{field}: invalid option tag {other} (must be 0 or 1)"
            ))),
        }
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    fn string(&mut self, field: &str, max: usize) -> Result<String, DecodeError> {
        let bytes = self.slice(field, max)?;
        let text = std::str::from_utf8(bytes).map_err(|e| {
            DecodeError(format!(
                "{field}: not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        Ok(text.to_owned())
    }

    /// Length-prefixed bytes, at most `max` of them.
    fn bytes(&mut self, field: &str, max: usize) -> Result<Vec<u8>, DecodeError> {
        self.slice(field, max).map(<[u8]>::to_vec)
    }

    fn slice(&mut self, field: &str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(field)?;
        // A u32 always fits usize on the 32- and 64-bit targets we build
        // for; saturating keeps the comparison honest anywhere else.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > max {
            return Err(DecodeError(format!("{field}: length {len} exceeds {max}")));
        }
        let Some((bytes, rest)) = self.rest.split_at_checked(len) else {
            return Err(DecodeError(format!(
                "{field}: length {len} exceeds the {} bytes left",
                self.rest.len()
            )));
        };
        self.rest = rest;
        Ok(bytes)
    }

    /// A u32 count of items that take at least `min_item` bytes each,
    /// refused when the bytes left cannot hold that many.
    fn count32(&mut self, field: &str, min_item: usize) -> Result<usize, DecodeError> {
        let count = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if count.saturating_mul(min_item) > self.rest.len() {
            return Err(DecodeError(format!(
                "{field}: {count} entries cannot fit in the {} bytes left",
                self.rest.len()
            )));
        }
        Ok(count)
    }

    fn move_id(&mut self, field: &str) -> Result<MoveId, DecodeError> {
        let text = self.string(field, MAX_MOVE_ID)?;
        MoveId::parse(&text).map_err(|e| DecodeError(format!("{field}: {e}")))
    }

    fn log_id(&mut self, field: &str) -> Result<LogId, DecodeError> {
        Ok(LogId {
            log: self.u32(field)?,
            marker: self.u32(field)?,
        })
    }

    fn ip(&mut self, field: &str) -> Result<IpAddr, DecodeError> {
        match self.u8(field)? {
            4 => Ok(IpAddr::from(self.fixed::<4>(field)?)),
            6 => Ok(IpAddr::from(self.fixed::<16>(field)?)),
            other => Err(DecodeError(format!(
                "{field}: unknown address family {other}"
            ))),
        }
    }

    /// A u16-counted list of u32s.
    fn u32_list(&mut self, field: &str) -> Result<Vec<u32>, DecodeError> {
        let count = usize::from(self.u16(field)?);
        let need = count * 4;
        let Some((bytes, rest)) = self.rest.split_at_checked(need) else {
            return Err(DecodeError(format!(
                "{field}: {count} entries need {need} bytes, {} left",
                self.rest.len()
            )));
        };
        self.rest = rest;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| {
                let mut le = [0u8; 4];
                le.copy_from_slice(c);
                u32::from_le_bytes(le)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_info(name: &str) -> SelfInfo {
        SelfInfo {
            name: name.to_string(),
            generation: 0x0102_0304_0506_0708,
            incarnation: 7,
            node_type: NodeType::Momentum,
            subcluster: "east".to_string(),
            pid: 4242,
            version: "0.1.0".to_string(),
            port: 4802,
            config_digest: vec![1, 0xdead_beef],
        }
    }

    fn heartbeat(name: &str) -> Heartbeat {
        Heartbeat {
            sender: self_info(name),
            view_id: 99,
            view_size: 3,
            heard: vec![
                Heard {
                    name: "mta2".into(),
                    age_ms: 120,
                },
                Heard {
                    name: String::new(),
                    age_ms: u16::MAX,
                },
            ],
            about_you: Some(Opinion {
                state: PeerState::Suspect,
                generation: 5,
                incarnation: 2,
            }),
        }
    }

    /// One of each kind, with ordinary values, empty strings and extremes.
    fn samples() -> Vec<Message> {
        let max_name = "n".repeat(MAX_NAME);
        let mut extreme = heartbeat(&max_name);
        extreme.sender.generation = u64::MAX;
        extreme.sender.incarnation = u32::MAX;
        extreme.sender.node_type = NodeType::Manager;
        extreme.sender.subcluster = String::new();
        extreme.sender.pid = 0;
        extreme.sender.version = "é".repeat(MAX_NAME / 2);
        extreme.sender.port = u16::MAX;
        extreme.sender.config_digest = vec![u32::MAX; 300];
        extreme.view_id = u64::MAX;
        extreme.view_size = 0;
        extreme.about_you = Some(Opinion {
            state: PeerState::Down,
            generation: u64::MAX,
            incarnation: u32::MAX,
        });
        let mut bare = heartbeat("");
        bare.sender.config_digest = Vec::new();
        bare.about_you = None;
        let mut alive = heartbeat("mta1");
        alive.about_you = alive.about_you.map(|o| Opinion {
            state: PeerState::Alive,
            ..o
        });
        vec![
            Message::Heartbeat(heartbeat("mta1")),
            Message::Heartbeat(extreme),
            Message::Heartbeat(bare),
            Message::Heartbeat(alive),
            Message::Hello(Hello {
                name: "mta2".to_string(),
                generation: 1,
                cluster_group: "ecc".to_string(),
            }),
            Message::Hello(Hello {
                name: String::new(),
                generation: 0,
                cluster_group: max_name.clone(),
            }),
            Message::ConsoleRequest(ConsoleRequest {
                id: 0,
                command: "cluster info".to_string(),
            }),
            Message::ConsoleRequest(ConsoleRequest {
                id: u64::MAX,
                command: String::new(),
            }),
            Message::ConsoleResponse(ConsoleResponse {
                id: 3,
                ok: true,
                output: "line 1\nline 2 ✓\n".to_string(),
            }),
            Message::ConsoleResponse(ConsoleResponse {
                id: 4,
                ok: false,
                output: "x".repeat(MAX_FRAME),
            }),
            Message::DuraVipTable(DuraVipTable {
                generation: 42,
                table: Table {
                    version: 7,
                    claims: Arc::new(vec![
                        Claim {
                            ip: "10.1.1.1".parse().unwrap(),
                            names: vec!["out1".into(), "out2".into()],
                            services: vec![Service::Binding, Service::Listener(25)],
                            preference: Some("mta2".into()),
                        },
                        Claim {
                            ip: "2001:db8::7".parse().unwrap(),
                            names: Vec::new(),
                            services: Vec::new(),
                            preference: None,
                        },
                    ]),
                    owned: vec!["10.1.1.1".parse().unwrap(), "2001:db8::7".parse().unwrap()],
                    handoffs: vec![
                        Handoff {
                            ip: "10.1.1.2".parse().unwrap(),
                            to: "mta2".into(),
                            generation: u64::MAX,
                            seq: 3,
                        },
                        Handoff {
                            ip: "2001:db8::8".parse().unwrap(),
                            to: String::new(),
                            generation: 0,
                            seq: u64::MAX,
                        },
                    ],
                },
            }),
            Message::DuraVipTable(DuraVipTable {
                generation: 0,
                table: Table::default(),
            }),
            Message::ReplicaUpdate(ReplicaUpdate {
                object: "inbound_cidr".into(),
                generation: 9,
                snapshot: None,
                entries: vec![
                    Entry {
                        key: vec![4, 10, 0, 0, 103],
                        value: -3,
                        version: 1,
                    },
                    Entry {
                        key: Vec::new(),
                        value: i64::MIN,
                        version: u64::MAX,
                    },
                ],
            }),
            Message::ReplicaUpdate(ReplicaUpdate {
                object: "cache1".into(),
                generation: 0,
                snapshot: Some(SnapshotPart {
                    as_of: 77,
                    more: true,
                }),
                entries: Vec::new(),
            }),
            Message::ReplicaUpdate(ReplicaUpdate {
                object: "cache1".into(),
                generation: 1,
                snapshot: Some(SnapshotPart {
                    as_of: 78,
                    more: false,
                }),
                entries: Vec::new(),
            }),
            Message::CacheUpdate(CacheUpdate {
                object: "cache1".into(),
                entries: vec![
                    CacheEntry {
                        key: b"user@example.com".to_vec(),
                        value: Some(vec![0, 1, 0xff]),
                        stamp: 1 << 40,
                        origin: "mta1".into(),
                        expires_ms: 0,
                    },
                    CacheEntry {
                        key: vec![0xfe; MAX_CACHE_KEY],
                        value: None,
                        stamp: u64::MAX,
                        origin: max_name.clone(),
                        expires_ms: u64::MAX,
                    },
                    CacheEntry {
                        key: Vec::new(),
                        value: Some(vec![b'x'; MAX_CACHE_VALUE]),
                        stamp: 0,
                        origin: String::new(),
                        expires_ms: 1,
                    },
                ],
            }),
            Message::CacheUpdate(CacheUpdate {
                object: String::new(),
                entries: Vec::new(),
            }),
            Message::SnapshotRequest,
            Message::LogPull(LogPull {
                job: 7,
                log: "mainlog".into(),
                subscribers: vec!["mgr".into(), "master".into()],
                checkpoint: Some(("master".into(), LogId { log: 2, marker: 9 })),
            }),
            Message::LogPull(LogPull {
                job: 0,
                log: String::new(),
                subscribers: Vec::new(),
                checkpoint: None,
            }),
            Message::LogBatch(LogBatch {
                job: 7,
                log: "mainlog".into(),
                subscriber: "master".into(),
                records: vec![LogLine {
                    id: LogId { log: 3, marker: 1 },
                    tv_sec: 1_700_000_000,
                    payload: b"a line\n".to_vec(),
                }],
                more: true,
                error: None,
            }),
            Message::LogBatch(LogBatch {
                job: 8,
                log: "paniclog".into(),
                subscriber: String::new(),
                records: Vec::new(),
                more: false,
                error: Some("no subscriber".into()),
            }),
            Message::LogGroupLine(LogGroupLine {
                group: "panics".into(),
                log: "paniclog".into(),
                time_us: 1_700_000_000_123_456,
                line: b"1700000000@n1: assertion failed \xff\n".to_vec(),
            }),
            Message::LogGroupLine(LogGroupLine {
                group: max_name.clone(),
                log: String::new(),
                time_us: u64::MAX,
                line: vec![0; MAX_LOG_GROUP_LINE],
            }),
        ]
        .into_iter()
        .chain(move_samples())
        .collect()
    }

    fn move_id(s: &str) -> MoveId {
        MoveId::parse(s).unwrap()
    }

    /// One of each move message, ordinary and at the limits.
    fn move_samples() -> Vec<Message> {
        let max_name = "n".repeat(MAX_NAME);
        vec![
            Message::MoveBegin(MoveBegin {
                id: move_id("1F:00-12345@mta1"),
                envelope: MoveEnvelope {
                    mail_from: "a@example.com".into(),
                    recipients: vec!["b@example.net".into(), "c@example.org".into()],
                    binding: "out1".into(),
                    binding_group: "default".into(),
                    headers: vec![("X-Spool".into(), "1F/00".into())],
                },
                body_len: 5,
                data: b"hello".to_vec(),
            }),
            Message::MoveBegin(MoveBegin {
                id: move_id(&"z".repeat(MAX_MOVE_ID)),
                envelope: MoveEnvelope {
                    mail_from: "é".repeat(MAX_ADDRESS / 2),
                    recipients: Vec::new(),
                    binding: max_name.clone(),
                    binding_group: String::new(),
                    headers: vec![(max_name.clone(), "v".repeat(MAX_HEADER_VALUE))],
                },
                body_len: u64::MAX,
                data: vec![0xff; MOVE_CHUNK],
            }),
            Message::MoveChunk(MoveChunk {
                id: move_id("m"),
                offset: 262_144,
                data: vec![1, 2, 3],
            }),
            Message::MoveChunk(MoveChunk {
                id: move_id("m"),
                offset: u64::MAX,
                data: Vec::new(),
            }),
            Message::MoveAck(MoveAck {
                id: move_id("m"),
                outcome: MoveOutcome::Accepted,
            }),
            Message::MoveAck(MoveAck {
                id: move_id("m"),
                outcome: MoveOutcome::Duplicate,
            }),
            Message::MoveAck(MoveAck {
                id: move_id("m"),
                outcome: MoveOutcome::Rejected("550 5.1.1 no such user ✗".into()),
            }),
            Message::MoveAck(MoveAck {
                id: move_id("m"),
                outcome: MoveOutcome::Deferred("x".repeat(MAX_REASON)),
            }),
        ]
    }

    fn err(b: &[u8]) -> String {
        decode_message(b).expect_err("must not decode").to_string()
    }

    #[test]
    fn every_kind_round_trips() {
        for m in samples() {
            let bytes = encode_message(&m);
            assert_eq!(bytes[0], PROTOCOL_VERSION);
            assert_eq!(decode_message(&bytes), Ok(m));
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let bytes = encode_message(&Message::ConsoleResponse(ConsoleResponse {
            id: 0x0102,
            ok: true,
            output: "hi".to_string(),
        }));
        assert_eq!(
            bytes,
            [
                PROTOCOL_VERSION,
                4,
                0x02,
                0x01,
                0,
                0,
                0,
                0,
                0,
                0,
                1,
                2,
                0,
                0,
                0,
                b'h',
                b'i'
            ]
        );
        let hello = encode_message(&Message::Hello(Hello {
            name: String::new(),
            generation: 0,
            cluster_group: String::new(),
        }));
        assert_eq!(hello[1], 2);
        assert_eq!(hello.len(), 2 + 4 + 8 + 4);
    }

    #[test]
    fn version_and_kind_are_checked() {
        assert_eq!(err(&[]), "version: truncated: needs 1 bytes, 0 left");
        assert_eq!(
            err(&[PROTOCOL_VERSION + 1, 1]),
            format!(
                "version: message is protocol version {}, this build speaks version {PROTOCOL_VERSION}",
                PROTOCOL_VERSION + 1
            )
        );
        assert_eq!(
            err(&[PROTOCOL_VERSION]),
            "kind: truncated: needs 1 bytes, 0 left"
        );
        assert_eq!(err(&[PROTOCOL_VERSION, 0]), "kind: unknown message kind 0");
        assert_eq!(
            err(&[PROTOCOL_VERSION, 15]),
            "kind: unknown message kind 15"
        );
        assert_eq!(
            err(&[PROTOCOL_VERSION, 8, 0]),
            "1 trailing bytes after a complete snapshot_request"
        );
    }

    #[test]
    fn replica_updates_reject_lying_counts_and_long_keys() {
        let mut head = vec![PROTOCOL_VERSION, KIND_REPLICA_UPDATE];
        head.extend_from_slice(&1u32.to_le_bytes());
        head.push(b'o');
        head.extend_from_slice(&[0; 8]);
        head.push(0);
        let mut lying = head.clone();
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            err(&lying).starts_with("replica_update.entries: 4294967295 entries cannot fit"),
            "{}",
            err(&lying)
        );
        let mut long = head;
        long.extend_from_slice(&1u32.to_le_bytes());
        long.extend_from_slice(&u32::MAX.to_le_bytes());
        long.extend_from_slice(&[0; 16]);
        assert!(
            err(&long).starts_with("replica_update.entries.key: length 4294967295 exceeds"),
            "{}",
            err(&long)
        );
    }

    #[test]
    fn log_batches_reject_lying_counts_and_lengths() {
        let mut head = vec![PROTOCOL_VERSION, KIND_LOG_BATCH];
        head.extend_from_slice(&7u64.to_le_bytes());
        for name in ["mainlog", "master"] {
            head.extend_from_slice(&(name.len() as u32).to_le_bytes());
            head.extend_from_slice(name.as_bytes());
        }
        let mut lying = head.clone();
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            err(&lying),
            "log_batch.records: 4294967295 entries cannot fit in the 0 bytes left"
        );
        let mut long = head;
        long.extend_from_slice(&1u32.to_le_bytes());
        long.extend_from_slice(&[0; 12]);
        long.extend_from_slice(&1000u32.to_le_bytes());
        long.extend_from_slice(b"short");
        assert_eq!(
            err(&long),
            "log_batch.records.payload: length 1000 exceeds the 5 bytes left"
        );
    }

    #[test]
    fn cache_updates_reject_lying_counts_long_fields_and_bad_tags() {
        let mut head = vec![PROTOCOL_VERSION, KIND_CACHE_UPDATE];
        head.extend_from_slice(&1u32.to_le_bytes());
        head.push(b'c');
        let mut lying = head.clone();
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            err(&lying),
            "cache_update.entries: 4294967295 entries cannot fit in the 0 bytes left"
        );
        // One entry: a key, then the value's option tag.
        let entry = |key_len: u32, tag: u8, rest: &[u8]| {
            let mut b = head.clone();
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&key_len.to_le_bytes());
            b.extend_from_slice(&vec![b'k'; key_len.min(8) as usize]);
            b.push(tag);
            b.extend_from_slice(rest);
            // A stamp, an empty origin, an expiry.
            b.extend_from_slice(&[0; 20]);
            b
        };
        assert_eq!(
            err(&entry(5000, 0, &[])),
            "cache_update.entries.key: length 5000 exceeds 4096"
        );
        assert_eq!(
            err(&entry(1, 2, &[])),
            "cache_update.entries.value: invalid option tag 2 (must be 0 or 1)"
        );
        assert_eq!(
            err(&entry(1, 1, &100_000u32.to_le_bytes())),
            "cache_update.entries.value: length 100000 exceeds 65536"
        );
        // A valid delete, then the origin claiming more bytes than remain.
        let mut origin = entry(1, 0, &[]);
        origin.truncate(origin.len() - 20);
        origin.extend_from_slice(&[0; 8]);
        origin.extend_from_slice(&300u32.to_le_bytes());
        origin.extend_from_slice(&[0; 16]);
        assert_eq!(
            err(&origin),
            "cache_update.entries.origin: length 300 exceeds 255"
        );
        let ok = entry(1, 0, &[]);
        assert!(decode_message(&ok).is_ok(), "{:?}", decode_message(&ok));
        assert_eq!(
            err(&ok[..ok.len() - 1]),
            "cache_update.entries.expires_ms: truncated: needs 8 bytes, 7 left"
        );
    }

    #[test]
    fn duravip_tables_reject_lying_counts_and_unknown_families() {
        let mut lying = vec![PROTOCOL_VERSION, KIND_DURAVIP_TABLE];
        lying.extend_from_slice(&[0; 16]);
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            err(&lying),
            "duravip_table.claims: 4294967295 entries cannot fit in the 0 bytes left"
        );
        let mut family = vec![PROTOCOL_VERSION, KIND_DURAVIP_TABLE];
        family.extend_from_slice(&[0; 16]);
        family.extend_from_slice(&0u32.to_le_bytes());
        family.extend_from_slice(&1u32.to_le_bytes());
        family.extend_from_slice(&[5, 1, 2, 3, 4]);
        assert_eq!(
            err(&family),
            "duravip_table.owned: unknown address family 5"
        );
        // No claims, no owned IPs, then handoffs: a lying count, then a
        // name over the cap.
        let mut lying = vec![PROTOCOL_VERSION, KIND_DURAVIP_TABLE];
        lying.extend_from_slice(&[0; 16]);
        lying.extend_from_slice(&[0; 8]);
        lying.extend_from_slice(&2u32.to_le_bytes());
        lying.extend_from_slice(&[4, 10, 0, 0, 1, 0, 0, 0, 0]);
        lying.extend_from_slice(&[7; 16]);
        assert_eq!(
            err(&lying),
            "duravip_table.handoffs: 2 entries cannot fit in the 25 bytes left"
        );
        let mut long = vec![PROTOCOL_VERSION, KIND_DURAVIP_TABLE];
        long.extend_from_slice(&[0; 16]);
        long.extend_from_slice(&[0; 8]);
        long.extend_from_slice(&1u32.to_le_bytes());
        long.extend_from_slice(&[4, 10, 0, 0, 1]);
        long.extend_from_slice(&300u32.to_le_bytes());
        long.extend_from_slice(&[b'x'; 300]);
        long.extend_from_slice(&[7; 16]);
        assert_eq!(
            err(&long),
            "duravip_table.handoffs.to: length 300 exceeds 255"
        );
    }

    #[test]
    fn log_group_lines_reject_lying_lengths() {
        let mut head = vec![PROTOCOL_VERSION, KIND_LOG_GROUP_LINE];
        head.extend_from_slice(&1u32.to_le_bytes());
        head.push(b'g');
        head.extend_from_slice(&8u32.to_le_bytes());
        head.extend_from_slice(b"paniclog");
        head.extend_from_slice(&[0; 8]);
        let line = |len: u32, bytes: &[u8]| {
            let mut b = head.clone();
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(bytes);
            b
        };
        assert_eq!(
            err(&line(u32::MAX, b"boom")),
            "log_group_line.line: length 4294967295 exceeds 65536"
        );
        assert_eq!(
            err(&line(10, b"boom")),
            "log_group_line.line: length 10 exceeds the 4 bytes left"
        );
        assert!(decode_message(&line(4, b"boom")).is_ok());
        let mut group = vec![PROTOCOL_VERSION, KIND_LOG_GROUP_LINE];
        group.extend_from_slice(&300u32.to_le_bytes());
        group.extend_from_slice(&[b'g'; 300]);
        assert_eq!(err(&group), "log_group_line.group: length 300 exceeds 255");
    }

    #[test]
    fn moves_reject_bad_ids_lying_counts_long_fields_and_unknown_outcomes() {
        let with_id = |kind: u8, id: &[u8]| {
            let mut b = vec![PROTOCOL_VERSION, kind];
            b.extend_from_slice(&(id.len() as u32).to_le_bytes());
            b.extend_from_slice(id);
            b
        };
        assert_eq!(
            err(&with_id(KIND_MOVE_ACK, b"a/b")),
            "move_ack.id: a move id is made of A-Z a-z 0-9 . _ - : @ + =, found '/' in \"a/b\""
        );
        assert_eq!(
            err(&with_id(KIND_MOVE_CHUNK, b"")),
            "move_chunk.id: a move id is 1 to 64 characters, found 0"
        );
        assert_eq!(
            err(&with_id(KIND_MOVE_BEGIN, &[b'x'; 65])),
            "move_begin.id: length 65 exceeds 64"
        );
        let mut outcome = with_id(KIND_MOVE_ACK, b"m");
        outcome.push(4);
        assert_eq!(err(&outcome), "move_ack.outcome: unknown value 4");
        let mut reason = with_id(KIND_MOVE_ACK, b"m");
        reason.push(2);
        reason.extend_from_slice(&2000u32.to_le_bytes());
        assert_eq!(err(&reason), "move_ack.reason: length 2000 exceeds 1024");

        let mut chunk = with_id(KIND_MOVE_CHUNK, b"m");
        chunk.extend_from_slice(&0u64.to_le_bytes());
        chunk.extend_from_slice(&(MOVE_CHUNK as u32 + 1).to_le_bytes());
        assert_eq!(
            err(&chunk),
            format!(
                "move_chunk.data: length {} exceeds {MOVE_CHUNK}",
                MOVE_CHUNK + 1
            )
        );

        // A begin: an empty MAIL FROM, then its recipients.
        let mut begin = with_id(KIND_MOVE_BEGIN, b"m");
        begin.extend_from_slice(&0u32.to_le_bytes());
        let mut lying = begin.clone();
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            err(&lying),
            "move_begin.recipients: 4294967295 entries cannot fit in the 0 bytes left"
        );
        let mut long = begin.clone();
        long.extend_from_slice(&1u32.to_le_bytes());
        long.extend_from_slice(&2000u32.to_le_bytes());
        long.extend_from_slice(&[b'r'; 8]);
        assert_eq!(
            err(&long),
            "move_begin.recipients: length 2000 exceeds 1024"
        );
        // No recipients, empty binding and group, then lying headers.
        let mut headers = begin;
        headers.extend_from_slice(&[0; 12]);
        headers.extend_from_slice(&3u32.to_le_bytes());
        headers.extend_from_slice(&[0; 16]);
        assert_eq!(
            err(&headers),
            "move_begin.headers: 3 entries cannot fit in the 16 bytes left"
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode_message(&Message::Hello(Hello {
            name: "a".to_string(),
            generation: 1,
            cluster_group: "g".to_string(),
        }));
        bytes.extend_from_slice(&[0, 0, 0]);
        assert_eq!(err(&bytes), "3 trailing bytes after a complete hello");
    }

    #[test]
    fn truncation_names_the_field() {
        let bytes = encode_message(&samples()[0]);
        // Cut inside view_id: name(4+4) generation(8) incarnation(4)
        // node_type(1) subcluster(4+4) pid(4) version(4+5) port(2)
        // digest(2+8) precede it.
        let view_id_at = 2 + 8 + 8 + 4 + 1 + 8 + 4 + 9 + 2 + 10;
        assert_eq!(
            err(&bytes[..view_id_at + 3]),
            "heartbeat.view_id: truncated: needs 8 bytes, 3 left"
        );
    }

    #[test]
    fn string_errors_name_the_field() {
        let mut long = vec![PROTOCOL_VERSION, KIND_HEARTBEAT];
        long.extend_from_slice(&300u32.to_le_bytes());
        long.extend_from_slice(&[b'a'; 300]);
        assert_eq!(err(&long), "heartbeat.sender.name: length 300 exceeds 255");

        let mut huge = vec![PROTOCOL_VERSION, KIND_CONSOLE_REQUEST];
        huge.extend_from_slice(&[0; 8]);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            err(&huge),
            format!(
                "console_request.command: length {} exceeds {MAX_FRAME}",
                u32::MAX
            )
        );

        let mut short = vec![PROTOCOL_VERSION, KIND_HELLO];
        short.extend_from_slice(&10u32.to_le_bytes());
        short.extend_from_slice(b"abc");
        assert_eq!(
            err(&short),
            "hello.name: length 10 exceeds the 3 bytes left"
        );

        let mut bad = vec![PROTOCOL_VERSION, KIND_HELLO];
        bad.extend_from_slice(&3u32.to_le_bytes());
        bad.extend_from_slice(&[b'a', 0xff, b'b']);
        assert_eq!(
            err(&bad),
            "hello.name: not UTF-8 (invalid byte at offset 1)"
        );
    }

    /// Replaces the byte at `at` in the first sample's encoding.
    fn patched_heartbeat(at: usize, value: u8) -> Vec<u8> {
        let mut bytes = encode_message(&samples()[0]);
        bytes[at] = value;
        bytes
    }

    #[test]
    fn enums_options_and_bools_reject_unknown_values() {
        // node_type follows name(4+4), generation(8), incarnation(4).
        let node_type_at = 2 + 8 + 8 + 4;
        assert_eq!(
            err(&patched_heartbeat(node_type_at, 2)),
            "heartbeat.sender.node_type: unknown value 2"
        );
        let about_you_at = encode_message(&samples()[0]).len() - (1 + 1 + 8 + 4);
        assert_eq!(
            err(&patched_heartbeat(about_you_at, 2)),
            "heartbeat.about_you: invalid option tag 2 (must be 0 or 1)"
        );
        assert_eq!(
            err(&patched_heartbeat(about_you_at + 1, 3)),
            "heartbeat.about_you.state: unknown value 3"
        );
        let mut response = encode_message(&samples()[8]);
        response[10] = 2;
        assert_eq!(
            err(&response),
            "console_response.ok: invalid bool 2 (must be 0 or 1)"
        );
    }

    #[test]
    fn list_count_is_checked_before_allocating() {
        // The digest count sits after name(4+4) generation(8) incarnation(4)
        // node_type(1) subcluster(4+4) pid(4) version(4+5) port(2).
        let count_at = 2 + 8 + 8 + 4 + 1 + 8 + 4 + 9 + 2;
        let mut bytes = encode_message(&samples()[0]);
        bytes.truncate(count_at);
        bytes.extend_from_slice(&u16::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 10]);
        assert_eq!(
            err(&bytes),
            "heartbeat.sender.config_digest: 65535 entries need 262140 bytes, 10 left"
        );
    }

    /// A deterministic xorshift64 generator, so a failure replays exactly.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn no_input_panics() {
        // Every prefix of every valid encoding (the big console text is
        // skipped: its prefixes add time, not paths).
        for m in samples()
            .iter()
            .filter(|m| encode_message(m).len() < 10_000)
        {
            let bytes = encode_message(m);
            for end in 0..bytes.len() {
                assert!(
                    decode_message(&bytes[..end]).is_err(),
                    "prefix {end} of {m:?}"
                );
            }
        }
        // Random bytes, and valid encodings with random bytes overwritten.
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut valid: Vec<Vec<u8>> = samples()[..9].iter().map(encode_message).collect();
        valid.push(encode_message(&Message::CacheUpdate(CacheUpdate {
            object: "c".into(),
            entries: vec![
                CacheEntry {
                    key: b"k@x".to_vec(),
                    value: Some(b"v".to_vec()),
                    stamp: 7,
                    origin: "n1".into(),
                    expires_ms: 9,
                },
                CacheEntry {
                    key: b"d".to_vec(),
                    value: None,
                    stamp: 8,
                    origin: "n2".into(),
                    expires_ms: 0,
                },
            ],
        })));
        valid.push(encode_message(&Message::LogGroupLine(LogGroupLine {
            group: "panics".into(),
            log: "paniclog".into(),
            time_us: 7,
            line: b"boom".to_vec(),
        })));
        valid.extend(
            move_samples()
                .iter()
                .map(encode_message)
                .filter(|b| b.len() < 1000),
        );
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                let len = (rng.next() % 64) as usize;
                let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                // Mostly the right version, so the fields get exercised.
                if let Some(first) = b.first_mut()
                    && !rng.next().is_multiple_of(4)
                {
                    *first = PROTOCOL_VERSION;
                }
                b
            } else {
                valid[(rng.next() % valid.len() as u64) as usize].clone()
            };
            if !bytes.is_empty() {
                for _ in 0..=(rng.next() % 3) {
                    let at = (rng.next() % bytes.len() as u64) as usize;
                    bytes[at] = rng.next() as u8;
                }
            }
            // Whatever decodes must re-encode to the same bytes: one
            // encoding per message.
            if let Ok(m) = decode_message(&bytes) {
                assert_eq!(encode_message(&m), bytes);
            }
        }
    }
}
