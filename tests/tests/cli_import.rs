//! `totp-enroll import` as root on a temporary state directory: a file written by Debian's
//! `google-authenticator`, a pam_oath usersfile, a secret on standard input. Afterwards
//! codes computed by `oathtool` for those secrets log in.

mod cli_support;

use std::path::Path;
use std::process::Command;

use cli_support::*;
use common::Outcome;
use integration_tests::pam::{run_with_timeout, Fixture};

/// `oathtool ARGS` now (ARGS start with `--totp` or `--totp=ALG`).
fn oathtool(args: &[&str]) -> String {
    assert!(
        Path::new("/usr/bin/oathtool").exists(),
        "oathtool is missing (Debian package oathtool)"
    );
    let mut c = Command::new("/usr/bin/oathtool");
    c.args(args);
    let r = run_with_timeout(c, b"", TIMEOUT);
    assert!(r.success(), "oathtool {args:?}: {r:?}");
    r.stdout.trim().to_owned()
}

/// Writes a `.google_authenticator` file with the real CLI, non-interactively.
fn google_authenticator(path: &Path, step: u32, scratch: u32) -> String {
    assert!(
        Path::new("/usr/bin/google-authenticator").exists(),
        "google-authenticator is missing (Debian package libpam-google-authenticator)"
    );
    let mut c = Command::new("/usr/bin/google-authenticator");
    c.args([
        "-t", "-d", "-f", "-C", "-q", "-Q", "NONE", "-r", "3", "-R", "30", "-w", "3",
    ])
    .arg(format!("--step-size={step}"))
    .arg(format!("--emergency-codes={scratch}"))
    .arg(format!("--secret={}", path.display()));
    let r = run_with_timeout(c, b"", TIMEOUT);
    assert!(r.success(), "google-authenticator: {r:?}");
    std::fs::read_to_string(path).unwrap()
}

fn accepted(o: &Outcome) -> bool {
    matches!(o, Outcome::Accepted { .. })
}

