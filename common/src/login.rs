//! The operations, written once over any [`Backend`] and [`KeySource`]: the login
//! transaction and the enrollment side. Each loads, decides (for a login: with the pure
//! [`crate::policy`]), and commits with compare-and-swap, retrying a conflict from fresh
//! values at most [`MAX_ATTEMPTS`] times and failing closed after that.

use crate::backend::{Backend, Commit, Expect, KeyRotation, KeySource, Loaded};
use crate::counters::Counters;
use crate::crypto::HostKey;
use crate::error::{Error, Result};
use crate::policy::{self, AuthRequest, Matched, Outcome};
use crate::recovery::{self, RecoveryCode};
use crate::state::UserState;
use crate::totp::{self, OtpParams, TimeStep, TotpSecret};
use crate::user::UserName;

/// Loads (and decisions) per operation before giving up on a user whose values keep
/// changing under it.
pub const MAX_ATTEMPTS: usize = 8;

/// A new enrollment, as `totp-enroll` and `import` make it.
pub struct Enrollment {
    pub user: UserName,
    pub secret: TotpSecret,
    pub params: OtpParams,
    /// The step of the code that confirmed the enrollment (it cannot log in again), or the
    /// last step an imported token used.
    pub last_counter: Option<TimeStep>,
    pub recovery: RecoveryCodes,
    /// Replace an existing enrollment (readable or not) instead of refusing.
    pub replace: bool,
    /// Unix time, recorded as `created`.
    pub now: i64,
}

/// The recovery codes of a new enrollment.
pub enum RecoveryCodes {
    /// This many new ones, returned by [`enroll`] to be shown once.
    Generate(usize),
    /// Already known ones (a migration's scratch codes), in any form
    /// [`recovery::normalize`] accepts.
    Keep(Vec<zeroize::Zeroizing<String>>),
}

/// A user's status as `status` and `list` show it. Never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub user: UserName,
    pub params: OtpParams,
    pub created: i64,
    pub counters: Counters,
    pub recovery_codes_left: usize,
}

impl Status {
    pub fn locked(&self, now: i64) -> bool {
        self.counters.locked_until.is_some_and(|t| t > now)
    }
}

/// Opens a loaded state with the source's key, or with the key a rekey put in force since
/// the source was made (only a state that does not open under ours is worth a second read).
fn open(keys: &dyn KeySource, user: &UserName, loaded: &Loaded) -> Result<UserState> {
    match loaded.state.open(user, &[keys.key()]) {
        Err(Error::Corrupt { .. }) if !loaded.state.sealed_under(&keys.key().key_id()) => {
            match keys.replaced()? {
                Some(k) => loaded.state.open(user, &[&k]),
                None => loaded.state.open(user, &[keys.key()]),
            }
        }
        r => r,
    }
}

/// What `input` matches for `state` with `counters`, at `now`.
fn match_code(
    state: &UserState,
    counters: &Counters,
    input: &str,
    now: i64,
    window: u32,
) -> Matched {
    let code = recovery::normalize_typed(input);
    let m = totp::verify(
        state.secret(),
        &state.params,
        &code,
        u64::try_from(now).unwrap_or(0),
        window,
        counters.last_counter,
    );
    if let Some(step) = m.fresh_step {
        return Matched::Fresh(step);
    }
    if m.replayed {
        return Matched::Replayed;
    }
    let Some(n) = recovery::normalize(input) else {
        return Matched::Nothing;
    };
    match state.match_recovery_code(&n) {
        Some(i) => Matched::Recovery(i),
        None if state.recovery_code_spent(&n) => Matched::RecoverySpent,
        None => Matched::Nothing,
    }
}

/// The login transaction: load, verify `input` as a TOTP code or a recovery code (typed
/// forms as [`recovery::normalize_typed`] says), let [`policy::decide`] rule, commit. An
/// accepted code's step (or a spent recovery code) is on stable storage before this
/// returns `Accepted`; on a conflict it decides again from fresh values.
pub fn authenticate(
    backend: &dyn Backend,
    keys: &dyn KeySource,
    user: &UserName,
    input: &str,
    req: &AuthRequest,
) -> Result<Outcome> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(loaded) = backend.load(user)? else {
            return Ok(Outcome::NotEnrolled);
        };
        let mut state = open(keys, user, &loaded)?;
        // The matcher sees the current counters (for last_counter and spent codes).
        state.counters = loaded.counters.clone();
        let matched = match_code(&state, &loaded.counters, input, req.now, req.window);
        let decision = policy::decide(
            &loaded.counters,
            state.recovery_codes_listed(),
            matched,
            req,
        );
        let Some(counters) = decision.counters else {
            return Ok(decision.outcome);
        };
        match backend.commit(user, loaded.version, &counters, decision.durable)? {
            Commit::Committed => return Ok(decision.outcome),
            Commit::Conflict => continue,
        }
    }
    Err(Error::Contention(user.clone()))
}

