//! Helpers shared by the integration tests: keys, entries, a manual clock.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use oplog_store::protocol::{Hash, Hlc, LogEntry, NodeId, ObjectId, Op, SigningKey, WallClock};

pub fn sk(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn node(seed: u8) -> NodeId {
    NodeId(sk(seed).verifying_key().to_bytes())
}

pub fn put(bucket: &str, key: &str, v: u8) -> Op {
    Op::Put {
        bucket: bucket.into(),
        key: key.into(),
        object_id: ObjectId([v; 32]),
    }
}

pub fn del(bucket: &str, key: &str) -> Op {
    Op::Delete {
        bucket: bucket.into(),
        key: key.into(),
    }
}

pub fn mk(seed: u8, hlc: u64, action: Op, parents: &[Hash]) -> LogEntry {
    LogEntry::sign(&sk(seed), Hlc(hlc), action, parents.to_vec()).expect("valid entry")
}

/// A linear chain of `n` puts by author 1, HLC 1..=n, each the child of the one before.
pub fn chain(n: u64, first_hlc: u64) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    for i in 0..n {
        let parents: Vec<Hash> = out.last().map(|e| vec![e.hash]).unwrap_or_default();
        out.push(mk(
            1,
            first_hlc + i,
            // the low byte is enough: object ids only need to vary
            put("b", &format!("k{}", i % 7), i.to_le_bytes()[0]),
            &parents,
        ));
    }
    out
}

/// A wall clock the test moves by hand.
#[derive(Clone, Default)]
pub struct ManualClock(pub Arc<AtomicU64>);

impl ManualClock {
    pub fn new(now: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(now)))
    }
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl WallClock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.get()
    }
}

/// The store's tables as its schema defines them, for tests that damage a file through redb.
pub mod tables {
    use redb::TableDefinition;

    pub type Key32 = [u8; 32];
    pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    pub const ENTRIES: TableDefinition<(u64, Key32), &[u8]> = TableDefinition::new("entries");
    pub const BY_HASH: TableDefinition<Key32, u64> = TableDefinition::new("by_hash");
    pub const HEADS: TableDefinition<Key32, (u64, Key32)> = TableDefinition::new("heads");
    pub const HELD: TableDefinition<Key32, &[u8]> = TableDefinition::new("held");
    pub const WAITING: TableDefinition<(Key32, Key32), ()> = TableDefinition::new("waiting");
    pub const DEFERRED: TableDefinition<Key32, (u64, &[u8])> = TableDefinition::new("deferred");
    pub const DEFERRED_DUE: TableDefinition<(u64, Key32), ()> =
        TableDefinition::new("deferred_due");
    pub const VIEW: TableDefinition<&[u8], (u64, Key32, Key32, bool)> =
        TableDefinition::new("view");
    pub const WRITES: TableDefinition<(&[u8], u64, Key32), ()> = TableDefinition::new("writes");
    pub const HELD_LACKING: TableDefinition<Key32, u32> = TableDefinition::new("held_lacking");
    pub const HELD_ORDER: TableDefinition<(u64, Key32), ()> = TableDefinition::new("held_order");
    pub const HELD_BY_AUTHOR: TableDefinition<(Key32, u64, Key32), ()> =
        TableDefinition::new("held_by_author");
    pub const DEFERRED_BY_AUTHOR: TableDefinition<(Key32, u64, Key32), ()> =
        TableDefinition::new("deferred_by_author");
    pub const KEPT_USAGE: TableDefinition<(u8, Key32), u64> = TableDefinition::new("kept_usage");
    pub const KEPT_BYTES: TableDefinition<u8, u64> = TableDefinition::new("kept_bytes");
}

/// A copy of `original` at `name`, with `edit` applied in one redb write transaction.
pub fn edited(
    dir: &Path,
    original: &Path,
    name: &str,
    edit: impl FnOnce(&redb::WriteTransaction),
) -> PathBuf {
    let path = dir.join(name);
    fs::copy(original, &path).unwrap();
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    edit(&txn);
    txn.commit().unwrap();
    path
}
