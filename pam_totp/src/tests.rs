//! The decision logic driven through a scripted [`Handle`]: no libpam, a fixed clock.
//! The real-libpam tests in tests/tests/pam_*.rs then prove the wiring.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::counters::Counters;
use common::{
    Backend, Commit, Config, Enrollment, Expect, HostKey, KeySource, Loaded, OtpParams, RecordKey,
    RecoveryCodes, SealedState, TotpSecret, UserName, Version,
};
use pamsm::PamError;
use zeroize::Zeroizing;

use crate::auth::{authenticate, authenticate_guarded, Storage};
use crate::handle::{ConvError, Handle, Level, Notice};
use crate::text;

const NOW: i64 = 1_700_000_000;

enum Reply {
    Answer(Vec<u8>),
    Fail(ConvError),
    Panic,
}

struct Fake {
    user: Result<Option<Vec<u8>>, PamError>,
    rhost: Option<String>,
    replies: VecDeque<Reply>,
    prompts: Vec<(String, bool)>,
    told: Vec<(Notice, String)>,
    logs: RefCell<Vec<(Level, String)>>,
    now: SystemTime,
    /// PAM_AUTHTOK as set by the module.
    authtok: Option<Vec<u8>>,
    /// The PAM environment.
    env: BTreeMap<String, String>,
}

impl Fake {
    fn new(user: &str, replies: Vec<Reply>) -> Self {
        Fake {
            user: Ok(Some(user.as_bytes().to_vec())),
            rhost: Some("198.51.100.7".into()),
            replies: replies.into(),
            prompts: Vec::new(),
            told: Vec::new(),
            logs: RefCell::new(Vec::new()),
            now: at(NOW),
            authtok: None,
            env: BTreeMap::new(),
        }
    }

    fn told(&self, kind: Notice) -> Vec<&str> {
        self.told
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    fn logged(&self, level: Level) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, t)| t.clone())
            .collect()
    }

    fn all_logs(&self) -> String {
        self.logs
            .borrow()
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Handle for Fake {
    fn user(&mut self) -> Result<Option<Vec<u8>>, PamError> {
        self.user.clone()
    }
    fn service(&self) -> Option<String> {
        Some("unit".into())
    }
    fn rhost(&self) -> Option<String> {
        self.rhost.clone()
    }
    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn prompt(&mut self, prompt: &str, echo: bool) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        self.prompts.push((prompt.to_owned(), echo));
        match self.replies.pop_front() {
            Some(Reply::Answer(a)) => Ok(Zeroizing::new(a)),
            Some(Reply::Fail(e)) => Err(e),
            Some(Reply::Panic) => panic!("scripted panic"),
            None => panic!("unexpected prompt"),
        }
    }
    fn set_authtok(&mut self, password: &[u8]) -> Result<(), PamError> {
        self.authtok = Some(password.to_vec());
        Ok(())
    }
    fn tell(&mut self, kind: Notice, text: &str) {
        self.told.push((kind, text.to_owned()));
    }
    fn log(&self, level: Level, text: &str) {
        self.logs.borrow_mut().push((level, text.to_owned()));
    }
    fn now(&self) -> SystemTime {
        self.now
    }
}

fn at(t: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t as u64)
}

/// One user's values in [`Memory`].
struct Entry {
    state: Vec<u8>,
    counters: Counters,
    state_rev: u64,
    counters_rev: u64,
}

/// An in-memory [`Backend`] with the contract's compare-and-swap: the store the decision
/// logic is tested against, so the tests need neither root nor a file system.
#[derive(Default)]
struct Memory {
    users: Mutex<BTreeMap<UserName, Entry>>,
}

const ORIGIN: &str = "memory";

impl Backend for Memory {
    fn is_enrolled(&self, user: &UserName) -> common::Result<bool> {
        Ok(self.users.lock().unwrap().contains_key(user))
    }

    fn load(
        &self,
        user: &UserName,
        open: &mut dyn FnMut(&SealedState) -> common::Result<RecordKey>,
    ) -> common::Result<Option<Loaded>> {
        let users = self.users.lock().unwrap();
        let Some(e) = users.get(user) else {
            return Ok(None);
        };
        let state = SealedState::parse(&e.state, user, Path::new(ORIGIN))?;
        // In memory nobody else writes: the counters need no authenticator.
        open(&state)?;
        Ok(Some(Loaded {
            state,
            counters: e.counters.clone(),
            version: Version::new(e.state_rev, e.counters_rev),
        }))
    }

    fn commit(
        &self,
        user: &UserName,
        version: Version,
        counters: &Counters,
        _key: &RecordKey,
        _durable: bool,
    ) -> common::Result<Commit> {
        let mut users = self.users.lock().unwrap();
        match users.get_mut(user) {
            Some(e) if (e.state_rev, e.counters_rev) == (version.state(), version.counters()) => {
                e.counters = counters.clone();
                e.counters_rev += 1;
                Ok(Commit::Committed)
            }
            _ => Ok(Commit::Conflict),
        }
    }

    fn put_state(
        &self,
        user: &UserName,
        expect: Expect,
        state: &SealedState,
        check: &dyn Fn() -> common::Result<()>,
    ) -> common::Result<Commit> {
        let mut users = self.users.lock().unwrap();
        let current = users.get(user).map(|e| (e.state_rev, e.counters_rev));
        match (&expect, current) {
            (Expect::Absent, Some(_)) => return Err(common::Error::AlreadyEnrolled(user.clone())),
            (Expect::Version(v), Some(c)) if c == (v.state(), v.counters()) => {}
            (Expect::Version(_), _) => return Ok(Commit::Conflict),
            _ => {}
        }
        check()?;
        let state_rev = current.map_or(1, |(s, _)| s + 1);
        users.insert(
            user.clone(),
            Entry {
                state: state.as_bytes().to_vec(),
                counters: state.counters(),
                state_rev,
                counters_rev: 0,
            },
        );
        Ok(Commit::Committed)
    }

