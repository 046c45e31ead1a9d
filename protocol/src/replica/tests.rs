//! Tests of the DAG rules and the reference replica together.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use crate::dag::*;
use crate::entry::Action;
use crate::entry::{LogEntry, MAX_PARENTS};
use crate::hlc::Hlc;
use crate::key::{EntryKey, Hash, NodeId};

use super::*;

use crate::entry::{ObjectId, Op};
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
        ancestry_to_send(
            &view,
            &[c.hash],
            &have,
            limit,
            crate::dag::DEFAULT_MAX_VISITS,
        )
        .unwrap()
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
    let got = ancestry_to_send(
        &view,
        &[a2.hash, b1.hash],
        &[r.hash],
        10,
        crate::dag::DEFAULT_MAX_VISITS,
    )
    .unwrap();
    assert_eq!(got, full(by_key(vec![&a1, &b1, &a2])));
    // an unknown want is an error
    assert!(matches!(
        ancestry_to_send(&view, &[unknown.hash], &[], 10, crate::dag::DEFAULT_MAX_VISITS),
        Err(DagError::Missing(h)) if h == unknown.hash
    ));
    // a store with a hole is reported, not silently skipped
    let holey = map(&[&a2, &a1]);
    assert!(matches!(
        ancestry_to_send(&holey, &[a2.hash], &[], 10, crate::dag::DEFAULT_MAX_VISITS),
        Err(DagError::Missing(h)) if h == r.hash
    ));
}

