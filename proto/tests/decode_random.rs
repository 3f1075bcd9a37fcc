//! Property test of the decoders on random and mutated input (no fuzzing engine needed):
//! they never panic, and whatever they accept re-encodes to exactly the bytes read, so
//! every message has one encoding.

use proto::{read_frame, Reply, Request, Verify, HEADER_LEN, MAX_FRAME_LEN};
use zeroize::Zeroizing;

/// xorshift64*: deterministic, so a failure can be replayed from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn check(body: &[u8]) {
    if let Ok(r) = Request::decode(body) {
        assert_eq!(&r.encode()[HEADER_LEN..], body, "{r:?}");
    }
    if let Ok(r) = Reply::decode(body) {
        assert_eq!(&r.encode()[HEADER_LEN..], body, "{r:?}");
    }
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(body);
    if let Ok(b) = read_frame(&mut &framed[..]) {
        assert_eq!(&b[..], body);
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let reqs = [
        Request::Verify(Verify {
            user: "alice".into(),
            code: Zeroizing::new("123456".into()),
            rhost: Some("192.0.2.7".into()),
            service: "i3lock".into(),
            key: Some(proto::DeviceKey {
                digest: [3; 32],
                label: "ssh-ed25519 SHA256:x".into(),
            }),
        }),
        Request::IsEnrolled { user: "bob".into() },
        Request::Enroll(proto::Enroll {
            user: "carol".into(),
            secret: Zeroizing::new("GEZDGNBVGY3TQOJQ".into()),
            algorithm: 1,
            digits: 6,
            period: 30,
            last_counter: Some(7),
            recovery: proto::NewCodes::Keep(vec![Zeroizing::new("12345678".into()); 3]),
            replace: true,
        }),
        Request::NewRecoveryCodes {
            user: "dave".into(),
            count: 10,
        },
        Request::ListUsers {
            after: Some("a".into()),
        },
        Request::Grace(proto::GraceRequest {
            user: "carol".into(),
            rhost: "192.0.2.8".into(),
            key: None,
            service: "sshd".into(),
        }),
    ];
    let replies = [
        Reply::Accepted {
            step: 99,
            prior: proto::Prior {
                count: 2,
                last_rhost: Some("x".into()),
                last_at: Some(5),
            },
        },
        Reply::Rejected {
            failures: 1,
            locked_until: Some(9),
        },
        Reply::Unavailable(proto::Unavailable::Busy),
        Reply::Locked { until: 3 },
        Reply::Status(proto::Status {
            last_rejected_rhost: Some("h".into()),
            last_counter: Some(3),
            ..Default::default()
        }),
        Reply::RecoveryCodes(vec![Zeroizing::new("ABCDE-FGHJK".into()); 2]),
        Reply::Users {
            names: vec!["a".into(), "bb".into()],
            more: true,
        },
    ];
    reqs.iter()
        .map(|r| r.encode()[HEADER_LEN..].to_vec())
        .chain(replies.iter().map(|r| r.encode()[HEADER_LEN..].to_vec()))
        .collect()
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..100_000 {
        let n = rng.below(MAX_FRAME_LEN + 8);
        let mut b: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        // Give most inputs a valid version and a known kind, so the field decoders run.
        if b.len() >= 2 && rng.below(8) != 0 {
            b[0] = proto::VERSION;
            b[1] = [0x01, 0x02, 0x81, 0x82, 0x83, 0x84, 0x85, 0x88][rng.below(8)];
        }
        check(&b);
    }
}

#[test]
fn mutated_frames_never_panic_and_stay_canonical() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let seeds = seeds();
    let mut accepted = 0;
    for _ in 0..100_000 {
        let mut b = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(4) {
            match rng.below(4) {
                0 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
                1 if !b.is_empty() => {
                    b.truncate(rng.below(b.len()));
                }
                2 => b.push(rng.next() as u8),
                _ if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
                _ => {}
            }
        }
        if Request::decode(&b).is_ok() || Reply::decode(&b).is_ok() {
            accepted += 1;
        }
        check(&b);
    }
    // The mutations must leave some frames valid, or the canonical check tests nothing.
    assert!(accepted > 1000, "only {accepted} mutated frames decoded");
}
