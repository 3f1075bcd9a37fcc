//! Agreement with an independent implementation: `oathtool --totp` (Debian package
//! oathtool, installed by the test command) on random secrets, times, digits and periods.

mod support;

use std::process::Command;

use common::totp::{code_at, verify, Algorithm, OtpParams, TotpSecret};
use support::*;
use zeroize::Zeroizing;

const PAIRS_PER_ALGORITHM: usize = 1000;

fn oathtool(alg: Algorithm, secret: &TotpSecret, digits: u8, period: u32, time: u64) -> String {
    // The secret goes to oathtool as an argument only because this is a test with throwaway
    // random secrets; the product never puts a secret in argv.
    let out = Command::new("oathtool")
        .arg(format!("--totp={}", alg.as_str()))
        .arg("-b")
        .arg(format!("--digits={digits}"))
        .arg(format!("--time-step-size={period}s"))
        .arg(format!("--now=@{time}"))
        .arg(secret.to_base32().as_str())
        .env("TZ", "UTC")
        .output()
        .expect("oathtool is not installed (the test command installs it)");
    assert!(
        out.status.success(),
        "oathtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn agrees_with_oathtool_on_random_secrets_and_times() {
    for alg in [Algorithm::SHA1, Algorithm::SHA256, Algorithm::SHA512] {
        for i in 0..PAIRS_PER_ALGORITHM {
            let r = random_bytes(16);
            // 80 to 512 bits; google-authenticator's 80-bit secrets included.
            let len = 10 + usize::from(r[0]) % 55;
            let secret = TotpSecret::from_bytes(Zeroizing::new(random_bytes(len))).unwrap();
            let digits = 6 + r[1] % 3;
            let period = [30, 60, 15, 1, 3600][usize::from(r[2]) % 5];
            // Up to year ~2100.
            let time = u64::from_le_bytes(r[8..16].try_into().unwrap()) % 4_102_444_800;
            let params = OtpParams::new(alg, digits, period).unwrap();
            let ours = code_at(&secret, &params, time);
            let theirs = oathtool(alg, &secret, digits, period, time);
            assert_eq!(
                ours.as_str(),
                theirs,
                "{alg} #{i}: len {len} digits {digits} period {period} time {time}"
            );
            let m = verify(&secret, &params, &theirs, time, 0, None);
            assert_eq!(
                m.fresh_step,
                Some(common::TimeStep(time / u64::from(period)))
            );
        }
    }
}

/// `oathtool --hotp` (HMAC-SHA1, as RFC 4226 defines it) for counter `counter`.
fn oathtool_hotp(secret: &TotpSecret, digits: u8, counter: u64) -> String {
    // A throwaway random secret in argv: test only, as above.
    let out = Command::new("oathtool")
        .arg("--hotp")
        .arg("-b")
        .arg(format!("--digits={digits}"))
        .arg(format!("--counter={counter}"))
        .arg(secret.to_base32().as_str())
        .output()
        .expect("oathtool is not installed (the test command installs it)");
    assert!(
        out.status.success(),
        "oathtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn hotp_agrees_with_oathtool_on_random_secrets_counters_and_digits() {
    use common::hotp;
    for i in 0..PAIRS_PER_ALGORITHM {
        let r = random_bytes(16);
        let len = 10 + usize::from(r[0]) % 55;
        let secret = TotpSecret::from_bytes(Zeroizing::new(random_bytes(len))).unwrap();
        let digits = 6 + r[1] % 3;
        // Small counters (a token's real life) and anything up to the largest we store.
        let raw = u64::from_le_bytes(r[8..16].try_into().unwrap());
        let counter = if r[2].is_multiple_of(2) {
            raw % 100_000
        } else {
            raw % (hotp::MAX_COUNTER + 1)
        };
        let params = OtpParams::hotp(Algorithm::SHA1, digits).unwrap();
        let ours = hotp::code_at(&secret, &params, counter);
        let theirs = oathtool_hotp(&secret, digits, counter);
        assert_eq!(
            ours.as_str(),
            theirs,
            "#{i}: len {len} digits {digits} counter {counter}"
        );
        // oathtool's code verifies at its counter, from any last_counter that leaves it
        // within the look-ahead.
        let back = u64::from(r[3] % 10);
        let last = counter.checked_sub(back + 1);
        let m = hotp::verify(&secret, &params, &theirs, last, 10);
        let found = m.fresh_step.expect("oathtool's code verifies").0;
        // The earliest match: an earlier counter only if it happens to give the same code.
        assert!(
            found == counter
                || (found < counter && hotp::code_at(&secret, &params, found).as_str() == theirs),
            "#{i}: counter {counter}, found {found}"
        );
    }
}
