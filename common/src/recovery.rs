//! Recovery codes: 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L),
//! about 49.5 random bits each, shown as `XXXXX-XXXXX`, accepted in any case and with or
//! without separators. Stored only as keyed hashes.

use std::fmt;

use zeroize::Zeroizing;

use crate::crypto::{fill_random, hmac_sha256};
use crate::error::Result;
use crate::user::UserName;

pub const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
pub const CODE_LEN: usize = 10;
/// The bitmap of spent codes is a u64.
pub const MAX_RECOVERY_CODES: usize = 64;

/// One recovery code in display form. Wiped on drop.
pub struct RecoveryCode(Zeroizing<String>);

impl RecoveryCode {
    fn generate() -> Result<Self> {
        let mut out = Zeroizing::new(String::with_capacity(CODE_LEN));
        let mut buf = Zeroizing::new([0u8; 32]);
        while out.len() < CODE_LEN {
            fill_random(buf.as_mut())?;
            for &b in buf.iter() {
                // Rejection sampling keeps the 31 symbols uniform: 248 = 8 * 31.
                if b < 248 && out.len() < CODE_LEN {
                    out.push(ALPHABET[usize::from(b % 31)] as char);
                }
            }
        }
        Ok(RecoveryCode(out))
    }

    /// `ABCDE-FGHJK`.
    pub fn display(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}-{}", &self.0[..5], &self.0[5..]))
    }

    pub(crate) fn normalized(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// `count` fresh codes.
pub fn generate(count: usize) -> Result<Vec<RecoveryCode>> {
    (0..count).map(|_| RecoveryCode::generate()).collect()
}

/// Length of google-authenticator's scratch codes (all digits), kept as recovery codes when
/// a user is migrated.
pub const SCRATCH_CODE_LEN: usize = 8;

/// The canonical form of what a user typed, if it can be a recovery code: separators
/// (`-`, space) dropped, upper case, and either exactly [`CODE_LEN`] symbols of
/// [`ALPHABET`] (ours) or exactly [`SCRATCH_CODE_LEN`] digits (an imported scratch code).
pub fn normalize(input: &str) -> Option<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(CODE_LEN));
    for c in input.chars() {
        if c == '-' || c == ' ' {
            continue;
        }
        let c = c.to_ascii_uppercase();
        if !c.is_ascii() || out.len() == CODE_LEN {
            return None;
        }
        out.push(c);
    }
    let ours = out.len() == CODE_LEN && out.bytes().all(|b| ALPHABET.contains(&b));
    let scratch = out.len() == SCRATCH_CODE_LEN && out.bytes().all(|b| b.is_ascii_digit());
    (ours || scratch).then_some(out)
}

/// Keyed hash of a normalized code, bound to the user.
pub(crate) fn hash(recovery_key: &[u8], user: &UserName, normalized: &str) -> [u8; 32] {
    let mut data = Zeroizing::new(Vec::with_capacity(user.as_str().len() + 1 + CODE_LEN));
    data.extend_from_slice(user.as_str().as_bytes());
    data.push(0);
    data.extend_from_slice(normalized.as_bytes());
    hmac_sha256(recovery_key, b"pam_totp recovery code v1", &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_well_formed_and_distinct() {
        let codes = generate(50).unwrap();
        let mut seen = std::collections::HashSet::new();
        for c in &codes {
            let shown = c.display();
            assert_eq!(shown.len(), 11);
            assert_eq!(normalize(&shown).unwrap().as_str(), c.normalized());
            assert_eq!(
                normalize(&shown.to_lowercase()).unwrap().as_str(),
                c.normalized()
            );
            assert_eq!(
                normalize(&shown.replace('-', "")).unwrap().as_str(),
                c.normalized()
            );
            assert!(seen.insert(c.normalized().to_owned()));
        }
    }

    #[test]
    fn normalize_refuses_non_codes() {
        assert_eq!(normalize("1234 5678").unwrap().as_str(), "12345678");
        for bad in [
            "",
            "123456",
            "1234567",
            "123456789",
            "1234567A",
            "ABCDE-FGHJ",
            "ABCDE-FGHJKK",
            "ABCDE-FGHJ0",
            "ABCDE-FGHJI",
            "ÄBCDE-FGHJK",
        ] {
            assert!(normalize(bad).is_none(), "{bad}");
        }
    }
}
