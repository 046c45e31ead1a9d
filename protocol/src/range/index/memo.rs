//! The query memo of a [`RangeIndex`](super::RangeIndex): the aggregates of the last few
//! leaf prefixes a range query measured, the positions of the last range asked about and
//! the leaf the last select by position ended in.
//!
//! Reconciliation measures adjacent ranges `[b0, b1)`, `[b1, b2)`, ... (a split on one side,
//! the answers to it on the other), so every inner bound is measured twice; the part of a
//! bound's leaf below it (up to a quarter of a bulk-built leaf, each key expanded to 512
//! bytes by BLAKE3) is a large part of a query's cost. The memo keeps the last [`SLOTS`].
//!
//! An entry is named by the leaf's key buffer (its address and length) and the position in
//! it. The buffer stays alive and unchanged as long as the index that owns the memo holds
//! the leaf, and every change to an index goes through `&mut self`, which clears the memo
//! first; a snapshot starts with an empty memo of its own. Memory: at most [`SLOTS`]
//! aggregates (520 bytes each) per index, allocated on first use, one range and one shared
//! pointer to a leaf (released by every change, so that the change can edit that leaf in
//! place rather than copy it).

use crate::fingerprint::Aggregate;
use crate::key::{EntryKey, Range};

use std::sync::Arc;

use super::node::{leaf_below, LeafRef, Node, MID};

/// Leaf edges remembered per index: enough for a split into 32 parts (its 33 bounds, the two
/// outer ones measured first when the peer's fingerprint of the whole range was checked).
pub(super) const SLOTS: usize = 40;

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct EdgeMemo {
    /// `(leaf buffer address, leaf length, position, aggregate of the keys below it)`.
    entries: Vec<(usize, usize, usize, Aggregate)>,
    /// The entry to replace next once all [`SLOTS`] are used.
    next: usize,
    /// The last range whose positions were asked for, and its positions `[lo, hi)`: a split
    /// asks for two keys by rank in the same range up to 30 times.
    span: Option<(Range, u64, u64)>,
    /// The leaf the last select by position ended in, and the position of its first key: a
    /// split asks for the keys at ranks `r - 1` and `r`, nearly always in one leaf.
    pub(super) leaf: Option<(Arc<Node>, u64)>,
}

impl EdgeMemo {
    /// Forgets every entry (the index is about to change).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.next = 0;
        self.span = None;
        // Also gives the leaf back, so that the change can edit it in place.
        self.leaf = None;
    }

    /// The key at position `pos` if it lies in the remembered leaf.
    pub(super) fn key_in_leaf(&self, pos: u64) -> Option<EntryKey> {
        let (leaf, base) = self.leaf.as_ref()?;
        let Node::Leaf { keys, .. } = &**leaf else {
            return None;
        };
        let i = usize::try_from(pos.checked_sub(*base)?).ok()?;
        keys.get(i).copied()
    }

    /// The positions of `range`, remembered, or computed by `compute` (and then remembered).
    pub(super) fn span(
        &mut self,
        range: &Range,
        compute: impl FnOnce() -> (u64, u64),
    ) -> (u64, u64) {
        match self.span {
            Some((r, lo, hi)) if r == *range => (lo, hi),
            _ => {
                let (lo, hi) = compute();
                self.span = Some((*range, lo, hi));
                (lo, hi)
            }
        }
    }

    /// The aggregate of the leaf's keys below `pos`, remembered or computed (and then
    /// remembered).
    pub(super) fn below(&mut self, leaf: &LeafRef<'_, Aggregate>, pos: usize) -> Aggregate {
        let keys = leaf.keys;
        // An edge at either end of the leaf or at its checkpoint costs nothing to compute.
        if pos == 0 || pos == keys.len() || pos == MID {
            return leaf_below(leaf, pos);
        }
        let id = (keys.as_ptr() as usize, keys.len(), pos);
        if let Some(e) = self.entries.iter().find(|e| (e.0, e.1, e.2) == id) {
            return e.3.clone();
        }
        let agg = leaf_below(leaf, pos);
        let entry = (id.0, id.1, id.2, agg.clone());
        if self.entries.len() < SLOTS {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % SLOTS;
        }
        agg
    }

    /// Entries held (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
