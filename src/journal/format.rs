//! The jlog on-disk formats, as bytes: no files here.
//!
//! Every number is a host-endian `u32` (jlog writes its structs as they lie
//! in memory; `jlog_change_endian` exists for moving a journal between
//! machines), which on every platform we build for is little-endian.
//!
//! * `metastore`: `storage_log` (the segment being written),
//!   `unit_limit` (bytes after which a segment is closed), `safety`,
//!   `hdr_magic`;
//! * a record: a 16-byte header {`reserved` = the magic, `tv_sec`,
//!   `tv_usec`, `mlen`} and `mlen` bytes of payload;
//! * a checkpoint, `cp.<hex of the subscriber's name>`: the [`LogId`] of
//!   the last record the subscriber consumed;
//! * an index, `<segment>.idx`: the `u64` offset of each record in its
//!   segment, the first being 0, and one more 0 once the segment is closed.

use std::fmt;

/// `hdr_magic` of an uncompressed journal, and every record's `reserved`.
pub const MAGIC: u32 = 0x663A_7318;

/// Bytes of a record header.
pub const HEADER_LEN: usize = 16;

/// jlog's default segment size (4 MiB).
pub const DEFAULT_UNIT_LIMIT: u32 = 4 * 1024 * 1024;

/// A record's position: segment `log`, and `marker`, its 1-based number in
/// that segment (0: before the first). A checkpoint is the last record
/// consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogId {
    pub log: u32,
    pub marker: u32,
}

/// As `jlog_snprint_logid`: `%08x:%08x`.
impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}:{:08x}", self.log, self.marker)
    }
}

impl LogId {
    pub fn encode(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.log.to_ne_bytes());
        b[4..].copy_from_slice(&self.marker.to_ne_bytes());
        b
    }

    /// A checkpoint file's contents; `None` unless exactly 8 bytes.
    pub fn decode(b: &[u8]) -> Option<LogId> {
        let b: &[u8; 8] = b.try_into().ok()?;
        Some(LogId {
            log: u32_at(b, 0),
            marker: u32_at(b, 4),
        })
    }
}

/// The `metastore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub storage_log: u32,
    pub unit_limit: u32,
    pub safety: u32,
    pub hdr_magic: u32,
}

impl Meta {
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        for (i, v) in [
            self.storage_log,
            self.unit_limit,
            self.safety,
            self.hdr_magic,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<Meta, String> {
        let b: &[u8; 16] = b
            .try_into()
            .map_err(|_| format!("metastore is {} bytes, not 16", b.len()))?;
        let meta = Meta {
            storage_log: u32_at(b, 0),
            unit_limit: u32_at(b, 4),
            safety: u32_at(b, 8),
            hdr_magic: u32_at(b, 12),
        };
        if meta.hdr_magic != MAGIC {
            return Err(format!(
                "metastore magic {:#010x} is not an uncompressed jlog's {MAGIC:#010x}",
                meta.hdr_magic
            ));
        }
        Ok(meta)
    }
}

/// A record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub tv_sec: u32,
    pub tv_usec: u32,
    pub mlen: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        for (i, v) in [MAGIC, self.tv_sec, self.tv_usec, self.mlen]
            .into_iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// The header at the start of `b`; `None` when `b` is too short, an
    /// error when the bytes are not a header (the magic is wrong).
    pub fn decode(b: &[u8]) -> Result<Option<Header>, String> {
        let Some(b) = b.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let reserved = u32_at(b, 0);
        if reserved != MAGIC {
            return Err(format!(
                "record header magic {reserved:#010x}, expected {MAGIC:#010x}"
            ));
        }
        Ok(Some(Header {
            tv_sec: u32_at(b, 4),
            tv_usec: u32_at(b, 8),
            mlen: u32_at(b, 12),
        }))
    }
}

/// A segment's file name: 8 lowercase hex digits.
pub fn segment_name(log: u32) -> String {
    format!("{log:08x}")
}

/// A subscriber's checkpoint file name: `cp.` and the name's bytes in hex.
pub fn checkpoint_name(subscriber: &str) -> String {
    let mut name = String::from("cp.");
    for b in subscriber.bytes() {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// The subscriber a checkpoint file name is for, if it is one.
pub fn subscriber_of(file_name: &str) -> Option<String> {
    let hex = file_name.strip_prefix("cp.")?;
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The offsets an index file holds, and whether it marks its segment
/// closed (a 0 after the first offset). Trailing bytes short of an offset
/// are ignored: an index write cut by a crash is rebuilt from there.
pub fn decode_index(b: &[u8]) -> (Vec<u64>, bool) {
    let mut offsets = Vec::with_capacity(b.len() / 8);
    for (i, chunk) in b.chunks_exact(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let offset = u64::from_ne_bytes(w);
        if offset == 0 && i > 0 {
            return (offsets, true);
        }
        offsets.push(offset);
    }
    (offsets, false)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_jlog_does_and_round_trip() {
        let id = LogId {
            log: 3,
            marker: 0x16,
        };
        assert_eq!(id.to_string(), "00000003:00000016");
        assert_eq!(LogId::decode(&id.encode()), Some(id));
        assert_eq!(LogId::decode(&[0; 7]), None);
    }

    #[test]
    fn names_are_hex() {
        assert_eq!(checkpoint_name("aggregator"), "cp.61676772656761746f72");
        assert_eq!(subscriber_of("cp.6d6173746572").as_deref(), Some("master"));
        for bad in ["cp.", "cp.6", "cp.zz", "metastore", "cp.ff"] {
            assert_eq!(subscriber_of(bad), None, "{bad}");
        }
        assert_eq!(segment_name(0x1f), "0000001f");
    }

    #[test]
    fn headers_and_the_metastore_check_their_magic() {
        let h = Header {
            tv_sec: 1_700_000_000,
            tv_usec: 5,
            mlen: 59,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(Some(h)));
        assert_eq!(Header::decode(&h.encode()[..15]), Ok(None));
        let mut bad = h.encode();
        bad[0] ^= 1;
        assert!(Header::decode(&bad).unwrap_err().contains("magic"));
        let m = Meta {
            storage_log: 3,
            unit_limit: 2048,
            safety: 1,
            hdr_magic: MAGIC,
        };
        assert_eq!(Meta::decode(&m.encode()), Ok(m));
        let compressed = Meta {
            hdr_magic: 0x1510_6A00,
            ..m
        };
        assert!(Meta::decode(&compressed.encode()).is_err());
        assert!(Meta::decode(&[0; 15]).is_err());
    }

    #[test]
    fn an_index_ends_at_its_closing_zero_or_at_a_torn_tail() {
        let bytes: Vec<u8> = [0u64, 76, 128, 0]
            .iter()
            .flat_map(|o| o.to_ne_bytes())
            .collect();
        assert_eq!(decode_index(&bytes), (vec![0, 76, 128], true));
        assert_eq!(decode_index(&bytes[..20]), (vec![0, 76], false));
        assert_eq!(decode_index(&[]), (vec![], false));
    }
}
