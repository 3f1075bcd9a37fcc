//! Where the listening socket comes from: the one systemd passes (socket activation, the
//! LISTEN_PID/LISTEN_FDS protocol of sd_listen_fds(3)), or one bound here at `socket`.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, UnixAddr,
};
use nix::sys::stat::{fstat, SFlag};

/// First fd passed by systemd (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: i32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Activated,
    Bound,
}

/// The socket to serve. Must run before any other thread starts (it edits the environment).
pub fn listener(socket: &Path) -> Result<(UnixListener, Source), String> {
    if let Some(l) = from_systemd()? {
        return Ok((l, Source::Activated));
    }
    bind(socket).map(|l| (l, Source::Bound))
}

/// What LISTEN_PID and LISTEN_FDS say: `None` when they are absent or meant for another
/// process (a parent that passed its environment on), else the number of fds.
fn listen_fds(pid: Option<&str>, fds: Option<&str>, own_pid: u32) -> Result<Option<u32>, String> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    if pid.parse::<u32>().ok() != Some(own_pid) {
        return Ok(None);
    }
    fds.parse::<u32>()
        .map(Some)
        .map_err(|_| format!("LISTEN_FDS={fds:?} is not a number"))
}

fn from_systemd() -> Result<Option<UnixListener>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    // Not passed on to anything this process might start.
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    match listen_fds(pid.as_deref(), fds.as_deref(), std::process::id())? {
        None => Ok(None),
        Some(1) => {
            // SAFETY: LISTEN_PID names this process, so the service manager passed fd 3 to
            // it, open, and nothing else in this process owns it: this runs once, at
            // startup, before anything else opens or closes a file descriptor.
            let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
            check_passed(&fd)?;
            fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
                .map_err(|e| format!("passed socket: F_SETFD: {e}"))?;
            Ok(Some(UnixListener::from(fd)))
        }
        Some(n) => Err(format!(
            "systemd passed {n} sockets; pam_totpd.socket must have exactly one ListenStream="
        )),
    }
}

/// The passed fd must be a listening Unix stream socket.
fn check_passed(fd: &OwnedFd) -> Result<(), String> {
    let st = fstat(fd.as_fd()).map_err(|e| format!("passed fd 3: {e}"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err("passed fd 3 is not a socket".into());
    }
    let ty = getsockopt(fd, sockopt::SockType).map_err(|e| format!("passed fd 3: {e}"))?;
    let listening = getsockopt(fd, sockopt::AcceptConn).map_err(|e| format!("passed fd 3: {e}"))?;
    let addr: UnixAddr = getsockname(std::os::fd::AsRawFd::as_raw_fd(fd))
        .map_err(|e| format!("passed fd 3 is not a Unix socket: {e}"))?;
    if ty != SockType::Stream || !listening || addr.family() != Some(AddressFamily::Unix) {
        return Err("passed fd 3 is not a listening Unix stream socket (ListenStream=)".into());
    }
    Ok(())
}

/// Binds `socket` (mode 0666) in a directory of root's that nobody else can write (created
/// 0755 if missing). A stale socket (nobody listening) is removed; a live one, or anything
/// that is not a socket, makes this refuse.
fn bind(socket: &Path) -> Result<UnixListener, String> {
    let shown = socket.display();
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && *d != Path::new("/"))
        .ok_or_else(|| format!("socket {shown}: needs a directory of its own"))?;
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o755)
                .create(dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            // Whatever the umask: the socket must be reachable by every user.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Err(e) => return Err(format!("{}: {e}", dir.display())),
        Ok(_) => {}
    }
    let m = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(format!(
            "{}: unsafe socket directory: must be a directory (not a symlink) owned by root \
             and not writable by group or others",
            dir.display()
        ));
    }
    match fs::symlink_metadata(socket) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{shown}: {e}")),
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(socket) {
            Ok(_) => return Err(format!("{shown}: another daemon is listening there")),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                fs::remove_file(socket).map_err(|e| format!("removing stale {shown}: {e}"))?;
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        },
        Ok(_) => {
            return Err(format!(
                "{shown} exists and is not a socket: refusing to replace it"
            ))
        }
    }
    let l = UnixListener::bind(socket).map_err(|e| format!("binding {shown}: {e}"))?;
    // Who may ask what is decided per request by SO_PEERCRED: every user may connect.
    fs::set_permissions(socket, fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_env() {
        assert_eq!(listen_fds(None, None, 7), Ok(None));
        assert_eq!(listen_fds(Some("7"), None, 7), Ok(None));
        // Meant for another process: ignored, the daemon binds its own.
        assert_eq!(listen_fds(Some("8"), Some("1"), 7), Ok(None));
        assert_eq!(listen_fds(Some("x"), Some("1"), 7), Ok(None));
        assert_eq!(listen_fds(Some("7"), Some("1"), 7), Ok(Some(1)));
        assert_eq!(listen_fds(Some("7"), Some("2"), 7), Ok(Some(2)));
        assert!(listen_fds(Some("7"), Some("one"), 7).is_err());
    }
}
