//! Benchmark: pam_totp.so beside google-authenticator-libpam through the real libpam, like
//! for like. Prints figures; see README.md.
//!
//! Usage: pam-bench PATH/libpam_totp.so [ITERATIONS] [--host-log] [--idle-ms MS]
//! (internal: pam-bench --login CONFDIR SERVICE USER, one login in this fresh process)

use std::ffi::c_int;
use std::fmt::Write as _;
use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::pam::{
    code_name, now, ConvMode, Fixture, Pam, Reply, PAM_AUTH_ERR, PAM_SUCCESS, TEST_SECRET_B32,
};

const GOOGLE_AUTH: &str = "/usr/lib/x86_64-linux-gnu/security/pam_google_authenticator.so";
const RHOST: &str = "192.0.2.1";
/// Set in the environment of the benchmark re-executed in its private mount namespace.
const UNSHARED_MARK: &str = "PAM_BENCH_PRIVATE_MOUNT_NS";
/// The configuration file the package installs: pam_totp parses it on every login.
const SHIPPED_CONF: &str = include_str!("../../../packaging/pam_totp.conf");
/// Iterations before each timed loop, not counted: first calls fault pages in.
const WARMUP: usize = 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "--login") {
        login_child(&args[2..]);
    }
    let module = PathBuf::from(
        args.get(1)
            .expect("usage: pam-bench PATH/libpam_totp.so [N] [--host-log] [--idle-ms MS]"),
    );
    assert!(
        module.is_file(),
        "{} not found: build it with cargo build --release -p pam_totp",
        module.display()
    );
    // libpam takes a relative module path as relative to its own module directory.
    let module = module.canonicalize().unwrap();
    let n: usize = args
        .get(2)
        .filter(|a| !a.starts_with("--"))
        .map_or(1000, |s| s.parse().expect("iterations"));
    let host_log = args.iter().any(|a| a == "--host-log");
    // A pause before each timed login, as a server is idle between logins: caches, branch
    // predictors and the CPU's clock are then cold for both modules alike.
    let idle = args.iter().position(|a| a == "--idle-ms").map(|i| {
        let ms = args.get(i + 1).and_then(|v| v.parse().ok());
        Duration::from_millis(ms.expect("--idle-ms MS"))
    });
    assert_eq!(
        effective_uid(),
        0,
        "run as root: state files must be root's"
    );

    // Both modules log every login. Without a listener on /dev/log, glibc's syslog() fails,
    // and google-authenticator (openlog with LOG_CONS) then writes each line to
    // /dev/console, which costs milliseconds on a serial console, while pam_syslog drops
    // them. So both get a listener, as on any host with a syslog daemon: a socket of ours
    // bind-mounted on /dev/log in a private mount namespace.
    //
    // The re-executed process knows itself by an environment marker. (Comparing mount
    // namespaces with PID 1's cannot tell where /proc/1/ns/mnt is unreadable, as in a
    // sandbox whose PID 1 is not init: the mount then went to the shared namespace.)
    if !host_log && std::env::var_os(UNSHARED_MARK).is_none() {
        let status = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                integration_tests::mount_propagation(),
                "--",
            ])
            .env(UNSHARED_MARK, "1")
            .arg(std::env::current_exe().unwrap())
            .args(&args[1..])
            .status()
            .expect("run unshare (util-linux)");
        std::process::exit(status.code().unwrap_or(1));
    }

    // The fixture's state (and the bare-sync probe) on a real disk, not a tmpfs.
    std::env::set_var("TMPDIR", "/var/tmp");
    let fx = Fixture::new();
    std::fs::write(&fx.config, SHIPPED_CONF).unwrap();
    std::fs::set_permissions(&fx.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sink = if host_log {
        None
    } else {
        Some(LogSink::start(fx.dir.path()))
    };
    let user = TestUser::create();
    let (line, lines) = passwd_position(&user.name);

    let m = module.display();
    let svc = |name: &str, text: String| std::fs::write(fx.confdir.join(name), text).unwrap();
    // As packaged (pam-configs: `pam_totp.so nullok`, the shipped config file), with
    // lockout off for the measurement, as google-authenticator runs without RATE_LIMIT.
    svc(
        "ours",
        format!(
            "auth required {m} {} nullok max_failures=0\n",
            fx.base_args()
        ),
    );
    // As its README says: no options, state in ~/.google_authenticator.
    svc("google", format!("auth required {GOOGLE_AUTH}\n"));
    svc("permit", "auth required pam_permit.so\n".to_owned());
    // As in any /etc/pam.d; without it libpam logs a line on every pam_start.
    svc("other", "auth required pam_deny.so\n".to_owned());
    let have_ga = Path::new(GOOGLE_AUTH).exists();

    let b = Bench {
        fx: &fx,
        user: &user,
        sink: sink.as_ref(),
        idle,
    };
    println!(
        "pam-bench: {n} timed iterations per workload and module ({WARMUP} warm-up), module {m}"
    );
    println!(
        "user {} at line {line} of {lines} in /etc/passwd; state in {}",
        user.name,
        fx.dir.path().display()
    );
    println!(
        "syslog: {}",
        if host_log {
            "the host's /dev/log, whatever it is (--host-log)"
        } else {
            "a socket of the benchmark's on /dev/log (private mount namespace), drained"
        }
    );
    if let Some(d) = idle {
        println!(
            "idle before each timed login (the four workloads and pam_permit.so): {} ms",
            d.as_millis()
        );
    }
    println!("load average at start: {}", loadavg());
    if !have_ga {
        println!("{GOOGLE_AUTH} not installed: pam_totp only");
    }

    let mut rows: Vec<(&str, Stats, Option<Stats>, LogLines)> = Vec::new();
    let (a, g, l) = b.success(n, have_ga);
    rows.push(("durable success (fresh code)", a, g, l));
    let (a, g, l) = b.replay(n, have_ga);
    rows.push(("replayed code", a, g, l));
    let (a, g, l) = b.wrong(n, have_ga);
    rows.push(("wrong code", a, g, l));
    let (a, g, p, l) = b.fresh(n, have_ga);
    rows.push(("login in a fresh process", a, g, l));
    let permit = b.permit(n);
    let loads: Vec<(&str, Stats)> = ["ours", "google", "permit"]
        .into_iter()
        .filter(|s| have_ga || *s != "google")
        .map(|s| (s, b.start_end(s, n)))
        .collect();
    let sync = fdatasync_cost(&fx.state_dir, n);

    let mut out = String::new();
    writeln!(
        out,
        "\nµs per login: median (p90 / p99) over {n} iterations; ratio = pam_totp / google-auth \
         of the medians; log lines per login sent to syslog (pam_totp, google-auth)\n"
    )
    .unwrap();
    writeln!(
        out,
        "| workload | pam_totp | google-authenticator | ratio | log lines |\n|---|---:|---:|---:|---:|"
    )
    .unwrap();
    for (name, ours, theirs, logs) in &rows {
        let (t, ratio) = match theirs {
            Some(t) => (t.show(), format!("{:.2}", ours.median / t.median)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        writeln!(
            out,
            "| {name} | {} | {t} | {ratio} | {} |",
            ours.show(),
            logs.show()
        )
        .unwrap();
    }
    writeln!(
        out,
        "\nlibpam round trip with pam_permit.so only, one handle: {}",
        permit.show()
    )
    .unwrap();
    writeln!(
        out,
        "fresh process with pam_permit.so only (spawn, pam_start, authenticate, pam_end, exit): {}",
        p.show()
    )
    .unwrap();
    for (s, st) in &loads {
        writeln!(
            out,
            "pam_start + pam_end only, service {s} (loads and unloads its module): {}",
            st.show()
        )
        .unwrap();
    }
    writeln!(
        out,
        "one 256-byte pwrite + fdatasync in the state dir: {}",
        sync.show()
    )
    .unwrap();
    writeln!(out, "load average at end: {}", loadavg()).unwrap();
    print!("{out}");
}

/// `--login CONFDIR SERVICE USER`: one transaction in this process, as an sshd connection
/// does; the code comes on stdin; exits with pam_authenticate's result.
fn login_child(args: &[String]) -> ! {
    let mut code = String::new();
    std::io::stdin().lock().read_line(&mut code).unwrap();
    let rc = {
        let mut pam = Pam::start(
            Path::new(&args[0]),
            &args[1],
            Some(args[2].as_bytes()),
            ConvMode::Scripted,
        );
        pam.set_rhost(RHOST);
        pam.reply([Reply::text(code.trim_end())]);
        pam.authenticate(0)
    };
    std::process::exit(rc);
}

struct Bench<'a> {
    fx: &'a Fixture,
    user: &'a TestUser,
    sink: Option<&'a LogSink>,
    idle: Option<Duration>,
}

/// One module's transaction, kept open across iterations (as an sshd connection that
/// prompts again, or any long-lived caller).
struct Handle {
    pam: Pam,
    label: &'static str,
    idle: Option<Duration>,
    mismatches: usize,
    first_mismatch: Option<c_int>,
}

impl Handle {
    /// µs for one pam_authenticate answered with `code`.
    fn auth(&mut self, code: &str, want: c_int) -> f64 {
        if let Some(d) = self.idle {
            std::thread::sleep(d);
        }
        self.pam.reply([Reply::text(code)]);
        let started = Instant::now();
        let rc = self.pam.authenticate(0);
        let us = started.elapsed().as_secs_f64() * 1e6;
        if rc != want {
            self.mismatches += 1;
            self.first_mismatch.get_or_insert(rc);
        }
        us
    }

    fn report(&mut self, what: &str, want: c_int) {
        if let Some(rc) = self.first_mismatch.take() {
            eprintln!(
                "warning: {} {what}: {} results were not {} (first: {})",
                self.label,
                self.mismatches,
                code_name(want),
                code_name(rc)
            );
        }
        self.mismatches = 0;
    }
}

impl Bench<'_> {
    fn handle(&self, service: &str, label: &'static str) -> Handle {
        let mut pam = Pam::start(
            &self.fx.confdir,
            service,
            Some(self.user.name.as_bytes()),
            ConvMode::Scripted,
        );
        pam.set_rhost(RHOST);
        Handle {
            pam,
            label,
            idle: self.idle,
            mismatches: 0,
            first_mismatch: None,
        }
    }

    /// Both modules' state as just enrolled: no code of any step used yet.
    fn reset(&self, have_ga: bool) {
        // pam_totp's default of 10 recovery codes; the CLI would do the same.
        self.fx.enroll(&self.user.name, 10);
        if have_ga {
            self.user.reset_google();
        }
    }

    fn code(&self) -> String {
        self.fx.code_at(now())
    }

    fn lines(&self) -> LogLines {
        LogLines::read(self.sink)
    }

    /// Runs `step(i)` for warm-up and timed iterations, alternating which module goes first
    /// so that drift and ordering hit both alike.
    fn alternate(
        &self,
        n: usize,
        have_ga: bool,
        mut prepare: impl FnMut(),
        mut ours: impl FnMut() -> f64,
        mut theirs: impl FnMut() -> f64,
    ) -> (Stats, Option<Stats>) {
        let mut a = Vec::with_capacity(n);
        let mut g = Vec::with_capacity(n);
        for i in 0..WARMUP + n {
            prepare();
            let (x, y) = if i % 2 == 0 || !have_ga {
                let x = ours();
                (x, have_ga.then(&mut theirs))
            } else {
                let y = theirs();
                (ours(), Some(y))
            };
            if i >= WARMUP {
                a.push(x);
                if let Some(y) = y {
                    g.push(y);
                }
            }
        }
        (Stats::of(a), have_ga.then(|| Stats::of(g)))
    }

    /// Every iteration a code of a step not used yet: ours writes its counters and
    /// fdatasyncs them, google-authenticator (DISALLOW_REUSE) rewrites its file with fsync.
    /// The state is reset between iterations, untimed.
    fn success(&self, n: usize, have_ga: bool) -> (Stats, Option<Stats>, LogLines) {
        let mut ours = self.handle("ours", "pam_totp");
        let mut theirs = self.handle("google", "google-auth");
        let before = self.lines();
        let (a, g) = self.alternate(
            n,
            have_ga,
            || self.reset(have_ga),
            || ours.auth(&self.code(), PAM_SUCCESS),
            || theirs.auth(&self.code(), PAM_SUCCESS),
        );
        ours.report("success", PAM_SUCCESS);
        theirs.report("success", PAM_SUCCESS);
        (a, g, self.lines().since(before, n + WARMUP))
    }

    /// A code already accepted, again and again.
    fn replay(&self, n: usize, have_ga: bool) -> (Stats, Option<Stats>, LogLines) {
        let mut ours = self.handle("ours", "pam_totp");
        let mut theirs = self.handle("google", "google-auth");
        self.reset(have_ga);
        let c = self.code();
        ours.auth(&c, PAM_SUCCESS);
        ours.report("replay setup", PAM_SUCCESS);
        if have_ga {
            theirs.auth(&c, PAM_SUCCESS);
            theirs.report("replay setup", PAM_SUCCESS);
        }
        let before = self.lines();
        let (a, g) = self.alternate(
            n,
            have_ga,
            || {},
            || ours.auth(&c, PAM_AUTH_ERR),
            || theirs.auth(&c, PAM_AUTH_ERR),
        );
        ours.report("replay", PAM_AUTH_ERR);
        theirs.report("replay", PAM_AUTH_ERR);
        (a, g, self.lines().since(before, n + WARMUP))
    }

    /// A well-formed code that matches no step within ±1600 steps of now: every attempt
    /// does the same work (google-authenticator then searches ±1500 steps for clock skew,
    /// finds nothing and writes nothing).
    fn wrong(&self, n: usize, have_ga: bool) -> (Stats, Option<Stats>, LogLines) {
        let t = now();
        let near: std::collections::HashSet<String> = (-1600..=1600)
            .map(|k| self.fx.code_at(t + 30 * k))
            .collect();
        let wrong = (0..1_000_000)
            .map(|i| format!("{i:06}"))
            .find(|c| !near.contains(c))
            .unwrap();
        let mut ours = self.handle("ours", "pam_totp");
        let mut theirs = self.handle("google", "google-auth");
        self.reset(have_ga);
        let before = self.lines();
        let (a, g) = self.alternate(
            n,
            have_ga,
            || {},
            || ours.auth(&wrong, PAM_AUTH_ERR),
            || theirs.auth(&wrong, PAM_AUTH_ERR),
        );
        ours.report("wrong", PAM_AUTH_ERR);
        theirs.report("wrong", PAM_AUTH_ERR);
        (a, g, self.lines().since(before, n + WARMUP))
    }

    /// µs from spawning a process to reaping it, the process doing one successful login
    /// (pam_start, authenticate with a fresh code, pam_end, exit), as each sshd connection
    /// does. The last figure is the same process with pam_permit.so only.
    fn fresh(&self, n: usize, have_ga: bool) -> (Stats, Option<Stats>, Stats, LogLines) {
        let exe = std::env::current_exe().unwrap();
        let spawn = |service: &str, code: &str, want: c_int| -> f64 {
            if let Some(d) = self.idle {
                std::thread::sleep(d);
            }
            let started = Instant::now();
            let mut child = Command::new(&exe)
                .arg("--login")
                .arg(&self.fx.confdir)
                .args([service, self.user.name.as_str()])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, "{code}").unwrap();
            drop(stdin);
            let status = child.wait().unwrap();
            let us = started.elapsed().as_secs_f64() * 1e6;
            if status.code() != Some(want) {
                eprintln!(
                    "warning: fresh-process {service}: {status:?}, want {}",
                    code_name(want)
                );
            }
            us
        };
        let before = self.lines();
        let (a, g) = self.alternate(
            n,
            have_ga,
            || self.reset(have_ga),
            || spawn("ours", &self.code(), PAM_SUCCESS),
            || spawn("google", &self.code(), PAM_SUCCESS),
        );
        let logs = self.lines().since(before, n + WARMUP);
        let mut p = Vec::with_capacity(n);
        for i in 0..WARMUP + n {
            let us = spawn("permit", "", PAM_SUCCESS);
            if i >= WARMUP {
                p.push(us);
            }
        }
        (a, g, Stats::of(p), logs)
    }

    /// µs per pam_start_confdir + pam_end without authenticating: parsing the service file
    /// and loading and unloading its modules (pam_totp.so is linked -z nodelete, so after
    /// its first load it stays mapped; google-authenticator's module is reloaded each time).
    fn start_end(&self, service: &str, n: usize) -> Stats {
        let v: Vec<f64> = (0..WARMUP + n)
            .map(|_| {
                let started = Instant::now();
                drop(Pam::start(
                    &self.fx.confdir,
                    service,
                    Some(self.user.name.as_bytes()),
                    ConvMode::Scripted,
                ));
                started.elapsed().as_secs_f64() * 1e6
            })
            .skip(WARMUP)
            .collect();
        Stats::of(v)
    }

    fn permit(&self, n: usize) -> Stats {
        let mut h = self.handle("permit", "pam_permit");
        let v: Vec<f64> = (0..WARMUP + n)
            .map(|_| h.auth("", PAM_SUCCESS))
            .skip(WARMUP)
            .collect();
        h.report("permit", PAM_SUCCESS);
        Stats::of(v)
    }
}

