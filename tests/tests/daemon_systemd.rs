//! pam_totpd under systemd's conventions: socket activation through the real
//! `systemd-socket-activate` (Debian package systemd), and the shipped unit files checked
//! with `systemd-analyze verify`.

mod e2e_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_support::{require, TestUser};
use integration_tests::daemon::*;
use integration_tests::pam::*;
use proto::{Reply, Request};

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";
const ASK: &str = env!("CARGO_BIN_EXE_pam-totp-ask");

fn activated(f: &Fixture, sockets: &[&Path]) -> TestDaemon {
    require(ACTIVATE);
    let mut c = Command::new(ACTIVATE);
    for s in sockets {
        c.arg("-l").arg(s);
    }
    c.arg(daemon_path()).arg("--config").arg(&f.config);
    TestDaemon::spawn(c, sockets[0], false)
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} not created", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn serves_the_socket_systemd_passes() {
    let f = Fixture::new();
    // The config's own socket must stay untouched: the passed one is served instead.
    write_config(&f, &config_text(&f, ""));
    f.enroll("alice", 0);
    let passed = f.dir.path().join("activated.sock");
    let mut d = activated(&f, &[&passed]);
    wait_for(&passed);
    // systemd makes the socket 0666 through SocketMode=; the tool leaves it to us.
    fs::set_permissions(&passed, fs::Permissions::from_mode(0o666)).unwrap();
    // The first connection starts the daemon (systemd-socket-activate execs it).
    assert_eq!(
        ask(
            &passed,
            &Request::IsEnrolled {
                user: "alice".into()
            }
        ),
        Ok(Reply::Enrolled)
    );
    let r = ask(&passed, &verify("alice", &f.code_at(now()))).unwrap();
    assert!(matches!(r, Reply::Accepted { .. }), "{r:?}");
    // A plain user through the activated socket, about its own account.
    let user = TestUser::create("dsa");
    f.enroll(&user.name, 0);
    let c = f.code_at(now());
    let r =
        e2e_support::run(user.command(ASK, &[passed.to_str().unwrap(), "verify", &user.name, &c]));
    assert!(r.stdout.starts_with("Accepted"), "{r:?}");
    assert!(
        !socket_of(&f).exists() && !socket_of(&f).parent().unwrap().exists(),
        "an activated daemon must not bind the configured socket"
    );
    assert!(!d.exited());
    assert!(
        d.log().contains("serving the socket passed by systemd"),
        "{}",
        d.log()
    );
}

