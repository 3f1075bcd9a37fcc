//! Logging to syslog at authpriv (openlog/syslog from libc, behind a safe wrapper). Lines
//! never hold a code or a secret: callers pass user names already validated and outside
//! strings through [`printable`].
//!
//! Started by systemd, stderr is the journal (JOURNAL_STREAM is set) and syslog alone is
//! enough; started by hand or by a test, lines are also copied to stderr (LOG_PERROR).

use std::ffi::CString;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Err,
    Warning,
    Notice,
    Info,
}

/// Opens the log once, at startup.
pub fn open() {
    let mut options = libc::LOG_PID | libc::LOG_NDELAY;
    if std::env::var_os("JOURNAL_STREAM").is_none() {
        options |= libc::LOG_PERROR;
    }
    // SAFETY: the identity is a 'static NUL-terminated string, as openlog keeps the pointer.
    unsafe { libc::openlog(c"pam_totpd".as_ptr(), options, libc::LOG_AUTHPRIV) };
}

pub fn log(level: Level, text: &str) {
    let priority = match level {
        Level::Err => libc::LOG_ERR,
        Level::Warning => libc::LOG_WARNING,
        Level::Notice => libc::LOG_NOTICE,
        Level::Info => libc::LOG_INFO,
    };
    let Ok(line) = CString::new(text.replace('\0', "?")) else {
        return;
    };
    // SAFETY: a constant "%s" format with one NUL-terminated string argument; syslog is
    // thread-safe in glibc.
    unsafe { libc::syslog(libc::LOG_AUTHPRIV | priority, c"%s".as_ptr(), line.as_ptr()) };
}

/// An outside string (a service name, a remote host) made safe for a log line: control
/// characters become `?`, and it is cut to `max` characters.
pub fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_strips_controls_and_cuts() {
        assert_eq!(super::printable("a\nb\x1b[1m", 64), "a?b?[1m");
        assert_eq!(super::printable("ééé", 2), "éé");
    }
}
