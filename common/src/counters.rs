//! The mutable counters of one user, kept apart from the state file so that a login costs
//! one in-place write (and one fdatasync when a code is accepted) instead of a whole-file
//! rewrite with two syncs.
//!
//! The counters file holds two fixed-size slots, each a complete record with a sequence
//! number, then its authenticator: HMAC-SHA256 under the enrollment's [`RecordKey`] over
//! the user name and the slot body, so a record forged or torn without the key is no
//! record. The body is everything before the last 32 bytes, authenticated without its
//! trailing zero bytes (the body's length is fixed, so that loses nothing, and the unused
//! device space costs no hashing): fields added to it are covered as they are. A write goes to the slot that does not hold the newest record, so
//! a write torn by a crash leaves the newest record intact: a reader gets the old state or
//! the new one. Each record carries the `generation` of the state file it extends; a record
//! of another generation is ignored, which makes every whole-file rewrite (enrollment,
//! unlock, new recovery codes, rekey) supersede the counters without touching this file.
//!
//! Records written before authentication (`PTC1`, an unkeyed SHA-256 anyone can recompute)
//! are accepted only beside a state file of format version 1, which is no better protected
//! itself; beside a version 2 state they are refused. Every write is `PTC3`; `PTC2`
//! records (the same, authenticated over the whole body with its zeros) are still read.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::crypto::RecordKey;
use crate::device::{Device, MAX_DEVICES, MAX_KEY_LABEL_LEN};
use crate::error::{Error, Result};
use crate::user::UserName;

/// Authenticated records, with remembered devices: 2048 bytes.
const MAGIC: &[u8; 4] = b"PTC3";
/// Records of the first authenticated format: the MAC covers the whole body, zeros and all.
const WHOLE_BODY_MAGIC: &[u8; 4] = b"PTC2";
const SLOT_LEN: usize = 2048;
/// Records of before authentication and devices: 256 bytes, a checksum only. Still read
/// (beside a version 1 state), never written.
const LEGACY_MAGIC: &[u8; 4] = b"PTC1";
const LEGACY_SLOT_LEN: usize = 256;
const MAC_LABEL: &[u8] = b"pam_totp counters v2";
/// Each record is a body, then its 32-byte authenticator (or legacy checksum).
const AUTH_LEN: usize = 32;
const BODY_LEN: usize = SLOT_LEN - AUTH_LEN;
/// Slots sit in different pages so that one torn page write cannot damage both.
const SLOT_OFFSETS: [u64; 2] = [0, 4096];
pub(crate) const FILE_LEN: u64 = 4096 + SLOT_LEN as u64;
pub const MAX_RHOST_LEN: usize = 64;
/// Where the device list starts in a body: after the fields of the legacy records.
const DEVICES_AT: usize = 74 + MAX_RHOST_LEN;

/// The values that change on every login attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Unix time of the last accepted code.
    pub last_used: Option<i64>,
    /// Highest accepted time step (HOTP: the last accepted counter; the next code is
    /// looked for after it).
    pub last_counter: Option<u64>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// Unix time until which the user is locked.
    pub locked_until: Option<i64>,
    /// Rejected attempts since the last success.
    pub rejected_since_success: u32,
    /// Remote host of the most recent rejected attempt (truncated to 64 bytes).
    pub last_rejected_rhost: Option<String>,
    /// Unix time of the most recent rejected attempt.
    pub last_rejected_at: Option<i64>,
    /// Bit i set: recovery code i of the state file is spent.
    pub recovery_used: u64,
    /// Locks since the last success (or `unlock`): the next lock lasts 2^lockouts times
    /// `lockout_secs`, up to `lockout_max_secs`.
    pub lockouts: u32,
    /// Devices remembered for `grace_secs`, at most [`crate::device::MAX_DEVICES`].
    pub devices: Vec<Device>,
}

/// One decoded slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub seq: u64,
    pub generation: u64,
    pub counters: Counters,
    /// A `PTC1` record: checksummed, not authenticated.
    pub legacy: bool,
}

