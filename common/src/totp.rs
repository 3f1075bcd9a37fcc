//! RFC 6238 time-based one-time passwords over SHA1, SHA256 and SHA512.
//!
//! The HMAC and truncation come from `totp-rs`. What it does not give us we do here: secrets
//! under 128 bits (google-authenticator enrolls 80-bit ones) go through its non-compliant
//! builder after our own length check, and the window is walked one step at a time so that
//! the caller learns every step that matched, which replay detection needs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;

/// Shortest secret we accept: 80 bits, what google-authenticator enrolls.
pub const MIN_SECRET_BYTES: usize = 10;
/// Longest secret we accept: 512 bits is the SHA512 block size; longer adds nothing.
pub const MAX_SECRET_BYTES: usize = 64;
/// Bytes in a secret we generate: 160 bits, as RFC 4226 recommends.
pub const NEW_SECRET_BYTES: usize = 20;
/// Widest verification window (steps either side of now).
pub const MAX_WINDOW: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    SHA1,
    SHA256,
    SHA512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::SHA1 => "SHA1",
            Algorithm::SHA256 => "SHA256",
            Algorithm::SHA512 => "SHA512",
        }
    }

    fn to_lib(self) -> totp_rs::Algorithm {
        match self {
            Algorithm::SHA1 => totp_rs::Algorithm::SHA1,
            Algorithm::SHA256 => totp_rs::Algorithm::SHA256,
            Algorithm::SHA512 => totp_rs::Algorithm::SHA512,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    /// Accepts `SHA1`, `sha-256`, `HmacSHA512` and the like.
    fn from_str(s: &str) -> Result<Self, Error> {
        let norm: String = s
            .trim()
            .trim_start_matches("Hmac")
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_uppercase();
        let norm = norm.trim_start_matches("HMAC");
        match norm {
            "SHA1" => Ok(Algorithm::SHA1),
            "SHA256" => Ok(Algorithm::SHA256),
            "SHA512" => Ok(Algorithm::SHA512),
            _ => Err(Error::InvalidInput(format!(
                "unknown algorithm {s:?} (expected SHA1, SHA256 or SHA512)"
            ))),
        }
    }
}

/// A TOTP time step: unix time divided by the period (RFC 6238's T).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeStep(pub u64);

impl fmt::Display for TimeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether codes follow the clock (RFC 6238) or a counter (RFC 4226).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtpKind {
    /// Time-based: the moving factor is the time step.
    #[default]
    Totp,
    /// Counter-based: the moving factor is a counter that moves past each accepted code.
    Hotp,
}

impl OtpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OtpKind::Totp => "TOTP",
            OtpKind::Hotp => "HOTP",
        }
    }

    pub fn is_totp(&self) -> bool {
        *self == OtpKind::Totp
    }
}

impl fmt::Display for OtpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kind, algorithm, digits and period of one enrollment, validated. An HOTP enrollment
/// carries the default period, which nothing reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtpParams {
    algorithm: Algorithm,
    digits: u8,
    period: u32,
    kind: OtpKind,
}

impl Default for OtpParams {
    fn default() -> Self {
        OtpParams {
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
            kind: OtpKind::Totp,
        }
    }
}

impl OtpParams {
    /// Digits 6 to 8 (RFC 4226), period 1 to 3600 seconds.
    pub fn new(algorithm: Algorithm, digits: u8, period: u32) -> Result<Self, Error> {
        if !(6..=8).contains(&digits) {
            return Err(Error::InvalidInput(format!(
                "digits must be 6 to 8, not {digits}"
            )));
        }
        if !(1..=3600).contains(&period) {
            return Err(Error::InvalidInput(format!(
                "period must be 1 to 3600 seconds, not {period}"
            )));
        }
        Ok(OtpParams {
            algorithm,
            digits,
            period,
            kind: OtpKind::Totp,
        })
    }

    /// Counter-based (RFC 4226) parameters: digits 6 to 8.
    pub fn hotp(algorithm: Algorithm, digits: u8) -> Result<Self, Error> {
        let totp = Self::new(algorithm, digits, OtpParams::default().period)?;
        Ok(OtpParams {
            kind: OtpKind::Hotp,
            ..totp
        })
    }

    /// The same parameters with `kind`.
    pub fn with_kind(self, kind: OtpKind) -> Self {
        OtpParams { kind, ..self }
    }

