//! `import`: enroll known secrets (root only). Secrets come from standard input or from
//! the files of google-authenticator and pam_oath, never from the command line.
//!
//! Error messages name a file and a line number but never repeat a line: it may hold a
//! secret or a scratch code.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::OFlag;
use zeroize::Zeroizing;

use common::{
    Enrollment, Error, OtpKind, OtpParams, RecoveryCodes, TimeStep, TotpSecret, UserName,
};

use crate::Store;

use crate::cli::ImportArgs;
use crate::enroll::print_recovery_codes;
use crate::failure::Failure;
use crate::Ctx;

/// Both formats are small; google-authenticator's own limit is 1 kB.
const MAX_FILE_LEN: u64 = 1 << 20;

pub fn run(ctx: &Ctx, args: &ImportArgs) -> Result<(), Failure> {
    let store = ctx.store(true)?;
    if let Some(path) = &args.from_oath_usersfile {
        return oath_usersfile(ctx, &store, path, args);
    }
    if let (Some(dir), Some(key)) = (&args.from_state_dir, &args.from_key_file) {
        return state_dir(ctx, &store, dir, key, args);
    }
    // clap requires --user for the other two sources.
    let user = args
        .user
        .clone()
        .ok_or_else(|| Failure::refused("--user is required"))?;
    crate::require_account(&user)?;
    if let Some(path) = &args.from_google_authenticator {
        let text = read_file(path)?;
        let now_secs = crate::now();
        let ga = parse_google_authenticator(&text, now_secs)
            .map_err(|e| Failure::refused(format!("{}: {e}", path.display())))?;
        let kept = ga.scratch_codes.len();
        let params = ga.params;
        let e = Enrollment {
            user: user.clone(),
            secret: ga.secret,
            params,
            last_counter: ga.last_counter.map(TimeStep),
            recovery: RecoveryCodes::Keep(ga.scratch_codes),
            replace: args.replace,
            now: now_secs,
        };
        ctx.root(|| store.enroll(e))
            .map_err(already_enrolled_hint)?;
        say!(
            "Imported {user} from {} (TOTP, {}, {} digits, {} s); {} scratch code(s) kept as \
             recovery codes.",
            path.display(),
            params.algorithm(),
            params.digits(),
            params.period(),
            kept
        );
        for note in ga.notes {
            warn!("totp-enroll: note: {note}");
        }
        return Ok(());
    }
    // --secret-stdin
    let text = crate::term::read_secret()?;
    let secret = TotpSecret::from_base32(text.trim())?;
    let d = ctx.config.params;
    let algorithm = args.algorithm.unwrap_or(d.algorithm());
    let digits = args.digits.unwrap_or(d.digits());
    let (params, last_counter) = if args.hotp {
        // The counter given is the next one: the last used is the one before it.
        let next = args.counter.unwrap_or(0);
        (OtpParams::hotp(algorithm, digits)?, next.checked_sub(1))
    } else {
        let period = args.period.unwrap_or(d.period());
        (OtpParams::new(algorithm, digits, period)?, None)
    };
    let codes = enroll(
        ctx,
        &store,
        &user,
        secret,
        params,
        last_counter,
        args.replace,
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Imported {user} ({}).\n",
        describe(&params, last_counter)
    )?;
    print_recovery_codes(&mut out, &codes)?;
    Ok(())
}

/// How an imported token is described: kind, algorithm, digits, and the period or the
/// next counter.
fn describe(params: &OtpParams, last_counter: Option<u64>) -> String {
    match params.kind() {
        OtpKind::Totp => format!(
            "TOTP, {}, {} digits, {} s",
            params.algorithm(),
            params.digits(),
            params.period()
        ),
        OtpKind::Hotp => format!(
            "HOTP, {}, {} digits, next counter {}",
            params.algorithm(),
            params.digits(),
            common::hotp::next_counter(last_counter)
        ),
    }
}