#[test]
fn haves_are_exponentially_spaced() {
    let mut chain = vec![mk(1, 1, put("k", 0), &[])];
    for i in 1..100u64 {
        let e = mk(
            1,
            i + 1,
            put("k", i.to_le_bytes()[0]),
            &[chain.last().unwrap()],
        );
        chain.push(e);
    }
    let view: HashMap<Hash, LogEntry> = chain.iter().map(|e| (e.hash, e.clone())).collect();
    let h = |i: usize| chain[i].hash;
    let haves = haves_for_request(&view, &[h(99)], 5, crate::dag::DEFAULT_MAX_VISITS).unwrap();
    assert_eq!(haves, vec![h(99), h(98), h(97), h(95), h(91)]);
    // walks end at the root, which is sent too
    let haves = haves_for_request(&view, &[h(99)], 100, crate::dag::DEFAULT_MAX_VISITS).unwrap();
    assert_eq!(haves, [99, 98, 97, 95, 91, 83, 67, 35, 0].map(h).to_vec());
    // two heads share the budget round-robin; an unknown head is still sent
    let side = mk(2, 50, put("s", 1), &[&chain[40]]);
    let mut view = view;
    view.insert(side.hash, side.clone());
    let ghost = Hash([0xee; 32]);
    let haves = haves_for_request(
        &view,
        &[h(99), side.hash, ghost],
        7,
        crate::dag::DEFAULT_MAX_VISITS,
    )
    .unwrap();
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
// `x`, `y`, `a`, `b`: writes of two small worked examples, `v` the view they go into
#[allow(clippy::many_single_char_names)]
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
    let got = merge_conflicts(&view, &[a2.hash, b2.hash], crate::dag::DEFAULT_MAX_VISITS).unwrap();
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
        merge_conflicts(
            &view,
            &[b2.hash, a2.hash, b2.hash],
            crate::dag::DEFAULT_MAX_VISITS
        )
        .unwrap(),
        got
    );
    assert_eq!(
        merge_conflicts(&view, &[a2.hash], crate::dag::DEFAULT_MAX_VISITS).unwrap(),
        vec![]
    );
    assert_eq!(
        merge_conflicts(&view, &[m.hash, a1.hash], crate::dag::DEFAULT_MAX_VISITS).unwrap(),
        vec![]
    );
    assert!(matches!(
        merge_conflicts(
            &view,
            &[a2.hash, Hash([1; 32])],
            crate::dag::DEFAULT_MAX_VISITS
        ),
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
    assert_eq!(
        merge_conflicts(&view, &[p1.hash, p2.hash], crate::dag::DEFAULT_MAX_VISITS).unwrap(),
        vec![]
    );
    // ... but an older common write does not hide a real conflict
    let old = mk(3, 5, put("k", 4), &[&r]);
    let q1 = mk(1, 30, Op::Merge, &[&w1, &old]);
    let q2 = mk(2, 31, Op::Merge, &[&w2, &old]);
    let view = map(&[&r, &w1, &w2, &old, &q1, &q2]);
    let got = merge_conflicts(&view, &[q1.hash, q2.hash], crate::dag::DEFAULT_MAX_VISITS).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].branch_winners, vec![write(&w1), write(&w2)]);
    // three parents, two agreeing: still one conflict with two distinct winners
    let s1 = mk(1, 12, put("k", 5), &[&r]);
    let s2 = mk(2, 13, put("k", 6), &[&s1]);
    let s3 = mk(3, 14, put("k", 7), &[&s1]);
    let t = mk(4, 15, put("u", 0), &[&s2]);
    let view = map(&[&r, &s1, &s2, &s3, &t]);
    let got = merge_conflicts(
        &view,
        &[s2.hash, s3.hash, t.hash],
        crate::dag::DEFAULT_MAX_VISITS,
    )
    .unwrap();
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
            1 + u8::try_from(i % 3).unwrap(),
            i as u64 + 1,
            put("k", i.to_le_bytes()[0]),
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
    // under a wider drift bound the child is admissible before its parent comes due; it waits
    // for its deferred parent, which is here already and so is not on the fetch list
    let rpt = rep.insert([child.clone()], 999_899, Duration::from_nanos(200), None);
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
    assert!(rep.retry_deferred(999_899, None).outcomes.is_empty());
    let mut by_retry = rep.clone();
    let rpt = by_retry.retry_deferred(999_900, None);
    assert_eq!(rpt.outcomes, vec![(future.hash, InsertOutcome::Applied)]);
    assert_eq!(rpt.applied, vec![future.hash, child.hash]);
    assert_eq!(by_retry.deferred().count(), 0);
    assert_eq!(by_retry.heads().hashes(), vec![child.hash]);
    // any insert once the parent is due admits it first, even one of nothing new
    let rpt = rep.insert([r.clone()], 999_900, max, None);
    assert_eq!(rpt.outcomes, vec![(r.hash, InsertOutcome::Duplicate)]);
    assert_eq!(rpt.due, vec![future.hash]);
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
                    let conflicts = merge_conflicts(
                        &reps[i],
                        &merge_parents(&heads),
                        crate::dag::DEFAULT_MAX_VISITS,
                    )
                    .unwrap();
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
            put(&key, i.to_le_bytes()[0])
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
        let got = ancestry_to_send(&in_order, &heads, &have, usize::MAX, crate::dag::DEFAULT_MAX_VISITS).unwrap();
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
        let got = merge_conflicts(&in_order, &heads, crate::dag::DEFAULT_MAX_VISITS).unwrap();
        prop_assert_eq!(got, brute_conflicts(&in_order, &heads));
    }
}

