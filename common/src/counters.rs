//! The mutable counters of one user, kept apart from the state file so that a login costs
//! one in-place write (and one fdatasync when a code is accepted) instead of a whole-file
//! rewrite with two syncs.
//!
//! The counters file holds two fixed-size slots, each a complete record with a sequence
//! number and a checksum. A write goes to the slot that does not hold the newest record, so
//! a write torn by a crash leaves the newest record intact: a reader gets the old state or
//! the new one. Each record carries the `generation` of the state file it extends; a record
//! of another generation is ignored, which makes every whole-file rewrite (enrollment,
//! unlock, new recovery codes, rekey) supersede the counters without touching this file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::user::UserName;

const MAGIC: &[u8; 4] = b"PTC1";
const SLOT_LEN: usize = 256;
const BODY_LEN: usize = SLOT_LEN - 32;
/// Slots sit in different pages so that one torn page write cannot damage both.
const SLOT_OFFSETS: [u64; 2] = [0, 4096];
pub(crate) const FILE_LEN: u64 = 4096 + SLOT_LEN as u64;
pub const MAX_RHOST_LEN: usize = 64;

/// The values that change on every login attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Unix time of the last accepted code.
    pub last_used: Option<i64>,
    /// Highest accepted time step.
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
}

/// One decoded slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub seq: u64,
    pub generation: u64,
    pub counters: Counters,
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

fn checksum(user: &UserName, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"pam_totp counters v1\0");
    h.update(user.as_str().as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

fn encode(user: &UserName, rec: &Record) -> [u8; SLOT_LEN] {
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
    let sum = checksum(user, &b[..BODY_LEN]);
    b[BODY_LEN..].copy_from_slice(&sum);
    b
}

fn decode(user: &UserName, b: &[u8]) -> Option<Record> {
    let sum = checksum(user, &b[..BODY_LEN]);
    // Not secret: a checksum against torn writes, so a plain comparison is fine.
    if &b[0..4] != MAGIC || b[BODY_LEN..] != sum {
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
    Some(Record {
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
        },
    })
}

/// Length of one encoded counters record ([`encode_record`]).
pub const RECORD_LEN: usize = SLOT_LEN;

/// One counters record as bytes, for a backend that keeps counters somewhere other than
/// the counters file (the fleet store): the same record, checksum and binding to `user`
/// as a slot of the file. `generation` is that of the state the counters extend.
pub fn encode_record(user: &UserName, generation: u64, counters: &Counters) -> Vec<u8> {
    let rec = Record {
        seq: 1,
        generation,
        counters: counters.clone(),
    };
    encode(user, &rec).to_vec()
}

/// The (generation, counters) of bytes made by [`encode_record`] for `user`; `None` when
/// they are damaged, of another length, or another user's.
pub fn decode_record(user: &UserName, bytes: &[u8]) -> Option<(u64, Counters)> {
    if bytes.len() != SLOT_LEN {
        return None;
    }
    decode(user, bytes).map(|r| (r.generation, r.counters))
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

/// Reads both slots. An empty file has none. A file that has bytes but no valid slot was
/// damaged outside our writes (ours always leave one valid slot): refused.
pub(crate) fn read(file: &File, path: &Path, user: &UserName) -> Result<Slots> {
    let mut buf = [0u8; FILE_LEN as usize + 1];
    let mut len = 0;
    loop {
        let n = file
            .read_at(&mut buf[len..], len as u64)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        len += n;
        if len == buf.len() {
            return Err(Error::corrupt(path, "counters file too large"));
        }
    }
    let mut slots = Slots::default();
    let mut damaged = false;
    for (i, off) in SLOT_OFFSETS.iter().enumerate() {
        let off = *off as usize;
        if len < off + SLOT_LEN {
            damaged |= len > off;
            continue;
        }
        let raw = &buf[off..off + SLOT_LEN];
        slots.valid[i] = decode(user, raw);
        damaged |= slots.valid[i].is_none() && raw.iter().any(|&b| b != 0);
    }
    if damaged && slots.valid.iter().all(Option::is_none) {
        return Err(Error::corrupt(path, "counters file has no valid record"));
    }
    Ok(slots)
}

/// Writes `counters` for `generation` into the free slot, never over the newest record of
/// `in_force` (the generation of the state file in place, if any). With `durable`, the data
/// is on stable storage when this returns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    file: &File,
    path: &Path,
    user: &UserName,
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
    };
    let bytes = encode(user, &rec);
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
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
        };
        let rec = Record {
            seq: 9,
            generation: 42,
            counters: c,
        };
        let b = encode(&user(), &rec);
        assert_eq!(decode(&user(), &b), Some(rec));
        assert_eq!(decode(&UserName::parse("bob").unwrap(), &b), None);
        let mut flipped = b;
        flipped[30] ^= 0x10;
        assert_eq!(decode(&user(), &flipped), None);
    }

    #[test]
    fn record_bytes_round_trip_and_bind_the_user() {
        let c = Counters {
            last_counter: Some(77),
            failures: 2,
            last_rejected_rhost: Some("h".into()),
            ..Default::default()
        };
        let b = encode_record(&user(), 5, &c);
        assert_eq!(b.len(), RECORD_LEN);
        assert_eq!(decode_record(&user(), &b), Some((5, c)));
        assert_eq!(decode_record(&UserName::parse("bob").unwrap(), &b), None);
        assert_eq!(decode_record(&user(), &b[1..]), None);
        let mut flipped = b.clone();
        flipped[36] ^= 1;
        assert_eq!(decode_record(&user(), &flipped), None);
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
        let mut slots = read(&file, &path, &u).unwrap();
        assert!(slots.current(1).is_none());
        for i in 1..=5u64 {
            let c = Counters {
                last_counter: Some(i),
                ..Default::default()
            };
            write(&file, &path, &u, &mut slots, Some(1), 1, &c, false).unwrap();
            let back = read(&file, &path, &u).unwrap();
            assert_eq!(back.current(1).unwrap().counters.last_counter, Some(i));
        }
        // Tear the newest slot (5 went to slot 0): the reader falls back to 4.
        file.write_all_at(&[0xAA; 40], SLOT_OFFSETS[0] + 20)
            .unwrap();
        let back = read(&file, &path, &u).unwrap();
        assert_eq!(back.current(1).unwrap().counters.last_counter, Some(4));
        // Another generation's records are ignored.
        assert!(back.current(2).is_none());
        // Both slots damaged: refused.
        file.write_all_at(&[0xAA; 40], SLOT_OFFSETS[1] + 20)
            .unwrap();
        assert!(matches!(read(&file, &path, &u), Err(Error::Corrupt { .. })));
    }
}
