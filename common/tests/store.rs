//! The store: round trip, the login transaction's outcomes, and refusal of every kind of
//! damaged or unsafe file.

mod support;

use std::os::unix::fs::{symlink, PermissionsExt};

use common::totp::OtpParams;
use common::{
    login, Backend, Error, FileKey, FilesBackend, HostKey, Outcome, PriorRejections, UserName,
};
use support::*;

#[test]
fn round_trip_accept_then_replay() {
    let fx = Fixture::new();
    let (user, secret) = fx.enroll("alice");
    let store = fx.store();
    let code = current_code(&secret);
    let t = now();
    let outcome = store.authenticate(&user, &code, &req(t)).unwrap();
    assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
    let again = store.authenticate(&user, &code, &req(t)).unwrap();
    assert!(
        matches!(again, Outcome::Replayed { failures: 1, .. }),
        "{again:?}"
    );
    // A fresh Store (as a new login would) sees the same state.
    let status = fx.store().status(&user).unwrap().unwrap();
    assert_eq!(status.counters.failures, 1);
    assert_eq!(status.recovery_codes_left, 10);
    assert!(status.counters.last_counter.is_some());
}

#[test]
fn spaces_in_code_are_ignored_and_wrong_codes_count() {
    let fx = Fixture::new();
    let (user, secret) = fx.enroll("bob");
    let store = fx.store();
    let code = current_code(&secret);
    let wrong = wrong_code(&secret);
    let rejected_at = now() - 7;
    let o = store
        .authenticate(&user, &wrong, &req(rejected_at))
        .unwrap();
    assert_eq!(
        o,
        Outcome::Rejected {
            failures: 1,
            locked_until: None
        }
    );
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    match store.authenticate(&user, &spaced, &req(now())).unwrap() {
        Outcome::Accepted { prior, .. } => assert_eq!(
            prior,
            PriorRejections {
                count: 1,
                last_rhost: Some("192.0.2.1".into()),
                last_at: Some(rejected_at)
            }
        ),
        o => panic!("{o:?}"),
    }
}

#[test]
fn lockout_after_max_failures_and_expiry() {
    let fx = Fixture::new();
    let (user, secret) = fx.enroll("carol");
    let store = fx.store();
    let t = now();
    for i in 1..=5 {
        let o = store.authenticate(&user, "abc", &req(t)).unwrap();
        let expect_lock = (i == 5).then_some(t + 300);
        assert_eq!(
            o,
            Outcome::Rejected {
                failures: i,
                locked_until: expect_lock
            }
        );
    }
    let code = current_code(&secret);
    assert_eq!(
        store.authenticate(&user, &code, &req(t)).unwrap(),
        Outcome::Locked { until: t + 300 }
    );
    // After the lock runs out, the (still unused) code works.
    let later = req(t + 301);
    let code_later = common::totp::code_at(&secret, &Default::default(), (t + 301) as u64);
    assert!(matches!(
        store.authenticate(&user, &code_later, &later).unwrap(),
        Outcome::Accepted { .. }
    ));
    // unlock clears a lock at once.
    for _ in 0..5 {
        store.authenticate(&user, "abc", &req(t + 302)).unwrap();
    }
    store.unlock(&user).unwrap();
    let s = store.status(&user).unwrap().unwrap();
    assert_eq!((s.counters.failures, s.counters.locked_until), (0, None));
}

