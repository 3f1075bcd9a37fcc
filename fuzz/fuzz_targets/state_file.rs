//! The state-file parser must turn any bytes into a state or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use common::state::UserState;
use common::{HostKey, UserName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static KEY: OnceLock<HostKey> = OnceLock::new();
    let key = KEY.get_or_init(|| HostKey::generate().unwrap());
    let user = UserName::parse("fuzz").unwrap();
    let _ = UserState::from_toml(data, &user, &[key], "fuzz".as_ref());
});
