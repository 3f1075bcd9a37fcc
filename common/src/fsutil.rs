//! File safety: every read and write of the state directory and the key goes through here.
//!
//! Files are opened relative to an already checked directory handle with `O_NOFOLLOW`, then
//! checked on the open descriptor (type, owner, mode, size), so a symlink or a swapped file
//! cannot slip in between a check and a use. Writes are temp file, fsync, rename, fsync of
//! the directory: a crash leaves the old file or the new one, never a torn one.

use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Who may be able to read a file besides its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModePolicy {
    /// No group or other permission bits at all (the host key).
    OwnerOnly,
    /// Not writable by group or others (state files, SPEC.md).
    NotGroupOrWorldWritable,
}

/// A directory we have checked and hold open: root-owned, not a symlink, not writable by
/// group or others, and so is every directory above it.
pub struct CheckedDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl CheckedDir {
    /// Opens `path` without following a final symlink and checks it and every ancestor.
    /// `Ok(None)` if it does not exist.
    pub fn open(path: &Path) -> Result<Option<Self>> {
        if !check_ancestors(path)? {
            return Ok(None);
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(AT_FDCWD, path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                return Err(Error::unsafe_file(path, "is a symlink or not a directory"))
            }
            Err(e) => return Err(Error::io(path, e.into())),
        };
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        check_owner_mode(path, &meta, ModePolicy::NotGroupOrWorldWritable)?;
        Ok(Some(CheckedDir {
            fd: file.into(),
            path: path.to_owned(),
        }))
    }

