//! The redb tables, the schema version and what opening a file checks.
//!
//! A new file gets the version and every table in one transaction. An existing file is only
//! read: it must carry [`SCHEMA_VERSION`] in `meta` and have every table below with these key
//! and value types (see the crate docs, *Opening and creating*, for the errors).
//!
//! | table | key | value | holds |
//! | --- | --- | --- | --- |
//! | `meta` | `&str` | `&[u8]` | `schema_version` (u32 LE) |
//! | `entries` | `(hlc, hash)` | `body ‖ signature` | applied entries: the reconciled set, closed under parents |
//! | `by_hash` | `hash` | `hlc` | index of `entries` by hash |
//! | `heads` | `hash` | `(hlc, author)` | applied entries no applied entry names as a parent |
//! | `held` | `hash` | `body ‖ signature` | verified entries waiting for a parent |
//! | `waiting` | `(parent, child)` | `()` | which held entries wait for which unapplied parent |
//! | `deferred` | `hash` | `(not_before, body ‖ signature)` | entries stamped too far ahead of local time |
//! | `deferred_due` | `(not_before, hash)` | `()` | `deferred` in the order they come due |
//! | `held_lacking` | `hash` | `u32` | how many parents each held entry still lacks |
//! | `held_order` | `(hlc, hash)` | `()` | held entries in key order (the byte cap evicts the lowest) |
//! | `held_by_author` | `(author, hlc, hash)` | `()` | held entries per author (the author cap evicts the author's lowest) |
//! | `deferred_by_author` | `(author, not_before, hash)` | `()` | deferred entries per author (the author cap evicts the one due last) |
//! | `kept_usage` | `(set, author)` | `u64` | entries per author in the held (set 0) and deferred (set 1) sets |
//! | `kept_bytes` | `set` | `u64` | encoded bytes of all held (0) and deferred (1) entries |
//! | `view` | `postcard(A::Key)` | `(hlc, hash, author, is_delete)` | each register's winning write, tombstones included |
//! | `writes` | `(postcard(A::Key), hlc, hash)` | `()` | every applied write of each register (its history) |

use std::path::Path;

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, TableDefinition, TableError, TableHandle,
    Value,
};

use crate::error::Error;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 2;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const ENTRIES: TableDefinition<(u64, [u8; 32]), &[u8]> = TableDefinition::new("entries");
pub(crate) const BY_HASH: TableDefinition<[u8; 32], u64> = TableDefinition::new("by_hash");
pub(crate) const HEADS: TableDefinition<[u8; 32], (u64, [u8; 32])> = TableDefinition::new("heads");
pub(crate) const HELD: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("held");
pub(crate) const WAITING: TableDefinition<([u8; 32], [u8; 32]), ()> =
    TableDefinition::new("waiting");
pub(crate) const DEFERRED: TableDefinition<[u8; 32], (u64, &[u8])> =
    TableDefinition::new("deferred");
pub(crate) const DEFERRED_DUE: TableDefinition<(u64, [u8; 32]), ()> =
    TableDefinition::new("deferred_due");
pub(crate) const HELD_LACKING: TableDefinition<[u8; 32], u32> =
    TableDefinition::new("held_lacking");
pub(crate) const HELD_ORDER: TableDefinition<(u64, [u8; 32]), ()> =
    TableDefinition::new("held_order");
pub(crate) const HELD_BY_AUTHOR: TableDefinition<([u8; 32], u64, [u8; 32]), ()> =
    TableDefinition::new("held_by_author");
pub(crate) const DEFERRED_BY_AUTHOR: TableDefinition<([u8; 32], u64, [u8; 32]), ()> =
    TableDefinition::new("deferred_by_author");
pub(crate) const KEPT_USAGE: TableDefinition<(u8, [u8; 32]), u64> =
    TableDefinition::new("kept_usage");
pub(crate) const KEPT_BYTES: TableDefinition<u8, u64> = TableDefinition::new("kept_bytes");
/// A `view` row: the winning write's `(hlc, hash, author, is_delete)`.
pub(crate) type ViewRow = (u64, [u8; 32], [u8; 32], bool);
pub(crate) const VIEW: TableDefinition<&[u8], ViewRow> = TableDefinition::new("view");
pub(crate) const WRITES: TableDefinition<(&[u8], u64, [u8; 32]), ()> =
    TableDefinition::new("writes");