/// Median and tail of per-iteration µs.
struct Stats {
    median: f64,
    p90: f64,
    p99: f64,
}

impl Stats {
    fn of(mut v: Vec<f64>) -> Self {
        assert!(!v.is_empty());
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: usize| v[(v.len() * q / 100).min(v.len() - 1)];
        Stats {
            median: at(50),
            p90: at(90),
            p99: at(99),
        }
    }

    fn show(&self) -> String {
        format!("{:.0} ({:.0} / {:.0})", self.median, self.p90, self.p99)
    }
}

/// Log lines the sink received, by sender.
#[derive(Clone, Copy)]
struct LogLines {
    ours: Option<f64>,
    theirs: Option<f64>,
}

impl LogLines {
    fn read(sink: Option<&LogSink>) -> Self {
        // The sink drains asynchronously: let it catch up.
        std::thread::sleep(Duration::from_millis(100));
        LogLines {
            ours: sink.map(|s| s.ours.load(Ordering::Relaxed) as f64),
            theirs: sink.map(|s| s.theirs.load(Ordering::Relaxed) as f64),
        }
    }

    fn since(self, before: LogLines, logins: usize) -> Self {
        let per = |a: Option<f64>, b: Option<f64>| Some((a? - b?) / logins as f64);
        LogLines {
            ours: per(self.ours, before.ours),
            theirs: per(self.theirs, before.theirs),
        }
    }

