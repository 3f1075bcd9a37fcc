//! A rekey stopped after sealing every state under both keys (step 2 of
//! `login::rekey`): logins that hold the old key and logins that hold the new one take
//! turns on one user, and each reads the counters records the other wrote (they are
//! authenticated under the enrollment's record key, the same under both host keys).

mod support;

use common::backend::{KeyRotation, KeySource};
use common::login;
use common::{Error, FilesBackend, HostKey, Outcome, Result};
use support::*;

/// A key source that holds one key and never sees it replaced.
struct Holds(HostKey);

impl KeySource for Holds {
    fn key(&self) -> &HostKey {
        &self.0
    }
    fn replaced(&self) -> Result<Option<HostKey>> {
        Ok(None)
    }
}

/// A rotation to a given next key whose promotion fails: the rekey stops with every state
/// sealed under both keys.
struct Stuck {
    old: HostKey,
    next: std::path::PathBuf,
}

impl KeySource for Stuck {
    fn key(&self) -> &HostKey {
        &self.old
    }
    fn replaced(&self) -> Result<Option<HostKey>> {
        Ok(None)
    }
}

impl KeyRotation for Stuck {
    fn next(&self) -> Result<HostKey> {
        HostKey::load(&self.next)
    }
    fn promote(&self) -> Result<()> {
        Err(Error::Config("promotion refused by the test".into()))
    }
}

#[test]
fn both_keys_of_an_unfinished_rekey_read_each_others_counters() {
    let fx = Fixture::new();
    let (user, secret) = fx.enroll("tess");
    let next_path = fx.tmp.path().join("next.key");
    HostKey::generate().unwrap().store(&next_path).unwrap();
    let backend = FilesBackend::open(&fx.state_dir).unwrap();
    let stuck = Stuck {
        old: HostKey::load(&fx.key_file).unwrap(),
        next: next_path.clone(),
    };
    assert!(login::rekey(&backend, &stuck).is_err());
    let text = std::fs::read_to_string(fx.state_dir.join("tess")).unwrap();
    assert_eq!(text.matches("[[secret]]").count(), 2, "{text}");

    let old = Holds(HostKey::load(&fx.key_file).unwrap());
    let new = Holds(HostKey::load(&next_path).unwrap());
    let t = now();
    // A wrong code under the new key, then another under the old: both counted, in one
    // chain of records.
    let wrong = wrong_code(&secret);
    for keys in [&new, &old] {
        let o = login::authenticate(&backend, keys, &user, &wrong, &req(t)).unwrap();
        assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
    }
    let s = login::status(&backend, &new, &user).unwrap().unwrap();
    assert_eq!(s.counters.failures, 2);
    // A code accepted under the old key is a replay under the new one.
    let code = current_code(&secret);
    let o = login::authenticate(&backend, &old, &user, &code, &req(t)).unwrap();
    assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
    let o = login::authenticate(&backend, &new, &user, &code, &req(t)).unwrap();
    assert!(matches!(o, Outcome::Replayed { .. }), "{o:?}");
    // A third key opens nothing.
    let stranger = Holds(HostKey::generate().unwrap());
    assert!(login::status(&backend, &stranger, &user).is_err());
}

/// Issue 10: one user must not make `rekey` fail for the others. A state that opens with
/// neither key is passed over and reported; everyone else moves to the new key.
#[test]
fn a_state_that_does_not_open_does_not_stop_a_rekey_for_the_others() {
    let fx = Fixture::new();
    let users: Vec<_> = ["ann", "ben", "cat"].iter().map(|n| fx.enroll(n)).collect();
    let ben = fx.state_dir.join("ben");
    let text = std::fs::read_to_string(&ben).unwrap();
    std::fs::write(&ben, text.replace("digits = 6", "digits = 8")).unwrap();
    let old_key = std::fs::read(&fx.key_file).unwrap();
    let results = common::store::rekey(&fx.state_dir, &fx.key_file).unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(u, _)| u.as_str())
        .collect();
    assert_eq!(failed, ["ben"], "{results:?}");
    assert_ne!(std::fs::read(&fx.key_file).unwrap(), old_key);
    let store = fx.store();
    for (user, secret) in users.iter().filter(|(u, _)| u.as_str() != "ben") {
        let o = store
            .authenticate(user, &current_code(secret), &req(now()))
            .unwrap();
        assert!(matches!(o, Outcome::Accepted { .. }), "{user}: {o:?}");
    }
}

/// A user whose lock is held (by a stuck process) past the lock timeout is tried again
/// after the others, and the rekey finishes once it is free.
#[test]
fn a_busy_user_is_tried_again_after_the_others() {
    let fx = Fixture::new();
    let users: Vec<_> = ["dan", "eve"].iter().map(|n| fx.enroll(n)).collect();
    let counters = fx.state_dir.join(".dan.counters");
    let held = std::fs::File::open(&counters).unwrap();
    let held = nix::fcntl::Flock::lock(held, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let release = std::thread::spawn(move || {
        // Longer than one lock timeout (10 s), shorter than two.
        std::thread::sleep(std::time::Duration::from_secs(13));
        drop(held);
    });
    let results = common::store::rekey(&fx.state_dir, &fx.key_file).unwrap();
    release.join().unwrap();
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let store = fx.store();
    for (user, secret) in &users {
        let o = store
            .authenticate(user, &current_code(secret), &req(now()))
            .unwrap();
        assert!(matches!(o, Outcome::Accepted { .. }), "{user}: {o:?}");
    }
}
