//! The user state file (TOML), and its decrypted in-memory form.
//!
//! The TOTP secret and the recovery-hash key are sealed together with AES-256-GCM under the
//! host key. The associated data binds the format version and the user name, so a file
//! copied onto another user's name does not open. During a rekey a file may carry the same
//! payload sealed under two keys; each entry names its key by [`HostKey::key_id`].
//!
//! Format version 2 authenticates the whole file. Its first line is
//! `mac = "<64 hex digits>"`: HMAC-SHA256 under the enrollment's [`RecordKey`] over every
//! byte that follows that line, exactly as stored. So every field, present or added later,
//! is covered without being listed here, and a reader checks it with the one parse it makes
//! anyway (the MAC is verified once the payload is open, since its key is in there). Any
//! change made without the key is [`Error::Corrupt`]. Version 1 files (no `mac`; only the
//! sealed payload authenticated) are still read, and every rewrite writes version 2. The
//! version is in the associated data of the seal, so a version 2 file cannot be passed off
//! as version 1 to shed its MAC.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::counters::Counters;
use crate::crypto::{fill_random, hmac_sha256, HostKey, RecordKey};
use crate::device::{Device, DeviceIdentity, MAX_DEVICES};
use crate::error::{Error, Result};
use crate::fsutil::hex;
use crate::recovery;
use crate::totp::{Algorithm, OtpKind, OtpParams, TotpSecret};
use crate::user::UserName;

/// The version every write produces.
pub const FORMAT_VERSION: u32 = 2;
/// The version before whole-file authentication: still read, never written.
pub const LEGACY_FORMAT_VERSION: u32 = 1;
const MAC_LABEL: &[u8] = b"pam_totp state v2";
const MAC_PREFIX: &str = "mac = \"";
/// `mac = "` + 64 hex digits + `"` + newline.
const MAC_LINE_LEN: usize = MAC_PREFIX.len() + 64 + 2;
/// Largest state file we read. A real one is about 2 KiB.
pub const MAX_STATE_FILE_LEN: u64 = 64 * 1024;
const RECOVERY_KEY_LEN: usize = 32;

/// A sealed payload (recovery key || TOTP secret) under one host key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedSecret {
    key_id: String,
    nonce: String,
    ciphertext: String,
}

/// The file as stored. Field names are SPEC.md's.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    /// Version 2: the authenticator of the rest of the file (see the module doc). Never
    /// serialized from here: the writer puts it on the first line itself.
    #[serde(default, skip_serializing)]
    mac: Option<String>,
    version: u32,
    user: String,
    algorithm: Algorithm,
    digits: u8,
    period: u32,
    /// Unix seconds.
    created: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_counter: Option<u64>,
    failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locked_until: Option<i64>,
    rejected_since_success: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_rejected_rhost: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_rejected_at: Option<i64>,
    /// Links the counters file's records to this version of the file.
    generation: u64,
    /// HMAC-SHA256 of each recovery code, hex.
    recovery_codes: Vec<String>,
    secret: Vec<SealedSecret>,
    /// Locks since the last success; absent (0) in files written before it existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    lockouts: u32,
    /// `hotp` for a counter-based enrollment (then `last_counter` is the last accepted
    /// counter and `period` is unused); absent for TOTP, as in files written before it.
    #[serde(default, skip_serializing_if = "OtpKind::is_totp")]
    kind: OtpKind,
    /// Devices remembered for `grace_secs` (what the counters hold, see
    /// [`crate::device`]); absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    devices: Vec<DeviceEntry>,
}

