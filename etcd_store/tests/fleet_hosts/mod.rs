//! Hosts of a fleet for the tests and the fleet benchmark: `pam_totpd` processes on one
//! cluster of `harness`, each with its own config, socket, client certificate and copy of the
//! one fleet key, and one PAM service whose module options point at that host's config.
#![allow(dead_code)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::login::{self, Enrollment, RecoveryCodes};
use common::{FileKey, HostKey, OtpParams, TotpSecret, UserName};
use integration_tests::daemon::{config_text, socket_of, write_config, TestDaemon};
use integration_tests::pam::{now, Fixture, Reply};
use pam_totp_etcd::EtcdBackend;
use zeroize::Zeroizing;

use crate::harness::Cluster;

pub struct Host {
    pub fx: Fixture,
    pub service: String,
    pub daemon: TestDaemon,
}

impl Host {
    /// One login through libpam on this host; its PAM code, messages and duration.
    pub fn login(&self, user: &str, code: &str) -> (i32, Vec<String>, Duration) {
        let start = Instant::now();
        let a = self.fx.attempt(
            &self.service,
            user.as_bytes(),
            Some("198.51.100.7"),
            vec![Reply::text(code)],
        );
        (a.code, a.errors(), start.elapsed())
    }
}

/// What a `totp-enroll` run printed.
#[derive(Debug)]
pub struct Cli {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    /// The recovery codes printed after `Recovery codes:`.
    pub fn recovery_codes(&self) -> Vec<String> {
        self.stdout
            .lines()
            .skip_while(|l| !l.starts_with("Recovery codes:"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
            .collect()
    }
}

impl Host {
    /// `totp-enroll --config <this host's config> ARGS` as root, with `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Cli {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let bin = integration_tests::pam::target_profile_dir().join("totp-enroll");
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(&self.fx.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo build --workspace`)", bin.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Cli {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub struct Fleet {
    pub hosts: Vec<Host>,
    /// Test-side admin access, for enrollment and unlock.
    pub admin: EtcdBackend,
    pub keys: FileKey,
    /// Every secret enrolled (raw bytes), and every recovery code shown: none of them may
    /// appear in etcd.
    pub secrets: Mutex<Vec<(Zeroizing<Vec<u8>>, String)>>,
    pub recovery: Mutex<Vec<String>>,
}

impl Fleet {
    /// Three hosts; `extra` goes into each config before `[etcd]`.
    pub fn start(c: &Cluster, timeout_ms: u64, extra: &str) -> Fleet {
        let fleet_key = HostKey::generate().unwrap();
        let hosts: Vec<Host> = (0..3)
            .map(|i| {
                let fx = Fixture::new();
                fleet_key.store(&fx.key_file).unwrap();
                let tls = c.client_cert(&format!("host-{i}"));
                let endpoints = c
                    .endpoints_from(i)
                    .iter()
                    .map(|e| format!("\"{e}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                let extra = format!(
                    "backend = \"etcd\"\n{extra}\n\
                     [etcd]\nendpoints = [{endpoints}]\ntls_ca = \"{}\"\ntls_cert = \"{}\"\n\
                     tls_key = \"{}\"\ntimeout_ms = {timeout_ms}\n",
                    tls.ca.display(),
                    tls.cert.display(),
                    tls.key.display()
                );
                write_config(&fx, &config_text(&fx, &extra));
                let daemon = TestDaemon::start(&fx.config, &socket_of(&fx));
                let service = fx.service_with(&format!(
                    "auth required {{module}} config={}\n",
                    fx.config.display()
                ));
                Host {
                    fx,
                    service,
                    daemon,
                }
            })
            .collect();
        let admin = EtcdBackend::connect(c.config("admin", c.endpoints_from(0), 5000)).unwrap();
        let keys = FileKey::load(&hosts[0].fx.key_file).unwrap();
        Fleet {
            hosts,
            admin,
            keys,
            secrets: Mutex::default(),
            recovery: Mutex::default(),
        }
    }

    /// Enrolls `user` once, for the whole fleet; returns its secret.
    pub fn enroll(&self, user: &str) -> TotpSecret {
        let mut raw = Zeroizing::new(vec![0u8; 20]);
        getrandom::getrandom(&mut raw).unwrap();
        let secret = TotpSecret::from_bytes(raw.clone()).unwrap();
        let b32 = secret.to_base32().to_string();
        let codes = login::enroll(
            &self.admin,
            &self.keys,
            Enrollment {
                user: UserName::parse(user).unwrap(),
                secret: TotpSecret::from_bytes(raw.clone()).unwrap(),
                params: OtpParams::default(),
                last_counter: None,
                recovery: RecoveryCodes::Generate(3),
                replace: false,
                now: now(),
            },
        )
        .unwrap();
        self.recovery
            .lock()
            .unwrap()
            .extend(codes.iter().map(|c| c.display().to_string()));
        self.secrets.lock().unwrap().push((raw, b32));
        secret
    }
}

pub fn code(secret: &TotpSecret, t: i64) -> String {
    common::totp::code_at(secret, &OtpParams::default(), t as u64).to_string()
}

/// Now, at least 5 s before the next 30 s step starts, so that codes of the steps before,
/// at and after now all stay within `window = 1` for the next few seconds.
pub fn settled_now() -> i64 {
    loop {
        let t = now();
        if t % 30 < 25 {
            return t;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
