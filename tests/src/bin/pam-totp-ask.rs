//! A raw pam_totpd client for the tests, run as a plain user (through setpriv) so that the
//! daemon sees that user's uid in SO_PEERCRED. Prints the reply (Debug) or `error: ...`.
//!
//!   pam-totp-ask SOCKET is-enrolled USER
//!   pam-totp-ask SOCKET verify USER CODE
//!   pam-totp-ask SOCKET status|unlock|remove|new-codes|enroll USER   # administration
//!   pam-totp-ask SOCKET list
//!   pam-totp-ask SOCKET grace USER RHOST
//!   pam-totp-ask SOCKET flood N USER   # holds N idle connections, then asks once more,
//!                                      # prints that reply and HELD, and waits for EOF on stdin

use std::io::{BufRead, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use integration_tests::daemon::{ask, verify};
use proto::Request;

fn show(r: Result<proto::Reply, String>) {
    match r {
        Ok(reply) => println!("{reply:?}"),
        Err(e) => println!("error: {e}"),
    }
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let socket = Path::new(&a[0]);
    match a[1].as_str() {
        "is-enrolled" => show(ask(socket, &Request::IsEnrolled { user: a[2].clone() })),
        "verify" => show(ask(socket, &verify(&a[2], &a[3]))),
        "status" => show(ask(socket, &Request::Status { user: a[2].clone() })),
        "unlock" => show(ask(socket, &Request::Unlock { user: a[2].clone() })),
        "remove" => show(ask(socket, &Request::Remove { user: a[2].clone() })),
        "new-codes" => show(ask(
            socket,
            &Request::NewRecoveryCodes {
                user: a[2].clone(),
                count: 3,
            },
        )),
        "enroll" => show(ask(
            socket,
            &Request::Enroll(proto::Enroll {
                user: a[2].clone(),
                secret: zeroize::Zeroizing::new("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into()),
                algorithm: 0,
                digits: 6,
                period: 30,
                last_counter: None,
                recovery: proto::NewCodes::Generate(1),
                replace: true,
            }),
        )),
        "list" => show(ask(socket, &Request::ListUsers { after: None })),
        "grace" => show(ask(
            socket,
            &Request::Grace(proto::GraceRequest {
                user: a[2].clone(),
                rhost: a[3].clone(),
                key: None,
                service: "test".into(),
            }),
        )),
        "flood" => {
            let n: usize = a[2].parse().unwrap();
            let held: Vec<UnixStream> = (0..n)
                .map(|_| UnixStream::connect(socket).expect("connect"))
                .collect();
            // Let the daemon accept them all before the extra one.
            std::thread::sleep(std::time::Duration::from_millis(300));
            show(ask(socket, &Request::IsEnrolled { user: a[3].clone() }));
            println!("HELD");
            std::io::stdout().flush().unwrap();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            drop(held);
        }
        other => panic!("unknown command {other}"),
    }
}
