//! Benchmark: pam_start_confdir / pam_authenticate / pam_end through libpam, for pam_totp.so
//! and google-authenticator-libpam. Prints figures; see README.md.
//!
//! Usage: pam-bench PATH/libpam_totp.so [ITERATIONS [--only-ours | --wrong-only]]

use std::ffi::c_int;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{HostKey, OtpParams, Store, TotpSecret, UserName};
use integration_tests::pam::{
    code_name, now, ConvMode, Pam, Reply, PAM_AUTH_ERR, PAM_MAXTRIES, PAM_SUCCESS,
};

const GOOGLE_AUTH: &str = "/usr/lib/x86_64-linux-gnu/security/pam_google_authenticator.so";
const RHOST: &str = "192.0.2.1";

struct Bench {
    confdir: PathBuf,
}

impl Bench {
    fn service(&self, name: &str, text: &str) {
        std::fs::write(self.confdir.join(name), text).unwrap();
    }

    /// One transaction; returns the result of pam_authenticate.
    fn auth(&self, service: &str, user: &str, input: &str) -> c_int {
        let mut pam = Pam::start(
            &self.confdir,
            service,
            Some(user.as_bytes()),
            ConvMode::Scripted,
        );
        pam.set_rhost(RHOST);
        pam.reply([Reply::text(input)]);
        pam.authenticate(0)
    }

    /// µs per pam_start_confdir + pam_end alone: parsing the service file and loading and
    /// unloading its modules, without calling them.
    fn start_end(&self, service: &str, n: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..n {
            drop(Pam::start(
                &self.confdir,
                service,
                Some(b"u0"),
                ConvMode::Scripted,
            ));
        }
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    }

