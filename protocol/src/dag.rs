//! DAG rules: parents, ancestry requests, heads, last-writer-wins, merge conflicts, the merge
//! rule, and [`MemoryReplica`], the in-memory model every store is tested against.
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

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use crate::action::Action;
use crate::apply::{self, ReplicaState};
use crate::entry::{EntryError, LogEntry, MAX_PARENTS};
use crate::hlc::Hlc;
use crate::key::{EntryKey, Hash, NodeId};
use crate::store::StoreError;

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

impl<A: Action> DagView<A> for HashMap<Hash, LogEntry<A>> {
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
pub enum DagError {
    /// A requested entry, or an ancestor met during a walk, is not in the view: either an
    /// unknown `want`/merge parent, or a store that is not closed under parents.
    #[error("entry {0} is not in the store (unknown, or the store is not closed under parents)")]
    Missing(Hash),
    /// The HLC order between an entry and a parent is broken.
    #[error(transparent)]
    ParentOrder(#[from] ParentOrderError),
    /// [`merge_conflicts`] takes at most [`MAX_CONFLICT_PARENTS`] distinct parents.
    #[error("{0} parents; merge conflicts are computed for at most {MAX_CONFLICT_PARENTS}")]
    TooManyParents(usize),
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

// ---------------------------------------------------------------------------------------------
// Painting walk shared by ancestry and conflict computations

struct Node<'v, A: Action> {
    entry: Cow<'v, LogEntry<A>>,
    flags: u64,
    popped: bool,
}

/// Walks a view in descending key order, painting entries with colour bits. An entry painted
/// with every bit of `done` no longer keeps the walk going; the walk ends once the queue holds
/// only such entries (git's merge-base painting).
struct Walker<'v, A: Action, V: ?Sized> {
    view: &'v V,
    heap: BinaryHeap<EntryKey>,
    nodes: HashMap<Hash, Node<'v, A>>,
    done: u64,
    pending: usize,
}

impl<'v, A: Action, V: DagView<A> + ?Sized> Walker<'v, A, V> {
    fn new(view: &'v V, done: u64) -> Self {
        Walker {
            view,
            heap: BinaryHeap::new(),
            nodes: HashMap::new(),
            done,
            pending: 0,
        }
    }

