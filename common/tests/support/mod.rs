//! Fixtures shared by the `common` integration tests.
#![allow(dead_code, clippy::new_without_default)]

use std::path::PathBuf;

use common::store::AuthRequest;
use common::totp::{code_at, OtpParams, TotpSecret};
use common::{HostKey, Store, UserName};
use zeroize::Zeroizing;

/// A temporary state directory and key file (root-owned, 0700 / 0600).
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub key_file: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = safe_tempdir();
        let state_dir = tmp.path().join("state");
        std::fs::create_dir(&state_dir).unwrap();
        let key_file = tmp.path().join("pam_totp.key");
        HostKey::load_or_create(&key_file).expect("create key");
        Fixture {
            tmp,
            state_dir,
            key_file,
        }
    }

    pub fn store(&self) -> Store {
        Store::open(&self.state_dir, &self.key_file).expect("open store")
    }

    /// Enrolls `name` with a known 160-bit secret (derived from the name) and returns it.
    pub fn enroll(&self, name: &str) -> (UserName, TotpSecret) {
        let user = UserName::parse(name).unwrap();
        self.store()
            .enroll(
                &user,
                secret_for(name),
                OtpParams::default(),
                None,
                10,
                false,
                now(),
            )
            .expect("enroll");
        (user, secret_for(name))
    }
}

/// A fresh temp dir (0700) for state dirs and key files. Not under /tmp: the module refuses
/// a state dir or key file with an ancestor that others can write, and /tmp is 1777. The
/// parent is root's, 0755, under /var/lib.
pub fn safe_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let root = std::path::Path::new("/var/lib/pam_totp-tests");
    std::fs::create_dir_all(root).expect("create /var/lib/pam_totp-tests");
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    tempfile::Builder::new()
        .prefix("t-")
        .tempdir_in(root)
        .expect("tempdir")
}

pub fn secret_for(name: &str) -> TotpSecret {
    let mut bytes: Vec<u8> = name.bytes().cycle().take(20).collect();
    bytes[0] ^= 0x5a;
    TotpSecret::from_bytes(Zeroizing::new(bytes)).unwrap()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn current_code(secret: &TotpSecret) -> Zeroizing<String> {
    code_at(secret, &OtpParams::default(), now() as u64)
}

/// A well-formed code that `secret` gives at no step within 3 of now.
pub fn wrong_code(secret: &TotpSecret) -> String {
    let params = OtpParams::default();
    let t = now() as u64;
    let near: Vec<Zeroizing<String>> = (0..=6)
        .map(|k| code_at(secret, &params, t + k * 30 - 90))
        .collect();
    (0..1_000_000u32)
        .map(|i| format!("{i:06}"))
        .find(|c| !near.iter().any(|n| n.as_str() == c))
        .unwrap()
}

pub fn req(now: i64) -> AuthRequest<'static> {
    AuthRequest {
        now,
        window: 1,
        max_failures: 5,
        lockout_secs: 300,
        rhost: Some("192.0.2.1"),
        lockout_max_secs: 86400,
        hotp_window: 10,
        grace_secs: 0,
        device: None,
    }
}

/// Random bytes from the OS.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::getrandom(&mut v).unwrap();
    v
}

pub fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes(8).try_into().unwrap())
}

/// A child process killed and reaped on drop, so a failing test leaves none running.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
