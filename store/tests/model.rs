//! Model-based tests: random insert sequences against `oplog_protocol::replica::MemoryReplica`.
//! Entries arrive shuffled, duplicated, child-first, on concurrent branches, some forged, some
//! by strangers, some stamped in the future or older than a parent; after every call the
//! store's report must equal the model's, and at the end the applied set, heads, view,
//! held-back, missing and deferred entries and the fingerprints of random ranges must agree,
//! before and after reopening the file.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use common::*;
use oplog_store::protocol::replica::MemoryReplica;
use oplog_store::protocol::{
    EntryKey, Hash, LogEntry, MemoryStore, NodeId, Op, Range, RangeStore, Salt,
};
use oplog_store::{InsertOutcome, InsertReport, Options, Store};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const DRIFT: Duration = Duration::from_micros(1);
const START: u64 = 1_000_000;

/// A random DAG of `n` entries over 3 allowed authors and 1 stranger.
fn random_entries(rng: &mut StdRng, n: usize) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    for _ in 0..n {
        let author = if rng.gen_bool(0.05) {
            9
        } else {
            rng.gen_range(1..=3)
        };
        let k = rng.gen_range(0..5);
        let mut parents: Vec<&LogEntry> = Vec::new();
        if !out.is_empty() {
            for _ in 0..rng.gen_range(0..=2) {
                // favour recent entries so branches grow long
                let lo = out.len().saturating_sub(6);
                parents.push(&out[rng.gen_range(lo..out.len())]);
            }
        }
        let max_parent = parents.iter().map(|p| p.hlc.0).max().unwrap_or(START - 500);
        let hlc = if rng.gen_bool(0.04) && max_parent > START - 500 {
            max_parent // breaks the parent order
        } else if rng.gen_bool(0.05) {
            max_parent + rng.gen_range(2_000..4_000) // beyond the drift at first
        } else {
            max_parent + rng.gen_range(1..50)
        };
        let mut hashes: Vec<Hash> = parents.iter().map(|p| p.hash).collect();
        hashes.sort();
        hashes.dedup();
        let action = if hashes.len() >= 2 && rng.gen_bool(0.2) {
            Op::Merge
        } else if rng.gen_bool(0.25) {
            del("b", &format!("k{k}"))
        } else {
            put("b", &format!("k{k}"), rng.gen())
        };
        let mut e = mk(author, hlc, action, &hashes);
        if rng.gen_bool(0.03) {
            e.signature.0[3] ^= 0x10; // forged
        }
        out.push(e);
    }
    out
}

fn allowed() -> HashSet<NodeId> {
    [node(1), node(2), node(3)].into_iter().collect()
}

fn assert_same(store: &Store, model: &MemoryReplica<Op>, rng: &mut StdRng) {
    let model_keys: Vec<EntryKey> = model.keys().copied().collect();
    assert_eq!(store.len(), model_keys.len() as u64);
    assert_eq!(
        store.snapshot().keys(&Range::FULL, usize::MAX).unwrap(),
        model_keys
    );
    let heads: Vec<Hash> = store.heads().unwrap().iter().map(|(k, _)| k.hash).collect();
    let mut heads_sorted = heads.clone();
    heads_sorted.sort();
    assert_eq!(heads_sorted, model.heads().hashes());
    assert_eq!(store.heads().unwrap(), model.heads().with_keys());
    let mut view = store.view().unwrap();
    view.sort_by(|a, b| a.0.cmp(&b.0));
    let model_view: Vec<_> = model.view().iter().map(|(k, w)| (k.clone(), *w)).collect();
    assert_eq!(view, model_view);
    let mut held: Vec<Hash> = store.held_back().unwrap().iter().map(|e| e.hash).collect();
    held.sort();
    let mut model_held: Vec<Hash> = model.held_back().map(|e| e.hash).collect();
    model_held.sort();
    assert_eq!(held, model_held);
    assert_eq!(store.missing().unwrap(), model.missing());
    let mut deferred: Vec<(Hash, u64)> = store
        .deferred()
        .unwrap()
        .iter()
        .map(|(e, t)| (e.hash, *t))
        .collect();
    deferred.sort();
    let mut model_deferred: Vec<(Hash, u64)> = model.deferred().map(|(e, t)| (e.hash, t)).collect();
    model_deferred.sort();
    assert_eq!(deferred, model_deferred);

    let reference: MemoryStore = model_keys.iter().copied().collect();
    let pick = |rng: &mut StdRng| -> EntryKey {
        if !model_keys.is_empty() && rng.gen_bool(0.7) {
            model_keys[rng.gen_range(0..model_keys.len())]
        } else {
            EntryKey::new(rng.gen_range(START - 600..START + 5_000), [rng.gen(); 32])
        }
    };
    for _ in 0..20 {
        let (a, b) = (pick(rng), pick(rng));
        let range = Range::new(
            a.min(b),
            if rng.gen_bool(0.2) {
                None
            } else {
                Some(a.max(b))
            },
        );
        assert_eq!(
            store.snapshot().count(&range).unwrap(),
            reference.count(&range).unwrap()
        );
        assert_eq!(
            store
                .snapshot()
                .fingerprint(&range, &Salt([9; 16]))
                .unwrap(),
            reference.fingerprint(&range, &Salt([9; 16])).unwrap()
        );
        let rank = rng.gen_range(0..8);
        assert_eq!(
            store.snapshot().key_at(&range, rank).unwrap(),
            reference.key_at(&range, rank).unwrap()
        );
        assert_eq!(
            store.snapshot().keys(&range, 5).unwrap(),
            reference.keys(&range, 5).unwrap()
        );
    }
}

