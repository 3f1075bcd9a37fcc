//! Configuration: `/etc/security/pam_totp.conf` (TOML, every key optional) merged with
//! module arguments, which win. Unknown keys and options are warnings; a value that does not
//! parse or is out of range, and a file that does not parse, are errors: a broken
//! configuration must never fall back to defaults that could point somewhere else.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::recovery::MAX_RECOVERY_CODES;
use crate::totp::{Algorithm, OtpParams, MAX_WINDOW};

pub const DEFAULT_CONFIG: &str = "/etc/security/pam_totp.conf";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pam_totp";
pub const DEFAULT_KEY_FILE: &str = "/etc/security/pam_totp.key";
pub const DEFAULT_SOCKET: &str = "/run/pam_totp/socket";
const MAX_CONFIG_LEN: u64 = 64 * 1024;

/// The merged, validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub key_file: PathBuf,
    pub nullok: bool,
    pub window: u32,
    pub max_failures: u32,
    pub lockout_secs: u64,
    pub echo: bool,
    pub debug: bool,
    /// `None`: the host name.
    pub issuer: Option<String>,
    /// Algorithm, digits and period for new enrollments.
    pub params: OtpParams,
    pub recovery_codes: usize,
    /// Daemon and fleet keys: config file only, never module options.
    pub backend: BackendKind,
    pub socket: PathBuf,
    pub daemon_timeout_ms: u64,
    pub etcd: EtcdConfig,
    /// The longest lock (progressive lockout doubles each lock up to this).
    pub lockout_max_secs: u64,
    /// HOTP look-ahead: counters after the last accepted one that a code may have.
    pub hotp_window: u32,
    /// Seconds after a code from a remote device during which that device needs none
    /// (0: off).
    pub grace_secs: u64,
    /// One prompt for password and code; the password goes on as PAM_AUTHTOK.
    pub forward_pass: bool,
}

/// Where enrollments live (`backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// The state directory of this host.
    #[default]
    Files,
    /// A fleet store shared by many hosts, reached only through `pam_totpd`.
    Etcd,
}

/// The `[etcd]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub prefix: String,
    pub timeout_ms: u64,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: Vec::new(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            prefix: "/pam_totp/v1/".into(),
            timeout_ms: 2000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            config: DEFAULT_CONFIG.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            key_file: DEFAULT_KEY_FILE.into(),
            nullok: false,
            window: 1,
            max_failures: 5,
            lockout_secs: 300,
            echo: false,
            debug: false,
            issuer: None,
            params: OtpParams::default(),
            recovery_codes: 10,
            backend: BackendKind::Files,
            socket: DEFAULT_SOCKET.into(),
            daemon_timeout_ms: 3000,
            etcd: EtcdConfig::default(),
            lockout_max_secs: 86400,
            hotp_window: crate::hotp::DEFAULT_HOTP_WINDOW,
            grace_secs: 0,
            forward_pass: false,
        }
    }
}

/// A configuration and the warnings met while building it (unknown keys and options).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Builds the configuration from module arguments (`name` or `name=value`): the file named
/// by `config=` (or the default path) is read first, if it exists, then the arguments.
pub fn load_with_args<S: AsRef<str>>(args: &[S]) -> Result<Loaded> {
    load_with_args_from(args, load_file)
}

