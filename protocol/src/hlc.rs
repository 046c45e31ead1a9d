//! Hybrid logical clock stamps and the clock that issues them.
//!
//! A stamp is one `u64`: nanoseconds since the Unix epoch, advanced by one for every logical
//! tick, exactly as Shoal stamps its log entries today. The wall clock is injected through
//! [`WallClock`], so tests control time and the protocol crate never reads a clock itself.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A hybrid logical clock stamp: wall-clock nanoseconds since the Unix epoch, advanced by one
/// for every logical tick.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hlc(pub u64);

impl Hlc {
    /// The raw value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for Hlc {
    fn from(v: u64) -> Self {
        Hlc(v)
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hlc({})", self.0)
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A source of physical time in nanoseconds since the Unix epoch.
pub trait WallClock {
    /// The current physical time, nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
}

impl<F: Fn() -> u64> WallClock for F {
    fn now_nanos(&self) -> u64 {
        self()
    }
}

/// The operating system's clock ([`std::time::SystemTime`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_nanos(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// Why a clock refused to issue or accept a stamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HlcError {
    /// A remote stamp lies further ahead of local wall time than the configured maximum drift.
    /// The clock's state is unchanged; an entry carrying this stamp is deferred, not dropped.
    #[error("remote stamp {remote} is {ahead_ns} ns ahead of local time {local}, more than the allowed drift of {max_drift_ns} ns; defer it until local time catches up")]
    TooFarAhead {
        /// The refused remote stamp.
        remote: Hlc,
        /// Local wall time when it was refused.
        local: u64,
        /// How far ahead it was, in nanoseconds.
        ahead_ns: u64,
        /// The configured maximum drift, in nanoseconds.
        max_drift_ns: u64,
    },
    /// The clock reached [`MAX_HLC`] and cannot issue a larger stamp.
    #[error("hybrid logical clock exhausted at {0}: no larger valid stamp exists; check the wall clock of the node that issued it")]
    Exhausted(Hlc),
    /// A remote stamp above [`MAX_HLC`], which no valid entry carries.
    #[error("stamp {0} is above the largest valid stamp 2^64 - 2")]
    OutOfRange(Hlc),
}

/// The largest valid stamp, 2^64 - 2. Keeping 2^64 - 1 out of the key space lets every bound
/// on the wire be encoded as `1 + delta` in a 64-bit varint (0 stands for the end of the key
/// space), so no encoder ever overflows.
pub const MAX_HLC: Hlc = Hlc(u64::MAX - 1);

/// Default maximum drift: a remote stamp may run at most 60 s ahead of local wall time.
pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_secs(60);

/// Where a stamp stands relative to local time and the maximum drift (see [`admission`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not beyond the drift: the entry may be applied now.
    Now,
    /// Beyond the drift: keep the entry aside and look again once local wall time reaches
    /// `not_before` (nanoseconds since the epoch).
    Defer {
        /// The earliest local wall time at which the stamp becomes admissible.
        not_before: u64,
    },
}

