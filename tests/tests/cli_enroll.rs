//! Interactive enrollment with `totp-enroll`, driven through a real pseudo-terminal as root
//! on a temporary state directory: the secret and URI shown, the QR code that decodes back
//! to the URI, the confirmation code, and what is (or is not) saved.

mod cli_support;

use std::os::unix::fs::MetadataExt;

use cli_support::*;
use common::{Algorithm, OtpParams, Outcome};
use integration_tests::pam::{now, wrong_codes, Fixture, PAM_AUTH_ERR, PAM_SUCCESS};
use nix::sys::signal::Signal;

/// Root enrolls itself: shows secret and URI, answers with the right code.
fn enroll_root(f: &Fixture, extra: &[&str]) -> (Shown, Vec<String>, String) {
    let mut s = Session::enroll(f, extra);
    let shown = s.shown();
    s.send_line(&code_now(&shown.secret(), &f.params));
    let codes = s.recovery_codes();
    let (out, code, _) = s.finish();
    assert_eq!(code, Some(0), "{out}");
    (shown, codes, out)
}

#[test]
fn a_verifying_code_saves_a_root_owned_0600_state_file() {
    let f = Fixture::new();
    let (shown, codes, out) = enroll_root(&f, &[]);
    assert_root_0600(&f.state_dir.join("root"));
    assert_root_0600(&f.state_dir.join(".root.counters"));
    assert!(shown.uri.starts_with("otpauth://totp/"), "{}", shown.uri);
    assert!(
        shown.uri.contains(&format!("secret={}&", shown.secret_b32)),
        "Secret line and URI disagree: {} / {}",
        shown.secret_b32,
        shown.uri
    );
    // 160 bits.
    assert_eq!(shown.secret().as_bytes().len(), 20);
    assert_eq!(codes.len(), 10, "{out}");
    assert!(out.contains("now enrolled"), "{out}");
    // The confirmation code's step is last_counter: that code cannot log in again.
    let status = f
        .store()
        .status(&common::UserName::parse("root").unwrap())
        .unwrap()
        .unwrap();
    let step = f.params.step_at(now() as u64);
    assert!(
        status
            .counters
            .last_counter
            .is_some_and(|c| c + 1 >= step && c <= step + 1),
        "{:?}",
        status.counters
    );
}

#[test]
fn the_confirmation_code_cannot_be_used_to_log_in() {
    let f = Fixture::new();
    let mut s = Session::enroll(&f, &[]);
    let shown = s.shown();
    let code = code_now(&shown.secret(), &f.params);
    s.send_line(&code);
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(0), "{out}");
    // Its step is now last_counter: a replay, also if the clock has moved to the next
    // step meanwhile (window 1 still reaches it).
    let again = authenticate(&f.store(), "root", &code);
    assert!(matches!(again, Outcome::Replayed { .. }), "{again:?}");
}

#[test]
fn printed_recovery_codes_log_in_once_through_pam() {
    let f = Fixture::new();
    let (_, codes, _) = enroll_root(&f, &[]);
    let service = f.service("");
    for c in &codes[..3] {
        f.try_code(&service, "root", c).assert_code(PAM_SUCCESS);
        f.try_code(&service, "root", c).assert_code(PAM_AUTH_ERR);
    }
    // And through the store's transaction directly, in another form (no dash, lower case).
    let c = codes[3].replace('-', "").to_lowercase();
    assert!(matches!(
        authenticate(&f.store(), "root", &c),
        Outcome::RecoveryAccepted { remaining: 6, .. }
    ));
    // Spent: a replay.
    assert!(matches!(
        authenticate(&f.store(), "root", &c),
        Outcome::Replayed { .. }
    ));
}

#[test]
fn three_wrong_codes_save_nothing_and_never_show_the_right_one() {
    let f = Fixture::new();
    let mut s = Session::enroll(&f, &[]);
    let shown = s.shown();
    let secret = shown.secret();
    let t = now() as u64;
    let right: Vec<String> = (0..4)
        .map(|i| common::totp::code_at(&secret, &f.params, t - 30 + i * 30).to_string())
        .collect();
    // Two well-formed wrong codes and one too short.
    let mut wrong = wrong_codes(&secret, &f.params, 2);
    wrong.push("12345".to_owned());
    let before_answers = s.text().len();
    for w in &wrong {
        s.send_line(w);
    }
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("nothing was saved"), "{out}");
    assert_eq!(out.matches("Not accepted").count(), 3, "{out}");
    for r in &right {
        assert!(
            !out[before_answers..].contains(r.as_str()),
            "the right code {r} was shown"
        );
    }
    assert!(!has_files_for(&f.state_dir, "root"), "state was written");
}