#[test]
fn two_passed_sockets_are_refused() {
    let f = Fixture::new();
    write_config(&f, &config_text(&f, ""));
    let a = f.dir.path().join("a.sock");
    let b = f.dir.path().join("b.sock");
    let mut d = activated(&f, &[&a, &b]);
    wait_for(&a);
    // Wakes it up; it must refuse to serve an ambiguous set of sockets.
    let _ = std::os::unix::net::UnixStream::connect(&a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.exited() {
        assert!(Instant::now() < deadline, "still running: {}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.log().contains("passed 2 sockets"), "{}", d.log());
}

#[test]
fn listen_variables_meant_for_another_process_are_ignored() {
    let f = Fixture::new();
    write_config(&f, &config_text(&f, ""));
    let mut c = Command::new(daemon_path());
    c.arg("--config").arg(&f.config);
    // PID 1's variables, inherited: not ours, so fd 3 is not taken; the daemon binds.
    c.env("LISTEN_PID", "1").env("LISTEN_FDS", "1");
    let d = TestDaemon::spawn(c, &socket_of(&f), true);
    assert_eq!(
        d.ask(&Request::IsEnrolled { user: "x".into() }),
        Ok(Reply::NotEnrolled)
    );
}

#[test]
fn unit_files_pass_systemd_analyze_verify() {
    require("/usr/bin/systemd-analyze");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd");
    let dir = tempfile::tempdir().unwrap();
    for unit in ["pam_totpd.socket", "pam_totpd.service"] {
        let text = fs::read_to_string(src.join(unit)).unwrap();
        // verify checks that ExecStart= exists: point it at the built daemon.
        let text = text.replace(
            "ExecStart=/usr/sbin/pam_totpd",
            &format!("ExecStart={}", daemon_path().display()),
        );
        fs::write(dir.path().join(unit), text).unwrap();
    }
    let svc = fs::read_to_string(src.join("pam_totpd.service")).unwrap();
    assert!(svc.contains("ExecStart=/usr/sbin/pam_totpd\n"));
    let sock = fs::read_to_string(src.join("pam_totpd.socket")).unwrap();
    for want in [
        "ListenStream=/run/pam_totp/socket",
        "SocketMode=0666",
        "DirectoryMode=0755",
        "WantedBy=sockets.target",
    ] {
        assert!(sock.contains(want), "pam_totpd.socket lacks {want}");
    }
    let mut c = Command::new("systemd-analyze");
    c.args(["verify", "--man=no"])
        .arg(dir.path().join("pam_totpd.socket"))
        .arg(dir.path().join("pam_totpd.service"))
        .env("SYSTEMD_LOG_LEVEL", "notice");
    let r = run_with_timeout(c, b"", Duration::from_secs(60));
    assert!(
        r.success() && r.stderr.trim().is_empty(),
        "systemd-analyze verify: {r:?}"
    );
    // And a unit with a mistake is caught, so the check above means something.
    let broken = dir.path().join("pam_totpd.service");
    fs::write(
        &broken,
        fs::read_to_string(&broken)
            .unwrap()
            .replace("ProtectSystem=strict", "ProtectSystem=stricter"),
    )
    .unwrap();
    let mut c = Command::new("systemd-analyze");
    c.args(["verify", "--man=no"]).arg(&broken);
    let r = run_with_timeout(c, b"", Duration::from_secs(60));
    assert!(
        r.stderr.contains("stricter"),
        "a bad value must be reported: {r:?}"
    );
}

/// The fleet drop-in of the package's examples, as README "Running a fleet" installs it:
/// systemd reads it beside the unit and finds nothing wrong in it.
#[test]
fn the_fleet_drop_in_passes_systemd_analyze_verify() {
    require("/usr/bin/systemd-analyze");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd");
    let dir = tempfile::tempdir().unwrap();
    for unit in ["pam_totpd.socket", "pam_totpd.service"] {
        let text = fs::read_to_string(src.join(unit)).unwrap().replace(
            "ExecStart=/usr/sbin/pam_totpd",
            &format!("ExecStart={}", daemon_path().display()),
        );
        fs::write(dir.path().join(unit), text).unwrap();
    }
    let drop_in = fs::read_to_string(src.join("pam_totpd-fleet.conf")).unwrap();
    for want in [
        "PrivateNetwork=no\n",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n",
        "IPAddressAllow=",
    ] {
        assert!(drop_in.contains(want), "the drop-in lacks {want}");
    }
    let d = dir.path().join("pam_totpd.service.d");
    fs::create_dir(&d).unwrap();
    let verify = |text: &str| {
        fs::write(d.join("fleet.conf"), text).unwrap();
        let mut c = Command::new("systemd-analyze");
        c.args(["verify", "--man=no"])
            .arg(dir.path().join("pam_totpd.socket"))
            .arg(dir.path().join("pam_totpd.service"))
            .env("SYSTEMD_LOG_LEVEL", "notice");
        run_with_timeout(c, b"", Duration::from_secs(60))
    };
    let r = verify(&drop_in);
    assert!(
        r.success() && r.stderr.trim().is_empty(),
        "systemd-analyze verify: {r:?}"
    );
    // A mistake in the drop-in is reported: it is read, so the check above means something.
    let r = verify(&drop_in.replace("AF_INET6", "AF_INET7"));
    assert!(
        r.stderr.contains("AF_INET7"),
        "the drop-in was not read: {r:?}"
    );
}

#[test]
fn service_sandbox_keeps_its_exposure_score() {
    require("/usr/bin/systemd-analyze");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd");
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("pam_totpd.service");
    fs::write(
        &unit,
        fs::read_to_string(src.join("pam_totpd.service"))
            .unwrap()
            .replace(
                "ExecStart=/usr/sbin/pam_totpd",
                &format!("ExecStart={}", daemon_path().display()),
            ),
    )
    .unwrap();
    let mut c = Command::new("systemd-analyze");
    c.args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit);
    let r = run_with_timeout(c, b"", Duration::from_secs(60));
    let text = format!("{}{}", r.stdout, r.stderr);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("pam_totpd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    // 0.7 when written (root without capabilities; 10 is fully exposed).
    assert!(score <= 1.0, "exposure level {score}: {text}");
}