/// What a counters file holds.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// Valid records by slot index.
    pub valid: [Option<Record>; 2],
}

impl Slots {
    /// The newest record of `generation`, if any.
    pub fn current(&self, generation: u64) -> Option<&Record> {
        self.valid
            .iter()
            .flatten()
            .filter(|r| r.generation == generation)
            .max_by_key(|r| r.seq)
    }

    /// Where the next write goes and with which sequence number. It never goes over the
    /// newest record of `in_force`, the generation of the state file now in place: a record
    /// of another generation may be newer (an enrollment whose state file never got renamed
    /// into place), and overwriting the only current record for it would let a torn write
    /// fall back to the state file's embedded counters. Without a record of `in_force`, it
    /// never goes over the newest valid record.
    fn next(&self, in_force: Option<u64>) -> (usize, u64) {
        let seq = self
            .valid
            .iter()
            .flatten()
            .map(|r| r.seq)
            .max()
            .unwrap_or(0)
            + 1;
        let keep = |gen: Option<u64>| {
            (0..2)
                .filter_map(|i| {
                    let r = self.valid[i].as_ref()?;
                    gen.is_none_or(|g| r.generation == g).then_some((i, r.seq))
                })
                .max_by_key(|&(_, seq)| seq)
        };
        match keep(in_force).or_else(|| keep(None)) {
            Some((i, _)) => (1 - i, seq),
            None => (0, seq),
        }
    }
}

fn opt_i64(v: Option<i64>) -> i64 {
    v.unwrap_or(i64::MIN)
}
fn from_i64(v: i64) -> Option<i64> {
    (v != i64::MIN).then_some(v)
}

/// The legacy (`PTC1`) checksum.
fn checksum(user: &UserName, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"pam_totp counters v1\0");
    h.update(user.as_str().as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

/// What the authenticator covers: the user name, then the slot body.
fn mac_input(user: &UserName, body: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(user.as_str().len() + 1 + body.len());
    data.extend_from_slice(user.as_str().as_bytes());
    data.push(0);
    data.extend_from_slice(body);
    data
}

/// The body as authenticated: without its trailing zero bytes.
fn trimmed(body: &[u8]) -> &[u8] {
    &body[..body.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)]
}

fn encode(user: &UserName, key: &RecordKey, rec: &Record) -> [u8; SLOT_LEN] {
    let c = &rec.counters;
    let mut b = [0u8; SLOT_LEN];
    b[0..4].copy_from_slice(MAGIC);
    b[4..12].copy_from_slice(&rec.seq.to_le_bytes());
    b[12..20].copy_from_slice(&rec.generation.to_le_bytes());
    b[20..28].copy_from_slice(&opt_i64(c.last_used).to_le_bytes());
    b[28..36].copy_from_slice(&c.last_counter.unwrap_or(u64::MAX).to_le_bytes());
    b[36..40].copy_from_slice(&c.failures.to_le_bytes());
    b[40..48].copy_from_slice(&opt_i64(c.locked_until).to_le_bytes());
    b[48..52].copy_from_slice(&c.rejected_since_success.to_le_bytes());
    b[52..60].copy_from_slice(&opt_i64(c.last_rejected_at).to_le_bytes());
    b[60..68].copy_from_slice(&c.recovery_used.to_le_bytes());
    let rhost = c.last_rejected_rhost.as_deref().map(truncate_rhost);
    match rhost {
        Some(h) => {
            b[68] = 1;
            b[69] = h.len() as u8;
            b[70..70 + h.len()].copy_from_slice(h.as_bytes());
        }
        None => b[68] = 0,
    }
    // After the longest rhost; records written before this field hold zeros here.
    b[70 + MAX_RHOST_LEN..74 + MAX_RHOST_LEN].copy_from_slice(&c.lockouts.to_le_bytes());
    encode_devices(&mut b[DEVICES_AT..BODY_LEN], &c.devices);
    let tag = key.tag(MAC_LABEL, &mac_input(user, trimmed(&b[..BODY_LEN])));
    b[BODY_LEN..].copy_from_slice(&tag);
    b
}

