//! Login latency and throughput through real libpam and pam_totp.so, with the fleet backend
//! (three `pam_totpd` hosts on a real 3-member TLS cluster on 127.0.0.1) and, for comparison,
//! with the files backend (the module in-process, as root):
//! - one host, uncontended: p50 and p99 of one login;
//! - one host, 32 logins with one code at once: p50 and p99 of every login of every round;
//! - logins per second: `threads` callers logging in at once, spread over the three hosts
//!   (files: over one host).
//!
//! Every login is a whole PAM transaction (`pam_start_confdir` .. `pam_end`) that accepts a
//! fresh code (a user of its own), so each one commits.
//!
//! `cargo build --release --workspace && cargo run --release -p pam_totp_etcd --example
//! fleet_bench [logins]`

#[path = "../tests/fleet_hosts/mod.rs"]
mod fleet_hosts;
#[path = "../tests/harness/mod.rs"]
mod harness;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{OtpParams, TotpSecret};
use fleet_hosts::{code, Fleet};
use integration_tests::pam::{code_name, now, Fixture, Reply, PAM_SUCCESS};

const THREADS: usize = 12;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{what}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().unwrap().as_secs_f64() * 1e3
    );
}

/// A way to log in: (host index, user, code) -> (PAM code, duration).
trait Hosts: Sync {
    fn count(&self) -> usize;
    fn login(&self, host: usize, user: &str, code: &str) -> (i32, Duration);
}

impl Hosts for Fleet {
    fn count(&self) -> usize {
        self.hosts.len()
    }
    fn login(&self, host: usize, user: &str, code: &str) -> (i32, Duration) {
        let r = self.hosts[host].login(user, code);
        (r.0, r.2)
    }
}

struct Local {
    fx: Fixture,
    service: String,
}

impl Hosts for Local {
    fn count(&self) -> usize {
        1
    }
    fn login(&self, _: usize, user: &str, code: &str) -> (i32, Duration) {
        let t = Instant::now();
        let a = self.fx.attempt(
            &self.service,
            user.as_bytes(),
            Some("198.51.100.7"),
            vec![Reply::text(code)],
        );
        (a.code, t.elapsed())
    }
}

/// Runs the three measurements; `enroll` makes a user and returns its secret.
fn measure(name: &str, hosts: &dyn Hosts, n: usize, enroll: &mut dyn FnMut(&str) -> TotpSecret) {
    let users: Vec<(String, TotpSecret)> = (0..n)
        .map(|i| {
            let u = format!("{name}-solo{i}");
            let s = enroll(&u);
            (u, s)
        })
        .collect();
    let lat: Vec<Duration> = users
        .iter()
        .map(|(u, s)| {
            let (rc, d) = hosts.login(0, u, &code(s, now()));
            assert_eq!(rc, PAM_SUCCESS, "{}", code_name(rc));
            d
        })
        .collect();
    report(&format!("{name}: one host, uncontended"), lat);

    let rounds = (n / 32).max(10);
    let mut lat = Vec::new();
    for round in 0..rounds {
        let u = format!("{name}-crowd{round}");
        let s = enroll(&u);
        let typed = code(&s, now());
        let barrier = Arc::new(Barrier::new(32));
        let results: Vec<(i32, Duration)> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..32)
                .map(|_| {
                    let (barrier, u, typed) = (barrier.clone(), &u, &typed);
                    sc.spawn(move || {
                        barrier.wait();
                        hosts.login(0, u, typed)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = results.iter().filter(|r| r.0 == PAM_SUCCESS).count();
        assert_eq!(won, 1, "round {round}");
        lat.extend(results.iter().map(|r| r.1));
    }
    report(
        &format!("{name}: one host, 32 logins with one code at once"),
        lat,
    );

    let per_thread = n.div_ceil(THREADS);
    let users: Vec<Vec<(String, TotpSecret)>> = (0..THREADS)
        .map(|t| {
            (0..per_thread)
                .map(|i| {
                    let u = format!("{name}-rate{t}x{i}");
                    let s = enroll(&u);
                    (u, s)
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    std::thread::scope(|sc| {
        for (t, mine) in users.iter().enumerate() {
            sc.spawn(move || {
                for (u, s) in mine {
                    let (rc, _) = hosts.login(t % hosts.count(), u, &code(s, now()));
                    assert_eq!(rc, PAM_SUCCESS, "{}", code_name(rc));
                }
            });
        }
    });
    let total = THREADS * per_thread;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name}: {total} logins by {THREADS} callers over {} host(s) in {secs:.2} s: {:.0} logins/s",
        hosts.count(),
        total as f64 / secs
    );
}

fn main() {
    let n: usize = std::env::args().nth(1).map_or(200, |a| a.parse().unwrap());

    let fx = Fixture::new();
    let service = fx.service("");
    let local = Local { fx, service };
    measure("files", &local, n, &mut |u| {
        let s = TotpSecret::generate().unwrap();
        let again = TotpSecret::from_base32(&s.to_base32()).unwrap();
        local.fx.enroll_with(u, s, OtpParams::default(), 0);
        again
    });

    let c = harness::Cluster::start();
    let fleet = Fleet::start(&c, 2000, "");
    measure("etcd", &fleet, n, &mut |u| fleet.enroll(u));
}
