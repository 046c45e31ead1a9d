//! Damaged files: every single-byte corruption of a closed store, an empty file, truncated
//! files and garbage are reported as typed errors (or survive as a store whose damage
//! `verify()` lists), never as a panic, an abort or a silently empty store.
//!
//! The byte flips run in child processes (this test binary re-executed with an environment
//! variable, as `crash.rs` does), so a panic or an abort in the store or in redb is seen by the
//! parent as an abnormal exit, with the offset that caused it.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::tables::*;
use common::*;
use oplog_store::protocol::{EntryKey, Hash, Op, Range, RangeStore};
use oplog_store::{Error, Options, Store};
use redb::{ReadableTable, TableDefinition};

/// Where the child finds its job: `<original file>|<work dir>|<first offset>|<stride>`.
const JOB_VAR: &str = "OPLOG_STORE_CORRUPT_JOB";
/// The wall clock of every store in this file (ns); entries stamped an hour later are deferred.
const NOW: u64 = 10_000_000_000_000;
const APPLIED: u64 = 200;

fn options() -> Options {
    Options::default()
        .max_drift(Duration::from_secs(1))
        .clock(ManualClock::new(NOW))
}

/// Writes a closed store of `APPLIED` applied entries (two authors, merges, puts and deletes
/// over a few registers), 5 held back (their parent is never sent) and 5 deferred. Returns the
/// applied entries' hashes.
fn build_store(path: &Path) -> Vec<Hash> {
    let store: Store = Store::create(path, options()).unwrap();
    let mut applied = Vec::new();
    let mut tips: [Option<Hash>; 2] = [None, None];
    let mut batch = Vec::new();
    for i in 0..APPLIED {
        let odd = i % 2 == 1;
        let who = usize::from(odd);
        let mut parents: Vec<Hash> = tips[who].into_iter().collect();
        if i % 10 == 9 {
            parents.extend(tips[1 - who]); // a merge of both authors' tips
        }
        parents.sort();
        let action = if i % 13 == 12 {
            del("b", &format!("k{}", i % 11))
        } else {
            put("b", &format!("k{}", i % 11), i.to_le_bytes()[0])
        };
        let e = mk(1 + u8::from(odd), 1_000 + i, action, &parents);
        tips[who] = Some(e.hash);
        applied.push(e.hash);
        batch.push(e);
        if batch.len() == 50 {
            store.insert(std::mem::take(&mut batch)).unwrap();
        }
    }
    let unsent = mk(3, 5_000, put("c", "root", 1), &[]);
    let mut odd = Vec::new();
    for i in 0..5u64 {
        odd.push(mk(
            3,
            5_001 + i,
            put("c", &format!("h{i}"), 2),
            &[unsent.hash],
        ));
        odd.push(mk(
            4,
            NOW + 3_600_000_000_000 + i,
            put("d", &format!("f{i}"), 3),
            &[],
        ));
    }
    store.insert(odd).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.applied, stats.held_back, stats.deferred),
        (APPLIED, 5, 5)
    );
    assert!(store.verify().unwrap().is_ok());
    applied
}

/// Opens `path` and uses the store as a node would. Returns a one-line outcome; any panic
/// inside ends the child process abnormally, which is what the parent looks for.
fn probe(path: &Path) -> String {
    let store: Store = match Store::open_existing(path, options()) {
        Ok(s) => s,
        Err(e) => return format!("open-error {}", kind(&e)),
    };
    let verdict = match store.verify() {
        // a store that opens clean must still hold everything: else it silently forgot
        Ok(r) if r.is_ok() && (r.entries, r.held_back, r.deferred) == (APPLIED, 5, 5) => {
            "clean".to_string()
        }
        Ok(r) if r.is_ok() => format!(
            "LOST: clean but holds {} applied, {} held back, {} deferred",
            r.entries, r.held_back, r.deferred
        ),
        Ok(_) => "verify-problems".to_string(),
        Err(e) => format!("verify-error {}", kind(&e)),
    };
    // reads and one write: each may fail with a typed error, none may panic
    let _ = store.stats();
    let _ = store.heads();
    let _ = store.missing();
    let _ = store.held_back();
    let _ = store.deferred();
    let _ = store.log(EntryKey::MIN, 50);
    let _ = store.view();
    let _ = store.get("b", "k3");
    let _ = store.list("b", "k");
    let _ = store.history(&("b".to_string(), "k5".to_string()));
    let _ = store.snapshot().count(&Range::FULL);
    let _ = store.snapshot().aggregate(&Range::FULL);
    let _ = store.snapshot().keys(&Range::FULL, 10);
    let _ = store.insert([mk(5, 9_000, put("e", "new", 4), &[])]);
    verdict
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::Open { .. } => "open",
        Error::NotAStore { .. } => "not-a-store",
        Error::UnknownSchemaVersion { .. } => "schema-version",
        Error::Corrupt { .. } => "corrupt",
        Error::Database(_) => "database",
        _ => "other",
    }
}