/// [`load_with_args`], with the file named by `config=` (or the default path) read by
/// `read` instead of [`load_file`]: the module's decision-logic tests give the text of a
/// file without making one owned by root.
pub fn load_with_args_from<S: AsRef<str>>(
    args: &[S],
    read: impl FnOnce(&Path) -> Result<Loaded>,
) -> Result<Loaded> {
    let mut config_path = PathBuf::from(DEFAULT_CONFIG);
    for arg in args {
        if let Some(p) = arg.as_ref().strip_prefix("config=") {
            config_path = absolute_path("config", p)?;
        }
    }
    let mut loaded = read(&config_path)?;
    for arg in args {
        let arg = arg.as_ref();
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg, None),
        };
        if name == "config" {
            continue;
        }
        let flag = |v: Option<&str>| match v {
            None => Ok(true),
            Some(v) => parse_bool(name, v),
        };
        let c = &mut loaded.config;
        match (name, value) {
            ("nullok", v) => c.nullok = flag(v)?,
            ("echo", v) => c.echo = flag(v)?,
            ("debug", v) => c.debug = flag(v)?,
            ("forward_pass", v) => c.forward_pass = flag(v)?,
            ("state_dir", Some(v)) => c.state_dir = absolute_path(name, v)?,
            ("key_file", Some(v)) => c.key_file = absolute_path(name, v)?,
            ("window", Some(v)) => c.window = parse_window(parse_int(name, v)?)?,
            ("max_failures", Some(v)) => c.max_failures = parse_max_failures(parse_int(name, v)?)?,
            ("lockout_secs", Some(v)) => c.lockout_secs = parse_lockout(parse_int(name, v)?)?,
            ("lockout_max_secs", Some(v)) => {
                c.lockout_max_secs = parse_lockout_max(parse_int(name, v)?)?
            }
            ("hotp_window", Some(v)) => c.hotp_window = parse_hotp_window(parse_int(name, v)?)?,
            ("grace_secs", Some(v)) => c.grace_secs = parse_grace(parse_int(name, v)?)?,
            (
                "state_dir" | "key_file" | "window" | "max_failures" | "lockout_secs"
                | "lockout_max_secs" | "hotp_window" | "grace_secs",
                None,
            ) => {
                return Err(Error::Config(format!(
                    "option {name} needs a value ({name}=...)"
                )))
            }
            _ => loaded
                .warnings
                .push(format!("unknown option {arg:?} ignored")),
        }
    }
    Ok(loaded)
}

/// Reads one config file. A missing file gives the defaults; an unsafe one (not root's, or
/// writable by group or others) is an error, since it could redirect the state directory.
pub fn load_file(path: &Path) -> Result<Loaded> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        // No file: the defaults, as an empty one gives.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return from_text(path, ""),
        Err(e) => return Err(Error::Config(format!("{}: {e}", path.display()))),
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::Config(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(Error::Config(format!(
            "{}: must be owned by root and not writable by group or others",
            path.display()
        )));
    }
    // The size from the fstat above, then one read of that many bytes (as state files are
    // read): a file that changes while it is read is the administrator's race either way.
    if meta.len() > MAX_CONFIG_LEN {
        return Err(Error::Config(format!("{}: too large", path.display())));
    }
    let mut bytes = vec![0u8; meta.len() as usize];
    (&file)
        .read_exact(&mut bytes)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::Config(format!(
            "{}: stream did not contain valid UTF-8",
            path.display()
        ))
    })?;
    from_text(path, &text)
}

/// The configuration that a config file at `path` holding `text` gives, as [`load_file`]
/// makes it once it has checked and read the file.
pub fn from_text(path: &Path, text: &str) -> Result<Loaded> {
    let mut config = Config {
        config: path.to_owned(),
        ..Config::default()
    };
    // The packaged file sets nothing (every key is a comment): that text is an empty TOML
    // table, and applying one changes nothing, so the parser is skipped.
    if only_comments(text) {
        return Ok(Loaded {
            config,
            warnings: Vec::new(),
        });
    }
    let warnings = apply_toml(&mut config, text)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(Loaded { config, warnings })
}

/// Whether `text` is, as TOML, blank lines and comments only: no control character but
/// tab and LF (TOML allows no other in a comment; a CR goes to the parser), and each line
/// is spaces and tabs, optionally followed by `#` and the comment. Anything else goes to
/// the parser. (Runs on every login: 32-byte blocks without an early exit, which the
/// compiler vectorizes, and `str::split` on a char, which searches word by word.)
fn only_comments(text: &str) -> bool {
    let control = |c: u8| (c < 0x20 && c != b'\t' && c != b'\n') || c == 0x7f;
    let mut blocks = text.as_bytes().chunks_exact(32);
    for block in &mut blocks {
        if block.iter().fold(false, |seen, &c| seen | control(c)) {
            return false;
        }
    }
    if blocks.remainder().iter().any(|&c| control(c)) {
        return false;
    }
    text.split('\n').all(
        |line| match line.bytes().find(|&c| c != b' ' && c != b'\t') {
            None => true,
            Some(c) => c == b'#',
        },
    )
}

