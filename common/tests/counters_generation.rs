//! The counters record of the state file in force is never the one overwritten, even when a
//! record of a newer generation (an enrollment whose state file never got renamed into
//! place) sits in the other slot.

mod support;

use std::os::unix::fs::FileExt;

use common::Outcome;
use common::UserName;
use support::*;

const SLOT_OFFSETS: [u64; 2] = [0, 4096];
const SLOT_LEN: usize = 256;

fn slots(path: &std::path::Path) -> [Vec<u8>; 2] {
    let bytes = std::fs::read(path).unwrap();
    SLOT_OFFSETS.map(|o| bytes[o as usize..o as usize + SLOT_LEN].to_vec())
}

#[test]
fn a_torn_login_after_an_unfinished_enrollment_keeps_spent_codes_spent() {
    let fx = Fixture::new();
    let user = UserName::parse("hank").unwrap();
    let store = fx.store();
    let t = now();
    let codes = store
        .enroll(
            &user,
            secret_for("hank"),
            Default::default(),
            None,
            3,
            false,
            t,
        )
        .unwrap();
    let spent = codes[0].display();
    assert!(matches!(
        store.authenticate(&user, &spent, &req(t)).unwrap(),
        Outcome::RecoveryAccepted { .. }
    ));
    let secret = secret_for("hank");
    assert!(matches!(
        store
            .authenticate(&user, &current_code(&secret), &req(t))
            .unwrap(),
        Outcome::Accepted { .. }
    ));
    let before = store.status(&user).unwrap().unwrap().counters;
    assert!(before.last_counter.is_some());

    // A re-enrollment writes its counters record, but its state file "never gets renamed
    // into place": the old state file is put back, as after ENOSPC or SIGKILL.
    let state_file = fx.state_dir.join("hank");
    let old_state = std::fs::read(&state_file).unwrap();
    store
        .enroll(
            &user,
            secret_for("other"),
            Default::default(),
            None,
            3,
            true,
            t,
        )
        .unwrap();
    std::fs::write(&state_file, &old_state).unwrap();

    // A login (a wrong code) writes a counters record; tear the slot it wrote.
    let counters = fx.state_dir.join(".hank.counters");
    let prior = slots(&counters);
    assert!(matches!(
        store
            .authenticate(&user, &wrong_code(&secret), &req(t))
            .unwrap(),
        Outcome::Rejected { .. }
    ));
    let after = slots(&counters);
    let written = (0..2)
        .find(|&i| prior[i] != after[i])
        .expect("a slot changed");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&counters)
        .unwrap();
    file.write_all_at(&[0xAA; 40], SLOT_OFFSETS[written] + 20)
        .unwrap();

    // The record of the generation in force survives: nothing goes back.
    let now_counters = fx.store().status(&user).unwrap().unwrap().counters;
    assert_eq!(now_counters.recovery_used, before.recovery_used);
    assert_eq!(now_counters.last_counter, before.last_counter);
    let again = fx.store().authenticate(&user, &spent, &req(t)).unwrap();
    assert!(
        !matches!(again, Outcome::RecoveryAccepted { .. }),
        "a spent recovery code worked again: {again:?}"
    );
}