    fn remove(&self, user: &UserName) -> common::Result<bool> {
        Ok(self.users.lock().unwrap().remove(user).is_some())
    }

    fn users(&self) -> common::Result<Vec<UserName>> {
        Ok(self.users.lock().unwrap().keys().cloned().collect())
    }
}

/// A key in hand that no rekey replaces.
struct FixedKey(Arc<HostKey>);

impl KeySource for FixedKey {
    fn key(&self) -> &HostKey {
        &self.0
    }
    fn replaced(&self) -> common::Result<Option<HostKey>> {
        Ok(None)
    }
}

/// [`Storage`] over one shared [`Memory`], honouring the configured paths as names: a
/// `state_dir` or `key_file` other than the fixture's is missing, as on a real host.
struct MemoryStorage {
    backend: Arc<Memory>,
    key: Arc<HostKey>,
    state: PathBuf,
    key_file: PathBuf,
    /// What the module is told about its effective uid (true: as root, in-process).
    privileged: bool,
    /// NSS as the module sees it: a name given -> the passwd entry's name; a name
    /// mapped to `Err` fails to look up. Names absent are unknown to NSS.
    passwd: BTreeMap<String, Result<String, String>>,
    /// Every name looked up through NSS.
    lookups: Mutex<Vec<String>>,
    /// Config files by path, as text (read as `load_file` reads a root-owned one); a path
    /// absent is no file.
    configs: Mutex<BTreeMap<PathBuf, String>>,
}

struct Shared(Arc<Memory>);

impl Backend for Shared {
    fn is_enrolled(&self, user: &UserName) -> common::Result<bool> {
        self.0.is_enrolled(user)
    }
    fn load(
        &self,
        user: &UserName,
        open: &mut dyn FnMut(&SealedState) -> common::Result<RecordKey>,
    ) -> common::Result<Option<Loaded>> {
        self.0.load(user, open)
    }
    fn commit(
        &self,
        user: &UserName,
        version: Version,
        counters: &Counters,
        key: &RecordKey,
        durable: bool,
    ) -> common::Result<Commit> {
        self.0.commit(user, version, counters, key, durable)
    }
    fn put_state(
        &self,
        user: &UserName,
        expect: Expect,
        state: &SealedState,
        check: &dyn Fn() -> common::Result<()>,
    ) -> common::Result<Commit> {
        self.0.put_state(user, expect, state, check)
    }
    fn remove(&self, user: &UserName) -> common::Result<bool> {
        self.0.remove(user)
    }
    fn users(&self) -> common::Result<Vec<UserName>> {
        self.0.users()
    }
}

fn missing(path: &Path) -> common::Error {
    common::Error::Io {
        path: path.to_owned(),
        source: std::io::ErrorKind::NotFound.into(),
    }
}

impl Storage for MemoryStorage {
    fn config_file(&self, path: &Path) -> common::Result<common::config::Loaded> {
        let configs = self.configs.lock().unwrap();
        common::config::from_text(path, configs.get(path).map_or("", |t| t.as_str()))
    }
    fn backend(&self, config: &Config) -> common::Result<Box<dyn Backend>> {
        if config.state_dir != self.state {
            return Err(missing(&config.state_dir));
        }
        Ok(Box::new(Shared(self.backend.clone())))
    }
    fn keys(&self, config: &Config) -> common::Result<Box<dyn KeySource>> {
        if config.key_file != self.key_file {
            return Err(missing(&config.key_file));
        }
        Ok(Box::new(FixedKey(self.key.clone())))
    }
    fn privileged(&self) -> bool {
        self.privileged
    }
    fn passwd_name(&self, name: &str) -> Result<Option<String>, String> {
        self.lookups.lock().unwrap().push(name.to_owned());
        self.passwd.get(name).cloned().transpose()
    }
}

/// An in-memory store and key with one enrolled user.
struct Fixture {
    storage: MemoryStorage,
    state: PathBuf,
    config: PathBuf,
    secret: TotpSecret,
    params: OtpParams,
}

impl Fixture {
    fn new() -> Self {
        let state = PathBuf::from("/fixture/state");
        let secret = TotpSecret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
        let f = Fixture {
            storage: MemoryStorage {
                backend: Arc::new(Memory::default()),
                key: Arc::new(HostKey::generate().unwrap()),
                state: state.clone(),
                key_file: PathBuf::from("/fixture/key"),
                privileged: true,
                passwd: BTreeMap::new(),
                lookups: Mutex::new(Vec::new()),
                configs: Mutex::new(BTreeMap::new()),
            },
            config: PathBuf::from("/nonexistent/pam_totp-unit.conf"),
            state,
            secret,
            params: OtpParams::default(),
        };
        f.enroll("alice", 2);
        f
    }

    fn keys(&self) -> FixedKey {
        FixedKey(self.storage.key.clone())
    }

    /// The text of the config file that `config=` names.
    fn write_config(&self, text: &str) {
        let mut configs = self.storage.configs.lock().unwrap();
        configs.insert(self.config.clone(), text.to_owned());
    }

    fn enroll(&self, user: &str, recovery: usize) -> Vec<String> {
        let secret =
            TotpSecret::from_bytes(Zeroizing::new(self.secret.as_bytes().to_vec())).unwrap();
        let e = Enrollment {
            user: UserName::parse(user).unwrap(),
            secret,
            params: self.params,
            last_counter: None,
            recovery: RecoveryCodes::Generate(recovery),
            replace: true,
            now: NOW - 3600,
        };
        common::login::enroll(&*self.storage.backend, &self.keys(), e)
            .unwrap()
            .iter()
            .map(|c| c.display().to_string())
            .collect()
    }

