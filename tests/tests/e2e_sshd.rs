//! OpenSSH end to end: a private sshd on 127.0.0.1 with the README's recipes (the
//! shipped files in packaging/examples), the built module, and the real `ssh` client in a
//! pseudo-terminal. Run as root (CI is).

mod e2e_support;

use e2e_support::{example, module_with, recipe_lines, wrong_code, Sshd, TestUser};
use integration_tests::pam::{now, Fixture};

const PASSWORD: &str = "correct horse battery staple 9";
/// Printed by the remote shell; the command line itself does not contain it.
const REMOTE_COMMAND: &str = "echo pamtotp-ok-$((6*7))";
const REMOTE_OUTPUT: &str = "pamtotp-ok-42";

/// A test user enrolled in a fresh state dir, and sshd configured by `recipe`.
struct Setup {
    // Drop order: sshd stops before its user and state go.
    sshd: Sshd,
    user: TestUser,
    fixture: Fixture,
    recovery_codes: Vec<String>,
}

fn setup(recipe: &str) -> Setup {
    let fixture = Fixture::new();
    let user = TestUser::create("ssh");
    user.set_password(PASSWORD);
    let recovery_codes = fixture.enroll(&user.name, 2);
    let pam = format!(
        "{}account required pam_unix.so\nsession required pam_permit.so\n",
        recipe_lines(&format!("pam.d/sshd.{recipe}"), &module_with(&fixture))
    );
    let sshd = Sshd::start(
        &user,
        &example(&format!("sshd_config.d/{recipe}.conf")),
        &pam,
    );
    Setup {
        sshd,
        user,
        fixture,
        recovery_codes,
    }
}

impl Setup {
    fn code_now(&self) -> String {
        self.fixture.code_at(now())
    }

    /// One login answering the prompts in order; returns (client output, exit code).
    fn login(&self, answers: &[(&str, &str)], extra: &[&str]) -> (String, Option<i32>) {
        let mut client = self.sshd.ssh(&self.user, extra, REMOTE_COMMAND);
        let log = || format!("sshd log:\n{}", self.sshd.log());
        for (prompt, answer) in answers {
            client.expect(prompt, &log);
            client.send_line(answer);
        }
        client.finish()
    }

    fn assert_logged_in(&self, (out, code): (String, Option<i32>)) {
        assert!(
            out.contains(REMOTE_OUTPUT) && code == Some(0),
            "login should succeed; exit {code:?}, output {out:?}\nsshd log:\n{}",
            self.sshd.log()
        );
    }

    fn assert_denied(&self, (out, code): (String, Option<i32>)) {
        assert!(
            !out.contains(REMOTE_OUTPUT) && code == Some(255) && out.contains("Permission denied"),
            "login should be denied; exit {code:?}, output {out:?}\nsshd log:\n{}",
            self.sshd.log()
        );
    }
}

const CODE_PROMPT: &str = "Verification code: ";
const PASSWORD_PROMPT: &str = "Password: ";

#[test]
fn publickey_and_code_runs_the_command() {
    let s = setup("publickey-and-code");
    let code = s.code_now();
    s.assert_logged_in(s.login(&[(CODE_PROMPT, &code)], &[]));
    assert!(
        s.sshd.log().contains(&format!(
            "Accepted keyboard-interactive/pam for {}",
            s.user.name
        )),
        "sshd should log the second factor: {}",
        s.sshd.log()
    );
}

#[test]
fn publickey_and_wrong_code_is_denied() {
    let s = setup("publickey-and-code");
    s.assert_denied(s.login(&[(CODE_PROMPT, &wrong_code(&s.fixture))], &[]));
}

#[test]
fn publickey_and_replayed_code_is_denied() {
    let s = setup("publickey-and-code");
    let code = s.code_now();
    s.assert_logged_in(s.login(&[(CODE_PROMPT, &code)], &[]));
    s.assert_denied(s.login(&[(CODE_PROMPT, &code)], &[]));
}

#[test]
fn publickey_without_keyboard_interactive_is_denied() {
    let s = setup("publickey-and-code");
    let (out, code) = s.login(&[], &["KbdInteractiveAuthentication=no"]);
    assert!(
        !out.contains(CODE_PROMPT),
        "no code prompt expected: {out:?}"
    );
    s.assert_denied((out, code));
    assert!(
        s.sshd.log().contains("Partial publickey"),
        "the key alone should be a partial success: {}",
        s.sshd.log()
    );
}

#[test]
fn publickey_and_recovery_code_logs_in_once() {
    let s = setup("publickey-and-code");
    // Typed as a person might: lower case, no dash.
    let typed = s.recovery_codes[0].to_lowercase().replace('-', "");
    s.assert_logged_in(s.login(&[(CODE_PROMPT, &typed)], &[]));
    s.assert_denied(s.login(&[(CODE_PROMPT, &s.recovery_codes[0])], &[]));
}

#[test]
fn password_and_code_runs_the_command() {
    let s = setup("password-and-code");
    let code = s.code_now();
    s.assert_logged_in(s.login(&[(PASSWORD_PROMPT, PASSWORD), (CODE_PROMPT, &code)], &[]));
}

#[test]
fn password_and_wrong_code_is_denied() {
    let s = setup("password-and-code");
    let wrong = wrong_code(&s.fixture);
    s.assert_denied(s.login(&[(PASSWORD_PROMPT, PASSWORD), (CODE_PROMPT, &wrong)], &[]));
}

#[test]
fn password_and_replayed_code_is_denied() {
    let s = setup("password-and-code");
    let code = s.code_now();
    s.assert_logged_in(s.login(&[(PASSWORD_PROMPT, PASSWORD), (CODE_PROMPT, &code)], &[]));
    s.assert_denied(s.login(&[(PASSWORD_PROMPT, PASSWORD), (CODE_PROMPT, &code)], &[]));
}

#[test]
fn wrong_password_is_denied_before_the_code_is_asked() {
    let s = setup("password-and-code");
    let (out, code) = s.login(&[(PASSWORD_PROMPT, "not the password")], &[]);
    assert!(
        !out.contains(CODE_PROMPT),
        "code prompt after a wrong password: {out:?}"
    );
    s.assert_denied((out, code));
}

#[test]
fn password_and_code_without_keyboard_interactive_is_denied() {
    let s = setup("password-and-code");
    let (out, code) = s.login(&[], &["KbdInteractiveAuthentication=no"]);
    assert!(
        !out.contains(CODE_PROMPT),
        "no code prompt expected: {out:?}"
    );
    s.assert_denied((out, code));
}