/// The child: flips one byte at every `stride`-th offset from `first` on, one copy at a time,
/// printing `try <offset>` before and `ok <offset> <outcome>` after each probe.
#[test]
#[ignore = "run by every_byte_flip_is_an_error_or_a_listed_problem in a child process"]
fn corrupt_child_probe() {
    let Ok(job) = std::env::var(JOB_VAR) else {
        return;
    };
    let parts: Vec<&str> = job.split('|').collect();
    let original = fs::read(parts[0]).unwrap();
    let work = PathBuf::from(parts[1]);
    let first: usize = parts[2].parse().unwrap();
    let stride: usize = parts[3].parse().unwrap();
    let mut out = std::io::stdout();
    for offset in (first..original.len()).step_by(stride) {
        writeln!(out, "try {offset}").unwrap();
        out.flush().unwrap();
        let mut bytes = original.clone();
        bytes[offset] ^= flip_mask(offset);
        let path = work.join(format!("flip-{offset}.redb"));
        fs::write(&path, &bytes).unwrap();
        let outcome = probe(&path);
        let _ = fs::remove_file(&path);
        writeln!(out, "ok {offset} {outcome}").unwrap();
        out.flush().unwrap();
    }
    writeln!(out, "done").unwrap();
}

/// Varies the flipped bits with the offset: a low bit, a high bit, the whole byte.
fn flip_mask(offset: usize) -> u8 {
    [0x01, 0x80, 0xff, 0x10][offset % 4]
}

/// Offsets probed: every `STRIDE`-th byte. The file is about 280 KiB (69 redb pages of
/// 4 KiB). One probe (copy, open with redb's page check, verify 210 signatures, the reads)
/// costs about 10 ms of CPU in a debug build, so every byte would take 80 s of CPU and several
/// minutes of wall time on 2 shared cores. A stride of 211 probes about 1 340 offsets
/// (about 14 s of CPU): every page about 19 times, and since 211 is prime (coprime to the
/// page size) the probed offsets fall at a different place in each page. Set
/// `OPLOG_STORE_FLIP_STRIDE=1` for every byte.
const STRIDE: usize = 211;
/// Overrides [`STRIDE`].
const STRIDE_VAR: &str = "OPLOG_STORE_FLIP_STRIDE";

#[test]
fn every_byte_flip_is_an_error_or_a_listed_problem() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("log.redb");
    build_store(&original);
    let len = usize::try_from(fs::metadata(&original).unwrap().len()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let stderr_path = dir.path().join("child.stderr");

    let mut next = 0usize;
    let mut crashes: Vec<(usize, String)> = Vec::new();
    let mut lost: Vec<(usize, String)> = Vec::new();
    let stride = std::env::var(STRIDE_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(STRIDE);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let mut probed = 0usize;
    while next < len {
        let stderr = fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "corrupt_child_probe", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(
                JOB_VAR,
                format!(
                    "{}|{}|{next}|{stride}",
                    original.display(),
                    dir.path().display()
                ),
            )
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut trying = None;
        let mut finished = false;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(o) = line.strip_prefix("try ") {
                trying = Some(o.parse::<usize>().unwrap());
            } else if let Some(rest) = line.strip_prefix("ok ") {
                let (offset, outcome) = rest.split_once(' ').unwrap();
                if outcome.starts_with("LOST") {
                    lost.push((offset.parse::<usize>().unwrap(), outcome.to_string()));
                }
                *outcomes.entry(outcome.to_string()).or_default() += 1;
                probed += 1;
                trying = None;
            } else if line == "done" {
                finished = true;
            }
        }
        let status = child.wait().unwrap();
        if finished && status.success() {
            break;
        }
        // the child died: on the offset it was trying, or (before its first probe) at start-up
        let at = trying.unwrap_or(next);
        let message = fs::read_to_string(&stderr_path).unwrap_or_default();
        let message: String = message
            .lines()
            .filter(|l| l.contains("panicked") || l.contains("assert") || l.contains("abort"))
            .take(2)
            .collect::<Vec<_>>()
            .join(" / ");
        crashes.push((at, format!("{status}: {message}")));
        probed += 1;
        next = at + stride;
        assert!(crashes.len() < 200, "too many crashes: {crashes:?}");
    }
    eprintln!("{len} bytes, {probed} offsets probed (stride {stride}): {outcomes:?}");
    assert!(probed >= len / stride, "only {probed} offsets probed");
    assert!(lost.is_empty(), "flips that lost data silently: {lost:?}");
    assert!(
        crashes.is_empty(),
        "{} of {probed} flips ended the process abnormally: {crashes:#?}",
        crashes.len()
    );
}

