//! Tree nodes of [`RangeIndex`](super::RangeIndex) and the recursive parts of its algorithms.
//!
//! Nodes are shared between an index and its snapshots through `Arc`; a writer copies a node
//! (`Arc::make_mut`) only when a snapshot still holds it, so an insert copies at most one path.

use std::sync::Arc;

use crate::fingerprint::Aggregate;
use crate::key::EntryKey;
#[cfg(feature = "negentropy")]
use crate::negentropy::Accumulator;

/// Most keys in a leaf before it splits in two.
pub(super) const LEAF_MAX: usize = 32;
/// Most children of an inner node before it splits in two.
pub(super) const INNER_MAX: usize = 32;
/// Keys per leaf when the tree is built from a sorted list (room left for later inserts).
pub(super) const LEAF_FILL: usize = 24;
/// Children per inner node when the tree is built from a sorted list.
pub(super) const INNER_FILL: usize = 24;
/// Every leaf also caches the aggregate of its first `MID` keys, a third anchor besides its
/// two ends for measuring the part of the leaf below a bound: a bound then costs at most a
/// quarter of a full bulk-built leaf in key expansions instead of half.
pub(super) const MID: usize = LEAF_FILL / 2;

/// What every node caches about the keys below it: the oplog-v1 aggregate and, with the
/// `negentropy` feature, Negentropy's id sum (each carries the count).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(super) struct Summary {
    pub(super) agg: Aggregate,
    #[cfg(feature = "negentropy")]
    pub(super) neg: Accumulator,
}

impl Summary {
    pub(super) fn of_key(key: &EntryKey) -> Self {
        Summary {
            agg: Aggregate::of_key(key),
            #[cfg(feature = "negentropy")]
            neg: Accumulator::of_keys(std::slice::from_ref(key)),
        }
    }

    pub(super) fn add(&mut self, other: &Summary) {
        self.agg.add(&other.agg);
        #[cfg(feature = "negentropy")]
        self.neg.add_set(&other.neg);
    }

    pub(super) fn sub(&mut self, other: &Summary) {
        self.agg.sub(&other.agg);
        #[cfg(feature = "negentropy")]
        self.neg.sub_set(&other.neg);
    }

    pub(super) fn count(&self) -> u64 {
        self.agg.count()
    }
}

