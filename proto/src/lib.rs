//! The private protocol between `pam_totp.so` (and later `totp-enroll`) and `pam_totpd`, over
//! the daemon's Unix stream socket. One request, one reply, then the daemon closes.
//!
//! A frame is a fixed binary layout, all integers big-endian:
//!
//! ```text
//! u32  len      bytes that follow, 2 ..= MAX_FRAME_LEN
//! u8   version  VERSION
//! u8   kind     which message (below)
//! ...  body     the message's fields, in order, nothing after them
//! ```
//!
//! Field types: `str` is a `u8` length then that many bytes of UTF-8 (so at most 255
//! bytes); `opt<T>` is a `u8` tag, 0 (absent) or 1 followed by a `T`; `u32`, `u64`, `i64`.
//!
//! | kind | message | body |
//! |---|---|---|
//! | 0x01 | `Verify` | user str, code str (at most [`MAX_CODE_LEN`]), rhost opt<str>, service str, key opt<key> |
//! | 0x02 | `IsEnrolled` | user str |
//! | 0x03 | `Grace` | user str, rhost str, key opt<key>, service str |
//! | 0x81 | `Accepted` | step u64, prior |
//! | 0x82 | `RecoveryAccepted` | remaining u32, prior |
//! | 0x83 | `Rejected` | failures u32, locked_until opt<i64> |
//! | 0x84 | `Replayed` | failures u32, locked_until opt<i64> |
//! | 0x85 | `Locked` | until i64 |
//! | 0x86 | `NotEnrolled` | |
//! | 0x87 | `Enrolled` | |
//! | 0x88 | `Unavailable` | reason u8 ([`Unavailable`]) |
//! | 0x89 | `Denied` | |
//! | 0x8a | `BadRequest` | |
//! | 0x8b | `Grace` | since i64 |
//! | 0x8c | `NoGrace` | |
//!
//! `prior` (rejected attempts since the last success) is count u32, last_rhost opt<str>,
//! last_at opt<i64>. `key` (the public key that authenticated an SSH connection, part of
//! the remote device for `grace_secs`) is a 32-byte SHA-256 digest, then its label str (at
//! most [`MAX_KEY_LABEL_LEN`] bytes).
//!
//! Administration, for `totp-enroll` (the daemon answers them for a caller whose uid is 0
//! only; the setuid CLI checks who may act on which account before it asks):
//!
//! | kind | message | body |
//! |---|---|---|
//! | 0x10 | `Enroll` | user str, secret str (base32, at most [`MAX_SECRET_LEN`]), algorithm u8, digits u8, period u32, last_counter opt<u64>, recovery, replace u8 (0 or 1) |
//! | 0x11 | `Status` | user str |
//! | 0x12 | `Unlock` | user str |
//! | 0x13 | `Remove` | user str |
//! | 0x14 | `NewRecoveryCodes` | user str, count u8 |
//! | 0x15 | `ListUsers` | after opt<str> |
//! | 0x16 | `ImportUser` | user str, from_dir str, from_key str, replace u8 (0 or 1) |
//! | 0x17 | `ForgetDevices` | user str |
//! | 0x18 | `FinishRotation` | |
//! | 0x90 | `Status` | algorithm u8, digits u8, period u32, created i64, last_used opt<i64>, last_counter opt<u64>, failures u32, locked_until opt<i64>, rejected_since_success u32, last_rejected_rhost opt<str>, last_rejected_at opt<i64>, lockouts u32, recovery_codes_left u32, n u8 (at most [`MAX_DEVICES`]), n devices |
//! | 0x91 | `Done` | |
//! | 0x92 | `RecoveryCodes` | n u8 (at most [`MAX_CODES`]), n codes str |
//! | 0x93 | `Users` | n u8, n names str, more u8 (0 or 1) |
//! | 0x94 | `AlreadyEnrolled` | |
//! | 0x95 | `Forgotten` | count u32 |
//! | 0x96 | `Rotated` | rewritten u32, unchanged u32, failed u32, n u8, n names str |
//!
//! A device (remembered for `grace_secs`) is since i64, rhost str (at most
//! [`MAX_DEVICE_RHOST`] bytes), key opt<str> (its label, at most [`MAX_KEY_LABEL_LEN`]).
//! `Rotated` names the users whose state could not be moved to the next key, as many as
//! fit (`failed` counts them all; the daemon's log has each one's reason).
//!
//! `recovery` is 0 then count u8 (make that many new codes), or 1 then n u8 (at most
//! [`MAX_KEEP`]) and n codes str (keep these, e.g. a migration's scratch codes). `Users`
//! lists names in order after `after`, as many as fit in a frame; `more` says whether to ask
//! again after the last one.
//!
//! Why a hand-rolled layout rather than a serde format: the decoder runs inside sshd and
//! sudo (the reply) and in a root daemon that every local user can reach (the request). This
//! one is a few dozen lines with no dependency, bounded before anything is allocated (the
//! length prefix is checked against [`MAX_FRAME_LEN`], every string against 255 bytes), has
//! exactly one encoding per message (anything else, trailing bytes included, is an error) and
//! no recursion, so a fuzzer covers it quickly. No policy value (window, max_failures, ...)
//! can even be expressed in a request: the daemon's own config decides them.
//!
//! Buffers that may hold a code are [`Zeroizing`]: wiped when dropped.

#![forbid(unsafe_code)]

use std::fmt;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use zeroize::Zeroizing;

