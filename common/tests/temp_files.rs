//! A save removes the temp files that a writer killed mid-save left for the same file.

mod support;

use support::*;

#[test]
fn a_save_removes_the_users_stale_temp_files_only() {
    let fx = Fixture::new();
    let dir = &fx.state_dir;
    // Left by writers SIGKILLed during a save: two of alice's, one of user "alice.b".
    let stale = [".tmp.alice.0123456789abcdef", ".tmp.alice.fedcba9876543210"];
    let others = [".tmp.alice.b.0123456789abcdef", ".tmp.alice.not-ours"];
    for name in stale.iter().chain(&others) {
        std::fs::write(dir.join(name), b"half a state file").unwrap();
    }
    // Enrollment is a save (an unenrolled user needs no code to start one)...
    let (user, _) = fx.enroll("alice");
    for name in stale {
        assert!(!dir.join(name).exists(), "{name} left behind");
    }
    for name in others {
        assert!(dir.join(name).exists(), "{name} is not alice's");
    }
    // ...and so is every whole-file rewrite.
    std::fs::write(dir.join(stale[0]), b"again").unwrap();
    fx.store().unlock(&user).unwrap();
    assert!(!dir.join(stale[0]).exists());
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".tmp.alice.") && !others.contains(&n.as_str()))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}
