//! What a session reads from the node's store: [`SessionStore`].

use crate::entry::Action;
use crate::key::{EntryKey, Hash};
use crate::range::StoreError;
use crate::wire::{AncestryAnswer, AncestryRequest};

/// The reads a [`Session`](super::Session) makes of the live store, besides the snapshot of
/// keys it reconciles over. Writes never go through here: received entries come out of the
/// session as [`Event::Apply`](super::Event::Apply) for the driver to store.
///
/// `oplog-store`'s `Store` implements it; so does
/// [`MemoryReplica`](crate::replica::MemoryReplica) (feature `testing`).
pub trait SessionStore<A: Action> {
    /// Appends to `out` the encoded form (section 5.5) of the entry with each key, in the
    /// order given. Every key comes from a snapshot of this store, and entries are never
    /// removed, so a key without an entry is a store error.
    fn load(&self, keys: &[EntryKey], out: &mut Vec<Vec<u8>>) -> Result<(), StoreError>;

    /// The fetch list (spec 6.1): parents that held-back entries wait for and that are
    /// neither held back nor deferred, ascending by hash, at most `max` of them.
    fn fetch_list(&self, max: usize) -> Result<Vec<Hash>, StoreError>;

    /// The haves of an ancestry request (spec 6.3, `haves_for_request` over the heads in
    /// hash order), at most `max`, within `max_visits`.
    fn haves(&self, max: usize, max_visits: u64) -> Result<Vec<Hash>, StoreError>;

    /// The answer to a peer's ancestry request (spec 6.3, [`AncestryAnswer::answer`] over
    /// the applied entries). `Err` only when the store failed; the session then ends.
    fn answer_ancestry(
        &self,
        req: &AncestryRequest,
        max_visits: u64,
        max_bytes: usize,
    ) -> Result<AncestryAnswer, StoreError>;
}

impl<A: Action, T: SessionStore<A> + ?Sized> SessionStore<A> for &T {
    fn load(&self, keys: &[EntryKey], out: &mut Vec<Vec<u8>>) -> Result<(), StoreError> {
        (**self).load(keys, out)
    }
    fn fetch_list(&self, max: usize) -> Result<Vec<Hash>, StoreError> {
        (**self).fetch_list(max)
    }
    fn haves(&self, max: usize, max_visits: u64) -> Result<Vec<Hash>, StoreError> {
        (**self).haves(max, max_visits)
    }
    fn answer_ancestry(
        &self,
        req: &AncestryRequest,
        max_visits: u64,
        max_bytes: usize,
    ) -> Result<AncestryAnswer, StoreError> {
        (**self).answer_ancestry(req, max_visits, max_bytes)
    }
}

#[cfg(feature = "testing")]
mod memory {
    use super::SessionStore;
    use crate::dag::haves_for_request;
    use crate::entry::Action;
    use crate::key::{EntryKey, Hash};
    use crate::range::StoreError;
    use crate::replica::MemoryReplica;
    use crate::wire::{AncestryAnswer, AncestryRequest};

    impl<A: Action> SessionStore<A> for MemoryReplica<A> {
        fn load(&self, keys: &[EntryKey], out: &mut Vec<Vec<u8>>) -> Result<(), StoreError> {
            for k in keys {
                let e = self
                    .get(&k.hash)
                    .ok_or_else(|| StoreError::new(format!("no entry for key {k:?}")))?;
                out.push(e.encode());
            }
            Ok(())
        }

        fn fetch_list(&self, max: usize) -> Result<Vec<Hash>, StoreError> {
            let mut m = self.missing();
            m.truncate(max);
            Ok(m)
        }

        fn haves(&self, max: usize, max_visits: u64) -> Result<Vec<Hash>, StoreError> {
            let heads = self.heads().hashes();
            haves_for_request(self, &heads, max, max_visits)
                .map_err(|e| StoreError::new(e.to_string()))
        }

        fn answer_ancestry(
            &self,
            req: &AncestryRequest,
            max_visits: u64,
            max_bytes: usize,
        ) -> Result<AncestryAnswer, StoreError> {
            AncestryAnswer::answer(self, req, max_visits, max_bytes)
        }
    }
}