/// The conflict definition computed from whole ancestor sets.
fn brute_conflicts(rep: &MemoryReplica<Op>, parents: &[Hash]) -> Vec<Conflict<(String, String)>> {
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

// ---------------------------------------------------------------------------------------------
// Hostile insert sequences: every cost a peer can cause is bounded.

/// A [`ReplicaState`] that counts the storage operations the rules perform.
struct Counting<S> {
    inner: S,
    calls: u64,
    /// Name eviction victims the state does not hold, as a damaged index would.
    lie: bool,
}

impl<A: Action, S: ReplicaState<A>> ReplicaState<A> for Counting<S> {
    type Error = S::Error;
    fn applied_hlc(&self, hash: &Hash) -> Result<Option<Hlc>, S::Error> {
        self.inner.applied_hlc(hash)
    }
    fn apply(&mut self, entry: crate::VerifiedEntry<A>) -> Result<(), S::Error> {
        self.calls += 1;
        self.inner.apply(entry)
    }
    fn held(&self, hash: &Hash) -> Result<Option<std::borrow::Cow<'_, LogEntry<A>>>, S::Error> {
        self.inner.held(hash)
    }
    fn hold(&mut self, entry: LogEntry<A>, missing: &[Hash]) -> Result<(), S::Error> {
        self.calls += 1;
        self.inner.hold(entry, missing)
    }
    fn parent_arrived(&mut self, child: &Hash) -> Result<Option<u32>, S::Error> {
        self.calls += 1;
        self.inner.parent_arrived(child)
    }
    fn take_held(&mut self, hash: &Hash) -> Result<Option<LogEntry<A>>, S::Error> {
        self.calls += 1;
        self.inner.take_held(hash)
    }
    fn take_waiters(&mut self, parent: &Hash) -> Result<Vec<Hash>, S::Error> {
        self.calls += 1;
        self.inner.take_waiters(parent)
    }
    fn unwait(&mut self, parent: &Hash, child: &Hash) -> Result<(), S::Error> {
        self.calls += 1;
        self.inner.unwait(parent, child)
    }
    fn held_usage(&self, author: &NodeId) -> Result<Usage, S::Error> {
        self.inner.held_usage(author)
    }
    fn oldest_held(&self, author: Option<&NodeId>) -> Result<Option<EntryKey>, S::Error> {
        if self.lie {
            return Ok(Some(EntryKey::new(1, [0; 32])));
        }
        self.inner.oldest_held(author)
    }
    fn defer(&mut self, entry: LogEntry<A>, not_before: u64) -> Result<(), S::Error> {
        self.calls += 1;
        self.inner.defer(entry, not_before)
    }
    fn deferred_until(&self, hash: &Hash) -> Result<Option<u64>, S::Error> {
        self.inner.deferred_until(hash)
    }
    fn undefer(&mut self, hash: &Hash) -> Result<(), S::Error> {
        self.calls += 1;
        self.inner.undefer(hash)
    }
    fn take_due(&mut self, now_nanos: u64) -> Result<Vec<LogEntry<A>>, S::Error> {
        self.calls += 1;
        self.inner.take_due(now_nanos)
    }
    fn deferred_usage(&self, author: &NodeId) -> Result<Usage, S::Error> {
        self.inner.deferred_usage(author)
    }
    fn latest_deferred(&self, author: Option<&NodeId>) -> Result<Option<(u64, Hash)>, S::Error> {
        if self.lie {
            return Ok(Some((u64::MAX, Hash([0xff; 32]))));
        }
        self.inner.latest_deferred(author)
    }
}

/// Reads count too: the rules' lookups are what made promotion quadratic.
struct CountingReads<S> {
    inner: Counting<S>,
    reads: std::cell::Cell<u64>,
}

impl<A: Action, S: ReplicaState<A>> ReplicaState<A> for CountingReads<S> {
    type Error = S::Error;
    fn applied_hlc(&self, hash: &Hash) -> Result<Option<Hlc>, S::Error> {
        self.reads.set(self.reads.get() + 1);
        self.inner.applied_hlc(hash)
    }
    fn is_applied(&self, hash: &Hash) -> Result<bool, S::Error> {
        self.reads.set(self.reads.get() + 1);
        self.inner.inner.is_applied(hash)
    }
    fn apply(&mut self, entry: crate::VerifiedEntry<A>) -> Result<(), S::Error> {
        self.inner.apply(entry)
    }
    fn held(&self, hash: &Hash) -> Result<Option<std::borrow::Cow<'_, LogEntry<A>>>, S::Error> {
        self.reads.set(self.reads.get() + 1);
        self.inner.held(hash)
    }
    fn is_held(&self, hash: &Hash) -> Result<bool, S::Error> {
        self.reads.set(self.reads.get() + 1);
        self.inner.inner.is_held(hash)
    }
    fn hold(&mut self, entry: LogEntry<A>, missing: &[Hash]) -> Result<(), S::Error> {
        self.inner.hold(entry, missing)
    }
    fn parent_arrived(&mut self, child: &Hash) -> Result<Option<u32>, S::Error> {
        self.inner.parent_arrived(child)
    }
    fn take_held(&mut self, hash: &Hash) -> Result<Option<LogEntry<A>>, S::Error> {
        self.inner.take_held(hash)
    }
    fn take_waiters(&mut self, parent: &Hash) -> Result<Vec<Hash>, S::Error> {
        self.inner.take_waiters(parent)
    }
    fn unwait(&mut self, parent: &Hash, child: &Hash) -> Result<(), S::Error> {
        self.inner.unwait(parent, child)
    }
    fn held_usage(&self, author: &NodeId) -> Result<Usage, S::Error> {
        self.inner.held_usage(author)
    }
    fn oldest_held(&self, author: Option<&NodeId>) -> Result<Option<EntryKey>, S::Error> {
        self.inner.oldest_held(author)
    }
    fn defer(&mut self, entry: LogEntry<A>, not_before: u64) -> Result<(), S::Error> {
        self.inner.defer(entry, not_before)
    }
    fn deferred_until(&self, hash: &Hash) -> Result<Option<u64>, S::Error> {
        self.inner.deferred_until(hash)
    }
    fn undefer(&mut self, hash: &Hash) -> Result<(), S::Error> {
        self.inner.undefer(hash)
    }
    fn take_due(&mut self, now_nanos: u64) -> Result<Vec<LogEntry<A>>, S::Error> {
        self.inner.take_due(now_nanos)
    }
    fn deferred_usage(&self, author: &NodeId) -> Result<Usage, S::Error> {
        self.inner.deferred_usage(author)
    }
    fn latest_deferred(&self, author: Option<&NodeId>) -> Result<Option<(u64, Hash)>, S::Error> {
        self.inner.latest_deferred(author)
    }
}

