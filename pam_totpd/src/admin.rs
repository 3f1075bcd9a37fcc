//! Administration requests, for `totp-enroll` (root only: [`proto::Request::root_only`],
//! checked by the caller of [`answer`]): enroll, status, unlock, remove, new recovery codes,
//! list. Each is one of `common::login`'s operations over this daemon's storage, so a fleet
//! host's CLI acts on the fleet's record. No secret is ever logged or sent back.

use common::login::{self, Enrollment, RecoveryCodes};
use common::{
    Algorithm, Config, Error, FileKey, FilesBackend, OtpParams, TimeStep, TotpSecret, UserName,
};
use proto::{NewCodes, Reply, Request, Status, Unavailable};

use crate::log::{log, Level};
use crate::store::{Failure, Storage};

/// The algorithm byte of `params` as sent ([`proto::HOTP`] set for an HOTP enrollment).
fn algorithm(params: &OtpParams) -> u8 {
    let a = match params.algorithm() {
        Algorithm::SHA1 => 0,
        Algorithm::SHA256 => 1,
        Algorithm::SHA512 => 2,
    };
    match params.kind() {
        common::OtpKind::Totp => a,
        common::OtpKind::Hotp => a | proto::HOTP,
    }
}

fn params(a: u8, digits: u8, period: u32) -> Option<OtpParams> {
    let alg = match a & !proto::HOTP {
        0 => Algorithm::SHA1,
        1 => Algorithm::SHA256,
        2 => Algorithm::SHA512,
        _ => return None,
    };
    if a & proto::HOTP != 0 {
        OtpParams::hotp(alg, digits).ok()
    } else {
        OtpParams::new(alg, digits, period).ok()
    }
}

