//! The decisions of `pam_sm_authenticate`, in SPEC.md's order: options, user, enrollment,
//! host key, grace (`grace_secs`), prompt, transaction, result. Every path that is not a
//! success, a grace login or a `nullok` pass ends in an error code: nothing here can turn
//! an error into PAM_SUCCESS or PAM_IGNORE.
//!
//! Where SPEC.md is silent:
//! - the failure that reaches `max_failures` was a wrong code: PAM_AUTH_ERR, with the
//!   "locked until" message; only attempts made while locked get PAM_MAXTRIES;
//! - a user who is not enrolled, or whose key is missing, is not prompted (except with
//!   `forward_pass` under `nullok`, whose answer is the next module's password); a locked
//!   user is (the lock is known only inside the transaction, and the answer is not looked
//!   at);
//! - `forward_pass`: the password goes on as PAM_AUTHTOK whatever the code's fate (the
//!   stack decides); recovery codes need two prompts; through the daemon the code has the
//!   configuration's `digits`; no grace login (the one prompt also carries the password);
//! - `grace_secs`: a locked user gets no grace; the grace runs from the accepted code, a
//!   grace login does not extend it;
//! - a reply that is not UTF-8 or is longer than 64 bytes is a wrong code (counted);
//! - a clock before 1970 fails closed with PAM_AUTHINFO_UNAVAIL;
//! - PAM_SILENT suppresses the messages to the user, never a decision or a log line;
//! - `pam_get_user` errors: conversation trouble is PAM_CONV_ERR, anything else an error;
//! - a name that is not enrolled is looked up through NSS (getpwnam): if the passwd entry
//!   found has another name (case-insensitive or aliasing directories: SSSD, LDAP, AD) and
//!   that name is enrolled, it is the one checked. A name NSS does not know, or whose entry
//!   has the same name, stays "not enrolled" (`nullok` applies). An NSS lookup that fails
//!   (directory unreachable) is PAM_AUTHINFO_UNAVAIL: it might have named an enrolled user.
//!   PAM_USER is left as the application gave it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::UNIX_EPOCH;

use common::{
    AuthRequest, Backend, Config, DeviceIdentity, Error, FileKey, FilesBackend, KeySource, Outcome,
    PriorRejections, UserName,
};
use pamsm::PamError;

use crate::handle::{ConvError, Handle, Level, Notice};
use crate::text;

/// Longest reply looked at. Codes and recovery codes are far shorter; anything longer is a
/// wrong code and is not worth scanning.
const MAX_REPLY_LEN: usize = 64;

/// Runs `f`, turning a panic into PAM_SYSTEM_ERR: a panic must never unwind into (and
/// abort) the host process, nor be mistaken for a decision.
pub fn guard(f: impl FnOnce() -> PamError) -> PamError {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(PamError::SYSTEM_ERR)
}

/// Where the module's configuration, state and key come from. The module uses [`Files`];
/// the decision-logic tests inject an in-memory store and config texts, so they need
/// neither root nor a file system.
pub trait Storage {
    /// The config file at `path` ([`common::config::load_file`]: root's, checked; none
    /// gives the defaults).
    fn config_file(&self, path: &Path) -> common::Result<common::config::Loaded>;
    /// The state store for this login (opened once, dropped at its end).
    fn backend(&self, config: &Config) -> common::Result<Box<dyn Backend>>;
    /// The key, read before the prompt.
    fn keys(&self, config: &Config) -> common::Result<Box<dyn KeySource>>;
    /// Whether this process may open the state itself (effective uid 0); otherwise the
    /// daemon answers.
    fn privileged(&self) -> bool;
    /// The name of the passwd entry that NSS returns for `name` (getpwnam): `Ok(None)` if
    /// NSS knows no such user, an error if the lookup itself failed.
    fn passwd_name(&self, name: &str) -> Result<Option<String>, String>;
}

/// The state directory and key file of the configuration.
pub struct Files;