#[test]
fn recovery_codes_work_once_and_survive_rewrites() {
    let fx = Fixture::new();
    let user = UserName::parse("dave").unwrap();
    let store = fx.store();
    let codes = store
        .enroll(
            &user,
            secret_for("dave"),
            Default::default(),
            None,
            3,
            false,
            now(),
        )
        .unwrap();
    let first = codes[0].display();
    let lower = first.to_lowercase().replace('-', "");
    match store.authenticate(&user, &lower, &req(now())).unwrap() {
        Outcome::RecoveryAccepted { remaining: 2, .. } => {}
        o => panic!("{o:?}"),
    }
    // Spent: presented again it is a replay.
    assert!(matches!(
        store.authenticate(&user, &first, &req(now())).unwrap(),
        Outcome::Replayed { .. }
    ));
    // A whole-file rewrite (unlock) keeps the spent code spent and the others live.
    store.unlock(&user).unwrap();
    assert!(matches!(
        store.authenticate(&user, &first, &req(now())).unwrap(),
        Outcome::Rejected { .. }
    ));
    assert!(matches!(
        store
            .authenticate(&user, &codes[1].display(), &req(now()))
            .unwrap(),
        Outcome::RecoveryAccepted { remaining: 1, .. }
    ));
    // New codes: the old ones stop working.
    let new = store.regenerate_recovery_codes(&user, 2).unwrap();
    assert!(matches!(
        store
            .authenticate(&user, &codes[2].display(), &req(now()))
            .unwrap(),
        Outcome::Rejected { .. }
    ));
    assert!(matches!(
        store
            .authenticate(&user, &new[0].display(), &req(now()))
            .unwrap(),
        Outcome::RecoveryAccepted { remaining: 1, .. }
    ));
}

#[test]
fn enrollment_is_refused_twice_and_removed() {
    let fx = Fixture::new();
    let (user, _) = fx.enroll("erin");
    let store = fx.store();
    assert!(matches!(
        store.enroll(
            &user,
            secret_for("x"),
            Default::default(),
            None,
            1,
            false,
            now()
        ),
        Err(Error::AlreadyEnrolled(_))
    ));
    store
        .enroll(
            &user,
            secret_for("x"),
            Default::default(),
            None,
            1,
            true,
            now(),
        )
        .unwrap();
    assert!(store.remove(&user).unwrap());
    assert_eq!(
        store.authenticate(&user, "123456", &req(now())).unwrap(),
        Outcome::NotEnrolled
    );
    assert!(!store.remove(&user).unwrap());
}

#[test]
fn confirmation_step_cannot_log_in() {
    let fx = Fixture::new();
    let user = UserName::parse("frank").unwrap();
    let secret = secret_for("frank");
    let code = current_code(&secret);
    let step = common::totp::verify(&secret, &Default::default(), &code, now() as u64, 1, None)
        .fresh_step
        .unwrap();
    fx.store()
        .enroll(
            &user,
            secret,
            Default::default(),
            Some(step.0),
            1,
            false,
            now(),
        )
        .unwrap();
    assert!(matches!(
        fx.store().authenticate(&user, &code, &req(now())).unwrap(),
        Outcome::Replayed { .. }
    ));
}

/// Loading the user's state must fail with `want`-kind error after `damage`.
fn refused_after(damage: impl FnOnce(&Fixture, &std::path::Path), want: fn(&Error) -> bool) {
    let fx = Fixture::new();
    let (user, secret) = fx.enroll("victim");
    let path = fx.state_dir.join("victim");
    damage(&fx, &path);
    let err = match Store::open(&fx.state_dir, &fx.key_file) {
        Err(e) => e,
        Ok(store) => match store.authenticate(&user, &current_code(&secret), &req(now())) {
            Err(e) => e,
            Ok(o) => panic!("damaged state accepted: {o:?}"),
        },
    };
    assert!(want(&err), "unexpected error: {err}");
}

fn corrupt(e: &Error) -> bool {
    matches!(e, Error::Corrupt { .. })
}
fn unsafe_file(e: &Error) -> bool {
    matches!(e, Error::Unsafe { .. })
}

#[test]
fn refuses_bit_flipped_file() {
    // Flip one bit inside the ciphertext, and separately one in the TOML syntax.
    refused_after(
        |_, p| {
            let text = std::fs::read_to_string(p).unwrap();
            let at = text.find("ciphertext = \"").unwrap() + 20;
            let mut bytes = text.into_bytes();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            std::fs::write(p, bytes).unwrap();
        },
        corrupt,
    );
    refused_after(
        |_, p| {
            let mut bytes = std::fs::read(p).unwrap();
            bytes[3] ^= 0x01;
            std::fs::write(p, bytes).unwrap();
        },
        corrupt,
    );
}

