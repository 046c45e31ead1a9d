//! What can go wrong in the store, as opposed to what is wrong with an entry (entries refused
//! by [`Store::insert`](crate::Store::insert) are reported per entry in its report, never as an
//! [`Error`]).

use std::path::PathBuf;

use oplog_protocol::StoreError;

/// A failure of the store itself: the file, the database engine or corrupt stored data.
///
/// When [`Store::insert`](crate::Store::insert) returns one of these, nothing of the batch was
/// written: redb rolled the whole transaction back. Opening never turns a damaged or foreign
/// file into an empty store: see the crate docs, *Opening and creating*.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database file could not be opened or created (permissions, a lock held by another
    /// process, or redb refusing the file's contents).
    #[error("cannot open store {path}: {source}; check the path and permissions, and that no other process has the file open")]
    Open {
        /// The file that was opened.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: redb::DatabaseError,
    },
    /// [`Store::open_existing`](crate::Store::open_existing) was given a path where no file
    /// exists.
    #[error("no store at {path}; use Store::create or Store::open to start a new one")]
    NotFound {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// [`Store::create`](crate::Store::create) was given a path where a file already exists
    /// (it is left untouched).
    #[error("{path} already exists; open it with Store::open_existing, or remove it first to start a new store")]
    AlreadyExists {
        /// The path that exists.
        path: PathBuf,
    },
    /// The file exists but is not an oplog-store file: it is empty, not a redb database at
    /// all, or a redb database without the store's schema version. It is left untouched; a
    /// store is only ever created at a path where no file exists.
    #[error("{path} is not an oplog-store file: {reason}; if it should hold a store, restore it from a backup or a peer, otherwise point the store at a path that does not exist yet")]
    NotAStore {
        /// The file that was opened.
        path: PathBuf,
        /// Why it is not a store.
        reason: String,
    },
    /// The file carries a schema version this build does not read.
    #[error("store file has schema version {found}, but this build of oplog-store reads only version {supported}; open it with a matching build (a file is never rewritten silently)")]
    UnknownSchemaVersion {
        /// The version written in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The database engine failed (I/O error, full disk, closed database, or a page whose
    /// checksum does not match: `redb::Error::Corrupted`).
    #[error("database error: {0}; if it says the file is corrupted, restore the store from a backup or a peer")]
    Database(#[from] redb::Error),
    /// Stored data does not decode or contradicts itself. Opening reports the first such
    /// problem it meets; [`Store::verify`](crate::Store::verify) lists all of them.
    #[error("stored data is corrupt in table `{table}`: {detail}; restore the store from a backup or a peer (on a store that opened, verify() lists every problem)")]
    Corrupt {
        /// The redb table (see [`schema`](crate::schema)) where the damage was found, or
        /// `"(file)"` when redb found the file itself damaged (a page checksum, a truncation).
        table: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl Error {
    /// Stored data in `table` is damaged: `detail` says how.
    pub(crate) fn corrupt(table: &'static str, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            table,
            detail: detail.into(),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Database(e.into())
            }
        }
    )*};
}

from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        StoreError::new(e)
    }
}

/// Turns a [`StoreError`] coming back through the protocol's traits into an [`Error`] again.
pub(crate) fn from_store_error(e: StoreError) -> Error {
    match e.into_inner().downcast::<Error>() {
        Ok(e) => *e,
        Err(other) => Error::corrupt("entries", other.to_string()),
    }
}
