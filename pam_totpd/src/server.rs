//! The accept loop and one connection: who the caller is (SO_PEERCRED), what it may ask,
//! and the answer. One request per connection, under one deadline.
//!
//! A thread per open connection (from a pool, see [`serve`]), bounded: at most
//! [`MAX_CONNECTIONS`] at once and [`MAX_PER_UID`] for any one uid other than root, so one
//! user's stalled connections can never starve sshd or another user's screen locker. A
//! connection over a bound gets a `Busy` reply and is closed at once.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Outcome;
use common::{Config, DeviceIdentity, UserName};
use nix::sys::socket::{getsockopt, sockopt, UnixCredentials};
use proto::{read_frame, Deadline, FrameError, Prior, Reply, Request, Unavailable};

use crate::log::{log, printable, Level};
use crate::store::{Failure, Storage};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Connections at once from one uid other than root.
pub const MAX_PER_UID: usize = 16;
/// Time a connection gets to send its request and take the reply.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Time the reply gets once the answer is ready (a frame of at most 2 KiB: into an empty
/// socket buffer it never waits).
const REPLY_TIME: Duration = Duration::from_secs(1);
/// Enough for the store's work (no recursion, small buffers).
const STACK_SIZE: usize = 256 * 1024;
/// Idle workers kept waiting for the next connection.
const SPARE_WORKERS: usize = 2;

pub struct Server {
    config: Config,
    storage: Storage,
    /// Open connections per uid.
    open: Mutex<HashMap<u32, usize>>,
    /// Last time a refusal was logged, so a flood does not flood the log too.
    last_refusal_log: Mutex<Option<Instant>>,
    /// Worker threads, and how many of them wait in `accept`.
    workers: AtomicUsize,
    idle: AtomicUsize,
}

/// A place among the open connections, given back when dropped.
struct Slot {
    server: Arc<Server>,
    uid: u32,
}

impl Slot {
    fn take(server: &Arc<Server>, uid: u32) -> Option<Slot> {
        let mut open = server.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        let mine = open.get(&uid).copied().unwrap_or(0);
        if total >= MAX_CONNECTIONS || (uid != 0 && mine >= MAX_PER_UID) {
            return None;
        }
        *open.entry(uid).or_insert(0) += 1;
        Some(Slot {
            server: server.clone(),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.server.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

impl Server {
    pub fn new(config: Config, storage: Storage) -> Arc<Server> {
        Arc::new(Server {
            config,
            storage,
            open: Mutex::new(HashMap::new()),
            last_refusal_log: Mutex::new(None),
            // The serving thread itself.
            workers: AtomicUsize::new(1),
            idle: AtomicUsize::new(0),
        })
    }

    /// Logs at most once a second.
    fn log_refusal(&self, what: &str) {
        let mut last = self
            .last_refusal_log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            *last = Some(now);
            log(Level::Warning, what);
        }
    }
}

/// Serves forever, with a pool of workers that each wait in `accept` and serve the
/// connection they get themselves: a request costs no thread start and no hand-off between
/// threads. The pool grows by one whenever its last idle worker takes a connection (up to
/// one more than [`MAX_CONNECTIONS`], so that a caller over the bound is still refused at
/// once) and shrinks back to [`SPARE_WORKERS`] idle ones.
pub fn serve(listener: UnixListener, server: Arc<Server>) -> ! {
    let listener = Arc::new(listener);
    for _ in 0..SPARE_WORKERS {
        spawn_worker(&listener, &server);
    }
    // This thread is a worker too, one that never retires.
    loop {
        accept_one(&listener, &server);
    }
}

fn spawn_worker(listener: &Arc<UnixListener>, server: &Arc<Server>) {
    let grown = server
        .workers
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < MAX_CONNECTIONS + 1).then_some(n + 1)
        });
    if grown.is_err() {
        return;
    }
    let (listener, srv) = (listener.clone(), server.clone());
    let spawned = std::thread::Builder::new()
        .name("worker".into())
        .stack_size(STACK_SIZE)
        .spawn(move || loop {
            accept_one(&listener, &srv);
            if srv.idle.load(Ordering::SeqCst) >= SPARE_WORKERS {
                srv.workers.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        });
    if let Err(e) = spawned {
        server.workers.fetch_sub(1, Ordering::SeqCst);
        server.log_refusal(&format!("cannot start a worker thread: {e}"));
    }
}

/// Waits for one connection and serves it. Accept errors (out of file descriptors, a
/// connection reset before it was accepted) are logged and waited out, never fatal.
fn accept_one(listener: &Arc<UnixListener>, server: &Arc<Server>) {
    server.idle.fetch_add(1, Ordering::SeqCst);
    let accepted = listener.accept();
    if server.idle.fetch_sub(1, Ordering::SeqCst) == 1 {
        // The last one waiting took a connection: keep one waiting.
        spawn_worker(listener, server);
    }
    match accepted {
        Ok((stream, _)) => {
            // A panic while serving one caller closes that connection, never the daemon
            // (nor a worker: the pool's counts stay right).
            let served =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| admit(server, stream)));
            if served.is_err() {
                log(
                    Level::Err,
                    "internal error (panic) while serving a request; closed",
                );
            }
        }
        Err(e) => {
            server.log_refusal(&format!("accept: {e}"));
            // EMFILE and the like do not clear by retrying at once.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn admit(server: &Arc<Server>, stream: UnixStream) {
    let cred = match getsockopt(&stream, sockopt::PeerCredentials) {
        Ok(c) => c,
        Err(e) => {
            log(Level::Err, &format!("SO_PEERCRED: {e}; connection closed"));
            return;
        }
    };
    let Some(_slot) = Slot::take(server, cred.uid()) else {
        server.log_refusal(&format!(
            "too many connections (uid={} pid={}); refused",
            cred.uid(),
            cred.pid()
        ));
        // A short reply into a fresh socket's empty buffer does not block; if it fails,
        // the close alone tells the caller.
        let _ = stream.set_write_timeout(Some(Duration::from_millis(10)));
        let _ = (&stream).write_all(&Reply::Unavailable(Unavailable::Busy).encode());
        return;
    };
    handle(server, &stream, &cred);
}

/// Who asked, for every log line.
fn who(cred: &UnixCredentials) -> String {
    format!("uid={} pid={}", cred.uid(), cred.pid())
}

fn handle(server: &Server, stream: &UnixStream, cred: &UnixCredentials) {
    let deadline = Instant::now() + DEADLINE;
    let body = match read_frame(&mut Deadline { stream, deadline }) {
        Ok(b) => b,
        Err(FrameError::Io(e)) => {
            // A caller that vanished or stalled: nothing to answer.
            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                log(
                    Level::Notice,
                    &format!("no complete request ({e}) from {}; closed", who(cred)),
                );
            }
            return;
        }
        Err(e @ FrameError::Length(_)) => {
            log(Level::Notice, &format!("{e} from {}; refused", who(cred)));
            send(stream, &Reply::BadRequest, deadline);
            return;
        }
    };
    let reply = match Request::decode(&body) {
        Ok(req) => answer(&server.config, &server.storage, cred, req),
        Err(e) => {
            log(
                Level::Notice,
                &format!("bad request ({e}) from {}", who(cred)),
            );
            Reply::BadRequest
        }
    };
    drop(body);
    // The answer may have taken longer than reading (a fleet's key rotation runs over every
    // enrollment): the reply still gets a moment of its own to be written.
    send(stream, &reply, deadline.max(Instant::now() + REPLY_TIME));
}

