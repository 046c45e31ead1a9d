use super::*;
use crate::fingerprint::Salt;
use proptest::prelude::*;

/// Keys with few distinct HLCs and hashes, so ranges often cut between equal HLCs.
fn mk(h: u64, x: u8) -> EntryKey {
    let mut hash = [0u8; 32];
    hash[0] = x;
    hash[1] = (h % 251) as u8;
    hash[31] = x.wrapping_mul(37);
    EntryKey::new(h, hash)
}

/// The model: a sorted, deduplicated vector, every query a scan.
fn check(index: &RangeIndex, model: &[EntryKey], range: &Range) -> Result<(), TestCaseError> {
    let inside: Vec<EntryKey> = model
        .iter()
        .copied()
        .filter(|k| range.contains(k))
        .collect();
    prop_assert_eq!(index.count(range).unwrap(), inside.len() as u64);
    prop_assert_eq!(index.aggregate(range).unwrap(), Aggregate::of_keys(&inside));
    prop_assert_eq!(
        index.fingerprint(range, &Salt([3; 16])).unwrap(),
        Aggregate::of_keys(&inside).fingerprint(&Salt([3; 16]))
    );
    prop_assert_eq!(
        index.negentropy_fingerprint(range).unwrap(),
        Accumulator::of_keys(&inside).fingerprint()
    );
    prop_assert_eq!(
        index.range_accumulator(range),
        Accumulator::of_keys(&inside)
    );
    prop_assert_eq!(index.keys(range, usize::MAX).unwrap(), inside.clone());
    for limit in [0usize, 1, 5, 33] {
        prop_assert_eq!(
            index.keys(range, limit).unwrap(),
            inside.iter().copied().take(limit).collect::<Vec<_>>()
        );
    }
    let n = inside.len() as u64;
    for rank in [0, 1, 16, 17, n / 2, n.saturating_sub(1), n, u64::MAX] {
        prop_assert_eq!(
            index.key_at(range, rank).unwrap(),
            usize::try_from(rank)
                .ok()
                .and_then(|r| inside.get(r).copied())
        );
    }
    Ok(())
}

/// Every cached value in the tree equals what it caches: each node's summary, each inner
/// node's child counts and each leaf's checkpoint of its first `MID` keys.
fn check_caches(node: &Node) -> Result<(), TestCaseError> {
    match node {
        Node::Leaf { keys, sum, mid } => {
            prop_assert_eq!(&sum.agg, &Aggregate::of_keys(keys.iter()));
            prop_assert_eq!(&sum.neg, &Accumulator::of_keys(&keys[..]));
            prop_assert_eq!(mid, &Aggregate::of_keys(&keys[..keys.len().min(node::MID)]));
        }
        Node::Inner {
            children,
            firsts,
            counts,
            sum,
        } => {
            prop_assert_eq!(children.len(), firsts.len());
            prop_assert_eq!(
                counts.to_vec(),
                children.iter().map(|c| c.count()).collect::<Vec<_>>()
            );
            let mut total = Summary::default();
            for c in children {
                total.add(c.sum());
                check_caches(c)?;
            }
            prop_assert_eq!(sum, &total);
        }
    }
    Ok(())
}

fn check_whole(index: &RangeIndex, model: &[EntryKey]) -> Result<(), TestCaseError> {
    check_caches(&index.root)?;
    prop_assert_eq!(index.len(), model.len() as u64);
    prop_assert_eq!(index.all_keys(), model.to_vec());
    prop_assert_eq!(index.iter().copied().collect::<Vec<_>>(), model.to_vec());
    prop_assert_eq!(index.total(), &Aggregate::of_keys(model));
    for (i, k) in model.iter().enumerate().step_by(7) {
        prop_assert!(index.contains(k));
        prop_assert_eq!(index.rank(k), i as u64);
        prop_assert_eq!(index.select(i as u64), Some(*k));
    }
    prop_assert_eq!(index.select(model.len() as u64), None);
    Ok(())
}

type RangeSpec = ((u64, u8), (u64, u8), bool);

