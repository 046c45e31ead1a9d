//! Applying incoming entries (spec section 6.1), written once for every replica.
//!
//! [`insert`] and [`retry_deferred`] hold the rules: verification, allowed authors, drift
//! (too far ahead: deferred), parent HLC order, apply or hold back, iterative promotion of
//! held-back entries once their parents are applied, dropping held-back entries that can never
//! apply, and the final rewrite of outcomes that a later entry of the same call changed.
//!
//! Where the state lives is behind [`ReplicaState`]: maps in
//! [`MemoryReplica`](super::MemoryReplica), the tables of one open write transaction in a
//! database. A state only stores and looks up; it decides nothing, so every replica built on
//! these functions follows the same rules in the same order.

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::Duration;

use crate::action::Action;
use crate::dag::parent_order;
use crate::entry::{EntryError, LogEntry};
use crate::hlc::{admission, Admission, Hlc};
use crate::key::{Hash, NodeId};

use super::{InsertError, InsertOutcome, InsertReport};

/// Where a replica keeps its applied, held-back and deferred entries: the storage operations
/// [`insert`] and [`retry_deferred`] need, and nothing that decides.
///
/// The *applied* set must stay closed under parents (the functions only call
/// [`ReplicaState::apply`] for entries whose parents are applied). A *held-back* entry waits
/// for its unapplied parents through a waiting index `parent -> children`. A *deferred* entry
/// waits for local wall time to reach its `not_before`.
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

    /// Adds `entry`, whose parents are all applied, to the applied set, with everything the
    /// state derives from that set (heads, view, indexes).
    fn apply(&mut self, entry: LogEntry<A>) -> Result<(), Self::Error>;

    /// The held-back entry `hash`, if there is one.
    fn held(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, Self::Error>;

    /// Whether `hash` is held back. Override when cheaper than [`ReplicaState::held`].
    fn is_held(&self, hash: &Hash) -> Result<bool, Self::Error> {
        Ok(self.held(hash)?.is_some())
    }

    /// Holds `entry` back and records it in the waiting index under each of `missing` (its
    /// unapplied parents, ascending, not empty).
    fn hold(&mut self, entry: LogEntry<A>, missing: &[Hash]) -> Result<(), Self::Error>;

    /// Removes and returns the held-back entry `hash`, leaving the waiting index alone.
    fn take_held(&mut self, hash: &Hash) -> Result<Option<LogEntry<A>>, Self::Error>;

    /// Removes `parent` from the waiting index and returns the entries that waited for it.
    fn take_waiters(&mut self, parent: &Hash) -> Result<Vec<Hash>, Self::Error>;

    /// Removes the record that `child` waits for `parent`, if there is one.
    fn unwait(&mut self, parent: &Hash, child: &Hash) -> Result<(), Self::Error>;

    /// Keeps `entry` aside until local wall time reaches `not_before`, replacing an earlier
    /// deferral of the same entry.
    fn defer(&mut self, entry: LogEntry<A>, not_before: u64) -> Result<(), Self::Error>;

    /// Forgets the deferral of `hash`, if there is one.
    fn undefer(&mut self, hash: &Hash) -> Result<(), Self::Error>;

    /// Removes and returns every deferred entry whose `not_before` is at or before
    /// `now_nanos`, in any order.
    fn take_due(&mut self, now_nanos: u64) -> Result<Vec<LogEntry<A>>, Self::Error>;
}

/// Verifies and stores `entries` (in any order; the batch is processed in key order, so a
/// batch closed under parents applies fully). Each entry is, in this order:
///
/// 1. a [`InsertOutcome::Duplicate`] if applied, [`InsertOutcome::HeldBack`] if already held
///    back;
/// 2. refused if [`LogEntry::verify`] fails or its author is not in `allowed` (if given);
/// 3. deferred if [`admission`]`(hlc, now_nanos, max_drift)` says it is too far ahead;
/// 4. refused if its HLC is not greater than an applied parent's (held-back entries waiting
///    for it are dropped);
/// 5. applied if its parents are applied, held back otherwise. Applying promotes, iteratively,
///    every held-back entry whose parents are now all applied, re-checking its parent order.
///
/// `verified` may carry the results of [`LogEntry::verify`] for `entries`, in input order, when
/// the caller computed them already (say, on all cores); entries without one are verified when
/// they reach step 2. The report gives one outcome per entry in input order, as of the end of
/// the call.
pub fn insert<A: Action, S: ReplicaState<A> + ?Sized>(
    state: &mut S,
    entries: impl IntoIterator<Item = LogEntry<A>>,
    verified: Option<Vec<Result<(), EntryError>>>,
    now_nanos: u64,
    max_drift: Duration,
    allowed: Option<&HashSet<NodeId>>,
) -> Result<InsertReport, S::Error> {
    let mut checks = verified.unwrap_or_default().into_iter();
    let mut batch: Vec<_> = entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i, e, checks.next()))
        .collect();
    batch.sort_by_key(|(_, e, _)| e.key());
    let mut pass = Pass {
        state,
        report: InsertReport::default(),
    };
    let mut outcomes = vec![None; batch.len()];
    for (i, entry, check) in batch {
        let hash = entry.hash;
        let outcome = pass.insert_one(entry, check, now_nanos, max_drift, allowed)?;
        outcomes[i] = Some((hash, outcome));
    }
    pass.report.outcomes = outcomes.into_iter().flatten().collect();
    pass.finish()
}