    fn status(&self, user: &str) -> common::Status {
        common::login::status(
            &*self.storage.backend,
            &self.keys(),
            &UserName::parse(user).unwrap(),
        )
        .unwrap()
        .unwrap()
    }

    /// Replaces a user's stored state with `bytes`.
    fn overwrite_state(&self, user: &str, bytes: &[u8]) {
        let mut users = self.storage.backend.users.lock().unwrap();
        users
            .get_mut(&UserName::parse(user).unwrap())
            .unwrap()
            .state = bytes.to_vec();
    }

    fn code(&self, t: i64) -> Vec<u8> {
        common::totp::code_at(&self.secret, &self.params, t as u64)
            .as_bytes()
            .to_vec()
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut v = vec![
            format!("config={}", self.config.display()),
            format!("state_dir={}", self.state.display()),
            format!("key_file={}", self.storage.key_file.display()),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    fn run(&self, h: &mut Fake, extra: &[&str]) -> PamError {
        authenticate_guarded(h, &self.storage, false, &self.args(extra))
    }
}

fn answer(b: &[u8]) -> Vec<Reply> {
    vec![Reply::Answer(b.to_vec())]
}

#[test]
fn valid_code_is_accepted_once_then_replay_is_refused_and_logged() {
    let f = Fixture::new();
    let code = f.code(NOW);
    let mut h = Fake::new("alice", answer(&code));
    assert_eq!(f.run(&mut h, &[]), PamError::SUCCESS);
    assert_eq!(h.prompts, vec![(text::PROMPT.to_owned(), false)]);
    assert!(h.told.is_empty(), "{:?}", h.told);

    let mut h = Fake::new("alice", answer(&code));
    assert_eq!(f.run(&mut h, &[]), PamError::AUTH_ERR);
    assert_eq!(h.told(Notice::Error), vec![text::REPLAYED]);
    let warnings = h.logged(Level::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("service=unit user=alice rhost=198.51.100.7"),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("replay"));
}

#[test]
fn logs_never_hold_the_code() {
    let f = Fixture::new();
    let code = f.code(NOW);
    let wrong = b"987654".to_vec();
    for input in [&code, &wrong, &code] {
        let mut h = Fake::new("alice", answer(input));
        f.run(&mut h, &["debug"]);
        let logs = h.all_logs();
        assert!(logs.contains("user=alice"), "{logs}");
        for secret in [&code, &wrong] {
            assert!(
                !logs.contains(std::str::from_utf8(secret).unwrap()),
                "{logs}"
            );
        }
        assert!(!h.logged(Level::Debug).is_empty());
    }
}

#[test]
fn echo_option_turns_echo_on() {
    let f = Fixture::new();
    let mut h = Fake::new("alice", answer(&f.code(NOW)));
    assert_eq!(f.run(&mut h, &["echo"]), PamError::SUCCESS);
    assert_eq!(h.prompts, vec![(text::PROMPT.to_owned(), true)]);
}

#[test]
fn spaces_in_the_code_are_ignored() {
    let f = Fixture::new();
    let code = f.code(NOW);
    let spaced = format!(
        " {} {} ",
        std::str::from_utf8(&code[..3]).unwrap(),
        std::str::from_utf8(&code[3..]).unwrap()
    );
    let mut h = Fake::new("alice", answer(spaced.as_bytes()));
    assert_eq!(f.run(&mut h, &[]), PamError::SUCCESS);
}

#[test]
fn window_edges() {
    let f = Fixture::new();
    // window=1: one step either side; window=0: only now.
    for (offset, window, ok) in [
        (-30, "1", true),
        (30, "1", true),
        (-60, "1", false),
        (60, "1", false),
        (-30, "0", false),
        (0, "0", true),
    ] {
        f.enroll("alice", 0);
        let mut h = Fake::new("alice", answer(&f.code(NOW + offset)));
        let want = if ok {
            PamError::SUCCESS
        } else {
            PamError::AUTH_ERR
        };
        assert_eq!(
            f.run(&mut h, &[&format!("window={window}")]),
            want,
            "offset {offset} window {window}"
        );
    }
}

#[test]
fn hostile_inputs_are_wrong_codes() {
    let f = Fixture::new();
    let code = f.code(NOW);
    let plus = [b"+".as_slice(), &code[1..]].concat();
    let inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"abcdef".to_vec(),
        vec![b'1'; 10 * 1024],
        vec![0xff, 0xfe, b'1', b'2', b'3', b'4'],
        plus,
        [code.as_slice(), b"\xff"].concat(),
    ];
    let n = inputs.len() as u32;
    for input in inputs {
        let mut h = Fake::new("alice", answer(&input));
        assert_eq!(f.run(&mut h, &["max_failures=0"]), PamError::AUTH_ERR);
    }
    let status = f.status("alice");
    assert_eq!(status.counters.failures, n, "each one counted as a failure");
}

#[test]
fn a_lock_past_year_9999_is_shown_without_a_panic() {
    // A clock far in the future when the failures were counted.
    let f = Fixture::new();
    let t = 315_000_000_000;
    let opts = ["max_failures=1", "lockout_secs=60"];
    let mut h = Fake::new("alice", answer(b"000000"));
    h.now = at(t);
    assert_eq!(f.run(&mut h, &opts), PamError::AUTH_ERR);
    assert_eq!(
        h.told(Notice::Error),
        vec!["too many failed attempts; locked until @315000000060".to_owned()]
    );
    let mut h = Fake::new("alice", answer(b"000000"));
    h.now = at(t);
    assert_eq!(f.run(&mut h, &opts), PamError::MAXTRIES);
    assert_eq!(
        h.told(Notice::Error),
        vec!["too many failed attempts; locked until @315000000060".to_owned()]
    );
}

#[test]
fn lockout_then_unlock_by_time() {
    let f = Fixture::new();
    let opts = ["max_failures=3", "lockout_secs=60"];
    for i in 1..=3 {
        let mut h = Fake::new("alice", answer(b"000000"));
        assert_eq!(f.run(&mut h, &opts), PamError::AUTH_ERR, "attempt {i}");
        let errors = h.told(Notice::Error);
        if i < 3 {
            assert!(errors.is_empty());
        } else {
            assert_eq!(errors, vec![text::locked_until(NOW + 60)]);
        }
    }
    // Locked: even the right code is refused, and the user is told until when.
    let mut h = Fake::new("alice", answer(&f.code(NOW)));
    assert_eq!(f.run(&mut h, &opts), PamError::MAXTRIES);
    assert_eq!(h.told(Notice::Error), vec![text::locked_until(NOW + 60)]);
    assert!(text::locked_until(NOW + 60).ends_with("locked until 2023-11-14T22:14:20Z"));

    // After lockout_secs the right code works, and the user hears about the failures.
    let later = NOW + 61;
    let mut h = Fake::new("alice", answer(&f.code(later)));
    h.now = at(later);
    assert_eq!(f.run(&mut h, &opts), PamError::SUCCESS);
    assert_eq!(
        h.told(Notice::Info),
        vec![text::prior_rejections(3, Some("198.51.100.7"), Some(NOW))]
    );
    assert!(h.told(Notice::Info)[0].starts_with(
        "3 failed verification attempts since your last login; the last from 198.51.100.7"
    ));
}

#[test]
fn replays_count_towards_the_lock() {
    let f = Fixture::new();
    let code = f.code(NOW);
    let mut h = Fake::new("alice", answer(&code));
    assert_eq!(f.run(&mut h, &["max_failures=2"]), PamError::SUCCESS);
    for i in 1..=2 {
        let mut h = Fake::new("alice", answer(&code));
        assert_eq!(f.run(&mut h, &["max_failures=2"]), PamError::AUTH_ERR);
        assert_eq!(
            h.told(Notice::Error).len(),
            i,
            "replay warning, then also the lock"
        );
    }
    let mut h = Fake::new("alice", answer(&code));
    assert_eq!(f.run(&mut h, &["max_failures=2"]), PamError::MAXTRIES);
}

#[test]
fn recovery_code_is_accepted_once() {
    let f = Fixture::new();
    let codes = f.enroll("alice", 2);
    let mut h = Fake::new("alice", answer(codes[0].to_lowercase().as_bytes()));
    assert_eq!(f.run(&mut h, &[]), PamError::SUCCESS);
    assert_eq!(h.told(Notice::Info), vec!["recovery code used, 1 left"]);
    let mut h = Fake::new("alice", answer(codes[0].as_bytes()));
    assert_eq!(
        f.run(&mut h, &[]),
        PamError::AUTH_ERR,
        "a spent code is a wrong code"
    );
    let mut h = Fake::new("alice", answer(codes[1].replace('-', "").as_bytes()));
    assert_eq!(f.run(&mut h, &[]), PamError::SUCCESS);
    assert_eq!(
        h.told(Notice::Info),
        vec![
            text::prior_rejections(1, Some("198.51.100.7"), Some(NOW)),
            "recovery code used, 0 left".to_owned()
        ]
    );
}

#[test]
fn silent_flag_keeps_quiet_but_decides_the_same() {
    let f = Fixture::new();
    let code = f.code(NOW);
    let mut h = Fake::new("alice", answer(&code));
    assert_eq!(
        authenticate(&mut h, &f.storage, true, &f.args(&[])),
        PamError::SUCCESS
    );
    let mut h = Fake::new("alice", answer(&code));
    assert_eq!(
        authenticate(&mut h, &f.storage, true, &f.args(&[])),
        PamError::AUTH_ERR
    );
    assert!(h.told.is_empty());
    assert_eq!(h.logged(Level::Warning).len(), 1);
}

#[test]
fn not_enrolled_with_and_without_nullok() {
    let f = Fixture::new();
    let mut h = Fake::new("bob", vec![]);
    assert_eq!(f.run(&mut h, &["nullok"]), PamError::IGNORE);
    assert!(h.prompts.is_empty() && h.told.is_empty());
    let mut h = Fake::new("bob", vec![]);
    assert_eq!(f.run(&mut h, &[]), PamError::AUTH_ERR);
    assert_eq!(h.told(Notice::Error), vec![text::NOT_ENROLLED]);
    // nullok never waves an enrolled user through.
    let mut h = Fake::new("alice", answer(b"000000"));
    assert_eq!(f.run(&mut h, &["nullok"]), PamError::AUTH_ERR);
}

#[test]
fn invalid_user_names_are_unknown_without_a_prompt() {
    let f = Fixture::new();
    let long = "a".repeat(10 * 1024);
    for name in [
        "",
        "../../etc/shadow",
        "a\nb",
        "a\0b",
        long.as_str(),
        ".alice.counters",
    ] {
        let mut h = Fake::new(name, vec![]);
        assert_eq!(
            f.run(&mut h, &["nullok"]),
            PamError::USER_UNKNOWN,
            "{name:?}"
        );
        assert!(h.prompts.is_empty());
        let logs = h.all_logs();
        assert!(!logs.contains('\n') && logs.len() < 400, "{logs}");
    }
    let mut h = Fake::new("alice", vec![]);
    h.user = Ok(None);
    assert_eq!(f.run(&mut h, &[]), PamError::USER_UNKNOWN);
    h.user = Err(PamError::CONV_ERR);
    assert_eq!(f.run(&mut h, &[]), PamError::CONV_ERR);
    h.user = Err(PamError::CONV_AGAIN);
    assert_eq!(f.run(&mut h, &[]), PamError::CONV_ERR);
    h.user = Err(PamError::INCOMPLETE);
    assert_eq!(f.run(&mut h, &[]), PamError::CONV_ERR);
    h.user = Err(PamError::BUF_ERR);
    assert_eq!(f.run(&mut h, &[]), PamError::BUF_ERR);
    for odd in [
        PamError::SUCCESS,
        PamError::IGNORE,
        PamError::UNKNOWN_RESULT,
    ] {
        h.user = Err(odd);
        assert_eq!(f.run(&mut h, &[]), PamError::SYSTEM_ERR, "{odd:?}");
    }
    // Only a panic is reported as one.
    h.user = Err(PamError::SYSTEM_ERR);
    assert_eq!(f.run(&mut h, &[]), PamError::SYSTEM_ERR);
    assert!(!h.all_logs().contains("panic"), "{}", h.all_logs());
}

#[test]
fn bad_options_fail_closed_naming_the_problem() {
    let f = Fixture::new();
    for bad in [
        "window=abc",
        "window=99",
        "state_dir=relative",
        "max_failures=-1",
        "nullok=perhaps",
    ] {
        let mut h = Fake::new("alice", vec![]);
        assert_eq!(f.run(&mut h, &[bad]), PamError::SERVICE_ERR, "{bad}");
        let errors = h.logged(Level::Err);
        let name = bad.split('=').next().unwrap();
        assert!(
            errors.len() == 1 && errors[0].contains(name),
            "{bad}: {errors:?}"
        );
    }
    // Unknown options are logged and ignored.
    let mut h = Fake::new("alice", answer(&f.code(NOW)));
    assert_eq!(f.run(&mut h, &["frobnicate=1"]), PamError::SUCCESS);
    assert!(h.logged(Level::Warning)[0].contains("frobnicate"));
}

#[test]
fn missing_key_or_state_is_authinfo_unavail_without_a_prompt() {
    let f = Fixture::new();
    let mut h = Fake::new("alice", vec![]);
    let args = vec![
        format!("config={}", f.config.display()),
        format!("state_dir={}", f.state.display()),
        "key_file=/nonexistent/key".to_owned(),
    ];
    assert_eq!(
        authenticate(&mut h, &f.storage, false, &args),
        PamError::AUTHINFO_UNAVAIL
    );
    assert!(h.prompts.is_empty());
    let args = vec![
        format!("config={}", f.config.display()),
        "state_dir=/nonexistent/state".to_owned(),
    ];
    for nullok in [false, true] {
        let mut args = args.clone();
        if nullok {
            args.push("nullok".into());
        }
        let mut h = Fake::new("alice", vec![]);
        assert_eq!(
            authenticate(&mut h, &f.storage, false, &args),
            PamError::AUTHINFO_UNAVAIL
        );
    }
}

#[test]
fn conversation_failures_are_conv_err() {
    let f = Fixture::new();
    for e in [
        ConvError::NoConversation,
        ConvError::Failed(19),
        ConvError::NoAnswer,
    ] {
        let mut h = Fake::new("alice", vec![Reply::Fail(e)]);
        assert_eq!(f.run(&mut h, &[]), PamError::CONV_ERR);
    }
    let status = f.status("alice");
    assert_eq!(status.counters.failures, 0, "no answer is not an attempt");
}

#[test]
fn clock_before_1970_fails_closed() {
    let f = Fixture::new();
    let mut h = Fake::new("alice", answer(&f.code(0)));
    h.now = UNIX_EPOCH - Duration::from_secs(10);
    assert_eq!(f.run(&mut h, &[]), PamError::AUTHINFO_UNAVAIL);
}

#[test]
fn a_panic_is_system_err() {
    let f = Fixture::new();
    let mut h = Fake::new("alice", vec![Reply::Panic]);
    assert_eq!(f.run(&mut h, &[]), PamError::SYSTEM_ERR);
    assert!(h.logged(Level::Err)[0].contains("panic"));
}

#[test]
fn corrupt_state_is_authinfo_unavail() {
    let f = Fixture::new();
    f.overwrite_state("alice", b"not toml at all");
    let mut h = Fake::new("alice", answer(&f.code(NOW)));
    assert_eq!(f.run(&mut h, &[]), PamError::AUTHINFO_UNAVAIL);
}

#[test]
fn the_remote_host_in_the_notice_loses_format_characters() {
    let f = Fixture::new();
    let mut h = Fake::new("alice", answer(b"000000"));
    h.rhost = Some("a\u{202E}b\u{200B}c\x1b[2J".into());
    assert_eq!(f.run(&mut h, &[]), PamError::AUTH_ERR);
    let mut h = Fake::new("alice", answer(&f.code(NOW)));
    assert_eq!(f.run(&mut h, &[]), PamError::SUCCESS);
    let notice = h.told(Notice::Info).concat();
    assert!(notice.contains("the last from a?b?c?[2J at "), "{notice:?}");
}

#[test]
fn outside_strings_are_printable() {
    assert_eq!(text::printable("a\nb\u{1b}", 64), "a\\nb\\u{1b}");
    assert_eq!(text::printable("abcdef", 3), "abc...");
}

#[test]
fn guard_turns_a_panic_into_system_err() {
    assert_eq!(crate::auth::guard(|| PamError::IGNORE), PamError::IGNORE);
    assert_eq!(crate::auth::guard(|| panic!("boom")), PamError::SYSTEM_ERR);
}

/// The pam_totpd hook through the decision logic: backend etcd sends even root's logins to
/// the daemon. A fake daemon on a temporary socket answers with scripted replies.
mod via_daemon {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// The fixture, and a directory for the daemon's socket.
    fn daemon_fixture() -> (Fixture, tempfile::TempDir) {
        (Fixture::new(), tempfile::tempdir().unwrap())
    }

