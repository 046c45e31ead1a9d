//! The merge rule (spec 6.5): who merges, and which parents a merge names.

use crate::entry::MAX_PARENTS;
use crate::key::{EntryKey, Hash, NodeId};

/// Whether node `me` should write a merge now: only if there are at least two heads and `me`
/// authored the greatest head in key order.
///
/// Why this cannot storm: replicas that hold the same entries see the same heads, so exactly
/// one node (the author of the greatest head) merges. Its merge names every head as a parent
/// and has a greater HLC than all of them, so once it spreads it is the single head everywhere
/// and nobody merges again. Ordinary writes take all current heads as parents, so they join
/// branches too. A quiet, synced cluster therefore ends with one head and writes no further
/// merges. While entries are still in flight two nodes may each see themselves as the author of
/// the greatest head and both merge; every such merge is caused by fresh concurrent entries,
/// and the next quiet round joins them with at most one more merge.
pub fn should_merge(heads: &[(EntryKey, NodeId)], me: &NodeId) -> bool {
    heads.len() >= 2
        && heads
            .iter()
            .max_by_key(|(k, _)| *k)
            .is_some_and(|(_, n)| n == me)
}

/// The parents of a merge (or of any new write): every head, ascending by hash, deduplicated.
/// Above [`MAX_PARENTS`] heads, the most recent [`MAX_PARENTS`] by key are taken; the rest stay
/// heads and are joined by the next merge.
pub fn merge_parents(heads: &[(EntryKey, NodeId)]) -> Vec<Hash> {
    let mut keys: Vec<EntryKey> = heads.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    keys.dedup();
    keys.truncate(MAX_PARENTS);
    let mut hashes: Vec<Hash> = keys.into_iter().map(|k| k.hash).collect();
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}
