//! `grace_secs` end to end with OpenSSH: sshd with `ExposeAuthInfo yes` (which puts the
//! key that authenticated the connection into the PAM environment as SSH_AUTH_INFO_0), a
//! key and a code. After one login with a code, the same key from the same host logs in
//! without one; another key from the same host is asked for a code.

mod e2e_support;

use e2e_support::{cmd, example, module_with, recipe_lines, run_ok, wrong_code, Sshd, TestUser};
use integration_tests::pam::{now, Fixture};

const REMOTE_COMMAND: &str = "echo pamtotp-ok-$((6*7))";
const REMOTE_OUTPUT: &str = "pamtotp-ok-42";
const CODE_PROMPT: &str = "Verification code: ";

struct Setup {
    sshd: Sshd,
    user: TestUser,
    fixture: Fixture,
}

fn setup() -> Setup {
    let fixture = Fixture::new();
    let user = TestUser::create("sgr");
    fixture.enroll(&user.name, 0);
    let module = format!("{} grace_secs=600", module_with(&fixture));
    let pam = format!(
        "{}account required pam_unix.so\nsession required pam_permit.so\n",
        recipe_lines("pam.d/sshd.publickey-and-code", &module)
    );
    let config = format!(
        "ExposeAuthInfo yes\n{}",
        example("sshd_config.d/publickey-and-code.conf")
    );
    let sshd = Sshd::start(&user, &config, &pam);
    Setup {
        sshd,
        user,
        fixture,
    }
}

impl Setup {
    fn login(&self, answers: &[(&str, &str)]) -> (String, Option<i32>) {
        let mut client = self.sshd.ssh(&self.user, &[], REMOTE_COMMAND);
        let log = || format!("sshd log:\n{}", self.sshd.log());
        for (prompt, answer) in answers {
            client.expect(prompt, &log);
            client.send_line(answer);
        }
        client.finish()
    }

    fn assert_logged_in(&self, (out, code): &(String, Option<i32>)) {
        assert!(
            out.contains(REMOTE_OUTPUT) && *code == Some(0),
            "login should succeed; exit {code:?}, output {out:?}\nsshd log:\n{}",
            self.sshd.log()
        );
    }

    fn status_json(&self) -> serde_json::Value {
        let st = self
            .fixture
            .store()
            .status(&common::UserName::parse(&self.user.name).unwrap())
            .unwrap()
            .unwrap();
        serde_json::json!(st
            .counters
            .devices
            .iter()
            .map(|d| (d.rhost.clone(), d.key.clone()))
            .collect::<Vec<_>>())
    }
}

#[test]
fn the_same_key_from_the_same_host_needs_no_code_within_grace_secs() {
    let s = setup();
    let code = s.fixture.code_at(now());
    s.assert_logged_in(&s.login(&[(CODE_PROMPT, &code)]));
    // The device is the host and the key sshd exposed.
    let fp = run_ok(cmd(
        "ssh-keygen",
        &["-l", "-f", s.sshd.client_key.to_str().unwrap()],
    ))
    .stdout;
    let devices = s.status_json();
    let (rhost, key) = (&devices[0][0], devices[0][1].as_str().unwrap_or_default());
    assert_eq!(rhost, "127.0.0.1", "{devices}");
    let fp_prefix = key.strip_prefix("ssh-ed25519 ").unwrap_or("-");
    assert!(
        !fp_prefix.is_empty() && fp.contains(fp_prefix),
        "stored key label {key:?} is not the start of {fp:?}"
    );
    // Again: no code asked.
    let second = s.login(&[]);
    s.assert_logged_in(&second);
    assert!(!second.0.contains(CODE_PROMPT), "{second:?}");
    assert!(
        s.sshd.log().contains(&format!(
            "Accepted keyboard-interactive/pam for {}",
            s.user.name
        )),
        "{}",
        s.sshd.log()
    );
    // Another key from the same host is another device: the code is asked.
    let key = &s.sshd.client_key;
    std::fs::remove_file(key).unwrap();
    std::fs::remove_file(key.with_extension("pub")).unwrap();
    run_ok(cmd(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
    ));
    s.user
        .authorize_key(&std::fs::read_to_string(key.with_extension("pub")).unwrap());
    let (out, code) = s.login(&[(CODE_PROMPT, &wrong_code(&s.fixture))]);
    assert!(
        !out.contains(REMOTE_OUTPUT) && code == Some(255),
        "exit {code:?}, output {out:?}\n{}",
        s.sshd.log()
    );
}
