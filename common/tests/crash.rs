//! Crash safety: a process rewriting one user's state in a loop is SIGKILLed at random
//! moments; after each kill the state loads and is the old state or the new one.
//!
//! The child alternates the two kinds of write the store makes: in-place counter updates
//! (a wrong code: failures + 1) and whole-file atomic rewrites (unlock: failures = 0, and
//! new recovery codes). After each completed write it prints the failure count it left.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{AuthRequest, UserName};
use support::*;

const KILLS: usize = 1000;
/// Kills that land after a write reached the disk but before the child reported it, of each
/// kind of write, without which the test would show nothing about torn writes. About a third
/// of the kills land there; the run goes on (up to `MAX_KILLS`) until it has them.
const MIN_MID_WRITE_KILLS: usize = 10;
const MAX_KILLS: usize = 10 * KILLS;

fn no_lock_req() -> AuthRequest<'static> {
    AuthRequest {
        max_failures: 0,
        ..req(now())
    }
}

/// What operation `i` does and the failure count it leaves, given the count before it.
fn apply(i: u64, failures: u32) -> u32 {
    if i.is_multiple_of(7) {
        0
    } else {
        failures + 1
    }
}

#[test]
#[ignore = "run by sigkill_during_writes_leaves_old_or_new_state"]
fn child_write_loop() {
    let Ok(dir) = std::env::var("PAM_TOTP_TEST_STATE_DIR") else {
        return;
    };
    let key = std::env::var("PAM_TOTP_TEST_KEY_FILE").unwrap();
    let start: u64 = std::env::var("PAM_TOTP_TEST_START")
        .unwrap()
        .parse()
        .unwrap();
    let user = UserName::parse("crash").unwrap();
    let store = Store::open(dir.as_ref(), key.as_ref()).unwrap();
    println!("READY");
    for i in start.. {
        if i.is_multiple_of(7) {
            store.unlock(&user).unwrap();
            if i.is_multiple_of(21) {
                store.regenerate_recovery_codes(&user, 10).unwrap();
            }
        } else {
            store.authenticate(&user, "abcdef", &no_lock_req()).unwrap();
        }
        let s = store.status(&user).unwrap().unwrap();
        println!("DONE {i} {}", s.counters.failures);
    }
}

#[test]
fn sigkill_during_writes_leaves_old_or_new_state() {
    let fx = Fixture::new();
    let (user, _) = fx.enroll("crash");
    let exe = std::env::current_exe().unwrap();
    let mut next_op: u64 = 1;
    let mut failures: u32 = 0;
    // Mid-write kills by kind: in-place counters write, whole-file rewrite.
    let mut mid_write_kills = [0usize; 2];
    let mut kill = 0;
    while kill < KILLS
        || (mid_write_kills.iter().any(|&n| n < MIN_MID_WRITE_KILLS) && kill < MAX_KILLS)
    {
        kill += 1;
        let mut child = Reaped(
            Command::new(&exe)
                .args(["--exact", "child_write_loop", "--ignored", "--nocapture"])
                .env("PAM_TOTP_TEST_STATE_DIR", &fx.state_dir)
                .env("PAM_TOTP_TEST_KEY_FILE", &fx.key_file)
                .env("PAM_TOTP_TEST_START", next_op.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let (tx, rx) = mpsc::channel();
        let out = BufReader::new(child.0.stdout.take().unwrap());
        let reader = std::thread::spawn(move || {
            // Only our lines; the test harness prints its own.
            let ours = out
                .lines()
                .map_while(Result::ok)
                .filter(|l| l == "READY" || l.starts_with("DONE "));
            for line in ours {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), "READY");
        let delay = random_u64() % 4000;
        std::thread::sleep(Duration::from_micros(delay));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        reader.join().unwrap();
        // The last write the child reported complete.
        for line in rx.try_iter() {
            let mut parts = line.split_whitespace().skip(1);
            let i: u64 = parts.next().unwrap().parse().unwrap();
            let f: u32 = parts.next().unwrap().parse().unwrap();
            assert_eq!(i, next_op, "kill {kill}: child skipped an operation");
            failures = f;
            next_op = i + 1;
        }
        let status = fx
            .store()
            .status(&user)
            .unwrap_or_else(|e| panic!("kill {kill}: state does not load: {e}"))
            .unwrap();
        let new = apply(next_op, failures);
        let got = status.counters.failures;
        assert!(
            got == failures || got == new,
            "kill {kill}: op {next_op}: failures {got}, expected old {failures} or new {new}"
        );
        if got == new && new != failures {
            // The kill landed after the write but before the child reported it.
            mid_write_kills[usize::from(next_op.is_multiple_of(7))] += 1;
            failures = new;
            next_op += 1;
        }
        let codes = status.recovery_codes_left;
        assert_eq!(codes, 10, "kill {kill}: recovery codes torn");
    }
    let [counters_writes, rewrites] = mid_write_kills;
    eprintln!(
        "{kill} kills, {counters_writes} after a counters write and {rewrites} after a whole-file \
         rewrite but before its report; reached op {next_op}"
    );
    assert!(
        counters_writes >= MIN_MID_WRITE_KILLS && rewrites >= MIN_MID_WRITE_KILLS,
        "too few kills landed mid-write: {mid_write_kills:?} in {kill} kills"
    );
}
