//! Envelopes on the wire: framing, the AEAD, and cluster key files.
//!
//! Every datagram and TCP frame is one envelope: a small clear header that
//! says who sent it and where it sits in the sender's sequence, then the
//! body (an encoded `core::wire::Message`). With a cluster key the body is
//! encrypted and the whole packet authenticated with XChaCha20-Poly1305;
//! without one it travels in clear.
//!
//! ```text
//! "EC"  version  flags  sender_len  sender        generation  seq     payload
//!  2      1        1        1       sender_len       8 LE      8 LE    rest
//! ```
//!
//! `flags` bit 0 says the payload is sealed; other bits are reserved and
//! rejected. Sealed, the payload is ciphertext ‖ 16-byte tag, the associated
//! data is the header (every byte before the payload, so no header field can
//! be altered), and the 24-byte nonce is
//!
//! ```text
//! generation (8 LE) ‖ seq (8 LE) ‖ first 8 bytes of FNV-1a-64(sender) (LE)
//! ```
//!
//! A nonce must never repeat under one key. It cannot here as long as no
//! sender seals twice with the same (generation, seq): seq increases with
//! every envelope a sender seals, from one counter shared by all its peers
//! and both carriers, and generation increases on every restart, so a
//! sender never returns to an old (generation, seq). Different senders
//! share the key, and the name hash keeps their nonces apart even if they
//! happen to reach the same (generation, seq); the hash needs no secrecy,
//! only stability across builds, hence FNV rather than std's unspecified
//! `DefaultHasher`. The nonce is derived, not sent: it costs no bytes.
//!
//! A node with a key accepts only sealed packets and a node without one only
//! clear ones; each mismatch has its own [`Reject`] reason, so a half-keyed
//! cluster says so instead of failing silently.
//!
//! [`Sealer::open`] authenticates; replay rejection is the caller's next
//! step, with the peer's [`ReplayGuard`], and must come after (see its
//! module for why the order matters).
//!
//! # Key files
//!
//! A key file holds the 32-byte key as 64 hex digits and a newline, and must
//! be readable by its owner only (mode 0600): `eccluster keygen FILE` makes
//! one; every node of the cluster gets a copy.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, Generate, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

use crate::core::wire::{MAX_FRAME, PROTOCOL_VERSION};

pub use crate::core::wire::{Reject, RejectCounters, ReplayGuard};

const MAGIC: [u8; 2] = *b"EC";
const FLAG_SEALED: u8 = 1;
/// The Poly1305 tag appended to a sealed payload.
const TAG_LEN: usize = 16;
/// Bytes in a key.
pub const KEY_LEN: usize = 32;

/// One packet's contents: who sent it, its place in the sender's sequence,
/// and the encoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sender's node name, at most `MAX_NAME` bytes.
    pub sender: String,
    /// The sender's boot generation (increases on every restart).
    pub generation: u64,
    /// Increases with every envelope the sender seals in `generation`.
    pub seq: u64,
    /// An encoded `core::wire::Message`.
    pub body: Vec<u8>,
}

/// A cluster key. Its `Debug` does not show the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Seals outgoing envelopes and opens incoming ones, with the cluster key
/// if there is one.
#[derive(Clone, Debug)]
pub struct Sealer {
    key: Option<Key>,
}

impl Sealer {
    /// `None` runs the cluster in clear (an explicit insecure setting).
    pub fn new(key: Option<Key>) -> Sealer {
        Sealer { key }
    }

    /// The envelope as bytes for the wire.
    ///
    /// # Panics
    ///
    /// If `env.sender` is longer than `MAX_NAME` bytes: node names are
    /// bounded by the protocol, and truncating one would send a packet
    /// under another name.
    pub fn seal(&self, env: &Envelope) -> Vec<u8> {
        let sealed = self.key.is_some();
        let mut out = header(env, sealed);
        match &self.key {
            None => out.extend_from_slice(&env.body),
            Some(key) => {
                let payload = Payload {
                    msg: &env.body,
                    aad: &out,
                };
                let ciphertext = cipher(key)
                    .encrypt(&nonce(&env.sender, env.generation, env.seq), payload)
                    // XChaCha20-Poly1305 fails only beyond 256 GiB of plaintext.
                    .expect("body too large to seal");
                out.extend_from_slice(&ciphertext);
            }
        }
        out
    }

