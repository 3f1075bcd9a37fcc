//! pam_totp.so through the whole PAM stack of a real client: pamtester reading a temporary
//! /etc/pam.d service, with the clock frozen from outside by libfaketime. The service files
//! are removed when each test ends, also when it fails.

use common::{Algorithm, OtpParams, TotpSecret};
use integration_tests::pam::*;

/// RFC 6238 Appendix B seeds (errata 2866): "1234567890" repeated to `len` bytes.
fn seed(len: usize) -> TotpSecret {
    let text: String = "1234567890".chars().cycle().take(len).collect();
    TotpSecret::from_base32(&base32(text.as_bytes())).unwrap()
}

/// Plain base32 (RFC 4648, no padding): the seed enters through the public API.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buf: u64 = 0;
    let mut bits = 0;
    for &b in bytes {
        buf = (buf << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// RFC 6238 Appendix B: time, then the SHA1, SHA256 and SHA512 codes.
const VECTORS: [(i64, [&str; 3]); 6] = [
    (59, ["94287082", "46119246", "90693936"]),
    (1111111109, ["07081804", "68084774", "25091201"]),
    (1111111111, ["14050471", "67062674", "99943326"]),
    (1234567890, ["89005924", "91819424", "93441116"]),
    (2000000000, ["69279037", "90698825", "38618901"]),
    (20000000000, ["65353130", "77737706", "47863826"]),
];
const ALGORITHMS: [(Algorithm, usize); 3] = [
    (Algorithm::SHA1, 20),
    (Algorithm::SHA256, 32),
    (Algorithm::SHA512, 64),
];

fn user_for(alg: Algorithm, t: i64) -> String {
    format!("rfc-{}-{t}", alg.as_str().to_lowercase())
}

fn enroll_vectors(f: &Fixture) {
    for (t, _) in VECTORS {
        for (alg, len) in ALGORITHMS {
            let params = OtpParams::new(alg, 8, 30).unwrap();
            f.enroll_with(&user_for(alg, t), seed(len), params, 0);
        }
    }
}

#[track_caller]
fn assert_accepted(r: &Run, what: &str) {
    assert!(
        r.success() && r.stdout.contains("successfully authenticated"),
        "{what}: {r:?}"
    );
}

#[track_caller]
fn assert_refused(r: &Run, what: &str) {
    assert!(
        r.status == Some(1) && r.stderr.contains("Authentication failure"),
        "{what}: {r:?}"
    );
}

#[test]
fn libfaketime_freezes_the_clock_even_in_2603() {
    for t in [59, 20_000_000_000] {
        let mut cmd = std::process::Command::new("date");
        cmd.arg("+%s")
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME", faketime_spec(t))
            .env("TZ", "UTC");
        let r = run_with_timeout(cmd, b"", std::time::Duration::from_secs(10));
        assert_eq!(r.stdout.trim(), t.to_string(), "{r:?}");
    }
    assert_eq!(faketime_spec(20_000_000_000), "2603-10-11 11:33:20");
    assert_eq!(faketime_spec(1_111_111_109), "2005-03-18 01:58:29");
}

#[test]
fn rfc6238_vectors_through_pamtester() {
    let f = Fixture::new();
    enroll_vectors(&f);
    // window=0: only the step of the frozen time is accepted.
    let svc = f.etc_service("rfc", "window=0");
    let mut accepted = 0;
    for (t, codes) in VECTORS {
        for ((alg, _), code) in ALGORITHMS.into_iter().zip(codes) {
            let user = user_for(alg, t);
            // A code of the right length that is not this vector's is refused first.
            let other = if code == "12345678" {
                "87654321"
            } else {
                "12345678"
            };
            assert_refused(
                &pamtester(&svc.name, &user, format!("{other}\n").as_bytes(), Some(t)),
                &format!("{alg} T={t} wrong code"),
            );
            assert_accepted(
                &pamtester(&svc.name, &user, format!("{code}\n").as_bytes(), Some(t)),
                &format!("{alg} T={t} code {code}"),
            );
            accepted += 1;
        }
    }
    assert_eq!(accepted, 18);
}

#[test]
fn rfc6238_vector_codes_expire_and_do_not_replay() {
    let f = Fixture::new();
    enroll_vectors(&f);
    let strict = f.etc_service("rfc-w0", "window=0");
    let loose = f.etc_service("rfc-w1", "window=1");
    for (t, codes) in [VECTORS[1], VECTORS[4]] {
        let (alg, _) = ALGORITHMS[1];
        let user = user_for(alg, t);
        let code = format!("{}\n", codes[1]);
        // One step later: refused with window=0, accepted with window=1.
        assert_refused(
            &pamtester(&strict.name, &user, code.as_bytes(), Some(t + 30)),
            "window=0, next step",
        );
        assert_refused(
            &pamtester(&loose.name, &user, code.as_bytes(), Some(t + 60)),
            "window=1, two steps later",
        );
        assert_accepted(
            &pamtester(&loose.name, &user, code.as_bytes(), Some(t + 30)),
            "window=1, next step",
        );
        // Replayed at its own time: refused, with the warning on the terminal.
        let r = pamtester(&strict.name, &user, code.as_bytes(), Some(t));
        assert_refused(&r, "replay");
        assert!(r.stderr.contains("already used"), "{r:?}");
    }
}

#[test]
fn lock_message_reaches_the_terminal_with_frozen_time() {
    let f = Fixture::new();
    let t = 2_000_000_000;
    f.enroll_with(
        "locky",
        seed(20),
        OtpParams::new(Algorithm::SHA1, 8, 30).unwrap(),
        0,
    );
    let svc = f.etc_service("lock", "max_failures=2 lockout_secs=600");
    for _ in 0..2 {
        assert_refused(
            &pamtester(&svc.name, "locky", b"00000000\n", Some(t)),
            "wrong",
        );
    }
    let r = pamtester(&svc.name, "locky", b"69279037\n", Some(t));
    assert!(r.status == Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains("too many failed attempts; locked until 2033-05-18T03:43:20Z"),
        "{r:?}"
    );
    // Ten minutes later (frozen clock moved by libfaketime), the lock has run out.
    let later = t + 601;
    let code = common::totp::code_at(
        &seed(20),
        &OtpParams::new(Algorithm::SHA1, 8, 30).unwrap(),
        later as u64,
    );
    let r = pamtester(
        &svc.name,
        "locky",
        format!("{}\n", code.as_str()).as_bytes(),
        Some(later),
    );
    assert_accepted(&r, "after the lock ran out");
    // Attempts refused while locked are not looked at, so not counted.
    assert!(
        r.stdout
            .contains("2 failed verification attempts since your last login"),
        "{r:?}"
    );
}

#[test]
fn etc_service_file_is_removed_on_drop_even_after_a_panic() {
    let path = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let svc = EtcPamService::new("drop", "auth required pam_deny.so\n");
        let p = std::path::Path::new("/etc/pam.d").join(&svc.name);
        assert!(p.exists());
        *path.lock().unwrap() = Some(p);
        panic!("test failure inside");
    });
    assert!(result.is_err());
    let p = path.lock().unwrap().take().unwrap();
    assert!(!p.exists(), "{} left behind", p.display());
}