fn verified(entries: Vec<LogEntry>) -> Vec<Result<crate::VerifiedEntry, crate::Unverified>> {
    crate::verify_batch(entries)
}

/// Children that each name the same 1,024 missing parents, then the parents one at a time:
/// the rules' storage reads and writes grow with children × parents, not with parents².
#[test]
fn shared_missing_parents_promote_in_linear_work() {
    const PARENTS: u64 = MAX_PARENTS as u64;
    const CHILDREN: u64 = 16;
    let roots: Vec<LogEntry> = (1..=PARENTS).map(|i| mk(1, i, put("r", 0), &[])).collect();
    let refs: Vec<&LogEntry> = roots.iter().collect();
    let children: Vec<LogEntry> = (0..CHILDREN)
        .map(|i| mk(2, 10_000 + i, put("c", 1), &refs))
        .collect();
    let mut rep: MemoryReplica<Op> = MemoryReplica::new();
    let limits = Limits::default();
    let mut state = CountingReads {
        inner: Counting {
            inner: super::memory::Maps(&mut rep),
            calls: 0,
            lie: false,
        },
        reads: std::cell::Cell::new(0),
    };
    for c in &children {
        let r = insert(&mut state, verified(vec![c.clone()]), 0, &limits, None).unwrap();
        assert!(
            matches!(r.outcomes[0].1, InsertOutcome::HeldBack { ref missing } if missing.len() == MAX_PARENTS)
        );
    }
    for p in &roots {
        insert(&mut state, verified(vec![p.clone()]), 0, &limits, None).unwrap();
    }
    let work = state.inner.calls + state.reads.get();
    // Per child: its hold, its outcome's parent scan, 1,024 decrements and its promotion's
    // parent-order check; per parent: a handful of calls. Old promotion rescanned every
    // parent of every waiting child on each arrival: 16 x 1,024 x 1,024 = 16.8 million.
    let bound = 4 * CHILDREN * PARENTS + 16 * PARENTS;
    assert!(work <= bound, "{work} storage operations, bound {bound}");
    assert_eq!(rep.len() as u64, PARENTS + CHILDREN);
    assert_eq!(rep.held_back().count(), 0);
}