#[test]
fn refuses_truncated_and_empty_file() {
    refused_after(
        |_, p| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
        },
        corrupt,
    );
    refused_after(|_, p| std::fs::write(p, b"").unwrap(), corrupt);
}

#[test]
fn refuses_file_copied_under_another_name() {
    let fx = Fixture::new();
    fx.enroll("mallory");
    let (victim, _) = fx.enroll("victim");
    let mallory_file = std::fs::read_to_string(fx.state_dir.join("mallory")).unwrap();
    // Copied as is: the user field names mallory.
    std::fs::write(fx.state_dir.join("victim"), &mallory_file).unwrap();
    let err = fx
        .store()
        .authenticate(&victim, "123456", &req(now()))
        .unwrap_err();
    assert!(corrupt(&err), "{err}");
    // With the user field edited too: the AEAD's associated data still names mallory.
    std::fs::write(
        fx.state_dir.join("victim"),
        mallory_file.replace("user = \"mallory\"", "user = \"victim\""),
    )
    .unwrap();
    let err = fx
        .store()
        .authenticate(&victim, "123456", &req(now()))
        .unwrap_err();
    assert!(corrupt(&err), "{err}");
}

#[test]
fn refuses_wrong_key() {
    refused_after(
        |fx, _| HostKey::generate().unwrap().store(&fx.key_file).unwrap(),
        corrupt,
    );
}

#[test]
fn refuses_symlinked_file_and_dir() {
    refused_after(
        |fx, p| {
            let real = fx.tmp.path().join("real");
            std::fs::rename(p, &real).unwrap();
            symlink(&real, p).unwrap();
        },
        unsafe_file,
    );
    refused_after(
        |fx, _| {
            let real = fx.tmp.path().join("realdir");
            std::fs::rename(&fx.state_dir, &real).unwrap();
            symlink(&real, &fx.state_dir).unwrap();
        },
        unsafe_file,
    );
}

#[test]
fn refuses_files_not_owned_by_root_or_writable_by_others() {
    refused_after(
        |_, p| std::os::unix::fs::chown(p, Some(65534), None).unwrap(),
        unsafe_file,
    );
    refused_after(
        |fx, _| std::os::unix::fs::chown(&fx.state_dir, Some(65534), None).unwrap(),
        unsafe_file,
    );
    for mode in [0o620, 0o602] {
        refused_after(
            move |_, p| std::fs::set_permissions(p, PermissionsExt::from_mode(mode)).unwrap(),
            unsafe_file,
        );
    }
    for mode in [0o770, 0o707, 0o1777] {
        refused_after(
            move |fx, _| {
                std::fs::set_permissions(&fx.state_dir, PermissionsExt::from_mode(mode)).unwrap()
            },
            unsafe_file,
        );
    }
}

#[test]
fn refuses_oversized_file() {
    refused_after(
        |_, p| {
            let mut text = std::fs::read_to_string(p).unwrap();
            text.push_str(&format!("\n# {}\n", "x".repeat(70 * 1024)));
            std::fs::write(p, text).unwrap();
        },
        corrupt,
    );
}

#[test]
fn refuses_unsafe_or_malformed_key() {
    let fx = Fixture::new();
    std::fs::set_permissions(&fx.key_file, PermissionsExt::from_mode(0o640)).unwrap();
    assert!(unsafe_file(
        &Store::open(&fx.state_dir, &fx.key_file).err().unwrap()
    ));
    std::fs::set_permissions(&fx.key_file, PermissionsExt::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&fx.key_file, Some(65534), None).unwrap();
    assert!(unsafe_file(
        &Store::open(&fx.state_dir, &fx.key_file).err().unwrap()
    ));
    std::os::unix::fs::chown(&fx.key_file, Some(0), None).unwrap();
    std::fs::write(&fx.key_file, [7u8; 31]).unwrap();
    assert!(corrupt(
        &Store::open(&fx.state_dir, &fx.key_file).err().unwrap()
    ));
    std::fs::remove_file(&fx.key_file).unwrap();
    assert!(matches!(
        Store::open(&fx.state_dir, &fx.key_file).err().unwrap(),
        Error::Io { .. }
    ));
}

