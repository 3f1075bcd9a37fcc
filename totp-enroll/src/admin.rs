//! status, disable, recovery-codes, unlock, list, rekey.

use std::io::Write;

use serde_json::{json, Value};

use common::{Device, OtpKind, Status, UserName};

use crate::enroll::{block_keyboard_signals, confirm_current_code, print_recovery_codes};
use crate::failure::Failure;
use crate::{daemon, format_time, now, Ctx, Store};

pub fn status(ctx: &Ctx, user: Option<&UserName>, json: bool) -> Result<(), Failure> {
    let user = ctx.target(user)?;
    let store = ctx.store(false)?;
    let status = ctx.root(|| store.status(&user))?;
    let mut out = std::io::stdout().lock();
    if json {
        let grace = ctx.config.grace_secs;
        writeln!(out, "{}", status_json(&user, status.as_ref(), now(), grace))?;
        return Ok(());
    }
    match status {
        None => writeln!(out, "{user}: not enrolled")?,
        Some(s) => write_status(&mut out, &s, now(), ctx.config.grace_secs)?,
    }
    Ok(())
}

/// Every field a script may want; times as unix seconds. Never the secret.
fn status_json(user: &UserName, s: Option<&Status>, now: i64, grace_secs: u64) -> Value {
    let Some(s) = s else {
        return json!({ "user": user.as_str(), "enrolled": false });
    };
    let c = &s.counters;
    json!({
        "user": s.user.as_str(),
        "enrolled": true,
        "kind": s.params.kind().as_str(),
        "algorithm": s.params.algorithm().as_str(),
        "digits": s.params.digits(),
        // An HOTP token has no period, and a next counter instead.
        "period": s.params.kind().is_totp().then_some(s.params.period()),
        "next_counter": (!s.params.kind().is_totp())
            .then(|| common::hotp::next_counter(c.last_counter)),
        "created": s.created,
        "last_used": c.last_used,
        "last_counter": c.last_counter,
        "failures": c.failures,
        "locked": s.locked(now),
        "locked_until": c.locked_until.filter(|t| *t > now),
        "recovery_codes_left": s.recovery_codes_left,
        "rejected_since_success": c.rejected_since_success,
        "last_rejected_rhost": c.last_rejected_rhost.as_deref().map(common::counters::clean_rhost),
        "last_rejected_at": c.last_rejected_at,
        "devices": c.devices.iter().map(|d| device_json(d, grace_secs)).collect::<Vec<_>>(),
    })
}

/// A remembered device: where from, which key, since when, and until when the
/// configuration's `grace_secs` lets it in (null where that is off: a module option may
/// still set it).
fn device_json(d: &Device, grace_secs: u64) -> Value {
    json!({
        "rhost": common::counters::clean_rhost(&d.rhost),
        "key": d.key.as_deref().map(common::device::clean_label),
        "since": d.since,
        "until": grace_until(d, grace_secs),
    })
}

fn grace_until(d: &Device, grace_secs: u64) -> Option<i64> {
    (grace_secs > 0).then(|| {
        d.since
            .saturating_add(i64::try_from(grace_secs).unwrap_or(i64::MAX))
    })
}

fn write_status(
    out: &mut impl Write,
    s: &Status,
    now: i64,
    grace_secs: u64,
) -> Result<(), Failure> {
    let c = &s.counters;
    let when = |t: Option<i64>| t.map_or_else(|| "never".to_owned(), format_time);
    writeln!(out, "user:                {}", s.user)?;
    let p = &s.params;
    match p.kind() {
        OtpKind::Totp => writeln!(
            out,
            "enrolled:            yes (TOTP, {}, {} digits, {} s)",
            p.algorithm(),
            p.digits(),
            p.period()
        )?,
        OtpKind::Hotp => writeln!(
            out,
            "enrolled:            yes (HOTP, {}, {} digits, next counter {})",
            p.algorithm(),
            p.digits(),
            common::hotp::next_counter(c.last_counter)
        )?,
    }
    writeln!(out, "created:             {}", format_time(s.created))?;
    writeln!(out, "last used:           {}", when(c.last_used))?;
    writeln!(out, "failures:            {}", c.failures)?;
    match c.locked_until.filter(|t| *t > now) {
        Some(t) => writeln!(out, "locked:              until {}", format_time(t))?,
        None => writeln!(out, "locked:              no")?,
    }
    writeln!(out, "recovery codes left: {}", s.recovery_codes_left)?;
    writeln!(out, "remembered devices:  {}", c.devices.len())?;
    for d in &c.devices {
        let key = d.key.as_deref().map_or_else(String::new, |k| {
            format!(" with key {}", common::device::clean_label(k))
        });
        let until = grace_until(d, grace_secs)
            .map_or_else(String::new, |t| format!(", until {}", format_time(t)));
        writeln!(
            out,
            "  {}{key}: since {}{until}",
            common::counters::clean_rhost(&d.rhost),
            format_time(d.since)
        )?;
    }
    if c.rejected_since_success > 0 {
        writeln!(
            out,
            "rejected since last success: {} (last at {} from {})",
            c.rejected_since_success,
            when(c.last_rejected_at),
            // The same filter as when stored, whatever the file holds.
            c.last_rejected_rhost.as_deref().map_or_else(
                || "an unknown host".to_owned(),
                common::counters::clean_rhost
            )
        )?;
    }
    Ok(())
}

