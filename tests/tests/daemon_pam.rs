//! pam_totp.so run by plain users (screen lockers), through real libpam, with a real
//! pam_totpd: pamtester through setpriv on the exact lines pam-auth-update writes, a PAM
//! stack the user writes (pam_start_confdir) that tries to loosen the policy, and a daemon
//! that is missing or silent.

mod e2e_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::UserName;
use e2e_support::{pam_service, require, TestUser, TIMEOUT};
use integration_tests::daemon::*;
use integration_tests::pam::*;

const CONFDIR_CLIENT: &str = env!("CARGO_BIN_EXE_pam-confdir");

/// The shipped pam-auth-update profile's auth line(s), as pam-auth-update writes them
/// into common-auth's "Additional" block: `auth\t<line>`.
fn profile_auth_lines() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/pam-configs/pam_totp");
    let text = fs::read_to_string(path).unwrap();
    let mut in_auth = false;
    let mut lines = Vec::new();
    for l in text.lines() {
        if l == "Auth:" {
            in_auth = true;
        } else if in_auth && l.starts_with(char::is_whitespace) {
            lines.push(format!("auth\t{}", l.trim()));
        } else {
            in_auth = false;
        }
    }
    assert!(!lines.is_empty(), "no Auth: lines in the profile");
    lines
}

/// common-auth as pam-auth-update writes it on Debian with the unix profile and ours
/// enabled: pam_unix's primary block, then ours. The module is the built one, with the
/// test's config (so its socket); the rest of our line (`nullok`) is the profile's.
/// The built module, copied where every user can read it: the build tree may sit below a
/// home only root enters (/root/project on a fresh machine), and these logins run as plain
/// users. Removed on drop.
struct ReachableModule(tempfile::TempDir);