/// One author floods orphans with invented parents: it keeps at most its cap, the oldest go,
/// and another author's held-back entry is untouched.
#[test]
fn orphan_flood_is_capped_per_author() {
    let limits = Limits {
        max_held_per_author: 100,
        ..Limits::default()
    };
    let mut rep: MemoryReplica<Op> = MemoryReplica::with_limits(limits);
    let honest = LogEntry::sign(&sk(9), Hlc(5), put("h", 0), vec![Hash([7; 32])]).unwrap();
    rep.insert([honest.clone()], 0, DRIFT, None);
    let orphans: Vec<LogEntry> = (0..1_000u64)
        .map(|i| {
            LogEntry::sign(
                &sk(1),
                Hlc(100 + i),
                put("o", 0),
                vec![Hash([(i % 251) as u8; 32])],
            )
            .unwrap()
        })
        .collect();
    let mut evicted = 0;
    for chunk in orphans.chunks(97) {
        let r = rep.insert(chunk.to_vec(), 0, DRIFT, None);
        evicted += r
            .dropped
            .iter()
            .filter(|(_, e)| *e == InsertError::HeldBackFull)
            .count();
        evicted += r
            .outcomes
            .iter()
            .filter(|(_, o)| *o == InsertOutcome::Rejected(InsertError::HeldBackFull))
            .count();
    }
    let by_flooder: BTreeSet<EntryKey> = rep
        .held_back()
        .filter(|e| e.node_id == node(1))
        .map(LogEntry::key)
        .collect();
    assert_eq!(by_flooder.len(), 100);
    assert_eq!(evicted, 900);
    // the newest stayed: the oldest have waited longest for ancestry that never comes
    let newest: BTreeSet<EntryKey> = orphans[900..].iter().map(LogEntry::key).collect();
    assert_eq!(by_flooder, newest);
    assert!(rep.held_back().any(|e| e.hash == honest.hash));
}

/// Many authors flood orphans: the held-back set stays within its byte cap.
#[test]
fn orphan_flood_from_many_authors_is_capped_in_bytes() {
    let limits = Limits {
        max_held_bytes: 20_000,
        ..Limits::default()
    };
    let mut rep: MemoryReplica<Op> = MemoryReplica::with_limits(limits);
    let orphans: Vec<LogEntry> = (0..600u64)
        .map(|i| {
            LogEntry::sign(
                &sk((i % 60) as u8 + 1),
                Hlc(100 + i),
                put("o", 0),
                vec![Hash([3; 32])],
            )
            .unwrap()
        })
        .collect();
    for chunk in orphans.chunks(50) {
        rep.insert(chunk.to_vec(), 0, DRIFT, None);
        let bytes: usize = rep.held_back().map(|e| e.encode().len()).sum();
        assert!(bytes <= 20_000, "{bytes} bytes held back");
    }
    let size = orphans[0].encode().len();
    assert_eq!(rep.held_back().count(), 20_000 / size);
}

/// Entries stamped far in the future are kept aside only up to the caps; the ones due soonest
/// stay.
#[test]
fn far_future_flood_is_capped() {
    let limits = Limits {
        max_deferred_per_author: 50,
        max_deferred_bytes: 1 << 30,
        ..Limits::default()
    };
    let mut rep: MemoryReplica<Op> = MemoryReplica::with_limits(limits);
    let max = crate::hlc::MAX_HLC.0;
    let future: Vec<LogEntry> = (0..500u64)
        .map(|i| LogEntry::sign(&sk(1), Hlc(max - 1000 + i), put("f", 0), vec![]).unwrap())
        .collect();
    // newest first, so every one of them is at some point the one to go
    for chunk in future.rchunks(40) {
        let r = rep.insert(chunk.to_vec(), 1_000_000, DRIFT, None);
        assert!(r.outcomes.iter().all(|(_, o)| matches!(
            o,
            InsertOutcome::Deferred { .. } | InsertOutcome::Rejected(InsertError::DeferredFull)
        )));
    }
    let kept: BTreeSet<Hash> = rep.deferred().map(|(e, _)| e.hash).collect();
    let soonest: BTreeSet<Hash> = future[..50].iter().map(|e| e.hash).collect();
    assert_eq!(kept, soonest);
}

