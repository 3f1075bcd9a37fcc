//! What pam_totp.so logs, read from the syslog socket: pamtester runs in a private mount
//! namespace (`unshare -m`) where a datagram socket of ours is bind-mounted over /dev/log,
//! so the host's logger and every other process keep theirs. A host without /dev/log gets
//! an empty placeholder file there (a non-socket: other processes' syslog calls fail as they
//! did before), removed when the test ends.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use integration_tests::pam::*;

const AUTHPRIV: u32 = 10 << 3;
const ERR: u32 = 3;
const WARNING: u32 = 4;
const NOTICE: u32 = 5;
const INFO: u32 = 6;
const DEBUG: u32 = 7;

/// One listener at a time: the tests of this file share the /dev/log placeholder, which the
/// first one's drop would otherwise remove under the other.
static SERIAL: Mutex<()> = Mutex::new(());

/// Our stand-in for /dev/log.
struct Listener {
    socket: UnixDatagram,
    path: PathBuf,
    /// We created /dev/log as a placeholder (removed on drop).
    placeholder: bool,
    /// Dropped last, after the placeholder is gone.
    _serial: MutexGuard<'static, ()>,
}

impl Listener {
    fn new(dir: &Path) -> Listener {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dev_log = Path::new("/dev/log");
        let placeholder = std::fs::symlink_metadata(dev_log).is_err();
        if placeholder {
            std::fs::File::create(dev_log).expect("create /dev/log placeholder");
        }
        let path = dir.join("log.sock");
        Listener {
            socket: UnixDatagram::bind(&path).unwrap(),
            path,
            placeholder,
            _serial: serial,
        }
    }

    /// pamtester as [`pamtester`] runs it, but logging to us.
    fn pamtester(&self, service: &str, user: &str, input: &str, rhost: &str) -> Run {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            integration_tests::mount_propagation(),
            "sh",
            "-c",
        ])
        .arg("mount --bind \"$0\" /dev/log && exec /usr/bin/pamtester \"$@\"")
        .arg(&self.path)
        .args([
            "-v",
            "-I",
            &format!("rhost={rhost}"),
            service,
            user,
            "authenticate",
        ]);
        let run = run_with_timeout(
            cmd,
            format!("{input}\n").as_bytes(),
            Duration::from_secs(60),
        );
        assert!(
            !run.stderr.contains("unshare:") && !run.stderr.contains("mount:"),
            "cannot set up the private /dev/log: {run:?}"
        );
        run
    }

    /// Every line received so far: (priority, text).
    fn drain(&self) -> Vec<(u32, String)> {
        self.socket.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.socket.recv(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            // "<PRI>Mmm dd hh:mm:ss ident[pid]: text"
            let pri = line[1..line.find('>').unwrap()].parse().unwrap();
            out.push((pri, line));
        }
        out
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.placeholder {
            let _ = std::fs::remove_file("/dev/log");
        }
    }
}

fn with(lines: &[(u32, String)], pri: u32) -> Vec<&str> {
    lines
        .iter()
        .filter(|(p, _)| *p == pri)
        .map(|(_, l)| l.as_str())
        .collect()
}

#[test]
fn decisions_are_logged_to_authpriv_with_service_user_and_rhost_never_the_code() {
    let f = Fixture::new();
    let recovery = f.enroll("logan", 1);
    let log = Listener::new(f.dir.path());
    let svc = f.etc_service("log", "");
    let rhost = "198.51.100.4";
    while now() % 30 >= 27 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let code = f.code_at(now());
    let wrong = f.wrong_code();
    let who = format!("service={} user=logan rhost={rhost}", svc.name);

    assert!(log.pamtester(&svc.name, "logan", &wrong, rhost).status == Some(1));
    let lines = log.drain();
    let notices = with(&lines, AUTHPRIV | NOTICE);
    assert_eq!(notices.len(), 1, "one line per decision: {lines:?}");
    assert!(
        notices[0].contains("wrong code") && notices[0].contains(&who),
        "{lines:?}"
    );
    // pam_syslog's own prefix names the module and the service.
    assert!(
        notices[0].contains(&format!("libpam_totp({}:auth): ", svc.name)),
        "{lines:?}"
    );

    assert!(log.pamtester(&svc.name, "logan", &code, rhost).success());
    let lines = log.drain();
    let infos = with(&lines, AUTHPRIV | INFO);
    assert!(
        infos.len() == 1 && infos[0].contains("accepted") && infos[0].contains(&who),
        "{lines:?}"
    );

    assert!(log.pamtester(&svc.name, "logan", &code, rhost).status == Some(1));
    let lines = log.drain();
    let warnings = with(&lines, AUTHPRIV | WARNING);
    assert!(
        warnings.len() == 1 && warnings[0].contains("replay") && warnings[0].contains(&who),
        "{lines:?}"
    );

    // A spent recovery code again: a replay too, at warning level.
    assert!(log
        .pamtester(&svc.name, "logan", &recovery[0], rhost)
        .success());
    log.drain();
    assert!(
        log.pamtester(&svc.name, "logan", &recovery[0], rhost)
            .status
            == Some(1)
    );
    let lines = log.drain();
    let warnings = with(&lines, AUTHPRIV | WARNING);
    assert!(
        warnings.len() == 1 && warnings[0].contains("replay") && warnings[0].contains(&who),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|(_, l)| !l.contains(&recovery[0])),
        "{lines:?}"
    );

    // debug adds detail lines, still without the code.
    let debug = f.etc_service("logdebug", "debug");
    assert!(log.pamtester(&debug.name, "logan", &wrong, rhost).status == Some(1));
    let lines = log.drain();
    assert!(!with(&lines, AUTHPRIV | DEBUG).is_empty(), "{lines:?}");
    for (_, l) in &lines {
        assert!(
            !l.contains(&code) && !l.contains(&wrong),
            "a code in the log: {l}"
        );
    }

    // A bad option: an error line naming it.
    let bad = f.etc_service("logbad", "window=abc");
    assert!(log.pamtester(&bad.name, "logan", "000000", rhost).status == Some(1));
    let lines = log.drain();
    let errors = with(&lines, AUTHPRIV | ERR);
    assert!(
        errors.len() == 1 && errors[0].contains("window"),
        "{lines:?}"
    );

    // A hostile user name is escaped, never split into a second line.
    assert!(
        log.pamtester(&svc.name, "evil\nFAKE: accepted", "1", rhost)
            .status
            == Some(1)
    );
    let lines = log.drain();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].1.contains("user=evil\\nFAKE"), "{lines:?}");
}

#[test]
fn a_grace_login_is_logged_as_one() {
    let f = Fixture::new();
    f.enroll("gracie", 0);
    let log = Listener::new(f.dir.path());
    let svc = f.etc_service("loggrace", "grace_secs=600");
    let rhost = "198.51.100.5";
    while now() % 30 >= 27 {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(log
        .pamtester(&svc.name, "gracie", &f.code_at(now()), rhost)
        .success());
    log.drain();
    let r = log.pamtester(&svc.name, "gracie", "", rhost);
    assert!(
        r.success() && !r.stderr.contains("Verification code"),
        "{r:?}"
    );
    let lines = log.drain();
    let notices = with(&lines, AUTHPRIV | NOTICE);
    let who = format!("service={} user=gracie rhost={rhost}", svc.name);
    assert!(
        notices.len() == 1 && notices[0].contains("grace login") && notices[0].contains(&who),
        "{lines:?}"
    );
}