/// Protocol version carried by every frame.
pub const VERSION: u8 = 1;
/// Largest frame body (after the 4-byte length), in bytes. The largest valid message is
/// a `Status` with every device and the longest strings, about 1,560 bytes.
pub const MAX_FRAME_LEN: usize = 2048;
/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;
/// Longest code sent (the module treats a longer answer as a wrong code before sending).
pub const MAX_CODE_LEN: usize = 64;
/// Longest string field.
pub const MAX_STR_LEN: usize = 255;
/// Longest base32 secret in `Enroll` (64 bytes of secret).
pub const MAX_SECRET_LEN: usize = 103;
/// Most recovery codes in one message.
pub const MAX_CODES: usize = 64;
/// Most codes an `Enroll` keeps (with the longest user name and secret, still one frame).
pub const MAX_KEEP: usize = 32;
/// Longest recovery code in a message; the total of a full list stays well inside a frame.
pub const MAX_CODE_FIELD: usize = 11;
/// Bytes of names one `Users` reply carries at most (each plus its length byte).
pub const USERS_BUDGET: usize = 900;

/// Most remembered devices in a `Status` (as many as a counters record keeps).
pub const MAX_DEVICES: usize = 10;
/// Longest remote host of a device in a `Status` (as a counters record keeps it).
pub const MAX_DEVICE_RHOST: usize = 64;

/// Set in an algorithm byte: the enrollment is HOTP (RFC 4226), not TOTP.
pub const HOTP: u8 = 0x80;

const ENROLL: u8 = 0x10;
const STATUS: u8 = 0x11;
const UNLOCK: u8 = 0x12;
const REMOVE: u8 = 0x13;
const NEW_RECOVERY_CODES: u8 = 0x14;
const LIST_USERS: u8 = 0x15;
const IMPORT_USER: u8 = 0x16;
const FORGET_DEVICES: u8 = 0x17;
const FINISH_ROTATION: u8 = 0x18;
const STATUS_REPLY: u8 = 0x90;
const DONE: u8 = 0x91;
const RECOVERY_CODES: u8 = 0x92;
const USERS: u8 = 0x93;
const ALREADY_ENROLLED: u8 = 0x94;
const FORGOTTEN: u8 = 0x95;
const ROTATED: u8 = 0x96;
/// Longest key label sent.
pub const MAX_KEY_LABEL_LEN: usize = 48;

const VERIFY: u8 = 0x01;
const IS_ENROLLED: u8 = 0x02;
const GRACE_REQUEST: u8 = 0x03;
const ACCEPTED: u8 = 0x81;
const RECOVERY_ACCEPTED: u8 = 0x82;
const REJECTED: u8 = 0x83;
const REPLAYED: u8 = 0x84;
const LOCKED: u8 = 0x85;
const NOT_ENROLLED: u8 = 0x86;
const ENROLLED: u8 = 0x87;
const UNAVAILABLE: u8 = 0x88;
const DENIED: u8 = 0x89;
const BAD_REQUEST: u8 = 0x8a;
const GRACE: u8 = 0x8b;
const NO_GRACE: u8 = 0x8c;

/// The public key part of a remote device: its digest, and a label to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKey {
    pub digest: [u8; 32],
    pub label: String,
}

/// May this device log in without a code now (`grace_secs`)? Only a root caller's
/// question is answered with anything but `NoGrace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraceRequest {
    pub user: String,
    pub rhost: String,
    pub key: Option<DeviceKey>,
    pub service: String,
}

/// One code to check for one user. `service` is for the daemon's log only.
#[derive(Clone, PartialEq, Eq)]
pub struct Verify {
    pub user: String,
    pub code: Zeroizing<String>,
    pub rhost: Option<String>,
    pub service: String,
    /// With `rhost`, the remote device a success is remembered for (`grace_secs`).
    pub key: Option<DeviceKey>,
}

impl fmt::Debug for Verify {
    // Never the code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verify")
            .field("user", &self.user)
            .field("rhost", &self.rhost)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// The recovery codes of a new enrollment.
#[derive(Clone, PartialEq, Eq)]
pub enum NewCodes {
    /// This many new ones (returned in `RecoveryCodes`).
    Generate(u8),
    /// These (normalized, at most [`MAX_KEEP`] of at most [`MAX_CODE_FIELD`] bytes).
    Keep(Vec<Zeroizing<String>>),
}

/// A new enrollment (root only). The secret travels base32, in buffers wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Enroll {
    pub user: String,
    pub secret: Zeroizing<String>,
    /// 0 SHA1, 1 SHA256, 2 SHA512; with [`HOTP`] set, an HOTP enrollment (`period` unused).
    pub algorithm: u8,
    pub digits: u8,
    pub period: u32,
    pub last_counter: Option<u64>,
    pub recovery: NewCodes,
    pub replace: bool,
}

impl fmt::Debug for Enroll {
    // Never the secret or the codes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enroll")
            .field("user", &self.user)
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("replace", &self.replace)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Verify(Verify),
    IsEnrolled {
        user: String,
    },
    Enroll(Enroll),
    Status {
        user: String,
    },
    Unlock {
        user: String,
    },
    Remove {
        user: String,
    },
    NewRecoveryCodes {
        user: String,
        count: u8,
    },
    ListUsers {
        after: Option<String>,
    },
    /// Copy `user`'s enrollment from the state directory `from_dir`, sealed under the key in
    /// `from_key`, into the daemon's storage (`import --from-state-dir`). Answered with the
    /// new record's `Status`.
    ImportUser {
        user: String,
        from_dir: String,
        from_key: String,
        replace: bool,
    },
    Grace(GraceRequest),
    /// Forget the devices remembered for `grace_secs`. Answered with `Forgotten`.
    ForgetDevices {
        user: String,
    },
    /// Move every state of the fleet to the next key of a rotation (the daemon's
    /// `<key_file>.new`). Answered with `Rotated`.
    FinishRotation,
}

impl Request {
    /// The account the request is about (what SO_PEERCRED authorization checks); `None`
    /// for a request about every account.
    pub fn account(&self) -> Option<&str> {
        match self {
            Request::Verify(v) => Some(&v.user),
            Request::Enroll(e) => Some(&e.user),
            Request::IsEnrolled { user }
            | Request::Status { user }
            | Request::Unlock { user }
            | Request::Remove { user }
            | Request::NewRecoveryCodes { user, .. }
            | Request::ImportUser { user, .. }
            | Request::ForgetDevices { user } => Some(user),
            Request::ListUsers { .. } | Request::FinishRotation => None,
            Request::Grace(g) => Some(&g.user),
        }
    }

