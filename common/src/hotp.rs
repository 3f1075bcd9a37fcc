//! RFC 4226 counter-based one-time passwords (hardware tokens, pam_oath's HOTP lines).
//!
//! A code is looked for among the next `hotp_window` counters after the last accepted one
//! (`last_counter`); the caller then stores the matched counter as `last_counter`, so each
//! code works once. The same HMAC and truncation as TOTP (RFC 6238 is HOTP of the time
//! step), from the same engine.

use zeroize::Zeroizing;

use crate::totp::{CodeMatch, OtpParams, TimeStep, TotpSecret};

/// Widest look-ahead (`hotp_window`) the configuration accepts.
pub const MAX_HOTP_WINDOW: u32 = 100;
/// Default `hotp_window`, as SPEC.md gives it.
pub const DEFAULT_HOTP_WINDOW: u32 = 10;
/// Highest counter stored: TOML integers are signed 64-bit, and the look-ahead must not
/// overflow.
pub const MAX_COUNTER: u64 = (i64::MAX as u64) - (MAX_HOTP_WINDOW as u64) - 1;

/// The code for counter `counter`, zero-padded to `params.digits()`.
pub fn code_at(secret: &TotpSecret, params: &OtpParams, counter: u64) -> Zeroizing<String> {
    Zeroizing::new(secret.hotp(params).generate(counter).to_string())
}

/// The first counter a code may have: the one after `last_counter`, or 0.
pub fn next_counter(last_counter: Option<u64>) -> u64 {
    last_counter.map_or(0, |c| c.saturating_add(1))
}

/// Checks `code` (exactly `digits` ASCII digits) against the `window` counters after
/// `last_counter`: the earliest match is the fresh counter. A code of one of the `window`
/// counters up to `last_counter` is a replay. Every counter of both ranges is computed and
/// each comparison is constant time, so timing says nothing about which one matched.
pub fn verify(
    secret: &TotpSecret,
    params: &OtpParams,
    code: &str,
    last_counter: Option<u64>,
    window: u32,
) -> CodeMatch {
    let mut result = CodeMatch::default();
    if code.len() != usize::from(params.digits()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return result;
    }
    let engine = secret.hotp(params);
    let window = u64::from(window.clamp(1, MAX_HOTP_WINDOW));
    let next = next_counter(last_counter);
    if let Some(last) = last_counter {
        for counter in last.saturating_sub(window - 1)..=last {
            if engine.check(code, counter).is_some() {
                result.replayed = true;
            }
        }
    }
    for counter in next..next.saturating_add(window) {
        if engine.check(code, counter).is_some() && result.fresh_step.is_none() {
            result.fresh_step = Some(TimeStep(counter));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totp::Algorithm;

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(Zeroizing::new(b"12345678901234567890".to_vec())).unwrap()
    }

    #[test]
    fn rfc4226_appendix_d_vectors() {
        let want = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        let params = OtpParams::hotp(Algorithm::SHA1, 6).unwrap();
        let secret = rfc_secret();
        for (counter, code) in want.iter().enumerate() {
            assert_eq!(code_at(&secret, &params, counter as u64).as_str(), *code);
        }
        // Each vector verifies from a fresh enrollment only within the window...
        for (counter, code) in want.iter().enumerate() {
            let m = verify(&secret, &params, code, None, 10);
            assert_eq!(m.fresh_step, Some(TimeStep(counter as u64)), "{code}");
            let m = verify(&secret, &params, code, None, counter as u32);
            // A window of `counter` ends just before it (a window is at least 1).
            assert_eq!(m.fresh_step.is_some(), counter == 0, "{code}");
        }
        // ... and once accepted, it and every earlier one are replays.
        let m = verify(&secret, &params, want[4], Some(4), 10);
        assert_eq!(
            m,
            CodeMatch {
                fresh_step: None,
                replayed: true
            }
        );
        let m = verify(&secret, &params, want[2], Some(4), 10);
        assert_eq!(
            m,
            CodeMatch {
                fresh_step: None,
                replayed: true
            }
        );
        let m = verify(&secret, &params, want[5], Some(4), 1);
        assert_eq!(m.fresh_step, Some(TimeStep(5)));
        let m = verify(&secret, &params, want[6], Some(4), 1);
        assert_eq!(m, CodeMatch::default());
    }

    #[test]
    fn malformed_codes_never_match() {
        let params = OtpParams::hotp(Algorithm::SHA1, 6).unwrap();
        let secret = rfc_secret();
        for bad in ["", "75522", "7552240", " 55224", "abcdef", "+55224"] {
            assert_eq!(
                verify(&secret, &params, bad, None, 10),
                CodeMatch::default()
            );
        }
    }

    #[test]
    fn the_look_ahead_never_overflows() {
        let params = OtpParams::hotp(Algorithm::SHA1, 6).unwrap();
        let secret = rfc_secret();
        let code = code_at(&secret, &params, MAX_COUNTER);
        let m = verify(
            &secret,
            &params,
            &code,
            Some(MAX_COUNTER - 1),
            MAX_HOTP_WINDOW,
        );
        assert_eq!(m.fresh_step, Some(TimeStep(MAX_COUNTER)));
        let code = code_at(&secret, &params, u64::MAX);
        let m = verify(&secret, &params, &code, Some(u64::MAX), MAX_HOTP_WINDOW);
        assert_eq!(
            m,
            CodeMatch {
                fresh_step: None,
                replayed: true
            }
        );
        assert_eq!(next_counter(Some(u64::MAX)), u64::MAX);
    }
}