    /// Creates the directory (mode 0700) if missing, then opens it as [`CheckedDir::open`].
    pub fn create(path: &Path) -> Result<Self> {
        match std::fs::DirBuilder::new().mode_0700().create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        Self::open(path)?.ok_or_else(|| Error::io(path, std::io::ErrorKind::NotFound.into()))
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` in this directory without following symlinks and checks it is a regular
    /// root-owned file under `policy`. `Ok(None)` if it does not exist.
    /// Returns the metadata its checks read too (from the descriptor).
    pub fn open_file(
        &self,
        name: &str,
        write: bool,
        policy: ModePolicy,
    ) -> Result<Option<(File, Metadata)>> {
        let mut flags = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        flags |= if write {
            OFlag::O_RDWR
        } else {
            OFlag::O_RDONLY
        };
        self.open_checked(name, flags, policy)
    }

    /// Opens `name` read-write, creating it empty (mode 0600) if missing, with the checks of
    /// [`CheckedDir::open_file`].
    /// Returns the metadata its checks read too.
    pub fn open_or_create(&self, name: &str) -> Result<(File, Metadata)> {
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        self.open_checked(name, flags, ModePolicy::NotGroupOrWorldWritable)?
            .ok_or_else(|| Error::io(self.join(name), std::io::ErrorKind::NotFound.into()))
    }

    fn open_checked(
        &self,
        name: &str,
        flags: OFlag,
        policy: ModePolicy,
    ) -> Result<Option<(File, Metadata)>> {
        let path = self.join(name);
        let fd = match openat(
            self.fd.as_fd(),
            name,
            flags,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(Error::unsafe_file(path, "is a symlink")),
            Err(e) => return Err(Error::io(path, e.into())),
        };
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
        if !meta.file_type().is_file() {
            return Err(Error::unsafe_file(path, "not a regular file"));
        }
        check_owner_mode(&path, &meta, policy)?;
        Ok(Some((file, meta)))
    }

    /// What `name` points at now (not following a symlink), `None` if it is gone: tells
    /// whether a file opened earlier is still the one of that name, and its size now.
    pub fn identity(&self, name: &str) -> Result<Option<Identity>> {
        match nix::sys::stat::fstatat(
            self.fd.as_fd(),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(Identity {
                dev: st.st_dev,
                ino: st.st_ino,
                len: u64::try_from(st.st_size).unwrap_or(u64::MAX),
            })),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(Error::io(self.join(name), e.into())),
        }
    }

    /// Reads a whole checked file of at most `max_len` bytes. `Ok(None)` if it does not exist.
    pub fn read_file(
        &self,
        name: &str,
        max_len: u64,
        policy: ModePolicy,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let Some((file, meta)) = self.open_file(name, false, policy)? else {
            return Ok(None);
        };
        read_len(&file, &self.join(name), meta.len(), max_len).map(Some)
    }
}

/// A file's device, inode and size, as [`CheckedDir::identity`] reads them by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
}

impl Identity {
    /// Whether this is the file opened with `meta`.
    pub fn is(&self, meta: &Metadata) -> bool {
        (self.dev, self.ino) == (meta.dev(), meta.ino())
    }
}

/// Reads the whole of a file opened by [`CheckedDir::open_file`], `len` bytes as an fstat
/// (or [`CheckedDir::identity`]) just gave them, at most `max_len`: one read for a regular
/// file. A file that shrank meanwhile is [`Error::Corrupt`].
pub fn read_len(file: &File, path: &Path, len: u64, max_len: u64) -> Result<Zeroizing<Vec<u8>>> {
    if len > max_len {
        return Err(Error::corrupt(path, format!("larger than {max_len} bytes")));
    }
    let mut buf = Zeroizing::new(vec![0u8; len as usize]);
    let mut reader = file;
    reader.read_exact(&mut buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::corrupt(path, "shrank while read"),
        _ => Error::io(path, e),
    })?;
    Ok(buf)
}

impl CheckedDir {
    /// Replaces `name` with `data` atomically and durably (mode 0600, root).
    ///
    /// The caller holds the lock that serializes writers of `name` (the user's lock for a
    /// state file): temp files of `name` that a killed writer left behind are removed first,
    /// so repeated kills during a save cannot fill the directory.
    pub fn write_atomic(&self, name: &str, data: &[u8]) -> Result<()> {
        self.remove_stale_temps(name)?;
        let mut nonce = [0u8; 8];
        crate::crypto::fill_random(&mut nonce)?;
        let tmp = format!(".tmp.{}.{}", name, hex(&nonce));
        let tmp_path = self.join(&tmp);
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            self.fd.as_fd(),
            tmp.as_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| Error::io(&tmp_path, e.into()))?;
        let mut file = File::from(fd);
        let written = file
            .write_all(data)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&tmp_path, e));
        drop(file);
        let renamed = written.and_then(|()| {
            renameat(self.fd.as_fd(), tmp.as_str(), self.fd.as_fd(), name)
                .map_err(|e| Error::io(self.join(name), e.into()))
        });
        if let Err(e) = renamed {
            let _ = unlinkat(self.fd.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        self.sync()
    }

    /// Removes `.tmp.<name>.<16 hex digits>`, the temp files of [`CheckedDir::write_atomic`]
    /// for `name` only (the exact form: user `a`'s never match user `a.b`'s).
    fn remove_stale_temps(&self, name: &str) -> Result<()> {
        let prefix = format!(".tmp.{name}.");
        let stale = self.entries()?.into_iter().filter(|e| {
            e.strip_prefix(&prefix).is_some_and(|rest| {
                rest.len() == 16 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
        });
        for tmp in stale {
            match unlinkat(self.fd.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(Error::io(self.join(&tmp), e.into())),
            }
        }
        Ok(())
    }

    /// Removes `name` if present and syncs the directory.
    pub fn remove(&self, name: &str) -> Result<()> {
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => self.sync(),
            Err(e) => Err(Error::io(self.join(name), e.into())),
        }
    }

    /// Makes renames and unlinks in this directory durable.
    pub fn sync(&self) -> Result<()> {
        nix::unistd::fsync(self.fd.as_fd()).map_err(|e| Error::io(&self.path, e.into()))
    }

    /// Names of the entries of the directory (not `.` and `..`).
    pub fn entries(&self) -> Result<Vec<String>> {
        let rd = std::fs::read_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&self.path, e))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Checks every directory above `path`, as OpenSSH's StrictModes does: each must be root's
/// and not writable by group or others, or whoever can write one could swap what lies below
/// (put back an older state directory, with its spent recovery codes live again). There is
/// no exception for the sticky bit: it stops the removal of others' entries, not the
/// creation of a directory that a configured path names before it exists. Each real
/// directory is checked, from `/` down; the error names the first one that fails.
/// `Ok(false)` if an ancestor does not exist.
///
/// An absolute path without symlinks is its own real path: its directories are read once
/// each (one `lstat`), with no `realpath` walk before. A path with a symlink (or relative)
/// is resolved first and the resolved directories are checked.
fn check_ancestors(path: &Path) -> Result<bool> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(true);
    };
    if !parent.is_absolute() {
        return check_resolved_ancestors(path, parent);
    }
    // Every directory first, as a resolution would find them (a missing one is Ok(false)
    // before any refusal), then the checks in order.
    let mut dirs: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
    let mut dir = PathBuf::new();
    for c in parent.components() {
        match c {
            Component::RootDir | Component::Normal(_) => dir.push(c),
            Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => {
                return check_resolved_ancestors(path, parent)
            }
        }
        let meta = match std::fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(parent, e)),
        };
        if meta.file_type().is_symlink() {
            return check_resolved_ancestors(path, parent);
        }
        dirs.push((dir.clone(), meta));
    }
    for (dir, meta) in &dirs {
        check_ancestor(path, dir, meta)?;
    }
    Ok(true)
}

/// [`check_ancestors`] through `realpath`, for a parent with a symlink in it.
fn check_resolved_ancestors(path: &Path, parent: &Path) -> Result<bool> {
    let real = match std::fs::canonicalize(parent) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(parent, e)),
    };
    let mut ancestors: Vec<&Path> = real.ancestors().collect();
    ancestors.reverse();
    for dir in ancestors {
        let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
        check_ancestor(path, dir, &meta)?;
    }
    Ok(true)
}

fn check_ancestor(path: &Path, dir: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if !meta.is_dir() {
        return Err(Error::unsafe_file(dir, "not a directory"));
    }
    check_owner_mode(dir, meta, ModePolicy::NotGroupOrWorldWritable).map_err(|e| match e {
        Error::Unsafe { why, .. } => Error::unsafe_file(
            dir,
            format!("{why}; it is an ancestor of {}", path.display()),
        ),
        e => e,
    })
}

fn check_owner_mode(path: &Path, meta: &std::fs::Metadata, policy: ModePolicy) -> Result<()> {
    if meta.uid() != 0 {
        return Err(Error::unsafe_file(
            path,
            format!("owned by uid {}, not root", meta.uid()),
        ));
    }
    let mode = meta.mode() & 0o7777;
    let forbidden = match policy {
        ModePolicy::OwnerOnly => 0o077,
        ModePolicy::NotGroupOrWorldWritable => 0o022,
    };
    if mode & forbidden != 0 {
        return Err(Error::unsafe_file(
            path,
            format!("mode {mode:04o} is too open"),
        ));
    }
    Ok(())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

trait DirBuilderExt {
    fn mode_0700(&mut self) -> &mut Self;
}

impl DirBuilderExt for std::fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        std::os::unix::fs::DirBuilderExt::mode(self, 0o700)
    }
}
