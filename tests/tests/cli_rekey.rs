//! `totp-enroll rekey`: a new host key and every state file re-encrypted, with no moment at
//! which a user cannot log in, even when the rekey is killed at a random point.

mod cli_support;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cli_support::*;
use common::{AuthRequest, OtpParams, Outcome, TotpSecret, UserName};
use integration_tests::pam::{now, Fixture};
use integration_tests::Store;
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
    let dir = integration_tests::pam::safe_tempdir();
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

/// The state directory's and key files' contents, to tell whether a rekey did any work.
fn on_disk(f: &Fixture) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut paths: Vec<_> = std::fs::read_dir(&f.state_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.push(f.key_file.clone());
    paths.push(new_key_path(f));
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}

/// Kills the child on drop, so a failing round leaves no rekey running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_rekey_killed_at_random_moments_never_locks_anyone_out() {
    const USERS: usize = 200;
    /// Kills that must land in the middle of a rekey: after it changed something on disk,
    /// before it finished.
    const MID_KILLS: usize = 8;
    const MAX_ROUNDS: usize = 60;
    let f = Fixture::new();
    let users = enroll_many(&f, USERS);
    // A whole rekey, timed: kills fall inside that span, which shrinks to the shortest
    // rekey seen finishing, so a slow first run does not push the kills past the end.
    let started = Instant::now();
    run_ok(&f, &["rekey"], b"");
    let mut span = started.elapsed();
    eprintln!("full rekey of {USERS} users: {span:?}");
    let mut t = now();
    all_authenticate(&f, &users, t);

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill-time seed {seed}");
    let mut rng = Lcg(seed);
    let mut mid = 0;
    let mut round = 0;
    while mid < MID_KILLS && round < MAX_ROUNDS {
        round += 1;
        let before = on_disk(&f);
        let delay = Duration::from_micros(rng.below(span.as_micros() as u64));
        let spawned = Instant::now();
        let mut child = Running(
            rekey_command(&f)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn rekey"),
        );
        // Wait for the kill time, noticing a rekey that finishes first.
        let finished = loop {
            if let Some(status) = child.0.try_wait().expect("wait") {
                span = span.min(spawned.elapsed());
                break Some(status);
            }
            if spawned.elapsed() >= delay {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let status = match finished {
            Some(status) => status,
            None => {
                kill(Pid::from_raw(child.0.id() as i32), Signal::SIGKILL).expect("kill");
                child.0.wait().expect("wait")
            }
        };
        let killed_mid = status.code().is_none() && on_disk(&f) != before;
        mid += usize::from(killed_mid);
        // One step later than the last round, so the codes are new.
        t += 30;
        eprintln!("round {round}: after {delay:?}: {status}, mid-rekey: {killed_mid}");
        all_authenticate(&f, &users, t);
    }
    assert!(
        mid >= MID_KILLS,
        "only {mid} of {round} rekeys were killed in the middle"
    );
    // A rekey run to the end after all that finishes the job.
    run_ok(&f, &["rekey"], b"");
    assert!(!new_key_path(&f).exists());
    all_authenticate(&f, &users, t + 30);
}
