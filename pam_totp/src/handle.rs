//! What the decision logic needs from a PAM handle. The real one is [`crate::ffi::LibPam`];
//! unit tests use a scripted one.

use std::time::SystemTime;

use pamsm::PamError;
use zeroize::Zeroizing;

/// Syslog priority of a log line (the facility is always authpriv).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

/// A message shown to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// PAM_ERROR_MSG.
    Error,
    /// PAM_TEXT_INFO.
    Info,
}

/// Why a prompt got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvError {
    /// The application gave no conversation function.
    NoConversation,
    /// The conversation function returned this PAM error code.
    Failed(i32),
    /// The conversation succeeded but gave no answer (a NULL response).
    NoAnswer,
}

/// The PAM handle as the module uses it.
pub trait Handle {
    /// The user being authenticated (`pam_get_user`, which may prompt for it): the raw bytes,
    /// or `None` if libpam gave none. An error is the code `pam_get_user` returned.
    fn user(&mut self) -> Result<Option<Vec<u8>>, PamError>;

    /// The PAM_SERVICE item, if set (lossily decoded).
    fn service(&self) -> Option<String>;

    /// The PAM_RHOST item, if set (lossily decoded).
    fn rhost(&self) -> Option<String>;

    /// A variable of the PAM environment (`pam_getenv`), if set (lossily decoded).
    fn env(&self, name: &str) -> Option<String>;

    /// Asks the user a question; the answer is wiped when dropped.
    fn prompt(&mut self, prompt: &str, echo: bool) -> Result<Zeroizing<Vec<u8>>, ConvError>;

    /// Sets PAM_AUTHTOK, the password the next module of the stack reads
    /// (`use_first_pass`).
    fn set_authtok(&mut self, password: &[u8]) -> Result<(), PamError>;

    /// Shows a message. Failures are not errors: the decision stands without it.
    fn tell(&mut self, kind: Notice, text: &str);

    /// Logs through pam_syslog at authpriv.
    fn log(&self, level: Level, text: &str);

    /// The wall clock.
    fn now(&self) -> SystemTime;
}
