//! One error type for the whole library. Messages name paths and reasons, never secrets.

use std::io;
use std::path::PathBuf;

use crate::user::UserName;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid user name: {0}")]
    InvalidUserName(&'static str),

    #[error("user {0} is not enrolled")]
    NotEnrolled(UserName),

    #[error("user {0} is already enrolled")]
    AlreadyEnrolled(UserName),

    /// A rekey replaced the host key while an enrollment-side change ran: nothing was
    /// written (a state sealed under the old key alone would not open after the switch).
    #[error("the host key was replaced (rekey) while this ran; run it again")]
    KeyReplaced,

    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    RandomSource(String),

    /// Other callers kept changing the user's values: gave up after bounded retries.
    #[error("user {0}: too many concurrent changes; gave up")]
    Contention(UserName),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Ownership, mode, file type or symlink checks failed: the file is not trusted.
    #[error("{path}: refusing unsafe file: {why}")]
    Unsafe { path: PathBuf, why: String },

    /// The file exists but its content cannot be used (parse error, truncation, wrong size,
    /// failed authentication tag, unknown version, wrong user).
    #[error("{path}: corrupt: {why}")]
    Corrupt { path: PathBuf, why: String },

    #[error("{path}: could not lock: {why}")]
    Lock { path: PathBuf, why: String },

    /// A configuration file or option that does not parse or holds an invalid value.
    #[error("configuration: {0}")]
    Config(String),

    /// Bad input from a caller (a secret that is not base32, digits out of range, ...).
    #[error("{0}")]
    InvalidInput(String),

    /// A network store (the fleet's etcd cluster) did not answer in time, refused the
    /// request, or cannot tell whether a write applied. Never means "not enrolled" or
    /// "committed": the caller fails closed.
    #[error("store unavailable: {0}")]
    Unavailable(String),

    /// A network store refused this host's credential for the request (etcd RBAC: a host
    /// whose role may read enrollments but not write them). Fails closed like
    /// [`Error::Unavailable`], but says that retrying will not help.
    #[error("store refused: {0}")]
    NotPermitted(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, why: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            why: why.into(),
        }
    }

    pub(crate) fn unsafe_file(path: impl Into<PathBuf>, why: impl Into<String>) -> Self {
        Error::Unsafe {
            path: path.into(),
            why: why.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
