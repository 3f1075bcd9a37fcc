//! The login policy: one pure function from what is known about an attempt to the new
//! counters and the [`Outcome`]. Every rule about lockout, replay, recovery codes and
//! counting lives here, once; [`crate::login`] feeds it values loaded from a backend and
//! writes back what it returns. Nothing here does I/O, reads a clock or looks at a secret.

use crate::counters::{self, Counters};
use crate::device::{Device, DeviceIdentity, MAX_DEVICES};
use crate::recovery;
use crate::totp::TimeStep;

/// Policy and context of one login attempt.
#[derive(Clone, Debug)]
pub struct AuthRequest<'a> {
    /// Unix time in seconds.
    pub now: i64,
    /// Steps accepted either side of now.
    pub window: u32,
    /// Consecutive failures that lock the user; 0 never locks.
    pub max_failures: u32,
    pub lockout_secs: u64,
    /// Remote host, for the notice shown after rejected attempts.
    pub rhost: Option<&'a str>,
    /// The longest lock: each lock after another without a success doubles, up to this.
    pub lockout_max_secs: u64,
    /// HOTP enrollments: counters after `last_counter` that a code may have.
    pub hotp_window: u32,
    /// How long a device from which a code was accepted needs none (0: off, and no
    /// device is remembered).
    pub grace_secs: u64,
    /// The remote device of this login, if it has one and may be remembered.
    pub device: Option<&'a DeviceIdentity>,
}

impl<'a> AuthRequest<'a> {
    pub fn from_config(config: &crate::Config, now: i64, rhost: Option<&'a str>) -> Self {
        AuthRequest {
            now,
            window: config.window,
            max_failures: config.max_failures,
            lockout_secs: config.lockout_secs,
            rhost,
            lockout_max_secs: config.lockout_max_secs,
            hotp_window: config.hotp_window,
            grace_secs: config.grace_secs,
            device: None,
        }
    }

    /// The same request from `device` (remembered on success while `grace_secs` > 0).
    pub fn with_device(self, device: Option<&'a DeviceIdentity>) -> Self {
        AuthRequest { device, ..self }
    }
}

/// How long the lock after `lockouts` earlier ones (without a success between) lasts:
/// `lockout_secs` doubled each time, up to `lockout_max_secs`, never below `lockout_secs`.
pub fn lock_duration(lockout_secs: u64, lockout_max_secs: u64, lockouts: u32) -> u64 {
    let doubled = lockout_secs.saturating_mul(1u64.checked_shl(lockouts).unwrap_or(u64::MAX));
    doubled.min(lockout_max_secs).max(lockout_secs)
}

/// What the typed code matched, as [`crate::login`] found out with the secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    /// A TOTP code of this step, after `last_counter` (the latest such step in the window),
    /// or an HOTP code of this counter (the first such counter of the look-ahead).
    Fresh(TimeStep),
    /// A code of a step or counter at or before `last_counter`, and no fresh one.
    Replayed,
    /// The unspent recovery code with this index.
    Recovery(usize),
    /// Nothing: a wrong or malformed code.
    Nothing,
    /// A recovery code of the enrollment that is already spent, and no unspent one.
    RecoverySpent,
}

/// What happened to rejected attempts before this success.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PriorRejections {
    pub count: u32,
    pub last_rhost: Option<String>,
    pub last_at: Option<i64>,
}

/// The result of a login attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A valid TOTP code for an unused time step; `step` is now `last_counter`, durably.
    Accepted {
        step: TimeStep,
        prior: PriorRejections,
    },
    /// A valid, unspent recovery code; it is now spent, durably.
    RecoveryAccepted {
        remaining: usize,
        prior: PriorRejections,
    },
    /// Wrong or malformed code. `locked_until` is set if this failure locked the user.
    Rejected {
        failures: u32,
        locked_until: Option<i64>,
    },
    /// A correct code of a time step at or before `last_counter`, or a recovery code
    /// already spent: counted as a failure.
    Replayed {
        failures: u32,
        locked_until: Option<i64>,
    },
    /// Locked before this attempt; what the code matched is ignored and nothing is counted.
    Locked { until: i64 },
    /// The user has no enrollment.
    NotEnrolled,
}