impl Storage for Files {
    fn config_file(&self, path: &Path) -> common::Result<common::config::Loaded> {
        common::config::load_file(path)
    }
    fn backend(&self, config: &Config) -> common::Result<Box<dyn Backend>> {
        Ok(Box::new(FilesBackend::open(&config.state_dir)?))
    }
    fn keys(&self, config: &Config) -> common::Result<Box<dyn KeySource>> {
        Ok(Box::new(FileKey::load(&config.key_file)?))
    }
    fn privileged(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }
    fn passwd_name(&self, name: &str) -> Result<Option<String>, String> {
        use nix::errno::Errno;
        match nix::unistd::User::from_name(name) {
            Ok(u) => Ok(u.map(|u| u.name)),
            // getpwnam(3): these too mean "not found" for some NSS sources.
            Err(Errno::ENOENT | Errno::ESRCH | Errno::EBADF | Errno::EPERM) => Ok(None),
            Err(e) => Err(e.desc().to_owned()),
        }
    }
}

/// [`authenticate`] with a panic caught, logged and turned into PAM_SYSTEM_ERR.
pub fn authenticate_guarded<H: Handle>(
    h: &mut H,
    storage: &dyn Storage,
    silent: bool,
    args: &[String],
) -> PamError {
    match catch_unwind(AssertUnwindSafe(|| authenticate(h, storage, silent, args))) {
        Ok(result) => result,
        Err(_) => {
            // Logging may itself be what panicked: guard it too.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                h.log(Level::Err, "internal error (panic) caught; access denied")
            }));
            PamError::SYSTEM_ERR
        }
    }
}

/// Who and where, for every log line.
struct Context {
    service: String,
    rhost: Option<String>,
    user: String,
}

impl Context {
    fn line(&self, what: &str) -> String {
        format!(
            "{what} (service={} user={} rhost={})",
            self.service,
            self.user,
            self.rhost
                .as_deref()
                .map_or_else(|| "-".to_owned(), |h| text::printable(h, 64))
        )
    }
}

struct Session<'a, H: Handle> {
    h: &'a mut H,
    silent: bool,
    debug: bool,
    ctx: Context,
}

impl<H: Handle> Session<'_, H> {
    fn log(&self, level: Level, what: &str) {
        self.h.log(level, &self.ctx.line(what));
    }

    fn debug(&self, what: &str) {
        if self.debug {
            self.h.log(Level::Debug, &self.ctx.line(what));
        }
    }

    /// PAM_SILENT asks modules not to talk to the user.
    fn tell(&mut self, kind: Notice, text: &str) {
        if !self.silent {
            self.h.tell(kind, text);
        }
    }

    fn unavailable(&self, what: &str, e: &Error) -> PamError {
        self.log(Level::Err, &format!("{what}: {e}; access denied"));
        PamError::AUTHINFO_UNAVAIL
    }

    /// The daemon did not decide (unreachable, too slow, refused): fail closed, naming the
    /// socket.
    fn daemon_unavailable(&self, e: &crate::daemon::DaemonError) -> PamError {
        self.log(Level::Err, &format!("{e}; access denied"));
        PamError::AUTHINFO_UNAVAIL
    }

    fn not_enrolled(&mut self, nullok: bool) -> PamError {
        if nullok {
            self.log(Level::Info, "not enrolled, nullok: ignored");
            PamError::IGNORE
        } else {
            self.log(Level::Notice, "not enrolled: access denied");
            self.tell(Notice::Error, text::NOT_ENROLLED);
            PamError::AUTH_ERR
        }
    }

    fn tell_prior(&mut self, prior: &PriorRejections) {
        if prior.count > 0 {
            let msg =
                text::prior_rejections(prior.count, prior.last_rhost.as_deref(), prior.last_at);
            self.tell(Notice::Info, &msg);
        }
    }
}