/// Applies the keys of a config file's text; returns warnings for unknown keys.
pub fn apply_toml(config: &mut Config, text: &str) -> std::result::Result<Vec<String>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let mut warnings = Vec::new();
    let mut algorithm = config.params.algorithm();
    let mut digits = config.params.digits();
    let mut period = config.params.period();
    for (key, value) in &table {
        let k = key.as_str();
        let int = || -> std::result::Result<i64, String> {
            value
                .as_integer()
                .ok_or_else(|| format!("{k} must be an integer"))
        };
        let boolean = || {
            value
                .as_bool()
                .ok_or_else(|| format!("{k} must be true or false"))
        };
        let string = || {
            value
                .as_str()
                .ok_or_else(|| format!("{k} must be a string"))
        };
        let e = |e: Error| e.to_string();
        match k {
            "state_dir" => config.state_dir = absolute_path(k, string()?).map_err(e)?,
            "key_file" => config.key_file = absolute_path(k, string()?).map_err(e)?,
            "nullok" => config.nullok = boolean()?,
            "echo" => config.echo = boolean()?,
            "debug" => config.debug = boolean()?,
            "forward_pass" => config.forward_pass = boolean()?,
            "hotp_window" => config.hotp_window = parse_hotp_window(int()?).map_err(e)?,
            "grace_secs" => config.grace_secs = parse_grace(int()?).map_err(e)?,
            "window" => config.window = parse_window(int()?).map_err(e)?,
            "max_failures" => config.max_failures = parse_max_failures(int()?).map_err(e)?,
            "lockout_secs" => config.lockout_secs = parse_lockout(int()?).map_err(e)?,
            "lockout_max_secs" => config.lockout_max_secs = parse_lockout_max(int()?).map_err(e)?,
            "issuer" => config.issuer = Some(parse_issuer(string()?).map_err(e)?),
            "algorithm" => algorithm = string()?.parse::<Algorithm>().map_err(e)?,
            "digits" => {
                digits = u8::try_from(int()?).map_err(|_| "digits must be 6 to 8".to_owned())?
            }
            "period" => {
                period = u32::try_from(int()?)
                    .map_err(|_| "period must be 1 to 3600 seconds".to_owned())?
            }
            "recovery_codes" => {
                let n = int()?;
                if !(0..=MAX_RECOVERY_CODES as i64).contains(&n) {
                    return Err(format!("recovery_codes must be 0 to {MAX_RECOVERY_CODES}"));
                }
                config.recovery_codes = n as usize;
            }
            "backend" => {
                config.backend = match string()? {
                    "files" => BackendKind::Files,
                    "etcd" => BackendKind::Etcd,
                    v => return Err(format!("backend {v:?}: must be \"files\" or \"etcd\"")),
                }
            }
            "socket" => config.socket = absolute_path(k, string()?).map_err(e)?,
            "daemon_timeout_ms" => config.daemon_timeout_ms = parse_ms(k, int()?)?,
            "etcd" => {
                let t = value.as_table().ok_or("etcd must be a table ([etcd])")?;
                apply_etcd(&mut config.etcd, t, &mut warnings)?;
            }
            _ => warnings.push(format!("unknown key {k:?} ignored")),
        }
    }
    config.params = OtpParams::new(algorithm, digits, period).map_err(|e| e.to_string())?;
    if config.backend == BackendKind::Etcd && config.etcd.endpoints.is_empty() {
        return Err("backend = \"etcd\" needs [etcd] endpoints".into());
    }
    Ok(warnings)
}

fn parse_ms(k: &str, n: i64) -> std::result::Result<u64, String> {
    if !(1..=600_000).contains(&n) {
        return Err(format!("{k}={n}: must be 1 to 600000 (milliseconds)"));
    }
    Ok(n as u64)
}

