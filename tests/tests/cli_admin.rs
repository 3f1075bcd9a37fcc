//! `totp-enroll` commands other than enrollment, run as root on a temporary state
//! directory: status, list, unlock, disable, recovery-codes; path options; exit codes.

mod cli_support;

use cli_support::*;
use common::{Outcome, UserName};
use integration_tests::pam::{now, Fixture, TEST_SECRET_B32};
use serde_json::Value;

fn json(r: &integration_tests::pam::Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", r.stdout))
}

/// Fails `user`'s code `n` times.
fn fail(f: &Fixture, user: &str, n: usize) {
    for _ in 0..n {
        authenticate(&f.store(), user, "000000x");
    }
}

#[test]
fn status_json_reports_the_enrollment_and_never_the_secret() {
    let f = Fixture::new();
    f.enroll("daemon", 5);
    fail(&f, "daemon", 2);
    let r = run_ok(&f, &["status", "--user", "daemon", "--json"], b"");
    let v = json(&r);
    assert_eq!(v["user"], "daemon");
    assert_eq!(v["enrolled"], true);
    assert_eq!(v["algorithm"], "SHA1");
    assert_eq!(v["digits"], 6);
    assert_eq!(v["period"], 30);
    assert_eq!(v["failures"], 2);
    assert_eq!(v["locked"], false);
    assert_eq!(v["recovery_codes_left"], 5);
    assert_eq!(v["last_used"], Value::Null);
    assert!(v["created"].as_i64().unwrap() <= now());
    let human = run_ok(&f, &["status", "--user", "daemon"], b"");
    for out in [&r.stdout, &human.stdout] {
        assert!(!out.contains(TEST_SECRET_B32) && !out.contains(&TEST_SECRET_B32[..8]));
    }
    assert!(human.stdout.contains("recovery codes left: 5"), "{human:?}");
}

#[test]
fn status_of_a_user_not_enrolled() {
    let f = Fixture::new();
    let r = run_ok(&f, &["status", "--json"], b"");
    assert_eq!(
        json(&r),
        serde_json::json!({"user": "root", "enrolled": false})
    );
    let r = run_ok(&f, &["status", "--user", "bin"], b"");
    assert!(r.stdout.contains("bin: not enrolled"), "{r:?}");
}

#[test]
fn list_shows_every_enrolled_user() {
    let f = Fixture::new();
    for u in ["daemon", "bin", "sys"] {
        f.enroll(u, 3);
    }
    let r = run_ok(&f, &["list", "--json"], b"");
    let mut names: Vec<String> = json(&r)
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["bin", "daemon", "sys"], "{r:?}");
    let human = run_ok(&f, &["list"], b"");
    assert_eq!(human.stdout.lines().count(), 4, "{human:?}");
}

#[test]
fn list_reports_an_unusable_state_file_with_exit_3() {
    let f = Fixture::new();
    f.enroll("daemon", 1);
    f.enroll("bin", 1);
    std::fs::write(f.state_dir.join("bin"), "garbage").unwrap();
    let r = run(&f, &["list", "--json"], b"");
    assert_eq!(r.status, Some(3), "{r:?}");
    let v = json(&r);
    let bin = v
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "bin")
        .unwrap();
    assert!(bin["error"].as_str().unwrap().contains("corrupt"), "{v}");
}

#[test]
fn unlock_clears_a_lock() {
    let f = Fixture::new();
    f.enroll("daemon", 0);
    fail(&f, "daemon", 5);
    assert!(matches!(
        authenticate(&f.store(), "daemon", &f.code_at(now())),
        Outcome::Locked { .. }
    ));
    let st = run_ok(&f, &["status", "--user", "daemon", "--json"], b"");
    assert_eq!(json(&st)["locked"], true);
    let lockouts = || {
        f.store()
            .status(&common::UserName::parse("daemon").unwrap())
            .unwrap()
            .unwrap()
            .counters
            .lockouts
    };
    assert_eq!(lockouts(), 1);
    run_ok(&f, &["unlock", "--user", "daemon"], b"");
    // unlock also resets the progressive lockout: the next lock is lockout_secs again.
    assert_eq!(lockouts(), 0);
    assert!(matches!(
        authenticate(&f.store(), "daemon", &f.code_at(now())),
        Outcome::Accepted { .. }
    ));
}

