//! The command line, as SPEC.md's CLI table gives it.

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use common::{Algorithm, UserName};

/// Enroll in pam_totp two-factor authentication, and manage enrollments.
///
/// Run without a command, it enrolls you: it shows a QR code and a secret for your
/// authenticator app, asks for a code from the app, and prints one-time recovery codes.
#[derive(Debug, Parser)]
#[command(
    name = "totp-enroll",
    version,
    after_help = "Exit status: 0 success, 1 refused or failed verification, 2 usage error, \
                  3 system error."
)]
pub struct Cli {
    #[command(flatten)]
    pub paths: PathOptions,

    #[command(flatten)]
    pub enroll: EnrollArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where configuration, state and key live. Honoured only for root.
#[derive(Debug, Args)]
pub struct PathOptions {
    /// Configuration file (root only) [default: /etc/security/pam_totp.conf]
    #[arg(long, global = true, value_name = "PATH", value_parser = absolute_path)]
    pub config: Option<PathBuf>,

    /// State directory (root only) [default: the config's state_dir]
    #[arg(long, global = true, value_name = "PATH", value_parser = absolute_path)]
    pub state_dir: Option<PathBuf>,

    /// Host key file (root only) [default: the config's key_file]
    #[arg(long, global = true, value_name = "PATH", value_parser = absolute_path)]
    pub key_file: Option<PathBuf>,
}

impl PathOptions {
    /// The first override given, by its option name.
    pub fn first_given(&self) -> Option<&'static str> {
        if self.config.is_some() {
            Some("--config")
        } else if self.state_dir.is_some() {
            Some("--state-dir")
        } else if self.key_file.is_some() {
            Some("--key-file")
        } else {
            None
        }
    }
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Enroll this account instead of yourself (root only)
    #[arg(long, value_name = "NAME", value_parser = user_name)]
    pub user: Option<UserName>,

    /// Replace an existing enrollment (asks for a current code unless run by root)
    #[arg(long)]
    pub replace: bool,

    /// How to draw the QR code: utf8 (half blocks, for light-on-dark terminals; the
    /// default), ansi (explicit black on white, any terminal with colours) or none
    #[arg(long, value_enum, value_name = "MODE")]
    pub qr: Option<QrMode>,
}

impl EnrollArgs {
    /// The first enrollment option given, by name: they make no sense with a command.
    pub fn first_given(&self) -> Option<&'static str> {
        if self.user.is_some() {
            Some("--user")
        } else if self.replace {
            Some("--replace")
        } else if self.qr.is_some() {
            Some("--qr")
        } else {
            None
        }
    }
}

impl Cli {
    /// Parses the command line and [`Cli::check`]s it. Help, version and usage errors come
    /// back as clap errors, for the caller to `exit()` with (a usage error exits 2).
    pub fn try_parse_checked() -> Result<Self, clap::Error> {
        let cli = Cli::try_parse()?;
        cli.check()?;
        Ok(cli)
    }