    pub fn kind(&self) -> OtpKind {
        self.kind
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    pub fn digits(&self) -> u8 {
        self.digits
    }
    pub fn period(&self) -> u32 {
        self.period
    }

    /// The time step that contains unix time `now`.
    pub fn step_at(&self, now: u64) -> u64 {
        now / u64::from(self.period)
    }
}

/// A raw TOTP secret. Wiped on drop; no `Debug`, no `Display`.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// A new 160-bit secret from the operating system's random source.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = Zeroizing::new(vec![0u8; NEW_SECRET_BYTES]);
        crate::crypto::fill_random(&mut bytes)?;
        Ok(TotpSecret(bytes))
    }

    /// Takes raw bytes, checking the length bounds.
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Result<Self, Error> {
        if bytes.len() < MIN_SECRET_BYTES || bytes.len() > MAX_SECRET_BYTES {
            return Err(Error::InvalidInput(format!(
                "secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes long, not {}",
                bytes.len()
            )));
        }
        Ok(TotpSecret(bytes))
    }

    /// Parses base32 as people and other tools write it: any case, spaces, dashes and `=`
    /// padding allowed. The error never repeats the input.
    pub fn from_base32(text: &str) -> Result<Self, Error> {
        let mut norm = Zeroizing::new(String::with_capacity(text.len()));
        for c in text.chars() {
            match c {
                ' ' | '\t' | '\r' | '\n' | '-' | '=' => {}
                c => norm.push(c.to_ascii_uppercase()),
            }
        }
        // Decode with an explicit length check: data-encoding wants whole 8-char groups
        // unless we use the no-padding variant, which accepts any canonical length.
        let len = data_encoding::BASE32_NOPAD
            .decode_len(norm.len())
            .map_err(|_| Error::InvalidInput("secret is not valid base32 (bad length)".into()))?;
        let mut out = Zeroizing::new(vec![0u8; len]);
        let written = data_encoding::BASE32_NOPAD
            .decode_mut(norm.as_bytes(), &mut out)
            .map_err(|_| Error::InvalidInput("secret is not valid base32".into()))?;
        out.truncate(written);
        Self::from_bytes(out)
    }

    /// Unpadded upper-case base32, as the otpauth URI wants it.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&self.0))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self, params: &OtpParams) -> totp_rs::Totp {
        self.engine(params, u64::from(params.period))
    }

    /// RFC 4226 through the same engine: TOTP is HOTP of floor(time / step), so with a
    /// step of one second the "time" given to it is the counter itself.
    pub(crate) fn hotp(&self, params: &OtpParams) -> totp_rs::Totp {
        self.engine(params, 1)
    }

    fn engine(&self, params: &OtpParams, step: u64) -> totp_rs::Totp {
        totp_rs::Builder::new()
            .with_algorithm(params.algorithm.to_lib())
            .with_digits(params.digits)
            .with_skew(0)
            .with_step_duration(step)
            .with_secret(self.0.as_slice())
            .build_noncompliant()
    }
}

/// The code for unix time `time`, zero-padded to `params.digits()`.
pub fn code_at(secret: &TotpSecret, params: &OtpParams, time: u64) -> Zeroizing<String> {
    Zeroizing::new(secret.totp(params).generate(time).to_string())
}

/// What a code matched inside the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CodeMatch {
    /// The latest matching step after `last_counter`: the code may be accepted for it.
    pub fresh_step: Option<TimeStep>,
    /// Some step at or before `last_counter` matched: the code was already used.
    pub replayed: bool,
}