    fn daemon_config(f: &Fixture, socket: &std::path::Path, extra: &str) {
        f.write_config(&format!(
                "backend = \"etcd\"\nsocket = \"{}\"\n{extra}\n[etcd]\nendpoints = [\"https://192.0.2.1:2379\"]\n",
            socket.display()
        ));
    }

    /// Serves one connection per reply, in order; returns the requests it read.
    fn fake_daemon(
        listener: UnixListener,
        replies: Vec<proto::Reply>,
    ) -> std::thread::JoinHandle<Vec<proto::Request>> {
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for reply in replies {
                let (mut s, _) = listener.accept().unwrap();
                let body = proto::read_frame(&mut s).unwrap();
                seen.push(proto::Request::decode(&body).unwrap());
                std::io::Write::write_all(&mut s, &reply.encode()).unwrap();
            }
            seen
        })
    }

    #[test]
    fn the_code_goes_to_the_daemon_and_its_outcome_is_mapped() {
        let (f, dir) = daemon_fixture();
        let socket = dir.path().join("d.sock");
        daemon_config(&f, &socket, "");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = fake_daemon(
            listener,
            vec![
                proto::Reply::Enrolled,
                proto::Reply::Rejected {
                    failures: 5,
                    locked_until: Some(NOW + 300),
                },
            ],
        );
        let mut h = Fake::new("alice", answer(b"123 456"));
        assert_eq!(f.run(&mut h, &[]), PamError::AUTH_ERR);
        assert_eq!(h.told(Notice::Error), vec![text::locked_until(NOW + 300)]);
        let seen = server.join().unwrap();
        assert_eq!(
            seen[0],
            proto::Request::IsEnrolled {
                user: "alice".into()
            }
        );
        let proto::Request::Verify(v) = &seen[1] else {
            panic!("{seen:?}")
        };
        assert_eq!(
            (
                v.user.as_str(),
                v.code.as_str(),
                v.rhost.as_deref(),
                v.service.as_str()
            ),
            ("alice", "123 456", Some("198.51.100.7"), "unit")
        );
        // The module's own state was not used.
        assert_eq!(f.status("alice").counters.failures, 0);
    }

    #[test]
    fn not_enrolled_and_nullok_are_decided_without_a_prompt() {
        let (f, dir) = daemon_fixture();
        let socket = dir.path().join("d.sock");
        daemon_config(&f, &socket, "");
        let server = fake_daemon(
            UnixListener::bind(&socket).unwrap(),
            vec![proto::Reply::NotEnrolled, proto::Reply::NotEnrolled],
        );
        let mut h = Fake::new("alice", vec![]);
        assert_eq!(f.run(&mut h, &["nullok"]), PamError::IGNORE);
        let mut h = Fake::new("alice", vec![]);
        assert_eq!(f.run(&mut h, &[]), PamError::AUTH_ERR);
        assert!(h.prompts.is_empty());
        server.join().unwrap();
    }

    #[test]
    fn no_daemon_a_silent_one_or_a_refusal_fail_closed_naming_the_socket() {
        let (f, dir) = daemon_fixture();
        let socket = dir.path().join("d.sock");
        daemon_config(&f, &socket, "daemon_timeout_ms = 200");
        let mut h = Fake::new("alice", vec![]);
        assert_eq!(f.run(&mut h, &[]), PamError::AUTHINFO_UNAVAIL);
        let errs = h.logged(Level::Err);
        assert!(
            errs.len() == 1 && errs[0].contains(&socket.display().to_string()),
            "{errs:?}"
        );
        assert!(h.prompts.is_empty());

        // Listening, never answering: cut at daemon_timeout_ms.
        let silent = UnixListener::bind(&socket).unwrap();
        let start = std::time::Instant::now();
        let mut h = Fake::new("alice", vec![]);
        assert_eq!(f.run(&mut h, &[]), PamError::AUTHINFO_UNAVAIL);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        let errs = h.logged(Level::Err);
        assert!(
            errs[0].contains("no answer within 200 ms")
                && errs[0].contains(&socket.display().to_string()),
            "{errs:?}"
        );
        drop(silent);
        std::fs::remove_file(&socket).unwrap();

        // Refused by policy, and an unexpected reply: both fail closed.
        for reply in [
            proto::Reply::Denied,
            proto::Reply::Unavailable(proto::Unavailable::State),
            proto::Reply::Accepted {
                step: 1,
                prior: proto::Prior::default(),
            },
        ] {
            let server = fake_daemon(UnixListener::bind(&socket).unwrap(), vec![reply.clone()]);
            let mut h = Fake::new("alice", vec![]);
            assert_eq!(f.run(&mut h, &[]), PamError::AUTHINFO_UNAVAIL, "{reply:?}");
            server.join().unwrap();
            std::fs::remove_file(&socket).unwrap();
        }
    }

    #[test]
    fn root_with_backend_files_stays_in_process() {
        let (f, _dir) = daemon_fixture();
        // A socket that does not exist: in-process logins never look at it.
        f.write_config("socket = \"/nonexistent/pam_totp.sock\"\n");
        let mut h = Fake::new("alice", answer(&f.code(NOW)));
        assert_eq!(f.run(&mut h, &[]), PamError::SUCCESS);
    }

    #[test]
    fn not_root_with_backend_files_asks_the_daemon() {
        let (mut f, dir) = daemon_fixture();
        f.storage.privileged = false;
        let socket = dir.path().join("d.sock");
        f.write_config(&format!("socket = \"{}\"\n", socket.display()));
        let server = fake_daemon(
            UnixListener::bind(&socket).unwrap(),
            vec![
                proto::Reply::Enrolled,
                proto::Reply::Accepted {
                    step: 1,
                    prior: proto::Prior::default(),
                },
            ],
        );
        let mut h = Fake::new("alice", answer(b"000000"));
        assert_eq!(f.run(&mut h, &[]), PamError::SUCCESS);
        assert_eq!(server.join().unwrap().len(), 2);
        // The in-process store was not used: the typed code was never checked there.
        assert_eq!(f.status("alice").counters.last_counter, None);
    }
}

