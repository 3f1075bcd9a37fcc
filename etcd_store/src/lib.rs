//! pam_totp's fleet store: per-user enrollment state and counters on an etcd v3 cluster.
//!
//! This crate is linked by the daemon `pam_totpd` only: it carries a gRPC/TLS stack (tonic,
//! rustls) that the PAM module must never load. [`Store`] knows nothing about TOTP: it stores
//! opaque bytes and offers the one primitive the fleet needs, a linearizable compare-and-swap of
//! a user's counters on the revisions of both of the user's keys (SPEC.md "Fleet").
//! [`EtcdBackend`] puts it behind pam_totp's storage seam (`common::Backend`).
//!
//! # Key layout
//!
//! Under `prefix` (SPEC `[etcd] prefix`, default [`DEFAULT_PREFIX`] = `"/pam_totp/v1/"`):
//!
//! | key | value | written by |
//! |---|---|---|
//! | `{prefix}state/{user}` | the caller's state bytes, verbatim (sealed secret, parameters, recovery-code hashes) | enrollment ([`Store::put_state`], [`Store::delete`]) |
//! | `{prefix}counters/{user}` | `"PTC1"`, a 16-byte random nonce, then the caller's counters bytes | every login ([`Store::commit_counters`]) |
//!
//! The split lets etcd RBAC give ordinary hosts read on `{prefix}state/` and read-write on
//! `{prefix}counters/` only; enrollment uses a credential that may also write `{prefix}state/`.
//! `README.md` next to this crate gives the etcdctl commands for both setups.
//!
//! The nonce makes each commit recognisable: two hosts accepting the same code compute the same
//! counters bytes, so after a timeout only the nonce tells whether the value now stored is ours.
//!
//! # Deadlines and failover
//!
//! Every call has one deadline, `timeout_ms` from its start. Each endpoint has its own
//! connection; a call goes first to the endpoint that last answered, and when that one has not
//! answered within a hedge delay (`timeout_ms / 16`, between 50 and 250 ms) or failed, the same
//! request also goes to the next endpoint, and so on, round after round until the deadline. The first answer wins. A stopped member therefore costs one hedge delay, not the
//! call, and a request lost with a killed leader is sent again once a new one is elected. Sending
//! a request twice is safe: every write is a compare-and-swap, so at most one copy applies.
//!
//! A commit waits for an answer to every copy it sent before it calls a refusal a conflict:
//! the first answer may be a copy refused because another copy of ours applied a moment
//! earlier. Once a copy is refused no more are sent and the others get one hedge delay more.
//! A commit whose outcome is still unknown (a copy unanswered, or failed after sending) is
//! decided by reading again, for at most [`recheck_margin`] past the deadline: our nonce in
//! the counters key means it committed; if the revisions moved, the key's history decides
//! (ours compared both revisions, so if it applied it was the first write to the counters key
//! after our read, perhaps overwritten since): ours first means committed, another first
//! means it never applied and never can. Anything else (nothing moved yet, the history
//! unreadable) is [`Error::OutcomeUnknown`], which the caller must treat as a failure. So a call returns within
//! `timeout_ms` plus that margin, and never reports success unless the cluster committed.
//!
//! # Async and blocking
//!
//! [`Store`] is async (tokio). [`BlockingStore`] wraps it with its own current-thread runtime for
//! callers without one; it must not be used from inside a tokio runtime.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    KeyValue, TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};
use futures_util::stream::{FuturesUnordered, StreamExt};

mod backend;
mod blocking;
pub use backend::EtcdBackend;
pub use blocking::BlockingStore;

/// SPEC's default `[etcd] prefix`.
pub const DEFAULT_PREFIX: &str = "/pam_totp/v1/";

const COUNTERS_MAGIC: &[u8; 4] = b"PTC1";
const NONCE_LEN: usize = 16;

/// PEM files of SPEC's `[etcd] tls_ca`, `tls_cert`, `tls_key`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA that signed the members' certificates.
    pub ca: std::path::PathBuf,
    /// This host's client certificate; with `--client-cert-auth` its CN is the etcd user.
    pub cert: std::path::PathBuf,
    /// The key of `cert`.
    pub key: std::path::PathBuf,
}