fn to_range(((a, x), (b, y), open): RangeSpec) -> Range {
    let (a, b) = (mk(a, x), mk(b, y));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    Range::new(lo, if open { None } else { Some(hi) })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Bulk build, then inserts (and some removals), against the model; then a snapshot taken
    /// midway still answers every query as the model did at that instant.
    #[test]
    fn matches_a_sorted_vec_and_snapshots_never_change(
        keys in proptest::collection::vec((0u64..2000, 0u8..8), 0..1800),
        bulk in 0usize..1800,
        removals in proptest::collection::vec((0u64..2000, 0u8..8), 0..60),
        ranges in proptest::collection::vec(((0u64..2100, 0u8..8), (0u64..2100, 0u8..8), any::<bool>()), 6),
    ) {
        let keys: Vec<EntryKey> = keys.into_iter().map(|(h, x)| mk(h, x)).collect();
        let split = bulk.min(keys.len());
        let mut model: Vec<EntryKey> = keys[..split].to_vec();
        model.sort();
        model.dedup();
        let mut index = RangeIndex::from_sorted(model.clone()).unwrap();
        check_whole(&index, &model)?;

        let half = split + (keys.len() - split) / 2;
        for k in &keys[split..half] {
            let new = model.binary_search(k).is_err();
            prop_assert_eq!(index.insert(*k), new);
            if let Err(p) = model.binary_search(k) { model.insert(p, *k); }
        }
        let snapshot = index.snapshot();
        let snapshot_model = model.clone();

        for k in &keys[half..] {
            let new = model.binary_search(k).is_err();
            prop_assert_eq!(index.insert(*k), new);
            if let Err(p) = model.binary_search(k) { model.insert(p, *k); }
        }
        for (h, x) in removals {
            let k = mk(h, x);
            let present = model.binary_search(&k);
            prop_assert_eq!(index.remove(&k), present.is_ok());
            if let Ok(p) = present { model.remove(p); }
        }
        check_whole(&index, &model)?;
        check_whole(&snapshot, &snapshot_model)?;
        for spec in ranges {
            let range = to_range(spec);
            check(&index, &model, &range)?;
            check(&snapshot, &snapshot_model, &range)?;
            // the reversed range is empty
            if let Some(end) = range.end {
                if end != range.start {
                    let rev = Range::new(end, Some(range.start));
                    prop_assert_eq!(index.count(&rev).unwrap(), 0);
                    prop_assert_eq!(index.aggregate(&rev).unwrap(), Aggregate::EMPTY);
                    prop_assert_eq!(index.range_accumulator(&rev), Accumulator::EMPTY);
                }
            }
        }
    }

    /// Adjacent ranges `[b0, b1)`, `[b1, b2)`, ... (what a split measures, and what the query
    /// memo serves twice per bound) and ranks inside them match the model, also when keys are
    /// inserted and removed between queries: a change must empty the memo, even one that
    /// leaves a leaf with as many keys as before at the same address.
    #[test]
    fn adjacent_ranges_match_the_model_across_changes(
        keys in proptest::collection::vec((0u64..3000, 0u8..4), 0..1500),
        bounds in proptest::collection::vec((0u64..3100, 0u8..4), 1..40),
        changes in proptest::collection::vec(((0u64..3000, 0u8..4), any::<bool>()), 0..12),
        bulk in any::<bool>(),
    ) {
        let mut model: Vec<EntryKey> = keys.iter().map(|&(h, x)| mk(h, x)).collect();
        model.sort();
        model.dedup();
        let mut index = if bulk {
            RangeIndex::from_sorted(model.clone()).unwrap()
        } else {
            let mut index = RangeIndex::new();
            for k in keys.iter().map(|&(h, x)| mk(h, x)) {
                index.insert(k);
            }
            index
        };
        let mut bounds: Vec<EntryKey> = bounds.into_iter().map(|(h, x)| mk(h, x)).collect();
        bounds.sort();
        bounds.dedup();
        let mut changes = changes.into_iter();
        loop {
            let mut lower = EntryKey::MIN;
            for upper in bounds.iter().map(Some).chain([None]) {
                let range = Range::new(lower, upper.copied());
                let inside: Vec<EntryKey> =
                    model.iter().copied().filter(|k| range.contains(k)).collect();
                prop_assert_eq!(index.aggregate(&range).unwrap(), Aggregate::of_keys(&inside));
                prop_assert_eq!(index.count(&range).unwrap(), inside.len() as u64);
                let mid = inside.len() as u64 / 2;
                prop_assert_eq!(index.key_at(&range, mid).unwrap(), inside.get(mid as usize).copied());
                if let Some(u) = upper {
                    lower = *u;
                }
            }
            // One change between passes: an insert and a removal in the same leaf keep its
            // length, so a stale memo entry would still match by address and length.
            let Some(((h, x), remove)) = changes.next() else { break };
            let k = mk(h, x);
            if remove {
                let present = model.binary_search(&k);
                prop_assert_eq!(index.remove(&k), present.is_ok());
                if let Ok(p) = present { model.remove(p); }
            } else {
                let absent = model.binary_search(&k);
                prop_assert_eq!(index.insert(k), absent.is_err());
                if let Err(p) = absent { model.insert(p, k); }
                if let Some(&next) = model.iter().find(|n| **n > k) {
                    prop_assert!(index.remove(&next));
                    model.retain(|m| *m != next);
                }
            }
            check_caches(&index.root)?;
        }
    }

    /// The bulk builder refuses unsorted or repeated keys with a typed error, never a panic.
    #[test]
    fn bulk_builder_refuses_bad_input(keys in proptest::collection::vec((0u64..50, 0u8..3), 0..200)) {
        let keys: Vec<EntryKey> = keys.into_iter().map(|(h, x)| mk(h, x)).collect();
        let strictly_ascending = keys.windows(2).all(|w| w[0] < w[1]);
        for threads in [1, 3] {
            match RangeIndex::from_sorted_parallel(keys.clone(), threads) {
                Ok(index) => {
                    prop_assert!(strictly_ascending);
                    prop_assert_eq!(index.all_keys(), keys.clone());
                }
                Err(IndexBuildError::Duplicate { position, key }) => {
                    prop_assert!(!strictly_ascending);
                    let p = usize::try_from(position).unwrap();
                    prop_assert_eq!(keys[p], key);
                    prop_assert_eq!(keys[p - 1], key);
                }
                Err(IndexBuildError::Unsorted { position, key }) => {
                    prop_assert!(!strictly_ascending);
                    let p = usize::try_from(position).unwrap();
                    prop_assert_eq!(keys[p], key);
                    prop_assert!(keys[p - 1] > key);
                }
            }
        }
    }
}

