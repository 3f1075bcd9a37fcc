//! The real PAM handle: pamsm for items, the user and pam_syslog; our own conversation call.
//!
//! pamsm's `conv` dereferences the response array without checking it for NULL (a
//! conversation function may return success and no array), never frees the response, and
//! never wipes it. Ours checks every pointer, copies the answer into wiped memory at once,
//! wipes libpam's copy and frees both allocations, as the application allocated them with
//! malloc for the module to free (pam_conv(3)).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;
use std::time::SystemTime;

use pamsm::{LogLvl, Pam, PamError, PamLibExt};
use zeroize::{Zeroize, Zeroizing};

use crate::handle::{ConvError, Handle, Level, Notice};

const PAM_SUCCESS: c_int = 0;
const PAM_CONV: c_int = 5;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;

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
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_get_item(pamh: *const c_void, item_type: c_int, item: *mut *const c_void) -> c_int;
}

// `raw_handle` relies on this layout; a pamsm that changed it would not compile.
const _: () = assert!(std::mem::size_of::<Pam>() == std::mem::size_of::<*const c_void>());

/// `pam_handle_t *` behind a pamsm [`Pam`].
fn raw_handle(pamh: &Pam) -> *const c_void {
    // SAFETY: pamsm declares `Pam` as `#[repr(transparent)]` over `*const c_void`, the
    // libpam handle, so reading it as that pointer reads exactly that field.
    unsafe { std::mem::transmute_copy::<Pam, *const c_void>(pamh) }
}

/// The handle libpam passed to an entry point, valid for the duration of that call.
pub struct LibPam<'a> {
    pamh: &'a Pam,
}

impl<'a> LibPam<'a> {
    pub fn new(pamh: &'a Pam) -> Self {
        LibPam { pamh }
    }

    /// One message, one answer (if the application gave one).
    fn converse(&self, style: c_int, text: &str) -> Result<Option<Zeroizing<Vec<u8>>>, ConvError> {
        // Our own texts never hold a NUL.
        let text = CString::new(text).map_err(|_| ConvError::Failed(PamError::BUF_ERR as i32))?;
        let mut item: *const c_void = ptr::null();
        // SAFETY: the handle is the one libpam gave this call; `item` is a valid out pointer.
        let rc = unsafe { pam_get_item(raw_handle(self.pamh), PAM_CONV, &mut item) };
        if rc != PAM_SUCCESS {
            return Err(ConvError::Failed(rc));
        }
        if item.is_null() {
            return Err(ConvError::NoConversation);
        }
        // SAFETY: libpam stores PAM_CONV as a `struct pam_conv` it owns, alive until
        // pam_end; we only read it.
        let conv = unsafe { &*(item as *const PamConv) };
        let Some(conv_fn) = conv.conv else {
            return Err(ConvError::NoConversation);
        };
        let message = PamMessage {
            msg_style: style,
            msg: text.as_ptr(),
        };
        let mut messages: *const PamMessage = &message;
        let mut resp: *mut PamResponse = ptr::null_mut();
        // SAFETY: one message, laid out as both the Linux-PAM and the Solaris convention
        // read it; `message` and `text` outlive the call; `resp` is a valid out pointer.
        let rc = unsafe { conv_fn(1, &mut messages, &mut resp, conv.appdata_ptr) };
        // SAFETY: `resp` is null or an array of one response malloc'ed by the application,
        // ours to free; we read it once and never use it after freeing.
        let answer = unsafe { take_response(resp) };
        if rc != PAM_SUCCESS {
            return Err(ConvError::Failed(rc));
        }
        Ok(answer)
    }
}

/// Copies, wipes and frees a conversation response.
///
/// # Safety
/// `resp` is null or points to one `PamResponse` allocated with malloc, whose `resp` is
/// null or a NUL-terminated string allocated with malloc; both are freed here.
unsafe fn take_response(resp: *mut PamResponse) -> Option<Zeroizing<Vec<u8>>> {
    if resp.is_null() {
        return None;
    }
    // SAFETY: non-null, points to a response (contract above).
    let s = unsafe { (*resp).resp };
    let answer = if s.is_null() {
        None
    } else {
        // SAFETY: a NUL-terminated string (contract above).
        let len = unsafe { CStr::from_ptr(s) }.to_bytes().len();
        // SAFETY: `len` bytes from `s` are the string, which we own and may overwrite.
        let bytes = unsafe { std::slice::from_raw_parts_mut(s as *mut u8, len) };
        let copy = Zeroizing::new(bytes.to_vec());
        bytes.zeroize();
        // SAFETY: malloc'ed by the application for us to free; not used again.
        unsafe { libc::free(s as *mut c_void) };
        Some(copy)
    };
    // SAFETY: malloc'ed by the application for us to free; not used again.
    unsafe { libc::free(resp as *mut c_void) };
    answer
}

fn lossy(item: Result<Option<&CStr>, PamError>) -> Option<String> {
    match item {
        Ok(Some(s)) => Some(s.to_string_lossy().into_owned()),
        _ => None,
    }
}

impl Handle for LibPam<'_> {
    fn user(&mut self) -> Result<Option<Vec<u8>>, PamError> {
        // pam_get_user prompts (with libpam's default prompt) only if PAM_USER is unset.
        self.pamh
            .get_user(None)
            .map(|u| u.map(|u| u.to_bytes().to_vec()))
    }

    fn service(&self) -> Option<String> {
        lossy(self.pamh.get_service())
    }

    fn rhost(&self) -> Option<String> {
        lossy(self.pamh.get_rhost())
    }

    fn env(&self, name: &str) -> Option<String> {
        lossy(self.pamh.getenv(name))
    }

    fn prompt(&mut self, prompt: &str, echo: bool) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        let style = if echo {
            PAM_PROMPT_ECHO_ON
        } else {
            PAM_PROMPT_ECHO_OFF
        };
        self.converse(style, prompt)?.ok_or(ConvError::NoAnswer)
    }

    fn set_authtok(&mut self, password: &[u8]) -> Result<(), PamError> {
        // A password with a NUL could not be typed at a prompt that returned a C string.
        // Room for the NUL up front, so that CString::new never reallocates and leaves an
        // unwiped copy behind.
        let mut bytes = Vec::with_capacity(password.len() + 1);
        bytes.extend_from_slice(password);
        let c = CString::new(bytes).map_err(|e| {
            e.into_vec().zeroize();
            PamError::BUF_ERR
        })?;
        // libpam copies the item; our copy is wiped below.
        let r = self.pamh.set_authtok(&c);
        c.into_bytes_with_nul().zeroize();
        r
    }

    fn tell(&mut self, kind: Notice, text: &str) {
        let style = match kind {
            Notice::Error => PAM_ERROR_MSG,
            Notice::Info => PAM_TEXT_INFO,
        };
        // A message that cannot be shown changes nothing about the decision.
        let _ = self.converse(style, text);
    }

    fn log(&self, level: Level, text: &str) {
        let lvl = match level {
            Level::Err => LogLvl::ERR,
            Level::Warning => LogLvl::WARNING,
            Level::Notice => LogLvl::NOTICE,
            Level::Info => LogLvl::INFO,
            Level::Debug => LogLvl::DEBUG,
        };
        // pam_syslog logs to authpriv under the host's own identity.
        let _ = self.pamh.syslog(lvl, text);
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
