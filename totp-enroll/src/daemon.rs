//! `totp-enroll` on a fleet (`backend = "etcd"`): every read and write of enrollments goes to
//! the local `pam_totpd`, which holds the fleet store's connections; this binary, installed
//! setuid root, never opens a network connection. Each call connects with root's effective
//! uid (the caller runs it inside `Ctx::root`), which is what the daemon checks: the rules of
//! who may act on which account are this CLI's, applied before it asks, as for local files.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use common::counters::Counters;
use common::{Algorithm, Error, OtpParams, Outcome, PriorRejections, UserName};
use proto::{read_frame, NewCodes, Reply, Request};
use zeroize::Zeroizing;

/// How long `rekey` waits for the daemon to move a whole fleet to the next key (two
/// round trips to the cluster per enrollment, about 4 ms each under load).
pub const ROTATION_TIMEOUT: Duration = Duration::from_secs(600);

/// What a fleet's key rotation did on the daemon's side.
pub struct Rotation {
    pub rewritten: u32,
    pub unchanged: u32,
    /// States that could not be moved (each with its reason in the daemon's log).
    pub failed: u32,
    /// Their names, as many as one reply carries.
    pub names: Vec<String>,
}

/// The daemon at `socket`, each exchange bounded by `timeout`.
pub struct Daemon {
    pub socket: PathBuf,
    pub timeout: Duration,
}

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

