//! Replicas: applying incoming entries by the rules of spec 6.1 ([`insert`],
//! [`retry_deferred`], over any [`ReplicaState`]) and [`MemoryReplica`], the in-memory model
//! every store is tested against.

mod apply;
#[cfg(any(test, feature = "testing"))]
mod memory;
#[cfg(test)]
mod tests;

pub use apply::{insert, retry_deferred, ReplicaState, Usage};
#[cfg(any(test, feature = "testing"))]
pub use memory::MemoryReplica;

use crate::dag::ParentOrderError;
use crate::entry::EntryError;
use crate::key::{Hash, NodeId};

use std::time::Duration;

/// The admission rules' parameters: the drift bound and the caps on entries a replica keeps
/// without applying them (spec 6.1, appendix B).
///
/// Held-back and deferred entries cost storage but are not yet part of the log, and a peer can
/// make up as many as it likes (orphans with invented parents, stamps far in the future), so
/// both sets are capped per author and in total bytes. Over a cap the *least useful* entry
/// goes: for held-back entries the one with the lowest key (it has waited longest for its
/// ancestry), for deferred ones the one due last. Eviction loses nothing for good: the peer
/// that sent an evicted entry still holds it and sends it again at the next reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// How far ahead of local wall time an entry's HLC may be before it is deferred
    /// (default 60 s; see [`crate::hlc::admission`]).
    pub max_drift: Duration,
    /// Most held-back entries per author (default 4,096).
    pub max_held_per_author: u64,
    /// Most bytes of held-back entries in all, encoded (default 64 MiB).
    pub max_held_bytes: u64,
    /// Most deferred entries per author (default 1,024).
    pub max_deferred_per_author: u64,
    /// Most bytes of deferred entries in all, encoded (default 16 MiB).
    pub max_deferred_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_drift: Duration::from_secs(60),
            max_held_per_author: 4096,
            max_held_bytes: 64 << 20,
            max_deferred_per_author: 1024,
            max_deferred_bytes: 16 << 20,
        }
    }
}

impl Limits {
    /// The default limits with drift bound `max_drift`.
    pub fn with_drift(max_drift: Duration) -> Self {
        Limits {
            max_drift,
            ..Limits::default()
        }
    }
}

/// Why an entry was refused, or evicted after being kept aside.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsertError {
    /// The entry failed [`LogEntry::verify`](crate::LogEntry::verify).
    #[error(transparent)]
    Invalid(#[from] EntryError),
    /// The author is not in the allowed set.
    #[error("author {0} is not allowed to write to this log")]
    NotAllowed(NodeId),
    /// The entry's HLC is not greater than a parent's.
    #[error(transparent)]
    ParentOrder(#[from] ParentOrderError),
    /// An ancestor was refused (for its parent order, or earlier in the same call for any
    /// reason), so this entry can never apply as sent.
    #[error("ancestor {0} was refused, so this entry can never be applied")]
    AncestorRejected(Hash),
    /// The held-back set is at a cap ([`Limits::max_held_per_author`] or
    /// [`Limits::max_held_bytes`]) and this entry was the one to go. Nothing is lost for good:
    /// it is fetched again once its ancestry is in reach.
    #[error(
        "held-back entries are at their cap; this entry was evicted and will be fetched again"
    )]
    HeldBackFull,
    /// The deferred set is at a cap ([`Limits::max_deferred_per_author`] or
    /// [`Limits::max_deferred_bytes`]) and this entry, due last, was the one to go.
    #[error("deferred entries are at their cap; this entry was evicted and will be fetched again")]
    DeferredFull,
}

/// What happened to one entry given to [`MemoryReplica::insert`] or
/// [`MemoryReplica::retry_deferred`], as of the end of that call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// Stored and applied (its parents were all applied, possibly earlier in the same call).
    Applied,
    /// Already applied; nothing changed.
    Duplicate,
    /// Verified but waiting for these parents (ascending) to be applied; applied as soon as
    /// they are.
    HeldBack {
        /// Parents not yet applied (some may be held back or deferred themselves).
        missing: Vec<Hash>,
    },
    /// Its HLC is beyond the allowed drift: kept aside, not dropped, until local wall time
    /// reaches `not_before` (see [`MemoryReplica::retry_deferred`]).
    Deferred {
        /// Earliest local wall time (ns since the epoch) at which it becomes admissible.
        not_before: u64,
    },
    /// Refused.
    Rejected(InsertError),
}

/// The result of one [`MemoryReplica::insert`] or [`MemoryReplica::retry_deferred`] call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct InsertReport {
    /// One outcome per entry given (for `insert`, in input order; for `retry_deferred`, per
    /// entry that came due).
    pub outcomes: Vec<(Hash, InsertOutcome)>,
    /// Every entry applied by the call, in application order (parents first), including
    /// held-back entries from earlier calls that it promoted.
    pub applied: Vec<Hash>,
    /// Held-back entries dropped because they (or an ancestor) turned out to break the parent
    /// HLC order, held-back or deferred entries evicted to stay within the [`Limits`]
    /// ([`InsertError::HeldBackFull`], [`InsertError::DeferredFull`]), and due entries refused
    /// when admitted, in the order it happened.
    pub dropped: Vec<(Hash, InsertError)>,
    /// Deferred entries that came due and were admitted at the start of the call, in key order
    /// (for [`insert`] their outcome shows in `applied`, `dropped` or the held-back set, not in
    /// `outcomes`).
    pub due: Vec<Hash>,
}
