//! Two replicas on real redb files drift apart and converge through the reconciler, exactly as
//! a node will drive it: reconcile over the stores, ship the missing entries as bytes, insert
//! them on the other side.

use std::collections::BTreeSet;

use oplog_protocol::dag::should_merge;
use oplog_protocol::testing::transcript::run;
use oplog_protocol::{Config, EntryKey, Hash, Hlc, LogEntry, ObjectId, Op, RangeStore, SigningKey};
use oplog_store::{Options, Store};

/// Local time of both replicas: a little after every stamp the test writes.
const NOW: u64 = 1_790_000_000_000_000_000;

fn open(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open_with(dir.path().join(name), Options::default().clock(|| NOW)).expect("open")
}

fn put(key: &str, i: u64) -> Op {
    Op::Put {
        bucket: "b".into(),
        key: key.into(),
        object_id: ObjectId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
    }
}

/// Signs a write on top of the store's current heads and inserts it.
fn write(store: &Store, key: &SigningKey, hlc: &mut u64, action: Op) -> LogEntry {
    *hlc += 1_000;
    let parents: Vec<Hash> = store.heads().unwrap().iter().map(|(k, _)| k.hash).collect();
    let e = LogEntry::sign(key, Hlc(*hlc), action, parents).unwrap();
    let report = store.insert([e.clone()]).unwrap();
    assert_eq!(report.applied, vec![e.hash]);
    e
}

/// What one reconciliation session moved, for assertions.
struct Session {
    messages: usize,
    a_to_b: Vec<EntryKey>,
    b_to_a: Vec<EntryKey>,
}

/// Runs a session between snapshots of the two stores, with `a` opening.
fn reconcile(a: &Store, b: &Store, config: &Config) -> Session {
    let t = run(&a.snapshot(), &b.snapshot(), config.clone(), config.clone()).unwrap();
    if let Some(limit) = config.max_message_bytes {
        assert!(t.messages.iter().all(|m| m.len() <= limit));
    }
    Session {
        messages: t.messages.len(),
        a_to_b: t.initiator.have,
        b_to_a: t.responder.have,
    }
}

/// Ships `keys` from one store to the other as encoded entries, newest first and one insert
/// per entry: the worst order, every entry arrives before its parent.
fn ship(from: &Store, to: &Store, keys: &[EntryKey]) {
    let mut keys = keys.to_vec();
    keys.sort_unstable_by(|x, y| y.cmp(x));
    for k in &keys {
        let bytes = from.entry(&k.hash).unwrap().expect("we have it").encode();
        let e = LogEntry::<Op>::decode(&bytes).unwrap();
        assert_eq!(e.key(), *k);
        to.insert([e]).unwrap();
    }
}

fn same_replica(a: &Store, b: &Store) {
    let keys = |s: &Store| -> BTreeSet<EntryKey> {
        s.log(EntryKey::MIN, usize::MAX)
            .unwrap()
            .iter()
            .map(LogEntry::key)
            .collect()
    };
    assert_eq!(keys(a), keys(b));
    assert_eq!(a.heads().unwrap(), b.heads().unwrap());
    assert_eq!(a.view().unwrap(), b.view().unwrap());
    assert!(a.missing().unwrap().is_empty() && b.missing().unwrap().is_empty());
    assert!(a.verify().unwrap().is_ok() && b.verify().unwrap().is_ok());
}

#[test]
// `a` and `b` are the two replicas, as the comments of the scenario name them
#[allow(clippy::many_single_char_names)]
fn partitioned_replicas_converge_over_redb() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(&dir, "a.redb"), open(&dir, "b.redb"));
    let alice = SigningKey::from_bytes(&[1; 32]);
    let bob = SigningKey::from_bytes(&[2; 32]);
    let mut hlc = NOW - 10_000_000_000;

    // 3,000 shared writes, written on A and copied to B in batches.
    let mut shared = Vec::new();
    for i in 0..3_000u64 {
        let who = if i % 3 == 0 { &bob } else { &alice };
        shared.push(write(&a, who, &mut hlc, put(&format!("k{}", i % 500), i)));
    }
    for chunk in shared.chunks(700) {
        b.insert(chunk.iter().cloned()).unwrap();
    }
    same_replica(&a, &b);

    // A partition: 120 writes on A, 80 on B, both sides touching k7.
    let fork = hlc;
    for i in 0..120u64 {
        write(&a, &alice, &mut hlc, put(&format!("a{i}"), i));
    }
    write(&a, &alice, &mut hlc, put("k7", 7_001));
    let mut hlc_b = fork + 500;
    for i in 0..80u64 {
        write(&b, &bob, &mut hlc_b, put(&format!("b{i}"), i));
    }
    hlc_b = hlc_b.max(hlc); // B's delete of k7 is stamped after A's put of it
    write(
        &b,
        &bob,
        &mut hlc_b,
        Op::Delete {
            bucket: "b".into(),
            key: "k7".into(),
        },
    );
    assert_eq!(a.len(), 3_121);
    assert_eq!(b.len(), 3_081);

    for config in [Config::default(), {
        let mut small = Config::default();
        small.max_message_bytes = Some(4096);
        small
    }] {
        // Reconcile copies of the partitioned files, so both configurations see the same state.
        let dir2 = tempfile::tempdir().unwrap();
        let (a2, b2) = (open(&dir2, "a.redb"), open(&dir2, "b.redb"));
        for (src, dst) in [(&a, &a2), (&b, &b2)] {
            dst.insert(src.log(EntryKey::MIN, usize::MAX).unwrap())
                .unwrap();
        }
        let s = reconcile(&a2, &b2, &config);
        assert_eq!(s.a_to_b.len(), 121);
        assert_eq!(s.b_to_a.len(), 81);
        ship(&a2, &b2, &s.a_to_b);
        ship(&b2, &a2, &s.b_to_a);
        same_replica(&a2, &b2);
        assert_eq!(
            a2.heads().unwrap().len(),
            2,
            "two branches until someone merges"
        );
        // Only the author of the greatest head merges.
        let heads = a2.heads().unwrap();
        let merger = [(&alice, &a2), (&bob, &b2)]
            .into_iter()
            .filter(|(k, _)| {
                should_merge(
                    &heads,
                    &oplog_protocol::NodeId(k.verifying_key().to_bytes()),
                )
            })
            .collect::<Vec<_>>();
        assert_eq!(merger.len(), 1);
        let (key, store) = merger[0];
        let mut h = hlc.max(hlc_b);
        let m = write(store, key, &mut h, Op::Merge);
        a2.insert([m.clone()]).unwrap();
        b2.insert([m]).unwrap();
        same_replica(&a2, &b2);
        assert_eq!(a2.heads().unwrap().len(), 1);
        assert_eq!(a2.get("b", "k7").unwrap(), None, "the later delete wins");

        // Nothing left to do: one round trip, the answer is one byte.
        let again = reconcile(&a2, &b2, &config);
        assert!(again.a_to_b.is_empty() && again.b_to_a.is_empty());
        assert_eq!(again.messages, 2);
        drop((a2, b2));
        // and it all survives a reopen
        let (a3, b3) = (open(&dir2, "a.redb"), open(&dir2, "b.redb"));
        same_replica(&a3, &b3);
        assert_eq!(
            a3.snapshot().count(&oplog_protocol::Range::FULL).unwrap(),
            3_203
        );
    }
}