/// The whole of `pam_sm_authenticate`. `silent`: PAM_SILENT was given.
pub fn authenticate<H: Handle>(
    h: &mut H,
    storage: &dyn Storage,
    silent: bool,
    args: &[String],
) -> PamError {
    let ctx = Context {
        service: h
            .service()
            .map_or_else(|| "-".to_owned(), |s| text::printable(&s, 64)),
        rhost: h.rhost(),
        user: "-".to_owned(),
    };
    let mut s = Session {
        h,
        silent,
        debug: false,
        ctx,
    };

    let config = match common::config::load_with_args_from(args, |p| storage.config_file(p)) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                s.log(Level::Warning, w);
            }
            loaded.config
        }
        Err(e) => {
            s.log(Level::Err, &format!("{e}; access denied"));
            return PamError::SERVICE_ERR;
        }
    };
    s.debug = config.debug;

    let user = match s.h.user() {
        Ok(Some(raw)) => match UserName::from_bytes(&raw) {
            Ok(u) => u,
            Err(e) => {
                s.ctx.user = text::printable_bytes(&raw, 32);
                s.log(Level::Notice, &format!("{e}: user unknown"));
                return PamError::USER_UNKNOWN;
            }
        },
        Ok(None) => {
            s.log(Level::Notice, "no user name: user unknown");
            return PamError::USER_UNKNOWN;
        }
        Err(code) => return user_error(&s, code),
    };
    // Validated: safe to log as is.
    s.ctx.user = user.to_string();
    s.debug(&format!(
        "config={} state_dir={} key_file={} window={} max_failures={} lockout_secs={} \
         lockout_max_secs={} nullok={} hotp_window={} grace_secs={} forward_pass={}",
        config.config.display(),
        config.state_dir.display(),
        config.key_file.display(),
        config.window,
        config.max_failures,
        config.lockout_secs,
        config.lockout_max_secs,
        config.nullok,
        config.hotp_window,
        config.grace_secs,
        config.forward_pass
    ));

    // pam_totpd hook (issue 12): not root, or backend etcd: the daemon answers instead of
    // the in-process store (crate::daemon). Backend files as root: in-process, unchanged.
    // Enrollment is known before the key is needed, so that `nullok` lets a never-enrolled
    // user through on a host whose key is not set up yet.
    let daemon = crate::daemon::Client::route(&config, storage.privileged());
    let local = match &daemon {
        Some(_) => None,
        None => match storage.backend(&config) {
            Ok(b) => Some(b),
            Err(e) => return s.unavailable("state", &e),
        },
    };
    let enrolled = match (&daemon, &local) {
        (Some(d), _) => d.is_enrolled(&user).map_err(|e| s.daemon_unavailable(&e)),
        (None, Some(b)) => b.is_enrolled(&user).map_err(|e| s.unavailable("state", &e)),
        (None, None) => Err(PamError::SYSTEM_ERR),
    };
    let user = match enrolled {
        Ok(true) => Some(user),
        Ok(false) => {
            // Not enrolled under this spelling: the passwd entry's own name may be (only
            // now, so an enrolled name costs no lookup).
            let canonical = match storage.passwd_name(user.as_str()) {
                Ok(Some(n)) if n != user.as_str() => UserName::parse(&n).ok(),
                Ok(_) => None,
                Err(e) => {
                    s.log(
                        Level::Err,
                        &format!("NSS lookup failed: {e}; access denied"),
                    );
                    return PamError::AUTHINFO_UNAVAIL;
                }
            };
            match canonical {
                None => None,
                Some(canonical) => {
                    let enrolled = match (&daemon, &local) {
                        (Some(d), _) => d
                            .is_enrolled(&canonical)
                            .map_err(|e| s.daemon_unavailable(&e)),
                        (None, Some(b)) => b
                            .is_enrolled(&canonical)
                            .map_err(|e| s.unavailable("state", &e)),
                        (None, None) => Err(PamError::SYSTEM_ERR),
                    };
                    match enrolled {
                        Ok(true) => {
                            s.ctx.user = format!("{canonical} (given as {user})");
                            Some(canonical)
                        }
                        Ok(false) => None,
                        Err(code) => return code,
                    }
                }
            }
        }
        Err(code) => return code,
    };
    let Some(user) = user else {
        // forward_pass: the whole answer is the password, for the next module.
        if config.forward_pass && config.nullok {
            return forward_whole_answer(&mut s, config.echo);
        }
        return s.not_enrolled(config.nullok);
    };
    let keys = match &daemon {
        Some(_) => None,
        None => match storage.keys(&config) {
            Ok(k) => Some(k),
            Err(e) => return s.unavailable("host key", &e),
        },
    };
    // forward_pass: the code is the answer's last `digits` characters, the enrollment's
    // own digits (in-process); through the daemon, the host's digits for enrollments.
    let digits = match (&local, &keys) {
        (Some(b), Some(k)) if config.forward_pass => {
            match b.load(&user, &mut common::login::opener(&**k, &user)) {
                // The user's lock is released at once: nobody waits on the prompt.
                Ok(Some(loaded)) => match loaded.state.params() {
                    Ok(p) => p.digits(),
                    Err(e) => return s.unavailable("state", &e),
                },
                Ok(None) => return s.not_enrolled(config.nullok),
                Err(e) => return s.unavailable("state", &e),
            }
        }
        _ => config.params.digits(),
    };
    // End of the hook's first part.

    // grace_secs: a device from which a code was accepted lately needs none. Not with
    // forward_pass, whose one prompt also carries the password.
    let device = DeviceIdentity::new(
        s.ctx.rhost.as_deref(),
        s.h.env("SSH_AUTH_INFO_0").as_deref(),
    );
    if config.grace_secs > 0 && !config.forward_pass {
        if let Some(dev) = &device {
            let now = match clock(&s) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let req =
                AuthRequest::from_config(&config, now, Some(dev.rhost())).with_device(Some(dev));
            let since = match (&daemon, &local, &keys) {
                (Some(d), _, _) => d
                    .grace(&user, dev, &s.ctx.service)
                    .map_err(|e| s.daemon_unavailable(&e)),
                (None, Some(b), Some(k)) => common::login::grace(&**b, &**k, &user, &req)
                    .map(|g| g.map(|d| d.since))
                    .map_err(|e| s.unavailable("state", &e)),
                _ => Err(PamError::SYSTEM_ERR),
            };
            match since {
                Ok(Some(t)) => {
                    s.log(
                        Level::Notice,
                        &format!(
                            "grace login: device{} remembered since {}, no code asked",
                            if dev.key().is_some() {
                                " (host and key)"
                            } else {
                                ""
                            },
                            common::time::display(t)
                        ),
                    );
                    return PamError::SUCCESS;
                }
                Ok(None) => s.debug("no grace for this device"),
                Err(code) => return code,
            }
        }
    }

    // The prompt comes before the transaction takes the user's lock: nobody waits on a
    // person while holding it.
    let prompt = if config.forward_pass {
        text::PROMPT_FORWARD_PASS
    } else {
        text::PROMPT
    };
    let reply = match ask(&mut s, prompt, config.echo) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let code = if config.forward_pass {
        let (password, code) = split_forward_pass(&reply, digits);
        if let Err(rc) = s.h.set_authtok(password) {
            s.log(
                Level::Err,
                &format!("cannot set PAM_AUTHTOK ({rc:?}): access denied"),
            );
            return PamError::SYSTEM_ERR;
        }
        code
    } else {
        &reply[..]
    };
    // Anything that is not short UTF-8 is a wrong code: counted as a failure like any other.
    let input = match std::str::from_utf8(code) {
        Ok(i) if i.len() <= MAX_REPLY_LEN => i,
        _ => "\u{fffd}",
    };

    let now = match clock(&s) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let rhost = s.ctx.rhost.clone();
    // pam_totpd hook, second part: the code goes to the daemon in one request.
    let outcome = match (&daemon, &local, &keys) {
        (Some(d), _, _) => d
            .verify(
                &user,
                input,
                rhost.as_deref(),
                device.as_ref(),
                &s.ctx.service,
            )
            .map_err(|e| s.daemon_unavailable(&e)),
        (None, Some(backend), Some(keys)) => {
            let req = AuthRequest::from_config(&config, now, rhost.as_deref())
                .with_device(device.as_ref());
            common::login::authenticate(&**backend, &**keys, &user, input, &req)
                .map_err(|e| s.unavailable("state", &e))
        }
        _ => Err(PamError::SYSTEM_ERR),
    };
    drop(reply);
    match outcome {
        Ok(o) => decide(&mut s, &config, o),
        Err(code) => code,
    }
}

