//! The module's side of pam_totpd: when the module must not (or cannot) open the store
//! itself, the enrollment check and the code go to the daemon, one request each, under
//! `daemon_timeout_ms` for the whole exchange. The prompt stays in the module.
//!
//! Routing (SPEC.md "Daemon"): backend `files` and euid 0 stay in-process as before, with
//! nothing added; euid not 0 (a screen locker) asks the daemon; backend `etcd` always does.
//! No thread is started and no network connection opened here: one Unix stream socket,
//! blocking I/O with timeouts, closed before returning. Writes use MSG_NOSIGNAL, so a
//! daemon that goes away cannot raise SIGPIPE in the host process.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::config::BackendKind;
use common::store::{Outcome, PriorRejections};
use common::DeviceIdentity;
use common::{Config, UserName};
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use proto::{read_frame, Deadline, DeviceKey, FrameError, GraceRequest, Reply, Request, Verify};
use zeroize::Zeroizing;

/// Where the module sends its questions.
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

/// Why the daemon gave no decision. Its text names the socket; the module logs it and
/// fails closed with PAM_AUTHINFO_UNAVAIL.
#[derive(Debug)]
pub struct DaemonError {
    socket: PathBuf,
    what: String,
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pam_totpd at {}: {}", self.socket.display(), self.what)
    }
}

impl Client {
    /// The daemon, if this login must go through it; `None`: in-process. `privileged`: the
    /// caller runs with effective uid 0.
    pub fn route(config: &Config, privileged: bool) -> Option<Client> {
        let via_daemon = config.backend == BackendKind::Etcd || !privileged;
        via_daemon.then(|| Client {
            socket: config.socket.clone(),
            timeout: Duration::from_millis(config.daemon_timeout_ms),
        })
    }