/// Admits every deferred entry whose `not_before` is at or before `now_nanos`, in key order,
/// as [`insert`] would (they were verified and checked against the allowed authors when they
/// were deferred). One outcome per entry that came due.
pub fn retry_deferred<A: Action, S: ReplicaState<A> + ?Sized>(
    state: &mut S,
    now_nanos: u64,
) -> Result<InsertReport, S::Error> {
    let mut due = state.take_due(now_nanos)?;
    due.sort_by_key(|e| e.key());
    let mut pass = Pass {
        state,
        report: InsertReport::default(),
    };
    for entry in due {
        let hash = entry.hash;
        let outcome = if pass.state.is_applied(&hash)? {
            InsertOutcome::Duplicate
        } else {
            pass.admit(entry)?
        };
        pass.report.outcomes.push((hash, outcome));
    }
    pass.finish()
}

/// One [`insert`] or [`retry_deferred`] call in progress.
struct Pass<'s, S: ?Sized> {
    state: &'s mut S,
    report: InsertReport,
}

impl<S: ?Sized> Pass<'_, S> {
    fn insert_one<A: Action>(
        &mut self,
        entry: LogEntry<A>,
        verified: Option<Result<(), EntryError>>,
        now_nanos: u64,
        max_drift: Duration,
        allowed: Option<&HashSet<NodeId>>,
    ) -> Result<InsertOutcome, S::Error>
    where
        S: ReplicaState<A>,
    {
        if self.state.is_applied(&entry.hash)? {
            return Ok(InsertOutcome::Duplicate);
        }
        if self.state.is_held(&entry.hash)? {
            return Ok(InsertOutcome::HeldBack {
                missing: unapplied_parents(&*self.state, &entry)?,
            });
        }
        if let Err(e) = verified.unwrap_or_else(|| entry.verify()) {
            return Ok(InsertOutcome::Rejected(e.into()));
        }
        if allowed.is_some_and(|set| !set.contains(&entry.node_id)) {
            return Ok(InsertOutcome::Rejected(InsertError::NotAllowed(
                entry.node_id,
            )));
        }
        if let Admission::Defer { not_before } = admission(entry.hlc, now_nanos, max_drift) {
            self.state.defer(entry, not_before)?;
            return Ok(InsertOutcome::Deferred { not_before });
        }
        self.state.undefer(&entry.hash)?;
        self.admit(entry)
    }

    /// Admits a verified, admissible entry: parent order, then apply or hold back.
    fn admit<A: Action>(&mut self, entry: LogEntry<A>) -> Result<InsertOutcome, S::Error>
    where
        S: ReplicaState<A>,
    {
        let mut missing = Vec::new();
        for p in &entry.parents {
            match self.state.applied_hlc(p)? {
                Some(hlc) => {
                    if let Err(e) = parent_order(&entry, p, hlc) {
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
        self.state.hold(entry, &missing)?;
        Ok(InsertOutcome::HeldBack { missing })
    }

    /// Applies an entry whose parents are all applied, then every held-back entry this makes
    /// ready, iteratively (long chains arriving child-first do not recurse).
    fn apply_ready<A: Action>(&mut self, entry: LogEntry<A>) -> Result<(), S::Error>
    where
        S: ReplicaState<A>,
    {
        let mut ready = vec![entry];
        while let Some(entry) = ready.pop() {
            let hash = entry.hash;
            if let Some(e) = self.order_error(&entry)? {
                self.report.dropped.push((hash, e));
                self.drop_waiters(hash)?;
                continue;
            }
            self.state.apply(entry)?;
            self.report.applied.push(hash);
            for child in self.state.take_waiters(&hash)? {
                let now_ready = match self.state.held(&child)? {
                    Some(held) => unapplied_parents(&*self.state, &held)?.is_empty(),
                    None => false,
                };
                if now_ready {
                    ready.extend(self.state.take_held(&child)?);
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

    /// Rewrites `HeldBack` outcomes of entries that a later entry of the same call promoted or
    /// dropped.
    fn finish<A: Action>(mut self) -> Result<InsertReport, S::Error>
    where
        S: ReplicaState<A>,
    {
        let mut outcomes = std::mem::take(&mut self.report.outcomes);
        for (hash, outcome) in &mut outcomes {
            if let InsertOutcome::HeldBack { .. } = outcome {
                *outcome = if self.state.is_applied(hash)? {
                    InsertOutcome::Applied
                } else if let Some(held) = self.state.held(hash)? {
                    InsertOutcome::HeldBack {
                        missing: unapplied_parents(&*self.state, &held)?,
                    }
                } else {
                    let err = self
                        .report
                        .dropped
                        .iter()
                        .find(|(h, _)| h == hash)
                        .map(|(_, e)| e.clone())
                        .unwrap_or(InsertError::AncestorRejected(*hash));
                    InsertOutcome::Rejected(err)
                };
            }
        }
        self.report.outcomes = outcomes;
        Ok(self.report)
    }
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
