//! What can go wrong in the store, as opposed to what is wrong with an entry (entries refused
//! by [`Store::insert`](crate::Store::insert) are reported per entry in its report, never as an
//! [`Error`]).

use std::path::PathBuf;

use oplog_protocol::StoreError;

/// A failure of the store itself: the file, the database engine or corrupt stored data.
///
/// When [`Store::insert`](crate::Store::insert) returns one of these, nothing of the batch was
/// written: redb rolled the whole transaction back.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database file could not be opened or created.
    #[error("cannot open store {path}: {source}; check the path and permissions, and that no other process has the file open")]
    Open {
        /// The file that was opened.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: redb::DatabaseError,
    },
    /// The file carries a schema version this build does not read.
    #[error("store file has schema version {found}, but this build of oplog-store reads only version {supported}; open it with a matching build (a file is never rewritten silently)")]
    UnknownSchemaVersion {
        /// The version written in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The file is a redb database, but not one written by oplog-store.
    #[error("{0} is a redb database but not an oplog-store file (it has tables but no schema version); point the store at a new or an oplog-store file")]
    NotAStore(String),
    /// The database engine failed (I/O error, full disk, closed database...).
    #[error("database error: {0}")]
    Database(#[from] redb::Error),
    /// Stored data does not decode or contradicts itself; `verify()` lists every problem.
    #[error("stored data is corrupt: {0}; run verify() and restore the store from a peer")]
    Corrupt(String),
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
    redb::DatabaseError
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
        Err(other) => Error::Corrupt(other.to_string()),
    }
}
