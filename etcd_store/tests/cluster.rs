//! pam_totp_etcd against a real 3-member etcd cluster (see `harness`). Each test starts its own
//! cluster; they run one at a time.

mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::Cluster;
use pam_totp_etcd::{recheck_margin, Error, Expect, Outcome, Store};
use tokio::sync::Barrier;

const USER: &str = "alice";

async fn enroll(store: &Store, user: &str) -> i64 {
    match store
        .put_state(user, b"sealed-state", Expect::Absent)
        .await
        .unwrap()
    {
        Outcome::Committed { revision } => revision,
        Outcome::Conflict => panic!("{user} already enrolled"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_commit_round_trip_and_conflicts() {
    let c = Cluster::start();
    let a = c.store("host-a", 0, 2000).await;
    let b = c.store("host-b", 1, 2000).await;
    assert_eq!(a.load(USER).await.unwrap(), None);

    let state_rev = enroll(&a, USER).await;
    assert_eq!(
        a.put_state(USER, b"other", Expect::Absent).await.unwrap(),
        Outcome::Conflict
    );
    let l = b.load(USER).await.unwrap().unwrap();
    assert_eq!(
        (l.state.as_slice(), l.state_revision),
        (&b"sealed-state"[..], state_rev)
    );
    assert_eq!((l.counters, l.counters_revision), (None, 0));

    let Outcome::Committed { revision: r1 } =
        a.commit_counters(USER, state_rev, 0, b"c1").await.unwrap()
    else {
        panic!("first commit refused")
    };
    let l = b.load(USER).await.unwrap().unwrap();
    assert_eq!(
        (l.counters.as_deref(), l.counters_revision),
        (Some(&b"c1"[..]), r1)
    );
    // Stale counters revision (the key was absent when read): refused.
    assert_eq!(
        b.commit_counters(USER, state_rev, 0, b"c2").await.unwrap(),
        Outcome::Conflict
    );
    // Someone else commits between our read and our commit.
    assert!(matches!(
        b.commit_counters(USER, state_rev, r1, b"b").await.unwrap(),
        Outcome::Committed { .. }
    ));
    assert_eq!(
        a.commit_counters(USER, state_rev, r1, b"a").await.unwrap(),
        Outcome::Conflict
    );
    assert_eq!(
        a.load(USER).await.unwrap().unwrap().counters.as_deref(),
        Some(&b"b"[..])
    );

    // Replacing the state needs its current revision and resets the counters.
    assert_eq!(
        a.put_state(USER, b"v2", Expect::AtRevision(state_rev - 1))
            .await
            .unwrap(),
        Outcome::Conflict
    );
    let Outcome::Committed { revision: s2 } = a
        .put_state(USER, b"v2", Expect::AtRevision(state_rev))
        .await
        .unwrap()
    else {
        panic!("replace refused")
    };
    let l = a.load(USER).await.unwrap().unwrap();
    assert_eq!(
        (l.state.as_slice(), l.state_revision, l.counters),
        (&b"v2"[..], s2, None)
    );
    // A commit read before the replacement cannot land on the new enrollment.
    assert_eq!(
        a.commit_counters(USER, state_rev, 0, b"old").await.unwrap(),
        Outcome::Conflict
    );

    enroll(&a, "bob").await;
    assert_eq!(
        b.list().await.unwrap(),
        vec!["alice".to_owned(), "bob".to_owned()]
    );
    assert!(a.delete(USER).await.unwrap());
    assert!(!a.delete(USER).await.unwrap());
    assert_eq!(b.load(USER).await.unwrap(), None);
    assert_eq!(b.list().await.unwrap(), vec!["bob".to_owned()]);
}

/// Rounds of 32 concurrent commits on the same revisions, from 32 clients preferring the 3
/// members in turn: exactly one commits per round, and the stored value is the winner's.
async fn exactly_once_rounds(c: &Cluster, rounds: usize) {
    for cn in ["reader", "contender"] {
        c.client_cert(cn);
    }
    let reader = c.store("reader", 0, 5000).await;
    let mut contenders = Vec::new();
    for k in 0..32 {
        contenders.push(c.store("contender", k % 3, 2000).await);
    }
    let user = format!("u{}", rand_suffix());
    let state_rev = match reader.put_state(&user, b"s", Expect::Absent).await.unwrap() {
        Outcome::Committed { revision } => revision,
        Outcome::Conflict => unreachable!(),
    };
    let mut errors = 0;
    for round in 0..rounds {
        let l = reader.load(&user).await.unwrap().unwrap();
        let barrier = Arc::new(Barrier::new(contenders.len()));
        let mut tasks = Vec::new();
        for (k, s) in contenders.iter().enumerate() {
            let (s, b, user) = (s.clone(), barrier.clone(), user.clone());
            let crev = l.counters_revision;
            tasks.push(tokio::spawn(async move {
                let bytes = format!("round {round} contender {k}").into_bytes();
                b.wait().await;
                (
                    bytes.clone(),
                    s.commit_counters(&user, state_rev, crev, &bytes).await,
                )
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (bytes, Ok(Outcome::Committed { .. })) => winners.push(bytes),
                (_, Ok(Outcome::Conflict)) => {}
                (_, Err(e)) => {
                    errors += 1;
                    eprintln!("round {round}: {e}");
                }
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} committed",
            winners.len()
        );
        let now = reader.load(&user).await.unwrap().unwrap();
        assert_eq!(now.counters.as_ref(), Some(&winners[0]), "round {round}");
    }
    eprintln!("{rounds} rounds of 32: exactly one winner each; {errors} contenders failed closed");
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_32_concurrent_commits_wins() {
    let c = Cluster::start();
    exactly_once_rounds(&c, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_wins_with_a_follower_stopped() {
    let mut c = Cluster::start();
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    c.sigstop(follower);
    exactly_once_rounds(&c, 20).await;
    c.sigcont(follower);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_wins_with_the_leader_stopped() {
    let mut c = Cluster::start();
    let leader = c.leader().await;
    c.sigstop(leader);
    // Wait for the other two to elect a leader of their own.
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    exactly_once_rounds(&c, 20).await;
    c.sigcont(leader);
    // The old leader rejoins as a follower and serves again.
    let s = Store::connect(c.config("rejoin", vec![c.endpoint(leader)], 10_000))
        .await
        .unwrap();
    let t = Instant::now();
    while s.list().await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "old leader did not rejoin"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_calls_fail_in_time_and_never_claim_a_commit() {
    let mut c = Cluster::start();
    let s = c.store("host", 0, 1000).await;
    let state_rev = enroll(&s, USER).await;
    let slack = Duration::from_millis(300);
    c.sigstop(1);
    c.sigstop(2);
    let t = Instant::now();
    let r = s.load(USER).await;
    let took = t.elapsed();
    eprintln!("load without quorum: {took:?}: {r:?}");
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(took < s.timeout() + slack, "{took:?}");

    let t = Instant::now();
    let r = s
        .commit_counters(USER, state_rev, 0, b"during outage")
        .await;
    let took = t.elapsed();
    eprintln!("commit without quorum: {took:?}: {r:?}");
    assert!(matches!(r, Err(Error::OutcomeUnknown { .. })), "{r:?}");
    assert!(
        took < s.timeout() + recheck_margin(1000) + slack,
        "{took:?}"
    );

    let t = Instant::now();
    let r = s.put_state("bob", b"x", Expect::Absent).await;
    assert!(r.is_err() && t.elapsed() < s.timeout() + slack, "{r:?}");

    c.sigcont(1);
    c.sigcont(2);
    // The commit queued at member 0 may apply now, also after a first read: the store says
    // what the cluster holds, a read-then-commit made before the queued commit applied
    // conflicts (never both apply), and one from a fresh read succeeds.
    let t = Instant::now();
    loop {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "cluster did not recover"
        );
        let Ok(Some(l)) = s.load(USER).await else {
            continue;
        };
        eprintln!(
            "after SIGCONT the counters hold {:?}",
            l.counters.as_deref().map(String::from_utf8_lossy)
        );
        match l.counters.as_deref() {
            None | Some(b"during outage") => {}
            // Ours, from a try below whose outcome was unknown.
            Some(b"after") => break,
            Some(other) => panic!("counters {:?}", String::from_utf8_lossy(other)),
        }
        let r = s
            .commit_counters(USER, l.state_revision, l.counters_revision, b"after")
            .await;
        match r {
            Ok(Outcome::Committed { .. }) => break,
            // The queued commit landed between our read and our commit.
            Ok(Outcome::Conflict) if l.counters.is_none() => continue,
            // Still recovering (no leader yet): read again.
            Err(Error::Timeout { .. } | Error::OutcomeUnknown { .. }) => continue,
            r => panic!("{r:?} after reading {:?}", l.counters),
        }
    }
    let l = s.load(USER).await.unwrap().unwrap();
    assert_eq!(l.counters.as_deref(), Some(&b"after"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_resume_within_2s_after_the_leader_is_killed() {
    let mut c = Cluster::start();
    let leader = c.leader().await;
    let s = c.store("host", (leader + 1) % 3, 2000).await;
    let state_rev = enroll(&s, USER).await;
    let mut crev = 0;
    if let Outcome::Committed { revision } = s
        .commit_counters(USER, state_rev, 0, b"before")
        .await
        .unwrap()
    {
        crev = revision;
    }
    assert_ne!(crev, 0);
    c.sigkill(leader);
    let killed = Instant::now();
    let election = c.watch_election(killed);
    let mut attempts = 0;
    let resumed = loop {
        attempts += 1;
        match s
            .commit_counters(USER, state_rev, crev, b"after kill")
            .await
        {
            Ok(Outcome::Committed { .. }) => break killed.elapsed(),
            r => {
                eprintln!("attempt {attempts} at {:?}: {r:?}", killed.elapsed());
                assert!(
                    killed.elapsed() < Duration::from_secs(20),
                    "commits did not resume"
                );
            }
        }
    };
    let elected = tokio::task::spawn_blocking(move || election.join().unwrap())
        .await
        .unwrap();
    eprintln!(
        "leader SIGKILLed: first commit after {resumed:?} ({attempts} attempts), \
         new leader seen after {elected:?}"
    );
    let bound = harness::resume_bound(elected);
    assert!(
        resumed < bound,
        "commits resumed only after {resumed:?} (bound {bound:?}, election {elected:?})"
    );

    c.restart(leader);
    let back = Store::connect(c.config("host", vec![c.endpoint(leader)], 10_000))
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        if let Ok(Some(l)) = back.load(USER).await {
            assert_eq!(l.counters.as_deref(), Some(&b"after kill"[..]));
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "restarted member did not catch up"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_host_cannot_enroll_but_logs_in() {
    let c = Cluster::start();
    // The commands of README.md "Split roles", run as root (CN=root).
    for args in [
        &["user", "add", "root", "--no-password"][..],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "pam_totp_host"],
        &[
            "role",
            "grant-permission",
            "pam_totp_host",
            "read",
            "/pam_totp/v1/state/",
            "--prefix=true",
        ],
        &[
            "role",
            "grant-permission",
            "pam_totp_host",
            "readwrite",
            "/pam_totp/v1/counters/",
            "--prefix=true",
        ],
        &["role", "add", "pam_totp_enroll"],
        &[
            "role",
            "grant-permission",
            "pam_totp_enroll",
            "readwrite",
            "/pam_totp/v1/",
            "--prefix=true",
        ],
        &["user", "add", "host1", "--no-password"],
        &["user", "grant-role", "host1", "pam_totp_host"],
        &["user", "add", "enroller", "--no-password"],
        &["user", "grant-role", "enroller", "pam_totp_enroll"],
        &["auth", "enable"],
    ] {
        c.etcdctl(None, args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"));
    }
    let host = c.store("host1", 0, 2000).await;
    let enroller = c.store("enroller", 1, 2000).await;
    let stranger = c.store("stranger", 2, 2000).await;

    let r = host.put_state(USER, b"s", Expect::Absent).await;
    assert!(matches!(r, Err(Error::PermissionDenied { .. })), "{r:?}");
    let r = host.delete(USER).await;
    assert!(matches!(r, Err(Error::PermissionDenied { .. })), "{r:?}");
    let state_rev = enroll(&enroller, USER).await;

    let l = host.load(USER).await.unwrap().unwrap();
    assert_eq!(l.state_revision, state_rev);
    let r = host
        .commit_counters(USER, state_rev, 0, b"login")
        .await
        .unwrap();
    assert!(matches!(r, Outcome::Committed { .. }));
    assert_eq!(enroller.list().await.unwrap(), vec![USER.to_owned()]);
    // A certificate of the CA whose CN is no etcd user gets nothing.
    let r = stranger.load(USER).await;
    assert!(matches!(r, Err(Error::PermissionDenied { .. })), "{r:?}");
}

#[test]
fn blocking_store_works_without_a_runtime_of_the_callers() {
    let c = Cluster::start();
    let s =
        pam_totp_etcd::BlockingStore::connect(c.config("host", c.endpoints_from(2), 2000)).unwrap();
    let Outcome::Committed { revision } = s.put_state(USER, b"st", Expect::Absent).unwrap() else {
        panic!("enroll refused")
    };
    let l = s.load(USER).unwrap().unwrap();
    assert_eq!(l.state_revision, revision);
    assert!(matches!(
        s.commit_counters(USER, revision, 0, b"c").unwrap(),
        Outcome::Committed { .. }
    ));
    assert_eq!(
        s.commit_counters(USER, revision, 0, b"d").unwrap(),
        Outcome::Conflict
    );
    assert_eq!(s.list().unwrap(), vec![USER.to_owned()]);
    assert!(s.delete(USER).unwrap());
    assert_eq!(s.load(USER).unwrap(), None);
}
