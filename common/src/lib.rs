//! The core of pam_totp, shared by the PAM module and the `totp-enroll` CLI: RFC 6238 codes,
//! the encrypted per-user state store with its exactly-once login transaction, the host key,
//! file safety and locking, and configuration.
//!
//! Nothing here knows about PAM or terminals. The module calls [`store::Store::authenticate`]
//! and maps its [`store::Outcome`]; the CLI calls the enrollment-side operations.

#![forbid(unsafe_code)]

pub mod backend;
pub mod config;
pub mod counters;
pub mod crypto;
pub mod error;
pub mod files;
pub mod fsutil;
pub mod lock;
pub mod login;
pub mod policy;
pub mod recovery;
pub mod state;
pub mod store;
pub mod totp;
pub mod user;

pub use backend::{Backend, Commit, Expect, KeyRotation, KeySource, Loaded, Version};
pub use config::Config;
pub use crypto::HostKey;
pub use error::{Error, Result};
pub use files::{FileKey, FilesBackend};
pub use login::{Enrollment, PerUser, RecoveryCodes, Status};
pub use policy::{AuthRequest, Decision, Matched, Outcome, PriorRejections};
pub use state::SealedState;
pub use store::Store;
pub use totp::{Algorithm, OtpParams, TimeStep, TotpSecret};
pub use user::UserName;
