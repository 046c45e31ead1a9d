//! Crash safety: a writer process killed at random points, mid-batch, reopens with whole
//! batches only, nothing it acknowledged lost, and a store that passes `verify()`; the same
//! for a sync's buffered batches, where "acknowledged" is what `persist()` (or the automatic
//! durable commit) made durable.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use oplog_store::protocol::{EntryKey, Hash, Hlc, Range, RangeStore, VerifiedEntry};
use oplog_store::{Store, MAX_BUFFERED_COMMITS};

const BATCH: u64 = 2_000;
const DIR_VAR: &str = "OPLOG_STORE_CRASH_DIR";

/// The writer run in a child process: appends batches of `BATCH` chained entries forever,
/// printing `acked <len>` after each committed batch.
#[test]
#[ignore = "run by kill_mid_batch_then_reopen in a child process"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let store: Store = Store::open(std::path::Path::new(&dir).join("log.redb")).unwrap();
    let mut stdout = std::io::stdout();
    loop {
        let len = store.len();
        let mut parent: Vec<Hash> = store.heads().unwrap().iter().map(|(k, _)| k.hash).collect();
        let mut batch = Vec::new();
        for i in 0..BATCH {
            let hlc = 1_000 + len + i;
            let e = mk(
                1,
                hlc,
                put("b", &format!("k{}", hlc % 97), (hlc % 251) as u8),
                &parent,
            );
            parent = vec![e.hash];
            batch.push(e);
        }
        let report = store.insert(batch).unwrap();
        assert_eq!(report.applied.len() as u64, BATCH);
        writeln!(stdout, "acked {}", store.len()).unwrap();
        stdout.flush().unwrap();
    }
}

#[test]
fn kill_mid_batch_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = 0u64;
    // kill at different points: right after an ack (while the next batch is being signed)
    // and a little later (while it is being written and committed)
    for (round, delay_ms) in [0u64, 7, 23, 41].into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "crash_child_writer", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acks_this_round = 0;
        while acks_this_round < 2 {
            let line = lines
                .next()
                .expect("child wrote a line before exiting")
                .unwrap();
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.trim().parse().unwrap();
                acks_this_round += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // acks printed between our last read and the kill count as well
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.trim().parse().unwrap();
            }
        }

        let store: Store = Store::open(dir.path().join("log.redb")).unwrap();
        let len = store.len();
        assert!(
            len >= acked,
            "round {round}: {len} entries, {acked} acknowledged"
        );
        assert_eq!(
            len % BATCH,
            0,
            "round {round}: a batch was half applied ({len})"
        );
        assert!(
            len <= acked + BATCH,
            "round {round}: more than one unacknowledged batch"
        );
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
        // the chain is whole: one head, every HLC from the first to the last present
        assert_eq!(store.heads().unwrap().len(), 1);
        let keys = store.snapshot().keys(&Range::FULL, usize::MAX).unwrap();
        assert!(keys
            .iter()
            .zip(1_000u64..)
            .all(|(k, hlc): (&EntryKey, u64)| k.hlc.0 == hlc));
        acked = len;
    }
    assert!(acked >= 8 * BATCH);
}

/// Entries per buffered batch (small: the child must get through more than
/// [`MAX_BUFFERED_COMMITS`] batches per round in a debug build).
const SYNC_BATCH: u64 = 200;
/// The child persists after this many buffered batches, so every cycle also crosses the
/// automatic durable commit at [`MAX_BUFFERED_COMMITS`].
const PERSIST_EVERY: u32 = MAX_BUFFERED_COMMITS + 8;

/// A sync's writer in a child process: verified batches committed with
/// `insert_verified_buffered`, `persist()` after every `PERSIST_EVERY`; prints
/// `buffered <len> <i>` after the i-th batch since the last persist and `persisted <len>`.
#[test]
#[ignore = "run by kill_buffered_sync_then_reopen in a child process"]
fn crash_child_buffered_sync() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let store: Store = Store::open(std::path::Path::new(&dir).join("log.redb")).unwrap();
    let mut stdout = std::io::stdout();
    let mut since_persist = 0u32;
    loop {
        let len = store.len();
        let mut parent: Vec<Hash> = store.heads().unwrap().iter().map(|(k, _)| k.hash).collect();
        let mut batch = Vec::new();
        for i in 0..SYNC_BATCH {
            let hlc = 1_000 + len + i;
            let action = put("b", &format!("k{}", hlc % 97), (hlc % 251) as u8);
            let e = VerifiedEntry::sign(&sk(1), Hlc(hlc), action, parent.clone()).unwrap();
            parent = vec![e.hash];
            batch.push(e);
        }
        let report = store.insert_verified_buffered(batch).unwrap();
        assert_eq!(report.applied.len() as u64, SYNC_BATCH);
        since_persist += 1;
        writeln!(stdout, "buffered {} {since_persist}", store.len()).unwrap();
        if since_persist == PERSIST_EVERY {
            store.persist().unwrap();
            since_persist = 0;
            writeln!(stdout, "persisted {}", store.len()).unwrap();
        }
        stdout.flush().unwrap();
    }
}

/// A sync's buffered batches under SIGKILL: the store reopens valid at a whole batch, with
/// everything `persist()` acknowledged and every batch up to the automatic durable commit
/// (the `MAX_BUFFERED_COMMITS`-th in a row) still there, and the chain unbroken.
#[test]
fn kill_buffered_sync_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut durable = 0u64;
    for (round, delay_ms) in [0u64, 3, 11, 29, 53].into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child_buffered_sync",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        let note = |line: &str, durable: &mut u64| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["persisted", len] => *durable = len.parse().unwrap(),
                ["buffered", len, i] if i.parse::<u32>().unwrap() == MAX_BUFFERED_COMMITS => {
                    *durable = len.parse().unwrap();
                }
                _ => {}
            }
        };
        // past one persist() and one automatic durable commit
        while seen < PERSIST_EVERY + MAX_BUFFERED_COMMITS + 3 {
            let line = lines
                .next()
                .expect("child wrote a line before exiting")
                .unwrap();
            note(&line, &mut durable);
            seen += u32::from(line.starts_with("buffered"));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        for line in lines.map_while(Result::ok) {
            note(&line, &mut durable);
        }

        let store: Store = Store::open(dir.path().join("log.redb")).unwrap();
        let len = store.len();
        assert!(
            len >= durable,
            "round {round}: {len} entries, {durable} made durable"
        );
        assert_eq!(
            len % SYNC_BATCH,
            0,
            "round {round}: a batch was half applied ({len})"
        );
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
        assert_eq!(store.heads().unwrap().len(), 1);
        let keys = store.snapshot().keys(&Range::FULL, usize::MAX).unwrap();
        assert!(keys
            .iter()
            .zip(1_000u64..)
            .all(|(k, hlc): (&EntryKey, u64)| k.hlc.0 == hlc));
        durable = len;
    }
}