/// Checks a code typed to confirm a new secret (not yet stored), with the login's rule for
/// typed codes. Returns its step.
pub fn verify_new_secret(
    secret: &TotpSecret,
    params: &OtpParams,
    input: &str,
    now: i64,
    window: u32,
) -> Option<TimeStep> {
    let code = recovery::normalize_typed(input);
    totp::verify(
        secret,
        params,
        &code,
        u64::try_from(now).unwrap_or(0),
        window,
        None,
    )
    .fresh_step
}

/// Refuses to seal under a key a rekey has replaced.
fn key_current(keys: &dyn KeySource) -> Result<()> {
    match keys.replaced()? {
        Some(_) => Err(Error::KeyReplaced),
        None => Ok(()),
    }
}

/// Enrolls, refusing an existing enrollment unless `replace`. Returns the new recovery
/// codes (none if they were kept), to be shown once.
pub fn enroll(
    backend: &dyn Backend,
    keys: &dyn KeySource,
    e: Enrollment,
) -> Result<Vec<RecoveryCode>> {
    if !e.replace {
        // An unreadable existing enrollment is an error, not "already enrolled".
        if backend.load(&e.user)?.is_some() {
            return Err(Error::AlreadyEnrolled(e.user));
        }
    }
    let mut state = UserState::new(
        e.user.clone(),
        e.secret,
        e.params,
        e.now,
        e.last_counter.map(|s| s.0),
        keys.key(),
    )?;
    let codes = match &e.recovery {
        RecoveryCodes::Generate(n) => state.new_recovery_codes(*n)?,
        RecoveryCodes::Keep(codes) => {
            let codes: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
            state.set_recovery_codes(&codes)?;
            Vec::new()
        }
    };
    let sealed = state.seal(&[keys.key()])?;
    let expect = if e.replace {
        Expect::Anything
    } else {
        Expect::Absent
    };
    match backend.put_state(&e.user, expect, &sealed, &|| key_current(keys))? {
        Commit::Committed => Ok(codes),
        // Absent and Anything do not conflict; fail closed if a backend says otherwise.
        Commit::Conflict => Err(Error::Contention(e.user)),
    }
}

/// Applies `change` to an enrolled user's state and stores it, sealed under `seal_with`
/// (opened with `open_with`, or the source's key), retrying on conflict.
fn modify<T>(
    backend: &dyn Backend,
    keys: &dyn KeySource,
    user: &UserName,
    open_with: Option<&[&HostKey]>,
    seal_with: Option<&[&HostKey]>,
    mut change: impl FnMut(&mut UserState) -> Result<T>,
) -> Result<Option<T>> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(loaded) = backend.load(user)? else {
            return Ok(None);
        };
        let mut state = match open_with {
            Some(k) => loaded.state.open(user, k)?,
            None => open(keys, user, &loaded)?,
        };
        state.counters = loaded.counters.clone();
        let out = change(&mut state)?;
        state.next_generation()?;
        let sealed = state.seal(seal_with.unwrap_or(&[keys.key()]))?;
        let check = || match seal_with {
            Some(_) => Ok(()),
            None => key_current(keys),
        };
        match backend.put_state(user, Expect::Version(loaded.version), &sealed, &check)? {
            Commit::Committed => return Ok(Some(out)),
            Commit::Conflict => continue,
        }
    }
    Err(Error::Contention(user.clone()))
}

/// What [`copy_enrollment`] moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copied {
    /// Unused recovery codes moved along.
    pub recovery_codes_left: usize,
    /// The last accepted step, moved along: codes up to it stay spent.
    pub last_counter: Option<u64>,
}

/// Copies `user`'s enrollment from one backend and key to another (a host's state
/// directory into the fleet store, `import --from-state-dir`): the secret and its
/// parameters, the counters (last accepted step, failures, lock) and the unused recovery
/// codes, re-sealed under `to_keys`' key. `None`: not enrolled in `from`. Refuses an
/// enrollment already in `to` unless `replace` ([`Error::AlreadyEnrolled`]).
pub fn copy_enrollment(
    from: &dyn Backend,
    from_keys: &dyn KeySource,
    to: &dyn Backend,
    to_keys: &dyn KeySource,
    user: &UserName,
    replace: bool,
) -> Result<Option<Copied>> {
    let Some(loaded) = from.load(user)? else {
        return Ok(None);
    };
    let mut state = open(from_keys, user, &loaded)?;
    state.counters = loaded.counters.clone();
    let copied = Copied {
        recovery_codes_left: recovery::unspent(
            state.recovery_codes_listed(),
            loaded.counters.recovery_used,
        ),
        last_counter: loaded.counters.last_counter,
    };
    state.next_generation()?;
    let sealed = state.seal(&[to_keys.key()])?;
    let expect = if replace {
        Expect::Anything
    } else {
        Expect::Absent
    };
    match to.put_state(user, expect, &sealed, &|| key_current(to_keys))? {
        Commit::Committed => Ok(Some(copied)),
        Commit::Conflict => Err(Error::Contention(user.clone())),
    }
}

