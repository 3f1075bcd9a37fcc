//! Exactly-once acceptance through libpam, the contract of `common::Backend` seen from
//! outside: "a time step commits at most once across all callers of one backend". Many
//! pamtester processes, each loading pam_totp.so, present the same valid code for one user
//! at the same moment. All of them are held at the prompt first, then answered together, so
//! they race for the user's lock; exactly one is accepted.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use integration_tests::pam::*;

const PROCESSES: usize = 32;
const ROUNDS: usize = 20;
const PROMPT: &[u8] = b"Verification code: ";

struct Racer {
    child: Reaped,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

/// A child process killed and reaped on drop, so a failing round leaves none behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts pamtester and a reader that signals `ready` once the prompt is on stderr.
fn start(service: &str, user: &str, ready: mpsc::Sender<()>) -> Racer {
    let mut child = Command::new("/usr/bin/pamtester")
        .args(["-v", service, user, "authenticate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pamtester (Debian package pamtester) must be installed");
    let mut err = child.stderr.take().unwrap();
    let mut out = child.stdout.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        let mut signalled = false;
        while let Ok(1) = err.read(&mut byte) {
            seen.push(byte[0]);
            if !signalled && seen.ends_with(PROMPT) {
                signalled = true;
                let _ = ready.send(());
            }
        }
        seen
    });
    let stdout = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    Racer {
        child: Reaped(child),
        stdout,
        stderr,
    }
}

fn kill_all(racers: &mut [Racer]) {
    for r in racers.iter_mut() {
        let _ = r.child.0.kill();
        let _ = r.child.0.wait();
    }
}

/// One round: returns (exit code, stdout, stderr) of every process.
fn race(service: &str, user: &str, code: &str) -> Vec<(Option<i32>, String, String)> {
    let (tx, rx) = mpsc::channel();
    let mut racers: Vec<Racer> = (0..PROCESSES)
        .map(|_| start(service, user, tx.clone()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..PROCESSES {
        let left = deadline.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            kill_all(&mut racers);
            panic!("only {i} of {PROCESSES} pamtester processes reached the prompt");
        }
    }
    // Everyone waits at the prompt: answer them all at once.
    let answer = format!("{code}\n");
    for r in racers.iter_mut() {
        let mut stdin = r.child.0.stdin.take().unwrap();
        let _ = stdin.write_all(answer.as_bytes());
    }
    let mut results = Vec::new();
    for mut r in racers {
        let status = loop {
            if let Some(st) = r.child.0.try_wait().unwrap() {
                break st;
            }
            if Instant::now() >= deadline {
                let _ = r.child.0.kill();
                panic!("a pamtester process did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let out = String::from_utf8_lossy(&r.stdout.join().unwrap()).into_owned();
        let err = String::from_utf8_lossy(&r.stderr.join().unwrap()).into_owned();
        results.push((status.code(), out, err));
    }
    results
}

#[test]
fn same_code_from_32_processes_is_accepted_exactly_once_in_every_round() {
    let f = Fixture::new();
    // No lock, so every loser shows the replay refusal rather than a lockout.
    let svc = f.etc_service("race", "max_failures=0");
    for round in 0..ROUNDS {
        let user = format!("race-{round}");
        f.enroll(&user, 0);
        while now() % 30 >= 25 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let code = f.code_at(now());
        let results = race(&svc.name, &user, &code);
        let winners: Vec<_> = results.iter().filter(|r| r.0 == Some(0)).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(winners[0].1.contains("successfully authenticated"));
        for (status, _, err) in results.iter().filter(|r| r.0 != Some(0)) {
            assert_eq!(*status, Some(1), "round {round}: {err}");
            assert!(
                err.contains("Authentication failure") && err.contains("already used"),
                "round {round}: a loser must see the replay refusal: {err}"
            );
        }
        let status = f
            .store()
            .status(&common::UserName::parse(&user).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            status.counters.failures as usize,
            PROCESSES - 1,
            "round {round}"
        );
    }
}

#[test]
fn same_hotp_code_from_32_processes_is_accepted_exactly_once_in_every_round() {
    use common::{hotp, Algorithm, OtpParams, UserName};
    let f = Fixture::new();
    let svc = f.etc_service("hotprace", "max_failures=0");
    let params = OtpParams::hotp(Algorithm::SHA1, 6).unwrap();
    let user = "hotprace";
    f.enroll_with(user, f.secret(), params, 0);
    let mut last = None;
    // Each round presses the token a few times ahead, within hotp_window (10).
    for (round, counter) in [0u64, 3, 4, 9, 18].into_iter().enumerate() {
        let code = hotp::code_at(&f.secret(), &params, counter);
        let results = race(&svc.name, user, &code);
        let winners = results.iter().filter(|r| r.0 == Some(0)).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for (status, _, err) in results.iter().filter(|r| r.0 != Some(0)) {
            assert_eq!(*status, Some(1), "round {round}: {err}");
            assert!(
                err.contains("already used"),
                "round {round}: a loser must see the replay refusal: {err}"
            );
        }
        let status = f
            .store()
            .status(&UserName::parse(user).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(status.counters.last_counter, Some(counter), "round {round}");
        assert!(last < Some(counter));
        last = Some(counter);
    }
}

#[test]
fn a_login_waiting_at_the_prompt_holds_no_lock() {
    let f = Fixture::new();
    f.enroll("patient", 0);
    let svc = f.etc_service("prompt", "");
    let (tx, rx) = mpsc::channel();
    let mut waiting = start(&svc.name, "patient", tx);
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        kill_all(std::slice::from_mut(&mut waiting));
        panic!("pamtester did not reach the prompt");
    }
    // While the first login sits at the prompt, a second one for the same user succeeds:
    // had the first taken the user's lock, the second would wait for it and then fail.
    while now() % 30 >= 27 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = pamtester(
        &svc.name,
        "patient",
        format!("{}\n", f.code_at(now())).as_bytes(),
        None,
    );
    let finished_early = waiting.child.0.try_wait().unwrap().is_some();
    let mut stdin = waiting.child.0.stdin.take().unwrap();
    let _ = stdin.write_all(format!("{}\n", f.wrong_code()).as_bytes());
    drop(stdin);
    let status = waiting.child.0.wait().unwrap();
    assert!(r.success(), "{r:?}");
    assert!(
        !finished_early,
        "the first login should still have been waiting"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "the waiting login's wrong code is refused"
    );
    let _ = waiting.stdout.join();
    let _ = waiting.stderr.join();
}
