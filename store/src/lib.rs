//! redb storage for oplog-sync. Not built yet: see issue "redb store". This crate exists so the
//! workspace has its final shape.
#![warn(missing_docs)]

pub use oplog_protocol as protocol;
