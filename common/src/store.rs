//! The state directory: the login transaction and the enrollment-side operations.
//!
//! Layout of the state directory, per user `alice`:
//! - `alice`: the state file (TOML, secret sealed), replaced atomically by rename.
//! - `.alice.counters`: the mutable counters, updated in place, and the user's lock.
//!
//! User names never start with `.`, so companion and temporary files cannot collide with a
//! user's state file.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::counters::{self, Counters, Slots};
use crate::crypto::HostKey;
use crate::error::{Error, Result};
use crate::fsutil::{CheckedDir, ModePolicy};
use crate::lock::{self, UserLock};
use crate::recovery::{self, RecoveryCode};
use crate::state::{UserState, MAX_STATE_FILE_LEN};
use crate::totp::{self, OtpParams, TotpSecret};
use crate::user::UserName;

/// Policy and context of one login attempt.
#[derive(Clone, Debug)]
pub struct AuthRequest<'a> {
    /// Unix time in seconds.
    pub now: i64,
    /// Steps accepted either side of now.
    pub window: u32,
    /// Consecutive failures that lock the user; 0 never locks.
    pub max_failures: u32,
    pub lockout_secs: u64,
    /// Remote host, for the notice shown after rejected attempts.
    pub rhost: Option<&'a str>,
}

impl<'a> AuthRequest<'a> {
    pub fn from_config(config: &Config, now: i64, rhost: Option<&'a str>) -> Self {
        AuthRequest {
            now,
            window: config.window,
            max_failures: config.max_failures,
            lockout_secs: config.lockout_secs,
            rhost,
        }
    }
}

/// What happened to rejected attempts before this success.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PriorRejections {
    pub count: u32,
    pub last_rhost: Option<String>,
    pub last_at: Option<i64>,
}

/// The result of [`Store::authenticate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A valid TOTP code for an unused time step; `step` is now `last_counter` on disk.
    Accepted { step: u64, prior: PriorRejections },
    /// A valid, unspent recovery code; it is now spent on disk.
    RecoveryAccepted {
        remaining: usize,
        prior: PriorRejections,
    },
    /// Wrong or malformed code. `locked_until` is set if this failure locked the user.
    Rejected {
        failures: u32,
        locked_until: Option<i64>,
    },
    /// A correct code of a time step at or before `last_counter`: counted as a failure.
    Replayed {
        failures: u32,
        locked_until: Option<i64>,
    },
    /// Locked before this attempt; the code was not looked at.
    Locked { until: i64 },
    /// No state file for this user.
    NotEnrolled,
}

/// A user's status as `status` and `list` show it. Never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub user: UserName,
    pub params: OtpParams,
    pub created: i64,
    pub counters: Counters,
    pub recovery_codes_left: usize,
}

impl Status {
    pub fn locked(&self, now: i64) -> bool {
        self.counters.locked_until.is_some_and(|t| t > now)
    }
}

/// Result of a whole-store operation for one user.
pub type PerUser<T> = (String, Result<T>);

/// The state directory with the host key loaded.
pub struct Store {
    dir: PathBuf,
    key: HostKey,
    /// Where the key came from; enrollment-side writes check it still holds this key.
    key_file: Option<PathBuf>,
}

fn counters_name(user: &UserName) -> String {
    format!(".{user}.counters")
}

/// A user's state loaded under the lock, with what is needed to write it back.
struct Locked {
    lock: UserLock,
    counters_path: PathBuf,
    slots: Slots,
}

impl Store {
    pub fn new(state_dir: impl Into<PathBuf>, key: HostKey) -> Self {
        Store {
            dir: state_dir.into(),
            key,
            key_file: None,
        }
    }

    /// Records that the key was read from `key_file`, so that enrollment-side writes refuse
    /// to seal under it once a rekey has replaced it ([`Store::open`] does this itself).
    pub fn with_key_file(mut self, key_file: &Path) -> Self {
        self.key_file = Some(key_file.to_owned());
        self
    }

    /// Loads the key file and binds it to `state_dir`.
    pub fn open(state_dir: &Path, key_file: &Path) -> Result<Self> {
        Ok(Self::new(state_dir, HostKey::load(key_file)?).with_key_file(key_file))
    }

    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    pub fn key(&self) -> &HostKey {
        &self.key
    }

