//! Latency of one login's round trips (load, then compare-and-swap of the counters) against a
//! real 3-member TLS cluster on 127.0.0.1, uncontended and with 32-way contention.
//!
//! `cargo run --release -p pam_totp_etcd --example bench [iterations]`

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pam_totp_etcd::{Expect, Outcome};
use tokio::sync::Barrier;

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations: usize = std::env::args().nth(1).map_or(500, |a| a.parse().unwrap());
    let c = harness::Cluster::start();
    c.client_cert("bench");
    let s = c.store("bench", 0, 2000).await;
    s.put_state("solo", b"state", Expect::Absent).await.unwrap();
    s.put_state("crowd", b"state", Expect::Absent)
        .await
        .unwrap();

    // Uncontended: one host, one user, read then commit.
    let mut lat = Vec::with_capacity(iterations);
    for i in 0..iterations + 20 {
        let t = Instant::now();
        let l = s.load("solo").await.unwrap().unwrap();
        let r = s
            .commit_counters(
                "solo",
                l.state_revision,
                l.counters_revision,
                format!("{i}").as_bytes(),
            )
            .await
            .unwrap();
        assert!(matches!(r, Outcome::Committed { .. }));
        if i >= 20 {
            lat.push(t.elapsed());
        }
    }
    report("load+commit uncontended", lat);

    // 32 contenders on one user, clients spread over the 3 members, started together.
    let mut stores = Vec::new();
    for k in 0..32 {
        stores.push(c.store("bench", k % 3, 2000).await);
    }
    let rounds = (iterations / 10).max(20);
    let mut lat = Vec::new();
    let mut winners = 0;
    let t_all = Instant::now();
    for round in 0..rounds {
        let barrier = Arc::new(Barrier::new(stores.len()));
        let tasks: Vec<_> = stores
            .iter()
            .map(|s| {
                let (s, b) = (s.clone(), barrier.clone());
                tokio::spawn(async move {
                    b.wait().await;
                    let t = Instant::now();
                    let l = s.load("crowd").await.unwrap().unwrap();
                    let r = s
                        .commit_counters(
                            "crowd",
                            l.state_revision,
                            l.counters_revision,
                            format!("{round}").as_bytes(),
                        )
                        .await;
                    (t.elapsed(), matches!(r, Ok(Outcome::Committed { .. })))
                })
            })
            .collect();
        for t in tasks {
            let (d, won) = t.await.unwrap();
            lat.push(d);
            winners += usize::from(won);
        }
    }
    let wall = t_all.elapsed();
    report("load+commit 32-way contention (every contender)", lat);
    println!(
        "contention: {rounds} rounds, {winners} commits ({:.0} rounds/s, {:.0} requests/s)",
        rounds as f64 / wall.as_secs_f64(),
        (rounds * 32 * 2) as f64 / wall.as_secs_f64()
    );
}
