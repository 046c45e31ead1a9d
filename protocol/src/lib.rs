//! The sans-IO core of oplog-sync: signed log entries, hybrid logical clocks, secure range
//! fingerprints, range-based set reconciliation and the DAG rules.
//!
//! Nothing here performs I/O, reads a clock or spawns a task: the caller feeds bytes in and
//! sends the bytes that come out, like `quinn-proto` under `quinn`.
//!
//! ```
//! use std::collections::HashSet;
//! use std::time::Duration;
//! use oplog_protocol::{Config, HlcClock, LogEntry, MemoryStore, ObjectId, Op, Reconciler, SigningKey};
//!
//! // A node signs two writes with its clock.
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let mut clock = HlcClock::new(|| 1_780_000_000_000_000_000u64, Duration::from_secs(60));
//! let put = Op::Put { bucket: "b".into(), key: "k".into(), object_id: ObjectId([1; 32]) };
//! let first = LogEntry::sign(&key, clock.tick()?, put, vec![])?;
//! let second = LogEntry::sign(&key, clock.tick()?, Op::Delete { bucket: "b".into(), key: "k".into() }, vec![first.hash])?;
//!
//! // A replica applies them (child first is fine: it is held back until its parent arrives).
//! let mut replica = MemoryReplica::new();
//! let now = clock.wall();
//! replica.insert(vec![second.clone()], now, Duration::from_secs(60), None::<&HashSet<_>>);
//! replica.insert(vec![first.clone()], now, Duration::from_secs(60), None::<&HashSet<_>>);
//! assert_eq!(replica.len(), 2);
//!
//! // Another replica holds only the first; reconciliation finds what each lacks.
//! let ours: MemoryStore = replica.keys().copied().collect();
//! let theirs: MemoryStore = [first.key()].into_iter().collect();
//! let mut a = Reconciler::new(Config::default())?;
//! let mut b = Reconciler::new(Config::default())?;
//! let mut next = Some(a.initiate(&ours)?);
//! let (mut a_has, mut b_needs) = (Vec::new(), Vec::new());
//! while let Some(msg) = next {
//!     let step = b.handle(&theirs, &msg)?; // the bytes would cross a connection here
//!     b_needs.extend(step.need);
//!     next = match step.reply {
//!         Some(reply) => {
//!             let step = a.handle(&ours, &reply)?;
//!             a_has.extend(step.have);
//!             step.reply
//!         }
//!         None => None,
//!     };
//! }
//! assert_eq!(a_has, vec![second.key()]);
//! assert_eq!(b_needs, vec![second.key()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod action;
pub mod dag;
pub mod entry;
pub mod fingerprint;
pub mod hlc;
mod index;
pub mod key;
pub mod memory;
pub mod message;
pub mod negentropy;
pub mod reconcile;
pub mod replica;
pub mod store;
pub mod transcript;
pub mod wire;

pub use action::{Action, ObjectId, Op};
pub use dag::{DagView, Heads, View};
pub use entry::{verify_batch, EntryError, LogEntry, Signature, Unverified, VerifiedEntry};
pub use fingerprint::{Aggregate, Fingerprint};
pub use hlc::{Hlc, HlcClock, HlcError, SystemClock, WallClock};
pub use index::{IndexBuildError, IndexIter, RangeIndex};
pub use key::{EntryKey, Hash, NodeId, Range};
pub use memory::MemoryStore;
pub use reconcile::Limit;
pub use reconcile::{Config, Dialect, Message, ReconcileError, Reconciler, Stats, Step};
pub use replica::{InsertError, InsertOutcome, InsertReport, Limits, MemoryReplica};
pub use store::{RangeStore, StoreError};

pub use ed25519_dalek::SigningKey;
pub use wire::{AncestryAnswer, AncestryDecodeError, AncestryRequest};
