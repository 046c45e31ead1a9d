//! Applying incoming entries (spec section 6.1), written once for every replica.
//!
//! [`insert`] and [`retry_deferred`] hold the rules: allowed authors, drift (too far ahead:
//! deferred), parent HLC order, apply or hold back, promotion of held-back entries once their
//! parents are applied, dropping held-back entries that can never apply, the caps on held-back
//! and deferred entries with their eviction rule, and the final rewrite of outcomes that a
//! later entry of the same call changed. Verification happens before: only
//! [`VerifiedEntry`]s (or the [`Unverified`] verdicts of [`verify_batch`](crate::verify_batch))
//! come in.
//!
//! Where the state lives is behind [`ReplicaState`]: maps in
//! [`MemoryReplica`](super::MemoryReplica), the tables of one open write transaction in a
//! database. A state only stores and looks up; it decides nothing, so every replica built on
//! these functions follows the same rules in the same order.
//!
//! Costs are linear: each held-back entry keeps a count of the parents it still lacks, and each
//! parent that arrives decrements the counts of the entries waiting for it, so a child naming
//! 1,024 missing parents costs 1,024 index records and 1,024 decrements in all, whatever order
//! they arrive in.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::dag::parent_order;
use crate::entry::Action;
use crate::entry::{LogEntry, Unverified, VerifiedEntry};
use crate::hlc::{admission, Admission, Hlc};
use crate::key::{EntryKey, Hash, NodeId};

use super::{InsertError, InsertOutcome, InsertReport, Limits};

/// How much of a capped set one author, and everybody, use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Entries of the author asked about.
    pub author_entries: u64,
    /// Encoded bytes of all entries in the set, every author.
    pub total_bytes: u64,
}

/// Where a replica keeps its applied, held-back and deferred entries: the storage operations
/// [`insert`] and [`retry_deferred`] need, and nothing that decides.
///
/// The *applied* set must stay closed under parents (the functions only call
/// [`ReplicaState::apply`] for entries whose parents are applied). A *held-back* entry waits
/// for its unapplied parents through a waiting index `parent -> children` and a count of the
/// parents it still lacks. A *deferred* entry waits for local wall time to reach its
/// `not_before`. The state keeps per-author counts and total bytes of both sets
/// ([`Usage`]), and can name the entry each eviction rule picks.
///
/// Entries handed back by the state (held, taken, due) are trusted as verified: a state must
/// only return what these functions gave it.
pub trait ReplicaState<A: Action> {
    /// What the storage can fail with ([`std::convert::Infallible`] for in-memory maps). An
    /// error aborts the call; a transactional store then discards everything it wrote.
    type Error;

    /// The HLC of the applied entry `hash`, or `None` if it is not applied.
    fn applied_hlc(&self, hash: &Hash) -> Result<Option<Hlc>, Self::Error>;

    /// Whether `hash` is applied. Override when cheaper than [`ReplicaState::applied_hlc`].
    fn is_applied(&self, hash: &Hash) -> Result<bool, Self::Error> {
        Ok(self.applied_hlc(hash)?.is_some())
    }

    /// Whether the entry with `key` is applied: [`ReplicaState::is_applied`] of its hash (an
    /// entry's hash covers its HLC, so one hash has one key). Override when the full key is
    /// cheaper to look up than the hash alone, as in an index ordered by key; [`insert`] asks
    /// this once for every entry it receives, and for a new entry the answer is no.
    fn is_applied_key(&self, key: &EntryKey) -> Result<bool, Self::Error> {
        self.is_applied(&key.hash)
    }

    /// Adds `entry`, whose parents are all applied, to the applied set, with everything the
    /// state derives from that set (heads, view, indexes). A state that keeps entries in
    /// their encoded form takes it from [`VerifiedEntry::encoded`], which costs nothing for
    /// an entry that came off the wire.
    fn apply(&mut self, entry: VerifiedEntry<A>) -> Result<(), Self::Error>;