/// A remembered device in the state file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceEntry {
    /// Keyed hash of the device's identity, hex.
    id: String,
    since: i64,
    rhost: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl DeviceEntry {
    fn from_device(d: &Device) -> Self {
        DeviceEntry {
            id: hex(&d.id),
            since: d.since,
            rhost: d.rhost.clone(),
            key: d.key.clone(),
        }
    }

    /// `None` for an id that is not 32 hex digits.
    fn to_device(&self) -> Option<Device> {
        let raw = data_encoding::HEXLOWER.decode(self.id.as_bytes()).ok()?;
        Some(Device {
            id: raw.try_into().ok()?,
            since: self.since,
            rhost: crate::counters::clean_rhost(&self.rhost),
            key: self.key.as_deref().map(crate::device::clean_label),
        })
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One user's state, decrypted. Wipes its secrets on drop; no `Debug`.
pub struct UserState {
    pub user: UserName,
    pub params: OtpParams,
    /// Unix seconds.
    pub created: i64,
    /// Current mutable values (the state file's, overlaid by the counters file's).
    pub counters: Counters,
    pub(crate) generation: u64,
    pub(crate) recovery_hashes: Vec<[u8; 32]>,
    pub(crate) secret: TotpSecret,
    pub(crate) recovery_key: Zeroizing<Vec<u8>>,
}

fn aad(version: u32, user: &UserName) -> Vec<u8> {
    let mut aad = format!("pam_totp state v{version}\0").into_bytes();
    aad.extend_from_slice(user.as_str().as_bytes());
    aad
}

pub(crate) fn new_generation() -> Result<u64> {
    let mut b = [0u8; 8];
    fill_random(&mut b)?;
    // TOML integers are signed 64-bit.
    Ok(u64::from_le_bytes(b) >> 1)
}

impl UserState {
    /// A fresh enrollment. The recovery-hash key is derived from the host key and a random
    /// salt, then sealed with the secret so that a rekey keeps the codes valid.
    pub fn new(
        user: UserName,
        secret: TotpSecret,
        params: OtpParams,
        now: i64,
        last_counter: Option<u64>,
        key: &HostKey,
    ) -> Result<Self> {
        let mut salt = [0u8; 16];
        fill_random(&mut salt)?;
        let mut info = user.as_str().as_bytes().to_vec();
        info.push(0);
        info.extend_from_slice(&salt);
        let recovery_key = Zeroizing::new(key.mac(b"pam_totp recovery key v1", &info).to_vec());
        Ok(UserState {
            user,
            params,
            created: now,
            counters: Counters {
                last_counter,
                ..Counters::default()
            },
            generation: new_generation()?,
            recovery_hashes: Vec::new(),
            secret,
            recovery_key,
        })
    }

    /// The key that authenticates this enrollment's state file and counters records.
    pub fn record_key(&self) -> RecordKey {
        RecordKey::derive(&self.recovery_key, &self.user)
    }

    /// The secret stays inside the crate: callers verify codes, they never get it.
    pub(crate) fn secret(&self) -> &TotpSecret {
        &self.secret
    }

    /// Whether `input` (typed, normalised as at login) is a code of this state's secret
    /// within `window` steps of `now`, ignoring `last_counter`. Changes nothing.
    pub fn verify_code(&self, input: &str, now: i64, window: u32) -> Option<crate::TimeStep> {
        crate::login::verify_new_secret(&self.secret, &self.params, input, now, window)
    }

    /// Replaces the recovery codes with `count` new ones and returns them for display.
    pub fn new_recovery_codes(&mut self, count: usize) -> Result<Vec<recovery::RecoveryCode>> {
        let count = count.min(recovery::MAX_RECOVERY_CODES);
        let codes = recovery::generate(count)?;
        self.recovery_hashes = codes
            .iter()
            .map(|c| recovery::hash(&self.recovery_key, &self.user, c.normalized()))
            .collect();
        self.counters.recovery_used = 0;
        Ok(codes)
    }

    /// Replaces the recovery codes with already known ones (e.g. google-authenticator
    /// scratch codes), each in any form [`recovery::normalize`] accepts.
    pub fn set_recovery_codes(&mut self, codes: &[&str]) -> Result<()> {
        if codes.len() > recovery::MAX_RECOVERY_CODES {
            return Err(Error::InvalidInput(format!(
                "at most {} recovery codes",
                recovery::MAX_RECOVERY_CODES
            )));
        }
        let mut hashes = Vec::with_capacity(codes.len());
        for code in codes {
            let n = recovery::normalize(code)
                .ok_or_else(|| Error::InvalidInput("malformed recovery code".into()))?;
            hashes.push(recovery::hash(&self.recovery_key, &self.user, &n));
        }
        self.recovery_hashes = hashes;
        self.counters.recovery_used = 0;
        Ok(())
    }

    /// The record of `device` remembered at `now`: its identity under a keyed hash (the
    /// user's sealed key, so it survives a rekey and means nothing without it).
    pub(crate) fn device_record(&self, device: &DeviceIdentity, now: i64) -> Device {
        device.record(self.device_id(device), now)
    }

    /// The keyed hash that names `device` for this user.
    pub(crate) fn device_id(&self, device: &DeviceIdentity) -> [u8; 16] {
        let mut data = self.user.as_str().as_bytes().to_vec();
        data.push(0);
        data.extend_from_slice(&device.material());
        let mac = hmac_sha256(&self.recovery_key, b"pam_totp device v1", &data);
        let mut id = [0u8; 16];
        id.copy_from_slice(&mac[..16]);
        id
    }

    /// Recovery codes not yet spent.
    pub fn recovery_codes_left(&self) -> usize {
        recovery::unspent(self.recovery_hashes.len(), self.counters.recovery_used)
    }

    /// How many recovery codes the list holds, spent or not.
    pub(crate) fn recovery_codes_listed(&self) -> usize {
        self.recovery_hashes.len()
    }

    /// Index of the unspent recovery code equal to `normalized`.
    pub(crate) fn match_recovery_code(&self, normalized: &str) -> Option<usize> {
        recovery::find(
            &self.recovery_key,
            &self.user,
            &self.recovery_hashes,
            self.counters.recovery_used,
            normalized,
        )
    }

    /// Whether `normalized` is a recovery code of this state that is already spent.
    pub(crate) fn recovery_code_spent(&self, normalized: &str) -> bool {
        recovery::is_spent(
            &self.recovery_key,
            &self.user,
            &self.recovery_hashes,
            self.counters.recovery_used,
            normalized,
        )
    }

    /// Drops spent recovery codes, so a rewritten file carries only live ones.
    fn compact_recovery_codes(&mut self) {
        recovery::compact(&mut self.recovery_hashes, self.counters.recovery_used);
        self.counters.recovery_used = 0;
    }

    /// Gives this state a new generation: written out, it supersedes every counters record.
    pub(crate) fn next_generation(&mut self) -> Result<()> {
        self.generation = new_generation()?;
        Ok(())
    }

    /// Serializes, sealing the payload under each of `keys`. Every caller that rewrites an
    /// existing user's file first calls [`UserState::next_generation`].
    pub(crate) fn serialize(&mut self, keys: &[&HostKey]) -> Result<Zeroizing<String>> {
        self.compact_recovery_codes();
        let mut plain = Zeroizing::new(Vec::with_capacity(RECOVERY_KEY_LEN + 64));
        plain.extend_from_slice(&self.recovery_key);
        plain.extend_from_slice(self.secret.as_bytes());
        let aad = aad(FORMAT_VERSION, &self.user);
        let mut secret = Vec::new();
        for key in keys {
            let (nonce, ct) = key.seal(&aad, &plain)?;
            secret.push(SealedSecret {
                key_id: key.key_id(),
                nonce: hex(&nonce),
                ciphertext: hex(&ct),
            });
        }
        let c = &self.counters;
        let file = StateFile {
            mac: None,
            version: FORMAT_VERSION,
            user: self.user.as_str().to_owned(),
            algorithm: self.params.algorithm(),
            digits: self.params.digits(),
            period: self.params.period(),
            created: self.created,
            last_used: c.last_used,
            last_counter: c.last_counter,
            failures: c.failures,
            locked_until: c.locked_until,
            rejected_since_success: c.rejected_since_success,
            last_rejected_rhost: c.last_rejected_rhost.clone(),
            last_rejected_at: c.last_rejected_at,
            generation: self.generation,
            recovery_codes: self.recovery_hashes.iter().map(|h| hex(h)).collect(),
            secret,
            lockouts: c.lockouts,
            kind: self.params.kind(),
            devices: c.devices.iter().map(DeviceEntry::from_device).collect(),
        };
        let body = toml::to_string(&file)
            .map(Zeroizing::new)
            .map_err(|e| Error::InvalidInput(format!("cannot serialize state: {e}")))?;
        let tag = self
            .record_key()
            .tag(MAC_LABEL, &mac_input(&self.user, body.as_bytes()));
        let mut text = Zeroizing::new(String::with_capacity(MAC_LINE_LEN + body.len()));
        text.push_str(MAC_PREFIX);
        text.push_str(&hex(&tag));
        text.push_str("\"\n");
        text.push_str(&body);
        Ok(text)
    }

    /// Serializes and seals under `keys`, as a backend stores it. The result carries the
    /// record key, for the backend to authenticate the first counters record it writes.
    pub(crate) fn seal(&mut self, keys: &[&HostKey]) -> Result<SealedState> {
        let text = self.serialize(keys)?;
        let mut sealed = SealedState::parse(
            text.as_bytes(),
            &self.user,
            std::path::Path::new(self.user.as_str()),
        )?;
        sealed.record_key = Some(self.record_key());
        Ok(sealed)
    }

    /// Parses and decrypts a state file read for `user`. `keys` are tried by key id. Any
    /// malformed input is an [`Error::Corrupt`] naming `path`; never a panic (fuzzed).
    pub fn from_toml(
        bytes: &[u8],
        user: &UserName,
        keys: &[&HostKey],
        path: &std::path::Path,
    ) -> Result<Self> {
        SealedState::parse(bytes, user, path)?.open(user, keys)
    }
}

/// A state file parsed but not decrypted: what a [`crate::backend::Backend`] stores and
/// hands back. Its secret opens only inside this crate ([`SealedState::open`]), so a
/// backend never sees it in clear.
pub struct SealedState {
    file: StateFile,
    bytes: Zeroizing<Vec<u8>>,
    origin: std::path::PathBuf,
    /// Version 2: the MAC from the first line, checked by [`SealedState::open`].
    mac: Option<[u8; 32]>,
    /// Set when made by [`UserState::seal`], never when parsed.
    record_key: Option<RecordKey>,
}

/// What the state MAC covers: the user name, then the bytes after the `mac` line.
fn mac_input(user: &UserName, body: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut data = Zeroizing::new(Vec::with_capacity(user.as_str().len() + 1 + body.len()));
    data.extend_from_slice(user.as_str().as_bytes());
    data.push(0);
    data.extend_from_slice(body);
    data
}

impl SealedState {
    /// Parses a stored state of `user`. `origin` names where it came from, for errors (a
    /// path for the files backend, a key name for another store).
    pub fn parse(bytes: &[u8], user: &UserName, origin: &std::path::Path) -> Result<Self> {
        let path = origin;
        let text = std::str::from_utf8(bytes).map_err(|_| Error::corrupt(path, "not UTF-8"))?;
        let file: StateFile =
            toml::from_str(text).map_err(|e| Error::corrupt(path, e.message().to_owned()))?;
        let mac = match (file.version, &file.mac) {
            (LEGACY_FORMAT_VERSION, None) => None,
            (FORMAT_VERSION, Some(mac)) => {
                // The one layout the writer makes: the MAC line first, verbatim, so that
                // what it covers is exactly the rest of the bytes.
                let line = format!("{MAC_PREFIX}{mac}\"\n");
                let tag = data_encoding::HEXLOWER
                    .decode(mac.as_bytes())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                match tag {
                    Some(tag) if bytes.starts_with(line.as_bytes()) => Some(tag),
                    _ => return Err(Error::corrupt(path, "malformed mac line")),
                }
            }
            (LEGACY_FORMAT_VERSION | FORMAT_VERSION, _) => {
                return Err(Error::corrupt(
                    path,
                    "mac does not match the format version",
                ))
            }
            (v, _) => {
                return Err(Error::corrupt(
                    path,
                    format!("unsupported format version {v}"),
                ))
            }
        };
        if file.user != user.as_str() {
            return Err(Error::corrupt(path, "belongs to another user"));
        }
        Ok(SealedState {
            file,
            bytes: Zeroizing::new(bytes.to_vec()),
            origin: origin.to_owned(),
            mac,
            record_key: None,
        })
    }

    /// The format version as stored: 1 for a file written before whole-file
    /// authentication (its counters records may still be checksummed, not MACed).
    pub fn format_version(&self) -> u32 {
        self.file.version
    }

    /// The record key, for a state made by [`UserState::seal`].
    pub(crate) fn record_key(&self) -> Option<&RecordKey> {
        self.record_key.as_ref()
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Identifies this version of the state; counters records name the generation they
    /// extend, and every rewrite changes it.
    pub fn generation(&self) -> u64 {
        self.file.generation
    }

    /// The enrollment's kind, algorithm, digits and period, read without decrypting (the
    /// module needs the digits before its prompt with `forward_pass`).
    pub fn params(&self) -> Result<OtpParams> {
        let f = &self.file;
        OtpParams::new(f.algorithm, f.digits, f.period)
            .map(|p| p.with_kind(f.kind))
            .map_err(|e| Error::corrupt(&self.origin, e.to_string()))
    }

    /// The counters written in the state itself (superseded by a counters record of the
    /// same generation, where the backend keeps one).
    pub fn counters(&self) -> Counters {
        let f = &self.file;
        Counters {
            last_used: f.last_used,
            last_counter: f.last_counter,
            failures: f.failures,
            locked_until: f.locked_until,
            rejected_since_success: f.rejected_since_success,
            last_rejected_rhost: f.last_rejected_rhost.clone(),
            last_rejected_at: f.last_rejected_at,
            // Spent codes are dropped before every write: all listed codes are live.
            recovery_used: 0,
            lockouts: f.lockouts,
            // A malformed entry only loses its grace; at most the newest MAX_DEVICES.
            devices: {
                let d: Vec<Device> = f
                    .devices
                    .iter()
                    .filter_map(DeviceEntry::to_device)
                    .collect();
                d[d.len().saturating_sub(MAX_DEVICES)..].to_vec()
            },
        }
    }

    /// Whether the payload is sealed under a key of this id (no decryption).
    pub(crate) fn sealed_under(&self, key_id: &str) -> bool {
        self.file.secret.iter().any(|s| s.key_id == key_id)
    }

    /// Whether the payload is sealed under a key of this id and no other.
    pub(crate) fn sealed_only_under(&self, key_id: &str) -> bool {
        !self.file.secret.is_empty() && self.file.secret.iter().all(|s| s.key_id == key_id)
    }

    /// Decrypts with the first of `keys` the state is sealed under and, for version 2,
    /// checks the MAC over the whole file.
    pub(crate) fn open(&self, user: &UserName, keys: &[&HostKey]) -> Result<UserState> {
        let file = &self.file;
        let path = self.origin.as_path();
        let params = OtpParams::new(file.algorithm, file.digits, file.period)
            .map_err(|e| Error::corrupt(path, e.to_string()))?
            .with_kind(file.kind);
        let mut recovery_hashes = Vec::with_capacity(file.recovery_codes.len());
        if file.recovery_codes.len() > recovery::MAX_RECOVERY_CODES {
            return Err(Error::corrupt(path, "too many recovery codes"));
        }
        for h in &file.recovery_codes {
            let bytes = data_encoding::HEXLOWER
                .decode(h.as_bytes())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| Error::corrupt(path, "bad recovery code hash"))?;
            recovery_hashes.push(bytes);
        }
        let aad = aad(file.version, user);
        let mut plain = None;
        for key in keys {
            let id = key.key_id();
            let Some(entry) = file.secret.iter().find(|s| s.key_id == id) else {
                continue;
            };
            let nonce = data_encoding::HEXLOWER.decode(entry.nonce.as_bytes());
            let ct = data_encoding::HEXLOWER.decode(entry.ciphertext.as_bytes());
            let (Ok(nonce), Ok(ct)) = (nonce, ct) else {
                return Err(Error::corrupt(path, "bad hex in sealed secret"));
            };
            plain = Some(key.open(&aad, &nonce, &ct).ok_or_else(|| {
                Error::corrupt(path, "secret does not decrypt (tampered or copied)")
            })?);
            break;
        }
        let plain = plain.ok_or_else(|| {
            Error::corrupt(path, "secret is not sealed under the host key (wrong key?)")
        })?;
        if plain.len() < RECOVERY_KEY_LEN {
            return Err(Error::corrupt(path, "sealed payload too short"));
        }
        let recovery_key = Zeroizing::new(plain[..RECOVERY_KEY_LEN].to_vec());
        if let Some(tag) = &self.mac {
            let key = RecordKey::derive(&recovery_key, user);
            let body = &self.bytes[MAC_LINE_LEN..];
            if !key.verify(MAC_LABEL, &mac_input(user, body), tag) {
                return Err(Error::corrupt(
                    path,
                    "state changed without the key (mac does not match)",
                ));
            }
        }
        let secret = TotpSecret::from_bytes(Zeroizing::new(plain[RECOVERY_KEY_LEN..].to_vec()))
            .map_err(|e| Error::corrupt(path, e.to_string()))?;
        Ok(UserState {
            user: user.clone(),
            params,
            created: file.created,
            counters: self.counters(),
            generation: file.generation,
            recovery_hashes,
            secret,
            recovery_key,
        })
    }
}