/// A parent refused in the same call takes its children with it: nothing stays held back
/// waiting for it, and it is not on the fetch list. Across calls a bad copy poisons nothing.
#[test]
fn children_of_a_parent_refused_in_the_same_call_are_refused() {
    let parent = mk(1, 10, put("p", 0), &[]);
    let child = mk(1, 11, put("c", 0), &[&parent]);
    let grandchild = mk(1, 12, put("g", 0), &[&child]);
    let mut forged = parent.clone();
    forged.signature.0[0] ^= 1;
    let mut rep: MemoryReplica<Op> = MemoryReplica::new();
    let r = rep.insert(
        [grandchild.clone(), forged.clone(), child.clone()],
        0,
        DRIFT,
        None,
    );
    assert!(matches!(
        r.outcomes[1].1,
        InsertOutcome::Rejected(InsertError::Invalid(_))
    ));
    assert_eq!(
        r.outcomes[2].1,
        InsertOutcome::Rejected(InsertError::AncestorRejected(parent.hash))
    );
    assert_eq!(
        r.outcomes[0].1,
        InsertOutcome::Rejected(InsertError::AncestorRejected(child.hash))
    );
    assert_eq!(rep.held_back().count(), 0);
    assert!(rep.missing().is_empty());
    // a forged copy in one call does not stop the real parent's children in another
    rep.insert([forged], 0, DRIFT, None);
    let r = rep.insert([child.clone()], 0, DRIFT, None);
    assert!(matches!(r.outcomes[0].1, InsertOutcome::HeldBack { .. }));
    rep.insert([parent], 0, DRIFT, None);
    assert!(rep.contains(&child.hash));
}

/// A merge of 100 branches (more than one machine word of colours) that each wrote one register:
/// one conflict, with every branch's write and the greatest as winner. A walk past its visit
/// budget fails with `VisitBudget` instead of running on.
#[test]
fn wide_merges_and_visit_budgets() {
    let root = mk(1, 1, put("r", 0), &[]);
    let branches: Vec<LogEntry> = (0..100u64)
        .map(|i| {
            mk(
                u8::try_from(i % 200).unwrap() + 2,
                10 + i,
                put("x", i.to_le_bytes()[0]),
                &[&root],
            )
        })
        .collect();
    let mut all: Vec<&LogEntry> = vec![&root];
    all.extend(branches.iter());
    let view = map(&all);
    let parents: Vec<Hash> = branches.iter().map(|e| e.hash).collect();
    let got = merge_conflicts(&view, &parents, DEFAULT_MAX_VISITS).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].branch_winners.len(), 100);
    assert_eq!(got[0].winner, write(&branches[99]));
    // 100 branch heads, their edges to the root and the root: about 201 visits
    assert!(matches!(
        merge_conflicts(&view, &parents, 150),
        Err(DagError::VisitBudget { max: 150 })
    ));
    assert!(merge_conflicts(&view, &parents, 250).is_ok());
    let too_many: Vec<Hash> = (0..1_025u32)
        .map(|i| {
            let mut h = [0; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            Hash(h)
        })
        .collect();
    assert!(matches!(
        merge_conflicts(&view, &too_many, DEFAULT_MAX_VISITS),
        Err(DagError::TooManyParents(1_025))
    ));

    // a chain of 1,000: an ancestry request for its tip with no haves needs every entry
    let mut chain = vec![mk(1, 1, put("c", 0), &[])];
    for i in 1..1_000u64 {
        let e = mk(
            1,
            1 + i,
            put("c", (i % 250) as u8),
            &[chain.last().unwrap()],
        );
        chain.push(e);
    }
    let view = map(&chain.iter().collect::<Vec<_>>());
    let tip = chain.last().unwrap().hash;
    let full = ancestry_to_send(&view, &[tip], &[], 10, DEFAULT_MAX_VISITS).unwrap();
    assert_eq!(full.hashes.len(), 10);
    assert!(full.truncated);
    assert!(matches!(
        ancestry_to_send(&view, &[tip], &[], 10, 500),
        Err(DagError::VisitBudget { max: 500 })
    ));
    // with a recent have the walk is short, whatever the budget left
    let have = chain[990].hash;
    let near = ancestry_to_send(&view, &[tip], &[have], 100, 100).unwrap();
    assert_eq!(near.hashes.len(), 9);
    // haves stop at the budget rather than fail
    let h = haves_for_request(&view, &[tip], 32, 40).unwrap();
    assert!(!h.is_empty() && h.len() < 32);
    assert_eq!(h[0], tip);
}

