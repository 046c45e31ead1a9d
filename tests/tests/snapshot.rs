//! Consistent reads (spec 8.12): two replicas on real redb files reconcile over snapshots while a
//! thread keeps writing new signed entries into both. Every session must end and report
//! exactly the difference of the two snapshots it started from; the entries written meanwhile
//! are left to the next session, and a last session without writes converges.

use std::collections::BTreeSet;
use std::sync::mpsc;

use oplog_protocol::negentropy::Accumulator;
use oplog_protocol::{
    Aggregate, Config, EntryKey, Hash, Hlc, LogEntry, ObjectId, Op, Range, RangeIndex, RangeStore,
    Reconciler, SigningKey,
};
use oplog_store::{Options, Store};

/// Local time of both replicas: a little after every stamp the test writes.
const NOW: u64 = 1_790_000_000_000_000_000;

fn open(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open_with(dir.path().join(name), Options::default().clock(|| NOW)).expect("open")
}

/// One author writing into one store: signs each write on top of the store's current heads.
struct Writer<'a> {
    store: &'a Store,
    key: SigningKey,
    hlc: u64,
    written: u64,
}

impl<'a> Writer<'a> {
    fn new(store: &'a Store, seed: u8, hlc: u64) -> Self {
        Writer {
            store,
            key: SigningKey::from_bytes(&[seed; 32]),
            hlc,
            written: 0,
        }
    }

    fn write(&mut self) -> LogEntry {
        let heads = self.store.heads().unwrap();
        // above every parent, whoever wrote it
        let top = heads.iter().map(|(k, _)| k.hlc.0).max().unwrap_or(0);
        self.hlc = self.hlc.max(top) + 1_000;
        self.written += 1;
        let parents: Vec<Hash> = heads.iter().map(|(k, _)| k.hash).collect();
        let op = Op::Put {
            bucket: "b".into(),
            key: format!("k{}", self.written % 50),
            object_id: ObjectId(*blake3::hash(&self.hlc.to_le_bytes()).as_bytes()),
        };
        let e = LogEntry::sign(&self.key, Hlc(self.hlc), op, parents).unwrap();
        let report = self.store.insert([e.clone()]).unwrap();
        assert_eq!(report.applied, vec![e.hash]);
        e
    }
}

fn all_keys(s: &RangeIndex) -> BTreeSet<EntryKey> {
    s.keys(&Range::FULL, usize::MAX)
        .unwrap()
        .into_iter()
        .collect()
}

/// What one session reported, as hashes moving each way.
#[derive(Debug, Default)]
struct Reported {
    a_to_b: BTreeSet<Hash>,
    b_to_a: BTreeSet<Hash>,
    messages: usize,
}

/// Drives one session by hand over snapshots taken now. `during` runs concurrently with every
/// `handle` call (it is signalled before the call and awaited after it), so the live stores
/// grow while each message is answered.
fn session(a: &Store, b: &Store, config: &Config, during: Option<&Channel>) -> Reported {
    let (sa, sb) = (a.snapshot(), b.snapshot());
    let (len_a, len_b) = (sa.len(), sb.len());
    let (keys_a, keys_b) = (all_keys(&sa), all_keys(&sb));
    let mut ra = Reconciler::new(config.clone()).unwrap();
    let mut rb = Reconciler::new(config.clone()).unwrap();
    let mut out = Reported::default();
    let mut msg = Some(ra.initiate(&sa).unwrap());
    let mut to_b = true;
    let (mut a_has, mut b_has) = (Vec::new(), Vec::new());
    while let Some(m) = msg.take() {
        out.messages += 1;
        assert!(out.messages < 1_000, "session does not end");
        if let Some(ch) = during {
            ch.go.send(()).unwrap();
        }
        let step = if to_b {
            rb.handle(&sb, &m)
        } else {
            ra.handle(&sa, &m)
        }
        .unwrap();
        if let Some(ch) = during {
            ch.done.recv().unwrap();
        }
        let (has, other) = if to_b {
            (&mut b_has, &mut out.a_to_b)
        } else {
            (&mut a_has, &mut out.b_to_a)
        };
        has.extend(step.have.iter().map(|k| k.hash));
        other.extend(step.need.iter().map(|k| k.hash));
        other.extend(step.need_hashes);
        msg = step.reply;
        to_b = !to_b;
    }
    assert!(ra.is_done() && rb.is_done(), "both sides finished");
    // nothing reported twice
    for has in [&a_has, &b_has] {
        assert_eq!(has.len(), has.iter().collect::<BTreeSet<_>>().len());
    }
    out.a_to_b.extend(a_has);
    out.b_to_a.extend(b_has);
    // exactly the difference of the two snapshots
    let expect_a_to_b: BTreeSet<Hash> = keys_a.difference(&keys_b).map(|k| k.hash).collect();
    let expect_b_to_a: BTreeSet<Hash> = keys_b.difference(&keys_a).map(|k| k.hash).collect();
    assert_eq!(out.a_to_b, expect_a_to_b);
    assert_eq!(out.b_to_a, expect_b_to_a);
    // the snapshots did not move while the stores grew
    assert_eq!((sa.len(), sb.len()), (len_a, len_b));
    assert_eq!(all_keys(&sa), keys_a);
    if during.is_some() {
        assert!(
            a.len() > len_a && b.len() > len_b,
            "the writer wrote meanwhile"
        );
    }
    out
}