/// The device list: a count, then per device its id, `since`, and the host and key label
/// each as a length and bytes (a key length of 0xff: no key). The newest
/// [`MAX_DEVICES`] fit whatever their strings (each is bounded).
fn encode_devices(out: &mut [u8], devices: &[Device]) {
    let keep = &devices[devices.len().saturating_sub(MAX_DEVICES)..];
    out[0] = keep.len() as u8;
    let mut at = 1;
    for d in keep {
        out[at..at + 16].copy_from_slice(&d.id);
        out[at + 16..at + 24].copy_from_slice(&d.since.to_le_bytes());
        at += 24;
        let host = truncate_rhost(&d.rhost);
        out[at] = host.len() as u8;
        out[at + 1..at + 1 + host.len()].copy_from_slice(host.as_bytes());
        at += 1 + host.len();
        match d.key.as_deref().map(crate::device::clean_label) {
            Some(k) => {
                out[at] = k.len() as u8;
                out[at + 1..at + 1 + k.len()].copy_from_slice(k.as_bytes());
                at += 1 + k.len();
            }
            None => {
                out[at] = 0xff;
                at += 1;
            }
        }
    }
}

/// Reads what [`encode_devices`] wrote; `None` if it runs past the body or breaks a bound.
fn decode_devices(b: &[u8]) -> Option<Vec<Device>> {
    let count = usize::from(*b.first()?);
    if count > MAX_DEVICES {
        return None;
    }
    let mut at = 1;
    let mut devices = Vec::with_capacity(count);
    let string = |at: &mut usize, max: usize| -> Option<Option<String>> {
        let len = *b.get(*at)?;
        *at += 1;
        if len == 0xff {
            return Some(None);
        }
        let len = usize::from(len);
        if len > max {
            return None;
        }
        let s = b.get(*at..*at + len)?;
        *at += len;
        // Cleaned again on the way out, as remote hosts are.
        Some(Some(clean_rhost(&String::from_utf8_lossy(s))))
    };
    for _ in 0..count {
        let id: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
        let since = i64::from_le_bytes(b.get(at + 16..at + 24)?.try_into().ok()?);
        at += 24;
        let rhost = string(&mut at, MAX_RHOST_LEN)??;
        let key = string(&mut at, MAX_KEY_LABEL_LEN)?;
        devices.push(Device {
            id,
            since,
            rhost,
            key,
        });
    }
    Some(devices)
}

/// How far a slot is trusted when decoded.
#[derive(Clone, Copy)]
enum Check<'a> {
    /// Its authenticator verifies under this key; with `legacy`, a `PTC1` record whose
    /// checksum matches is accepted too (beside a version 1 state only).
    Key(&'a RecordKey, bool),
    /// Only its shape: for choosing where to write over records nobody can check (those
    /// of a state being replaced), never for reading values.
    Shape,
}

