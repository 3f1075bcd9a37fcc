//! A commit that applied while its sender never heard so, and that another host overwrote
//! before the sender looked again, is still reported as committed: it was. (Reported as a
//! conflict, the login that sent it would decide again, find its own step committed and call
//! its own code a replay.) The answer is hidden by a TCP proxy in front of one member that
//! stops passing the member's replies; the real 3-member cluster of `harness` does the rest.

mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::Cluster;
use pam_totp_etcd::{Config, Expect, Outcome, Store, DEFAULT_PREFIX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const USER: &str = "alice";

/// Forwards 127.0.0.1:port to a member's client port; replies pass while `pass` is set.
async fn proxy(target: u16, pass: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = l.accept().await {
            let pass = pass.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut ri, &mut wo).await;
                });
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n) = ro.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if pass.load(Ordering::SeqCst) && wi.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_applied_unheard_and_overwritten_since_is_still_committed() {
    let c = Cluster::start();
    let admin = c.store("root", 0, 5000).await;
    let Outcome::Committed { .. } = admin
        .put_state(USER, b"state", Expect::Absent)
        .await
        .unwrap()
    else {
        panic!("enroll")
    };
    let pass = Arc::new(AtomicBool::new(true));
    let port = proxy(c.members[0].client_port, pass.clone()).await;
    // The host asks through the proxy first, then member 1 directly.
    let s = Store::connect(Config {
        endpoints: vec![format!("https://127.0.0.1:{port}"), c.endpoint(1)],
        tls: Some(c.client_cert("host-s")),
        prefix: DEFAULT_PREFIX.into(),
        timeout_ms: 2000,
    })
    .await
    .unwrap();
    let l = s.load(USER).await.unwrap().unwrap();
    // Another host overwrites our counters as soon as it sees them.
    let t = c.store("host-t", 2, 2000).await;
    let watcher = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let lt = t.load(USER).await.unwrap().unwrap();
            if lt.counters.as_deref() == Some(&b"ours"[..]) {
                return t
                    .commit_counters(USER, lt.state_revision, lt.counters_revision, b"theirs")
                    .await
                    .unwrap();
            }
        }
        panic!("our commit never applied");
    });
    pass.store(false, Ordering::SeqCst);
    let r = s
        .commit_counters(USER, l.state_revision, l.counters_revision, b"ours")
        .await;
    assert!(
        matches!(watcher.await.unwrap(), Outcome::Committed { .. }),
        "the other host must have overwritten our applied commit"
    );
    let now = admin.load(USER).await.unwrap().unwrap();
    assert_eq!(now.counters.as_deref(), Some(&b"theirs"[..]));
    assert!(
        matches!(r, Ok(Outcome::Committed { .. })),
        "our commit applied: {r:?}"
    );
}
