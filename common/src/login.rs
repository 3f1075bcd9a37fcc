//! The operations, written once over any [`Backend`] and [`KeySource`]: the login
//! transaction and the enrollment side. Each loads, decides (for a login: with the pure
//! [`crate::policy`]), and commits with compare-and-swap, retrying a conflict from fresh
//! values at most [`MAX_ATTEMPTS`] times and failing closed after that.

use crate::backend::{Backend, Commit, Expect, KeyRotation, KeySource, Loaded};
use crate::counters::Counters;
use crate::crypto::{HostKey, RecordKey};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::hotp;
use crate::policy::{self, AuthRequest, Matched, Outcome};
use crate::recovery::{self, RecoveryCode};
use crate::state::{SealedState, UserState};
use crate::totp::{self, OtpKind, OtpParams, TimeStep, TotpSecret};
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
    /// last step an imported token used; for HOTP, the last counter the token used (the
    /// next code is looked for after it).
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
fn open(keys: &dyn KeySource, user: &UserName, state: &SealedState) -> Result<UserState> {
    let held = sealing(keys);
    match state.open(user, &held) {
        Err(Error::Corrupt { .. }) if !held.iter().any(|k| state.sealed_under(&k.key_id())) => {
            match keys.replaced()? {
                Some(k) => state.open(user, &[&k]),
                None => state.open(user, &held),
            }
        }
        r => r,
    }
}

/// The keys a new state is sealed under: the source's key, and the next key of a fleet's
/// rotation in progress ([`KeySource::next_key`]), so hosts holding either open it.
fn sealing(keys: &dyn KeySource) -> Vec<&HostKey> {
    std::iter::once(keys.key()).chain(keys.next_key()).collect()
}

/// What [`Backend::load`] needs to authenticate counters: opens the state with `keys` (as a
/// login does) and returns its record key. For callers that drive a backend themselves.
pub fn opener<'a>(
    keys: &'a dyn KeySource,
    user: &'a UserName,
) -> impl FnMut(&SealedState) -> Result<RecordKey> + 'a {
    move |state| open(keys, user, state).map(|s| s.record_key())
}

/// Loads `user` and opens the state with `open_state`, once, inside the load (so the
/// backend can authenticate the counters with the state's record key).
fn load_open(
    backend: &dyn Backend,
    user: &UserName,
    open_state: impl Fn(&SealedState) -> Result<UserState>,
) -> Result<Option<(Loaded, UserState)>> {
    let mut opened = None;
    let loaded = backend.load(user, &mut |s| {
        let state = open_state(s)?;
        let key = state.record_key();
        opened = Some(state);
        Ok(key)
    })?;
    match (loaded, opened) {
        (None, _) => Ok(None),
        (Some(l), Some(s)) => Ok(Some((l, s))),
        // A backend that returned counters without having them authenticated.
        (Some(_), None) => Err(Error::InvalidInput(
            "the backend returned a state it did not open".into(),
        )),
    }
}

/// What `input` matches for `state` with `counters`, under `req` (TOTP: `now` and
/// `window`; HOTP: `hotp_window`).
fn match_code(state: &UserState, counters: &Counters, input: &str, req: &AuthRequest) -> Matched {
    let code = recovery::normalize_typed(input);
    let m = match state.params.kind() {
        OtpKind::Totp => totp::verify(
            state.secret(),
            &state.params,
            &code,
            u64::try_from(req.now).unwrap_or(0),
            req.window,
            counters.last_counter,
        ),
        OtpKind::Hotp => hotp::verify(
            state.secret(),
            &state.params,
            &code,
            counters.last_counter,
            req.hotp_window,
        ),
    };
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
        let Some((loaded, mut state)) = load_open(backend, user, |s| open(keys, user, s))? else {
            return Ok(Outcome::NotEnrolled);
        };
        // The matcher sees the current counters (for last_counter and spent codes).
        state.counters = loaded.counters.clone();
        let matched = match_code(&state, &loaded.counters, input, req);
        let device = req
            .device
            .filter(|_| req.grace_secs > 0)
            .map(|d| state.device_record(d, req.now));
        let decision = policy::decide_from(
            &loaded.counters,
            state.recovery_codes_listed(),
            matched,
            req,
            device,
        );
        let Some(counters) = decision.counters else {
            return Ok(decision.outcome);
        };
        let key = state.record_key();
        match backend.commit(user, loaded.version, &counters, &key, decision.durable)? {
            Commit::Committed => return Ok(decision.outcome),
            Commit::Conflict => continue,
        }
    }
    Err(Error::Contention(user.clone()))
}