const VERSION_KEY: &str = "schema_version";

/// Stamps a database that was just created (by this process, in a file that did not exist)
/// with [`SCHEMA_VERSION`] and creates every table.
pub(crate) fn init(db: &Database) -> Result<(), Error> {
    let txn = db.begin_write()?;
    txn.open_table(META)?
        .insert(VERSION_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())?;
    txn.open_table(ENTRIES)?;
    txn.open_table(BY_HASH)?;
    txn.open_table(HEADS)?;
    txn.open_table(HELD)?;
    txn.open_table(WAITING)?;
    txn.open_table(DEFERRED)?;
    txn.open_table(DEFERRED_DUE)?;
    txn.open_table(HELD_LACKING)?;
    txn.open_table(HELD_ORDER)?;
    txn.open_table(HELD_BY_AUTHOR)?;
    txn.open_table(DEFERRED_BY_AUTHOR)?;
    txn.open_table(KEPT_USAGE)?;
    txn.open_table(KEPT_BYTES)?;
    txn.open_table(VIEW)?;
    txn.open_table(WRITES)?;
    txn.commit()?;
    Ok(())
}

/// Checks an existing database, read-only: the schema version and that every table exists
/// with its key and value types. A file is never stamped or repaired here: a redb database
/// without the version is [`Error::NotAStore`] (no `meta` table) or [`Error::Corrupt`] (a
/// `meta` table that lacks it).
pub(crate) fn check(db: &Database, path: &Path) -> Result<(), Error> {
    fn has<K: Key + 'static, V: Value + 'static>(
        txn: &ReadTransaction,
        name: &'static str,
        def: TableDefinition<K, V>,
    ) -> Result<(), Error> {
        txn.open_table(def)
            .map(drop)
            .map_err(|e| table_error(name, e))
    }
    let not_a_store = |reason: String| Error::NotAStore {
        path: path.to_path_buf(),
        reason,
    };
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            let tables: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
            return Err(not_a_store(if tables.is_empty() {
                "it is a redb database without any table".to_string()
            } else {
                format!("it is a redb database without a `meta` table (it has {tables:?})")
            }));
        }
        Err(e) => return Err(table_error("meta", e)),
    };
    let bytes = meta
        .get(VERSION_KEY)?
        .ok_or_else(|| Error::corrupt("meta", "the schema version is missing"))?
        .value()
        .to_vec();
    let found = <[u8; 4]>::try_from(bytes.as_slice())
        .map(u32::from_le_bytes)
        .map_err(|_| {
            Error::corrupt(
                "meta",
                format!("the schema version is {} bytes, expected 4", bytes.len()),
            )
        })?;
    if found != SCHEMA_VERSION {
        return Err(Error::UnknownSchemaVersion {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    has(&txn, "entries", ENTRIES)?;
    has(&txn, "by_hash", BY_HASH)?;
    has(&txn, "heads", HEADS)?;
    has(&txn, "held", HELD)?;
    has(&txn, "waiting", WAITING)?;
    has(&txn, "deferred", DEFERRED)?;
    has(&txn, "deferred_due", DEFERRED_DUE)?;
    has(&txn, "held_lacking", HELD_LACKING)?;
    has(&txn, "held_order", HELD_ORDER)?;
    has(&txn, "held_by_author", HELD_BY_AUTHOR)?;
    has(&txn, "deferred_by_author", DEFERRED_BY_AUTHOR)?;
    has(&txn, "kept_usage", KEPT_USAGE)?;
    has(&txn, "kept_bytes", KEPT_BYTES)?;
    has(&txn, "view", VIEW)?;
    has(&txn, "writes", WRITES)?;
    Ok(())
}

/// A table of a versioned store that cannot be opened: missing or of the wrong type is
/// corruption; anything else is the engine's failure.
fn table_error(table: &'static str, e: TableError) -> Error {
    match e {
        TableError::TableDoesNotExist(_) => Error::corrupt(table, "the table is missing"),
        TableError::TableTypeMismatch { .. }
        | TableError::TableIsMultimap(_)
        | TableError::TypeDefinitionChanged { .. } => Error::corrupt(table, e.to_string()),
        other => other.into(),
    }
}
