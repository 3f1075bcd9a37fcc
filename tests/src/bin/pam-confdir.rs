//! `pam-confdir CONFDIR SERVICE USER`: one `pam_authenticate` through the real libpam with
//! a PAM stack read from CONFDIR (`pam_start_confdir`), as whoever runs it: the tests run
//! it as a plain user (through setpriv) with a stack that user wrote. Each line of stdin
//! answers one prompt. Prints `rc=N NAME`, then each message as `STYLE: TEXT`.

use std::io::BufRead;
use std::path::Path;

use integration_tests::pam::{code_name, ConvMode, Pam, Reply};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let mut pam = Pam::start(
        Path::new(&a[0]),
        &a[1],
        Some(a[2].as_bytes()),
        ConvMode::Scripted,
    );
    let replies: Vec<Reply> = std::io::stdin()
        .lock()
        .lines()
        .map(|l| Reply::text(l.unwrap()))
        .collect();
    pam.reply(replies);
    let rc = pam.authenticate(0);
    println!("rc={}", code_name(rc));
    for m in pam.messages() {
        println!("{}: {}", m.style, m.text);
    }
}
