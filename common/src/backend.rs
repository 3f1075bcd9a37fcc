//! The storage seam: where enrollments and their counters live, and where the key that
//! seals them comes from.
//!
//! # Design
//!
//! A login is a compare-and-swap over one user's counters. [`crate::login::authenticate`]
//! [`Backend::load`]s the user's [`SealedState`] and [`Counters`] with a [`Version`],
//! opening the state with the [`KeySource`]'s key on the way (decryption happens only
//! inside this crate: the backend gets back the enrollment's [`RecordKey`], which is all
//! it needs to authenticate the counters records it reads and writes), matches the typed code, asks the pure [`crate::policy::decide`] for the new
//! counters, and [`Backend::commit`]s them against the version. On
//! [`Commit::Conflict`] it loads again and decides again from the fresh values, at most
//! [`crate::login::MAX_ATTEMPTS`] times, then fails closed
//! ([`crate::Error::Contention`]). The policy never sees the store; the store never sees
//! a secret in clear or a rule.
//!
//! The files backend ([`crate::files::FilesBackend`]) holds the user's flock from `load` to
//! `commit` (inside the version's lease), so a conflict cannot happen there; it checks the
//! version anyway. A network store (etcd) carries its revisions in the version and makes
//! `commit` a transaction that compares them.

use std::any::Any;
use std::fmt;

use crate::counters::Counters;
use crate::crypto::{HostKey, RecordKey};
use crate::error::Result;
use crate::state::SealedState;
use crate::user::UserName;

/// What a backend needs to recognise the values it handed out: two revisions and, for a
/// backend that holds something from `load` to `commit` (a lock), a lease.
///
/// The files backend uses (state generation, counters slot sequence); an etcd backend would
/// use the mod_revisions of the state key and of the counters key. Callers only pass a
/// version back to the backend that made it; it means nothing elsewhere.
pub struct Version {
    state: u64,
    counters: u64,
    lease: Option<Box<dyn Any + Send>>,
}

impl Version {
    pub fn new(state: u64, counters: u64) -> Self {
        Version {
            state,
            counters,
            lease: None,
        }
    }

    /// Attaches what the backend holds until commit (dropped with the version).
    pub fn with_lease(mut self, lease: Box<dyn Any + Send>) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Revision of the enrollment (the state).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// Revision of the counters.
    pub fn counters(&self) -> u64 {
        self.counters
    }

    /// Takes the lease back, for the backend's `commit`.
    pub fn take_lease(&mut self) -> Option<Box<dyn Any + Send>> {
        self.lease.take()
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Version")
            .field("state", &self.state)
            .field("counters", &self.counters)
            .field("lease", &self.lease.is_some())
            .finish()
    }
}

/// One user's stored values.
pub struct Loaded {
    /// The enrollment as stored, sealed.
    pub state: SealedState,
    /// The current counters (a backend that keeps them apart from the state overlays them).
    pub counters: Counters,
    pub version: Version,
}

/// The result of a compare-and-swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Commit {
    /// Written (durably if asked).
    Committed,
    /// The stored values are no longer those of the version: nothing was written. Load
    /// again and decide again.
    Conflict,
}

/// What [`Backend::put_state`] expects to replace.
#[derive(Debug)]
pub enum Expect {
    /// No enrollment: otherwise [`crate::Error::AlreadyEnrolled`].
    Absent,
    /// Exactly the values of this version: otherwise [`Commit::Conflict`].
    Version(Version),
    /// Whatever is there, readable or not (`--replace`).
    Anything,
}