#[cfg(test)]
thread_local! {
    /// Keys this thread's index queries copied out or measured one by one (tests only).
    pub(super) static KEYS_READ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts keys read one by one, for the tests that show no query scans.
#[inline]
fn note_reads(n: usize) {
    #[cfg(test)]
    KEYS_READ.with(|c| c.set(c.get() + n as u64));
    let _ = n;
}

/// One of the two cached sums, so that a query computes only the one it is asked for.
pub(super) trait Measure: Clone {
    const EMPTY: Self;
    fn cached(summary: &Summary) -> &Self;
    fn of_keys(keys: &[EntryKey]) -> Self;
    /// `self += of_keys(keys)`.
    fn add_keys(&mut self, keys: &[EntryKey]) {
        self.add(&Self::of_keys(keys));
    }
    /// `self -= of_keys(keys)`.
    fn sub_keys(&mut self, keys: &[EntryKey]) {
        self.sub(&Self::of_keys(keys));
    }
    /// The leaf's cached measure of its first [`MID`] keys, if this measure has one.
    fn checkpoint(mid: &Aggregate) -> Option<&Self>;
    fn add(&mut self, other: &Self);
    fn sub(&mut self, other: &Self);
}

impl Measure for Aggregate {
    const EMPTY: Self = Aggregate::EMPTY;
    fn cached(summary: &Summary) -> &Self {
        &summary.agg
    }
    fn of_keys(keys: &[EntryKey]) -> Self {
        Aggregate::of_keys(keys)
    }
    fn add_keys(&mut self, keys: &[EntryKey]) {
        for k in keys {
            self.add_key(k);
        }
    }
    fn sub_keys(&mut self, keys: &[EntryKey]) {
        for k in keys {
            self.sub_key(k);
        }
    }
    fn checkpoint(mid: &Aggregate) -> Option<&Self> {
        Some(mid)
    }
    fn add(&mut self, other: &Self) {
        Aggregate::add(self, other);
    }
    fn sub(&mut self, other: &Self) {
        Aggregate::sub(self, other);
    }
}

#[cfg(feature = "negentropy")]
impl Measure for Accumulator {
    const EMPTY: Self = Accumulator::EMPTY;
    fn cached(summary: &Summary) -> &Self {
        &summary.neg
    }
    fn of_keys(keys: &[EntryKey]) -> Self {
        Accumulator::of_keys(keys)
    }
    fn checkpoint(_: &Aggregate) -> Option<&Self> {
        None
    }
    fn add(&mut self, other: &Self) {
        self.add_set(other);
    }
    fn sub(&mut self, other: &Self) {
        self.sub_set(other);
    }
}

/// Items a node keeps in itself: `LEAF_MAX + 1` (the most a leaf holds before it splits),
/// which is also `INNER_MAX + 1`.
pub(super) const CAP: usize = LEAF_MAX + 1;
const _: () = assert!(LEAF_MAX == INNER_MAX);

/// What fills the unused slots of an [`Inline`] array.
pub(super) trait Filler: Clone {
    fn filler() -> Self;
}

impl Filler for EntryKey {
    fn filler() -> Self {
        EntryKey::MIN
    }
}

impl Filler for u64 {
    fn filler() -> Self {
        0
    }
}

/// One empty leaf that every unused child slot of every inner node points to.
static NO_CHILD: std::sync::LazyLock<Arc<Node>> =
    std::sync::LazyLock::new(|| Arc::new(Node::EMPTY_LEAF));

impl Filler for Arc<Node> {
    fn filler() -> Self {
        NO_CHILD.clone()
    }
}

/// Up to [`CAP`] items stored in the node itself rather than in a buffer of their own: a
/// descent that reaches a node not in cache then waits for one memory read per level (the
/// node) instead of two or three (the node, then its separators' and children's buffers).
/// Unused slots hold [`Filler::filler`].
#[derive(Clone)]
pub(super) struct Inline<T> {
    len: usize,
    items: [T; CAP],
}

/// A leaf's keys (strictly ascending), or an inner node's separators.
pub(super) type LeafKeys = Inline<EntryKey>;

impl Inline<EntryKey> {
    /// No keys.
    pub(super) const EMPTY: LeafKeys = Inline {
        len: 0,
        items: [EntryKey::MIN; CAP],
    };
}

impl<T: Filler> Inline<T> {
    /// No items.
    pub(super) fn new() -> Self {
        Inline {
            len: 0,
            items: std::array::from_fn(|_| T::filler()),
        }
    }

    /// The first [`CAP`] of `items` (callers pass at most that many).
    pub(super) fn from_slice(items: &[T]) -> Self {
        let mut out = Inline::new();
        let n = items.len().min(CAP);
        out.items[..n].clone_from_slice(&items[..n]);
        out.len = n;
        out
    }

    /// Inserts `item` at `pos` (at most the length); returns `false`, changing nothing, if
    /// the array is full (callers split nodes before that).
    pub(super) fn insert(&mut self, pos: usize, item: T) -> bool {
        if self.len >= CAP || pos > self.len {
            return false;
        }
        self.items[pos..=self.len].rotate_right(1);
        self.items[pos] = item;
        self.len += 1;
        true
    }

    /// Removes the item at `pos`, if there is one.
    pub(super) fn remove(&mut self, pos: usize) {
        if pos < self.len {
            self.items[pos..self.len].rotate_left(1);
            self.len -= 1;
            self.items[self.len] = T::filler();
        }
    }

    /// Keeps the first `n` items.
    pub(super) fn truncate(&mut self, n: usize) {
        while self.len > n {
            self.len -= 1;
            self.items[self.len] = T::filler();
        }
    }

    /// Moves the items from `at` on out into a `Vec`.
    pub(super) fn split_off(&mut self, at: usize) -> Vec<T> {
        let out = self.get(at..).map(<[T]>::to_vec).unwrap_or_default();
        self.truncate(at);
        out
    }
}

impl<T> std::ops::Deref for Inline<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items[..self.len]
    }
}

impl<T> std::ops::DerefMut for Inline<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
}

impl<'a, T> IntoIterator for &'a Inline<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Inline<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

