//! pam_totp.so loaded by the real libpam (`pam_start_confdir`) from a temporary config dir,
//! with a temporary state dir and host key and a scripted conversation. One test per row of
//! SPEC.md's return-code table and per behaviour around it.
//!
//! A lone `required` module that returns PAM_IGNORE makes libpam answer PAM_PERM_DENIED, so
//! tests that must see PAM_IGNORE itself stack `pam_debug.so` after the module with
//! `ignore=ignore`: the stack then returns pam_debug's PAM_CRED_UNAVAIL if and only if the
//! module ignored, PAM_SUCCESS if it succeeded, and the module's own error otherwise.
//!
//! Not covered here: the "panic caught" row (PAM_SYSTEM_ERR). No input reaches a panic
//! without a test hook, which the module must not have; the unit test
//! `pam_totp::tests::a_panic_is_system_err` drives it through the same guarded entry.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::UserName;
use integration_tests::pam::*;

const PAM_CRED_UNAVAIL: i32 = 15;
const RHOST: &str = "203.0.113.9";

fn enrolled() -> (Fixture, String) {
    let f = Fixture::new();
    f.enroll("alice", 3);
    let s = f.service("");
    (f, s)
}

/// Waits out the last seconds of a 30 s step so that a code computed now is verified in
/// the same step.
fn away_from_step_edge() {
    while now() % 30 >= 27 {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A stack that turns the module's PAM_IGNORE into pam_debug's PAM_CRED_UNAVAIL.
fn probing_service(f: &Fixture, extra: &str) -> String {
    let ctl = "[success=done ignore=ignore default=die]";
    f.service_with(&format!(
        "auth {ctl} {{module}} {{base}} {extra}\n\
         auth required pam_debug.so auth=cred_unavail cred=cred_unavail\n\
         account {ctl} {{module}} {{base}} {extra}\n\
         account required pam_debug.so acct=cred_unavail\n\
         session {ctl} {{module}} {{base}} {extra}\n\
         session required pam_debug.so open_session=cred_unavail close_session=cred_unavail\n\
         password {ctl} {{module}} {{base}} {extra}\n\
         password required pam_debug.so prechauthtok=cred_unavail chauthtok=cred_unavail\n"
    ))
}

fn failures(f: &Fixture, user: &str) -> u32 {
    f.store()
        .status(&UserName::parse(user).unwrap())
        .unwrap()
        .unwrap()
        .counters
        .failures
}

// ---- valid, unused code: PAM_SUCCESS ----

#[test]
fn valid_code_succeeds_with_echo_off_prompt() {
    let (f, s) = enrolled();
    away_from_step_edge();
    let a = f.try_code(&s, "alice", f.code_at(now()));
    a.assert_code(PAM_SUCCESS);
    assert_eq!(
        a.prompts(),
        vec![Message {
            style: PAM_PROMPT_ECHO_OFF,
            text: "Verification code: ".into()
        }]
    );
    assert!(a.errors().is_empty() && a.infos().is_empty(), "{a:?}");
}

#[test]
fn echo_option_prompts_with_echo_on() {
    let f = Fixture::new();
    f.enroll("alice", 0);
    let s = f.service("echo");
    away_from_step_edge();
    let a = f.try_code(&s, "alice", f.code_at(now()));
    a.assert_code(PAM_SUCCESS);
    assert_eq!(a.prompts()[0].style, PAM_PROMPT_ECHO_ON);
}

#[test]
fn spaces_in_a_code_are_ignored() {
    let (f, s) = enrolled();
    away_from_step_edge();
    let c = f.code_at(now());
    f.try_code(&s, "alice", format!("{} {}", &c[..3], &c[3..]))
        .assert_code(PAM_SUCCESS);
}

#[test]
fn success_after_rejections_tells_their_count_and_last_rhost() {
    let (f, s) = enrolled();
    for host in ["192.0.2.1", "192.0.2.2"] {
        f.attempt(&s, b"alice", Some(host), vec![Reply::text(f.wrong_code())])
            .assert_code(PAM_AUTH_ERR);
    }
    away_from_step_edge();
    let a = f.try_code(&s, "alice", f.code_at(now()));
    a.assert_code(PAM_SUCCESS);
    let infos = a.infos();
    assert_eq!(infos.len(), 1, "{infos:?}");
    assert!(
        infos[0].starts_with(
            "2 failed verification attempts since your last login; the last from 192.0.2.2 at "
        ),
        "{infos:?}"
    );
    // Told once: the next success is quiet.
    let a = f.try_code(&s, "alice", f.code_at(now() + 30));
    a.assert_code(PAM_SUCCESS);
    assert!(a.infos().is_empty(), "{a:?}");
}

// ---- valid recovery code: PAM_SUCCESS, "recovery code used, N left" ----

#[test]
fn recovery_code_is_accepted_once_and_burnt() {
    let (f, s) = enrolled();
    let codes = f.enroll("alice", 3);
    let a = f.try_code(&s, "alice", &codes[0]);
    a.assert_code(PAM_SUCCESS);
    assert_eq!(a.infos(), vec!["recovery code used, 2 left"]);

    // Spent: a replay, warned about like a reused TOTP code and counted as a failure.
    let again = f.try_code(&s, "alice", &codes[0]);
    again.assert_code(PAM_AUTH_ERR);
    let errors = again.errors();
    assert_eq!(errors.len(), 1, "{again:?}");
    assert!(errors[0].contains("already used"), "{errors:?}");
    assert!(errors[0].contains("may be compromised"), "{errors:?}");
    assert_eq!(
        failures(&f, "alice"),
        1,
        "a spent recovery code counts as a failure"
    );

    // Any case, no separator.
    let a = f.try_code(&s, "alice", codes[1].replace('-', "").to_lowercase());
    a.assert_code(PAM_SUCCESS);
    assert_eq!(a.infos().last().unwrap(), "recovery code used, 1 left");
}

// ---- wrong code: PAM_AUTH_ERR ----

#[test]
fn wrong_code_is_auth_err_and_counted() {
    let (f, s) = enrolled();
    let a = f.try_code(&s, "alice", f.wrong_code());
    a.assert_code(PAM_AUTH_ERR);
    assert!(a.errors().is_empty(), "{a:?}");
    assert_eq!(failures(&f, "alice"), 1);
}

#[test]
fn hostile_inputs_are_wrong_codes() {
    let f = Fixture::new();
    f.enroll("alice", 3);
    let s = f.service("max_failures=0");
    away_from_step_edge();
    let code = f.code_at(now());
    let inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"abcdef".to_vec(),
        b"ABCDE-FGHJK".to_vec(),
        vec![b'a'; 10 * 1024],
        vec![b'7'; 10 * 1024],
        vec![0xff, 0xfe, 0xc3, 0x28, b'1', b'2'],
        format!("+{}", &code[1..]).into_bytes(),
        format!("+{code}").into_bytes(),
        format!("{code}0").into_bytes(),
        format!("-{code}").into_bytes(),
        b"%s%n%x".to_vec(),
    ];
    let n = inputs.len() as u32;
    for input in inputs {
        let a = f.try_code(&s, "alice", &input);
        assert_eq!(
            code_name(a.code),
            code_name(PAM_AUTH_ERR),
            "input {:?}",
            String::from_utf8_lossy(&input[..input.len().min(20)])
        );
    }
    assert_eq!(
        failures(&f, "alice"),
        n,
        "each counted as one failed attempt"
    );
    // And the real code still works afterwards: nothing else changed.
    f.try_code(&s, "alice", &code).assert_code(PAM_SUCCESS);
}

// ---- replay: PAM_AUTH_ERR with a warning ----

#[test]
fn replayed_code_is_refused_with_a_compromise_warning() {
    let (f, s) = enrolled();
    away_from_step_edge();
    let code = f.code_at(now());
    f.try_code(&s, "alice", &code).assert_code(PAM_SUCCESS);
    let a = f.try_code(&s, "alice", &code);
    a.assert_code(PAM_AUTH_ERR);
    let errors = a.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("already used"), "{errors:?}");
    assert!(errors[0].contains("may be compromised"), "{errors:?}");
    assert_eq!(failures(&f, "alice"), 1, "a replay counts as a failure");
}