    fn show(&self) -> String {
        match (self.ours, self.theirs) {
            (Some(a), Some(b)) => format!("{a:.1}, {b:.1}"),
            _ => "-".to_owned(),
        }
    }
}

/// A datagram socket on /dev/log (in our private mount namespace) and a thread that reads
/// and counts what arrives, as a syslog daemon would.
struct LogSink {
    ours: Arc<AtomicU64>,
    theirs: Arc<AtomicU64>,
    /// We created /dev/log as an empty placeholder to mount on; removed on drop.
    placeholder: bool,
}

impl LogSink {
    fn start(dir: &Path) -> Self {
        let path = dir.join("log");
        let sock = UnixDatagram::bind(&path).unwrap();
        // google-authenticator logs with its file-system uid set to the user's.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let dev_log = Path::new("/dev/log");
        let placeholder = std::fs::symlink_metadata(dev_log).is_err();
        if placeholder {
            std::fs::File::create(dev_log).expect("create /dev/log placeholder");
        }
        let status = Command::new("mount")
            .arg("--bind")
            .arg(&path)
            .arg(dev_log)
            .status()
            .unwrap();
        if !status.success() {
            // Leave /dev/log as it was found.
            if placeholder {
                let _ = std::fs::remove_file(dev_log);
            }
            panic!("mount --bind {} /dev/log", path.display());
        }
        assert!(std::fs::metadata(dev_log).unwrap().file_type().is_socket());
        let ours = Arc::new(AtomicU64::new(0));
        let theirs = Arc::new(AtomicU64::new(0));
        let (o, t) = (ours.clone(), theirs.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while let Ok(len) = sock.recv(&mut buf) {
                let line = &buf[..len];
                let has = |s: &[u8]| line.windows(s.len()).any(|w| w == s);
                // pam_syslog names the module by its file name, libpam_totp.so.
                if has(b"(pam_google_authenticator)") {
                    t.fetch_add(1, Ordering::Relaxed);
                } else if has(b"pam_totp(") {
                    o.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        LogSink {
            ours,
            theirs,
            placeholder,
        }
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        if self.placeholder {
            let _ = Command::new("umount").arg("/dev/log").status();
            let _ = std::fs::remove_file("/dev/log");
        }
    }
}

/// A real account with a home directory (google-authenticator keeps its state in
/// ~/.google_authenticator and looks the user up in /etc/passwd); removed on drop.
struct TestUser {
    name: String,
    home: PathBuf,
}

impl TestUser {
    fn create() -> Self {
        let name = format!("pbench{}", std::process::id());
        let status = Command::new("useradd")
            .args(["--create-home", "--shell", "/usr/sbin/nologin", &name])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {name}");
        let home = PathBuf::from(format!("/home/{name}"));
        assert!(home.is_dir(), "{} missing", home.display());
        TestUser { name, home }
    }

    /// ~/.google_authenticator as `google-authenticator -t -d -w 3 -u` writes it (TOTP,
    /// DISALLOW_REUSE, the default window of 3, no RATE_LIMIT, 5 scratch codes), with the
    /// fixture's secret: temp file, fsync, rename, as the module itself rewrites it.
    fn reset_google(&self) {
        let text = format!(
            "{TEST_SECRET_B32}\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n\
             37686201\n19178442\n67670238\n76234724\n11541872\n"
        );
        let meta = std::fs::metadata(&self.home).unwrap();
        let path = self.home.join(".google_authenticator");
        let tmp = self.home.join(".google_authenticator~bench");
        let f = std::fs::File::create(&tmp).unwrap();
        f.write_all_at(text.as_bytes(), 0).unwrap();
        f.sync_all().unwrap();
        std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid())).unwrap();
        f.set_permissions(std::fs::Permissions::from_mode(0o400))
            .unwrap();
        drop(f);
        std::fs::rename(&tmp, &path).unwrap();
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let ok = Command::new("userdel")
            .args(["--remove", &self.name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("warning: userdel --remove {} failed", self.name);
        }
    }
}

/// (line of `user`, number of lines) in /etc/passwd: google-authenticator reads the file
/// up to that line twice per login (getpwnam, then getpwuid); pam_totp does not read it.
fn passwd_position(user: &str) -> (usize, usize) {
    let text = std::fs::read_to_string("/etc/passwd").unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let prefix = format!("{user}:");
    let at = lines.iter().position(|l| l.starts_with(&prefix)).unwrap();
    (at + 1, lines.len())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One in-place 256-byte write + fdatasync per iteration, the durable part of our success.
fn fdatasync_cost(dir: &Path, n: usize) -> Stats {
    let path = dir.join(".bench.sync");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all_at(&[1u8; 4096 + 256], 0).unwrap();
    f.sync_all().unwrap();
    let buf = [7u8; 256];
    let v = (0..WARMUP + n)
        .map(|i| {
            let started = Instant::now();
            f.write_all_at(&buf, [0, 4096][i % 2]).unwrap();
            f.sync_data().unwrap();
            started.elapsed().as_secs_f64() * 1e6
        })
        .skip(WARMUP)
        .collect();
    std::fs::remove_file(&path).unwrap();
    Stats::of(v)
}

fn effective_uid() -> u32 {
    // std has no geteuid; the owner of a file we just created tells us who we are.
    let f = tempfile::tempfile().unwrap();
    f.metadata().unwrap().uid()
}