/// Reports must agree exactly on every outcome. Applied and dropped entries must be the same
/// sets; their order is any order that puts parents first (the model follows its hash-map
/// waiting lists, the store its `waiting` table), which is checked on the store's order.
fn same_report(store: &Store, got: &InsertReport, want: &InsertReport, seed: u64) {
    assert_eq!(got.outcomes, want.outcomes, "outcomes differ (seed {seed})");
    let as_set = |v: &[Hash]| v.iter().copied().collect::<BTreeSet<Hash>>();
    assert_eq!(
        as_set(&got.applied),
        as_set(&want.applied),
        "applied differ (seed {seed})"
    );
    assert_eq!(got.applied.len(), want.applied.len());
    let mut placed = HashSet::new();
    for h in &got.applied {
        let e = store.entry(h).unwrap().expect("applied entries are stored");
        for p in &e.parents {
            assert!(
                placed.contains(p) || !got.applied.contains(p),
                "child {h} applied before its parent {p} (seed {seed})"
            );
        }
        placed.insert(*h);
    }
    let mut got_dropped = got.dropped.clone();
    let mut want_dropped = want.dropped.clone();
    got_dropped.sort_by_key(|(h, _)| *h);
    want_dropped.sort_by_key(|(h, _)| *h);
    assert_eq!(got_dropped, want_dropped, "dropped differ (seed {seed})");
}

/// How often each path was taken in one run (to show the generator reaches them).
#[derive(Default, Debug)]
struct Seen {
    held: usize,
    deferred: usize,
    rejected: usize,
    dropped: usize,
    duplicate: usize,
}

impl Seen {
    fn count(&mut self, r: &InsertReport) {
        for (_, o) in &r.outcomes {
            match o {
                InsertOutcome::HeldBack { .. } => self.held += 1,
                InsertOutcome::Deferred { .. } => self.deferred += 1,
                InsertOutcome::Rejected(_) => self.rejected += 1,
                InsertOutcome::Duplicate => self.duplicate += 1,
                _ => {}
            }
        }
        self.dropped += r.dropped.len();
    }
}

fn run(seed: u64, n: usize) -> Seen {
    let mut tally = Seen::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let entries = random_entries(&mut rng, n);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.redb");
    let clock = ManualClock::new(START);
    let options = Options::default()
        .max_drift(DRIFT)
        .allowed_authors(allowed())
        .clock(clock.clone());
    let mut store: Store = Store::open_with(&path, options.clone()).unwrap();
    let mut model: MemoryReplica<Op> = MemoryReplica::new();
    let allowed = allowed();

    // a shuffled stream with duplicates, cut into batches; child-first runs are common
    let mut stream: Vec<LogEntry> = entries.clone();
    for _ in 0..n / 4 {
        stream.push(entries[rng.gen_range(0..n)].clone());
    }
    match rng.gen_range(0..3) {
        0 => stream.shuffle(&mut rng),
        1 => stream.reverse(),
        _ => {
            stream.shuffle(&mut rng);
            stream.sort_by_key(|e| std::cmp::Reverse(e.hlc)); // strictly child-first
        }
    }
    let mut i = 0;
    while i < stream.len() {
        let len = rng.gen_range(1..=12).min(stream.len() - i);
        let batch = stream[i..i + len].to_vec();
        i += len;
        let got = store.insert(batch.clone()).unwrap();
        let want = model.insert(batch, clock.get(), DRIFT, Some(&allowed));
        tally.count(&want);
        same_report(&store, &got, &want, seed);
        if rng.gen_bool(0.2) {
            clock.set(clock.get() + rng.gen_range(0..2_000));
            let got = store.retry_deferred().unwrap();
            let want = model.retry_deferred(clock.get(), Some(&allowed));
            same_report(&store, &got, &want, seed);
        }
        if rng.gen_bool(0.05) {
            drop(store);
            store = Store::open_with(&path, options.clone()).unwrap();
        }
    }
    assert_same(&store, &model, &mut rng);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "seed {seed}: {:?}", report.problems);
    assert_eq!(report.entries, model.len() as u64);

    // time passes: everything deferred comes in
    clock.set(u64::MAX / 2);
    same_report(
        &store,
        &store.retry_deferred().unwrap(),
        &model.retry_deferred(clock.get(), Some(&allowed)),
        seed,
    );
    drop(store);
    let store: Store = Store::open_with(&path, options).unwrap();
    assert_same(&store, &model, &mut rng);
    assert!(store.verify().unwrap().is_ok());
    tally
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn store_matches_memory_replica(seed in any::<u64>(), n in 1usize..60) {
        run(seed, n);
    }
}

#[test]
fn store_matches_memory_replica_on_a_larger_dag() {
    let seen = run(0x5eed, 400);
    assert!(
        seen.held > 0
            && seen.deferred > 0
            && seen.rejected > 0
            && seen.dropped > 0
            && seen.duplicate > 0,
        "every path is exercised: {seen:?}"
    );
}
