//! Why a command did not succeed, and its exit status (SPEC.md: 1 refused or failed
//! verification, 3 system error; clap exits 2 for usage errors).

use std::fmt;

#[derive(Debug)]
pub enum Failure {
    /// Refused, not allowed, or a code that did not verify: exit 1.
    Refused(String),
    /// Unreadable state, missing key, I/O, bad configuration: exit 3.
    System(String),
    /// The user cancelled (Ctrl-D); nothing was saved: exit 1.
    Cancelled,
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Refused(_) | Failure::Cancelled => 1,
            Failure::System(_) => 3,
        }
    }

    pub fn refused(msg: impl Into<String>) -> Self {
        Failure::Refused(msg.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused(m) | Failure::System(m) => f.write_str(m),
            Failure::Cancelled => f.write_str("cancelled; nothing was saved"),
        }
    }
}

impl From<common::Error> for Failure {
    fn from(e: common::Error) -> Self {
        use common::Error as E;
        match e {
            E::InvalidUserName(_)
            | E::NotEnrolled(_)
            | E::AlreadyEnrolled(_)
            | E::InvalidInput(_) => Failure::Refused(e.to_string()),
            // A rekey in the middle: nothing was written, and running again works.
            E::KeyReplaced => Failure::Refused(e.to_string()),
            // The fleet store does not let this host do it (its etcd role).
            E::NotPermitted(_) => Failure::Refused(e.to_string()),
            E::Io { .. }
            | E::Unsafe { .. }
            | E::Corrupt { .. }
            | E::Lock { .. }
            | E::Config(_)
            | E::RandomSource(_)
            | E::Contention(_)
            | E::Unavailable(_) => Failure::System(e.to_string()),
        }
    }
}

/// Writing to the terminal failed (e.g. a closed pipe): nothing more can be said.
impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::System(format!("cannot write output: {e}"))
    }
}