fn enroll(
    ctx: &Ctx,
    store: &Store,
    user: &UserName,
    secret: TotpSecret,
    params: OtpParams,
    last_counter: Option<u64>,
    replace: bool,
) -> Result<crate::ShownCodes, Failure> {
    let count = ctx.config.recovery_codes;
    let e = Enrollment {
        user: user.clone(),
        secret,
        params,
        last_counter: last_counter.map(TimeStep),
        recovery: RecoveryCodes::Generate(count),
        replace,
        now: crate::now(),
    };
    ctx.root(|| store.enroll(e)).map_err(already_enrolled_hint)
}

fn already_enrolled_hint(f: Failure) -> Failure {
    match f {
        Failure::Refused(m) if m.contains("already enrolled") => {
            Failure::Refused(format!("{m}; --replace replaces the enrollment"))
        }
        f => f,
    }
}

/// Reads a whole file (root reads it: the caller is root), refusing symlinks and anything
/// but a regular file.
fn read_file(path: &Path) -> Result<Zeroizing<String>, Failure> {
    let err = |e: std::io::Error| Failure::refused(format!("{}: {e}", path.display()));
    let file = File::options()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(err)?;
    if !file.metadata().map_err(err)?.is_file() {
        return Err(Failure::refused(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(Failure::refused(format!("{}: too large", path.display())));
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(Failure::refused(format!(
            "{}: not a text file",
            path.display()
        ))),
    }
}

/// What a `~/.google_authenticator` file holds, in our terms.
pub struct GoogleAuthenticator {
    pub secret: TotpSecret,
    pub params: OtpParams,
    /// The latest time step listed by DISALLOW_REUSE: codes up to it were used.
    pub last_counter: Option<u64>,
    pub scratch_codes: Vec<Zeroizing<String>>,
    /// Options we do not carry over, for the administrator.
    pub notes: Vec<String>,
}

/// Parses the format of libpam-google-authenticator's FILEFORMAT: the base32 secret, then
/// `" OPTION args` lines, then 8-digit scratch codes, one per line.
pub fn parse_google_authenticator(text: &str, now: i64) -> Result<GoogleAuthenticator, String> {
    let mut lines = text.lines().enumerate();
    let secret = match lines.next() {
        Some((_, l)) if !l.trim().is_empty() => {
            TotpSecret::from_base32(l.trim()).map_err(|e| format!("line 1: {e}"))?
        }
        _ => return Err("no secret on line 1".into()),
    };
    let mut totp = false;
    let mut hotp = false;
    let mut period = 30u32;
    let mut used_steps: Vec<u64> = Vec::new();
    let mut scratch_codes = Vec::new();
    let mut notes = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(opt) = line.strip_prefix('"') {
            let mut words = opt.split_whitespace();
            let name = words.next().unwrap_or("");
            let args: Vec<&str> = words.collect();
            match name {
                "TOTP_AUTH" => totp = true,
                "HOTP_COUNTER" => hotp = true,
                "STEP_SIZE" => {
                    period = args
                        .first()
                        .and_then(|a| a.parse().ok())
                        .filter(|p| (1..=3600).contains(p))
                        .ok_or_else(|| format!("line {n}: STEP_SIZE needs 1 to 3600 seconds"))?
                }
                "DISALLOW_REUSE" => {
                    for a in args {
                        used_steps.push(
                            a.parse()
                                .map_err(|_| format!("line {n}: DISALLOW_REUSE: not a number"))?,
                        );
                    }
                }
                "WINDOW_SIZE" | "RATE_LIMIT" => notes.push(format!(
                    "{name} not carried over: pam_totp uses the host's window, max_failures \
                     and lockout_secs"
                )),
                _ => notes.push(format!("line {n}: unknown option ignored")),
            }
            continue;
        }
        if line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit()) {
            scratch_codes.push(Zeroizing::new(line.to_owned()));
        } else {
            return Err(format!("line {n}: neither an option nor a scratch code"));
        }
    }
    if hotp {
        return Err("counter-based (HOTP_COUNTER): only time-based codes can be imported".into());
    }
    if !totp {
        return Err("no TOTP_AUTH option: not a time-based enrollment".into());
    }
    if scratch_codes.len() > common::recovery::MAX_RECOVERY_CODES {
        return Err(format!(
            "more than {} scratch codes",
            common::recovery::MAX_RECOVERY_CODES
        ));
    }
    let params = OtpParams::new(common::Algorithm::SHA1, 6, period).map_err(|e| e.to_string())?;
    // google-authenticator records used time steps; only those not in the future matter.
    let now_step = params.step_at(u64::try_from(now).unwrap_or(0));
    let last_counter = used_steps.into_iter().filter(|s| *s <= now_step).max();
    Ok(GoogleAuthenticator {
        secret,
        params,
        last_counter,
        scratch_codes,
        notes,
    })
}