#[test]
fn damaged_counters_fall_back_or_refuse() {
    let fx = Fixture::new();
    let (user, secret) = fx.enroll("gina");
    let store = fx.store();
    assert!(matches!(
        store
            .authenticate(&user, &current_code(&secret), &req(now()))
            .unwrap(),
        Outcome::Accepted { .. }
    ));
    // Garbage over the whole counters file: refused, never treated as a clean slate.
    std::fs::write(fx.state_dir.join(".gina.counters"), vec![0xA5u8; 4352]).unwrap();
    let err = store
        .authenticate(&user, &current_code(&secret), &req(now()))
        .unwrap_err();
    assert!(corrupt(&err), "{err}");
}

#[test]
fn rekey_keeps_everyone_able_to_log_in() {
    let fx = Fixture::new();
    let users: Vec<_> = ["u1", "u2", "u3"].iter().map(|n| fx.enroll(n)).collect();
    let old_id = fx.store().key().key_id();
    let report = support::store::rekey(&fx.state_dir, &fx.key_file).unwrap();
    assert_eq!(report.len(), 3);
    assert!(report.iter().all(|(_, r)| r.is_ok()));
    let store = fx.store();
    assert_ne!(store.key().key_id(), old_id);
    for (user, secret) in &users {
        assert!(matches!(
            store
                .authenticate(user, &current_code(secret), &req(now()))
                .unwrap(),
            Outcome::Accepted { .. }
        ));
    }
    let text = std::fs::read_to_string(fx.state_dir.join("u1")).unwrap();
    assert_eq!(
        text.matches("key_id").count(),
        1,
        "old key's entry left behind"
    );
}

#[test]
fn a_login_that_read_the_key_before_a_rekey_still_succeeds() {
    let fx = Fixture::new();
    let (user, secret) = fx.enroll("waiting");
    // The module reads the key, then prompts; the whole rekey runs while the user types.
    let opened_before = fx.store();
    support::store::rekey(&fx.state_dir, &fx.key_file).unwrap();
    assert_ne!(opened_before.key().key_id(), fx.store().key().key_id());
    let outcome = opened_before
        .authenticate(&user, &current_code(&secret), &req(now()))
        .unwrap();
    assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
    // The retry is for a replaced key only: a file that does not open under the current
    // key is still refused.
    std::fs::write(&fx.key_file, [7u8; 32]).unwrap();
    let err = opened_before
        .authenticate(&user, &current_code(&secret), &req(now()))
        .unwrap_err();
    assert!(corrupt(&err), "{err}");
}

#[test]
fn list_shows_enrolled_users_only() {
    let fx = Fixture::new();
    fx.enroll("a1");
    fx.enroll("b2");
    let store = fx.store();
    store.remove(&UserName::parse("b2").unwrap()).unwrap();
    let listed: Vec<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(listed, vec!["a1".to_string()]);
}

#[test]
fn writes_with_a_key_replaced_by_rekey_are_refused() {
    let fx = Fixture::new();
    let (user, _) = fx.enroll("holdout");
    // An enrollment-side process that read the key before the rekey.
    let stale = fx.store();
    support::store::rekey(&fx.state_dir, &fx.key_file).unwrap();
    let late = UserName::parse("late").unwrap();
    let err = stale
        .enroll(
            &late,
            secret_for("late"),
            Default::default(),
            None,
            1,
            false,
            now(),
        )
        .err()
        .expect("enrollment under a replaced key was written");
    assert!(matches!(err, Error::KeyReplaced), "{err}");
    // The stale key no longer opens the rekeyed file: refused before anything is written.
    let before = std::fs::read(fx.state_dir.join("holdout")).unwrap();
    assert!(stale.unlock(&user).is_err());
    assert_eq!(std::fs::read(fx.state_dir.join("holdout")).unwrap(), before);
    // Nothing was written for the late user; the rekeyed user still logs in.
    assert!(!fx.store().is_enrolled(&late).unwrap());
    let secret = secret_for("holdout");
    assert!(matches!(
        fx.store()
            .authenticate(&user, &current_code(&secret), &req(now()))
            .unwrap(),
        Outcome::Accepted { .. }
    ));
}

