//! `verify()` checks the tables behind the caps on held-back and deferred entries
//! (`held_lacking`, `held_order`, `held_by_author`, `deferred_by_author`, `kept_usage`,
//! `kept_bytes`): a store that only the store wrote verifies clean, also after evictions by
//! small caps, and each kind of damage to one of these tables, written through redb directly,
//! is listed as a problem naming that table.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use common::tables::*;
use common::*;
use oplog_store::protocol::replica::Limits;
use oplog_store::protocol::{Hash, LogEntry, Op};
use oplog_store::{InsertError, InsertOutcome, Options, Problem, Store, VerifyReport};
use redb::ReadableTable;

/// The wall clock of every store here (ns); entries stamped an hour later are deferred.
const NOW: u64 = 10_000_000_000_000;
const HOUR: u64 = 3_600_000_000_000;

fn options() -> Options {
    Options::default()
        .max_drift(Duration::from_secs(1))
        .clock(ManualClock::new(NOW))
}

/// What the fixture store holds besides its applied entries.
struct Fixture {
    /// The held-back entry that lacks two parents.
    two_lacking: LogEntry,
    /// A held-back entry by author 2 (lacks one parent).
    held2: LogEntry,
    /// A deferred entry by author 4 and its `not_before`.
    deferred4: (LogEntry, u64),
    /// The total encoded bytes of the held-back and of the deferred entries.
    bytes: [u64; 2],
}

/// Writes a closed store at `path`: a chain of 10 applied entries by author 1; held back: 3
/// entries by author 2 waiting for an unsent parent, one of them also naming an applied entry,
/// a child of a held-back entry, and an entry by author 3 that lacked three parents and, after
/// one of them was sent, lacks two; deferred: 2 entries by author 4 and 1 by author 5.
// `held2a`, `held2b`, `held2c`: author 2's held-back entries, told apart by their last letter
#[allow(clippy::similar_names)]
fn build(path: &Path) -> Fixture {
    let store: Store = Store::create(path, options()).unwrap();
    let applied = chain(10, 1_000);
    store.insert(applied.clone()).unwrap();
    let unsent = mk(6, 2_000, put("u", "x", 1), &[]);
    let unsent2 = mk(6, 2_001, put("u", "y", 1), &[]);
    let later = mk(7, 2_002, put("u", "z", 1), &[]);
    let held2a = mk(2, 3_000, put("h", "a", 2), &[unsent.hash]);
    let mut ps = vec![unsent.hash, applied[9].hash];
    ps.sort();
    let held2b = mk(2, 3_001, put("h", "b", 2), &ps);
    let held2c = mk(2, 3_002, put("h", "c", 2), &[held2a.hash]);
    let mut ps = vec![unsent.hash, unsent2.hash, later.hash];
    ps.sort();
    let two_lacking = mk(3, 3_003, put("h", "d", 3), &ps);
    let d4a = mk(4, NOW + HOUR, put("d", "a", 4), &[]);
    let d4b = mk(4, NOW + HOUR + 1, put("d", "b", 4), &[]);
    let d5 = mk(5, NOW + 2 * HOUR, put("d", "c", 5), &[]);
    let held = [&held2a, &held2b, &held2c, &two_lacking];
    let deferred = [&d4a, &d4b, &d5];
    store
        .insert(held.iter().chain(&deferred).map(|e| (*e).clone()))
        .unwrap();
    // one of its three parents arrives: the lacking count goes down, the entry stays held
    let r = store.insert([later]).unwrap();
    assert_eq!(r.applied.len(), 1);
    let stats = store.stats().unwrap();
    assert_eq!((stats.applied, stats.held_back, stats.deferred), (11, 4, 3));
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let not_before = store
        .deferred()
        .unwrap()
        .into_iter()
        .find(|(e, _)| e.hash == d4a.hash)
        .unwrap()
        .1;
    let len = |es: &[&LogEntry]| es.iter().map(|e| e.encode().len() as u64).sum::<u64>();
    let bytes = [len(&held), len(&deferred)];
    Fixture {
        two_lacking: two_lacking.clone(),
        held2: held2b.clone(),
        deferred4: (d4a.clone(), not_before),
        bytes,
    }
}

fn verify(path: &Path) -> VerifyReport {
    let store: Store<Op> = Store::open_existing(path, options()).unwrap();
    store.verify().unwrap()
}

type Tamper = Box<dyn Fn(&redb::WriteTransaction, &Fixture)>;

