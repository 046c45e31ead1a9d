//! The sans-IO core of oplog-sync: signed log entries, hybrid logical clocks, secure range
//! fingerprints, range-based set reconciliation and the DAG rules, as `spec/SPEC.md` states
//! them.
//!
//! Nothing here performs I/O, reads a clock or spawns a task: the caller feeds bytes in and
//! sends the bytes that come out, like `quinn-proto` under `quinn`. `oplog-store` keeps the
//! state in redb; `oplog-node` moves the bytes over iroh.
//!
//! ```
//! use std::time::Duration;
//! use oplog_protocol::replica::MemoryReplica;
//! use oplog_protocol::{Config, HlcClock, LogEntry, ObjectId, Op, Reconciler, SigningKey};
//!
//! // A node signs two writes with its clock.
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let mut clock = HlcClock::new(|| 1_780_000_000_000_000_000u64, Duration::from_secs(60));
//! let put = Op::Put { bucket: "b".into(), key: "k".into(), object_id: ObjectId([1; 32]) };
//! let first = LogEntry::sign(&key, clock.tick()?, put, vec![])?;
//! let delete = Op::Delete { bucket: "b".into(), key: "k".into() };
//! let second = LogEntry::sign(&key, clock.tick()?, delete, vec![first.hash])?;
//!
//! // A replica verifies and applies them; child first is fine: it is held back until its
//! // parent arrives.
//! let (now, drift) = (clock.wall(), Duration::from_secs(60));
//! let mut alice = MemoryReplica::new();
//! alice.insert(vec![second.clone()], now, drift, None);
//! alice.insert(vec![first.clone()], now, drift, None);
//! assert_eq!(alice.len(), 2);
//!
//! // Bob holds only the first. Each side answers a whole session from one snapshot of its
//! // keys; reconciliation finds what each lacks.
//! let mut bob = MemoryReplica::new();
//! bob.insert(vec![first.clone()], now, drift, None);
//! let (ours, theirs) = (alice.key_set(), bob.key_set());
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
//!
//! // Alice sends the entry; Bob verifies it on arrival and applies it.
//! let wire = alice.get(&second.hash).unwrap().encode();
//! let report = bob.insert(vec![LogEntry::<Op>::decode(&wire)?], now, drift, None);
//! assert_eq!(report.applied, vec![second.hash]);
//! assert_eq!(bob.heads().hashes(), alice.heads().hashes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where things are
//!
//! Data flows one way: wire bytes are decoded, a state machine decides, a replica stores.
//!
//! | module | holds | spec |
//! | --- | --- | --- |
//! | crate root | entries ([`LogEntry`], [`VerifiedEntry`], [`verify_batch`]), keys ([`Hash`](struct@Hash), [`NodeId`], [`EntryKey`], [`Range`]), clocks ([`HlcClock`]), fingerprints ([`Aggregate`]), the ordered key sets reconciliation reads ([`RangeStore`], [`RangeIndex`], [`MemoryStore`]), and the reconciler ([`Reconciler`], [`Config`], its errors and limits) | 2-5, 7, 8 |
//! | [`wire`] | byte formats: reconciliation messages, the ancestry request and answer | 6.3, 8.3 |
//! | [`dag`] | rules over the applied DAG: parent order, ancestry walks, heads, last-writer-wins, merge conflicts, the merge rule | 6.2-6.5 |
//! | [`replica`] | applying entries: [`replica::insert`] over any [`replica::ReplicaState`], the caps on held-back and deferred entries, and [`replica::MemoryReplica`], the reference model | 6.1 |
//! | [`negentropy`] | the Negentropy V1 format, for the interoperable dialect ([`Dialect::NegentropyV1`]) | `negentropy-v1.md` |
//! | [`testing`] | a whole session between two stores in memory, for tests and tools | |
//!
//! Every cost a peer can cause is bounded by default: message size, parts per message,
//! messages per session and session memory ([`Config`], [`Limit`]), held-back and deferred
//! entries ([`replica::Limits`]), and DAG walks ([`dag::DEFAULT_MAX_VISITS`]). Spec appendix B
//! lists them all.

mod entry;
mod fingerprint;
mod hlc;
mod key;
mod range;
mod reconcile;

pub mod dag;
#[cfg(feature = "negentropy")]
pub mod negentropy;
pub mod replica;
pub mod session;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;

pub use entry::{
    body_bytes, verify_batch, Action, EntryError, LogEntry, ObjectId, Op, Signature, Unverified,
    VerifiedEntry, MAX_BUCKET_LEN, MAX_ENTRY_BYTES, MAX_OBJECT_KEY_LEN, MAX_PARENTS, SIGNATURE_LEN,
};
pub use fingerprint::{
    Aggregate, Fingerprint, Salt, DIGEST_CONTEXT, FINGERPRINT_LEN, ITEM_CONTEXT, LIMBS, SALT_LEN,
    STATE_BYTES,
};
pub use hlc::{
    admission, Admission, Hlc, HlcClock, HlcError, SystemClock, WallClock, DEFAULT_MAX_DRIFT,
    MAX_HLC,
};
pub use key::{EntryKey, Hash, NodeId, Range};
pub use range::{
    IndexBuildError, IndexIter, MemoryStore, RangeIndex, RangeStore, StoreError, KEY_CHUNK,
};
pub use reconcile::{
    Config, Dialect, KeyForm, Limit, Message, ReconcileError, Reconciler, SessionStats, Step,
    DEFAULT_MAX_CARRIED_KEYS, DEFAULT_MAX_MESSAGES, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_PARTS,
    DEFAULT_MAX_SESSION_MEMORY, LONG_LIST_MESSAGE_BYTES, MIN_CARRIED_KEYS, MIN_MESSAGE_BYTES,
    MIN_PARTS, MIN_SESSION_MEMORY, PENDING_PER_TRAFFIC_BYTE,
};

pub use ed25519_dalek::SigningKey;
