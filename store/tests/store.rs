//! Behaviour of one store on real redb files: open and versions, insert rules, reads.

mod common;

use std::time::Duration;

use common::*;
use oplog_store::protocol::replica::MemoryReplica;
use oplog_store::protocol::{EntryKey, Hash, Hlc, ObjectId, Range, RangeStore, Salt};
use oplog_store::{Error, InsertError, InsertOutcome, Options, Store};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path().join("log.redb")).unwrap()
}

#[test]
fn long_chain_arriving_child_first_is_promoted_in_one_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let chain = chain(300, 1_000);
    let mut reversed = chain.clone();
    reversed.reverse();
    // everything but the root, newest first, over several calls
    for part in reversed[..299].chunks(50) {
        let report = store.insert(part.to_vec()).unwrap();
        assert!(report.applied.is_empty());
        assert!(report
            .outcomes
            .iter()
            .all(|(_, o)| matches!(o, InsertOutcome::HeldBack { .. })));
    }
    assert_eq!(store.len(), 0);
    assert_eq!(store.missing().unwrap(), vec![chain[0].hash]);
    assert_eq!(
        store.snapshot().count(&Range::FULL).unwrap(),
        0,
        "held entries are not reconciled"
    );
    let report = store.insert([chain[0].clone()]).unwrap();
    assert_eq!(
        report.applied,
        chain.iter().map(|e| e.hash).collect::<Vec<_>>(),
        "parents first"
    );
    assert_eq!(store.len(), 300);
    assert!(store.missing().unwrap().is_empty());
    assert!(store.held_back().unwrap().is_empty());
    assert_eq!(store.heads().unwrap(), vec![(chain[299].key(), node(1))]);
    let v = store.verify().unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);
    assert_eq!(v.entries, 300);
}

#[test]
fn duplicates_change_nothing_and_bad_entries_are_refused_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store: Store = Store::open_with(
        dir.path().join("log.redb"),
        Options::default().allowed_authors([node(1), node(2)]),
    )
    .unwrap();
    let a = mk(1, 10, put("b", "x", 1), &[]);
    let mut forged = mk(2, 11, put("b", "y", 1), &[a.hash]);
    forged.signature.0[0] ^= 1;
    let stranger = mk(9, 12, put("b", "z", 1), &[a.hash]);
    let too_old = mk(2, 10, put("b", "w", 1), &[a.hash]);
    let report = store
        .insert([
            a.clone(),
            forged.clone(),
            stranger.clone(),
            too_old.clone(),
            a.clone(),
        ])
        .unwrap();
    assert_eq!(report.outcomes[0], (a.hash, InsertOutcome::Applied));
    assert!(matches!(
        &report.outcomes[1].1,
        InsertOutcome::Rejected(InsertError::Invalid(_))
    ));
    assert_eq!(
        report.outcomes[2].1,
        InsertOutcome::Rejected(InsertError::NotAllowed(node(9)))
    );
    assert!(matches!(
        &report.outcomes[3].1,
        InsertOutcome::Rejected(InsertError::ParentOrder(_))
    ));
    assert_eq!(report.outcomes[4].1, InsertOutcome::Duplicate);
    let again = store.insert([a.clone()]).unwrap();
    assert_eq!(again.outcomes, vec![(a.hash, InsertOutcome::Duplicate)]);
    assert!(again.applied.is_empty());
    assert_eq!(store.len(), 1);
    assert!(store.verify().unwrap().is_ok());
}

