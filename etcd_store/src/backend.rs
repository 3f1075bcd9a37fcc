//! [`EtcdBackend`]: pam_totp's storage seam (`common::Backend`) over [`Store`], for the daemon.
//!
//! - The version of a user's values is the pair of `mod_revision`s of the state key and of the
//!   counters key (0: no counters key yet; the counters written in the state then apply).
//! - `commit` is [`Store::commit_counters_by`]: a compare-and-swap on both revisions, so of any
//!   number of hosts committing against one version at most one succeeds. An error, above all a
//!   commit whose outcome stays unknown after the re-read, is [`common::Error::Unavailable`]:
//!   never reported as committed. etcd commits only once a quorum has the write in its
//!   write-ahead log on disk, so every commit is durable.
//! - The counters value is one record of `common::counters` (`encode_record`), bound to the user
//!   and to the generation of the state it extends; a record of another generation or a damaged
//!   one is refused as corrupt, never read as "no counters".
//! - Every call of one operation (a login: load, commit, the loads and commits of its retries)
//!   can share one deadline: [`EtcdBackend::with_deadline`].

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::backend::{Backend, Commit, Expect, Loaded, Version};
use common::counters::{self, Counters};
use common::login::MAX_ATTEMPTS;
use common::{RecordKey, SealedState, UserName};

use crate::{Config, Error, Outcome, Store};

type CResult<T> = common::Result<T>;

/// The fleet store as a `common::Backend`. Blocking: each call runs on the backend's own tokio
/// runtime (two worker threads) and must not be made from inside another tokio runtime. Cheap
/// to clone through [`EtcdBackend::with_deadline`].
pub struct EtcdBackend {
    runtime: Arc<tokio::runtime::Runtime>,
    store: Store,
    /// One operation's deadline; `None`: each call gets `timeout_ms` of its own.
    deadline: Option<Instant>,
}

/// What `load` passes to `commit` inside the version: the generation of the state it read,
/// which the counters record names.
struct Generation(u64);

fn rev_out(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

fn rev_in(r: u64) -> CResult<i64> {
    i64::try_from(r).map_err(|_| common::Error::Config(format!("etcd revision {r} out of range")))
}

fn map_err(e: Error) -> common::Error {
    match e {
        Error::InvalidUser => common::Error::InvalidUserName("not usable in an etcd key"),
        Error::Corrupt(why) => common::Error::Corrupt {
            path: PathBuf::from("etcd"),
            why,
        },
        e @ (Error::Config(_) | Error::TlsFile { .. }) => common::Error::Config(e.to_string()),
        e @ Error::PermissionDenied { .. } => common::Error::NotPermitted(e.to_string()),
        e => common::Error::Unavailable(e.to_string()),
    }
}

impl EtcdBackend {
    /// A runtime and one channel per endpoint ([`Store::connect`]: succeeds while the cluster
    /// is down; only a configuration that cannot work, or an unreadable TLS file, fails).
    pub fn connect(config: Config) -> Result<EtcdBackend, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("tokio runtime: {e}")))?;
        let store = runtime.block_on(Store::connect(config))?;
        Ok(EtcdBackend {
            runtime: Arc::new(runtime),
            store,
            deadline: None,
        })
    }

    /// The same backend with every call bounded by `deadline` (one login's, from its start:
    /// `[etcd] timeout_ms`). A commit of unknown outcome may re-read for
    /// [`crate::recheck_margin`] past it.
    pub fn with_deadline(&self, deadline: Instant) -> EtcdBackend {
        EtcdBackend {
            runtime: self.runtime.clone(),
            store: self.store.clone(),
            deadline: Some(deadline),
        }
    }

    /// `timeout_ms`: the deadline of one call, or of one operation.
    pub fn timeout(&self) -> Duration {
        self.store.timeout()
    }

    /// The async store inside.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn deadline(&self) -> Instant {
        self.deadline
            .unwrap_or_else(|| Instant::now() + self.store.timeout())
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    fn origin(&self, user: &UserName, what: &str) -> PathBuf {
        PathBuf::from(format!("etcd:{}{what}/{user}", self.store.prefix()))
    }

    fn raw(&self, user: &UserName) -> CResult<Option<crate::Loaded>> {
        self.block_on(self.store.load_by(user.as_str(), self.deadline()))
            .map_err(map_err)
    }

    fn loaded(
        &self,
        user: &UserName,
        l: crate::Loaded,
        open: &mut dyn FnMut(&SealedState) -> CResult<RecordKey>,
    ) -> CResult<Loaded> {
        let state = SealedState::parse(&l.state, user, &self.origin(user, "state"))?;
        let generation = state.generation();
        let key = open(&state)?;
        let counters: Counters = match &l.counters {
            None => state.counters(),
            Some(b) => match counters::decode_record(user, &key, b) {
                Some((g, c)) if g == generation => c,
                Some(_) => {
                    return Err(common::Error::Corrupt {
                        path: self.origin(user, "counters"),
                        why: "counters of another enrollment".into(),
                    })
                }
                None => {
                    return Err(common::Error::Corrupt {
                        path: self.origin(user, "counters"),
                        why: "counters record damaged, changed without the key, or not this \
                              user's"
                            .into(),
                    })
                }
            },
        };
        Ok(Loaded {
            state,
            counters,
            version: Version::new(rev_out(l.state_revision), rev_out(l.counters_revision))
                .with_lease(Box::new(Generation(generation))),
        })
    }

    fn put(&self, user: &UserName, state: &SealedState, expect: crate::Expect) -> CResult<bool> {
        let r = self.block_on(self.store.put_state_by(
            user.as_str(),
            state.as_bytes(),
            expect,
            self.deadline(),
        ));
        match r.map_err(map_err)? {
            Outcome::Committed { .. } => Ok(true),
            Outcome::Conflict => Ok(false),
        }
    }
}

