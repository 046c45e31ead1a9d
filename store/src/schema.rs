//! The redb tables, the schema version and what opening a file checks.
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

use redb::{Database, ReadableTable, TableDefinition, TableHandle};

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

/// Checks the schema version of an opened database, or stamps a new, empty one with
/// [`SCHEMA_VERSION`] and creates every table. Never modifies a file it refuses.
pub(crate) fn check_or_init(db: &Database, name: &str) -> Result<(), Error> {
    let txn = db.begin_write()?;
    let existing: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
    {
        let mut meta = txn.open_table(META)?;
        let found = meta.get(VERSION_KEY)?.map(|v| v.value().to_vec());
        match found {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_le_bytes)
                    .map_err(|_| {
                        Error::Corrupt(format!(
                            "schema version is {} bytes, expected 4",
                            bytes.len()
                        ))
                    })?;
                if found != SCHEMA_VERSION {
                    return Err(Error::UnknownSchemaVersion {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                return Ok(()); // read-only check: the transaction is dropped, nothing written
            }
            None if !existing.is_empty() => return Err(Error::NotAStore(name.to_string())),
            None => {
                meta.insert(VERSION_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())?;
            }
        }
    }
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