/// One line of a pam_oath usersfile that can be imported.
pub struct OathUser {
    pub line: usize,
    pub user: String,
    pub secret: TotpSecret,
    pub params: OtpParams,
    /// HOTP: the counter pam_oath last accepted (its COUNTER field), if the line has one.
    pub last_counter: Option<u64>,
}

/// What a usersfile holds: its users, and warnings for lines skipped.
pub struct OathFile {
    pub users: Vec<OathUser>,
    pub warnings: Vec<String>,
    /// Lines that could not be read: the import as a whole is not a success.
    pub errors: usize,
}

/// Parses a pam_oath usersfile: `TYPE USER PIN HEXSECRET [COUNTER [LASTOTP TIME]]`, where
/// TYPE is `HOTP[/E|/T<period>][/<digits>]` (`HOTP/T30/6`, `HOTP/T60`, `HOTP/E/8`, ...).
/// `/T` types are time-based; the others are counter-based, and pam_oath writes the
/// counter it last accepted into COUNTER, so the import counts on after it (a line
/// without COUNTER starts at 0).
pub fn parse_oath_usersfile(text: &str) -> OathFile {
    let mut f = OathFile {
        users: Vec::new(),
        warnings: Vec::new(),
        errors: 0,
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 4 {
            f.warnings
                .push(format!("line {n}: too few fields, skipped"));
            f.errors += 1;
            continue;
        }
        let (kind, user, pin, hex) = (fields[0], fields[1], fields[2], fields[3]);
        let params = match parse_oath_type(kind) {
            Ok(p) => p,
            Err(e) => {
                f.warnings.push(format!("line {n}: {e}, skipped"));
                f.errors += 1;
                continue;
            }
        };
        // The user field is repeated only once the line has the shape of a real one: in a
        // line missing a field, the secret moves into the user's place.
        let raw = data_hex(hex);
        if raw.is_err() || UserName::parse(user).is_err() {
            let why = if raw.is_ok() {
                "the user field is not a valid user name"
            } else {
                "the secret field is not hexadecimal (is a field missing?)"
            };
            f.warnings.push(format!("line {n}: {why}, skipped"));
            f.errors += 1;
            continue;
        }
        let (params, last_counter) = match params {
            Some(p) => (p, None),
            None => match fields.get(4).map(|c| parse_oath_counter(c)) {
                None => (hotp_params(kind), None),
                Some(Ok(c)) => (hotp_params(kind), Some(c)),
                Some(Err(e)) => {
                    f.warnings.push(format!("line {n}: {user}: {e}, skipped"));
                    f.errors += 1;
                    continue;
                }
            },
        };
        let secret = match raw.and_then(TotpSecret::from_bytes) {
            Ok(s) => s,
            Err(e) => {
                f.warnings
                    .push(format!("line {n}: {user}: secret: {e}, skipped"));
                f.errors += 1;
                continue;
            }
        };
        if pin != "-" && pin != "+" {
            f.warnings.push(format!(
                "line {n}: {user}: the token's PIN is not carried over (pam_totp has none)"
            ));
        }
        if f.users.iter().any(|u| u.user == user) {
            f.warnings.push(format!(
                "line {n}: {user}: a second token for the same user skipped"
            ));
            continue;
        }
        f.users.push(OathUser {
            line: n,
            user: user.to_owned(),
            secret,
            params,
            last_counter,
        });
    }
    f
}