#[test]
fn unlock_of_a_user_not_enrolled_is_refused() {
    let f = Fixture::new();
    let r = run(&f, &["unlock", "--user", "daemon"], b"");
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(r.stderr.contains("not enrolled"), "{r:?}");
}

#[test]
fn root_disables_without_a_code() {
    let f = Fixture::new();
    f.enroll("daemon", 1);
    run_ok(&f, &["disable", "--user", "daemon"], b"");
    assert!(!has_files_for(&f.state_dir, "daemon"));
    assert!(matches!(
        authenticate(&f.store(), "daemon", &f.code_at(now())),
        Outcome::NotEnrolled
    ));
    let r = run(&f, &["disable", "--user", "daemon"], b"");
    assert_eq!(r.status, Some(1), "{r:?}");
}

#[test]
fn new_recovery_codes_replace_the_old_ones() {
    let f = Fixture::new();
    let old = f.enroll("daemon", 3);
    let r = run_ok(&f, &["recovery-codes", "--user", "daemon"], b"");
    let new = recovery_codes_in(&r.stdout);
    assert_eq!(new.len(), 10, "{r:?}");
    assert!(matches!(
        authenticate(&f.store(), "daemon", &old[0]),
        Outcome::Rejected { .. }
    ));
    assert!(matches!(
        authenticate(&f.store(), "daemon", &new[0]),
        Outcome::RecoveryAccepted { remaining: 9, .. }
    ));
    // A spent one again is a replay; the replaced ones are plain wrong codes (above).
    assert!(matches!(
        authenticate(&f.store(), "daemon", &new[0]),
        Outcome::Replayed { .. }
    ));
}