/// The duplicate check answers from the in-memory key index: it must know every applied
/// entry, whether applied by a buffered commit, by a durable one, or read back at open, and
/// entries applied earlier in the same call.
#[test]
fn duplicates_are_found_after_buffered_commits_and_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(120, 1_000);
    let verified = |es: &[oplog_store::protocol::LogEntry]| {
        oplog_store::protocol::verify_batch(es.to_vec())
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    };
    {
        let store = open(&dir);
        store
            .insert_verified_buffered(verified(&chain[..60]))
            .unwrap();
        let again = store
            .insert_verified_buffered(verified(&chain[..80]))
            .unwrap();
        assert!(again.outcomes[..60]
            .iter()
            .all(|(_, o)| *o == InsertOutcome::Duplicate));
        assert_eq!(again.applied.len(), 20);
        // the same entry twice in one call: applied once, then a duplicate
        let twice = store
            .insert([chain[80].clone(), chain[80].clone()])
            .unwrap();
        assert_eq!(twice.outcomes[0].1, InsertOutcome::Applied);
        assert_eq!(twice.outcomes[1].1, InsertOutcome::Duplicate);
        store.persist().unwrap();
    }
    let store = open(&dir);
    let heads = store.heads().unwrap();
    let report = store.insert(chain.clone()).unwrap();
    assert!(report.outcomes[..81]
        .iter()
        .all(|(_, o)| *o == InsertOutcome::Duplicate));
    assert_eq!(report.applied.len(), 39);
    assert_ne!(store.heads().unwrap(), heads);
    assert_eq!(store.heads().unwrap(), vec![(chain[119].key(), node(1))]);
    assert_eq!(store.len(), 120);
    let v = store.verify().unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);
}

#[test]
fn held_child_of_a_parent_that_breaks_hlc_order_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let root = mk(1, 10, put("b", "x", 1), &[]);
    let late_parent = mk(1, 50, put("b", "x", 2), &[root.hash]);
    let child = mk(1, 40, put("b", "x", 3), &[late_parent.hash]); // older than its parent
    let grandchild = mk(1, 60, put("b", "x", 4), &[child.hash]);
    store.insert([grandchild.clone(), child.clone()]).unwrap();
    assert_eq!(store.held_back().unwrap().len(), 2);
    let report = store.insert([root.clone(), late_parent.clone()]).unwrap();
    assert_eq!(report.applied, vec![root.hash, late_parent.hash]);
    let dropped: Vec<Hash> = report.dropped.iter().map(|(h, _)| *h).collect();
    assert_eq!(dropped, vec![child.hash, grandchild.hash]);
    assert!(store.held_back().unwrap().is_empty());
    assert!(store.missing().unwrap().is_empty());
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn entries_too_far_ahead_are_deferred_then_admitted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let open = || -> Store {
        Store::open_with(
            dir.path().join("log.redb"),
            Options::default()
                .clock(clock.clone())
                .max_drift(Duration::from_micros(1)),
        )
        .unwrap()
    };
    let store = open();
    let early = mk(1, 1_000_500, put("b", "x", 1), &[]);
    let future = mk(1, 1_005_000, put("b", "x", 2), &[early.hash]);
    let report = store.insert([future.clone(), early.clone()]).unwrap();
    assert_eq!(report.applied, vec![early.hash]);
    assert_eq!(
        report.outcomes[0].1,
        InsertOutcome::Deferred {
            not_before: 1_004_000
        }
    );
    assert_eq!(store.deferred().unwrap().len(), 1);
    assert!(store.retry_deferred().unwrap().applied.is_empty());
    // the view does not see the deferred write yet
    assert_eq!(store.get("b", "x").unwrap(), Some(ObjectId([1; 32])));
    drop(store);
    // deferred entries survive a restart
    let store = open();
    clock.set(1_004_000);
    let report = store.retry_deferred().unwrap();
    assert_eq!(report.applied, vec![future.hash]);
    assert!(store.deferred().unwrap().is_empty());
    assert_eq!(store.get("b", "x").unwrap(), Some(ObjectId([2; 32])));
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn reopening_keeps_everything_and_rebuilds_the_range_index() {
    let dir = tempfile::tempdir().unwrap();
    let entries = chain(500, 7);
    let held = mk(2, 10_000, put("c", "q", 1), &[Hash([9; 32])]);
    let before = {
        let store = open(&dir);
        store.insert(entries.clone()).unwrap();
        store.insert([held.clone()]).unwrap();
        let r = Range::new(entries[100].key(), Some(entries[400].key()));
        (
            store
                .snapshot()
                .fingerprint(&Range::FULL, &Salt::default())
                .unwrap(),
            store.snapshot().fingerprint(&r, &Salt::default()).unwrap(),
            store.heads().unwrap(),
            store.view().unwrap(),
        )
    };
    let store = open(&dir);
    let r = Range::new(entries[100].key(), Some(entries[400].key()));
    assert_eq!(store.len(), 500);
    assert_eq!(
        store
            .snapshot()
            .fingerprint(&Range::FULL, &Salt::default())
            .unwrap(),
        before.0
    );
    assert_eq!(
        store.snapshot().fingerprint(&r, &Salt::default()).unwrap(),
        before.1
    );
    assert_eq!(store.snapshot().count(&r).unwrap(), 300);
    assert_eq!(
        store.snapshot().key_at(&r, 5).unwrap(),
        Some(entries[105].key())
    );
    assert_eq!(store.heads().unwrap(), before.2);
    assert_eq!(store.view().unwrap(), before.3);
    assert_eq!(store.missing().unwrap(), vec![Hash([9; 32])]);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn unknown_schema_version_is_refused_without_rewriting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    drop(open(&dir));
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap()
            .insert("schema_version", 99u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    for _ in 0..2 {
        match Store::<oplog_store::protocol::Op>::open(&path) {
            Err(Error::UnknownSchemaVersion {
                found: 99,
                supported,
            }) => {
                assert_eq!(supported, oplog_store::schema::SCHEMA_VERSION);
            }
            other => panic!("expected a version error, got {other:?}"),
        }
    }
}

#[test]
fn a_foreign_redb_file_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<u64, u64>::new("theirs"))
            .unwrap()
            .insert(1, 2)
            .unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(
        Store::<oplog_store::protocol::Op>::open(&path),
        Err(Error::NotAStore { .. })
    ));
    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![7u8; 10_000]).unwrap();
    assert!(matches!(
        Store::<oplog_store::protocol::Op>::open(&garbage),
        Err(Error::NotAStore { .. })
    ));
}

