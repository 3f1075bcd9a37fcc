//! The contract of `common::Backend`: "a time step commits at most once across all callers
//! of one backend". Checked here for the files backend: threads in one process, separate
//! processes (which is what concurrent logins are), and bare compare-and-swap commits
//! racing on one version.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};

use common::store::Outcome;
use common::{Backend, Commit, FileKey, FilesBackend, Store, Version};
use support::*;

const THREADS: usize = 32;
const THREAD_ROUNDS: usize = 50;
const PROCESSES: usize = 16;
const PROCESS_ROUNDS: usize = 25;

#[test]
fn threads_presenting_the_same_code_accept_it_once() {
    let fx = Fixture::new();
    for round in 0..THREAD_ROUNDS {
        let (user, secret) = fx.enroll(&format!("t{round}"));
        let code = current_code(&secret);
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (barrier, user, code) = (barrier.clone(), user.clone(), code.clone());
                let (dir, key) = (fx.state_dir.clone(), fx.key_file.clone());
                std::thread::spawn(move || {
                    let store = Store::open(&dir, &key).unwrap();
                    barrier.wait();
                    store.authenticate(&user, &code, &req(now())).unwrap()
                })
            })
            .collect();
        let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let accepted = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Accepted { .. }))
            .count();
        let replayed = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Replayed { .. } | Outcome::Locked { .. }))
            .count();
        assert_eq!(accepted, 1, "round {round}: {outcomes:?}");
        assert_eq!(replayed, THREADS - 1, "round {round}: {outcomes:?}");
    }
}

/// Child side of the process test: waits for a line on stdin, then authenticates once.
#[test]
#[ignore = "run by processes_presenting_the_same_code_accept_it_once"]
fn child_authenticate_once() {
    let Ok(dir) = std::env::var("PAM_TOTP_TEST_STATE_DIR") else {
        return;
    };
    let key = std::env::var("PAM_TOTP_TEST_KEY_FILE").unwrap();
    let user = common::UserName::parse(&std::env::var("PAM_TOTP_TEST_USER").unwrap()).unwrap();
    let store = Store::open(dir.as_ref(), key.as_ref()).unwrap();
    println!("READY");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let outcome = store.authenticate(&user, line.trim(), &req(now())).unwrap();
    let word = match outcome {
        Outcome::Accepted { .. } => "ACCEPTED",
        Outcome::Replayed { .. } | Outcome::Locked { .. } => "REPLAYED",
        _ => "OTHER",
    };
    println!("RESULT {word}");
}

#[test]
fn processes_presenting_the_same_code_accept_it_once() {
    let fx = Fixture::new();
    let exe = std::env::current_exe().unwrap();
    for round in 0..PROCESS_ROUNDS {
        let name = format!("p{round}");
        let (_, secret) = fx.enroll(&name);
        let code = current_code(&secret);
        let mut children: Vec<(Reaped, BufReader<std::process::ChildStdout>)> = (0..PROCESSES)
            .map(|_| {
                let mut child = Command::new(&exe)
                    .args([
                        "--exact",
                        "child_authenticate_once",
                        "--ignored",
                        "--nocapture",
                    ])
                    .env("PAM_TOTP_TEST_STATE_DIR", &fx.state_dir)
                    .env("PAM_TOTP_TEST_KEY_FILE", &fx.key_file)
                    .env("PAM_TOTP_TEST_USER", &name)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                let out = BufReader::new(child.stdout.take().unwrap());
                (Reaped(child), out)
            })
            .collect();
        // Wait until every child has opened the store and waits on stdin.
        for (_, out) in &mut children {
            let ready = out.lines().map_while(Result::ok).any(|l| l == "READY");
            assert!(ready, "round {round}: a child ended before it was ready");
        }
        // Release them together.
        for (c, _) in &mut children {
            writeln!(c.0.stdin.as_mut().unwrap(), "{}", code.as_str()).unwrap();
        }
        let mut results = Vec::new();
        for (mut c, out) in children {
            drop(c.0.stdin.take());
            // Read to the end: the test harness prints after our line.
            let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
            let result = lines
                .iter()
                .find_map(|l| l.strip_prefix("RESULT ").map(str::to_owned))
                .unwrap_or_else(|| "NONE".into());
            assert!(c.0.wait().unwrap().success());
            results.push(result);
        }
        let accepted = results.iter().filter(|r| *r == "ACCEPTED").count();
        let replayed = results.iter().filter(|r| *r == "REPLAYED").count();
        assert_eq!(
            (accepted, replayed),
            (1, PROCESSES - 1),
            "round {round}: {results:?}"
        );
    }
}

#[test]
fn commits_racing_on_one_version_commit_a_step_once() {
    let fx = Fixture::new();
    for round in 0..THREAD_ROUNDS {
        let (user, _) = fx.enroll(&format!("c{round}"));
        let backend = FilesBackend::open(&fx.state_dir).unwrap();
        let keys = FileKey::load(&fx.key_file).unwrap();
        let mut key = None;
        let mut open = common::login::opener(&keys, &user);
        let loaded = backend
            .load(&user, &mut |s| {
                let k = open(s)?;
                key = Some(k.clone());
                Ok(k)
            })
            .unwrap()
            .unwrap();
        let key = key.unwrap();
        let (state_rev, counters_rev) = (loaded.version.state(), loaded.version.counters());
        let mut counters = loaded.counters.clone();
        // Release the lock the load holds: the racers bring only the bare version.
        drop(loaded);
        counters.last_counter = Some(1_000 + round as u64);
        let backend = Arc::new(backend);
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (backend, barrier, user, counters, key) = (
                    backend.clone(),
                    barrier.clone(),
                    user.clone(),
                    counters.clone(),
                    key.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    let v = Version::new(state_rev, counters_rev);
                    backend.commit(&user, v, &counters, &key, true).unwrap()
                })
            })
            .collect();
        let results: Vec<Commit> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let committed = results.iter().filter(|c| **c == Commit::Committed).count();
        assert_eq!(committed, 1, "round {round}: {results:?}");
        let now = backend
            .load(&user, &mut common::login::opener(&keys, &user))
            .unwrap()
            .unwrap();
        assert_eq!(now.counters.last_counter, counters.last_counter);
        assert_ne!(now.version.counters(), counters_rev);
    }
}
