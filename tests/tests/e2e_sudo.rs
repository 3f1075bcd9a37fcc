//! sudo end to end: a test user, a sudoers drop-in that points the user's sudo at a test
//! PAM service (`Defaults:USER pam_service=...`) built from the README's sudo recipes,
//! and `sudo -k -S` run as that user with the answers on standard input. Run as root.

mod e2e_support;

use std::path::Path;

use e2e_support::{
    cmd, module_with, pam_service, recipe_lines, require, run_ok, wrong_code, EtcFile, TestUser,
    TIMEOUT,
};
use integration_tests::pam::{now, run_with_timeout, Fixture, Run};

const PASSWORD: &str = "sudo test password 7";

struct Setup {
    // Drop order: the rule goes before the service it names, the user, the state.
    _sudoers: EtcFile,
    _service: EtcFile,
    user: TestUser,
    fixture: Fixture,
}

fn setup(recipe: &str) -> Setup {
    require("/usr/bin/sudo");
    let fixture = Fixture::new();
    let user = TestUser::create("sudo");
    user.set_password(PASSWORD);
    fixture.enroll(&user.name, 0);
    let service = pam_service(
        "sudo",
        &format!(
            "{}account required pam_unix.so\nsession required pam_permit.so\n",
            recipe_lines(&format!("pam.d/{recipe}"), &module_with(&fixture))
        ),
    );
    // One try per sudo run, so a wrong answer ends it instead of re-prompting.
    let rules = format!(
        "Defaults:{u} pam_service={s}, passwd_tries=1, lecture=never\n\
         {u} ALL=(root) /usr/bin/id\n",
        u = user.name,
        s = service.name()
    );
    // A broken drop-in would break sudo for everyone: check it before installing it.
    let draft = fixture.dir.path().join("sudoers-draft");
    std::fs::write(&draft, &rules).unwrap();
    run_ok(cmd("visudo", &["-c", "-q", "-f", draft.to_str().unwrap()]));
    let sudoers = EtcFile::create(
        Path::new("/etc/sudoers.d").join(e2e_support::unique_name("sudo")),
        &rules,
        0o440,
    );
    Setup {
        _sudoers: sudoers,
        _service: service,
        user,
        fixture,
    }
}

impl Setup {
    /// `sudo -k -S id` as the test user with `stdin`.
    fn sudo(&self, stdin: &str) -> Run {
        run_with_timeout(
            self.user.command("sudo", &["-k", "-S", "id"]),
            stdin.as_bytes(),
            TIMEOUT,
        )
    }

    fn code_now(&self) -> String {
        self.fixture.code_at(now())
    }
}

fn assert_root(r: &Run) {
    assert!(
        r.success() && r.stdout.contains("uid=0(root)"),
        "sudo should run id as root: {r:?}"
    );
}

fn assert_denied(r: &Run) {
    assert!(
        !r.success() && !r.stdout.contains("uid=0"),
        "sudo should refuse: {r:?}"
    );
}

#[test]
fn code_instead_of_password_is_accepted_and_prompted_on_stderr() {
    let s = setup("sudo.code");
    let r = s.sudo(&format!("{}\n", s.code_now()));
    assert_root(&r);
    assert!(
        r.stderr.contains("Verification code: "),
        "sudo should show the module's prompt on stderr: {r:?}"
    );
    assert!(
        !r.stderr.contains("assword"),
        "no password prompt in the code-only recipe: {r:?}"
    );
}

#[test]
fn wrong_code_is_denied() {
    let s = setup("sudo.code");
    let r = s.sudo(&format!("{}\n", wrong_code(&s.fixture)));
    assert_denied(&r);
    assert!(r.stderr.contains("Verification code: "), "{r:?}");
}

#[test]
fn replayed_code_is_denied() {
    let s = setup("sudo.code");
    let code = s.code_now();
    assert_root(&s.sudo(&format!("{code}\n")));
    let r = s.sudo(&format!("{code}\n"));
    assert_denied(&r);
    assert!(r.stderr.contains("Verification code: "), "{r:?}");
}

#[test]
fn no_answer_is_denied() {
    let s = setup("sudo.code");
    assert_denied(&s.sudo(""));
}

#[test]
fn password_then_code_is_accepted() {
    let s = setup("sudo.password-and-code");
    let r = s.sudo(&format!("{PASSWORD}\n{}\n", s.code_now()));
    assert_root(&r);
    assert!(
        r.stderr.contains("Verification code: "),
        "the module's prompt should follow the password's: {r:?}"
    );
}

#[test]
fn password_then_wrong_code_is_denied() {
    let s = setup("sudo.password-and-code");
    assert_denied(&s.sudo(&format!("{PASSWORD}\n{}\n", wrong_code(&s.fixture))));
}

#[test]
fn wrong_password_then_code_is_denied() {
    let s = setup("sudo.password-and-code");
    assert_denied(&s.sudo(&format!("not the password\n{}\n", s.code_now())));
}
