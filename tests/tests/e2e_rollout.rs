//! The README's gradual-rollout recipes (packaging/examples/pam.d/rollout-*) through the
//! real libpam, pamtester, a real group and real accounts. Run as root.

mod e2e_support;

use e2e_support::{
    module_with, pam_service, pamtester, recipe_lines, wrong_code, EtcFile, TestGroup, TestUser,
};
use integration_tests::pam::{now, Fixture, Run};

const PROMPT: &str = "Verification code: ";

fn service(fixture: &Fixture, recipe: &str, group: Option<&TestGroup>) -> EtcFile {
    let mut auth = recipe_lines(&format!("pam.d/{recipe}"), &module_with(fixture));
    if let Some(g) = group {
        let shipped = "notingroup totp";
        assert!(auth.contains(shipped), "{recipe}: {auth}");
        auth = auth.replace(shipped, &format!("notingroup {}", g.name));
    }
    pam_service("roll", &format!("{auth}account required pam_permit.so\n"))
}

fn assert_accepted(r: &Run, prompted: bool) {
    assert!(
        r.success() && r.stdout.contains("successfully authenticated"),
        "should authenticate: {r:?}"
    );
    let saw_prompt = r.stdout.contains(PROMPT) || r.stderr.contains(PROMPT);
    assert_eq!(saw_prompt, prompted, "prompted for a code? {r:?}");
}

fn assert_refused(r: &Run) {
    assert!(
        !r.success() && !r.stdout.contains("successfully authenticated"),
        "should be refused: {r:?}"
    );
}

#[test]
fn group_members_need_a_code_and_others_are_not_asked() {
    let fixture = Fixture::new();
    let group = TestGroup::create("grp");
    let member = TestUser::create("mem");
    let other = TestUser::create("oth");
    group.add(&member);
    // Both enrolled: only membership decides who is asked.
    fixture.enroll(&member.name, 0);
    fixture.enroll(&other.name, 0);
    let svc = service(&fixture, "rollout-by-group", Some(&group));

    assert_refused(&pamtester(
        svc.name(),
        &member.name,
        &format!("{}\n", wrong_code(&fixture)),
    ));
    assert_accepted(
        &pamtester(
            svc.name(),
            &member.name,
            &format!("{}\n", fixture.code_at(now())),
        ),
        true,
    );
    assert_accepted(&pamtester(svc.name(), &other.name, ""), false);
}

#[test]
fn nullok_lets_unenrolled_users_through_and_asks_enrolled_ones() {
    let fixture = Fixture::new();
    let enrolled = TestUser::create("enr");
    let newcomer = TestUser::create("new");
    fixture.enroll(&enrolled.name, 0);
    let svc = service(&fixture, "rollout-nullok", None);

    assert_accepted(&pamtester(svc.name(), &newcomer.name, ""), false);
    assert_refused(&pamtester(
        svc.name(),
        &enrolled.name,
        &format!("{}\n", wrong_code(&fixture)),
    ));
    assert_refused(&pamtester(svc.name(), &enrolled.name, ""));
    let code = fixture.code_at(now());
    assert_accepted(
        &pamtester(svc.name(), &enrolled.name, &format!("{code}\n")),
        true,
    );
    // Still exactly once under nullok.
    assert_refused(&pamtester(svc.name(), &enrolled.name, &format!("{code}\n")));
}

#[test]
fn without_nullok_unenrolled_users_are_refused() {
    // The contrast that makes the nullok test meaningful: the same stack minus nullok.
    let fixture = Fixture::new();
    let newcomer = TestUser::create("new");
    let auth = recipe_lines("pam.d/rollout-nullok", &module_with(&fixture)).replace(" nullok", "");
    let svc = pam_service("roll", &format!("{auth}account required pam_permit.so\n"));
    assert_refused(&pamtester(svc.name(), &newcomer.name, ""));
}

#[test]
fn group_rollout_keeps_an_earlier_failure_for_non_members() {
    // "done" must not turn a failed password into a success for non-members.
    let fixture = Fixture::new();
    let group = TestGroup::create("grp");
    let other = TestUser::create("oth");
    other.set_password("rollout password 5");
    let mut auth = recipe_lines("pam.d/rollout-by-group", &module_with(&fixture));
    auth = auth.replace("notingroup totp", &format!("notingroup {}", group.name));
    let svc = pam_service(
        "roll",
        &format!("auth required pam_unix.so\n{auth}account required pam_permit.so\n"),
    );
    assert_refused(&pamtester(svc.name(), &other.name, "wrong password\n"));
    assert_accepted(
        &pamtester(svc.name(), &other.name, "rollout password 5\n"),
        false,
    );
}
