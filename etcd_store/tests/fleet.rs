//! Three hosts of one fleet on a real 3-member etcd cluster (see `harness`): three `pam_totpd`
//! processes, each with its own config, socket, client certificate and copy of the one fleet
//! key, and one PAM service per host whose module options point at that host's config. Every
//! login goes through real libpam (`pam_start_confdir`) into pam_totp.so, which asks its host's
//! daemon, which asks the cluster. Most enrollments are made test-side through
//! `common::login::enroll` over an `EtcdBackend` (fast, and with the secret known); the
//! checks of `totp-enroll` make theirs through a host's CLI and daemon.
//!
//! One cluster and one set of daemons serve every check of this file, in one test, so that the
//! fleet costs one cluster start in CI; the checks that stop members come last, the one that
//! kills the leader at the very end. Needs `cargo build --workspace` first (the daemon and the
//! module are run from target/).

mod fleet_hosts;
mod harness;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::login;
use common::{HostKey, OtpParams, TotpSecret, UserName};
use fleet_hosts::{code, settled_now, Fleet};
use harness::Cluster;
use integration_tests::pam::{
    code_name, now, PAM_AUTHINFO_UNAVAIL, PAM_AUTH_ERR, PAM_MAXTRIES, PAM_SUCCESS,
};
use pam_totp_etcd::recheck_margin;

/// `[etcd] timeout_ms` of every host: short, so that the checks without quorum stay short.
const TIMEOUT_MS: u64 = 1000;
const MAX_FAILURES: u32 = 3;

#[track_caller]
fn expect(got: (i32, Vec<String>, Duration), want: i32, what: &str) {
    assert_eq!(
        code_name(got.0),
        code_name(want),
        "{what}: messages {:?}",
        got.1
    );
}