    /// Adds `flags` to `hash`, queueing it on first sight. `Ok(false)` if the view lacks it.
    fn paint(&mut self, hash: &Hash, flags: u64) -> Result<bool, DagError> {
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
    fn pop(&mut self, all: bool) -> Option<(Hash, u64)> {
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

    fn peek(&self) -> Option<&EntryKey> {
        self.heap.peek()
    }

    fn entry(&self, hash: &Hash) -> Option<&LogEntry<A>> {
        self.nodes.get(hash).map(|n| &*n.entry)
    }

    fn paint_parents(&mut self, hash: &Hash, flags: u64) -> Result<(), DagError> {
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

// ---------------------------------------------------------------------------------------------
// Ancestry requests

/// The haves a requester sends along with its wants: its `heads`, then ancestors at
/// exponentially growing distance behind each head (1, 2, 4, 8, ... steps), at most `max`
/// hashes in all, without duplicates.
///
/// Each head's walk follows its most recent parent (greatest key) and ends at a root, which is
/// then sent too. Distances grow round-robin over the heads, so one deep head does not use up
/// the budget. A responder that knows none of the heads (a local merge, say) still finds a
/// recent ancestor it knows, so the reply resends at most about as much as it must send anyway,
/// never the whole history. Cost: the walk behind each head reaches about `2^(max / heads)`
/// entries deep, so at most the depth of the DAG per head; `max` of 16 to 32 is plenty.
pub fn haves_for_request<A: Action>(
    view: &impl DagView<A>,
    heads: &[Hash],
    max: usize,
) -> Result<Vec<Hash>, DagError> {
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
                match latest_parent(view, &cur)? {
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
fn latest_parent<A: Action>(view: &impl DagView<A>, hash: &Hash) -> Result<Option<Hash>, DagError> {
    let Some(entry) = view.get(hash)? else {
        return Ok(None);
    };
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
/// At most `limit` hashes come back; see [`Ancestry::truncated`]. The walk itself is not capped
/// by `limit` (the oldest entries are found last), so a responder should bound how often it
/// answers; bulk transfers belong to range reconciliation, this request closes the DAG.
pub fn ancestry_to_send<A: Action>(
    view: &impl DagView<A>,
    want: &[Hash],
    have: &[Hash],
    limit: usize,
) -> Result<Ancestry, DagError> {
    const OURS: u64 = 1;
    const THEIRS: u64 = 2;
    let mut walk = Walker::<A, _>::new(view, THEIRS);
    for h in have {
        walk.paint(h, THEIRS)?;
    }
    for h in want {
        if !walk.paint(h, OURS)? {
            return Err(DagError::Missing(*h));
        }
    }
    let mut hashes = Vec::new();
    while let Some((hash, flags)) = walk.pop(false) {
        if flags & THEIRS == 0 {
            hashes.push(hash);
        }
        walk.paint_parents(&hash, flags)?;
    }
    hashes.reverse();
    let truncated = hashes.len() > limit;
    hashes.truncate(limit);
    Ok(Ancestry { hashes, truncated })
}

// ---------------------------------------------------------------------------------------------
// Heads

/// The heads of a DAG (entries no other entry names as a parent), maintained incrementally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heads {
    map: BTreeMap<Hash, (Hlc, NodeId)>,
}

impl Heads {
    /// No heads.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an applied entry: its parents stop being heads and it becomes one. Call once per
    /// entry, parents before children, as a store closed under parents applies them.
    pub fn apply<A>(&mut self, entry: &LogEntry<A>) {
        for p in &entry.parents {
            self.map.remove(p);
        }
        self.map.insert(entry.hash, (entry.hlc, entry.node_id));
    }

    /// The head hashes, ascending.
    pub fn hashes(&self) -> Vec<Hash> {
        self.map.keys().copied().collect()
    }

    /// The heads with their authors, ascending by key: the input of [`should_merge`].
    pub fn with_keys(&self) -> Vec<(EntryKey, NodeId)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|(hash, (hlc, node))| {
                (
                    EntryKey {
                        hlc: *hlc,
                        hash: *hash,
                    },
                    *node,
                )
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether `hash` is a head.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.map.contains_key(hash)
    }

    /// Number of heads.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no heads (an empty log).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The heads of a set of entries computed from scratch, ascending: the entries no entry of the
/// set names as a parent.
pub fn heads_of<'a, A: 'a>(entries: impl IntoIterator<Item = &'a LogEntry<A>>) -> Vec<Hash> {
    let mut hashes = BTreeSet::new();
    let mut named = HashSet::new();
    for e in entries {
        hashes.insert(e.hash);
        named.extend(e.parents.iter().copied());
    }
    hashes.into_iter().filter(|h| !named.contains(h)).collect()
}

// ---------------------------------------------------------------------------------------------
// Last-writer-wins

/// One write to a last-writer-wins register, as far as the winner rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LwwWrite {
    /// The writing entry's key `(hlc, hash)`.
    pub key: EntryKey,
    /// Its author.
    pub node_id: NodeId,
    /// Whether it is a tombstone.
    pub is_delete: bool,
}

impl LwwWrite {
    /// The register `entry` writes and the write itself, or `None` if it writes no register.
    pub fn of<A: Action>(entry: &LogEntry<A>) -> Option<(A::Key, LwwWrite)> {
        let key = entry.action.lww_key()?;
        Some((
            key,
            LwwWrite {
                key: entry.key(),
                node_id: entry.node_id,
                is_delete: entry.action.is_delete(),
            },
        ))
    }
}

/// The total order of writes to one register; the greatest wins. Compares HLC, then author,
/// then hash (Shoal's rule, highest HLC then highest node id, made total). Two writes tie on
/// `(hlc, node_id)` only if one author signed two entries with one stamp (a bug or malice);
/// the higher hash then wins, so every replica still picks the same winner.
pub fn lww_cmp(a: &LwwWrite, b: &LwwWrite) -> Ordering {
    (a.key.hlc, a.node_id, a.key.hash).cmp(&(b.key.hlc, b.node_id, b.key.hash))
}

/// The state of every register: its winning write, tombstones included. Applying entries is
/// commutative and idempotent, so the view depends only on the set of entries applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View<A: Action> {
    map: BTreeMap<A::Key, LwwWrite>,
}

impl<A: Action> Default for View<A> {
    fn default() -> Self {
        View {
            map: BTreeMap::new(),
        }
    }
}

impl<A: Action> View<A> {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `entry` into account; returns whether it became its register's winner.
    pub fn apply(&mut self, entry: &LogEntry<A>) -> bool {
        let Some((key, write)) = LwwWrite::of(entry) else {
            return false;
        };
        match self.map.get_mut(&key) {
            Some(cur) if lww_cmp(&write, cur) != Ordering::Greater => false,
            Some(cur) => {
                *cur = write;
                true
            }
            None => {
                self.map.insert(key, write);
                true
            }
        }
    }

    /// The winning write of `key` (possibly a tombstone), if any entry wrote it.
    pub fn get(&self, key: &A::Key) -> Option<&LwwWrite> {
        self.map.get(key)
    }

    /// Every register with its winner, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&A::Key, &LwwWrite)> {
        self.map.iter()
    }

    /// Number of registers ever written (tombstones included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no register was written.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Merge conflicts

/// Most distinct parents [`merge_conflicts`] handles: one colour bit each in a `u64`.
pub const MAX_CONFLICT_PARENTS: usize = 64;

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
/// than two give no conflicts; more than [`MAX_CONFLICT_PARENTS`] is an error.
pub fn merge_conflicts<A: Action>(
    view: &impl DagView<A>,
    parents: &[Hash],
) -> Result<Vec<Conflict<A::Key>>, DagError> {
    let mut parents = parents.to_vec();
    parents.sort_unstable();
    parents.dedup();
    let n = parents.len();
    if n > MAX_CONFLICT_PARENTS {
        return Err(DagError::TooManyParents(n));
    }
    if n < 2 {
        return Ok(Vec::new());
    }
    let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mut walk = Walker::<A, _>::new(view, all);
    for (i, p) in parents.iter().enumerate() {
        if !walk.paint(p, 1 << i)? {
            return Err(DagError::Missing(*p));
        }
    }
    // register -> each branch's best non-common write
    let mut slots: BTreeMap<A::Key, Vec<Option<LwwWrite>>> = BTreeMap::new();
    // register -> best common write seen (common entries interleave with the others)
    let mut common: HashMap<A::Key, LwwWrite> = HashMap::new();
    while let Some((hash, flags)) = walk.pop(false) {
        if let Some((key, write)) = walk.entry(&hash).and_then(LwwWrite::of) {
            if flags == all {
                keep_max(common.entry(key).or_insert(write), write);
            } else {
                let slot = slots.entry(key).or_insert_with(|| vec![None; n]);
                for (i, s) in slot.iter_mut().enumerate() {
                    if flags & (1 << i) != 0 {
                        keep_max(s.get_or_insert(write), write);
                    }
                }
            }
        }
        walk.paint_parents(&hash, flags)?;
    }
    // Registers whose branches disagree on the non-common writes alone.
    slots.retain(|_, s| distinct(s.iter().flatten().copied()).len() >= 2);
    let Some(threshold) = slots.values().flatten().flatten().map(|w| w.key.hlc).min() else {
        return Ok(Vec::new());
    };
    // Common writes at or after `threshold` may still beat a branch's own writes.
    while walk.peek().is_some_and(|k| k.hlc >= threshold) {
        let Some((hash, flags)) = walk.pop(true) else {
            break;
        };
        if let Some((key, write)) = walk.entry(&hash).and_then(LwwWrite::of) {
            if slots.contains_key(&key) {
                keep_max(common.entry(key).or_insert(write), write);
            }
        }
        walk.paint_parents(&hash, flags)?;
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

// ---------------------------------------------------------------------------------------------
// Merge rule

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

// ---------------------------------------------------------------------------------------------
// The reference replica

/// Why [`MemoryReplica::insert`] refused an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// The entry failed [`LogEntry::verify`].
    #[error(transparent)]
    Invalid(#[from] EntryError),
    /// The author is not in the allowed set.
    #[error("author {0} is not allowed to write to this log")]
    NotAllowed(NodeId),
    /// The entry's HLC is not greater than a parent's.
    #[error(transparent)]
    ParentOrder(#[from] ParentOrderError),
    /// An ancestor was refused for its parent order, so this held-back entry can never apply.
    #[error("ancestor {0} was refused, so this entry can never be applied")]
    AncestorRejected(Hash),
}

/// What happened to one entry given to [`MemoryReplica::insert`] or
/// [`MemoryReplica::retry_deferred`], as of the end of that call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored and applied (its parents were all applied, possibly earlier in the same call).
    Applied,
    /// Already applied; nothing changed.
    Duplicate,
    /// Verified but waiting for these parents (ascending) to be applied; applied as soon as
    /// they are.
    HeldBack {
        /// Parents not yet applied (some may be held back or deferred themselves).
        missing: Vec<Hash>,
    },
    /// Its HLC is beyond the allowed drift: kept aside, not dropped, until local wall time
    /// reaches `not_before` (see [`MemoryReplica::retry_deferred`]).
    Deferred {
        /// Earliest local wall time (ns since the epoch) at which it becomes admissible.
        not_before: u64,
    },
    /// Refused.
    Rejected(InsertError),
}

/// The result of one [`MemoryReplica::insert`] or [`MemoryReplica::retry_deferred`] call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InsertReport {
    /// One outcome per entry given (for `insert`, in input order; for `retry_deferred`, per
    /// entry that came due).
    pub outcomes: Vec<(Hash, InsertOutcome)>,
    /// Every entry applied by the call, in application order (parents first), including
    /// held-back entries from earlier calls that it promoted.
    pub applied: Vec<Hash>,
    /// Held-back entries from earlier calls dropped because they (or an ancestor) turned out
    /// to break the parent HLC order.
    pub dropped: Vec<(Hash, InsertError)>,
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{ObjectId, Op};
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    const DRIFT: Duration = Duration::from_secs(60);

    fn sk(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn node(seed: u8) -> NodeId {
        NodeId(sk(seed).verifying_key().to_bytes())
    }

    fn put(k: &str, v: u8) -> Op {
        Op::Put {
            bucket: "b".into(),
            key: k.into(),
            object_id: ObjectId([v; 32]),
        }
    }

    fn del(k: &str) -> Op {
        Op::Delete {
            bucket: "b".into(),
            key: k.into(),
        }
    }

    fn reg(k: &str) -> (String, String) {
        ("b".into(), k.into())
    }

    fn mk(seed: u8, hlc: u64, action: Op, parents: &[&LogEntry]) -> LogEntry {
        LogEntry::sign(
            &sk(seed),
            Hlc(hlc),
            action,
            parents.iter().map(|p| p.hash).collect(),
        )
        .unwrap()
    }

    fn map(entries: &[&LogEntry]) -> HashMap<Hash, LogEntry> {
        entries.iter().map(|e| (e.hash, (*e).clone())).collect()
    }

    fn by_key(mut v: Vec<&LogEntry>) -> Vec<Hash> {
        v.sort_by_key(|e| e.key());
        v.into_iter().map(|e| e.hash).collect()
    }

    fn write(e: &LogEntry) -> LwwWrite {
        LwwWrite::of(e).unwrap().1
    }

    #[test]
    fn parent_rules() {
        let r = mk(1, 10, put("a", 1), &[]);
        let ok = mk(1, 11, put("a", 2), &[&r]);
        let same = mk(1, 10, put("a", 3), &[&r]);
        let ghost = Hash([7; 32]);
        let half = LogEntry::sign(&sk(1), Hlc(20), Op::Merge, vec![r.hash, ghost]).unwrap();
        let view = map(&[&r]);
        assert_eq!(missing_parents(&ok, &view).unwrap(), vec![]);
        assert_eq!(missing_parents(&half, &view).unwrap(), vec![ghost]);
        check_parent_order(&ok, &view).unwrap();
        check_parent_order(&half, &view).unwrap(); // the unknown parent is checked later
        match check_parent_order(&same, &view) {
            Err(DagError::ParentOrder(e)) => assert_eq!(
                e,
                ParentOrderError {
                    child: same.hash,
                    child_hlc: Hlc(10),
                    parent: r.hash,
                    parent_hlc: Hlc(10)
                }
            ),
            other => panic!("{other:?}"),
        }
    }

    /// r -> a1 -> a2 -> m -> c, r -> b1 -> b2 -> m.
    struct Branchy {
        r: LogEntry,
        a1: LogEntry,
        a2: LogEntry,
        b1: LogEntry,
        b2: LogEntry,
        m: LogEntry,
        c: LogEntry,
    }

    fn branchy() -> Branchy {
        let r = mk(1, 1, put("x", 0), &[]);
        let a1 = mk(1, 2, put("x", 1), &[&r]);
        let a2 = mk(1, 5, put("y", 1), &[&a1]);
        let b1 = mk(2, 3, put("z", 2), &[&r]);
        let b2 = mk(2, 4, put("x", 2), &[&b1]);
        let m = mk(2, 6, Op::Merge, &[&a2, &b2]);
        let c = mk(3, 7, put("w", 3), &[&m]);
        Branchy {
            r,
            a1,
            a2,
            b1,
            b2,
            m,
            c,
        }
    }

    #[test]
    fn ancestry_on_branching_dag() {
        let Branchy {
            r,
            a1,
            a2,
            b1,
            b2,
            m,
            c,
        } = branchy();
        let view = map(&[&r, &a1, &a2, &b1, &b2, &m, &c]);
        let ask = |have: &[&LogEntry], limit| {
            let have: Vec<Hash> = have.iter().map(|e| e.hash).collect();
            ancestry_to_send(&view, &[c.hash], &have, limit).unwrap()
        };
        let full = |v| Ancestry {
            hashes: v,
            truncated: false,
        };
        assert_eq!(ask(&[&a2], 100), full(by_key(vec![&b1, &b2, &m, &c])));
        assert_eq!(ask(&[&a1], 100), full(by_key(vec![&b1, &b2, &a2, &m, &c])));
        assert_eq!(ask(&[&a1, &b1], 100), full(by_key(vec![&b2, &a2, &m, &c])));
        assert_eq!(ask(&[&m], 100), full(vec![c.hash]));
        assert_eq!(ask(&[&c], 100), full(vec![]));
        // unknown haves are ignored: everything comes back, parents first
        let unknown = mk(9, 3, put("q", 9), &[]);
        let all = by_key(vec![&r, &a1, &b1, &b2, &a2, &m, &c]);
        assert_eq!(ask(&[&unknown], 100), full(all.clone()));
        // the cap keeps the oldest entries, which the requester can apply at once
        assert_eq!(
            ask(&[&a1], 2),
            Ancestry {
                hashes: by_key(vec![&b1, &b2]),
                truncated: true
            }
        );
        // two wants on separate branches
        let got = ancestry_to_send(&view, &[a2.hash, b1.hash], &[r.hash], 10).unwrap();
        assert_eq!(got, full(by_key(vec![&a1, &b1, &a2])));
        // an unknown want is an error
        assert!(matches!(
            ancestry_to_send(&view, &[unknown.hash], &[], 10),
            Err(DagError::Missing(h)) if h == unknown.hash
        ));
        // a store with a hole is reported, not silently skipped
        let holey = map(&[&a2, &a1]);
        assert!(matches!(
            ancestry_to_send(&holey, &[a2.hash], &[], 10),
            Err(DagError::Missing(h)) if h == r.hash
        ));
    }

    #[test]
    fn haves_are_exponentially_spaced() {
        let mut chain = vec![mk(1, 1, put("k", 0), &[])];
        for i in 1..100u64 {
            let e = mk(1, i + 1, put("k", i as u8), &[chain.last().unwrap()]);
            chain.push(e);
        }
        let view: HashMap<Hash, LogEntry> = chain.iter().map(|e| (e.hash, e.clone())).collect();
        let h = |i: usize| chain[i].hash;
        let haves = haves_for_request(&view, &[h(99)], 5).unwrap();
        assert_eq!(haves, vec![h(99), h(98), h(97), h(95), h(91)]);
        // walks end at the root, which is sent too
        let haves = haves_for_request(&view, &[h(99)], 100).unwrap();
        assert_eq!(haves, [99, 98, 97, 95, 91, 83, 67, 35, 0].map(h).to_vec());
        // two heads share the budget round-robin; an unknown head is still sent
        let side = mk(2, 50, put("s", 1), &[&chain[40]]);
        let mut view = view;
        view.insert(side.hash, side.clone());
        let ghost = Hash([0xee; 32]);
        let haves = haves_for_request(&view, &[h(99), side.hash, ghost], 7).unwrap();
        assert_eq!(
            haves,
            vec![h(99), side.hash, ghost, h(98), h(40), h(97), h(39)]
        );
    }

    #[test]
    fn heads_incremental_and_from_scratch() {
        let b = branchy();
        let order = [&b.r, &b.a1, &b.b1, &b.b2, &b.a2];
        let mut heads = Heads::new();
        for e in order {
            heads.apply(e);
        }
        let mut want = vec![b.a2.hash, b.b2.hash];
        want.sort();
        assert_eq!(heads.hashes(), want);
        assert_eq!(heads_of(order), want);
        assert_eq!(
            heads.with_keys(),
            vec![(b.b2.key(), node(2)), (b.a2.key(), node(1))]
        );
        heads.apply(&b.m);
        assert_eq!(heads.hashes(), vec![b.m.hash]);
        assert_eq!(
            heads_of([&b.r, &b.a1, &b.b1, &b.b2, &b.a2, &b.m]),
            vec![b.m.hash]
        );
    }

    #[test]
    fn lww_tie_at_identical_stamp() {
        // one author, one stamp, two writes to the same register: the higher hash wins
        let x = mk(1, 5, put("k", 1), &[]);
        let y = mk(1, 5, put("k", 2), &[]);
        let (lo, hi) = if x.hash < y.hash { (&x, &y) } else { (&y, &x) };
        assert_eq!(lww_cmp(&write(hi), &write(lo)), Ordering::Greater);
        for order in [[lo, hi], [hi, lo]] {
            let mut v = View::new();
            for e in order {
                v.apply(e);
            }
            assert!(!v.apply(lo), "re-applying the loser changes nothing");
            assert_eq!(v.get(&reg("k")), Some(&write(hi)));
        }
        // the author decides before the hash, and the HLC before both
        let a = mk(1, 5, put("k", 3), &[]);
        let b = mk(2, 5, put("k", 4), &[]);
        let expect = if node(1) > node(2) { &a } else { &b };
        let other = if node(1) > node(2) { &b } else { &a };
        assert_eq!(lww_cmp(&write(expect), &write(other)), Ordering::Greater);
        let later = mk(1, 6, del("k"), &[]);
        let mut v = View::new();
        for e in [&later, &a, &b] {
            v.apply(e);
        }
        assert_eq!(v.get(&reg("k")), Some(&write(&later)));
        assert!(v.get(&reg("k")).unwrap().is_delete, "tombstones are kept");
    }

    #[test]
    fn diamond_merge_conflicts() {
        let Branchy {
            r,
            a1,
            a2,
            b1,
            b2,
            m,
            c,
        } = branchy();
        let view = map(&[&r, &a1, &a2, &b1, &b2, &m, &c]);
        // x: a1 (branch a) vs b2 (branch b); y and z were written on one side only
        let got = merge_conflicts(&view, &[a2.hash, b2.hash]).unwrap();
        assert_eq!(
            got,
            vec![Conflict {
                key: reg("x"),
                branch_winners: vec![write(&a1), write(&b2)],
                winner: write(&b2),
            }]
        );
        // the winner is LWW over the union
        let mut union = View::new();
        for e in [&r, &a1, &a2, &b1, &b2] {
            union.apply(e);
        }
        assert_eq!(union.get(&reg("x")), Some(&got[0].winner));
        // parent order and duplicates do not matter; one parent or an ancestor pair: nothing
        assert_eq!(
            merge_conflicts(&view, &[b2.hash, a2.hash, b2.hash]).unwrap(),
            got
        );
        assert_eq!(merge_conflicts(&view, &[a2.hash]).unwrap(), vec![]);
        assert_eq!(merge_conflicts(&view, &[m.hash, a1.hash]).unwrap(), vec![]);
        let many: Vec<Hash> = (0..65u8).map(|i| Hash([i; 32])).collect();
        assert!(matches!(
            merge_conflicts(&view, &many),
            Err(DagError::TooManyParents(65))
        ));
        assert!(matches!(
            merge_conflicts(&view, &[a2.hash, Hash([1; 32])]),
            Err(DagError::Missing(_))
        ));
    }

    #[test]
    fn common_write_both_branches_show_is_no_conflict() {
        // r; w1 and w2 write k concurrently; c writes k later and both tips include it
        let r = mk(1, 1, put("other", 0), &[]);
        let w1 = mk(1, 10, put("k", 1), &[&r]);
        let w2 = mk(2, 11, put("k", 2), &[&r]);
        let c = mk(3, 20, put("k", 3), &[&r]);
        let p1 = mk(1, 30, Op::Merge, &[&w1, &c]);
        let p2 = mk(2, 31, Op::Merge, &[&w2, &c]);
        let view = map(&[&r, &w1, &w2, &c, &p1, &p2]);
        assert_eq!(merge_conflicts(&view, &[p1.hash, p2.hash]).unwrap(), vec![]);
        // ... but an older common write does not hide a real conflict
        let old = mk(3, 5, put("k", 4), &[&r]);
        let q1 = mk(1, 30, Op::Merge, &[&w1, &old]);
        let q2 = mk(2, 31, Op::Merge, &[&w2, &old]);
        let view = map(&[&r, &w1, &w2, &old, &q1, &q2]);
        let got = merge_conflicts(&view, &[q1.hash, q2.hash]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].branch_winners, vec![write(&w1), write(&w2)]);
        // three parents, two agreeing: still one conflict with two distinct winners
        let s1 = mk(1, 12, put("k", 5), &[&r]);
        let s2 = mk(2, 13, put("k", 6), &[&s1]);
        let s3 = mk(3, 14, put("k", 7), &[&s1]);
        let t = mk(4, 15, put("u", 0), &[&s2]);
        let view = map(&[&r, &s1, &s2, &s3, &t]);
        let got = merge_conflicts(&view, &[s2.hash, s3.hash, t.hash]).unwrap();
        assert_eq!(
            got,
            vec![Conflict {
                key: reg("k"),
                branch_winners: vec![write(&s2), write(&s3)],
                winner: write(&s3),
            }]
        );
    }

    #[test]
    fn merge_rule() {
        let k = |h: u64, b: u8| EntryKey::new(h, [b; 32]);
        let (a, b) = (node(1), node(2));
        assert!(!should_merge(&[], &a));
        assert!(!should_merge(&[(k(9, 0), a)], &a));
        let heads = [(k(9, 0), a), (k(3, 5), b), (k(9, 1), b)];
        assert!(should_merge(&heads, &b));
        assert!(!should_merge(&heads, &a));
        assert_eq!(
            merge_parents(&heads),
            vec![Hash([0; 32]), Hash([1; 32]), Hash([5; 32])]
        );
        let many: Vec<_> = (0..1100u64)
            .map(|i| {
                let mut h = [0u8; 32];
                h[..8].copy_from_slice(&(i * 7919 % 1100).to_be_bytes());
                (EntryKey::new(i + 1, h), a)
            })
            .collect();
        let p = merge_parents(&many);
        assert_eq!(p.len(), MAX_PARENTS);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        // the most recent heads are kept
        let newest = many.iter().max_by_key(|(k, _)| *k).unwrap().0.hash;
        let oldest = many.iter().min_by_key(|(k, _)| *k).unwrap().0.hash;
        assert!(p.contains(&newest) && !p.contains(&oldest));
    }

    #[test]
    fn long_chain_child_first() {
        const N: usize = 10_000;
        let mut chain = vec![mk(1, 1, put("k", 0), &[])];
        for i in 1..N {
            let e = mk(
                1 + (i % 3) as u8,
                i as u64 + 1,
                put("k", i as u8),
                &[&chain[i - 1]],
            );
            chain.push(e);
        }
        let mut rep = MemoryReplica::new();
        for i in (1..N).rev() {
            let rpt = rep.insert([chain[i].clone()], 0, DRIFT, None);
            assert_eq!(
                rpt.outcomes,
                vec![(
                    chain[i].hash,
                    InsertOutcome::HeldBack {
                        missing: vec![chain[i - 1].hash]
                    }
                )]
            );
            if i % 1000 == 0 {
                assert_eq!(rep.missing(), vec![chain[i - 1].hash]);
            }
        }
        assert!(rep.is_empty());
        // re-inserting a held-back entry is a no-op
        let again = rep.insert([chain[5].clone()], 0, DRIFT, None);
        assert!(again.applied.is_empty());
        let rpt = rep.insert([chain[0].clone()], 0, DRIFT, None);
        assert_eq!(rpt.outcomes, vec![(chain[0].hash, InsertOutcome::Applied)]);
        assert_eq!(
            rpt.applied,
            chain.iter().map(|e| e.hash).collect::<Vec<_>>()
        );
        assert_eq!(rep.len(), N);
        assert_eq!(rep.heads().hashes(), vec![chain[N - 1].hash]);
        assert_eq!(rep.held_back().count(), 0);
        assert!(rep.missing().is_empty());
        assert_eq!(rep.view().get(&reg("k")), Some(&write(&chain[N - 1])));
        let dup = rep.insert([chain[7].clone()], 0, DRIFT, None);
        assert_eq!(
            dup.outcomes,
            vec![(chain[7].hash, InsertOutcome::Duplicate)]
        );
    }

    #[test]
    fn replica_checks() {
        let r = mk(1, 10, put("a", 1), &[]);
        let mut rep = MemoryReplica::new();
        // bad signature
        let mut bad = r.clone();
        bad.signature.0[0] ^= 1;
        let rpt = rep.insert([bad], 0, DRIFT, None);
        assert!(matches!(
            rpt.outcomes[0].1,
            InsertOutcome::Rejected(InsertError::Invalid(_))
        ));
        // author not allowed
        let allowed: HashSet<NodeId> = [node(2)].into();
        let rpt = rep.insert([r.clone()], 0, DRIFT, Some(&allowed));
        assert_eq!(
            rpt.outcomes[0].1,
            InsertOutcome::Rejected(InsertError::NotAllowed(node(1)))
        );
        assert!(rep.is_empty());
        // a batch in any order applies fully
        let a = mk(1, 11, put("a", 2), &[&r]);
        let b = mk(2, 11, put("b", 2), &[&r]);
        let rpt = rep.insert([a.clone(), b.clone(), r.clone()], 0, DRIFT, None);
        assert!(rpt
            .outcomes
            .iter()
            .all(|(_, o)| *o == InsertOutcome::Applied));
        assert_eq!(rpt.outcomes[0].0, a.hash);
        assert_eq!(rep.heads().len(), 2);
        // parent order broken against an applied parent
        let early = mk(3, 11, put("c", 3), &[&a]);
        let rpt = rep.insert([early.clone()], 0, DRIFT, None);
        assert!(matches!(
            &rpt.outcomes[0].1,
            InsertOutcome::Rejected(InsertError::ParentOrder(e)) if e.parent == a.hash
        ));
        // ... and found only when a missing parent arrives: the child and its descendants drop
        let p = mk(1, 20, put("p", 0), &[&a]);
        let bad_child = mk(2, 20, put("q", 0), &[&p]);
        let grandchild = mk(3, 30, put("q", 1), &[&bad_child]);
        rep.insert([grandchild.clone()], 0, DRIFT, None);
        rep.insert([bad_child.clone()], 0, DRIFT, None);
        assert_eq!(rep.missing(), vec![p.hash]);
        let rpt = rep.insert([p.clone()], 0, DRIFT, None);
        assert_eq!(rpt.applied, vec![p.hash]);
        assert_eq!(rpt.dropped.len(), 2);
        assert!(matches!(rpt.dropped[0].1, InsertError::ParentOrder(_)));
        assert_eq!(
            rpt.dropped[1],
            (
                grandchild.hash,
                InsertError::AncestorRejected(bad_child.hash)
            )
        );
        assert_eq!(rep.held_back().count(), 0);
        assert!(rep.missing().is_empty());
        assert!(!rep.contains(&bad_child.hash));
    }

    #[test]
    fn drift_defers_and_retry_applies() {
        let max = Duration::from_nanos(100);
        let r = mk(1, 1_000, put("a", 0), &[]);
        let future = mk(1, 1_000_000, put("a", 1), &[&r]);
        let child = mk(2, 1_000_001, put("b", 1), &[&future]);
        let mut rep = MemoryReplica::new();
        rep.insert([r.clone()], 0, DRIFT, None);
        let rpt = rep.insert([future.clone(), child.clone()], 2_000, max, None);
        assert_eq!(
            rpt.outcomes,
            vec![
                (
                    future.hash,
                    InsertOutcome::Deferred {
                        not_before: 999_900
                    }
                ),
                (
                    child.hash,
                    InsertOutcome::Deferred {
                        not_before: 999_901
                    }
                ),
            ]
        );
        // the child is admissible a little later; it waits for its deferred parent, which is
        // here already and so is not on the fetch list
        let rpt = rep.insert([child.clone()], 999_901, max, None);
        assert_eq!(
            rpt.outcomes[0].1,
            InsertOutcome::HeldBack {
                missing: vec![future.hash]
            }
        );
        assert!(rep.missing().is_empty());
        assert_eq!(
            rep.deferred().map(|(e, t)| (e.hash, t)).collect::<Vec<_>>(),
            vec![(future.hash, 999_900)]
        );
        assert!(rep.retry_deferred(999_899).outcomes.is_empty());
        let rpt = rep.retry_deferred(999_900);
        assert_eq!(rpt.outcomes, vec![(future.hash, InsertOutcome::Applied)]);
        assert_eq!(rpt.applied, vec![future.hash, child.hash]);
        assert_eq!(rep.deferred().count(), 0);
        assert_eq!(rep.heads().hashes(), vec![child.hash]);
    }

    /// Nodes write concurrently, sync, then apply the merge rule until quiet.
    #[test]
    fn merge_rule_converges_without_storm() {
        let seeds = [1u8, 2, 3, 4];
        let mut reps: Vec<MemoryReplica<Op>> = seeds.iter().map(|_| MemoryReplica::new()).collect();
        let mut clocks = [0u64; 4];
        let mut rng = StdRng::seed_from_u64(7);
        let mut wall = 1u64;
        let author = |rep: &MemoryReplica<Op>, clock: &mut u64, wall: u64, seed: u8, action: Op| {
            let heads = rep.heads().with_keys();
            let top = heads.iter().map(|(k, _)| k.hlc.0).max().unwrap_or(0);
            *clock = wall.max(*clock + 1).max(top + 1);
            LogEntry::sign(&sk(seed), Hlc(*clock), action, merge_parents(&heads)).unwrap()
        };
        let sync = |reps: &mut Vec<MemoryReplica<Op>>| {
            let all: Vec<LogEntry> = reps.iter().flat_map(|r| r.entries().cloned()).collect();
            for r in reps.iter_mut() {
                let rpt = r.insert(all.iter().cloned(), 0, DRIFT, None);
                assert!(rpt
                    .outcomes
                    .iter()
                    .all(|(_, o)| matches!(o, InsertOutcome::Applied | InsertOutcome::Duplicate)));
            }
        };
        let mut total_merges = 0;
        for round in 0..30 {
            // concurrent writes from a random non-empty subset, against unsynced state
            for (i, &seed) in seeds.iter().enumerate() {
                if i == round % 4 || rng.gen_bool(0.6) {
                    for _ in 0..rng.gen_range(1..3) {
                        wall += rng.gen_range(0..3);
                        let e = author(
                            &reps[i],
                            &mut clocks[i],
                            wall,
                            seed,
                            put(&format!("k{}", rng.gen_range(0..4)), seed),
                        );
                        reps[i].insert([e], 0, DRIFT, None);
                    }
                }
            }
            sync(&mut reps);
            let mut quiet_rounds = 0;
            loop {
                let mut merges = 0;
                for (i, &seed) in seeds.iter().enumerate() {
                    let heads = reps[i].heads().with_keys();
                    if should_merge(&heads, &node(seed)) {
                        let conflicts = merge_conflicts(&reps[i], &merge_parents(&heads)).unwrap();
                        for c in &conflicts {
                            assert_eq!(reps[i].view().get(&c.key), Some(&c.winner));
                        }
                        let e = author(&reps[i], &mut clocks[i], wall, seed, Op::Merge);
                        reps[i].insert([e], 0, DRIFT, None);
                        merges += 1;
                    }
                }
                assert!(
                    merges <= 1,
                    "round {round}: {merges} merges in one quiet round"
                );
                total_merges += merges;
                sync(&mut reps);
                if merges == 0 {
                    break;
                }
                quiet_rounds += 1;
                assert!(quiet_rounds <= 1, "a second merge round was needed");
            }
            let heads = reps[0].heads().hashes();
            assert_eq!(heads.len(), 1, "round {round}");
            for r in &reps {
                assert_eq!(r.heads().hashes(), heads);
                assert_eq!(r.view(), reps[0].view());
                assert_eq!(r.len(), reps[0].len());
            }
        }
        assert!(total_merges > 10, "the simulation must exercise merges");
    }

    /// A random DAG: (author, register, delete, parent picks, HLC bump) per entry.
    fn random_dag(spec: &[(u8, u8, bool, Vec<prop::sample::Index>, u64)]) -> Vec<LogEntry> {
        let mut out: Vec<LogEntry> = Vec::new();
        for (i, (author, k, is_del, picks, bump)) in spec.iter().enumerate() {
            let mut parents: Vec<&LogEntry> = Vec::new();
            if !out.is_empty() {
                for p in picks {
                    let e = &out[p.index(out.len())];
                    if !parents.iter().any(|q| q.hash == e.hash) {
                        parents.push(e);
                    }
                }
            }
            let hlc = parents.iter().map(|p| p.hlc.0).max().unwrap_or(0) + 1 + bump;
            let key = format!("k{k}");
            let action = if parents.len() >= 2 && *k == 0 {
                Op::Merge
            } else if *is_del {
                del(&key)
            } else {
                put(&key, i as u8)
            };
            let e = mk(*author, hlc, action, &parents);
            if !out.iter().any(|o| o.hash == e.hash) {
                out.push(e);
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn replica_and_view_independent_of_insert_order(
            spec in prop::collection::vec(
                (1u8..4, 0u8..3, any::<bool>(), prop::collection::vec(any::<prop::sample::Index>(), 0..3), 0u64..2),
                1..30),
            seed in any::<u64>(),
        ) {
            let dag = random_dag(&spec);
            let mut shuffled = dag.clone();
            shuffled.shuffle(&mut StdRng::seed_from_u64(seed));

            let mut in_order = MemoryReplica::new();
            in_order.insert(dag.iter().cloned(), 0, DRIFT, None);
            let mut one_by_one = MemoryReplica::new();
            for e in &shuffled {
                one_by_one.insert([e.clone()], 0, DRIFT, None);
                // the applied set stays closed under parents
                for a in one_by_one.entries() {
                    prop_assert!(a.parents.iter().all(|p| one_by_one.contains(p)));
                }
            }
            one_by_one.insert(shuffled.iter().rev().cloned(), 0, DRIFT, None); // idempotent
            let mut direct = View::new();
            for e in shuffled.iter().chain(&dag) {
                direct.apply(e);
            }
            prop_assert_eq!(in_order.len(), dag.len());
            prop_assert_eq!(in_order.keys().collect::<Vec<_>>(), one_by_one.keys().collect::<Vec<_>>());
            prop_assert_eq!(in_order.heads(), one_by_one.heads());
            prop_assert_eq!(in_order.heads().hashes(), heads_of(&dag));
            prop_assert_eq!(in_order.view(), one_by_one.view());
            prop_assert_eq!(in_order.view(), &direct);
            prop_assert!(one_by_one.missing().is_empty());
            prop_assert_eq!(one_by_one.held_back().count(), 0);

            // ancestry: asking for the heads with some haves returns exactly the difference
            let have: Vec<Hash> = shuffled.iter().take(3).map(|e| e.hash).collect();
            let heads = in_order.heads().hashes();
            let got = ancestry_to_send(&in_order, &heads, &have, usize::MAX).unwrap();
            let mut known: HashSet<Hash> = HashSet::new();
            let mut stack = have.clone();
            while let Some(h) = stack.pop() {
                if known.insert(h) {
                    stack.extend(in_order.get(&h).unwrap().parents.iter().copied());
                }
            }
            let expect: Vec<Hash> = in_order.keys().map(|k| k.hash).filter(|h| !known.contains(h)).collect();
            prop_assert_eq!(got.hashes, expect);

            // merge conflicts of the heads match a brute force over ancestor sets
            let got = merge_conflicts(&in_order, &heads).unwrap();
            prop_assert_eq!(got, brute_conflicts(&in_order, &heads));
        }
    }

    /// The conflict definition computed from whole ancestor sets.
    fn brute_conflicts(
        rep: &MemoryReplica<Op>,
        parents: &[Hash],
    ) -> Vec<Conflict<(String, String)>> {
        if parents.len() < 2 {
            return vec![];
        }
        let sets: Vec<HashSet<Hash>> = parents
            .iter()
            .map(|p| {
                let (mut set, mut stack) = (HashSet::new(), vec![*p]);
                while let Some(h) = stack.pop() {
                    if set.insert(h) {
                        stack.extend(rep.get(&h).unwrap().parents.iter().copied());
                    }
                }
                set
            })
            .collect();
        let best = |set: &mut dyn Iterator<Item = &Hash>, key: &(String, String)| {
            set.filter_map(|h| LwwWrite::of(rep.get(h).unwrap()))
                .filter(|(k, _)| k == key)
                .map(|(_, w)| w)
                .max_by(lww_cmp)
        };
        let union: HashSet<Hash> = sets.iter().flatten().copied().collect();
        let common: HashSet<Hash> = union
            .iter()
            .filter(|h| sets.iter().all(|s| s.contains(h)))
            .copied()
            .collect();
        let keys: BTreeSet<(String, String)> = union
            .iter()
            .filter_map(|h| rep.get(h).unwrap().action.lww_key())
            .collect();
        let mut out = vec![];
        for key in keys {
            let base = best(&mut common.iter(), &key);
            let mut winners: Vec<LwwWrite> = sets
                .iter()
                .filter_map(|s| best(&mut s.iter().filter(|h| !common.contains(h)), &key))
                .map(|w| match base {
                    Some(b) if lww_cmp(&b, &w).is_gt() => b,
                    _ => w,
                })
                .collect();
            let writers = winners.len();
            winners.sort_by(lww_cmp);
            winners.dedup();
            if writers >= 2 && winners.len() >= 2 {
                let winner = *winners.last().unwrap();
                assert_eq!(
                    Some(winner),
                    best(&mut union.iter(), &key),
                    "winner is LWW over the union"
                );
                out.push(Conflict {
                    key,
                    branch_winners: winners,
                    winner,
                });
            }
        }
        out
    }
}
