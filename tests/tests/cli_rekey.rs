//! `totp-enroll rekey`: a new host key and every state file re-encrypted, with no moment at
//! which a user cannot log in, even when the rekey is killed at a random point.

mod cli_support;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cli_support::*;
use common::{AuthRequest, OtpParams, Outcome, Store, TotpSecret, UserName};
use integration_tests::pam::{now, Fixture};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Enrolls `n` users (u000, u001, ...) each with its own secret and 2 recovery codes.
fn enroll_many(f: &Fixture, n: usize) -> Vec<(UserName, TotpSecret, Vec<String>)> {
    let store = f.store();
    (0..n)
        .map(|i| {
            let user = UserName::parse(&format!("u{i:03}")).unwrap();
            let secret = TotpSecret::generate().unwrap();
            let copy = TotpSecret::from_base32(&secret.to_base32()).unwrap();
            let codes = store
                .enroll(&user, copy, OtpParams::default(), None, 2, false, now())
                .unwrap()
                .iter()
                .map(|c| c.display().to_string())
                .collect();
            (user, secret, codes)
        })
        .collect()
}

/// Every user logs in with the code of time `t`, through a store opened as the module
/// opens it (the key file as it is now). Time moves forward between calls so that no
/// code is a replay.
fn all_authenticate(f: &Fixture, users: &[(UserName, TotpSecret, Vec<String>)], t: i64) {
    let store = Store::open(&f.state_dir, &f.key_file).expect("open store with the key file");
    let req = AuthRequest {
        now: t,
        ..request()
    };
    for (user, secret, _) in users {
        let code = common::totp::code_at(secret, &OtpParams::default(), t as u64);
        let o = store.authenticate(user, &code, &req);
        assert!(
            matches!(o, Ok(Outcome::Accepted { .. })),
            "{user} cannot log in at t={t}: {o:?}"
        );
    }
}

fn rekey_command(f: &Fixture) -> Command {
    let mut c = Command::new(binary());
    c.args(path_args(f)).arg("rekey");
    c
}

fn new_key_path(f: &Fixture) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}.new", f.key_file.display()))
}

#[test]
fn after_rekey_every_user_logs_in_with_codes_and_recovery_codes() {
    let f = Fixture::new();
    let users = enroll_many(&f, 5);
    let old_key = std::fs::read(&f.key_file).unwrap();
    let r = run_ok(&f, &["rekey"], b"");
    assert!(r.stdout.contains("5 state file(s) re-encrypted"), "{r:?}");
    let new_key = std::fs::read(&f.key_file).unwrap();
    assert_ne!(old_key, new_key);
    assert_eq!(new_key.len(), 32);
    assert_root_0600(&f.key_file);
    assert!(!new_key_path(&f).exists());
    all_authenticate(&f, &users, now());
    let store = f.store();
    for (user, _, codes) in &users {
        let o = authenticate(&store, user.as_str(), &codes[0]);
        assert!(
            matches!(o, Outcome::RecoveryAccepted { .. }),
            "{user}: {o:?}"
        );
    }
    // The old key opens nothing any more.
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.key");
    std::fs::write(&old, &old_key).unwrap();
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let o =
        Store::open(&f.state_dir, &old)
            .unwrap()
            .authenticate(&users[0].0, "123456", &request());
    assert!(o.is_err(), "old key still opens a state file: {o:?}");
}

/// A simple generator for kill times; the seed is printed so that a failure can be rerun.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

#[test]
fn a_rekey_killed_at_random_moments_never_locks_anyone_out() {
    const USERS: usize = 200;
    const ROUNDS: usize = 8;
    let f = Fixture::new();
    let users = enroll_many(&f, USERS);
    // A whole rekey, timed: kills fall inside that span.
    let started = Instant::now();
    run_ok(&f, &["rekey"], b"");
    let full = started.elapsed();
    eprintln!("full rekey of {USERS} users: {full:?}");
    let mut t = now();
    all_authenticate(&f, &users, t);

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill-time seed {seed}");
    let mut rng = Lcg(seed);
    let mut interrupted = 0;
    for round in 0..ROUNDS {
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64));
        let mut child = rekey_command(&f)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn rekey");
        std::thread::sleep(delay);
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill");
        let status = child.wait().expect("wait");
        if status.code().is_none() {
            interrupted += 1;
        }
        // One step later than the last round, so the codes are new.
        t += 30;
        eprintln!("round {round}: killed after {delay:?} ({status})");
        all_authenticate(&f, &users, t);
    }
    assert!(
        interrupted >= ROUNDS / 2,
        "only {interrupted} of {ROUNDS} rekeys were killed before finishing"
    );
    // A rekey run to the end after all that finishes the job.
    run_ok(&f, &["rekey"], b"");
    assert!(!new_key_path(&f).exists());
    all_authenticate(&f, &users, t + 30);
}
