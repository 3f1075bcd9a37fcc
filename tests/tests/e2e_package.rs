//! The packages: the .deb installed with dpkg on this machine (modes of every file, an
//! enrollment with the installed `totp-enroll`, a login through pamtester against the
//! installed module, remove and purge), the .rpm's file list and modes, and the shipped
//! config file and docs against the code.
//!
//! The packages come from `bash scripts/build-packages.sh` (scripts/test.sh runs it
//! before `cargo test`) in target/packages/. Run as root. The tests that run dpkg do so
//! in a private root of their own (an overlay of / on a tmpfs, in a mount namespace:
//! e2e_support::rerun_in_private_root), never on the system itself: an installed and
//! used pam_totp stays as it was, which the same helper checks with checksums taken
//! before and after.

mod e2e_support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::config::{apply_toml, Config};
use common::totp::{code_at, TotpSecret};
use common::OtpParams;
use e2e_support::{cmd, pam_service, pamtester, require, run, run_ok, TestUser, TIMEOUT};
use integration_tests::pam::{now, run_with_timeout, target_profile_dir, Run};

const DEB_NAME: &str = "libpam-totp";
const KEY: &str = "/etc/security/pam_totp.key";
const CONF: &str = "/etc/security/pam_totp.conf";
const STATE: &str = "/var/lib/pam_totp";
const MODULE_DEB: &str = "/usr/lib/x86_64-linux-gnu/security/pam_totp.so";
const CLI: &str = "/usr/bin/totp-enroll";
const DAEMON: &str = "/usr/sbin/pam_totpd";
/// The enable symlink of pam_totpd.socket (made by deb-systemd-helper, also without systemd).
const SOCKET_WANTS: &str = "/etc/systemd/system/sockets.target.wants/pam_totpd.socket";

/// Every key of SPEC's config file section.
const CONFIG_KEYS: [&str; 20] = [
    "state_dir",
    "key_file",
    "nullok",
    "window",
    "max_failures",
    "lockout_secs",
    "lockout_max_secs",
    "echo",
    "debug",
    "hotp_window",
    "grace_secs",
    "forward_pass",
    "issuer",
    "algorithm",
    "digits",
    "period",
    "recovery_codes",
    "backend",
    "socket",
    "daemon_timeout_ms",
];

/// dpkg and the system-wide paths admit one test at a time.
static SYSTEM: Mutex<()> = Mutex::new(());

fn repo_file(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The package in target/packages/ whose name starts with `prefix` and ends with
/// `suffix`. `None` (the test is skipped, loudly) only outside CI: in CI a missing
/// package is a failure.
fn package(prefix: &str, suffix: &str) -> Option<PathBuf> {
    let dir = target_profile_dir()
        .parent()
        .expect("target dir")
        .join("packages");
    let found = fs::read_dir(&dir).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
    });
    if found.is_none() {
        let msg = format!(
            "no {prefix}*{suffix} in {}: run `bash scripts/build-packages.sh` first \
             (scripts/test.sh does)",
            dir.display()
        );
        // scripts/test.sh builds the packages and says so; only a bare `cargo test`
        // on a developer's machine may skip.
        assert!(
            std::env::var_os("CI").is_none()
                && std::env::var_os("PAM_TOTP_TEST_PACKAGES").is_none(),
            "{msg}"
        );
        eprintln!("SKIPPED (packages not built): {msg}");
    }
    found
}

fn mode_of(path: &str) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// sha256 of every file of /etc/pam.d, by name, less the services that tests (these
/// or others running at the same time on a developer's machine) create and remove.
fn pam_d_snapshot() -> BTreeMap<String, String> {
    let r = run_ok(cmd(
        "sh",
        &["-c", "cd /etc/pam.d && find . -type f -exec sha256sum {} +"],
    ));
    r.stdout
        .lines()
        .map(|l| {
            let (hash, name) = l.split_once("  ").unwrap();
            (name.to_owned(), hash.to_owned())
        })
        .filter(|(name, _)| {
            let base = name.trim_start_matches("./");
            !(base.starts_with("pt") || base.starts_with("pamtotp-"))
        })
        .collect()
}

