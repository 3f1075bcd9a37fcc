//! One verification through pam_totpd against root's in-process one, in µs per call.
//! Prints figures; asserts nothing about speed (a busy machine must not fail a build).
//!
//! Run as root: `cargo bench -p pam_totpd --bench verify`. It starts the built daemon on a
//! private socket and state directory (under /var/tmp, on disk, so fsync costs what it
//! costs; BENCH_DIR moves it), and measures what the module does per login:
//! - in-process (root, backend files): enrollment check, key load, login transaction;
//! - through the daemon, with the module's own client (`pam_totp::daemon::Client`): the
//!   enrollment check and the code, one connection each; as root, and as a plain uid
//!   (`nobody`, whose account the daemon looks up through NSS for every request).
//!
//! Wrong codes (the counters are written, not synced) run against one user; accepted codes
//! (a durable write each) against distinct users, since a code is accepted once.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::store::{self, AuthRequest, Outcome};
use common::totp::{code_at, OtpParams, TotpSecret};
use common::{HostKey, Store, UserName};
use pam_totp::daemon::Client;
use zeroize::Zeroizing;

const ITERS: usize = 3000;
const USERS: usize = 1000;
const NOBODY: u32 = 65534;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn secret() -> TotpSecret {
    TotpSecret::from_bytes(Zeroizing::new(vec![0xa5; 20])).unwrap()
}

fn report(name: &str, start: Instant, n: usize) -> f64 {
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{name:<44} {us:>9.1} µs/call  ({n} calls)");
    us
}

/// A code that is wrong at every step near now.
fn wrong_code(now: i64) -> String {
    let p = OtpParams::default();
    let near: Vec<String> = (-3..=3)
        .map(|k| code_at(&secret(), &p, (now + k * 30) as u64).to_string())
        .collect();
    (0..1_000_000)
        .map(|i| format!("{i:06}"))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// The module's daemon path for one login: enrollment check, then the code.
fn daemon_login(client: &Client, user: &UserName, code: &str) -> Outcome {
    assert!(client.is_enrolled(user).unwrap());
    client
        .verify(user, code, Some("192.0.2.1"), None, "bench")
        .unwrap()
}

/// The wrong-code loop through the daemon, as whoever runs this.
fn daemon_wrong_loop(socket: &Path, user: &str) -> f64 {
    let client = Client::new(socket, Duration::from_secs(3));
    let user = UserName::parse(user).unwrap();
    let w = wrong_code(now());
    for _ in 0..50 {
        daemon_login(&client, &user, &w);
    }
    let start = Instant::now();
    for _ in 0..ITERS {
        let o = daemon_login(&client, &user, &w);
        assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
    }
    report(
        &format!("daemon, uid {}, wrong code", nix_uid()),
        start,
        ITERS,
    )
}

fn nix_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Child mode: the plain-uid client, started below as `nobody`.
    if let Some(i) = args.iter().position(|a| a == "--as-client") {
        daemon_wrong_loop(Path::new(&args[i + 1]), &args[i + 2]);
        return;
    }

    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let tmp = tempfile::tempdir_in(base).unwrap();
    // Reachable by `nobody` (the socket's directory and this binary's are too).
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let state_dir = tmp.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    std::fs::set_permissions(
        &state_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let key_file = tmp.path().join("key");
    let (key, _) = HostKey::load_or_create(&key_file).unwrap();
    let socket = tmp.path().join("run").join("socket");
    let config = tmp.path().join("pam_totp.conf");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nkey_file = \"{}\"\nsocket = \"{}\"\nmax_failures = 0\n",
            state_dir.display(),
            key_file.display(),
            socket.display()
        ),
    )
    .unwrap();
    let st = Store::new(&state_dir, key);
    let params = OtpParams::default();
    let name = |p: &str, i: usize| UserName::parse(&format!("{p}{i}")).unwrap();
    for i in 0..USERS {
        for p in ["inproc", "daemon"] {
            st.enroll(&name(p, i), secret(), params, None, 0, false, now())
                .unwrap();
        }
    }
    for u in ["single", "nobody"] {
        st.enroll(
            &UserName::parse(u).unwrap(),
            secret(),
            params,
            None,
            0,
            false,
            now(),
        )
        .unwrap();
    }

    let mut daemon: Child = Command::new(env!("CARGO_BIN_EXE_pam_totpd"))
        .arg("--config")
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "pam_totpd did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "pam_totpd against in-process, state on {}",
        tmp.path().display()
    );

    // In-process, as the module does it for each login.
    let cfg = common::Config {
        state_dir: state_dir.clone(),
        key_file: key_file.clone(),
        max_failures: 0,
        ..common::Config::default()
    };
    let in_process = |user: &UserName, code: &str, t: i64| {
        assert!(store::is_enrolled(&cfg.state_dir, user).unwrap());
        let st = Store::open(&cfg.state_dir, &cfg.key_file).unwrap();
        st.authenticate(
            user,
            code,
            &AuthRequest::from_config(&cfg, t, Some("192.0.2.1")),
        )
        .unwrap()
    };
    let single = UserName::parse("single").unwrap();
    let w = wrong_code(now());
    for _ in 0..50 {
        in_process(&single, &w, now());
    }
    let start = Instant::now();
    for _ in 0..ITERS {
        let o = in_process(&single, &w, now());
        assert!(matches!(o, Outcome::Rejected { .. }));
    }
    let inproc_wrong = report("in-process (root), wrong code", start, ITERS);

    let root_wrong = daemon_wrong_loop(&socket, "single");

    let me = std::env::current_exe().unwrap();
    let out = Command::new(&me)
        .arg("--as-client")
        .arg(&socket)
        .arg("nobody")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "client as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nobody_wrong: f64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .rev()
        .find_map(|w| w.parse().ok())
        .map_or(f64::NAN, |x: f64| x);

    // Accepted codes, each user once: a durable write per call on both paths.
    let t = now();
    let code = code_at(&secret(), &params, t as u64);
    let start = Instant::now();
    for i in 0..USERS {
        let o = in_process(&name("inproc", i), &code, t);
        assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
    }
    let inproc_ok = report("in-process (root), accepted code", start, USERS);
    let client = Client::new(&socket, Duration::from_secs(3));
    let start = Instant::now();
    for i in 0..USERS {
        let o = daemon_login(&client, &name("daemon", i), &code);
        assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
    }
    let daemon_ok = report("daemon, uid 0, accepted code", start, USERS);
    println!(
        "ratio daemon/in-process: wrong code {:.2}x (uid 0), {:.2}x (uid {NOBODY}); \
         accepted code {:.2}x (uid 0)",
        root_wrong / inproc_wrong,
        nobody_wrong / inproc_wrong,
        daemon_ok / inproc_ok
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