#[test]
fn an_empty_file_is_not_a_store_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    fs::write(&path, b"").unwrap();
    for result in [
        Store::<Op>::open(&path),
        Store::<Op>::open_with(&path, options()),
        Store::<Op>::open_existing(&path, options()),
    ] {
        match result {
            Err(Error::NotAStore { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected NotAStore, got {other:?}"),
        }
    }
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        0,
        "the file was written"
    );
    assert!(matches!(
        Store::<Op>::create(&path, options()),
        Err(Error::AlreadyExists { .. })
    ));
}

#[test]
fn a_truncated_file_is_an_error_never_a_smaller_store() {
    // redb records the file's layout length in its header, so any cut is seen at open
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("log.redb");
    build_store(&original);
    let bytes = fs::read(&original).unwrap();
    let mut cuts: Vec<usize> = vec![1, 7, 64, 511, 512, 4095, 4096, 4097];
    cuts.extend((1..8).map(|i| bytes.len() * i / 8));
    cuts.push(bytes.len() - 1);
    for cut in cuts {
        let path = dir.path().join(format!("cut-{cut}.redb"));
        fs::write(&path, &bytes[..cut]).unwrap();
        match Store::<Op>::open_existing(&path, options()) {
            Err(Error::NotAStore { .. } | Error::Corrupt { .. }) => {}
            other => panic!(
                "cut at {cut} of {}: expected NotAStore or Corrupt, got {other:?}",
                bytes.len()
            ),
        }
    }
}

#[test]
fn garbage_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (i, len) in [1usize, 100, 4096, 10_000, 100_000].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect();
        let path = dir.path().join(format!("garbage-{i}.redb"));
        fs::write(&path, &bytes).unwrap();
        match Store::<Op>::open(&path) {
            Err(Error::NotAStore { .. } | Error::Corrupt { .. } | Error::Open { .. }) => {}
            other => panic!("{len} random bytes: expected a typed error, got {other:?}"),
        }
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "the garbage file was changed"
        );
    }
}