fn send(mut stream: &UnixStream, reply: &Reply, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
        return;
    }
    // A caller gone by now loses only its own answer.
    let _ = stream.write_all(&reply.encode());
}

/// Whether the caller's uid is that of `user`'s passwd entry (looked up through NSS). A name
/// with no entry belongs to nobody.
fn owns(uid: u32, user: &UserName) -> Result<bool, String> {
    match nix::unistd::User::from_name(user.as_str()) {
        Ok(Some(entry)) => Ok(entry.uid.as_raw() == uid),
        Ok(None) => Ok(false),
        Err(e) => Err(format!("passwd lookup of {user}: {e}")),
    }
}

fn answer(config: &Config, storage: &Storage, cred: &UnixCredentials, req: Request) -> Reply {
    if req.root_only() {
        if cred.uid() != 0 {
            log(
                Level::Notice,
                &format!("administration request from {}: denied", who(cred)),
            );
            return Reply::Denied;
        }
        return crate::admin::answer(config, storage, req, &who(cred));
    }
    let user = match UserName::parse(req.user()) {
        Ok(u) => u,
        Err(e) => {
            log(
                Level::Notice,
                &format!("invalid user name ({e}) from {}", who(cred)),
            );
            return Reply::BadRequest;
        }
    };
    let (service, rhost) = match &req {
        Request::Verify(v) => (printable(&v.service, 64), v.rhost.clone()),
        Request::IsEnrolled { .. } => ("-".to_owned(), None),
        Request::Grace(g) => (printable(&g.service, 64), Some(g.rhost.clone())),
        _ => ("-".to_owned(), None),
    };
    let line = |what: &str| {
        format!(
            "{what} (service={service} user={user} rhost={} {})",
            rhost
                .as_deref()
                .map_or("-".to_owned(), |h| printable(h, 64)),
            who(cred)
        )
    };
    if cred.uid() != 0 {
        match owns(cred.uid(), &user) {
            Ok(true) => {}
            Ok(false) => {
                log(Level::Notice, &line("not this caller's account: denied"));
                return Reply::Denied;
            }
            Err(e) => {
                log(Level::Err, &line(&format!("{e}: denied")));
                return Reply::Unavailable(Unavailable::Internal);
            }
        }
    }
    let unavailable = |f: Failure| {
        log(Level::Err, &line(&format!("{f}; access denied")));
        Reply::Unavailable(match f {
            Failure::Key(_) => Unavailable::Key,
            Failure::State(_) => Unavailable::State,
            Failure::Backend(_) => Unavailable::Backend,
        })
    };
    match req {
        Request::Grace(g) => answer_grace(config, storage, cred, &user, g, &line),
        Request::IsEnrolled { .. } => match storage.is_enrolled(config, &user) {
            Ok(true) => Reply::Enrolled,
            Ok(false) => Reply::NotEnrolled,
            Err(f) => unavailable(f),
        },
        Request::Verify(v) => {
            let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
                log(
                    Level::Err,
                    &line("system clock is before 1970: access denied"),
                );
                return Reply::Unavailable(Unavailable::Internal);
            };
            let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            // What a caller that is not root says about a remote device is no evidence of
            // one: only root's logins (sshd's) remember devices.
            let device = (cred.uid() == 0)
                .then(|| device(v.rhost.as_deref(), v.key.clone()))
                .flatten();
            match storage.verify(
                config,
                &user,
                &v.code,
                v.rhost.as_deref(),
                device.as_ref(),
                now,
            ) {
                Ok(o) => {
                    log_outcome(&o, &line);
                    to_reply(o)
                }
                Err(f) => unavailable(f),
            }
        }
        // Answered above.
        _ => Reply::BadRequest,
    }
}

