//! Remote devices, for `grace_secs`: a device is PAM_RHOST together with, where sshd
//! exposes it (`ExposeAuthInfo yes` puts `SSH_AUTH_INFO_0` in the PAM environment), the
//! public key that already authenticated the connection.
//!
//! What is stored per remembered device ([`Device`], in the counters): a keyed hash of the
//! identity (so the store cannot be searched for a host or key without the user's key),
//! when the code was accepted from it, and what `status` shows to recognise it: the remote
//! host as cleaned for display and the key's type with the start of its SHA-256
//! fingerprint. Never the key itself.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::counters::clean_rhost;

/// Devices remembered per user; the oldest goes first.
pub const MAX_DEVICES: usize = 10;
/// Longest key label stored (type, `SHA256:` and the start of the fingerprint).
pub const MAX_KEY_LABEL_LEN: usize = 48;
/// Base64 characters of the fingerprint kept in the label: 96 bits, plenty to recognise a
/// key by (`ssh-keygen -l` shows all 43).
const FINGERPRINT_CHARS: usize = 16;

/// The public key(s) that authenticated an SSH connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// SHA-256 over the `type blob` of every `publickey` line, in order.
    pub digest: [u8; 32],
    /// `ssh-ed25519 SHA256:abcd...`, for display.
    pub label: String,
}

/// A remote device as the PAM stack describes it. Never without a remote host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceIdentity {
    rhost: String,
    key: Option<PublicKey>,
}

impl DeviceIdentity {
    /// The device of a login from `rhost` with `ssh_auth_info` (the `SSH_AUTH_INFO_0`
    /// variable, if set). `None` without a remote host: such a login has no device.
    pub fn new(rhost: Option<&str>, ssh_auth_info: Option<&str>) -> Option<Self> {
        let key = ssh_auth_info.and_then(public_key);
        Self::from_parts(rhost?, key)
    }

    /// A device from its parts (as the daemon receives them). `None` for an empty host.
    pub fn from_parts(rhost: &str, key: Option<PublicKey>) -> Option<Self> {
        if rhost.is_empty() {
            return None;
        }
        let key = key.map(|k| PublicKey {
            label: clean_label(&k.label),
            ..k
        });
        Some(DeviceIdentity {
            rhost: rhost.to_owned(),
            key,
        })
    }

    pub fn rhost(&self) -> &str {
        &self.rhost
    }

    pub fn key(&self) -> Option<&PublicKey> {
        self.key.as_ref()
    }

    /// The bytes a device's keyed hash is made of: the remote host as given (not cut), then
    /// the key digest if any.
    pub(crate) fn material(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(self.rhost.len() + 34);
        m.extend_from_slice(self.rhost.as_bytes());
        m.push(0);
        match &self.key {
            Some(k) => {
                m.push(1);
                m.extend_from_slice(&k.digest);
            }
            None => m.push(0),
        }
        m
    }

    /// The record stored for this device, with its keyed hash `id`, remembered at `since`.
    pub(crate) fn record(&self, id: [u8; 16], since: i64) -> Device {
        Device {
            id,
            since,
            rhost: clean_rhost(&self.rhost),
            key: self.key.as_ref().map(|k| k.label.clone()),
        }
    }
}

/// A remembered device, as stored with the counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Keyed hash of the device's identity (first 128 bits of an HMAC-SHA256 under the
    /// user's sealed key).
    pub id: [u8; 16],
    /// Unix time of the code accepted from it: its grace lasts until `since + grace_secs`.
    pub since: i64,
    /// The remote host, cleaned for display and cut to 64 bytes.
    pub rhost: String,
    /// The key's type and the start of its fingerprint, if a key was part of the device.
    pub key: Option<String>,
}

impl Device {
    /// Whether this is the device with keyed hash `id` (constant time).
    pub fn is(&self, id: &[u8; 16]) -> bool {
        self.id.ct_eq(id).into()
    }
}