/// One kind of damage: its name, the table every listed problem must start with, and a phrase
/// one of them must contain.
fn tampers() -> Vec<(&'static str, &'static str, &'static str, Tamper)> {
    vec![
        (
            "held_lacking row removed",
            "held_lacking",
            "has no row for held entry",
            Box::new(|txn, f| {
                let mut t = txn.open_table(HELD_LACKING).unwrap();
                assert!(t.remove(f.two_lacking.hash.0).unwrap().is_some());
            }),
        ),
        (
            "held_lacking count off by one",
            "held_lacking",
            "lacks 3 parents, waiting names it 2 times",
            Box::new(|txn, f| {
                let mut t = txn.open_table(HELD_LACKING).unwrap();
                let old = t
                    .insert(f.two_lacking.hash.0, 3)
                    .unwrap()
                    .map(|v| v.value());
                assert_eq!(old, Some(2));
            }),
        ),
        (
            "held_lacking row without a held entry",
            "held_lacking",
            "1 rows without a held entry",
            Box::new(|txn, _| {
                txn.open_table(HELD_LACKING)
                    .unwrap()
                    .insert([0xab; 32], 1)
                    .unwrap();
            }),
        ),
        (
            "held_order row removed",
            "held_order",
            "lacks the rows of 1 held entries",
            Box::new(|txn, f| {
                let k = (f.held2.hlc.0, f.held2.hash.0);
                assert!(txn
                    .open_table(HELD_ORDER)
                    .unwrap()
                    .remove(k)
                    .unwrap()
                    .is_some());
            }),
        ),
        (
            "held_order row with a wrong hlc",
            "held_order",
            "rows matching no held entry",
            Box::new(|txn, f| {
                let mut t = txn.open_table(HELD_ORDER).unwrap();
                t.remove((f.held2.hlc.0, f.held2.hash.0)).unwrap();
                t.insert((f.held2.hlc.0 + 1, f.held2.hash.0), ()).unwrap();
            }),
        ),
        (
            "held_order stray row",
            "held_order",
            "1 rows matching no held entry",
            Box::new(|txn, _| {
                txn.open_table(HELD_ORDER)
                    .unwrap()
                    .insert((7, [0xcd; 32]), ())
                    .unwrap();
            }),
        ),
        (
            "held_by_author row removed",
            "held_by_author",
            "lacks the rows of 1 held entries",
            Box::new(|txn, f| {
                let e = &f.two_lacking;
                let k = (e.node_id.0, e.hlc.0, e.hash.0);
                assert!(txn
                    .open_table(HELD_BY_AUTHOR)
                    .unwrap()
                    .remove(k)
                    .unwrap()
                    .is_some());
            }),
        ),
        (
            "held_by_author row under another author",
            "held_by_author",
            "rows matching no held entry",
            Box::new(|txn, f| {
                let e = &f.held2;
                let mut t = txn.open_table(HELD_BY_AUTHOR).unwrap();
                t.remove((e.node_id.0, e.hlc.0, e.hash.0)).unwrap();
                t.insert((node(3).0, e.hlc.0, e.hash.0), ()).unwrap();
            }),
        ),
        (
            "deferred_by_author row removed",
            "deferred_by_author",
            "lacks the rows of 1 deferred entries",
            Box::new(|txn, f| {
                let (e, nb) = &f.deferred4;
                let k = (e.node_id.0, *nb, e.hash.0);
                assert!(txn
                    .open_table(DEFERRED_BY_AUTHOR)
                    .unwrap()
                    .remove(k)
                    .unwrap()
                    .is_some());
            }),
        ),
        (
            "deferred_by_author row with a wrong not_before",
            "deferred_by_author",
            "rows matching no deferred entry",
            Box::new(|txn, f| {
                let (e, nb) = &f.deferred4;
                let mut t = txn.open_table(DEFERRED_BY_AUTHOR).unwrap();
                t.remove((e.node_id.0, *nb, e.hash.0)).unwrap();
                t.insert((e.node_id.0, nb + 1, e.hash.0), ()).unwrap();
            }),
        ),
        (
            "deferred_by_author stray row",
            "deferred_by_author",
            "1 rows matching no deferred entry",
            Box::new(|txn, _| {
                txn.open_table(DEFERRED_BY_AUTHOR)
                    .unwrap()
                    .insert((node(9).0, NOW, [0xef; 32]), ())
                    .unwrap();
            }),
        ),
        (
            "kept_usage count of held entries wrong",
            "kept_usage",
            "counts 4 entries",
            Box::new(|txn, _| {
                let old = txn
                    .open_table(KEPT_USAGE)
                    .unwrap()
                    .insert((0, node(2).0), 4)
                    .unwrap()
                    .map(|v| v.value());
                assert_eq!(old, Some(3));
            }),
        ),
        (
            "kept_usage count of deferred entries wrong",
            "kept_usage",
            "counts 1 entries",
            Box::new(|txn, _| {
                let old = txn
                    .open_table(KEPT_USAGE)
                    .unwrap()
                    .insert((1, node(4).0), 1)
                    .unwrap()
                    .map(|v| v.value());
                assert_eq!(old, Some(2));
            }),
        ),
        (
            "kept_usage row removed",
            "kept_usage",
            "has no row for",
            Box::new(|txn, _| {
                let mut t = txn.open_table(KEPT_USAGE).unwrap();
                assert!(t.remove((1, node(5).0)).unwrap().is_some());
            }),
        ),
        (
            "kept_usage row of count 0",
            "kept_usage",
            "count 0",
            Box::new(|txn, _| {
                txn.open_table(KEPT_USAGE)
                    .unwrap()
                    .insert((0, node(9).0), 0)
                    .unwrap();
            }),
        ),
        (
            "kept_usage row for an author with no entries",
            "kept_usage",
            "the set holds 0",
            Box::new(|txn, _| {
                txn.open_table(KEPT_USAGE)
                    .unwrap()
                    .insert((1, node(2).0), 1)
                    .unwrap();
            }),
        ),
        (
            "kept_usage row of an unknown set",
            "kept_usage",
            "neither held (0) nor deferred (1)",
            Box::new(|txn, _| {
                txn.open_table(KEPT_USAGE)
                    .unwrap()
                    .insert((2, node(2).0), 3)
                    .unwrap();
            }),
        ),
        (
            "kept_bytes of the held set wrong",
            "kept_bytes",
            "set 0 holds",
            Box::new(|txn, f| {
                let old = txn
                    .open_table(KEPT_BYTES)
                    .unwrap()
                    .insert(0, f.bytes[0] - 1)
                    .unwrap()
                    .map(|v| v.value());
                assert_eq!(old, Some(f.bytes[0]));
            }),
        ),
        (
            "kept_bytes of the deferred set removed",
            "kept_bytes",
            "set 1 holds 0 bytes",
            Box::new(|txn, f| {
                let old = txn
                    .open_table(KEPT_BYTES)
                    .unwrap()
                    .remove(1)
                    .unwrap()
                    .map(|v| v.value());
                assert_eq!(old, Some(f.bytes[1]));
            }),
        ),
        (
            "kept_bytes row of an unknown set",
            "kept_bytes",
            "other than held (0) and deferred (1)",
            Box::new(|txn, _| {
                txn.open_table(KEPT_BYTES).unwrap().insert(9, 0).unwrap();
            }),
        ),
    ]
}

