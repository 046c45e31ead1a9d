//! Heads (spec 6.2): the applied entries no applied entry names as a parent.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::entry::LogEntry;
use crate::hlc::Hlc;
use crate::key::{EntryKey, Hash, NodeId};

/// The heads of a DAG (entries no other entry names as a parent), maintained incrementally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heads {
    map: BTreeMap<Hash, (Hlc, NodeId)>,
}

impl Heads {
    /// No heads.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an applied entry: its parents stop being heads and it becomes one. Call once per
    /// entry, parents before children, as a store closed under parents applies them.
    pub fn apply<A>(&mut self, entry: &LogEntry<A>) {
        for p in &entry.parents {
            self.map.remove(p);
        }
        self.map.insert(entry.hash, (entry.hlc, entry.node_id));
    }

    /// The head hashes, ascending.
    pub fn hashes(&self) -> Vec<Hash> {
        self.map.keys().copied().collect()
    }

    /// The heads with their authors, ascending by key: the input of [`should_merge`](super::should_merge).
    pub fn with_keys(&self) -> Vec<(EntryKey, NodeId)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|(hash, (hlc, node))| {
                (
                    EntryKey {
                        hlc: *hlc,
                        hash: *hash,
                    },
                    *node,
                )
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether `hash` is a head.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.map.contains_key(hash)
    }

    /// Number of heads.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no heads (an empty log).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The heads of a set of entries computed from scratch, ascending: the entries no entry of the
/// set names as a parent.
pub fn heads_of<'a, A: 'a>(entries: impl IntoIterator<Item = &'a LogEntry<A>>) -> Vec<Hash> {
    let mut hashes = BTreeSet::new();
    let mut named = HashSet::new();
    for e in entries {
        hashes.insert(e.hash);
        named.extend(e.parents.iter().copied());
    }
    hashes.into_iter().filter(|h| !named.contains(h)).collect()
}
