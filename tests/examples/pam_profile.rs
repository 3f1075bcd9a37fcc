//! Driver for profiling one module's login path through the real libpam, for callgrind
//! (instruction counts are repeatable on a loaded machine, unlike wall time) and strace.
//!
//! Usage, as root: `pam_profile MODULE.so WORKLOAD N` with WORKLOAD one of `success`,
//! `replay`, `wrong`. One PAM handle, reused for the N logins as bench/pam does, with the
//! packaged pam_totp.conf and `nullok max_failures=0`. Before each `success`, the user is
//! enrolled again (outside `pam_sm_authenticate`, so not counted with
//! `--toggle-collect=pam_sm_authenticate`). N = 1 in a fresh process is the first login of
//! a process (what each sshd connection pays). See bench/pam/README.md, "Profiling".
//!
//! Not a test and not a benchmark: it prints nothing but a mismatch.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::UserName;
use integration_tests::pam::{now, ConvMode, Fixture, Pam, Reply, PAM_AUTH_ERR, PAM_SUCCESS};

const SHIPPED_CONF: &str = include_str!("../../packaging/pam_totp.conf");
const USER: &str = "pprofile";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, module, workload, n] = &args[..] else {
        panic!("usage: pam_profile MODULE.so success|replay|wrong N");
    };
    let module = PathBuf::from(module).canonicalize().expect("module path");
    let n: usize = n.parse().expect("N");

    let fx = Fixture::new();
    std::fs::write(&fx.config, SHIPPED_CONF).unwrap();
    std::fs::set_permissions(&fx.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        fx.confdir.join("prof"),
        format!(
            "auth required {} {} nullok max_failures=0\n",
            module.display(),
            fx.base_args()
        ),
    )
    .unwrap();
    fx.enroll(USER, 10);

    let mut pam = Pam::start(
        &fx.confdir,
        "prof",
        Some(USER.as_bytes()),
        ConvMode::Scripted,
    );
    pam.set_rhost("192.0.2.1");
    let (fixed, want) = match workload.as_str() {
        "success" => (None, PAM_SUCCESS),
        "replay" => {
            // Enrolled as if the current step's code had confirmed the enrollment: it is
            // spent without a login (so every call counted is a replay), and stays a replay
            // if the run crosses a 30 s boundary (then it is the previous step's).
            let t = now();
            let user = UserName::parse(USER).unwrap();
            let step = t as u64 / u64::from(fx.params.period());
            fx.store()
                .enroll(&user, fx.secret(), fx.params, Some(step), 10, true, t)
                .expect("enroll");
            (Some(fx.code_at(t)), PAM_AUTH_ERR)
        }
        "wrong" => (Some(fx.wrong_code()), PAM_AUTH_ERR),
        w => panic!("unknown workload {w}"),
    };
    for _ in 0..n {
        let code = match &fixed {
            Some(c) => c.clone(),
            None => {
                fx.enroll(USER, 10);
                fx.code_at(now())
            }
        };
        pam.reply([Reply::text(&code)]);
        let rc = pam.authenticate(0);
        if rc != want {
            eprintln!("pam_profile: {workload}: got {rc}, expected {want}");
        }
    }
}
