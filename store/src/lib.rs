//! redb storage for oplog-sync: entries keyed by `(HLC, hash)`, range fingerprints in
//! `O(log n)`, a DAG that is always closed under parents, and the last-writer-wins view.
//!
//! ```
//! use oplog_store::{Store, protocol::{LogEntry, Op, ObjectId, Hlc, RangeStore, Range, SigningKey}};
//!
//! let dir = tempfile::tempdir()?;
//! let store: Store = Store::open(dir.path().join("log.redb"))?;
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let put = Op::Put { bucket: "photos".into(), key: "cat.jpg".into(), object_id: ObjectId([1; 32]) };
//! let first = LogEntry::sign(&key, Hlc(1), put, vec![])?;
//! let del = Op::Delete { bucket: "photos".into(), key: "cat.jpg".into() };
//! let second = LogEntry::sign(&key, Hlc(2), del, vec![first.hash])?;
//!
//! // Child first: it is held back until its parent arrives, then applied.
//! let report = store.insert([second.clone()])?;
//! assert!(report.applied.is_empty());
//! assert_eq!(store.missing()?, vec![first.hash]);
//! let report = store.insert([first.clone()])?;
//! assert_eq!(report.applied, vec![first.hash, second.hash]);
//!
//! assert_eq!(store.get("photos", "cat.jpg")?, None); // deleted: the tombstone wins
//! assert_eq!(store.snapshot().count(&Range::FULL)?, 2);
//! assert_eq!(store.heads()?.len(), 1);
//! assert!(store.verify()?.is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is stored
//!
//! One redb file (see [`schema`] for the tables). The *applied* entries are the set that range
//! reconciliation sees; it is closed under parents. An entry whose parents are not all applied
//! is *held back* and applied as soon as they are; one stamped too far ahead of local time is
//! *deferred* (see [`Store::retry_deferred`]). The insert rules are
//! [`oplog_protocol::replica`], the code the reference `MemoryReplica` runs too, here
//! over the tables of one write transaction; [`Store::insert`] returns the same
//! [`InsertReport`], and the model tests check both agree.
//!
//! # Range fingerprints in `O(log n)`: the index
//!
//! redb has no augmented B-tree, so the [`RangeStore`](protocol::RangeStore) queries are
//! answered by an **in-memory augmented B+tree** over the applied keys,
//! [`RangeIndex`] (the same tree [`MemoryStore`](protocol::MemoryStore)
//! uses), built at open from one ordered scan of the `entries` table and updated after every
//! commit. Leaves hold up to 32 keys, inner nodes up to 32 children, and every node caches its
//! key count, the 4096-bit [`Aggregate`](protocol::Aggregate) of its subtree and its
//! Negentropy id sum. Since both sums form groups, the sum of `[a, b)` is
//! `prefix(b) - prefix(a)`; each prefix is one descent adding the cached sums left of the path
//! plus at most 16 keys measured in the leaf. Count and `key_at` are the same descent on
//! counts. Neither dialect's fingerprint scans a range.
//!
//! [`Store::snapshot`] freezes the applied set in `O(1)` (nodes are shared through `Arc` and
//! copied on write, one path per insert while a snapshot holds them): run each reconciliation
//! session over one [`Store::snapshot`] (spec 8.1, consistent reads), so that entries applied
//! meanwhile can neither break a split nor keep the session from ending.
//!
//! Costs, measured by `store-bench`
//! (`cargo run --release -p oplog-benches --bin store-bench`; 2 cores, release, batches of
//! 10 000 entries per commit; rows up to 10^5 from `-- --max 100000` on an idle machine, the
//! 10^6 row from a full run):
//!
//! | entries | insert/s | open | fingerprint of a random range | Negentropy fingerprint | count + `key_at` | flat scan of the range | disk B/entry | index B/entry |
//! | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
//! | 10^3 | 29 100 | 1.4 ms | 4.9 µs | 0.4 µs | 0.3 µs | 90 µs | 598 | 86 |
//! | 10^4 | 31 700 | 9.2 ms | 5.7 µs | 0.5 µs | 0.4 µs | 0.8 ms | 875 | 84 |
//! | 10^5 | 26 600 | 101 ms | 7.4 µs | 0.8 µs | 0.6 µs | 6.8 ms | 1 352 | 84 |
//! | 10^6 | 13 800 | 1.4 s | 16.7 µs | 4.0 µs | 3.4 µs | - | 570 | 84 |
//!
//! - memory: the 40-byte key plus, per leaf of 16-32 keys, one 520-byte aggregate and one
//!   40-byte Negentropy sum: about 84 bytes per applied entry (84 MB for 10^6 entries). An
//!   open snapshot adds at most one copied path (a few KB) per insert made while it is held;
//! - open time: redb's page checksums, one ordered scan of `entries` checked against
//!   `by_hash`, and one BLAKE3-XOF expansion per key spread over the cores: about 1.4 s per
//!   10^6 entries, linear in `n`; keys out of order in the table (a damaged file) are an
//!   [`Error::Corrupt`], not a panic;
//! - write amplification: nothing of the index is on disk; in memory, one addition of each sum
//!   per tree level per inserted key, plus hashing 16 keys when a leaf splits;
//! - query time: a range fingerprint costs 5-28 µs from 10^3 to 10^6 entries (ratio 1.7 to
//!   3.1 at the largest size over 10^3 across runs), dominated by the at most 32 keys hashed
//!   at the two leaf edges; the Negentropy fingerprint adds 32-byte ids instead and costs a
//!   few µs; a flat scan (iroh-docs' approach) grows with the range.
//!
//! Inserting is dominated by ed25519 verification and key decompression (about two thirds of
//! the CPU time; large batches are verified on all cores before the write transaction) and by
//! redb's copy-on-write of the pages that the random-hash indexes (`by_hash`, `writes`) touch,
//! which is also why the file holds 570-1 350 bytes per entry for entries of about 200 bytes.
//!
//! Already verified entries in batches of one 1 MiB sync frame (`store-bench -- --verified`,
//! 187-byte entries, one durable commit per batch; a shared machine, so ±25% between runs):
//! [`Store::insert_verified`] 46 500 entries/s at 10^5 and 18 800 at 10^6, [`Store::insert`]
//! 12 500 and 9 500. Half of `insert_verified`'s time at 10^6 is redb's commit (writing,
//! syncing and checksumming the dirty pages), so the rows that go to random-key tables are
//! gathered per transaction and written once in key order (+25% at 10^5, +9% at 10^6). A
//! sync's batches go through [`Store::insert_verified_buffered`] instead, which skips the
//! wait for the disk on all but every 16th commit and the last ([`Store::persist`]); see
//! *Crash safety* below.
//!
//! The alternative, a persisted tree of cached aggregates, would make open read `n / 24`
//! aggregates instead of hashing `n` keys, at the price of a 520-byte read-modify-write per
//! tree level on every insert (more copy-on-write pages per commit). Open at 10^6 entries
//! takes about 1.4 seconds, so the in-memory tree is kept; persisting leaf aggregates as
//! an open-time cache is the upgrade path if logs grow to 10^7 and beyond.
//!
//! # Crash safety
//!
//! Each [`Store::insert`] is one redb write transaction committed with immediate durability:
//! when it returns `Ok`, the batch is on disk; a process killed during it reopens with none of
//! the batch. The in-memory index is only updated after the commit succeeded, and rebuilt
//! from disk at open. [`Store::verify`] re-checks everything from scratch.
//!
//! A sync is the one writer that may skip the wait for the disk:
//! [`Store::insert_verified_buffered`] commits a batch without flushing it (redb's
//! `Durability::None`), and [`Store::persist`] (which the node's driver calls when a session
//! ends) flushes every such commit at once. A crash in between reopens the store at its last
//! durable commit: whole batches only, closed under parents, and the lost batches are simply
//! fetched again by the next sync. Nothing a peer was told is lost that way, because a sync
//! acknowledges nothing; a node's own writes always go through a durable commit (which also
//! flushes every buffered commit before it). At most [`MAX_BUFFERED_COMMITS`] commits in a row
//! are buffered, which bounds both what a crash can lose and the pages redb cannot reuse until
//! a durable commit.
//!
//! # Opening and creating
//!
//! A store is created only where no file exists, so a damaged file can never come back as an
//! empty store (silently forgetting the whole log):
//!
//! | call | no file at `path` | a file at `path` |
//! | --- | --- | --- |
//! | [`Store::open`], [`Store::open_with`] | creates a new store | opens it as [`Store::open_existing`] does |
//! | [`Store::create`] | creates a new store | [`Error::AlreadyExists`], file untouched |
//! | [`Store::open_existing`] | [`Error::NotFound`], nothing created | opens it, or a typed error |
//!
//! Opening an existing file checks, in this order, and stops at the first failure:
//!
//! 1. the file is not empty (a zero-byte file, which an interrupted creation or a truncation
//!    leaves, is [`Error::NotAStore`]);
//! 2. redb recognises it ([`Error::NotAStore`] otherwise) and, with
//!    [`Options::check_integrity_on_open`] (the default), the checksum of every page of the
//!    committed trees matches ([`Error::Corrupt`] with table `"(file)"` otherwise). This is
//!    redb's own check; without it redb documents that a file damaged outside redb may make
//!    it panic. It reads the whole file once more: at 100 000 entries (a 68 MB file), open
//!    took 115 ms without it and 137 ms with it (store crate at opt-level 1, redb at 3);
//! 3. the `meta` table holds this build's [`schema::SCHEMA_VERSION`] ([`Error::NotAStore`]
//!    without a `meta` table, [`Error::Corrupt`] if it lacks the version or it is malformed,
//!    [`Error::UnknownSchemaVersion`] if it is another) and every table exists with its types
//!    ([`Error::Corrupt`] naming the table);
//! 4. the applied keys, read in one scan to build the range index, are strictly ascending with
//!    every HLC at most [`MAX_HLC`](protocol::MAX_HLC), and `by_hash` holds exactly the
//!    same `(hash, HLC)` pairs ([`Error::Corrupt`] otherwise), so the index is never built
//!    from inconsistent input.
//!
//! The store writes nothing to a file it refuses (redb's page check commits a transaction of
//! its own, so the bytes may change, never the tables). Entry bodies and the other tables are
//! not decoded at open: a row that does not decode is an [`Error::Corrupt`] naming its table
//! when it is read, and [`Store::verify`] lists every such problem. With the page check on, no
//! input file makes open, verify or a read panic: `tests/corrupt.rs` flips bytes across a
//! whole store file (each probe in a child process, so a panic or an abort would be seen; with
//! the check off, 21 of 1 872 flips made redb panic), truncates it, feeds it garbage and
//! rewrites rows of every table through redb.

