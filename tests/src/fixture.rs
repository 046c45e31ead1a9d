//! Signed histories for tests and benchmarks: chains of writes by one author, built fast and
//! inserted into real stores in batches.

use oplog_protocol::{EntryKey, Hash, Hlc, LogEntry, ObjectId, Op, SigningKey};
use oplog_store::Store;

/// A wall time a little after every stamp the fixtures write: use it as the stores' clock.
pub const NOW: u64 = 1_790_000_000_000_000_000;

/// First stamp the fixtures write.
pub const START: u64 = 1_780_000_000_000_000_000;

/// An author writing a chain: each entry's parent is the author's previous entry (or the
/// parents given to [`Author::on`]).
#[derive(Debug, Clone)]
pub struct Author {
    key: SigningKey,
    hlc: u64,
    heads: Vec<Hash>,
    written: u64,
    key_len: usize,
}

impl Author {
    /// Author `seed`, stamping from `hlc` on.
    pub fn new(seed: u8, hlc: u64) -> Self {
        Author {
            key: SigningKey::from_bytes(&[seed; 32]),
            hlc,
            heads: Vec::new(),
            written: 0,
            key_len: 0,
        }
    }

    /// Pads every object key to `len` bytes (at most 1,024), for fat entries.
    #[must_use]
    pub fn key_len(mut self, len: usize) -> Self {
        self.key_len = len.min(oplog_protocol::MAX_OBJECT_KEY_LEN);
        self
    }

    /// Continues on top of `parents` (another author's heads, say).
    #[must_use]
    pub fn on(mut self, parents: Vec<Hash>) -> Self {
        self.heads = parents;
        self
    }

    /// The author's signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The next `n` writes: puts of keys `k0..k999` in bucket `b`, each stamped 1 µs after
    /// the last.
    ///
    /// # Panics
    /// Never for these fixed, valid writes (signing refuses only invalid entries).
    pub fn write(&mut self, n: usize) -> Vec<LogEntry<Op>> {
        (0..n)
            .map(|_| {
                self.hlc += 1_000;
                self.written += 1;
                let i = self.written;
                let op = Op::Put {
                    bucket: "b".into(),
                    key: format!(
                        "k{:0>width$}",
                        i % 1000,
                        width = self.key_len.saturating_sub(1)
                    ),
                    object_id: ObjectId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
                };
                let e = LogEntry::sign(
                    &self.key,
                    Hlc(self.hlc),
                    op,
                    std::mem::take(&mut self.heads),
                )
                .expect("fixture entries are valid");
                self.heads = vec![e.hash];
                e
            })
            .collect()
    }

    /// The stamp of the last write.
    pub fn hlc(&self) -> u64 {
        self.hlc
    }

    /// The hash of the last write (or the parents given to [`Author::on`] before any).
    pub fn heads(&self) -> &[Hash] {
        &self.heads
    }
}

/// Inserts `entries` in batches of 4,096 and checks every one was applied.
///
/// # Panics
/// If the store fails or refuses an entry: a fixture bug.
pub fn insert_all(store: &Store, entries: &[LogEntry<Op>]) {
    for chunk in entries.chunks(4096) {
        let report = store.insert(chunk.to_vec()).expect("insert");
        assert_eq!(report.applied.len(), chunk.len(), "fixture entries apply");
    }
}

/// Every applied entry's hash, in key order.
///
/// # Panics
/// If the store fails to read.
pub fn hashes(store: &Store) -> Vec<Hash> {
    store
        .log(EntryKey::MIN, usize::MAX)
        .expect("log")
        .into_iter()
        .map(|e| e.hash)
        .collect()
}

/// Both stores hold the same entries, heads and view, and both verify clean.
///
/// # Panics
/// If they differ, or if either store fails or finds a problem.
pub fn assert_converged(a: &Store, b: &Store) {
    assert_eq!(a.len(), b.len(), "entry counts differ");
    assert_eq!(hashes(a), hashes(b), "entry sets differ");
    assert_eq!(a.heads().unwrap(), b.heads().unwrap(), "heads differ");
    assert_eq!(a.view().unwrap(), b.view().unwrap(), "views differ");
    for s in [a, b] {
        let report = s.verify().expect("verify runs");
        assert!(
            report.is_ok(),
            "verify found problems: {:?}",
            report.problems
        );
    }
}
