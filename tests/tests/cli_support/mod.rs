//! Driving the built `totp-enroll`: where it is, its path options for a [`Fixture`], a
//! session in a real pseudo-terminal, and reading back what it printed (the secret, the
//! URI, the recovery codes, the QR code as a module grid).
//!
//! Each `cli_*` test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{AuthRequest, OtpParams, Outcome, TotpSecret, UserName};
use integration_tests::Store;

use integration_tests::pam::{now, run_with_timeout, target_profile_dir, Fixture, Run};

/// Upper bound of every wait on the CLI.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The built CLI. Panics with a clear message if `cargo build` was not run first.
pub fn binary() -> PathBuf {
    let p = target_profile_dir().join("totp-enroll");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` before `cargo test`",
        p.display()
    );
    p
}

/// `--config C --state-dir S --key-file K` pointing at the fixture.
pub fn path_args(f: &Fixture) -> Vec<String> {
    vec![
        "--config".into(),
        f.config.display().to_string(),
        "--state-dir".into(),
        f.state_dir.display().to_string(),
        "--key-file".into(),
        f.key_file.display().to_string(),
    ]
}

/// Runs the CLI (as root) on the fixture with `args` and `stdin`, no terminal.
pub fn run(f: &Fixture, args: &[&str], stdin: &[u8]) -> Run {
    let mut cmd = Command::new(binary());
    cmd.args(path_args(f)).args(args);
    run_with_timeout(cmd, stdin, TIMEOUT)
}

/// Like [`run`], and fails the test unless it exits 0.
pub fn run_ok(f: &Fixture, args: &[&str], stdin: &[u8]) -> Run {
    let r = run(f, args, stdin);
    assert_eq!(r.status, Some(0), "totp-enroll {args:?}: {r:?}");
    r
}

/// The policy of the default configuration, at the current time.
pub fn request() -> AuthRequest<'static> {
    AuthRequest {
        now: now(),
        window: 1,
        max_failures: 5,
        lockout_secs: 300,
        rhost: None,
        lockout_max_secs: 86400,
        hotp_window: 10,
        grace_secs: 0,
        device: None,
    }
}

/// One login transaction of `user` with `input`, now.
pub fn authenticate(store: &Store, user: &str, input: &str) -> Outcome {
    store
        .authenticate(&UserName::parse(user).unwrap(), input, &request())
        .expect("authenticate")
}

/// The code of `secret` for now.
pub fn code_now(secret: &TotpSecret, params: &OtpParams) -> String {
    common::totp::code_at(secret, params, now() as u64).to_string()
}

/// Asserts `path` is a regular file owned by root with mode 0600.
pub fn assert_root_0600(path: &Path) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(m.is_file(), "{} is not a regular file", path.display());
    assert_eq!(m.uid(), 0, "{} not owned by root", path.display());
    assert_eq!(m.mode() & 0o7777, 0o600, "{} mode", path.display());
}

/// Whether the state directory holds anything for `user` (state, counters or temp file).
pub fn has_files_for(state_dir: &Path, user: &str) -> bool {
    std::fs::read_dir(state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .any(|n| n == user || n.contains(&format!(".{user}.")))
}

/// What an enrollment printed before its code prompt.
pub struct Shown {
    /// `Secret:` with the grouping spaces removed.
    pub secret_b32: String,
    pub uri: String,
}

impl Shown {
    pub fn secret(&self) -> TotpSecret {
        TotpSecret::from_base32(&self.secret_b32).expect("printed secret is base32")
    }
}

/// The CLI in a pseudo-terminal of a given size.
pub struct Session {
    pub session: rexpect::session::PtySession,
    /// Raw bytes seen so far (rexpect hands bytes over as Latin-1 chars).
    seen: Vec<u8>,
}

impl Session {
    /// `program args` (e.g. [`binary`] with [`path_args`]) in a new pty of `columns` x 60;
    /// the size is set with stty before the program starts.
    pub fn spawn(program: &Path, args: &[String], columns: u16) -> Session {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("stty cols {columns} rows 60 && exec \"$0\" \"$@\""))
            .arg(program)
            .args(args);
        Self::spawn_command(cmd)
    }

    /// Any command in a pty (its size left at 0x0, "unknown").
    pub fn spawn_command(cmd: Command) -> Session {
        // A suite started with SIGINT ignored (a background job of a shell without job
        // control) would pass that on, and ^C sent to the terminal would do nothing: the
        // program gets SIGINT as from a user's terminal. Setting a disposition to its
        // default is sound whatever else runs.
        // SAFETY: no handler is installed; SIG_DFL has no preconditions.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGINT,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
        let session = rexpect::session::spawn_command(cmd, Some(TIMEOUT.as_millis() as u64))
            .expect("spawn in a pty");
        Session {
            session,
            seen: Vec::new(),
        }
    }

    /// The CLI as root on the fixture, 120 columns wide.
    pub fn enroll(f: &Fixture, extra: &[&str]) -> Session {
        let mut args = path_args(f);
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(&binary(), &args, 120)
    }

    /// Everything seen so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Waits for `needle` (ASCII), failing the test with what was seen on timeout or end.
    pub fn expect(&mut self, needle: &str) {
        match self.session.exp_string(needle) {
            Ok(before) => {
                self.seen.extend(before.chars().map(|c| c as u8));
                self.seen.extend_from_slice(needle.as_bytes());
            }
            Err(e) => panic!("waiting for {needle:?}: {e}\nseen so far:\n{}", self.text()),
        }
    }

    /// Waits for `prefix` and returns the rest of its line.
    pub fn line_after(&mut self, prefix: &str) -> String {
        self.expect(prefix);
        let start = self.seen.len();
        self.expect("\n");
        String::from_utf8_lossy(&self.seen[start..self.seen.len() - 1])
            .trim_end_matches('\r')
            .to_owned()
    }

    /// Reads the `Secret:` and `URI:` lines and waits for the code prompt.
    pub fn shown(&mut self) -> Shown {
        let secret = self.line_after("Secret: ");
        let uri = self.line_after("URI: ");
        self.expect("code your app shows now");
        Shown {
            secret_b32: secret.replace(' ', ""),
            uri,
        }
    }

    pub fn send_line(&mut self, line: &str) {
        self.session.send_line(line).expect("write to pty");
    }

    /// Sends a control character (`'c'` for Ctrl-C, `'d'` for Ctrl-D).
    pub fn control(&mut self, c: char) {
        self.session.send_control(c).expect("write to pty");
    }

    /// Reads to the end and returns (all output, exit code or `None` if killed by a signal,
    /// the signal).
    pub fn finish(mut self) -> (String, Option<i32>, Option<nix::sys::signal::Signal>) {
        match self.session.exp_eof() {
            Ok(rest) => self.seen.extend(rest.chars().map(|c| c as u8)),
            Err(e) => panic!("did not finish: {e}; output:\n{}", self.text()),
        }
        let text = self.text();
        match self.session.process().wait().expect("wait") {
            rexpect::process::WaitStatus::Exited(_, code) => (text, Some(code), None),
            rexpect::process::WaitStatus::Signaled(_, sig, _) => (text, None, Some(sig)),
            other => panic!("unexpected wait status {other:?}"),
        }
    }

    /// The recovery codes printed after `Recovery codes:`, up to the first empty line.
    pub fn recovery_codes(&mut self) -> Vec<String> {
        self.expect("Recovery codes:\r\n");
        let mut codes = Vec::new();
        loop {
            let line = self.line_after("");
            if line.trim().is_empty() {
                break;
            }
            codes.push(line.trim().to_owned());
        }
        codes
    }
}

/// Recovery codes printed after `Recovery codes:` in a captured output.
pub fn recovery_codes_in(output: &str) -> Vec<String> {
    output
        .split("Recovery codes:")
        .nth(1)
        .expect("no `Recovery codes:` line")
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The QR code drawn between the `Scan this QR code` line and the line after it, as rows
/// of modules (`true` = dark). `drawn_is_dark`: whether the glyphs (the foreground) stand
/// for dark modules (`ansi`, explicit black on white) or light ones (`utf8`, drawn for a
/// light-on-dark terminal). ANSI colour sequences are removed first.
pub fn qr_modules(screen: &str, drawn_is_dark: bool) -> Vec<Vec<bool>> {
    let after = screen
        .split("Scan this QR code with your authenticator app:")
        .nth(1)
        .expect("no QR code header");
    let mut rows: Vec<Vec<bool>> = Vec::new();
    for raw in after.lines().skip_while(|l| l.trim().is_empty()) {
        let line = strip_sgr(raw.trim_end_matches('\r'));
        if line.is_empty()
            || !line
                .chars()
                .all(|c| " \u{2580}\u{2584}\u{2588}".contains(c))
        {
            break;
        }
        let mut top = Vec::new();
        let mut bottom = Vec::new();
        for c in line.chars() {
            let (t, b) = match c {
                ' ' => (false, false),
                '\u{2580}' => (true, false),
                '\u{2584}' => (false, true),
                _ => (true, true),
            };
            top.push(t == drawn_is_dark);
            bottom.push(b == drawn_is_dark);
        }
        rows.push(top);
        rows.push(bottom);
    }
    assert!(!rows.is_empty(), "no QR code rows in:\n{screen}");
    let width = rows[0].len();
    assert!(
        rows.iter().all(|r| r.len() == width),
        "QR rows of different widths"
    );
    rows
}

fn strip_sgr(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes a module grid as a camera would see it: scaled up to pixels, with a wide margin
/// of the terminal's background around it (dark or light), through rqrr's finder-pattern
/// detection. Returns the text of every code found.
pub fn decode_qr(modules: &[Vec<bool>], background_dark: bool) -> Vec<String> {
    const SCALE: usize = 6;
    const MARGIN: usize = 8;
    let h = modules.len();
    let w = modules[0].len();
    let (pw, ph) = ((w + 2 * MARGIN) * SCALE, (h + 2 * MARGIN) * SCALE);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(pw, ph, |x, y| {
        let (mx, my) = (x / SCALE, y / SCALE);
        let inside = mx >= MARGIN && my >= MARGIN && mx - MARGIN < w && my - MARGIN < h;
        let dark = if inside {
            modules[my - MARGIN][mx - MARGIN]
        } else {
            background_dark
        };
        if dark {
            0
        } else {
            255
        }
    });
    img.detect_grids()
        .iter()
        .filter_map(|g| g.decode().ok().map(|(_, text)| text))
        .collect()
}

/// The built binary copied as root, mode 4755, into a fresh directory (mode 0755, so every
/// user reaches it) on a file system that honours the setuid bit.
pub struct Installed {
    dir: tempfile::TempDir,
}

/// Whether the file system holding `dir` is mounted nosuid (from /proc/self/mountinfo:
/// the mount point that is the longest prefix of `dir`).
fn nosuid(dir: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (point, opts) = (*f.get(4)?, *f.get(5)?);
            dir.starts_with(point)
                .then(|| (point.len(), opts.split(',').any(|o| o == "nosuid")))
        })
        .max_by_key(|(len, _)| *len)
        .is_some_and(|(_, nosuid)| nosuid)
}

impl Installed {
    pub fn new() -> Installed {
        let parent = ["/tmp", "/var/tmp", "/var/lib"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_dir() && !nosuid(p))
            .expect("no directory on a file system that honours setuid");
        let dir = tempfile::Builder::new()
            .prefix("totp-enroll-setuid-")
            .tempdir_in(parent)
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("totp-enroll");
        fs::copy(binary(), &bin).unwrap();
        std::os::unix::fs::chown(&bin, Some(0), Some(0)).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
        Installed { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("totp-enroll")
    }
}