/// Decodes one slot: `b` holds at least [`LEGACY_SLOT_LEN`] bytes; a current record needs
/// [`SLOT_LEN`].
fn decode(user: &UserName, b: &[u8], check: Check) -> Option<Record> {
    let (legacy, whole_body) = match b.get(0..4)? {
        m if m == MAGIC => (false, false),
        m if m == WHOLE_BODY_MAGIC => (false, true),
        m if m == LEGACY_MAGIC => (true, false),
        _ => return None,
    };
    let b = b.get(..if legacy { LEGACY_SLOT_LEN } else { SLOT_LEN })?;
    let (body, auth) = b.split_at(b.len() - AUTH_LEN);
    let ok = match check {
        Check::Key(key, _) if !legacy => {
            let covered = if whole_body { body } else { trimmed(body) };
            key.verify(MAC_LABEL, &mac_input(user, covered), auth)
        }
        // Not secret: a checksum against torn writes, so a plain comparison is fine.
        Check::Key(_, true) => auth == checksum(user, body),
        Check::Key(_, false) => false,
        Check::Shape => !legacy || auth == checksum(user, body),
    };
    if !ok {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let i64_at = |i: usize| i64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
    let last_counter = u64_at(28);
    let rhost = match b[68] {
        1 => {
            let len = usize::from(b[69]).min(MAX_RHOST_LEN);
            // Cleaned again on the way out: a record written before a rule was added.
            Some(clean_rhost(&String::from_utf8_lossy(&b[70..70 + len])))
        }
        _ => None,
    };
    let devices = if legacy {
        Vec::new()
    } else {
        decode_devices(&body[DEVICES_AT..])?
    };
    Some(Record {
        legacy,
        seq: u64_at(4),
        generation: u64_at(12),
        counters: Counters {
            last_used: from_i64(i64_at(20)),
            last_counter: (last_counter != u64::MAX).then_some(last_counter),
            failures: u32_at(36),
            locked_until: from_i64(i64_at(40)),
            rejected_since_success: u32_at(48),
            last_rejected_at: from_i64(i64_at(52)),
            recovery_used: u64_at(60),
            last_rejected_rhost: rhost,
            lockouts: u32_at(70 + MAX_RHOST_LEN),
            devices,
        },
    })
}

/// Length of one encoded counters record ([`encode_record`]).
pub const RECORD_LEN: usize = SLOT_LEN;

/// One counters record as bytes, for a backend that keeps counters somewhere other than
/// the counters file (the fleet store): the same record, authenticator under `key` (the
/// state's record key) and binding to `user` as a slot of the file. `generation` is that of
/// the state the counters extend.
pub fn encode_record(
    user: &UserName,
    key: &RecordKey,
    generation: u64,
    counters: &Counters,
) -> Vec<u8> {
    let rec = Record {
        seq: 1,
        generation,
        counters: counters.clone(),
        legacy: false,
    };
    encode(user, key, &rec).to_vec()
}

/// The (generation, counters) of bytes made by [`encode_record`] for `user` under `key`;
/// `None` when they are damaged, changed without the key, of another length, or another
/// user's.
pub fn decode_record(user: &UserName, key: &RecordKey, bytes: &[u8]) -> Option<(u64, Counters)> {
    if bytes.len() != SLOT_LEN {
        return None;
    }
    decode(user, bytes, Check::Key(key, false)).map(|r| (r.generation, r.counters))
}

/// A remote host name as stored and shown, the one rule for every place that shows it
/// (`status`, `--json`, the module's notice). A client picks PAM_RHOST, so it could drive the
/// terminal of whoever reads it (control characters) or make it read differently from what
/// it is (bidi overrides such as U+202E, zero-width characters: Unicode format characters,
/// and line or paragraph separators): each becomes `?`. The result is cut to
/// [`MAX_RHOST_LEN`] bytes.
pub fn clean_rhost(h: &str) -> String {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let clean: String = h
        .chars()
        .map(|c| match c.general_category() {
            GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator => '?',
            _ => c,
        })
        .collect();
    truncate_rhost(&clean).to_owned()
}

/// Cuts a remote host name to [`MAX_RHOST_LEN`] bytes on a character boundary.
pub fn truncate_rhost(h: &str) -> &str {
    let mut end = h.len().min(MAX_RHOST_LEN);
    while !h.is_char_boundary(end) {
        end -= 1;
    }
    &h[..end]
}

/// A counters file as read, before any slot is checked.
pub(crate) struct RawSlots {
    buf: [u8; FILE_LEN as usize],
    len: usize,
}

/// Reads the counters file (one read; slots are checked by [`RawSlots::verify`]). `len` is
/// the file's size as a stat under the user's lock read it (the file does not change until
/// that lock writes): one read of that many bytes is the whole file.
pub(crate) fn read(file: &File, path: &Path, len: u64) -> Result<RawSlots> {
    if len > FILE_LEN {
        return Err(Error::corrupt(path, "counters file too large"));
    }
    let len = len as usize;
    let mut raw = RawSlots {
        buf: [0u8; FILE_LEN as usize],
        len,
    };
    file.read_exact_at(&mut raw.buf[..len], 0)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::corrupt(path, "shrank while read"),
            _ => Error::io(path, e),
        })?;
    Ok(raw)
}