/// The handle's clock in unix seconds; before 1970 it fails closed.
fn clock<H: Handle>(s: &Session<'_, H>) -> Result<i64, PamError> {
    match s.h.now().duration_since(UNIX_EPOCH) {
        Ok(d) => Ok(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        Err(_) => {
            s.log(Level::Err, "system clock is before 1970: access denied");
            Err(PamError::AUTHINFO_UNAVAIL)
        }
    }
}

/// Asks `prompt`; a conversation that gives no answer is PAM_CONV_ERR, logged.
fn ask<H: Handle>(
    s: &mut Session<'_, H>,
    prompt: &str,
    echo: bool,
) -> Result<zeroize::Zeroizing<Vec<u8>>, PamError> {
    s.h.prompt(prompt, echo).map_err(|e| {
        let why = match e {
            ConvError::NoConversation => "no conversation function".to_owned(),
            ConvError::Failed(code) => format!("conversation failed (PAM error {code})"),
            ConvError::NoAnswer => "no answer to the prompt".to_owned(),
        };
        s.log(Level::Notice, &format!("{why}: conversation error"));
        PamError::CONV_ERR
    })
}

/// `forward_pass` for a user who is not enrolled, under `nullok`: the one prompt is still
/// asked, and its whole answer goes on as the password; this module then steps aside.
fn forward_whole_answer<H: Handle>(s: &mut Session<'_, H>, echo: bool) -> PamError {
    let reply = match ask(s, text::PROMPT_FORWARD_PASS, echo) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let Err(rc) = s.h.set_authtok(&reply) {
        s.log(
            Level::Err,
            &format!("cannot set PAM_AUTHTOK ({rc:?}): access denied"),
        );
        return PamError::SYSTEM_ERR;
    }
    s.log(
        Level::Info,
        "not enrolled, nullok: the whole answer passed on as the password; ignored",
    );
    PamError::IGNORE
}

/// Splits a `forward_pass` answer into (password, code): the code is the last `digits`
/// bytes (the characters of a valid code are ASCII digits; any other ending is a wrong
/// code), the password everything before. An answer shorter than a code is all code.
pub fn split_forward_pass(answer: &[u8], digits: u8) -> (&[u8], &[u8]) {
    let at = answer.len().saturating_sub(usize::from(digits));
    answer.split_at(at)
}

/// A `pam_get_user` failure: a conversation problem (including "call again", which this
/// module does not support) is PAM_CONV_ERR; the library's own errors stay what they are;
/// anything else, above all a success without a name, is PAM_SYSTEM_ERR.
fn user_error<H: Handle>(s: &Session<'_, H>, code: PamError) -> PamError {
    let result = match code {
        PamError::CONV_ERR | PamError::CONV_AGAIN | PamError::INCOMPLETE => PamError::CONV_ERR,
        PamError::BUF_ERR | PamError::ABORT | PamError::SYSTEM_ERR => code,
        _ => PamError::SYSTEM_ERR,
    };
    s.log(
        Level::Notice,
        &format!("could not get the user name ({code:?}): {result:?}"),
    );
    result
}

/// Maps the transaction's outcome to SPEC.md's return codes and messages.
fn decide<H: Handle>(s: &mut Session<'_, H>, config: &Config, outcome: Outcome) -> PamError {
    match outcome {
        Outcome::Accepted { step, prior } => {
            s.log(
                Level::Info,
                &format!(
                    "code accepted; {} rejected since the last success",
                    prior.count
                ),
            );
            s.debug(&format!("accepted time step (HOTP: counter) {step}"));
            s.tell_prior(&prior);
            PamError::SUCCESS
        }
        Outcome::RecoveryAccepted { remaining, prior } => {
            s.log(
                Level::Notice,
                &format!("recovery code accepted, {remaining} left"),
            );
            s.tell_prior(&prior);
            s.tell(Notice::Info, &text::recovery_used(remaining));
            PamError::SUCCESS
        }
        // The attempt that reaches max_failures was still a wrong code: AUTH_ERR, with the
        // lock announced; only attempts made while locked get MAXTRIES.
        Outcome::Rejected {
            failures,
            locked_until,
        } => {
            s.log(
                Level::Notice,
                &format!(
                    "wrong code: access denied; consecutive failures: {failures}{}",
                    locked_note(locked_until)
                ),
            );
            if let Some(until) = locked_until {
                s.tell(Notice::Error, &text::locked_until(until));
            }
            PamError::AUTH_ERR
        }
        Outcome::Replayed {
            failures,
            locked_until,
        } => {
            s.log(
                Level::Warning,
                &format!(
                    "code already used (replay), account may be compromised: access denied; \
                     consecutive failures: {failures}{}",
                    locked_note(locked_until)
                ),
            );
            s.tell(Notice::Error, text::REPLAYED);
            if let Some(until) = locked_until {
                s.tell(Notice::Error, &text::locked_until(until));
            }
            PamError::AUTH_ERR
        }
        Outcome::Locked { until } => {
            s.log(
                Level::Notice,
                &format!(
                    "locked until {}: access denied",
                    common::time::display(until)
                ),
            );
            s.tell(Notice::Error, &text::locked_until(until));
            PamError::MAXTRIES
        }
        // Removed between the enrollment check and the transaction.
        Outcome::NotEnrolled => s.not_enrolled(config.nullok),
    }
}

fn locked_note(locked_until: Option<i64>) -> String {
    locked_until.map_or_else(String::new, |t| {
        format!("; now locked until {}", common::time::display(t))
    })
}