    /// Parses and, with a key, authenticates and decrypts one packet.
    /// Replay checks come next, by the caller (see the module docs).
    pub fn open(&self, bytes: &[u8]) -> Result<Envelope, Reject> {
        let (header, sealed) = parse_header(bytes)?;
        let payload = &bytes[header.len..];
        let body = match (&self.key, sealed) {
            (None, true) => return Err(Reject::UnexpectedlySealed),
            (Some(_), false) => return Err(Reject::NotSealed),
            (None, false) => {
                if payload.len() > MAX_FRAME {
                    return Err(Reject::TooLarge);
                }
                payload.to_vec()
            }
            (Some(key), true) => {
                if payload.len() > MAX_FRAME + TAG_LEN {
                    return Err(Reject::TooLarge);
                }
                if payload.len() < TAG_LEN {
                    return Err(Reject::Malformed(format!(
                        "sealed payload of {} bytes is shorter than the {TAG_LEN}-byte tag",
                        payload.len()
                    )));
                }
                let nonce = nonce(&header.sender, header.generation, header.seq);
                let payload = Payload {
                    msg: payload,
                    aad: &bytes[..header.len],
                };
                cipher(key)
                    .decrypt(&nonce, payload)
                    .map_err(|_| Reject::BadAuth)?
            }
        };
        Ok(Envelope {
            sender: header.sender,
            generation: header.generation,
            seq: header.seq,
            body,
        })
    }
}

fn cipher(key: &Key) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&key.0.into())
}

/// generation ‖ seq ‖ FNV-1a-64(sender): unique per key, see the module docs.
fn nonce(sender: &str, generation: u64, seq: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..8].copy_from_slice(&generation.to_le_bytes());
    n[8..16].copy_from_slice(&seq.to_le_bytes());
    n[16..].copy_from_slice(&fnv1a64(sender.as_bytes()).to_le_bytes());
    n.into()
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn header(env: &Envelope, sealed: bool) -> Vec<u8> {
    // MAX_NAME is u8::MAX: the one-byte length is the protocol's name limit.
    let sender_len =
        u8::try_from(env.sender.len()).expect("sender name longer than MAX_NAME bytes");
    let mut h = Vec::with_capacity(5 + env.sender.len() + 16 + env.body.len() + TAG_LEN);
    h.extend_from_slice(&MAGIC);
    h.push(PROTOCOL_VERSION);
    h.push(if sealed { FLAG_SEALED } else { 0 });
    h.push(sender_len);
    h.extend_from_slice(env.sender.as_bytes());
    h.extend_from_slice(&env.generation.to_le_bytes());
    h.extend_from_slice(&env.seq.to_le_bytes());
    h
}

/// A parsed header; `len` is where the payload starts.
struct Header {
    sender: String,
    generation: u64,
    seq: u64,
    len: usize,
}

