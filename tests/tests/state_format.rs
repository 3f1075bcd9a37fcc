//! State format version 2 (SPEC.md "User state file"), through the real libpam
//! (`pam_start_confdir`): the whole state file and every counters record are authenticated
//! under the enrollment's key, so a change made without it is refused like a corrupt file
//! (PAM_AUTHINFO_UNAVAIL); version 1 files, as the previous release wrote them
//! (tests/fixtures/state-v1), still log in and become version 2 at their next rewrite with
//! nothing lost; rekey works for both.

mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::totp::code_at;
use common::{Algorithm, OtpParams, UserName};
use integration_tests::pam::*;
use sha2::{Digest, Sha256};

const SLOT_LEN: usize = 256;
const BODY_LEN: usize = SLOT_LEN - 32;
const SLOT_OFFSETS: [usize; 2] = [0, 4096];

/// Waits out the last seconds of a 30 s step so that codes computed now stay in their step.
fn away_from_step_edge() {
    while now() % 30 >= 25 {
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn state_path(f: &Fixture, user: &str) -> PathBuf {
    f.state_dir.join(user)
}

fn counters_path(f: &Fixture, user: &str) -> PathBuf {
    f.state_dir.join(format!(".{user}.counters"))
}

fn write_0600(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A fixture holding the version 1 state directory of tests/fixtures/state-v1 (user
/// `nobody`, under that directory's key).
fn version_1_fixture() -> Fixture {
    let f = Fixture::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/state-v1");
    let read = |name: &str| std::fs::read(src.join(name)).unwrap();
    write_0600(&f.key_file, &read("pam_totp.key"));
    write_0600(&state_path(&f, "nobody"), &read("nobody"));
    write_0600(&counters_path(&f, "nobody"), &read(".nobody.counters"));
    f
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

/// The slot holding the highest sequence number.
fn newest_slot(bytes: &[u8]) -> usize {
    (0..2)
        .max_by_key(|&i| u64_at(bytes, SLOT_OFFSETS[i] + 4))
        .unwrap()
}

/// A counters record as the format before version 2 authenticated it: the body, then a
/// SHA-256 over a fixed label, the user name and the body, which anyone can recompute.
fn with_recomputed_checksum(user: &str, slot: &mut [u8]) {
    slot[0..4].copy_from_slice(b"PTC1");
    let mut h = Sha256::new();
    h.update(b"pam_totp counters v1\0");
    h.update(user.as_bytes());
    h.update([0]);
    h.update(&slot[..BODY_LEN]);
    let sum: [u8; 32] = h.finalize().into();
    slot[BODY_LEN..].copy_from_slice(&sum);
}

/// A record of the newest one's generation with `edit` applied, a higher sequence
/// number and a recomputed checksum, written over slot `slot`.
fn forge(f: &Fixture, user: &str, slot: usize, edit: impl Fn(&mut [u8])) {
    let path = counters_path(f, user);
    let mut bytes = std::fs::read(&path).unwrap();
    let newest = SLOT_OFFSETS[newest_slot(&bytes)];
    let mut rec = bytes[newest..newest + SLOT_LEN].to_vec();
    let seq = u64_at(&rec, 4) + 10;
    rec[4..12].copy_from_slice(&seq.to_le_bytes());
    edit(&mut rec);
    with_recomputed_checksum(user, &mut rec);
    let at = SLOT_OFFSETS[slot];
    bytes[at..at + SLOT_LEN].copy_from_slice(&rec);
    std::fs::write(&path, bytes).unwrap();
}

/// Clears the failures and the lock of a record body.
fn unlocked(rec: &mut [u8]) {
    rec[36..40].copy_from_slice(&0u32.to_le_bytes());
    rec[40..48].copy_from_slice(&i64::MIN.to_le_bytes());
}

#[test]
fn a_version_2_state_changed_without_the_key_is_refused() {
    let f = Fixture::new();
    let codes = f.enroll("alice", 3);
    let s = f.service("");
    let path = state_path(&f, "alice");
    let spent_list = std::fs::read_to_string(&path).unwrap();
    assert!(spent_list.starts_with("mac = \""), "{spent_list}");
    assert!(spent_list.contains("\nversion = 2\n"), "{spent_list}");
    // A login (last_counter set), a recovery code spent, then a rewrite (unlock) that
    // drops the spent code's hash from the file.
    away_from_step_edge();
    let t = now();
    f.try_code(&s, "alice", f.code_at(t))
        .assert_code(PAM_SUCCESS);
    f.try_code(&s, "alice", &codes[0]).assert_code(PAM_SUCCESS);
    let alice = UserName::parse("alice").unwrap();
    f.store().unlock(&alice).unwrap();
    let good = std::fs::read_to_string(&path).unwrap();
    assert!(good.contains("last_counter = "), "{good}");
    let hash_list = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("recovery_codes = "))
            .unwrap()
            .to_owned()
    };
    assert_ne!(hash_list(&good), hash_list(&spent_list));

    let secret = f.secret();
    let code_with = |alg, digits, period| {
        let p = OtpParams::new(alg, digits, period).unwrap();
        code_at(&secret, &p, t as u64).to_string()
    };
    let last_counter_line = good
        .lines()
        .find(|l| l.starts_with("last_counter = "))
        .unwrap()
        .to_owned();
    // Each edit, and a code that the edited file would accept if it were believed.
    let edits: Vec<(&str, String, String)> = vec![
        (
            "algorithm SHA256",
            good.replace("algorithm = \"SHA1\"", "algorithm = \"SHA256\""),
            code_with(Algorithm::SHA256, 6, 30),
        ),
        (
            "8 digits",
            good.replace("digits = 6", "digits = 8"),
            code_with(Algorithm::SHA1, 8, 30),
        ),
        (
            "period 3600",
            good.replace("period = 30", "period = 3600"),
            code_with(Algorithm::SHA1, 6, 3600),
        ),
        (
            "SHA256, 8 digits, 3600 s, no last_counter",
            good.replace("algorithm = \"SHA1\"", "algorithm = \"SHA256\"")
                .replace("digits = 6", "digits = 8")
                .replace("period = 30", "period = 3600")
                .replace(&format!("{last_counter_line}\n"), ""),
            code_with(Algorithm::SHA256, 8, 3600),
        ),
        (
            "last_counter removed",
            good.replace(&format!("{last_counter_line}\n"), ""),
            f.code_at(t),
        ),
        (
            "a spent recovery code's hash restored",
            good.replace(&hash_list(&good), &hash_list(&spent_list)),
            codes[0].clone(),
        ),
        (
            "failures changed",
            good.replace("failures = 0", "failures = 4"),
            codes[1].clone(),
        ),
        (
            "created changed",
            good.replacen("created = ", "created = 1", 1),
            codes[1].clone(),
        ),
        (
            "a comment added",
            format!("{good}# nothing\n"),
            codes[1].clone(),
        ),
        (
            "passed off as version 1 without its mac",
            good.split_once('\n')
                .unwrap()
                .1
                .replace("version = 2", "version = 1"),
            codes[1].clone(),
        ),
    ];
    for (what, text, code) in &edits {
        assert_ne!(text, &good, "{what}: the edit changed nothing");
        std::fs::write(&path, text).unwrap();
        let a = f.try_code(&s, "alice", code);
        assert_eq!(
            code_name(a.code),
            code_name(PAM_AUTHINFO_UNAVAIL),
            "{what}: {a:?}"
        );
    }
    // The file as written still works: the unspent recovery code logs in.
    std::fs::write(&path, &good).unwrap();
    f.try_code(&s, "alice", &codes[1]).assert_code(PAM_SUCCESS);
}

#[test]
fn a_counters_record_forged_without_the_key_is_refused() {
    let f = Fixture::new();
    let codes = f.enroll("alice", 3);
    let s = f.service("max_failures=3 lockout_secs=3600");
    for _ in 0..3 {
        f.try_code(&s, "alice", f.wrong_code());
    }
    f.try_code(&s, "alice", &codes[0]).assert_code(PAM_MAXTRIES);
    let path = counters_path(&f, "alice");
    let genuine = std::fs::read(&path).unwrap();

    // Both slots replaced by an unlocked record with the old format's checksum: there is
    // no authentic record left, so the file is refused.
    forge(&f, "alice", 0, unlocked);
    forge(&f, "alice", 1, unlocked);
    let a = f.try_code(&s, "alice", &codes[0]);
    assert_eq!(code_name(a.code), code_name(PAM_AUTHINFO_UNAVAIL), "{a:?}");

    // Only the newest slot forged that way: a checksummed record of the state's own
    // generation can only be a forgery, so the file is refused too (not passed over).
    std::fs::write(&path, &genuine).unwrap();
    let newest = newest_slot(&genuine);
    forge(&f, "alice", newest, unlocked);
    let a = f.try_code(&s, "alice", &codes[0]);
    assert_eq!(code_name(a.code), code_name(PAM_AUTHINFO_UNAVAIL), "{a:?}");

    // Both slots edited in place, keeping their (now wrong) authenticators: refused.
    let mut bytes = genuine.clone();
    for at in SLOT_OFFSETS {
        unlocked(&mut bytes[at..at + SLOT_LEN]);
    }
    std::fs::write(&path, &bytes).unwrap();
    let a = f.try_code(&s, "alice", &codes[0]);
    assert_eq!(code_name(a.code), code_name(PAM_AUTHINFO_UNAVAIL), "{a:?}");

    // The genuine file: still locked.
    std::fs::write(&path, &genuine).unwrap();
    f.try_code(&s, "alice", &codes[0]).assert_code(PAM_MAXTRIES);
}

#[test]
fn a_version_1_state_still_logs_in_and_becomes_version_2_at_its_next_rewrite() {
    let f = version_1_fixture();
    let s = f.service("");
    let path = state_path(&f, "nobody");
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .starts_with("version = 1\n"));
    away_from_step_edge();
    let t = now();
    let step = f.params.step_at(t as u64);
    // A login made before the upgrade, as the old release recorded it (a checksummed
    // record beside the version 1 file): its last_counter still counts.
    forge(&f, "nobody", 1, |rec| {
        rec[28..36].copy_from_slice(&step.to_le_bytes());
    });
    f.try_code(&s, "nobody", f.code_at(t))
        .assert_code(PAM_AUTH_ERR);
    // The next step's code logs in; the login writes an authenticated record and leaves
    // the state file as it was.
    f.try_code(&s, "nobody", f.code_at(t + 30))
        .assert_code(PAM_SUCCESS);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("version = 1\n"), "{text}");
    let counters = std::fs::read(counters_path(&f, "nobody")).unwrap();
    let newest = SLOT_OFFSETS[newest_slot(&counters)];
    assert_eq!(&counters[newest..newest + 4], b"PTC3");
    // The scratch codes of the old file are recovery codes.
    f.try_code(&s, "nobody", "12345678")
        .assert_code(PAM_SUCCESS);

    // A rewrite (unlock) makes it version 2, with every value kept.
    let nobody = UserName::parse("nobody").unwrap();
    let before = f.store().status(&nobody).unwrap().unwrap();
    f.store().unlock(&nobody).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("mac = \""), "{text}");
    assert!(text.contains("\nversion = 2\n"), "{text}");
    let after = f.store().status(&nobody).unwrap().unwrap();
    assert_eq!(after.counters.last_counter, Some(step + 1));
    assert_eq!(after.counters.last_used, before.counters.last_used);
    assert_eq!(after.recovery_codes_left, 2);
    assert_eq!(after.created, before.created);
    assert_eq!(after.params, before.params);
    f.try_code(&s, "nobody", f.code_at(t + 30))
        .assert_code(PAM_AUTH_ERR);
    f.try_code(&s, "nobody", "12345678")
        .assert_code(PAM_AUTH_ERR);
    f.try_code(&s, "nobody", "8765 4321")
        .assert_code(PAM_SUCCESS);
    // And from now on it is protected.
    std::fs::write(&path, text.replace("digits = 6", "digits = 7")).unwrap();
    let a = f.try_code(&s, "nobody", "55555555");
    assert_eq!(code_name(a.code), code_name(PAM_AUTHINFO_UNAVAIL), "{a:?}");
}

#[test]
fn rekey_moves_version_1_and_version_2_files_to_the_new_key() {
    let f = version_1_fixture();
    f.enroll("alice", 2);
    let s = f.service("");
    let old_key = std::fs::read(&f.key_file).unwrap();
    let r = cli_support::run_ok(&f, &["rekey"], b"");
    assert!(r.stdout.contains("2 state file(s) re-encrypted"), "{r:?}");
    assert_ne!(std::fs::read(&f.key_file).unwrap(), old_key);
    for user in ["nobody", "alice"] {
        let text = std::fs::read_to_string(state_path(&f, user)).unwrap();
        assert!(text.contains("\nversion = 2\n"), "{user}: {text}");
        assert_eq!(text.matches("[[secret]]").count(), 1, "{user}: {text}");
    }
    away_from_step_edge();
    let t = now();
    f.try_code(&s, "nobody", f.code_at(t))
        .assert_code(PAM_SUCCESS);
    f.try_code(&s, "alice", f.code_at(t))
        .assert_code(PAM_SUCCESS);
    f.try_code(&s, "nobody", "55555555")
        .assert_code(PAM_SUCCESS);
}
