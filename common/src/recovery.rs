//! Recovery codes: 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L),
//! about 49.5 random bits each, shown as `XXXXX-XXXXX`, accepted in any case and with or
//! without separators. Stored only as keyed hashes.
//!
//! This module owns everything about them: generation, the accepted forms, the keyed hash,
//! matching, and the bitmap of spent codes that the counters carry (bit i set: code i of
//! the enrollment's list is spent). It also owns the one rule for what a person typed,
//! [`normalize_typed`], used for TOTP codes and recovery codes alike, at login and when
//! the CLI confirms a code.

use std::fmt;

use subtle::ConstantTimeEq;
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

/// The one rule for a code a person typed (TOTP or recovery, at login or when the CLI
/// confirms one): white space anywhere (spaces, tabs, line ends, any Unicode white space)
/// is dropped, and so is a `-` that separates two letters or digits (a group separator,
/// as in `ABCDE-FGHJK`); any other `-` stays and makes the code wrong. ASCII letters are
/// upper-cased; everything else is kept as is, so it fails to match. A TOTP code is then
/// exactly its digits.
pub fn normalize_typed(input: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(input.len().min(64)));
    let chars: Zeroizing<Vec<char>> =
        Zeroizing::new(input.chars().filter(|c| !c.is_whitespace()).collect());
    for (i, &c) in chars.iter().enumerate() {
        let between = i > 0
            && chars[i - 1].is_ascii_alphanumeric()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric());
        if c == '-' && between {
            continue;
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The canonical form of what a user typed, if it can be a recovery code: normalized by
/// [`normalize_typed`], then either exactly [`CODE_LEN`] symbols of [`ALPHABET`] (ours)
/// or exactly [`SCRATCH_CODE_LEN`] digits (an imported scratch code).
pub fn normalize(input: &str) -> Option<Zeroizing<String>> {
    let out = normalize_typed(input);
    let ours = out.len() == CODE_LEN && out.bytes().all(|b| ALPHABET.contains(&b));
    let scratch = out.len() == SCRATCH_CODE_LEN && out.bytes().all(|b| b.is_ascii_digit());
    (ours || scratch).then_some(out)
}

/// Whether code `index` of a list of `count` is unspent under the bitmap `used`.
pub fn is_unspent(count: usize, used: u64, index: usize) -> bool {
    index < count.min(MAX_RECOVERY_CODES) && used & (1u64 << index) == 0
}

/// The bitmap with code `index` spent.
pub fn spend(used: u64, index: usize) -> u64 {
    used | 1u64.checked_shl(index as u32).unwrap_or(0)
}

/// How many of a list of `count` codes are unspent under `used`.
pub fn unspent(count: usize, used: u64) -> usize {
    (0..count).filter(|&i| is_unspent(count, used, i)).count()
}

/// Index of the unspent code among `hashes` equal to the already normalized `normalized`.
/// Every stored hash is compared, in constant time.
pub(crate) fn find(
    recovery_key: &[u8],
    user: &UserName,
    hashes: &[[u8; 32]],
    used: u64,
    normalized: &str,
) -> Option<usize> {
    let h = hash(recovery_key, user, normalized);
    let mut found = None;
    for (i, stored) in hashes.iter().enumerate() {
        if bool::from(stored.ct_eq(&h)) && is_unspent(hashes.len(), used, i) {
            found = Some(i);
        }
    }
    found
}

/// Whether the already normalized `normalized` equals a code among `hashes` that `used`
/// marks spent: presented again, it is a replay, not a plain wrong code. Every stored hash
/// is compared, in constant time.
pub(crate) fn is_spent(
    recovery_key: &[u8],
    user: &UserName,
    hashes: &[[u8; 32]],
    used: u64,
    normalized: &str,
) -> bool {
    let h = hash(recovery_key, user, normalized);
    let mut spent = false;
    for (i, stored) in hashes.iter().enumerate() {
        spent |= bool::from(stored.ct_eq(&h)) && !is_unspent(hashes.len(), used, i);
    }
    spent
}

/// Drops spent codes from `hashes`; the bitmap of the result is 0.
pub(crate) fn compact(hashes: &mut Vec<[u8; 32]>, used: u64) {
    let mut i = 0;
    hashes.retain(|_| {
        let keep = used & (1u64 << i) == 0;
        i += 1;
        keep
    });
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
    fn one_rule_for_typed_codes() {
        assert_eq!(normalize_typed(" 123\t456\n").as_str(), "123456");
        assert_eq!(normalize_typed("abcde-fghjk").as_str(), "ABCDEFGHJK");
        assert_eq!(normalize_typed("12\u{a0}34").as_str(), "1234");
        assert_eq!(normalize_typed("+12345").as_str(), "+12345");
        assert_eq!(normalize_typed("-123456").as_str(), "-123456");
        assert_eq!(normalize_typed("123456-").as_str(), "123456-");
        assert_eq!(normalize_typed("ab--cd").as_str(), "AB--CD");
        assert_eq!(normalize_typed("123-456").as_str(), "123456");
        assert_eq!(normalize("abcde\tfghjk").unwrap().as_str(), "ABCDEFGHJK");
    }

    #[test]
    fn bitmap_of_spent_codes() {
        assert_eq!(unspent(3, 0), 3);
        let used = spend(0, 1);
        assert_eq!(used, 0b10);
        assert!(!is_unspent(3, used, 1) && is_unspent(3, used, 2) && !is_unspent(3, used, 3));
        assert_eq!(unspent(3, used), 2);
        assert_eq!(spend(used, 64), used);
        let mut h = vec![[1u8; 32], [2u8; 32], [3u8; 32]];
        compact(&mut h, used);
        assert_eq!(h, vec![[1u8; 32], [3u8; 32]]);
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