// ---- forward_pass ----

fn with_password(password: &[u8], code: &[u8]) -> Vec<Reply> {
    answer(&[password, code].concat())
}

#[test]
fn forward_pass_takes_the_code_from_the_end_and_passes_the_rest_on() {
    let f = Fixture::new();
    let code = f.code(NOW);
    let mut h = Fake::new("alice", with_password(b"hunter2 \xc3\xa9!", &code));
    assert_eq!(f.run(&mut h, &["forward_pass"]), PamError::SUCCESS);
    assert_eq!(
        h.prompts,
        vec![(text::PROMPT_FORWARD_PASS.to_owned(), false)]
    );
    assert_eq!(h.authtok.as_deref(), Some(&b"hunter2 \xc3\xa9!"[..]));
    // The password never reaches a log line.
    assert!(!h.all_logs().contains("hunter2"), "{}", h.all_logs());
    // A wrong code is refused, and the password still goes on (the stack decides).
    let mut h = Fake::new("alice", with_password(b"hunter2", b"000000"));
    assert_eq!(f.run(&mut h, &["forward_pass"]), PamError::AUTH_ERR);
    assert_eq!(h.authtok.as_deref(), Some(&b"hunter2"[..]));
    // Only the code, no password: an empty password goes on.
    let mut h = Fake::new("alice", with_password(b"", &f.code(NOW + 30)));
    assert_eq!(f.run(&mut h, &["forward_pass"]), PamError::SUCCESS);
    assert_eq!(h.authtok.as_deref(), Some(&b""[..]));
}