fn enrolled<T>(user: &UserName, r: Result<Option<T>>) -> Result<T> {
    r?.ok_or_else(|| Error::NotEnrolled(user.clone()))
}

/// New recovery codes; the old ones stop working.
pub fn regenerate_recovery_codes(
    backend: &dyn Backend,
    keys: &dyn KeySource,
    user: &UserName,
    count: usize,
) -> Result<Vec<RecoveryCode>> {
    enrolled(
        user,
        modify(backend, keys, user, None, None, |s| {
            s.new_recovery_codes(count)
        }),
    )
}

/// Clears failures and the lock.
pub fn unlock(backend: &dyn Backend, keys: &dyn KeySource, user: &UserName) -> Result<()> {
    enrolled(
        user,
        modify(backend, keys, user, None, None, |s| {
            s.counters.failures = 0;
            s.counters.locked_until = None;
            s.counters.lockouts = 0;
            Ok(())
        }),
    )
}

/// The user's status, `None` if not enrolled. Decrypts to prove the state is usable.
pub fn status(
    backend: &dyn Backend,
    keys: &dyn KeySource,
    user: &UserName,
) -> Result<Option<Status>> {
    let Some(loaded) = backend.load(user)? else {
        return Ok(None);
    };
    let state = open(keys, user, &loaded)?;
    Ok(Some(Status {
        recovery_codes_left: recovery::unspent(
            state.recovery_codes_listed(),
            loaded.counters.recovery_used,
        ),
        user: state.user.clone(),
        params: state.params,
        created: state.created,
        counters: loaded.counters,
    }))
}

/// Result of a whole-store operation for one user.
pub type PerUser<T> = (UserName, Result<T>);

/// Every enrolled user with its status or the error that makes it unusable.
pub fn list(backend: &dyn Backend, keys: &dyn KeySource) -> Result<Vec<PerUser<Status>>> {
    let mut out = Vec::new();
    for user in backend.users()? {
        match status(backend, keys, &user) {
            Ok(None) => continue,
            Ok(Some(s)) => out.push((user, Ok(s))),
            Err(e) => out.push((user, Err(e))),
        }
    }
    Ok(out)
}