#[test]
fn code_of_an_earlier_step_than_the_last_accepted_is_a_replay() {
    let (f, s) = enrolled();
    away_from_step_edge();
    let t = now();
    f.try_code(&s, "alice", f.code_at(t + 30))
        .assert_code(PAM_SUCCESS);
    let a = f.try_code(&s, "alice", f.code_at(t));
    a.assert_code(PAM_AUTH_ERR);
    assert!(a.errors()[0].contains("already used"), "{a:?}");
}

// ---- locked: PAM_MAXTRIES, "too many failed attempts; locked until ..." ----

#[test]
fn lockout_after_max_failures_then_unlock_by_time() {
    let f = Fixture::new();
    f.enroll("alice", 0);
    // The lock lasts 4 s from a whole second: at least 3 s to see it, and the three
    // failures and the locked attempt all fall inside one time step.
    let s = f.service("max_failures=3 lockout_secs=4");
    away_from_step_edge();
    for i in 1..=3 {
        let a = f.try_code(&s, "alice", f.wrong_code());
        // The failure that locks is still a wrong code: AUTH_ERR, with the lock announced.
        a.assert_code(PAM_AUTH_ERR);
        let errors = a.errors();
        if i < 3 {
            assert!(errors.is_empty(), "{errors:?}");
        } else {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with("too many failed attempts; locked until "),
                "{errors:?}"
            );
            assert!(errors[0].ends_with('Z'), "{errors:?}");
        }
    }
    // Even a valid code is refused while locked.
    let a = f.try_code(&s, "alice", f.code_at(now()));
    a.assert_code(PAM_MAXTRIES);
    assert!(
        a.errors()[0].starts_with("too many failed attempts; locked until "),
        "{a:?}"
    );

    std::thread::sleep(Duration::from_millis(4100));
    away_from_step_edge();
    let a = f.try_code(&s, "alice", f.code_at(now()));
    a.assert_code(PAM_SUCCESS);
    assert!(
        a.infos()[0].starts_with("3 failed verification attempts"),
        "{a:?}"
    );
}

