//! The daemon protocol's decoders (requests in the root daemon, replies inside sshd and
//! sudo) must turn any bytes into a message or an error, never a panic; whatever they
//! accept re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{read_frame, Reply, Request, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        assert_eq!(&r.encode()[HEADER_LEN..], data);
    }
    if let Ok(r) = Reply::decode(data) {
        assert_eq!(&r.encode()[HEADER_LEN..], data);
    }
    let _ = read_frame(&mut &data[..]);
});