impl Daemon {
    fn unavailable(&self, what: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!("pam_totpd at {}: {what}", self.socket.display()))
    }

    fn call(&self, req: &Request) -> common::Result<Reply> {
        self.call_within(req, self.timeout)
    }

    fn call_within(&self, req: &Request, timeout: Duration) -> common::Result<Reply> {
        let s = UnixStream::connect(&self.socket).map_err(|e| self.unavailable(e))?;
        s.set_read_timeout(Some(timeout))
            .and_then(|()| s.set_write_timeout(Some(timeout)))
            .map_err(|e| self.unavailable(e))?;
        (&s).write_all(&req.encode())
            .map_err(|e| self.unavailable(format!("sending: {e}")))?;
        let body = read_frame(&mut &s).map_err(|e| self.unavailable(format!("reading: {e}")))?;
        let reply = Reply::decode(&body).map_err(|e| self.unavailable(e))?;
        match reply {
            Reply::Unavailable(proto::Unavailable::NotPermitted) => {
                Err(Error::NotPermitted(format!(
                    "pam_totpd at {}: {}",
                    self.socket.display(),
                    proto::Unavailable::NotPermitted.as_str()
                )))
            }
            Reply::Unavailable(why) => Err(self.unavailable(why.as_str())),
            Reply::Denied => {
                Err(self.unavailable("denied (is totp-enroll installed setuid root?)"))
            }
            Reply::BadRequest => Err(Error::InvalidInput(format!(
                "pam_totpd at {} refused the request as invalid",
                self.socket.display()
            ))),
            r => Ok(r),
        }
    }

    fn unexpected(&self, r: Reply) -> Error {
        self.unavailable(format!("unexpected reply {r:?}"))
    }

    pub fn is_enrolled(&self, user: &UserName) -> common::Result<bool> {
        match self.call(&Request::IsEnrolled {
            user: user.to_string(),
        })? {
            Reply::Enrolled => Ok(true),
            Reply::NotEnrolled => Ok(false),
            r => Err(self.unexpected(r)),
        }
    }

    /// A login attempt under the daemon's policy (to confirm a current code).
    pub fn authenticate(&self, user: &UserName, input: &str) -> common::Result<Outcome> {
        let prior = |p: proto::Prior| PriorRejections {
            count: p.count,
            last_rhost: p.last_rhost,
            last_at: p.last_at,
        };
        Ok(
            match self.call(&Request::Verify(proto::Verify {
                user: user.to_string(),
                code: Zeroizing::new(input.to_owned()),
                rhost: None,
                key: None,
                service: "totp-enroll".into(),
            }))? {
                Reply::Accepted { step, prior: p } => Outcome::Accepted {
                    step: common::TimeStep(step),
                    prior: prior(p),
                },
                Reply::RecoveryAccepted {
                    remaining,
                    prior: p,
                } => Outcome::RecoveryAccepted {
                    remaining: remaining as usize,
                    prior: prior(p),
                },
                Reply::Rejected {
                    failures,
                    locked_until,
                } => Outcome::Rejected {
                    failures,
                    locked_until,
                },
                Reply::Replayed {
                    failures,
                    locked_until,
                } => Outcome::Replayed {
                    failures,
                    locked_until,
                },
                Reply::Locked { until } => Outcome::Locked { until },
                Reply::NotEnrolled => Outcome::NotEnrolled,
                r => return Err(self.unexpected(r)),
            },
        )
    }

    pub fn enroll(&self, e: common::Enrollment) -> common::Result<Vec<Zeroizing<String>>> {
        let recovery = match e.recovery {
            common::RecoveryCodes::Generate(n) => NewCodes::Generate(
                u8::try_from(n)
                    .ok()
                    .filter(|&n| usize::from(n) <= proto::MAX_CODES)
                    .ok_or_else(|| Error::InvalidInput("too many recovery codes".into()))?,
            ),
            common::RecoveryCodes::Keep(codes) => {
                let codes: Vec<Zeroizing<String>> = codes
                    .iter()
                    .map(|c| {
                        common::recovery::normalize(c)
                            .ok_or_else(|| Error::InvalidInput("unusable recovery code".into()))
                    })
                    .collect::<common::Result<_>>()?;
                if codes.len() > proto::MAX_KEEP
                    || codes.iter().any(|c| c.len() > proto::MAX_CODE_FIELD)
                {
                    return Err(Error::InvalidInput(format!(
                        "a fleet enrollment keeps at most {} recovery codes of at most {} \
                         characters",
                        proto::MAX_KEEP,
                        proto::MAX_CODE_FIELD
                    )));
                }
                NewCodes::Keep(codes)
            }
        };
        let req = Request::Enroll(proto::Enroll {
            user: e.user.to_string(),
            secret: e.secret.to_base32(),
            algorithm: algorithm(&e.params),
            digits: e.params.digits(),
            period: e.params.period(),
            last_counter: e.last_counter.map(|s| s.0),
            recovery,
            replace: e.replace,
        });
        match self.call(&req)? {
            Reply::RecoveryCodes(codes) => Ok(codes),
            Reply::Done => Ok(Vec::new()),
            Reply::AlreadyEnrolled => Err(Error::AlreadyEnrolled(e.user)),
            r => Err(self.unexpected(r)),
        }
    }

    pub fn status(&self, user: &UserName) -> common::Result<Option<common::Status>> {
        self.status_of(
            user,
            &Request::Status {
                user: user.to_string(),
            },
        )
    }

    /// The daemon copies the enrollment (it runs as root on this host and reads `from_dir`
    /// itself); the paths must fit a string field.
    pub fn import_user(
        &self,
        from_dir: &std::path::Path,
        from_key: &std::path::Path,
        user: &UserName,
        replace: bool,
    ) -> common::Result<Option<common::Status>> {
        let path = |p: &std::path::Path| {
            p.to_str()
                .filter(|s| s.len() <= proto::MAX_STR_LEN)
                .map(str::to_owned)
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "{}: path must be UTF-8 and at most {} bytes",
                        p.display(),
                        proto::MAX_STR_LEN
                    ))
                })
        };
        let req = Request::ImportUser {
            user: user.to_string(),
            from_dir: path(from_dir)?,
            from_key: path(from_key)?,
            replace,
        };
        self.status_of(user, &req)
    }

    fn status_of(&self, user: &UserName, req: &Request) -> common::Result<Option<common::Status>> {
        let s = match self.call(req)? {
            Reply::Status(s) => s,
            Reply::NotEnrolled => return Ok(None),
            Reply::AlreadyEnrolled => return Err(Error::AlreadyEnrolled(user.clone())),
            r => return Err(self.unexpected(r)),
        };
        let alg = match s.algorithm & !proto::HOTP {
            0 => Algorithm::SHA1,
            1 => Algorithm::SHA256,
            2 => Algorithm::SHA512,
            a => return Err(self.unavailable(format!("unknown algorithm {a}"))),
        };
        let params = if s.algorithm & proto::HOTP != 0 {
            OtpParams::hotp(alg, s.digits)?
        } else {
            OtpParams::new(alg, s.digits, s.period)?
        };
        Ok(Some(common::Status {
            user: user.clone(),
            params,
            created: s.created,
            counters: Counters {
                last_used: s.last_used,
                last_counter: s.last_counter,
                failures: s.failures,
                locked_until: s.locked_until,
                rejected_since_success: s.rejected_since_success,
                last_rejected_rhost: s.last_rejected_rhost,
                last_rejected_at: s.last_rejected_at,
                recovery_used: 0,
                lockouts: s.lockouts,
                devices: s
                    .devices
                    .into_iter()
                    .map(|d| common::Device {
                        // Shown, never matched: the keyed hash stays in the store.
                        id: [0; 16],
                        since: d.since,
                        rhost: d.rhost,
                        key: d.key,
                    })
                    .collect(),
            },
            recovery_codes_left: s.recovery_codes_left as usize,
        }))
    }

    pub fn remove(&self, user: &UserName) -> common::Result<bool> {
        match self.call(&Request::Remove {
            user: user.to_string(),
        })? {
            Reply::Done => Ok(true),
            Reply::NotEnrolled => Ok(false),
            r => Err(self.unexpected(r)),
        }
    }

    pub fn regenerate_recovery_codes(
        &self,
        user: &UserName,
        count: usize,
    ) -> common::Result<Vec<Zeroizing<String>>> {
        let count = u8::try_from(count)
            .map_err(|_| Error::InvalidInput("too many recovery codes".into()))?;
        match self.call(&Request::NewRecoveryCodes {
            user: user.to_string(),
            count,
        })? {
            Reply::RecoveryCodes(codes) => Ok(codes),
            Reply::NotEnrolled => Err(Error::NotEnrolled(user.clone())),
            r => Err(self.unexpected(r)),
        }
    }

    pub fn unlock(&self, user: &UserName) -> common::Result<()> {
        match self.call(&Request::Unlock {
            user: user.to_string(),
        })? {
            Reply::Done => Ok(()),
            Reply::NotEnrolled => Err(Error::NotEnrolled(user.clone())),
            r => Err(self.unexpected(r)),
        }
    }

    pub fn forget_devices(&self, user: &UserName) -> common::Result<usize> {
        match self.call(&Request::ForgetDevices {
            user: user.to_string(),
        })? {
            Reply::Forgotten { count } => Ok(count as usize),
            Reply::NotEnrolled => Err(Error::NotEnrolled(user.clone())),
            r => Err(self.unexpected(r)),
        }
    }

    /// Moves every state of the fleet to the next key the daemon holds: see
    /// `common::login::finish_rotation`. One request for the whole fleet, so it may take
    /// far longer than a login: waited for up to [`ROTATION_TIMEOUT`].
    pub fn finish_rotation(&self) -> common::Result<Rotation> {
        match self.call_within(&Request::FinishRotation, ROTATION_TIMEOUT)? {
            Reply::Rotated {
                rewritten,
                unchanged,
                failed,
                names,
            } => Ok(Rotation {
                rewritten,
                unchanged,
                failed,
                names,
            }),
            r => Err(self.unexpected(r)),
        }
    }

    /// Every enrolled user (asked page by page) with its status.
    pub fn list(&self) -> common::Result<Vec<common::PerUser<common::Status>>> {
        let mut names = Vec::new();
        let mut after = None;
        loop {
            match self.call(&Request::ListUsers { after })? {
                Reply::Users { names: page, more } => {
                    after = page.last().cloned();
                    names.extend(page);
                    if !more || after.is_none() {
                        break;
                    }
                }
                r => return Err(self.unexpected(r)),
            }
        }
        let mut out = Vec::new();
        for n in names {
            let Ok(user) = UserName::parse(&n) else {
                continue;
            };
            match self.status(&user) {
                Ok(None) => {}
                Ok(Some(s)) => out.push((user, Ok(s))),
                Err(e) => out.push((user, Err(e))),
            }
        }
        Ok(out)
    }
}