    /// The account the request is about; "" for a request about every account.
    pub fn user(&self) -> &str {
        self.account().unwrap_or("")
    }

    /// Whether only a caller whose uid is 0 may ask this.
    pub fn root_only(&self) -> bool {
        !matches!(
            self,
            Request::Verify(_) | Request::IsEnrolled { .. } | Request::Grace(_)
        )
    }
}

/// A user's status as `totp-enroll status` shows it. Never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Status {
    /// 0 SHA1, 1 SHA256, 2 SHA512; with [`HOTP`] set, an HOTP enrollment.
    pub algorithm: u8,
    pub digits: u8,
    pub period: u32,
    pub created: i64,
    pub last_used: Option<i64>,
    pub last_counter: Option<u64>,
    pub failures: u32,
    pub locked_until: Option<i64>,
    pub rejected_since_success: u32,
    pub last_rejected_rhost: Option<String>,
    pub last_rejected_at: Option<i64>,
    pub lockouts: u32,
    pub recovery_codes_left: u32,
    /// The devices remembered for `grace_secs`, oldest first.
    pub devices: Vec<DeviceInfo>,
}

/// A remembered device as `totp-enroll status` shows it (never its keyed hash).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    pub since: i64,
    pub rhost: String,
    pub key: Option<String>,
}

/// Rejected attempts since the last success, shown after a success.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Prior {
    pub count: u32,
    pub last_rhost: Option<String>,
    pub last_at: Option<i64>,
}

/// Why the daemon could not decide (the module fails closed with PAM_AUTHINFO_UNAVAIL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// State missing, unreadable, corrupt or unsafe.
    State = 1,
    /// Host key missing, unreadable or unsafe.
    Key = 2,
    /// The daemon's backend (e.g. the fleet store) did not answer.
    Backend = 3,
    /// Too many connections at once.
    Busy = 4,
    /// Anything else.
    Internal = 5,
    /// The daemon's backend refused its credential for this (a fleet host whose etcd role
    /// may not write enrollments).
    NotPermitted = 6,
}

impl Unavailable {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Unavailable::State,
            2 => Unavailable::Key,
            3 => Unavailable::Backend,
            4 => Unavailable::Busy,
            5 => Unavailable::Internal,
            6 => Unavailable::NotPermitted,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::State => "state unavailable",
            Unavailable::Key => "host key unavailable",
            Unavailable::Backend => "backend unavailable",
            Unavailable::Busy => "daemon busy",
            Unavailable::Internal => "internal error",
            Unavailable::NotPermitted => {
                "the fleet store refused this host's credential (its etcd role may not do this)"
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A fresh TOTP code; `step` is now the last accepted step.
    Accepted {
        step: u64,
        prior: Prior,
    },
    RecoveryAccepted {
        remaining: u32,
        prior: Prior,
    },
    Rejected {
        failures: u32,
        locked_until: Option<i64>,
    },
    Replayed {
        failures: u32,
        locked_until: Option<i64>,
    },
    /// Locked before this attempt; the code was not looked at.
    Locked {
        until: i64,
    },
    NotEnrolled,
    /// Answer to `IsEnrolled` (otherwise `NotEnrolled`).
    Enrolled,
    Unavailable(Unavailable),
    /// The caller's uid may not ask about this account.
    Denied,
    /// The request did not parse or named an invalid user.
    BadRequest,
    /// Answer to `Status`.
    Status(Status),
    /// Done (`Unlock`, `Remove`, `Enroll` keeping its codes).
    Done,
    /// New recovery codes, to be shown once (`Enroll`, `NewRecoveryCodes`).
    RecoveryCodes(Vec<Zeroizing<String>>),
    /// Answer to `ListUsers`.
    Users {
        names: Vec<String>,
        more: bool,
    },
    /// `Enroll` without `replace` of an enrolled user.
    AlreadyEnrolled,
    /// Answer to `Grace`: yes, the device is remembered since this time.
    Grace {
        since: i64,
    },
    /// Answer to `Grace`: no.
    NoGrace,
    /// Answer to `ForgetDevices`: how many were remembered.
    Forgotten {
        count: u32,
    },
    /// Answer to `FinishRotation`.
    Rotated {
        /// States re-sealed under the next key alone.
        rewritten: u32,
        /// States already sealed under it alone.
        unchanged: u32,
        /// States that could not be moved, all of them counted.
        failed: u32,
        /// Their names, as many as fit.
        names: Vec<String>,
    },
}

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Length prefix 0, 1 or above [`MAX_FRAME_LEN`].
    Length(u32),
    Version(u8),
    Kind(u8),
    /// A field runs past the end of the frame.
    Truncated,
    /// Bytes left after the last field.
    Trailing,
    /// A string that is not UTF-8, or a code longer than [`MAX_CODE_LEN`].
    BadString,
    /// An option tag or enum value out of range.
    BadTag,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Length(n) => write!(f, "frame length {n} out of range"),
            DecodeError::Version(v) => write!(f, "protocol version {v}, expected {VERSION}"),
            DecodeError::Kind(k) => write!(f, "unknown message kind {k:#04x}"),
            DecodeError::Truncated => f.write_str("truncated frame"),
            DecodeError::Trailing => f.write_str("trailing bytes after the message"),
            DecodeError::BadString => f.write_str("invalid string field"),
            DecodeError::BadTag => f.write_str("invalid tag"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Builds a frame in one buffer allocated once (no reallocation leaves a copy behind), wiped
/// when dropped.
struct Writer(Zeroizing<Vec<u8>>);

impl Writer {
    fn new(kind: u8) -> Self {
        let mut v = Vec::with_capacity(HEADER_LEN + MAX_FRAME_LEN);
        v.extend_from_slice(&[0, 0, 0, 0, VERSION, kind]);
        Writer(Zeroizing::new(v))
    }

    /// Strings longer than the field allows are cut on a character boundary: the encoder
    /// never fails and never makes a frame the decoder refuses.
    fn str(&mut self, s: &str, max: usize) {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push(end as u8);
        self.0.extend_from_slice(&s.as_bytes()[..end]);
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.str(s, MAX_STR_LEN);
            }
        }
    }

    fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_be_bytes());
    }

    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_be_bytes());
    }

    fn i64(&mut self, n: i64) {
        self.0.extend_from_slice(&n.to_be_bytes());
    }

    fn opt_i64(&mut self, n: Option<i64>) {
        match n {
            None => self.0.push(0),
            Some(n) => {
                self.0.push(1);
                self.i64(n);
            }
        }
    }

    fn opt_u64(&mut self, n: Option<u64>) {
        match n {
            None => self.0.push(0),
            Some(n) => {
                self.0.push(1);
                self.u64(n);
            }
        }
    }

    fn opt_key(&mut self, k: Option<&DeviceKey>) {
        match k {
            None => self.0.push(0),
            Some(k) => {
                self.0.push(1);
                self.0.extend_from_slice(&k.digest);
                self.str(&k.label, MAX_KEY_LABEL_LEN);
            }
        }
    }

    /// At most `max` codes of at most [`MAX_CODE_FIELD`] bytes: callers check before; the
    /// encoder still never makes a frame the decoder refuses.
    fn codes(&mut self, codes: &[Zeroizing<String>], max: usize) {
        let n = codes.len().min(max);
        self.0.push(n as u8);
        for c in &codes[..n] {
            self.str(c, MAX_CODE_FIELD);
        }
    }

    /// As many `names` as fit in [`USERS_BUDGET`] (at most 255); returns how many.
    fn names(&mut self, names: &[String]) -> usize {
        let mut n = 0;
        let mut used = 0;
        for name in names {
            let len = name.len().min(MAX_STR_LEN) + 1;
            if n == usize::from(u8::MAX) || used + len > USERS_BUDGET {
                break;
            }
            used += len;
            n += 1;
        }
        self.0.push(n as u8);
        for name in &names[..n] {
            self.str(name, MAX_STR_LEN);
        }
        n
    }

    fn devices(&mut self, devices: &[DeviceInfo]) {
        let n = devices.len().min(MAX_DEVICES);
        self.0.push(n as u8);
        for d in &devices[..n] {
            self.i64(d.since);
            self.str(&d.rhost, MAX_DEVICE_RHOST);
            match &d.key {
                None => self.0.push(0),
                Some(k) => {
                    self.0.push(1);
                    self.str(k, MAX_KEY_LABEL_LEN);
                }
            }
        }
    }

    fn prior(&mut self, p: &Prior) {
        self.u32(p.count);
        self.opt_str(p.last_rhost.as_deref());
        self.opt_i64(p.last_at);
    }

    fn finish(mut self) -> Zeroizing<Vec<u8>> {
        let len = (self.0.len() - HEADER_LEN) as u32;
        debug_assert!(len as usize <= MAX_FRAME_LEN);
        self.0[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        self.0
    }
}

/// Reads fields from a frame body; every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }

    fn str_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        std::str::from_utf8(self.str_bytes()?)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadString)
    }

    fn tag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadTag),
        }
    }

    fn opt_str(&mut self) -> Result<Option<String>, DecodeError> {
        if self.tag()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_i64(&mut self) -> Result<Option<i64>, DecodeError> {
        if self.tag()? {
            self.i64().map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        if self.tag()? {
            self.u64().map(Some)
        } else {
            Ok(None)
        }
    }

    /// A string of at most `max` bytes, in a buffer wiped when dropped.
    fn secret_str(&mut self, max: usize) -> Result<Zeroizing<String>, DecodeError> {
        let b = self.str_bytes()?;
        if b.len() > max {
            return Err(DecodeError::BadString);
        }
        Ok(Zeroizing::new(
            std::str::from_utf8(b)
                .map_err(|_| DecodeError::BadString)?
                .to_owned(),
        ))
    }

    fn codes(&mut self, max: usize) -> Result<Vec<Zeroizing<String>>, DecodeError> {
        let n = usize::from(self.u8()?);
        if n > max {
            return Err(DecodeError::BadTag);
        }
        (0..n).map(|_| self.secret_str(MAX_CODE_FIELD)).collect()
    }

    fn opt_key(&mut self) -> Result<Option<DeviceKey>, DecodeError> {
        if !self.tag()? {
            return Ok(None);
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(self.take(32)?);
        let label = self.str()?;
        if label.len() > MAX_KEY_LABEL_LEN {
            return Err(DecodeError::BadString);
        }
        Ok(Some(DeviceKey { digest, label }))
    }

    fn names(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.u8()?;
        let names: Vec<String> = (0..n).map(|_| self.str()).collect::<Result<_, _>>()?;
        // One encoding per message: never more than the encoder puts in one.
        if names.iter().map(|n| n.len() + 1).sum::<usize>() > USERS_BUDGET {
            return Err(DecodeError::Trailing);
        }
        Ok(names)
    }

    fn devices(&mut self) -> Result<Vec<DeviceInfo>, DecodeError> {
        let n = usize::from(self.u8()?);
        if n > MAX_DEVICES {
            return Err(DecodeError::BadTag);
        }
        (0..n)
            .map(|_| {
                let since = self.i64()?;
                let rhost = self.str()?;
                let key = self.opt_str()?;
                if rhost.len() > MAX_DEVICE_RHOST
                    || key.as_ref().is_some_and(|k| k.len() > MAX_KEY_LABEL_LEN)
                {
                    return Err(DecodeError::BadString);
                }
                Ok(DeviceInfo { since, rhost, key })
            })
            .collect()
    }

    fn prior(&mut self) -> Result<Prior, DecodeError> {
        Ok(Prior {
            count: self.u32()?,
            last_rhost: self.opt_str()?,
            last_at: self.opt_i64()?,
        })
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing)
        }
    }
}