/// The `[etcd]` table's keys.
fn apply_etcd(
    etcd: &mut EtcdConfig,
    table: &toml::Table,
    warnings: &mut Vec<String>,
) -> std::result::Result<(), String> {
    for (key, value) in table {
        let k = format!("etcd.{key}");
        let string = || {
            value
                .as_str()
                .ok_or_else(|| format!("{k} must be a string"))
        };
        let path = || absolute_path(&k, string()?).map_err(|e| e.to_string());
        match key.as_str() {
            "endpoints" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| format!("{k} must be a list of URLs"))?;
                etcd.endpoints = list
                    .iter()
                    .map(|v| {
                        let url = v.as_str().ok_or_else(|| format!("{k}: URLs are strings"))?;
                        check_endpoint(url).map(|()| url.to_owned())
                    })
                    .collect::<std::result::Result<_, _>>()?;
            }
            "tls_ca" => etcd.tls_ca = Some(path()?),
            "tls_cert" => etcd.tls_cert = Some(path()?),
            "tls_key" => etcd.tls_key = Some(path()?),
            "prefix" => {
                let p = string()?;
                if p.is_empty() || p.len() > 256 || p.chars().any(char::is_control) {
                    return Err(format!("{k}: 1 to 256 characters, no control characters"));
                }
                etcd.prefix = p.to_owned();
            }
            "timeout_ms" => {
                let n = value
                    .as_integer()
                    .ok_or_else(|| format!("{k} must be an integer"))?;
                etcd.timeout_ms = parse_ms(&k, n)?;
            }
            _ => warnings.push(format!("unknown key {k:?} ignored")),
        }
    }
    Ok(())
}

/// `https://host:port`; `http://` only on a loopback address (SPEC.md).
fn check_endpoint(url: &str) -> std::result::Result<(), String> {
    let bad =
        || format!("etcd endpoint {url:?}: must be https://host:port (http:// only on loopback)");
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty()
        || port.parse::<u16>().map_or(true, |p| p == 0)
        || host.contains(['/', '@', '?', '#'])
        || host.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(bad());
    }
    if !tls {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(bad());
        }
    }
    Ok(())
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::Config(format!(
            "{name}={v:?}: expected true or false"
        ))),
    }
}

fn parse_int(name: &str, v: &str) -> Result<i64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Config(format!("{name}={v:?}: not a number")));
    }
    v.parse()
        .map_err(|_| Error::Config(format!("{name}={v:?}: number too large")))
}

fn parse_window(n: i64) -> Result<u32> {
    if !(0..=i64::from(MAX_WINDOW)).contains(&n) {
        return Err(Error::Config(format!(
            "window={n}: must be 0 to {MAX_WINDOW}"
        )));
    }
    Ok(n as u32)
}

fn parse_hotp_window(n: i64) -> Result<u32> {
    use crate::hotp::MAX_HOTP_WINDOW;
    if !(1..=i64::from(MAX_HOTP_WINDOW)).contains(&n) {
        return Err(Error::Config(format!(
            "hotp_window={n}: must be 1 to {MAX_HOTP_WINDOW}"
        )));
    }
    Ok(n as u32)
}

/// Longest `grace_secs`: 90 days, three times the longest "remember this device" of the
/// tools this replaces.
pub const MAX_GRACE_SECS: u64 = 90 * 24 * 3600;

fn parse_grace(n: i64) -> Result<u64> {
    if !(0..=MAX_GRACE_SECS as i64).contains(&n) {
        return Err(Error::Config(format!(
            "grace_secs={n}: must be 0 to {MAX_GRACE_SECS}"
        )));
    }
    Ok(n as u64)
}

fn parse_max_failures(n: i64) -> Result<u32> {
    if !(0..=10_000).contains(&n) {
        return Err(Error::Config(format!(
            "max_failures={n}: must be 0 to 10000"
        )));
    }
    Ok(n as u32)
}

fn parse_lockout(n: i64) -> Result<u64> {
    const YEAR: i64 = 366 * 24 * 3600;
    if !(0..=YEAR).contains(&n) {
        return Err(Error::Config(format!(
            "lockout_secs={n}: must be 0 to {YEAR}"
        )));
    }
    Ok(n as u64)
}

fn parse_lockout_max(n: i64) -> Result<u64> {
    const YEAR: i64 = 366 * 24 * 3600;
    if !(0..=YEAR).contains(&n) {
        return Err(Error::Config(format!(
            "lockout_max_secs={n}: must be 0 to {YEAR}"
        )));
    }
    Ok(n as u64)
}

fn parse_issuer(v: &str) -> Result<String> {
    if v.is_empty() || v.len() > 64 || v.contains(':') || v.chars().any(char::is_control) {
        return Err(Error::Config(format!(
            "issuer {v:?}: must be 1 to 64 characters, no ':' or control characters"
        )));
    }
    Ok(v.to_owned())
}

