//! Interactive enrollment: secret, QR code, confirmation code, recovery codes.
//!
//! Nothing is written until a code from the app verifies against the new secret; that
//! code's time step is saved as `last_counter`, so it cannot also be used to log in.
//! Ctrl-C (SIGINT kills the process) or end of input before then leaves no trace.

use std::io::Write;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};

use common::totp::TotpSecret;
use common::{AuthRequest, Enrollment, Outcome, RecoveryCodes, TimeStep, UserName};

use crate::Store;

use crate::cli::{EnrollArgs, QrMode};
use crate::failure::Failure;
use crate::{qr, term, Ctx};

/// Attempts at each code prompt.
pub const TRIES: usize = 3;

pub fn run(ctx: &Ctx, args: &EnrollArgs) -> Result<(), Failure> {
    let user = ctx.target(args.user.as_ref())?;
    if args.user.is_some() {
        crate::require_account(&user)?;
    }
    if !term::stdin_is_terminal() {
        return Err(Failure::refused(
            "enrollment is interactive, and standard input is not a terminal: run \
             totp-enroll in a terminal to scan the QR code and confirm a code (an \
             administrator can enroll a known secret with `totp-enroll import`)",
        ));
    }
    let store = ctx.store(true)?;
    let enrolled = ctx.root(|| store.is_enrolled(&user))?;
    if enrolled && !args.replace {
        return Err(Failure::refused(format!(
            "{user} is already enrolled; `totp-enroll --replace` replaces the enrollment"
        )));
    }
    let mut out = std::io::stdout().lock();
    if enrolled && !ctx.caller.is_root {
        writeln!(
            out,
            "You are already enrolled. To replace your enrollment, first confirm with a \
             current code from your app (or a recovery code)."
        )?;
        drop(out);
        confirm_current_code(ctx, &store, &user)?;
        out = std::io::stdout().lock();
    }

    let params = ctx.config.params;
    let secret = TotpSecret::generate()?;
    let issuer = ctx.issuer();
    let uri = qr::otpauth_uri(&issuer, user.as_str(), &secret, &params);
    writeln!(
        out,
        "Enrolling {user} in two-factor authentication for {issuer}.\n"
    )?;
    let drawing = qr::draw(&uri, args.qr.unwrap_or(QrMode::Utf8))
        .map_err(|e| Failure::System(format!("cannot draw the QR code: {e}")))?;
    if let Some(d) = drawing {
        match term::stdout_columns() {
            Some(cols) if cols < d.columns => writeln!(
                out,
                "This terminal is too narrow for the QR code ({cols} columns, {} needed): \
                 widen it and start again, or type the secret below into your app.\n",
                d.columns
            )?,
            _ => {
                writeln!(out, "Scan this QR code with your authenticator app:\n")?;
                out.write_all(d.text.as_bytes())?;
                writeln!(out, "\nOr type the secret into the app by hand.")?;
            }
        }
    }
    writeln!(out, "Secret: {}", qr::grouped(&secret.to_base32()).as_str())?;
    writeln!(out, "URI: {}", uri.as_str())?;
    writeln!(
        out,
        "({}, {} digits, a new code every {} seconds)\n",
        params.algorithm(),
        params.digits(),
        params.period()
    )?;
    out.flush()?;
    drop(out);

    let step = confirm_new_secret(ctx, &secret, &params)?;

    // From here the enrollment is saved and its recovery codes must reach the screen:
    // keyboard signals no longer cut it short.
    block_keyboard_signals();
    let codes = ctx.root(|| {
        store.enroll(Enrollment {
            user: user.clone(),
            secret,
            params,
            last_counter: Some(step),
            recovery: RecoveryCodes::Generate(ctx.config.recovery_codes),
            // A caller who is not root replaces only the enrollment whose code was just
            // confirmed: one made by someone else while this ran is refused, not overwritten.
            replace: args.replace && (enrolled || ctx.caller.is_root),
            now: crate::now(),
        })
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Code verified; the enrollment is saved.\n")?;
    print_recovery_codes(&mut out, &codes)?;
    let whose = if ctx.caller.name == user.as_str() {
        "You are".to_owned()
    } else {
        format!("{user} is")
    };
    writeln!(
        out,
        "{whose} now enrolled: where this host asks for a verification code, give the \
         code your app shows, or a recovery code if the phone is lost."
    )?;
    out.flush()?;
    Ok(())
}

/// Asks for a code of the new secret until one verifies (at most [`TRIES`]); returns its
/// time step. The right code is never shown. What was typed is read by the login's rule
/// (`common::recovery::normalize_typed`).
fn confirm_new_secret(
    ctx: &Ctx,
    secret: &TotpSecret,
    params: &common::OtpParams,
) -> Result<TimeStep, Failure> {
    let digits = params.digits();
    for left in (0..TRIES).rev() {
        let input = term::ask(&format!(
            "Enter the {digits}-digit code your app shows now (Ctrl-C to cancel): "
        ))?;
        let m = common::login::verify_new_secret(
            secret,
            params,
            &input,
            crate::now(),
            ctx.config.window,
        );
        if let Some(step) = m {
            return Ok(step);
        }
        let code = common::recovery::normalize_typed(&input);
        let why = if code.len() != usize::from(digits) || !code.bytes().all(|b| b.is_ascii_digit())
        {
            format!("a code has {digits} digits")
        } else {
            "that code does not match".to_owned()
        };
        if left > 0 {
            say!("Not accepted: {why}. Check the phone's clock if this persists ({left} left).");
        } else {
            say!("Not accepted: {why}.");
        }
    }
    Err(Failure::refused(format!(
        "no code verified after {TRIES} tries; nothing was saved"
    )))
}

/// Asks the caller for a current code (or a recovery code) of the existing enrollment and
/// checks it as a login would: it is used up, and failures count towards the lock.
pub fn confirm_current_code(ctx: &Ctx, store: &Store, user: &UserName) -> Result<(), Failure> {
    for left in (0..TRIES).rev() {
        let input = term::ask("Current code from your app (or a recovery code): ")?;
        let req = AuthRequest::from_config(&ctx.config, crate::now(), None);
        let why = match ctx.root(|| store.authenticate(user, &input, &req))? {
            Outcome::Accepted { .. } => return Ok(()),
            Outcome::RecoveryAccepted { remaining, .. } => {
                say!("Recovery code accepted; {remaining} left.");
                return Ok(());
            }
            Outcome::Locked { until }
            | Outcome::Rejected {
                locked_until: Some(until),
                ..
            }
            | Outcome::Replayed {
                locked_until: Some(until),
                ..
            } => {
                return Err(Failure::refused(format!(
                    "too many failed attempts; locked until {}",
                    crate::format_time(until)
                )))
            }
            Outcome::NotEnrolled => {
                return Err(Failure::refused(format!("{user} is not enrolled")))
            }
            Outcome::Replayed { .. } => "that code was already used; use the next one",
            Outcome::Rejected { .. } => "wrong code",
        };
        if left > 0 {
            say!("Not accepted: {why} ({left} left).");
        } else {
            say!("Not accepted: {why}.");
        }
    }
    Err(Failure::refused("no valid code; nothing was changed"))
}

pub fn print_recovery_codes(
    out: &mut impl Write,
    codes: &crate::ShownCodes,
) -> Result<(), Failure> {
    if codes.is_empty() {
        writeln!(
            out,
            "No recovery codes (recovery_codes = 0 in the configuration).\n"
        )?;
        return Ok(());
    }
    writeln!(out, "Recovery codes:")?;
    for c in codes {
        writeln!(out, "{}", c.as_str())?;
    }
    writeln!(
        out,
        "\nEach recovery code works once, in place of a code from the app. Keep them \
         somewhere safe, away from the phone: they are not shown again.\n"
    )?;
    Ok(())
}

/// Blocks SIGINT, SIGQUIT, SIGTSTP and SIGHUP for the rest of the process.
pub fn block_keyboard_signals() {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTSTP,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}