/// Checks version and returns the kind and a reader of the body. `body` is the frame
/// without its length prefix.
fn open(body: &[u8]) -> Result<(u8, Reader<'_>), DecodeError> {
    if body.len() < 2 || body.len() > MAX_FRAME_LEN {
        return Err(DecodeError::Length(body.len() as u32));
    }
    if body[0] != VERSION {
        return Err(DecodeError::Version(body[0]));
    }
    Ok((body[1], Reader { rest: &body[2..] }))
}

impl Request {
    /// The whole frame, length prefix included.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        match self {
            Request::Verify(v) => {
                let mut w = Writer::new(VERIFY);
                w.str(&v.user, MAX_STR_LEN);
                w.str(&v.code, MAX_CODE_LEN);
                w.opt_str(v.rhost.as_deref());
                w.str(&v.service, MAX_STR_LEN);
                w.opt_key(v.key.as_ref());
                w.finish()
            }
            Request::IsEnrolled { user } => {
                let mut w = Writer::new(IS_ENROLLED);
                w.str(user, MAX_STR_LEN);
                w.finish()
            }
            Request::Enroll(e) => {
                let mut w = Writer::new(ENROLL);
                w.str(&e.user, MAX_STR_LEN);
                w.str(&e.secret, MAX_SECRET_LEN);
                w.0.push(e.algorithm);
                w.0.push(e.digits);
                w.u32(e.period);
                w.opt_u64(e.last_counter);
                match &e.recovery {
                    NewCodes::Generate(n) => {
                        w.0.push(0);
                        w.0.push(*n);
                    }
                    NewCodes::Keep(codes) => {
                        w.0.push(1);
                        w.codes(codes, MAX_KEEP);
                    }
                }
                w.0.push(u8::from(e.replace));
                w.finish()
            }
            Request::Status { user } => Self::one_user(STATUS, user),
            Request::Unlock { user } => Self::one_user(UNLOCK, user),
            Request::Remove { user } => Self::one_user(REMOVE, user),
            Request::NewRecoveryCodes { user, count } => {
                let mut w = Writer::new(NEW_RECOVERY_CODES);
                w.str(user, MAX_STR_LEN);
                w.0.push(*count);
                w.finish()
            }
            Request::ListUsers { after } => {
                let mut w = Writer::new(LIST_USERS);
                w.opt_str(after.as_deref());
                w.finish()
            }
            Request::ImportUser {
                user,
                from_dir,
                from_key,
                replace,
            } => {
                let mut w = Writer::new(IMPORT_USER);
                w.str(user, MAX_STR_LEN);
                w.str(from_dir, MAX_STR_LEN);
                w.str(from_key, MAX_STR_LEN);
                w.0.push(u8::from(*replace));
                w.finish()
            }
            Request::Grace(g) => {
                let mut w = Writer::new(GRACE_REQUEST);
                w.str(&g.user, MAX_STR_LEN);
                w.str(&g.rhost, MAX_STR_LEN);
                w.opt_key(g.key.as_ref());
                w.str(&g.service, MAX_STR_LEN);
                w.finish()
            }
            Request::ForgetDevices { user } => Self::one_user(FORGET_DEVICES, user),
            Request::FinishRotation => Writer::new(FINISH_ROTATION).finish(),
        }
    }

    fn one_user(kind: u8, user: &str) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new(kind);
        w.str(user, MAX_STR_LEN);
        w.finish()
    }

    /// Decodes a frame body (what [`read_frame`] returns).
    pub fn decode(body: &[u8]) -> Result<Request, DecodeError> {
        let (kind, mut r) = open(body)?;
        let req = match kind {
            VERIFY => {
                let user = r.str()?;
                let code = r.str_bytes()?;
                if code.len() > MAX_CODE_LEN {
                    return Err(DecodeError::BadString);
                }
                let code = Zeroizing::new(
                    std::str::from_utf8(code)
                        .map_err(|_| DecodeError::BadString)?
                        .to_owned(),
                );
                Request::Verify(Verify {
                    user,
                    code,
                    rhost: r.opt_str()?,
                    service: r.str()?,
                    key: r.opt_key()?,
                })
            }
            IS_ENROLLED => Request::IsEnrolled { user: r.str()? },
            ENROLL => Request::Enroll(Enroll {
                user: r.str()?,
                secret: r.secret_str(MAX_SECRET_LEN)?,
                algorithm: r.u8()?,
                digits: r.u8()?,
                period: r.u32()?,
                last_counter: r.opt_u64()?,
                recovery: if r.tag()? {
                    NewCodes::Keep(r.codes(MAX_KEEP)?)
                } else {
                    NewCodes::Generate(r.u8()?)
                },
                replace: r.tag()?,
            }),
            STATUS => Request::Status { user: r.str()? },
            UNLOCK => Request::Unlock { user: r.str()? },
            REMOVE => Request::Remove { user: r.str()? },
            NEW_RECOVERY_CODES => Request::NewRecoveryCodes {
                user: r.str()?,
                count: r.u8()?,
            },
            LIST_USERS => Request::ListUsers {
                after: r.opt_str()?,
            },
            IMPORT_USER => Request::ImportUser {
                user: r.str()?,
                from_dir: r.str()?,
                from_key: r.str()?,
                replace: r.tag()?,
            },
            GRACE_REQUEST => Request::Grace(GraceRequest {
                user: r.str()?,
                rhost: r.str()?,
                key: r.opt_key()?,
                service: r.str()?,
            }),
            FORGET_DEVICES => Request::ForgetDevices { user: r.str()? },
            FINISH_ROTATION => Request::FinishRotation,
            k => return Err(DecodeError::Kind(k)),
        };
        r.end()?;
        Ok(req)
    }
}

