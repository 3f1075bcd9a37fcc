//! `totp-enroll`: enrollment and administration of pam_totp, installed setuid root.
//!
//! A thin layer over `common`: this crate parses arguments, decides who may do what, talks
//! to the terminal and draws the QR code; every read and write of state goes through
//! `common::login` over a `common::FilesBackend` ([`Store`] here). Exit status per SPEC.md: 0 success, 1 refused or failed verification,
//! 2 usage error, 3 system error.

#![forbid(unsafe_code)]

/// `println!` that never panics: with standard output closed or broken there is nobody to
/// tell, and the exit status still says what happened.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics.
macro_rules! warn {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod admin;
mod cli;
mod daemon;
mod enroll;
mod failure;
mod import;
mod privilege;
mod qr;
mod term;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Config, FileKey, FilesBackend, UserName};

use cli::{Cli, Command};
use failure::Failure;
use privilege::{Caller, Privileges};

fn main() {
    privilege::harden();
    let code = match run() {
        Ok(()) => 0,
        Err(e) => {
            warn!("totp-enroll: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn run() -> Result<(), Failure> {
    let privs = Privileges::lower_to_caller()?;
    // Parsed with the caller's rights: clap prints help and usage errors (exit 2) itself,
    // except that a caller who is not root and names a root-only option or command is
    // refused (exit 1) whatever else is wrong with the line.
    let cli = match Cli::try_parse_checked() {
        Ok(cli) => cli,
        Err(e) => {
            if e.use_stderr() && !privs.real_root() {
                let args: Vec<_> = std::env::args_os().skip(1).collect();
                if let Some(word) = cli::root_only_word(&args) {
                    return Err(Failure::refused(format!("{word} is only for root")));
                }
            }
            e.exit()
        }
    };
    let caller = privs.caller()?;
    if !caller.is_root {
        refuse_root_only(&cli)?;
    }
    let ctx = Ctx::new(privs, caller, &cli)?;
    match &cli.command {
        None => enroll::run(&ctx, &cli.enroll),
        Some(Command::Status { user, json }) => admin::status(&ctx, user.as_ref(), *json),
        Some(Command::Disable { user }) => admin::disable(&ctx, user.as_ref()),
        Some(Command::RecoveryCodes { user }) => admin::recovery_codes(&ctx, user.as_ref()),
        Some(Command::Import(args)) => import::run(&ctx, args),
        Some(Command::Unlock { user }) => admin::unlock(&ctx, user),
        Some(Command::ForgetDevices { user }) => admin::forget_devices(&ctx, user.as_ref()),
        Some(Command::List { json }) => admin::list(&ctx, *json),
        Some(Command::Rekey { stage }) => admin::rekey(&ctx, *stage),
    }
}

/// A caller other than root gets the same answer whatever the target account: nothing is
/// read before this check, so no reply can depend on another user's enrollment.
fn refuse_root_only(cli: &Cli) -> Result<(), Failure> {
    if let Some(opt) = cli.paths.first_given() {
        return Err(Failure::refused(format!("{opt} is only for root")));
    }
    if let Some(cmd) = &cli.command {
        if let Some(name) = cmd.root_only() {
            return Err(Failure::refused(format!("`{name}` is only for root")));
        }
        if cmd.user().is_some() {
            return Err(Failure::refused(
                "--user is only for root; without it you act on your own account",
            ));
        }
    }
    if cli.enroll.user.is_some() {
        return Err(Failure::refused(
            "--user is only for root; without it you enroll your own account",
        ));
    }
    Ok(())
}

/// What every command works with.
pub struct Ctx {
    privs: Privileges,
    pub caller: Caller,
    pub config: Config,
}

impl Ctx {
    fn new(privs: Privileges, caller: Caller, cli: &Cli) -> Result<Self, Failure> {
        let path = cli
            .paths
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(common::config::DEFAULT_CONFIG));
        let loaded = privs.as_root(|| common::config::load_file(&path))??;
        for w in &loaded.warnings {
            warn!("totp-enroll: warning: {}: {w}", path.display());
        }
        let mut config = loaded.config;
        if let Some(p) = &cli.paths.state_dir {
            config.state_dir = p.clone();
        }
        if let Some(p) = &cli.paths.key_file {
            config.key_file = p.clone();
        }
        Ok(Ctx {
            privs,
            caller,
            config,
        })
    }

    /// Runs one call into `common` with root's rights.
    pub fn root<T>(&self, f: impl FnOnce() -> common::Result<T>) -> Result<T, Failure> {
        Ok(self.privs.as_root(f)??)
    }

    /// The account to act on: `--user` (root only, checked before) or the caller.
    pub fn target(&self, user: Option<&UserName>) -> Result<UserName, Failure> {
        match user {
            Some(u) => Ok(u.clone()),
            None => UserName::parse(&self.caller.name).map_err(|e| {
                Failure::refused(format!(
                    "account name {:?} cannot be enrolled: {e}",
                    self.caller.name
                ))
            }),
        }
    }

    /// The store with its host key. For `create` (enrollment and import by root) a missing
    /// state directory and key are created; otherwise both must exist.
    pub fn store(&self, create: bool) -> Result<Store, Failure> {
        let c = &self.config;
        if c.backend == common::config::BackendKind::Etcd {
            return Ok(Store::Daemon(daemon::Daemon {
                socket: c.socket.clone(),
                timeout: std::time::Duration::from_millis(c.daemon_timeout_ms),
            }));
        }
        if create && self.caller.is_root {
            let (store, created) = self.root(|| {
                let backend = FilesBackend::create(&c.state_dir)?;
                let (keys, created) = FileKey::load_or_create(&c.key_file)?;
                Ok((Local { backend, keys }, created))
            })?;
            if created {
                warn!(
                    "totp-enroll: created a new host key {}",
                    c.key_file.display()
                );
            }
            return Ok(Store::Local(Box::new(store)));
        }
        let missing = |what: &str, path: &std::path::Path| {
            Failure::System(format!(
                "{what} {} is missing: pam_totp is not set up on this host (installing the \
                 package, or enrolling someone as root, creates it)",
                path.display()
            ))
        };
        let not_found = |e: &common::Error| {
            matches!(e, common::Error::Io { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound)
        };
        let backend = match self.privs.as_root(|| FilesBackend::open(&c.state_dir))? {
            Ok(b) => b,
            Err(e) if not_found(&e) => return Err(missing("state directory", &c.state_dir)),
            Err(e) => return Err(e.into()),
        };
        match self.privs.as_root(|| FileKey::load(&c.key_file))? {
            Ok(keys) => Ok(Store::Local(Box::new(Local { backend, keys }))),
            Err(e) if not_found(&e) => Err(missing("host key", &c.key_file)),
            Err(e) => Err(e.into()),
        }
    }

    /// The issuer shown in the app: the config's `issuer`, else the host name.
    pub fn issuer(&self) -> String {
        if let Some(i) = &self.config.issuer {
            return i.clone();
        }
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let host: String = host
            .chars()
            .filter(|c| !c.is_control() && *c != ':')
            .collect();
        if host.is_empty() {
            "pam_totp".to_owned()
        } else {
            host
        }
    }
}

/// The state directory and host key of this host, opened once per command.
pub struct Local {
    backend: FilesBackend,
    keys: FileKey,
}

/// Where the configuration's enrollments are: each operation is one of `common::login`'s
/// over the files backend, or, on a fleet (`backend = "etcd"`), the same operation run by
/// the local `pam_totpd` ([`daemon::Daemon`]). Nothing here touches a file or a socket
/// itself.
pub enum Store {
    Local(Box<Local>),
    Daemon(daemon::Daemon),
}

/// Recovery codes as shown (wiped when dropped).
pub type ShownCodes = Vec<zeroize::Zeroizing<String>>;

fn shown(codes: Vec<common::recovery::RecoveryCode>) -> ShownCodes {
    codes.iter().map(|c| c.display()).collect()
}

impl Store {
    pub fn is_enrolled(&self, user: &UserName) -> common::Result<bool> {
        match self {
            Store::Local(l) => common::Backend::is_enrolled(&l.backend, user),
            Store::Daemon(d) => d.is_enrolled(user),
        }
    }
    /// On a fleet the daemon's policy applies (its config), not `req`'s.
    pub fn authenticate(
        &self,
        user: &UserName,
        input: &str,
        req: &common::AuthRequest,
    ) -> common::Result<common::Outcome> {
        match self {
            Store::Local(l) => common::login::authenticate(&l.backend, &l.keys, user, input, req),
            Store::Daemon(d) => d.authenticate(user, input),
        }
    }
    pub fn enroll(&self, e: common::Enrollment) -> common::Result<ShownCodes> {
        match self {
            Store::Local(l) => common::login::enroll(&l.backend, &l.keys, e).map(shown),
            Store::Daemon(d) => d.enroll(e),
        }
    }
    pub fn status(&self, user: &UserName) -> common::Result<Option<common::Status>> {
        match self {
            Store::Local(l) => common::login::status(&l.backend, &l.keys, user),
            Store::Daemon(d) => d.status(user),
        }
    }
    pub fn remove(&self, user: &UserName) -> common::Result<bool> {
        match self {
            Store::Local(l) => common::Backend::remove(&l.backend, user),
            Store::Daemon(d) => d.remove(user),
        }
    }
    pub fn regenerate_recovery_codes(
        &self,
        user: &UserName,
        count: usize,
    ) -> common::Result<ShownCodes> {
        match self {
            Store::Local(l) => {
                common::login::regenerate_recovery_codes(&l.backend, &l.keys, user, count)
                    .map(shown)
            }
            Store::Daemon(d) => d.regenerate_recovery_codes(user, count),
        }
    }
    pub fn unlock(&self, user: &UserName) -> common::Result<()> {
        match self {
            Store::Local(l) => common::login::unlock(&l.backend, &l.keys, user),
            Store::Daemon(d) => d.unlock(user),
        }
    }
    pub fn forget_devices(&self, user: &UserName) -> common::Result<usize> {
        match self {
            Store::Local(l) => common::login::forget_devices(&l.backend, &l.keys, user),
            Store::Daemon(d) => d.forget_devices(user),
        }
    }
    pub fn list(&self) -> common::Result<Vec<common::PerUser<common::Status>>> {
        match self {
            Store::Local(l) => common::login::list(&l.backend, &l.keys),
            Store::Daemon(d) => d.list(),
        }
    }
    /// Copies `user`'s enrollment from the state directory `from_dir` (sealed under the key
    /// in `from_key`) into this store; the new record's status, `None` if `from_dir` has no
    /// enrollment of that name.
    pub fn import_user(
        &self,
        from_dir: &std::path::Path,
        from_key: &std::path::Path,
        user: &UserName,
        replace: bool,
    ) -> common::Result<Option<common::Status>> {
        match self {
            Store::Local(l) => {
                let from = FilesBackend::open(from_dir)?;
                let from_keys = FileKey::load(from_key)?;
                match common::login::copy_enrollment(
                    &from, &from_keys, &l.backend, &l.keys, user, replace,
                )? {
                    None => Ok(None),
                    Some(_) => common::login::status(&l.backend, &l.keys, user),
                }
            }
            Store::Daemon(d) => d.import_user(from_dir, from_key, user, replace),
        }
    }
    /// A single host's rekey, every step at once (a fleet's runs in steps:
    /// `admin::rekey`).
    pub fn rekey(&self) -> common::Result<Vec<common::PerUser<()>>> {
        match self {
            Store::Local(l) => common::login::rekey(&l.backend, &l.keys),
            Store::Daemon(_) => Err(common::Error::Config(
                "a fleet's key rotation runs in steps (totp-enroll rekey --stage)".into(),
            )),
        }
    }
}

/// Seconds since 1970.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A stored time as people see it (RFC 3339 in UTC; never panics on any value).
pub use common::time::display as format_time;

/// Whether an account of that name exists (NSS), for root's `--user`: enrolling a typo
/// would lock nobody out but confuse everyone.
pub fn require_account(user: &UserName) -> Result<(), Failure> {
    match nix::unistd::User::from_name(user.as_str()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Failure::refused(format!("no account named {user}"))),
        Err(e) => Err(Failure::System(format!("cannot look up {user}: {e}"))),
    }
}