#[test]
fn parallel_build_equals_serial_build() {
    let keys: Vec<EntryKey> = (0..5000u64).map(|i| mk(i, (i % 7) as u8)).collect();
    let serial = RangeIndex::from_sorted(keys.clone()).unwrap();
    let parallel = RangeIndex::from_sorted_parallel(keys.clone(), 4).unwrap();
    assert_eq!(serial.all_keys(), parallel.all_keys());
    assert_eq!(serial.total(), parallel.total());
    let r = Range::new(keys[100], Some(keys[4000]));
    assert_eq!(serial.range_aggregate(&r), parallel.range_aggregate(&r));
    assert_eq!(serial.range_accumulator(&r), parallel.range_accumulator(&r));
}

#[test]
fn sequential_inserts_stay_shallow_and_removals_empty_it() {
    for descending in [false, true] {
        let mut index = RangeIndex::new();
        let n = 20_000u64;
        for i in 0..n {
            let h = if descending { n - i } else { i + 1 };
            assert!(index.insert(EntryKey::new(h, [0; 32])));
        }
        assert_eq!(index.len(), n);
        // appended keys leave full leaves (24) behind, prepended ones half-full leaves (16):
        // 20 000 keys fit in 3 levels either way
        assert!(index.depth() <= 3, "depth {}", index.depth());
        assert_eq!(index.select(0), Some(EntryKey::new(1, [0; 32])));
        assert_eq!(index.select(n - 1), Some(EntryKey::new(n, [0; 32])));
        for i in 1..=n {
            assert!(index.remove(&EntryKey::new(i, [0; 32])));
        }
        assert!(index.is_empty());
        assert_eq!(index.total(), &Aggregate::EMPTY);
        assert_eq!(index.range_accumulator(&Range::FULL), Accumulator::EMPTY);
        assert!(index.insert(EntryKey::new(5, [0; 32])));
        assert_eq!(index.all_keys(), vec![EntryKey::new(5, [0; 32])]);
    }
}

