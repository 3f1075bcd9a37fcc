//! The real PAM library from the application side: `pam_start_confdir` (Linux-PAM 1.4+)
//! with a scripted conversation, plus fixtures that enroll users in a temporary state dir
//! and write PAM service files that load the built `libpam_totp.so`.
//!
//! All unsafe code of the tests' PAM use is here, each block with its reason.

use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{HostKey, OtpParams, TotpSecret, UserName};

use crate::Store;

// Return codes of Linux-PAM (security/_pam_types.h).
pub const PAM_SUCCESS: c_int = 0;
pub const PAM_SERVICE_ERR: c_int = 3;
pub const PAM_SYSTEM_ERR: c_int = 4;
pub const PAM_PERM_DENIED: c_int = 6;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_AUTHINFO_UNAVAIL: c_int = 9;
pub const PAM_USER_UNKNOWN: c_int = 10;
pub const PAM_MAXTRIES: c_int = 11;
pub const PAM_CONV_ERR: c_int = 19;
pub const PAM_IGNORE: c_int = 25;

// Message styles.
pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_PROMPT_ECHO_ON: c_int = 2;
pub const PAM_ERROR_MSG: c_int = 3;
pub const PAM_TEXT_INFO: c_int = 4;

const PAM_RHOST: c_int = 4;
const PAM_ESTABLISH_CRED: c_int = 0x2;

/// A return code's name, for readable assertion failures.
pub fn code_name(code: c_int) -> String {
    let name = match code {
        0 => "PAM_SUCCESS",
        3 => "PAM_SERVICE_ERR",
        4 => "PAM_SYSTEM_ERR",
        6 => "PAM_PERM_DENIED",
        7 => "PAM_AUTH_ERR",
        9 => "PAM_AUTHINFO_UNAVAIL",
        10 => "PAM_USER_UNKNOWN",
        11 => "PAM_MAXTRIES",
        19 => "PAM_CONV_ERR",
        25 => "PAM_IGNORE",
        _ => "",
    };
    format!("{code} {name}")
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    c_int,
    *mut *const PamMessage,
    *mut *mut PamResponse,
    *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
    fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_setcred(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_open_session(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_close_session(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_chauthtok(pamh: *mut c_void, flags: c_int) -> c_int;
}

/// How the scripted conversation answers the next prompt.
#[derive(Clone, Debug)]
pub enum Reply {
    /// These bytes (a C string: they end at the first NUL).
    Text(Vec<u8>),
    /// Success, with a response whose string is NULL.
    NullAnswer,
    /// Success, with no response array at all.
    NullArray,
    /// The conversation function fails with this code.
    Fail(c_int),
}

impl Reply {
    pub fn text(s: impl AsRef<[u8]>) -> Self {
        Reply::Text(s.as_ref().to_vec())
    }
}

/// A message the module sent: its style and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub style: c_int,
    pub text: String,
}

/// The scripted conversation's state, owned by a [`Pam`] and passed to libpam as appdata.
#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    messages: Vec<Message>,
}

/// The conversation function: answers prompts from the script (failing when it runs out)
/// and records every message.
unsafe extern "C" fn scripted_conv(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    let r = std::panic::catch_unwind(|| {
        // SAFETY: appdata is the Box<Script> owned by the live `Pam` that registered us, and
        // libpam calls us only from inside that Pam's calls, on this thread.
        let script = unsafe { &mut *(appdata as *mut Script) };
        let n = usize::try_from(num_msg).unwrap_or(0);
        // SAFETY: calloc of n zeroed responses; libpam's module frees it (pam_conv(3)).
        let out = unsafe { libc::calloc(n.max(1), std::mem::size_of::<PamResponse>()) }
            as *mut PamResponse;
        if out.is_null() {
            return 5; // PAM_BUF_ERR
        }
        let mut answer_null_array = false;
        for i in 0..n {
            // SAFETY: Linux-PAM passes an array of num_msg pointers to messages.
            let m = unsafe { &**msg.add(i) };
            // SAFETY: each message text is a NUL-terminated string from the module.
            let text = unsafe { CStr::from_ptr(m.msg) }
                .to_string_lossy()
                .into_owned();
            script.messages.push(Message {
                style: m.msg_style,
                text,
            });
            if m.msg_style != PAM_PROMPT_ECHO_OFF && m.msg_style != PAM_PROMPT_ECHO_ON {
                continue;
            }
            let reply = script.replies.pop_front();
            match reply {
                Some(Reply::Text(bytes)) => {
                    let s = CString::new(bytes.split(|b| *b == 0).next().unwrap_or(&[]).to_vec())
                        .expect("no NUL left");
                    // SAFETY: strdup copies into a malloc'ed string the module frees.
                    let copy = unsafe { libc::strdup(s.as_ptr()) };
                    // SAFETY: `out` has n entries and i < n.
                    unsafe { (*out.add(i)).resp = copy };
                }
                Some(Reply::NullAnswer) => {}
                Some(Reply::NullArray) => answer_null_array = true,
                Some(Reply::Fail(code)) => {
                    // SAFETY: our array, never handed out.
                    unsafe { free_responses(out, n) };
                    return code;
                }
                None => {
                    // SAFETY: our array, never handed out.
                    unsafe { free_responses(out, n) };
                    return PAM_CONV_ERR;
                }
            }
        }
        if answer_null_array {
            // SAFETY: our array, never handed out.
            unsafe { free_responses(out, n) };
            // SAFETY: `resp` is libpam's valid out pointer.
            unsafe { *resp = ptr::null_mut() };
        } else {
            // SAFETY: as above; ownership of `out` passes to the caller.
            unsafe { *resp = out };
        }
        PAM_SUCCESS
    });
    r.unwrap_or(PAM_CONV_ERR)
}

/// # Safety
/// `out` is a calloc'ed array of `n` responses, each `resp` null or from strdup, not used
/// again after this.
unsafe fn free_responses(out: *mut PamResponse, n: usize) {
    for i in 0..n {
        // SAFETY: `out` has n entries, each resp null or from strdup (contract above).
        unsafe { libc::free((*out.add(i)).resp as *mut c_void) };
    }
    // SAFETY: from calloc, not used again (contract above).
    unsafe { libc::free(out as *mut c_void) };
}

/// Whether the application hands libpam a conversation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvMode {
    Scripted,
    /// A `struct pam_conv` whose function pointer is NULL.
    NoFunction,
}