impl RawSlots {
    /// The records whose authenticator verifies under `key` (with `legacy`, also checksummed
    /// `PTC1` ones: beside a version 1 state). An empty file has none. A file that has
    /// bytes but no valid record was damaged or forged outside our writes (ours always
    /// leave one valid slot): refused.
    ///
    /// Beside a version 2 state, a checksummed record of that state's `generation` cannot
    /// come from our writes (they made that generation's records authenticated from the
    /// start) nor from a torn one: it was forged, and the file is refused.
    pub fn verify(
        &self,
        path: &Path,
        user: &UserName,
        key: &RecordKey,
        legacy: bool,
        generation: u64,
    ) -> Result<Slots> {
        if !legacy {
            let forged = self
                .decode(path, user, Check::Shape)?
                .valid
                .iter()
                .any(|r| {
                    r.as_ref()
                        .is_some_and(|r| r.legacy && r.generation == generation)
                });
            if forged {
                return Err(Error::corrupt(
                    path,
                    "counters record of the current state not authenticated (changed without the key)",
                ));
            }
        }
        self.decode(path, user, Check::Key(key, legacy))
    }

    /// The records by shape alone, for choosing where to write beside a state whose key we
    /// do not have (one being replaced). Never for their values.
    pub fn unverified(&self, user: &UserName) -> Slots {
        self.decode(Path::new(""), user, Check::Shape)
            .unwrap_or_default()
    }

    fn decode(&self, path: &Path, user: &UserName, check: Check) -> Result<Slots> {
        let mut slots = Slots::default();
        let mut damaged = false;
        for (i, off) in SLOT_OFFSETS.iter().enumerate() {
            let off = *off as usize;
            // A file of legacy records holds 256-byte slots (4352 bytes).
            let end = self.len.min(off + SLOT_LEN);
            if end < off + LEGACY_SLOT_LEN {
                damaged |= self.len > off;
                continue;
            }
            let raw = &self.buf[off..end];
            slots.valid[i] = decode(user, raw, check);
            damaged |= slots.valid[i].is_none() && raw.iter().any(|&b| b != 0);
        }
        if damaged && slots.valid.iter().all(Option::is_none) {
            return Err(Error::corrupt(
                path,
                "counters file has no valid record (damaged, or changed without the key)",
            ));
        }
        Ok(slots)
    }
}