/// What [`decide`] wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The counters to commit; `None`: nothing changes (the user was locked).
    pub counters: Option<Counters>,
    /// The commit must be on stable storage before the outcome is acted on: a success
    /// (which spends a step or a recovery code) must never be replayable after a crash.
    /// Failures need no sync: losing one only forgets a failure.
    pub durable: bool,
    pub outcome: Outcome,
}

/// The policy. `counters` are the user's current ones, `recovery_codes` how many recovery
/// codes the enrollment lists (spent or not, as `counters.recovery_used` indexes them).
pub fn decide(
    counters: &Counters,
    recovery_codes: usize,
    matched: Matched,
    req: &AuthRequest,
) -> Decision {
    decide_from(counters, recovery_codes, matched, req, None)
}

/// Whether the remembered device `id` may log in without a code now: `grace_secs` is on,
/// the user is not locked, and a code was accepted from that device less than
/// `grace_secs` ago (and not in the future: a clock set back gives no grace). A grace login
/// changes nothing: it neither moves `last_counter` nor extends the grace.
pub fn grace(counters: &Counters, id: &[u8; 16], req: &AuthRequest) -> Option<Device> {
    if req.grace_secs == 0 || counters.locked_until.is_some_and(|t| t > req.now) {
        return None;
    }
    let secs = i64::try_from(req.grace_secs).unwrap_or(i64::MAX);
    counters
        .devices
        .iter()
        .filter(|d| d.is(id))
        .find(|d| d.since <= req.now && req.now < d.since.saturating_add(secs))
        .cloned()
}

/// Remembers `device` after a code was accepted from it: it replaces its own older entry,
/// and the oldest entry goes when [`MAX_DEVICES`] are kept. Nothing with `grace_secs` 0.
pub fn remember(counters: &mut Counters, device: Device, req: &AuthRequest) {
    if req.grace_secs == 0 {
        return;
    }
    counters.devices.retain(|d| !d.is(&device.id));
    counters.devices.push(device);
    counters.devices.sort_by_key(|d| d.since);
    let excess = counters.devices.len().saturating_sub(MAX_DEVICES);
    counters.devices.drain(..excess);
}

