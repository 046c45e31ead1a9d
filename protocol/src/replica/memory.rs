//! [`MemoryReplica`]: the reference replica, over in-memory maps.

use std::borrow::Cow;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use crate::dag::{DagView, Heads, View};
use crate::entry::Action;
use crate::entry::{verify_batch, LogEntry, VerifiedEntry};
use crate::hlc::Hlc;
use crate::key::{EntryKey, Hash, NodeId};
use crate::range::{MemoryStore, StoreError};

use super::apply::{self, ReplicaState, Usage};
use super::{InsertReport, Limits};

/// An in-memory replica of the log: the reference model the persistent store is
/// property-tested against.
///
/// Invariant: the applied set is closed under parents. Entries with missing parents are held
/// back and promoted (iteratively, so chains of any length arriving child-first are fine) as
/// soon as their parents are applied; entries stamped too far in the future are deferred. Both
/// sets are capped by the replica's [`Limits`]. The rules are those of [`super::insert`], run
/// over this replica's maps.
#[derive(Debug, Clone)]
pub struct MemoryReplica<A: Action> {
    limits: Limits,
    entries: HashMap<Hash, LogEntry<A>>,
    order: BTreeSet<EntryKey>,
    heads: Heads,
    view: View<A>,
    held: Kept<A, EntryKey>,
    /// Held-back entry -> count of parents it still lacks.
    lacking: HashMap<Hash, u32>,
    /// `(unapplied parent, held-back entry waiting for it)`.
    waiting: BTreeSet<(Hash, Hash)>,
    deferred: Kept<A, (u64, Hash)>,
}

/// Entries kept aside (held back or deferred), indexed for the caps: by an order key `K`
/// overall and per author, with per-author counts and total bytes.
#[derive(Debug, Clone)]
struct Kept<A, K> {
    map: HashMap<Hash, (K, LogEntry<A>)>,
    by_order: BTreeSet<K>,
    by_author: BTreeSet<(NodeId, K)>,
    per_author: HashMap<NodeId, u64>,
    bytes: u64,
}

impl<A: Action, K: Ord + Copy> Kept<A, K> {
    fn new() -> Self {
        Kept {
            map: HashMap::new(),
            by_order: BTreeSet::new(),
            by_author: BTreeSet::new(),
            per_author: HashMap::new(),
            bytes: 0,
        }
    }

    fn insert(&mut self, order: K, entry: LogEntry<A>) {
        self.remove(&entry.hash);
        self.by_order.insert(order);
        self.by_author.insert((entry.node_id, order));
        *self.per_author.entry(entry.node_id).or_default() += 1;
        self.bytes += entry.encode().len() as u64;
        self.map.insert(entry.hash, (order, entry));
    }

    fn remove(&mut self, hash: &Hash) -> Option<(K, LogEntry<A>)> {
        let (order, entry) = self.map.remove(hash)?;
        self.by_order.remove(&order);
        self.by_author.remove(&(entry.node_id, order));
        if let MapEntry::Occupied(mut n) = self.per_author.entry(entry.node_id) {
            *n.get_mut() -= 1;
            if *n.get() == 0 {
                n.remove();
            }
        }
        self.bytes -= entry.encode().len() as u64;
        Some((order, entry))
    }

    fn usage(&self, author: &NodeId) -> Usage {
        Usage {
            author_entries: self.per_author.get(author).copied().unwrap_or(0),
            total_bytes: self.bytes,
        }
    }

    /// The least (`last = false`) or greatest order key, of `author` or of all.
    fn extreme(&self, author: Option<&NodeId>, last: bool) -> Option<K> {
        match author {
            None if last => self.by_order.last().copied(),
            None => self.by_order.first().copied(),
            Some(a) => {
                let (lo, hi) = (self.by_order.first()?, self.by_order.last()?);
                let mut it = self.by_author.range((*a, *lo)..=(*a, *hi)).map(|(_, k)| *k);
                if last {
                    it.next_back()
                } else {
                    it.next()
                }
            }
        }
    }
}

impl<A: Action> Default for MemoryReplica<A> {
    fn default() -> Self {
        MemoryReplica::with_limits(Limits::default())
    }
}

