//! The core of pam_totp, shared by the PAM module and the `totp-enroll` CLI: RFC 6238 codes,
//! the login policy, the storage seam and its files implementation, the host key, and
//! configuration.
//!
//! - [`policy`]: the login rules, a pure function ([`policy::decide`]).
//! - [`backend`]: the [`Backend`] and [`KeySource`] traits and their contract (read its
//!   module documentation first); [`files`] implements them over the state directory and
//!   the key file.
//! - [`login`]: the operations, once, over `&dyn Backend` and `&dyn KeySource`: the login
//!   transaction ([`login::authenticate`]) and the enrollment side.
//!
//! Nothing here knows about PAM or terminals. The module calls [`login::authenticate`] and
//! maps its [`Outcome`]; the CLI calls the enrollment-side operations. No public function
//! returns a decrypted secret.

#![forbid(unsafe_code)]

pub mod backend;
pub mod config;
pub mod counters;
mod crypto;
pub mod device;
mod error;
pub mod files;
mod fsutil;
pub mod hotp;
mod lock;
pub mod login;
pub mod policy;
pub mod recovery;
pub mod state;
pub mod store;
pub mod time;
pub mod totp;
mod user;

pub use backend::{Backend, Commit, Expect, KeyRotation, KeySource, Loaded, Version};
pub use config::Config;
pub use crypto::{HostKey, RecordKey};
pub use device::{Device, DeviceIdentity};
pub use error::{Error, Result};
pub use files::{FileKey, FilesBackend};
pub use login::{Enrollment, PerUser, RecoveryCodes, Status};
pub use policy::{AuthRequest, Decision, Matched, Outcome, PriorRejections};
pub use state::SealedState;
pub use store::Store;
pub use totp::{Algorithm, OtpKind, OtpParams, TimeStep, TotpSecret};
pub use user::{UserName, MAX_USER_NAME_LEN};
