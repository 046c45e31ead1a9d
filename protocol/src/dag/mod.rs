//! DAG rules: parents, ancestry requests, heads, last-writer-wins, merge conflicts, the merge
//! rule. The rules that apply entries to a replica live in [`crate::replica`], which uses these
//! and which these never use.
//!
//! Everything here is pure. Graph walks read entries through the small [`DagView`] trait, so the
//! same code runs over a `HashMap` in tests and over a database in a node.
//!
//! Two facts make the walks cheap and simple:
//! - an entry's HLC is strictly greater than each parent's ([`check_parent_order`]), so key order
//!   `(hlc, hash)` is a topological order: a walk that always pops the greatest key has seen every
//!   child of an entry before the entry itself, and an entry's colours are final when it is popped;
//! - a stored set is closed under parents, so a walk never meets a hole (if it does, it reports
//!   [`DagError::Missing`] instead of guessing).

mod ancestry;
mod conflicts;
mod heads;
mod lww;
mod merge;
mod walk;

pub use ancestry::{ancestry_to_send, haves_for_request, Ancestry};
pub use conflicts::{merge_conflicts, Conflict};
pub use heads::{heads_of, Heads};
pub use lww::{lww_cmp, LwwWrite, View};
pub use merge::{merge_parents, should_merge};
pub use walk::DEFAULT_MAX_VISITS;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use crate::entry::Action;
use crate::entry::LogEntry;
use crate::hlc::Hlc;
use crate::key::Hash;
use crate::range::StoreError;

/// Read-only access to stored, applied entries by hash: what the DAG walks need from a store.
///
/// Implementations must only expose applied entries (a set closed under parents). A database
/// returns [`Cow::Owned`] decoded entries; in-memory maps return [`Cow::Borrowed`].
pub trait DagView<A: Action> {
    /// The entry with this hash, or `None` if it is not stored.
    fn get(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, StoreError>;

    /// Whether an entry with this hash is stored. Override when cheaper than [`DagView::get`].
    fn contains(&self, hash: &Hash) -> Result<bool, StoreError> {
        Ok(self.get(hash)?.is_some())
    }
}

impl<A: Action, S: BuildHasher> DagView<A> for HashMap<Hash, LogEntry<A>, S> {
    fn get(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, StoreError> {
        Ok(HashMap::get(self, hash).map(Cow::Borrowed))
    }
}

impl<A: Action> DagView<A> for BTreeMap<Hash, LogEntry<A>> {
    fn get(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, StoreError> {
        Ok(BTreeMap::get(self, hash).map(Cow::Borrowed))
    }
}

impl<A: Action, T: DagView<A> + ?Sized> DagView<A> for &T {
    fn get(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, StoreError> {
        (**self).get(hash)
    }
    fn contains(&self, hash: &Hash) -> Result<bool, StoreError> {
        (**self).contains(hash)
    }
}

/// An entry whose HLC is not strictly greater than one of its parents'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "entry {child} has HLC {child_hlc}, not greater than HLC {parent_hlc} of its parent {parent}"
)]
pub struct ParentOrderError {
    /// The offending entry.
    pub child: Hash,
    /// Its HLC.
    pub child_hlc: Hlc,
    /// The parent whose HLC is not smaller.
    pub parent: Hash,
    /// That parent's HLC.
    pub parent_hlc: Hlc,
}

/// Why a DAG computation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DagError {
    /// A requested entry, or an ancestor met during a walk, is not in the view: either an
    /// unknown `want`/merge parent, or a store that is not closed under parents.
    #[error("entry {0} is not in the store (unknown, or the store is not closed under parents)")]
    Missing(Hash),
    /// The HLC order between an entry and a parent is broken.
    #[error(transparent)]
    ParentOrder(#[from] ParentOrderError),
    /// [`merge_conflicts`] was given more distinct parents than an entry may name (1,024).
    #[error("{0} distinct parents; a merge joins at most 1,024")]
    TooManyParents(usize),
    /// The walk spent its visit budget (entries loaded plus parent edges followed) before it
    /// could finish. For an ancestry request: answer that the request is too deep and let the
    /// peer reconcile instead; for merge conflicts: raise the budget to see them.
    #[error("the DAG walk needs more than {max} visits (entries loaded plus parent edges); reconcile instead, or raise the budget")]
    VisitBudget {
        /// The budget that was spent.
        max: u64,
    },
    /// The store behind the view failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

// ---------------------------------------------------------------------------------------------
// Parent rules

/// The parents of `entry` that `view` does not hold, in the entry's (ascending) parent order.
pub fn missing_parents<A: Action>(
    entry: &LogEntry<A>,
    view: &impl DagView<A>,
) -> Result<Vec<Hash>, DagError> {
    let mut missing = Vec::new();
    for p in &entry.parents {
        if !view.contains(p)? {
            missing.push(*p);
        }
    }
    Ok(missing)
}

/// Checks that `entry`'s HLC is strictly greater than the HLC of each parent that `view` holds
/// (parents not yet stored are checked when they arrive). This makes key order `(hlc, hash)` a
/// topological order of the DAG.
pub fn check_parent_order<A: Action>(
    entry: &LogEntry<A>,
    view: &impl DagView<A>,
) -> Result<(), DagError> {
    for p in &entry.parents {
        if let Some(parent) = view.get(p)? {
            parent_order(entry, p, parent.hlc)?;
        }
    }
    Ok(())
}

pub(crate) fn parent_order<A>(
    entry: &LogEntry<A>,
    parent: &Hash,
    parent_hlc: Hlc,
) -> Result<(), ParentOrderError> {
    if parent_hlc < entry.hlc {
        Ok(())
    } else {
        Err(ParentOrderError {
            child: entry.hash,
            child_hlc: entry.hlc,
            parent: *parent,
            parent_hlc,
        })
    }
}
