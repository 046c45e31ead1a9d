//! Ordered key sets that answer range queries: the [`RangeStore`] trait reconciliation runs
//! against, the augmented [`RangeIndex`] both stores keep, and [`MemoryStore`].

mod index;
mod memory;

pub use index::{IndexBuildError, IndexIter, RangeIndex};
pub use memory::MemoryStore;

use std::fmt;

use crate::fingerprint::{Aggregate, Fingerprint, Salt};
use crate::key::{EntryKey, Range};
#[cfg(feature = "negentropy")]
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

    /// The wire fingerprint of `range` under the session's `salt` (spec 7.1): the digest of
    /// [`aggregate`](RangeStore::aggregate).
    fn fingerprint(&self, range: &Range, salt: &Salt) -> Result<Fingerprint, StoreError> {
        Ok(self.aggregate(range)?.fingerprint(salt))
    }

    #[cfg(feature = "negentropy")]
    /// The Negentropy V1 fingerprint of `range`, used only by the Negentropy dialect.
    ///
    /// The default scans the range in chunks of [`KEY_CHUNK`] keys (so it never holds more
    /// than one chunk in memory): `O(k)` key reads and additions plus one SHA-256 for a range
    /// of `k` keys, so a Negentropy session costs `O(n)` per round where oplog-sync's own
    /// fingerprint costs `O(log n)` per range. A store that serves Negentropy peers often
    /// can override it with cached per-node sums, as Negentropy's B-tree does.
    fn negentropy_fingerprint(&self, range: &Range) -> Result<negentropy::Fingerprint, StoreError> {
        let mut acc = negentropy::Accumulator::EMPTY;
        for_each_chunk(self, range, |keys| {
            for k in keys {
                acc.add(&k.hash);
            }
            Ok(true)
        })?;
        Ok(acc.fingerprint())
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
    fn fingerprint(&self, range: &Range, salt: &Salt) -> Result<Fingerprint, StoreError> {
        (**self).fingerprint(range, salt)
    }
    #[cfg(feature = "negentropy")]
    fn negentropy_fingerprint(&self, range: &Range) -> Result<negentropy::Fingerprint, StoreError> {
        (**self).negentropy_fingerprint(range)
    }
}

/// Keys read per [`RangeStore::keys`] call when the reconciler walks a range whose size it
/// does not bound in advance.
pub const KEY_CHUNK: usize = 1024;

/// The smallest key above `k`, if any.
#[cfg(feature = "negentropy")]
fn successor(k: &EntryKey) -> Option<EntryKey> {
    let mut hash = k.hash.0;
    for b in hash.iter_mut().rev() {
        if *b == u8::MAX {
            *b = 0;
        } else {
            *b += 1;
            return Some(EntryKey::new(k.hlc, hash));
        }
    }
    k.hlc.0.checked_add(1).map(|h| EntryKey::new(h, [0u8; 32]))
}

/// Calls `f` with the keys of `range` in key order, [`KEY_CHUNK`] at a time, until `f`
/// returns `false` or the range is exhausted. At most one chunk is held at once.
///
/// A store that returns keys outside the range asked for, or out of order, gets a
/// [`StoreError`] rather than a loop that never ends.
#[cfg(feature = "negentropy")]
pub(crate) fn for_each_chunk<S: RangeStore + ?Sized>(
    store: &S,
    range: &Range,
    mut f: impl FnMut(&[EntryKey]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut start = range.start;
    loop {
        let sub = Range::new(start, range.end);
        let keys = store.keys(&sub, KEY_CHUNK)?;
        let ordered = keys.windows(2).all(|w| w[0] < w[1]) && keys.iter().all(|k| sub.contains(k));
        if !ordered || keys.len() > KEY_CHUNK {
            return Err(StoreError::new(
                "store returned keys out of order, outside the range asked for, or more than asked",
            ));
        }
        if !f(&keys)? || keys.len() < KEY_CHUNK {
            return Ok(());
        }
        match keys.last().and_then(successor) {
            Some(next) => start = next,
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_is_the_next_key() {
        let k = EntryKey::new(5, [0xff; 32]);
        assert_eq!(successor(&k), Some(EntryKey::new(6, [0; 32])));
        let mut h = [0u8; 32];
        h[31] = 0xff;
        h[30] = 3;
        let mut n = [0u8; 32];
        n[30] = 4;
        assert_eq!(successor(&EntryKey::new(5, h)), Some(EntryKey::new(5, n)));
        assert_eq!(successor(&EntryKey::new(u64::MAX, [0xff; 32])), None);
    }
}