    fn checked_dir(&self) -> Result<CheckedDir> {
        CheckedDir::open(&self.dir)?
            .ok_or_else(|| Error::io(&self.dir, std::io::ErrorKind::NotFound.into()))
    }

    /// Whether `user` has a state file (checked for safety, not decrypted).
    pub fn is_enrolled(&self, user: &UserName) -> Result<bool> {
        is_enrolled(&self.dir, user)
    }

    fn read_state(
        &self,
        dir: &CheckedDir,
        user: &UserName,
        keys: &[&HostKey],
    ) -> Result<Option<UserState>> {
        let Some(bytes) = dir.read_file(
            user.as_str(),
            MAX_STATE_FILE_LEN,
            ModePolicy::NotGroupOrWorldWritable,
        )?
        else {
            return Ok(None);
        };
        UserState::from_toml(&bytes, user, keys, &dir.join(user.as_str())).map(Some)
    }

    /// Loads the state and overlays the counters record of its generation.
    fn read_state_overlaid(
        &self,
        dir: &CheckedDir,
        user: &UserName,
        keys: &[&HostKey],
        slots: &Slots,
    ) -> Result<Option<UserState>> {
        self.read_state(dir, user, keys).map(|s| {
            s.map(|mut s| {
                if let Some(rec) = slots.current(s.generation) {
                    s.counters = rec.counters.clone();
                }
                s
            })
        })
    }

    /// The key now in the key file, if it is no longer the one this store holds: a rekey
    /// finished between [`Store::open`] and the transaction (the module reads the key before
    /// it prompts, and a person may take a minute to answer).
    fn replaced_key(&self) -> Result<Option<HostKey>> {
        let Some(path) = &self.key_file else {
            return Ok(None);
        };
        let current = HostKey::load(path)?;
        Ok((current.key_id() != self.key.key_id()).then_some(current))
    }

    /// Locks the user, then loads the state and overlays the current counters.
    /// `tolerate_bad_counters` is for enrollment, which supersedes them anyway.
    fn lock_and_load(
        &self,
        dir: &CheckedDir,
        user: &UserName,
        keys: &[&HostKey],
        tolerate_bad_counters: bool,
    ) -> Result<(Locked, Result<Option<UserState>>)> {
        let name = counters_name(user);
        let lock = lock::lock(dir, &name)?;
        let counters_path = dir.join(&name);
        let slots = match counters::read(&lock, &counters_path, user) {
            Ok(s) => s,
            Err(_) if tolerate_bad_counters => Slots::default(),
            Err(e) => return Err(e),
        };
        let state = self.read_state_overlaid(dir, user, keys, &slots);
        Ok((
            Locked {
                lock,
                counters_path,
                slots,
            },
            state,
        ))
    }

    /// Refuses to write a state file sealed under a key that a rekey has since replaced: a
    /// file sealed only under the old key would not open after the switch. Called under the
    /// user's lock, which rekey also takes for each file.
    fn check_key_current(&self) -> Result<()> {
        let Some(path) = &self.key_file else {
            return Ok(());
        };
        if HostKey::load(path)?.key_id() != self.key.key_id() {
            return Err(Error::Lock {
                path: path.clone(),
                why: "the host key was replaced (rekey) while this ran; run it again".into(),
            });
        }
        Ok(())
    }

    /// `in_force`: the generation of the state file in place, whose newest record is kept.
    fn write_counters(
        &self,
        l: &mut Locked,
        in_force: Option<u64>,
        state: &UserState,
        durable: bool,
    ) -> Result<()> {
        let file: &File = &l.lock;
        counters::write(
            file,
            &l.counters_path,
            &state.user,
            &mut l.slots,
            in_force,
            state.generation,
            &state.counters,
            durable,
        )
    }