/// One PAM transaction (`pam_start_confdir` .. `pam_end`).
pub struct Pam {
    pamh: *mut c_void,
    script: Box<Script>,
    _conv: Box<PamConv>,
    last: c_int,
}

impl Pam {
    /// Starts a transaction for `service` read from `confdir`. `user` None leaves PAM_USER
    /// unset (so `pam_get_user` prompts for it).
    pub fn start(confdir: &Path, service: &str, user: Option<&[u8]>, mode: ConvMode) -> Pam {
        let mut script = Box::<Script>::default();
        let conv = Box::new(PamConv {
            conv: match mode {
                ConvMode::Scripted => Some(scripted_conv),
                ConvMode::NoFunction => None,
            },
            appdata_ptr: &mut *script as *mut Script as *mut c_void,
        });
        let service = CString::new(service).unwrap();
        let user = user.map(|u| CString::new(u).expect("user name without NUL"));
        let confdir = CString::new(confdir.as_os_str().as_bytes()).unwrap();
        let mut pamh = ptr::null_mut();
        // SAFETY: every pointer is valid for the call; libpam copies the strings and the
        // pam_conv struct; the script the appdata points to lives in a Box as long as `Pam`.
        let rc = unsafe {
            pam_start_confdir(
                service.as_ptr(),
                user.as_ref().map_or(ptr::null(), |u| u.as_ptr()),
                &*conv,
                confdir.as_ptr(),
                &mut pamh,
            )
        };
        assert_eq!(rc, PAM_SUCCESS, "pam_start_confdir failed");
        assert!(!pamh.is_null());
        Pam {
            pamh,
            script,
            _conv: conv,
            last: PAM_SUCCESS,
        }
    }