#[test]
fn reads_get_list_history_log_replay_and_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let rx = store.subscribe();
    let a = mk(1, 100, put("photos", "2024/a.jpg", 1), &[]);
    let b = mk(2, 101, put("photos", "2024/b.jpg", 2), &[]);
    let c = mk(1, 102, put("photos", "2025/c.jpg", 3), &[a.hash, b.hash]);
    let a2 = mk(2, 103, put("photos", "2024/a.jpg", 4), &[c.hash]);
    let a3_concurrent = mk(1, 103, del("photos", "2024/a.jpg"), &[c.hash]);
    let other = mk(
        1,
        104,
        put("photosx", "2024/z.jpg", 5),
        &[a2.hash, a3_concurrent.hash],
    );
    let all = vec![
        a.clone(),
        b.clone(),
        c.clone(),
        a2.clone(),
        a3_concurrent.clone(),
        other.clone(),
    ];
    store.insert(all.clone()).unwrap();

    // (103, node 1) vs (103, node 2): the greater author wins, whatever it wrote
    let winner_is_delete = node(1) > node(2);
    assert_eq!(
        store.get("photos", "2024/a.jpg").unwrap(),
        if winner_is_delete {
            None
        } else {
            Some(ObjectId([4; 32]))
        }
    );
    assert_eq!(store.get("photos", "nope").unwrap(), None);
    let listed = store.list("photos", "2024/").unwrap();
    let mut expect = vec![("2024/b.jpg".to_string(), ObjectId([2; 32]))];
    if !winner_is_delete {
        expect.insert(0, ("2024/a.jpg".to_string(), ObjectId([4; 32])));
    }
    assert_eq!(listed, expect, "other buckets sharing a prefix stay out");
    assert_eq!(store.list("photos", "").unwrap().len(), expect.len() + 1);

    let history = store
        .history(&("photos".to_string(), "2024/a.jpg".to_string()))
        .unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].write.key, a.key());
    assert_eq!(history.iter().filter(|h| h.won).count(), 1);
    assert!(history[1..].iter().any(|h| h.won));

    let log = store.log(EntryKey::MIN, 100).unwrap();
    let mut sorted = all.clone();
    sorted.sort_by_key(oplog_store::protocol::LogEntry::key);
    assert_eq!(log, sorted);
    assert_eq!(store.log(c.key(), 2).unwrap(), sorted[2..4].to_vec());

    let then = store.replay_until(Hlc(101)).unwrap();
    assert_eq!(
        then.get(&("photos".to_string(), "2024/a.jpg".to_string()))
            .map(|w| w.key),
        Some(a.key())
    );
    assert!(then
        .get(&("photos".to_string(), "2025/c.jpg".to_string()))
        .is_none());

    let seen: Vec<_> = rx.try_iter().collect();
    assert_eq!(seen.len(), 6);
    assert_eq!(
        seen.iter()
            .map(oplog_store::protocol::LogEntry::key)
            .collect::<Vec<_>>(),
        sorted
            .iter()
            .map(oplog_store::protocol::LogEntry::key)
            .collect::<Vec<_>>()
    );
    assert!(store.insert(all).unwrap().applied.is_empty());
    assert_eq!(rx.try_iter().count(), 0, "duplicates are not re-announced");
}

