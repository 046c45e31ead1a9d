//! The protocol's DAG reads on a [`Store`]: [`DagView`], answered by redb. Range queries
//! come from [`Store::snapshot`], a frozen [`RangeIndex`](oplog_protocol::RangeIndex).

use std::borrow::Cow;

use oplog_protocol::dag::DagView;
use oplog_protocol::{Action, Hash, LogEntry, StoreError};
use redb::{ReadOnlyTable, ReadableDatabase};

use crate::error::Error;
use crate::schema::{BY_HASH, ENTRIES};
use crate::{decode_stored, Store};

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
