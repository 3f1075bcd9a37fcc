//! `totp-enroll` installed setuid root and run by plain users, as on a real system.
//!
//! A plain user cannot point the program elsewhere, so these tests use the default paths
//! (/var/lib/pam_totp, /etc/security/pam_totp.key and .conf), each test in a private root
//! of its own (an overlay of / on a tmpfs: e2e_support::rerun_in_private_root), so that an
//! installed pam_totp in use on the machine is never touched (checked by checksums before
//! and after). In there, whatever exists at those paths is still moved aside first and put
//! back afterwards by a drop guard, and the tests of one process run one at a time. The binary is copied, mode 4755 root, into a
//! directory every user can reach (under /tmp unless that is mounted nosuid); each test
//! makes its own accounts.

mod cli_support;
mod e2e_support;

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cli_support::*;
use common::{HostKey, OtpParams, Outcome, TotpSecret, UserName};
use e2e_support::TestUser;
use integration_tests::pam::{
    module_path, now, pamtester, run_with_timeout, wrong_codes, EtcPamService, Run,
};
use integration_tests::Store;

const STATE_DIR: &str = "/var/lib/pam_totp";
const KEY_FILE: &str = "/etc/security/pam_totp.key";
const CONFIG: &str = "/etc/security/pam_totp.conf";

static SERIAL: Mutex<()> = Mutex::new(());

/// The default paths, emptied for a test and restored on drop.
struct DefaultPaths {
    /// Originals moved aside, put back on drop.
    moved: Vec<(PathBuf, PathBuf)>,
    /// Set once every original is out of the way: only then is what sits at the default
    /// paths the test's own, and only then does drop delete it.
    ours: bool,
}

impl DefaultPaths {
    fn take() -> DefaultPaths {
        let mut guard = DefaultPaths {
            moved: Vec::new(),
            ours: false,
        };
        let key_new = format!("{KEY_FILE}.new");
        for p in [STATE_DIR, KEY_FILE, key_new.as_str(), CONFIG] {
            let p = PathBuf::from(p);
            if fs::symlink_metadata(&p).is_ok() {
                let aside = PathBuf::from(format!(
                    "{}.pam-totp-test-{}",
                    p.display(),
                    std::process::id()
                ));
                assert!(
                    fs::symlink_metadata(&aside).is_err(),
                    "{aside:?} exists: an earlier run left it; put it back by hand"
                );
                // On a panic here, drop puts back what was moved and deletes nothing.
                move_aside(&p, &aside).unwrap_or_else(|e| panic!("moving {p:?} aside: {e}"));
                guard.moved.push((p, aside));
            }
        }
        guard.ours = true;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(STATE_DIR)
            .expect("create the state directory");
        HostKey::generate()
            .unwrap()
            .store(Path::new(KEY_FILE))
            .unwrap();
        guard
    }

    fn store(&self) -> Store {
        Store::open(Path::new(STATE_DIR), Path::new(KEY_FILE)).unwrap()
    }
}

/// Renames `from` to `to`. The private root is an overlay of /, where renaming a directory
/// of the lower layer (the package's /var/lib/pam_totp, after `scripts/install.sh`) fails
/// with EXDEV: then it is copied and removed, as mv(1) does.
fn move_aside(from: &Path, to: &Path) -> std::io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let r = run_with_timeout(
                e2e_support::cmd("mv", &["-T", from.to_str().unwrap(), to.to_str().unwrap()]),
                b"",
                std::time::Duration::from_secs(60),
            );
            if r.success() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("mv: {r:?}")))
            }
        }
        r => r,
    }
}

impl Drop for DefaultPaths {
    fn drop(&mut self) {
        if self.ours {
            let _ = fs::remove_dir_all(STATE_DIR);
            for p in [KEY_FILE, &format!("{KEY_FILE}.new"), CONFIG] {
                let _ = fs::remove_file(p);
            }
        }
        for (p, aside) in &self.moved {
            if let Err(e) = move_aside(aside, p) {
                eprintln!("warning: could not restore {}: {e}", p.display());
            }
        }
    }
}