impl Reply {
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w;
        match self {
            Reply::Accepted { step, prior } => {
                w = Writer::new(ACCEPTED);
                w.u64(*step);
                w.prior(prior);
            }
            Reply::RecoveryAccepted { remaining, prior } => {
                w = Writer::new(RECOVERY_ACCEPTED);
                w.u32(*remaining);
                w.prior(prior);
            }
            Reply::Rejected {
                failures,
                locked_until,
            } => {
                w = Writer::new(REJECTED);
                w.u32(*failures);
                w.opt_i64(*locked_until);
            }
            Reply::Replayed {
                failures,
                locked_until,
            } => {
                w = Writer::new(REPLAYED);
                w.u32(*failures);
                w.opt_i64(*locked_until);
            }
            Reply::Locked { until } => {
                w = Writer::new(LOCKED);
                w.i64(*until);
            }
            Reply::NotEnrolled => w = Writer::new(NOT_ENROLLED),
            Reply::Enrolled => w = Writer::new(ENROLLED),
            Reply::Unavailable(why) => {
                w = Writer::new(UNAVAILABLE);
                w.0.push(*why as u8);
            }
            Reply::Denied => w = Writer::new(DENIED),
            Reply::BadRequest => w = Writer::new(BAD_REQUEST),
            Reply::Status(st) => {
                w = Writer::new(STATUS_REPLY);
                w.0.push(st.algorithm);
                w.0.push(st.digits);
                w.u32(st.period);
                w.i64(st.created);
                w.opt_i64(st.last_used);
                w.opt_u64(st.last_counter);
                w.u32(st.failures);
                w.opt_i64(st.locked_until);
                w.u32(st.rejected_since_success);
                w.opt_str(st.last_rejected_rhost.as_deref());
                w.opt_i64(st.last_rejected_at);
                w.u32(st.lockouts);
                w.u32(st.recovery_codes_left);
                w.devices(&st.devices);
            }
            Reply::Done => w = Writer::new(DONE),
            Reply::RecoveryCodes(codes) => {
                w = Writer::new(RECOVERY_CODES);
                w.codes(codes, MAX_CODES);
            }
            Reply::Users { names, more } => {
                w = Writer::new(USERS);
                // As many as fit; the rest is "more" (the caller asks again after the last).
                let n = w.names(names);
                w.0.push(u8::from(*more || n < names.len()));
            }
            Reply::AlreadyEnrolled => w = Writer::new(ALREADY_ENROLLED),
            Reply::Grace { since } => {
                w = Writer::new(GRACE);
                w.i64(*since);
            }
            Reply::NoGrace => w = Writer::new(NO_GRACE),
            Reply::Forgotten { count } => {
                w = Writer::new(FORGOTTEN);
                w.u32(*count);
            }
            Reply::Rotated {
                rewritten,
                unchanged,
                failed,
                names,
            } => {
                w = Writer::new(ROTATED);
                w.u32(*rewritten);
                w.u32(*unchanged);
                w.u32(*failed);
                w.names(names);
            }
        }
        w.finish()
    }

    pub fn decode(body: &[u8]) -> Result<Reply, DecodeError> {
        let (kind, mut r) = open(body)?;
        let reply = match kind {
            ACCEPTED => Reply::Accepted {
                step: r.u64()?,
                prior: r.prior()?,
            },
            RECOVERY_ACCEPTED => Reply::RecoveryAccepted {
                remaining: r.u32()?,
                prior: r.prior()?,
            },
            REJECTED => Reply::Rejected {
                failures: r.u32()?,
                locked_until: r.opt_i64()?,
            },
            REPLAYED => Reply::Replayed {
                failures: r.u32()?,
                locked_until: r.opt_i64()?,
            },
            LOCKED => Reply::Locked { until: r.i64()? },
            NOT_ENROLLED => Reply::NotEnrolled,
            ENROLLED => Reply::Enrolled,
            UNAVAILABLE => {
                Reply::Unavailable(Unavailable::from_u8(r.u8()?).ok_or(DecodeError::BadTag)?)
            }
            DENIED => Reply::Denied,
            BAD_REQUEST => Reply::BadRequest,
            STATUS_REPLY => Reply::Status(Status {
                algorithm: r.u8()?,
                digits: r.u8()?,
                period: r.u32()?,
                created: r.i64()?,
                last_used: r.opt_i64()?,
                last_counter: r.opt_u64()?,
                failures: r.u32()?,
                locked_until: r.opt_i64()?,
                rejected_since_success: r.u32()?,
                last_rejected_rhost: r.opt_str()?,
                last_rejected_at: r.opt_i64()?,
                lockouts: r.u32()?,
                recovery_codes_left: r.u32()?,
                devices: r.devices()?,
            }),
            DONE => Reply::Done,
            RECOVERY_CODES => Reply::RecoveryCodes(r.codes(MAX_CODES)?),
            USERS => Reply::Users {
                names: r.names()?,
                more: r.tag()?,
            },
            ALREADY_ENROLLED => Reply::AlreadyEnrolled,
            GRACE => Reply::Grace { since: r.i64()? },
            NO_GRACE => Reply::NoGrace,
            FORGOTTEN => Reply::Forgotten { count: r.u32()? },
            ROTATED => Reply::Rotated {
                rewritten: r.u32()?,
                unchanged: r.u32()?,
                failed: r.u32()?,
                names: r.names()?,
            },
            k => return Err(DecodeError::Kind(k)),
        };
        r.end()?;
        Ok(reply)
    }
}

/// Why [`read_frame`] failed.
#[derive(Debug)]
pub enum FrameError {
    /// Reading failed: EOF, a timeout, a reset.
    Io(io::Error),
    /// The length prefix is out of range; nothing after it was read.
    Length(u32),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "{e}"),
            FrameError::Length(n) => write!(f, "frame length {n} out of range"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads one frame and returns its body (version, kind, fields). The length is checked
/// before the body's buffer is allocated, so an oversized prefix costs nothing. The buffer
/// is allocated once at its final size and wiped when dropped.
pub fn read_frame(r: &mut impl Read) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut len = [0u8; HEADER_LEN];
    r.read_exact(&mut len).map_err(FrameError::Io)?;
    let n = u32::from_be_bytes(len);
    if !(2..=MAX_FRAME_LEN as u32).contains(&n) {
        return Err(FrameError::Length(n));
    }
    let mut body = Zeroizing::new(vec![0u8; n as usize]);
    r.read_exact(&mut body).map_err(FrameError::Io)?;
    Ok(body)
}