#[test]
fn each_lock_without_a_success_between_lasts_twice_as_long_up_to_lockout_max_secs() {
    let f = Fixture::new();
    f.enroll("alice", 0);
    let s = f.service("max_failures=1 lockout_secs=1 lockout_max_secs=3");
    let lock_len = || {
        let st = f
            .store()
            .status(&UserName::parse("alice").unwrap())
            .unwrap()
            .unwrap();
        st.counters.locked_until.unwrap() - st.counters.last_rejected_at.unwrap()
    };
    let wait_unlocked = || {
        let st = f
            .store()
            .status(&UserName::parse("alice").unwrap())
            .unwrap()
            .unwrap();
        while now() < st.counters.locked_until.unwrap() {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut lengths = Vec::new();
    for _ in 0..4 {
        f.try_code(&s, "alice", f.wrong_code())
            .assert_code(PAM_AUTH_ERR);
        lengths.push(lock_len());
        wait_unlocked();
    }
    assert_eq!(lengths, vec![1, 2, 3, 3]);
    // A success resets it.
    away_from_step_edge();
    f.try_code(&s, "alice", f.code_at(now()))
        .assert_code(PAM_SUCCESS);
    f.try_code(&s, "alice", f.wrong_code())
        .assert_code(PAM_AUTH_ERR);
    assert_eq!(lock_len(), 1);
}

#[test]
fn max_failures_zero_never_locks() {
    let f = Fixture::new();
    f.enroll("alice", 0);
    let s = f.service("max_failures=0");
    for _ in 0..8 {
        f.try_code(&s, "alice", f.wrong_code())
            .assert_code(PAM_AUTH_ERR);
    }
    away_from_step_edge();
    f.try_code(&s, "alice", f.code_at(now()))
        .assert_code(PAM_SUCCESS);
}

#[test]
fn default_lockout_is_five_failures() {
    let (f, s) = enrolled();
    for _ in 0..5 {
        f.try_code(&s, "alice", f.wrong_code())
            .assert_code(PAM_AUTH_ERR);
    }
    f.try_code(&s, "alice", "000000").assert_code(PAM_MAXTRIES);
}

// ---- not enrolled ----

#[test]
fn not_enrolled_with_nullok_is_ignored() {
    let f = Fixture::new();
    let s = probing_service(&f, "nullok");
    let a = f.try_code(&s, "bob", "123456");
    assert_eq!(
        code_name(a.code),
        code_name(PAM_CRED_UNAVAIL),
        "PAM_IGNORE expected: {a:?}"
    );
    // pam_debug announces itself with a PAM_TEXT_INFO; the module says nothing.
    assert!(
        a.prompts().is_empty(),
        "no prompt for a user who never enrolled: {a:?}"
    );
    assert!(a.errors().is_empty(), "{a:?}");
}

#[test]
fn nullok_does_not_let_an_enrolled_user_through() {
    let f = Fixture::new();
    f.enroll("alice", 0);
    let s = probing_service(&f, "nullok");
    f.try_code(&s, "alice", f.wrong_code())
        .assert_code(PAM_AUTH_ERR);
}

#[test]
fn not_enrolled_without_nullok_is_auth_err_with_a_message() {
    let (f, s) = enrolled();
    let a = f.try_code(&s, "bob", "123456");
    a.assert_code(PAM_AUTH_ERR);
    assert_eq!(
        a.errors(),
        vec!["two-factor authentication is not set up for this account"]
    );
    assert!(a.prompts().is_empty());
}

#[test]
fn nullok_from_the_config_file() {
    let f = Fixture::new();
    std::fs::write(&f.config, "nullok = true\n").unwrap();
    let s = probing_service(&f, "");
    let a = f.try_code(&s, "bob", "123456");
    assert_eq!(code_name(a.code), code_name(PAM_CRED_UNAVAIL));
}

// ---- invalid user name: PAM_USER_UNKNOWN ----

#[test]
fn invalid_user_names_are_unknown() {
    let (f, s) = enrolled();
    let long = vec![b'a'; 10 * 1024];
    for name in [
        b"../../etc/shadow".as_slice(),
        b"",
        &long,
        b"alice\n",
        b"ali\nce",
        b"\xff\xfe",
        b".alice.counters",
        b"-alice",
        b"a b",
    ] {
        let a = f.attempt(&s, name, Some(RHOST), vec![Reply::text("123456")]);
        assert_eq!(
            code_name(a.code),
            code_name(PAM_USER_UNKNOWN),
            "{:?}",
            String::from_utf8_lossy(&name[..name.len().min(20)])
        );
        assert!(a.prompts().is_empty());
    }
    // Even with nullok: an invalid name is never "not enrolled".
    let s = probing_service(&f, "nullok");
    f.try_code(&s, "../../etc/shadow", "1")
        .assert_code(PAM_USER_UNKNOWN);
}

#[test]
fn unset_user_is_asked_for() {
    let (f, s) = enrolled();
    away_from_step_edge();
    let mut pam = Pam::start(&f.confdir, &s, None, ConvMode::Scripted);
    pam.reply([Reply::text("alice"), Reply::text(f.code_at(now()))]);
    assert_eq!(code_name(pam.authenticate(0)), code_name(PAM_SUCCESS));
    let mut pam = Pam::start(&f.confdir, &s, None, ConvMode::Scripted);
    pam.reply([Reply::text("../x")]);
    assert_eq!(code_name(pam.authenticate(0)), code_name(PAM_USER_UNKNOWN));
}

// ---- conversation: PAM_CONV_ERR ----

#[test]
fn no_conversation_function_is_conv_err() {
    let (f, s) = enrolled();
    let mut pam = Pam::start(&f.confdir, &s, Some(b"alice"), ConvMode::NoFunction);
    assert_eq!(code_name(pam.authenticate(0)), code_name(PAM_CONV_ERR));
}

#[test]
fn conversation_failures_and_null_answers_are_conv_err() {
    let (f, s) = enrolled();
    for reply in [
        Reply::Fail(PAM_CONV_ERR),
        Reply::Fail(5),                // PAM_BUF_ERR
        Reply::Fail(PAM_SUCCESS + 30), // PAM_CONV_AGAIN
        Reply::NullAnswer,
        Reply::NullArray,
    ] {
        let a = f.attempt(&s, b"alice", Some(RHOST), vec![reply.clone()]);
        assert_eq!(code_name(a.code), code_name(PAM_CONV_ERR), "{reply:?}");
    }
    assert_eq!(
        failures(&f, "alice"),
        0,
        "no answer is not a failed attempt"
    );
}

#[test]
fn no_answer_for_an_unset_user_is_conv_err() {
    let (f, s) = enrolled();
    let mut pam = Pam::start(&f.confdir, &s, None, ConvMode::Scripted);
    pam.reply([Reply::NullAnswer]);
    assert_eq!(code_name(pam.authenticate(0)), code_name(PAM_CONV_ERR));
}

// ---- state or key unusable: PAM_AUTHINFO_UNAVAIL ----

#[test]
fn missing_key_is_authinfo_unavail_without_a_prompt() {
    let (f, s) = enrolled();
    std::fs::remove_file(&f.key_file).unwrap();
    let a = f.try_code(&s, "alice", "123456");
    a.assert_code(PAM_AUTHINFO_UNAVAIL);
    assert!(a.prompts().is_empty());
}

#[test]
fn key_readable_by_others_is_authinfo_unavail() {
    let (f, s) = enrolled();
    std::fs::set_permissions(&f.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    f.try_code(&s, "alice", "123456")
        .assert_code(PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn wrong_key_is_authinfo_unavail() {
    let (f, s) = enrolled();
    common::HostKey::generate()
        .unwrap()
        .store(&f.key_file)
        .unwrap();
    away_from_step_edge();
    f.try_code(&s, "alice", f.code_at(now()))
        .assert_code(PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn corrupt_state_file_is_authinfo_unavail() {
    let (f, s) = enrolled();
    std::fs::write(f.state_dir.join("alice"), "version = 1\nuser = \"alice\"\n").unwrap();
    away_from_step_edge();
    f.try_code(&s, "alice", f.code_at(now()))
        .assert_code(PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn unsafe_state_file_or_dir_is_authinfo_unavail() {
    let (f, s) = enrolled();
    let file = f.state_dir.join("alice");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    f.try_code(&s, "alice", "123456")
        .assert_code(PAM_AUTHINFO_UNAVAIL);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A symlink in place of the state file.
    let elsewhere = f.dir.path().join("elsewhere");
    std::fs::rename(&file, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    f.try_code(&s, "alice", "123456")
        .assert_code(PAM_AUTHINFO_UNAVAIL);
    std::fs::remove_file(&file).unwrap();
    std::fs::rename(&elsewhere, &file).unwrap();

    std::fs::set_permissions(&f.state_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    f.try_code(&s, "alice", "123456")
        .assert_code(PAM_AUTHINFO_UNAVAIL);
    // Never "not enrolled", even with nullok, when the state dir cannot be trusted.
    f.try_code(&s, "bob", "123456")
        .assert_code(PAM_AUTHINFO_UNAVAIL);
    let s = probing_service(&f, "nullok");
    f.try_code(&s, "bob", "123456")
        .assert_code(PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn missing_state_dir_is_authinfo_unavail_even_with_nullok() {
    let f = Fixture::new();
    std::fs::remove_dir(&f.state_dir).unwrap();
    let s = probing_service(&f, "nullok");
    f.try_code(&s, "bob", "123456")
        .assert_code(PAM_AUTHINFO_UNAVAIL);
}

// ---- bad options or config: PAM_SERVICE_ERR ----

#[test]
fn invalid_options_fail_closed() {
    let f = Fixture::new();
    f.enroll("alice", 0);
    for bad in [
        "window=abc",
        "window=99",
        "window=-1",
        "state_dir=relative",
        "key_file=relative/key",
        "config=relative.conf",
        "max_failures=many",
        "lockout_secs=",
        "nullok=perhaps",
    ] {
        let s = probing_service(&f, bad);
        let a = f.try_code(&s, "alice", "123456");
        assert_eq!(code_name(a.code), code_name(PAM_SERVICE_ERR), "{bad}");
        assert!(a.prompts().is_empty(), "{bad}");
    }
}

#[test]
fn unparsable_or_invalid_config_file_fails_closed() {
    let f = Fixture::new();
    f.enroll("alice", 0);
    let s = probing_service(&f, "");
    for text in [
        "this is [ not toml",
        "window = 99\n",
        "state_dir = \"relative\"\n",
        "nullok = \"yes\"\n",
    ] {
        std::fs::write(&f.config, text).unwrap();
        let a = f.try_code(&s, "bob", "123456");
        assert_eq!(code_name(a.code), code_name(PAM_SERVICE_ERR), "{text:?}");
    }
    // A config file others may write could redirect the state dir: refused too.
    std::fs::write(&f.config, "window = 1\n").unwrap();
    std::fs::set_permissions(&f.config, std::fs::Permissions::from_mode(0o666)).unwrap();
    f.try_code(&s, "bob", "123456").assert_code(PAM_SERVICE_ERR);
}

#[test]
fn unknown_options_and_keys_are_ignored() {
    let f = Fixture::new();
    f.enroll("alice", 0);
    std::fs::write(&f.config, "frobnicate = 3\n").unwrap();
    let s = f.service("no_such_option also=this");
    away_from_step_edge();
    f.try_code(&s, "alice", f.code_at(now()))
        .assert_code(PAM_SUCCESS);
}

#[test]
fn options_override_the_config_file() {
    let f = Fixture::new();
    f.enroll("alice", 0);
    // The file points at a state dir without alice; the option wins.
    std::fs::write(
        &f.config,
        "state_dir = \"/nonexistent/state\"\nmax_failures = 1\n",
    )
    .unwrap();
    let s = f.service("");
    away_from_step_edge();
    f.try_code(&s, "alice", f.wrong_code())
        .assert_code(PAM_AUTH_ERR);
    // max_failures = 1 from the file applies: now locked.
    f.try_code(&s, "alice", f.code_at(now()))
        .assert_code(PAM_MAXTRIES);
}

// ---- window ----

#[test]
fn window_edges() {
    let f = Fixture::new();
    for (window, offsets_ok, offsets_bad) in [
        (0, vec![0], vec![-1, 1]),
        (1, vec![-1, 0, 1], vec![-2, 2]),
        (3, vec![-3, 3], vec![-4, 4]),
        (10, vec![-10, 10], vec![-11, 11]),
    ] {
        let s = f.service(&format!("window={window} max_failures=0"));
        for (offsets, want) in [(offsets_bad, PAM_AUTH_ERR), (offsets_ok, PAM_SUCCESS)] {
            for off in offsets {
                f.enroll("alice", 0);
                away_from_step_edge();
                let a = f.try_code(&s, "alice", f.code_at(now() + 30 * off));
                assert_eq!(
                    code_name(a.code),
                    code_name(want),
                    "window={window} offset={off}"
                );
            }
        }
    }
}

// ---- the other entry points ----

#[test]
fn setcred_succeeds_and_other_entry_points_ignore() {
    let (f, _) = enrolled();
    let s = probing_service(&f, "");
    let mut pam = Pam::start(&f.confdir, &s, Some(b"alice"), ConvMode::Scripted);
    assert_eq!(code_name(pam.setcred()), code_name(PAM_SUCCESS));
    assert_eq!(code_name(pam.acct_mgmt()), code_name(PAM_CRED_UNAVAIL));
    assert_eq!(code_name(pam.open_session()), code_name(PAM_CRED_UNAVAIL));
    assert_eq!(code_name(pam.close_session()), code_name(PAM_CRED_UNAVAIL));
    assert_eq!(code_name(pam.chauthtok()), code_name(PAM_CRED_UNAVAIL));
    assert!(
        pam.messages()
            .iter()
            .all(|m| m.style == PAM_TEXT_INFO && m.text.contains("cred_unavail")),
        "only pam_debug speaks: {:?}",
        pam.messages()
    );
}

#[test]
fn silent_flag_suppresses_messages_not_decisions() {
    const PAM_SILENT: i32 = 0x8000;
    let (f, s) = enrolled();
    away_from_step_edge();
    let code = f.code_at(now());
    f.try_code(&s, "alice", &code).assert_code(PAM_SUCCESS);
    let mut pam = Pam::start(&f.confdir, &s, Some(b"alice"), ConvMode::Scripted);
    pam.reply([Reply::text(&code)]);
    assert_eq!(
        code_name(pam.authenticate(PAM_SILENT)),
        code_name(PAM_AUTH_ERR)
    );
    assert!(pam.texts(PAM_ERROR_MSG).is_empty());
}

#[test]
fn rhost_is_recorded_for_the_next_notice() {
    let (f, s) = enrolled();
    let long_host = format!("{}.example", "h".repeat(300));
    f.attempt(
        &s,
        b"alice",
        Some(&long_host),
        vec![Reply::text(f.wrong_code())],
    )
    .assert_code(PAM_AUTH_ERR);
    away_from_step_edge();
    let a = f.attempt(&s, b"alice", None, vec![Reply::text(f.code_at(now()))]);
    a.assert_code(PAM_SUCCESS);
    let info = &a.infos()[0];
    assert!(info.contains("the last from hhhh"), "{info}");
    assert!(info.len() < 200, "rhost is truncated: {info}");
}

#[test]
fn a_code_entered_for_one_user_does_not_work_for_another() {
    let f = Fixture::new();
    f.enroll("alice", 0);
    f.enroll_with("bob", common::TotpSecret::generate().unwrap(), f.params, 0);
    let s = f.service("");
    away_from_step_edge();
    f.try_code(&s, "bob", f.code_at(now()))
        .assert_code(PAM_AUTH_ERR);
    f.try_code(&s, "alice", f.code_at(now()))
        .assert_code(PAM_SUCCESS);
}

// ---- the built object ----

#[test]
fn module_exports_the_six_entry_points_and_needs_no_libgcc_s() {
    let so = module_path();
    let nm = std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .expect("nm (binutils)");
    let symbols = String::from_utf8_lossy(&nm.stdout);
    for entry in [
        "pam_sm_authenticate",
        "pam_sm_setcred",
        "pam_sm_acct_mgmt",
        "pam_sm_open_session",
        "pam_sm_close_session",
        "pam_sm_chauthtok",
    ] {
        assert!(
            symbols.lines().any(|l| l.ends_with(&format!(" T {entry}"))),
            "{entry} missing"
        );
    }
    // C hosts would otherwise load libgcc_s.so.1 on every pam_start (see pam_totp/build.rs).
    let readelf = std::process::Command::new("readelf")
        .arg("-d")
        .arg(&so)
        .output()
        .expect("readelf (binutils)");
    let dynamic = String::from_utf8_lossy(&readelf.stdout);
    assert!(dynamic.contains("libpam.so.0"), "{dynamic}");
    assert!(!dynamic.contains("libgcc_s"), "{dynamic}");
}

#[test]
fn truncated_key_is_authinfo_unavail() {
    let (f, s) = enrolled();
    std::fs::write(&f.key_file, [7u8; 31]).unwrap();
    f.try_code(&s, "alice", "123456")
        .assert_code(PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn state_file_not_owned_by_root_is_authinfo_unavail() {
    let (f, s) = enrolled();
    // 65534: nobody on Debian.
    std::os::unix::fs::chown(f.state_dir.join("alice"), Some(65534), None).unwrap();
    away_from_step_edge();
    f.try_code(&s, "alice", f.code_at(now()))
        .assert_code(PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn a_state_dir_or_key_file_below_a_directory_others_can_write_is_authinfo_unavail() {
    let (f, _) = enrolled();
    // open (0777) / inner (0700) / {state, key}: only an ancestor is unsafe.
    let open = f.dir.path().join("open");
    let inner = open.join("inner");
    let state = inner.join("state");
    std::fs::create_dir_all(&state).unwrap();
    for (dir, mode) in [(&open, 0o777), (&inner, 0o700), (&state, 0o700)] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::copy(f.state_dir.join("alice"), state.join("alice")).unwrap();
    let key = inner.join("pam_totp.key");
    std::fs::copy(&f.key_file, &key).unwrap();
    let line = |state_dir: &std::path::Path, key_file: &std::path::Path| {
        f.service_with(&format!(
            "auth required {{module}} config={} state_dir={} key_file={}\n",
            f.config.display(),
            state_dir.display(),
            key_file.display()
        ))
    };
    let state_below_open = line(&state, &f.key_file);
    let key_below_open = line(&f.state_dir, &key);
    away_from_step_edge();
    for s in [&state_below_open, &key_below_open] {
        f.try_code(s, "alice", f.code_at(now()))
            .assert_code(PAM_AUTHINFO_UNAVAIL);
    }
    // Never "not enrolled" under an untrusted state dir.
    f.try_code(&state_below_open, "bob", "123456")
        .assert_code(PAM_AUTHINFO_UNAVAIL);
    // The refusal names the ancestor.
    let Err(err) = integration_tests::Store::open(&state, &key) else {
        panic!("a key file below a 0777 directory was opened");
    };
    let text = err.to_string();
    assert!(text.starts_with(&format!("{}: ", open.display())), "{text}");
    assert!(text.contains("0777"), "{text}");
    // The same paths work once the ancestor is safe: the ancestor was the only reason.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    f.try_code(&state_below_open, "alice", f.code_at(now()))
        .assert_code(PAM_SUCCESS);
}