#[test]
fn rekey_step_four_reseals_a_file_sealed_under_the_old_key_alone() {
    let fx = Fixture::new();
    let old = HostKey::load(&fx.key_file).unwrap();
    // Simulate an enrollment that sealed under the old key after step 2: run a rekey that
    // stops after the switch by hand-writing the new key, then enroll under the old one.
    let (user, secret) = fx.enroll("early");
    let new_path = std::path::PathBuf::from(format!("{}.new", fx.key_file.display()));
    let new = HostKey::generate().unwrap();
    new.store(&new_path).unwrap();
    Store::new(&fx.state_dir, old)
        .enroll(
            &UserName::parse("mid").unwrap(),
            secret_for("mid"),
            Default::default(),
            None,
            1,
            false,
            now(),
        )
        .unwrap();
    support::store::rekey(&fx.state_dir, &fx.key_file).unwrap();
    let store = fx.store();
    assert_eq!(store.key().key_id(), new.key_id());
    for (u, s) in [
        (user, secret),
        (UserName::parse("mid").unwrap(), secret_for("mid")),
    ] {
        assert!(matches!(
            store
                .authenticate(&u, &current_code(&s), &req(now()))
                .unwrap(),
            Outcome::Accepted { .. }
        ));
    }
}

/// The module checks enrollment before its prompt and loads after it, on one backend that
/// keeps the state file it opened for the check: whatever happened to the file meanwhile,
/// the load sees the file that the name holds when it loads.
#[test]
fn a_state_file_replaced_or_removed_after_the_enrollment_check_is_not_used() {
    let fx = Fixture::new();
    let (user, _) = fx.enroll("alice");
    let keys = FileKey::load(&fx.key_file).unwrap();
    let new_secret = secret_for("a different secret");
    let new_code = current_code(&new_secret);

    // Replaced (a re-enrollment during the prompt): the new enrollment decides.
    let backend = FilesBackend::open(&fx.state_dir).unwrap();
    assert!(backend.is_enrolled(&user).unwrap());
    fx.store()
        .enroll(
            &user,
            new_secret,
            OtpParams::default(),
            None,
            10,
            true,
            now(),
        )
        .unwrap();
    let o = login::authenticate(&backend, &keys, &user, &new_code, &req(now())).unwrap();
    assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");

    // Removed during the prompt: not enrolled, and no counters file left behind for it.
    let backend = FilesBackend::open(&fx.state_dir).unwrap();
    assert!(backend.is_enrolled(&user).unwrap());
    assert!(fx.store().remove(&user).unwrap());
    let o = login::authenticate(&backend, &keys, &user, &new_code, &req(now())).unwrap();
    assert!(matches!(o, Outcome::NotEnrolled), "{o:?}");
    assert!(!fx.state_dir.join(".alice.counters").exists());
}

/// Ancestors are checked where they really are: through a symlink, the directory it leads
/// to is refused if others can write it, and named.
#[test]
fn ancestors_are_checked_on_the_real_path_behind_a_symlink() {
    let fx = Fixture::new();
    let open = fx.tmp.path().join("open");
    let state = open.join("inner").join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let link = fx.tmp.path().join("link");
    symlink(&open, &link).unwrap();
    let through_link = link.join("inner").join("state");
    let err = FilesBackend::open(&through_link).err().expect("refused");
    assert!(unsafe_file(&err), "{err}");
    let text = err.to_string();
    assert!(text.starts_with(&format!("{}: ", open.display())), "{text}");
    // Safe once the real directory is, the symlink itself being root's.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(FilesBackend::open(&through_link).is_ok());
}

/// A missing directory below an unsafe one is reported missing, as a resolution of the
/// path finds it (no directory of it is judged before they all exist).
#[test]
fn a_missing_state_dir_below_an_unsafe_ancestor_is_missing() {
    let fx = Fixture::new();
    let open = fx.tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = FilesBackend::open(&open.join("gone").join("state"))
        .err()
        .expect("refused");
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    let err = FilesBackend::open(&open.join("state"))
        .err()
        .expect("refused");
    assert!(unsafe_file(&err), "{err}");
}
