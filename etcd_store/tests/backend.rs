//! `EtcdBackend`, the storage seam over the fleet store, against a real 3-member TLS cluster
//! (see `harness`): the `common::Backend` contract, the login and enrollment operations of
//! `common::login` over it, and failing closed without quorum.

mod harness;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::backend::{Backend, Commit, Expect, KeySource};
use common::counters::Counters;
use common::login::{self, Enrollment, RecoveryCodes};
use common::{AuthRequest, HostKey, OtpParams, Outcome, RecordKey, TotpSecret, UserName};
use harness::Cluster;
use pam_totp_etcd::{recheck_margin, EtcdBackend};

/// The fleet key, in hand (the daemon reads it from `key_file`).
struct Key(HostKey);

impl KeySource for Key {
    fn key(&self) -> &HostKey {
        &self.0
    }
    fn replaced(&self) -> common::Result<Option<HostKey>> {
        Ok(None)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn req(now: i64) -> AuthRequest<'static> {
    AuthRequest {
        now,
        window: 1,
        max_failures: 3,
        lockout_secs: 300,
        rhost: Some("192.0.2.1"),
        lockout_max_secs: 86400,
        hotp_window: 10,
        grace_secs: 0,
        device: None,
    }
}

/// Loads `u` from `b`, its state opened with `keys` as a login does; with its record key.
fn opened(
    b: &EtcdBackend,
    keys: &Key,
    u: &UserName,
) -> common::Result<Option<(common::Loaded, RecordKey)>> {
    let mut key = None;
    let mut open = login::opener(keys, u);
    let l = b.load(u, &mut |s| {
        let k = open(s)?;
        key = Some(k.clone());
        Ok(k)
    })?;
    Ok(l.zip(key))
}

fn user(n: &str) -> UserName {
    UserName::parse(n).unwrap()
}

/// A host of the fleet: its own client certificate, members asked from `first` on.
fn host(c: &Cluster, cn: &str, first: usize, timeout_ms: u64) -> EtcdBackend {
    EtcdBackend::connect(c.config(cn, c.endpoints_from(first), timeout_ms)).unwrap()
}

fn enroll(b: &EtcdBackend, keys: &Key, name: &str) -> TotpSecret {
    let secret = TotpSecret::generate().unwrap();
    let again = TotpSecret::from_base32(&secret.to_base32()).unwrap();
    login::enroll(
        b,
        keys,
        Enrollment {
            user: user(name),
            secret,
            params: OtpParams::default(),
            last_counter: None,
            recovery: RecoveryCodes::Generate(2),
            replace: false,
            now: now(),
        },
    )
    .unwrap();
    again
}

fn code(secret: &TotpSecret, t: i64) -> String {
    common::totp::code_at(secret, &OtpParams::default(), t as u64).to_string()
}

#[test]
fn backend_contract_on_a_real_cluster() {
    let c = Cluster::start();
    let shared_keys = Arc::new(Key(HostKey::generate().unwrap()));
    let keys: &Key = &shared_keys;
    let hosts: Vec<EtcdBackend> = (0..3)
        .map(|i| host(&c, &format!("host-{i}"), i, 2000))
        .collect();
    let (a, b) = (&hosts[0], &hosts[1]);

    // Enrollment on one host is seen by every host; a second one is refused.
    let alice = user("alice");
    assert!(!a.is_enrolled(&alice).unwrap());
    assert!(opened(a, keys, &alice).unwrap().is_none());
    let secret = enroll(a, keys, "alice");
    for h in &hosts {
        assert!(h.is_enrolled(&alice).unwrap());
    }
    let again = login::enroll(
        b,
        keys,
        Enrollment {
            user: alice.clone(),
            secret: TotpSecret::generate().unwrap(),
            params: OtpParams::default(),
            last_counter: None,
            recovery: RecoveryCodes::Generate(0),
            replace: false,
            now: now(),
        },
    );
    assert!(
        matches!(again, Err(common::Error::AlreadyEnrolled(_))),
        "{:?}",
        again.err()
    );

    // A code accepted on one host is a replay on the others.
    let t = now();
    let o = login::authenticate(a, keys, &alice, &code(&secret, t), &req(t)).unwrap();
    assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
    for h in &hosts[1..] {
        let o = login::authenticate(h, keys, &alice, &code(&secret, t), &req(t)).unwrap();
        assert!(matches!(o, Outcome::Replayed { .. }), "{o:?}");
    }
    // Failures are counted fleet-wide: the third (replays above were two) locks, everywhere.
    let o = login::authenticate(&hosts[2], keys, &alice, "000000x", &req(t)).unwrap();
    assert!(
        matches!(
            o,
            Outcome::Rejected {
                failures: 3,
                locked_until: Some(_)
            }
        ),
        "{o:?}"
    );
    let o = login::authenticate(a, keys, &alice, &code(&secret, t + 30), &req(t)).unwrap();
    assert!(matches!(o, Outcome::Locked { .. }), "{o:?}");
    // Unlock on one host unlocks on all.
    login::unlock(b, keys, &alice).unwrap();
    let st = login::status(&hosts[2], keys, &alice).unwrap().unwrap();
    assert_eq!((st.counters.failures, st.counters.locked_until), (0, None));
    // ... and keeps last_counter: the accepted code is still a replay.
    let o = login::authenticate(&hosts[2], keys, &alice, &code(&secret, t), &req(t)).unwrap();
    assert!(matches!(o, Outcome::Replayed { .. }), "{o:?}");
    login::unlock(b, keys, &alice).unwrap();

    // A rewrite expecting a version whose counters have moved since is a conflict: it would
    // otherwise put back the counters it read and undo the login committed in between.
    let (v, _) = opened(a, keys, &alice).unwrap().unwrap();
    let (moved, key) = opened(b, keys, &alice).unwrap().unwrap();
    let mut counters = moved.counters.clone();
    counters.failures += 1;
    assert_eq!(
        b.commit(&alice, moved.version, &counters, &key, true)
            .unwrap(),
        Commit::Committed
    );
    let r = a
        .put_state(&alice, Expect::Version(v.version), &v.state, &|| Ok(()))
        .unwrap();
    assert_eq!(r, Commit::Conflict);
    assert_eq!(
        opened(a, keys, &alice).unwrap().unwrap().0.counters,
        counters
    );

    // The contract: "A time step commits at most once across all callers of one backend".
    // 32 callers over the three hosts commit against one version; exactly one wins, 20 times.
    let bob = user("bob");
    enroll(a, keys, "bob");
    let hosts = Arc::new(hosts);
    for round in 0..20u64 {
        let barrier = Arc::new(Barrier::new(32));
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let (hosts, barrier, bob) = (hosts.clone(), barrier.clone(), bob.clone());
                let keys = shared_keys.clone();
                std::thread::spawn(move || {
                    let h = &hosts[i % 3];
                    let (l, key) = opened(h, &keys, &bob).unwrap().unwrap();
                    let c = Counters {
                        last_counter: Some(1000 + round),
                        ..l.counters.clone()
                    };
                    barrier.wait();
                    h.commit(&bob, l.version, &c, &key, true)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let won = results
            .iter()
            .filter(|r| matches!(r, Ok(Commit::Committed)))
            .count();
        // All 32 loaded before any commit (the barrier): one version, one winner.
        assert_eq!(won, 1, "round {round}: {results:?}");
        let last = opened(&hosts[0], keys, &bob)
            .unwrap()
            .unwrap()
            .0
            .counters
            .last_counter;
        assert_eq!(last, Some(1000 + round));
    }

    // Logins: 32 with one code over the three hosts, exactly one accepted, 20 rounds (a
    // fresh user each round, so that the replays' failures and locks do not carry over).
    for round in 0..20 {
        let name = format!("burst{round}");
        let secret = enroll(&hosts[round % 3], keys, &name);
        let t = now();
        let typed = code(&secret, t);
        let barrier = Arc::new(Barrier::new(32));
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let (hosts, barrier, typed, name) =
                    (hosts.clone(), barrier.clone(), typed.clone(), name.clone());
                let keys = shared_keys.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    login::authenticate(&hosts[i % 3], &*keys, &user(&name), &typed, &req(t))
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let accepted = results
            .iter()
            .filter(|r| matches!(r, Ok(Outcome::Accepted { .. })))
            .count();
        assert_eq!(accepted, 1, "round {round}: {results:?}");
    }

    // Listing, removal.
    let users = hosts[2].users().unwrap();
    assert!(users.contains(&alice) && users.contains(&bob), "{users:?}");
    assert!(hosts[1].remove(&bob).unwrap());
    assert!(!hosts[0].is_enrolled(&bob).unwrap());
    assert!(!hosts[0].remove(&bob).unwrap());
    assert!(!hosts[2].users().unwrap().contains(&bob));

    // Counters bytes that are not a record of this user's state are refused, never read as
    // "no counters".
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = rt.block_on(c.store("root", 0, 2000));
    let l = rt.block_on(raw.load("alice")).unwrap().unwrap();
    let (_, alice_key) = opened(&hosts[0], keys, &alice).unwrap().unwrap();
    let foreign =
        common::counters::encode_record(&user("carol"), &alice_key, 1, &Counters::default());
    rt.block_on(raw.commit_counters("alice", l.state_revision, l.counters_revision, &foreign))
        .unwrap();
    let r = opened(&hosts[0], keys, &alice).map(|l| l.is_some());
    assert!(matches!(r, Err(common::Error::Corrupt { .. })), "{r:?}");
    let t = now();
    let r = login::authenticate(&hosts[0], keys, &alice, &code(&secret, t + 30), &req(t));
    assert!(matches!(r, Err(common::Error::Corrupt { .. })), "{r:?}");
}

#[test]
fn without_quorum_nothing_is_reported_committed_and_calls_end_in_time() {
    let mut c = Cluster::start();
    let keys = &Key(HostKey::generate().unwrap());
    let timeout_ms = 1000;
    let h = host(&c, "host-0", 0, timeout_ms);
    let secret = enroll(&h, keys, "dave");
    let dave = user("dave");
    let bound =
        Duration::from_millis(timeout_ms) + recheck_margin(timeout_ms) + Duration::from_millis(300);

    // A commit sent when two members are stopped: its outcome is unknown, so it is an error.
    let (l, key) = opened(&h, keys, &dave).unwrap().unwrap();
    c.sigstop(1);
    c.sigstop(2);
    let c0 = Counters {
        last_counter: Some(7),
        ..l.counters.clone()
    };
    let start = Instant::now();
    let r = h
        .with_deadline(Instant::now() + h.timeout())
        .commit(&dave, l.version, &c0, &key, true);
    assert!(start.elapsed() < bound, "{:?}", start.elapsed());
    assert!(
        matches!(r, Err(common::Error::Unavailable(_))),
        "a commit without quorum must not be reported: {r:?}"
    );
    // A login: refused with an error, within one deadline (and its margin).
    let t = now();
    let start = Instant::now();
    let r = login::authenticate(
        &h.with_deadline(Instant::now() + h.timeout()),
        keys,
        &dave,
        &code(&secret, t),
        &req(t),
    );
    assert!(start.elapsed() < bound, "{:?}", start.elapsed());
    assert!(matches!(r, Err(common::Error::Unavailable(_))), "{r:?}");
    assert!(matches!(
        h.is_enrolled(&dave),
        Err(common::Error::Unavailable(_))
    ));
    c.sigcont(1);
    c.sigcont(2);
    // Quorum back: the same code logs in (nothing was spent by the refused login).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = now();
        match login::authenticate(&h, keys, &dave, &code(&secret, t), &req(t)) {
            Ok(o) => {
                assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no login after SIGCONT: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
