//! Merge conflicts (spec 6.5), derived from the DAG alone.

use std::collections::{BTreeMap, HashMap};

use crate::entry::Action;
use crate::key::Hash;

use super::lww::{lww_cmp, LwwWrite};
use super::walk::{Colours, Walker};
use super::{DagError, DagView};

/// A register that the branches joined by a merge left with different values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict<K> {
    /// The register.
    pub key: K,
    /// Each distinct winner among the branches that wrote the register, ascending in
    /// [`lww_cmp`] order (at least two).
    pub branch_winners: Vec<LwwWrite>,
    /// The write that wins after the merge: the last of `branch_winners`, equal to
    /// last-writer-wins over the union of the branches.
    pub winner: LwwWrite,
}

/// The conflicts a merge of `parents` resolves, derived from the DAG alone (a merge entry
/// carries no conflict list, so no merger can misreport one).
///
/// Branch `i` is the ancestor-or-self set of parent `i`. Only entries not common to all branches
/// matter: one walk in descending key order paints each entry with one bit per parent and stops
/// when the queue holds only entries painted by all. A register is in conflict when at least two
/// branches hold non-common writes to it and their winners differ; a branch's winner also
/// counts common writes, so a newer common write that both branches already show is no
/// conflict (the walk continues into the common part only as far back as the oldest candidate
/// write's HLC to find those). Results are in register order. Parents are deduplicated; fewer
/// than two give no conflicts. Any number of parents up to an entry's limit of 1,024 is handled
/// (one colour per parent); more is [`DagError::TooManyParents`]. The walk is bounded by `max_visits` (entries loaded plus parent
/// edges followed; [`DEFAULT_MAX_VISITS`](super::DEFAULT_MAX_VISITS)): past it the result is
/// [`DagError::VisitBudget`]. Conflicts only explain a merge; the view never depends on them.
pub fn merge_conflicts<A: Action>(
    view: &impl DagView<A>,
    parents: &[Hash],
    max_visits: u64,
) -> Result<Vec<Conflict<A::Key>>, DagError> {
    let mut parents = parents.to_vec();
    parents.sort_unstable();
    parents.dedup();
    let n = parents.len();
    if n > crate::entry::MAX_PARENTS {
        return Err(DagError::TooManyParents(n));
    }
    if n < 2 {
        return Ok(Vec::new());
    }
    let all = Colours::all(n);
    let mut walk = Walker::<A, _>::new(view, all.clone(), max_visits, true);
    for (i, p) in parents.iter().enumerate() {
        if !walk.paint(p, &Colours::one(n, i))? {
            return Err(DagError::Missing(*p));
        }
    }
    // register -> each branch's best non-common write
    let mut slots: BTreeMap<A::Key, Vec<Option<LwwWrite>>> = BTreeMap::new();
    // register -> best common write seen (common entries interleave with the others)
    let mut common: HashMap<A::Key, LwwWrite> = HashMap::new();
    while let Some((hash, colours)) = walk.pop(false) {
        if let Some((key, write)) = walk.take_write(&hash) {
            if colours.covers(&all) {
                keep_max(common.entry(key).or_insert(write), write);
            } else {
                let slot = slots.entry(key).or_insert_with(|| vec![None; n]);
                for (i, s) in slot.iter_mut().enumerate() {
                    if colours.has(i) {
                        keep_max(s.get_or_insert(write), write);
                    }
                }
            }
        }
        walk.paint_parents(&hash, &colours)?;
    }
    // Registers whose branches disagree on the non-common writes alone.
    slots.retain(|_, s| distinct(s.iter().flatten().copied()).len() >= 2);
    let Some(threshold) = slots.values().flatten().flatten().map(|w| w.key.hlc).min() else {
        return Ok(Vec::new());
    };
    // Common writes at or after `threshold` may still beat a branch's own writes.
    while walk.peek().is_some_and(|k| k.hlc >= threshold) {
        let Some((hash, colours)) = walk.pop(true) else {
            break;
        };
        if let Some((key, write)) = walk.take_write(&hash) {
            if slots.contains_key(&key) {
                keep_max(common.entry(key).or_insert(write), write);
            }
        }
        walk.paint_parents(&hash, &colours)?;
    }
    let mut out = Vec::new();
    for (key, slot) in slots {
        let base = common.get(&key).copied();
        let winners = distinct(slot.into_iter().flatten().map(|w| match base {
            Some(b) if lww_cmp(&b, &w).is_gt() => b,
            _ => w,
        }));
        if let [.., last] = winners[..] {
            if winners.len() >= 2 {
                out.push(Conflict {
                    key,
                    winner: last,
                    branch_winners: winners,
                });
            }
        }
    }
    Ok(out)
}

fn keep_max(best: &mut LwwWrite, write: LwwWrite) {
    if lww_cmp(&write, best).is_gt() {
        *best = write;
    }
}

/// Distinct writes, ascending in LWW order.
fn distinct(writes: impl Iterator<Item = LwwWrite>) -> Vec<LwwWrite> {
    let mut v: Vec<LwwWrite> = writes.collect();
    v.sort_by(lww_cmp);
    v.dedup_by_key(|w| w.key);
    v
}