/// dpkg -i, -r or --purge: triggers (man-db) and maintainer scripts can take far longer
/// than TIMEOUT on a loaded machine, so they get a bound of their own.
fn dpkg(args: &[&str]) -> Run {
    run_with_timeout(cmd("dpkg", args), b"", std::time::Duration::from_secs(300))
}

fn dpkg_ok(args: &[&str]) -> Run {
    let r = dpkg(args);
    assert!(r.success(), "dpkg {args:?} failed: {r:?}");
    r
}

fn installed(pkg: &str) -> bool {
    let r = run(cmd("dpkg-query", &["-W", "-f=${db:Status-Status}", pkg]));
    r.success() && r.stdout.trim() == "installed"
}

/// Purges the package on drop, so a failing test leaves no installation behind in its
/// private root.
struct Installation;

impl Drop for Installation {
    fn drop(&mut self) {
        let r = dpkg(&["--purge", DEB_NAME]);
        if !r.success() {
            eprintln!("warning: dpkg --purge {DEB_NAME}: {r:?}");
        }
        // The package's own post-install made these; the guard checked they were absent.
        let _ = fs::remove_file(KEY);
        let _ = fs::remove_file(format!("{KEY}.new"));
        let _ = fs::remove_dir_all(STATE);
    }
}

/// In the private root only: clears what the system's own installation of pam_totp, if
/// any, put there (the copy of it, that is), so the test starts from a machine without it.
fn clear_private_root() {
    assert!(
        e2e_support::in_private_root(),
        "dpkg runs only in a private root"
    );
    if installed(DEB_NAME) {
        dpkg_ok(&["--purge", DEB_NAME]);
    }
    let _ = fs::remove_file(KEY);
    let _ = fs::remove_file(format!("{KEY}.new"));
    let _ = fs::remove_file(CONF);
    let _ = fs::remove_dir_all(STATE);
    for p in [KEY, CONF, STATE, MODULE_DEB, CLI] {
        assert!(
            fs::symlink_metadata(p).is_err(),
            "{p} exists after clearing the private root"
        );
    }
}

fn import(user: &str, secret: &TotpSecret) -> Run {
    run_with_timeout(
        cmd(CLI, &["import", "--user", user, "--secret-stdin"]),
        format!("{}\n", secret.to_base32().as_str()).as_bytes(),
        TIMEOUT,
    )
}

fn code(secret: &TotpSecret, t: i64) -> String {
    code_at(secret, &OtpParams::default(), t as u64).to_string()
}

fn assert_accepted(r: &Run) {
    assert!(
        r.success() && r.stdout.contains("successfully authenticated"),
        "pamtester should authenticate: {r:?}"
    );
}

fn assert_refused(r: &Run) {
    assert!(!r.success(), "pamtester should be refused: {r:?}");
}