#[test]
fn create_refuses_an_existing_path_and_open_existing_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    assert!(matches!(
        Store::<Op>::open_existing(&path, options()),
        Err(Error::NotFound { .. })
    ));
    assert!(!path.exists(), "open_existing created the file");
    let store: Store = Store::create(&path, options()).unwrap();
    store.insert([mk(1, 10, put("b", "k", 1), &[])]).unwrap();
    drop(store);
    assert!(matches!(
        Store::<Op>::create(&path, options()),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(
        Store::<Op>::open_existing(&path, options()).unwrap().len(),
        1
    );
    assert_eq!(Store::<Op>::open(&path).unwrap().len(), 1);
}

// Damage that redb's page checksums cannot see: rows rewritten through redb itself (a bug, a
// tool, an attacker with write access). Open must refuse inconsistent keys with a typed error;
// verify and the reads must report anything else without panicking.

fn first_entry(txn: &redb::WriteTransaction) -> ((u64, Key32), Vec<u8>) {
    let t = txn.open_table(ENTRIES).unwrap();
    let (k, v) = t.first().unwrap().unwrap();
    (k.value(), v.value().to_vec())
}

fn expect_corrupt(path: &Path, table: &str) {
    match Store::<Op>::open_existing(path, options()) {
        Err(Error::Corrupt { table: t, detail }) => {
            assert_eq!(t, table, "{detail}");
            assert!(!detail.is_empty());
        }
        other => panic!(
            "{}: expected Corrupt in {table}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn inconsistent_keys_are_refused_at_open_before_the_index_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("log.redb");
    build_store(&original);
    let d = dir.path();

    let p = edited(d, &original, "no-by-hash.redb", |txn| {
        let ((_, hash), _) = first_entry(txn);
        txn.open_table(BY_HASH).unwrap().remove(hash).unwrap();
    });
    expect_corrupt(&p, "by_hash");

    let p = edited(d, &original, "wrong-hlc.redb", |txn| {
        let ((hlc, hash), _) = first_entry(txn);
        txn.open_table(BY_HASH)
            .unwrap()
            .insert(hash, hlc + 1)
            .unwrap();
    });
    expect_corrupt(&p, "by_hash");

    // same row counts, but by_hash names an entry that is not applied
    let p = edited(d, &original, "swapped.redb", |txn| {
        let ((_, hash), _) = first_entry(txn);
        let mut t = txn.open_table(BY_HASH).unwrap();
        let hlc = t.remove(hash).unwrap().unwrap().value();
        t.insert([0xee; 32], hlc).unwrap();
    });
    expect_corrupt(&p, "by_hash");

    let p = edited(d, &original, "max-hlc.redb", |txn| {
        let ((_, hash), body) = first_entry(txn);
        let mut e = txn.open_table(ENTRIES).unwrap();
        e.insert((u64::MAX, [0xdd; 32]), body.as_slice()).unwrap();
        txn.open_table(BY_HASH)
            .unwrap()
            .insert([0xdd; 32], u64::MAX)
            .unwrap();
        let _ = hash;
    });
    expect_corrupt(&p, "entries");

    let p = edited(d, &original, "no-version.redb", |txn| {
        txn.open_table(META)
            .unwrap()
            .remove("schema_version")
            .unwrap();
    });
    expect_corrupt(&p, "meta");
    // refused without repair: the store stamped nothing (redb's page check may commit a
    // transaction of its own, so the bytes are not compared), and it is refused again
    {
        let db = redb::Database::open(&p).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let meta = txn.open_table(META).unwrap();
        assert!(meta.get("schema_version").unwrap().is_none());
        let entries = txn.open_table(ENTRIES).unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&entries).unwrap(), APPLIED);
    }
    expect_corrupt(&p, "meta");

    let p = edited(d, &original, "short-version.redb", |txn| {
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", [1u8, 0, 0].as_slice())
            .unwrap();
    });
    expect_corrupt(&p, "meta");

    let p = edited(d, &original, "no-heads.redb", |txn| {
        txn.delete_table(HEADS).unwrap();
    });
    expect_corrupt(&p, "heads");

    let p = edited(d, &original, "heads-retyped.redb", |txn| {
        txn.delete_table(HEADS).unwrap();
        txn.open_table(TableDefinition::<u64, u64>::new("heads"))
            .unwrap();
    });
    expect_corrupt(&p, "heads");

    let p = edited(d, &original, "no-meta.redb", |txn| {
        txn.delete_table(META).unwrap();
    });
    assert!(matches!(
        Store::<Op>::open_existing(&p, options()),
        Err(Error::NotAStore { .. })
    ));

    // an empty redb database (what an interrupted creation by another tool could leave)
    let p = d.join("bare.redb");
    drop(redb::Database::create(&p).unwrap());
    assert!(matches!(
        Store::<Op>::open(&p),
        Err(Error::NotAStore { .. })
    ));

    // the untouched original still opens, whole
    let store: Store = Store::open_existing(&original, options()).unwrap();
    assert_eq!(store.len(), APPLIED);
}

#[test]
fn undecodable_rows_are_typed_errors_and_verify_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("log.redb");
    let applied = build_store(&original);
    let p = edited(dir.path(), &original, "garbled.redb", |txn| {
        let ((hlc, hash), _) = first_entry(txn);
        txn.open_table(ENTRIES)
            .unwrap()
            .insert((hlc, hash), [0xffu8; 7].as_slice())
            .unwrap();
        let mut view = txn.open_table(VIEW).unwrap();
        view.insert(
            [0xffu8, 0xff, 0xff].as_slice(),
            (1, [1; 32], [2; 32], false),
        )
        .unwrap();
    });
    let store: Store = Store::open_existing(&p, options()).unwrap();
    let report = store.verify().unwrap();
    assert!(report.problems.iter().any(
        |p| matches!(p, oplog_store::Problem::BadEntry { at, .. } if at.starts_with("entries"))
    ));
    assert!(!report.is_ok());
    assert!(matches!(
        store.entry(&applied[0]),
        Err(Error::Corrupt {
            table: "entries",
            ..
        })
    ));
    assert!(matches!(
        store.log(EntryKey::MIN, 10),
        Err(Error::Corrupt {
            table: "entries",
            ..
        })
    ));
    assert!(matches!(
        store.view(),
        Err(Error::Corrupt { table: "view", .. })
    ));
}