impl<A: Action> DagView<A> for MemoryReplica<A> {
    fn get(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, StoreError> {
        Ok(self.entries.get(hash).map(Cow::Borrowed))
    }
    fn contains(&self, hash: &Hash) -> Result<bool, StoreError> {
        Ok(self.entries.contains_key(hash))
    }
}

/// The maps of a [`MemoryReplica`] as [`super::insert`] sees them. A private wrapper, so only
/// the shared rules can change a replica's state.
pub(super) struct Maps<'r, A: Action>(pub(super) &'r mut MemoryReplica<A>);

impl<A: Action> ReplicaState<A> for Maps<'_, A> {
    type Error = Infallible;

    fn applied_hlc(&self, hash: &Hash) -> Result<Option<Hlc>, Infallible> {
        Ok(self.0.entries.get(hash).map(|e| e.hlc))
    }
    fn is_applied(&self, hash: &Hash) -> Result<bool, Infallible> {
        Ok(self.0.entries.contains_key(hash))
    }
    fn apply(&mut self, entry: VerifiedEntry<A>) -> Result<(), Infallible> {
        let entry = entry.into_inner();
        let r = &mut *self.0;
        r.order.insert(entry.key());
        r.heads.apply(&entry);
        r.view.apply(&entry);
        r.entries.insert(entry.hash, entry);
        Ok(())
    }
    fn held(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, Infallible> {
        Ok(self.0.held.map.get(hash).map(|(_, e)| Cow::Borrowed(e)))
    }
    fn is_held(&self, hash: &Hash) -> Result<bool, Infallible> {
        Ok(self.0.held.map.contains_key(hash))
    }
    fn hold(&mut self, entry: LogEntry<A>, missing: &[Hash]) -> Result<(), Infallible> {
        for p in missing {
            self.0.waiting.insert((*p, entry.hash));
        }
        let lacking = u32::try_from(missing.len()).unwrap_or(u32::MAX);
        self.0.lacking.insert(entry.hash, lacking);
        self.0.held.insert(entry.key(), entry);
        Ok(())
    }
    fn parent_arrived(&mut self, child: &Hash) -> Result<Option<u32>, Infallible> {
        Ok(self.0.lacking.get_mut(child).map(|n| {
            *n = n.saturating_sub(1);
            *n
        }))
    }
    fn take_held(&mut self, hash: &Hash) -> Result<Option<LogEntry<A>>, Infallible> {
        self.0.lacking.remove(hash);
        Ok(self.0.held.remove(hash).map(|(_, e)| e))
    }
    fn take_waiters(&mut self, parent: &Hash) -> Result<Vec<Hash>, Infallible> {
        let children: Vec<Hash> = self
            .0
            .waiting
            .range((*parent, Hash::ZERO)..)
            .take_while(|(p, _)| p == parent)
            .map(|(_, c)| *c)
            .collect();
        for c in &children {
            self.0.waiting.remove(&(*parent, *c));
        }
        Ok(children)
    }
    fn unwait(&mut self, parent: &Hash, child: &Hash) -> Result<(), Infallible> {
        self.0.waiting.remove(&(*parent, *child));
        Ok(())
    }
    fn held_usage(&self, author: &NodeId) -> Result<Usage, Infallible> {
        Ok(self.0.held.usage(author))
    }
    fn oldest_held(&self, author: Option<&NodeId>) -> Result<Option<EntryKey>, Infallible> {
        Ok(self.0.held.extreme(author, false))
    }
    fn defer(&mut self, entry: LogEntry<A>, not_before: u64) -> Result<(), Infallible> {
        self.0.deferred.insert((not_before, entry.hash), entry);
        Ok(())
    }
    fn deferred_until(&self, hash: &Hash) -> Result<Option<u64>, Infallible> {
        Ok(self.0.deferred.map.get(hash).map(|((t, _), _)| *t))
    }
    fn undefer(&mut self, hash: &Hash) -> Result<(), Infallible> {
        self.0.deferred.remove(hash);
        Ok(())
    }
    fn take_due(&mut self, now_nanos: u64) -> Result<Vec<LogEntry<A>>, Infallible> {
        let due: Vec<Hash> = self
            .0
            .deferred
            .by_order
            .range(..=(now_nanos, Hash([0xff; 32])))
            .map(|(_, h)| *h)
            .collect();
        Ok(due
            .iter()
            .filter_map(|h| self.0.deferred.remove(h).map(|(_, e)| e))
            .collect())
    }
    fn deferred_usage(&self, author: &NodeId) -> Result<Usage, Infallible> {
        Ok(self.0.deferred.usage(author))
    }
    fn latest_deferred(&self, author: Option<&NodeId>) -> Result<Option<(u64, Hash)>, Infallible> {
        Ok(self.0.deferred.extreme(author, true))
    }
}

