//! Time from starting `totp-enroll` to the whole QR code on the screen of a terminal:
//! `cargo bench -p totp-enroll --bench time_to_qr` (as root: it points the program at a
//! temporary state directory and key, which only root may do). Prints figures; asserts
//! nothing about speed.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::pty::{openpty, Winsize};

const RUNS: usize = 50;
/// The line printed right after the QR code.
const AFTER_QR: &[u8] = b"Or type the secret";

fn main() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("time_to_qr: run as root (the bench uses --state-dir and --key-file)");
        std::process::exit(1);
    }
    let dir = std::env::temp_dir().join(format!("time-to-qr-{}", std::process::id()));
    let state = dir.join("state");
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(&state)
        .unwrap();
    let key = dir.join("key");
    common::HostKey::generate().unwrap().store(&key).unwrap();
    let args = [
        "--state-dir".to_owned(),
        state.display().to_string(),
        "--key-file".to_owned(),
        key.display().to_string(),
        "--config".to_owned(),
        dir.join("absent.conf").display().to_string(),
    ];

    let mut times: Vec<Duration> = (0..RUNS).map(|_| one_run(&args)).collect();
    let _ = std::fs::remove_dir_all(&dir);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "totp-enroll ({}): start to QR code on screen over {RUNS} runs: median {:.1} ms, \
         p90 {:.1} ms, min {:.1} ms, max {:.1} ms",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        ms(times[RUNS / 2]),
        ms(times[RUNS * 9 / 10]),
        ms(times[0]),
        ms(times[RUNS - 1]),
    );
}

/// Starts the program on a 120x60 pseudo-terminal and reads until the QR code is complete.
fn one_run(args: &[String]) -> Duration {
    let size = Winsize {
        ws_row: 60,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(&size, None).expect("openpty");
    let stdio = || Stdio::from(pty.slave.try_clone().expect("dup"));
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_totp-enroll"))
        .args(args)
        .stdin(stdio())
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .expect("start totp-enroll");
    drop(pty.slave);
    let (tx, rx) = mpsc::channel();
    let mut master = File::from(pty.master);
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(AFTER_QR.len()).any(|w| w == AFTER_QR) {
                let _ = tx.send(Instant::now());
                break;
            }
        }
    });
    let shown = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    shown.expect("no QR code within 10 s") - started
}