fn parse_header(bytes: &[u8]) -> Result<(Header, bool), Reject> {
    let Some((magic, rest)) = bytes.split_first_chunk::<2>() else {
        return Err(Reject::BadMagic);
    };
    if *magic != MAGIC {
        return Err(Reject::BadMagic);
    }
    let Some(([version, flags, sender_len], rest)) = rest.split_first_chunk::<3>() else {
        return Err(Reject::Malformed("truncated header".into()));
    };
    if *version != PROTOCOL_VERSION {
        return Err(Reject::Version(*version));
    }
    if flags & !FLAG_SEALED != 0 {
        return Err(Reject::Malformed(format!("unknown flags {flags:#04x}")));
    }
    let Some((sender, rest)) = rest.split_at_checked(usize::from(*sender_len)) else {
        return Err(Reject::Malformed("truncated sender".into()));
    };
    let sender =
        std::str::from_utf8(sender).map_err(|_| Reject::Malformed("sender is not UTF-8".into()))?;
    let Some((generation, rest)) = rest.split_first_chunk::<8>() else {
        return Err(Reject::Malformed("truncated generation".into()));
    };
    let Some((seq, rest)) = rest.split_first_chunk::<8>() else {
        return Err(Reject::Malformed("truncated seq".into()));
    };
    let header = Header {
        sender: sender.to_owned(),
        generation: u64::from_le_bytes(*generation),
        seq: u64::from_le_bytes(*seq),
        len: bytes.len() - rest.len(),
    };
    Ok((header, flags & FLAG_SEALED != 0))
}

/// Writes a new random key to `path` (format in the module docs), readable
/// by the owner only. Refuses to replace an existing file: overwriting a
/// cluster's key by mistake would cut this node off from its peers.
pub fn generate_key_file(path: &Path) -> io::Result<()> {
    let key = <[u8; KEY_LEN]>::try_generate()
        .map_err(|e| io::Error::other(format!("cannot get random bytes from the system: {e}")))?;
    let mut text: String = key.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    // Mode 0600 at creation, so the key is never readable by others, not
    // even for a moment; create_new fails if anything exists at `path`.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{} already exists; refusing to overwrite a key (remove it first to make a new one)",
                        path.display()
                    ),
                )
            } else {
                io::Error::new(e.kind(), format!("{}: {e}", path.display()))
            }
        })?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Reads a key file (format in the module docs). Refuses files that group
