//! The storage interface reconciliation runs against.

use std::fmt;

use crate::fingerprint::{Aggregate, Fingerprint};
use crate::key::{EntryKey, Range};
use crate::negentropy;

/// A failure of the storage behind a [`RangeStore`] (I/O, corruption, a closed database).
pub struct StoreError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl StoreError {
    /// Wraps any error of the backing store.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        StoreError(err.into())
    }

    /// The wrapped error.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.0
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store error: {}", self.0)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// An ordered set of [`EntryKey`]s that answers range queries; what the reconciler needs from
/// a store.
///
/// Implementations should answer [`count`](RangeStore::count),
/// [`aggregate`](RangeStore::aggregate) and [`key_at`](RangeStore::key_at) in `O(log n)`: the
/// reconciler calls them for every range it compares or splits. The set is read-only for the
/// duration of one call; between calls it may grow, so a session must be run over a frozen
/// copy (spec 8.1, consistent reads): [`RangeIndex::snapshot`](crate::RangeIndex::snapshot),
/// [`MemoryStore::snapshot`](crate::MemoryStore::snapshot), or the redb store's `snapshot()`.
pub trait RangeStore {
    /// Number of keys in `range`.
    fn count(&self, range: &Range) -> Result<u64, StoreError>;

    /// The fingerprint aggregate (count and 4096-bit sum) of the keys in `range`.
    fn aggregate(&self, range: &Range) -> Result<Aggregate, StoreError>;

    /// The key of 0-based rank `rank` among the keys in `range`, in key order, or `None` if
    /// the range holds `rank` keys or fewer.
    fn key_at(&self, range: &Range, rank: u64) -> Result<Option<EntryKey>, StoreError>;

    /// Up to `limit` keys of `range`, in key order.
    fn keys(&self, range: &Range, limit: usize) -> Result<Vec<EntryKey>, StoreError>;

    /// The wire fingerprint of `range`.
    fn fingerprint(&self, range: &Range) -> Result<Fingerprint, StoreError> {
        Ok(self.aggregate(range)?.fingerprint())
    }

    /// The Negentropy V1 fingerprint of `range`, used only by the Negentropy dialect.
    ///
    /// The default scans the range: `O(k)` key reads and additions plus one SHA-256 for a
    /// range of `k` keys, so a Negentropy session costs `O(n)` per round where oplog-sync's
    /// own fingerprint costs `O(log n)` per range. A store that serves Negentropy peers often
    /// can override it with cached per-node sums, as Negentropy's B-tree does.
    fn negentropy_fingerprint(&self, range: &Range) -> Result<negentropy::Fingerprint, StoreError> {
        let keys = self.keys(range, usize::MAX)?;
        Ok(negentropy::Accumulator::of_keys(&keys).fingerprint())
    }
}

impl<T: RangeStore + ?Sized> RangeStore for &T {
    fn count(&self, range: &Range) -> Result<u64, StoreError> {
        (**self).count(range)
    }
    fn aggregate(&self, range: &Range) -> Result<Aggregate, StoreError> {
        (**self).aggregate(range)
    }
    fn key_at(&self, range: &Range, rank: u64) -> Result<Option<EntryKey>, StoreError> {
        (**self).key_at(range, rank)
    }
    fn keys(&self, range: &Range, limit: usize) -> Result<Vec<EntryKey>, StoreError> {
        (**self).keys(range, limit)
    }
    fn fingerprint(&self, range: &Range) -> Result<Fingerprint, StoreError> {
        (**self).fingerprint(range)
    }
    fn negentropy_fingerprint(&self, range: &Range) -> Result<negentropy::Fingerprint, StoreError> {
        (**self).negentropy_fingerprint(range)
    }
}