#[test]
fn deb_installs_enrolls_authenticates_and_purges_cleanly() {
    let Some(deb) = package("libpam-totp_", ".deb") else {
        return;
    };
    for p in ["/usr/bin/dpkg", "/usr/bin/pamtester", "/usr/bin/setpriv"] {
        require(p);
    }
    if e2e_support::rerun_in_private_root("deb_installs_enrolls_authenticates_and_purges_cleanly") {
        return;
    }
    let _lock = SYSTEM.lock().unwrap_or_else(|e| e.into_inner());
    clear_private_root();
    let pam_d_before = pam_d_snapshot();
    let installation = Installation;
    dpkg_ok(&["-i", deb.to_str().unwrap()]);

    // Modes of every file the package installed, and of what its postinst created.
    let listed = run_ok(cmd("dpkg", &["-L", DEB_NAME])).stdout;
    let mut files = 0;
    for path in listed.lines().filter(|p| p.starts_with('/') && *p != "/.") {
        let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        if meta.is_dir() {
            continue;
        }
        files += 1;
        let want = match path {
            CLI => 0o4755,
            DAEMON => 0o755,
            _ => 0o644,
        };
        assert_eq!(
            mode_of(path),
            (want, 0, 0),
            "{path}: mode, uid, gid (want {want:o} root:root)"
        );
    }
    for p in [
        MODULE_DEB,
        CLI,
        CONF,
        "/usr/share/pam-configs/pam_totp",
        "/usr/share/man/man8/pam_totp.8.gz",
        "/usr/share/man/man1/totp-enroll.1.gz",
        "/usr/share/man/man5/pam_totp.conf.5.gz",
        "/usr/share/bash-completion/completions/totp-enroll",
        "/usr/share/zsh/vendor-completions/_totp-enroll",
        "/usr/share/doc/libpam-totp/README.md",
        "/usr/share/doc/libpam-totp/copyright",
        "/usr/share/doc/libpam-totp/examples/pam.d/sshd.publickey-and-code",
        "/usr/share/doc/libpam-totp/examples/pam_totpd-fleet.conf",
        DAEMON,
        "/usr/lib/systemd/system/pam_totpd.socket",
        "/usr/lib/systemd/system/pam_totpd.service",
        "/usr/share/man/man8/pam_totpd.8.gz",
    ] {
        assert!(listed.lines().any(|l| l == p), "{p} not in the package");
    }
    assert!(
        fs::symlink_metadata(SOCKET_WANTS).is_ok(),
        "pam_totpd.socket should be enabled on install"
    );
    assert!(files >= 12, "only {files} files installed");
    assert!(
        fs::read_to_string("/usr/share/doc/libpam-totp/copyright")
            .unwrap()
            .contains("GNU GENERAL PUBLIC LICENSE"),
        "the copyright file should carry the licence"
    );
    assert_eq!(mode_of(STATE), (0o700, 0, 0), "{STATE}");
    assert!(fs::metadata(STATE).unwrap().is_dir());
    assert_eq!(mode_of(KEY), (0o600, 0, 0), "{KEY}");
    assert_eq!(fs::metadata(KEY).unwrap().len(), 32, "{KEY} size");
    let conffiles = run_ok(cmd("dpkg-query", &["-W", "-f=${Conffiles}", DEB_NAME])).stdout;
    assert!(conffiles.contains(CONF), "conffiles: {conffiles}");
    assert!(fs::read_to_string("/usr/share/pam-configs/pam_totp")
        .unwrap()
        .contains("Default: no"));
    assert_eq!(
        pam_d_snapshot(),
        pam_d_before,
        "installing must not change /etc/pam.d"
    );

    let key_before = fs::read(KEY).unwrap();

    // Enroll with the installed CLI; log in through the installed module, found by
    // name in the system's module directory with the shipped config.
    let user = TestUser::create("pkg");
    let secret = TotpSecret::generate().unwrap();
    let r = import(&user.name, &secret);
    assert!(r.success(), "totp-enroll import: {r:?}");
    assert!(
        fs::symlink_metadata(Path::new(STATE).join(&user.name)).is_ok(),
        "no state file after import"
    );
    // Reinstalling (an upgrade runs the same postinst) keeps the key and the state.
    let state_file = Path::new(STATE).join(&user.name);
    assert_eq!(
        mode_of(state_file.to_str().unwrap()),
        (0o600, 0, 0),
        "state file"
    );
    let state_before = fs::read(&state_file).unwrap();
    dpkg_ok(&["-i", deb.to_str().unwrap()]);
    assert_eq!(
        fs::read(KEY).unwrap(),
        key_before,
        "reinstall replaced the key"
    );
    assert_eq!(
        fs::read(&state_file).unwrap(),
        state_before,
        "reinstall changed the state"
    );
    assert_eq!(mode_of(STATE), (0o700, 0, 0), "{STATE}");

    let svc = pam_service(
        "pkg",
        "auth required pam_totp.so\naccount required pam_permit.so\n",
    );
    let c = code(&secret, now());
    assert_refused(&pamtester(svc.name(), &user.name, "000000x\n"));
    assert_accepted(&pamtester(svc.name(), &user.name, &format!("{c}\n")));
    assert_refused(&pamtester(svc.name(), &user.name, &format!("{c}\n")));

    // The setuid CLI works for a plain user, and only on that user.
    let status = run(user.command(CLI, &["status"]));
    assert!(
        status.success(),
        "totp-enroll status as a plain user: {status:?}"
    );
    let other = TestUser::create("pko");
    let foreign = run(other.command(CLI, &["status", "--user", &user.name]));
    assert!(
        !foreign.success(),
        "a plain user must not read another's status: {foreign:?}"
    );
    let override_dir = run(user.command(CLI, &["status", "--state-dir", "/tmp"]));
    assert!(
        !override_dir.success(),
        "path overrides are root's only: {override_dir:?}"
    );

    // A plain user enrolls interactively through a terminal.
    enroll_interactively(&other, svc.name());

    // The pam-auth-update profile, once the admin enables it: password, then a code
    // for enrolled users; unenrolled users pass on the password alone (nullok). Removing
    // the package withdraws it (checked by the /etc/pam.d comparison at the end).
    let mut enable = cmd("pam-auth-update", &["--package", "--enable", "pam_totp"]);
    enable.env("DEBIAN_FRONTEND", "noninteractive");
    run_ok(enable);
    let common_auth = fs::read_to_string("/etc/pam.d/common-auth").unwrap();
    assert!(
        common_auth.contains("pam_totp.so nullok"),
        "profile not enabled: {common_auth}"
    );
    let common = pam_service(
        "pau",
        "@include common-auth\naccount required pam_permit.so\n",
    );
    user.set_password("profile password 3");
    let newcomer = TestUser::create("pkn");
    newcomer.set_password("profile password 4");
    let c = code(&secret, now() + 30);
    assert_refused(&pamtester(
        common.name(),
        &user.name,
        "profile password 3\n",
    ));
    assert_accepted(&pamtester(
        common.name(),
        &user.name,
        &format!("profile password 3\n{c}\n"),
    ));
    assert_accepted(&pamtester(
        common.name(),
        &newcomer.name,
        "profile password 4\n",
    ));
    assert_refused(&pamtester(common.name(), &newcomer.name, "wrong\n"));
    drop(common);

    // Remove: the module's lines that name it get a warning, in /etc/pam.d and in
    // /usr/lib/pam.d (read by Linux-PAM 1.7); key and state stay. The file in
    // /usr/lib/pam.d lives in the private root only.
    fs::create_dir_all("/usr/lib/pam.d").unwrap();
    let vendor = Path::new("/usr/lib/pam.d").join(e2e_support::unique_name("vnd"));
    fs::write(&vendor, "auth required pam_totp.so\n").unwrap();
    let removed = dpkg_ok(&["-r", DEB_NAME]);
    fs::remove_file(&vendor).unwrap();
    for named in [Path::new("/etc/pam.d").join(svc.name()), vendor.clone()] {
        assert!(
            removed.stderr.contains(named.to_str().unwrap()),
            "prerm should warn about {} naming pam_totp.so: {removed:?}",
            named.display()
        );
    }
    for p in [MODULE_DEB, CLI] {
        assert!(fs::symlink_metadata(p).is_err(), "{p} left after remove");
    }
    assert_eq!(
        fs::read(KEY).unwrap(),
        key_before,
        "remove must keep the key"
    );
    assert!(
        Path::new(STATE).join(&user.name).exists(),
        "remove must keep the state"
    );

    // Purge: key (with a rekey's leftover new key), state and config go.
    let key_new = format!("{KEY}.new");
    fs::write(&key_new, [0u8; 32]).unwrap();
    dpkg_ok(&["--purge", DEB_NAME]);
    for p in [KEY, key_new.as_str(), CONF, STATE, SOCKET_WANTS] {
        assert!(fs::symlink_metadata(p).is_err(), "{p} left after purge");
    }
    assert!(!installed(DEB_NAME));
    drop(svc);
    assert_eq!(
        pam_d_snapshot(),
        pam_d_before,
        "install and purge must leave /etc/pam.d as it was"
    );
    drop(installation);
}