    /// What clap's definition cannot say: the enrollment options go without a command
    /// (`totp-enroll --user bob status` is a mistake for `status --user bob`).
    pub fn check(&self) -> Result<(), clap::Error> {
        if let (Some(opt), Some(_)) = (self.enroll.first_given(), &self.command) {
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                format!("{opt} belongs to enrollment and cannot come before a command"),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum QrMode {
    Utf8,
    Ansi,
    None,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show whether an account is enrolled, when it was last used, failures, lock and
    /// recovery codes left (never the secret)
    Status {
        /// Another account (root only)
        #[arg(long, value_name = "NAME", value_parser = user_name)]
        user: Option<UserName>,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Remove an enrollment (asks for a current code unless run by root)
    Disable {
        /// Another account (root only)
        #[arg(long, value_name = "NAME", value_parser = user_name)]
        user: Option<UserName>,
    },
    /// Replace the recovery codes with new ones; the old ones stop working (asks for a
    /// current code unless run by root)
    RecoveryCodes {
        /// Another account (root only)
        #[arg(long, value_name = "NAME", value_parser = user_name)]
        user: Option<UserName>,
    },
    /// Enroll from an existing secret: from standard input, a google-authenticator file or
    /// a pam_oath usersfile (root only)
    Import(ImportArgs),
    /// Clear an account's failures and lock (root only)
    Unlock {
        #[arg(long, value_name = "NAME", value_parser = user_name)]
        user: UserName,
    },
    /// Forget the devices remembered for grace_secs (another account's: root only)
    ForgetDevices {
        /// Another account (root only)
        #[arg(long, value_name = "NAME", value_parser = user_name)]
        user: Option<UserName>,
    },
    /// Every enrolled account with its status (root only)
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Make a new host key and re-encrypt every state file with it (root only). On a
    /// fleet (backend = "etcd"): `--stage` first, on one host; then, once the staged key
    /// is on every host, `rekey` on each host in turn
    Rekey {
        /// Fleet only: make the next fleet key (<key_file>.new) to hand to every host
        #[arg(long)]
        stage: bool,
    },
}

impl Command {
    /// Commands only root may run, by name.
    pub fn root_only(&self) -> Option<&'static str> {
        match self {
            Command::Import(_) => Some("import"),
            Command::Unlock { .. } => Some("unlock"),
            Command::List { .. } => Some("list"),
            Command::Rekey { .. } => Some("rekey"),
            _ => None,
        }
    }

    /// The `--user` given to a command, if any.
    pub fn user(&self) -> Option<&UserName> {
        match self {
            Command::Status { user, .. }
            | Command::Disable { user }
            | Command::RecoveryCodes { user }
            | Command::ForgetDevices { user } => user.as_ref(),
            Command::Import(a) => a.user.as_ref(),
            Command::Unlock { user } => Some(user),
            Command::List { .. } | Command::Rekey { .. } => None,
        }
    }
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("source")
        .required(true)
        .args(["secret_stdin", "from_google_authenticator", "from_oath_usersfile", "from_state_dir"])
))]
pub struct ImportArgs {
    /// The account to enroll (for --from-oath-usersfile and --from-state-dir: import only
    /// this account)
    #[arg(
        long,
        value_name = "NAME",
        value_parser = user_name,
        required_unless_present_any = ["from_oath_usersfile", "from_state_dir"]
    )]
    pub user: Option<UserName>,

    /// Read the base32 secret from standard input (never give a secret on the command line)
    #[arg(long)]
    pub secret_stdin: bool,

    /// Migrate a ~/.google_authenticator file: secret, step size and scratch codes (kept
    /// as recovery codes)
    #[arg(long, value_name = "FILE")]
    pub from_google_authenticator: Option<PathBuf>,

    /// Migrate the users of a pam_oath usersfile: TOTP, and HOTP with their counters
    /// (counting on after the last counter pam_oath accepted)
    #[arg(long, value_name = "FILE")]
    pub from_oath_usersfile: Option<PathBuf>,

    /// Move the enrollments of a pam_totp state directory (another host's, or this host's
    /// before it joined a fleet), with their counters and unused recovery codes, into the
    /// configured backend; needs --from-key-file
    #[arg(long, value_name = "DIR", value_parser = absolute_path, requires = "from_key_file")]
    pub from_state_dir: Option<PathBuf>,

    /// The host key that sealed the states of --from-state-dir
    #[arg(long, value_name = "FILE", value_parser = absolute_path, requires = "from_state_dir")]
    pub from_key_file: Option<PathBuf>,
    /// The secret from standard input is an HOTP (counter-based, RFC 4226) token's, e.g.
    /// a hardware token
    #[arg(long, requires = "secret_stdin", conflicts_with = "period")]
    pub hotp: bool,

    /// With --hotp: the token's next counter, the one its next code is made from
    /// [default: 0]
    #[arg(long, value_name = "N", requires = "hotp", value_parser = clap::value_parser!(u64).range(0..=common::hotp::MAX_COUNTER + 1))]
    pub counter: Option<u64>,

    /// Algorithm of the secret from standard input [default: the config's, SHA1]
    #[arg(long, conflicts_with_all = ["from_google_authenticator", "from_oath_usersfile", "from_state_dir"], value_parser = algorithm)]
    pub algorithm: Option<Algorithm>,

    /// Digits of the codes (6 to 8) [default: the config's, 6]
    #[arg(long, conflicts_with_all = ["from_google_authenticator", "from_oath_usersfile", "from_state_dir"], value_parser = clap::value_parser!(u8).range(6..=8))]
    pub digits: Option<u8>,

    /// Seconds per code (1 to 3600) [default: the config's, 30]
    #[arg(long, conflicts_with_all = ["from_google_authenticator", "from_oath_usersfile", "from_state_dir"], value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub period: Option<u32>,

    /// Replace existing enrollments
    #[arg(long)]
    pub replace: bool,
}

fn user_name(s: &str) -> Result<UserName, String> {
    UserName::parse(s).map_err(|e| e.to_string())
}

fn algorithm(s: &str) -> Result<Algorithm, String> {
    s.parse().map_err(|e: common::Error| e.to_string())
}

fn absolute_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        return Err("must be an absolute path".into());
    }
    Ok(p)
}