/// Whether `req.device` may log in as `user` without a code now ([`policy::grace`]);
/// returns the remembered device. Reads only: a grace login writes nothing, so it never
/// moves `last_counter`. `None` also when the user is not enrolled.
pub fn grace(
    backend: &dyn Backend,
    keys: &dyn KeySource,
    user: &UserName,
    req: &AuthRequest,
) -> Result<Option<Device>> {
    let Some(device) = req.device.filter(|_| req.grace_secs > 0) else {
        return Ok(None);
    };
    // Opened inside the load: the counters (and so the devices) are authenticated with
    // the state's record key.
    let Some((loaded, state)) = load_open(backend, user, |s| open(keys, user, s))? else {
        return Ok(None);
    };
    Ok(policy::grace(
        &loaded.counters,
        &state.device_id(device),
        req,
    ))
}

/// Forgets every device remembered for `grace_secs`. Returns how many there were.
pub fn forget_devices(
    backend: &dyn Backend,
    keys: &dyn KeySource,
    user: &UserName,
) -> Result<usize> {
    enrolled(
        user,
        modify(backend, keys, user, None, None, |s| {
            Ok(std::mem::take(&mut s.counters.devices).len())
        }),
    )
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
    if e.params.kind() == OtpKind::Hotp && e.last_counter.is_some_and(|c| c.0 > hotp::MAX_COUNTER) {
        return Err(Error::InvalidInput(format!(
            "HOTP counter must be at most {}",
            hotp::MAX_COUNTER
        )));
    }
    if !e.replace {
        // An unreadable existing enrollment is an error, not "already enrolled".
        if backend.load(&e.user, &mut opener(keys, &e.user))?.is_some() {
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
    let sealed = state.seal(&sealing(keys))?;
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
        let Some((loaded, mut state)) = load_open(backend, user, |s| match open_with {
            Some(k) => s.open(user, k),
            None => open(keys, user, s),
        })?
        else {
            return Ok(None);
        };
        state.counters = loaded.counters.clone();
        let out = change(&mut state)?;
        state.next_generation()?;
        let sealed = match seal_with {
            Some(k) => state.seal(k)?,
            None => state.seal(&sealing(keys))?,
        };
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
    let Some((loaded, mut state)) = load_open(from, user, |s| open(from_keys, user, s))? else {
        return Ok(None);
    };
    state.counters = loaded.counters.clone();
    let copied = Copied {
        recovery_codes_left: recovery::unspent(
            state.recovery_codes_listed(),
            loaded.counters.recovery_used,
        ),
        last_counter: loaded.counters.last_counter,
    };
    state.next_generation()?;
    let sealed = state.seal(&sealing(to_keys))?;
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

/// New recovery codes; the old ones stop working, and remembered devices are forgotten.
pub fn regenerate_recovery_codes(
    backend: &dyn Backend,
    keys: &dyn KeySource,
    user: &UserName,
    count: usize,
) -> Result<Vec<RecoveryCode>> {
    enrolled(
        user,
        modify(backend, keys, user, None, None, |s| {
            // New codes are a fresh start: no device keeps a grace from before.
            s.counters.devices.clear();
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
    let Some((loaded, state)) = load_open(backend, user, |s| open(keys, user, s))? else {
        return Ok(None);
    };
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
///
/// One user does not stop the others. A state that does not open at step 2 (corrupt, or
/// changed without the key) opens with neither key anyway: it is passed over and reported
/// with its error (a state that opens but whose counters are refused stops the rekey
/// before step 3, as any other error does). A user whose lock stays busy (a process stuck holding it) is tried again
/// once the others are done; if still busy the rekey stops before step 3, naming that
/// user, since switching keys would lock them out: everything still opens with the old
/// key, and a later run picks up the same next key.
pub fn rekey(backend: &dyn Backend, keys: &dyn KeyRotation) -> Result<Vec<PerUser<()>>> {
    let old = keys.key();
    let new = keys.next()?;
    let both = [old, &new];
    let reseal = |user: &UserName| {
        modify(backend, keys, user, Some(&both), Some(&both), |_| Ok(())).map(|_| ())
    };
    let mut unusable = Vec::new();
    let mut busy = Vec::new();
    for user in backend.users()? {
        match reseal(&user) {
            Ok(()) => {}
            Err(e @ Error::Corrupt { .. }) => {
                // Passed over only if the state itself opens with neither key: one that
                // opens but whose counters are bad must not be left under the old key
                // alone (it would never open again).
                let mut opens = false;
                let _ = backend.load(&user, &mut |s| {
                    let state = s.open(&user, &both)?;
                    opens = true;
                    Ok(state.record_key())
                });
                if opens {
                    return Err(e);
                }
                unusable.push((user, Err(e)));
            }
            Err(Error::Lock { .. }) => busy.push(user),
            Err(e) => return Err(e),
        }
    }
    for user in busy {
        reseal(&user)?;
    }
    keys.promote()?;
    // Step 4, listing again: the old key still opens a state that an enrollment started
    // before the switch sealed under it alone (enrollment-side writes after it are refused).
    let users = backend.users()?;
    let mut out: Vec<PerUser<()>> = users
        .into_iter()
        .filter(|u| !unusable.iter().any(|(b, _)| b == u))
        .map(|u| {
            let r = modify(backend, keys, &u, Some(&[&new, old]), Some(&[&new]), |_| {
                Ok(())
            })
            .map(|_| ());
            (u, r)
        })
        .collect();
    out.extend(unusable);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A fleet's key rotation, on one host: every state not yet sealed under the next key
/// alone ([`KeySource::next_key`]) is re-sealed under it alone, opened with either key.
/// Returns each user with whether its state was rewritten (`false`: already done, by an
/// earlier run on this or another host). A state that opens with neither key is left as
/// it was and reported with its error. The caller then puts the next key in force on this
/// host (renaming it over the key file), as every host does in turn.
///
/// Safe only once every host holds the next key (each then opens states sealed under
/// either key, and seals new ones under both), which is why handing it out comes first;
/// README "Running a fleet" gives the order.
pub fn finish_rotation(backend: &dyn Backend, keys: &dyn KeySource) -> Result<Vec<PerUser<bool>>> {
    let Some(new) = keys.next_key() else {
        return Err(Error::Config(
            "no next key: a fleet's rotation starts with `totp-enroll rekey --stage`".into(),
        ));
    };
    let old = keys.key();
    let mut out = Vec::new();
    for user in backend.users()? {
        let mut done = false;
        let looked = backend.load(&user, &mut |s| {
            done = s.sealed_only_under(&new.key_id());
            s.open(&user, &[new, old]).map(|st| st.record_key())
        });
        let r = match looked {
            Ok(None) => continue,
            Ok(Some(_)) if done => Ok(false),
            Ok(Some(_)) => modify(
                backend,
                keys,
                &user,
                Some(&[new, old]),
                Some(&[new]),
                |_| Ok(()),
            )
            .map(|r| r.is_some()),
            Err(e) => Err(e),
        };
        out.push((user, r));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use zeroize::Zeroizing;

    use super::*;
    use crate::backend::Version;

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
        fn load(
            &self,
            user: &UserName,
            open: &mut dyn FnMut(&SealedState) -> Result<RecordKey>,
        ) -> Result<Option<Loaded>> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            let e = self.entry.lock().unwrap();
            let Some((bytes, counters, s, c)) = e.as_ref() else {
                return Ok(None);
            };
            let state = SealedState::parse(bytes, user, "mem".as_ref())?;
            // In memory nobody else writes: the key is not needed to trust the counters.
            open(&state)?;
            Ok(Some(Loaded {
                state,
                counters: counters.clone(),
                version: Version::new(*s, *c),
            }))
        }
        fn commit(
            &self,
            _: &UserName,
            version: Version,
            counters: &Counters,
            _: &RecordKey,
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

    /// A fleet host during a rotation: the key in force and the next one.
    struct Rotating<'a>(&'a HostKey, &'a HostKey);
    impl KeySource for Rotating<'_> {
        fn key(&self) -> &HostKey {
            self.0
        }
        fn replaced(&self) -> Result<Option<HostKey>> {
            Ok(None)
        }
        fn next_key(&self) -> Option<&HostKey> {
            Some(self.1)
        }
    }

    /// A host holding one key only.
    struct Only<'a>(&'a HostKey);
    impl KeySource for Only<'_> {
        fn key(&self) -> &HostKey {
            self.0
        }
        fn replaced(&self) -> Result<Option<HostKey>> {
            Ok(None)
        }
    }

    #[test]
    fn a_fleet_rotation_never_leaves_a_host_unable_to_open_a_state() {
        let backend = Memory::default();
        let (old, user, secret) = setup(&backend);
        let new = HostKey::generate().unwrap();
        let rotating = Rotating(&old.0, &new);
        let status_with = |k: &dyn KeySource| status(&backend, k, &user).map(|s| s.is_some());
        // Every host holds the next key: a state written now is sealed under both, so a
        // host that has already put the new key in force opens it, as one still on the old.
        let codes = regenerate_recovery_codes(&backend, &rotating, &user, 2).unwrap();
        assert_eq!(codes.len(), 2);
        assert!(status_with(&Only(&new)).unwrap());
        assert!(status_with(&Only(&old.0)).unwrap());
        // The first host to finish re-seals under the next key alone; the next finds
        // nothing left to do.
        let r = finish_rotation(&backend, &rotating).unwrap();
        assert!(
            matches!(r.as_slice(), [(u, Ok(true))] if *u == user),
            "{r:?}"
        );
        let r = finish_rotation(&backend, &rotating).unwrap();
        assert!(
            matches!(r.as_slice(), [(u, Ok(false))] if *u == user),
            "{r:?}"
        );
        // The old key alone no longer opens it; the new one, alone or beside it, does, and
        // a login through a host still rotating works.
        assert!(matches!(
            status_with(&Only(&old.0)),
            Err(Error::Corrupt { .. })
        ));
        assert!(status_with(&Only(&new)).unwrap());
        let code = totp::code_at(&secret, &OtpParams::default(), NOW as u64);
        let o = authenticate(&backend, &rotating, &user, &code, &req()).unwrap();
        assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
        // Without a next key there is no rotation to finish.
        assert!(matches!(
            finish_rotation(&backend, &old),
            Err(Error::Config(_))
        ));
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
            hotp_window: 10,
            grace_secs: 0,
            device: None,
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
    fn hotp_codes_are_looked_for_ahead_of_last_counter_and_work_once() {
        let backend = Memory::default();
        let key = Key(HostKey::generate().unwrap());
        let user = UserName::parse("alice").unwrap();
        let bytes = b"12345678901234567890".to_vec();
        let secret = TotpSecret::from_bytes(Zeroizing::new(bytes.clone())).unwrap();
        let params = OtpParams::hotp(crate::Algorithm::SHA1, 6).unwrap();
        let e = Enrollment {
            user: user.clone(),
            secret: TotpSecret::from_bytes(Zeroizing::new(bytes)).unwrap(),
            params,
            // The token's next counter is 3.
            last_counter: Some(TimeStep(2)),
            recovery: RecoveryCodes::Generate(0),
            replace: false,
            now: NOW,
        };
        enroll(&backend, &key, e).unwrap();
        let code = |c: u64| hotp::code_at(&secret, &params, c);
        let login = |c: &str| authenticate(&backend, &key, &user, c, &req()).unwrap();
        // Past the look-ahead (3..=12): a wrong code.
        assert!(matches!(login(&code(13)), Outcome::Rejected { .. }));
        // Counter 2 was used before the import.
        assert!(matches!(login(&code(2)), Outcome::Replayed { .. }));
        let o = login(&code(5));
        assert!(
            matches!(
                o,
                Outcome::Accepted {
                    step: TimeStep(5),
                    ..
                }
            ),
            "{o:?}"
        );
        assert!(matches!(login(&code(5)), Outcome::Replayed { .. }));
        assert!(matches!(login(&code(4)), Outcome::Replayed { .. }));
        // The look-ahead moved with the counter: 13 is now within 6..=15.
        let o = login(&code(13));
        assert!(
            matches!(
                o,
                Outcome::Accepted {
                    step: TimeStep(13),
                    ..
                }
            ),
            "{o:?}"
        );
        let s = status(&backend, &key, &user).unwrap().unwrap();
        assert_eq!(s.params.kind(), OtpKind::Hotp);
        assert_eq!(s.counters.last_counter, Some(13));
        // A narrower look-ahead from the request.
        let narrow = AuthRequest {
            hotp_window: 2,
            ..req()
        };
        let o = authenticate(&backend, &key, &user, &code(16), &narrow).unwrap();
        assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
        let o = authenticate(&backend, &key, &user, &code(15), &narrow).unwrap();
        assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
    }

    #[test]
    fn a_device_is_remembered_on_success_and_forgotten_on_new_codes_or_request() {
        let backend = Memory::default();
        let (key, user, secret) = setup(&backend);
        let here = crate::DeviceIdentity::new(Some("192.0.2.7"), None).unwrap();
        let there = crate::DeviceIdentity::new(Some("192.0.2.8"), None).unwrap();
        let at = |now: i64, d: &'static crate::DeviceIdentity| AuthRequest {
            now,
            grace_secs: 600,
            device: Some(d),
            ..req()
        };
        let here: &'static _ = Box::leak(Box::new(here));
        let there: &'static _ = Box::leak(Box::new(there));
        assert_eq!(grace(&backend, &key, &user, &at(NOW, here)).unwrap(), None);
        let code = totp::code_at(&secret, &OtpParams::default(), NOW as u64);
        let o = authenticate(&backend, &key, &user, &code, &at(NOW, here)).unwrap();
        assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
        let g = grace(&backend, &key, &user, &at(NOW + 599, here))
            .unwrap()
            .unwrap();
        assert_eq!((g.since, g.rhost.as_str()), (NOW, "192.0.2.7"));
        assert_eq!(
            grace(&backend, &key, &user, &at(NOW + 600, here)).unwrap(),
            None
        );
        assert_eq!(
            grace(&backend, &key, &user, &at(NOW + 1, there)).unwrap(),
            None
        );
        // A grace check writes nothing.
        let before = status(&backend, &key, &user).unwrap().unwrap().counters;
        grace(&backend, &key, &user, &at(NOW + 5, here)).unwrap();
        assert_eq!(
            status(&backend, &key, &user).unwrap().unwrap().counters,
            before
        );
        // Unlock keeps it; new recovery codes forget it.
        unlock(&backend, &key, &user).unwrap();
        assert!(grace(&backend, &key, &user, &at(NOW + 1, here))
            .unwrap()
            .is_some());
        regenerate_recovery_codes(&backend, &key, &user, 1).unwrap();
        assert_eq!(
            grace(&backend, &key, &user, &at(NOW + 1, here)).unwrap(),
            None
        );
        // forget_devices forgets it.
        let code = totp::code_at(&secret, &OtpParams::default(), NOW as u64 + 30);
        let o = authenticate(&backend, &key, &user, &code, &at(NOW + 30, here)).unwrap();
        assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
        assert!(grace(&backend, &key, &user, &at(NOW + 31, here))
            .unwrap()
            .is_some());
        assert_eq!(forget_devices(&backend, &key, &user).unwrap(), 1);
        assert_eq!(
            grace(&backend, &key, &user, &at(NOW + 31, here)).unwrap(),
            None
        );
        assert_eq!(forget_devices(&backend, &key, &user).unwrap(), 0);
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