// Both variants keep their arrays inline and are about the same size (a leaf's keys and
// checkpoint weigh about what an inner node's separators, counts and children do).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(super) enum Node {
    Leaf {
        /// Strictly ascending; empty only in the root of an empty index.
        keys: LeafKeys,
        sum: Summary,
        /// The aggregate of `keys[..min(MID, keys.len())]`.
        mid: Aggregate,
    },
    Inner {
        /// Never empty.
        children: Inline<Arc<Node>>,
        /// `firsts[i]` is at most the smallest key below `children[i]` and greater than every
        /// key below `children[i - 1]`: the separators a descent routes by.
        firsts: Inline<EntryKey>,
        /// `counts[i]` is the number of keys below `children[i]`, kept here so that rank and
        /// select read one array instead of a cache line of every child.
        counts: Inline<u64>,
        sum: Summary,
    },
}

/// The child slot of an inner node that `key` belongs to.
///
/// Counted over the whole (sorted) slice rather than found by bisection: the loads do not
/// depend on one another, so on a node not in cache they miss together instead of one after
/// another, which for at most 33 separators is the faster search.
fn slot_of(firsts: &[EntryKey], key: &EntryKey) -> usize {
    firsts
        .iter()
        .map(|f| usize::from(f <= key))
        .sum::<usize>()
        .saturating_sub(1)
}

/// The number of keys of a leaf below `key` (its position among them), counted like
/// [`slot_of`] for the same reason.
fn count_below(keys: &[EntryKey], key: &EntryKey) -> usize {
    keys.iter().map(|k| usize::from(k < key)).sum()
}

impl Node {
    pub(super) const EMPTY_LEAF: Node = Node::Leaf {
        keys: LeafKeys::EMPTY,
        sum: Summary {
            agg: Aggregate::EMPTY,
            #[cfg(feature = "negentropy")]
            neg: Accumulator::EMPTY,
        },
        mid: Aggregate::EMPTY,
    };

    /// A leaf over `keys` (strictly ascending) with its summary and checkpoint from
    /// [`leaf_sums`].
    pub(super) fn leaf(keys: LeafKeys, (sum, mid): (Summary, Aggregate)) -> Node {
        Node::Leaf { keys, sum, mid }
    }

    pub(super) fn sum(&self) -> &Summary {
        match self {
            Node::Leaf { sum, .. } | Node::Inner { sum, .. } => sum,
        }
    }

    pub(super) fn count(&self) -> u64 {
        self.sum().count()
    }

    /// The smallest key below the node, or its lowest separator.
    pub(super) fn first(&self) -> EntryKey {
        match self {
            Node::Leaf { keys, .. } => keys.first().copied().unwrap_or(EntryKey::MIN),
            Node::Inner { firsts, .. } => firsts.first().copied().unwrap_or(EntryKey::MIN),
        }
    }

    /// A new inner node over `children` (non-empty, at most [`CAP`]: the rest are dropped),
    /// computing its cached sum.
    pub(super) fn inner(children: &[Arc<Node>]) -> Node {
        let children = Inline::from_slice(children);
        let mut sum = Summary::default();
        let mut firsts = Inline::new();
        let mut counts = Inline::new();
        for (i, c) in children.iter().enumerate() {
            sum.add(c.sum());
            firsts.insert(i, c.first());
            counts.insert(i, c.count());
        }
        Node::Inner {
            children,
            firsts,
            counts,
            sum,
        }
    }

    pub(super) fn contains(&self, key: &EntryKey) -> bool {
        let mut node = self;
        loop {
            match node {
                Node::Leaf { keys, .. } => return keys.binary_search(key).is_ok(),
                Node::Inner {
                    children, firsts, ..
                } => node = &children[slot_of(firsts, key)],
            }
        }
    }

    /// Number of keys strictly below `key`.
    pub(super) fn rank(&self, key: &EntryKey) -> u64 {
        let mut node = self;
        let mut below = 0u64;
        loop {
            match node {
                Node::Leaf { keys, .. } => {
                    return below + count_below(keys, key) as u64;
                }
                Node::Inner {
                    children,
                    firsts,
                    counts,
                    ..
                } => {
                    let slot = slot_of(firsts, key);
                    below += counts[..slot].iter().sum::<u64>();
                    node = &children[slot];
                }
            }
        }
    }

