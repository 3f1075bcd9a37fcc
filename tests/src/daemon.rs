//! pam_totpd for tests: a real daemon process in the foreground with its own config,
//! socket and state directory, stopped by its PID when dropped, and a raw protocol client.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::{read_frame, Reply, Request};

use crate::pam::{target_profile_dir, Fixture};

/// The built daemon. Panics with a clear message if `cargo build` was not run first.
pub fn daemon_path() -> PathBuf {
    let p = target_profile_dir().join("pam_totpd");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` before `cargo test`",
        p.display()
    );
    p
}

/// Makes a fixture reachable by plain users the way a real system is: its directory and
/// the config world-readable (0755, 0644), the state directory root's alone (0700).
/// Writes `config` (TOML) to the fixture's config path.
pub fn write_config(fixture: &Fixture, config: &str) {
    fs::set_permissions(fixture.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&fixture.state_dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(&fixture.config, config).unwrap();
    fs::set_permissions(&fixture.config, fs::Permissions::from_mode(0o644)).unwrap();
}

/// The daemon's socket for a fixture (its directory does not exist yet).
pub fn socket_of(fixture: &Fixture) -> PathBuf {
    fixture.dir.path().join("run").join("socket")
}

/// A config for `fixture` with its socket, and `extra` TOML lines.
pub fn config_text(fixture: &Fixture, extra: &str) -> String {
    format!(
        "state_dir = \"{}\"\nkey_file = \"{}\"\nsocket = \"{}\"\n{extra}\n",
        fixture.state_dir.display(),
        fixture.key_file.display(),
        socket_of(fixture).display()
    )
}

/// A running pam_totpd.
pub struct TestDaemon {
    child: Child,
    pub socket: PathBuf,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl TestDaemon {
    /// `pam_totpd --config CONFIG`, waited for until `socket` accepts connections.
    pub fn start(config: &Path, socket: &Path) -> TestDaemon {
        let mut cmd = Command::new(daemon_path());
        cmd.arg("--config").arg(config);
        Self::spawn(cmd, socket, true)
    }

    /// Starts `cmd` (which runs the daemon somehow) with its output in a log file; with
    /// `wait`, waits until `socket` accepts connections.
    pub fn spawn(mut cmd: Command, socket: &Path, wait: bool) -> TestDaemon {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("daemon.log");
        let out = fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().expect("start pam_totpd");
        let mut d = TestDaemon {
            child,
            socket: socket.to_owned(),
            log,
            _logdir: logdir,
        };
        if wait {
            let deadline = Instant::now() + Duration::from_secs(10);
            while UnixStream::connect(socket).is_err() {
                assert!(!d.exited(), "pam_totpd exited at startup: {}", d.log());
                assert!(
                    Instant::now() < deadline,
                    "pam_totpd did not listen within 10 s: {}",
                    d.log()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and reaped it if so).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// What the daemon logged (it copies its syslog lines to stderr outside systemd).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request as root (the test process), under a 10 s timeout.
    pub fn ask(&self, req: &Request) -> Result<Reply, String> {
        ask(&self.socket, req)
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        // SAFETY: kill(2) on our own child's PID, which is not reaped yet (so not reused).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request, one reply, over a fresh connection.
pub fn ask(socket: &Path, req: &Request) -> Result<Reply, String> {
    let s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // A daemon may answer (Busy) and close before it reads the request: the reply is still
    // there to read after a failed write.
    let written = (&s).write_all(&req.encode());
    let body = read_frame(&mut &s).map_err(|e| match &written {
        Err(w) => format!("write: {w}"),
        Ok(()) => format!("read: {e}"),
    })?;
    Reply::decode(&body).map_err(|e| format!("decode: {e}"))
}

/// A Verify request.
pub fn verify(user: &str, code: &str) -> Request {
    Request::Verify(proto::Verify {
        user: user.into(),
        code: zeroize::Zeroizing::new(code.into()),
        rhost: Some("198.51.100.4".into()),
        service: "test".into(),
        key: None,
    })
}