/// The status as sent: never the secret.
pub fn status_reply(s: &common::Status) -> Status {
    let c = &s.counters;
    Status {
        algorithm: algorithm(&s.params),
        digits: s.params.digits(),
        period: s.params.period(),
        created: s.created,
        last_used: c.last_used,
        last_counter: c.last_counter,
        failures: c.failures,
        locked_until: c.locked_until,
        rejected_since_success: c.rejected_since_success,
        last_rejected_rhost: c.last_rejected_rhost.clone(),
        last_rejected_at: c.last_rejected_at,
        lockouts: c.lockouts,
        recovery_codes_left: u32::try_from(s.recovery_codes_left).unwrap_or(u32::MAX),
        devices: c
            .devices
            .iter()
            .map(|d| proto::DeviceInfo {
                since: d.since,
                rhost: d.rhost.clone(),
                key: d.key.clone(),
            })
            .collect(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Answers one administration request of a root caller. `who` names the caller for the log.
pub fn answer(config: &Config, storage: &Storage, req: Request, who: &str) -> Reply {
    let user = match req.account().map(UserName::parse) {
        None => None,
        Some(Ok(u)) => Some(u),
        Some(Err(e)) => {
            log(
                Level::Notice,
                &format!("invalid user name ({e}) from {who}"),
            );
            return Reply::BadRequest;
        }
    };
    let line = |what: &str| match &user {
        Some(u) => format!("{what} (user={u} {who})"),
        None => format!("{what} ({who})"),
    };
    let bad = |why: &str| {
        log(Level::Notice, &line(&format!("{why}: refused")));
        Reply::BadRequest
    };
    let result = match (req, &user) {
        (Request::Enroll(e), Some(user)) => {
            let Ok(secret) = TotpSecret::from_base32(&e.secret) else {
                return bad("enroll: secret is not a usable base32 secret");
            };
            let Some(params) = params(e.algorithm, e.digits, e.period) else {
                return bad("enroll: invalid algorithm, digits or period");
            };
            let recovery = match e.recovery {
                NewCodes::Generate(n) if usize::from(n) <= proto::MAX_CODES => {
                    RecoveryCodes::Generate(usize::from(n))
                }
                NewCodes::Generate(_) => return bad("enroll: too many recovery codes"),
                NewCodes::Keep(codes) => RecoveryCodes::Keep(codes),
            };
            let replace = e.replace;
            storage
                .admin(config, true, |b, k| {
                    login::enroll(
                        b,
                        k,
                        Enrollment {
                            user: user.clone(),
                            secret,
                            params,
                            last_counter: e.last_counter.map(TimeStep),
                            recovery,
                            replace,
                            now: now(),
                        },
                    )
                })
                .map(|codes| {
                    log(
                        Level::Notice,
                        &line(&format!(
                            "enrolled{}",
                            if replace { " (replace)" } else { "" }
                        )),
                    );
                    Reply::RecoveryCodes(codes.iter().map(|c| c.display()).collect())
                })
        }
        (Request::Status { .. }, Some(user)) => storage
            .admin(config, false, |b, k| login::status(b, k, user))
            .map(|s| match s {
                Some(s) => Reply::Status(status_reply(&s)),
                None => Reply::NotEnrolled,
            }),
        (Request::Unlock { .. }, Some(user)) => storage
            .admin(config, false, |b, k| login::unlock(b, k, user))
            .map(|()| {
                log(Level::Notice, &line("unlocked"));
                Reply::Done
            }),
        (Request::Remove { .. }, Some(user)) => storage
            .admin(config, false, |b, _| b.remove(user))
            .map(|existed| {
                if existed {
                    log(Level::Notice, &line("enrollment removed"));
                    Reply::Done
                } else {
                    Reply::NotEnrolled
                }
            }),
        (Request::NewRecoveryCodes { count, .. }, Some(user)) => {
            if usize::from(count) > proto::MAX_CODES {
                return bad("too many recovery codes");
            }
            storage
                .admin(config, false, |b, k| {
                    login::regenerate_recovery_codes(b, k, user, usize::from(count))
                })
                .map(|codes| {
                    log(Level::Notice, &line("new recovery codes"));
                    Reply::RecoveryCodes(codes.iter().map(|c| c.display()).collect())
                })
        }
        (Request::ListUsers { after }, None) => {
            storage
                .admin(config, false, |b, _| b.users())
                .map(|users| Reply::Users {
                    names: users
                        .into_iter()
                        .map(|u| u.as_str().to_owned())
                        .filter(|u| after.as_deref().is_none_or(|a| u.as_str() > a))
                        .collect(),
                    more: false,
                })
        }
        (
            Request::ImportUser {
                from_dir,
                from_key,
                replace,
                ..
            },
            Some(user),
        ) => {
            let from_dir = std::path::PathBuf::from(from_dir);
            let from_key = std::path::PathBuf::from(from_key);
            if !from_dir.is_absolute() || !from_key.is_absolute() {
                return bad("import: paths must be absolute");
            }
            FilesBackend::open(&from_dir)
                .map_err(Failure::State)
                .and_then(|b| Ok((b, FileKey::load(&from_key).map_err(Failure::Key)?)))
                .and_then(|(from, from_keys)| {
                    storage.admin(config, true, |to, to_keys| {
                        match login::copy_enrollment(&from, &from_keys, to, to_keys, user, replace)?
                        {
                            None => Ok(None),
                            Some(_) => login::status(to, to_keys, user),
                        }
                    })
                })
                .map(|s| match s {
                    Some(s) => {
                        log(
                            Level::Notice,
                            &line(&format!("imported from {}", from_dir.display())),
                        );
                        Reply::Status(status_reply(&s))
                    }
                    None => Reply::NotEnrolled,
                })
        }
        (Request::ForgetDevices { .. }, Some(user)) => storage
            .admin(config, false, |b, k| login::forget_devices(b, k, user))
            .map(|n| {
                log(
                    Level::Notice,
                    &line(&format!("forgot {n} remembered device(s)")),
                );
                Reply::Forgotten {
                    count: u32::try_from(n).unwrap_or(u32::MAX),
                }
            }),
        (Request::FinishRotation, None) => {
            if !matches!(storage, Storage::Fleet(_)) {
                // A single host's rekey is `totp-enroll rekey` on its own files.
                return bad("key rotation: only for backend = \"etcd\"");
            }
            storage
                .admin(config, false, |b, k| login::finish_rotation(b, k))
                .map(|results| {
                    let mut rewritten = 0u32;
                    let mut unchanged = 0u32;
                    let mut names = Vec::new();
                    for (u, r) in results {
                        match r {
                            Ok(true) => rewritten += 1,
                            Ok(false) => unchanged += 1,
                            Err(e) => {
                                log(
                                    Level::Err,
                                    &format!("key rotation: user={u}: {e}; left as it was ({who})"),
                                );
                                names.push(u.as_str().to_owned());
                            }
                        }
                    }
                    log(
                        Level::Notice,
                        &line(&format!(
                            "key rotation: {rewritten} state(s) moved to the next key, \
                             {unchanged} already there, {} failed",
                            names.len()
                        )),
                    );
                    Reply::Rotated {
                        rewritten,
                        unchanged,
                        failed: u32::try_from(names.len()).unwrap_or(u32::MAX),
                        names,
                    }
                })
        }
        _ => return Reply::BadRequest,
    };
    match result {
        Ok(reply) => reply,
        Err(Failure::State(Error::AlreadyEnrolled(_)))
        | Err(Failure::Backend(Error::AlreadyEnrolled(_))) => Reply::AlreadyEnrolled,
        Err(Failure::State(Error::NotEnrolled(_)))
        | Err(Failure::Backend(Error::NotEnrolled(_))) => Reply::NotEnrolled,
        Err(Failure::State(e @ (Error::InvalidInput(_) | Error::InvalidUserName(_)))) => {
            log(Level::Notice, &line(&format!("{e}: refused")));
            Reply::BadRequest
        }
        Err(f) => {
            log(Level::Err, &line(&format!("{f}; not done")));
            Reply::Unavailable(match f {
                Failure::Key(_) | Failure::State(Error::KeyReplaced) => Unavailable::Key,
                Failure::Backend(Error::NotPermitted(_)) => Unavailable::NotPermitted,
                Failure::State(_) => Unavailable::State,
                Failure::Backend(_) => Unavailable::Backend,
            })
        }
    }
}