    /// The measure of the keys in `[start, end)` (`end == None`: no upper bound).
    ///
    /// One descent while both bounds route to the same child; where they part, the children
    /// strictly between them (or the node's total less the children outside, whichever is
    /// fewer additions), then one descent per bound for the part of its child inside the range.
    /// Each descent takes at every node the cheaper side of its cut ([`add_side`]), and asks
    /// `edge` for the keys of a leaf below a position, so that the caller can remember those
    /// (a split measures `[b0, b1)`, `[b1, b2)`, ...: every inner bound twice).
    pub(super) fn range<M: Measure>(
        &self,
        start: &EntryKey,
        end: Option<&EntryKey>,
        edge: &mut dyn FnMut(&LeafRef<'_, M>, usize) -> M,
    ) -> M {
        if end.is_some_and(|e| e <= start) {
            return M::EMPTY;
        }
        let mut node = self;
        loop {
            match node {
                Node::Leaf { keys, sum, mid } => {
                    let len = keys.len();
                    let lo = count_below(keys, start);
                    let hi = end.map_or(len, |e| count_below(keys, e)).max(lo);
                    if hi - lo <= edge_cost(len, lo) + edge_cost(len, hi) {
                        note_reads(hi - lo);
                        return M::of_keys(&keys[lo..hi]);
                    }
                    let leaf = LeafRef {
                        keys,
                        sum: M::cached(sum),
                        mid: M::checkpoint(mid),
                    };
                    let mut m = edge(&leaf, hi);
                    m.sub(&edge(&leaf, lo));
                    return m;
                }
                Node::Inner {
                    children,
                    firsts,
                    sum,
                    ..
                } => {
                    let len = children.len();
                    let s = slot_of(firsts, start);
                    // End slot, or `len` when the range runs past the last child.
                    let stop = end.map_or(len, |e| slot_of(firsts, e));
                    if stop == s || (stop == len && s == len - 1) {
                        node = &children[s];
                        continue;
                    }
                    let mut acc = M::EMPTY;
                    let between = stop - s - 1;
                    let outside = 1 + s + len.saturating_sub(stop + 1);
                    if between <= outside {
                        for c in &children[s + 1..stop] {
                            acc.add(M::cached(c.sum()));
                        }
                        add_side(&children[s], start, false, false, &mut acc, edge);
                        if let (Some(e), Some(child)) = (end, children.get(stop)) {
                            add_side(child, e, true, false, &mut acc, edge);
                        }
                    } else {
                        acc.add(M::cached(sum));
                        for c in &children[..s] {
                            acc.sub(M::cached(c.sum()));
                        }
                        for c in children.iter().skip(stop + 1) {
                            acc.sub(M::cached(c.sum()));
                        }
                        add_side(&children[s], start, true, true, &mut acc, edge);
                        if let (Some(e), Some(child)) = (end, children.get(stop)) {
                            add_side(child, e, false, true, &mut acc, edge);
                        }
                    }
                    return acc;
                }
            }
        }
    }

    /// Appends keys from position `skip` on until `out` holds `limit` keys.
    pub(super) fn collect(&self, mut skip: u64, limit: usize, out: &mut Vec<EntryKey>) {
        match self {
            Node::Leaf { keys, .. } => {
                let start = usize::try_from(skip).unwrap_or(usize::MAX).min(keys.len());
                let take = limit.saturating_sub(out.len()).min(keys.len() - start);
                note_reads(take);
                out.extend_from_slice(&keys[start..start + take]);
            }
            Node::Inner {
                children, counts, ..
            } => {
                for (c, &n) in children.iter().zip(counts) {
                    if out.len() >= limit {
                        return;
                    }
                    if skip >= n {
                        skip -= n;
                        continue;
                    }
                    c.collect(skip, limit, out);
                    skip = 0;
                }
            }
        }
    }

    /// Approximate heap bytes below and including this node, counting shared nodes once per
    /// path (an upper bound when snapshots share nodes).
    pub(super) fn heap_bytes(&self) -> usize {
        let own = std::mem::size_of::<Node>() + 2 * std::mem::size_of::<usize>();
        match self {
            Node::Leaf { .. } => own,
            Node::Inner { children, .. } => {
                own + children.iter().map(|c| c.heap_bytes()).sum::<usize>()
            }
        }
    }

    /// Depth of the tree below this node (a leaf has depth 0).
    pub(super) fn depth(&self) -> usize {
        match self {
            Node::Leaf { .. } => 0,
            Node::Inner { children, .. } => 1 + children.first().map_or(0, |c| c.depth()),
        }
    }
}

/// The leaf holding position `pos` below `root`, and the position of its first key.
pub(super) fn leaf_at(root: &Arc<Node>, mut pos: u64) -> Option<(&Arc<Node>, u64)> {
    let mut node = root;
    let mut base = 0u64;
    loop {
        match &**node {
            Node::Leaf { keys, .. } => return (pos < keys.len() as u64).then_some((node, base)),
            Node::Inner {
                children, counts, ..
            } => {
                let mut next = None;
                for (c, &n) in children.iter().zip(counts) {
                    if pos < n {
                        next = Some(c);
                        break;
                    }
                    pos -= n;
                    base += n;
                }
                node = next?;
            }
        }
    }
}

/// `acc += x`, or `acc -= x` if `negative`.
#[inline]
fn apply<M: Measure>(acc: &mut M, x: &M, negative: bool) {
    if negative {
        acc.sub(x);
    } else {
        acc.add(x);
    }
}

/// What a leaf-edge measurement reads of a leaf.
pub(super) struct LeafRef<'a, M> {
    /// The leaf's keys.
    pub(super) keys: &'a [EntryKey],
    /// The measure of all of them.
    pub(super) sum: &'a M,
    /// The measure of the first [`MID`] of them, if the measure has that checkpoint.
    pub(super) mid: Option<&'a M>,
}

