//! The budgets of one session (spec 9.7), all on by default.

use std::time::Duration;

use crate::dag::DEFAULT_MAX_VISITS;
use crate::reconcile::{Config, Dialect, ReconcileError};
use crate::wire::MAX_ANCESTRY_LIMIT;

/// Default [`SessionConfig::max_frame_bytes`]: 4 MiB, the reconciler's message limit.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 << 20;
/// Default [`SessionConfig::batch_bytes`]: entries are sent in frames of about 1 MiB.
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;
/// Default [`SessionConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`SessionConfig::max_duration`].
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(3600);
/// Default [`SessionConfig::max_ancestry_requests`].
pub const DEFAULT_MAX_ANCESTRY_REQUESTS: u32 = 16;
/// Default [`SessionConfig::max_bytes_received`]: 16 GiB.
pub const DEFAULT_MAX_BYTES_RECEIVED: u64 = 16 << 30;
/// The smallest [`SessionConfig::max_frame_bytes`]: an entry of the largest size must fit.
pub const MIN_FRAME_BYTES: usize = 1 << 17;

/// What one session may cost each side. Two sides with the same values never refuse each
/// other; a side that sends more than the other accepts ends the session (spec 9.7).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The reconciler's configuration. Its `max_message_bytes` must fit in a frame; the
    /// session sets the carried key form itself.
    pub reconcile: Config,
    /// Largest frame accepted, and sent: the length header's value (default 4 MiB, at least
    /// [`MIN_FRAME_BYTES`]).
    pub max_frame_bytes: usize,
    /// Target size of one ENTRIES frame (default 1 MiB, at most `max_frame_bytes`). Entries
    /// held in memory at once, each way, are about this many bytes.
    pub batch_bytes: usize,
    /// The session ends with [`EndCode::Timeout`](super::EndCode::Timeout) when no frame
    /// crosses, in either direction, for this long (default 30 s): a silent peer, or one
    /// that stopped reading so that nothing more can be sent.
    pub idle_timeout: Duration,
    /// The session ends with [`EndCode::Timeout`](super::EndCode::Timeout) this long after it
    /// started, whatever the state (default 1 h).
    pub max_duration: Duration,
    /// Ancestry requests this side sends, and answers, per session (default 16).
    pub max_ancestry_requests: u32,
    /// The `limit` of each ancestry request this side sends (default 65,536).
    pub ancestry_limit: u32,
    /// Visit budget for answering one ancestry request (default 2^20, spec 6.3).
    pub ancestry_visits: u64,
    /// Bytes this side receives in one session, frames included (default 16 GiB).
    pub max_bytes_received: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            reconcile: Config::default(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            batch_bytes: DEFAULT_BATCH_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_duration: DEFAULT_MAX_DURATION,
            max_ancestry_requests: DEFAULT_MAX_ANCESTRY_REQUESTS,
            ancestry_limit: MAX_ANCESTRY_LIMIT,
            ancestry_visits: DEFAULT_MAX_VISITS,
            max_bytes_received: DEFAULT_MAX_BYTES_RECEIVED,
        }
    }
}

impl SessionConfig {
    /// Checks every value is in its range and that the parts fit each other.
    pub fn validate(&self) -> Result<(), ReconcileError> {
        let bad = |what: &str| Err(ReconcileError::Config(what.to_owned()));
        self.reconcile.validate()?;
        if self.reconcile.dialect != Dialect::OplogV1 {
            return bad("sessions speak the OplogV1 dialect only");
        }
        if self.max_frame_bytes < MIN_FRAME_BYTES || self.max_frame_bytes > u32::MAX as usize {
            return bad("max_frame_bytes must be at least 128 KiB and fit a u32");
        }
        if self
            .reconcile
            .max_message_bytes
            .is_none_or(|m| m > self.max_frame_bytes)
        {
            return bad("reconcile.max_message_bytes must be set and at most max_frame_bytes");
        }
        if self.batch_bytes == 0 || self.batch_bytes > self.max_frame_bytes {
            return bad("batch_bytes must be between 1 and max_frame_bytes");
        }
        if self.ancestry_limit == 0 || self.ancestry_limit > MAX_ANCESTRY_LIMIT {
            return bad("ancestry_limit must be between 1 and 65,536");
        }
        if self.idle_timeout.is_zero() || self.max_duration.is_zero() {
            return bad("idle_timeout and max_duration must be above zero");
        }
        Ok(())
    }
}