/// Where and how to reach the cluster (SPEC's `[etcd]` keys).
#[derive(Clone, Debug)]
pub struct Config {
    /// Client URLs of the members: `https://host:port`, or `http://` on a loopback address.
    pub endpoints: Vec<String>,
    /// Needed for `https://` endpoints.
    pub tls: Option<TlsFiles>,
    /// Key prefix; must start and end with `/`.
    pub prefix: String,
    /// Deadline of one call.
    pub timeout_ms: u64,
}

/// A user's record as read in one linearizable read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The state bytes, as given to [`Store::put_state`].
    pub state: Vec<u8>,
    /// `mod_revision` of the state key.
    pub state_revision: i64,
    /// The counters bytes of the last commit, without our envelope; `None` before the first.
    pub counters: Option<Vec<u8>>,
    /// `mod_revision` of the counters key, 0 when it is absent.
    pub counters_revision: i64,
}

/// The answer to a compare-and-swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The cluster committed our bytes; `revision` is the counters key's new `mod_revision`.
    Committed {
        /// The new `mod_revision`.
        revision: i64,
    },
    /// Someone changed the state or the counters since the revisions given; nothing was written.
    Conflict,
}

/// What [`Store::put_state`] expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No state key: a new enrollment.
    Absent,
    /// The state key at this `mod_revision`: a replacement of what was read.
    AtRevision(i64),
    /// The state key at `state` and the counters key at `counters` (0: absent): a
    /// replacement of exactly what was read, so that no login committed since is lost.
    AtRevisions {
        /// `mod_revision` of the state key.
        state: i64,
        /// `mod_revision` of the counters key, 0 when it was absent.
        counters: i64,
    },
}

/// Why a call failed. None of these means that anything was accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (bad URL, `http://` off loopback, bad prefix).
    #[error("etcd config: {0}")]
    Config(String),
    /// A TLS file could not be read.
    #[error("etcd TLS file {path}: {source}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The user name cannot be part of a key.
    #[error("user name not usable in an etcd key")]
    InvalidUser,
    /// No endpoint answered within the deadline.
    #[error("etcd {op}: no answer from any endpoint within {timeout_ms} ms (last error: {last})")]
    Timeout {
        /// The call.
        op: &'static str,
        /// Its deadline.
        timeout_ms: u64,
        /// The last error seen from an endpoint, or "none".
        last: String,
    },
    /// Every endpoint failed.
    #[error("etcd {op}: every endpoint failed (last error: {last})")]
    Unavailable {
        /// The call.
        op: &'static str,
        /// The last error seen.
        last: String,
    },
    /// The cluster refused the request for this credential (RBAC).
    #[error("etcd {op}: permission denied: {detail}")]
    PermissionDenied {
        /// The call.
        op: &'static str,
        /// The server's message.
        detail: String,
    },
    /// A commit was sent but whether it was applied cannot be told; treat it as refused.
    #[error("etcd commit: outcome unknown ({detail})")]
    OutcomeUnknown {
        /// Why.
        detail: String,
    },
    /// The cluster answered with something this crate did not write.
    #[error("etcd: unexpected data: {0}")]
    Corrupt(String),
    /// Any other error answered by the cluster.
    #[error("etcd {op}: {detail}")]
    Server {
        /// The call.
        op: &'static str,
        /// The server's message.
        detail: String,
    },
}

/// How long past its deadline a commit of unknown outcome may spend reading again:
/// `timeout_ms / 10`, between 50 and 250 ms.
pub fn recheck_margin(timeout_ms: u64) -> Duration {
    Duration::from_millis((timeout_ms / 10).clamp(50, 250))
}

fn hedge_delay(timeout_ms: u64) -> Duration {
    Duration::from_millis((timeout_ms / 16).clamp(50, 250))
}

struct Member {
    url: String,
    client: Client,
}

struct Inner {
    members: Vec<Member>,
    /// Index of the member that answered last; calls start there.
    preferred: AtomicUsize,
    prefix: String,
    timeout_ms: u64,
}

/// A connection to the cluster: one gRPC channel per endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// What a request to one member came back with.
enum Attempt<T> {
    Answer(T),
    /// A definitive refusal: other members would say the same.
    Refused(Error),
    /// A transport or availability error: another member may do better.
    Failed(String),
}