/// Keys expanded to measure the part below `pos` of a leaf of `len` keys with a checkpoint:
/// the distance from `pos` to the nearest of 0, [`MID`] (if the leaf has that many) and `len`.
fn edge_cost(len: usize, pos: usize) -> usize {
    let ends = pos.min(len - pos);
    if len >= MID {
        ends.min(pos.abs_diff(MID))
    } else {
        ends
    }
}

/// The measure of the keys of a leaf below position `pos`, from whichever anchor is nearest:
/// `keys[..pos]` directly, the leaf's sum less `keys[pos..]`, or its checkpoint of the first
/// [`MID`] keys plus or minus the keys between `MID` and `pos`.
pub(super) fn leaf_below<M: Measure>(leaf: &LeafRef<'_, M>, pos: usize) -> M {
    let keys = leaf.keys;
    let len = keys.len();
    let ends = pos.min(len - pos);
    if let Some(mid) = leaf.mid.filter(|_| len >= MID && pos.abs_diff(MID) < ends) {
        note_reads(pos.abs_diff(MID));
        let mut m = mid.clone();
        if pos >= MID {
            m.add_keys(&keys[MID..pos]);
        } else {
            m.sub_keys(&keys[pos..MID]);
        }
        return m;
    }
    note_reads(ends);
    if pos <= len / 2 {
        M::of_keys(&keys[..pos])
    } else {
        let mut m = leaf.sum.clone();
        m.sub_keys(&keys[pos..]);
        m
    }
}

/// The summary of a leaf's keys and its checkpoint (the aggregate of its first [`MID`] keys),
/// expanding each key once.
pub(super) fn leaf_sums(keys: &[EntryKey]) -> (Summary, Aggregate) {
    let m = keys.len().min(MID);
    let mid = Aggregate::of_keys(&keys[..m]);
    let mut agg = mid.clone();
    agg.add_keys(&keys[m..]);
    let sum = Summary {
        agg,
        #[cfg(feature = "negentropy")]
        neg: Accumulator::of_keys(keys),
    };
    (sum, mid)
}