impl Backend for EtcdBackend {
    fn is_enrolled(&self, user: &UserName) -> CResult<bool> {
        Ok(self.raw(user)?.is_some())
    }

    fn load(
        &self,
        user: &UserName,
        open: &mut dyn FnMut(&SealedState) -> CResult<RecordKey>,
    ) -> CResult<Option<Loaded>> {
        match self.raw(user)? {
            Some(l) => self.loaded(user, l, open).map(Some),
            None => Ok(None),
        }
    }

    /// Durable whatever `durable` says (see the module docs).
    fn commit(
        &self,
        user: &UserName,
        mut version: Version,
        counters: &Counters,
        key: &RecordKey,
        _durable: bool,
    ) -> CResult<Commit> {
        let generation = match version
            .take_lease()
            .and_then(|l| l.downcast::<Generation>().ok())
        {
            Some(g) => g.0,
            // Not a version of our load: the state's generation now; if the state moved
            // since the version, the compare-and-swap below refuses anyway.
            None => match self.raw(user)? {
                Some(l) => {
                    SealedState::parse(&l.state, user, &self.origin(user, "state"))?.generation()
                }
                None => return Ok(Commit::Conflict),
            },
        };
        let bytes = counters::encode_record(user, key, generation, counters);
        let r = self.block_on(self.store.commit_counters_by(
            user.as_str(),
            rev_in(version.state())?,
            rev_in(version.counters())?,
            &bytes,
            self.deadline(),
        ));
        match r.map_err(map_err)? {
            Outcome::Committed { .. } => Ok(Commit::Committed),
            Outcome::Conflict => Ok(Commit::Conflict),
        }
    }

    fn put_state(
        &self,
        user: &UserName,
        expect: Expect,
        state: &SealedState,
        check: &dyn Fn() -> CResult<()>,
    ) -> CResult<Commit> {
        let done = |ok: bool| {
            if ok {
                Commit::Committed
            } else {
                Commit::Conflict
            }
        };
        match expect {
            Expect::Absent => {
                if self.is_enrolled(user)? {
                    return Err(common::Error::AlreadyEnrolled(user.clone()));
                }
                check()?;
                if self.put(user, state, crate::Expect::Absent)? {
                    Ok(Commit::Committed)
                } else {
                    // Enrolled by someone else since we looked.
                    Err(common::Error::AlreadyEnrolled(user.clone()))
                }
            }
            Expect::Version(v) => {
                check()?;
                let expect = crate::Expect::AtRevisions {
                    state: rev_in(v.state())?,
                    counters: rev_in(v.counters())?,
                };
                Ok(done(self.put(user, state, expect)?))
            }
            // Still a compare-and-swap on what is there now: an unconditional write that a
            // stopped member applied late could wipe counters committed since.
            Expect::Anything => {
                for _ in 0..MAX_ATTEMPTS {
                    let expect = match self.raw(user)? {
                        None => crate::Expect::Absent,
                        Some(l) => crate::Expect::AtRevisions {
                            state: l.state_revision,
                            counters: l.counters_revision,
                        },
                    };
                    check()?;
                    if self.put(user, state, expect)? {
                        return Ok(Commit::Committed);
                    }
                }
                Err(common::Error::Contention(user.clone()))
            }
        }
    }

    fn remove(&self, user: &UserName) -> CResult<bool> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(l) = self.raw(user)? else {
                return Ok(false);
            };
            let r = self.block_on(self.store.delete_at(
                user.as_str(),
                l.state_revision,
                self.deadline(),
            ));
            match r.map_err(map_err)? {
                Outcome::Committed { .. } => return Ok(true),
                Outcome::Conflict => continue,
            }
        }
        Err(common::Error::Contention(user.clone()))
    }

    fn users(&self) -> CResult<Vec<UserName>> {
        let names = self
            .block_on(self.store.list_by(self.deadline()))
            .map_err(map_err)?;
        Ok(names
            .iter()
            .filter_map(|n| UserName::parse(n).ok())
            .collect())
    }
}