/// Writes `counters` for `generation` into the free slot, never over the newest record of
/// `in_force` (the generation of the state file in place, if any). With `durable`, the data
/// is on stable storage when this returns. `len`: the file's size, as for [`read`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    file: &File,
    path: &Path,
    len: u64,
    user: &UserName,
    key: &RecordKey,
    slots: &mut Slots,
    in_force: Option<u64>,
    generation: u64,
    counters: &Counters,
    durable: bool,
) -> Result<()> {
    let (slot, seq) = slots.next(in_force);
    let rec = Record {
        seq,
        generation,
        counters: counters.clone(),
        legacy: false,
    };
    let bytes = encode(user, key, &rec);
    if len < FILE_LEN {
        // Write real zeros past the end (not a hole) so the blocks are allocated now: later
        // writes are then pure overwrites, and a data sync needs no journal commit.
        let zeros = vec![0u8; (FILE_LEN - len) as usize];
        file.write_all_at(&zeros, len)
            .map_err(|e| Error::io(path, e))?;
    }
    file.write_all_at(&bytes, SLOT_OFFSETS[slot])
        .map_err(|e| Error::io(path, e))?;
    if durable {
        file.sync_data().map_err(|e| Error::io(path, e))?;
    }
    slots.valid[slot] = Some(rec);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserName {
        UserName::parse("alice").unwrap()
    }

    #[test]
    fn remote_hosts_lose_control_characters_and_length() {
        assert_eq!(clean_rhost("host\x1b[2J\n.example"), "host?[2J?.example");
        assert_eq!(clean_rhost(&"é".repeat(40)).len(), 64);
        assert_eq!(clean_rhost("192.0.2.7"), "192.0.2.7");
        // Bidi controls, zero-width characters, separators: all shown as `?`.
        assert_eq!(
            clean_rhost("evil\u{202E}moc.elpmaxe\u{200B}\u{2066}x\u{FEFF}\u{2028}\u{AD}"),
            "evil?moc.elpmaxe??x???"
        );
        assert_eq!(clean_rhost("h\u{E0041}\u{061C}\u{0085}"), "h???");
        assert_eq!(
            clean_rhost("d\u{e9}j\u{e0}-vu.example"),
            "d\u{e9}j\u{e0}-vu.example"
        );
    }

    fn key(seed: u8) -> RecordKey {
        RecordKey::derive(&[seed; 32], &user())
    }

    /// A record in the legacy format: `PTC1`, 256 bytes, checksum, no key, no devices.
    fn encode_legacy(user: &UserName, rec: &Record) -> Vec<u8> {
        let current = encode(user, &key(0), rec);
        let mut b = vec![0u8; LEGACY_SLOT_LEN];
        b[..DEVICES_AT].copy_from_slice(&current[..DEVICES_AT]);
        b[0..4].copy_from_slice(LEGACY_MAGIC);
        let sum = checksum(user, &b[..LEGACY_SLOT_LEN - AUTH_LEN]);
        b[LEGACY_SLOT_LEN - AUTH_LEN..].copy_from_slice(&sum);
        b
    }

    #[test]
    fn the_zeros_after_a_record_are_covered_and_ptc2_records_still_read() {
        let rec = Record {
            seq: 3,
            generation: 8,
            counters: Counters {
                last_counter: Some(77),
                failures: 1,
                ..Default::default()
            },
            legacy: false,
        };
        let k = key(1);
        let b = encode(&user(), &k, &rec);
        assert_eq!(&b[..4], MAGIC);
        let check = Check::Key(&k, false);
        assert_eq!(decode(&user(), &b, check).unwrap().counters, rec.counters);
        // A byte set in the unused space (after the trimmed body): no longer that record.
        let mut padded = b;
        padded[BODY_LEN - 1] = 1;
        assert!(decode(&user(), &padded, check).is_none());
        // Relabelled as the whole-body format: its MAC does not fit that reading.
        let mut relabelled = b;
        relabelled[..4].copy_from_slice(WHOLE_BODY_MAGIC);
        assert!(decode(&user(), &relabelled, check).is_none());
        // A record of the first authenticated format (MAC over the whole body) is read.
        let mut whole = b;
        whole[..4].copy_from_slice(WHOLE_BODY_MAGIC);
        let tag = k.tag(MAC_LABEL, &mac_input(&user(), &whole[..BODY_LEN]));
        whole[BODY_LEN..].copy_from_slice(&tag);
        assert_eq!(
            decode(&user(), &whole, check).unwrap().counters,
            rec.counters
        );
        // Another user's record does not verify as ours.
        let other = UserName::parse("mallory").unwrap();
        assert!(decode(&other, &b, check).is_none());
    }

    #[test]
    fn encode_decode_round_trip() {
        let c = Counters {
            last_used: Some(1_700_000_000),
            last_counter: Some(56_666_666),
            failures: 3,
            locked_until: None,
            rejected_since_success: 7,
            last_rejected_rhost: Some("192.0.2.7".into()),
            last_rejected_at: Some(-5),
            recovery_used: 0b1010,
            lockouts: 4,
            devices: (0..MAX_DEVICES as u8)
                .map(|i| Device {
                    id: [i; 16],
                    since: 1_700_000_000 + i64::from(i),
                    rhost: "h".repeat(MAX_RHOST_LEN),
                    key: (i % 2 == 0).then(|| "k".repeat(MAX_KEY_LABEL_LEN)),
                })
                .collect(),
        };
        let rec = Record {
            seq: 9,
            generation: 42,
            counters: c,
            legacy: false,
        };
        let k = key(1);
        let b = encode(&user(), &k, &rec);
        assert_eq!(
            decode(&user(), &b, Check::Key(&k, false)),
            Some(rec.clone())
        );
        assert_eq!(
            decode(&UserName::parse("bob").unwrap(), &b, Check::Key(&k, false)),
            None
        );
        assert_eq!(decode(&user(), &b, Check::Key(&key(2), false)), None);
        let mut flipped = b;
        flipped[30] ^= 0x10;
        assert_eq!(decode(&user(), &flipped, Check::Key(&k, false)), None);
        // Any byte of the body is covered, also ones no field uses yet.
        let mut spare = b;
        spare[BODY_LEN - 1] ^= 1;
        assert_eq!(decode(&user(), &spare, Check::Key(&k, false)), None);
    }

    #[test]
    fn a_record_with_a_recomputed_checksum_counts_only_beside_a_legacy_state() {
        let rec = Record {
            seq: 3,
            generation: 7,
            counters: Counters {
                failures: 0,
                ..Default::default()
            },
            legacy: true,
        };
        let forged = encode_legacy(&user(), &rec);
        let k = key(1);
        assert_eq!(decode(&user(), &forged, Check::Key(&k, false)), None);
        assert_eq!(decode(&user(), &forged, Check::Key(&k, true)), Some(rec));
        let mut file = vec![0u8; FILE_LEN as usize];
        file[..LEGACY_SLOT_LEN].copy_from_slice(&forged);
        let newer = Record {
            seq: 4,
            generation: 8,
            counters: Counters::default(),
            legacy: false,
        };
        let at = SLOT_OFFSETS[1] as usize;
        file[at..at + SLOT_LEN].copy_from_slice(&encode(&user(), &k, &newer));
        let raw = RawSlots {
            buf: file.try_into().unwrap(),
            len: FILE_LEN as usize,
        };
        let p = Path::new("c");
        // Of the state's own generation beside a version 2 state: forged, refused.
        assert!(matches!(
            raw.verify(p, &user(), &k, false, 7),
            Err(Error::Corrupt { .. })
        ));
        // Of an older generation: merely not a record.
        let slots = raw.verify(p, &user(), &k, false, 8).unwrap();
        assert!(slots.current(7).is_none());
        assert_eq!(slots.current(8), Some(&newer));
        // Beside a version 1 state: the old format, accepted.
        assert!(raw
            .verify(p, &user(), &k, true, 7)
            .unwrap()
            .current(7)
            .is_some());
    }

    #[test]
    fn an_old_shorter_counters_file_still_reads_and_grows_on_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let u = user();
        let k = key(1);
        let old = |seq: u64, last: u64| Record {
            seq,
            generation: 7,
            counters: Counters {
                last_counter: Some(last),
                failures: 2,
                last_rejected_rhost: Some("192.0.2.7".into()),
                ..Default::default()
            },
            legacy: true,
        };
        let mut bytes = vec![0u8; 4096 + LEGACY_SLOT_LEN];
        bytes[..LEGACY_SLOT_LEN].copy_from_slice(&encode_legacy(&u, &old(1, 10)));
        bytes[4096..].copy_from_slice(&encode_legacy(&u, &old(2, 11)));
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // Beside a version 1 state (legacy records accepted).
        let load = |f: &File| {
            read(f, &path, f.metadata().unwrap().len())
                .unwrap()
                .verify(&path, &u, &k, true, 7)
        };
        let mut slots = load(&file).unwrap();
        assert_eq!(slots.current(7), Some(&old(2, 11)));
        // A legacy slot that was torn is refused like any other.
        let mut torn = bytes.clone();
        torn[4096 + 30] ^= 1;
        std::fs::write(dir.path().join("t"), &torn).unwrap();
        let t = File::open(dir.path().join("t")).unwrap();
        assert_eq!(load(&t).unwrap().current(7), Some(&old(1, 10)));
        // The next write goes over the older slot in the current format; both still read.
        let mut c = old(0, 12).counters;
        c.devices.push(Device {
            id: [9; 16],
            since: 5,
            rhost: "192.0.2.8".into(),
            key: None,
        });
        let len = file.metadata().unwrap().len();
        write(&file, &path, len, &u, &k, &mut slots, Some(7), 7, &c, false).unwrap();
        assert_eq!(file.metadata().unwrap().len(), FILE_LEN);
        let back = load(&file).unwrap();
        assert_eq!(back.current(7).unwrap().counters, c);
        assert_eq!(back.valid[1], Some(old(2, 11)));
    }

    #[test]
    fn record_bytes_round_trip_and_bind_the_user_and_key() {
        let c = Counters {
            last_counter: Some(77),
            failures: 2,
            last_rejected_rhost: Some("h".into()),
            ..Default::default()
        };
        let k = key(1);
        let b = encode_record(&user(), &k, 5, &c);
        assert_eq!(b.len(), RECORD_LEN);
        assert_eq!(decode_record(&user(), &k, &b), Some((5, c)));
        assert_eq!(
            decode_record(&UserName::parse("bob").unwrap(), &k, &b),
            None
        );
        assert_eq!(decode_record(&user(), &key(2), &b), None);
        assert_eq!(decode_record(&user(), &k, &b[1..]), None);
        let mut flipped = b.clone();
        flipped[36] ^= 1;
        assert_eq!(decode_record(&user(), &k, &flipped), None);
    }

    #[test]
    fn writes_alternate_and_survive_a_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let u = user();
        let k = key(1);
        let len = |f: &File| f.metadata().unwrap().len();
        let load = || {
            read(&file, &path, len(&file))
                .unwrap()
                .verify(&path, &u, &k, false, 1)
        };
        let mut slots = load().unwrap();
        assert!(slots.current(1).is_none());
        for i in 1..=5u64 {
            let c = Counters {
                last_counter: Some(i),
                ..Default::default()
            };
            write(
                &file,
                &path,
                len(&file),
                &u,
                &k,
                &mut slots,
                Some(1),
                1,
                &c,
                false,
            )
            .unwrap();
            let back = load().unwrap();
            assert_eq!(back.current(1).unwrap().counters.last_counter, Some(i));
        }
        // Tear the newest slot (5 went to slot 0): the reader falls back to 4.
        file.write_all_at(&[0xAA; 40], SLOT_OFFSETS[0] + 20)
            .unwrap();
        let back = load().unwrap();
        assert_eq!(back.current(1).unwrap().counters.last_counter, Some(4));
        // Another generation's records are ignored.
        assert!(back.current(2).is_none());
        // Under another key nothing is valid: refused, not empty.
        let other = read(&file, &path, len(&file))
            .unwrap()
            .verify(&path, &u, &key(2), false, 1);
        assert!(matches!(other, Err(Error::Corrupt { .. })));
        // Both slots damaged: refused.
        file.write_all_at(&[0xAA; 40], SLOT_OFFSETS[1] + 20)
            .unwrap();
        assert!(matches!(load(), Err(Error::Corrupt { .. })));
        // A size larger than the layout's, or larger than the file: refused.
        assert!(matches!(
            read(&file, &path, FILE_LEN + 1),
            Err(Error::Corrupt { .. })
        ));
        file.set_len(100).unwrap();
        assert!(matches!(
            read(&file, &path, FILE_LEN),
            Err(Error::Corrupt { .. })
        ));
    }
}
