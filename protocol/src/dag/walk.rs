//! The painting walk shared by the ancestry and conflict computations, with its visit budget.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BinaryHeap, HashMap};

use crate::entry::Action;
use crate::key::{EntryKey, Hash};

use super::lww::LwwWrite;
use super::{DagError, DagView};

/// Default visit budget of every DAG walk: entries loaded plus parent edges followed.
///
/// A walk keeps, per visited entry, its parents' hashes (32 bytes per edge, each edge a visit)
/// and about 130 bytes of bookkeeping (plus the register name, in a conflict walk), never the
/// entry itself. So the default bounds one walk to about 140 MB in the worst case (2^20
/// parentless entries) and about 85 MB when every entry has a parent (each then costs two
/// visits); at about a microsecond per visit from an in-memory view it also bounds the time a
/// peer's request can cost.
pub const DEFAULT_MAX_VISITS: u64 = 1 << 20;

/// A set of colours, one bit per branch or side of a walk (any number of them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Colours(Box<[u64]>);

impl Colours {
    /// No colour, wide enough for `n` colours.
    pub(super) fn none(n: usize) -> Self {
        Colours(vec![0; n.div_ceil(64).max(1)].into_boxed_slice())
    }

    /// Colours `0..n`.
    pub(super) fn all(n: usize) -> Self {
        let mut c = Colours::none(n);
        for i in 0..n {
            c.set(i);
        }
        c
    }

    /// Only colour `i`, wide enough for `n` colours.
    pub(super) fn one(n: usize, i: usize) -> Self {
        let mut c = Colours::none(n);
        c.set(i);
        c
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    /// Whether colour `i` is set.
    pub(super) fn has(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Whether every colour of `other` is set here.
    pub(super) fn covers(&self, other: &Colours) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & b == *b)
    }

    fn add(&mut self, other: &Colours) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
    }
}

/// What a walk keeps of a visited entry: its parents and, for walks that ask, the register
/// write it makes; never the entry itself (names and object ids would multiply the memory a
/// walk holds by the size of an entry).
struct Node<A: Action> {
    /// Taken (left empty) when the entry is popped and its parents are painted.
    parents: Box<[Hash]>,
    write: Option<Box<(A::Key, LwwWrite)>>,
    colours: Colours,
    popped: bool,
}

/// Walks a view in descending key order, painting entries with colours. An entry painted with
/// every colour of `done` no longer keeps the walk going; the walk ends once the queue holds
/// only such entries (git's merge-base painting).
///
/// Every entry loaded and every parent edge followed counts against the visit budget; past it,
/// the walk fails with [`DagError::VisitBudget`].
pub(super) struct Walker<'v, A: Action, V: ?Sized> {
    view: &'v V,
    heap: BinaryHeap<EntryKey>,
    nodes: HashMap<Hash, Node<A>>,
    /// Whether nodes keep the register write of their entry.
    keep_writes: bool,
    done: Colours,
    pending: usize,
    visits: u64,
    max_visits: u64,
}

impl<'v, A: Action, V: DagView<A> + ?Sized> Walker<'v, A, V> {
    /// A walk that stops once every queued entry has all colours of `done`; `keep_writes`
    /// keeps each entry's register write for [`Walker::take_write`].
    pub(super) fn new(view: &'v V, done: Colours, max_visits: u64, keep_writes: bool) -> Self {
        Walker {
            view,
            heap: BinaryHeap::new(),
            nodes: HashMap::new(),
            keep_writes,
            done,
            pending: 0,
            visits: 0,
            max_visits,
        }
    }

    fn visit(&mut self, n: u64) -> Result<(), DagError> {
        self.visits = self.visits.saturating_add(n);
        if self.visits > self.max_visits {
            return Err(DagError::VisitBudget {
                max: self.max_visits,
            });
        }
        Ok(())
    }

    /// Adds `colours` to `hash`, queueing it on first sight. `Ok(false)` if the view lacks it.
    pub(super) fn paint(&mut self, hash: &Hash, colours: &Colours) -> Result<bool, DagError> {
        if let MapEntry::Occupied(mut o) = self.nodes.entry(*hash) {
            let node = o.get_mut();
            // A popped entry is final; painting it again means a broken HLC order in the
            // store, which must not loop or panic.
            if !node.popped {
                let was_done = node.colours.covers(&self.done);
                node.colours.add(colours);
                if !was_done && node.colours.covers(&self.done) {
                    self.pending -= 1;
                }
            }
            return Ok(true);
        }
        self.visit(1)?;
        let view = self.view;
        let Some(entry) = view.get(hash)? else {
            return Ok(false);
        };
        self.heap.push(EntryKey {
            hlc: entry.hlc,
            hash: *hash,
        });
        if !colours.covers(&self.done) {
            self.pending += 1;
        }
        let write = if self.keep_writes {
            LwwWrite::of(&entry).map(Box::new)
        } else {
            None
        };
        self.nodes.insert(
            *hash,
            Node {
                parents: entry.parents.clone().into_boxed_slice(),
                write,
                colours: colours.clone(),
                popped: false,
            },
        );
        Ok(true)
    }

    /// Pops the greatest queued key. Unless `all`, stops once only finished entries remain.
    pub(super) fn pop(&mut self, all: bool) -> Option<(Hash, Colours)> {
        if !all && self.pending == 0 {
            return None;
        }
        let key = self.heap.pop()?;
        let node = self.nodes.get_mut(&key.hash)?;
        node.popped = true;
        if !node.colours.covers(&self.done) {
            self.pending -= 1;
        }
        Some((key.hash, node.colours.clone()))
    }

    pub(super) fn peek(&self) -> Option<&EntryKey> {
        self.heap.peek()
    }

    /// The register write of a visited entry (walks made with `keep_writes`), once.
    pub(super) fn take_write(&mut self, hash: &Hash) -> Option<(A::Key, LwwWrite)> {
        self.nodes
            .get_mut(hash)
            .and_then(|n| n.write.take())
            .map(|w| *w)
    }

    /// Paints the parents of the popped entry `hash` with its (final) colours.
    pub(super) fn paint_parents(&mut self, hash: &Hash, colours: &Colours) -> Result<(), DagError> {
        let parents = self
            .nodes
            .get_mut(hash)
            .map(|n| std::mem::take(&mut n.parents))
            .unwrap_or_default();
        self.visit(parents.len() as u64)?;
        for p in &parents {
            if !self.paint(p, colours)? {
                return Err(DagError::Missing(*p));
            }
        }
        Ok(())
    }
}