#[test]
fn matches_the_reference_on_a_hand_written_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut model: MemoryReplica<oplog_store::protocol::Op> = MemoryReplica::new();
    let entries = chain(40, 5);
    let now = u64::MAX / 2;
    for part in entries.chunks(7).rev() {
        let got = store.insert(part.to_vec()).unwrap();
        let want = model.insert(part.to_vec(), now, Duration::from_secs(60), None);
        assert_eq!(got, want);
    }
    assert_eq!(store.len(), model.len() as u64);
}

#[test]
fn verify_finds_tampering_in_every_kind_of_table() {
    type Tamper = fn(&redb::WriteTransaction, &[oplog_store::protocol::LogEntry]);
    let tampers: Vec<(&str, Tamper)> = vec![
        ("flipped entry byte", |txn, es| {
            let mut t = txn
                .open_table(redb::TableDefinition::<(u64, [u8; 32]), &[u8]>::new(
                    "entries",
                ))
                .unwrap();
            let mut bytes = es[3].encode();
            let last = bytes.len() - 1;
            bytes[last] ^= 1; // the signature
            t.insert((es[3].hlc.0, es[3].hash.0), bytes.as_slice())
                .unwrap();
        }),
        ("lost by_hash row", |txn, es| {
            txn.open_table(redb::TableDefinition::<[u8; 32], u64>::new("by_hash"))
                .unwrap()
                .remove(es[5].hash.0)
                .unwrap();
        }),
        ("entry without its parent", |txn, es| {
            txn.open_table(redb::TableDefinition::<(u64, [u8; 32]), &[u8]>::new(
                "entries",
            ))
            .unwrap()
            .remove((es[0].hlc.0, es[0].hash.0))
            .unwrap();
            txn.open_table(redb::TableDefinition::<[u8; 32], u64>::new("by_hash"))
                .unwrap()
                .remove(es[0].hash.0)
                .unwrap();
        }),
        ("wrong head", |txn, es| {
            txn.open_table(redb::TableDefinition::<[u8; 32], (u64, [u8; 32])>::new(
                "heads",
            ))
            .unwrap()
            .insert(es[2].hash.0, (es[2].hlc.0, es[2].node_id.0))
            .unwrap();
        }),
        ("wrong view winner", |txn, es| {
            let mut t = txn
                .open_table(redb::TableDefinition::<
                    &[u8],
                    (u64, [u8; 32], [u8; 32], bool),
                >::new("view"))
                .unwrap();
            let reg = postcard::to_allocvec(&("b".to_string(), "k1".to_string())).unwrap();
            t.insert(
                reg.as_slice(),
                (es[1].hlc.0, es[1].hash.0, es[1].node_id.0, true),
            )
            .unwrap();
        }),
    ];
    let entries = chain(20, 100);
    for (what, tamper) in tampers {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        {
            let store = open(&dir);
            store.insert(entries.clone()).unwrap();
            assert!(store.verify().unwrap().is_ok());
        }
        {
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            tamper(&txn, &entries);
            txn.commit().unwrap();
        }
        // keys that disagree with by_hash are refused at open, before the range index is
        // built; everything else opens and verify() lists it
        match Store::<oplog_store::protocol::Op>::open(&path) {
            Ok(store) => {
                let report = store.verify().unwrap();
                assert!(!report.is_ok(), "{what} went unnoticed");
            }
            Err(Error::Corrupt { table, .. }) => {
                assert_eq!((what, table), ("lost by_hash row", "by_hash"));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// A node's own writes, signed as verified entries, are stored by the same rules without a
/// second signature check; what reaches the tables is the same as through `insert`.
#[test]
fn own_writes_insert_verified() {
    use oplog_store::protocol::VerifiedEntry;
    let dir = tempfile::tempdir().unwrap();
    let a: Store = Store::open(dir.path().join("a.redb")).unwrap();
    let b: Store = Store::open(dir.path().join("b.redb")).unwrap();
    let first = VerifiedEntry::sign(&sk(1), Hlc(10), put("b", "k", 1), vec![]).unwrap();
    let second = VerifiedEntry::sign(&sk(1), Hlc(11), put("b", "k", 2), vec![first.hash]).unwrap();
    // child first: held back, then applied with its parent, as through `insert`
    let r = a.insert_verified([second.clone()]).unwrap();
    assert!(matches!(r.outcomes[0].1, InsertOutcome::HeldBack { .. }));
    let r = a.insert_verified([first.clone()]).unwrap();
    assert_eq!(r.applied, vec![first.hash, second.hash]);
    b.insert([first.into_inner(), second.into_inner()]).unwrap();
    assert_eq!(a.heads().unwrap(), b.heads().unwrap());
    assert_eq!(a.view().unwrap(), b.view().unwrap());
    assert!(a.verify().unwrap().is_ok());
}

/// The rows an insert gathers and writes at the end of its transaction (index, heads, view,
/// history) must come out as if written entry by entry: several writes to one register in a
/// batch, a stored winner that beats some of them, chain children of stored heads and of
/// entries earlier in the same batch, and two authors' branches, checked against the
/// reference replica and `verify()`.
#[test]
fn gathered_rows_equal_entry_by_entry_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut model: MemoryReplica<oplog_store::protocol::Op> = MemoryReplica::new();
    let now = u64::MAX / 2;
    let drift = Duration::from_secs(60);
    // author 2 first: writes to k0..k3 at HLC 50, 51, 52 and 150, a chain (its k3 beats
    // every write author 1 makes to k3 later)
    let mut two: Vec<oplog_store::protocol::LogEntry> = Vec::new();
    for i in 0..4u64 {
        let parents: Vec<Hash> = two.last().map(|e| vec![e.hash]).unwrap_or_default();
        let hlc = if i == 3 { 150 } else { 50 + i };
        two.push(mk(2, hlc, put("b", &format!("k{i}"), 2), &parents));
    }
    // author 1: a chain at HLC 10, 20, .., 100 writing k0..k3 in turn, so some of its writes
    // lose to author 2's stored ones and later ones win, several per register in one batch;
    // the last one deletes k1
    let mut one: Vec<oplog_store::protocol::LogEntry> = Vec::new();
    for i in 0..10u64 {
        let parents: Vec<Hash> = one.last().map(|e| vec![e.hash]).unwrap_or_default();
        let key = format!("k{}", i % 4);
        let action = if i == 9 {
            del("b", "k1")
        } else {
            put("b", &key, u8::try_from(i).unwrap())
        };
        one.push(mk(1, 10 * (i + 1), action, &parents));
    }
    let batches = vec![
        two.clone(),
        one[..3].to_vec(),
        // reversed: the store sorts the batch; the first entry is a child of a stored head
        one[3..].iter().rev().cloned().collect(),
    ];
    for batch in batches {
        let got = store.insert(batch.clone()).unwrap();
        let want = model.insert(batch, now, drift, None);
        assert_eq!(got, want);
    }
    // then a merge naming both stored heads, in its own batch
    let merge = mk(1, 200, put("b", "k2", 9), &[one[9].hash, two[3].hash]);
    let got = store.insert([merge.clone()]).unwrap();
    assert_eq!(got, model.insert(vec![merge], now, drift, None));

    assert_eq!(store.len(), model.len() as u64);
    assert_eq!(store.heads().unwrap(), model.heads().with_keys());
    let mut view = store.view().unwrap();
    view.sort_by(|a, b| a.0.cmp(&b.0));
    let model_view: Vec<_> = model.view().iter().map(|(k, w)| (k.clone(), *w)).collect();
    assert_eq!(view, model_view);
    for i in 0..4 {
        let reg = ("b".to_string(), format!("k{i}"));
        assert_eq!(
            store.history(&reg).unwrap().len(),
            [3, 3, 3, 2][i] + 1,
            "register k{i}: author 1's writes plus author 2's one"
        );
    }
    assert!(store.verify().unwrap().is_ok());
    drop(store);
    // and the same after reopening, where the index is rebuilt from the tables
    let store = open(&dir);
    assert_eq!(store.heads().unwrap(), model.heads().with_keys());
    assert!(store.verify().unwrap().is_ok());
}