/// Everything a test needs; fields drop in order: binary, paths, then the lock.
struct World {
    bin: Installed,
    paths: DefaultPaths,
    _serial: MutexGuard<'static, ()>,
}

fn world() -> World {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let paths = DefaultPaths::take();
    let bin = Installed::new();
    World {
        bin,
        paths,
        _serial: serial,
    }
}

impl World {
    /// Runs the setuid binary as `user` with `stdin` (no terminal).
    fn run_as(&self, user: &TestUser, args: &[&str], stdin: &[u8]) -> Run {
        let path = self.bin.path();
        run_with_timeout(user.command(path.to_str().unwrap(), args), stdin, TIMEOUT)
    }

    /// The setuid binary as `user` in a pseudo-terminal.
    fn pty_as(&self, user: &TestUser, args: &[&str]) -> Session {
        let path = self.bin.path();
        Session::spawn_command(user.command(path.to_str().unwrap(), args))
    }

    /// Enrolls `user` directly in the store with a known secret; returns the secret and
    /// the recovery codes.
    fn enroll(&self, user: &TestUser) -> (TotpSecret, Vec<String>) {
        let secret = TotpSecret::generate().unwrap();
        let copy = TotpSecret::from_base32(&secret.to_base32()).unwrap();
        let codes = self
            .paths
            .store()
            .enroll(
                &name(user),
                copy,
                OtpParams::default(),
                None,
                3,
                false,
                now(),
            )
            .unwrap()
            .iter()
            .map(|c| c.display().to_string())
            .collect();
        (secret, codes)
    }
}

fn name(user: &TestUser) -> UserName {
    UserName::parse(&user.name).unwrap()
}