#[test]
fn forward_pass_uses_the_enrollments_digits() {
    let mut f = Fixture::new();
    f.params = OtpParams::new(common::Algorithm::SHA1, 8, 30).unwrap();
    f.enroll("bob", 0);
    let code = f.code(NOW);
    assert_eq!(code.len(), 8);
    let mut h = Fake::new("bob", with_password(b"pw123456", &code));
    assert_eq!(f.run(&mut h, &["forward_pass"]), PamError::SUCCESS);
    assert_eq!(h.authtok.as_deref(), Some(&b"pw123456"[..]));
}

#[test]
fn forward_pass_for_a_user_not_enrolled() {
    let f = Fixture::new();
    // Under nullok the whole answer is the password, and the module steps aside.
    let mut h = Fake::new("carol", answer(b"pass 123456"));
    assert_eq!(f.run(&mut h, &["forward_pass", "nullok"]), PamError::IGNORE);
    assert_eq!(
        h.prompts,
        vec![(text::PROMPT_FORWARD_PASS.to_owned(), false)]
    );
    assert_eq!(h.authtok.as_deref(), Some(&b"pass 123456"[..]));
    // Without it, refused as before, with no prompt.
    let mut h = Fake::new("carol", vec![]);
    assert_eq!(f.run(&mut h, &["forward_pass"]), PamError::AUTH_ERR);
    assert!(h.prompts.is_empty() && h.authtok.is_none());
    // No answer: a conversation error, nothing passed on.
    let mut h = Fake::new("carol", vec![Reply::Fail(ConvError::NoAnswer)]);
    assert_eq!(
        f.run(&mut h, &["forward_pass", "nullok"]),
        PamError::CONV_ERR
    );
    assert!(h.authtok.is_none());
}