impl ReachableModule {
    fn new() -> ReachableModule {
        let dir = tempfile::Builder::new()
            .prefix("pam_totp-module.")
            .tempdir_in("/tmp")
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("libpam_totp.so");
        fs::copy(module_path(), &path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        ReachableModule(dir)
    }

    fn path(&self) -> std::path::PathBuf {
        self.0.path().join("libpam_totp.so")
    }
}

fn common_auth(f: &Fixture, module: &ReachableModule) -> String {
    let ours = format!("{} config={}", module.path().display(), f.config.display());
    let mut s = String::from(
        "auth\t[success=1 default=ignore]\tpam_unix.so nullok\n\
         auth\trequisite\t\t\tpam_deny.so\n\
         auth\trequired\t\t\tpam_permit.so\n",
    );
    for l in profile_auth_lines() {
        s.push_str(&l.replace("pam_totp.so", &ours));
        s.push('\n');
    }
    s.push_str("account\trequired\tpam_permit.so\n");
    s
}

/// pamtester as `user` (real and effective uid), answering prompts with `input`.
fn pamtester_as(user: &TestUser, service: &str, input: &str) -> Run {
    let c = user.command(
        "/usr/bin/pamtester",
        &["-v", service, &user.name, "authenticate"],
    );
    run_with_timeout(c, input.as_bytes(), TIMEOUT)
}

fn accepted(r: &Run) -> bool {
    r.success() && r.stdout.contains("successfully authenticated")
}

#[test]
fn the_pam_auth_update_profile_works_for_screen_lockers() {
    require("/usr/bin/pamtester");
    require("/usr/bin/setpriv");
    let f = Fixture::new();
    write_config(
        &f,
        &config_text(&f, "max_failures = 5\ndaemon_timeout_ms = 2000"),
    );
    let module = ReachableModule::new();
    let svc = pam_service("dsl", &common_auth(&f, &module));
    let enrolled = TestUser::create("dse");
    let newcomer = TestUser::create("dsn");
    enrolled.set_password("locker password 1");
    newcomer.set_password("locker password 2");
    f.enroll(&enrolled.name, 0);

    // Without the daemon, a screen locker cannot decide: it fails closed, even for a
    // user who never enrolled (the bug this daemon fixes).
    let r = pamtester_as(&newcomer, svc.name(), "locker password 2\n");
    assert!(!r.success(), "{r:?}");
    assert!(
        r.stderr
            .contains("Authentication service cannot retrieve authentication info"),
        "{r:?}"
    );

    let d = TestDaemon::start(&f.config, &socket_of(&f));
    let c = f.code_at(now());
    assert!(
        accepted(&pamtester_as(
            &enrolled,
            svc.name(),
            &format!("locker password 1\n{c}\n")
        )),
        "enrolled user, right code"
    );
    let r = pamtester_as(
        &enrolled,
        svc.name(),
        &format!("locker password 1\n{}\n", f.wrong_code()),
    );
    assert!(!accepted(&r), "enrolled user, wrong code: {r:?}");
    let r = pamtester_as(&newcomer, svc.name(), "locker password 2\n");
    assert!(accepted(&r), "unenrolled user, nullok: {r:?}");
    assert!(
        !accepted(&pamtester_as(&newcomer, svc.name(), "wrong password\n")),
        "the password still matters"
    );
    // The daemon decided: it logged the decisions with the callers' uids.
    let log = d.log();
    assert!(
        log.contains(&format!(
            "code accepted; 0 rejected since the last success (service={}",
            svc.name()
        )) && log.contains(&format!("uid={}", enrolled.uid)),
        "{log}"
    );
    drop(d);

    // Root, with backend files: in-process as before, no daemon needed.
    let c = f.code_at(now() + 30);
    let r = pamtester(
        svc.name(),
        &enrolled.name,
        format!("locker password 1\n{c}\n").as_bytes(),
        None,
    );
    assert!(accepted(&r), "root in-process without a daemon: {r:?}");
}

/// A PAM stack written by the user, in a directory the user owns, loaded with
/// `pam_start_confdir` by a program the user runs.
fn users_own_stack(user: &TestUser, line: &str) -> std::path::PathBuf {
    let dir = user.home.join("pam.d");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("mine"), format!("auth required {line}\n")).unwrap();
    for p in [&user.home, &dir, &dir.join("mine")] {
        std::os::unix::fs::chown(p, Some(user.uid), Some(user.gid)).unwrap();
    }
    fs::set_permissions(&user.home, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// `pam-confdir` as `user`: the `rc=...` line and the messages.
fn confdir_login(user: &TestUser, confdir: &Path, input: &str) -> (String, String) {
    let c = user.command(
        CONFDIR_CLIENT,
        &[confdir.to_str().unwrap(), "mine", &user.name],
    );
    let r = run_with_timeout(c, format!("{input}\n").as_bytes(), TIMEOUT);
    assert!(r.success(), "pam-confdir: {r:?}");
    let mut lines = r.stdout.lines();
    let rc = lines.next().unwrap_or_default().to_owned();
    (rc, lines.collect::<Vec<_>>().join("\n"))
}

#[test]
fn a_stack_the_user_writes_gains_nothing() {
    let f = Fixture::new();
    write_config(
        &f,
        &config_text(&f, "window = 1\nmax_failures = 3\nlockout_secs = 600"),
    );
    let _d = TestDaemon::start(&f.config, &socket_of(&f));
    let user = TestUser::create("dsw");
    f.enroll(&user.name, 0);
    // The user's own "state" and "key", to point the module at.
    let fake = user.home.join("x");
    fs::create_dir_all(&fake).unwrap();
    std::os::unix::fs::chown(&fake, Some(user.uid), Some(user.gid)).unwrap();
    let module = ReachableModule::new();
    let confdir = users_own_stack(
        &user,
        &format!(
            "{} config={} window=10 max_failures=0 lockout_secs=0 state_dir={} key_file={}/key nullok",
            module.path().display(),
            f.config.display(),
            fake.display(),
            fake.display()
        ),
    );
    let name = UserName::parse(&user.name).unwrap();

    // A code 5 steps old: window=10 would take it; the daemon's window=1 does not.
    let old = f.code_at(now() - 5 * 30);
    let (rc, msgs) = confdir_login(&user, &confdir, &old);
    assert_eq!(rc, "rc=7 PAM_AUTH_ERR", "{msgs}");
    let st = f.store().status(&name).unwrap().unwrap();
    assert_eq!(st.counters.failures, 1, "counted in the daemon's state");

    // max_failures=0 would never lock; the daemon's max_failures=3 does.
    let wrong = wrong_codes(&f.secret(), &f.params, 2);
    assert_eq!(
        confdir_login(&user, &confdir, &wrong[0]).0,
        "rc=7 PAM_AUTH_ERR"
    );
    let (rc, msgs) = confdir_login(&user, &confdir, &wrong[1]);
    assert_eq!(rc, "rc=7 PAM_AUTH_ERR");
    assert!(
        msgs.contains("too many failed attempts; locked until"),
        "{msgs}"
    );
    // Locked now: even the right code is refused.
    let (rc, _) = confdir_login(&user, &confdir, &f.code_at(now()));
    assert_eq!(rc, "rc=11 PAM_MAXTRIES");
    let st = f.store().status(&name).unwrap().unwrap();
    assert!(
        st.locked(now() + 500),
        "locked for lockout_secs=600: {st:?}"
    );
    assert_eq!(st.counters.failures, 3);
    assert!(
        fs::read_dir(&fake).unwrap().next().is_none(),
        "nothing was read or written in the user's state_dir"
    );
}

#[test]
fn a_missing_or_silent_daemon_fails_closed_in_time() {
    let f = Fixture::new();
    let sock = socket_of(&f);
    write_config(&f, &config_text(&f, "daemon_timeout_ms = 500"));
    let user = TestUser::create("dsm");
    let module = ReachableModule::new();
    let confdir = users_own_stack(
        &user,
        &format!("{} config={}", module.path().display(), f.config.display()),
    );

    // Nobody listening (no socket at all).
    let (rc, _) = confdir_login(&user, &confdir, "123456");
    assert_eq!(rc, "rc=9 PAM_AUTHINFO_UNAVAIL");

    // A socket whose owner never answers: accepted by the kernel, never read.
    let dir = sock.parent().unwrap();
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let silent = UnixListener::bind(&sock).unwrap();
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
    let t = Instant::now();
    let (rc, _) = confdir_login(&user, &confdir, "123456");
    assert_eq!(rc, "rc=9 PAM_AUTHINFO_UNAVAIL");
    // 500 ms for the enrollment check; bounded, not hung (generous for a loaded host).
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(silent);
}