/// Adds to `acc` (subtracts, if `negative`) the measure of the keys below `node` that are
/// below `key` (`below`) or at or above it (`!below`).
///
/// At each inner node the wanted side's siblings are added directly, or, when the other side
/// has fewer, the node's total less the other side's siblings less the child's other part:
/// the descent then continues with the side and the sign flipped. So a level costs at most
/// about half its children, and a leaf at most half its keys (through `edge`).
fn add_side<M: Measure>(
    mut node: &Node,
    key: &EntryKey,
    mut below: bool,
    mut negative: bool,
    acc: &mut M,
    edge: &mut dyn FnMut(&LeafRef<'_, M>, usize) -> M,
) {
    loop {
        match node {
            Node::Leaf { keys, sum, mid } => {
                let pos = count_below(keys, key);
                let leaf = LeafRef {
                    keys,
                    sum: M::cached(sum),
                    mid: M::checkpoint(mid),
                };
                let part = edge(&leaf, pos);
                if !below {
                    apply(acc, M::cached(sum), negative);
                    negative = !negative;
                }
                apply(acc, &part, negative);
                return;
            }
            Node::Inner {
                children,
                firsts,
                sum,
                ..
            } => {
                let slot = slot_of(firsts, key);
                let (left, right) = (&children[..slot], &children[slot + 1..]);
                let (near, far) = if below { (left, right) } else { (right, left) };
                if near.len() <= far.len() + 1 {
                    for c in near {
                        apply(acc, M::cached(c.sum()), negative);
                    }
                } else {
                    apply(acc, M::cached(sum), negative);
                    for c in far {
                        apply(acc, M::cached(c.sum()), !negative);
                    }
                    below = !below;
                    negative = !negative;
                }
                node = &children[slot];
            }
        }
    }
}

/// Inserts `key`, known to be absent, whose summary is `term`; copies shared nodes on the path.
/// Returns the new right sibling if the node split.
pub(super) fn insert(node: &mut Arc<Node>, key: EntryKey, term: &Summary) -> Option<Arc<Node>> {
    match Arc::make_mut(node) {
        Node::Leaf { keys, sum, mid } => {
            let pos = keys.partition_point(|k| *k < key);
            // A leaf at rest holds at most LEAF_MAX keys (it splits as soon as it holds more),
            // so there is room for one more.
            let inserted = keys.insert(pos, key);
            debug_assert!(inserted, "a leaf at rest holds at most LEAF_MAX keys");
            sum.add(term);
            if pos < MID {
                // The new key joins the first MID; the one pushed to position MID leaves them.
                mid.add(&term.agg);
                if let Some(out) = keys.get(MID) {
                    mid.sub_key(out);
                }
            }
            if keys.len() <= LEAF_MAX {
                return None;
            }
            // Keys arrive mostly in ascending order (an oplog's keys start with a clock): a leaf
            // that overflowed at its end keeps LEAF_FILL keys, as a bulk build would, instead
            // of half, so that appending leaves leaves as full as a build from sorted keys.
            let cut = if pos + 1 == keys.len() {
                LEAF_FILL
            } else {
                keys.len() / 2
            };
            let right = LeafKeys::from_slice(keys.get(cut..).unwrap_or_default());
            keys.truncate(cut);
            if cut < MID {
                *mid = Aggregate::of_keys(keys.iter());
            }
            let right_sums = leaf_sums(&right);
            sum.sub(&right_sums.0);
            Some(Arc::new(Node::leaf(right, right_sums)))
        }
        Node::Inner {
            children,
            firsts,
            counts,
            sum,
        } => {
            let slot = slot_of(firsts, &key);
            let split = insert(&mut children[slot], key, term);
            sum.add(term);
            if key < firsts[slot] {
                firsts[slot] = key;
            }
            let Some(right) = split else {
                counts[slot] += 1;
                return None;
            };
            counts[slot] = children[slot].count();
            // An inner node at rest has at most INNER_MAX children: room for one more.
            counts.insert(slot + 1, right.count());
            firsts.insert(slot + 1, right.first());
            children.insert(slot + 1, right);
            if children.len() <= INNER_MAX {
                return None;
            }
            // As for leaves: a node that overflowed at its last child keeps INNER_FILL.
            let mid = if slot + 2 == children.len() {
                INNER_FILL
            } else {
                children.len() / 2
            };
            let right_children = children.split_off(mid);
            firsts.truncate(mid);
            counts.truncate(mid);
            let right = Node::inner(&right_children);
            sum.sub(right.sum());
            Some(Arc::new(right))
        }
    }
}

/// Removes `key`, known to be present, whose summary is `term`; copies shared nodes on the
/// path. Returns whether the node is now empty (its parent then drops it). Nodes are not
/// merged when they become small.
pub(super) fn remove(node: &mut Arc<Node>, key: &EntryKey, term: &Summary) -> bool {
    match Arc::make_mut(node) {
        Node::Leaf { keys, sum, mid } => {
            if let Ok(pos) = keys.binary_search(key) {
                keys.remove(pos);
                sum.sub(term);
                if pos < MID {
                    // The key leaves the first MID; the one moved down to position MID - 1
                    // joins them.
                    mid.sub(&term.agg);
                    if let Some(joined) = keys.get(MID - 1) {
                        mid.add_key(joined);
                    }
                }
            }
            keys.is_empty()
        }
        Node::Inner {
            children,
            firsts,
            counts,
            sum,
        } => {
            let slot = slot_of(firsts, key);
            let before = children[slot].count();
            let empty = remove(&mut children[slot], key, term);
            if children[slot].count() != before {
                sum.sub(term);
            }
            counts[slot] = children[slot].count();
            if empty {
                children.remove(slot);
                firsts.remove(slot);
                counts.remove(slot);
            }
            children.is_empty()
        }
    }
}