/// A state whose cap indexes name victims it does not hold (a damaged store) makes the caps
/// refuse the incoming entry; the call ends instead of evicting forever.
#[test]
fn eviction_ends_on_a_damaged_state() {
    let limits = Limits {
        max_held_per_author: 1,
        max_deferred_per_author: 1,
        ..Limits::default()
    };
    let mut rep: MemoryReplica<Op> = MemoryReplica::with_limits(limits.clone());
    let mut state = Counting {
        inner: super::memory::Maps(&mut rep),
        calls: 0,
        lie: true,
    };
    let first = LogEntry::sign(&sk(1), Hlc(10), put("o", 0), vec![Hash([7; 32])]).unwrap();
    let second = LogEntry::sign(&sk(1), Hlc(11), put("o", 1), vec![Hash([8; 32])]).unwrap();
    let r = insert(
        &mut state,
        verified(vec![first, second.clone()]),
        0,
        &limits,
        None,
    )
    .unwrap();
    assert!(matches!(r.outcomes[0].1, InsertOutcome::HeldBack { .. }));
    assert_eq!(
        r.outcomes[1],
        (
            second.hash,
            InsertOutcome::Rejected(InsertError::HeldBackFull)
        )
    );
    let top = crate::MAX_HLC.0;
    let far: Vec<LogEntry> = (0..2)
        .map(|i| LogEntry::sign(&sk(2), Hlc(top - 10 + i), put("f", 0), vec![]).unwrap())
        .collect();
    let r = insert(&mut state, verified(far), 0, &limits, None).unwrap();
    assert!(matches!(r.outcomes[0].1, InsertOutcome::Deferred { .. }));
    assert_eq!(
        r.outcomes[1].1,
        InsertOutcome::Rejected(InsertError::DeferredFull)
    );
}

/// An author removed from the allowed set gets nothing applied after the removal, even
/// entries it sent before: a held-back entry released by its parent and a deferred entry
/// coming due are refused (`NotAllowed`, in `dropped`), and so are their waiting children.
#[test]
fn kept_entries_of_an_author_removed_meanwhile_are_refused() {
    let max = Duration::from_nanos(100);
    let both: HashSet<NodeId> = [node(1), node(2)].into_iter().collect();
    let only_1: HashSet<NodeId> = [node(1)].into_iter().collect();
    let root = mk(1, 1_000, put("a", 0), &[]);
    let held = mk(2, 2_000, put("b", 0), &[&root]);
    let grandchild = mk(1, 3_000, put("c", 0), &[&held]);
    let future = mk(2, 1_000_000, put("d", 0), &[&root]);
    let mut rep = MemoryReplica::new();
    // while author 2 is a member: its child waits for the root, its far-future entry is
    // deferred, and author 1's grandchild waits for author 2's entry
    let rpt = rep.insert(
        [held.clone(), grandchild.clone(), future.clone()],
        2_000,
        max,
        Some(&both),
    );
    assert!(matches!(rpt.outcomes[0].1, InsertOutcome::HeldBack { .. }));
    assert!(matches!(rpt.outcomes[2].1, InsertOutcome::Deferred { .. }));
    // author 2 is removed; the root arrives
    let rpt = rep.insert([root.clone()], 3_000, max, Some(&only_1));
    assert_eq!(rpt.applied, vec![root.hash]);
    assert_eq!(
        rpt.dropped,
        vec![
            (held.hash, InsertError::NotAllowed(node(2))),
            (grandchild.hash, InsertError::AncestorRejected(held.hash)),
        ]
    );
    // the deferred entry comes due
    let rpt = rep.retry_deferred(999_900, Some(&only_1));
    assert_eq!(
        rpt.outcomes,
        vec![(
            future.hash,
            InsertOutcome::Rejected(InsertError::NotAllowed(node(2)))
        )]
    );
    assert!(rpt.applied.is_empty());
    assert_eq!(rep.len(), 1);
    assert_eq!(rep.held_back().count(), 0);
    assert_eq!(rep.deferred().count(), 0);
}
