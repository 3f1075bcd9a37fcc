//! `pam_totpd [--config PATH]`: pam_totp's local daemon. It verifies codes for PAM callers
//! that are not root (screen lockers), which cannot read the root-only state themselves,
//! and is each host's end of a fleet store. Runs in the foreground and logs to authpriv.
//!
//! Who may ask what is decided by the caller's uid (SO_PEERCRED) alone: root anything, any
//! other uid only about the account whose passwd entry has that uid. Every policy value
//! comes from this daemon's config; a request cannot even carry one.

mod listen;
mod log;
mod server;
mod store;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use common::config::{self, BackendKind};

use crate::log::Level;

const USAGE: &str = "usage: pam_totpd [--config PATH]";

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Option<PathBuf>, String> {
    let mut config = None;
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let a = a
            .into_string()
            .map_err(|a| format!("argument {a:?} is not UTF-8"))?;
        let value = if a == "--config" {
            args.next()
                .ok_or("--config needs a path")?
                .into_string()
                .map_err(|_| "--config: path is not UTF-8".to_owned())?
        } else if let Some(v) = a.strip_prefix("--config=") {
            v.to_owned()
        } else {
            return Err(format!("unknown argument {a:?}"));
        };
        if config.replace(PathBuf::from(&value)).is_some() {
            return Err("--config given twice".into());
        }
    }
    if let Some(p) = &config {
        if !p.is_absolute() {
            return Err("--config needs an absolute path".into());
        }
    }
    Ok(config)
}

fn fatal(what: &str) -> ExitCode {
    log::log(Level::Err, &format!("{what}; not starting"));
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let first: Vec<OsString> = std::env::args_os().skip(1).collect();
    if first.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if first.iter().any(|a| a == "--version" || a == "-V") {
        println!("pam_totpd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config_path = match parse_args(first) {
        Ok(p) => p.unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG)),
        Err(e) => {
            eprintln!("pam_totpd: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    log::open();
    let loaded = match config::load_file(&config_path) {
        Ok(l) => l,
        Err(e) => return fatal(&e.to_string()),
    };
    for w in &loaded.warnings {
        log::log(Level::Warning, &format!("{}: {w}", config_path.display()));
    }
    let config = loaded.config;
    if config.backend == BackendKind::Etcd {
        return fatal("backend \"etcd\" is not served by this version of pam_totpd");
    }
    // Before any thread starts: this reads and clears LISTEN_* from the environment.
    let (listener, source) = match listen::listener(&config.socket) {
        Ok(l) => l,
        Err(e) => return fatal(&e),
    };
    log::log(
        Level::Info,
        &match source {
            listen::Source::Activated => "serving the socket passed by systemd".to_owned(),
            listen::Source::Bound => format!("listening on {}", config.socket.display()),
        },
    );
    server::serve(listener, server::Server::new(config))
}

#[cfg(test)]
mod tests {
    use super::parse_args;
    use std::path::PathBuf;

    fn parse(a: &[&str]) -> Result<Option<PathBuf>, String> {
        parse_args(a.iter().map(Into::into))
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&["--config", "/a"]), Ok(Some("/a".into())));
        assert_eq!(parse(&["--config=/b"]), Ok(Some("/b".into())));
        for bad in [
            &["--config"][..],
            &["--config", "rel"],
            &["--config=/a", "--config=/b"],
            &["--state-dir", "/x"],
            &["-d"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