/// A usersfile's COUNTER field: decimal, at most [`common::hotp::MAX_COUNTER`].
fn parse_oath_counter(field: &str) -> Result<u64, String> {
    field
        .parse::<u64>()
        .ok()
        .filter(|c| *c <= common::hotp::MAX_COUNTER)
        .ok_or_else(|| "the counter field is not a counter".to_owned())
}

/// The HOTP parameters of a counter-based type ([`parse_oath_type`] gave `Ok(None)`, so
/// its digits are valid).
fn hotp_params(kind: &str) -> OtpParams {
    let digits = kind
        .split('/')
        .skip(1)
        .find_map(|p| p.parse::<u8>().ok())
        .unwrap_or(6);
    OtpParams::hotp(common::Algorithm::SHA1, digits).unwrap_or_default()
}

/// `Ok(None)` for a counter-based type (whose digits are then valid).
fn parse_oath_type(kind: &str) -> Result<Option<OtpParams>, String> {
    let mut parts = kind.split('/');
    if !parts
        .next()
        .is_some_and(|p| p.eq_ignore_ascii_case("HOTP") || p.eq_ignore_ascii_case("TOTP"))
    {
        return Err("unknown token type".into());
    }
    let mut period = None;
    let mut digits = 6u8;
    for p in parts {
        if p.eq_ignore_ascii_case("E") {
            period = None;
        } else if let Some(t) = p.strip_prefix(['T', 't']) {
            period = Some(
                t.parse::<u32>()
                    .map_err(|_| "token type: bad period".to_owned())?,
            );
        } else if let Ok(d) = p.parse::<u8>() {
            digits = d;
        } else {
            return Err("unknown token type".into());
        }
    }
    let Some(period) = period else {
        return OtpParams::hotp(common::Algorithm::SHA1, digits)
            .map(|_| None)
            .map_err(|e| format!("token type: {e}"));
    };
    OtpParams::new(common::Algorithm::SHA1, digits, period)
        .map(Some)
        .map_err(|e| format!("token type: {e}"))
}

fn data_hex(hex: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let bad = || Error::InvalidInput("not hexadecimal".into());
    if !hex.len().is_multiple_of(2) {
        return Err(bad());
    }
    let mut out = Zeroizing::new(Vec::with_capacity(hex.len() / 2));
    for pair in hex.as_bytes().chunks(2) {
        let digit = |b: u8| (b as char).to_digit(16).ok_or_else(bad);
        out.push((digit(pair[0])? * 16 + digit(pair[1])?) as u8);
    }
    Ok(out)
}

fn oath_usersfile(ctx: &Ctx, store: &Store, path: &Path, args: &ImportArgs) -> Result<(), Failure> {
    let text = read_file(path)?;
    let parsed = parse_oath_usersfile(&text);
    let where_ = path.display();
    for w in &parsed.warnings {
        warn!("totp-enroll: warning: {where_}: {w}");
    }
    let mut refused = parsed.errors;
    let mut imported = 0;
    let mut found = false;
    for u in parsed.users {
        if args
            .user
            .as_ref()
            .is_some_and(|want| want.as_str() != u.user)
        {
            continue;
        }
        found = true;
        let line = u.line;
        let result = UserName::parse(&u.user)
            .map_err(Failure::from)
            .and_then(|name| {
                crate::require_account(&name)?;
                let e = Enrollment {
                    user: name,
                    secret: u.secret,
                    params: u.params,
                    last_counter: u.last_counter.map(TimeStep),
                    recovery: RecoveryCodes::Keep(Vec::new()),
                    replace: args.replace,
                    now: crate::now(),
                };
                ctx.root(|| store.enroll(e).map(|_| ()))
                    .map_err(already_enrolled_hint)
            });
        match result {
            Ok(()) => {
                imported += 1;
                say!(
                    "Imported {} ({}); no recovery codes yet: the user can make them with \
                     `totp-enroll recovery-codes`.",
                    u.user,
                    describe(&u.params, u.last_counter)
                );
            }
            Err(e @ Failure::System(_)) => return Err(e),
            Err(e) => {
                refused += 1;
                warn!("totp-enroll: {where_}: line {line}: {}: {e}", u.user);
            }
        }
    }
    if let Some(want) = &args.user {
        if !found {
            return Err(Failure::refused(format!("{where_}: no token for {want}")));
        }
    }
    say!("{imported} user(s) imported from {where_}.");
    if refused > 0 {
        return Err(Failure::refused(format!(
            "{refused} entry(ies) not imported (see above)"
        )));
    }
    Ok(())
}