mod error;
mod insert;
mod options;
mod range;
mod reads;
pub mod schema;
mod session;
mod verify;

use std::marker::PhantomData;
use std::path::Path;
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError, RwLock};

use oplog_protocol::{Action, EntryKey, LogEntry, Op, RangeIndex};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tracing::info_span;

pub use error::Error;
pub use insert::MAX_BUFFERED_COMMITS;
pub use oplog_protocol as protocol;
pub use oplog_protocol::dag::LwwWrite;
pub use oplog_protocol::replica::{InsertError, InsertOutcome, InsertReport, Limits};
pub use options::{Options, DEFAULT_CACHE_BYTES};
pub use range::DagSnapshot;
pub use reads::{HistoryItem, Stats};
pub use verify::{Problem, VerifyReport, MAX_PROBLEMS};

/// A persistent oplog replica over one redb database, generic over the action type `A`.
///
/// All methods take `&self`: reads run concurrently on redb snapshots; writes are serialized.
/// The LWW register keys of `A` are stored postcard-encoded, so `A::Key` must be
/// serializable.
pub struct Store<A: Action = Op> {
    db: Database,
    index: RwLock<RangeIndex>,
    /// Serializes writes; holds how many commits since the last durable one were buffered
    /// ([`Store::insert_verified_buffered`]).
    writer: Mutex<u32>,
    options: Options,
    subscribers: Mutex<Vec<mpsc::Sender<LogEntry<A>>>>,
    _action: PhantomData<fn() -> A>,
}