/// The `publickey` lines of `SSH_AUTH_INFO_0` (`publickey TYPE BASE64 [...]`, one line per
/// method that succeeded). `None` if there is none. Every such line goes into the digest
/// as it is, so a line that does not parse still makes a device of its own, never the
/// device of the host alone.
fn public_key(info: &str) -> Option<PublicKey> {
    let mut h = Sha256::new();
    let mut label = None;
    for line in info.lines() {
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("publickey") {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        h.update(rest.join(" ").as_bytes());
        h.update([b'\n']);
        let kind = rest.first().copied().unwrap_or("publickey");
        let fp = rest
            .get(1)
            .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
            .map(|raw| data_encoding::BASE64_NOPAD.encode(&Sha256::digest(&raw)));
        label = Some(match fp {
            Some(fp) => format!("{kind} SHA256:{}", &fp[..FINGERPRINT_CHARS]),
            None => kind.to_owned(),
        });
    }
    Some(PublicKey {
        digest: h.finalize().into(),
        label: clean_label(&label?),
    })
}

/// A key label as stored and shown: the display rule of remote hosts, cut to
/// [`MAX_KEY_LABEL_LEN`] bytes.
pub fn clean_label(label: &str) -> String {
    let clean = clean_rhost(label);
    let mut end = clean.len().min(MAX_KEY_LABEL_LEN);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIHHJbxXb4RdlVzHgl2DxHc5zHVc5wxYvcdZLHhNXE8rH";

    #[test]
    fn a_device_needs_a_remote_host() {
        assert_eq!(
            DeviceIdentity::new(None, Some("publickey ssh-rsa AAAA")),
            None
        );
        assert_eq!(DeviceIdentity::new(Some(""), None), None);
        let d = DeviceIdentity::new(Some("192.0.2.7"), None).unwrap();
        assert_eq!((d.rhost(), d.key()), ("192.0.2.7", None));
    }

    #[test]
    fn the_key_comes_from_the_publickey_lines() {
        let info = format!("publickey ssh-ed25519 {ED25519}\n");
        let d = DeviceIdentity::new(Some("h"), Some(&info)).unwrap();
        let k = d.key().unwrap();
        assert!(k.label.starts_with("ssh-ed25519 SHA256:"), "{}", k.label);
        assert_eq!(
            k.label.len(),
            "ssh-ed25519 SHA256:".len() + FINGERPRINT_CHARS
        );
        // Other methods' lines do not change it; another key does; no key, no key.
        let with_password = format!("password\npublickey ssh-ed25519 {ED25519}\n");
        let same = DeviceIdentity::new(Some("h"), Some(&with_password)).unwrap();
        assert_eq!(same.key(), d.key());
        let other = format!("publickey ssh-ed25519 {}\n", ED25519.replace('H', "G"));
        let other = DeviceIdentity::new(Some("h"), Some(&other)).unwrap();
        assert_ne!(other.key().unwrap().digest, k.digest);
        assert_eq!(
            DeviceIdentity::new(Some("h"), Some("password\n"))
                .unwrap()
                .key(),
            None
        );
        // A line that does not parse is still a key of its own, not "no key".
        let odd = DeviceIdentity::new(Some("h"), Some("publickey ssh-rsa !!")).unwrap();
        assert_eq!(odd.key().unwrap().label, "ssh-rsa");
        let bare = DeviceIdentity::new(Some("h"), None).unwrap();
        assert_ne!(odd.material(), bare.material());
        assert_ne!(
            d.material(),
            DeviceIdentity::new(Some("h"), None).unwrap().material()
        );
    }

    #[test]
    fn stored_display_data_is_cleaned_and_bounded() {
        let d = DeviceIdentity::from_parts(
            &format!("evil\u{202E}{}", "x".repeat(100)),
            Some(PublicKey {
                digest: [7; 32],
                label: format!("\x1b[2J{}", "k".repeat(100)),
            }),
        )
        .unwrap();
        let r = d.record([1; 16], 5);
        assert!(
            r.rhost.starts_with("evil?") && r.rhost.len() == 64,
            "{}",
            r.rhost
        );
        let key = r.key.clone().unwrap();
        assert!(
            key.starts_with("?[2J") && key.len() == MAX_KEY_LABEL_LEN,
            "{key}"
        );
        assert!(
            r.id == [1; 16]
                && Device {
                    id: [1; 16],
                    ..r.clone()
                }
                .is(&[1; 16])
        );
    }
}
