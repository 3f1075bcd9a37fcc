//! The files backend: one root-owned state directory (SPEC.md's layout), and the host key
//! file. Per user `alice`:
//! - `alice`: the state file (TOML, secret sealed), replaced atomically by rename;
//! - `.alice.counters`: the counters (two slots, see [`crate::counters`]), updated in
//!   place; its flock is the user's lock.
//!
//! User names never start with `.`, so companion and temporary files cannot collide with a
//! user's state file.
//!
//! A login opens the directory once (when the backend is made), the state file once, the
//! counters file once, and reads each once. The lock is taken in `load` and held in the
//! version's lease until `commit`, which still compares the version with what it holds.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::backend::{Backend, Commit, Expect, KeyRotation, KeySource, Loaded, Version};
use crate::counters::{self, Counters, RawSlots, Slots};
use crate::crypto::{HostKey, RecordKey};
use crate::error::{Error, Result};
use crate::fsutil::{self, CheckedDir, ModePolicy};
use crate::lock::{self, UserLock};
use crate::state::{SealedState, LEGACY_FORMAT_VERSION, MAX_STATE_FILE_LEN};
use crate::user::UserName;

const STATE_POLICY: ModePolicy = ModePolicy::NotGroupOrWorldWritable;

fn counters_name(user: &UserName) -> String {
    format!(".{user}.counters")
}

/// A state directory, opened and checked once.
pub struct FilesBackend {
    dir: CheckedDir,
    /// The state file that [`Backend::is_enrolled`] opened, for the `load` of the same login
    /// (which checks under the lock that it is still the file of that name).
    opened: Mutex<Option<(UserName, File, Metadata)>>,
}

/// What `load` holds until `commit`: the user's lock and what it read under it.
struct Lease {
    lock: UserLock,
    slots: Slots,
    generation: u64,
}

impl FilesBackend {
    /// Opens the state directory (root-owned, not group or world writable). A missing one is
    /// [`Error::Io`] with `NotFound`.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let dir = CheckedDir::open(state_dir)?
            .ok_or_else(|| Error::io(state_dir, std::io::ErrorKind::NotFound.into()))?;
        Ok(FilesBackend {
            dir,
            opened: Mutex::new(None),
        })
    }

    /// Creates the state directory (0700) if missing, then opens it.
    pub fn create(state_dir: &Path) -> Result<Self> {
        Ok(FilesBackend {
            dir: CheckedDir::create(state_dir)?,
            opened: Mutex::new(None),
        })
    }

    /// Locks `user` and reads the counters file (its records not yet checked).
    fn lock(&self, user: &UserName) -> Result<(UserLock, RawSlots)> {
        let name = counters_name(user);
        let lock = lock::lock(&self.dir, &name)?;
        let raw = counters::read(&lock, &self.dir.join(&name), lock.file_len())?;
        Ok((lock, raw))
    }

    /// The records of `raw` that `key` authenticates, beside `state`.
    fn verified(
        &self,
        user: &UserName,
        raw: &RawSlots,
        state: &SealedState,
        key: &RecordKey,
    ) -> Result<Slots> {
        let legacy = state.format_version() == LEGACY_FORMAT_VERSION;
        raw.verify(
            &self.dir.join(&counters_name(user)),
            user,
            key,
            legacy,
            state.generation(),
        )
    }

    /// The state file, opened (or `None`), with its size now; re-opened if `opened` is no
    /// longer the file of that name (replaced while we waited for the lock).
    fn reopen_if_replaced(
        &self,
        user: &UserName,
        (file, meta): (File, Metadata),
    ) -> Result<Option<(File, u64)>> {
        match self.dir.identity(user.as_str())? {
            Some(now) if now.is(&meta) => Ok(Some((file, now.len))),
            _ => self.open_state(user),
        }
    }

    /// Opens the state file (checked), with its size.
    fn open_state(&self, user: &UserName) -> Result<Option<(File, u64)>> {
        Ok(self
            .dir
            .open_file(user.as_str(), false, STATE_POLICY)?
            .map(|(f, m)| (f, m.len())))
    }

    /// Reads and parses a state file of `len` bytes (as a stat just gave it).
    fn read_state(&self, user: &UserName, (file, len): &(File, u64)) -> Result<SealedState> {
        let path = self.dir.join(user.as_str());
        let bytes = fsutil::read_len(file, &path, *len, MAX_STATE_FILE_LEN)?;
        SealedState::parse(&bytes, user, &path)
    }

    /// Whether `user` has a state file (checked), keeping nothing open.
    fn has_state(&self, user: &UserName) -> Result<bool> {
        Ok(self
            .dir
            .open_file(user.as_str(), false, STATE_POLICY)?
            .is_some())
    }

    /// The state file `is_enrolled` opened for `user`, if that was the last question.
    fn take_opened(&self, user: &UserName) -> Option<(File, Metadata)> {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        match opened.take() {
            Some((u, f, m)) if &u == user => Some((f, m)),
            _ => None,
        }
    }

    fn loaded(&self, user: &UserName, state: SealedState, lock: UserLock, slots: Slots) -> Loaded {
        let generation = state.generation();
        let (counters, seq) = match slots.current(generation) {
            Some(rec) => (rec.counters.clone(), rec.seq),
            None => (state.counters(), 0),
        };
        let _ = user;
        Loaded {
            state,
            counters,
            version: Version::new(generation, seq).with_lease(Box::new(Lease {
                lock,
                slots,
                generation,
            })),
        }
    }
}