#[test]
fn install_script_installs_a_cli_that_plain_users_run() {
    // The README's install command, as CI has it: build dependencies present (apt-get is
    // then not called), cargo-deb present (scripts/test.sh built the packages with it).
    if package("libpam-totp_", ".deb").is_none() {
        return;
    }
    require("/usr/bin/setpriv");
    if e2e_support::rerun_in_private_root("install_script_installs_a_cli_that_plain_users_run") {
        return;
    }
    let _lock = SYSTEM.lock().unwrap_or_else(|e| e.into_inner());
    clear_private_root();
    let pam_d_before = pam_d_snapshot();
    let installation = Installation;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh");
    let mut c = cmd("bash", &[script.to_str().unwrap()]);
    // Same target dir as this test, so the release build is the one already made.
    c.env(
        "CARGO_TARGET_DIR",
        target_profile_dir().parent().expect("target dir"),
    );
    let r = run_with_timeout(c, b"", std::time::Duration::from_secs(600));
    assert!(r.success(), "scripts/install.sh: {r:?}");
    assert!(installed(DEB_NAME), "install.sh did not install {DEB_NAME}");
    assert_eq!(mode_of(CLI), (0o4755, 0, 0));
    let user = TestUser::create("ins");
    let status = run(user.command("totp-enroll", &["status"]));
    assert!(
        status.success() && !status.stdout.is_empty(),
        "totp-enroll from PATH as a plain user: {status:?}"
    );
    assert_eq!(
        pam_d_snapshot(),
        pam_d_before,
        "install.sh changed /etc/pam.d"
    );
    drop(installation);
    assert!(!installed(DEB_NAME));
}

