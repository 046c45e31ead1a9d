//! The reads a sync session makes of a [`Store`]: [`SessionStore`].

use oplog_protocol::dag::haves_for_request;
use oplog_protocol::session::SessionStore;
use oplog_protocol::wire::{AncestryAnswer, AncestryRequest};
use oplog_protocol::{Action, EntryKey, Hash, StoreError};
use redb::ReadableDatabase;

use crate::error::Error;
use crate::range::ReadDag;
use crate::schema::ENTRIES;
use crate::Store;

impl<A: Action> SessionStore<A> for Store<A> {
    /// Reads the stored bytes of each entry (stored in their wire form) in one read
    /// transaction, without decoding them.
    fn load(&self, keys: &[EntryKey], out: &mut Vec<Vec<u8>>) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(Error::from)?;
        let entries = txn.open_table(ENTRIES).map_err(Error::from)?;
        for k in keys {
            let bytes = entries
                .get((k.hlc.0, k.hash.0))
                .map_err(Error::from)?
                .ok_or_else(|| {
                    StoreError::new(format!(
                        "entry {} of the session's snapshot is not stored",
                        k.hash
                    ))
                })?;
            out.push(bytes.value().to_vec());
        }
        Ok(())
    }

    fn fetch_list(&self, max: usize) -> Result<Vec<Hash>, StoreError> {
        let mut missing = self.missing()?;
        missing.truncate(max);
        Ok(missing)
    }

    fn haves(&self, max: usize, max_visits: u64) -> Result<Vec<Hash>, StoreError> {
        let mut heads: Vec<Hash> = self.heads()?.into_iter().map(|(k, _)| k.hash).collect();
        heads.sort_unstable();
        let dag = ReadDag::open(&self.db)?;
        haves_for_request::<A>(&dag, &heads, max, max_visits)
            .map_err(|e| StoreError::new(e.to_string()))
    }

    fn answer_ancestry(
        &self,
        req: &AncestryRequest,
        max_visits: u64,
        max_bytes: usize,
    ) -> Result<AncestryAnswer, StoreError> {
        let dag = ReadDag::open(&self.db)?;
        AncestryAnswer::answer::<A>(&dag, req, max_visits, max_bytes)
    }
}