/// A small deterministic generator (xorshift), so failures reproduce from the seed printed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// [`Rng::below`] for an index into something `n` long.
    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).expect("a value below a usize fits one")
    }
    /// [`Rng::below`] for a byte.
    fn small(&mut self, n: u8) -> u8 {
        u8::try_from(self.below(u64::from(n))).expect("a value below a u8 fits one")
    }
    fn bytes(&mut self, like: &[u8]) -> Vec<u8> {
        let mut v = like.to_vec();
        match self.below(3) {
            0 if !v.is_empty() => {
                let i = self.index(v.len());
                v[i] ^= 1 << self.below(8);
            }
            1 if !v.is_empty() => v.truncate(self.index(v.len())),
            _ => {
                v = (0..self.below(80))
                    .map(|_| self.next().to_le_bytes()[0])
                    .collect();
            }
        }
        v
    }
    fn k32(&mut self, like: Key32) -> Key32 {
        let mut k = like;
        k[self.index(32)] ^= 1 + self.small(255);
        k
    }
}

/// Rewrites one row of a random table (every table but `meta`, the cap tables included) with a
/// random value or key through redb.
fn mutate(txn: &redb::WriteTransaction, rng: &mut Rng) -> String {
    // a random row, made owned by `$own` (given the row's key and value)
    macro_rules! nth {
        ($t:expr, |$k:ident, $v:ident| $own:expr) => {{
            let n = redb::ReadableTableMetadata::len(&$t).unwrap();
            if n == 0 {
                return "empty table".into();
            }
            let i = usize::try_from(rng.below(n)).unwrap();
            let row = $t.iter().unwrap().nth(i).unwrap().unwrap();
            let ($k, $v) = (row.0.value(), row.1.value());
            $own
        }};
    }
    match rng.below(15) {
        0 => {
            let mut t = txn.open_table(ENTRIES).unwrap();
            let (k, v) = nth!(t, |k, v| (k, v.to_vec()));
            let v = rng.bytes(&v);
            t.insert(k, v.as_slice()).unwrap();
            "entries value".into()
        }
        1 => {
            let mut t = txn.open_table(BY_HASH).unwrap();
            let (k, v) = nth!(t, |k, v| (k, v));
            let v = v ^ (1 << rng.below(64));
            t.insert(k, v).unwrap();
            "by_hash value".into()
        }
        2 => {
            let mut t = txn.open_table(HEADS).unwrap();
            let (k, v) = nth!(t, |k, v| (k, v));
            let k2 = rng.k32(k);
            t.remove(k).unwrap();
            t.insert(k2, (v.0 ^ rng.below(4), v.1)).unwrap();
            "heads row".into()
        }
        3 => {
            let mut t = txn.open_table(HELD).unwrap();
            let (k, v) = nth!(t, |k, v| (k, v.to_vec()));
            let v = rng.bytes(&v);
            t.insert(k, v.as_slice()).unwrap();
            "held value".into()
        }
        4 => {
            let mut t = txn.open_table(WAITING).unwrap();
            let k = nth!(t, |k, _v| k);
            t.remove(k).unwrap();
            t.insert((rng.k32(k.0), k.1), ()).unwrap();
            "waiting key".into()
        }
        5 => {
            let mut t = txn.open_table(DEFERRED).unwrap();
            let (k, v) = nth!(t, |k, v| (k, (v.0, v.1.to_vec())));
            let v = (v.0 ^ (1 + rng.below(1 << 20)), rng.bytes(&v.1));
            t.insert(k, (v.0, v.1.as_slice())).unwrap();
            "deferred value".into()
        }
        6 => {
            let mut t = txn.open_table(DEFERRED_DUE).unwrap();
            let k = nth!(t, |k, _v| k);
            t.remove(k).unwrap();
            t.insert((k.0.wrapping_add(rng.below(3)), rng.k32(k.1)), ())
                .unwrap();
            "deferred_due key".into()
        }
        7 => {
            let mut t = txn.open_table(VIEW).unwrap();
            let (k, v) = nth!(t, |k, v| (k.to_vec(), v));
            let k2 = rng.bytes(&k);
            let v = (v.0 ^ rng.below(4), rng.k32(v.1), v.2, !v.3);
            t.remove(k.as_slice()).unwrap();
            t.insert(k2.as_slice(), v).unwrap();
            "view row".into()
        }
        9 => {
            let mut t = txn.open_table(HELD_LACKING).unwrap();
            let (k, v) = nth!(t, |k, v| (k, v));
            t.insert(k, v.wrapping_add(1 + u32::from(rng.small(3))))
                .unwrap();
            "held_lacking value".into()
        }
        10 => {
            let mut t = txn.open_table(HELD_ORDER).unwrap();
            let k = nth!(t, |k, _v| k);
            t.remove(k).unwrap();
            let k2 = if rng.below(2) == 0 {
                (k.0 ^ (1 << rng.below(64)), k.1)
            } else {
                (k.0, rng.k32(k.1))
            };
            t.insert(k2, ()).unwrap();
            "held_order key".into()
        }
        11 => {
            let mut t = txn.open_table(HELD_BY_AUTHOR).unwrap();
            let k = nth!(t, |k, _v| k);
            t.remove(k).unwrap();
            t.insert((rng.k32(k.0), k.1, k.2), ()).unwrap();
            "held_by_author key".into()
        }
        12 => {
            let mut t = txn.open_table(DEFERRED_BY_AUTHOR).unwrap();
            let k = nth!(t, |k, _v| k);
            t.remove(k).unwrap();
            t.insert((k.0, k.1 ^ (1 + rng.below(1 << 20)), k.2), ())
                .unwrap();
            "deferred_by_author key".into()
        }
        13 => {
            let mut t = txn.open_table(KEPT_USAGE).unwrap();
            let (k, v) = nth!(t, |k, v| (k, v));
            // another count, possibly the zero a live store never writes
            t.insert(k, v.wrapping_add(1 + rng.below(u64::MAX - 1)))
                .unwrap();
            "kept_usage value".into()
        }
        14 => {
            let mut t = txn.open_table(KEPT_BYTES).unwrap();
            let (k, v) = nth!(t, |k, v| (k, v));
            t.insert(k, v.wrapping_add(1 + rng.below(1 << 16))).unwrap();
            "kept_bytes value".into()
        }
        _ => {
            let mut t = txn.open_table(WRITES).unwrap();
            let (reg0, hlc, hash) = nth!(t, |k, _v| (k.0.to_vec(), k.1, k.2));
            let reg = rng.bytes(&reg0);
            let k2 = (reg.as_slice(), hlc ^ rng.below(4), rng.k32(hash));
            t.remove((reg0.as_slice(), hlc, hash)).unwrap();
            t.insert(k2, ()).unwrap();
            "writes row".into()
        }
    }
}

/// 120 stores, each with 1-3 rows of any table rewritten (every edit changes the row): open
/// is a typed error, or `verify` lists a problem; every read returns. All in this process, so
/// any panic fails the test.
#[test]
fn rewritten_rows_never_panic_open_verify_or_reads() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("log.redb");
    build_store(&original);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for seed in 1..=120u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut what = Vec::new();
        let p = edited(dir.path(), &original, &format!("m{seed}.redb"), |txn| {
            for _ in 0..=rng.below(3) {
                what.push(mutate(txn, &mut rng));
            }
        });
        let outcome = probe(&p);
        assert!(
            outcome.starts_with("open-error") || outcome == "verify-problems",
            "seed {seed} ({what:?}): {outcome}"
        );
        *outcomes
            .entry(outcome.split(' ').next().unwrap().to_string())
            .or_default() += 1;
        let _ = fs::remove_file(&p);
    }
    eprintln!("{outcomes:?}");
    // both ways of noticing are exercised
    assert!(outcomes.len() == 2, "{outcomes:?}");
}