#[test]
fn path_options_work_before_and_after_the_command() {
    let f = Fixture::new();
    f.enroll("daemon", 1);
    let p = path_args(&f);
    let mut before: Vec<&str> = p.iter().map(String::as_str).collect();
    before.extend(["status", "--user", "daemon", "--json"]);
    let mut after = vec!["status", "--user", "daemon", "--json"];
    after.extend(p.iter().map(String::as_str));
    for args in [before, after] {
        let r = integration_tests::pam::run_with_timeout(
            {
                let mut c = std::process::Command::new(binary());
                c.args(&args);
                c
            },
            b"",
            TIMEOUT,
        );
        assert_eq!(r.status, Some(0), "{args:?}: {r:?}");
        assert_eq!(json(&r)["enrolled"], true, "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::new();
    for args in [
        &["frobnicate"][..],
        &["status", "--bogus"],
        &["--qr", "sixel"],
        &["unlock"],
        &["import", "--user", "daemon"],
        &["status", "--user", "../../etc/passwd"],
        &["--user", "daemon", "status"],
    ] {
        let r = run(&f, args, b"");
        assert_eq!(r.status, Some(2), "{args:?}: {r:?}");
    }
}

#[test]
fn a_missing_key_or_state_directory_is_a_system_error() {
    let f = Fixture::new();
    f.enroll("daemon", 1);
    std::fs::remove_file(&f.key_file).unwrap();
    let r = run(&f, &["status", "--user", "daemon"], b"");
    assert_eq!(r.status, Some(3), "{r:?}");
    assert!(r.stderr.contains("host key"), "{r:?}");
    let g = Fixture::new();
    std::fs::remove_dir(&g.state_dir).unwrap();
    let r = run(&g, &["list"], b"");
    assert_eq!(r.status, Some(3), "{r:?}");
    assert!(r.stderr.contains("state directory"), "{r:?}");
}

#[test]
fn an_unsafe_config_file_is_a_system_error() {
    let f = Fixture::new();
    std::fs::write(&f.config, "window = 2\n").unwrap();
    std::os::unix::fs::chown(&f.config, Some(1), None).unwrap();
    let r = run(&f, &["status"], b"");
    assert_eq!(r.status, Some(3), "{r:?}");
    std::os::unix::fs::chown(&f.config, Some(0), None).unwrap();
    std::fs::write(&f.config, "window = \"wide\"\n").unwrap();
    let r = run(&f, &["status"], b"");
    assert_eq!(r.status, Some(3), "{r:?}");
    assert!(r.stderr.contains("window"), "{r:?}");
}

#[test]
fn status_never_changes_state() {
    let f = Fixture::new();
    f.enroll("daemon", 1);
    let user = UserName::parse("daemon").unwrap();
    let before = f.store().status(&user).unwrap();
    let files = std::fs::read(f.state_dir.join("daemon")).unwrap();
    run_ok(&f, &["status", "--user", "daemon"], b"");
    run_ok(&f, &["list"], b"");
    assert_eq!(f.store().status(&user).unwrap(), before);
    assert_eq!(std::fs::read(f.state_dir.join("daemon")).unwrap(), files);
}

#[test]
fn status_and_list_show_times_past_year_9999_without_a_panic() {
    let f = Fixture::new();
    f.enroll("daemon", 1);
    f.enroll("bin", 1);
    // Failures counted while the clock read year 10000 and later.
    for (user, t) in [("daemon", 253_402_300_800), ("bin", 315_000_000_000)] {
        let req = common::AuthRequest {
            now: t,
            window: 1,
            max_failures: 1,
            lockout_secs: 300,
            rhost: Some("192.0.2.9"),
            lockout_max_secs: 86400,
            hotp_window: 10,
            grace_secs: 0,
            device: None,
        };
        let o = f
            .store()
            .authenticate(&UserName::parse(user).unwrap(), "000000x", &req)
            .unwrap();
        assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
    }
    let r = run_ok(&f, &["status", "--user", "daemon"], b"");
    assert!(r.stdout.contains("until @253402301100"), "{}", r.stdout);
    let r = run_ok(&f, &["status", "--user", "bin", "--json"], b"");
    assert_eq!(json(&r)["locked"], true, "{r:?}");
    let r = run_ok(&f, &["list"], b"");
    assert!(r.stdout.contains("until @315000000300"), "{}", r.stdout);
    assert!(r.stdout.contains("until @253402301100"), "{}", r.stdout);
    run_ok(&f, &["list", "--json"], b"");
}

#[test]
fn status_shows_no_unicode_format_characters_from_the_remote_host() {
    let f = Fixture::new();
    f.enroll("daemon", 1);
    let req = common::AuthRequest {
        rhost: Some("evil\u{202E}moc.elpmaxe\u{200B}\u{2066}x\u{FEFF}"),
        lockout_max_secs: 86400,
        ..request()
    };
    let o = f
        .store()
        .authenticate(&UserName::parse("daemon").unwrap(), "000000x", &req)
        .unwrap();
    assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
    let human = run_ok(&f, &["status", "--user", "daemon"], b"");
    let r = run_ok(&f, &["status", "--user", "daemon", "--json"], b"");
    assert_eq!(
        json(&r)["last_rejected_rhost"],
        "evil?moc.elpmaxe??x?",
        "{r:?}"
    );
    assert!(
        human.stdout.contains("from evil?moc.elpmaxe??x?)"),
        "{human:?}"
    );
    for out in [&human.stdout, &r.stdout] {
        assert!(
            !out.contains(['\u{202E}', '\u{200B}', '\u{2066}', '\u{FEFF}']),
            "{out:?}"
        );
    }
}