fn infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

impl<A: Action> MemoryReplica<A> {
    /// An empty replica with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty replica with these caps on held-back and deferred entries. The drift bound is
    /// given to each [`MemoryReplica::insert`].
    pub fn with_limits(limits: Limits) -> Self {
        MemoryReplica {
            limits,
            entries: HashMap::new(),
            order: BTreeSet::new(),
            heads: Heads::new(),
            view: View::new(),
            held: Kept::new(),
            lacking: HashMap::new(),
            waiting: BTreeSet::new(),
            deferred: Kept::new(),
        }
    }

    /// The caps this replica keeps.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Verifies `entries` ([`verify_batch`]) and stores them by [`super::insert`] (in any
    /// order; a batch is processed in key order, so a batch closed under parents applies
    /// fully), with drift bound `max_drift` and this replica's caps. Each entry is checked
    /// against `allowed` (if given), for drift via
    /// [`admission`](crate::hlc::admission)`(hlc, now_nanos, max_drift)` (too far ahead:
    /// deferred), and for parent HLC order; it is then applied if its parents are applied,
    /// held back otherwise. Re-inserting an applied, held-back or deferred entry changes
    /// nothing. Deferred entries that came due are admitted first.
    pub fn insert(
        &mut self,
        entries: impl IntoIterator<Item = LogEntry<A>>,
        now_nanos: u64,
        max_drift: Duration,
        allowed: Option<&HashSet<NodeId>>,
    ) -> InsertReport {
        let limits = Limits {
            max_drift,
            ..self.limits.clone()
        };
        let checked = verify_batch(entries.into_iter().collect());
        infallible(apply::insert(
            &mut Maps(self),
            checked,
            now_nanos,
            &limits,
            allowed,
        ))
    }

    /// Admits every deferred entry whose `not_before` is at or before `now_nanos` (in key
    /// order), as [`MemoryReplica::insert`] would, by [`super::retry_deferred`]; an entry whose
    /// author is outside `allowed` (when given) is refused.
    pub fn retry_deferred(
        &mut self,
        now_nanos: u64,
        allowed: Option<&HashSet<NodeId>>,
    ) -> InsertReport {
        let limits = self.limits.clone();
        infallible(apply::retry_deferred(
            &mut Maps(self),
            now_nanos,
            &limits,
            allowed,
        ))
    }

    /// Whether an entry is applied.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.entries.contains_key(hash)
    }

    /// An applied entry.
    pub fn get(&self, hash: &Hash) -> Option<&LogEntry<A>> {
        self.entries.get(hash)
    }

    /// Number of applied entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is applied.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The applied keys as a [`MemoryStore`]: a snapshot for one reconciliation session.
    pub fn key_set(&self) -> MemoryStore {
        self.order.iter().copied().collect()
    }

    /// Keys of the applied entries, ascending (a topological order).
    pub fn keys(&self) -> impl Iterator<Item = &EntryKey> {
        self.order.iter()
    }

    /// Applied entries in key order (parents first).
    pub fn entries(&self) -> impl Iterator<Item = &LogEntry<A>> {
        self.order.iter().filter_map(|k| self.entries.get(&k.hash))
    }

    /// The heads of the applied DAG.
    pub fn heads(&self) -> &Heads {
        &self.heads
    }

    /// The last-writer-wins state of the applied entries.
    pub fn view(&self) -> &View<A> {
        &self.view
    }

    /// Held-back entries (verified, waiting for parents), in no particular order.
    pub fn held_back(&self) -> impl Iterator<Item = &LogEntry<A>> {
        self.held.map.values().map(|(_, e)| e)
    }

    /// Hashes to fetch: parents that held-back entries wait for and that are neither held back
    /// nor deferred here, ascending.
    pub fn missing(&self) -> Vec<Hash> {
        let mut v: Vec<Hash> = self
            .waiting
            .iter()
            .map(|(p, _)| *p)
            .filter(|h| !self.held.map.contains_key(h) && !self.deferred.map.contains_key(h))
            .collect();
        v.dedup();
        v
    }

    /// Deferred entries with the wall time at which each becomes admissible.
    pub fn deferred(&self) -> impl Iterator<Item = (&LogEntry<A>, u64)> {
        self.deferred.map.values().map(|((t, _), e)| (e, *t))
    }
}