/// A store of enrollments and their counters.
///
/// # Contract
///
/// Implementations promise, for all callers of one backend (threads, processes, hosts of a
/// fleet that share it):
///
/// - **A time step commits at most once across all callers of one backend.** Concretely:
///   [`Backend::commit`] writes only if the user's state and counters are still exactly
///   those of `version` (compare-and-swap), and two commits against one version cannot
///   both return [`Commit::Committed`]. Since an accepted step becomes `last_counter` in
///   the committed counters, a second caller that presented the same code loads the new
///   counters and sees a replay.
/// - `commit(.., durable: true)` returns `Committed` only once the counters are on stable
///   storage (they survive a crash or power loss); `durable: false` may lose the write in a
///   crash but never leaves torn or mixed values: a later load returns the old counters or
///   the new ones.
/// - [`Backend::put_state`] replaces a state atomically and durably and supersedes its
///   counters: the new state starts with the counters written in it. It runs `check` after
///   it has excluded concurrent writers of that user and before it writes, and writes
///   nothing if `check` fails.
/// - A backend never returns a state of another user, and reports damaged or untrusted
///   data as [`crate::Error::Corrupt`] or [`crate::Error::Unsafe`], never as "not
///   enrolled". An unreachable store is an error, never "not enrolled".
/// - Counters it returns were authenticated under the enrollment's [`RecordKey`] (or come
///   from the state itself), and every counters record it stores carries an authenticator
///   under that key over the whole record: values changed without the key are never
///   returned.
/// - Nothing is cached across calls in a way that could hand out a superseded version as
///   current.
///
/// The trait is object safe: callers hold a `&dyn Backend` chosen at run time.
pub trait Backend: Send + Sync {
    /// Whether `user` has an enrollment, without reading or opening it (no key needed).
    fn is_enrolled(&self, user: &UserName) -> Result<bool>;

    /// The user's state and counters with their version; `None` if not enrolled (and then
    /// nothing is created for that user). `open` is called once with the state read, before
    /// any counters are trusted: it opens the state (checking it whole) and returns the key
    /// that authenticates the counters records. Its error is the load's error.
    fn load(
        &self,
        user: &UserName,
        open: &mut dyn FnMut(&SealedState) -> Result<RecordKey>,
    ) -> Result<Option<Loaded>>;

    /// Writes `counters`, authenticated under `key` (the enrollment's, as `load` got it),
    /// if the user's values are still those of `version`.
    fn commit(
        &self,
        user: &UserName,
        version: Version,
        counters: &Counters,
        key: &RecordKey,
        durable: bool,
    ) -> Result<Commit>;

    /// Stores a new or rewritten state for `user` (enroll, replace, new recovery codes,
    /// unlock, rekey), if `expect` holds, once `check` passed. `state` is one made by the
    /// crate's sealing (it carries the key for the counters record that goes with it);
    /// a state without one is refused.
    fn put_state(
        &self,
        user: &UserName,
        expect: Expect,
        state: &SealedState,
        check: &dyn Fn() -> Result<()>,
    ) -> Result<Commit>;

    /// Removes the enrollment and its counters. Returns whether there was one.
    fn remove(&self, user: &UserName) -> Result<bool>;

    /// Every user with an enrollment, sorted.
    fn users(&self) -> Result<Vec<UserName>>;
}

/// Where the key that seals states comes from.
pub trait KeySource: Send + Sync {
    /// The key read when this source was made: new states are sealed under it and stored
    /// ones opened with it first.
    fn key(&self) -> &HostKey;

    /// Reads the key again: the key now in force if a rekey has replaced [`KeySource::key`]
    /// since, else `None`. Logins use it when a state does not open; enrollment-side writes
    /// refuse to seal under a replaced key ([`crate::Error::KeyReplaced`]).
    fn replaced(&self) -> Result<Option<HostKey>>;

    /// The next key of a fleet's key rotation in progress, held beside [`KeySource::key`]
    /// by every host while the rotation runs (see [`crate::login::finish_rotation`]):
    /// states sealed under it open too, and new states are sealed under both, so a host
    /// holding either key alone in force opens them. `None` (the default): no rotation.
    fn next_key(&self) -> Option<&HostKey> {
        None
    }
}

/// A key source that can move to a new key without a moment at which a state does not
/// open (see [`crate::login::rekey`]).
pub trait KeyRotation: KeySource {
    /// The key being moved to: made and kept if there is none yet (a rekey interrupted
    /// before [`KeyRotation::promote`] finds the same one again).
    fn next(&self) -> Result<HostKey>;

    /// Makes the key of [`KeyRotation::next`] the one in force, durably.
    fn promote(&self) -> Result<()>;
}