/// or others may read or write: a key anyone on the host can read protects
/// nothing.
pub fn load_key_file(path: &Path) -> Result<Key, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            format!("key file {shown} does not exist (make one with `eccluster keygen {shown}`)")
        }
        _ => format!("key file {shown}: {e}"),
    })?;
    // The permissions of the file we opened, not of whatever the path
    // names a moment later.
    let mode = file
        .metadata()
        .map_err(|e| format!("key file {shown}: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "key file {shown} is accessible by group or others (mode {:04o}); run `chmod 600 {shown}`",
            mode & 0o7777
        ));
    }
    // A key file is 65 bytes; reading a little more is enough to say a
    // longer one is wrong, without reading a huge one.
    let mut text = String::new();
    file.take(256)
        .read_to_string(&mut text)
        .map_err(|e| format!("key file {shown}: {e}"))?;
    let hex = text.trim_end();
    let found = hex.chars().count();
    if found != 2 * KEY_LEN {
        return Err(format!(
            "key file {shown}: expected {} hex digits (a {KEY_LEN}-byte key), found {found} characters",
            2 * KEY_LEN,
        ));
    }
    let mut key = [0u8; KEY_LEN];
    for (i, c) in hex.chars().enumerate() {
        let Some(digit) = c.to_digit(16) else {
            return Err(format!(
                "key file {shown}: character {c:?} at position {} is not a hex digit",
                i + 1
            ));
        };
        // High nibble first. A hex digit is below 16, so the cast is exact.
        key[i / 2] |= (digit as u8) << if i % 2 == 0 { 4 } else { 0 };
    }
    Ok(Key(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(seq: u64) -> Envelope {
        Envelope {
            sender: "mta1".to_string(),
            generation: 1_700_000_000_000_000_000,
            seq,
            body: b"an encoded message".to_vec(),
        }
    }

    fn keyed(byte: u8) -> Sealer {
        Sealer::new(Some(Key::from_bytes([byte; KEY_LEN])))
    }

    #[test]
    fn round_trip_in_clear() {
        let s = Sealer::new(None);
        let bytes = s.seal(&env(1));
        assert_eq!(&bytes[..5], &[b'E', b'C', PROTOCOL_VERSION, 0, 4]);
        assert!(bytes.ends_with(b"an encoded message"));
        assert_eq!(s.open(&bytes), Ok(env(1)));
    }

    #[test]
    fn round_trip_sealed_hides_the_body() {
        let s = keyed(7);
        let bytes = s.seal(&env(1));
        assert_eq!(bytes[3], FLAG_SEALED);
        assert_eq!(bytes.len(), 5 + 4 + 16 + env(1).body.len() + TAG_LEN);
        assert!(!bytes.windows(7).any(|w| w == b"encoded"));
        assert_eq!(s.open(&bytes), Ok(env(1)));
        let empty = Envelope {
            body: Vec::new(),
            ..env(2)
        };
        assert_eq!(s.open(&s.seal(&empty)), Ok(empty));
    }

    #[test]
    fn wrong_key_is_bad_auth() {
        let bytes = keyed(7).seal(&env(1));
        assert_eq!(keyed(8).open(&bytes), Err(Reject::BadAuth));
    }

    #[test]
    fn any_flipped_bit_is_bad_auth() {
        let s = keyed(7);
        let bytes = s.seal(&env(1));
        // Skip magic, version, flags and sender_len: those fail earlier
        // with their own reasons. Sender, generation, seq, ciphertext and
        // tag are all covered by the AEAD.
        for at in 5..bytes.len() {
            let mut altered = bytes.clone();
            altered[at] ^= 0x01;
            assert_eq!(s.open(&altered), Err(Reject::BadAuth), "byte {at}");
        }
    }

    #[test]
    fn keyed_and_keyless_nodes_reject_each_other_distinctly() {
        let clear = Sealer::new(None).seal(&env(1));
        let sealed = keyed(7).seal(&env(1));
        assert_eq!(keyed(7).open(&clear), Err(Reject::NotSealed));
        assert_eq!(
            Sealer::new(None).open(&sealed),
            Err(Reject::UnexpectedlySealed)
        );
    }

    #[test]
    fn framing_faults_have_their_own_reasons() {
        let s = Sealer::new(None);
        let good = s.seal(&env(1));
        assert_eq!(s.open(b""), Err(Reject::BadMagic));
        assert_eq!(s.open(b"XC\x01\x00"), Err(Reject::BadMagic));
        let mut v = good.clone();
        v[2] = PROTOCOL_VERSION + 1;
        assert_eq!(s.open(&v), Err(Reject::Version(PROTOCOL_VERSION + 1)));
        let mut f = good.clone();
        f[3] = 0x80;
        assert_eq!(
            s.open(&f),
            Err(Reject::Malformed("unknown flags 0x80".into()))
        );
        assert_eq!(
            s.open(&good[..4]),
            Err(Reject::Malformed("truncated header".into()))
        );
        assert_eq!(
            s.open(&good[..20]),
            Err(Reject::Malformed("truncated seq".into()))
        );
        let mut latin1 = good.clone();
        latin1[5] = 0xe9;
        assert_eq!(
            s.open(&latin1),
            Err(Reject::Malformed("sender is not UTF-8".into()))
        );
        let sealed = keyed(7).seal(&env(1));
        assert_eq!(
            keyed(7).open(&sealed[..sealed.len() - env(1).body.len() - 1]),
            Err(Reject::Malformed(
                "sealed payload of 15 bytes is shorter than the 16-byte tag".into()
            ))
        );
        let big = Envelope {
            body: vec![0; MAX_FRAME + 1],
            ..env(1)
        };
        assert_eq!(s.open(&s.seal(&big)), Err(Reject::TooLarge));
        assert_eq!(keyed(7).open(&keyed(7).seal(&big)), Err(Reject::TooLarge));
    }

    /// What a receiver does: open (authenticate), then check the peer's guard.
    fn receive(s: &Sealer, guard: &mut ReplayGuard, bytes: &[u8]) -> Result<Envelope, Reject> {
        let env = s.open(bytes)?;
        guard.check_and_record(env.generation, env.seq)?;
        Ok(env)
    }

    #[test]
    fn replayed_bytes_are_refused() {
        let s = keyed(7);
        let mut guard = ReplayGuard::default();
        let first = s.seal(&env(1));
        assert!(receive(&s, &mut guard, &first).is_ok());
        assert_eq!(receive(&s, &mut guard, &first), Err(Reject::Replay));
    }

    #[test]
    fn reordering_restarts_and_old_packets() {
        let s = keyed(7);
        let mut guard = ReplayGuard::default();
        let packets: Vec<Vec<u8>> = (0..=200).map(|seq| s.seal(&env(seq))).collect();
        for seq in [200, 150, 199, 73] {
            assert!(receive(&s, &mut guard, &packets[seq]).is_ok(), "seq {seq}");
        }
        // Seq 72 is 128 behind 200: outside the window.
        assert_eq!(receive(&s, &mut guard, &packets[72]), Err(Reject::Replay));
        let restarted = Envelope {
            generation: env(0).generation + 1,
            ..env(0)
        };
        assert!(receive(&s, &mut guard, &s.seal(&restarted)).is_ok());
        assert_eq!(
            receive(&s, &mut guard, &packets[180]),
            Err(Reject::StaleGeneration)
        );
    }

    #[test]
    fn forged_packets_do_not_move_the_window() {
        let s = keyed(7);
        let mut guard = ReplayGuard::default();
        assert!(receive(&s, &mut guard, &s.seal(&env(10))).is_ok());
        // A far-future seq under the wrong key fails authentication and
        // never reaches the guard, so seq 11 is still in the window.
        let forged = keyed(8).seal(&env(1_000_000));
        assert_eq!(receive(&s, &mut guard, &forged), Err(Reject::BadAuth));
        assert!(receive(&s, &mut guard, &s.seal(&env(11))).is_ok());
    }

    #[test]
    fn nonces_differ_by_sender() {
        let a = env(1);
        let b = Envelope {
            sender: "mta2".to_string(),
            ..env(1)
        };
        assert_ne!(
            nonce(&a.sender, a.generation, a.seq),
            nonce(&b.sender, b.generation, b.seq)
        );
        // FNV-1a-64 of the empty string is its offset basis.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ecc-seal-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    #[test]
    fn key_file_round_trip() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("cluster.key");
        generate_key_file(&path).expect("generate");
        let meta = std::fs::metadata(&path).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert!(
            text[..64]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let key = load_key_file(&path).expect("load");
        // The loaded key is the one written.
        let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, text.trim_end());
        assert_eq!(format!("{key:?}"), "Key(..)");

        let err = generate_key_file(&path).expect_err("must refuse");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn key_file_errors() {
        let dir = temp_dir("errors");
        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path
        };
        let good = "0123456789abcdef".repeat(4);

        let missing = load_key_file(&dir.join("nope")).expect_err("missing");
        assert!(missing.contains("does not exist"), "{missing}");
        assert!(missing.contains("eccluster keygen"), "{missing}");

        let open = load_key_file(&write("open", &good, 0o644)).expect_err("0644");
        assert!(open.contains("(mode 0644)"), "{open}");
        assert!(open.contains("chmod 600"), "{open}");

        let short = load_key_file(&write("short", "abcd\n", 0o600)).expect_err("short");
        assert!(short.ends_with("found 4 characters"), "{short}");

        let bad = format!("{}xz\n", &good[..62]);
        let bad = load_key_file(&write("bad", &bad, 0o600)).expect_err("non-hex");
        assert!(
            bad.ends_with("character 'x' at position 63 is not a hex digit"),
            "{bad}"
        );

        // Upper case and a missing newline are accepted.
        let upper = load_key_file(&write("upper", &good.to_uppercase(), 0o400)).expect("upper");
        assert_eq!(upper.0[..2], [0x01, 0x23]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