#[test]
fn each_damaged_cap_table_is_named_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("log.redb");
    let fixture = build(&original);
    for (i, (what, table, phrase, tamper)) in tampers().into_iter().enumerate() {
        let p = edited(dir.path(), &original, &format!("t{i}.redb"), |txn| {
            tamper(txn, &fixture);
        });
        let report = verify(&p);
        assert!(!report.is_ok(), "{what} went unnoticed");
        // the damage is reported against the table it is in, and nowhere else
        for problem in &report.problems {
            match problem {
                Problem::Index(s) if s.starts_with(table) => {}
                other => panic!("{what}: unexpected problem {other}"),
            }
        }
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.to_string().contains(phrase)),
            "{what}: no problem says {phrase:?}: {:?}",
            report.problems
        );
        // the entries themselves are all still counted
        assert_eq!(
            (report.entries, report.held_back, report.deferred),
            (11, 4, 3)
        );
        fs::remove_file(&p).unwrap();
    }
    // the original, untouched, is still clean after all those copies
    assert!(verify(&original).is_ok());
}

#[test]
fn the_counters_are_checked_against_the_encoded_entries() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("log.redb");
    let fixture = build(&original);
    // the counters hold exactly what the entries add up to (not only something consistent)
    let db = redb::Database::open(&original).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let bytes = txn.open_table(KEPT_BYTES).unwrap();
    for set in [0u8, 1] {
        assert_eq!(
            bytes.get(set).unwrap().map(|v| v.value()),
            Some(fixture.bytes[usize::from(set)])
        );
    }
    let usage = txn.open_table(KEPT_USAGE).unwrap();
    let rows: Vec<((u8, Key32), u64)> = usage
        .iter()
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.value(), v.value())
        })
        .collect();
    let mut want = vec![
        ((0, node(2).0), 3),
        ((0, node(3).0), 1),
        ((1, node(4).0), 2),
        ((1, node(5).0), 1),
    ];
    want.sort_unstable();
    assert_eq!(rows, want);
}

/// Adds the entries `r` turned away by a cap to `turned_away`: held back first, deferred second.
fn tally(r: &oplog_store::InsertReport, turned_away: &mut [BTreeSet<Hash>; 2]) {
    let refused = r.outcomes.iter().filter_map(|(h, o)| match o {
        InsertOutcome::Rejected(e) => Some((h, e)),
        _ => None,
    });
    for (h, e) in r.dropped.iter().map(|(h, e)| (h, e)).chain(refused) {
        match e {
            InsertError::HeldBackFull => turned_away[0].insert(*h),
            InsertError::DeferredFull => turned_away[1].insert(*h),
            _ => false,
        };
    }
}

