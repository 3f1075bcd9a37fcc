//! pam_totpd as a real process in the foreground, with its own config, socket and state
//! directory, spoken to over the raw protocol: its decisions, SO_PEERCRED authorization
//! (plain users through setpriv), bad input, stalled and vanished clients, 64 callers at
//! once, the connection bounds, the socket path checks and refused startups.

mod e2e_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::UserName;
use e2e_support::TestUser;
use integration_tests::daemon::*;
use integration_tests::pam::*;
use proto::{read_frame, Prior, Reply, Request, Unavailable, MAX_FRAME_LEN};

const ASK: &str = env!("CARGO_BIN_EXE_pam-totp-ask");

fn started(extra: &str) -> (Fixture, TestDaemon) {
    let f = Fixture::new();
    write_config(&f, &config_text(&f, extra));
    let d = TestDaemon::start(&f.config, &socket_of(&f));
    (f, d)
}

fn is_enrolled(user: &str) -> Request {
    Request::IsEnrolled { user: user.into() }
}

fn code_now(f: &Fixture) -> String {
    f.code_at(now())
}

/// `pam-totp-ask` as `user` (its uid is what the daemon sees).
fn ask_as(user: &TestUser, socket: &std::path::Path, args: &[&str]) -> String {
    let mut a = vec![socket.to_str().unwrap()];
    a.extend_from_slice(args);
    let r = e2e_support::run(user.command(ASK, &a));
    assert!(r.success(), "pam-totp-ask: {r:?}");
    r.stdout.trim().to_owned()
}

/// A raw exchange: writes `bytes`, then reads until the daemon closes; returns the reply
/// frames' decoding, if any, and how long until the close.
fn raw(socket: &std::path::Path, bytes: &[u8]) -> (Option<Reply>, Duration) {
    let start = Instant::now();
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let reply = read_frame(&mut &all[..])
        .ok()
        .and_then(|b| Reply::decode(&b).ok());
    (reply, start.elapsed())
}

