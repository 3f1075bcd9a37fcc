//! Canonical user names (issue 10) through real NSS and a real PAM client: with a
//! case-insensitive directory, `ALICE` is alice, and must not pass as "not enrolled"
//! under `nullok`.
//!
//! Debian has no NSS source that folds case without a directory server (SSSD, nslcd with
//! `ignorecase`, pgsql), so the test builds one: tests/fixtures/nss_fold.c, a passwd source
//! over /etc/passwd that matches names without regard to case. pamtester runs in a mount
//! namespace of its own where /etc/nsswitch.conf says `passwd: files pamtotpfold`, with
//! the source on LD_LIBRARY_PATH; nothing outside that namespace sees it. The decision
//! logic is covered with an injected resolver in the module's unit tests
//! (`pam_totp::tests::a_name_nss_maps_to_an_enrolled_user_is_that_user` and the next).

mod e2e_support;

use std::path::Path;
use std::process::Command;

use e2e_support::TestUser;
use integration_tests::pam::*;

/// The folding NSS source, built, and an nsswitch.conf that uses it after `files`.
struct FoldingNss {
    dir: tempfile::TempDir,
}

impl FoldingNss {
    fn build() -> FoldingNss {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nss_fold.c");
        let so = dir.path().join("libnss_pamtotpfold.so.2");
        let r = run_with_timeout(
            e2e_support::cmd(
                "cc",
                &[
                    "-shared",
                    "-fPIC",
                    "-o",
                    so.to_str().unwrap(),
                    src.to_str().unwrap(),
                ],
            ),
            b"",
            std::time::Duration::from_secs(60),
        );
        assert!(r.success(), "cc: {r:?}");
        std::fs::write(
            dir.path().join("nsswitch.conf"),
            "passwd: files pamtotpfold\ngroup: files\nshadow: files\n",
        )
        .unwrap();
        FoldingNss { dir }
    }

    /// `program args` in a mount namespace whose NSS folds case.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            integration_tests::mount_propagation(),
            "--",
            "sh",
            "-c",
            r#"mount --bind "$1/nsswitch.conf" /etc/nsswitch.conf && shift && LD_LIBRARY_PATH="$0" exec "$@""#,
        ])
        .arg(self.dir.path())
        .arg(self.dir.path())
        .arg(program)
        .args(args);
        c
    }

    /// pamtester SERVICE USER authenticate, answering `input`, under this NSS.
    fn pamtester(&self, service: &str, user: &str, input: &str) -> Run {
        let mut c = self.command("/usr/bin/pamtester", &["-v", service, user, "authenticate"]);
        c.env_remove("LD_PRELOAD");
        run_with_timeout(
            c,
            format!("{input}\n").as_bytes(),
            std::time::Duration::from_secs(60),
        )
    }
}

#[test]
fn a_name_spelled_otherwise_is_the_enrolled_user_nss_maps_it_to() {
    e2e_support::require("/usr/bin/pamtester");
    e2e_support::require("/usr/bin/unshare");
    let nss = FoldingNss::build();
    let user = TestUser::create("nss");
    let upper = user.name.to_uppercase();
    assert_ne!(upper, user.name);
    // The mapping is NSS's, for every program in the namespace.
    let r = run_with_timeout(
        nss.command("getent", &["passwd", &upper]),
        b"",
        std::time::Duration::from_secs(30),
    );
    assert!(
        r.success() && r.stdout.starts_with(&format!("{}:", user.name)),
        "{r:?}"
    );
    let f = Fixture::new();
    f.enroll(&user.name, 2);
    // nullok, and a stack that lets PAM_IGNORE through: the case where a skipped second
    // factor would be a login.
    let service = EtcPamService::new(
        "nss",
        &format!(
            "auth [success=done ignore=ignore default=die] {} {} nullok\n\
             auth required pam_permit.so\n\
             account required pam_permit.so\n",
            module_path().display(),
            f.base_args()
        ),
    );
    let wrong = nss.pamtester(&service.name, &upper, &f.wrong_code());
    assert!(
        !wrong.success(),
        "a wrong code passed for {upper}: {wrong:?}"
    );
    let code = f.code_at(now());
    let right = nss.pamtester(&service.name, &upper, &code);
    assert!(right.success(), "{right:?}");
    // One user, one state: the same code under the enrolled name is a replay, and the
    // wrong code above counted against it.
    let again = nss.pamtester(&service.name, &user.name, &code);
    assert!(!again.success(), "{again:?}");
    let status = f
        .store()
        .status(&common::UserName::parse(&user.name).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(status.counters.rejected_since_success, 1);
    // A name NSS does not know stays "not enrolled": nullok lets it through.
    let unknown = nss.pamtester(&service.name, "nosuchuser-pamtotp", "000000");
    assert!(unknown.success(), "{unknown:?}");
}