/// A stream read under one deadline for the whole frame, not one per read: a peer that
/// sends a byte now and then cannot hold a connection open past it.
pub struct Deadline<'a> {
    pub stream: &'a UnixStream,
    pub deadline: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        (&*self.stream).read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(code: &str) -> Request {
        Request::Verify(Verify {
            user: "alice".into(),
            code: Zeroizing::new(code.into()),
            rhost: Some("203.0.113.9".into()),
            service: "swaylock".into(),
            key: None,
        })
    }

    fn body(frame: &[u8]) -> &[u8] {
        &frame[HEADER_LEN..]
    }

    #[test]
    fn fixed_layout() {
        let f = Request::IsEnrolled { user: "bob".into() }.encode();
        assert_eq!(&f[..], &[0, 0, 0, 6, VERSION, 0x02, 3, b'b', b'o', b'b']);
        let f = Reply::Locked { until: 1 }.encode();
        assert_eq!(&f[..], &[0, 0, 0, 10, 1, 0x85, 0, 0, 0, 0, 0, 0, 0, 1]);
        let f = verify("123456").encode();
        let mut want = vec![0, 0, 0, 0, 1, 0x01, 5];
        want.extend_from_slice(b"alice");
        want.push(6);
        want.extend_from_slice(b"123456");
        want.extend_from_slice(&[1, 11]);
        want.extend_from_slice(b"203.0.113.9");
        want.push(8);
        want.extend_from_slice(b"swaylock");
        want.push(0);
        let n = (want.len() - 4) as u8;
        want[3] = n;
        assert_eq!(&f[..], &want[..]);
    }

    #[test]
    fn round_trips() {
        let reqs = [
            verify("123 456"),
            Request::Verify(Verify {
                user: "x".into(),
                code: Zeroizing::new(String::new()),
                rhost: None,
                service: String::new(),
                key: Some(DeviceKey {
                    digest: [7; 32],
                    label: "ssh-ed25519 SHA256:abc".into(),
                }),
            }),
            Request::IsEnrolled {
                user: "carol".into(),
            },
            Request::Grace(GraceRequest {
                user: "dave".into(),
                rhost: "192.0.2.1".into(),
                key: None,
                service: "sshd".into(),
            }),
            Request::Grace(GraceRequest {
                user: "dave".into(),
                rhost: String::new(),
                key: Some(DeviceKey {
                    digest: [0; 32],
                    label: String::new(),
                }),
                service: "sshd".into(),
            }),
        ];
        for r in reqs {
            assert_eq!(Request::decode(body(&r.encode())).unwrap(), r);
        }
        let prior = Prior {
            count: 3,
            last_rhost: Some("h".into()),
            last_at: Some(-5),
        };
        let replies = [
            Reply::Accepted {
                step: u64::MAX,
                prior: prior.clone(),
            },
            Reply::Accepted {
                step: 1,
                prior: Prior::default(),
            },
            Reply::RecoveryAccepted {
                remaining: 9,
                prior,
            },
            Reply::Rejected {
                failures: 2,
                locked_until: None,
            },
            Reply::Rejected {
                failures: 5,
                locked_until: Some(i64::MAX),
            },
            Reply::Replayed {
                failures: 1,
                locked_until: Some(7),
            },
            Reply::Locked { until: i64::MIN },
            Reply::NotEnrolled,
            Reply::Enrolled,
            Reply::Unavailable(Unavailable::State),
            Reply::Unavailable(Unavailable::Key),
            Reply::Unavailable(Unavailable::Backend),
            Reply::Unavailable(Unavailable::Busy),
            Reply::Unavailable(Unavailable::Internal),
            Reply::Unavailable(Unavailable::NotPermitted),
            Reply::Denied,
            Reply::BadRequest,
            Reply::Grace { since: -1 },
            Reply::NoGrace,
        ];
        for r in replies {
            assert_eq!(Reply::decode(body(&r.encode())).unwrap(), r, "{r:?}");
        }
    }

    #[test]
    fn administration_round_trips_and_fits_one_frame_at_its_largest() {
        let code = |s: &str| Zeroizing::new(s.to_owned());
        let reqs = [
            Request::Enroll(Enroll {
                user: "u".repeat(MAX_STR_LEN),
                secret: Zeroizing::new("A".repeat(MAX_SECRET_LEN)),
                algorithm: 2,
                digits: 8,
                period: 60,
                last_counter: Some(u64::MAX),
                recovery: NewCodes::Keep(vec![code(&"9".repeat(MAX_CODE_FIELD)); MAX_KEEP]),
                replace: true,
            }),
            Request::Enroll(Enroll {
                user: "alice".into(),
                secret: code("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
                algorithm: 0,
                digits: 6,
                period: 30,
                last_counter: None,
                recovery: NewCodes::Generate(10),
                replace: false,
            }),
            Request::Status { user: "a".into() },
            Request::Unlock { user: "b".into() },
            Request::Remove { user: "c".into() },
            Request::NewRecoveryCodes {
                user: "d".into(),
                count: 64,
            },
            Request::ListUsers { after: None },
            Request::ListUsers {
                after: Some("m".into()),
            },
            Request::ImportUser {
                user: "u".repeat(MAX_STR_LEN),
                from_dir: "d".repeat(MAX_STR_LEN),
                from_key: "k".repeat(MAX_STR_LEN),
                replace: true,
            },
            Request::ForgetDevices { user: "e".into() },
            Request::FinishRotation,
        ];
        for r in reqs {
            let f = r.encode();
            assert!(f.len() <= HEADER_LEN + MAX_FRAME_LEN, "{r:?}");
            assert_eq!(Request::decode(body(&f)).unwrap(), r);
        }
        assert!(Request::ListUsers { after: None }.root_only());
        assert!(Request::FinishRotation.root_only());
        assert!(Request::ForgetDevices { user: "a".into() }.root_only());
        assert!(!verify("1").root_only());
        let replies = [
            Reply::Status(Status {
                algorithm: 1,
                digits: 7,
                period: 30,
                created: -1,
                last_used: Some(5),
                last_counter: Some(9),
                failures: 2,
                locked_until: Some(i64::MAX),
                rejected_since_success: 3,
                last_rejected_rhost: Some("h".repeat(MAX_STR_LEN)),
                last_rejected_at: None,
                lockouts: 1,
                recovery_codes_left: 4,
                devices: vec![
                    DeviceInfo {
                        since: i64::MIN,
                        rhost: "r".repeat(MAX_DEVICE_RHOST),
                        key: Some("k".repeat(MAX_KEY_LABEL_LEN)),
                    };
                    MAX_DEVICES
                ],
            }),
            Reply::Status(Status::default()),
            Reply::Forgotten { count: 3 },
            Reply::Rotated {
                rewritten: 1,
                unchanged: 2,
                failed: 300,
                names: vec!["u".repeat(MAX_STR_LEN); 3],
            },
            Reply::Done,
            Reply::AlreadyEnrolled,
            Reply::RecoveryCodes(vec![code("ABCDE-FGHJK"); MAX_CODES]),
            Reply::RecoveryCodes(Vec::new()),
            Reply::Users {
                names: vec!["a".into(), "b".into()],
                more: false,
            },
        ];
        for r in replies {
            let f = r.encode();
            assert!(f.len() <= HEADER_LEN + MAX_FRAME_LEN, "{r:?}");
            assert_eq!(Reply::decode(body(&f)).unwrap(), r, "{r:?}");
        }
        // More names than fit: as many as fit, and "more".
        let names: Vec<String> = (0..200).map(|i| format!("user{i:04}")).collect();
        let f = Reply::Users {
            names: names.clone(),
            more: false,
        }
        .encode();
        assert!(f.len() <= HEADER_LEN + MAX_FRAME_LEN);
        let Reply::Users { names: got, more } = Reply::decode(body(&f)).unwrap() else {
            panic!()
        };
        assert!(more && !got.is_empty() && got.len() < names.len());
        assert_eq!(got[..], names[..got.len()]);
    }

    #[test]
    fn long_fields_are_cut_not_refused() {
        let r = Request::Verify(Verify {
            user: "u".repeat(300),
            code: Zeroizing::new("é".repeat(40)),
            rhost: Some("h".repeat(1000)),
            service: "s".repeat(256),
            key: Some(DeviceKey {
                digest: [1; 32],
                label: "k".repeat(300),
            }),
        });
        let f = r.encode();
        assert!(f.len() <= HEADER_LEN + MAX_FRAME_LEN);
        let Request::Verify(v) = Request::decode(body(&f)).unwrap() else {
            panic!("kind")
        };
        assert_eq!(v.user.len(), 255);
        // 32 two-byte characters fit in 64 bytes.
        assert_eq!(*v.code, "é".repeat(32));
        assert_eq!(v.rhost.unwrap().len(), 255);
        assert_eq!(v.service.len(), 255);
        assert_eq!(v.key.unwrap().label.len(), MAX_KEY_LABEL_LEN);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let good = verify("123456").encode();
        let b = body(&good);
        // Every strict prefix is truncated (or too short to have a kind).
        for n in 0..b.len() {
            assert!(Request::decode(&b[..n]).is_err(), "prefix {n}");
        }
        let mut t = b.to_vec();
        t.push(0);
        assert_eq!(Request::decode(&t), Err(DecodeError::Trailing));
        let mut v = b.to_vec();
        v[0] = 2;
        assert_eq!(Request::decode(&v), Err(DecodeError::Version(2)));
        let mut k = b.to_vec();
        k[1] = 0x81;
        assert_eq!(Request::decode(&k), Err(DecodeError::Kind(0x81)));
        // The rhost tag (after user and code) must be 0 or 1.
        let mut tag = b.to_vec();
        tag[2 + 6 + 7] = 2;
        assert_eq!(Request::decode(&tag), Err(DecodeError::BadTag));
        let mut utf = b.to_vec();
        utf[3] = 0xff;
        assert_eq!(Request::decode(&utf), Err(DecodeError::BadString));
        // A code field over MAX_CODE_LEN is refused even though it fits a string.
        let mut long = vec![VERSION, 0x01, 1, b'a', 65];
        long.extend_from_slice(&[b'1'; 65]);
        long.extend_from_slice(&[0, 0]);
        assert_eq!(Request::decode(&long), Err(DecodeError::BadString));
        assert_eq!(Reply::decode(&[VERSION, 0x88, 9]), Err(DecodeError::BadTag));
        assert_eq!(
            Request::decode(&vec![VERSION; MAX_FRAME_LEN + 1]),
            Err(DecodeError::Length(MAX_FRAME_LEN as u32 + 1))
        );
    }

    #[test]
    fn read_frame_checks_the_length_first() {
        let f = verify("1").encode();
        let got = read_frame(&mut &f[..]).unwrap();
        assert_eq!(&got[..], body(&f));
        for bad in [0u32, 1, MAX_FRAME_LEN as u32 + 1, u32::MAX] {
            let mut input = bad.to_be_bytes().to_vec();
            input.extend_from_slice(&[0; 8]);
            assert!(matches!(
                read_frame(&mut &input[..]),
                Err(FrameError::Length(n)) if n == bad
            ));
        }
        // A body shorter than its prefix says: an I/O error (EOF), not a short frame.
        let short = [0, 0, 0, 10, 1, 2];
        assert!(matches!(
            read_frame(&mut &short[..]),
            Err(FrameError::Io(_))
        ));
    }
}
