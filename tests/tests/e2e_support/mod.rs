//! Fixtures of the end-to-end tests: test users, files in /etc removed on drop, daemons
//! stopped by PID on drop, a private sshd on 127.0.0.1 and the real `ssh` client in a
//! pseudo-terminal. Every fixture undoes what it did when dropped, so a failing test
//! (a panic unwinds through the drops) leaves nothing behind in /etc.
//!
//! Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use integration_tests::pam::{run_with_timeout, Fixture, Run};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Upper bound of every external command and every wait.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The recipes of the README, as shipped in the packages.
pub fn example(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/examples")
        .join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The non-comment lines of a shipped recipe, with `pam_totp.so` replaced by the built
/// module and the fixture's paths (the rest of each line, e.g. `nullok`, is kept).
pub fn recipe_lines(rel: &str, module_and_args: &str) -> String {
    let mut out = String::new();
    for line in example(rel).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push_str(&line.replace("pam_totp.so", module_and_args));
        out.push('\n');
    }
    assert!(
        out.contains(module_and_args),
        "{rel} has no pam_totp.so line"
    );
    out
}

/// `<built module> config=... state_dir=... key_file=...` for a fixture.
pub fn module_with(fixture: &Fixture) -> String {
    format!(
        "{} {}",
        integration_tests::pam::module_path().display(),
        fixture.base_args()
    )
}

/// A name no other test (in this or another process) uses: a valid user, group, PAM
/// service and sudoers.d file name (lowercase, no dot, at most 32 characters).
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("pt{tag}{}x{n}", std::process::id());
    assert!(name.len() <= 32, "{name} too long");
    name
}

/// Fails the test unless `path` exists: scripts/test.sh installs every program the
/// end-to-end tests need, so a missing one is a broken setup, never a reason to skip.
pub fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run the tests through `bash scripts/test.sh`, which installs it"
    );
}

/// Runs a command with nothing on stdin, bounded by [`TIMEOUT`].
pub fn run(cmd: Command) -> Run {
    run_with_timeout(cmd, b"", TIMEOUT)
}

/// Runs a command and fails the test, showing its output, unless it exits 0.
pub fn run_ok(cmd: Command) -> Run {
    let shown = format!("{cmd:?}");
    let r = run(cmd);
    assert!(r.success(), "{shown} failed: {r:?}");
    r
}

pub fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// useradd and userdel lock /etc/passwd; one at a time within a test binary.
static ACCOUNTS: Mutex<()> = Mutex::new(());

/// A local account with a home directory, deleted (with its home) on drop.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl TestUser {
    pub fn create(tag: &str) -> TestUser {
        // The guard exists before useradd runs: drop removes whatever part of the account
        // was made, also if useradd fails halfway.
        let mut user = TestUser {
            name: unique_name(tag),
            uid: 0,
            gid: 0,
            home: PathBuf::new(),
        };
        {
            let _g = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
            run_ok(cmd(
                "useradd",
                &[
                    "--create-home",
                    "--shell",
                    "/bin/sh",
                    "--user-group",
                    &user.name,
                ],
            ));
        }
        let entry = nix::unistd::User::from_name(&user.name)
            .expect("getpwnam")
            .expect("user just created");
        user.uid = entry.uid.as_raw();
        user.gid = entry.gid.as_raw();
        user.home = entry.dir;
        user
    }

    pub fn set_password(&self, password: &str) {
        let r = run_with_timeout(
            cmd("chpasswd", &[]),
            format!("{}:{password}\n", self.name).as_bytes(),
            TIMEOUT,
        );
        assert!(r.success(), "chpasswd: {r:?}");
    }

    /// `program args` run as this user (real and effective ids, groups), via setpriv.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(program)
            .args(args)
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
        c
    }

    /// Installs `public_key` as the user's only authorized key.
    pub fn authorize_key(&self, public_key: &str) {
        let ssh = self.home.join(".ssh");
        fs::create_dir_all(&ssh).unwrap();
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
        let keys = ssh.join("authorized_keys");
        fs::write(&keys, public_key).unwrap();
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).unwrap();
        for p in [&ssh, &keys] {
            std::os::unix::fs::chown(p, Some(self.uid), Some(self.gid)).unwrap();
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _g = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let r = run(cmd("userdel", &["--remove", "--force", &self.name]));
        if !r.success() {
            eprintln!("warning: userdel {}: {r:?}", self.name);
        }
        // sudo's timestamp record, if a test made one.
        let _ = fs::remove_file(Path::new("/run/sudo/ts").join(&self.name));
    }
}

