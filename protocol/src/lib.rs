//! The sans-IO core of oplog-sync: signed log entries, hybrid logical clocks, secure range
//! fingerprints, range-based set reconciliation and the DAG rules.
//!
//! Nothing here performs I/O, reads a clock or spawns a task: the caller feeds bytes in and
//! sends the bytes that come out, like `quinn-proto` under `quinn`.
#![warn(missing_docs)]

pub mod action;
pub mod dag;
pub mod entry;
pub mod fingerprint;
pub mod hlc;
pub mod key;
pub mod memory;
pub mod message;
pub mod reconcile;
pub mod store;
pub mod transcript;

pub use action::{Action, ObjectId, Op};
pub use dag::{DagView, Heads, InsertOutcome, MemoryReplica, View};
pub use entry::{EntryError, LogEntry, Signature};
pub use fingerprint::{Aggregate, Fingerprint};
pub use hlc::{Hlc, HlcClock, HlcError, SystemClock, WallClock};
pub use key::{EntryKey, Hash, NodeId, Range};
pub use memory::MemoryStore;
pub use reconcile::{Config, Message, ReconcileError, Reconciler, Stats, Step};
pub use store::{RangeStore, StoreError};

pub use ed25519_dalek::SigningKey;
