//! What the user sees, and how outside strings are made safe for a log line.

use common::counters::clean_rhost;
use common::time::display as utc;

pub const PROMPT: &str = "Verification code: ";
/// The one prompt of `forward_pass`: the password, then the code.
pub const PROMPT_FORWARD_PASS: &str = "Password & verification code: ";
pub const NOT_ENROLLED: &str = "two-factor authentication is not set up for this account";
pub const REPLAYED: &str = "this verification code was already used; if you did not use it, \
                            your account may be compromised";

/// "too many failed attempts; locked until <RFC 3339 time in UTC>".
pub fn locked_until(until: i64) -> String {
    format!("too many failed attempts; locked until {}", utc(until))
}

/// "recovery code used, N left".
pub fn recovery_used(remaining: usize) -> String {
    format!("recovery code used, {remaining} left")
}

/// The notice after rejected attempts since the last success.
pub fn prior_rejections(count: u32, last_rhost: Option<&str>, last_at: Option<i64>) -> String {
    let attempts = if count == 1 { "attempt" } else { "attempts" };
    let mut s = format!("{count} failed verification {attempts} since your last login");
    match last_rhost {
        Some(h) if !h.is_empty() => s.push_str(&format!("; the last from {}", clean_rhost(h))),
        _ => s.push_str("; the last from an unknown host"),
    }
    if let Some(t) = last_at {
        s.push_str(&format!(" at {}", utc(t)));
    }
    s
}

/// `s` cut to `max` characters with control and non-ASCII characters escaped, so a value
/// from outside (a user name, a host name) can neither forge nor flood a log line.
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// Like [`printable`] for raw bytes (a user name that is not UTF-8).
pub fn printable_bytes(b: &[u8], max: usize) -> String {
    printable(&String::from_utf8_lossy(b), max)
}