/// `--from-state-dir DIR --from-key-file FILE`: every enrollment of DIR (or only `--user`),
/// with its counters and unused recovery codes, into the configured backend. Names are not
/// looked up in this host's accounts: they were accounts where the state directory was made,
/// and a fleet host need not have every account of the fleet.
fn state_dir(
    ctx: &Ctx,
    store: &Store,
    dir: &Path,
    key: &Path,
    args: &ImportArgs,
) -> Result<(), Failure> {
    let users =
        ctx.root(|| common::FilesBackend::open(dir).and_then(|b| common::Backend::users(&b)))?;
    let users: Vec<UserName> = match &args.user {
        Some(u) if users.contains(u) => vec![u.clone()],
        Some(u) => {
            return Err(Failure::refused(format!(
                "{u} has no enrollment in {}",
                dir.display()
            )))
        }
        None => users,
    };
    let (mut moved, mut refused, mut failed) = (0, 0, 0);
    for user in &users {
        match ctx.root(|| store.import_user(dir, key, user, args.replace)) {
            Ok(Some(s)) => {
                moved += 1;
                say!(
                    "Imported {user} from {} (TOTP, {}, {} digits, {} s); last used: {}; \
                     {} recovery code(s) left.",
                    dir.display(),
                    s.params.algorithm(),
                    s.params.digits(),
                    s.params.period(),
                    s.counters
                        .last_used
                        .map_or("never".to_owned(), crate::format_time),
                    s.recovery_codes_left
                );
            }
            // Removed from DIR since it was listed.
            Ok(None) => {
                refused += 1;
                say!(
                    "{user}: not imported: no longer enrolled in {}",
                    dir.display()
                );
            }
            Err(e @ Failure::System(_)) => {
                failed += 1;
                say!("{user}: not imported: {e}");
            }
            Err(e) => {
                refused += 1;
                say!("{user}: not imported: {}", already_enrolled_hint(e));
            }
        }
    }
    say!("{moved} imported, {refused} refused, {failed} failed.");
    if failed > 0 {
        Err(Failure::System(format!(
            "{failed} enrollment(s) not imported"
        )))
    } else if refused > 0 {
        Err(Failure::refused(format!(
            "{refused} enrollment(s) not imported"
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_authenticator_file() {
        let text = "R4NZEDL23KDE4553X4C47FEUZM\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\
                    \" STEP_SIZE 60\n\" DISALLOW_REUSE 28000000 28000001 99999999999\n\
                    \" TOTP_AUTH\n47511829\n89554714\n";
        let ga = parse_google_authenticator(text, 1_700_000_000).unwrap();
        assert_eq!(ga.params.period(), 60);
        assert_eq!(ga.params.digits(), 6);
        assert_eq!(ga.last_counter, Some(28_000_001));
        assert_eq!(ga.scratch_codes.len(), 2);
        assert_eq!(ga.scratch_codes[1].as_str(), "89554714");
        assert_eq!(ga.notes.len(), 2);
        assert_eq!(ga.secret.as_bytes().len(), 16);
    }

    #[test]
    fn google_authenticator_refusals() {
        let ok = "GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n";
        assert!(parse_google_authenticator(ok, 0).is_ok());
        for (bad, why) in [
            ("", "no secret"),
            ("GEZDGNBVGY3TQOJQ\n", "TOTP_AUTH"),
            (
                "GEZDGNBVGY3TQOJQ\n\" HOTP_COUNTER 1\n\" TOTP_AUTH\n",
                "HOTP",
            ),
            ("GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n1234567\n", "line 3"),
            (
                "GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n\" STEP_SIZE 0\n",
                "STEP_SIZE",
            ),
            ("not base32!\n\" TOTP_AUTH\n", "line 1"),
        ] {
            let err = parse_google_authenticator(bad, 0).err().unwrap();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(
                !err.contains("1234567") && !err.contains("base32!"),
                "{err}"
            );
        }
    }

    #[test]
    fn oath_usersfile_lines() {
        let text = "# comment\n\
                    HOTP/T30/6 alice - 3132333435363738393031323334353637383930\n\
                    HOTP/T60/8 bob 1234 3132333435363738393031323334353637383930 0\n\
                    HOTP carol - 3132333435363738393031323334353637383930\n\
                    HOTP/E/8 dave - 3132333435363738393031323334353637383930\n\
                    HOTP/T30 alice - 3132333435363738393031323334353637383930\n\
                    HOTP/T30 erin - 31323\n\
                    HOTP/T30 frank -\n\
                    XOTP/T30 gina - 3132333435363738393031323334353637383930\n\
                    HOTP/T30/9 hal - 3132333435363738393031323334353637383930\n\
                    HOTP ivan - 3132333435363738393031323334353637383930 41 359152 \
                    2024-01-02T03:04:05L\n\
                    HOTP jack - 3132333435363738393031323334353637383930 x\n\
                    HOTP/E/9 kim - 3132333435363738393031323334353637383930\n";
        let f = parse_oath_usersfile(text);
        let users: Vec<(&str, OtpKind, u8, Option<u64>)> = f
            .users
            .iter()
            .map(|u| {
                let p = u.params;
                (u.user.as_str(), p.kind(), p.digits(), u.last_counter)
            })
            .collect();
        assert_eq!(
            users,
            [
                ("alice", OtpKind::Totp, 6, None),
                ("bob", OtpKind::Totp, 8, None),
                ("carol", OtpKind::Hotp, 6, None),
                ("dave", OtpKind::Hotp, 8, None),
                ("ivan", OtpKind::Hotp, 6, Some(41)),
            ]
        );
        assert_eq!(f.users[1].params.period(), 60);
        assert_eq!(f.users[0].secret.as_bytes(), b"12345678901234567890");
        assert_eq!(f.errors, 6, "{:?}", f.warnings);
        // bob's PIN, alice's second token, six bad lines.
        assert_eq!(f.warnings.len(), 8, "{:?}", f.warnings);
        assert!(f.warnings.iter().all(|w| !w.contains("3132")));
    }

    #[test]
    fn a_line_missing_its_user_never_repeats_the_secret() {
        let secret = "3132333435363738393031323334353637383930";
        for line in [
            format!("HOTP/T30 {secret} - 1"),
            format!("HOTP {secret} - 0"),
            format!("HOTP/T30 {secret} -"),
            format!("HOTP/T30 \x1b[2J - {secret}"),
        ] {
            let f = parse_oath_usersfile(&line);
            assert!(f.users.is_empty(), "{line}");
            assert_eq!(f.errors, 1, "{line}: {:?}", f.warnings);
            assert!(
                f.warnings
                    .iter()
                    .all(|w| !w.contains("3132") && !w.contains('\u{1b}')),
                "{line}: {:?}",
                f.warnings
            );
        }
    }
}