#[test]
fn forward_pass_split() {
    use crate::auth::split_forward_pass as split;
    assert_eq!(split(b"pw123456", 6), (&b"pw"[..], &b"123456"[..]));
    assert_eq!(split(b"12345", 6), (&b""[..], &b"12345"[..]));
    assert_eq!(split(b"", 6), (&b""[..], &b""[..]));
    assert_eq!(
        split(b"p\xff12345678", 8),
        (&b"p\xff"[..], &b"12345678"[..])
    );
}

// ---- grace_secs ----

const KEY_A: &str =
    "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHHJbxXb4RdlVzHgl2DxHc5zHVc5wxYvcdZLHhNXE8rH\n";
const KEY_B: &str =
    "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGGJbxXb4RdlVzHgl2DxHc5zHVc5wxYvcdZLHhNXE8rH\n";

/// A login at `t` from `rhost` with `key` (SSH_AUTH_INFO_0), answering `replies`.
fn from(rhost: Option<&str>, key: Option<&str>, t: i64, replies: Vec<Reply>) -> Fake {
    let mut h = Fake::new("alice", replies);
    h.rhost = rhost.map(str::to_owned);
    if let Some(k) = key {
        h.env.insert("SSH_AUTH_INFO_0".into(), k.into());
    }
    h.now = at(t);
    h
}