    /// The held-back entry `hash`, if there is one.
    fn held(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, Self::Error>;

    /// Whether `hash` is held back. Override when cheaper than [`ReplicaState::held`].
    fn is_held(&self, hash: &Hash) -> Result<bool, Self::Error> {
        Ok(self.held(hash)?.is_some())
    }

    /// Holds `entry` back, records it in the waiting index under each of `missing` (its
    /// unapplied parents, ascending, not empty) and sets its count of lacking parents to
    /// `missing.len()`.
    fn hold(&mut self, entry: LogEntry<A>, missing: &[Hash]) -> Result<(), Self::Error>;

    /// One parent of the held-back entry `child` was applied: decrements its count of lacking
    /// parents and returns what is left, or `None` if `child` is not held back.
    fn parent_arrived(&mut self, child: &Hash) -> Result<Option<u32>, Self::Error>;

    /// Removes and returns the held-back entry `hash` (with its count), leaving the waiting
    /// index alone.
    fn take_held(&mut self, hash: &Hash) -> Result<Option<LogEntry<A>>, Self::Error>;

    /// Removes `parent` from the waiting index and returns the entries that waited for it.
    fn take_waiters(&mut self, parent: &Hash) -> Result<Vec<Hash>, Self::Error>;

    /// Removes the record that `child` waits for `parent`, if there is one.
    fn unwait(&mut self, parent: &Hash, child: &Hash) -> Result<(), Self::Error>;

    /// Held-back entries of `author`, and bytes of all held-back entries.
    fn held_usage(&self, author: &NodeId) -> Result<Usage, Self::Error>;

    /// The key of the held-back entry with the lowest key: of `author` if given, else of all.
    fn oldest_held(&self, author: Option<&NodeId>) -> Result<Option<EntryKey>, Self::Error>;

    /// Keeps `entry` aside until local wall time reaches `not_before`, replacing an earlier
    /// deferral of the same entry.
    fn defer(&mut self, entry: LogEntry<A>, not_before: u64) -> Result<(), Self::Error>;

    /// The `not_before` of the deferred entry `hash`, if it is deferred.
    fn deferred_until(&self, hash: &Hash) -> Result<Option<u64>, Self::Error>;

    /// Forgets the deferral of `hash`, if there is one.
    fn undefer(&mut self, hash: &Hash) -> Result<(), Self::Error>;

    /// Removes and returns every deferred entry whose `not_before` is at or before
    /// `now_nanos`, in any order.
    fn take_due(&mut self, now_nanos: u64) -> Result<Vec<LogEntry<A>>, Self::Error>;

    /// Deferred entries of `author`, and bytes of all deferred entries.
    fn deferred_usage(&self, author: &NodeId) -> Result<Usage, Self::Error>;

    /// `(not_before, hash)` of the deferred entry due last: of `author` if given, else of all.
    fn latest_deferred(&self, author: Option<&NodeId>) -> Result<Option<(u64, Hash)>, Self::Error>;
}

/// Stores `entries` (in any order; the batch is processed in key order, so a batch closed
/// under parents applies fully), after admitting every deferred entry that has come due by
/// `now_nanos`.
///
/// `entries` are the verdicts of [`verify_batch`](crate::verify_batch) (or
/// [`VerifiedEntry::new`]): an [`Unverified`] one is refused with its error. Each verified
/// entry is, in this order:
///
/// 1. a [`InsertOutcome::Duplicate`] if applied, [`InsertOutcome::HeldBack`] if already held
///    back;
/// 2. refused if its author is not in `allowed` (if given), or if an entry it names as parent
///    was refused earlier in this call ([`InsertError::AncestorRejected`]);
/// 3. deferred if [`admission`]`(hlc, now_nanos, max_drift)` says it is too far ahead, within
///    the deferred caps of [`Limits`];
/// 4. refused if its HLC is not greater than an applied parent's (held-back entries waiting
///    for it are dropped);
/// 5. applied if its parents are applied, held back otherwise (within the held-back caps).
///    Applying promotes every held-back entry whose parents are now all applied, re-checking
///    its parent order.
///
/// The report gives one outcome per entry in input order, as of the end of the call.
// a generic hasher for `allowed` would make every caller that passes `None` name one
#[allow(clippy::implicit_hasher)]
pub fn insert<A: Action, S: ReplicaState<A> + ?Sized>(
    state: &mut S,
    entries: impl IntoIterator<Item = Result<VerifiedEntry<A>, Unverified>>,
    now_nanos: u64,
    limits: &Limits,
    allowed: Option<&HashSet<NodeId>>,
) -> Result<InsertReport, S::Error> {
    let mut pass = Pass {
        state,
        limits,
        allowed,
        report: InsertReport::default(),
        refused: HashSet::new(),
    };
    pass.admit_due(now_nanos)?;
    let mut outcomes = Vec::new();
    let mut batch = Vec::new();
    for (i, item) in entries.into_iter().enumerate() {
        match item {
            Ok(entry) => {
                outcomes.push(None);
                batch.push((i, entry));
            }
            Err(Unverified { hash, error }) => {
                pass.refused.insert(hash);
                outcomes.push(Some((hash, InsertOutcome::Rejected(error.into()))));
            }
        }
    }
    batch.sort_by_key(|(_, e)| e.key());
    for (i, entry) in batch {
        let hash = entry.hash;
        let outcome = pass.insert_one(entry, now_nanos, allowed)?;
        outcomes[i] = Some((hash, outcome));
    }
    pass.report.outcomes = outcomes.into_iter().flatten().collect();
    pass.finish()
}

/// Admits every deferred entry whose `not_before` is at or before `now_nanos`, in key order,
/// as [`insert`] would (they were verified when they were deferred; an author outside
/// `allowed`, when given, is refused now, since the set may have shrunk meanwhile). One
/// outcome per entry that came due. [`insert`] does this first on every call; call this when
/// no insert comes for a while.
// a generic hasher for `allowed` would make every caller that passes `None` name one
#[allow(clippy::implicit_hasher)]
pub fn retry_deferred<A: Action, S: ReplicaState<A> + ?Sized>(
    state: &mut S,
    now_nanos: u64,
    limits: &Limits,
    allowed: Option<&HashSet<NodeId>>,
) -> Result<InsertReport, S::Error> {
    let mut pass = Pass {
        state,
        limits,
        allowed,
        report: InsertReport::default(),
        refused: HashSet::new(),
    };
    pass.report.outcomes = pass.admit_due(now_nanos)?;
    pass.finish()
}

/// One [`insert`] or [`retry_deferred`] call in progress.
struct Pass<'s, S: ?Sized> {
    state: &'s mut S,
    limits: &'s Limits,
    /// The allowed authors, checked again whenever a kept (held-back or deferred) entry is
    /// about to be applied: the set may have shrunk since the entry arrived.
    allowed: Option<&'s HashSet<NodeId>>,
    report: InsertReport,
    /// Hashes refused in this call: entries naming one as parent are refused too.
    refused: HashSet<Hash>,
}

