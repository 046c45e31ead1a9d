//! Replicas: applying incoming entries by the rules of spec 6.1 ([`insert`],
//! [`retry_deferred`], over any [`ReplicaState`]) and [`MemoryReplica`], the in-memory model
//! every store is tested against.

mod apply;
mod memory;
#[cfg(test)]
mod tests;

pub use apply::{insert, retry_deferred, ReplicaState};
pub use memory::MemoryReplica;

use crate::dag::ParentOrderError;
use crate::entry::EntryError;
use crate::key::{Hash, NodeId};

/// Why [`MemoryReplica::insert`] refused an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// The entry failed [`LogEntry::verify`].
    #[error(transparent)]
    Invalid(#[from] EntryError),
    /// The author is not in the allowed set.
    #[error("author {0} is not allowed to write to this log")]
    NotAllowed(NodeId),
    /// The entry's HLC is not greater than a parent's.
    #[error(transparent)]
    ParentOrder(#[from] ParentOrderError),
    /// An ancestor was refused for its parent order, so this held-back entry can never apply.
    #[error("ancestor {0} was refused, so this entry can never be applied")]
    AncestorRejected(Hash),
}

/// What happened to one entry given to [`MemoryReplica::insert`] or
/// [`MemoryReplica::retry_deferred`], as of the end of that call.
#[derive(Debug, Clone, PartialEq, Eq)]
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
pub struct InsertReport {
    /// One outcome per entry given (for `insert`, in input order; for `retry_deferred`, per
    /// entry that came due).
    pub outcomes: Vec<(Hash, InsertOutcome)>,
    /// Every entry applied by the call, in application order (parents first), including
    /// held-back entries from earlier calls that it promoted.
    pub applied: Vec<Hash>,
    /// Held-back entries from earlier calls dropped because they (or an ancestor) turned out
    /// to break the parent HLC order.
    pub dropped: Vec<(Hash, InsertError)>,
}