    /// The login transaction: under the user's exclusive lock, load, check the lockout,
    /// verify `input` as a TOTP code (spaces ignored) or a recovery code, refuse replays,
    /// update the counters and write them. An accepted code's new `last_counter` (or a spent
    /// recovery code) is on stable storage before this returns `Accepted`.
    pub fn authenticate(&self, user: &UserName, input: &str, req: &AuthRequest) -> Result<Outcome> {
        let dir = self.checked_dir()?;
        // Cheap check first so that unknown users never get a counters file.
        if dir
            .open_file(user.as_str(), false, ModePolicy::NotGroupOrWorldWritable)?
            .is_none()
        {
            return Ok(Outcome::NotEnrolled);
        }
        let (mut l, mut state) = self.lock_and_load(&dir, user, &[&self.key], false)?;
        if matches!(state, Err(Error::Corrupt { .. })) {
            // Only a file that does not open under our key is worth a second read.
            if let Some(key) = self.replaced_key()? {
                state = self.read_state_overlaid(&dir, user, &[&key], &l.slots);
            }
        }
        let Some(mut state) = state? else {
            return Ok(Outcome::NotEnrolled);
        };
        let now = req.now;
        let c = &mut state.counters;
        if let Some(until) = c.locked_until {
            if until > now {
                return Ok(Outcome::Locked { until });
            }
            // The lock ran out: a fresh set of attempts.
            c.locked_until = None;
            c.failures = 0;
        }

        let code: String = input.chars().filter(|ch| *ch != ' ').collect();
        let code = zeroize::Zeroizing::new(code);
        let m = totp::verify(
            &state.secret,
            &state.params,
            &code,
            u64::try_from(now).unwrap_or(0),
            req.window,
            state.counters.last_counter,
        );
        let recovery_index = if m.fresh_step.is_none() && !m.replayed {
            recovery::normalize(input).and_then(|n| state.match_recovery_code(&n))
        } else {
            None
        };

        let c = &mut state.counters;
        let success = |c: &mut Counters| {
            let prior = PriorRejections {
                count: c.rejected_since_success,
                last_rhost: c.last_rejected_rhost.take(),
                last_at: c.last_rejected_at.take(),
            };
            c.failures = 0;
            c.locked_until = None;
            c.rejected_since_success = 0;
            c.last_used = Some(now);
            prior
        };
        let outcome = if let Some(step) = m.fresh_step {
            let prior = success(c);
            c.last_counter = Some(step);
            Outcome::Accepted { step, prior }
        } else if let Some(i) = recovery_index {
            let prior = success(c);
            c.recovery_used |= 1u64 << i;
            Outcome::RecoveryAccepted {
                remaining: 0,
                prior,
            }
        } else {
            c.failures = c.failures.saturating_add(1);
            c.rejected_since_success = c.rejected_since_success.saturating_add(1);
            c.last_rejected_rhost = req.rhost.map(counters::clean_rhost);
            c.last_rejected_at = Some(now);
            let locked_until = (req.max_failures > 0 && c.failures >= req.max_failures)
                .then(|| now.saturating_add(i64::try_from(req.lockout_secs).unwrap_or(i64::MAX)));
            c.locked_until = locked_until;
            let failures = c.failures;
            if m.replayed {
                Outcome::Replayed {
                    failures,
                    locked_until,
                }
            } else {
                Outcome::Rejected {
                    failures,
                    locked_until,
                }
            }
        };
        let durable = matches!(
            outcome,
            Outcome::Accepted { .. } | Outcome::RecoveryAccepted { .. }
        );
        // Failures need crash safety (the slot scheme), not a sync.
        self.write_counters(&mut l, Some(state.generation), &state, durable)?;
        Ok(match outcome {
            Outcome::RecoveryAccepted { prior, .. } => Outcome::RecoveryAccepted {
                remaining: state.recovery_codes_left(),
                prior,
            },
            o => o,
        })
    }

    /// Enrolls `user` with `secret`, refusing an existing enrollment unless `replace`.
    /// `last_counter` is the step of the confirmation code, so it cannot log in again.
    /// Returns the new recovery codes, to be shown once.
    #[allow(clippy::too_many_arguments)]
    pub fn enroll(
        &self,
        user: &UserName,
        secret: TotpSecret,
        params: OtpParams,
        last_counter: Option<u64>,
        recovery_codes: usize,
        replace: bool,
        now: i64,
    ) -> Result<Vec<RecoveryCode>> {
        let mut codes = Vec::new();
        self.enroll_with(user, secret, params, last_counter, replace, now, |s| {
            codes = s.new_recovery_codes(recovery_codes)?;
            Ok(())
        })?;
        Ok(codes)
    }

