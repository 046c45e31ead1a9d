//! The protocol's read traits on a [`Store`]: [`RangeStore`] (answered by the in-memory index)
//! and [`DagView`] (answered by redb).

use std::borrow::Cow;

use oplog_protocol::dag::DagView;
use oplog_protocol::{
    negentropy, Action, Aggregate, EntryKey, Fingerprint, Hash, LogEntry, Range, RangeIndex,
    RangeStore, StoreError,
};
use redb::{ReadOnlyTable, ReadableDatabase};

use crate::error::Error;
use crate::schema::{BY_HASH, ENTRIES};
use crate::{decode_stored, Store};

/// Each call answers from a snapshot of the index taken when the call starts, so one call
/// sees one consistent set; the set only contains applied entries (never held-back or
/// deferred ones). Between calls the set may grow: for a whole reconciliation session, use
/// [`Store::snapshot`] instead, which freezes it.
impl<A: Action> RangeStore for Store<A> {
    fn count(&self, range: &Range) -> Result<u64, StoreError> {
        self.read_index().count(range)
    }

    fn aggregate(&self, range: &Range) -> Result<Aggregate, StoreError> {
        self.read_index().aggregate(range)
    }

    fn key_at(&self, range: &Range, rank: u64) -> Result<Option<EntryKey>, StoreError> {
        self.read_index().key_at(range, rank)
    }

    fn keys(&self, range: &Range, limit: usize) -> Result<Vec<EntryKey>, StoreError> {
        self.read_index().keys(range, limit)
    }

    fn fingerprint(&self, range: &Range) -> Result<Fingerprint, StoreError> {
        self.read_index().fingerprint(range)
    }

    fn negentropy_fingerprint(&self, range: &Range) -> Result<negentropy::Fingerprint, StoreError> {
        self.read_index().negentropy_fingerprint(range)
    }
}

/// The applied set of a [`Store`] frozen at one instant ([`Store::snapshot`]): a
/// [`RangeStore`] whose answers never change, however many entries the store applies
/// meanwhile. Taking one costs `O(1)`; it shares the index's nodes, and the store copies a
/// node only when it changes one that a snapshot still holds (a path of `O(log n)` nodes per
/// insert). Drop it when the session ends.
#[derive(Clone, Debug)]
pub struct StoreSnapshot {
    index: RangeIndex,
}

impl StoreSnapshot {
    pub(crate) fn new(index: RangeIndex) -> Self {
        StoreSnapshot { index }
    }

    /// Number of applied entries in the snapshot.
    pub fn len(&self) -> u64 {
        self.index.len()
    }

    /// Whether the snapshot holds no entry.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The index the snapshot answers from.
    pub fn index(&self) -> &RangeIndex {
        &self.index
    }
}

/// `O(log n)` per query in both dialects; nothing scans.
impl RangeStore for StoreSnapshot {
    fn count(&self, range: &Range) -> Result<u64, StoreError> {
        self.index.count(range)
    }

    fn aggregate(&self, range: &Range) -> Result<Aggregate, StoreError> {
        self.index.aggregate(range)
    }

    fn key_at(&self, range: &Range, rank: u64) -> Result<Option<EntryKey>, StoreError> {
        self.index.key_at(range, rank)
    }

    fn keys(&self, range: &Range, limit: usize) -> Result<Vec<EntryKey>, StoreError> {
        self.index.keys(range, limit)
    }

    fn fingerprint(&self, range: &Range) -> Result<Fingerprint, StoreError> {
        self.index.fingerprint(range)
    }

    fn negentropy_fingerprint(&self, range: &Range) -> Result<negentropy::Fingerprint, StoreError> {
        self.index.negentropy_fingerprint(range)
    }
}

/// Applied entries of one redb snapshot, for the protocol's DAG walks.
pub(crate) struct ReadDag {
    pub(crate) entries: ReadOnlyTable<(u64, [u8; 32]), &'static [u8]>,
    pub(crate) by_hash: ReadOnlyTable<[u8; 32], u64>,
}

impl ReadDag {
    pub(crate) fn open(db: &redb::Database) -> Result<Self, Error> {
        let txn = db.begin_read()?;
        Ok(ReadDag {
            entries: txn.open_table(ENTRIES)?,
            by_hash: txn.open_table(BY_HASH)?,
        })
    }

    pub(crate) fn get<A: Action>(&self, hash: &Hash) -> Result<Option<LogEntry<A>>, Error> {
        let Some(hlc) = self.by_hash.get(hash.0)? else {
            return Ok(None);
        };
        let hlc = hlc.value();
        let bytes = self.entries.get((hlc, hash.0))?.ok_or_else(|| {
            Error::corrupt("by_hash", format!("names {hash} but entries lacks it"))
        })?;
        Ok(Some(decode_stored(bytes.value(), "applied entry")?))
    }
}

impl<A: Action> DagView<A> for ReadDag {
    fn get(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, StoreError> {
        Ok(ReadDag::get(self, hash)?.map(Cow::Owned))
    }

    fn contains(&self, hash: &Hash) -> Result<bool, StoreError> {
        Ok(self.by_hash.get(hash.0).map_err(Error::from)?.is_some())
    }
}

/// Each call reads the latest committed snapshot. For a long walk, prefer [`Store::dag`],
/// which pins one snapshot.
impl<A: Action> DagView<A> for Store<A> {
    fn get(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, StoreError> {
        Ok(ReadDag::open(&self.db)?.get(hash)?.map(Cow::Owned))
    }

    fn contains(&self, hash: &Hash) -> Result<bool, StoreError> {
        let dag = ReadDag::open(&self.db)?;
        Ok(dag.by_hash.get(hash.0).map_err(Error::from)?.is_some())
    }
}

/// A pinned snapshot of the applied DAG, for the protocol's walks
/// ([`oplog_protocol::dag::ancestry_to_send`], [`oplog_protocol::dag::merge_conflicts`], ...).
pub struct DagSnapshot(ReadDag);

impl std::fmt::Debug for DagSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DagSnapshot")
    }
}

impl<A: Action> DagView<A> for DagSnapshot {
    fn get(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, StoreError> {
        DagView::<A>::get(&self.0, hash)
    }

    fn contains(&self, hash: &Hash) -> Result<bool, StoreError> {
        DagView::<A>::contains(&self.0, hash)
    }
}

impl<A: Action> Store<A> {
    /// A snapshot of the applied entries as of now, readable through [`DagView`].
    pub fn dag(&self) -> Result<DagSnapshot, Error> {
        Ok(DagSnapshot(ReadDag::open(&self.db)?))
    }
}