/// The drift rule in one place: a stamp is admissible iff `stamp <= now + max_drift`.
pub fn admission(stamp: Hlc, now_nanos: u64, max_drift: Duration) -> Admission {
    let drift = duration_nanos(max_drift);
    if stamp.0 <= now_nanos.saturating_add(drift) {
        Admission::Now
    } else {
        Admission::Defer {
            not_before: stamp.0 - drift,
        }
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A hybrid logical clock: issues strictly increasing stamps, never below wall time, and
/// advances past every remote stamp it accepts.
///
/// ```
/// use oplog_protocol::{HlcClock, Hlc};
/// use std::time::Duration;
///
/// let mut clock = HlcClock::new(|| 1_000u64, Duration::from_secs(60));
/// let a = clock.tick().unwrap();
/// let b = clock.tick().unwrap();
/// assert!(b > a && a >= Hlc(1_000));
/// clock.observe(Hlc(5_000)).unwrap();
/// assert!(clock.tick().unwrap() > Hlc(5_000));
/// ```
#[derive(Debug, Clone)]
pub struct HlcClock<C> {
    clock: C,
    last: Hlc,
    max_drift: Duration,
}

impl<C: WallClock> HlcClock<C> {
    /// A clock over `clock` that refuses remote stamps more than `max_drift` ahead.
    pub fn new(clock: C, max_drift: Duration) -> Self {
        HlcClock {
            clock,
            last: Hlc(0),
            max_drift,
        }
    }

    /// A clock that resumes after `last`, the greatest stamp persisted before a restart, so it
    /// never reissues a stamp at or below it.
    pub fn restore(clock: C, max_drift: Duration, last: Hlc) -> Self {
        HlcClock {
            clock,
            last,
            max_drift,
        }
    }

    /// The greatest stamp issued or observed so far; persist it to survive restarts.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// The configured maximum drift.
    pub fn max_drift(&self) -> Duration {
        self.max_drift
    }

    /// Local wall time, nanoseconds since the epoch.
    pub fn wall(&self) -> u64 {
        self.clock.now_nanos()
    }

    /// Issues a new stamp: `min(max(wall, last + 1), MAX_HLC)`. Strictly greater than every
    /// stamp issued or observed before, even if the wall clock stalls or runs backwards;
    /// [`HlcError::Exhausted`] once [`MAX_HLC`] has been issued.
    pub fn tick(&mut self) -> Result<Hlc, HlcError> {
        if self.last >= MAX_HLC {
            return Err(HlcError::Exhausted(self.last));
        }
        let next = (self.last.0 + 1).max(self.clock.now_nanos()).min(MAX_HLC.0);
        self.last = Hlc(next);
        Ok(self.last)
    }

    /// Takes in a remote stamp (Kulkarni et al.'s receive rule): afterwards every issued stamp
    /// exceeds it. A stamp beyond the maximum drift is refused with
    /// [`HlcError::TooFarAhead`] and leaves the clock unchanged.
    pub fn observe(&mut self, remote: Hlc) -> Result<(), HlcError> {
        if remote > MAX_HLC {
            return Err(HlcError::OutOfRange(remote));
        }
        let now = self.clock.now_nanos();
        if let Admission::Defer { .. } = admission(remote, now, self.max_drift) {
            return Err(HlcError::TooFarAhead {
                remote,
                local: now,
                ahead_ns: remote.0 - now,
                max_drift_ns: duration_nanos(self.max_drift),
            });
        }
        self.last = self.last.max(remote);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn manual(start: u64) -> (Rc<Cell<u64>>, impl WallClock) {
        let t = Rc::new(Cell::new(start));
        let t2 = t.clone();
        (t, move || t2.get())
    }

    #[test]
    fn strictly_increasing_with_stalled_and_backward_clock() {
        let (t, c) = manual(1_000);
        let mut clock = HlcClock::new(c, DEFAULT_MAX_DRIFT);
        let mut prev = clock.tick().unwrap();
        assert_eq!(prev, Hlc(1_000));
        for step in 0..1_000u64 {
            // stall, jump back, jump forward
            t.set(match step % 3 {
                0 => t.get(),
                1 => t.get().saturating_sub(500),
                _ => t.get() + 700,
            });
            let s = clock.tick().unwrap();
            assert!(s > prev, "{s:?} <= {prev:?}");
            assert!(s.0 >= t.get(), "stamp below wall time");
            prev = s;
        }
    }

    #[test]
    fn next_stamp_exceeds_observed_remote() {
        let (_t, c) = manual(1_000);
        let mut clock = HlcClock::new(c, Duration::from_micros(10));
        clock.observe(Hlc(9_000)).unwrap();
        assert!(clock.tick().unwrap() > Hlc(9_000));
        // an older remote stamp does not move the clock back
        clock.observe(Hlc(10)).unwrap();
        assert_eq!(clock.tick().unwrap(), Hlc(9_002));
    }

    #[test]
    fn drift_rejection_leaves_state_unchanged() {
        let (t, c) = manual(1_000_000);
        let mut clock = HlcClock::new(c, Duration::from_nanos(500));
        let before = clock.tick().unwrap();
        let err = clock.observe(Hlc(1_000_501)).unwrap_err();
        assert_eq!(
            err,
            HlcError::TooFarAhead {
                remote: Hlc(1_000_501),
                local: 1_000_000,
                ahead_ns: 501,
                max_drift_ns: 500
            }
        );
        assert_eq!(clock.last(), before);
        // exactly at the bound is accepted
        clock.observe(Hlc(1_000_500)).unwrap();
        assert_eq!(clock.last(), Hlc(1_000_500));
        // once local time catches up the refused stamp becomes admissible
        t.set(1_000_001);
        clock.observe(Hlc(1_000_501)).unwrap();
    }

    #[test]
    fn exhausted_at_max() {
        let (_t, c) = manual(5);
        let mut clock = HlcClock::restore(c, DEFAULT_MAX_DRIFT, Hlc(u64::MAX - 2));
        assert_eq!(clock.tick().unwrap(), MAX_HLC);
        assert_eq!(clock.tick().unwrap_err(), HlcError::Exhausted(MAX_HLC));
        assert_eq!(clock.last(), MAX_HLC);
        let (_t, c) = manual(u64::MAX); // a wall clock at the very top is clamped
        assert_eq!(HlcClock::new(c, DEFAULT_MAX_DRIFT).tick().unwrap(), MAX_HLC);
        let (_t, c) = manual(u64::MAX);
        assert_eq!(
            HlcClock::new(c, DEFAULT_MAX_DRIFT).observe(Hlc(u64::MAX)),
            Err(HlcError::OutOfRange(Hlc(u64::MAX)))
        );
    }

    #[test]
    fn restore_never_reissues() {
        let (_t, c) = manual(100);
        let mut a = HlcClock::new(c, DEFAULT_MAX_DRIFT);
        let mut last = Hlc(0);
        for _ in 0..10 {
            last = a.tick().unwrap();
        }
        let (_t2, c2) = manual(50); // restarted with a wall clock that went backwards
        let mut b = HlcClock::restore(c2, DEFAULT_MAX_DRIFT, last);
        assert!(b.tick().unwrap() > last);
    }

    #[test]
    fn admission_rule() {
        let d = Duration::from_nanos(100);
        assert_eq!(admission(Hlc(1_100), 1_000, d), Admission::Now);
        assert_eq!(
            admission(Hlc(1_101), 1_000, d),
            Admission::Defer { not_before: 1_001 }
        );
        assert_eq!(admission(Hlc(u64::MAX), u64::MAX - 5, d), Admission::Now);
    }

    #[test]
    fn unique_across_many_ticks() {
        let (_t, c) = manual(7);
        let mut clock = HlcClock::new(c, DEFAULT_MAX_DRIFT);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(clock.tick().unwrap()));
        }
    }
}
