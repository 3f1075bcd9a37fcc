//! A plain user on a fleet host, with `totp-enroll` installed setuid root as the package
//! installs it: the user enrolls in a terminal (QR code, confirmation code), and the
//! enrollment is the fleet's (a login on another host accepts it, once). The setuid program
//! reaches the host's `pam_totpd` with root's effective uid, while its own rules, decided by
//! the caller's real uid, still keep the user to their own account.
//!
//! A plain user cannot point the program at another config, so the fleet's config sits at
//! the default path, in a private root (an overlay of /, e2e_support::rerun_in_private_root)
//! that leaves the machine's own files as they were. Needs `cargo build --workspace` first.

#[path = "../../tests/tests/cli_support/mod.rs"]
mod cli_support;
#[path = "../../tests/tests/e2e_support/mod.rs"]
mod e2e_support;
mod fleet_hosts;
mod harness;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use cli_support::{Installed, Session};
use e2e_support::TestUser;
use fleet_hosts::{code, Fleet};
use harness::Cluster;
use integration_tests::pam::{code_name, now, run_with_timeout, PAM_AUTH_ERR, PAM_SUCCESS};

const CONFIG: &str = "/etc/security/pam_totp.conf";
const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn a_plain_user_enrolls_on_a_fleet_host_with_the_setuid_program() {
    if e2e_support::rerun_in_private_root(
        "a_plain_user_enrolls_on_a_fleet_host_with_the_setuid_program",
    ) {
        return;
    }
    let c = Cluster::start();
    let fleet = Fleet::start(&c, 2000, "");
    // Host 0's config at the default path (in the private root only).
    fs::copy(&fleet.hosts[0].fx.config, CONFIG).unwrap();
    fs::set_permissions(CONFIG, fs::Permissions::from_mode(0o644)).unwrap();
    // The program as installed: root's, mode 4755, where every user reaches it.
    let installed = Installed::new();
    let bin = installed.path();
    let bin = bin.to_str().unwrap();
    let alice = TestUser::create("fu");
    let run_as = |args: &[&str], stdin: &str| {
        run_with_timeout(alice.command(bin, args), stdin.as_bytes(), TIMEOUT)
    };

    // Enrollment in a terminal, as on any host.
    let mut s = Session::spawn_command(alice.command(bin, &[]));
    let shown = s.shown();
    assert!(
        shown.uri.contains(&format!(":{}?", alice.name)),
        "{}",
        shown.uri
    );
    let secret = shown.secret();
    s.send_line(&code(&secret, now()));
    let codes = s.recovery_codes();
    let (out, status, _) = s.finish();
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("You are now enrolled"), "{out}");

    // It is the fleet's: a recovery code works on host 1, once across the fleet.
    let login = |i: usize, input: &str| code_name(fleet.hosts[i].login(&alice.name, input).0);
    assert_eq!(login(1, &codes[0]), code_name(PAM_SUCCESS), "host 1");
    assert_eq!(
        login(2, &codes[0]),
        code_name(PAM_AUTH_ERR),
        "spent, on host 2"
    );

    // The user's own status, through the daemon; nobody else's, and no root command.
    let r = run_as(&["status", "--json"], "");
    assert!(r.success(), "{r:?}");
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(json["enrolled"], true, "{json}");
    assert_eq!(json["recovery_codes_left"], codes.len() - 1, "{json}");
    for args in [
        &["status", "--user", "root"][..],
        &["list"],
        &["rekey", "--stage"],
        &["unlock", "--user", alice.name.as_str()],
    ] {
        let r = run_as(args, "");
        assert_eq!(r.status, Some(1), "{args:?}: {r:?}");
    }
    assert!(
        !Path::new(&format!("{}.new", fleet.hosts[0].fx.key_file.display())).exists(),
        "a plain user staged a key"
    );

    // Disabling needs a current code (checked by the fleet: a fresh step), then the
    // enrollment is gone from every host.
    let r = run_as(&["disable"], &format!("{}\n", code(&secret, now() + 30)));
    assert!(r.success(), "{r:?}");
    let gone = fleet.hosts[2].login(&alice.name, &codes[1]);
    assert!(
        gone.1.iter().any(|m| m.contains("not set up")),
        "{:?}",
        gone.1
    );
}