#[test]
fn a_remembered_device_logs_in_without_a_code_for_grace_secs() {
    let f = Fixture::new();
    let grace = ["grace_secs=600"];
    let mut h = from(Some("192.0.2.7"), Some(KEY_A), NOW, answer(&f.code(NOW)));
    assert_eq!(f.run(&mut h, &grace), PamError::SUCCESS);
    let last = f.status("alice").counters.last_counter;
    // Same host and key, within grace_secs: no prompt, logged as a grace login.
    let mut h = from(Some("192.0.2.7"), Some(KEY_A), NOW + 599, vec![]);
    assert_eq!(f.run(&mut h, &grace), PamError::SUCCESS);
    assert!(h.prompts.is_empty());
    let notices = h.logged(Level::Notice);
    assert!(
        notices
            .iter()
            .any(|l| l.contains("grace login") && l.contains("rhost=192.0.2.7")),
        "{notices:?}"
    );
    assert_eq!(f.status("alice").counters.last_counter, last);
    // Another host, another key, no host at all, or too late: the code is asked.
    for (rhost, key, t) in [
        (Some("192.0.2.8"), Some(KEY_A), NOW + 1),
        (Some("192.0.2.7"), Some(KEY_B), NOW + 1),
        (Some("192.0.2.7"), None, NOW + 1),
        (None, Some(KEY_A), NOW + 1),
        (Some("192.0.2.7"), Some(KEY_A), NOW + 600),
    ] {
        let mut h = from(rhost, key, t, answer(b"000000"));
        assert_eq!(f.run(&mut h, &grace), PamError::AUTH_ERR, "{rhost:?} {t}");
        assert_eq!(h.prompts.len(), 1, "{rhost:?} {t}");
    }
}

#[test]
fn no_device_is_remembered_without_grace_secs_and_none_without_rhost() {
    let f = Fixture::new();
    let mut h = from(Some("192.0.2.7"), None, NOW, answer(&f.code(NOW)));
    assert_eq!(f.run(&mut h, &[]), PamError::SUCCESS);
    assert!(f.status("alice").counters.devices.is_empty());
    let mut h = from(None, Some(KEY_A), NOW + 30, answer(&f.code(NOW + 30)));
    assert_eq!(f.run(&mut h, &["grace_secs=600"]), PamError::SUCCESS);
    assert!(f.status("alice").counters.devices.is_empty());
    // A device remembered under grace_secs gets no grace where it is off.
    let mut h = from(Some("192.0.2.7"), None, NOW + 60, answer(&f.code(NOW + 60)));
    assert_eq!(f.run(&mut h, &["grace_secs=600"]), PamError::SUCCESS);
    assert_eq!(f.status("alice").counters.devices.len(), 1);
    let mut h = from(Some("192.0.2.7"), None, NOW + 61, answer(b"000000"));
    assert_eq!(f.run(&mut h, &[]), PamError::AUTH_ERR);
    assert_eq!(h.prompts.len(), 1);
}

/// Issue 10: with case-insensitive NSS (SSSD, LDAP, AD) `ALICE` is alice. The name given is
/// not enrolled, so it is resolved through NSS and the passwd entry's name is checked:
/// a wrong code is refused (not skipped under `nullok`), the right one accepted and
/// counted for alice. An enrolled name is never looked up.
#[test]
fn a_name_nss_maps_to_an_enrolled_user_is_that_user() {
    let mut f = Fixture::new();
    f.storage.passwd.insert("ALICE".into(), Ok("alice".into()));
    let mut h = Fake::new("ALICE", answer(b"000000"));
    assert_eq!(f.run(&mut h, &["nullok"]), PamError::AUTH_ERR);
    assert_eq!(f.status("alice").counters.failures, 1);
    let code = f.code(NOW);
    let mut h = Fake::new("ALICE", answer(&code));
    assert_eq!(f.run(&mut h, &["nullok"]), PamError::SUCCESS);
    assert!(
        h.logged(Level::Info)
            .iter()
            .any(|l| l.contains("user=alice (given as ALICE)")),
        "{:?}",
        h.logged(Level::Info)
    );
    // The same code under the enrolled name is a replay: one user, one state.
    let mut h = Fake::new("alice", answer(&code));
    assert_eq!(f.run(&mut h, &["nullok"]), PamError::AUTH_ERR);
    assert_eq!(
        *f.storage.lookups.lock().unwrap(),
        vec!["ALICE".to_owned(), "ALICE".to_owned()],
        "an enrolled name costs no NSS lookup"
    );
}

/// Names NSS does not know, or whose entry is not enrolled either, stay "not enrolled";
/// a failed lookup fails closed (it might have named an enrolled user).
#[test]
fn names_nss_cannot_map_to_an_enrolled_user() {
    let mut f = Fixture::new();
    f.storage.passwd.insert("bob".into(), Ok("bob".into()));
    f.storage.passwd.insert("BOB".into(), Ok("bob".into()));
    f.storage
        .passwd
        .insert("Alice".into(), Err("directory unreachable".into()));
    for name in ["nobody-known", "bob", "BOB"] {
        let mut h = Fake::new(name, answer(b"000000"));
        assert_eq!(f.run(&mut h, &["nullok"]), PamError::IGNORE, "{name}");
        let mut h = Fake::new(name, answer(b"000000"));
        assert_eq!(f.run(&mut h, &[]), PamError::AUTH_ERR, "{name}");
    }
    let mut h = Fake::new("Alice", answer(b"000000"));
    assert_eq!(f.run(&mut h, &["nullok"]), PamError::AUTHINFO_UNAVAIL);
    assert!(h.prompts.is_empty());
    assert!(h.logged(Level::Err)[0].contains("NSS lookup failed: directory unreachable"));
}
