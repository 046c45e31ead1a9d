//! Helpers shared by the node tests: stores in a tempdir, signed histories, convergence checks.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use oplog_store::protocol::{EntryKey, Hash, Hlc, LogEntry, ObjectId, Op, SigningKey};
use oplog_store::Store;

/// A store in a fresh redb file under `dir`.
pub fn store(dir: &Path, name: &str) -> Arc<Store> {
    Arc::new(Store::open(dir.join(format!("{name}.redb"))).expect("open store"))
}

/// `n` Puts by `author` (seed), a chain on top of `parent`, HLCs from `hlc0` on; the keys
/// are spread over 50 registers so later writes overwrite earlier ones.
pub fn chain(seed: u8, n: usize, hlc0: u64, parent: Option<&LogEntry<Op>>) -> Vec<LogEntry<Op>> {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let mut out: Vec<LogEntry<Op>> = Vec::with_capacity(n);
    let mut prev: Option<Hash> = parent.map(|p| p.hash);
    for i in 0..n {
        let op = Op::Put {
            bucket: "b".into(),
            key: format!("k{}", i % 50),
            object_id: ObjectId([seed ^ i.to_le_bytes()[0]; 32]),
        };
        let parents = prev.into_iter().collect();
        let e = LogEntry::sign(&key, Hlc(hlc0 + i as u64), op, parents).expect("sign");
        prev = Some(e.hash);
        out.push(e);
    }
    out
}

/// Inserts `entries` and checks every one was applied.
pub fn insert(store: &Store, entries: &[LogEntry<Op>]) {
    for batch in entries.chunks(1000) {
        let report = store.insert(batch.iter().cloned()).expect("insert");
        assert_eq!(report.applied.len(), batch.len(), "every entry applies");
    }
}

/// Every applied key, in order.
pub fn keys(store: &Store) -> Vec<EntryKey> {
    store
        .log(EntryKey::MIN, usize::MAX)
        .expect("log")
        .iter()
        .map(LogEntry::key)
        .collect()
}

/// Both stores hold the same entries, heads and view, and verify clean.
pub fn assert_converged(a: &Store, b: &Store) {
    assert_eq!(keys(a), keys(b), "same applied entries");
    assert_eq!(a.heads().unwrap(), b.heads().unwrap(), "same heads");
    assert_eq!(a.view().unwrap(), b.view().unwrap(), "same view");
    assert!(a.missing().unwrap().is_empty() && b.missing().unwrap().is_empty());
    let (va, vb) = (a.verify().unwrap(), b.verify().unwrap());
    assert!(va.is_ok(), "a verifies: {:?}", va.problems);
    assert!(vb.is_ok(), "b verifies: {:?}", vb.problems);
}

/// Two stores that share `shared` entries, then diverge: `only_a` entries on a, `only_b` on b.
pub fn diverged(
    dir: &Path,
    shared: usize,
    only_a: usize,
    only_b: usize,
) -> (Arc<Store>, Arc<Store>) {
    let base = chain(1, shared, 1_000, None);
    let a_side = chain(2, only_a, 1_000_000, base.last());
    let b_side = chain(3, only_b, 1_000_000, base.last());
    let (a, b) = (store(dir, "a"), store(dir, "b"));
    insert(&a, &base);
    insert(&b, &base);
    insert(&a, &a_side);
    insert(&b, &b_side);
    (a, b)
}

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=oplog_node=info`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
