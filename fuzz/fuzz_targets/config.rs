//! The config parser must turn any text into a config or an error, never a panic.
#![no_main]

use common::config::{apply_toml, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = apply_toml(&mut Config::default(), text);
        let args: Vec<&str> = text.split_whitespace().collect();
        let _ = common::config::load_with_args(&args);
    }
});