/// Checks `code` (exactly `digits` ASCII digits, nothing else) against every step from
/// `window` before to `window` after the step of `now`. Each comparison is constant time and
/// every step of the window is computed, so timing says nothing about which one matched.
pub fn verify(
    secret: &TotpSecret,
    params: &OtpParams,
    code: &str,
    now: u64,
    window: u32,
    last_counter: Option<u64>,
) -> CodeMatch {
    let mut result = CodeMatch::default();
    if code.len() != usize::from(params.digits) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return result;
    }
    let totp = secret.totp(params);
    let origin = params.step_at(now);
    let period = u64::from(params.period);
    let window = u64::from(window.min(MAX_WINDOW));
    for step in origin.saturating_sub(window)..=origin.saturating_add(window) {
        let Some(time) = step.checked_mul(period) else {
            continue;
        };
        if totp.check(code, time).is_some() {
            if last_counter.is_some_and(|last| step <= last) {
                result.replayed = true;
            } else {
                result.fresh_step = Some(TimeStep(step));
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(len: usize) -> TotpSecret {
        let bytes: Vec<u8> = b"1234567890".iter().cycle().take(len).copied().collect();
        TotpSecret::from_bytes(Zeroizing::new(bytes)).unwrap()
    }

    #[test]
    fn rfc6238_appendix_b_vectors() {
        // RFC 6238 Appendix B with errata 2866 seeds (20, 32 and 64 bytes).
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        let algs = [
            (Algorithm::SHA1, 20),
            (Algorithm::SHA256, 32),
            (Algorithm::SHA512, 64),
        ];
        let mut checked = 0;
        for (t, c1, c256, c512) in table {
            for ((alg, len), want) in algs.iter().zip([c1, c256, c512]) {
                let params = OtpParams::new(*alg, 8, 30).unwrap();
                let secret = seed(*len);
                assert_eq!(code_at(&secret, &params, t).as_str(), want, "{alg} T={t}");
                let m = verify(&secret, &params, want, t, 0, None);
                assert_eq!(m.fresh_step, Some(TimeStep(t / 30)), "{alg} T={t}");
                checked += 1;
            }
        }
        assert_eq!(checked, 18);
    }

    #[test]
    fn window_edges_and_replay() {
        let params = OtpParams::default();
        let secret = seed(20);
        let now = 1_700_000_000;
        let step = params.step_at(now);
        for offset in [-2i64, -1, 0, 1, 2] {
            let t = (step as i64 + offset) as u64 * 30;
            let code = code_at(&secret, &params, t);
            let m = verify(&secret, &params, &code, now, 1, None);
            assert_eq!(m.fresh_step.is_some(), offset.abs() <= 1, "offset {offset}");
        }
        let code = code_at(&secret, &params, now);
        let m = verify(&secret, &params, &code, now, 1, Some(step));
        assert_eq!(
            m,
            CodeMatch {
                fresh_step: None,
                replayed: true
            }
        );
        let m = verify(&secret, &params, &code, now, 1, Some(step - 1));
        assert_eq!(m.fresh_step, Some(TimeStep(step)));
    }

    #[test]
    fn malformed_codes_never_match() {
        let params = OtpParams::default();
        let secret = seed(20);
        let now = 1_700_000_000;
        let code = code_at(&secret, &params, now);
        for bad in [
            String::new(),
            format!("+{}", &code[1..]),
            format!("{}0", code.as_str()),
            code[1..].to_string(),
            format!(" {}", &code[1..]),
            "abcdef".into(),
        ] {
            assert_eq!(
                verify(&secret, &params, &bad, now, 1, None),
                CodeMatch::default()
            );
        }
    }

    #[test]
    fn base32_normalisation_and_short_secrets() {
        let s = TotpSecret::from_base32("jbsw y3dp-ehpk 3pxp").unwrap();
        assert_eq!(s.as_bytes(), b"Hello!\xde\xad\xbe\xef");
        // "1234567890" is exactly 80 bits: accepted, padded or not; 64 bits is refused.
        assert_eq!(
            TotpSecret::from_base32("gezdgnbvgy3tqojq====")
                .unwrap()
                .as_bytes(),
            b"1234567890"
        );
        assert_eq!(
            TotpSecret::from_base32("GEZDGNBVGY3TQOJQ")
                .unwrap()
                .as_bytes(),
            b"1234567890"
        );
        assert!(TotpSecret::from_base32("GEZDGNBVGY3TQ===").is_err());
        assert!(TotpSecret::from_base32("not base32!").is_err());
        assert!(TotpSecret::from_base32("").is_err());
    }

    #[test]
    fn params_bounds() {
        assert!(OtpParams::new(Algorithm::SHA1, 5, 30).is_err());
        assert!(OtpParams::new(Algorithm::SHA1, 9, 30).is_err());
        assert!(OtpParams::new(Algorithm::SHA1, 6, 0).is_err());
        assert!(OtpParams::new(Algorithm::SHA512, 8, 60).is_ok());
        assert_eq!("sha-256".parse::<Algorithm>().unwrap(), Algorithm::SHA256);
        assert_eq!(
            "HmacSHA512".parse::<Algorithm>().unwrap(),
            Algorithm::SHA512
        );
        assert!("md5".parse::<Algorithm>().is_err());
    }
}