/// Small caps: floods of held-back and deferred entries from a few authors, evicting by the
/// author caps and the byte caps, then parents and time arriving; the store verifies clean
/// after every step, and the caps did evict.
#[test]
fn a_store_evicting_by_small_caps_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("caps.redb");
    let clock = ManualClock::new(NOW);
    let mut limits = Limits::with_drift(Duration::from_secs(1));
    limits.max_held_per_author = 3;
    limits.max_held_bytes = 1_500;
    limits.max_deferred_per_author = 2;
    limits.max_deferred_bytes = 1_200;
    let options = Options::default().limits(limits).clock(clock.clone());
    let store: Store = Store::create(&path, options).unwrap();
    let check = |step: &str| {
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{step}: {:?}", report.problems);
        report
    };

    // parents that arrive late, one per author
    let parents: Vec<LogEntry> = (0..4u8)
        .map(|a| mk(10 + a, 500 + u64::from(a), put("p", "x", a), &[]))
        .collect();
    // what the caps turned away, per set: evicted (dropped) or refused on arrival (an entry
    // evicted by a later one of the same call is listed in both, so hashes are counted once)
    let mut turned_away: [BTreeSet<Hash>; 2] = Default::default();
    let counts = |t: &[BTreeSet<Hash>; 2]| [t[0].len(), t[1].len()];

    // the author caps: one author sends 5 held-back and another 4 deferred entries, all
    // within the byte caps
    let held: Vec<LogEntry> = (0..5u64)
        .map(|i| {
            mk(
                40,
                900 + i,
                put("a", &format!("k{i}"), 0),
                &[parents[0].hash],
            )
        })
        .collect();
    let deferred: Vec<LogEntry> = (0..4u64)
        .map(|i| mk(41, NOW + HOUR + 100 + i, put("a", &format!("d{i}"), 0), &[]))
        .collect();
    let size = |es: &[LogEntry]| es.iter().map(|e| e.encode().len() as u64).sum::<u64>();
    assert!(size(&held) <= 1_500 && size(&deferred) <= 1_200);
    let r = store.insert(held.into_iter().chain(deferred)).unwrap();
    tally(&r, &mut turned_away);
    assert_eq!(counts(&turned_away), [2, 2]);
    let report = check("author caps");
    assert_eq!((report.held_back, report.deferred), (3, 2));

    // the byte caps: four more authors, six rounds
    for round in 0..6u64 {
        let mut batch = Vec::new();
        for a in 0..4u8 {
            let n = round * 4 + u64::from(a);
            // held back: waits for its author's late parent (and, every third, a second one)
            let mut ps = vec![parents[usize::from(a)].hash];
            if n % 3 == 0 {
                ps.push(parents[usize::from((a + 1) % 4)].hash);
            }
            ps.sort();
            batch.push(mk(20 + a, 1_000 + n, put("h", &format!("k{n}"), a), &ps));
            // deferred: stamped ahead of local time, each round due sooner than the one before,
            // so the cap evicts earlier rounds' entries (the one due last goes)
            batch.push(mk(
                30 + a,
                NOW + HOUR + (5 - round) * 1_000 + u64::from(a),
                put("d", &format!("k{n}"), a),
                &[],
            ));
        }
        let r = store.insert(batch).unwrap();
        tally(&r, &mut turned_away);
        check(&format!("round {round}"));
    }
    // more entries were turned away in the rounds, by the byte caps or the author caps
    let [held_away, deferred_away] = counts(&turned_away);
    assert!(
        held_away > 2 && deferred_away > 2,
        "no eviction: {held_away}, {deferred_away}"
    );
    let before = check("before the parents");
    assert!(before.held_back > 0 && before.deferred > 0);

    // half the parents arrive: some held entries apply, some now lack one parent fewer
    let r = store.insert(parents[..2].to_vec()).unwrap();
    assert!(r.applied.len() > 2);
    check("half the parents");
    // time passes: the deferred entries come due and are applied
    clock.set(NOW + 2 * HOUR);
    let r = store.retry_deferred().unwrap();
    assert!(!r.applied.is_empty());
    check("deferred due");
    store.insert(parents[2..].to_vec()).unwrap();
    let after = check("all parents");
    assert_eq!((after.held_back, after.deferred), (0, 0));
    // an emptied store keeps no usage rows and zero byte counters
    drop(store);
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    assert_eq!(
        redb::ReadableTableMetadata::len(&txn.open_table(KEPT_USAGE).unwrap()).unwrap(),
        0
    );
    let bytes = txn.open_table(KEPT_BYTES).unwrap();
    for set in [0u8, 1] {
        assert_eq!(bytes.get(set).unwrap().map_or(0, |v| v.value()), 0);
    }
}
