//! The setuid-root part: a clean process at start, then the effective uid of the caller
//! except around the reads and writes of the state directory, the key and the config.
//!
//! Installed mode 4755 root, the program starts with real uid = the caller and effective
//! uid 0. [`harden`] runs first, before any argument is looked at.
//! [`Privileges::lower_to_caller`] then sets the effective ids to the caller's and keeps
//! root only as the saved uid, so that the terminal, argument parsing and rendering run
//! with the caller's rights, and [`Privileges::as_root`] raises them for one call into
//! `common`.
//!
//! Around that call the process is wholly root (real, effective and saved uid 0), with the
//! terminal's stop signals blocked: the caller can then neither signal it (kill(2) needs a
//! matching real or saved uid) nor stop it from the terminal, so a user cannot freeze it
//! while it holds their lock in the state directory, which would stall `rekey`, `list` and
//! their own logins. Every decision is made from the real uid captured at start.

use nix::sys::prctl;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{getegid, geteuid, getgid, getuid, setegid, setresuid, Gid, Uid, User};

use crate::failure::Failure;

/// Variables kept from the caller's environment: the terminal type and the user's locale
/// and colour preference. Everything else (LD_*, PATH, HOME, USER, ...) goes.
const KEPT_ENV: [&str; 3] = ["TERM", "NO_COLOR", "LANG"];
const SAFE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Clears the environment, sets a fixed PATH, umask 077 and no core dumps. Runs before
/// anything else, while the process is still single-threaded.
pub fn harden() {
    for (name, _) in std::env::vars_os() {
        let keep = name.to_str().is_some_and(|n| KEPT_ENV.contains(&n));
        if !keep {
            std::env::remove_var(&name);
        }
    }
    std::env::set_var("PATH", SAFE_PATH);
    umask(Mode::from_bits_truncate(0o077));
    // Core dumps and ptrace by the caller would expose secrets and the host key.
    let _ = prctl::set_dumpable(false);
}

/// Who runs the program, from the real uid (never from $USER, $HOME or $LOGNAME).
pub struct Caller {
    pub name: String,
    pub is_root: bool,
}

pub struct Privileges {
    real_uid: Uid,
    real_gid: Gid,
    /// Whether the effective ids were lowered and must be raised around privileged calls.
    lowered: bool,
}

impl Privileges {
    /// Lowers the effective uid and gid to the real ones, keeping root as the saved uid.
    /// A caller whose real uid is 0 keeps root throughout: there is nothing to protect.
    pub fn lower_to_caller() -> Result<Self, Failure> {
        let real_uid = getuid();
        let real_gid = getgid();
        let mut p = Privileges {
            real_uid,
            real_gid,
            lowered: false,
        };
        if !real_uid.is_root() && geteuid().is_root() {
            p.lower()?;
            p.lowered = true;
        }
        Ok(p)
    }

    /// Whether the real uid is 0 (no account lookup needed).
    pub fn real_root(&self) -> bool {
        self.real_uid.is_root()
    }

    pub fn caller(&self) -> Result<Caller, Failure> {
        let user = User::from_uid(self.real_uid)
            .map_err(|e| Failure::System(format!("cannot look up uid {}: {e}", self.real_uid)))?
            .ok_or_else(|| Failure::System(format!("uid {} has no account name", self.real_uid)))?;
        Ok(Caller {
            name: user.name,
            is_root: self.real_uid.is_root(),
        })
    }

    /// Runs `f` as root (real, effective and saved uid 0, effective gid 0; files it creates
    /// are root's) with SIGTSTP, SIGTTIN and SIGTTOU blocked, then lowers the ids and
    /// restores the signal mask, also if `f` panics. Without the setuid bit (a plain user
    /// running an uninstalled build) `f` runs with the caller's rights and fails on the
    /// root-owned files.
    pub fn as_root<T>(&self, f: impl FnOnce() -> T) -> Result<T, Failure> {
        if !self.lowered {
            return Ok(f());
        }
        // Blocked first: a stop signal the terminal sends (those skip the uid check) stays
        // pending until the locked work is over.
        let mut stops = SigSet::empty();
        for s in [Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU] {
            stops.add(s);
        }
        let mut before = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&stops), Some(&mut before))
            .map_err(|e| Failure::System(format!("sigprocmask: {e}")))?;
        let _mask = RestoreMask(before);
        let root = Uid::from_raw(0);
        setresuid(root, root, root)
            .map_err(|e| Failure::System(format!("cannot regain root (setuid bit?): {e}")))?;
        let _restore = Restore(self);
        setegid(Gid::from_raw(0)).map_err(|e| Failure::System(format!("setegid: {e}")))?;
        // Changing the effective ids resets the dumpable flag to the sysctl's value.
        let _ = prctl::set_dumpable(false);
        Ok(f())
    }

    fn lower(&self) -> Result<(), Failure> {
        // Group first: once the uid is lowered we may no longer change it.
        setegid(self.real_gid).map_err(|e| Failure::System(format!("setegid: {e}")))?;
        // Root stays only as the saved uid, for the next `as_root`.
        setresuid(self.real_uid, self.real_uid, Uid::from_raw(0))
            .map_err(|e| Failure::System(format!("setresuid: {e}")))?;
        let _ = prctl::set_dumpable(false);
        if getuid() != self.real_uid || geteuid() != self.real_uid || getegid() != self.real_gid {
            return Err(Failure::System("could not drop privileges".into()));
        }
        Ok(())
    }
}

/// Lowers the effective ids when dropped. If that fails the process must not go on with
/// root rights in the caller's hands: it exits at once.
struct Restore<'a>(&'a Privileges);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.lower() {
            warn!("totp-enroll: {e}");
            std::process::exit(3);
        }
    }
}

/// Puts the signal mask back when dropped (after [`Restore`] has lowered the ids).
struct RestoreMask(SigSet);

impl Drop for RestoreMask {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}