fn absolute_path(name: &str, v: &str) -> Result<PathBuf> {
    let p = Path::new(v);
    if !p.is_absolute() || v.contains('\0') || p.components().any(|c| c.as_os_str() == "..") {
        return Err(Error::Config(format!(
            "{name}={v:?}: must be an absolute path without '..'"
        )));
    }
    Ok(p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Loaded> {
        // A config path that does not exist: defaults plus arguments.
        let mut v = vec!["config=/nonexistent/pam_totp.conf"];
        v.extend_from_slice(a);
        load_with_args(&v)
    }

    #[test]
    fn defaults_and_overrides() {
        let l = args(&[]).unwrap();
        assert_eq!(l.config.window, 1);
        assert_eq!(l.config.state_dir, Path::new(DEFAULT_STATE_DIR));
        let l = args(&["nullok", "window=3", "state_dir=/tmp/x", "frobnicate"]).unwrap();
        assert!(l.config.nullok);
        assert_eq!(l.config.window, 3);
        assert_eq!(l.config.state_dir, Path::new("/tmp/x"));
        assert_eq!(l.warnings.len(), 1);
        // The daemon's keys are config-file only: as module options they are ignored.
        let l = args(&["socket=/tmp/evil", "backend=etcd", "daemon_timeout_ms=1"]).unwrap();
        assert_eq!(l.warnings.len(), 3);
        assert_eq!(l.config.socket, Path::new(DEFAULT_SOCKET));
        assert_eq!(l.config.backend, BackendKind::Files);
        assert_eq!(l.config.daemon_timeout_ms, 3000);
    }

    #[test]
    fn invalid_values_are_errors() {
        for bad in [
            "window=abc",
            "window=99",
            "window=-1",
            "window=",
            "state_dir=relative",
            "key_file=/a/../b",
            "max_failures=x",
            "lockout_secs=1e9",
            "lockout_max_secs=99999999",
            "lockout_max_secs=-1",
            "lockout_max_secs",
            "nullok=maybe",
            "window",
            "config=relative",
        ] {
            assert!(matches!(args(&[bad]), Err(Error::Config(_))), "{bad}");
        }
    }

    #[test]
    fn lockout_max_secs_from_options_and_file() {
        assert_eq!(Config::default().lockout_max_secs, 86400);
        let c = args(&["lockout_max_secs=3600"]).unwrap().config;
        assert_eq!(c.lockout_max_secs, 3600);
        let mut c = Config::default();
        apply_toml(&mut c, "lockout_max_secs = 7200").unwrap();
        assert_eq!(c.lockout_max_secs, 7200);
        let mut c = Config::default();
        assert!(apply_toml(&mut c, "lockout_max_secs = 40000000").is_err());
    }

    #[test]
    fn hotp_window_grace_secs_and_forward_pass() {
        let d = Config::default();
        assert_eq!(
            (d.hotp_window, d.grace_secs, d.forward_pass),
            (10, 0, false)
        );
        let c = args(&["hotp_window=20", "grace_secs=600", "forward_pass"])
            .unwrap()
            .config;
        assert_eq!(
            (c.hotp_window, c.grace_secs, c.forward_pass),
            (20, 600, true)
        );
        let mut c = Config::default();
        apply_toml(
            &mut c,
            "hotp_window = 1\ngrace_secs = 7776000\nforward_pass = true",
        )
        .unwrap();
        assert_eq!(
            (c.hotp_window, c.grace_secs, c.forward_pass),
            (1, 7_776_000, true)
        );
        for bad in [
            "hotp_window=0",
            "hotp_window=101",
            "hotp_window",
            "grace_secs=7776001",
            "grace_secs=-5",
            "grace_secs",
            "forward_pass=2",
        ] {
            assert!(matches!(args(&[bad]), Err(Error::Config(_))), "{bad}");
        }
        for bad in ["hotp_window = 0", "grace_secs = -1", "forward_pass = 1"] {
            assert!(apply_toml(&mut Config::default(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn comment_only_text_skips_the_parser_only_where_the_parser_finds_nothing() {
        let shipped = include_str!("../../packaging/pam_totp.conf");
        for (text, skipped) in [
            (shipped, true),
            ("", true),
            ("\n\n", true),
            ("# a\n\t # b\t#c\n   \n#", true),
            ("# crlf\r\n", false),
            ("# tab\tis allowed", true),
            ("# \u{e9}t\u{e9}", true),
            ("window = 2", false),
            ("# a\nwindow = 2 # b", false),
            ("# bell \u{7}", false),
            ("# del \u{7f}", false),
            ("# bare cr\r", false),
            ("# cr\r in a comment\n", false),
            ("  x", false),
            ("[etcd]", false),
        ] {
            assert_eq!(only_comments(text), skipped, "{text:?}");
            if skipped {
                let table: toml::Table = toml::from_str(text).unwrap();
                assert!(table.is_empty(), "{text:?}");
            }
        }
        // Where the parser refuses a comment, so does the shortcut (it sends it on).
        for bad in ["# bell \u{7}", "# bare cr\r", "# nul \u{0}"] {
            assert!(toml::from_str::<toml::Table>(bad).is_err(), "{bad:?}");
            assert!(!only_comments(bad), "{bad:?}");
        }
    }

    #[test]
    fn shipped_file_loads_as_the_defaults() {
        let shipped = include_str!("../../packaging/pam_totp.conf");
        let mut c = Config::default();
        assert!(apply_toml(&mut c, shipped).unwrap().is_empty());
        assert_eq!(c, Config::default());
        // load_file insists on a root-owned file: this part needs root (the suite's user).
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pam_totp.conf");
        std::fs::write(&path, shipped).unwrap();
        let loaded = load_file(&path).unwrap();
        assert!(loaded.warnings.is_empty());
        assert_eq!(
            loaded.config,
            Config {
                config: path.clone(),
                ..Config::default()
            }
        );
        // Read whole: one key after the comments is seen.
        std::fs::write(&path, format!("{shipped}\nwindow = 3\n")).unwrap();
        assert_eq!(load_file(&path).unwrap().config.window, 3);
    }

    #[test]
    fn file_keys_and_errors() {
        let mut c = Config::default();
        let w = apply_toml(
            &mut c,
            "window = 2\nnullok = true\nissuer = \"Example\"\nalgorithm = \"SHA256\"\ndigits = 8\nperiod = 60\nrecovery_codes = 5\nextra = 1\n",
        )
        .unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(c.window, 2);
        assert_eq!(c.params, OtpParams::new(Algorithm::SHA256, 8, 60).unwrap());
        assert_eq!(c.issuer.as_deref(), Some("Example"));
        assert_eq!(c.backend, BackendKind::Files);
        assert_eq!(c.socket, Path::new(DEFAULT_SOCKET));
        assert_eq!(c.daemon_timeout_ms, 3000);
        let mut c = Config::default();
        let w = apply_toml(
            &mut c,
            "backend = \"etcd\"\nsocket = \"/run/x/s\"\ndaemon_timeout_ms = 50\n\
             [etcd]\nendpoints = [\"https://e1:2379\", \"http://127.0.0.1:2379\", \"http://[::1]:2379\"]\n\
             tls_ca = \"/etc/ca.pem\"\nprefix = \"/f/\"\ntimeout_ms = 900\nfrob = 1\n",
        )
        .unwrap();
        assert_eq!(w, vec!["unknown key \"etcd.frob\" ignored".to_owned()]);
        assert_eq!(c.backend, BackendKind::Etcd);
        assert_eq!(c.socket, Path::new("/run/x/s"));
        assert_eq!(c.daemon_timeout_ms, 50);
        assert_eq!(c.etcd.endpoints.len(), 3);
        assert_eq!(c.etcd.tls_ca.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!((c.etcd.prefix.as_str(), c.etcd.timeout_ms), ("/f/", 900));
        for bad in [
            "window = \"2\"",
            "window = 11",
            "digits = 9",
            "period = 0",
            "algorithm = \"MD5\"",
            "state_dir = \"rel\"",
            "issuer = \"a:b\"",
            "this is not toml",
            "recovery_codes = 65",
            "backend = \"ldap\"",
            "backend = \"etcd\"",
            "socket = \"run/sock\"",
            "daemon_timeout_ms = 0",
            "etcd = 1",
            "[etcd]\nendpoints = [\"http://192.0.2.1:2379\"]",
            "[etcd]\nendpoints = [\"https://h\"]",
            "[etcd]\nendpoints = [\"ftp://h:1\"]",
            "[etcd]\ntls_ca = \"ca.pem\"",
            "[etcd]\ntimeout_ms = 0",
        ] {
            assert!(apply_toml(&mut Config::default(), bad).is_err(), "{bad}");
        }
    }
}
