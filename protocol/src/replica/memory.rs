//! [`MemoryReplica`]: the reference replica, over in-memory maps.

use std::borrow::Cow;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use crate::action::Action;
use crate::dag::{DagView, Heads, View};
use crate::entry::LogEntry;
use crate::hlc::Hlc;
use crate::key::{EntryKey, Hash, NodeId};
use crate::store::StoreError;

use super::apply::{self, ReplicaState};
use super::InsertReport;

/// An in-memory replica of the log: the reference model the persistent store is
/// property-tested against.
///
/// Invariant: the applied set is closed under parents. Entries with missing parents are held
/// back and promoted (iteratively, so chains of any length arriving child-first are fine) as
/// soon as their parents are applied; entries stamped too far in the future are deferred.
/// Held-back and deferred entries are not bounded here; a node must cap them. The rules are
/// those of [`crate::apply`], run over this replica's maps.
#[derive(Debug, Clone)]
pub struct MemoryReplica<A: Action> {
    entries: HashMap<Hash, LogEntry<A>>,
    order: BTreeSet<EntryKey>,
    heads: Heads,
    view: View<A>,
    held: HashMap<Hash, LogEntry<A>>,
    /// Unapplied parent -> held-back entries waiting for it.
    waiting: HashMap<Hash, Vec<Hash>>,
    deferred: HashMap<Hash, (u64, LogEntry<A>)>,
}

impl<A: Action> Default for MemoryReplica<A> {
    fn default() -> Self {
        MemoryReplica {
            entries: HashMap::new(),
            order: BTreeSet::new(),
            heads: Heads::new(),
            view: View::new(),
            held: HashMap::new(),
            waiting: HashMap::new(),
            deferred: HashMap::new(),
        }
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

/// The maps of a [`MemoryReplica`] as [`crate::apply`] sees them. A private wrapper, so only
/// the shared rules can change a replica's state.
struct Maps<'r, A: Action>(&'r mut MemoryReplica<A>);

impl<A: Action> ReplicaState<A> for Maps<'_, A> {
    type Error = Infallible;

    fn applied_hlc(&self, hash: &Hash) -> Result<Option<Hlc>, Infallible> {
        Ok(self.0.entries.get(hash).map(|e| e.hlc))
    }
    fn is_applied(&self, hash: &Hash) -> Result<bool, Infallible> {
        Ok(self.0.entries.contains_key(hash))
    }
    fn apply(&mut self, entry: LogEntry<A>) -> Result<(), Infallible> {
        let r = &mut *self.0;
        r.order.insert(entry.key());
        r.heads.apply(&entry);
        r.view.apply(&entry);
        r.entries.insert(entry.hash, entry);
        Ok(())
    }
    fn held(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, Infallible> {
        Ok(self.0.held.get(hash).map(Cow::Borrowed))
    }
    fn is_held(&self, hash: &Hash) -> Result<bool, Infallible> {
        Ok(self.0.held.contains_key(hash))
    }
    fn hold(&mut self, entry: LogEntry<A>, missing: &[Hash]) -> Result<(), Infallible> {
        for p in missing {
            self.0.waiting.entry(*p).or_default().push(entry.hash);
        }
        self.0.held.insert(entry.hash, entry);
        Ok(())
    }
    fn take_held(&mut self, hash: &Hash) -> Result<Option<LogEntry<A>>, Infallible> {
        Ok(self.0.held.remove(hash))
    }
    fn take_waiters(&mut self, parent: &Hash) -> Result<Vec<Hash>, Infallible> {
        Ok(self.0.waiting.remove(parent).unwrap_or_default())
    }
    fn unwait(&mut self, parent: &Hash, child: &Hash) -> Result<(), Infallible> {
        if let MapEntry::Occupied(mut w) = self.0.waiting.entry(*parent) {
            w.get_mut().retain(|c| c != child);
            if w.get().is_empty() {
                w.remove();
            }
        }
        Ok(())
    }
    fn defer(&mut self, entry: LogEntry<A>, not_before: u64) -> Result<(), Infallible> {
        self.0.deferred.insert(entry.hash, (not_before, entry));
        Ok(())
    }
    fn undefer(&mut self, hash: &Hash) -> Result<(), Infallible> {
        self.0.deferred.remove(hash);
        Ok(())
    }
    fn take_due(&mut self, now_nanos: u64) -> Result<Vec<LogEntry<A>>, Infallible> {
        let mut due = Vec::new();
        self.0.deferred.retain(|_, (not_before, entry)| {
            let keep = *not_before > now_nanos;
            if !keep {
                due.push(entry.clone());
            }
            keep
        });
        Ok(due)
    }
}

fn infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

impl<A: Action> MemoryReplica<A> {
    /// An empty replica.
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies and stores `entries` (in any order; a batch is processed in key order, so a
    /// batch closed under parents applies fully) by [`apply::insert`]. Each entry is checked
    /// with [`LogEntry::verify`], against `allowed` (if given), for drift via
    /// [`admission`](crate::hlc::admission)`(hlc, now_nanos, max_drift)` (too far ahead:
    /// deferred), and for parent HLC order; it is then applied if its parents are applied,
    /// held back otherwise. Re-inserting an applied, held-back or deferred entry changes
    /// nothing.
    pub fn insert(
        &mut self,
        entries: impl IntoIterator<Item = LogEntry<A>>,
        now_nanos: u64,
        max_drift: Duration,
        allowed: Option<&HashSet<NodeId>>,
    ) -> InsertReport {
        infallible(apply::insert(
            &mut Maps(self),
            entries,
            None,
            now_nanos,
            max_drift,
            allowed,
        ))
    }

    /// Admits every deferred entry whose `not_before` is at or before `now_nanos` (in key
    /// order), as [`MemoryReplica::insert`] would, by [`apply::retry_deferred`].
    pub fn retry_deferred(&mut self, now_nanos: u64) -> InsertReport {
        infallible(apply::retry_deferred(&mut Maps(self), now_nanos))
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
        self.held.values()
    }

    /// Hashes to fetch: parents that held-back entries wait for and that are neither held back
    /// nor deferred here, ascending.
    pub fn missing(&self) -> Vec<Hash> {
        let mut v: Vec<Hash> = self
            .waiting
            .keys()
            .filter(|h| !self.held.contains_key(h) && !self.deferred.contains_key(h))
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Deferred entries with the wall time at which each becomes admissible.
    pub fn deferred(&self) -> impl Iterator<Item = (&LogEntry<A>, u64)> {
        self.deferred.values().map(|(t, e)| (e, *t))
    }
}