#[test]
fn an_over_long_answer_is_one_wrong_attempt() {
    let f = Fixture::new();
    let mut s = Session::enroll(&f, &[]);
    let shown = s.shown();
    // Longer than the CLI's 1024-byte line limit, shorter than the pty's 4095.
    s.send_line(&"1".repeat(3000));
    s.expect("Not accepted");
    s.send_line(&code_now(&shown.secret(), &f.params));
    let codes = s.recovery_codes();
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(0), "{out}");
    assert_eq!(out.matches("Not accepted").count(), 1, "{out}");
    assert!(!codes.is_empty(), "{out}");
    assert_root_0600(&f.state_dir.join("root"));
}

#[test]
fn ctrl_c_at_the_code_prompt_saves_nothing() {
    let f = Fixture::new();
    let mut s = Session::enroll(&f, &[]);
    s.shown();
    s.control('c');
    let (out, status, signal) = s.finish();
    assert_eq!((status, signal), (None, Some(Signal::SIGINT)), "{out}");
    assert!(!has_files_for(&f.state_dir, "root"));
}

#[test]
fn ctrl_c_after_a_wrong_code_saves_nothing() {
    let f = Fixture::new();
    let mut s = Session::enroll(&f, &[]);
    s.shown();
    s.send_line("0");
    s.expect("Not accepted");
    s.control('c');
    let (out, _, signal) = s.finish();
    assert_eq!(signal, Some(Signal::SIGINT), "{out}");
    assert!(!has_files_for(&f.state_dir, "root"));
}

#[test]
fn end_of_input_saves_nothing() {
    let f = Fixture::new();
    let mut s = Session::enroll(&f, &[]);
    s.shown();
    s.control('d');
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("nothing was saved"), "{out}");
    assert!(!has_files_for(&f.state_dir, "root"));
}

#[test]
fn utf8_qr_code_decodes_to_the_printed_uri() {
    let f = Fixture::new();
    let mut s = Session::enroll(&f, &["--qr", "utf8"]);
    let shown = s.shown();
    let screen = s.text();
    s.control('c');
    s.finish();
    assert!(
        !screen.contains('\x1b'),
        "utf8 mode uses no escape sequences"
    );
    // Drawn for a light-on-dark terminal: glyphs are the light modules.
    let modules = qr_modules(&screen, false);
    assert_quiet_zone(&modules);
    assert_eq!(decode_qr(&modules, true), vec![shown.uri.clone()]);
}

#[test]
fn ansi_qr_code_decodes_to_the_printed_uri_on_dark_and_light_terminals() {
    let f = Fixture::new();
    let mut s = Session::enroll(&f, &["--qr", "ansi"]);
    let shown = s.shown();
    let screen = s.text();
    s.control('c');
    s.finish();
    assert!(
        screen.contains("\x1b[30;107m"),
        "ansi mode sets black on white"
    );
    let modules = qr_modules(&screen, true);
    assert_quiet_zone(&modules);
    for background_dark in [true, false] {
        assert_eq!(
            decode_qr(&modules, background_dark),
            vec![shown.uri.clone()],
            "background dark: {background_dark}"
        );
    }
}

/// Four light modules on every side, and square (the last text line may carry a half row
/// of terminal background below the code).
fn assert_quiet_zone(m: &[Vec<bool>]) {
    let w = m[0].len();
    assert!(
        m.len() == w || m.len() == w + 1,
        "not square: {w}x{}",
        m.len()
    );
    for (y, row) in m[..w].iter().enumerate() {
        for (x, dark) in row.iter().enumerate() {
            if x < 4 || y < 4 || x >= w - 4 || y >= w - 4 {
                assert!(!dark, "dark module in the quiet zone at {x},{y}");
            }
        }
    }
}

#[test]
fn qr_none_shows_only_the_text() {
    let f = Fixture::new();
    let mut s = Session::enroll(&f, &["--qr", "none"]);
    let shown = s.shown();
    let screen = s.text();
    s.control('c');
    s.finish();
    assert!(!screen.contains("Scan this QR code"), "{screen}");
    assert!(!screen.contains('\u{2588}'));
    assert!(shown.uri.starts_with("otpauth://totp/"));
}