/// [`decide`], with the record of the login's remote device (keyed by
/// [`crate::login`]), remembered if a code is accepted.
pub fn decide_from(
    counters: &Counters,
    recovery_codes: usize,
    matched: Matched,
    req: &AuthRequest,
    device: Option<Device>,
) -> Decision {
    let now = req.now;
    let mut c = counters.clone();
    if let Some(until) = c.locked_until {
        if until > now {
            return Decision {
                counters: None,
                durable: false,
                outcome: Outcome::Locked { until },
            };
        }
        // The lock ran out: a fresh set of attempts.
        c.locked_until = None;
        c.failures = 0;
    }
    let success = |c: &mut Counters| {
        let prior = PriorRejections {
            count: c.rejected_since_success,
            last_rhost: c.last_rejected_rhost.take(),
            last_at: c.last_rejected_at.take(),
        };
        c.failures = 0;
        c.locked_until = None;
        c.rejected_since_success = 0;
        c.lockouts = 0;
        c.last_used = Some(now);
        prior
    };
    let outcome = match matched {
        // A fresh step must really be after last_counter: the matcher's word is checked.
        Matched::Fresh(step) if c.last_counter.is_none_or(|last| step.0 > last) => {
            let prior = success(&mut c);
            c.last_counter = Some(step.0);
            Outcome::Accepted { step, prior }
        }
        Matched::Recovery(i) if recovery::is_unspent(recovery_codes, c.recovery_used, i) => {
            let prior = success(&mut c);
            c.recovery_used = recovery::spend(c.recovery_used, i);
            Outcome::RecoveryAccepted {
                remaining: recovery::unspent(recovery_codes, c.recovery_used),
                prior,
            }
        }
        m => {
            c.failures = c.failures.saturating_add(1);
            c.rejected_since_success = c.rejected_since_success.saturating_add(1);
            c.last_rejected_rhost = req.rhost.map(counters::clean_rhost);
            c.last_rejected_at = Some(now);
            let locks = req.max_failures > 0 && c.failures >= req.max_failures;
            let locked_until = locks.then(|| {
                let secs = lock_duration(req.lockout_secs, req.lockout_max_secs, c.lockouts);
                now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
            });
            if locks {
                c.lockouts = c.lockouts.saturating_add(1);
            }
            c.locked_until = locked_until;
            let failures = c.failures;
            // A spent recovery code (named by index, or found spent by the matcher) is a
            // replay too; an index past the list is a plain wrong code.
            let spent_recovery = match m {
                Matched::Recovery(i) => i < recovery_codes.min(recovery::MAX_RECOVERY_CODES),
                _ => false,
            };
            if spent_recovery
                || matches!(
                    m,
                    Matched::Replayed | Matched::Fresh(_) | Matched::RecoverySpent
                )
            {
                Outcome::Replayed {
                    failures,
                    locked_until,
                }
            } else {
                Outcome::Rejected {
                    failures,
                    locked_until,
                }
            }
        }
    };
    let durable = matches!(
        outcome,
        Outcome::Accepted { .. } | Outcome::RecoveryAccepted { .. }
    );
    if let (true, Some(d)) = (durable, device) {
        remember(&mut c, d, req);
    }
    Decision {
        counters: Some(c),
        durable,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn req(max_failures: u32) -> AuthRequest<'static> {
        AuthRequest {
            now: NOW,
            window: 1,
            max_failures,
            lockout_secs: 60,
            rhost: Some("192.0.2.1\n"),
            lockout_max_secs: 86400,
            hotp_window: 10,
            grace_secs: 0,
            device: None,
        }
    }

    #[test]
    fn fresh_step_is_accepted_durably_and_becomes_last_counter() {
        let before = Counters {
            failures: 2,
            rejected_since_success: 4,
            last_rejected_rhost: Some("h".into()),
            last_rejected_at: Some(NOW - 5),
            last_counter: Some(10),
            ..Default::default()
        };
        let d = decide(&before, 0, Matched::Fresh(TimeStep(11)), &req(5));
        assert!(d.durable);
        assert_eq!(
            d.outcome,
            Outcome::Accepted {
                step: TimeStep(11),
                prior: PriorRejections {
                    count: 4,
                    last_rhost: Some("h".into()),
                    last_at: Some(NOW - 5)
                }
            }
        );
        let c = d.counters.unwrap();
        assert_eq!(c.last_counter, Some(11));
        assert_eq!((c.failures, c.rejected_since_success), (0, 0));
        assert_eq!(c.last_used, Some(NOW));
        assert_eq!(c.last_rejected_rhost, None);
    }

    #[test]
    fn a_step_at_or_before_last_counter_is_a_replay_even_if_called_fresh() {
        let before = Counters {
            last_counter: Some(11),
            ..Default::default()
        };
        for m in [Matched::Replayed, Matched::Fresh(TimeStep(11))] {
            let d = decide(&before, 0, m, &req(5));
            assert!(!d.durable);
            assert_eq!(
                d.outcome,
                Outcome::Replayed {
                    failures: 1,
                    locked_until: None
                }
            );
            let c = d.counters.unwrap();
            assert_eq!(c.last_counter, Some(11));
            assert_eq!(c.last_rejected_rhost.as_deref(), Some("192.0.2.1?"));
        }
    }

    #[test]
    fn failures_lock_at_max_failures_and_locked_attempts_change_nothing() {
        let mut c = Counters::default();
        for i in 1..=3u32 {
            let d = decide(&c, 0, Matched::Nothing, &req(3));
            let want_lock = (i == 3).then_some(NOW + 60);
            assert_eq!(
                d.outcome,
                Outcome::Rejected {
                    failures: i,
                    locked_until: want_lock
                }
            );
            c = d.counters.unwrap();
        }
        // Locked: even a right code is not accepted, and nothing is written.
        let d = decide(&c, 0, Matched::Fresh(TimeStep(99)), &req(3));
        assert_eq!(d.outcome, Outcome::Locked { until: NOW + 60 });
        assert_eq!(d.counters, None);
        // Once the lock ran out, a fresh set of attempts.
        let later = AuthRequest {
            now: NOW + 60,
            ..req(3)
        };
        let d = decide(&c, 0, Matched::Nothing, &later);
        assert_eq!(
            d.outcome,
            Outcome::Rejected {
                failures: 1,
                locked_until: None
            }
        );
        let d = decide(&c, 0, Matched::Fresh(TimeStep(99)), &later);
        assert!(matches!(d.outcome, Outcome::Accepted { prior, .. } if prior.count == 3));
    }

    #[test]
    fn each_lock_without_a_success_between_doubles_up_to_lockout_max_secs() {
        let mut c = Counters::default();
        let mut now = NOW;
        let mut lengths = Vec::new();
        for _ in 0..6 {
            let r = AuthRequest {
                now,
                lockout_max_secs: 400,
                ..req(2)
            };
            for _ in 0..2 {
                c = decide(&c, 0, Matched::Nothing, &r).counters.unwrap();
            }
            let until = c.locked_until.unwrap();
            lengths.push(until - now);
            now = until;
        }
        assert_eq!(lengths, vec![60, 120, 240, 400, 400, 400]);
        assert_eq!(c.lockouts, 6);
        // A success resets it: the next lock is lockout_secs again.
        let r = AuthRequest {
            now,
            lockout_max_secs: 400,
            ..req(2)
        };
        c = decide(&c, 0, Matched::Fresh(TimeStep(5)), &r)
            .counters
            .unwrap();
        assert_eq!(c.lockouts, 0);
        for _ in 0..2 {
            c = decide(&c, 0, Matched::Nothing, &r).counters.unwrap();
        }
        assert_eq!(c.locked_until, Some(now + 60));
        assert_eq!(lock_duration(60, 86400, u32::MAX), 86400);
        assert_eq!(lock_duration(300, 100, 3), 300);
    }

    #[test]
    fn max_failures_zero_never_locks() {
        let c = Counters {
            failures: u32::MAX - 1,
            ..Default::default()
        };
        let d = decide(&c, 0, Matched::Nothing, &req(0));
        assert_eq!(
            d.outcome,
            Outcome::Rejected {
                failures: u32::MAX,
                locked_until: None
            }
        );
        let d = decide(&d.counters.unwrap(), 0, Matched::Nothing, &req(0));
        assert!(matches!(
            d.outcome,
            Outcome::Rejected {
                failures: u32::MAX,
                locked_until: None
            }
        ));
    }

    #[test]
    fn recovery_codes_are_spent_once() {
        let c = Counters::default();
        let d = decide(&c, 3, Matched::Recovery(1), &req(5));
        assert!(d.durable);
        assert!(matches!(
            d.outcome,
            Outcome::RecoveryAccepted { remaining: 2, .. }
        ));
        let c = d.counters.unwrap();
        assert_eq!(c.recovery_used, 0b010);
        // The same index again (a matcher that ignored the bitmap) is a replay.
        let d = decide(&c, 3, Matched::Recovery(1), &req(5));
        assert!(matches!(d.outcome, Outcome::Replayed { failures: 1, .. }));
        assert!(!d.durable);
        assert_eq!(d.counters.unwrap().recovery_used, 0b010);
        // An index past the list is a wrong code.
        let d = decide(&c, 3, Matched::Recovery(3), &req(5));
        assert!(matches!(d.outcome, Outcome::Rejected { .. }));
        let d = decide(&c, 3, Matched::Recovery(64), &req(5));
        assert!(matches!(d.outcome, Outcome::Rejected { .. }));
    }

    #[test]
    fn a_spent_recovery_code_again_is_a_replay_counted_as_a_failure() {
        let c = Counters {
            recovery_used: 0b1,
            failures: 2,
            ..Default::default()
        };
        let d = decide(&c, 3, Matched::RecoverySpent, &req(3));
        assert!(!d.durable);
        assert_eq!(
            d.outcome,
            Outcome::Replayed {
                failures: 3,
                locked_until: Some(NOW + 60)
            }
        );
        let after = d.counters.unwrap();
        assert_eq!(after.recovery_used, 0b1);
        assert_eq!(after.rejected_since_success, 1);
    }

    fn device(id: u8, since: i64) -> Device {
        Device {
            id: [id; 16],
            since,
            rhost: format!("192.0.2.{id}"),
            key: None,
        }
    }

    fn graced(grace_secs: u64, now: i64) -> AuthRequest<'static> {
        AuthRequest {
            grace_secs,
            now,
            ..req(5)
        }
    }

    #[test]
    fn a_code_accepted_from_a_device_remembers_it_only_with_grace_secs() {
        let c = Counters::default();
        for m in [Matched::Fresh(TimeStep(7)), Matched::Recovery(0)] {
            let d = decide_from(&c, 1, m, &graced(600, NOW), Some(device(1, NOW)));
            assert_eq!(d.counters.unwrap().devices, vec![device(1, NOW)]);
            let d = decide_from(&c, 1, m, &graced(0, NOW), Some(device(1, NOW)));
            assert!(d.counters.unwrap().devices.is_empty());
        }
        // A wrong code remembers nothing.
        let d = decide_from(
            &c,
            0,
            Matched::Nothing,
            &graced(600, NOW),
            Some(device(1, NOW)),
        );
        assert!(d.counters.unwrap().devices.is_empty());
    }

    #[test]
    fn grace_lasts_grace_secs_from_the_code_for_that_device_only() {
        let c = Counters {
            devices: vec![device(1, NOW), device(2, NOW - 100)],
            last_counter: Some(5),
            ..Default::default()
        };
        assert_eq!(
            grace(&c, &[1; 16], &graced(60, NOW + 59)),
            Some(device(1, NOW))
        );
        assert_eq!(grace(&c, &[1; 16], &graced(60, NOW + 60)), None);
        assert_eq!(grace(&c, &[2; 16], &graced(60, NOW)), None);
        assert_eq!(grace(&c, &[3; 16], &graced(600, NOW)), None);
        // Off, before the code (clock set back), or locked: no grace.
        assert_eq!(grace(&c, &[1; 16], &graced(0, NOW)), None);
        assert_eq!(grace(&c, &[1; 16], &graced(60, NOW - 1)), None);
        let locked = Counters {
            locked_until: Some(NOW + 10),
            ..c.clone()
        };
        assert_eq!(grace(&locked, &[1; 16], &graced(60, NOW + 1)), None);
    }

    #[test]
    fn remembered_devices_are_bounded_and_refreshed() {
        let mut c = Counters::default();
        let r = graced(600, NOW);
        for i in 0..(MAX_DEVICES as u8 + 3) {
            remember(&mut c, device(i, NOW + i64::from(i)), &r);
        }
        assert_eq!(c.devices.len(), MAX_DEVICES);
        assert_eq!(c.devices[0], device(3, NOW + 3));
        // The same device again replaces its entry (a new grace from the new code).
        remember(&mut c, device(3, NOW + 100), &r);
        assert_eq!(c.devices.len(), MAX_DEVICES);
        assert_eq!(c.devices.last(), Some(&device(3, NOW + 100)));
        assert_eq!(c.devices.iter().filter(|d| d.id == [3; 16]).count(), 1);
    }
}