    /// µs per transaction over `inputs` (user, code), checking every result.
    fn run(&self, label: &str, service: &str, inputs: &[(String, String)], want: c_int) -> f64 {
        let start = Instant::now();
        let mut wrong = 0;
        let mut first_wrong = None;
        for (user, input) in inputs {
            let rc = self.auth(service, user, input);
            if rc != want {
                wrong += 1;
                first_wrong.get_or_insert(rc);
            }
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / inputs.len() as f64;
        if let Some(rc) = first_wrong {
            eprintln!(
                "warning: {label}: {wrong} of {} results were not {} (first: {})",
                inputs.len(),
                code_name(want),
                code_name(rc)
            );
        }
        us
    }
}

fn secret_dir(path: &Path) {
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn code(secret: &TotpSecret, t: i64) -> String {
    common::totp::code_at(secret, &OtpParams::default(), t as u64).to_string()
}

fn repeat(user: &str, input: &str, n: usize) -> Vec<(String, String)> {
    vec![(user.to_owned(), input.to_owned()); n]
}

struct Row {
    name: &'static str,
    ours: f64,
    theirs: Option<f64>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let module = PathBuf::from(
        args.get(1)
            .expect("usage: pam-bench PATH/libpam_totp.so [N]"),
    );
    assert!(
        module.is_file(),
        "{} not found: build it with cargo build --release -p pam_totp",
        module.display()
    );
    let n: usize = args.get(2).map_or(2000, |s| s.parse().expect("iterations"));
    assert_eq!(
        effective_uid(),
        0,
        "run as root: state files must be root's"
    );

    // Not /var/tmp (1777): every ancestor of a state dir must be root's and not writable
    // by others.
    std::fs::create_dir_all("/var/lib/pam_totp-tests").unwrap();
    let dir = tempfile::tempdir_in("/var/lib/pam_totp-tests").unwrap();
    let confdir = dir.path().join("pam.d");
    std::fs::create_dir(&confdir).unwrap();
    let b = Bench { confdir };
    let state = dir.path().join("state");
    secret_dir(&state);
    let key = dir.path().join("pam_totp.key");
    HostKey::generate().unwrap().store(&key).unwrap();
    let base = format!(
        "config={} state_dir={} key_file={}",
        dir.path().join("absent.conf").display(),
        state.display(),
        key.display()
    );
    let m = module.display();
    b.service(
        "ours",
        &format!("auth required {m} {base} max_failures=0\n"),
    );
    b.service(
        "ours-lock",
        &format!("auth required {m} {base} max_failures=1 lockout_secs=3600\n"),
    );
    b.service("permit", "auth required pam_permit.so\n");
    b.service(
        "ours-badopt",
        &format!("auth required {m} {base} window=abc\n"),
    );
    b.service(
        "ours-nullok",
        &format!("auth required {m} {base} nullok\nauth required pam_permit.so\n"),
    );

    println!("pam-bench: {n} iterations per workload, module {m}");
    println!("state in {}", dir.path().display());
    if args.get(3).is_some_and(|a| a == "--wrong-only") {
        // For profiling one path (perf, /usr/bin/time): only the wrong-code loop.
        let store = Store::open(&state, &key).unwrap();
        let user = UserName::parse("w").unwrap();
        let secret = TotpSecret::generate().unwrap();
        store
            .enroll(&user, secret, OtpParams::default(), None, 0, true, now())
            .unwrap();
        let us = b.run(
            "ours wrong",
            "ours",
            &repeat("w", "000000", n),
            PAM_AUTH_ERR,
        );
        println!("wrong code: {us:.1} µs");
        return;
    }

    // --- pam_totp ---
    let store = Store::open(&state, &key).unwrap();
    let params = OtpParams::default();
    let mut secrets = Vec::with_capacity(n);
    print!("enrolling {n} users for pam_totp... ");
    std::io::stdout().flush().unwrap();
    for i in 0..n {
        let s = TotpSecret::generate().unwrap();
        let copy = TotpSecret::from_base32(&s.to_base32()).unwrap();
        let user = UserName::parse(&format!("u{i}")).unwrap();
        store
            .enroll(&user, copy, params, None, 0, true, now())
            .unwrap();
        secrets.push(s);
    }
    println!("done");
    let t = now();
    let first: Vec<_> = (0..n)
        .map(|i| (format!("u{i}"), code(&secrets[i], t)))
        .collect();
    let ours_first = b.run("ours first login", "ours", &first, PAM_SUCCESS);
    // The next step is inside window=1: a fresh code for every user, counters file exists.
    let next: Vec<_> = (0..n)
        .map(|i| (format!("u{i}"), code(&secrets[i], t + 30)))
        .collect();
    let ours_success = b.run("ours success", "ours", &next, PAM_SUCCESS);

    for u in ["w", "r", "l"] {
        let copy = TotpSecret::from_base32(&secrets[0].to_base32()).unwrap();
        store
            .enroll(
                &UserName::parse(u).unwrap(),
                copy,
                params,
                None,
                0,
                true,
                now(),
            )
            .unwrap();
    }
    let ours_wrong = b.run(
        "ours wrong",
        "ours",
        &repeat("w", "000000", n),
        PAM_AUTH_ERR,
    );
    let c = code(&secrets[0], now());
    b.run(
        "ours replay setup",
        "ours",
        &repeat("r", &c, 1),
        PAM_SUCCESS,
    );
    let ours_replay = b.run("ours replay", "ours", &repeat("r", &c, n), PAM_AUTH_ERR);
    b.run(
        "ours lock setup",
        "ours-lock",
        &repeat("l", "000000", 1),
        PAM_AUTH_ERR,
    );
    let ours_locked = b.run(
        "ours locked",
        "ours-lock",
        &repeat("l", &c, n),
        PAM_MAXTRIES,
    );
    let baseline = b.run("pam_permit", "permit", &repeat("u0", "", n), PAM_SUCCESS);
    let sync = fdatasync_cost(&state, n);
    let load_ours = b.start_end("ours", n);
    let load_permit = b.start_end("permit", n);
    let mut in_process = module_steps(&state, &key, &dir.path().join("absent.conf"), n);
    // Successes in-process: a third fresh step for every user of the success workload.
    {
        let t = now() + 60;
        let req = common::AuthRequest {
            now: t,
            window: 1,
            max_failures: 0,
            lockout_secs: 300,
            rhost: Some(RHOST),
        };
        let codes: Vec<_> = (0..n)
            .map(|i| {
                (
                    UserName::parse(&format!("u{i}")).unwrap(),
                    code(&secrets[i], t),
                )
            })
            .collect();
        let start = Instant::now();
        for (user, c) in &codes {
            let o = store.authenticate(user, c, &req).unwrap();
            assert!(matches!(o, common::Outcome::Accepted { .. }), "{o:?}");
        }
        in_process.push((
            "Store::authenticate, success (one fdatasync)",
            start.elapsed().as_secs_f64() * 1e6 / n as f64,
        ));
        // One user again and again, each time at a later step: the same work, warm caches.
        // Each success is paired with a bare write + fdatasync of another file in the same
        // directory, so that disk noise hits both alike; medians resist the rest.
        let user = UserName::parse("u0").unwrap();
        let sync_file = SyncProbe::new(&state);
        let mut auth_us = Vec::with_capacity(n);
        let mut beyond_us = Vec::with_capacity(n);
        for k in 0..n as i64 {
            let t = now() + 3600 + 30 * k;
            let req = common::AuthRequest {
                now: t,
                window: 0,
                max_failures: 0,
                lockout_secs: 300,
                rhost: Some(RHOST),
            };
            let c = code(&secrets[0], t);
            let started = Instant::now();
            let o = store.authenticate(&user, &c, &req).unwrap();
            let a = started.elapsed().as_secs_f64() * 1e6;
            assert!(matches!(o, common::Outcome::Accepted { .. }), "{o:?}");
            let s = sync_file.once(k as usize);
            auth_us.push(a);
            beyond_us.push(a - s);
        }
        in_process.push((
            "Store::authenticate, success, same user (median)",
            median(&mut auth_us),
        ));
        in_process.push((
            "  the same minus a paired bare fdatasync (median)",
            median(&mut beyond_us),
        ));
    }
    let load_only = b.run(
        "ours bad option",
        "ours-badopt",
        &repeat("u0", "", n),
        integration_tests::pam::PAM_SERVICE_ERR,
    );
    let not_enrolled = b.run(
        "ours not enrolled",
        "ours-nullok",
        &repeat("nobody", "", n),
        PAM_SUCCESS,
    );

    // --- google-authenticator-libpam ---
    let only_ours = args.get(3).is_some_and(|a| a == "--only-ours");
    let theirs = if only_ours {
        None
    } else if Path::new(GOOGLE_AUTH).exists() {
        Some(google_auth(&b, dir.path(), &secrets, n))
    } else {
        println!("{GOOGLE_AUTH} not installed: pam_totp only");
        None
    };

    let rows = [
        Row {
            name: "success (fresh code, durable write)",
            ours: ours_success,
            theirs: theirs.map(|t| t[0]),
        },
        Row {
            name: "success, first login of the user",
            ours: ours_first,
            theirs: theirs.map(|t| t[1]),
        },
        Row {
            name: "wrong code",
            ours: ours_wrong,
            theirs: theirs.map(|t| t[2]),
        },
        Row {
            name: "replayed code",
            ours: ours_replay,
            theirs: theirs.map(|t| t[3]),
        },
        Row {
            name: "locked / rate-limited",
            ours: ours_locked,
            theirs: theirs.map(|t| t[4]),
        },
    ];
    let mut out = String::new();
    writeln!(
        out,
        "\n{:<38} {:>12} {:>14} {:>8}",
        "workload (µs per pam_authenticate)", "pam_totp", "google-auth", "ratio"
    )
    .unwrap();
    for r in &rows {
        match r.theirs {
            Some(t) => writeln!(
                out,
                "{:<38} {:>12.1} {:>14.1} {:>8.3}",
                r.name,
                r.ours,
                t,
                r.ours / t
            )
            .unwrap(),
            None => writeln!(
                out,
                "{:<38} {:>12.1} {:>14} {:>8}",
                r.name, r.ours, "-", "-"
            )
            .unwrap(),
        }
    }
    writeln!(
        out,
        "\npam_start + pam_end only (load and unload): pam_totp.so {load_ours:.1} µs, \
         pam_permit.so {load_permit:.1} µs"
    )
    .unwrap();
    writeln!(
        out,
        "libpam round trip with pam_permit.so only: {baseline:.1} µs"
    )
    .unwrap();
    writeln!(
        out,
        "pam_totp loaded, options refused (window=abc): {load_only:.1} µs"
    )
    .unwrap();
    writeln!(
        out,
        "pam_totp, user not enrolled (nullok) + pam_permit: {not_enrolled:.1} µs"
    )
    .unwrap();
    writeln!(
        out,
        "\nthe module's steps called in-process (no libpam, no dlopen), µs each:"
    )
    .unwrap();
    for (name, us) in &in_process {
        writeln!(out, "  {name:<52} {us:>8.1}").unwrap();
    }
    writeln!(
        out,
        "one 256-byte pwrite + fdatasync in the state dir: {sync:.1} µs"
    )
    .unwrap();
    writeln!(
        out,
        "pam_totp on success beyond one fdatasync and the pam_permit round trip: {:.1} µs \
         (includes loading the module)",
        ours_success - sync - baseline
    )
    .unwrap();
    // Options, enrollment check and host key come before the transaction on every login.
    let before: f64 = in_process[..3].iter().map(|(_, us)| us).sum();
    let in_success = before + in_process[in_process.len() - 1].1;
    writeln!(
        out,
        "pam_totp's own work on success beyond one fdatasync (in-process: options, enrollment \
         check, host key, transaction): {in_success:.1} µs"
    )
    .unwrap();
    print!("{out}");
}

/// What pam_sm_authenticate does for a wrong code, step by step, called directly.
fn module_steps(state: &Path, key: &Path, config: &Path, n: usize) -> Vec<(&'static str, f64)> {
    let args = [
        format!("config={}", config.display()),
        format!("state_dir={}", state.display()),
        format!("key_file={}", key.display()),
    ];
    let user = UserName::parse("w").unwrap();
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let mut out = Vec::new();
    out.push((
        "config::load_with_args (file absent)",
        time(&mut || {
            common::config::load_with_args(&args).unwrap();
        }),
    ));
    out.push((
        "store::is_enrolled",
        time(&mut || {
            assert!(common::store::is_enrolled(state, &user).unwrap());
        }),
    ));
    out.push((
        "Store::open (host key)",
        time(&mut || {
            Store::open(state, key).unwrap();
        }),
    ));
    let store = Store::open(state, key).unwrap();
    let req = common::AuthRequest {
        now: now(),
        window: 1,
        max_failures: 0,
        lockout_secs: 300,
        rhost: Some(RHOST),
    };
    out.push((
        "Store::authenticate, wrong code",
        time(&mut || {
            store.authenticate(&user, "000000", &req).unwrap();
        }),
    ));
    out
}

/// A file beside the counters files, written in place and synced like them.
struct SyncProbe(std::fs::File, PathBuf);

impl SyncProbe {
    fn new(dir: &Path) -> Self {
        let path = dir.join(".bench.probe");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        f.write_all_at(&[1u8; 4096 + 256], 0).unwrap();
        f.sync_all().unwrap();
        SyncProbe(f, path)
    }

    /// µs for one 256-byte write and fdatasync.
    fn once(&self, i: usize) -> f64 {
        let started = Instant::now();
        self.0.write_all_at(&[7u8; 256], [0, 4096][i % 2]).unwrap();
        self.0.sync_data().unwrap();
        started.elapsed().as_secs_f64() * 1e6
    }
}

impl Drop for SyncProbe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Mean cost of one in-place 256-byte write + fdatasync, the durable part of a success.
fn fdatasync_cost(dir: &Path, n: usize) -> f64 {
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
    let start = Instant::now();
    for i in 0..n {
        f.write_all_at(&buf, [0, 4096][i % 2]).unwrap();
        f.sync_data().unwrap();
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    std::fs::remove_file(&path).unwrap();
    us
}

/// The same workloads against pam_google_authenticator.so: [success, first, wrong, replay,
/// rate-limited].
fn google_auth(b: &Bench, root: &Path, secrets: &[TotpSecret], n: usize) -> [f64; 5] {
    let dir = root.join("google");
    secret_dir(&dir);
    let write = |user: &str, secret: &TotpSecret, extra: &str| {
        let text = format!(
            "{}\n\" TOTP_AUTH\n\" DISALLOW_REUSE\n\" WINDOW_SIZE 3\n{extra}",
            secret.to_base32().as_str()
        );
        let p = dir.join(user);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    b.service(
        "google",
        &format!(
            "auth required {GOOGLE_AUTH} secret={}/${{USER}} user=root allowed_perm=0600\n",
            dir.display()
        ),
    );
    for (i, s) in secrets.iter().enumerate() {
        write(&format!("g{i}"), s, "");
    }
    let t = now();
    let first: Vec<_> = (0..n)
        .map(|i| (format!("g{i}"), code(&secrets[i], t)))
        .collect();
    let g_first = b.run("google first", "google", &first, PAM_SUCCESS);
    let next: Vec<_> = (0..n)
        .map(|i| (format!("g{i}"), code(&secrets[i], t + 30)))
        .collect();
    let g_success = b.run("google success", "google", &next, PAM_SUCCESS);

    write("gw", &secrets[0], "");
    write("gr", &secrets[0], "");
    write("gl", &secrets[0], "\" RATE_LIMIT 1 3600\n");
    let g_wrong = b.run(
        "google wrong",
        "google",
        &repeat("gw", "000000", n),
        PAM_AUTH_ERR,
    );
    let c = code(&secrets[0], now());
    b.run(
        "google replay setup",
        "google",
        &repeat("gr", &c, 1),
        PAM_SUCCESS,
    );
    let g_replay = b.run(
        "google replay",
        "google",
        &repeat("gr", &c, n),
        PAM_AUTH_ERR,
    );
    b.run(
        "google limit setup",
        "google",
        &repeat("gl", "000000", 1),
        PAM_AUTH_ERR,
    );
    let g_locked = b.run(
        "google rate-limited",
        "google",
        &repeat("gl", &c, n),
        PAM_AUTH_ERR,
    );
    [g_success, g_first, g_wrong, g_replay, g_locked]
}

fn effective_uid() -> u32 {
    // std has no geteuid; the owner of a file we just created tells us who we are.
    use std::os::unix::fs::MetadataExt;
    let f = tempfile::tempfile().unwrap();
    f.metadata().unwrap().uid()
}