/// A file this test created under /etc (it must not exist before), removed on drop.
pub struct EtcFile {
    pub path: PathBuf,
}

impl EtcFile {
    pub fn create(path: impl Into<PathBuf>, contents: &str, mode: u32) -> EtcFile {
        let path = path.into();
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        let guard = EtcFile { path };
        f.set_permissions(fs::Permissions::from_mode(mode)).unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        f.sync_all().unwrap();
        guard
    }

    pub fn name(&self) -> &str {
        self.path.file_name().unwrap().to_str().unwrap()
    }
}

impl Drop for EtcFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            eprintln!("warning: remove {}: {e}", self.path.display());
        }
    }
}

/// A PAM service file /etc/pam.d/<name> (name lowercase: libpam lowercases service
/// names), removed on drop.
pub fn pam_service(tag: &str, text: &str) -> EtcFile {
    let name = unique_name(tag);
    EtcFile::create(Path::new("/etc/pam.d").join(name), text, 0o644)
}

/// A started process, stopped by its PID on drop: SIGTERM, then SIGKILL after 5 s.
pub struct Daemon {
    child: Child,
    what: String,
}

impl Daemon {
    pub fn spawn(mut cmd: Command, what: &str) -> Daemon {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Daemon {
            child,
            what: what.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and reaped it if so).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: {} ({pid}) ignored SIGTERM; killing", self.what);
        let _ = kill(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A code of the fixture's secret that is wrong at every step near now.
pub fn wrong_code(fixture: &Fixture) -> String {
    fixture.wrong_code()
}

/// A private sshd on 127.0.0.1: its own config, host key, port and PAM stack. OpenSSH
/// 9.8 and later (Debian 13) always read /etc/pam.d/sshd, whatever argv[0] says, so sshd
/// runs in a mount namespace of its own where the test's PAM file is bound over
/// /etc/pam.d/sshd; the system's file and every other process are untouched.
pub struct Sshd {
    // Field order is drop order: the daemon stops before its directory goes.
    daemon: Daemon,
    dir: tempfile::TempDir,
    pub port: u16,
    pub client_key: PathBuf,
    log: PathBuf,
}

impl Sshd {
    /// Starts sshd for `user` with `sshd_config` lines (a shipped recipe) and the PAM
    /// service text `pam`, and installs a fresh client key as the user's authorized key.
    pub fn start(user: &TestUser, sshd_config: &str, pam: &str) -> Sshd {
        for p in ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
            require(p);
        }
        // Privilege separation directory, normally made by the ssh service unit.
        fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        for key in [&host_key, &client_key] {
            run_ok(cmd(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
            ));
        }
        user.authorize_key(&fs::read_to_string(client_key.with_extension("pub")).unwrap());
        require("/etc/pam.d/sshd");
        let pam_file = dir.path().join("pam.d-sshd");
        fs::write(&pam_file, pam).unwrap();
        let penalties = if knows_per_source_penalties(&host_key) {
            // OpenSSH 9.8+ would penalise the tests' deliberate failures from 127.0.0.1
            // by refusing their later connections.
            "PerSourcePenalties no\n"
        } else {
            ""
        };
        let log = dir.path().join("sshd.log");
        let mut last_log = String::new();
        // A port free a moment ago can be taken before sshd binds it: try a few.
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.path().join("sshd_config");
            fs::write(
                &config,
                format!(
                    "# Test-specific settings first: for most keywords the first value wins.\n\
                     Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {host_key}\n\
                     PidFile none\n\
                     AllowUsers {user}\n\
                     AuthorizedKeysFile .ssh/authorized_keys\n\
                     StrictModes yes\n\
                     UseDNS no\n\
                     PrintMotd no\n\
                     PrintLastLog no\n\
                     LogLevel VERBOSE\n\
                     {penalties}\
                     # The recipe under test:\n\
                     {sshd_config}\n",
                    host_key = host_key.display(),
                    user = user.name,
                ),
            )
            .unwrap();
            let mut c = Command::new("unshare");
            c.args([
                "--mount",
                "--propagation",
                integration_tests::mount_propagation(),
                "--",
                "sh",
                "-c",
            ])
            .arg(r#"mount --bind "$0" /etc/pam.d/sshd && exec /usr/sbin/sshd "$@""#)
            .arg(&pam_file)
            .args(["-D", "-e", "-f"])
            .arg(&config);
            c.stdin(Stdio::null())
                .stdout(fs::File::create(&log).unwrap())
                .stderr(fs::File::options().append(true).open(&log).unwrap());
            let mut daemon = Daemon::spawn(c, "sshd");
            let deadline = Instant::now() + Duration::from_secs(10);
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            loop {
                if daemon.exited() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Sshd {
                        port,
                        client_key,
                        dir,
                        log,
                        daemon,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "sshd did not listen within 10 s: {}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            last_log = fs::read_to_string(&log).unwrap_or_default();
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd did not start: {last_log}");
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The real ssh client for `user`, in a pseudo-terminal, running `remote_command`.
    /// `extra` options come first, so they win over the defaults here.
    pub fn ssh(&self, user: &TestUser, extra: &[&str], remote_command: &str) -> Client {
        let known_hosts = self.dir.path().join("known_hosts");
        let mut c = Command::new("ssh");
        c.arg("-F").arg("/dev/null");
        for o in extra {
            c.args(["-o", o]);
        }
        c.arg("-i")
            .arg(&self.client_key)
            .args(["-p", &self.port.to_string()])
            .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args([
                "-o",
                "PreferredAuthentications=publickey,keyboard-interactive",
            ])
            .args(["-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10"])
            .args(["-o", "LogLevel=ERROR", "-o", "BatchMode=no", "-tt"])
            .arg(format!("{}@127.0.0.1", user.name))
            .arg(remote_command);
        let session = rexpect::session::spawn_with_options(
            c,
            rexpect::reader::Options::new()
                .timeout_ms(Some(20_000))
                .strip_ansi_escape_codes(true),
        )
        .expect("spawn ssh in a pty");
        Client {
            session,
            seen: String::new(),
        }
    }
}

/// Whether this sshd knows the `PerSourcePenalties` keyword (OpenSSH 9.8 and later): its
/// config test accepts the keyword or rejects it as a bad option.
fn knows_per_source_penalties(host_key: &Path) -> bool {
    let r = run(cmd(
        "/usr/sbin/sshd",
        &[
            "-t",
            "-f",
            "/dev/null",
            "-h",
            host_key.to_str().unwrap(),
            "-o",
            "PerSourcePenalties=no",
        ],
    ));
    if r.success() {
        return true;
    }
    assert!(
        r.stderr.contains("PerSourcePenalties"),
        "sshd -t failed for another reason than the keyword: {r:?}"
    );
    false
}

/// A program driven through a pseudo-terminal, with everything it printed so far kept
/// for failure messages.
pub struct Client {
    pub session: rexpect::session::PtySession,
    pub seen: String,
}

impl Client {
    /// Waits for `needle`; on timeout or end of output fails with what was seen.
    pub fn expect(&mut self, needle: &str, context: &dyn Fn() -> String) {
        match self.session.exp_string(needle) {
            Ok(before) => {
                self.seen.push_str(&before);
                self.seen.push_str(needle);
            }
            Err(e) => panic!(
                "waiting for {needle:?}: {e}\nclient output so far: {:?}\n{}",
                self.seen,
                context()
            ),
        }
    }

    pub fn send_line(&mut self, line: &str) {
        self.session.send_line(line).expect("write to pty");
    }

    /// Reads to the end of output and returns (everything seen, exit code).
    pub fn finish(mut self) -> (String, Option<i32>) {
        match self.session.exp_eof() {
            Ok(rest) => self.seen.push_str(&rest),
            Err(e) => panic!("client did not finish: {e}; output: {:?}", self.seen),
        }
        let status = self.session.process().wait().expect("wait for client");
        let code = match status {
            rexpect::process::WaitStatus::Exited(_, code) => Some(code),
            _ => None,
        };
        (self.seen, code)
    }
}

/// A local group, deleted on drop.
pub struct TestGroup {
    pub name: String,
}

impl TestGroup {
    pub fn create(tag: &str) -> TestGroup {
        let name = unique_name(tag);
        let _g = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        run_ok(cmd("groupadd", &[&name]));
        TestGroup { name }
    }

    pub fn add(&self, user: &TestUser) {
        let _g = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        run_ok(cmd("gpasswd", &["--add", &user.name, &self.name]));
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _g = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let r = run(cmd("groupdel", &[&self.name]));
        if !r.success() {
            eprintln!("warning: groupdel {}: {r:?}", self.name);
        }
    }
}

/// `pamtester SERVICE USER authenticate` with `stdin` as the typed answers.
pub fn pamtester(service: &str, user: &str, stdin: &str) -> Run {
    require("/usr/bin/pamtester");
    run_with_timeout(
        cmd("pamtester", &[service, user, "authenticate"]),
        stdin.as_bytes(),
        TIMEOUT,
    )
}

/// Set in the process that [`rerun_in_private_root`] starts inside the private root.
const PRIVATE_ROOT_ENV: &str = "PAM_TOTP_TEST_PRIVATE_ROOT";
/// The source name of the private root's overlay mount, checked from inside.
const PRIVATE_ROOT_SOURCE: &str = "pam_totp-test-root";

/// Sets up the private root in a new mount namespace and runs the rest of the command
/// line there: an overlay of / whose upper layer is a tmpfs (every write of the test,
/// dpkg's included, lands there and vanishes with the namespace), every other mount of
/// the namespace bound at its place (read-only under /etc, /usr and /var, so that only
/// the overlay takes writes there), the workspace and the target dir bound read-write
/// (the install test builds in them), then chroot.
const PRIVATE_ROOT_SCRIPT: &str = r#"set -eu
top=$1 cwd=$2 repo=$3 target=$4; shift 4
mount -t tmpfs -o mode=0700 pam_totp-test-upper "$top"
mkdir "$top/upper" "$top/work" "$top/root"
mount -t overlay pam_totp-test-root \
    -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"
awk '{print $5}' /proc/self/mountinfo | while IFS= read -r m; do
    case $m in /|"$top"|"$top"/*|*\\*) continue ;; esac
    [ -e "$top/root$m" ] || continue
    mount --bind "$m" "$top/root$m"
    case $m in
        /etc|/etc/*|/usr|/usr/*|/var|/var/*) mount -o remount,bind,ro "$top/root$m" ;;
    esac
done
for d in "$repo" "$target"; do
    mkdir -p "$top/root$d"
    mount --bind "$d" "$top/root$d"
done
exec chroot "$top/root" env --chdir="$cwd" "$@"
"#;

/// The fingerprint of the system's pam_totp installation and PAM files
/// (scripts/system-snapshot.sh), less the PAM services that tests running at the same
/// time in other processes create and remove (named by [`unique_name`] and by
/// `EtcPamService`).
pub fn system_snapshot() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/system-snapshot.sh");
    let r = run_ok(cmd("bash", &[script.to_str().unwrap()]));
    r.stdout
        .lines()
        .filter(|l| !l.starts_with("/etc/pam.d/pt") && !l.starts_with("/etc/pam.d/pamtotp-"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Whether this process runs in the private root made by [`rerun_in_private_root`].
/// Checked, not trusted: with the marker set, / must be that overlay, or the test fails
/// before it touches anything.
pub fn in_private_root() -> bool {
    if std::env::var_os(PRIVATE_ROOT_ENV).is_none() {
        return false;
    }
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    // The last mount on / is the one on top; after " - " come type and source.
    let root = info
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some("/"))
        .and_then(|l| l.split(" - ").nth(1))
        .unwrap_or_default()
        .to_owned();
    assert!(
        root.starts_with(&format!("overlay {PRIVATE_ROOT_SOURCE} ")),
        "{PRIVATE_ROOT_ENV} is set but / is not the private overlay: {root}"
    );
    true
}

/// For tests that install packages or change the default paths: outside the private
/// root, runs test `name` of this binary again inside a fresh one (see
/// [`PRIVATE_ROOT_SCRIPT`]), fails unless it passed, fails unless the system's
/// installation and PAM files ([`system_snapshot`]) are byte for byte as before, and
/// returns true (the caller returns). Inside the private root returns false: the caller
/// goes on with the test.
pub fn rerun_in_private_root(name: &str) -> bool {
    if in_private_root() {
        return false;
    }
    require("/usr/bin/unshare");
    let before = system_snapshot();
    let top = tempfile::Builder::new()
        .prefix("pam_totp-root.")
        .tempdir()
        .unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let target = integration_tests::pam::target_profile_dir()
        .parent()
        .expect("target dir")
        .canonicalize()
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        integration_tests::mount_propagation(),
        "--",
    ])
    .args(["sh", "-c", PRIVATE_ROOT_SCRIPT, "sh"])
    .args([top.path(), &cwd, &repo, &target, &exe])
    .args([name, "--exact", "--nocapture", "--test-threads=1"])
    .env(PRIVATE_ROOT_ENV, "1");
    let r = run_with_timeout(c, b"", Duration::from_secs(900));
    assert!(
        r.success() && r.stdout.contains("test result: ok. 1 passed"),
        "{name} in a private root: {r:?}"
    );
    let after = system_snapshot();
    assert!(
        before == after,
        "{name} changed the system's pam_totp files or PAM files:\nbefore:\n{before}\nafter:\n{after}"
    );
    true
}
