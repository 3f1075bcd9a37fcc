//! `grace_secs` through pam_totpd: the Verify request carries the remote device (host and
//! key) so that a success from root's caller remembers it, and a Grace request asks whether
//! a device may skip the code, under the daemon's own `grace_secs`. A caller that is not
//! root gets no grace and remembers nothing, whatever it says about a device.

mod e2e_support;

use common::UserName;
use e2e_support::TestUser;
use integration_tests::daemon::*;
use integration_tests::pam::*;
use proto::{DeviceKey, GraceRequest, Reply, Request};

const ASK: &str = env!("CARGO_BIN_EXE_pam-totp-ask");
const HOST: &str = "198.51.100.4";

fn key(n: u8) -> Option<DeviceKey> {
    Some(DeviceKey {
        digest: [n; 32],
        label: format!("ssh-ed25519 SHA256:test{n}"),
    })
}

fn verify_from(user: &str, code: &str, rhost: &str, key: Option<DeviceKey>) -> Request {
    Request::Verify(proto::Verify {
        user: user.into(),
        code: zeroize::Zeroizing::new(code.into()),
        rhost: Some(rhost.into()),
        service: "sshd".into(),
        key,
    })
}

fn grace(user: &str, rhost: &str, key: Option<DeviceKey>) -> Request {
    Request::Grace(GraceRequest {
        user: user.into(),
        rhost: rhost.into(),
        key,
        service: "sshd".into(),
    })
}

fn ask_as(user: &TestUser, socket: &std::path::Path, args: &[&str]) -> String {
    let mut a = vec![socket.to_str().unwrap()];
    a.extend_from_slice(args);
    let r = e2e_support::run(user.command(ASK, &a));
    assert!(r.success(), "pam-totp-ask: {r:?}");
    r.stdout.trim().to_owned()
}

#[test]
fn root_callers_get_grace_for_the_device_that_gave_a_code() {
    let f = Fixture::new();
    write_config(&f, &config_text(&f, "grace_secs = 600"));
    let d = TestDaemon::start(&f.config, &socket_of(&f));
    f.enroll("daemon", 0);
    assert_eq!(d.ask(&grace("daemon", HOST, key(1))), Ok(Reply::NoGrace));
    let r = d.ask(&verify_from("daemon", &f.code_at(now()), HOST, key(1)));
    assert!(matches!(r, Ok(Reply::Accepted { .. })), "{r:?}");
    let r = d.ask(&grace("daemon", HOST, key(1)));
    assert!(
        matches!(r, Ok(Reply::Grace { since }) if since <= now()),
        "{r:?}"
    );
    assert!(d.log().contains("grace login"), "{}", d.log());
    for other in [
        grace("daemon", "198.51.100.5", key(1)),
        grace("daemon", HOST, key(2)),
        grace("daemon", HOST, None),
    ] {
        assert_eq!(d.ask(&other), Ok(Reply::NoGrace), "{other:?}");
    }
    // What the daemon stored is what the module's own path stores.
    let st = f
        .store()
        .status(&UserName::parse("daemon").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(st.counters.devices.len(), 1);
    assert_eq!(st.counters.devices[0].rhost, HOST);
    assert_eq!(
        st.counters.devices[0].key.as_deref(),
        Some("ssh-ed25519 SHA256:test1")
    );
}

#[test]
fn a_daemon_without_grace_secs_gives_none() {
    let f = Fixture::new();
    write_config(&f, &config_text(&f, ""));
    let d = TestDaemon::start(&f.config, &socket_of(&f));
    f.enroll("daemon", 0);
    let r = d.ask(&verify_from("daemon", &f.code_at(now()), HOST, key(1)));
    assert!(matches!(r, Ok(Reply::Accepted { .. })), "{r:?}");
    assert_eq!(d.ask(&grace("daemon", HOST, key(1))), Ok(Reply::NoGrace));
    let st = f
        .store()
        .status(&UserName::parse("daemon").unwrap())
        .unwrap()
        .unwrap();
    assert!(st.counters.devices.is_empty());
}

#[test]
fn a_plain_user_gets_no_grace_and_remembers_no_device() {
    let f = Fixture::new();
    write_config(&f, &config_text(&f, "grace_secs = 600"));
    let d = TestDaemon::start(&f.config, &socket_of(&f));
    let a = TestUser::create("dgr");
    f.enroll(&a.name, 0);
    let sock = d.socket.clone();
    // The plain user's code is accepted, but its rhost is no evidence of a device.
    let out = ask_as(&a, &sock, &["verify", &a.name, &f.code_at(now())]);
    assert!(out.starts_with("Accepted"), "{out}");
    let st = f
        .store()
        .status(&UserName::parse(&a.name).unwrap())
        .unwrap()
        .unwrap();
    assert!(st.counters.devices.is_empty());
    // Even for a device root's login remembered, a plain caller gets no grace.
    let r = d.ask(&verify_from(&a.name, &f.code_at(now() + 30), HOST, None));
    assert!(matches!(r, Ok(Reply::Accepted { .. })), "{r:?}");
    assert!(matches!(
        d.ask(&grace(&a.name, HOST, None)),
        Ok(Reply::Grace { .. })
    ));
    assert_eq!(ask_as(&a, &sock, &["grace", &a.name, HOST]), "NoGrace");
}
