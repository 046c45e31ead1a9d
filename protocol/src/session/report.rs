//! What a session did: [`SyncReport`].

use std::time::Duration;

use super::end::EndCode;
use super::Role;

/// Counters of one session, each way, for logs, metrics and benchmarks. Bytes count whole
/// frames (headers included); `entry_bytes_*` count the encoded entries inside them, so
/// `bytes_* - entry_bytes_*` is the protocol's own overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Which side this report is from.
    pub role: Role,
    /// How the session ended, once it has (`None` while it runs).
    pub end: Option<EndCode>,
    /// Whether the peer chose the end (it sent the END frame first with a failure code, or
    /// its stream ended).
    pub ended_by_peer: bool,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Bytes sent, frame headers included.
    pub bytes_sent: u64,
    /// Bytes received, frame headers included.
    pub bytes_received: u64,
    /// Reconciliation messages sent.
    pub messages_sent: u64,
    /// Reconciliation messages received.
    pub messages_received: u64,
    /// Entries sent (in ENTRIES frames and ancestry answers).
    pub entries_sent: u64,
    /// Entries received.
    pub entries_received: u64,
    /// Bytes of the entries sent (their encoded form, section 5.5).
    pub entry_bytes_sent: u64,
    /// Bytes of the entries received.
    pub entry_bytes_received: u64,
    /// Ancestry requests this side sent.
    pub ancestry_requests_sent: u64,
    /// Ancestry requests this side answered.
    pub ancestry_requests_answered: u64,
    /// Time from the session's start to its end (or to now, while it runs), by the times the
    /// driver passed in.
    pub duration: Duration,
}

impl SyncReport {
    pub(crate) fn new(role: Role) -> Self {
        SyncReport {
            role,
            end: None,
            ended_by_peer: false,
            frames_sent: 0,
            frames_received: 0,
            bytes_sent: 0,
            bytes_received: 0,
            messages_sent: 0,
            messages_received: 0,
            entries_sent: 0,
            entries_received: 0,
            entry_bytes_sent: 0,
            entry_bytes_received: 0,
            ancestry_requests_sent: 0,
            ancestry_requests_answered: 0,
            duration: Duration::ZERO,
        }
    }

    /// Round trips: the turns of the session (messages and ancestry requests each way), two
    /// to a round trip, rounded up. One side's sends and the other's receipts give the same
    /// count, so both sides report the same figure.
    pub fn round_trips(&self) -> u64 {
        let turns = self.messages_sent
            + self.messages_received
            + 2 * (self.ancestry_requests_sent + self.ancestry_requests_answered);
        turns.div_ceil(2)
    }

    /// Bytes both ways that were not entries: frame headers, types, reconciliation
    /// messages, entry lengths, ancestry requests and END frames.
    pub fn overhead_bytes(&self) -> u64 {
        (self.bytes_sent + self.bytes_received)
            .saturating_sub(self.entry_bytes_sent + self.entry_bytes_received)
    }

    /// Whether the session completed ([`EndCode::Done`]).
    pub fn is_done(&self) -> bool {
        self.end == Some(EndCode::Done)
    }
}