    pub fn set_rhost(&mut self, rhost: &str) {
        let h = CString::new(rhost).unwrap();
        // SAFETY: live handle; libpam copies the string.
        let rc = unsafe { pam_set_item(self.pamh, PAM_RHOST, h.as_ptr() as *const c_void) };
        assert_eq!(rc, PAM_SUCCESS);
    }

    /// Queues answers for the next prompts.
    pub fn reply(&mut self, replies: impl IntoIterator<Item = Reply>) {
        self.script.replies.extend(replies);
    }

    /// Messages the module sent so far (prompts included).
    pub fn messages(&self) -> &[Message] {
        &self.script.messages
    }

    /// Texts of the messages of one style.
    pub fn texts(&self, style: c_int) -> Vec<String> {
        self.script
            .messages
            .iter()
            .filter(|m| m.style == style)
            .map(|m| m.text.clone())
            .collect()
    }

    fn record(&mut self, rc: c_int) -> c_int {
        self.last = rc;
        rc
    }

    pub fn authenticate(&mut self, flags: c_int) -> c_int {
        // SAFETY: live handle; the conversation's script is alive and ours.
        let rc = unsafe { pam_authenticate(self.pamh, flags) };
        self.record(rc)
    }

    pub fn setcred(&mut self) -> c_int {
        // SAFETY: live handle.
        let rc = unsafe { pam_setcred(self.pamh, PAM_ESTABLISH_CRED) };
        self.record(rc)
    }

    pub fn acct_mgmt(&mut self) -> c_int {
        // SAFETY: live handle.
        let rc = unsafe { pam_acct_mgmt(self.pamh, 0) };
        self.record(rc)
    }

    pub fn open_session(&mut self) -> c_int {
        // SAFETY: live handle.
        let rc = unsafe { pam_open_session(self.pamh, 0) };
        self.record(rc)
    }

    pub fn close_session(&mut self) -> c_int {
        // SAFETY: live handle.
        let rc = unsafe { pam_close_session(self.pamh, 0) };
        self.record(rc)
    }

    pub fn chauthtok(&mut self) -> c_int {
        // SAFETY: live handle.
        let rc = unsafe { pam_chauthtok(self.pamh, 0) };
        self.record(rc)
    }
}

impl Drop for Pam {
    fn drop(&mut self) {
        // SAFETY: the handle from pam_start_confdir, ended once.
        unsafe { pam_end(self.pamh, self.last) };
    }
}

/// The result of one scripted `pam_authenticate`.
#[derive(Debug)]
pub struct Attempt {
    pub code: c_int,
    pub messages: Vec<Message>,
}

impl Attempt {
    pub fn texts(&self, style: c_int) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m.style == style)
            .map(|m| m.text.clone())
            .collect()
    }

    pub fn errors(&self) -> Vec<String> {
        self.texts(PAM_ERROR_MSG)
    }

    pub fn infos(&self) -> Vec<String> {
        self.texts(PAM_TEXT_INFO)
    }

    pub fn prompts(&self) -> Vec<Message> {
        self.messages
            .iter()
            .filter(|m| m.style == PAM_PROMPT_ECHO_OFF || m.style == PAM_PROMPT_ECHO_ON)
            .cloned()
            .collect()
    }

    #[track_caller]
    pub fn assert_code(&self, want: c_int) {
        assert_eq!(
            code_name(self.code),
            code_name(want),
            "messages: {:?}",
            self.messages
        );
    }
}

/// target/debug (or target/release) of the running test: its executable is
/// target/<profile>/deps/NAME-hash.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps")
        .to_owned()
}