fn classify<T>(op: &'static str, r: Result<T, etcd_client::Error>) -> Attempt<T> {
    use tonic::Code;
    match r {
        Ok(v) => Attempt::Answer(v),
        Err(etcd_client::Error::GRpcStatus(s)) => match s.code() {
            Code::PermissionDenied | Code::Unauthenticated => {
                Attempt::Refused(Error::PermissionDenied {
                    op,
                    detail: s.message().to_owned(),
                })
            }
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                Attempt::Refused(Error::Server {
                    op,
                    detail: s.message().to_owned(),
                })
            }
            _ => Attempt::Failed(format!("{:?}: {}", s.code(), s.message())),
        },
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The host part of `scheme://host:port[/]`, checked to have no path or credentials.
fn url_host(rest: &str) -> Option<&str> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
        return None;
    }
    let host = if rest.starts_with('[') {
        &rest[..=rest.find(']')?]
    } else {
        rest.rsplit_once(':').map_or(rest, |(h, _)| h)
    };
    (!host.is_empty()).then_some(host)
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::TlsFile {
        path: path.to_owned(),
        source,
    })
}

fn check_user(user: &str) -> Result<(), Error> {
    if user.is_empty()
        || user.len() > 256
        || user.contains('/')
        || user.chars().any(|c| c.is_control())
    {
        return Err(Error::InvalidUser);
    }
    Ok(())
}

fn new_nonce() -> Result<[u8; NONCE_LEN], Error> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut n).map_err(|e| Error::Config(format!("no randomness: {e}")))?;
    Ok(n)
}

fn envelope(nonce: &[u8; NONCE_LEN], counters: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + NONCE_LEN + counters.len());
    v.extend_from_slice(COUNTERS_MAGIC);
    v.extend_from_slice(nonce);
    v.extend_from_slice(counters);
    v
}

/// Splits a stored counters value into (nonce, caller bytes).
fn open_envelope(v: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    match v.strip_prefix(COUNTERS_MAGIC.as_slice()) {
        Some(rest) if rest.len() >= NONCE_LEN => Ok(rest.split_at(NONCE_LEN)),
        _ => Err(Error::Corrupt(
            "counters value without pam_totp envelope".into(),
        )),
    }
}

/// What became of the copies of one commit.
enum Sent {
    /// One copy applied (at most one can: each compares the same revisions).
    Applied(i64),
    /// Every copy sent was answered, each refused by its compare.
    Refused,
    /// A copy may have applied without our hearing of it (no answer, or a transport error).
    Unknown(String),
}

/// What the re-read after an uncertain commit says.
enum Recheck {
    Ours(i64),
    /// The first write after our read was not ours: ours never applied and never can.
    Moved,
    /// Nothing changed: our request may still be queued somewhere.
    Unchanged,
}

