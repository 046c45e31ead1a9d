//! The painting walk shared by the ancestry and conflict computations.

use std::borrow::Cow;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BinaryHeap, HashMap};

use crate::action::Action;
use crate::entry::LogEntry;
use crate::key::{EntryKey, Hash};

use super::{DagError, DagView};

struct Node<'v, A: Action> {
    entry: Cow<'v, LogEntry<A>>,
    flags: u64,
    popped: bool,
}

/// Walks a view in descending key order, painting entries with colour bits. An entry painted
/// with every bit of `done` no longer keeps the walk going; the walk ends once the queue holds
/// only such entries (git's merge-base painting).
pub(super) struct Walker<'v, A: Action, V: ?Sized> {
    view: &'v V,
    heap: BinaryHeap<EntryKey>,
    nodes: HashMap<Hash, Node<'v, A>>,
    done: u64,
    pending: usize,
}

impl<'v, A: Action, V: DagView<A> + ?Sized> Walker<'v, A, V> {
    pub(super) fn new(view: &'v V, done: u64) -> Self {
        Walker {
            view,
            heap: BinaryHeap::new(),
            nodes: HashMap::new(),
            done,
            pending: 0,
        }
    }

    /// Adds `flags` to `hash`, queueing it on first sight. `Ok(false)` if the view lacks it.
    pub(super) fn paint(&mut self, hash: &Hash, flags: u64) -> Result<bool, DagError> {
        let done = self.done;
        match self.nodes.entry(*hash) {
            MapEntry::Occupied(mut o) => {
                let node = o.get_mut();
                // A popped entry is final; painting it again means a broken HLC order in the
                // store, which must not loop or panic.
                if !node.popped {
                    let was_done = node.flags & done == done;
                    node.flags |= flags;
                    if !was_done && node.flags & done == done {
                        self.pending -= 1;
                    }
                }
            }
            MapEntry::Vacant(v) => {
                let view = self.view;
                let Some(entry) = view.get(hash)? else {
                    return Ok(false);
                };
                self.heap.push(EntryKey {
                    hlc: entry.hlc,
                    hash: *hash,
                });
                if flags & done != done {
                    self.pending += 1;
                }
                v.insert(Node {
                    entry,
                    flags,
                    popped: false,
                });
            }
        }
        Ok(true)
    }

    /// Pops the greatest queued key. Unless `all`, stops once only finished entries remain.
    pub(super) fn pop(&mut self, all: bool) -> Option<(Hash, u64)> {
        if !all && self.pending == 0 {
            return None;
        }
        let key = self.heap.pop()?;
        let node = self.nodes.get_mut(&key.hash)?;
        node.popped = true;
        if node.flags & self.done != self.done {
            self.pending -= 1;
        }
        Some((key.hash, node.flags))
    }

    pub(super) fn peek(&self) -> Option<&EntryKey> {
        self.heap.peek()
    }

    pub(super) fn entry(&self, hash: &Hash) -> Option<&LogEntry<A>> {
        self.nodes.get(hash).map(|n| &*n.entry)
    }

    pub(super) fn paint_parents(&mut self, hash: &Hash, flags: u64) -> Result<(), DagError> {
        let parents = self
            .entry(hash)
            .map(|e| e.parents.clone())
            .unwrap_or_default();
        for p in &parents {
            if !self.paint(p, flags)? {
                return Err(DagError::Missing(*p));
            }
        }
        Ok(())
    }
}