/// The built module. Panics with a clear message if `cargo build` was not run first.
pub fn module_path() -> PathBuf {
    let p = target_profile_dir().join("libpam_totp.so");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` before `cargo test`",
        p.display()
    );
    p
}

/// Seconds since 1970 now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A fixed secret for tests (20 bytes).
pub const TEST_SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// `n` well-formed codes that `secret` gives at no step within 3 of now: wrong whenever
/// they arrive.
pub fn wrong_codes(secret: &TotpSecret, params: &OtpParams, n: usize) -> Vec<String> {
    let t = now();
    let period = i64::from(params.period());
    let near: Vec<String> = (-3..=3)
        .map(|k| common::totp::code_at(secret, params, (t + k * period) as u64).to_string())
        .collect();
    let digits = usize::from(params.digits());
    (0..10u64.pow(digits as u32))
        .map(|i| format!("{i:0digits$}"))
        .filter(|c| !near.contains(c))
        .take(n)
        .collect()
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

/// A temporary PAM config dir, state dir and host key (all root's, 0700 / 0600), and the
/// service files that load the module with them.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub confdir: PathBuf,
    pub state_dir: PathBuf,
    pub key_file: PathBuf,
    /// A config file path that does not exist unless a test writes it.
    pub config: PathBuf,
    pub params: OtpParams,
}

static SERVICES: AtomicU32 = AtomicU32::new(0);

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Self {
        let dir = safe_tempdir();
        let confdir = dir.path().join("pam.d");
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&confdir).unwrap();
        std::fs::create_dir(&state_dir).unwrap();
        let key_file = dir.path().join("pam_totp.key");
        HostKey::generate().unwrap().store(&key_file).unwrap();
        Fixture {
            confdir,
            state_dir,
            key_file,
            config: dir.path().join("pam_totp.conf"),
            dir,
            params: OtpParams::default(),
        }
    }

    /// The options that point the module at this fixture.
    pub fn base_args(&self) -> String {
        format!(
            "config={} state_dir={} key_file={}",
            self.config.display(),
            self.state_dir.display(),
            self.key_file.display()
        )
    }

    /// Writes a service file (lowercase name) whose auth stack is `lines` (each
    /// `{module}` replaced by the module path and `{base}` by [`Fixture::base_args`]), and
    /// returns its name.
    pub fn service_with(&self, lines: &str) -> String {
        let n = SERVICES.fetch_add(1, Ordering::Relaxed);
        let name = format!("pamtotp-{}-{n}", std::process::id());
        let text = lines
            .replace("{module}", &module_path().display().to_string())
            .replace("{base}", &self.base_args());
        std::fs::write(self.confdir.join(&name), text).unwrap();
        name
    }

    /// A service whose every stack is `pam_totp.so {base} {extra}` alone, `required`.
    pub fn service(&self, extra: &str) -> String {
        self.service_with(&format!(
            "auth required {{module}} {{base}} {extra}\n\
             account required {{module}} {{base}} {extra}\n\
             session required {{module}} {{base}} {extra}\n\
             password required {{module}} {{base}} {extra}\n"
        ))
    }

    /// A /etc/pam.d service (for pamtester) whose auth stack is `pam_totp.so {base} {extra}`
    /// alone; removed when dropped.
    pub fn etc_service(&self, tag: &str, extra: &str) -> EtcPamService {
        EtcPamService::new(
            tag,
            &format!(
                "auth required {} {} {extra}\naccount required pam_permit.so\n",
                module_path().display(),
                self.base_args()
            ),
        )
    }

    pub fn store(&self) -> Store {
        Store::open(&self.state_dir, &self.key_file).expect("open store")
    }

    pub fn secret(&self) -> TotpSecret {
        TotpSecret::from_base32(TEST_SECRET_B32).unwrap()
    }

    /// Enrolls `user` (replacing any enrollment) with the test secret; returns the
    /// recovery codes as shown to the user.
    pub fn enroll(&self, user: &str, recovery_codes: usize) -> Vec<String> {
        self.enroll_with(user, self.secret(), self.params, recovery_codes)
    }

    pub fn enroll_with(
        &self,
        user: &str,
        secret: TotpSecret,
        params: OtpParams,
        recovery_codes: usize,
    ) -> Vec<String> {
        let user = UserName::parse(user).expect("valid user name");
        self.store()
            .enroll(&user, secret, params, None, recovery_codes, true, now())
            .expect("enroll")
            .iter()
            .map(|c| c.display().to_string())
            .collect()
    }

    /// The test secret's code for unix time `t`.
    pub fn code_at(&self, t: i64) -> String {
        common::totp::code_at(&self.secret(), &self.params, t as u64).to_string()
    }

    /// A code of the fixture's secret that is valid at no step within 3 of now, so it is
    /// wrong whatever step the module sees when it arrives.
    pub fn wrong_code(&self) -> String {
        wrong_codes(&self.secret(), &self.params, 1).remove(0)
    }

    /// One full transaction: start, optional rhost, authenticate with `replies`, end.
    pub fn attempt(
        &self,
        service: &str,
        user: &[u8],
        rhost: Option<&str>,
        replies: Vec<Reply>,
    ) -> Attempt {
        let mut pam = Pam::start(&self.confdir, service, Some(user), ConvMode::Scripted);
        if let Some(h) = rhost {
            pam.set_rhost(h);
        }
        pam.reply(replies);
        let code = pam.authenticate(0);
        Attempt {
            code,
            messages: pam.messages().to_vec(),
        }
    }

    /// [`Fixture::attempt`] with one typed answer.
    pub fn try_code(&self, service: &str, user: &str, input: impl AsRef<[u8]>) -> Attempt {
        self.attempt(
            service,
            user.as_bytes(),
            Some("203.0.113.9"),
            vec![Reply::text(input)],
        )
    }
}

/// A service file in /etc/pam.d for clients that cannot take a config dir (pamtester),
/// removed on drop, also when the test fails.
pub struct EtcPamService {
    pub name: String,
    path: PathBuf,
}

impl EtcPamService {
    /// Writes /etc/pam.d/<lowercase unique name> with `text`.
    pub fn new(tag: &str, text: &str) -> Self {
        let n = SERVICES.fetch_add(1, Ordering::Relaxed);
        let name = format!("pamtotp-{}-{}-{n}", tag.to_lowercase(), std::process::id());
        let path = Path::new("/etc/pam.d").join(&name);
        std::fs::write(&path, text).expect("write /etc/pam.d service (tests run as root)");
        EtcPamService { name, path }
    }
}

impl Drop for EtcPamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// libfaketime's preload library (Debian package faketime).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// What a child process did.
#[derive(Debug)]
pub struct Run {
    /// Exit code; `None` if killed by a signal.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// `YYYY-MM-DD hh:mm:ss` (UTC) for unix time `t`, the form that freezes libfaketime's
/// clock (`@T` keeps it ticking).
pub fn faketime_spec(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Runs `cmd` with `input` on stdin, capturing stdout and stderr; kills it and fails the
/// test after `timeout`.
pub fn run_with_timeout(
    mut cmd: std::process::Command,
    input: &[u8],
    timeout: std::time::Duration,
) -> Run {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    // A child that exits without reading gives EPIPE: not our failure.
    let _ = stdin.write_all(input);
    drop(stdin);
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    Run {
        status: status.code(),
        stdout: String::from_utf8_lossy(&out_t.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap()).into_owned(),
    }
}

/// `pamtester -v SERVICE USER authenticate` answering the prompt with `input`; with
/// `faketime`, the clock is frozen at that unix time by libfaketime.
pub fn pamtester(service: &str, user: &str, input: &[u8], faketime: Option<i64>) -> Run {
    assert!(
        Path::new("/usr/bin/pamtester").exists(),
        "pamtester is not installed (Debian package pamtester)"
    );
    let mut cmd = std::process::Command::new("/usr/bin/pamtester");
    cmd.args(["-v", service, user, "authenticate"]);
    if let Some(t) = faketime {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing (Debian package faketime)"
        );
        cmd.env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME", faketime_spec(t))
            .env("TZ", "UTC")
            // Keep the monotonic clock real so the module's lock timeout still runs.
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }
    run_with_timeout(cmd, input, std::time::Duration::from_secs(60))
}
