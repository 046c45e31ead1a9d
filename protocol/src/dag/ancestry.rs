//! Fetching missing ancestry in one request (spec 6.3): the haves a requester sends and the
//! entries an answerer owes.

use std::collections::HashSet;

use crate::entry::Action;
use crate::key::{EntryKey, Hash};

use super::walk::{Colours, Walker};
use super::{DagError, DagView};

/// The haves a requester sends along with its wants: its `heads`, then ancestors at
/// exponentially growing distance behind each head (1, 2, 4, 8, ... steps), at most `max`
/// hashes in all, without duplicates.
///
/// Each head's walk follows its most recent parent (greatest key) and ends at a root, which is
/// then sent too. Distances grow round-robin over the heads, so one deep head does not use up
/// the budget. A responder that knows none of the heads (a local merge, say) still finds a
/// recent ancestor it knows, so the reply resends at most about as much as it must send anyway,
/// never the whole history. Cost: the walk behind each head reaches about `2^(max / heads)`
/// entries deep, so at most the depth of the DAG per head; `max` of 16 to 32 is plenty. Each
/// step loads an entry and looks at its parents; once `max_visits` entries and parent edges are
/// spent the haves found so far are returned (haves only save bytes, they are never required).
pub fn haves_for_request<A: Action>(
    view: &impl DagView<A>,
    heads: &[Hash],
    max: usize,
    max_visits: u64,
) -> Result<Vec<Hash>, DagError> {
    let mut visits = 0u64;
    let mut out: Vec<Hash> = Vec::new();
    let mut seen = HashSet::new();
    // (current position, its distance from the head)
    let mut cursors: Vec<(Hash, u64)> = Vec::new();
    for h in heads {
        if out.len() == max {
            return Ok(out);
        }
        if seen.insert(*h) {
            out.push(*h);
            cursors.push((*h, 0));
        }
    }
    while out.len() < max && !cursors.is_empty() {
        let mut i = 0;
        while i < cursors.len() && out.len() < max {
            let (mut cur, dist) = cursors[i];
            let target = if dist == 0 { 1 } else { dist.saturating_mul(2) };
            let mut reached = dist;
            while reached < target {
                if visits >= max_visits {
                    return Ok(out);
                }
                match latest_parent(view, &cur, &mut visits)? {
                    Some(p) => {
                        cur = p;
                        reached += 1;
                    }
                    None => break,
                }
            }
            if reached > dist && seen.insert(cur) {
                out.push(cur);
            }
            if reached < target {
                cursors.remove(i); // reached a root (or an unknown entry)
            } else {
                cursors[i] = (cur, reached);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The stored parent of `hash` with the greatest key, or `None` at a root or an unknown entry.
fn latest_parent<A: Action>(
    view: &impl DagView<A>,
    hash: &Hash,
    visits: &mut u64,
) -> Result<Option<Hash>, DagError> {
    *visits += 1;
    let Some(entry) = view.get(hash)? else {
        return Ok(None);
    };
    *visits += entry.parents.len() as u64;
    if let [only] = entry.parents.as_slice() {
        return Ok(Some(*only));
    }
    let mut best: Option<EntryKey> = None;
    for p in &entry.parents {
        if let Some(pe) = view.get(p)? {
            best = best.max(Some(EntryKey {
                hlc: pe.hlc,
                hash: *p,
            }));
        }
    }
    Ok(best.map(|k| k.hash))
}

/// The answer to an ancestry request (see [`ancestry_to_send`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ancestry {
    /// Hashes to send, in ascending key order (parents before children).
    pub hashes: Vec<Hash>,
    /// Whether more entries were owed than the limit allowed. `hashes` then holds the *oldest*
    /// entries owed, which the requester can apply at once; it continues by asking again with
    /// the same wants and fresh haves from [`haves_for_request`] over its new heads.
    pub truncated: bool,
}

/// Everything a requester needs to hold `want` with its ancestry: every ancestor-or-self of a
/// `want` that is not an ancestor-or-self of any known `have`. Unknown haves are ignored; an
/// unknown want is [`DagError::Missing`].
///
/// One walk in descending key order paints entries "ours" (reachable from a want) or "theirs"
/// (reachable from a have; theirs wins) and stops when the queue holds only theirs, as git's
/// merge-base computation does. It visits the answer plus the frontier of theirs around it.
/// At most `limit` hashes come back; see [`Ancestry::truncated`]. The walk itself cannot stop
/// at `limit` (the oldest entries are found last), so it is bounded instead by `max_visits`
/// (entries loaded plus parent edges followed; [`DEFAULT_MAX_VISITS`](super::DEFAULT_MAX_VISITS)):
/// past it the answer is [`DagError::VisitBudget`], and the requester falls back to range
/// reconciliation, which is what bulk transfers are for; this request closes the DAG.
pub fn ancestry_to_send<A: Action>(
    view: &impl DagView<A>,
    want: &[Hash],
    have: &[Hash],
    limit: usize,
    max_visits: u64,
) -> Result<Ancestry, DagError> {
    const OURS: usize = 0;
    const THEIRS: usize = 1;
    let theirs = Colours::one(2, THEIRS);
    let ours = Colours::one(2, OURS);
    let mut walk = Walker::<A, _>::new(view, theirs.clone(), max_visits, false);
    for h in have {
        walk.paint(h, &theirs)?;
    }
    for h in want {
        if !walk.paint(h, &ours)? {
            return Err(DagError::Missing(*h));
        }
    }
    let mut hashes = Vec::new();
    while let Some((hash, colours)) = walk.pop(false) {
        if !colours.has(THEIRS) {
            hashes.push(hash);
        }
        walk.paint_parents(&hash, &colours)?;
    }
    hashes.reverse();
    let truncated = hashes.len() > limit;
    hashes.truncate(limit);
    Ok(Ancestry { hashes, truncated })
}
