//! Split roles (etcd_store/README.md "Split roles") through the daemons and `totp-enroll`, on
//! a real 3-member cluster with auth enabled: host 0's certificate may write enrollments,
//! hosts 1 and 2 may read them and write counters only. A host that cannot write state cannot
//! enroll or disable, and says why; its logins, and its exactly-once guarantee, still work.
//! Needs `cargo build --workspace` first (the daemon, the CLI and the module run from target/).

mod fleet_hosts;
mod harness;

use fleet_hosts::{code, settled_now, Fleet};
use harness::Cluster;
use integration_tests::pam::{code_name, PAM_AUTH_ERR, PAM_SUCCESS};

#[test]
fn a_host_whose_role_cannot_write_enrollments_cannot_enroll_and_still_logs_in() {
    let c = Cluster::start();
    let fleet = Fleet::start(&c, 2000, "");
    // The README's commands, with this test's certificate names.
    let read_state = ["read", "/pam_totp/v1/state/", "--prefix=true"];
    let write_counters = ["readwrite", "/pam_totp/v1/counters/", "--prefix=true"];
    let write_all = ["readwrite", "/pam_totp/v1/", "--prefix=true"];
    let mut cmds: Vec<Vec<&str>> = vec![
        vec!["user", "add", "root", "--no-password"],
        vec!["user", "grant-role", "root", "root"],
        vec!["role", "add", "pam_totp_host"],
        [
            &["role", "grant-permission", "pam_totp_host"][..],
            &read_state,
        ]
        .concat(),
        [
            &["role", "grant-permission", "pam_totp_host"][..],
            &write_counters,
        ]
        .concat(),
        vec!["role", "add", "pam_totp_enroll"],
        [
            &["role", "grant-permission", "pam_totp_enroll"][..],
            &write_all,
        ]
        .concat(),
    ];
    for (cn, role) in [
        ("host-0", "pam_totp_enroll"),
        ("host-1", "pam_totp_host"),
        ("host-2", "pam_totp_host"),
    ] {
        cmds.push(vec!["user", "add", cn, "--no-password"]);
        cmds.push(vec!["user", "grant-role", cn, role]);
    }
    cmds.push(vec!["auth", "enable"]);
    for args in &cmds {
        c.etcdctl(None, args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"));
    }

    let b32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXQ";
    let secret = common::TotpSecret::from_base32(b32).unwrap();
    let import = ["import", "--user", "daemon", "--secret-stdin"];
    let stdin = format!("{b32}\n");
    // A host that may not write enrollments: refused, with the reason, and nothing written.
    let r = fleet.hosts[1].cli(&import, &stdin);
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(r.stderr.contains("refused this host's credential"), "{r:?}");
    let st = fleet.hosts[2].cli(&["status", "--user", "daemon"], "");
    assert_eq!(st.status, Some(0), "{st:?}");
    assert!(st.stdout.contains("not enrolled"), "{st:?}");
    // The enrolling host may.
    let r = fleet.hosts[0].cli(&import, &stdin);
    assert_eq!(r.status, Some(0), "{r:?}");
    // Hosts that may not write enrollments read them, log users in, and still accept a
    // code once across the fleet.
    let t = settled_now();
    let login =
        |i: usize, step: i64| code_name(fleet.hosts[i].login("daemon", &code(&secret, step)).0);
    assert_eq!(login(1, t), code_name(PAM_SUCCESS), "host 1");
    assert_eq!(
        login(2, t),
        code_name(PAM_AUTH_ERR),
        "the same code on host 2"
    );
    assert_eq!(login(2, t + 30), code_name(PAM_SUCCESS), "host 2");
    let st = fleet.hosts[1].cli(&["status", "--user", "daemon", "--json"], "");
    assert_eq!(st.status, Some(0), "{st:?}");
    let json: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(json["last_counter"], (t + 30) / 30, "{json}");
    let l = fleet.hosts[2].cli(&["list"], "");
    assert_eq!(l.status, Some(0), "{l:?}");
    assert!(l.stdout.contains("daemon"), "{l:?}");
    // Removing is writing: refused on host 2, done on host 0.
    let r = fleet.hosts[2].cli(&["disable", "--user", "daemon"], "");
    assert_eq!(r.status, Some(1), "{r:?}");
    assert!(r.stderr.contains("refused this host's credential"), "{r:?}");
    let st = fleet.hosts[1].cli(&["status", "--user", "daemon"], "");
    assert!(
        !st.stdout.contains("not enrolled"),
        "still enrolled: {st:?}"
    );
    let r = fleet.hosts[0].cli(&["disable", "--user", "daemon"], "");
    assert_eq!(r.status, Some(0), "{r:?}");
    let st = fleet.hosts[1].cli(&["status", "--user", "daemon"], "");
    assert!(st.stdout.contains("not enrolled"), "{st:?}");
}
