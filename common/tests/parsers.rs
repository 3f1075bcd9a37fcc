//! A short mutation test of the state-file and config parsers (the cargo-fuzz targets in
//! fuzz/ do this at length): any input gives a value or an error, never a panic, and a
//! mutated state file never yields a different secret.

mod support;

use common::config::{apply_toml, Config};
use common::state::UserState;
use common::UserName;
use support::*;

const ROUNDS: usize = 20_000;

fn mutate(input: &[u8]) -> Vec<u8> {
    let r = random_bytes(8);
    let mut v = input.to_vec();
    // A second mutation may meet an input the first truncated to nothing.
    if v.is_empty() {
        v.push(r[5]);
        return v;
    }
    let at = (u32::from_le_bytes(r[0..4].try_into().unwrap()) as usize) % v.len();
    match r[4] % 5 {
        0 => v[at] ^= 1 << (r[5] % 8),
        1 => v.truncate(at),
        2 => v.insert(at, r[5]),
        3 => {
            v.remove(at);
        }
        _ => v[at] = b"=\"[]\n0#.-"[usize::from(r[5]) % 9],
    }
    v
}

#[test]
fn mutated_state_files_never_panic_or_change_the_secret() {
    let fx = Fixture::new();
    let (user, secret) = fx.enroll("fuzz");
    let original = std::fs::read(fx.state_dir.join("fuzz")).unwrap();
    let store = fx.store();
    let key = store.key();
    let path = std::path::Path::new("fuzz");
    let mut ok = 0;
    for _ in 0..ROUNDS {
        let mut v = mutate(&original);
        if random_bytes(1)[0].is_multiple_of(4) {
            v = mutate(&v);
        }
        if let Ok(state) = UserState::from_toml(&v, &user, &[key], path) {
            // The secret is not public: a code of the original secret (under whatever
            // parameters the mutated file names) must still verify.
            let t = now();
            let code = common::totp::code_at(&secret, &state.params, t as u64);
            assert!(state.verify_code(&code, t, 0).is_some());
            ok += 1;
        }
    }
    // Mutations of comments-free TOML mostly break it; some (counter values) are benign.
    assert!(
        ok < ROUNDS,
        "every mutation parsed: the test is not mutating"
    );
    let other = UserName::parse("other").unwrap();
    assert!(UserState::from_toml(&original, &other, &[key], path).is_err());
}

#[test]
fn mutated_configs_never_panic() {
    let base = b"state_dir = \"/var/lib/pam_totp\"\nwindow = 1\nnullok = false\n\
issuer = \"Example\"\nalgorithm = \"SHA256\"\ndigits = 8\nperiod = 30\nrecovery_codes = 10\n";
    let mut errors = 0;
    for _ in 0..ROUNDS {
        let v = mutate(base);
        if let Ok(text) = std::str::from_utf8(&v) {
            let mut c = Config::default();
            if apply_toml(&mut c, text).is_err() {
                errors += 1;
            } else {
                assert!(c.window <= 10 && (6..=8).contains(&c.params.digits()));
                assert!(c.state_dir.is_absolute());
            }
        }
    }
    assert!(errors > 0);
}