/// `totp-enroll` as `user` in a pseudo-terminal: reads the secret it prints, confirms
/// with the current code, and checks the result through the installed module.
fn enroll_interactively(user: &TestUser, service: &str) {
    let mut c = user.command(CLI, &["--qr", "none"]);
    c.env("TERM", "dumb");
    let session = rexpect::session::spawn_with_options(
        c,
        rexpect::reader::Options::new()
            .timeout_ms(Some(20_000))
            .strip_ansi_escape_codes(true),
    )
    .expect("spawn totp-enroll in a pty");
    let mut client = e2e_support::Client {
        session,
        seen: String::new(),
    };
    let none = || String::new();
    client.expect("Secret:", &none);
    let line = client.session.read_line().expect("secret line");
    let b32: String = line.split_whitespace().collect();
    let secret = TotpSecret::from_base32(&b32).expect("base32 secret after Secret:");
    client.expect("URI: otpauth://totp/", &none);
    let confirmed_at = now();
    client.send_line(&code(&secret, confirmed_at));
    client.expect("Recovery codes:", &none);
    let (out, exit) = client.finish();
    assert_eq!(exit, Some(0), "interactive enrollment: {out}");
    // The confirmation used up its time step; the next step's code (within the
    // default window) is fresh.
    assert_refused(&pamtester(
        service,
        &user.name,
        &format!("{}\n", code(&secret, confirmed_at)),
    ));
    assert_accepted(&pamtester(
        service,
        &user.name,
        &format!("{}\n", code(&secret, confirmed_at + 30)),
    ));
}

#[test]
fn rpm_lists_every_file_with_its_mode() {
    let Some(rpm) = package("pam_totp-", ".rpm") else {
        return;
    };
    require("/usr/bin/rpm");
    // install.sh (another test) rebuilds packages: read the rpm while nothing else does.
    let _lock = SYSTEM.lock().unwrap_or_else(|e| e.into_inner());
    let rpm = rpm.to_str().unwrap();
    // --dump: path size mtime digest mode owner group isconfig isdoc rdev symlink
    let dump = run_ok(cmd("rpm", &["-qlp", "--dump", rpm])).stdout;
    let files: BTreeMap<&str, (u32, &str, &str, bool)> = dump
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let mode = u32::from_str_radix(f[4], 8).unwrap() & 0o7777;
            (f[0], (mode, f[5], f[6], f[7] == "1"))
        })
        .collect();
    let want: &[(&str, u32, bool)] = &[
        ("/usr/lib64/security/pam_totp.so", 0o755, false),
        ("/usr/bin/totp-enroll", 0o4755, false),
        ("/usr/sbin/pam_totpd", 0o755, false),
        ("/usr/lib/systemd/system/pam_totpd.socket", 0o644, false),
        ("/usr/lib/systemd/system/pam_totpd.service", 0o644, false),
        ("/usr/share/man/man8/pam_totpd.8", 0o644, false),
        ("/etc/security/pam_totp.conf", 0o644, true),
        ("/usr/share/man/man8/pam_totp.8", 0o644, false),
        ("/usr/share/man/man1/totp-enroll.1", 0o644, false),
        ("/usr/share/man/man5/pam_totp.conf.5", 0o644, false),
        (
            "/usr/share/bash-completion/completions/totp-enroll",
            0o644,
            false,
        ),
        ("/usr/share/zsh/site-functions/_totp-enroll", 0o644, false),
        ("/usr/share/doc/pam_totp/README.md", 0o644, false),
        ("/usr/share/licenses/pam_totp/LICENSE", 0o644, false),
    ];
    for &(path, mode, config) in want {
        let got = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} not in the rpm:\n{dump}"));
        assert_eq!(*got, (mode, "root", "root", config), "{path}");
    }
    for (path, (mode, owner, group, _)) in &files {
        assert_eq!((*owner, *group), ("root", "root"), "{path}");
        assert!(
            *mode == 0o644 || want.iter().any(|w| w.0 == *path && w.1 == *mode),
            "{path}: unexpected mode {mode:o}"
        );
    }
    // The post-install scriptlet is the shared script, not a file name taken as text.
    let scripts = run_ok(cmd("rpm", &["-qp", "--scripts", rpm])).stdout;
    assert!(
        scripts.contains("postinstall scriptlet") && scripts.contains("create_key"),
        "{scripts}"
    );
    // The pre-uninstall scriptlet warns about PAM files still naming the module, in both
    // directories Linux-PAM reads.
    let preun = scripts
        .split("preuninstall scriptlet")
        .nth(1)
        .unwrap_or_else(|| panic!("no preuninstall scriptlet: {scripts}"));
    assert!(
        preun.contains("/etc/pam.d/*") && preun.contains("/usr/lib/pam.d/*"),
        "{scripts}"
    );
    let requires = run_ok(cmd("rpm", &["-qpR", rpm])).stdout;
    assert!(requires.lines().any(|l| l.trim() == "pam"), "{requires}");
}