/// The remote device of a request, from its parts.
fn device(rhost: Option<&str>, key: Option<proto::DeviceKey>) -> Option<DeviceIdentity> {
    let key = key.map(|k| common::device::PublicKey {
        digest: k.digest,
        label: k.label,
    });
    DeviceIdentity::from_parts(rhost?, key)
}

/// A `Grace` request: root's only (a caller that is not root gets no grace, whatever it
/// says about a device), under the daemon's `grace_secs`.
fn answer_grace(
    config: &Config,
    storage: &Storage,
    cred: &UnixCredentials,
    user: &UserName,
    g: proto::GraceRequest,
    line: &dyn Fn(&str) -> String,
) -> Reply {
    let Some(device) = device(Some(&g.rhost), g.key).filter(|_| cred.uid() == 0) else {
        return Reply::NoGrace;
    };
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        log(
            Level::Err,
            &line("system clock is before 1970: access denied"),
        );
        return Reply::Unavailable(Unavailable::Internal);
    };
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    match storage.grace(config, user, &device, now) {
        Ok(Some(d)) => {
            log(
                Level::Notice,
                &line(&format!(
                    "grace login: device remembered since {}, no code asked",
                    d.since
                )),
            );
            Reply::Grace { since: d.since }
        }
        Ok(None) => Reply::NoGrace,
        Err(f) => {
            log(Level::Err, &line(&format!("{f}; access denied")));
            Reply::Unavailable(match f {
                Failure::Key(_) => Unavailable::Key,
                Failure::State(_) => Unavailable::State,
                Failure::Backend(_) => Unavailable::Backend,
            })
        }
    }
}

fn log_outcome(o: &Outcome, line: &dyn Fn(&str) -> String) {
    let (level, what) = match o {
        Outcome::Accepted { prior, .. } => (
            Level::Info,
            format!(
                "code accepted; {} rejected since the last success",
                prior.count
            ),
        ),
        Outcome::RecoveryAccepted { remaining, .. } => (
            Level::Notice,
            format!("recovery code accepted, {remaining} left"),
        ),
        Outcome::Rejected { failures, .. } => (
            Level::Notice,
            format!("wrong code: access denied; consecutive failures: {failures}"),
        ),
        Outcome::Replayed { failures, .. } => (
            Level::Warning,
            format!(
                "code already used (replay), account may be compromised: access denied; \
                 consecutive failures: {failures}"
            ),
        ),
        Outcome::Locked { until } => (
            Level::Notice,
            format!("locked until {until}: access denied"),
        ),
        Outcome::NotEnrolled => (Level::Info, "not enrolled".to_owned()),
    };
    log(level, &line(&what));
}

fn to_reply(o: Outcome) -> Reply {
    let prior = |p: common::PriorRejections| Prior {
        count: p.count,
        last_rhost: p.last_rhost,
        last_at: p.last_at,
    };
    match o {
        Outcome::Accepted { step, prior: p } => Reply::Accepted {
            step: step.0,
            prior: prior(p),
        },
        Outcome::RecoveryAccepted {
            remaining,
            prior: p,
        } => Reply::RecoveryAccepted {
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            prior: prior(p),
        },
        Outcome::Rejected {
            failures,
            locked_until,
        } => Reply::Rejected {
            failures,
            locked_until,
        },
        Outcome::Replayed {
            failures,
            locked_until,
        } => Reply::Replayed {
            failures,
            locked_until,
        },
        Outcome::Locked { until } => Reply::Locked { until },
        Outcome::NotEnrolled => Reply::NotEnrolled,
    }
}