    /// Like [`Store::enroll`], keeping known recovery codes (a migration's scratch codes,
    /// in any form [`recovery::normalize`] accepts) instead of generating new ones.
    #[allow(clippy::too_many_arguments)]
    pub fn enroll_with_recovery_codes(
        &self,
        user: &UserName,
        secret: TotpSecret,
        params: OtpParams,
        last_counter: Option<u64>,
        recovery_codes: &[&str],
        replace: bool,
        now: i64,
    ) -> Result<()> {
        self.enroll_with(user, secret, params, last_counter, replace, now, |s| {
            s.set_recovery_codes(recovery_codes)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn enroll_with(
        &self,
        user: &UserName,
        secret: TotpSecret,
        params: OtpParams,
        last_counter: Option<u64>,
        replace: bool,
        now: i64,
        set_codes: impl FnOnce(&mut UserState) -> Result<()>,
    ) -> Result<()> {
        let dir = self.checked_dir()?;
        let (mut l, existing) = self.lock_and_load(&dir, user, &[&self.key], true)?;
        // An unreadable existing file is replaced only on request.
        let in_force = existing
            .as_ref()
            .ok()
            .and_then(|s| s.as_ref())
            .map(|s| s.generation);
        let exists = match existing {
            Ok(s) => s.is_some(),
            Err(e) if !replace => return Err(e),
            Err(_) => true,
        };
        if exists && !replace {
            return Err(Error::AlreadyEnrolled(user.to_string()));
        }
        self.check_key_current()?;
        let mut state = UserState::new(user.clone(), secret, params, now, last_counter, &self.key)?;
        set_codes(&mut state)?;
        // Counters first, under the new generation: until the state file names that
        // generation they are ignored, and afterwards the file already has its full length
        // and a valid record, so the first login is a plain overwrite of the other slot.
        self.write_counters(&mut l, in_force, &state, true)?;
        let text = state.serialize(&[&self.key])?;
        dir.write_atomic(user.as_str(), text.as_bytes())
    }

    /// Applies `change` to an enrolled user's state under the lock and rewrites the file.
    fn modify<T>(
        &self,
        user: &UserName,
        change: impl FnOnce(&mut UserState) -> Result<T>,
    ) -> Result<T> {
        let dir = self.checked_dir()?;
        let (_l, state) = self.lock_and_load(&dir, user, &[&self.key], false)?;
        let mut state = state?.ok_or_else(|| Error::NotEnrolled(user.to_string()))?;
        self.check_key_current()?;
        let out = change(&mut state)?;
        state.next_generation()?;
        let text = state.serialize(&[&self.key])?;
        dir.write_atomic(user.as_str(), text.as_bytes())?;
        Ok(out)
    }

    /// New recovery codes; the old ones stop working.
    pub fn regenerate_recovery_codes(
        &self,
        user: &UserName,
        count: usize,
    ) -> Result<Vec<RecoveryCode>> {
        self.modify(user, |s| s.new_recovery_codes(count))
    }

    /// Clears failures and the lock.
    pub fn unlock(&self, user: &UserName) -> Result<()> {
        self.modify(user, |s| {
            s.counters.failures = 0;
            s.counters.locked_until = None;
            Ok(())
        })
    }

    /// Removes the enrollment. Returns whether there was one.
    pub fn remove(&self, user: &UserName) -> Result<bool> {
        let dir = self.checked_dir()?;
        let name = counters_name(user);
        let _l = lock::lock(&dir, &name)?;
        let existed = dir
            .open_file(user.as_str(), false, ModePolicy::NotGroupOrWorldWritable)?
            .is_some();
        dir.remove(user.as_str())?;
        dir.remove(&name)?;
        Ok(existed)
    }

    /// The user's status, `None` if not enrolled. Decrypts to prove the file is usable.
    pub fn status(&self, user: &UserName) -> Result<Option<Status>> {
        let dir = self.checked_dir()?;
        if dir
            .open_file(user.as_str(), false, ModePolicy::NotGroupOrWorldWritable)?
            .is_none()
        {
            return Ok(None);
        }
        let (_l, state) = self.lock_and_load(&dir, user, &[&self.key], false)?;
        Ok(state?.map(|s| Status {
            recovery_codes_left: s.recovery_codes_left(),
            user: s.user.clone(),
            params: s.params,
            created: s.created,
            counters: s.counters.clone(),
        }))
    }

    /// Every enrolled user (file names that are valid user names), with its status or the
    /// error that makes it unusable.
    pub fn list(&self) -> Result<Vec<PerUser<Status>>> {
        let dir = self.checked_dir()?;
        let mut out = Vec::new();
        for name in dir.entries()? {
            let Ok(user) = UserName::parse(&name) else {
                continue;
            };
            let status = self
                .status(&user)
                .and_then(|s| s.ok_or_else(|| Error::NotEnrolled(name.clone())));
            if matches!(status, Err(Error::NotEnrolled(_))) {
                continue;
            }
            out.push((name, status));
        }
        Ok(out)
    }

    /// Rewrites one user's file sealed under `keys` (the first must open it).
    fn reseal(
        &self,
        dir: &CheckedDir,
        user: &UserName,
        open_with: &[&HostKey],
        seal_with: &[&HostKey],
    ) -> Result<()> {
        let (_l, state) = self.lock_and_load(dir, user, open_with, false)?;
        let Some(mut state) = state? else {
            return Ok(());
        };
        state.next_generation()?;
        let text = state.serialize(seal_with)?;
        dir.write_atomic(user.as_str(), text.as_bytes())
    }
}

/// Whether `user` has a state file in `state_dir`, without needing the host key (so that
/// `nullok` can let a never-enrolled user through on a host whose key is not set up yet).
/// A missing or unsafe state directory is an error, never "not enrolled".
pub fn is_enrolled(state_dir: &Path, user: &UserName) -> Result<bool> {
    let dir = CheckedDir::open(state_dir)?
        .ok_or_else(|| Error::io(state_dir, std::io::ErrorKind::NotFound.into()))?;
    Ok(dir
        .open_file(user.as_str(), false, ModePolicy::NotGroupOrWorldWritable)?
        .is_some())
}

/// Replaces the host key and re-encrypts every state file, with no moment at which a user
/// cannot log in, even if killed:
///
/// 1. the new key is written beside the old one as `<key_file>.new` (or a leftover one from
///    an interrupted run is reused);
/// 2. every state file is rewritten sealed under both keys;
/// 3. `<key_file>.new` is renamed over `<key_file>`;
/// 4. every state file is rewritten sealed under the new key only.
///
/// Before step 3 the module reads the old key and every file opens with it; after, it reads
/// the new key and every file opens with that. Returns each user with the outcome of step 4.
pub fn rekey(state_dir: &Path, key_file: &Path) -> Result<Vec<PerUser<()>>> {
    let old = HostKey::load(key_file)?;
    let new_path = PathBuf::from(format!("{}.new", key_file.display()));
    let new = match HostKey::load(&new_path) {
        Ok(k) => k,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let k = HostKey::generate()?;
            k.store(&new_path)?;
            k
        }
        Err(e) => return Err(e),
    };
    let store = Store::new(state_dir, old);
    let dir = store.checked_dir()?;
    let users: Vec<UserName> = dir
        .entries()?
        .into_iter()
        .filter_map(|n| UserName::parse(&n).ok())
        .collect();
    let both = [&store.key, &new];
    // Step 2: a file that fails here would be unreadable after the switch; stop before it.
    for user in &users {
        store.reseal(&dir, user, &both, &both)?;
    }
    // Step 3.
    let parent = key_file
        .parent()
        .ok_or_else(|| Error::Config("key file has no parent directory".into()))?;
    std::fs::rename(&new_path, key_file).map_err(|e| Error::io(key_file, e))?;
    CheckedDir::open(parent)?
        .ok_or_else(|| Error::io(parent, std::io::ErrorKind::NotFound.into()))?
        .sync()?;
    // Step 4, listing again: the old key still opens a file that an enrollment started
    // before the switch sealed under it alone (enrollment-side writes after it are refused).
    let users: Vec<UserName> = dir
        .entries()?
        .into_iter()
        .filter_map(|n| UserName::parse(&n).ok())
        .collect();
    Ok(users
        .iter()
        .map(|u| {
            (
                u.to_string(),
                store.reseal(&dir, u, &[&new, &store.key], &[&new]),
            )
        })
        .collect())
}