/// Replaces the key and re-seals every state, with no moment at which a user cannot log
/// in, even if killed:
///
/// 1. the next key is made (or a leftover one of an interrupted run is reused);
/// 2. every state is rewritten sealed under both keys;
/// 3. the next key is promoted (from here logins read it);
/// 4. every state is rewritten sealed under the new key only.
///
/// Before step 3 logins hold the old key and every state opens with it; after, they hold
/// the new one and every state opens with that. Returns each user with the outcome of
/// step 4.
pub fn rekey(backend: &dyn Backend, keys: &dyn KeyRotation) -> Result<Vec<PerUser<()>>> {
    let old = keys.key();
    let new = keys.next()?;
    let both = [old, &new];
    // Step 2: a state that fails here would not open after the switch; stop before it.
    for user in backend.users()? {
        modify(backend, keys, &user, Some(&both), Some(&both), |_| Ok(()))?;
    }
    keys.promote()?;
    // Step 4, listing again: the old key still opens a state that an enrollment started
    // before the switch sealed under it alone (enrollment-side writes after it are refused).
    let users = backend.users()?;
    Ok(users
        .into_iter()
        .map(|u| {
            let r = modify(backend, keys, &u, Some(&[&new, old]), Some(&[&new]), |_| {
                Ok(())
            })
            .map(|_| ());
            (u, r)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use zeroize::Zeroizing;

    use super::*;
    use crate::backend::Version;
    use crate::state::SealedState;

    const NOW: i64 = 1_700_000_000;

    /// Stored bytes, counters, state revision, counters revision.
    type Entry = (Vec<u8>, Counters, u64, u64);

    /// An in-memory backend with an optional rival: before the first `rival_commits`
    /// commits, another caller is made to commit `rival` first, so ours conflicts.
    #[derive(Default)]
    struct Memory {
        entry: Mutex<Option<Entry>>,
        rival: Mutex<Option<Counters>>,
        always_conflict: bool,
        loads: AtomicUsize,
    }

    impl Backend for Memory {
        fn is_enrolled(&self, _: &UserName) -> Result<bool> {
            Ok(self.entry.lock().unwrap().is_some())
        }
        fn load(&self, user: &UserName) -> Result<Option<Loaded>> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            let e = self.entry.lock().unwrap();
            let Some((bytes, counters, s, c)) = e.as_ref() else {
                return Ok(None);
            };
            Ok(Some(Loaded {
                state: SealedState::parse(bytes, user, "mem".as_ref())?,
                counters: counters.clone(),
                version: Version::new(*s, *c),
            }))
        }
        fn commit(
            &self,
            _: &UserName,
            version: Version,
            counters: &Counters,
            _: bool,
        ) -> Result<Commit> {
            let mut e = self.entry.lock().unwrap();
            let e = e.as_mut().unwrap();
            if let Some(rival) = self.rival.lock().unwrap().take() {
                e.1 = rival;
                e.3 += 1;
            }
            if self.always_conflict || (e.2, e.3) != (version.state(), version.counters()) {
                return Ok(Commit::Conflict);
            }
            e.1 = counters.clone();
            e.3 += 1;
            Ok(Commit::Committed)
        }
        fn put_state(
            &self,
            _: &UserName,
            _: Expect,
            state: &SealedState,
            check: &dyn Fn() -> Result<()>,
        ) -> Result<Commit> {
            check()?;
            let mut e = self.entry.lock().unwrap();
            let rev = e.as_ref().map_or(1, |e| e.2 + 1);
            *e = Some((state.as_bytes().to_vec(), state.counters(), rev, 0));
            Ok(Commit::Committed)
        }
        fn remove(&self, _: &UserName) -> Result<bool> {
            Ok(self.entry.lock().unwrap().take().is_some())
        }
        fn users(&self) -> Result<Vec<UserName>> {
            Ok(vec![UserName::parse("alice").unwrap()])
        }
    }

    struct Key(HostKey);
    impl KeySource for Key {
        fn key(&self) -> &HostKey {
            &self.0
        }
        fn replaced(&self) -> Result<Option<HostKey>> {
            Ok(None)
        }
    }

    fn setup(backend: &Memory) -> (Key, UserName, TotpSecret) {
        let key = Key(HostKey::generate().unwrap());
        let user = UserName::parse("alice").unwrap();
        let bytes = b"0123456789abcdefghij".to_vec();
        let secret = TotpSecret::from_bytes(Zeroizing::new(bytes.clone())).unwrap();
        let e = Enrollment {
            user: user.clone(),
            secret: TotpSecret::from_bytes(Zeroizing::new(bytes)).unwrap(),
            params: OtpParams::default(),
            last_counter: None,
            recovery: RecoveryCodes::Generate(0),
            replace: false,
            now: NOW,
        };
        enroll(backend, &key, e).unwrap();
        (key, user, secret)
    }

    fn req() -> AuthRequest<'static> {
        AuthRequest {
            now: NOW,
            window: 1,
            max_failures: 5,
            lockout_secs: 60,
            rhost: None,
            lockout_max_secs: 86400,
        }
    }

    #[test]
    fn a_conflict_is_decided_again_from_fresh_values() {
        let backend = Memory::default();
        let (key, user, secret) = setup(&backend);
        let code = totp::code_at(&secret, &OtpParams::default(), NOW as u64);
        let step = OtpParams::default().step_at(NOW as u64);
        // Another caller spends this step between our load and our commit.
        *backend.rival.lock().unwrap() = Some(Counters {
            last_counter: Some(step),
            ..Default::default()
        });
        backend.loads.store(0, Ordering::SeqCst);
        let o = authenticate(&backend, &key, &user, &code, &req()).unwrap();
        assert_eq!(
            o,
            Outcome::Replayed {
                failures: 1,
                locked_until: None
            }
        );
        assert_eq!(backend.loads.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn endless_conflicts_fail_closed_after_bounded_retries() {
        let backend = Memory {
            always_conflict: true,
            ..Default::default()
        };
        let (key, user, secret) = setup(&backend);
        let code = totp::code_at(&secret, &OtpParams::default(), NOW as u64);
        backend.loads.store(0, Ordering::SeqCst);
        let r = authenticate(&backend, &key, &user, &code, &req());
        assert!(matches!(r, Err(Error::Contention(_))), "{r:?}");
        assert_eq!(backend.loads.load(Ordering::SeqCst), MAX_ATTEMPTS);
    }

    #[test]
    fn a_typed_code_follows_the_one_rule_at_login_and_confirmation() {
        let backend = Memory::default();
        let (key, user, secret) = setup(&backend);
        let params = OtpParams::default();
        let code = totp::code_at(&secret, &params, NOW as u64);
        let typed = format!("\t{} {}\n", &code[..3], &code[3..]);
        assert!(verify_new_secret(&secret, &params, &typed, NOW, 1).is_some());
        let o = authenticate(&backend, &key, &user, &typed, &req()).unwrap();
        assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
        let bad = format!("-{}", code.as_str());
        assert!(verify_new_secret(&secret, &params, &bad, NOW, 1).is_none());
    }
}