/// The state directory and key file, byte for byte, with owners and modes.
fn snapshot() -> Vec<(String, u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |p: &Path| {
        let m = fs::symlink_metadata(p).unwrap();
        let bytes = if m.is_file() {
            fs::read(p).unwrap()
        } else {
            Vec::new()
        };
        out.push((p.display().to_string(), m.uid(), m.mode(), bytes));
    };
    add(Path::new(STATE_DIR));
    add(Path::new(KEY_FILE));
    let mut entries: Vec<PathBuf> = fs::read_dir(STATE_DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for e in entries {
        add(&e);
    }
    out
}

#[test]
fn the_setuid_binary_runs_as_root_but_acts_for_the_caller() {
    if e2e_support::rerun_in_private_root("the_setuid_binary_runs_as_root_but_acts_for_the_caller")
    {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    // $USER, $LOGNAME and $HOME name root: they must not matter.
    let mut cmd = alice.command(w.bin.path().to_str().unwrap(), &["status", "--json"]);
    cmd.env("USER", "root")
        .env("LOGNAME", "root")
        .env("HOME", "/root");
    let r = run_with_timeout(cmd, b"", TIMEOUT);
    assert_eq!(
        r.status,
        Some(0),
        "status as a plain user failed (is /tmp mounted nosuid?): {r:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["user"], alice.name.as_str());
    assert_eq!(v["enrolled"], false);
}

#[test]
fn a_plain_user_enrolls_in_a_terminal() {
    if e2e_support::rerun_in_private_root("a_plain_user_enrolls_in_a_terminal") {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    let mut s = w.pty_as(&alice, &[]);
    let shown = s.shown();
    assert!(
        shown.uri.contains(&format!(":{}?", alice.name)),
        "{}",
        shown.uri
    );
    s.send_line(&code_now(&shown.secret(), &OtpParams::default()));
    let codes = s.recovery_codes();
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("You are now enrolled"), "{out}");
    assert_root_0600(&Path::new(STATE_DIR).join(&alice.name));
    // The module with its defaults (no options) reads what the setuid program wrote.
    let service = EtcPamService::new(
        "cliu",
        &format!(
            "auth required {}\naccount required pam_permit.so\n",
            module_path().display()
        ),
    );
    let first = pamtester(
        &service.name,
        &alice.name,
        format!("{}\n", codes[0]).as_bytes(),
        None,
    );
    assert!(first.success(), "{first:?}");
    let again = pamtester(
        &service.name,
        &alice.name,
        format!("{}\n", codes[0]).as_bytes(),
        None,
    );
    assert!(!again.success(), "{again:?}");
    let store = w.paths.store();
    let o = authenticate(&store, &alice.name, &codes[1]);
    assert!(matches!(o, Outcome::RecoveryAccepted { .. }), "{o:?}");
}

#[test]
fn forbidden_options_and_commands_are_refused_and_change_nothing() {
    if e2e_support::rerun_in_private_root(
        "forbidden_options_and_commands_are_refused_and_change_nothing",
    ) {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    let bob = TestUser::create("cu");
    w.enroll(&alice);
    w.enroll(&bob);
    let ga = "/tmp/nonexistent-google-authenticator";
    let b = bob.name.as_str();
    let a = alice.name.as_str();
    let cases: Vec<Vec<&str>> = vec![
        vec!["--user", b],
        vec!["--user", a],
        vec!["--user", b, "--replace"],
        vec!["--config", "/tmp/x.conf"],
        vec!["--state-dir", "/tmp"],
        vec!["--key-file", "/tmp/k"],
        vec!["status", "--config", "/etc/passwd"],
        vec!["status", "--state-dir", "/tmp"],
        vec!["--key-file", "/tmp/k", "status"],
        vec!["status", "--user", b],
        vec!["status", "--user", a],
        vec!["disable", "--user", b],
        vec!["recovery-codes", "--user", b],
        vec!["import", "--user", a, "--secret-stdin"],
        vec!["import", "--user", a, "--from-google-authenticator", ga],
        vec!["import", "--from-oath-usersfile", "/etc/passwd"],
        vec!["unlock", "--user", a],
        vec!["unlock", "--user", b],
        vec!["forget-devices", "--user", b],
        vec!["import", "--user", a, "--hotp", "--secret-stdin"],
        vec!["list"],
        vec!["list", "--json"],
        vec!["rekey"],
        // Lines that do not parse are refused all the same (1), not usage errors (2).
        vec!["unlock"],
        vec!["import", "--secret-stdin"],
        vec!["--user", "root", "status"],
        vec!["status", "--user"],
        vec!["--user", "../../etc/shadow"],
        vec!["rekey", "--bogus"],
    ];
    let before = snapshot();
    for args in &cases {
        let r = w.run_as(&alice, args, b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n");
        assert_eq!(r.status, Some(1), "{args:?}: {r:?}");
        assert!(r.stderr.contains("only for root"), "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
        assert_eq!(snapshot(), before, "{args:?} changed the state");
    }
}

#[test]
fn another_users_enrollment_cannot_be_learned() {
    if e2e_support::rerun_in_private_root("another_users_enrollment_cannot_be_learned") {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    let enrolled = TestUser::create("cu");
    let not_enrolled = TestUser::create("cu");
    w.enroll(&enrolled);
    for cmd in [
        &["status", "--user"][..],
        &["status", "--json", "--user"],
        &["disable", "--user"],
        &["recovery-codes", "--user"],
        &["unlock", "--user"],
        &["--replace", "--user"],
    ] {
        let ask = |other: &TestUser| {
            let mut args = cmd.to_vec();
            args.push(&other.name);
            let r = w.run_as(&alice, &args, b"");
            (r.status, r.stdout, r.stderr)
        };
        let (yes, no) = (ask(&enrolled), ask(&not_enrolled));
        assert_eq!(yes, no, "{cmd:?}: answers differ");
        assert_eq!(yes.0, Some(1), "{cmd:?}: {yes:?}");
    }
    // Her own status says nothing of anyone else.
    let r = w.run_as(&alice, &["status"], b"");
    assert_eq!(r.status, Some(0), "{r:?}");
    assert!(!r.stdout.contains(&enrolled.name), "{r:?}");
    // And the state directory itself is closed to her.
    let r = run_with_timeout(alice.command("ls", &[STATE_DIR]), b"", TIMEOUT);
    assert!(!r.success(), "{r:?}");
}

#[test]
fn the_running_program_cannot_be_inspected_by_its_user() {
    if e2e_support::rerun_in_private_root("the_running_program_cannot_be_inspected_by_its_user") {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    let mut s = w.pty_as(&alice, &[]);
    s.shown();
    // The program waits at the code prompt holding the secret and the host key.
    let exe = w.bin.path();
    let pid = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("the running totp-enroll");
    for file in ["environ", "mem", "maps"] {
        let path = format!("/proc/{pid}/{file}");
        let r = run_with_timeout(alice.command("head", &["-c", "1", &path]), b"", TIMEOUT);
        assert!(
            !r.success(),
            "{alice:?} read {path}: {r:?}",
            alice = alice.name
        );
    }
    // Files of an undumpable process without group or other bits belong to root (proc(5)).
    let owner = fs::metadata(format!("/proc/{pid}/environ")).unwrap().uid();
    assert_eq!(owner, 0, "process not marked undumpable");
    s.control('c');
    s.finish();
}

#[test]
fn replace_needs_a_current_code() {
    if e2e_support::rerun_in_private_root("replace_needs_a_current_code") {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    let (old, _) = w.enroll(&alice);
    let state = Path::new(STATE_DIR).join(&alice.name);
    let before = fs::read(&state).unwrap();

    let mut s = w.pty_as(&alice, &["--replace"]);
    for wrong in wrong_codes(&old, &OtpParams::default(), 3) {
        s.expect("Current code");
        s.send_line(&wrong);
    }
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(1), "{out}");
    assert!(!out.contains("Secret:"), "{out}");
    assert_eq!(fs::read(&state).unwrap(), before, "state replaced");

    let mut s = w.pty_as(&alice, &["--replace"]);
    s.expect("Current code");
    s.send_line(&code_now(&old, &OtpParams::default()));
    let shown = s.shown();
    s.send_line(&code_now(&shown.secret(), &OtpParams::default()));
    s.recovery_codes();
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(0), "{out}");
    let store = w.paths.store();
    let next = |secret: &TotpSecret| {
        common::totp::code_at(secret, &OtpParams::default(), now() as u64 + 30).to_string()
    };
    let (old_code, new_code) = (next(&old), next(&shown.secret()));
    if old_code != new_code {
        let o = authenticate(&store, &alice.name, &old_code);
        assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
    }
    let o = authenticate(&store, &alice.name, &new_code);
    assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
}

#[test]
fn replace_never_overwrites_an_enrollment_made_while_it_waited() {
    if e2e_support::rerun_in_private_root(
        "replace_never_overwrites_an_enrollment_made_while_it_waited",
    ) {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    // Not enrolled: `--replace` asks for no current code...
    let mut s = w.pty_as(&alice, &["--replace"]);
    let shown = s.shown();
    // ...and while it waits for the new code, an admin enrolls her.
    w.enroll(&alice);
    let state = Path::new(STATE_DIR).join(&alice.name);
    let before = fs::read(&state).unwrap();
    s.send_line(&code_now(&shown.secret(), &OtpParams::default()));
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("already enrolled"), "{out}");
    assert_eq!(fs::read(&state).unwrap(), before, "state replaced");
}

#[test]
fn disable_needs_a_current_code() {
    if e2e_support::rerun_in_private_root("disable_needs_a_current_code") {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    let (secret, _) = w.enroll(&alice);
    let wrong = wrong_codes(&secret, &OtpParams::default(), 3).join("\n") + "\n";
    let r = w.run_as(&alice, &["disable"], wrong.as_bytes());
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(w.paths.store().is_enrolled(&name(&alice)).unwrap());

    let mut s = w.pty_as(&alice, &["disable"]);
    s.expect("Current code");
    s.send_line(&code_now(&secret, &OtpParams::default()));
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(0), "{out}");
    assert!(!w.paths.store().is_enrolled(&name(&alice)).unwrap());
}

#[test]
fn new_recovery_codes_need_a_current_code_or_a_recovery_code() {
    if e2e_support::rerun_in_private_root(
        "new_recovery_codes_need_a_current_code_or_a_recovery_code",
    ) {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    let (_, old_codes) = w.enroll(&alice);
    let r = w.run_as(&alice, &["recovery-codes"], b"000000\n");
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(!r.stdout.contains("Recovery codes:"), "{r:?}");

    let r = w.run_as(
        &alice,
        &["recovery-codes"],
        format!("{}\n", old_codes[0]).as_bytes(),
    );
    assert_eq!(r.status, Some(0), "{r:?}");
    let new_codes = recovery_codes_in(&r.stdout);
    assert_eq!(new_codes.len(), 10);
    let store = w.paths.store();
    let o = authenticate(&store, &alice.name, &old_codes[1]);
    assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
    let o = authenticate(&store, &alice.name, &new_codes[0]);
    assert!(matches!(o, Outcome::RecoveryAccepted { .. }), "{o:?}");
}

#[test]
fn a_plain_user_cannot_create_the_host_key() {
    if e2e_support::rerun_in_private_root("a_plain_user_cannot_create_the_host_key") {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    fs::remove_file(KEY_FILE).unwrap();
    let mut s = w.pty_as(&alice, &[]);
    s.expect("host key");
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(3), "{out}");
    assert!(!Path::new(KEY_FILE).exists());
    assert_eq!(fs::read_dir(STATE_DIR).unwrap().count(), 0);
}

#[test]
fn enrollment_by_a_plain_user_needs_a_terminal() {
    if e2e_support::rerun_in_private_root("enrollment_by_a_plain_user_needs_a_terminal") {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    let r = w.run_as(&alice, &[], b"123456\n");
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(r.stderr.contains("not a terminal"), "{r:?}");
    assert_eq!(fs::read_dir(STATE_DIR).unwrap().count(), 0);
}

#[test]
fn a_plain_user_forgets_their_own_devices_without_a_code() {
    if e2e_support::rerun_in_private_root("a_plain_user_forgets_their_own_devices_without_a_code") {
        return;
    }
    let w = world();
    let alice = TestUser::create("cu");
    let (secret, _) = w.enroll(&alice);
    let device = common::DeviceIdentity::new(Some("192.0.2.7"), None).unwrap();
    let req = common::AuthRequest {
        grace_secs: 600,
        device: Some(&device),
        ..request()
    };
    let code = code_now(&secret, &OtpParams::default());
    let o = w
        .paths
        .store()
        .authenticate(&name(&alice), &code, &req)
        .unwrap();
    assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
    let devices = |w: &World| {
        w.paths
            .store()
            .status(&name(&alice))
            .unwrap()
            .unwrap()
            .counters
            .devices
            .len()
    };
    assert_eq!(devices(&w), 1);
    let r = w.run_as(&alice, &["status"], b"");
    assert!(r.stdout.contains("remembered devices:  1"), "{r:?}");
    let r = w.run_as(&alice, &["forget-devices"], b"");
    assert_eq!(r.status, Some(0), "{r:?}");
    assert!(
        r.stdout.contains("1 remembered device(s) forgotten"),
        "{r:?}"
    );
    assert_eq!(devices(&w), 0);
}

/// Pids of running copies of `exe`.
fn pids_of(exe: &Path) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether process `pid` holds an flock on the file at `path` (from its fdinfo).
fn holds_flock(pid: u32, path: &Path) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| e.ok()).any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|p| p == path)
            && fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .is_ok_and(|info| {
                info.lines()
                    .any(|l| l.starts_with("lock:") && l.contains("FLOCK"))
            })
    })
}

/// A child and the pids it started, killed on drop (a failed test leaves no stopped
/// process holding a lock).
struct Reaped(std::process::Child, Vec<u32>);

impl Drop for Reaped {
    fn drop(&mut self) {
        for &p in &self.1 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 10: a plain user who stops their own `totp-enroll` while it holds their lock must
/// not stall root's `rekey` and `list` (nor their own logins). To hold the lock long enough
/// to aim at, the program runs under strace (as root), which delays the return of its
/// flock(2) by a few seconds; the user then sends SIGSTOP and SIGTSTP to it as themselves,
/// and root sends SIGTSTP as the terminal would for ^Z.
#[test]
fn a_user_cannot_freeze_their_own_lock() {
    if e2e_support::rerun_in_private_root("a_user_cannot_freeze_their_own_lock") {
        return;
    }
    e2e_support::require("/usr/bin/strace");
    let w = world();
    let alice = TestUser::create("cu");
    let (secret, _) = w.enroll(&alice);
    let bin = w.bin.path();
    let counters = Path::new(STATE_DIR).join(format!(".{}.counters", alice.name));
    let mut cmd = std::process::Command::new("strace");
    cmd.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=flock",
        "-e",
        "inject=flock:delay_exit=4000000:when=1",
        "setpriv",
        &format!("--reuid={}", alice.uid),
        &format!("--regid={}", alice.gid),
        "--init-groups",
        "--",
        bin.to_str().unwrap(),
        "status",
    ]);
    let mut child = Reaped(
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Vec::new(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let pid = loop {
        if let Some(p) = pids_of(&bin)
            .into_iter()
            .find(|&p| holds_flock(p, &counters))
        {
            child.1.push(p);
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "totp-enroll never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    // The user's own signals: without the fix kill(1) succeeds and the program stays
    // stopped holding the lock.
    for sig in ["-STOP", "-TSTP"] {
        let r = run_with_timeout(
            alice.command("kill", &[sig, &pid.to_string()]),
            b"",
            TIMEOUT,
        );
        assert!(
            !r.success(),
            "{} could signal it ({sig}): {r:?}",
            alice.name
        );
    }
    // ^Z at the user's terminal: the kernel sends SIGTSTP with no uid check, as root's
    // kill does here. It must wait until the lock is released.
    let pid_t = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid_t, nix::sys::signal::Signal::SIGTSTP).unwrap();
    // Root's rekey and list finish, with no key.new left behind.
    let rekey = run_with_timeout(
        e2e_support::cmd(bin.to_str().unwrap(), &["rekey"]),
        b"",
        std::time::Duration::from_secs(60),
    );
    assert!(rekey.success(), "{rekey:?}");
    assert!(!Path::new(&format!("{KEY_FILE}.new")).exists());
    let list = run_with_timeout(
        e2e_support::cmd(bin.to_str().unwrap(), &["list"]),
        b"",
        std::time::Duration::from_secs(60),
    );
    assert!(list.success(), "{list:?}");
    assert!(list.stdout.contains(&alice.name), "{list:?}");
    assert!(!list.stdout.contains("error"), "{list:?}");
    // The stop it kept pending takes effect after the locked work: let it go on.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        let _ = nix::sys::signal::kill(pid_t, nix::sys::signal::Signal::SIGCONT);
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "status: {status:?} {out}");
    // And the user still logs in, under the new key.
    let service = EtcPamService::new(
        "cliu",
        &format!(
            "auth required {}\naccount required pam_permit.so\n",
            module_path().display()
        ),
    );
    let login = pamtester(
        &service.name,
        &alice.name,
        format!("{}\n", code_now(&secret, &OtpParams::default())).as_bytes(),
        None,
    );
    assert!(login.success(), "{login:?}");
}
