//! [`Store`]: the files backend and the host key file together, for callers that want the
//! classic one-object view (tests, benchmarks). Every method is one of the operations of
//! [`crate::login`] over [`FilesBackend`] and [`FileKey`]; nothing here has rules of its
//! own. The state directory is opened per call.

use std::path::{Path, PathBuf};

use crate::backend::{Backend, KeySource};
use crate::crypto::HostKey;
use crate::error::Result;
use crate::files::{FileKey, FilesBackend};
use crate::login::{self, Enrollment, RecoveryCodes};
pub use crate::login::{PerUser, Status};
pub use crate::policy::{AuthRequest, Outcome, PriorRejections};
use crate::recovery::RecoveryCode;
use crate::totp::{OtpParams, TimeStep, TotpSecret};
use crate::user::UserName;

/// A state directory with a host key.
pub struct Store {
    dir: PathBuf,
    key: FileKey,
}

impl Store {
    /// A store over `state_dir` with `key`; enrollment-side writes do not check for a rekey
    /// unless [`Store::with_key_file`] names the file the key came from.
    pub fn new(state_dir: impl Into<PathBuf>, key: HostKey) -> Self {
        Store {
            dir: state_dir.into(),
            key: FileKey::unbound(key),
        }
    }

    /// Records that the key was read from `key_file`, so that enrollment-side writes refuse
    /// to seal under it once a rekey has replaced it ([`Store::open`] does this itself).
    pub fn with_key_file(self, key_file: &Path) -> Self {
        Store {
            dir: self.dir,
            key: self.key.bind(key_file),
        }
    }

    /// Loads the key file and binds it to `state_dir`.
    pub fn open(state_dir: &Path, key_file: &Path) -> Result<Self> {
        Ok(Store {
            dir: state_dir.to_owned(),
            key: FileKey::load(key_file)?,
        })
    }

    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    pub fn key(&self) -> &HostKey {
        self.key.key()
    }

    fn backend(&self) -> Result<FilesBackend> {
        FilesBackend::open(&self.dir)
    }

    /// Whether `user` has a state file (checked for safety, not decrypted).
    pub fn is_enrolled(&self, user: &UserName) -> Result<bool> {
        self.backend()?.is_enrolled(user)
    }

    /// [`login::authenticate`].
    pub fn authenticate(&self, user: &UserName, input: &str, req: &AuthRequest) -> Result<Outcome> {
        login::authenticate(&self.backend()?, &self.key, user, input, req)
    }

    /// [`login::enroll`] with an [`Enrollment`].
    pub fn enroll_with(&self, e: Enrollment) -> Result<Vec<RecoveryCode>> {
        login::enroll(&self.backend()?, &self.key, e)
    }

    /// [`login::enroll`] from positional values (kept for the benchmarks).
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
    ) -> Result<()> {
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
    ) -> Result<Vec<RecoveryCode>> {
        login::regenerate_recovery_codes(&self.backend()?, &self.key, user, count)
    }

    pub fn unlock(&self, user: &UserName) -> Result<()> {
        login::unlock(&self.backend()?, &self.key, user)
    }

    pub fn remove(&self, user: &UserName) -> Result<bool> {
        self.backend()?.remove(user)
    }

    pub fn status(&self, user: &UserName) -> Result<Option<Status>> {
        login::status(&self.backend()?, &self.key, user)
    }

    pub fn list(&self) -> Result<Vec<PerUser<Status>>> {
        login::list(&self.backend()?, &self.key)
    }
}

/// Whether `user` has a state file in `state_dir` ([`Backend::is_enrolled`] of a fresh
/// [`FilesBackend`]). Kept for bench/pam; new code holds a backend.
pub fn is_enrolled(state_dir: &Path, user: &UserName) -> Result<bool> {
    FilesBackend::open(state_dir)?.is_enrolled(user)
}

/// [`login::rekey`] of `state_dir` from `key_file`.
pub fn rekey(state_dir: &Path, key_file: &Path) -> Result<Vec<PerUser<()>>> {
    login::rekey(&FilesBackend::open(state_dir)?, &FileKey::load(key_file)?)
}
