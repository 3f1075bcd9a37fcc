//! `forward_pass` through the real libpam with the real pam_unix after it: one prompt
//! `Password & verification code: `, the code from the end of the answer, the rest handed
//! to `pam_unix.so use_first_pass` as PAM_AUTHTOK. A test account with a real password.

mod e2e_support;

use std::time::Duration;

use e2e_support::TestUser;
use integration_tests::pam::*;

const PASSWORD: &str = "c0rrect horse 9";
const PROMPT: &str = "Password & verification code: ";

/// A test user with a password, the module with `forward_pass` (and `extra`) and
/// pam_unix after it.
fn setup(extra: &str) -> (Fixture, TestUser, String) {
    let f = Fixture::new();
    let user = TestUser::create("fwd");
    user.set_password(PASSWORD);
    let service = f.service_with(&format!(
        "auth required {{module}} {{base}} forward_pass {extra}\n\
         auth required pam_unix.so use_first_pass\n\
         account required pam_permit.so\n"
    ));
    (f, user, service)
}

fn away_from_step_edge() {
    while now() % 30 >= 25 {
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn login(f: &Fixture, service: &str, user: &TestUser, answer: &str) -> Attempt {
    let a = f.attempt(
        service,
        user.name.as_bytes(),
        Some("203.0.113.9"),
        vec![Reply::text(answer)],
    );
    // One prompt only: pam_unix took the password it was handed.
    let prompts: Vec<String> = a.prompts().into_iter().map(|m| m.text).collect();
    assert_eq!(prompts, vec![PROMPT.to_owned()], "{a:?}");
    a
}

#[test]
fn password_and_code_in_one_answer() {
    let (f, user, service) = setup("");
    f.enroll(&user.name, 0);
    away_from_step_edge();
    let t = now();
    // Wrong password, right code: pam_totp accepts, pam_unix refuses.
    let a = login(&f, &service, &user, &format!("not it{}", f.code_at(t)));
    a.assert_code(PAM_AUTH_ERR);
    // Right password, wrong code.
    let a = login(
        &f,
        &service,
        &user,
        &format!("{PASSWORD}{}", f.wrong_code()),
    );
    a.assert_code(PAM_AUTH_ERR);
    // Both right (the next step's code: this step's was spent above).
    let a = login(
        &f,
        &service,
        &user,
        &format!("{PASSWORD}{}", f.code_at(t + 30)),
    );
    a.assert_code(PAM_SUCCESS);
    // The password alone, without a code, is refused.
    let a = login(&f, &service, &user, PASSWORD);
    a.assert_code(PAM_AUTH_ERR);
}

#[test]
fn the_enrollments_digits_decide_where_the_code_starts() {
    let (mut f, user, service) = setup("");
    f.params = common::OtpParams::new(common::Algorithm::SHA1, 8, 30).unwrap();
    f.enroll(&user.name, 0);
    away_from_step_edge();
    let code = f.code_at(now());
    assert_eq!(code.len(), 8);
    let a = login(&f, &service, &user, &format!("{PASSWORD}{code}"));
    a.assert_code(PAM_SUCCESS);
}

#[test]
fn not_enrolled_under_nullok_the_whole_answer_is_the_password() {
    let (f, user, service) = setup("nullok");
    let a = login(&f, &service, &user, PASSWORD);
    a.assert_code(PAM_SUCCESS);
    let a = login(&f, &service, &user, "wrong password");
    a.assert_code(PAM_AUTH_ERR);
}