/// The root-only option or command in a command line, read from the raw words: for a caller
/// who is not root, a line that names one is refused (exit 1) even when it would not parse
/// (a usage error, exit 2), so the refusal never depends on what follows it.
pub fn root_only_word<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Option<String> {
    const OPTIONS: [&str; 4] = ["--user", "--config", "--state-dir", "--key-file"];
    const COMMANDS: [&str; 4] = ["import", "unlock", "list", "rekey"];
    // Options that may come before the command and take the next word as their value.
    const TAKE_VALUE: [&str; 5] = ["--user", "--config", "--state-dir", "--key-file", "--qr"];
    let mut command_seen = false;
    let mut value_next = false;
    for arg in args {
        let arg = arg.as_ref().to_string_lossy();
        if arg == "--" {
            break;
        }
        let name = arg.split_once('=').map_or(&*arg, |(n, _)| n);
        if OPTIONS.contains(&name) {
            return Some(name.to_owned());
        }
        if std::mem::take(&mut value_next) {
            continue;
        }
        if arg.starts_with('-') {
            value_next = !arg.contains('=') && TAKE_VALUE.contains(&name);
        } else if !command_seen {
            command_seen = true;
            if COMMANDS.contains(&&*arg) {
                return Some(format!("`{arg}`"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        let cli = Cli::try_parse_from(argv)?;
        cli.check()?;
        Ok(cli)
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn path_options_go_before_or_after_the_command() {
        for argv in [
            &["totp-enroll", "--state-dir", "/s", "status"][..],
            &["totp-enroll", "status", "--state-dir", "/s"][..],
        ] {
            let cli = parse(argv).unwrap();
            assert_eq!(cli.paths.state_dir.as_deref(), Some("/s".as_ref()));
            assert!(matches!(cli.command, Some(Command::Status { .. })));
        }
        let cli = parse(&["totp-enroll", "--key-file", "/k", "--qr", "ansi"]).unwrap();
        assert_eq!(cli.enroll.qr, Some(QrMode::Ansi));
        assert!(cli.command.is_none());
    }

    #[test]
    fn usage_errors() {
        for argv in [
            &["totp-enroll", "--user", "bob", "status"][..],
            &["totp-enroll", "--qr", "none", "list"][..],
            &["totp-enroll", "--replace", "disable"][..],
            &["totp-enroll", "import", "--user", "bob"][..],
            &["totp-enroll", "import", "--secret-stdin"][..],
            &[
                "totp-enroll",
                "import",
                "--user",
                "bob",
                "--from-google-authenticator",
                "/f",
                "--digits",
                "8",
            ][..],
            &["totp-enroll", "status", "--user", "../etc"][..],
            &["totp-enroll", "import", "--user", "bob", "--hotp"][..],
            &[
                "totp-enroll",
                "import",
                "--user",
                "bob",
                "--secret-stdin",
                "--counter",
                "3",
            ][..],
            &[
                "totp-enroll",
                "import",
                "--user",
                "bob",
                "--secret-stdin",
                "--hotp",
                "--period",
                "60",
            ][..],
            &[
                "totp-enroll",
                "import",
                "--user",
                "bob",
                "--secret-stdin",
                "--hotp",
                "--counter",
                "-1",
            ][..],
            &["totp-enroll", "--state-dir", "relative"][..],
            &["totp-enroll", "unlock"][..],
            &["totp-enroll", "--qr", "sixel"][..],
            &["totp-enroll", "frobnicate"][..],
        ] {
            let err = parse(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{argv:?}: {err}");
        }
    }

    #[test]
    fn root_only_words_are_found_in_lines_that_do_not_parse() {
        let found = |line: &str| {
            let words: Vec<&str> = line.split_whitespace().collect();
            root_only_word(&words)
        };
        assert_eq!(found("unlock").as_deref(), Some("`unlock`"));
        assert_eq!(found("import --secret-stdin").as_deref(), Some("`import`"));
        assert_eq!(found("--qr ansi rekey --bogus").as_deref(), Some("`rekey`"));
        assert_eq!(found("status --user").as_deref(), Some("--user"));
        assert_eq!(found("--state-dir=/tmp").as_deref(), Some("--state-dir"));
        assert_eq!(
            found("status --json --key-file").as_deref(),
            Some("--key-file")
        );
        // Words that are values, later positionals or after `--` are not commands.
        assert_eq!(found("--qr list"), None);
        assert_eq!(found("status list"), None);
        assert_eq!(found("-- --user"), None);
        assert_eq!(found("status --bogus"), None);
    }
}
