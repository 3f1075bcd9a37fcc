//! [`Store`]: a state directory and a host key together, the one-object view that the tests
//! and benchmarks were written against. Test support only, not part of `common`'s API: every
//! method is one operation of [`common::login`] over [`FilesBackend`] and a key, with no
//! rules of its own. The state directory is opened per call, as a new login opens it.
//!
//! One source, included with `#[path]` by `common`'s integration tests and benchmarks and by
//! the `integration-tests` crate (a dev-dependency of `common` on a crate that depends on
//! it would build two copies of `common`'s types).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use common::login::{self, Enrollment, PerUser, RecoveryCodes, Status};
use common::recovery::RecoveryCode;
use common::{
    AuthRequest, Backend, FileKey, FilesBackend, HostKey, KeySource, OtpParams, Outcome, TimeStep,
    TotpSecret, UserName,
};

/// Where the store's key came from.
enum Keys {
    /// Read from a key file: a rekey that replaced it is seen.
    File(FileKey),
    /// A key in hand, tied to no file (never reported replaced).
    InHand(HostKey),
}

impl KeySource for Keys {
    fn key(&self) -> &HostKey {
        match self {
            Keys::File(k) => k.key(),
            Keys::InHand(k) => k,
        }
    }

    fn replaced(&self) -> common::Result<Option<HostKey>> {
        match self {
            Keys::File(k) => k.replaced(),
            Keys::InHand(_) => Ok(None),
        }
    }
}

/// A state directory with a host key.
pub struct Store {
    dir: PathBuf,
    keys: Keys,
}

impl Store {
    /// A store over `state_dir` with `key` in hand: enrollment-side writes do not check for
    /// a rekey.
    pub fn new(state_dir: impl Into<PathBuf>, key: HostKey) -> Self {
        Store {
            dir: state_dir.into(),
            keys: Keys::InHand(key),
        }
    }

    /// Loads the key file (a rekey that replaces it later is seen).
    pub fn open(state_dir: &Path, key_file: &Path) -> common::Result<Self> {
        Ok(Store {
            dir: state_dir.to_owned(),
            keys: Keys::File(FileKey::load(key_file)?),
        })
    }

    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    pub fn key(&self) -> &HostKey {
        self.keys.key()
    }

    fn backend(&self) -> common::Result<FilesBackend> {
        FilesBackend::open(&self.dir)
    }

    /// Whether `user` has a state file (checked for safety, not decrypted).
    pub fn is_enrolled(&self, user: &UserName) -> common::Result<bool> {
        self.backend()?.is_enrolled(user)
    }

    /// [`login::authenticate`].
    pub fn authenticate(
        &self,
        user: &UserName,
        input: &str,
        req: &AuthRequest,
    ) -> common::Result<Outcome> {
        login::authenticate(&self.backend()?, &self.keys, user, input, req)
    }

    /// [`login::enroll`] with an [`Enrollment`].
    pub fn enroll_with(&self, e: Enrollment) -> common::Result<Vec<RecoveryCode>> {
        login::enroll(&self.backend()?, &self.keys, e)
    }

    /// [`login::enroll`] from positional values.
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
    ) -> common::Result<Vec<RecoveryCode>> {
        self.enroll_with(Enrollment {
            user: user.clone(),
            secret,
            params,
            last_counter: last_counter.map(TimeStep),
            recovery: RecoveryCodes::Generate(recovery_codes),
            replace,
            now,
        })
    }

    /// Like [`Store::enroll`], keeping known recovery codes.
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
    ) -> common::Result<()> {
        self.enroll_with(Enrollment {
            user: user.clone(),
            secret,
            params,
            last_counter: last_counter.map(TimeStep),
            recovery: RecoveryCodes::Keep(
                recovery_codes
                    .iter()
                    .map(|c| zeroize::Zeroizing::new((*c).to_owned()))
                    .collect(),
            ),
            replace,
            now,
        })
        .map(|_| ())
    }

    pub fn regenerate_recovery_codes(
        &self,
        user: &UserName,
        count: usize,
    ) -> common::Result<Vec<RecoveryCode>> {
        login::regenerate_recovery_codes(&self.backend()?, &self.keys, user, count)
    }

    pub fn unlock(&self, user: &UserName) -> common::Result<()> {
        login::unlock(&self.backend()?, &self.keys, user)
    }

    pub fn remove(&self, user: &UserName) -> common::Result<bool> {
        self.backend()?.remove(user)
    }

    pub fn status(&self, user: &UserName) -> common::Result<Option<Status>> {
        login::status(&self.backend()?, &self.keys, user)
    }

    pub fn list(&self) -> common::Result<Vec<PerUser<Status>>> {
        login::list(&self.backend()?, &self.keys)
    }
}

/// Whether `user` has a state file in `state_dir` (a fresh [`FilesBackend`]).
pub fn is_enrolled(state_dir: &Path, user: &UserName) -> common::Result<bool> {
    FilesBackend::open(state_dir)?.is_enrolled(user)
}

/// [`login::rekey`] of `state_dir` from `key_file`.
pub fn rekey(state_dir: &Path, key_file: &Path) -> common::Result<Vec<PerUser<()>>> {
    login::rekey(&FilesBackend::open(state_dir)?, &FileKey::load(key_file)?)
}