/// An index grown by appending keys in order (an oplog's usual order) is as compact as one
/// built from the sorted keys, not half empty.
#[test]
fn appending_fills_leaves_like_a_bulk_build() {
    let keys: Vec<EntryKey> = (0..50_000u64).map(|i| mk(i, (i % 5) as u8)).collect();
    let bulk = RangeIndex::from_sorted(keys.clone()).unwrap();
    let mut appended = RangeIndex::new();
    for k in &keys {
        appended.insert(*k);
    }
    assert_eq!(appended.all_keys(), keys);
    let (a, b) = (appended.heap_bytes(), bulk.heap_bytes());
    assert!(a <= b + b / 10, "appended {a} bytes, bulk-built {b}");
    // and the checkpoints kept up with every append
    let mut model = Vec::new();
    for w in keys.chunks(997) {
        model.extend_from_slice(w);
        let r = Range::new(w[0], w.get(500).copied());
        let inside: Vec<EntryKey> = keys.iter().copied().filter(|k| r.contains(k)).collect();
        assert_eq!(appended.aggregate(&r).unwrap(), Aggregate::of_keys(&inside));
    }
}

/// The memo serves a repeated query without measuring again, and a snapshot starts with its
/// own empty memo.
#[test]
fn the_memo_serves_repeated_edges() {
    use node::KEYS_READ;
    let keys: Vec<EntryKey> = (0..10_000u64).map(|i| mk(i, 1)).collect();
    let index = RangeIndex::from_sorted(keys.clone()).unwrap();
    let reads = |f: &mut dyn FnMut()| {
        KEYS_READ.with(|c| c.set(0));
        f();
        KEYS_READ.with(std::cell::Cell::get)
    };
    // bounds 5 keys into their leaves (bulk leaves hold 24): 5 expansions per edge
    let r = Range::new(keys[24 * 10 + 5], Some(keys[24 * 50 + 5]));
    let first = reads(&mut || {
        let _ = index.aggregate(&r);
    });
    assert_eq!(first, 10, "two edges of 5 keys each");
    let again = reads(&mut || {
        let _ = index.aggregate(&r);
    });
    assert_eq!(again, 0, "both edges remembered");
    let next = Range::new(keys[24 * 50 + 5], Some(keys[24 * 90 + 5]));
    assert_eq!(
        reads(&mut || {
            let _ = index.aggregate(&next);
        }),
        5
    );
    let snapshot = index.snapshot();
    assert_eq!(
        reads(&mut || {
            let _ = snapshot.aggregate(&r);
        }),
        10
    );
    assert!(index.memo.lock().map_or(0, |m| m.len()) <= memo::SLOTS);
}

#[test]
fn snapshot_shares_nodes_until_a_write() {
    let keys: Vec<EntryKey> = (0..10_000u64).map(|i| mk(i, 1)).collect();
    let mut index = RangeIndex::from_sorted(keys).unwrap();
    let snapshot = index.snapshot();
    assert!(Arc::ptr_eq(&index.root, &snapshot.root));
    index.insert(mk(20_000, 1));
    // only the path to the new key was copied: the other children are still shared
    let (Node::Inner { children: a, .. }, Node::Inner { children: b, .. }) =
        (&*index.root, &*snapshot.root)
    else {
        panic!("10 000 keys need inner nodes");
    };
    assert!(!Arc::ptr_eq(&index.root, &snapshot.root));
    let shared = a
        .iter()
        .zip(b.iter())
        .filter(|(x, y)| Arc::ptr_eq(x, y))
        .count();
    assert_eq!(shared, b.len() - 1);
    assert_eq!(snapshot.len(), 10_000);
    assert_eq!(index.len(), 10_001);
}

