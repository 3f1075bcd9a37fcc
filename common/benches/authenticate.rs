//! Cost of one `Store::authenticate` on each path, in µs per call. Prints figures; asserts
//! nothing about speed (a busy machine must not fail a build).
//!
//! Run: `cargo bench -p pam_totp_common --bench authenticate` (as root: the store insists on
//! root-owned files). Set BENCH_DIR to put the state directory on another file system; the
//! default is a temporary directory under /var/lib/pam_totp-tests (root-owned ancestors: the
//! store refuses /var/tmp's 1777 as an ancestor), on disk, so fsync costs what it costs.

use std::path::PathBuf;
use std::time::Instant;

use common::store::{AuthRequest, Outcome};
use common::totp::{code_at, OtpParams, TotpSecret};
use common::{HostKey, Store, UserName};
use zeroize::Zeroizing;

const USERS: usize = 2000;
const ITERS: usize = 5000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn secret(i: usize) -> TotpSecret {
    let mut b = [0u8; 20];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    b[8] = 0xa5;
    TotpSecret::from_bytes(Zeroizing::new(b.to_vec())).unwrap()
}

fn req(now: i64) -> AuthRequest<'static> {
    AuthRequest {
        now,
        window: 1,
        max_failures: 0,
        lockout_secs: 300,
        rhost: Some("192.0.2.1"),
        lockout_max_secs: 86400,
        hotp_window: 10,
        grace_secs: 0,
        device: None,
    }
}

fn report(name: &str, start: Instant, n: usize) {
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{name:<28} {us:>10.1} µs/call  ({n} calls)");
}

fn main() {
    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        // Not /var/tmp (1777): every ancestor of a state dir must be root's and not
        // writable by others.
        .unwrap_or_else(|| PathBuf::from("/var/lib/pam_totp-tests"));
    std::fs::create_dir_all(&base).unwrap();
    let tmp = tempfile::tempdir_in(base).unwrap();
    let state_dir = tmp.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let key_file = tmp.path().join("key");
    let (key, _) = HostKey::load_or_create(&key_file).unwrap();
    let store = Store::new(&state_dir, key);
    let params = OtpParams::default();
    let users: Vec<UserName> = (0..USERS)
        .map(|i| UserName::parse(&format!("user{i}")).unwrap())
        .collect();
    for (i, u) in users.iter().enumerate() {
        store
            .enroll(u, secret(i), params, None, 10, false, now())
            .unwrap();
    }
    println!(
        "pam_totp common::Store::authenticate, state on {}",
        tmp.path().display()
    );

    // Success: each user presents the current code once (a fresh code, a durable write).
    let t = now();
    let codes: Vec<_> = (0..USERS)
        .map(|i| code_at(&secret(i), &params, t as u64))
        .collect();
    let start = Instant::now();
    for (u, c) in users.iter().zip(&codes) {
        let o = store.authenticate(u, c, &req(t)).unwrap();
        assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
    }
    report("success (fsync)", start, USERS);

    // A second login of each user, a step later: the steady state of a user who logs in
    // again (the first login above is each user's first write after enrollment).
    let t2 = t + 30;
    let codes2: Vec<_> = (0..USERS)
        .map(|i| code_at(&secret(i), &params, t2 as u64))
        .collect();
    let start = Instant::now();
    for (u, c) in users.iter().zip(&codes2) {
        let o = store.authenticate(u, c, &req(t2)).unwrap();
        assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
    }
    report("success, next login", start, USERS);

    // Replay: the same codes again.
    let start = Instant::now();
    for k in 0..ITERS {
        let i = k % USERS;
        let o = store.authenticate(&users[i], &codes[i], &req(t)).unwrap();
        assert!(matches!(o, Outcome::Replayed { .. }), "{o:?}");
    }
    report("replay", start, ITERS);

    // Wrong code.
    let start = Instant::now();
    for k in 0..ITERS {
        let i = k % USERS;
        let wrong = if codes[i].as_str() == "000000" {
            "111111"
        } else {
            "000000"
        };
        let o = store.authenticate(&users[i], wrong, &req(t)).unwrap();
        assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
    }
    report("wrong code", start, ITERS);

    // Parsing and decrypting a state file alone (part of every path above).
    let bytes = std::fs::read(state_dir.join("user0")).unwrap();
    let start = Instant::now();
    for _ in 0..ITERS {
        let s =
            common::state::UserState::from_toml(&bytes, &users[0], &[store.key()], "b".as_ref());
        assert!(s.is_ok());
    }
    report("parse+decrypt state file", start, ITERS);

    // The durable write alone, for the "module's own cost beyond one fsync" figure.
    let f = std::fs::File::create(tmp.path().join("sync-probe")).unwrap();
    let start = Instant::now();
    for _ in 0..USERS {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[1u8; 256], 0).unwrap();
        f.sync_data().unwrap();
    }
    report("pwrite+fdatasync alone", start, USERS);
}