#[test]
fn shipped_config_lists_every_key_commented_at_its_default() {
    let text = repo_file("packaging/pam_totp.conf");
    let mut uncommented = String::new();
    for key in CONFIG_KEYS {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("# {key} = ")))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{key} should appear once, commented: {lines:?}"
        );
        uncommented.push_str(&lines[0][2..]);
        uncommented.push('\n');
    }
    // Every key set in the file is a key the code knows: no warnings.
    let mut config = Config::default();
    let warnings = apply_toml(&mut config, &uncommented).expect("the documented values parse");
    assert!(warnings.is_empty(), "{warnings:?}");
    // Each value is the default (issuer's default is the host name: shown as an example).
    config.issuer = None;
    assert_eq!(config, Config::default());
    // Nothing else in the file is active.
    let mut bare = Config::default();
    assert!(apply_toml(&mut bare, &text).unwrap().is_empty());
    assert_eq!(bare, Config::default());
}

#[test]
fn docs_describe_every_config_key() {
    let man = repo_file("packaging/man/pam_totp.conf.5");
    let readme = repo_file("README.md");
    for key in CONFIG_KEYS {
        assert!(
            man.contains(&format!(".BR {key} ")),
            "pam_totp.conf(5) lacks {key}"
        );
        assert!(
            readme.contains(&format!("| `{key}`")),
            "README table lacks {key}"
        );
    }
    let man8 = repo_file("packaging/man/pam_totp.8");
    for option in [
        "config=",
        "state_dir=",
        "key_file=",
        "nullok",
        "window=",
        "max_failures=",
        "lockout_secs=",
        "echo",
        "debug",
        "hotp_window=",
        "grace_secs=",
        "forward_pass",
    ] {
        assert!(man8.contains(option), "pam_totp(8) lacks {option}");
    }
}

#[test]
fn completions_offer_every_subcommand_of_the_cli() {
    let cli = target_profile_dir().join("totp-enroll");
    assert!(
        cli.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        cli.display()
    );
    let help = run_ok(cmd(cli.to_str().unwrap(), &["--help"])).stdout;
    // clap lists subcommands under "Commands:", one per line, name first.
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Commands: section in --help:\n{help}"))
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(commands.len() >= 7, "{commands:?}");
    let bash = repo_file("packaging/completions/totp-enroll.bash");
    let zsh = repo_file("packaging/completions/_totp-enroll");
    for c in &commands {
        assert!(bash.contains(c), "bash completion lacks {c}");
        assert!(zsh.contains(&format!("'{c}:")), "zsh completion lacks {c}");
    }
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/completions/totp-enroll.bash");
    let r = run(cmd("bash", &["-n", path.to_str().unwrap()]));
    assert!(r.success(), "bash -n: {r:?}");
}