#[test]
fn three_hosts_share_one_enrollment_and_accept_each_code_once() {
    let mut c = Cluster::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut fleet = Fleet::start(
        &c,
        TIMEOUT_MS,
        &format!("max_failures = {MAX_FAILURES}\nlockout_secs = 300"),
    );

    // One enrollment works on every host, and a code used on one host is refused on the
    // others: three steps, one per host, then each of them again elsewhere.
    let secret = fleet.enroll("fleet-alice");
    let t = settled_now();
    let steps = [t - 30, t, t + 30];
    for (i, s) in steps.iter().enumerate() {
        let r = fleet.hosts[i].login("fleet-alice", &code(&secret, *s));
        expect(r, PAM_SUCCESS, &format!("first use on host {i}"));
    }
    for (i, s) in steps.iter().enumerate().take(2) {
        let other = (i + 1) % 3;
        let r = fleet.hosts[other].login("fleet-alice", &code(&secret, *s));
        assert!(
            r.1.iter().any(|m| m.contains("already used")),
            "replay warning expected: {:?}",
            r.1
        );
        expect(r, PAM_AUTH_ERR, &format!("host {i}'s code on host {other}"));
    }

    // The lock and the unlock are fleet-wide: one wrong code on each host locks the user
    // everywhere; an unlock (test-side, through the store) frees it everywhere.
    let secret = fleet.enroll("fleet-bob");
    let wrong = integration_tests::pam::wrong_codes(&secret, &OtpParams::default(), 3);
    for (i, w) in wrong.iter().enumerate() {
        expect(
            fleet.hosts[i].login("fleet-bob", w),
            PAM_AUTH_ERR,
            "wrong code",
        );
    }
    let t = settled_now();
    for i in 0..3 {
        expect(
            fleet.hosts[i].login("fleet-bob", &code(&secret, t)),
            PAM_MAXTRIES,
            &format!("locked on host {i}"),
        );
    }
    login::unlock(
        &fleet.admin,
        &fleet.keys,
        &UserName::parse("fleet-bob").unwrap(),
    )
    .unwrap();
    expect(
        fleet.hosts[2].login("fleet-bob", &code(&secret, t)),
        PAM_SUCCESS,
        "after unlock",
    );

    // Bursts: 32 logins with one code, spread over the three hosts at once, accept exactly
    // one, in each of 20 rounds (a fresh user each round: the 31 replays count as failures
    // and lock the user).
    let mut burst_times = Vec::new();
    for round in 0..20 {
        let user = format!("fleet-burst{round}");
        let secret = fleet.enroll(&user);
        let typed = code(&secret, settled_now());
        let barrier = Arc::new(Barrier::new(32));
        let start = Instant::now();
        let results: Vec<i32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..32)
                .map(|i| {
                    let (host, barrier, user, typed) =
                        (&fleet.hosts[i % 3], barrier.clone(), &user, &typed);
                    s.spawn(move || {
                        barrier.wait();
                        host.login(user, typed).0
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        burst_times.push(start.elapsed());
        let accepted = results.iter().filter(|&&r| r == PAM_SUCCESS).count();
        assert_eq!(
            accepted,
            1,
            "round {round}: {:?}; the daemons said: {:?}",
            results.iter().map(|&r| code_name(r)).collect::<Vec<_>>(),
            fleet
                .hosts
                .iter()
                .flat_map(|h| {
                    h.daemon
                        .log()
                        .lines()
                        .filter(|l| l.contains(&format!("user={user} ")))
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        );
        for r in &results {
            assert!(
                [
                    PAM_SUCCESS,
                    PAM_AUTH_ERR,
                    PAM_MAXTRIES,
                    PAM_AUTHINFO_UNAVAIL
                ]
                .contains(r),
                "round {round}: {}",
                code_name(*r)
            );
        }
    }
    eprintln!("burst rounds took {burst_times:?}");

    // totp-enroll on a fleet host speaks to its daemon: import on one host, logins on the
    // others, status, unlock, list, new recovery codes and disable from any host.
    let b32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXQ";
    let secret = TotpSecret::from_base32(b32).unwrap();
    fleet.secrets.lock().unwrap().push((
        zeroize::Zeroizing::new(secret.as_bytes().to_vec()),
        b32.to_owned(),
    ));
    let r = fleet.hosts[0].cli(
        &["import", "--user", "daemon", "--secret-stdin"],
        &format!("{b32}\n"),
    );
    assert_eq!(r.status, Some(0), "{r:?}");
    let codes = r.recovery_codes();
    assert_eq!(codes.len(), 10, "{r:?}");
    fleet.recovery.lock().unwrap().extend(codes.iter().cloned());
    let again = fleet.hosts[2].cli(
        &["import", "--user", "daemon", "--secret-stdin"],
        &format!("{b32}\n"),
    );
    assert_eq!(again.status, Some(1), "{again:?}");
    assert!(again.stderr.contains("already enrolled"), "{again:?}");
    let t = settled_now();
    expect(
        fleet.hosts[1].login("daemon", &code(&secret, t)),
        PAM_SUCCESS,
        "imported through host 0, used on host 1",
    );
    expect(
        fleet.hosts[2].login("daemon", &code(&secret, t)),
        PAM_AUTH_ERR,
        "the same code on host 2",
    );
    let st = fleet.hosts[2].cli(&["status", "--user", "daemon", "--json"], "");
    assert_eq!(st.status, Some(0), "{st:?}");
    let json: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(json["failures"], 1, "{json}");
    for w in integration_tests::pam::wrong_codes(&secret, &OtpParams::default(), 2) {
        expect(
            fleet.hosts[0].login("daemon", &w),
            PAM_AUTH_ERR,
            "wrong code",
        );
    }
    expect(
        fleet.hosts[1].login("daemon", &code(&secret, t + 30)),
        PAM_MAXTRIES,
        "locked",
    );
    let r = fleet.hosts[1].cli(&["unlock", "--user", "daemon"], "");
    assert_eq!(r.status, Some(0), "{r:?}");
    expect(
        fleet.hosts[0].login("daemon", &code(&secret, t + 30)),
        PAM_SUCCESS,
        "unlocked from host 1, on host 0",
    );
    let l = fleet.hosts[1].cli(&["list"], "");
    assert_eq!(l.status, Some(0), "{l:?}");
    assert!(
        l.stdout.contains("daemon") && l.stdout.contains("fleet-alice"),
        "{l:?}"
    );
    let r = fleet.hosts[2].cli(&["recovery-codes", "--user", "daemon"], "");
    assert_eq!(r.status, Some(0), "{r:?}");
    let new_codes = r.recovery_codes();
    assert_eq!(new_codes.len(), 10, "{r:?}");
    fleet
        .recovery
        .lock()
        .unwrap()
        .extend(new_codes.iter().cloned());
    expect(
        fleet.hosts[0].login("daemon", &codes[0]),
        PAM_AUTH_ERR,
        "an old code",
    );
    expect(
        fleet.hosts[1].login("daemon", &new_codes[0]),
        PAM_SUCCESS,
        "a new code",
    );
    expect(
        fleet.hosts[2].login("daemon", &new_codes[0]),
        PAM_AUTH_ERR,
        "spent elsewhere",
    );
    devices_through_the_daemon(&fleet);
    rotate_the_fleet_key(&mut fleet);
    let r = fleet.hosts[0].cli(&["disable", "--user", "daemon"], "");
    assert_eq!(r.status, Some(0), "{r:?}");
    let gone = fleet.hosts[2].login("daemon", &code(&secret, t + 60));
    assert!(
        gone.1.iter().any(|m| m.contains("not set up")),
        "{:?}",
        gone.1
    );
    expect(gone, PAM_AUTH_ERR, "after disable");

    // Migration: a host's own state directory, sealed under its own host key, moves into
    // the fleet with its counters and unused recovery codes.
    let src = integration_tests::pam::Fixture::new();
    let t = settled_now();
    let mut migrated = Vec::new();
    for name in ["fleet-mig1", "fleet-mig2"] {
        let mut raw = zeroize::Zeroizing::new(vec![0u8; 20]);
        getrandom::getrandom(&mut raw).unwrap();
        let s = TotpSecret::from_bytes(raw.clone()).unwrap();
        let codes = src.enroll_with(
            name,
            TotpSecret::from_bytes(raw.clone()).unwrap(),
            OtpParams::default(),
            3,
        );
        fleet
            .secrets
            .lock()
            .unwrap()
            .push((raw, s.to_base32().to_string()));
        fleet.recovery.lock().unwrap().extend(codes.iter().cloned());
        migrated.push((name, s, codes));
    }
    let req = common::AuthRequest {
        now: t,
        window: 1,
        max_failures: 3,
        lockout_secs: 300,
        rhost: None,
        lockout_max_secs: 86400,
        hotp_window: 10,
        grace_secs: 0,
        device: None,
    };
    let (m1, s1, c1) = &migrated[0];
    let u1 = UserName::parse(m1).unwrap();
    assert!(matches!(
        src.store().authenticate(&u1, &code(s1, t), &req).unwrap(),
        common::Outcome::Accepted { .. }
    ));
    assert!(matches!(
        src.store().authenticate(&u1, &c1[0], &req).unwrap(),
        common::Outcome::RecoveryAccepted { .. }
    ));
    let dir = src.state_dir.to_str().unwrap();
    let key = src.key_file.to_str().unwrap();
    let args = ["import", "--from-state-dir", dir, "--from-key-file", key];
    let r = fleet.hosts[1].cli(&args, "");
    assert_eq!(r.status, Some(0), "{r:?}");
    assert!(
        r.stdout.contains("Imported fleet-mig1")
            && r.stdout.contains("Imported fleet-mig2")
            && r.stdout.contains("2 imported, 0 refused, 0 failed"),
        "{r:?}"
    );
    expect(
        fleet.hosts[2].login(m1, &code(s1, t)),
        PAM_AUTH_ERR,
        "a step used before the move",
    );
    expect(
        fleet.hosts[0].login(m1, &c1[0]),
        PAM_AUTH_ERR,
        "a recovery code spent before the move",
    );
    expect(
        fleet.hosts[0].login(m1, &c1[1]),
        PAM_SUCCESS,
        "an unused recovery code",
    );
    expect(
        fleet.hosts[2].login(m1, &code(s1, t + 30)),
        PAM_SUCCESS,
        "the next step",
    );
    let (m2, s2, _) = &migrated[1];
    expect(
        fleet.hosts[0].login(m2, &code(s2, t)),
        PAM_SUCCESS,
        "the second user",
    );
    let r = fleet.hosts[2].cli(&args, "");
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(r.stdout.contains("0 imported, 2 refused"), "{r:?}");

    // etcd holds no plaintext secret: every key and value, scanned for every secret (raw
    // and base32, either case) and every recovery code shown.
    let all = rt.block_on(scan(&c)).unwrap();
    assert!(
        all.iter().any(|(k, _)| k.ends_with(b"/state/fleet-alice")),
        "the scan must see the enrollments"
    );
    for (k, v) in &all {
        for (raw, b32) in fleet.secrets.lock().unwrap().iter() {
            for hay in [k, v] {
                assert!(!contains(hay, raw), "raw secret in etcd");
                assert!(!contains(hay, b32.as_bytes()), "base32 secret in etcd");
                assert!(
                    !contains(hay, b32.to_lowercase().as_bytes()),
                    "base32 secret in etcd"
                );
            }
        }
        for rc in fleet.recovery.lock().unwrap().iter() {
            assert!(!contains(v, rc.as_bytes()), "recovery code in etcd");
            let bare: String = rc.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            assert!(!contains(v, bare.as_bytes()), "recovery code in etcd");
        }
    }

    // One member stopped (a follower, the first endpoint of its own host): logins go on, on
    // every host.
    let leader = rt.block_on(c.leader());
    let follower = (leader + 1) % 3;
    c.sigstop(follower);
    let secret = fleet.enroll("fleet-carol");
    let t = settled_now();
    for (i, s) in [t - 30, t, t + 30].iter().enumerate() {
        let r = fleet.hosts[(follower + i) % 3].login("fleet-carol", &code(&secret, *s));
        expect(r, PAM_SUCCESS, "with one member stopped");
    }

    // Two members stopped: no quorum. Logins are refused within timeout_ms plus a small
    // margin, with a log line saying what failed, and accepted again after SIGCONT.
    let other = (leader + 2) % 3;
    let secret = fleet.enroll("fleet-dave");
    c.sigstop(other);
    let bound =
        Duration::from_millis(TIMEOUT_MS) + recheck_margin(TIMEOUT_MS) + Duration::from_millis(500);
    let t = settled_now();
    for i in 0..3 {
        let r = fleet.hosts[i].login("fleet-dave", &code(&secret, t));
        assert!(r.2 < bound, "host {i}: refused after {:?}", r.2);
        expect(r, PAM_AUTHINFO_UNAVAIL, &format!("no quorum, host {i}"));
    }
    let log = fleet.hosts[0].daemon.log();
    assert!(
        log.contains("fleet store: store unavailable: etcd") && log.contains("user=fleet-dave"),
        "{log}"
    );
    c.sigcont(follower);
    c.sigcont(other);
    let resumed = Instant::now();
    loop {
        let r = fleet.hosts[1].login("fleet-dave", &code(&secret, settled_now()));
        if r.0 == PAM_SUCCESS {
            break;
        }
        expect(r, PAM_AUTHINFO_UNAVAIL, "while the members catch up");
        assert!(
            resumed.elapsed() < Duration::from_secs(15),
            "no login after SIGCONT"
        );
    }
    eprintln!("first login {:?} after SIGCONT", resumed.elapsed());

    // The leader SIGKILLed: logins resume within 2 s, on the host that asked it first (or
    // shortly after the election, when etcd itself took longer: see `resume_bound`). Each
    // try uses a fresh user, so that a login whose commit was queued at the dead leader
    // cannot turn the next try into a replay.
    let leader = rt.block_on(c.leader());
    let tries: Vec<(String, TotpSecret)> = (0..20)
        .map(|k| {
            let u = format!("fleet-erin{k}");
            let s = fleet.enroll(&u);
            (u, s)
        })
        .collect();
    let host = &fleet.hosts[leader];
    c.sigkill(leader);
    let killed = Instant::now();
    let election = c.watch_election(killed);
    let mut seen = Vec::new();
    let resumed_after = tries.iter().find_map(|(u, s)| {
        let r = host.login(u, &code(s, now()));
        seen.push(code_name(r.0));
        (r.0 == PAM_SUCCESS).then(|| killed.elapsed())
    });
    let resumed_after =
        resumed_after.unwrap_or_else(|| panic!("no login after the kill: {seen:?}"));
    let elected = election.join().unwrap();
    eprintln!(
        "logins resumed {resumed_after:?} after the leader was killed ({seen:?}); \
         new leader seen after {elected:?}"
    );
    let bound = harness::resume_bound(elected);
    assert!(
        resumed_after < bound,
        "{resumed_after:?} (bound {bound:?}, election {elected:?}): {seen:?}"
    );
}

/// `status` shows the devices remembered fleet-wide, and `forget-devices` forgets them,
/// from any host, through its daemon.
fn devices_through_the_daemon(fleet: &Fleet) {
    let user = UserName::parse("fleet-erin").unwrap();
    let secret = fleet.enroll(user.as_str());
    // A login from a device, with grace on: made test-side, as a host with grace_secs would.
    let device = common::DeviceIdentity::new(
        Some("203.0.113.5"),
        Some("publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHHJbxXb4RdlVzHgl2DxHc5zHVc5wxYvcdZLHhNXE8rH\n"),
    )
    .unwrap();
    let t = settled_now();
    let mut req =
        common::AuthRequest::from_config(&common::Config::default(), t, Some("203.0.113.5"))
            .with_device(Some(&device));
    req.grace_secs = 600;
    let o = login::authenticate(&fleet.admin, &fleet.keys, &user, &code(&secret, t), &req).unwrap();
    assert!(matches!(o, common::Outcome::Accepted { .. }), "{o:?}");
    let st = fleet.hosts[1].cli(&["status", "--user", user.as_str(), "--json"], "");
    assert_eq!(st.status, Some(0), "{st:?}");
    let json: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let devices = json["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{json}");
    assert_eq!(devices[0]["rhost"], "203.0.113.5", "{json}");
    assert!(
        devices[0]["key"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519"),
        "{json}"
    );
    let r = fleet.hosts[2].cli(&["forget-devices", "--user", user.as_str()], "");
    assert_eq!(r.status, Some(0), "{r:?}");
    assert!(
        r.stdout.contains("1 remembered device(s) forgotten"),
        "{r:?}"
    );
    let st = fleet.hosts[0].cli(&["status", "--user", user.as_str(), "--json"], "");
    let json: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(json["devices"].as_array().unwrap().len(), 0, "{json}");
    let r = fleet.hosts[0].cli(&["forget-devices", "--user", "fleet-nobody"], "");
    assert_eq!(r.status, Some(1), "{r:?}");
}

/// The fleet key's rotation (README "Running a fleet"): stage on one host, hand the next key
/// to every host, then `rekey` on each host in turn. At every step each host opens every
/// enrollment (a login on each host, one step apart), and enrollments made mid-rotation by a
/// host that still has the old key in force open everywhere after.
fn rotate_the_fleet_key(fleet: &mut Fleet) {
    let next_of = |i: usize| common::FileKey::next_path_of(&fleet.hosts[i].fx.key_file);
    // A user per check, enrolled now, under the old key: each logs in once on each host.
    let before: Vec<(String, TotpSecret)> = (0..3)
        .map(|i| {
            let u = format!("fleet-rot{i}");
            let s = fleet.enroll(&u);
            (u, s)
        })
        .collect();
    let all_log_in = |fleet: &Fleet, what: &str, user: &str, secret: &TotpSecret| {
        let t = settled_now();
        for (i, h) in fleet.hosts.iter().enumerate() {
            let step = t + 30 * (i as i64 - 1);
            expect(
                h.login(user, &code(secret, step)),
                PAM_SUCCESS,
                &format!("{what}: {user} on host {i}"),
            );
        }
    };
    // Through host 2's CLI, which has the old key in force (and, mid-rotation, the next);
    // import by root takes existing accounts only: system ones no other check uses.
    let import_on_host_2 = |fleet: &Fleet, user: &str| {
        let mut raw = zeroize::Zeroizing::new(vec![0u8; 20]);
        getrandom::getrandom(&mut raw).unwrap();
        let secret = TotpSecret::from_bytes(raw.clone()).unwrap();
        let b32 = secret.to_base32().to_string();
        let r = fleet.hosts[2].cli(
            &["import", "--user", user, "--secret-stdin"],
            &format!("{b32}\n"),
        );
        assert_eq!(r.status, Some(0), "{r:?}");
        fleet.recovery.lock().unwrap().extend(r.recovery_codes());
        fleet.secrets.lock().unwrap().push((raw, b32));
        secret
    };
    // No next key yet: rekey says where to start and changes nothing.
    let r = fleet.hosts[0].cli(&["rekey"], "");
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(r.stderr.contains("rekey --stage"), "{r:?}");
    // Step 1: stage on host 0 (twice: the same key), and copy it to the other hosts.
    let r = fleet.hosts[0].cli(&["rekey", "--stage"], "");
    assert_eq!(r.status, Some(0), "{r:?}");
    let staged = std::fs::read(next_of(0)).unwrap();
    let r = fleet.hosts[0].cli(&["rekey", "--stage"], "");
    assert_eq!(r.status, Some(0), "{r:?}");
    assert!(r.stdout.contains("already staged"), "{r:?}");
    assert_eq!(std::fs::read(next_of(0)).unwrap(), staged);
    assert_ne!(std::fs::read(&fleet.hosts[0].fx.key_file).unwrap(), staged);
    let next = HostKey::load(&next_of(0)).unwrap();
    for i in 1..3 {
        next.store(&next_of(i)).unwrap();
    }
    all_log_in(fleet, "staged", &before[0].0, &before[0].1);
    // Mid-rotation, enrollments from host 2 are sealed under both keys.
    let late = [
        import_on_host_2(fleet, "games"),
        import_on_host_2(fleet, "man"),
    ];
    // Step 2, host 1 first: it moves every enrollment, then puts the new key in force.
    let r = fleet.hosts[1].cli(&["rekey"], "");
    assert_eq!(r.status, Some(0), "{r:?}");
    assert!(r.stdout.contains("already on it"), "{r:?}");
    assert!(!r.stdout.starts_with("0 enrollment(s) moved"), "{r:?}");
    assert_eq!(std::fs::read(&fleet.hosts[1].fx.key_file).unwrap(), staged);
    assert!(!next_of(1).exists());
    // Host 1 holds the new key alone, hosts 0 and 2 both: every user logs in everywhere,
    // while the old key alone opens nothing any more.
    all_log_in(fleet, "host 1 moved", &before[1].0, &before[1].1);
    all_log_in(fleet, "host 1 moved", "games", &late[0]);
    let u = UserName::parse(&before[2].0).unwrap();
    assert!(matches!(
        login::status(&fleet.admin, &fleet.keys, &u),
        Err(common::Error::Corrupt { .. })
    ));
    // Then the other hosts: nothing left to move, each puts its copy in force.
    for i in [0, 2] {
        let r = fleet.hosts[i].cli(&["rekey"], "");
        assert_eq!(r.status, Some(0), "{r:?}");
        assert!(
            r.stdout.starts_with("0 enrollment(s) moved"),
            "host {i}: {r:?}"
        );
        assert_eq!(std::fs::read(&fleet.hosts[i].fx.key_file).unwrap(), staged);
        assert!(!next_of(i).exists());
    }
    all_log_in(fleet, "every host moved", &before[2].0, &before[2].1);
    all_log_in(fleet, "every host moved", "man", &late[1]);
    // The rest of the test enrolls under the fleet's key in force.
    fleet.keys = common::FileKey::load(&fleet.hosts[0].fx.key_file).unwrap();
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every key and value in the cluster, read as root.
async fn scan(c: &Cluster) -> Result<Vec<(Vec<u8>, Vec<u8>)>, etcd_client::Error> {
    let tls = c.client_cert("root");
    let opts = etcd_client::ConnectOptions::new().with_tls(
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(
                std::fs::read(&tls.ca).unwrap(),
            ))
            .identity(etcd_client::Identity::from_pem(
                std::fs::read(&tls.cert).unwrap(),
                std::fs::read(&tls.key).unwrap(),
            )),
    );
    let mut client = etcd_client::Client::connect([c.endpoint(0)], Some(opts)).await?;
    let resp = client
        .get("", Some(etcd_client::GetOptions::new().with_all_keys()))
        .await?;
    Ok(resp
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
        .collect())
}
