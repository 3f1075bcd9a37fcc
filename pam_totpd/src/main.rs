//! `pam_totpd [--config PATH]`: pam_totp's local daemon. It verifies codes for PAM callers
//! that are not root (screen lockers), which cannot read the root-only state themselves,
//! and is each host's end of a fleet store. Runs in the foreground and logs to authpriv.
//!
//! Who may ask what is decided by the caller's uid (SO_PEERCRED) alone: root anything, any
//! other uid only about the account whose passwd entry has that uid. Every policy value
//! comes from this daemon's config; a request cannot even carry one.

mod admin;
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
    let fleet = match config.backend {
        BackendKind::Etcd => match fleet_config(&config.etcd) {
            Ok(c) => Some(c),
            Err(e) => return fatal(&format!("{}: {e}", config_path.display())),
        },
        BackendKind::Files => None,
    };
    // Before any thread starts: this reads and clears LISTEN_* from the environment.
    let (listener, source) = match listen::listener(&config.socket) {
        Ok(l) => l,
        Err(e) => return fatal(&e),
    };
    let storage = match fleet {
        None => store::Storage::Files,
        Some(c) => {
            let what = format!(
                "fleet store: etcd at {} under {:?}, timeout_ms {}",
                c.endpoints.join(", "),
                c.prefix,
                c.timeout_ms
            );
            // Connections are made lazily: a cluster that is down now is not fatal, its
            // logins fail closed until it answers.
            match pam_totp_etcd::EtcdBackend::connect(c) {
                Ok(b) => {
                    log::log(Level::Info, &what);
                    store::Storage::Fleet(b)
                }
                Err(e) => return fatal(&e.to_string()),
            }
        }
    };
    log::log(
        Level::Info,
        &match source {
            listen::Source::Activated => "serving the socket passed by systemd".to_owned(),
            listen::Source::Bound => format!("listening on {}", config.socket.display()),
        },
    );
    server::serve(listener, server::Server::new(config, storage))
}

/// The fleet store's settings from the `[etcd]` table: the TLS files come as a set.
fn fleet_config(e: &config::EtcdConfig) -> Result<pam_totp_etcd::Config, String> {
    let tls = match (&e.tls_ca, &e.tls_cert, &e.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(pam_totp_etcd::TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, None, None) => None,
        _ => return Err("[etcd] tls_ca, tls_cert and tls_key go together".into()),
    };
    // Checked before the socket is bound, so that a daemon that cannot work never holds it.
    if tls.is_none() {
        if let Some(url) = e.endpoints.iter().find(|u| u.starts_with("https://")) {
            return Err(format!(
                "[etcd] endpoint {url} needs tls_ca, tls_cert and tls_key"
            ));
        }
    }
    if let Some(t) = &tls {
        for p in [&t.ca, &t.cert, &t.key] {
            std::fs::File::open(p).map_err(|err| format!("[etcd] {}: {err}", p.display()))?;
        }
    }
    Ok(pam_totp_etcd::Config {
        endpoints: e.endpoints.clone(),
        tls,
        prefix: e.prefix.clone(),
        timeout_ms: e.timeout_ms,
    })
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
