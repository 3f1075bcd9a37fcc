//! `pam_totp.so`: the PAM module. A thin layer over `common`: it reads the options and the
//! config, asks for the code, runs the login transaction of [`common::login::authenticate`],
//! and maps its outcome to a PAM result and a message, as SPEC.md's table says.
//!
//! The decisions live in [`auth`], written against the small [`handle::Handle`] trait so
//! that unit tests drive them with a scripted conversation and a fixed clock. The only code
//! that touches libpam is [`ffi`] (the real handle) and the entry points below.
//!
//! Not here: anything that changes the clock, the paths or the checks for tests. Tests
//! control time from outside (libfaketime) or compute the code for the current time.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod auth;
pub mod daemon;
pub mod ffi;
pub mod handle;
pub mod text;

#[cfg(test)]
mod tests;

use pamsm::{pam_module, Pam, PamError, PamFlags, PamServiceModule};

/// The module's entry points, exported by `pam_module!` as `pam_sm_*`.
pub struct PamTotp;

impl PamServiceModule for PamTotp {
    fn authenticate(pamh: Pam, flags: PamFlags, args: Vec<String>) -> PamError {
        let mut handle = ffi::LibPam::new(&pamh);
        auth::authenticate_guarded(
            &mut handle,
            &auth::Files,
            flags.contains(PamFlags::SILENT),
            &args,
        )
    }

    /// There are no credentials to set; a success keeps `auth` stacks that call
    /// `pam_setcred` working.
    fn setcred(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        auth::guard(|| PamError::SUCCESS)
    }

    fn acct_mgmt(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        auth::guard(|| PamError::IGNORE)
    }

    fn open_session(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        auth::guard(|| PamError::IGNORE)
    }

    fn close_session(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        auth::guard(|| PamError::IGNORE)
    }

    fn chauthtok(_: Pam, _: PamFlags, _: Vec<String>) -> PamError {
        auth::guard(|| PamError::IGNORE)
    }
}

pam_module!(PamTotp);