/// The newest record's sequence for `generation`, 0 for none: the counters half of a
/// version.
fn seq_of(slots: &Slots, generation: u64) -> u64 {
    slots.current(generation).map_or(0, |r| r.seq)
}

impl Backend for FilesBackend {
    fn is_enrolled(&self, user: &UserName) -> Result<bool> {
        let opened = self.dir.open_file(user.as_str(), false, STATE_POLICY)?;
        let enrolled = opened.is_some();
        // Kept for this login's `load`, which would open it again.
        *self.opened.lock().unwrap_or_else(|e| e.into_inner()) =
            opened.map(|(f, m)| (user.clone(), f, m));
        Ok(enrolled)
    }

    fn load(
        &self,
        user: &UserName,
        open: &mut dyn FnMut(&SealedState) -> Result<RecordKey>,
    ) -> Result<Option<Loaded>> {
        // Open before locking, so that unknown users never get a counters file.
        let opened = match self.take_opened(user) {
            // Opened before the prompt: still the file of that name? (Removed meanwhile:
            // not enrolled, and still no counters file.)
            Some((f, m)) => match self.dir.identity(user.as_str())? {
                Some(now) if now.is(&m) => Some((f, m)),
                Some(_) => self.dir.open_file(user.as_str(), false, STATE_POLICY)?,
                None => None,
            },
            None => self.dir.open_file(user.as_str(), false, STATE_POLICY)?,
        };
        let Some(opened) = opened else {
            return Ok(None);
        };
        let (lock, raw) = self.lock(user)?;
        let Some(file) = self.reopen_if_replaced(user, opened)? else {
            return Ok(None);
        };
        let state = self.read_state(user, &file)?;
        let key = open(&state)?;
        let slots = self.verified(user, &raw, &state, &key)?;
        Ok(Some(self.loaded(user, state, lock, slots)))
    }

    fn commit(
        &self,
        user: &UserName,
        mut version: Version,
        counters: &Counters,
        key: &RecordKey,
        durable: bool,
    ) -> Result<Commit> {
        let name = counters_name(user);
        let path = self.dir.join(&name);
        let held = version
            .take_lease()
            .and_then(|l| l.downcast::<Lease>().ok());
        let mut lease = match held {
            Some(l) => *l,
            // A version without our lease (not made by this backend's load): lock and
            // compare with what the files say now.
            None => {
                let (lock, raw) = self.lock(user)?;
                let Some(file) = self.open_state(user)? else {
                    return Ok(Commit::Conflict);
                };
                let state = self.read_state(user, &file)?;
                let slots = self.verified(user, &raw, &state, key)?;
                Lease {
                    lock,
                    slots,
                    generation: state.generation(),
                }
            }
        };
        // Under the lock nothing can have changed, but the version is checked anyway.
        if lease.generation != version.state()
            || seq_of(&lease.slots, lease.generation) != version.counters()
        {
            return Ok(Commit::Conflict);
        }
        let file: &File = &lease.lock;
        counters::write(
            file,
            &path,
            lease.lock.file_len(),
            user,
            key,
            &mut lease.slots,
            Some(lease.generation),
            lease.generation,
            counters,
            durable,
        )?;
        Ok(Commit::Committed)
    }

