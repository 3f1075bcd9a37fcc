//! `grace_secs` through pamtester (real libpam, PAM_RHOST from `-I rhost=`, the PAM
//! environment from `-E`) and the real CLI: a device from which a code was accepted logs in
//! without one for `grace_secs`, from the same host (and key) only, never without a host;
//! `status` shows it and `forget-devices`, new recovery codes and `--replace` forget it.
//! (That a grace login is logged as one: pam_syslog.rs.)

mod cli_support;

use std::process::Command;
use std::time::Duration;

use common::UserName;
use integration_tests::pam::*;

const HOST: &str = "192.0.2.7";
const KEY_A: &str =
    "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHHJbxXb4RdlVzHgl2DxHc5zHVc5wxYvcdZLHhNXE8rH";
const KEY_B: &str =
    "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGGJbxXb4RdlVzHgl2DxHc5zHVc5wxYvcdZLHhNXE8rH";

/// `pamtester [-I rhost=RHOST] [-E SSH_AUTH_INFO_0=KEY] SERVICE USER authenticate`,
/// answering the prompt (if any) with `input`.
fn pamtester_from(
    service: &str,
    user: &str,
    rhost: Option<&str>,
    key: Option<&str>,
    input: &str,
) -> Run {
    let mut cmd = Command::new("/usr/bin/pamtester");
    cmd.arg("-v");
    if let Some(h) = rhost {
        cmd.args(["-I", &format!("rhost={h}")]);
    }
    if let Some(k) = key {
        cmd.args(["-E", &format!("SSH_AUTH_INFO_0={k}")]);
    }
    cmd.args([service, user, "authenticate"]);
    run_with_timeout(
        cmd,
        format!("{input}\n").as_bytes(),
        Duration::from_secs(60),
    )
}

fn away_from_step_edge() {
    while now() % 30 >= 25 {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Logged in without being asked for a code.
#[track_caller]
fn graced(r: &Run) {
    assert!(r.success(), "{r:?}");
    assert!(
        !r.stderr.contains("Verification code"),
        "a code was asked: {r:?}"
    );
}

/// Asked for a code (and refused, the answer being empty).
#[track_caller]
fn asked(r: &Run) {
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("Verification code"),
        "no code asked: {r:?}"
    );
}

/// An enrolled user and a service with `grace_secs=SECS`; the first login (with a code)
/// from HOST with KEY_A.
fn remembered(secs: u64) -> (Fixture, EtcPamService, &'static str) {
    let f = Fixture::new();
    let user = "daemon";
    f.enroll(user, 2);
    let svc = f.etc_service("grace", &format!("grace_secs={secs}"));
    away_from_step_edge();
    let r = pamtester_from(&svc.name, user, Some(HOST), Some(KEY_A), &f.code_at(now()));
    assert!(r.success(), "{r:?}");
    (f, svc, user)
}

#[test]
fn the_same_device_needs_no_code_and_no_other_device_gets_grace() {
    let (f, svc, user) = remembered(600);
    let last = f
        .store()
        .status(&UserName::parse(user).unwrap())
        .unwrap()
        .unwrap()
        .counters
        .last_counter;
    graced(&pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_A),
        "",
    ));
    graced(&pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_A),
        "",
    ));
    // A grace login does not move last_counter.
    let st = f
        .store()
        .status(&UserName::parse(user).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(st.counters.last_counter, last);
    // Another host, another key, no key, no host: the code is asked.
    asked(&pamtester_from(
        &svc.name,
        user,
        Some("192.0.2.8"),
        Some(KEY_A),
        "",
    ));
    asked(&pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_B),
        "",
    ));
    asked(&pamtester_from(&svc.name, user, Some(HOST), None, ""));
    asked(&pamtester_from(&svc.name, user, None, Some(KEY_A), ""));
    // A service without grace_secs gives none.
    let plain = f.etc_service("nograce", "");
    asked(&pamtester_from(
        &plain.name,
        user,
        Some(HOST),
        Some(KEY_A),
        "",
    ));
}

#[test]
fn grace_ends_after_grace_secs() {
    let (_f, svc, user) = remembered(3);
    graced(&pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_A),
        "",
    ));
    std::thread::sleep(Duration::from_millis(3500));
    asked(&pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_A),
        "",
    ));
}

#[test]
fn status_shows_remembered_devices_and_forget_devices_clears_them() {
    let (f, svc, user) = remembered(600);
    let st = cli_support::run_ok(&f, &["status", "--user", user], b"");
    assert!(st.stdout.contains("remembered devices:  1"), "{st:?}");
    assert!(
        st.stdout
            .contains(&format!("  {HOST} with key ssh-ed25519 SHA256:")),
        "{st:?}"
    );
    let js = cli_support::run_ok(&f, &["status", "--user", user, "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    let d = &v["devices"][0];
    assert_eq!(d["rhost"], HOST);
    assert!(
        d["key"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 SHA256:"),
        "{v}"
    );
    assert!(d["since"].as_i64().unwrap() <= now());
    // The key itself is not stored, nor shown.
    assert!(!js.stdout.contains("AAAAC3Nza"), "{js:?}");
    let r = cli_support::run_ok(&f, &["forget-devices", "--user", user], b"");
    assert!(
        r.stdout.contains("1 remembered device(s) forgotten"),
        "{r:?}"
    );
    asked(&pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_A),
        "",
    ));
    let st = cli_support::run_ok(&f, &["status", "--user", user], b"");
    assert!(st.stdout.contains("remembered devices:  0"), "{st:?}");
}

#[test]
fn new_recovery_codes_and_replace_forget_devices() {
    let (f, svc, user) = remembered(600);
    graced(&pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_A),
        "",
    ));
    cli_support::run_ok(&f, &["recovery-codes", "--user", user], b"");
    asked(&pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_A),
        "",
    ));
    // Remembered again (the next step's code), then the enrollment is replaced.
    let r = pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_A),
        &f.code_at(now() + 30),
    );
    assert!(r.success(), "{r:?}");
    graced(&pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_A),
        "",
    ));
    cli_support::run_ok(
        &f,
        &["import", "--user", user, "--secret-stdin", "--replace"],
        format!("{TEST_SECRET_B32}\n").as_bytes(),
    );
    asked(&pamtester_from(
        &svc.name,
        user,
        Some(HOST),
        Some(KEY_A),
        "",
    ));
}
