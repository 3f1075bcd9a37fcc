//! The host key, AES-256-GCM sealing of secrets, and keyed hashes.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::fsutil::{hex, CheckedDir, ModePolicy};

pub const HOST_KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Fills `buf` from the operating system's random source.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf).map_err(|e| Error::RandomSource(e.to_string()))
}

/// The 32-byte host key. Wiped on drop; no `Debug`. The bytes live in one heap allocation
/// made before they are filled, so moving a `HostKey` moves a pointer and leaves no copy.
pub struct HostKey(Box<Zeroizing<[u8; HOST_KEY_LEN]>>);

impl HostKey {
    fn zeroed() -> Self {
        HostKey(Box::new(Zeroizing::new([0u8; HOST_KEY_LEN])))
    }

    pub fn generate() -> Result<Self> {
        let mut key = Self::zeroed();
        fill_random(key.0.as_mut_slice())?;
        Ok(key)
    }

    /// Loads the key file: a regular file, owned by root, no group or other permission bits,
    /// exactly 32 bytes, parent directory not writable by group or others.
    pub fn load(path: &Path) -> Result<Self> {
        let (dir, name) = split(path)?;
        let dir = CheckedDir::open(dir)?
            .ok_or_else(|| Error::io(path, std::io::ErrorKind::NotFound.into()))?;
        let bytes = dir
            .read_file(name, HOST_KEY_LEN as u64, ModePolicy::OwnerOnly)?
            .ok_or_else(|| Error::io(path, std::io::ErrorKind::NotFound.into()))?;
        if bytes.len() != HOST_KEY_LEN {
            return Err(Error::corrupt(
                path,
                format!(
                    "host key must be {HOST_KEY_LEN} bytes, found {}",
                    bytes.len()
                ),
            ));
        }
        let mut key = Self::zeroed();
        key.0.copy_from_slice(&bytes);
        Ok(key)
    }

    /// Writes this key to `path` atomically (mode 0600), replacing any file there.
    pub fn store(&self, path: &Path) -> Result<()> {
        let (dir, name) = split(path)?;
        let dir = CheckedDir::open(dir)?
            .ok_or_else(|| Error::io(dir, std::io::ErrorKind::NotFound.into()))?;
        dir.write_atomic(name, self.0.as_slice())
    }

    /// Loads the key at `path`, or creates and stores a new one if there is none.
    /// Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool)> {
        match Self::load(path) {
            Ok(key) => Ok((key, false)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                key.store(path)?;
                Ok((key, true))
            }
            Err(e) => Err(e),
        }
    }

    /// A public name for this key (16 hex digits) stored beside each ciphertext, so a reader
    /// can pick the right one while a rekey is under way. Reveals nothing of the key.
    pub fn key_id(&self) -> String {
        let tag = self.mac(b"pam_totp key id v1", &[]);
        hex(&tag[..8])
    }

    /// HMAC-SHA256 under this key over `label || 0 || data`.
    pub(crate) fn mac(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        let tag = hmac_sha256(self.0.as_slice(), label, data);
        scrub_stack();
        tag
    }

    /// Encrypts `plaintext` with a fresh random nonce; `aad` is authenticated, not stored.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let ct = self.with_cipher(|cipher| {
            cipher.encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
        });
        let ct = ct.map_err(|_| Error::InvalidInput("encryption failed".into()))?;
        Ok((nonce, ct))
    }

    /// Decrypts and authenticates; `None` if the key, nonce, aad or ciphertext is wrong.
    pub(crate) fn open(&self, aad: &[u8], nonce: &[u8], ct: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if nonce.len() != NONCE_LEN {
            return None;
        }
        self.with_cipher(|cipher| {
            cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
                .ok()
                .map(Zeroizing::new)
        })
    }

    /// Runs `f` with the AES-GCM cipher of this key. The cipher wipes its key schedule when
    /// dropped (aes-gcm's `zeroize`); the stack it was built on, which holds moved-from
    /// copies of the schedule, is wiped afterwards.
    fn with_cipher<T>(&self, f: impl FnOnce(&Aes256Gcm) -> T) -> T {
        let out = {
            let cipher = Aes256Gcm::new(self.0.as_slice().into());
            f(&cipher)
        };
        // The AES code leaves round keys in vector registers, and those are saved in a core
        // dump. The same code run under an all-zero key overwrites them; safe Rust has no
        // other way to clear them.
        let blank = Aes256Gcm::new(&Default::default());
        let _ = std::hint::black_box(blank.encrypt(&Default::default(), [0u8; 64].as_slice()));
        drop(blank);
        scrub_stack();
        out
    }
}

/// Zeroes the stack below the caller's frame, where the frames of the calls it just made
/// (the cipher's construction and use, the HMAC's key block) left copies of key material
/// that no destructor reaches. Those frames are far smaller than this.
#[inline(never)]
fn scrub_stack() {
    use zeroize::Zeroize;
    let mut below = [0u8; 16 * 1024];
    below.zeroize();
    std::hint::black_box(&below);
}

/// The key that authenticates one enrollment's records: the whole state file (format 2)
/// and each counters record. It is derived from the enrollment's recovery-hash key, which
/// is itself derived from the host key, bound to the user name and sealed with the secret;
/// so it is the same under every host key the state is sealed under (a state sealed under
/// two keys during a rekey needs one authenticator, and a record written by a process that
/// holds either key verifies under the other) and known only to whoever can open the
/// state. Opaque: no accessor, no `Debug`; wiped on drop.
#[derive(Clone)]
pub struct RecordKey(Zeroizing<[u8; 32]>);

impl RecordKey {
    pub(crate) fn derive(recovery_key: &[u8], user: &crate::user::UserName) -> Self {
        // No stack scrub here, unlike the host key's uses: the recovery key's other HMACs
        // (recovery::hash) have none either, and this runs several times per login.
        RecordKey(Zeroizing::new(hmac_sha256(
            recovery_key,
            b"pam_totp record key v2",
            user.as_str().as_bytes(),
        )))
    }

    /// HMAC-SHA256 under this key over `label || 0 || data`.
    pub(crate) fn tag(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        hmac_sha256(self.0.as_slice(), label, data)
    }

    /// Whether `tag` is [`RecordKey::tag`] of `label` and `data` (constant time).
    pub(crate) fn verify(&self, label: &[u8], data: &[u8], tag: &[u8]) -> bool {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_slice()).expect("any key length");
        mac.update(label);
        mac.update(&[0]);
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }
}

/// HMAC-SHA256 over `label || 0 || data`.
pub(crate) fn hmac_sha256(key: &[u8], label: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label);
    mac.update(&[0]);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn split(path: &Path) -> Result<(&Path, &str)> {
    let name = path.file_name().and_then(|n| n.to_str());
    match (path.parent(), name) {
        (Some(dir), Some(name)) if path.is_absolute() => Ok((dir, name)),
        _ => Err(Error::Config(format!(
            "{}: key file must be an absolute path to a file",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = HostKey::generate().unwrap();
        let (nonce, ct) = key.seal(b"aad", b"secret").unwrap();
        assert_eq!(key.open(b"aad", &nonce, &ct).unwrap().as_slice(), b"secret");
        assert!(key.open(b"other", &nonce, &ct).is_none());
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(key.open(b"aad", &nonce, &bad).is_none());
        let other = HostKey::generate().unwrap();
        assert!(other.open(b"aad", &nonce, &ct).is_none());
        assert_ne!(key.key_id(), other.key_id());
        let (nonce2, _) = key.seal(b"aad", b"secret").unwrap();
        assert_ne!(nonce, nonce2, "nonce must be fresh per write");
    }
}