impl Store {
    /// Opens one channel per endpoint. Connections are made lazily, so this succeeds while the
    /// cluster is down; only a configuration that cannot work is an error.
    pub async fn connect(config: Config) -> Result<Store, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::Config("no endpoints".into()));
        }
        if !(config.prefix.starts_with('/') && config.prefix.ends_with('/')) {
            return Err(Error::Config(format!(
                "prefix {:?} must start and end with '/'",
                config.prefix
            )));
        }
        if config.timeout_ms == 0 {
            return Err(Error::Config("timeout_ms must be > 0".into()));
        }
        let tls = match &config.tls {
            Some(t) => Some(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(read_pem(&t.ca)?))
                    .identity(Identity::from_pem(read_pem(&t.cert)?, read_pem(&t.key)?)),
            ),
            None => None,
        };
        let mut members = Vec::with_capacity(config.endpoints.len());
        for url in &config.endpoints {
            let mut opts = ConnectOptions::new()
                .with_connect_timeout(Duration::from_millis(config.timeout_ms))
                // Notices a silently stopped member's dead connection between calls.
                .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
            if let Some(rest) = url.strip_prefix("https://") {
                url_host(rest).ok_or_else(|| Error::Config(format!("bad endpoint {url:?}")))?;
                let tls = tls.clone().ok_or_else(|| {
                    Error::Config(format!(
                        "{url}: https endpoint needs tls_ca/tls_cert/tls_key"
                    ))
                })?;
                opts = opts.with_tls(tls);
            } else if let Some(rest) = url.strip_prefix("http://") {
                let host =
                    url_host(rest).ok_or_else(|| Error::Config(format!("bad endpoint {url:?}")))?;
                if !is_loopback_host(host) {
                    return Err(Error::Config(format!(
                        "{url}: http:// is accepted only on a loopback address"
                    )));
                }
            } else {
                return Err(Error::Config(format!(
                    "{url}: endpoint must be https://host:port (or http:// on loopback)"
                )));
            }
            let client = Client::connect([url.as_str()], Some(opts))
                .await
                .map_err(|e| Error::Config(format!("{url}: {e}")))?;
            members.push(Member {
                url: url.clone(),
                client,
            });
        }
        Ok(Store {
            inner: Arc::new(Inner {
                members,
                preferred: AtomicUsize::new(0),
                prefix: config.prefix,
                timeout_ms: config.timeout_ms,
            }),
        })
    }

    /// The endpoints, in configuration order.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.members.iter().map(|m| m.url.clone()).collect()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The deadline of one call.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.inner.timeout_ms)
    }

    fn state_key(&self, user: &str) -> Vec<u8> {
        format!("{}state/{user}", self.inner.prefix).into_bytes()
    }

    fn counters_key(&self, user: &str) -> Vec<u8> {
        format!("{}counters/{user}", self.inner.prefix).into_bytes()
    }

    /// Sends `call` to the preferred member, then hedges to the others (see the crate docs),
    /// until `deadline`. Returns the first answer or definitive refusal.
    async fn hedged<T, F, Fut>(
        &self,
        op: &'static str,
        deadline: Instant,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let n = self.inner.members.len();
        let first = self.inner.preferred.load(Ordering::Relaxed) % n;
        let delay = hedge_delay(self.inner.timeout_ms);
        // Past the first round, members are asked again: a request lost at a leader that died
        // is answered once a new leader is elected, well within one deadline.
        let max_attempts = n + (self.inner.timeout_ms / delay.as_millis() as u64) as usize;
        let mut pending = FuturesUnordered::new();
        let mut launched = 0usize;
        let mut last = String::from("none");
        let launch = |i: usize| {
            let idx = (first + i) % n;
            let fut = call(self.inner.members[idx].client.clone());
            async move { (idx, fut.await) }
        };
        pending.push(launch(launched));
        launched += 1;
        let deadline = tokio::time::Instant::from_std(deadline);
        let mut next_hedge = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                biased;
                done = pending.next(), if !pending.is_empty() => {
                    let Some((idx, r)) = done else { continue };
                    match classify(op, r) {
                        Attempt::Answer(v) => {
                            self.inner.preferred.store(idx, Ordering::Relaxed);
                            return Ok(v);
                        }
                        Attempt::Refused(e) => return Err(e),
                        Attempt::Failed(msg) => {
                            last = format!("{}: {msg}", self.inner.members[idx].url);
                            if launched < n {
                                pending.push(launch(launched));
                                launched += 1;
                                next_hedge = tokio::time::Instant::now() + delay;
                            } else if pending.is_empty() && launched >= max_attempts {
                                return Err(Error::Unavailable { op, last });
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_hedge), if launched < max_attempts => {
                    pending.push(launch(launched));
                    launched += 1;
                    next_hedge = tokio::time::Instant::now() + delay;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Timeout { op, timeout_ms: self.inner.timeout_ms, last });
                }
            }
        }
    }

    /// Sends a commit like [`Store::hedged`], but waits for every copy it sent: the first
    /// answer may be a copy refused because another copy of ours applied a moment earlier.
    /// Once a copy is refused no more are sent; the others get one hedge delay more (or until
    /// the deadline) to answer.
    async fn hedged_commit(&self, txn: &Txn, deadline: Instant) -> Result<Sent, Error> {
        let n = self.inner.members.len();
        let first = self.inner.preferred.load(Ordering::Relaxed) % n;
        let delay = hedge_delay(self.inner.timeout_ms);
        let max_attempts = n + (self.inner.timeout_ms / delay.as_millis() as u64) as usize;
        let mut pending = FuturesUnordered::new();
        let mut launched = 0usize;
        let mut uncertain: Option<String> = None;
        let mut refused = false;
        let launch = |i: usize| {
            let idx = (first + i) % n;
            let mut c = self.inner.members[idx].client.clone();
            let txn = txn.clone();
            async move { (idx, c.txn(txn).await) }
        };
        pending.push(launch(launched));
        launched += 1;
        let mut deadline = tokio::time::Instant::from_std(deadline);
        let mut next_hedge = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                biased;
                done = pending.next(), if !pending.is_empty() => {
                    let Some((idx, r)) = done else { continue };
                    match classify("commit", r) {
                        Attempt::Answer(resp) if resp.succeeded() => {
                            self.inner.preferred.store(idx, Ordering::Relaxed);
                            return Ok(Sent::Applied(resp.header().map_or(0, |h| h.revision())));
                        }
                        Attempt::Answer(_) => {
                            self.inner.preferred.store(idx, Ordering::Relaxed);
                            if !refused {
                                refused = true;
                                deadline = deadline.min(tokio::time::Instant::now() + delay);
                            }
                        }
                        Attempt::Refused(e) => return Err(e),
                        Attempt::Failed(msg) => {
                            // It may have been applied before the error: not a refusal.
                            uncertain = Some(format!("{}: {msg}", self.inner.members[idx].url));
                            if !refused && launched < n {
                                pending.push(launch(launched));
                                launched += 1;
                                next_hedge = tokio::time::Instant::now() + delay;
                            }
                        }
                    }
                    if pending.is_empty() && (refused || launched >= max_attempts) {
                        return Ok(match uncertain {
                            None if refused => Sent::Refused,
                            None => Sent::Unknown("no answer".into()),
                            Some(why) => Sent::Unknown(why),
                        });
                    }
                }
                _ = tokio::time::sleep_until(next_hedge), if !refused && launched < max_attempts => {
                    pending.push(launch(launched));
                    launched += 1;
                    next_hedge = tokio::time::Instant::now() + delay;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Ok(Sent::Unknown(format!(
                        "{} of {launched} copies unanswered after the deadline ({} ms){}",
                        pending.len(),
                        self.inner.timeout_ms,
                        uncertain.map_or(String::new(), |u| format!("; last error: {u}"))
                    )));
                }
            }
        }
    }

    /// One linearizable read of both keys, at one revision.
    async fn read(&self, user: &str, deadline: Instant) -> Result<Option<Loaded>, Error> {
        let (sk, ck) = (self.state_key(user), self.counters_key(user));
        let txn = Txn::new().and_then([TxnOp::get(sk.clone(), None), TxnOp::get(ck.clone(), None)]);
        let resp = self
            .hedged("load", deadline, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let gets = txn_gets(&resp)?;
        let Some(state) = gets[0].first() else {
            return Ok(None);
        };
        let (counters, counters_revision) = match gets[1].first() {
            Some(kv) => {
                let (_, bytes) = open_envelope(kv.value())?;
                (Some(bytes.to_vec()), kv.mod_revision())
            }
            None => (None, 0),
        };
        Ok(Some(Loaded {
            state: state.value().to_vec(),
            state_revision: state.mod_revision(),
            counters,
            counters_revision,
        }))
    }

    /// Reads `user`'s state and counters in one linearizable read. `None`: not enrolled.
    pub async fn load(&self, user: &str) -> Result<Option<Loaded>, Error> {
        self.load_by(user, Instant::now() + self.timeout()).await
    }

    /// [`Store::load`] under a deadline of the caller's (e.g. one login's).
    pub async fn load_by(&self, user: &str, deadline: Instant) -> Result<Option<Loaded>, Error> {
        check_user(user)?;
        self.read(user, deadline).await
    }

    /// Writes `counters` for `user` if, and only if, the state key is still at `state_revision`
    /// and the counters key at `counters_revision` (0: still absent). At most one of any number
    /// of concurrent callers with the same revisions gets [`Outcome::Committed`].
    ///
    /// [`Error::OutcomeUnknown`] and every other error mean "not known to be committed": the
    /// caller must refuse the login. The bytes may still have been committed; a later
    /// [`Store::load`] shows them.
    pub async fn commit_counters(
        &self,
        user: &str,
        state_revision: i64,
        counters_revision: i64,
        counters: &[u8],
    ) -> Result<Outcome, Error> {
        let deadline = Instant::now() + self.timeout();
        self.commit_counters_by(user, state_revision, counters_revision, counters, deadline)
            .await
    }

    /// [`Store::commit_counters`] under a deadline of the caller's; an uncertain outcome is
    /// re-read for at most [`recheck_margin`] past it.
    pub async fn commit_counters_by(
        &self,
        user: &str,
        state_revision: i64,
        counters_revision: i64,
        counters: &[u8],
        deadline: Instant,
    ) -> Result<Outcome, Error> {
        check_user(user)?;
        let nonce = new_nonce()?;
        let (sk, ck) = (self.state_key(user), self.counters_key(user));
        let counters_cmp = if counters_revision == 0 {
            Compare::create_revision(ck.clone(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(ck.clone(), CompareOp::Equal, counters_revision)
        };
        let txn = Txn::new()
            .when([
                Compare::mod_revision(sk, CompareOp::Equal, state_revision),
                counters_cmp,
            ])
            .and_then([TxnOp::put(ck, envelope(&nonce, counters), None)]);
        let why = match self.hedged_commit(&txn, deadline).await? {
            Sent::Applied(revision) => return Ok(Outcome::Committed { revision }),
            // Every copy sent was answered and refused by its compare: none applied.
            Sent::Refused => return Ok(Outcome::Conflict),
            Sent::Unknown(why) => why,
        };
        let recheck_deadline = deadline + recheck_margin(self.inner.timeout_ms);
        match self
            .recheck(
                user,
                state_revision,
                counters_revision,
                &nonce,
                recheck_deadline,
            )
            .await
        {
            Ok(Recheck::Ours(revision)) => Ok(Outcome::Committed { revision }),
            // The history shows another write first: ours never applied and never can.
            Ok(Recheck::Moved) => Ok(Outcome::Conflict),
            Ok(Recheck::Unchanged) => Err(Error::OutcomeUnknown { detail: why }),
            Err(e) => Err(Error::OutcomeUnknown {
                detail: format!("{why}; re-read failed: {e}"),
            }),
        }
    }

    async fn recheck(
        &self,
        user: &str,
        state_revision: i64,
        counters_revision: i64,
        nonce: &[u8; NONCE_LEN],
        deadline: Instant,
    ) -> Result<Recheck, Error> {
        let ck = self.counters_key(user);
        let sk = self.state_key(user);
        let txn = Txn::new().and_then([TxnOp::get(sk, None), TxnOp::get(ck, None)]);
        let resp = self
            .hedged("commit re-read", deadline, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let gets = txn_gets(&resp)?;
        if let Some(kv) = gets[1].first() {
            if let Ok((n, _)) = open_envelope(kv.value()) {
                if n == nonce.as_slice() {
                    return Ok(Recheck::Ours(kv.mod_revision()));
                }
            }
        }
        let state_now = gets[0].first().map_or(0, |kv| kv.mod_revision());
        let counters_now = gets[1].first().map_or(0, |kv| kv.mod_revision());
        if state_now == state_revision && counters_now == counters_revision {
            return Ok(Recheck::Unchanged);
        }
        // Moved. Ours compared both revisions, so if it applied it was the first write to the
        // counters key after what we read; it may have been overwritten since. The key's
        // history tells: its first write after our read is ours, or ours never applied and
        // never can.
        let from = state_revision.max(counters_revision) + 1;
        match self.first_counters_write(user, from, deadline).await? {
            Some((value, revision)) => match open_envelope(&value) {
                Ok((n, _)) if n == nonce.as_slice() => Ok(Recheck::Ours(revision)),
                _ => Ok(Recheck::Moved),
            },
            None => Err(Error::Corrupt(
                "counters history ended without an event".into(),
            )),
        }
    }

    /// The first write (value and revision; an empty value for a delete) to `user`'s
    /// counters key at or after revision `from`, from the cluster's history (a watch from
    /// that revision). `None`: the history ended without one (e.g. compacted).
    async fn first_counters_write(
        &self,
        user: &str,
        from: i64,
        deadline: Instant,
    ) -> Result<Option<(Vec<u8>, i64)>, Error> {
        let ck = self.counters_key(user);
        self.hedged("commit history", deadline, |mut c| {
            let ck = ck.clone();
            async move {
                let opts = WatchOptions::new().with_start_revision(from);
                let mut stream = c.watch(ck, Some(opts)).await?;
                while let Some(resp) = stream.message().await? {
                    if let Some(ev) = resp.events().first() {
                        let rev = ev.kv().map_or(0, |kv| kv.mod_revision());
                        return Ok(Some(match ev.event_type() {
                            EventType::Put => (
                                ev.kv().map(|kv| kv.value().to_vec()).unwrap_or_default(),
                                rev,
                            ),
                            EventType::Delete => (Vec::new(), rev),
                        }));
                    }
                    if resp.canceled() || resp.compact_revision() > 0 {
                        break;
                    }
                }
                Ok(None)
            }
        })
        .await
    }

    /// Writes `user`'s state: create-only with [`Expect::Absent`], replace-if-unchanged with
    /// [`Expect::AtRevision`]. The counters key is deleted in the same transaction, so a new
    /// or replaced enrollment starts with fresh counters. Returns the new `mod_revision`, or
    /// [`Outcome::Conflict`] when the state key was not as expected. `state` must be unique
    /// (sealed under a random nonce): a conflict after a re-sent request is resolved by finding
    /// these bytes in the state key.
    pub async fn put_state(
        &self,
        user: &str,
        state: &[u8],
        expect: Expect,
    ) -> Result<Outcome, Error> {
        self.put_state_by(user, state, expect, Instant::now() + self.timeout())
            .await
    }

    /// [`Store::put_state`] under a deadline of the caller's.
    pub async fn put_state_by(
        &self,
        user: &str,
        state: &[u8],
        expect: Expect,
        deadline: Instant,
    ) -> Result<Outcome, Error> {
        check_user(user)?;
        let (sk, ck) = (self.state_key(user), self.counters_key(user));
        let mut cmp = vec![match expect {
            Expect::Absent => Compare::create_revision(sk.clone(), CompareOp::Equal, 0),
            Expect::AtRevision(rev) | Expect::AtRevisions { state: rev, .. } => {
                Compare::mod_revision(sk.clone(), CompareOp::Equal, rev)
            }
        }];
        match expect {
            Expect::AtRevisions { counters: 0, .. } => {
                cmp.push(Compare::create_revision(ck.clone(), CompareOp::Equal, 0))
            }
            Expect::AtRevisions { counters, .. } => cmp.push(Compare::mod_revision(
                ck.clone(),
                CompareOp::Equal,
                counters,
            )),
            _ => {}
        }
        let txn = Txn::new().when(cmp).and_then([
            TxnOp::put(sk, state.to_vec(), None),
            TxnOp::delete(ck, None),
        ]);
        let sent = AtomicUsize::new(0);
        let resp = self
            .hedged("put_state", deadline, |mut c| {
                sent.fetch_add(1, Ordering::Relaxed);
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            return Ok(Outcome::Committed {
                revision: resp.header().map_or(0, |h| h.revision()),
            });
        }
        if sent.load(Ordering::Relaxed) > 1 {
            // An earlier copy of this request may be what made the compare fail. Sealed state
            // bytes are unique (random nonces inside), so finding ours means it applied.
            let recheck = deadline.max(Instant::now()) + recheck_margin(self.inner.timeout_ms);
            if let Some(l) = self.read(user, recheck).await? {
                if l.state == state {
                    return Ok(Outcome::Committed {
                        revision: l.state_revision,
                    });
                }
            }
        }
        Ok(Outcome::Conflict)
    }

    /// Deletes `user`'s state and counters in one transaction. Returns whether a state existed.
    pub async fn delete(&self, user: &str) -> Result<bool, Error> {
        check_user(user)?;
        let deadline = Instant::now() + self.timeout();
        let (sk, ck) = (self.state_key(user), self.counters_key(user));
        let txn = Txn::new().and_then([TxnOp::delete(sk, None), TxnOp::delete(ck, None)]);
        let resp = self
            .hedged("delete", deadline, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        match resp.op_responses().first() {
            Some(TxnOpResponse::Delete(d)) => Ok(d.deleted() > 0),
            _ => Err(Error::Corrupt("delete txn without delete response".into())),
        }
    }

    /// Deletes `user`'s state and counters if the state key is still at `state_revision`:
    /// unlike [`Store::delete`], a copy of this request that a stopped member applies late
    /// cannot remove an enrollment made since. [`Outcome::Conflict`]: the state moved.
    pub async fn delete_at(
        &self,
        user: &str,
        state_revision: i64,
        deadline: Instant,
    ) -> Result<Outcome, Error> {
        check_user(user)?;
        let (sk, ck) = (self.state_key(user), self.counters_key(user));
        let txn = Txn::new()
            .when([Compare::mod_revision(
                sk.clone(),
                CompareOp::Equal,
                state_revision,
            )])
            .and_then([TxnOp::delete(sk, None), TxnOp::delete(ck, None)]);
        let sent = AtomicUsize::new(0);
        let resp = self
            .hedged("delete", deadline, |mut c| {
                sent.fetch_add(1, Ordering::Relaxed);
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        if resp.succeeded() {
            return Ok(Outcome::Committed { revision });
        }
        if sent.load(Ordering::Relaxed) > 1 {
            // An earlier copy may be what deleted it: gone is what was asked.
            let recheck = deadline.max(Instant::now()) + recheck_margin(self.inner.timeout_ms);
            if self.read(user, recheck).await?.is_none() {
                return Ok(Outcome::Committed { revision });
            }
        }
        Ok(Outcome::Conflict)
    }

    /// The names of all enrolled users (keys under `{prefix}state/`), sorted.
    pub async fn list(&self) -> Result<Vec<String>, Error> {
        self.list_by(Instant::now() + self.timeout()).await
    }

    /// [`Store::list`] under a deadline of the caller's.
    pub async fn list_by(&self, deadline: Instant) -> Result<Vec<String>, Error> {
        let dir = format!("{}state/", self.inner.prefix);
        let resp = self
            .hedged("list", deadline, |mut c| {
                let dir = dir.clone();
                async move {
                    c.get(dir, Some(GetOptions::new().with_prefix().with_keys_only()))
                        .await
                }
            })
            .await?;
        let mut users = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let name = kv
                .key()
                .strip_prefix(dir.as_bytes())
                .and_then(|n| std::str::from_utf8(n).ok())
                .ok_or_else(|| Error::Corrupt("state key not UTF-8".into()))?;
            users.push(name.to_owned());
        }
        users.sort();
        Ok(users)
    }
}

/// The get results of a txn whose success branch is gets only.
fn txn_gets(resp: &TxnResponse) -> Result<Vec<Vec<KeyValue>>, Error> {
    resp.op_responses()
        .into_iter()
        .map(|r| match r {
            TxnOpResponse::Get(g) => Ok(g.kvs().to_vec()),
            _ => Err(Error::Corrupt("read txn with a non-get response".into())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_rejects_foreign_values() {
        let n = [7u8; NONCE_LEN];
        let v = envelope(&n, b"abc");
        assert_eq!(open_envelope(&v).unwrap(), (&n[..], &b"abc"[..]));
        assert!(open_envelope(b"abc").is_err());
        assert!(open_envelope(b"PTC1short").is_err());
    }

    #[test]
    fn loopback_detection() {
        for ok in ["127.0.0.1", "127.9.9.9", "[::1]", "localhost"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["10.0.0.1", "[::2]", "etcd.example", "127.0.0.1.example"] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn user_names_cannot_escape_their_key() {
        for bad in ["", "a/b", "../x", "a\nb", "a\0b"] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
        assert!(check_user("alice").is_ok());
    }

    fn cfg(endpoints: &[&str]) -> Config {
        Config {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            tls: None,
            prefix: DEFAULT_PREFIX.into(),
            timeout_ms: 500,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn http_only_on_loopback_and_https_needs_tls() {
        assert!(Store::connect(cfg(&["http://127.0.0.1:1"])).await.is_ok());
        assert!(Store::connect(cfg(&["http://[::1]:1"])).await.is_ok());
        for bad in [
            "http://10.1.2.3:2379",
            "http://etcd.example:2379",
            "http://user@127.0.0.1:2379",
            "https://127.0.0.1:2379",
            "ftp://127.0.0.1:2379",
            "127.0.0.1:2379",
        ] {
            assert!(
                matches!(Store::connect(cfg(&[bad])).await, Err(Error::Config(_))),
                "{bad}"
            );
        }
        let mut c = cfg(&["http://127.0.0.1:1"]);
        c.prefix = "/no-trailing-slash".into();
        assert!(matches!(Store::connect(c).await, Err(Error::Config(_))));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unreachable_cluster_fails_within_the_deadline() {
        // Port 1 on loopback refuses connections: every endpoint fails fast.
        let s = Store::connect(cfg(&["http://127.0.0.1:1", "http://127.0.0.2:1"]))
            .await
            .unwrap();
        let t = Instant::now();
        assert!(s.load("alice").await.is_err());
        let r = s.commit_counters("alice", 5, 0, b"x").await;
        assert!(matches!(r, Err(Error::OutcomeUnknown { .. })), "{r:?}");
        assert!(t.elapsed() < Duration::from_millis(2 * 500 + 2 * 250 + 200));
    }
}
