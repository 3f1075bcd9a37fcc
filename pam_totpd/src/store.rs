//! The daemon's only door into `common`'s storage: every call the daemon makes into the
//! store goes through these two functions, over the backend seam (`common::Backend`, the
//! shared `common::login::authenticate`), so the login policy is the module's own.

use common::{
    AuthRequest, Backend, Config, Device, DeviceIdentity, Error, FileKey, FilesBackend, Outcome,
    UserName,
};

/// Why the store could not answer.
#[derive(Debug)]
pub enum Failure {
    /// The host key is missing, unreadable or unsafe.
    Key(Error),
    /// The state is missing, unreadable, corrupt or unsafe.
    State(Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Key(e) => write!(f, "host key: {e}"),
            Failure::State(e) => write!(f, "state: {e}"),
        }
    }
}

/// Whether `user` is enrolled (a state file, checked for safety, not decrypted).
pub fn is_enrolled(config: &Config, user: &UserName) -> Result<bool, Failure> {
    FilesBackend::open(&config.state_dir)
        .and_then(|b| b.is_enrolled(user))
        .map_err(Failure::State)
}

/// One login attempt under the daemon's own policy (`config`): the login transaction of
/// the module, counted towards the same lock as every other login. `device`: the remote
/// device a success is remembered for (only a root caller's).
pub fn verify(
    config: &Config,
    user: &UserName,
    code: &str,
    rhost: Option<&str>,
    device: Option<&DeviceIdentity>,
    now: i64,
) -> Result<Outcome, Failure> {
    // The key file is read for each attempt, as the module does: a rekey is then picked up
    // at once, with no restart and no cached key to go stale.
    let backend = FilesBackend::open(&config.state_dir).map_err(Failure::State)?;
    let keys = FileKey::load(&config.key_file).map_err(Failure::Key)?;
    let req = AuthRequest::from_config(config, now, rhost).with_device(device);
    common::login::authenticate(&backend, &keys, user, code, &req).map_err(Failure::State)
}

/// Whether `device` may log in as `user` without a code now, under the daemon's
/// `grace_secs`: the remembered device, if so.
pub fn grace(
    config: &Config,
    user: &UserName,
    device: &DeviceIdentity,
    now: i64,
) -> Result<Option<Device>, Failure> {
    if config.grace_secs == 0 {
        return Ok(None);
    }
    let backend = FilesBackend::open(&config.state_dir).map_err(Failure::State)?;
    let keys = FileKey::load(&config.key_file).map_err(Failure::Key)?;
    let req = AuthRequest::from_config(config, now, Some(device.rhost())).with_device(Some(device));
    common::login::grace(&backend, &keys, user, &req).map_err(Failure::State)
}
