//! Validated account names.
//!
//! A [`UserName`] is safe to use as a file name inside the state directory: it can never
//! name another directory, a hidden companion file, or carry bytes a log line would mangle.

use std::fmt;

use crate::error::Error;

/// Longest accepted user name, in bytes. glibc allows 256 in practice; LDAP and e-mail style
/// names stay far below this.
pub const MAX_USER_NAME_LEN: usize = 128;

/// An account name that passed [`UserName::parse`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// Accepts names like `alice`, `svc-backup`, `user@example.com`, `MACHINE$`.
    ///
    /// Refuses: empty, longer than [`MAX_USER_NAME_LEN`], a leading `.` or `-`, and any byte
    /// outside ASCII letters, digits and `. _ - @ $` (so no `/`, NUL, control characters,
    /// spaces or non-ASCII that could confuse a path or a log line).
    pub fn parse(name: &str) -> Result<Self, Error> {
        let bad = |why: &'static str| Err(Error::InvalidUserName(why));
        if name.is_empty() {
            return bad("empty");
        }
        if name.len() > MAX_USER_NAME_LEN {
            return bad("too long");
        }
        if name.starts_with('.') || name.starts_with('-') {
            return bad("starts with '.' or '-'");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'$'))
        {
            return bad("contains a character other than letters, digits and . _ - @ $");
        }
        Ok(UserName(name.to_owned()))
    }

    /// Same as [`UserName::parse`] for raw bytes (PAM hands the module a C string).
    pub fn from_bytes(name: &[u8]) -> Result<Self, Error> {
        match std::str::from_utf8(name) {
            Ok(s) => Self::parse(s),
            Err(_) => Err(Error::InvalidUserName("not UTF-8")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserName({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in [
            "alice",
            "svc-backup",
            "user@example.com",
            "a.b_c",
            "HOST$",
            "x",
        ] {
            assert_eq!(UserName::parse(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn refuses_path_and_control_characters() {
        let long = "a".repeat(MAX_USER_NAME_LEN + 1);
        for n in [
            "",
            ".",
            "..",
            ".hidden",
            "-rf",
            "a/b",
            "../../etc/shadow",
            "a\0b",
            "a\nb",
            "a b",
            "é",
            "a\tb",
            &long,
        ] {
            assert!(UserName::parse(n).is_err(), "{n:?} accepted");
        }
        assert!(UserName::from_bytes(b"\xff\xfe").is_err());
        assert!(UserName::parse(&"a".repeat(MAX_USER_NAME_LEN)).is_ok());
    }
}