/// The target user and the store, once the user is known to be enrolled and, for a plain
/// user, has given a current code.
fn enrolled_and_confirmed(
    ctx: &Ctx,
    user: Option<&UserName>,
) -> Result<(UserName, crate::Store), Failure> {
    let user = ctx.target(user)?;
    let store = ctx.store(false)?;
    if !ctx.root(|| store.is_enrolled(&user))? {
        return Err(Failure::refused(format!("{user} is not enrolled")));
    }
    if !ctx.caller.is_root {
        confirm_current_code(ctx, &store, &user)?;
    }
    Ok((user, store))
}

pub fn disable(ctx: &Ctx, user: Option<&UserName>) -> Result<(), Failure> {
    let (user, store) = enrolled_and_confirmed(ctx, user)?;
    ctx.root(|| store.remove(&user))?;
    say!("{user} is no longer enrolled.");
    Ok(())
}

pub fn recovery_codes(ctx: &Ctx, user: Option<&UserName>) -> Result<(), Failure> {
    let (user, store) = enrolled_and_confirmed(ctx, user)?;
    block_keyboard_signals();
    let codes = ctx.root(|| store.regenerate_recovery_codes(&user, ctx.config.recovery_codes))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "New recovery codes for {user}; the old ones no longer work.\n"
    )?;
    print_recovery_codes(&mut out, &codes)?;
    out.flush()?;
    Ok(())
}

/// Forgets the devices remembered for `grace_secs`. Only takes access away, so a user
/// needs no code for their own account.
pub fn forget_devices(ctx: &Ctx, user: Option<&UserName>) -> Result<(), Failure> {
    let user = ctx.target(user)?;
    let store = ctx.store(false)?;
    let n = ctx.root(|| store.forget_devices(&user))?;
    say!("{user}: {n} remembered device(s) forgotten.");
    Ok(())
}

pub fn unlock(ctx: &Ctx, user: &UserName) -> Result<(), Failure> {
    let store = ctx.store(false)?;
    ctx.root(|| store.unlock(user))?;
    say!("{user}: failures cleared, not locked");
    Ok(())
}

pub fn list(ctx: &Ctx, json: bool) -> Result<(), Failure> {
    let store = ctx.store(false)?;
    let users = ctx.root(|| store.list())?;
    let now = now();
    let mut broken = 0;
    let mut out = std::io::stdout().lock();
    let mut rows = Vec::new();
    for (name, status) in &users {
        match status {
            Ok(s) => {
                if json {
                    rows.push(status_json(&s.user, Some(s), now, ctx.config.grace_secs));
                } else {
                    let locked = s
                        .counters
                        .locked_until
                        .filter(|t| *t > now)
                        .map_or_else(|| "-".to_owned(), |t| format!("until {}", format_time(t)));
                    rows.push(Value::String(format!(
                        "{:<20} {:<20} {:<20} {:>8} {:>10}  {}",
                        name,
                        format_time(s.created),
                        s.counters
                            .last_used
                            .map_or_else(|| "never".to_owned(), format_time),
                        s.counters.failures,
                        s.recovery_codes_left,
                        locked
                    )));
                }
            }
            Err(e) => {
                broken += 1;
                if json {
                    rows.push(json!({ "user": name.as_str(), "error": e.to_string() }));
                } else {
                    rows.push(Value::String(format!("{name:<20} error: {e}")));
                }
            }
        }
    }
    if json {
        writeln!(out, "{}", Value::Array(rows))?;
    } else {
        writeln!(
            out,
            "{:<20} {:<20} {:<20} {:>8} {:>10}  locked",
            "user", "created", "last used", "failures", "recovery"
        )?;
        for r in rows {
            if let Value::String(line) = r {
                writeln!(out, "{line}")?;
            }
        }
    }
    out.flush()?;
    if broken > 0 {
        return Err(Failure::System(format!(
            "{broken} state file(s) cannot be used (see above)"
        )));
    }
    Ok(())
}