    /// A client of the daemon at `socket` (what [`Client::route`] builds for the daemon path).
    pub fn new(socket: &Path, timeout: Duration) -> Client {
        Client {
            socket: socket.to_owned(),
            timeout,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn error(&self, what: impl Into<String>) -> DaemonError {
        DaemonError {
            socket: self.socket.clone(),
            what: what.into(),
        }
    }

    fn io_error(&self, doing: &str, e: io::Error) -> DaemonError {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            self.error(format!(
                "no answer within {} ms ({doing})",
                self.timeout.as_millis()
            ))
        } else {
            self.error(format!("{doing}: {e}"))
        }
    }

    /// One request, one reply.
    fn call(&self, req: &Request) -> Result<Reply, DaemonError> {
        let deadline = Instant::now() + self.timeout;
        let stream = self.connect(deadline)?;
        self.send(&stream, &req.encode(), deadline)?;
        let body = match read_frame(&mut Deadline {
            stream: &stream,
            deadline,
        }) {
            Ok(b) => b,
            Err(FrameError::Io(e)) => return Err(self.io_error("reading the reply", e)),
            Err(e) => return Err(self.error(format!("bad reply: {e}"))),
        };
        Reply::decode(&body).map_err(|e| self.error(format!("bad reply: {e}")))
    }

    /// A non-blocking connect, retried while the daemon's backlog is full, until `deadline`.
    fn connect(&self, deadline: Instant) -> Result<UnixStream, DaemonError> {
        let fail = |e: Errno| self.error(format!("cannot connect: {e}"));
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(fail)?;
        let addr = UnixAddr::new(&self.socket).map_err(fail)?;
        loop {
            match socket::connect(fd.as_raw_fd(), &addr) {
                Ok(()) => break,
                Err(Errno::EAGAIN | Errno::EINTR) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(Errno::EAGAIN) => {
                    return Err(self.error(format!(
                        "no answer within {} ms (connection backlog full)",
                        self.timeout.as_millis()
                    )))
                }
                Err(e) => return Err(fail(e)),
            }
        }
        let stream = UnixStream::from(fd);
        stream
            .set_nonblocking(false)
            .map_err(|e| self.io_error("connect", e))?;
        Ok(stream)
    }

    fn send(
        &self,
        stream: &UnixStream,
        mut buf: &[u8],
        deadline: Instant,
    ) -> Result<(), DaemonError> {
        while !buf.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.io_error("sending", io::ErrorKind::TimedOut.into()));
            }
            stream
                .set_write_timeout(Some(left))
                .map_err(|e| self.io_error("sending", e))?;
            match socket::send(stream.as_fd().as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => buf = &buf[n..],
                Err(Errno::EINTR) => {}
                Err(e) => return Err(self.io_error("sending", io::Error::from(e))),
            }
        }
        Ok(())
    }

    fn unexpected(&self, reply: Reply) -> DaemonError {
        self.error(match reply {
            Reply::Unavailable(why) => why.as_str().to_owned(),
            Reply::Denied => "this caller may not ask about this account (denied)".to_owned(),
            Reply::BadRequest => "request refused as malformed".to_owned(),
            other => format!("unexpected reply {other:?}"),
        })
    }

    pub fn is_enrolled(&self, user: &UserName) -> Result<bool, DaemonError> {
        match self.call(&Request::IsEnrolled {
            user: user.to_string(),
        })? {
            Reply::Enrolled => Ok(true),
            Reply::NotEnrolled => Ok(false),
            other => Err(self.unexpected(other)),
        }
    }

    /// Whether `device` may log in as `user` without a code, under the daemon's
    /// `grace_secs`: the time the device was remembered, if so.
    pub fn grace(
        &self,
        user: &UserName,
        device: &DeviceIdentity,
        service: &str,
    ) -> Result<Option<i64>, DaemonError> {
        let req = Request::Grace(GraceRequest {
            user: user.to_string(),
            rhost: device.rhost().to_owned(),
            key: device_key(Some(device)),
            service: service.to_owned(),
        });
        match self.call(&req)? {
            Reply::Grace { since } => Ok(Some(since)),
            Reply::NoGrace => Ok(None),
            other => Err(self.unexpected(other)),
        }
    }

    /// The login transaction, run by the daemon under its own policy. `device`: the
    /// login's remote device, remembered on success where the daemon's `grace_secs` says.
    pub fn verify(
        &self,
        user: &UserName,
        code: &str,
        rhost: Option<&str>,
        device: Option<&DeviceIdentity>,
        service: &str,
    ) -> Result<Outcome, DaemonError> {
        let req = Request::Verify(Verify {
            user: user.to_string(),
            code: Zeroizing::new(code.to_owned()),
            rhost: rhost.map(str::to_owned),
            service: service.to_owned(),
            key: device_key(device),
        });
        let prior = |p: proto::Prior| PriorRejections {
            count: p.count,
            last_rhost: p.last_rhost,
            last_at: p.last_at,
        };
        Ok(match self.call(&req)? {
            Reply::Accepted { step, prior: p } => Outcome::Accepted {
                step: common::TimeStep(step),
                prior: prior(p),
            },
            Reply::RecoveryAccepted {
                remaining,
                prior: p,
            } => Outcome::RecoveryAccepted {
                remaining: remaining as usize,
                prior: prior(p),
            },
            Reply::Rejected {
                failures,
                locked_until,
            } => Outcome::Rejected {
                failures,
                locked_until,
            },
            Reply::Replayed {
                failures,
                locked_until,
            } => Outcome::Replayed {
                failures,
                locked_until,
            },
            Reply::Locked { until } => Outcome::Locked { until },
            Reply::NotEnrolled => Outcome::NotEnrolled,
            other => return Err(self.unexpected(other)),
        })
    }
}

/// The key part of a device, as the protocol carries it.
fn device_key(device: Option<&DeviceIdentity>) -> Option<DeviceKey> {
    device.and_then(|d| d.key()).map(|k| DeviceKey {
        digest: k.digest,
        label: k.label.clone(),
    })
}