#[test]
fn root_gets_every_outcome_under_the_daemons_policy() {
    let (f, d) = started("max_failures = 3\nlockout_secs = 600");
    f.enroll("alice", 0);
    let codes = f.enroll("carol", 2);
    assert_eq!(d.ask(&is_enrolled("alice")), Ok(Reply::Enrolled));
    assert_eq!(d.ask(&is_enrolled("bob")), Ok(Reply::NotEnrolled));
    assert_eq!(d.ask(&verify("bob", "123456")), Ok(Reply::NotEnrolled));
    assert_eq!(d.ask(&verify("../etc", "123456")), Ok(Reply::BadRequest));

    let wrong = wrong_codes(&f.secret(), &f.params, 3);
    for (i, w) in wrong.iter().enumerate() {
        let r = d.ask(&verify("alice", w)).unwrap();
        let Reply::Rejected {
            failures,
            locked_until,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(failures, i as u32 + 1);
        assert_eq!(locked_until.is_some(), i == 2, "{r:?}");
    }
    let r = d.ask(&verify("alice", &code_now(&f))).unwrap();
    assert!(
        matches!(r, Reply::Locked { until } if until > now() + 500),
        "{r:?}"
    );
    let st = f
        .store()
        .status(&UserName::parse("alice").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(st.counters.failures, 3);
    assert!(st.locked(now()));

    // A right code, then the same code again (a replay), then a recovery code.
    let c = code_now(&f);
    let r = d.ask(&verify("carol", &c)).unwrap();
    assert!(
        matches!(&r, Reply::Accepted { prior, .. } if *prior == Prior::default()),
        "{r:?}"
    );
    let r = d.ask(&verify("carol", &c)).unwrap();
    assert!(matches!(r, Reply::Replayed { failures: 1, .. }), "{r:?}");
    let r = d.ask(&verify("carol", &codes[0])).unwrap();
    assert!(
        matches!(&r, Reply::RecoveryAccepted { remaining: 1, prior } if prior.count == 1
            && prior.last_rhost.as_deref() == Some("198.51.100.4")),
        "{r:?}"
    );
}

#[test]
fn administration_is_for_root_only() {
    let (f, d) = started("");
    let a = TestUser::create("dad");
    f.enroll(&a.name, 2);
    let sock = d.socket.clone();
    // A plain user gets nothing, even about its own account, and changes nothing.
    for args in [
        &["status", &a.name][..],
        &["unlock", &a.name],
        &["remove", &a.name],
        &["new-codes", &a.name],
        &["enroll", &a.name],
        &["list"],
    ] {
        assert_eq!(ask_as(&a, &sock, args), "Denied", "{args:?}");
    }
    let user = UserName::parse(&a.name).unwrap();
    let st = f.store().status(&user).unwrap().unwrap();
    assert_eq!(st.recovery_codes_left, 2);
    assert!(
        d.log().contains("administration request from uid="),
        "{}",
        d.log()
    );
    // Root may (the files backend here): status, list, new codes, remove.
    match d.ask(&Request::Status {
        user: a.name.clone(),
    }) {
        Ok(Reply::Status(s)) => assert_eq!((s.recovery_codes_left, s.digits), (2, 6)),
        r => panic!("{r:?}"),
    }
    match d.ask(&Request::ListUsers { after: None }) {
        Ok(Reply::Users { names, more: false }) => assert!(names.contains(&a.name)),
        r => panic!("{r:?}"),
    }
    match d.ask(&Request::NewRecoveryCodes {
        user: a.name.clone(),
        count: 4,
    }) {
        Ok(Reply::RecoveryCodes(c)) => assert_eq!(c.len(), 4),
        r => panic!("{r:?}"),
    }
    assert_eq!(
        f.store()
            .status(&user)
            .unwrap()
            .unwrap()
            .recovery_codes_left,
        4
    );
    assert_eq!(
        d.ask(&Request::Remove {
            user: a.name.clone()
        }),
        Ok(Reply::Done)
    );
    assert!(f.store().status(&user).unwrap().is_none());
}

#[test]
fn a_plain_user_asks_only_about_its_own_account() {
    let (f, d) = started("max_failures = 5");
    let a = TestUser::create("dpa");
    let b = TestUser::create("dpb");
    f.enroll(&a.name, 0);
    f.enroll(&b.name, 0);
    let sock = d.socket.clone();
    assert_eq!(ask_as(&a, &sock, &["is-enrolled", &a.name]), "Enrolled");
    // Another account, root's, and a name with no passwd entry: all denied.
    for other in [b.name.as_str(), "root", "ptnosuchuser"] {
        assert_eq!(
            ask_as(&a, &sock, &["is-enrolled", other]),
            "Denied",
            "{other}"
        );
    }
    let c = code_now(&f);
    assert_eq!(ask_as(&a, &sock, &["verify", &b.name, &c]), "Denied");
    // B's state was not touched: its code is still fresh for B.
    let st = f
        .store()
        .status(&UserName::parse(&b.name).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        (st.counters.failures, st.counters.last_counter),
        (0, None),
        "a denied request must not touch the account"
    );
    assert!(ask_as(&b, &sock, &["verify", &b.name, &c]).starts_with("Accepted"));
    // A's own attempts count towards A's lock.
    let w = f.wrong_code();
    assert_eq!(
        ask_as(&a, &sock, &["verify", &a.name, &w]),
        "Rejected { failures: 1, locked_until: None }"
    );
    // Root may ask about anyone.
    assert_eq!(d.ask(&is_enrolled(&b.name)), Ok(Reply::Enrolled));
    assert_eq!(d.ask(&is_enrolled("ptnosuchuser")), Ok(Reply::NotEnrolled));
    assert!(
        d.log().contains("not this caller's account: denied"),
        "{}",
        d.log()
    );
}

#[test]
fn garbage_oversized_stalled_and_vanished_clients_never_stop_it() {
    let (f, mut d) = started("");
    f.enroll("alice", 0);
    let sock = d.socket.clone();

    // Framed junk: a version and kind that do not exist.
    let (r, _) = raw(&sock, &[0, 0, 0, 5, 9, 9, 9, 9, 9]);
    assert_eq!(r, Some(Reply::BadRequest));
    // Unframed text: "GET " read as a length far above the maximum.
    let (r, t) = raw(&sock, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r, Some(Reply::BadRequest));
    assert!(
        t < Duration::from_secs(2),
        "refused at once, not after {t:?}"
    );
    // Oversized by one byte, with nothing after the prefix: refused on the prefix alone.
    let (r, t) = raw(&sock, &((MAX_FRAME_LEN as u32 + 1).to_be_bytes()));
    assert_eq!(r, Some(Reply::BadRequest));
    assert!(t < Duration::from_secs(2), "{t:?}");
    // Random bytes of every length.
    let mut x: u32 = 12345;
    for n in [1usize, 3, 4, 7, 100, 2000] {
        let junk: Vec<u8> = (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        let mut s = UnixStream::connect(&sock).unwrap();
        let _ = s.write_all(&junk);
        // Gone at once: half a frame, then the caller vanishes.
    }

    // Stalled callers: one silent, one with half a frame, one dribbling a byte every
    // 300 ms. Meanwhile others are served at once.
    let frame = verify("alice", "123456").encode().to_vec();
    let stalled: Vec<_> = (0..3)
        .map(|i| {
            let sock = sock.clone();
            let frame = frame.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut s = UnixStream::connect(&sock).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                match i {
                    0 => {}
                    1 => s.write_all(&frame[..frame.len() / 2]).unwrap(),
                    _ => {
                        for b in &frame {
                            if s.write_all(&[*b]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(300));
                        }
                    }
                }
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
                (i, start.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(d.ask(&is_enrolled("alice")), Ok(Reply::Enrolled));
    assert!(t.elapsed() < Duration::from_secs(2), "served meanwhile");
    for h in stalled {
        let (i, waited) = h.join().unwrap();
        // Closed by the daemon's 5 s deadline for the whole request: the dribbler would
        // need 12 s to finish its frame.
        assert!(
            waited >= Duration::from_millis(4500) && waited < Duration::from_secs(9),
            "stalled caller {i} closed after {waited:?}"
        );
    }
    // A caller that sends a request and vanishes before the reply.
    {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(&verify("alice", &f.wrong_code()).encode())
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!d.exited(), "the daemon died: {}", d.log());
    assert_eq!(d.ask(&is_enrolled("alice")), Ok(Reply::Enrolled));
}

#[test]
fn sixty_four_callers_at_once() {
    let (f, d) = started("max_failures = 0");
    let users: Vec<String> = (0..64).map(|i| format!("many{i}")).collect();
    for u in &users {
        f.enroll(u, 0);
    }
    f.enroll("shared", 0);
    let sock = Arc::new(d.socket.clone());
    let run = |reqs: Vec<Request>| -> Vec<Reply> {
        let barrier = Arc::new(Barrier::new(reqs.len()));
        let handles: Vec<_> = reqs
            .into_iter()
            .map(|req| {
                let (barrier, sock) = (barrier.clone(), sock.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    ask(&sock, &req).expect("every caller is answered")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    // 64 users, each with its right code.
    let c = code_now(&f);
    let replies = run(users.iter().map(|u| verify(u, &c)).collect());
    assert!(
        replies.iter().all(|r| matches!(r, Reply::Accepted { .. })),
        "{replies:?}"
    );
    // One code from 64 callers at once: accepted exactly once.
    let replies = run((0..64).map(|_| verify("shared", &c)).collect());
    let accepted = replies
        .iter()
        .filter(|r| matches!(r, Reply::Accepted { .. }))
        .count();
    let replayed = replies
        .iter()
        .filter(|r| matches!(r, Reply::Replayed { .. }))
        .count();
    assert_eq!((accepted, replayed), (1, 63), "{replies:?}");
    // 64 wrong codes at once: every one counted.
    let w = f.wrong_code();
    run((0..64).map(|_| verify("shared", &w)).collect());
    let st = f
        .store()
        .status(&UserName::parse("shared").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(st.counters.failures, 63 + 64);
}

#[test]
fn connections_over_the_bounds_are_refused_and_others_served() {
    let (f, d) = started("");
    let a = TestUser::create("dfa");
    let b = TestUser::create("dfb");
    f.enroll(&a.name, 0);
    let sock = d.socket.clone();

    // One plain user holds 16 idle connections: its 17th is refused at once, while root
    // and another user are served.
    let mut flood = a.command(ASK, &[sock.to_str().unwrap(), "flood", "16", &a.name]);
    flood.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = flood.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "Unavailable(Busy)");
    let mut held = String::new();
    out.read_line(&mut held).unwrap();
    assert_eq!(held.trim(), "HELD");
    assert_eq!(d.ask(&is_enrolled(&a.name)), Ok(Reply::Enrolled));
    assert_eq!(ask_as(&b, &sock, &["is-enrolled", &b.name]), "NotEnrolled");
    drop(child.stdin.take());
    child.wait().unwrap();

    // Everyone at once: past 128 open connections, a caller is refused at once.
    let idle: Vec<UnixStream> = (0..128)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(
        d.ask(&is_enrolled(&a.name)),
        Ok(Reply::Unavailable(Unavailable::Busy))
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match d.ask(&is_enrolled(&a.name)) {
            Ok(Reply::Enrolled) => break,
            r => assert!(
                Instant::now() < deadline,
                "not served after the flood: {r:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the daemon expecting it to refuse to start; returns its output.
fn refused(args: &[&str], code: i32) -> String {
    let mut c = Command::new(daemon_path());
    c.args(args);
    let r = run_with_timeout(c, b"", Duration::from_secs(10));
    assert_eq!(r.status, Some(code), "{r:?}");
    r.stderr
}

#[test]
fn socket_paths_are_checked() {
    let f = Fixture::new();
    write_config(&f, &config_text(&f, ""));
    let sock = socket_of(&f);
    let conf = f.config.to_str().unwrap().to_owned();
    let run_dir = sock.parent().unwrap().to_owned();

    // Created: a 0755 directory and a 0666 socket.
    let d = TestDaemon::start(&f.config, &sock);
    let dm = std::fs::metadata(&run_dir).unwrap();
    let sm = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!((dm.mode() & 0o7777, dm.uid()), (0o755, 0));
    assert_eq!((sm.mode() & 0o7777, sm.uid()), (0o666, 0));
    // A second daemon on a live socket refuses, and the first goes on.
    let out = refused(&["--config", &conf], 1);
    assert!(out.contains("another daemon is listening"), "{out}");
    assert_eq!(d.ask(&is_enrolled("x")), Ok(Reply::NotEnrolled));
    drop(d);

    // A stale socket (nobody listening) is replaced.
    std::fs::remove_file(&sock).ok();
    drop(UnixListener::bind(&sock).unwrap());
    let d = TestDaemon::start(&f.config, &sock);
    assert_eq!(d.ask(&is_enrolled("x")), Ok(Reply::NotEnrolled));
    drop(d);

    // Something else in the way is never removed.
    std::fs::remove_file(&sock).ok();
    std::fs::write(&sock, "precious").unwrap();
    let out = refused(&["--config", &conf], 1);
    assert!(out.contains("not a socket"), "{out}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "precious");
    std::fs::remove_file(&sock).unwrap();

    // An unsafe directory: writable by others, not root's, or a symlink.
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = refused(&["--config", &conf], 1);
    assert!(out.contains("unsafe socket directory"), "{out}");
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(1), None).unwrap();
    let out = refused(&["--config", &conf], 1);
    assert!(out.contains("unsafe socket directory"), "{out}");
    std::fs::remove_dir(&run_dir).unwrap();
    let elsewhere = f.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &run_dir).unwrap();
    let out = refused(&["--config", &conf], 1);
    assert!(out.contains("unsafe socket directory"), "{out}");
    assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
}

#[test]
fn bad_config_or_arguments_refuse_to_start() {
    let f = Fixture::new();
    let conf = f.config.to_str().unwrap().to_owned();
    for (text, why) in [
        (
            config_text(
                &f,
                "backend = \"etcd\"\n[etcd]\nendpoints = [\"https://e:2379\"]",
            ),
            "etcd",
        ),
        (
            config_text(
                &f,
                "backend = \"etcd\"\n[etcd]\nendpoints = [\"https://e:2379\"]\n\
                 tls_ca = \"/nonexistent/ca.pem\"",
            ),
            "tls_ca, tls_cert and tls_key go together",
        ),
        (
            config_text(
                &f,
                "backend = \"etcd\"\n[etcd]\nendpoints = [\"https://e:2379\"]\n\
                 tls_ca = \"/nonexistent/ca.pem\"\ntls_cert = \"/nonexistent/c.pem\"\n\
                 tls_key = \"/nonexistent/c.key\"",
            ),
            "/nonexistent/ca.pem",
        ),
        ("socket = \"relative/socket\"".to_owned(), "socket"),
        ("window = 99".to_owned(), "window"),
        ("this is not toml".to_owned(), "pam_totp.conf"),
    ] {
        write_config(&f, &text);
        let out = refused(&["--config", &conf], 1);
        assert!(
            out.contains(why) && out.contains("not starting"),
            "{text}: {out}"
        );
    }
    // A config others may write could redirect the state: refused.
    write_config(&f, &config_text(&f, ""));
    std::fs::set_permissions(&f.config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = refused(&["--config", &conf], 1);
    assert!(out.contains("must be owned by root"), "{out}");
    for args in [
        &["--state-dir", "/tmp"][..],
        &["--config"],
        &["--config", "relative.conf"],
    ] {
        refused(args, 2);
    }
    assert!(!socket_of(&f).exists());
}

/// An HOTP token enrolled through the daemon (as `totp-enroll import --hotp` does on a
/// fleet) is stored as HOTP, reported as HOTP, and its next counter's code is accepted
/// once: the algorithm byte's HOTP bit is not dropped on the way.
#[test]
fn an_hotp_enrollment_through_the_daemon_stays_hotp() {
    let (f, d) = started("");
    let a = TestUser::create("dho");
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let enroll = Request::Enroll(proto::Enroll {
        user: a.name.clone(),
        secret: zeroize::Zeroizing::new(secret.into()),
        algorithm: proto::HOTP,
        digits: 6,
        period: 30,
        // The token's next counter is 5.
        last_counter: Some(4),
        recovery: proto::NewCodes::Generate(1),
        replace: false,
    });
    match d.ask(&enroll) {
        Ok(Reply::RecoveryCodes(c)) => assert_eq!(c.len(), 1),
        r => panic!("{r:?}"),
    }
    let user = UserName::parse(&a.name).unwrap();
    let st = f.store().status(&user).unwrap().unwrap();
    assert_eq!(st.params.kind(), common::OtpKind::Hotp);
    match d.ask(&Request::Status {
        user: a.name.clone(),
    }) {
        Ok(Reply::Status(s)) => assert_eq!(s.algorithm, proto::HOTP),
        r => panic!("{r:?}"),
    }
    let totp_secret = common::TotpSecret::from_base32(secret).unwrap();
    let code = common::hotp::code_at(&totp_secret, &st.params, 5);
    assert!(
        matches!(d.ask(&verify(&a.name, &code)), Ok(Reply::Accepted { .. })),
        "the code of counter 5"
    );
    assert!(
        matches!(d.ask(&verify(&a.name, &code)), Ok(Reply::Replayed { .. })),
        "the same code again"
    );
}