/// See `common::login::rekey`: both keys stay valid until every file opens with the new
/// one, so no login fails at any moment, and a killed rekey is finished by running it again.
/// On a fleet, the steps of README "Running a fleet": `--stage`, then `rekey` on each host.
pub fn rekey(ctx: &Ctx, stage: bool) -> Result<(), Failure> {
    let c = &ctx.config;
    // Signals would not break anything (each step is atomic) but finishing is tidier.
    block_keyboard_signals();
    let store = ctx.store(false)?;
    match (&store, stage) {
        (Store::Daemon(_), true) => return stage_fleet_key(ctx),
        (Store::Daemon(d), false) => return finish_fleet_rotation(ctx, d),
        (Store::Local(_), true) => {
            return Err(Failure::refused(
                "--stage is for a fleet (backend = \"etcd\"); on a single host `rekey` \
                 alone does every step",
            ))
        }
        (Store::Local(_), false) => {}
    }
    let results = ctx.root(|| store.rekey())?;
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    for (name, r) in &failed {
        if let Err(e) = r {
            warn!("totp-enroll: {name}: {e}");
        }
    }
    say!(
        "New host key in {}; {} state file(s) re-encrypted.",
        c.key_file.display(),
        results.len() - failed.len()
    );
    if !failed.is_empty() {
        return Err(Failure::System(format!(
            "{} state file(s) were not moved to the new key alone (see above): one that \
             opened still holds the old key as well (run rekey again once fixed), one that \
             did not open was left as it was",
            failed.len()
        )));
    }
    Ok(())
}

/// A fleet's rotation, step 1 (on one host): makes the next fleet key beside the key file,
/// for the administrator to copy to every host. A key already staged is kept: staging
/// twice must never hand out two different keys.
fn stage_fleet_key(ctx: &Ctx) -> Result<(), Failure> {
    use common::KeySource as _;
    let key_file = &ctx.config.key_file;
    let next = common::FileKey::next_path_of(key_file);
    let (id, made) = ctx.root(|| {
        // Loads the fleet key too: the next one is of no use without it.
        match common::FileKey::load_rotating(key_file)?.next_key() {
            Some(k) => Ok((k.key_id(), false)),
            None => {
                let k = common::HostKey::generate()?;
                k.store(&next)?;
                Ok((k.key_id(), true))
            }
        }
    })?;
    if made {
        say!("Next fleet key {id} written to {}.", next.display());
    } else {
        say!(
            "A next fleet key is already staged: {id} in {}.",
            next.display()
        );
    }
    say!(
        "1. Copy it to {} on every host of the fleet (owner root, mode 0600). From then on \
         each host opens enrollments sealed under either key.\n\
         2. Once every host has it, run `totp-enroll rekey` on each host in turn.",
        next.display()
    );
    Ok(())
}

/// A fleet's rotation, step 2 (on each host in turn, once every host holds the next key):
/// the daemon moves every enrollment still under the old key to the next one alone (the
/// first host does the work, the others find it done), then this host puts the next key in
/// force. Nothing is switched while an enrollment failed to move.
fn finish_fleet_rotation(ctx: &Ctx, d: &daemon::Daemon) -> Result<(), Failure> {
    use common::KeyRotation as _;
    use common::KeySource as _;
    let key_file = &ctx.config.key_file;
    let keys = ctx.root(|| common::FileKey::load_rotating(key_file))?;
    let Some(id) = keys.next_key().map(|k| k.key_id()) else {
        return Err(Failure::refused(format!(
            "no next fleet key in {}: start with `totp-enroll rekey --stage` on one host \
             and copy its key to every host",
            common::FileKey::next_path_of(key_file).display()
        )));
    };
    let r = ctx.root(|| d.finish_rotation())?;
    if r.failed > 0 {
        for name in &r.names {
            warn!("totp-enroll: {name}: not moved to the next key (see pam_totpd's log)");
        }
        return Err(Failure::System(format!(
            "{} enrollment(s) could not be moved to key {id} (see above); this host keeps \
             its key: fix them and run rekey again",
            r.failed
        )));
    }
    ctx.root(|| keys.promote())?;
    say!(
        "{} enrollment(s) moved to key {id}, {} already on it. This host now uses key {id}.",
        r.rewritten,
        r.unchanged
    );
    say!("Run `totp-enroll rekey` on every other host of the fleet (each puts its copy in force).");
    Ok(())
}