impl<A: Action> std::fmt::Debug for Store<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("entries", &self.read_index().len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<A: Action> Store<A> {
    /// Opens the store in `path`, or creates a new one if nothing exists at `path`, with
    /// default [`Options`]. See [`Store::open_with`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(path, Options::default())
    }

    /// Opens the store in `path` with `options`: [`Store::open_existing`] if a file exists
    /// there, [`Store::create`] if not. An existing file is never re-initialised: an empty,
    /// truncated, damaged or foreign file is an error ([`Error::NotAStore`],
    /// [`Error::Corrupt`], [`Error::Database`], [`Error::Open`]), not a new empty store.
    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let path = path.as_ref();
        match path.try_exists() {
            Ok(true) => Self::open_existing(path, options),
            Ok(false) => Self::create(path, options),
            Err(e) => Err(io_open_error(path, e)),
        }
    }

    /// Creates a new, empty store in a file at `path`, which must not exist yet
    /// ([`Error::AlreadyExists`] otherwise, and the file is left untouched). If creation
    /// fails part way, the half-written file is removed again.
    pub fn create(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let path = path.as_ref();
        let span = info_span!("store.create", path = %path.display());
        let _guard = span.enter();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                    path: path.to_path_buf(),
                },
                _ => io_open_error(path, e),
            })?;
        let created = redb::backends::FileBackend::new(file)
            .and_then(|backend| {
                Database::builder()
                    .set_cache_size(options.cache_bytes)
                    .create_with_backend(backend)
            })
            .map_err(|source| Error::Open {
                path: path.to_path_buf(),
                source,
            })
            .and_then(|db| {
                schema::init(&db)?;
                Ok(db)
            });
        match created {
            Ok(db) => Self::from_database(db, options),
            Err(e) => {
                // the file is ours: leave no half-initialised store behind to be refused later
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Opens the existing store in `path`; [`Error::NotFound`] if there is no file.
    ///
    /// With [`Options::check_integrity_on_open`] (the default) redb first checks the checksum
    /// of every page, so a file damaged outside redb is reported as [`Error::Corrupt`] (table
    /// `"(file)"`) rather than trusted. Then the schema version and tables are checked
    /// ([`Error::NotAStore`], [`Error::UnknownSchemaVersion`], [`Error::Corrupt`]) and the
    /// applied keys are validated while the range index is built from them: strictly
    /// ascending, every HLC at most [`MAX_HLC`](protocol::MAX_HLC), `by_hash` holding
    /// exactly the same `(hash, HLC)` pairs ([`Error::Corrupt`] otherwise). An empty file is
    /// [`Error::NotAStore`]. The store writes nothing to a file it refuses (redb's page check
    /// commits a transaction of its own, so the file's bytes may change, not its
    /// tables).
    pub fn open_existing(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let path = path.as_ref();
        let span = info_span!("store.open", path = %path.display());
        let _guard = span.enter();
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                path: path.to_path_buf(),
            },
            _ => io_open_error(path, e),
        })?;
        if !meta.is_file() {
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
                reason: "it is not a regular file".into(),
            });
        }
        if meta.len() == 0 {
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
                reason: "the file is empty (0 bytes): an interrupted creation or a truncated file"
                    .into(),
            });
        }
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .set_check_integrity_on_open(options.check_integrity_on_open)
            .open(path)
            .map_err(|source| match source {
                redb::DatabaseError::Storage(redb::StorageError::Io(e))
                    if e.kind() == std::io::ErrorKind::InvalidData =>
                {
                    Error::NotAStore {
                        path: path.to_path_buf(),
                        reason: format!("redb does not recognise it as a database ({e})"),
                    }
                }
                redb::DatabaseError::Storage(redb::StorageError::Io(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    Error::corrupt("(file)", format!("the file is truncated ({e})"))
                }
                redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
                    Error::corrupt("(file)", format!("redb: {detail}"))
                }
                source => Error::Open {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        schema::check(&db, path)?;
        Self::from_database(db, options)
    }

    /// A store in memory (redb's in-memory backend), for unit tests and tools.
    pub fn in_memory(options: Options) -> Result<Self, Error> {
        let span = info_span!("store.open", path = "memory");
        let _guard = span.enter();
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        schema::init(&db)?;
        Self::from_database(db, options)
    }

    fn from_database(db: Database, options: Options) -> Result<Self, Error> {
        let keys = load_keys(&db)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let index = RangeIndex::from_sorted_parallel(keys, threads)
            .map_err(|e| Error::corrupt("entries", format!("out of key order ({e})")))?;
        tracing::debug!(entries = index.len(), "store opened");
        Ok(Store {
            db,
            index: RwLock::new(index),
            writer: Mutex::new(0),
            options,
            subscribers: Mutex::new(Vec::new()),
            _action: PhantomData,
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Change-data capture: a channel that receives every entry applied from now on, in
    /// application order (parents before children), after its batch is committed. Dropping the
    /// receiver unsubscribes.
    pub fn subscribe(&self) -> mpsc::Receiver<LogEntry<A>> {
        let (tx, rx) = mpsc::channel();
        lock(&self.subscribers).push(tx);
        rx
    }

    /// An `O(1)` snapshot of the range index (it shares the index's nodes and never changes).
    fn read_index(&self) -> RangeIndex {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot()
    }

    /// The applied set frozen at this instant, in `O(1)`: what one reconciliation session
    /// reads. A [`RangeIndex`] answers every
    /// [`RangeStore`](protocol::RangeStore) query in `O(log n)` in both dialects, and entries
    /// applied while the session runs neither change its answers nor keep it from ending; the
    /// next session sees them (spec 8.1, consistent reads). It shares the index's nodes; the
    /// store copies a node only when it changes one a snapshot still holds (`O(log n)` nodes
    /// per insert). A `Store` is deliberately not a `RangeStore` itself: a session must not
    /// read a set that moves under it.
    pub fn snapshot(&self) -> RangeIndex {
        self.read_index()
    }

    /// Runs after a successful commit: the index and subscribers learn the applied entries.
    fn publish(&self, applied: &[LogEntry<A>]) {
        if applied.is_empty() {
            return;
        }
        {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            for e in applied {
                index.insert(e.key());
            }
        }
        let mut subs = lock(&self.subscribers);
        if subs.is_empty() {
            return;
        }
        subs.retain(|tx| applied.iter().all(|e| tx.send(e.clone()).is_ok()));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_open_error(path: &Path, e: std::io::Error) -> Error {
    Error::Open {
        path: path.to_path_buf(),
        source: redb::DatabaseError::Storage(redb::StorageError::Io(e)),
    }
}

/// Reads the applied keys for the range index, validated so that any index builder gets
/// clean input: strictly ascending, every HLC in range, and `by_hash` holding exactly the same
/// `(hash, HLC)` pairs. One scan of `entries`, one of `by_hash` and a sort of positions by
/// hash; nothing is decoded (a body that does not decode is reported when it is read, and by
/// [`Store::verify`]).
fn load_keys(db: &Database) -> Result<Vec<EntryKey>, Error> {
    let txn = db.begin_read()?;
    let entries = txn.open_table(schema::ENTRIES)?;
    let by_hash = txn.open_table(schema::BY_HASH)?;
    let rows = entries.len()?;
    if rows != by_hash.len()? {
        return Err(Error::corrupt(
            "by_hash",
            format!("{} rows for {rows} applied entries", by_hash.len()?),
        ));
    }
    // the count comes from the file: cap what is reserved up front by it
    let mut keys = Vec::with_capacity(usize::try_from(rows).unwrap_or(0).min(1 << 20));
    let mut last: Option<EntryKey> = None;
    for row in entries.iter()? {
        let (hlc, hash) = row?.0.value();
        let key = EntryKey::new(hlc, hash);
        if key.hlc > protocol::MAX_HLC {
            return Err(Error::corrupt(
                "entries",
                format!("key ({hlc}, {}) has an HLC above the maximum", key.hash),
            ));
        }
        if last.is_some_and(|l| l >= key) {
            return Err(Error::corrupt(
                "entries",
                format!("keys out of order at ({hlc}, {})", key.hash),
            ));
        }
        last = Some(key);
        keys.push(key);
    }
    if keys.len() as u64 != rows {
        return Err(Error::corrupt(
            "entries",
            format!("{rows} rows counted but {} read", keys.len()),
        ));
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by_key(|&i| keys[i].hash);
    let mut expected = order.iter().map(|&i| keys[i]);
    for row in by_hash.iter()? {
        let (k, v) = row?;
        let (hash, hlc) = (protocol::Hash(k.value()), v.value());
        match expected.next() {
            Some(e) if e.hash == hash && e.hlc.0 == hlc => {}
            Some(e) => {
                return Err(Error::corrupt(
                    "by_hash",
                    format!(
                        "row ({hash}, {hlc}) does not match the applied entry ({}, {})",
                        e.hash, e.hlc.0
                    ),
                ))
            }
            None => {
                return Err(Error::corrupt(
                    "by_hash",
                    format!("row ({hash}, {hlc}) names no applied entry"),
                ))
            }
        }
    }
    if let Some(e) = expected.next() {
        return Err(Error::corrupt(
            "by_hash",
            format!("applied entry ({}, {}) has no row", e.hash, e.hlc.0),
        ));
    }
    Ok(keys)
}

/// Decodes a stored entry; stored bytes that do not decode are corruption.
pub(crate) fn decode_stored<A: Action>(bytes: &[u8], what: &str) -> Result<LogEntry<A>, Error> {
    LogEntry::decode(bytes)
        .map_err(|e| Error::corrupt(table_of(what), format!("{what} does not decode: {e}")))
}

/// The table a `decode_stored` caller reads from, by the words it describes the entry with.
fn table_of(what: &str) -> &'static str {
    if what.starts_with("held") {
        "held"
    } else if what.starts_with("deferred") {
        "deferred"
    } else {
        "entries"
    }
}

/// The postcard encoding of a register key: the `view` and `writes` table key.
pub(crate) fn register_bytes<K: serde::Serialize>(key: &K) -> Result<Vec<u8>, Error> {
    postcard::to_allocvec(key)
        .map_err(|e| Error::corrupt("view", format!("register key does not encode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oplog_protocol::{Hlc, RangeStore, SigningKey};

    fn entry(hlc: u64, parents: Vec<oplog_protocol::Hash>) -> LogEntry {
        let key = SigningKey::from_bytes(&[1; 32]);
        let op = Op::Put {
            bucket: "b".into(),
            key: format!("k{hlc}"),
            object_id: oplog_protocol::ObjectId([hlc.to_le_bytes()[0]; 32]),
        };
        LogEntry::sign(&key, Hlc(hlc), op, parents).unwrap()
    }

    #[test]
    fn in_memory_store_applies_and_indexes() {
        let store: Store = Store::in_memory(Options::default()).unwrap();
        let a = entry(5, vec![]);
        let b = entry(6, vec![a.hash]);
        let rx = store.subscribe();
        store.insert([b.clone()]).unwrap();
        let before = store.snapshot();
        assert_eq!(before.count(&protocol::Range::FULL).unwrap(), 0);
        store.insert([a.clone()]).unwrap();
        assert_eq!(before.count(&protocol::Range::FULL).unwrap(), 0);
        let after = store.snapshot();
        assert_eq!(
            after.keys(&protocol::Range::FULL, 10).unwrap(),
            vec![a.key(), b.key()]
        );
        assert_eq!(
            after.aggregate(&protocol::Range::FULL).unwrap(),
            protocol::Aggregate::of_keys([a.key(), b.key()].iter())
        );
        assert_eq!(
            rx.try_iter().map(|e| e.hash).collect::<Vec<_>>(),
            vec![a.hash, b.hash]
        );
        assert!(store.verify().unwrap().is_ok());
    }
}
