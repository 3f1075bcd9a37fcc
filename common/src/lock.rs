//! The per-user exclusive lock.
//!
//! The lock is an `flock` on the user's counters file, which is updated in place and never
//! replaced by a rename, so the locked inode is the one every other login opens. If the file
//! is unlinked (enrollment removed) while we wait, we notice and start over.

use std::fs::File;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::fsutil::CheckedDir;

/// How long a login waits for another one holding the same user's lock. Holders never wait
/// on a person (the prompt comes before the lock), so this only trips on a stuck process.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Holds the lock until dropped; derefs to the locked file.
pub struct UserLock {
    file: Flock<File>,
    len: u64,
}

impl UserLock {
    /// The file's size once locked (read by the stat that checked it is the file of that
    /// name). Writers change it only under the lock: it holds until this lock writes.
    pub fn file_len(&self) -> u64 {
        self.len
    }
}

impl std::ops::Deref for UserLock {
    type Target = File;
    fn deref(&self) -> &File {
        &self.file
    }
}

/// Locks `name` in `dir`, creating it if missing.
pub fn lock(dir: &CheckedDir, name: &str) -> Result<UserLock> {
    let path = dir.join(name);
    let deadline = Instant::now() + LOCK_TIMEOUT;
    let mut pause = Duration::from_micros(50);
    loop {
        // The metadata of the checks: device and inode do not change with the descriptor.
        let (mut file, held) = dir.open_or_create(name)?;
        let locked = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => break l,
                Err((f, Errno::EWOULDBLOCK)) | Err((f, Errno::EINTR)) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Lock {
                            path,
                            why: format!("still held by another process after {LOCK_TIMEOUT:?}"),
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                    file = f;
                }
                Err((_, e)) => {
                    return Err(Error::Lock {
                        path,
                        why: e.desc().to_owned(),
                    })
                }
            }
        };
        // Still the file that the name points at? Otherwise it was removed or replaced
        // while we waited, and a lock on it protects nothing.
        match dir.identity(name)? {
            Some(now) if now.is(&held) => {
                return Ok(UserLock {
                    file: locked,
                    len: now.len,
                })
            }
            _ => continue,
        }
    }
}