    fn put_state(
        &self,
        user: &UserName,
        expect: Expect,
        state: &SealedState,
        check: &dyn Fn() -> Result<()>,
    ) -> Result<Commit> {
        let name = counters_name(user);
        let key = state.record_key().ok_or_else(|| {
            Error::InvalidInput("a state to store must come from sealing, with its key".into())
        })?;
        // Without our lease, the records in place cannot be checked (they may be those of
        // an enrollment being replaced, under another key): their shape only says which
        // slot not to overwrite; they are never read for values here.
        // A rewrite supersedes them anyway, so an unreadable counters file counts as none.
        let unchecked = |user: &UserName| -> Result<(UserLock, Slots)> {
            let name = counters_name(user);
            let l = lock::lock(&self.dir, &name)?;
            let slots = counters::read(&l, &self.dir.join(&name), l.file_len())
                .map(|raw| raw.unverified(user))
                .unwrap_or_default();
            Ok((l, slots))
        };
        let (mut lock, mut slots, expected) = match expect {
            Expect::Version(mut v) => match v.take_lease().and_then(|l| l.downcast::<Lease>().ok())
            {
                Some(l) => (l.lock, l.slots, Some(v)),
                None => {
                    let (l, s) = unchecked(user)?;
                    (l, s, Some(v))
                }
            },
            Expect::Absent => {
                let (l, s) = unchecked(user)?;
                if self.has_state(user)? {
                    return Err(Error::AlreadyEnrolled(user.clone()));
                }
                (l, s, None)
            }
            Expect::Anything => {
                let (l, s) = unchecked(user)?;
                (l, s, None)
            }
        };
        // The generation of the state file in place: its newest counters record is never
        // overwritten, so an unfinished rewrite cannot leave it without one.
        let mut in_force = None;
        if let Some(v) = expected {
            let Some(file) = self.open_state(user)? else {
                return Ok(Commit::Conflict);
            };
            let current = self.read_state(user, &file)?.generation();
            if current != v.state() || seq_of(&slots, current) != v.counters() {
                return Ok(Commit::Conflict);
            }
            in_force = Some(current);
        } else if let Some(file) = self.open_state(user)? {
            // --replace of a file that may not parse: keep its record if it does.
            in_force = self.read_state(user, &file).ok().map(|s| s.generation());
        }
        check()?;
        // Counters first, under the new generation: until the state file names that
        // generation they are ignored, and afterwards the file already has its full length
        // and a valid record, so the first login is a plain overwrite of the other slot.
        let file: &File = &lock;
        counters::write(
            file,
            &self.dir.join(&name),
            lock.file_len(),
            user,
            key,
            &mut slots,
            in_force,
            state.generation(),
            &state.counters(),
            true,
        )?;
        self.dir.write_atomic(user.as_str(), state.as_bytes())?;
        let _ = &mut lock;
        Ok(Commit::Committed)
    }

    fn remove(&self, user: &UserName) -> Result<bool> {
        let name = counters_name(user);
        let _l = lock::lock(&self.dir, &name)?;
        let existed = self.has_state(user)?;
        self.dir.remove(user.as_str())?;
        self.dir.remove(&name)?;
        Ok(existed)
    }

    fn users(&self) -> Result<Vec<UserName>> {
        Ok(self
            .dir
            .entries()?
            .into_iter()
            .filter_map(|n| UserName::parse(&n).ok())
            .collect())
    }
}

/// The host key file (32 bytes, root, 0600), read when the source is made.
pub struct FileKey {
    path: PathBuf,
    key: HostKey,
    /// `<key_file>.new`, read only by [`FileKey::load_rotating`].
    next: Option<HostKey>,
}

impl FileKey {
    /// Reads the key file. A missing one is [`Error::Io`] with `NotFound`.
    pub fn load(path: &Path) -> Result<Self> {
        Ok(FileKey {
            path: path.to_owned(),
            key: HostKey::load(path)?,
            next: None,
        })
    }

    /// Reads the key file and, if there is one, the next key of a fleet's rotation beside
    /// it (`<key_file>.new`, [`KeySource::next_key`]). For a fleet host only: on a single
    /// host that file is an interrupted rekey's, which `rekey` itself finishes.
    pub fn load_rotating(path: &Path) -> Result<Self> {
        let mut k = FileKey::load(path)?;
        k.next = match HostKey::load(&k.next_path()) {
            Ok(n) => Some(n),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(k)
    }

    /// Where the next key of a rotation is kept: `<key_file>.new`.
    pub fn next_path_of(key_file: &Path) -> PathBuf {
        PathBuf::from(format!("{}.new", key_file.display()))
    }

    /// Reads the key file, creating a new key there if there is none. Returns whether it
    /// was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool)> {
        let (key, created) = HostKey::load_or_create(path)?;
        Ok((
            FileKey {
                path: path.to_owned(),
                key,
                next: None,
            },
            created,
        ))
    }

    fn next_path(&self) -> PathBuf {
        FileKey::next_path_of(&self.path)
    }
}

impl KeySource for FileKey {
    fn key(&self) -> &HostKey {
        &self.key
    }

    fn replaced(&self) -> Result<Option<HostKey>> {
        let now = HostKey::load(&self.path)?;
        Ok((now.key_id() != self.key.key_id()).then_some(now))
    }

    fn next_key(&self) -> Option<&HostKey> {
        self.next.as_ref()
    }
}

impl KeyRotation for FileKey {
    /// `<key_file>.new`, written beside the key (or a leftover of an interrupted rekey).
    fn next(&self) -> Result<HostKey> {
        let path = self.next_path();
        match HostKey::load(&path) {
            Ok(k) => Ok(k),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let k = HostKey::generate()?;
                k.store(&path)?;
                Ok(k)
            }
            Err(e) => Err(e),
        }
    }

    /// Renames `<key_file>.new` over the key file and syncs the directory.
    fn promote(&self) -> Result<()> {
        let path = &self.path;
        let parent = path
            .parent()
            .ok_or_else(|| Error::Config("key file has no parent directory".into()))?;
        std::fs::rename(self.next_path(), path).map_err(|e| Error::io(path, e))?;
        CheckedDir::open(parent)?
            .ok_or_else(|| Error::io(parent, std::io::ErrorKind::NotFound.into()))?
            .sync()
    }
}