#[test]
fn a_too_narrow_terminal_gets_the_text_and_a_reason() {
    let f = Fixture::new();
    let mut s = Session::spawn(&binary(), &path_args(&f), 30);
    let shown = s.shown();
    let screen = s.text();
    s.control('c');
    s.finish();
    assert!(screen.contains("too narrow"), "{screen}");
    assert!(!screen.contains('\u{2588}'), "{screen}");
    // The text is all there: enrolling by hand works.
    assert!(shown.secret().as_bytes().len() == 20);
}

#[test]
fn without_a_terminal_enrollment_is_refused_and_points_to_import() {
    let f = Fixture::new();
    let r = run(&f, &[], b"123456\n");
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("not a terminal") && r.stderr.contains("import"),
        "{r:?}"
    );
    assert!(!r.stdout.contains("Secret:"), "{r:?}");
    assert!(!has_files_for(&f.state_dir, "root"));
}

#[test]
fn an_enrolled_user_is_refused_without_replace() {
    let f = Fixture::new();
    f.enroll("root", 2);
    let before = std::fs::read(f.state_dir.join("root")).unwrap();
    let mut s = Session::enroll(&f, &[]);
    let (out, status, _) = {
        s.expect("already enrolled");
        s.finish()
    };
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("--replace"), "{out}");
    assert!(!out.contains("Secret:"), "{out}");
    assert_eq!(std::fs::read(f.state_dir.join("root")).unwrap(), before);
}

#[test]
fn root_replaces_without_a_code_and_the_old_secret_stops_working() {
    let f = Fixture::new();
    f.enroll("root", 2);
    let (shown, _, _) = enroll_root(&f, &["--replace"]);
    let store = f.store();
    let old = f.code_at(now() + 30);
    let new = common::totp::code_at(&shown.secret(), &f.params, now() as u64 + 30).to_string();
    if old != new {
        assert!(matches!(
            authenticate(&store, "root", &old),
            Outcome::Rejected { .. }
        ));
    }
    assert!(matches!(
        authenticate(&store, "root", &new),
        Outcome::Accepted { .. }
    ));
}

#[test]
fn issuer_and_code_parameters_come_from_the_config() {
    let f = Fixture::new();
    std::fs::write(
        &f.config,
        "issuer = \"Example Corp\"\nalgorithm = \"SHA256\"\ndigits = 8\nperiod = 60\nrecovery_codes = 4\n",
    )
    .unwrap();
    let mut s = Session::enroll(&f, &[]);
    let shown = s.shown();
    assert_eq!(
        shown.uri,
        format!(
            "otpauth://totp/Example%20Corp:root?secret={}&issuer=Example%20Corp&algorithm=SHA256&digits=8&period=60",
            shown.secret_b32
        )
    );
    let params = OtpParams::new(Algorithm::SHA256, 8, 60).unwrap();
    s.send_line(&code_now(&shown.secret(), &params));
    let codes = s.recovery_codes();
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(0), "{out}");
    assert_eq!(codes.len(), 4);
    let st = f
        .store()
        .status(&common::UserName::parse("root").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(st.params, params);
}

#[test]
fn the_issuer_defaults_to_the_host_name() {
    let f = Fixture::new();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let mut s = Session::enroll(&f, &["--qr", "none"]);
    let shown = s.shown();
    s.control('c');
    s.finish();
    assert!(
        shown
            .uri
            .starts_with(&format!("otpauth://totp/{host}:root?")),
        "{}",
        shown.uri
    );
    assert!(
        shown.uri.ends_with(&format!("&issuer={host}")),
        "{}",
        shown.uri
    );
}

#[test]
fn root_enrolls_another_account_but_not_a_missing_one() {
    let f = Fixture::new();
    let (shown, _, _) = enroll_root(&f, &["--user", "daemon"]);
    assert!(shown.uri.contains(":daemon?"), "{}", shown.uri);
    assert_root_0600(&f.state_dir.join("daemon"));
    assert!(!has_files_for(&f.state_dir, "root"));

    let mut s = Session::enroll(&f, &["--user", "no-such-account-xyz"]);
    s.expect("no account named");
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(1), "{out}");
}

#[test]
fn root_creates_a_missing_state_directory_and_host_key() {
    let f = Fixture::new();
    std::fs::remove_file(&f.key_file).unwrap();
    std::fs::remove_dir(&f.state_dir).unwrap();
    enroll_root(&f, &[]);
    assert_root_0600(&f.key_file);
    assert_eq!(std::fs::metadata(&f.key_file).unwrap().len(), 32);
    let m = std::fs::metadata(&f.state_dir).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o700));
    assert_root_0600(&f.state_dir.join("root"));
}