#[test]
fn google_authenticator_file_with_its_scratch_codes() {
    let f = Fixture::new();
    let file = f.dir.path().join("google_authenticator");
    let text = google_authenticator(&file, 30, 5);
    let secret = text.lines().next().unwrap().to_owned();
    let scratch: Vec<&str> = text
        .lines()
        .filter(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(scratch.len(), 5, "{text}");
    let r = run_ok(
        &f,
        &[
            "import",
            "--user",
            "daemon",
            "--from-google-authenticator",
            &file.display().to_string(),
        ],
        b"",
    );
    assert!(r.stdout.contains("5 scratch code(s)"), "{r:?}");
    for s in &scratch {
        assert!(!r.stdout.contains(s) && !r.stderr.contains(s), "{r:?}");
    }
    assert!(!r.stdout.contains(&secret) && !r.stderr.contains(&secret));
    assert_root_0600(&f.state_dir.join("daemon"));
    let store = f.store();
    let code = oathtool(&["--totp", "-b", &secret]);
    assert!(accepted(&authenticate(&store, "daemon", &code)));
    // Scratch codes are recovery codes now, each good once.
    assert!(matches!(
        authenticate(&store, "daemon", scratch[2]),
        Outcome::RecoveryAccepted { remaining: 4, .. }
    ));
    // A spent one presented again is a replay.
    assert!(matches!(
        authenticate(&store, "daemon", scratch[2]),
        Outcome::Replayed { .. }
    ));
}

#[test]
fn google_authenticator_step_size_is_kept() {
    let f = Fixture::new();
    let file = f.dir.path().join("ga60");
    let text = google_authenticator(&file, 60, 0);
    assert!(text.contains("\" STEP_SIZE 60"), "{text}");
    let secret = text.lines().next().unwrap().to_owned();
    let file = file.display().to_string();
    run_ok(
        &f,
        &[
            "import",
            "--user",
            "bin",
            "--from-google-authenticator",
            &file,
        ],
        b"",
    );
    let st = run_ok(&f, &["status", "--user", "bin", "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["period"], 60);
    assert_eq!(v["recovery_codes_left"], 0);
    let code = oathtool(&["--totp", "-s", "60", "-b", &secret]);
    assert!(accepted(&authenticate(&f.store(), "bin", &code)));
}

#[test]
fn a_counter_based_google_authenticator_file_is_refused() {
    let f = Fixture::new();
    let file = f.dir.path().join("hotp");
    std::fs::write(&file, "GEZDGNBVGY3TQOJQ\n\" HOTP_COUNTER 1\n12345678\n").unwrap();
    let r = run(
        &f,
        &[
            "import",
            "--user",
            "daemon",
            "--from-google-authenticator",
            &file.display().to_string(),
        ],
        b"",
    );
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(r.stderr.contains("HOTP"), "{r:?}");
    assert!(!has_files_for(&f.state_dir, "daemon"));
}

#[test]
fn oath_usersfile_totp_users_with_their_digits_and_period() {
    let f = Fixture::new();
    let hex6 = "3132333435363738393031323334353637383930";
    let hex8 = "a1b2c3d4e5f60718293a4b5c6d7e8f9011223344";
    let file = f.dir.path().join("users.oath");
    std::fs::write(
        &file,
        format!(
            "# pam_oath usersfile\n\
             HOTP/T30/6 daemon - {hex6}\n\
             HOTP/T60/8 bin - {hex8} 0\n"
        ),
    )
    .unwrap();
    let r = run_ok(
        &f,
        &[
            "import",
            "--from-oath-usersfile",
            &file.display().to_string(),
        ],
        b"",
    );
    assert!(r.stdout.contains("2 user(s) imported"), "{r:?}");
    assert!(!r.stdout.contains(hex6) && !r.stderr.contains(hex6));
    let store = f.store();
    assert!(accepted(&authenticate(
        &store,
        "daemon",
        &oathtool(&["--totp", hex6])
    )));
    let code = oathtool(&["--totp", "-d", "8", "-s", "60", hex8]);
    assert_eq!(code.len(), 8);
    assert!(accepted(&authenticate(&store, "bin", &code)));
}

#[test]
fn secret_from_standard_input_with_algorithm_digits_and_period() {
    let f = Fixture::new();
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let r = run_ok(
        &f,
        &[
            "import",
            "--user",
            "daemon",
            "--secret-stdin",
            "--algorithm",
            "SHA256",
            "--digits",
            "8",
            "--period",
            "60",
        ],
        format!("{secret}\n").as_bytes(),
    );
    assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
    let codes = recovery_codes_in(&r.stdout);
    assert_eq!(codes.len(), 10, "{r:?}");
    let store = f.store();
    let code = oathtool(&["--totp=sha256", "-d", "8", "-s", "60", "-b", secret]);
    assert!(accepted(&authenticate(&store, "daemon", &code)));
    assert!(matches!(
        authenticate(&store, "daemon", &codes[9]),
        Outcome::RecoveryAccepted { remaining: 9, .. }
    ));
}

#[test]
fn a_malformed_secret_is_refused_without_repeating_it() {
    let f = Fixture::new();
    let r = run(
        &f,
        &["import", "--user", "daemon", "--secret-stdin"],
        b"NOT-BASE32-!!-SECRETISH\n",
    );
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(!r.stderr.contains("SECRETISH"), "{r:?}");
    assert!(!has_files_for(&f.state_dir, "daemon"));
}

#[test]
fn import_refuses_an_enrolled_user_unless_replace() {
    let f = Fixture::new();
    f.enroll("daemon", 1);
    let before = std::fs::read(f.state_dir.join("daemon")).unwrap();
    let secret = b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n";
    let r = run(
        &f,
        &["import", "--user", "daemon", "--secret-stdin"],
        secret,
    );
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(r.stderr.contains("already enrolled"), "{r:?}");
    assert_eq!(std::fs::read(f.state_dir.join("daemon")).unwrap(), before);
    run_ok(
        &f,
        &["import", "--user", "daemon", "--secret-stdin", "--replace"],
        secret,
    );
    let code = oathtool(&["--totp", "-b", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"]);
    assert!(accepted(&authenticate(&f.store(), "daemon", &code)));
}

#[test]
fn a_secret_typed_at_a_terminal_is_not_echoed_and_echo_comes_back() {
    let f = Fixture::new();
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("stty echo && \"$0\" \"$@\"; echo \"exit=$?\"; stty -a")
        .arg(binary())
        .args(path_args(&f))
        .args(["import", "--user", "daemon", "--secret-stdin"]);
    let mut s = Session::spawn_command(cmd);
    s.expect("not shown): ");
    s.send_line(secret);
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("exit=0"), "{out}");
    assert!(!out.contains(secret), "the secret was echoed: {out}");
    // The terminal has echo (and Ctrl-C) again afterwards.
    let modes = out.split("exit=0").nth(1).unwrap();
    assert!(
        modes.split_whitespace().any(|w| w == "echo")
            && modes.split_whitespace().any(|w| w == "isig"),
        "{modes}"
    );
    let code = oathtool(&["--totp", "-b", secret]);
    assert!(accepted(&authenticate(&f.store(), "daemon", &code)));
}

/// `oathtool --hotp` for counter `counter` of a hex secret, `digits` long.
fn hotp(hex: &str, digits: u8, counter: u64) -> String {
    oathtool(&[
        "--hotp",
        "-d",
        &digits.to_string(),
        "-c",
        &counter.to_string(),
        hex,
    ])
}

#[test]
fn oath_usersfile_hotp_users_count_on_after_the_counter_pam_oath_accepted() {
    let f = Fixture::new();
    let hex6 = "3132333435363738393031323334353637383930";
    let hex8 = "a1b2c3d4e5f60718293a4b5c6d7e8f9011223344";
    let file = f.dir.path().join("users.oath");
    // As pam_oath leaves it: `sys` last logged in with counter 41 (its OTP and time
    // follow), `bin` never did (no counter field).
    std::fs::write(
        &file,
        format!(
            "HOTP\tsys\t-\t{hex6}\t41\t{}\t2024-01-02T03:04:05L\n\
             HOTP/E/8 bin - {hex8}\n",
            hotp(hex6, 6, 41)
        ),
    )
    .unwrap();
    let r = run_ok(
        &f,
        &[
            "import",
            "--from-oath-usersfile",
            &file.display().to_string(),
        ],
        b"",
    );
    assert!(r.stdout.contains("2 user(s) imported"), "{r:?}");
    assert!(
        r.stdout.contains("HOTP, SHA1, 6 digits, next counter 42"),
        "{r:?}"
    );
    assert!(!r.stdout.contains(hex6) && !r.stderr.contains(hex6));
    assert_root_0600(&f.state_dir.join("sys"));
    let store = f.store();
    // The code pam_oath accepted last, and any before it, never log in again.
    for c in [41, 40, 35] {
        assert!(
            matches!(
                authenticate(&store, "sys", &hotp(hex6, 6, c)),
                Outcome::Replayed { .. }
            ),
            "counter {c}"
        );
    }
    // The token's next presses do, once each, skipping ahead within hotp_window.
    assert!(accepted(&authenticate(&store, "sys", &hotp(hex6, 6, 42))));
    assert!(matches!(
        authenticate(&store, "sys", &hotp(hex6, 6, 42)),
        Outcome::Replayed { .. }
    ));
    assert!(accepted(&authenticate(&store, "sys", &hotp(hex6, 6, 50))));
    assert!(!accepted(&authenticate(&store, "sys", &hotp(hex6, 6, 61))));
    // `bin` starts at counter 0, with 8 digits.
    let code = hotp(hex8, 8, 0);
    assert_eq!(code.len(), 8);
    assert!(accepted(&authenticate(&store, "bin", &code)));
    let st = run_ok(&f, &["status", "--user", "sys", "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["kind"], "HOTP");
    assert_eq!(v["next_counter"], 51);
    assert_eq!(v["period"], serde_json::Value::Null);
    let st = run_ok(&f, &["status", "--user", "sys"], b"");
    assert!(
        st.stdout
            .contains("yes (HOTP, SHA1, 6 digits, next counter 51)"),
        "{st:?}"
    );
}

#[test]
fn hotp_secret_from_standard_input_with_its_next_counter() {
    let f = Fixture::new();
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let r = run_ok(
        &f,
        &[
            "import",
            "--user",
            "daemon",
            "--hotp",
            "--counter",
            "7",
            "--secret-stdin",
        ],
        format!("{secret}\n").as_bytes(),
    );
    assert!(
        r.stdout.contains("HOTP, SHA1, 6 digits, next counter 7"),
        "{r:?}"
    );
    assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
    let store = f.store();
    let code = |c: u64| oathtool(&["--hotp", "-b", "-c", &c.to_string(), secret]);
    assert!(matches!(
        authenticate(&store, "daemon", &code(6)),
        Outcome::Replayed { .. }
    ));
    assert!(accepted(&authenticate(&store, "daemon", &code(7))));
    assert!(matches!(
        authenticate(&store, "daemon", &code(7)),
        Outcome::Replayed { .. }
    ));
    let st = run_ok(&f, &["status", "--user", "daemon"], b"");
    assert!(st.stdout.contains("next counter 8"), "{st:?}");
    // A TOTP enrollment says so too.
    run_ok(
        &f,
        &["import", "--user", "bin", "--secret-stdin"],
        format!("{secret}\n").as_bytes(),
    );
    let st = run_ok(&f, &["status", "--user", "bin", "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["period"].as_u64()),
        (Some("TOTP"), Some(30))
    );
}