/// In the Negentropy dialect at 10^5 keys, every message is answered from cached sums: the keys
/// read one by one per message stay at a few thousand (ranges of at most 16 keys, half-leaf
/// edges and id lists of ranges under 32 keys), where a scanning fingerprint reads the whole
/// set for the first message alone.
#[test]
fn negentropy_messages_do_not_scan_at_100k_keys() {
    use crate::reconcile::{Config, Reconciler};
    use node::KEYS_READ;

    let n = 100_000u64;
    let key = |i: u64| EntryKey::new(i * 10, *blake3::hash(&i.to_le_bytes()).as_bytes());
    let all: Vec<EntryKey> = (0..n).map(key).collect();
    let (only_a, only_b) = ([7u64, 40_000, 77_777], [123u64, 99_998]);
    let a: RangeIndex = all
        .iter()
        .copied()
        .filter(|k| !only_b.iter().any(|&i| key(i) == *k))
        .collect();
    let b: RangeIndex = all
        .iter()
        .copied()
        .filter(|k| !only_a.iter().any(|&i| key(i) == *k))
        .collect();

    let reads = |f: &mut dyn FnMut()| {
        KEYS_READ.with(|c| c.set(0));
        f();
        KEYS_READ.with(std::cell::Cell::get)
    };
    let mut ra = Reconciler::new(Config::negentropy(None)).unwrap();
    let mut rb = Reconciler::new(Config::negentropy(None)).unwrap();
    let mut msg = None;
    let first = reads(&mut || msg = Some(ra.initiate(&a).unwrap()));
    let mut per_message = vec![first];
    // in this dialect only the initiator learns the difference (what it lacks, as ids)
    let (mut a_has, mut a_needs) = (Vec::new(), Vec::new());
    let mut to_b = true;
    while let Some(m) = msg.take() {
        let r = reads(&mut || {
            let step = if to_b {
                rb.handle(&b, &m)
            } else {
                ra.handle(&a, &m)
            }
            .unwrap();
            if !to_b {
                a_has.extend(step.have);
                a_needs.extend(step.need_hashes);
            }
            msg = step.reply;
        });
        per_message.push(r);
        to_b = !to_b;
        assert!(per_message.len() < 100, "session does not end");
    }
    assert!(ra.is_done() && rb.is_done());
    a_has.sort();
    a_needs.sort();
    assert_eq!(a_has, only_a.map(key).to_vec());
    let mut expect: Vec<_> = only_b.map(|i| key(i).hash).to_vec();
    expect.sort();
    assert_eq!(a_needs, expect);
    let max = per_message.iter().copied().max().unwrap_or(0);
    let total: u64 = per_message.iter().sum();
    assert!(
        max <= 5_000,
        "a message read {max} keys one by one: {per_message:?}"
    );
    assert!(
        total <= n / 10,
        "the session read {total} keys one by one: {per_message:?}"
    );
    // the counter does count: a full listing reads every key
    assert_eq!(
        reads(&mut || drop(a.keys(&Range::FULL, usize::MAX).unwrap())),
        a.len()
    );
}

#[test]
fn inline_arrays_keep_order_refuse_overflow_and_release_children() {
    use node::{Inline, CAP};
    let mut a: Inline<u64> = Inline::new();
    for i in 0..CAP as u64 {
        assert!(a.insert(a.len(), i * 2));
    }
    // full: a further insert changes nothing
    assert!(!a.insert(0, 99));
    assert_eq!(a.len(), CAP);
    a.remove(0);
    a.remove(CAP); // past the end: no-op
    assert!(a.insert(3, 5));
    let mut want: Vec<u64> = (1..CAP as u64).map(|i| i * 2).collect();
    want.insert(3, 5);
    assert_eq!(a.to_vec(), want);
    let tail = a.split_off(10);
    assert_eq!(tail, want[10..].to_vec());
    assert_eq!(a.to_vec(), want[..10].to_vec());
    // a child leaves an inline array and is dropped with it: no slot keeps it alive
    let child = Arc::new(Node::EMPTY_LEAF);
    let mut children: Inline<Arc<Node>> = Inline::new();
    assert!(children.insert(0, child.clone()));
    assert!(children.insert(1, child.clone()));
    assert_eq!(Arc::strong_count(&child), 3);
    children.remove(0);
    assert_eq!(Arc::strong_count(&child), 2);
    children.truncate(0);
    assert_eq!(Arc::strong_count(&child), 1);
    assert!(children.is_empty());
}
