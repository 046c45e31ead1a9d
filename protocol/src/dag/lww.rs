//! Last-writer-wins (spec 6.4): the order of writes to one register and the view it gives.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::entry::Action;
use crate::entry::LogEntry;
use crate::key::{EntryKey, NodeId};

/// One write to a last-writer-wins register, as far as the winner rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LwwWrite {
    /// The writing entry's key `(hlc, hash)`.
    pub key: EntryKey,
    /// Its author.
    pub node_id: NodeId,
    /// Whether it is a tombstone.
    pub is_delete: bool,
}

impl LwwWrite {
    /// The register `entry` writes and the write itself, or `None` if it writes no register.
    pub fn of<A: Action>(entry: &LogEntry<A>) -> Option<(A::Key, LwwWrite)> {
        let key = entry.action.lww_key()?;
        Some((
            key,
            LwwWrite {
                key: entry.key(),
                node_id: entry.node_id,
                is_delete: entry.action.is_delete(),
            },
        ))
    }
}

/// The total order of writes to one register; the greatest wins. Compares HLC, then author,
/// then hash (Shoal's rule, highest HLC then highest node id, made total). Two writes tie on
/// `(hlc, node_id)` only if one author signed two entries with one stamp (a bug or malice);
/// the higher hash then wins, so every replica still picks the same winner.
pub fn lww_cmp(a: &LwwWrite, b: &LwwWrite) -> Ordering {
    (a.key.hlc, a.node_id, a.key.hash).cmp(&(b.key.hlc, b.node_id, b.key.hash))
}

/// The state of every register: its winning write, tombstones included. Applying entries is
/// commutative and idempotent, so the view depends only on the set of entries applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View<A: Action> {
    map: BTreeMap<A::Key, LwwWrite>,
}

impl<A: Action> Default for View<A> {
    fn default() -> Self {
        View {
            map: BTreeMap::new(),
        }
    }
}

impl<A: Action> View<A> {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `entry` into account; returns whether it became its register's winner.
    pub fn apply(&mut self, entry: &LogEntry<A>) -> bool {
        let Some((key, write)) = LwwWrite::of(entry) else {
            return false;
        };
        match self.map.get_mut(&key) {
            Some(cur) if lww_cmp(&write, cur) != Ordering::Greater => false,
            Some(cur) => {
                *cur = write;
                true
            }
            None => {
                self.map.insert(key, write);
                true
            }
        }
    }

    /// The winning write of `key` (possibly a tombstone), if any entry wrote it.
    pub fn get(&self, key: &A::Key) -> Option<&LwwWrite> {
        self.map.get(key)
    }

    /// Every register with its winner, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&A::Key, &LwwWrite)> {
        self.map.iter()
    }

    /// Number of registers ever written (tombstones included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no register was written.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