/// Signals between the session driver and the writer thread.
struct Channel {
    go: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
}

/// Copies the entries named by `hashes` from one store into the other, in one batch.
fn ship(from: &Store, to: &Store, hashes: &BTreeSet<Hash>) {
    let entries: Vec<LogEntry> = hashes
        .iter()
        .map(|h| {
            let bytes = from.entry(h).unwrap().expect("we have it").encode();
            LogEntry::<Op>::decode(&bytes).unwrap()
        })
        .collect();
    let report = to.insert(entries).unwrap();
    assert_eq!(report.applied.len(), hashes.len());
}

#[test]
fn sessions_over_snapshots_end_with_the_snapshot_difference_while_both_sides_write() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(&dir, "a.redb"), open(&dir, "b.redb"));
    let start = NOW - 10_000_000_000_000;
    {
        // a shared history, then a few entries on each side alone
        let mut base = Writer::new(&a, 9, start);
        let shared: Vec<LogEntry> = (0..400).map(|_| base.write()).collect();
        b.insert(shared).unwrap();
        let (mut wa, mut wb) = (Writer::new(&a, 1, start + 1), Writer::new(&b, 2, start + 2));
        for _ in 0..30 {
            wa.write();
            wb.write();
        }
    }
    let configs = [
        Config::default(),
        {
            let mut c = Config::default();
            c.max_message_bytes = Some(4096);
            c
        },
        Config::negentropy(None),
        Config::negentropy(Some(4096)),
        {
            let mut c = Config::default();
            c.initial_split = false;
            c.branching = 4;
            c
        },
        Config::default(),
    ];
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let written = std::thread::scope(|s| {
        let (a, b) = (&a, &b);
        let writer = s.spawn(move || {
            let (mut wa, mut wb) = (
                Writer::new(a, 1, start + 5_000_000_000_000),
                Writer::new(b, 2, start + 5_000_000_000_001),
            );
            // one new entry on each side per message answered, until the driver hangs up
            while go_rx.recv().is_ok() {
                wa.write();
                wb.write();
                if done_tx.send(()).is_err() {
                    break;
                }
            }
            wa.written + wb.written
        });
        let ch = Channel {
            go: go_tx,
            done: done_rx,
        };
        for config in &configs {
            let r = session(a, b, config, Some(&ch));
            assert!(r.messages >= 2);
            ship(a, b, &r.a_to_b);
            ship(b, a, &r.b_to_a);
        }
        drop(ch);
        writer.join().unwrap()
    });
    assert!(written >= 2 * configs.len() as u64);

    // no more writes: one session moves what was written during the last one, the next finds
    // nothing, and the replicas are equal
    let r = session(&a, &b, &Config::default(), None);
    assert!(!r.a_to_b.is_empty() && !r.b_to_a.is_empty());
    ship(&a, &b, &r.a_to_b);
    ship(&b, &a, &r.b_to_a);
    let r = session(&a, &b, &Config::default(), None);
    assert!(r.a_to_b.is_empty() && r.b_to_a.is_empty());
    let (sa, sb) = (a.snapshot(), b.snapshot());
    assert_eq!(all_keys(&sa), all_keys(&sb));
    assert_eq!(
        sa.aggregate(&Range::FULL).unwrap(),
        sb.aggregate(&Range::FULL).unwrap()
    );
    assert_eq!(a.heads().unwrap(), b.heads().unwrap());
    assert!(a.verify().unwrap().is_ok() && b.verify().unwrap().is_ok());
}

/// A store snapshot answers both dialects' fingerprints from the index, equal to the sums of
/// its keys, and reopening the file rebuilds the same index.
#[test]
fn store_snapshot_fingerprints_match_its_keys_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "s.redb");
    let mut w = Writer::new(&store, 3, NOW - 1_000_000_000_000);
    for _ in 0..300 {
        w.write();
    }
    let snap = store.snapshot();
    let keys: Vec<EntryKey> = all_keys(&snap).into_iter().collect();
    let range = Range::new(keys[17], Some(keys[250]));
    let inside = &keys[17..250];
    assert_eq!(snap.aggregate(&range).unwrap(), Aggregate::of_keys(inside));
    assert_eq!(
        snap.negentropy_fingerprint(&range).unwrap(),
        Accumulator::of_keys(inside).fingerprint()
    );
    w.write();
    assert_eq!(snap.len(), 300);
    assert_eq!(store.len(), 301);
    let total = store.snapshot().aggregate(&Range::FULL).unwrap();
    drop(store);
    let reopened = open(&dir, "s.redb");
    assert_eq!(reopened.len(), 301);
    assert_eq!(reopened.snapshot().aggregate(&Range::FULL).unwrap(), total);
}