impl<S: ?Sized> Pass<'_, S> {
    /// Admits the deferred entries that came due, in key order, recording them in
    /// `report.due`; returns their outcomes.
    fn admit_due<A: Action>(
        &mut self,
        now_nanos: u64,
    ) -> Result<Vec<(Hash, InsertOutcome)>, S::Error>
    where
        S: ReplicaState<A>,
    {
        let mut due = self.state.take_due(now_nanos)?;
        due.sort_by_key(LogEntry::key);
        let mut outcomes = Vec::with_capacity(due.len());
        for entry in due {
            let hash = entry.hash;
            self.report.due.push(hash);
            let outcome = if self.state.is_applied_key(&entry.key())? {
                InsertOutcome::Duplicate
            } else if self
                .allowed
                .is_some_and(|set| !set.contains(&entry.node_id))
            {
                self.refused.insert(hash);
                InsertOutcome::Rejected(InsertError::NotAllowed(entry.node_id))
            } else {
                self.admit(VerifiedEntry::trusted(entry))?
            };
            // An entry kept for a while and then refused leaves a trace in `dropped`.
            if let InsertOutcome::Rejected(e) = &outcome {
                self.report.dropped.push((hash, e.clone()));
            }
            outcomes.push((hash, outcome));
        }
        Ok(outcomes)
    }

    fn insert_one<A: Action>(
        &mut self,
        entry: VerifiedEntry<A>,
        now_nanos: u64,
        allowed: Option<&HashSet<NodeId>>,
    ) -> Result<InsertOutcome, S::Error>
    where
        S: ReplicaState<A>,
    {
        if self.state.is_applied_key(&entry.key())? {
            return Ok(InsertOutcome::Duplicate);
        }
        if self.state.is_held(&entry.hash)? {
            return Ok(InsertOutcome::HeldBack {
                missing: unapplied_parents(&*self.state, &entry)?,
            });
        }
        if allowed.is_some_and(|set| !set.contains(&entry.node_id)) {
            self.refused.insert(entry.hash);
            return Ok(InsertOutcome::Rejected(InsertError::NotAllowed(
                entry.node_id,
            )));
        }
        if let Some(p) = entry.parents.iter().find(|p| self.refused.contains(*p)) {
            let p = *p;
            self.refused.insert(entry.hash);
            return Ok(InsertOutcome::Rejected(InsertError::AncestorRejected(p)));
        }
        if let Admission::Defer { not_before } =
            admission(entry.hlc, now_nanos, self.limits.max_drift)
        {
            return self.defer(entry, not_before);
        }
        self.state.undefer(&entry.hash)?;
        self.admit(entry)
    }

    /// Defers `entry` within the deferred caps, evicting the entry due last if needed.
    fn defer<A: Action>(
        &mut self,
        entry: VerifiedEntry<A>,
        not_before: u64,
    ) -> Result<InsertOutcome, S::Error>
    where
        S: ReplicaState<A>,
    {
        if self.state.deferred_until(&entry.hash)?.is_none() {
            let size = encoded_len(&entry);
            let mine = (not_before, entry.hash);
            loop {
                let usage = self.state.deferred_usage(&entry.node_id)?;
                let victim = if usage.author_entries >= self.limits.max_deferred_per_author {
                    self.state.latest_deferred(Some(&entry.node_id))?
                } else if usage.total_bytes.saturating_add(size) > self.limits.max_deferred_bytes {
                    self.state.latest_deferred(None)?
                } else {
                    break;
                };
                match victim {
                    // A victim the state names but does not hold (a damaged index) would
                    // never free room: refuse rather than loop.
                    Some(v) if v > mine && self.state.deferred_until(&v.1)?.is_some() => {
                        self.state.undefer(&v.1)?;
                        self.report.dropped.push((v.1, InsertError::DeferredFull));
                    }
                    _ => return Ok(InsertOutcome::Rejected(InsertError::DeferredFull)),
                }
            }
        }
        self.state.defer(entry.into_inner(), not_before)?;
        Ok(InsertOutcome::Deferred { not_before })
    }

    /// Admits a verified, admissible entry: parent order, then apply or hold back.
    fn admit<A: Action>(&mut self, entry: VerifiedEntry<A>) -> Result<InsertOutcome, S::Error>
    where
        S: ReplicaState<A>,
    {
        let mut missing = Vec::new();
        for p in &entry.parents {
            match self.state.applied_hlc(p)? {
                Some(hlc) => {
                    if let Err(e) = parent_order(&entry, p, hlc) {
                        self.refused.insert(entry.hash);
                        self.drop_waiters(entry.hash)?;
                        return Ok(InsertOutcome::Rejected(e.into()));
                    }
                }
                None => missing.push(*p),
            }
        }
        if missing.is_empty() {
            self.apply_ready(entry)?;
            return Ok(InsertOutcome::Applied);
        }
        self.hold(entry.into_inner(), missing)
    }

    /// Holds `entry` back within the held-back caps, evicting the oldest held-back entry (of
    /// its author, or of all for the byte cap) if needed.
    fn hold<A: Action>(
        &mut self,
        entry: LogEntry<A>,
        missing: Vec<Hash>,
    ) -> Result<InsertOutcome, S::Error>
    where
        S: ReplicaState<A>,
    {
        let size = encoded_len(&entry);
        let mine = entry.key();
        loop {
            let usage = self.state.held_usage(&entry.node_id)?;
            let victim = if usage.author_entries >= self.limits.max_held_per_author {
                self.state.oldest_held(Some(&entry.node_id))?
            } else if usage.total_bytes.saturating_add(size) > self.limits.max_held_bytes {
                self.state.oldest_held(None)?
            } else {
                break;
            };
            match victim {
                // A victim the state names but does not hold (a damaged index) frees no room:
                // refuse rather than loop.
                Some(v) if v < mine && self.evict_held(&v.hash)? => {}
                _ => return Ok(InsertOutcome::Rejected(InsertError::HeldBackFull)),
            }
        }
        self.state.hold(entry, &missing)?;
        Ok(InsertOutcome::HeldBack { missing })
    }

    /// Removes a held-back entry and its waiting records. Entries waiting for it stay held:
    /// its hash is now one to fetch. Returns whether it was held back (and is now evicted).
    fn evict_held<A: Action>(&mut self, hash: &Hash) -> Result<bool, S::Error>
    where
        S: ReplicaState<A>,
    {
        let Some(held) = self.state.take_held(hash)? else {
            return Ok(false);
        };
        for p in &held.parents {
            self.state.unwait(p, hash)?;
        }
        self.report.dropped.push((*hash, InsertError::HeldBackFull));
        Ok(true)
    }

    /// Applies an entry whose parents are all applied, then every held-back entry this makes
    /// ready, iteratively (long chains arriving child-first do not recurse).
    fn apply_ready<A: Action>(&mut self, entry: VerifiedEntry<A>) -> Result<(), S::Error>
    where
        S: ReplicaState<A>,
    {
        let mut ready = vec![entry];
        while let Some(entry) = ready.pop() {
            let hash = entry.hash;
            let error = if self
                .allowed
                .is_some_and(|set| !set.contains(&entry.node_id))
            {
                // a held-back entry released after its author left the allowed set
                Some(InsertError::NotAllowed(entry.node_id))
            } else {
                self.order_error(&entry)?
            };
            if let Some(e) = error {
                self.report.dropped.push((hash, e));
                self.drop_waiters(hash)?;
                continue;
            }
            self.state.apply(entry)?;
            self.report.applied.push(hash);
            for child in self.state.take_waiters(&hash)? {
                if self.state.parent_arrived(&child)? == Some(0) {
                    ready.extend(self.state.take_held(&child)?.map(VerifiedEntry::trusted));
                }
            }
        }
        Ok(())
    }

    /// The parent order error of an entry whose parents are all applied, if any.
    fn order_error<A: Action>(&self, entry: &LogEntry<A>) -> Result<Option<InsertError>, S::Error>
    where
        S: ReplicaState<A>,
    {
        for p in &entry.parents {
            if let Some(hlc) = self.state.applied_hlc(p)? {
                if let Err(e) = parent_order(entry, p, hlc) {
                    return Ok(Some(e.into()));
                }
            }
        }
        Ok(None)
    }

    /// Drops, transitively, every held-back entry waiting for `root`, which can never apply.
    fn drop_waiters<A: Action>(&mut self, root: Hash) -> Result<(), S::Error>
    where
        S: ReplicaState<A>,
    {
        let mut stack = vec![root];
        while let Some(h) = stack.pop() {
            for child in self.state.take_waiters(&h)? {
                let Some(held) = self.state.take_held(&child)? else {
                    continue;
                };
                for p in &held.parents {
                    self.state.unwait(p, &child)?;
                }
                self.report
                    .dropped
                    .push((child, InsertError::AncestorRejected(root)));
                stack.push(child);
            }
        }
        Ok(())
    }

    /// Rewrites `HeldBack` outcomes of entries that a later entry of the same call promoted,
    /// dropped or evicted.
    fn finish<A: Action>(mut self) -> Result<InsertReport, S::Error>
    where
        S: ReplicaState<A>,
    {
        let mut outcomes = std::mem::take(&mut self.report.outcomes);
        for (hash, outcome) in &mut outcomes {
            let rewrite = matches!(outcome, InsertOutcome::HeldBack { .. })
                || matches!(outcome, InsertOutcome::Deferred { .. })
                    && self.state.deferred_until(hash)?.is_none();
            if !rewrite {
                continue;
            }
            *outcome = if self.state.is_applied(hash)? {
                InsertOutcome::Applied
            } else if let Some(held) = self.state.held(hash)? {
                InsertOutcome::HeldBack {
                    missing: unapplied_parents(&*self.state, &held)?,
                }
            } else if let Some(not_before) = self.state.deferred_until(hash)? {
                InsertOutcome::Deferred { not_before }
            } else {
                let err = self
                    .report
                    .dropped
                    .iter()
                    .rev()
                    .find(|(h, _)| h == hash)
                    .map(|(_, e)| e.clone())
                    .unwrap_or(InsertError::AncestorRejected(*hash));
                InsertOutcome::Rejected(err)
            };
        }
        self.report.outcomes = outcomes;
        Ok(self.report)
    }
}

/// The encoded size of an entry, `body || signature`, which the byte caps count.
fn encoded_len<A: Action>(entry: &LogEntry<A>) -> u64 {
    entry.encode().len() as u64
}

/// The parents of `entry` that `state` has not applied, in the entry's (ascending) order.
fn unapplied_parents<A: Action, S: ReplicaState<A> + ?Sized>(
    state: &S,
    entry: &LogEntry<A>,
) -> Result<Vec<Hash>, S::Error> {
    let mut v = Vec::new();
    for p in &entry.parents {
        if !state.is_applied(p)? {
            v.push(*p);
        }
    }
    Ok(v)
}
