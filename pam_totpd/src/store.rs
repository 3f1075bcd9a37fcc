//! The daemon's only door into `common`'s storage: every call the daemon makes into the
//! store goes through these two functions, over the backend seam (`common::Backend`, the
//! shared `common::login::authenticate`), so the login policy is the module's own.
//!
//! With `backend = "etcd"` the backend is the fleet store ([`EtcdBackend`]), and each request
//! gets one deadline, `[etcd] timeout_ms` from its start, for all its round trips to the cluster
//! (the load, the compare-and-swap and every retry): past it the request fails closed.

use std::time::Instant;

use common::{
    AuthRequest, Backend, Config, Device, DeviceIdentity, Error, FileKey, FilesBackend, Outcome,
    UserName,
};
use pam_totp_etcd::EtcdBackend;

/// Where this daemon's enrollments live.
pub enum Storage {
    /// The state directory of the config (opened for each request).
    Files,
    /// The fleet store.
    Fleet(EtcdBackend),
}

/// Why the store could not answer.
#[derive(Debug)]
pub enum Failure {
    /// The host key is missing, unreadable or unsafe.
    Key(Error),
    /// The state is missing, unreadable, corrupt or unsafe.
    State(Error),
    /// The fleet store did not answer in time, refused, or cannot tell whether a write
    /// applied.
    Backend(Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Key(e) => write!(f, "host key: {e}"),
            Failure::State(e) => write!(f, "state: {e}"),
            Failure::Backend(e) => write!(f, "fleet store: {e}"),
        }
    }
}

/// An error of the fleet store's operations, by what failed.
fn fleet_failure(e: Error) -> Failure {
    match e {
        Error::Unavailable(_)
        | Error::NotPermitted(_)
        | Error::Contention(_)
        | Error::Config(_) => Failure::Backend(e),
        e => Failure::State(e),
    }
}

impl Storage {
    /// The key for a login: the host key file; on a fleet also the next key while a
    /// rotation runs (`<key_file>.new`, handed to every host first:
    /// `common::login::finish_rotation`).
    fn keys(&self, config: &Config) -> Result<FileKey, Failure> {
        match self {
            Storage::Files => FileKey::load(&config.key_file),
            Storage::Fleet(_) => FileKey::load_rotating(&config.key_file),
        }
        .map_err(Failure::Key)
    }

    /// Runs an enrollment-side operation over this storage with the key of `key_file`. With
    /// `create` (an enrollment) and the files backend, a missing state directory and host key
    /// are created, as `totp-enroll` run as root does; a fleet key is never created here (a
    /// new random key on one host would seal what no other host can open).
    pub fn admin<T>(
        &self,
        config: &Config,
        create: bool,
        f: impl FnOnce(&dyn Backend, &FileKey) -> common::Result<T>,
    ) -> Result<T, Failure> {
        match self {
            Storage::Files => {
                let (backend, keys) = if create {
                    let b = FilesBackend::create(&config.state_dir).map_err(Failure::State)?;
                    let (k, _) = FileKey::load_or_create(&config.key_file).map_err(Failure::Key)?;
                    (b, k)
                } else {
                    let b = FilesBackend::open(&config.state_dir).map_err(Failure::State)?;
                    (b, FileKey::load(&config.key_file).map_err(Failure::Key)?)
                };
                f(&backend, &keys).map_err(Failure::State)
            }
            Storage::Fleet(fleet) => {
                let keys = self.keys(config)?;
                f(fleet, &keys).map_err(fleet_failure)
            }
        }
    }

    /// Whether `user` is enrolled (a state, checked for safety, not decrypted).
    pub fn is_enrolled(&self, config: &Config, user: &UserName) -> Result<bool, Failure> {
        match self {
            Storage::Files => FilesBackend::open(&config.state_dir)
                .and_then(|b| b.is_enrolled(user))
                .map_err(Failure::State),
            Storage::Fleet(f) => f
                .with_deadline(Instant::now() + f.timeout())
                .is_enrolled(user)
                .map_err(fleet_failure),
        }
    }

    /// One login attempt under the daemon's own policy (`config`): the login transaction of
    /// the module, counted towards the same lock as every other login (of the fleet, with
    /// the fleet store). `device`: the remote device a success is remembered for (only a
    /// root caller's).
    pub fn verify(
        &self,
        config: &Config,
        user: &UserName,
        code: &str,
        rhost: Option<&str>,
        device: Option<&DeviceIdentity>,
        now: i64,
    ) -> Result<Outcome, Failure> {
        let deadline = match self {
            Storage::Fleet(f) => Some(Instant::now() + f.timeout()),
            Storage::Files => None,
        };
        // The key file is read for each attempt, as the module does: a rekey is then picked
        // up at once, with no restart and no cached key to go stale.
        let keys = self.keys(config)?;
        let req = AuthRequest::from_config(config, now, rhost).with_device(device);
        match (self, deadline) {
            (Storage::Fleet(f), Some(d)) => {
                common::login::authenticate(&f.with_deadline(d), &keys, user, code, &req)
                    .map_err(fleet_failure)
            }
            _ => {
                let backend = FilesBackend::open(&config.state_dir).map_err(Failure::State)?;
                common::login::authenticate(&backend, &keys, user, code, &req)
                    .map_err(Failure::State)
            }
        }
    }

    /// Whether `device` may log in as `user` without a code now, under the daemon's
    /// `grace_secs`: the remembered device, if so.
    pub fn grace(
        &self,
        config: &Config,
        user: &UserName,
        device: &DeviceIdentity,
        now: i64,
    ) -> Result<Option<Device>, Failure> {
        if config.grace_secs == 0 {
            return Ok(None);
        }
        let keys = self.keys(config)?;
        let req =
            AuthRequest::from_config(config, now, Some(device.rhost())).with_device(Some(device));
        match self {
            Storage::Fleet(f) => {
                let fleet = f.with_deadline(Instant::now() + f.timeout());
                common::login::grace(&fleet, &keys, user, &req).map_err(fleet_failure)
            }
            Storage::Files => {
                let backend = FilesBackend::open(&config.state_dir).map_err(Failure::State)?;
                common::login::grace(&backend, &keys, user, &req).map_err(Failure::State)
            }
        }
    }
}
