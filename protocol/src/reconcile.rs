//! The reconciliation state machine: two peers find out which keys each lacks by exchanging
//! [`Message`]s, recursively splitting ranges whose fingerprints differ.
//!
//! The machine never touches a socket or a clock: [`Reconciler::initiate`] produces the first
//! message, [`Reconciler::handle`] consumes one and returns a [`Step`] with the reply to send
//! (if any) and the differences learned. The caller moves bytes, like `quinn` drives
//! `quinn-proto`.
//!
//! Nothing a peer sends can make a reconciler panic, send an invalid message, or spend
//! without bound: each received message is checked against the [`Config`]'s size, part and
//! message-count limits before it is acted on, replies are cut to the same limits, and
//! pending state and reported keys are charged against a session memory budget. Every such
//! refusal is a typed [`ReconcileError::Limit`] naming the [`Limit`] hit (`spec/SPEC.md` 8.11).
//!
//! ```
//! use oplog_protocol::{EntryKey, MemoryStore, Reconciler, Config};
//!
//! let a: MemoryStore = (1..=1000u64).map(|i| EntryKey::new(i, [1; 32])).collect();
//! let b: MemoryStore = (1..=1000u64).filter(|i| i % 100 != 0).map(|i| EntryKey::new(i, [1; 32])).collect();
//!
//! let mut alice = Reconciler::new(Config::default()).unwrap();
//! let mut bob = Reconciler::new(Config::default()).unwrap();
//! let mut msg = Some(alice.initiate(&a).unwrap());
//! let (mut alice_has, mut bob_needs) = (Vec::new(), Vec::new());
//! let mut turn = 0;
//! while let Some(m) = msg.take() {
//!     let step = if turn % 2 == 0 { bob.handle(&b, &m).unwrap() } else { alice.handle(&a, &m).unwrap() };
//!     if turn % 2 == 0 { bob_needs.extend(step.need) } else { alice_has.extend(step.have) }
//!     msg = step.reply;
//!     turn += 1;
//! }
//! bob_needs.sort();
//! alice_has.sort();
//! assert_eq!(bob_needs.len(), 10);
//! assert_eq!(alice_has, bob_needs);
//! assert!(alice.is_done() && bob.is_done());
//! ```

use std::collections::{BTreeMap, HashSet};

use tracing::{debug, debug_span, trace};

use crate::fingerprint::{Aggregate, Fingerprint};
use crate::key::{EntryKey, Hash, Range};
use crate::negentropy;
use crate::range::{for_each_chunk, RangeStore, StoreError};
use crate::wire::message::{self, DecodeError, Encoder, Part, Payload, MAX_LIST_ITEMS};

/// The smallest message size limit a [`Config`] may set; every part the reconciler produces
/// fits in it with room to spare.
pub const MIN_MESSAGE_BYTES: usize = 4096;
/// The default [`Config::max_message_bytes`]: 4 MiB, the session layer's frame limit. The
/// largest message of the 10^6-key benchmark (100,000 differences) is 3.84 MB, so honest
/// sessions of that size are not slowed down by carry-overs.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// The default [`Config::max_messages`].
pub const DEFAULT_MAX_MESSAGES: u64 = 1024;
/// The default [`Config::max_parts`]: 2^16, twice the most parts (32,768) of any message of
/// the 10^6-key benchmark with 100,000 differences.
pub const DEFAULT_MAX_PARTS: usize = 1 << 16;
/// The smallest [`Config::max_parts`]: every single answer (at most 32 parts of a split)
/// plus the carry-over parts fits.
pub const MIN_PARTS: usize = 64;
/// The default [`Config::max_session_memory`]: 256 MiB.
pub const DEFAULT_MAX_SESSION_MEMORY: usize = 256 << 20;
/// Most bytes of pending state one received message may create, per byte of that message
/// and of its reply. The most an honest message creates is about 28 per byte (a one-byte
/// prefix list of 32 keys answering a fingerprint); a part's state costs at most about 300
/// bytes besides its keys, and every part that creates state is at least 5 bytes in and out.
pub const PENDING_PER_TRAFFIC_BYTE: usize = 64;
/// The smallest [`Config::max_session_memory`]: 1 MiB.
pub const MIN_SESSION_MEMORY: usize = 1 << 20;

/// The wire format and splitting policy a [`Reconciler`] speaks. Both peers must use the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// oplog-sync's own format (`spec/SPEC.md`): secure 4096-bit fingerprints, prefix lists,
    /// both sides learn the difference.
    #[default]
    OplogV1,
    /// Negentropy protocol V1 (`spec/negentropy-v1.md`), for interoperability with Negentropy
    /// peers and for comparison: SHA-256 over a 256-bit id sum as fingerprint, 16 buckets per
    /// split, id lists below 32 items, and only the initiator learns the difference. Keys are
    /// items with the HLC as timestamp and the hash as id. `branching`, `list_threshold`,
    /// `prefix_len` and `initial_split` are ignored: Negentropy fixes them.
    NegentropyV1,
}

/// Tuning and limits of a reconciler. Both peers may use different values; the wire format
/// carries everything the other side needs.
///
/// Build one from [`Config::default`] (or [`Config::negentropy`]) and assign fields:
///
/// ```
/// let mut config = oplog_protocol::Config::default();
/// config.max_message_bytes = Some(64 * 1024);
/// assert!(config.validate().is_ok());
/// ```
///
/// Every limit is on by default; `spec/SPEC.md` 8.11 lists them with what exceeding each does.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The wire format and splitting policy (default [`Dialect::OplogV1`]).
    pub dialect: Dialect,
    /// Most parts a differing range is split into (2 to 32; default 16).
    pub branching: usize,
    /// A side that holds at most this many keys in a differing range lists them instead of
    /// splitting; ranges are split into parts of about this many keys (1 to 64; default 32).
    pub list_threshold: usize,
    /// Bytes of each hash prefix in a prefix list (1 to 32; default 4). A prefix collision is
    /// caught by the fingerprint check and costs one extra round trip for that range.
    pub prefix_len: u8,
    /// Largest message this side sends or accepts, in bytes (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`], 4 MiB). Ranges whose answers do not fit are carried into
    /// the next round; a larger incoming message ends the session with [`Limit::MessageBytes`].
    /// `None`: no limit either way. At least [`MIN_MESSAGE_BYTES`].
    pub max_message_bytes: Option<usize>,
    /// Whether the first message already splits the whole key space (saving half a round trip
    /// when the sets differ) rather than sending one fingerprint of everything (cheapest when
    /// they are equal).
    pub initial_split: bool,
    /// Most messages this side handles in one session (default [`DEFAULT_MAX_MESSAGES`]);
    /// the next one ends the session with [`Limit::Messages`]. Honest sessions take at most
    /// `2 × (ceil(log_branching n) + 3)` messages without carry-overs, plus about one round
    /// trip per `max_message_bytes` of traffic with them. At least 1.
    pub max_messages: u64,
    /// Most parts in a message this side accepts or sends (default [`DEFAULT_MAX_PARTS`]);
    /// an incoming message with more ends the session with [`Limit::Parts`], an outgoing one
    /// is cut and the rest carried over as with the size limit. At least [`MIN_PARTS`].
    pub max_parts: usize,
    /// Most bytes of session state: pending ranges and the keys already reported (default
    /// [`DEFAULT_MAX_SESSION_MEMORY`]). A message whose handling would pass it ends the
    /// session with [`Limit::SessionMemory`]; differences reported before stay valid, and a
    /// new session continues with a smaller difference. At least [`MIN_SESSION_MEMORY`].
    pub max_session_memory: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dialect: Dialect::OplogV1,
            branching: 16,
            list_threshold: 32,
            prefix_len: 4,
            max_message_bytes: Some(DEFAULT_MAX_MESSAGE_BYTES),
            initial_split: true,
            max_messages: DEFAULT_MAX_MESSAGES,
            max_parts: DEFAULT_MAX_PARTS,
            max_session_memory: DEFAULT_MAX_SESSION_MEMORY,
        }
    }
}

impl Config {
    /// A configuration that speaks Negentropy V1 with Negentropy's fixed parameters, with an
    /// optional frame size limit (at least [`MIN_MESSAGE_BYTES`], as Negentropy requires;
    /// `None`: no limit, as Negentropy's frame limit 0) and the default session limits.
    pub fn negentropy(frame_limit: Option<usize>) -> Config {
        Config {
            dialect: Dialect::NegentropyV1,
            branching: negentropy::BUCKETS as usize,
            list_threshold: negentropy::ID_LIST_BELOW as usize - 1,
            prefix_len: 32,
            max_message_bytes: frame_limit,
            ..Config::default()
        }
    }

    /// Checks that every value is in range.
    pub fn validate(&self) -> Result<(), ReconcileError> {
        let bad = |why: String| Err(ReconcileError::Config(why));
        if !(2..=32).contains(&self.branching) {
            return bad(format!("branching is {}; use 2 to 32", self.branching));
        }
        if !(1..=64).contains(&self.list_threshold) {
            return bad(format!(
                "list_threshold is {}; use 1 to 64",
                self.list_threshold
            ));
        }
        if !(1..=32).contains(&self.prefix_len) {
            return bad(format!("prefix_len is {}; use 1 to 32", self.prefix_len));
        }
        if let Some(m) = self.max_message_bytes {
            if m < MIN_MESSAGE_BYTES {
                return bad(format!(
                    "max_message_bytes is {m}; it must be at least {MIN_MESSAGE_BYTES}"
                ));
            }
        }
        if self.max_messages == 0 {
            return bad("max_messages is 0; it must be at least 1".into());
        }
        if self.max_parts < MIN_PARTS {
            return bad(format!(
                "max_parts is {}; it must be at least {MIN_PARTS}",
                self.max_parts
            ));
        }
        if self.max_session_memory < MIN_SESSION_MEMORY {
            return bad(format!(
                "max_session_memory is {}; it must be at least {MIN_SESSION_MEMORY}",
                self.max_session_memory
            ));
        }
        Ok(())
    }
}

/// Which session limit of the [`Config`] a peer's traffic hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Limit {
    /// A received message is larger than [`Config::max_message_bytes`].
    #[error(
        "message of {size} bytes exceeds max_message_bytes = {limit}; refused before decoding"
    )]
    MessageBytes {
        /// The message's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A received message has more parts than [`Config::max_parts`].
    #[error("message has more than max_parts = {limit} parts")]
    Parts {
        /// The configured limit.
        limit: usize,
    },
    /// The peer sent more messages than [`Config::max_messages`] without ending the session.
    #[error("session did not end within max_messages = {limit} received messages")]
    Messages {
        /// The configured limit.
        limit: u64,
    },
    /// The pending state one message creates would pass [`PENDING_PER_TRAFFIC_BYTE`] times
    /// the bytes of that message and its reply. Honest traffic stays under a third of it.
    #[error("one message would create {needed} bytes of pending state, over {limit} ({PENDING_PER_TRAFFIC_BYTE} per byte of the message and its reply)")]
    PendingState {
        /// Bytes of pending state the message would have created.
        needed: usize,
        /// The bound for this message and reply.
        limit: usize,
    },
    /// Pending ranges and reported keys would take more than [`Config::max_session_memory`].
    #[error("session state would take {needed} bytes, over max_session_memory = {limit}; raise it or reconcile again (differences already reported stay valid)")]
    SessionMemory {
        /// Bytes the state would have needed.
        needed: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// Why a reconciliation session failed. The session is over; nothing was stored.
///
/// Everything a peer can cause is [`Decode`](Self::Decode),
/// [`NegentropyDecode`](Self::NegentropyDecode), [`Protocol`](Self::Protocol) or
/// [`Limit`](Self::Limit); [`Misuse`](Self::Misuse) and [`Config`](Self::Config) are local
/// mistakes; [`Store`](Self::Store) is the local store failing or answering inconsistently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The configuration is out of range.
    #[error("invalid reconciler configuration: {0}")]
    Config(String),
    /// The peer's message is malformed.
    #[error("malformed message from peer: {0}")]
    Decode(#[from] DecodeError),
    /// The peer's Negentropy message is malformed or of a version we do not speak.
    #[error("malformed negentropy message from peer: {0}")]
    NegentropyDecode(#[from] negentropy::DecodeError),
    /// The peer sent a part that does not fit the session's state (a Resolve for a range we
    /// never listed, a position beyond our list, a message after the session ended, ...): a
    /// broken or hostile peer.
    #[error("protocol violation by peer: {0}")]
    Protocol(String),
    /// The peer's traffic hit one of the session limits of the [`Config`].
    #[error("peer exceeded a session limit: {0}")]
    Limit(#[from] Limit),
    /// The local store failed, or answered inconsistently (keys out of order or outside the
    /// range asked for, fewer keys than it counted), for instance because its set changed
    /// during a call. Nothing invalid was sent; retry the session.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `initiate` was called twice, or on a reconciler that already handled a message.
    #[error("reconciler misuse: {0}")]
    Misuse(&'static str),
}

/// Up to `limit` keys of `range`, checked: ascending, inside the range, at most `limit`.
/// Lists built from them are sent and searched, so a store answering otherwise is an error.
fn listed_keys<S: RangeStore + ?Sized>(
    store: &S,
    range: &Range,
    limit: usize,
) -> Result<Vec<EntryKey>, ReconcileError> {
    let keys = store.keys(range, limit)?;
    if keys.len() > limit
        || keys.windows(2).any(|w| w[0] >= w[1])
        || !keys.iter().all(|k| range.contains(k))
    {
        return Err(inconsistent(
            "keys out of order, outside the range or more than asked",
        ));
    }
    Ok(keys)
}

/// A local store answer that would have produced an invalid message.
fn inconsistent(what: impl std::fmt::Display) -> ReconcileError {
    ReconcileError::Store(StoreError::new(format!(
        "store answered inconsistently ({what}); did its set change during the call?"
    )))
}

/// A reconciliation message: the bytes to put in one frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Message(Vec<u8>);

impl Message {
    /// Wraps received bytes; they are validated by [`Reconciler::handle`].
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Message(bytes)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Consumes the message, returning its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the message has no bytes (never true for a message this crate produced).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes the parts, for inspection and logging.
    pub fn parts(&self) -> Result<Vec<Part>, DecodeError> {
        message::decode(&self.0)
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Message({} bytes)", self.0.len())
    }
}

/// What one handled message produced.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Step {
    /// The message to send back, if the peer expects one.
    pub reply: Option<Message>,
    /// Keys this side holds and the peer lacks, learned in this step.
    pub have: Vec<EntryKey>,
    /// Keys the peer holds and this side lacks, learned in this step.
    pub need: Vec<EntryKey>,
    /// Negentropy dialect only: hashes of entries the peer holds and this side lacks.
    /// Negentropy id lists carry no timestamps, so these cannot be full keys; `need` stays
    /// empty in that dialect.
    pub need_hashes: Vec<Hash>,
}

/// Counters of one session, for logs and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Messages sent.
    pub messages_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Prefix lists this side sent whose Resolve failed the fingerprint check, so that it
    /// resent the same keys as a FullList (spec 8.4, 8.5).
    pub prefix_collisions: u64,
    /// Replies this side cut short at a size or part limit, ending them with one Fingerprint
    /// of the rest of the key space (spec 8.8); at most one per reply.
    pub carried_over: u64,
}

/// A range this side is waiting on.
#[derive(Debug)]
enum Pending {
    /// We listed our keys in the range in answer to the peer's fingerprint; a Resolve is due.
    Listed {
        end: Option<EntryKey>,
        peer_fp: Fingerprint,
        keys: Vec<EntryKey>,
        full: bool,
    },
    /// We resolved the peer's prefix list; Keys (or a Skip meaning "no keys") is due.
    Resolved {
        end: Option<EntryKey>,
        mine_only: Vec<EntryKey>,
        /// Prefixes of the listed keys we lack, `wanted_len` bytes each, whose full keys the
        /// Keys part must carry.
        wanted: Vec<u8>,
        wanted_len: usize,
    },
}

/// Bytes charged for one pending range besides its lists: the map entry, counted twice for
/// B-tree nodes that are half full.
const PENDING_ENTRY_BYTES: usize = 2 * std::mem::size_of::<(EntryKey, Pending)>();
/// Bytes charged per reported key: a hash set slot (40-byte key, 1 control byte) at the
/// lowest load a hash set has right after growing (7/16).
const REPORTED_KEY_BYTES: usize = 96;
/// Bytes charged per reported Negentropy hash, as [`REPORTED_KEY_BYTES`] for 32 bytes.
const REPORTED_HASH_BYTES: usize = 80;

impl Pending {
    fn end(&self) -> Option<EntryKey> {
        match self {
            Pending::Listed { end, .. } | Pending::Resolved { end, .. } => *end,
        }
    }

    /// Bytes this pending range holds, as charged against the session memory budget.
    fn bytes(&self) -> usize {
        let key = std::mem::size_of::<EntryKey>();
        PENDING_ENTRY_BYTES
            + match self {
                Pending::Listed { keys, .. } => keys.capacity() * key,
                Pending::Resolved {
                    mine_only, wanted, ..
                } => mine_only.capacity() * key + wanted.capacity(),
            }
    }
}

/// One side of a reconciliation session.
#[derive(Debug)]
pub struct Reconciler {
    config: Config,
    /// Ranges awaiting an answer, by start key; disjoint.
    pending: BTreeMap<EntryKey, Pending>,
    /// Sum of [`Pending::bytes`] over `pending`.
    pending_bytes: usize,
    started: bool,
    /// Whether this side opened the session.
    initiator: bool,
    done: bool,
    stats: SessionStats,
    /// Every key already reported in a [`Step`]: a range restarted after a carry-over can
    /// yield the same difference again, and each key is reported once.
    reported: HashSet<EntryKey>,
    /// Negentropy dialect: every hash already reported in [`Step::need_hashes`].
    reported_hashes: HashSet<Hash>,
}

/// The output being built for one reply, with its effects held until the part is committed.
struct Out {
    parts: Vec<Part>,
    have: Vec<EntryKey>,
    need: Vec<EntryKey>,
    pending: Vec<(EntryKey, Pending)>,
    collisions: u64,
}

impl Out {
    fn new() -> Self {
        Out {
            parts: Vec::new(),
            have: Vec::new(),
            need: Vec::new(),
            pending: Vec::new(),
            collisions: 0,
        }
    }

    fn part(&mut self, upper: Option<EntryKey>, payload: Payload) {
        self.parts.push(Part { upper, payload });
    }
}

impl Reconciler {
    /// A reconciler with `config`, which is validated.
    pub fn new(config: Config) -> Result<Self, ReconcileError> {
        config.validate()?;
        Ok(Reconciler {
            config,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            started: false,
            initiator: false,
            done: false,
            stats: SessionStats::default(),
            reported: HashSet::new(),
            reported_hashes: HashSet::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Session counters so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Bytes of session state held now (pending ranges and reported keys), as charged
    /// against [`Config::max_session_memory`].
    pub fn session_memory(&self) -> usize {
        self.pending_bytes
            + self.reported.len() * REPORTED_KEY_BYTES
            + self.reported_hashes.len() * REPORTED_HASH_BYTES
    }

    /// Number of ranges this side is waiting on.
    pub fn pending_ranges(&self) -> usize {
        self.pending.len()
    }

    /// Whether this side opened the session with [`Reconciler::initiate`].
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Whether the session is over: nothing is pending and no reply is expected.
    ///
    /// In the Negentropy dialect the initiator is done once its answer would be empty (just
    /// the version byte), which it then does not send. The responder keeps no state between
    /// messages: it is done after every reply and answers whatever the initiator sends next.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Fails with [`Limit::SessionMemory`] unless `extra` more bytes of state fit the budget.
    fn charge(&self, extra: usize) -> Result<(), ReconcileError> {
        let needed = self.session_memory().saturating_add(extra);
        if needed > self.config.max_session_memory {
            return Err(Limit::SessionMemory {
                needed,
                limit: self.config.max_session_memory,
            }
            .into());
        }
        Ok(())
    }

    /// The first message of a session, for the side that opens it.
    pub fn initiate<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
    ) -> Result<Message, ReconcileError> {
        let _span =
            debug_span!("reconcile", dialect = ?self.config.dialect, initiator = true).entered();
        if self.started {
            return Err(ReconcileError::Misuse(
                "initiate called on a started session",
            ));
        }
        self.started = true;
        self.initiator = true;
        if self.config.dialect == Dialect::NegentropyV1 {
            // Negentropy always splits the whole key space, whatever the frame limit.
            let mut enc = negentropy::Encoder::new();
            let everything = neg_range(EntryKey::MIN, &negentropy::Bound::INFINITY);
            for p in neg_split(store, &everything, negentropy::Bound::INFINITY)? {
                enc.push(&p).map_err(inconsistent)?;
            }
            let msg = Message(enc.finish());
            self.sent(&msg);
            debug!(bytes = msg.len(), "reconcile: initiate (negentropy)");
            return Ok(msg);
        }
        let mut out = Out::new();
        let count = store.count(&Range::FULL)?;
        if self.config.initial_split && count > self.config.list_threshold as u64 {
            self.split(store, &Range::FULL, count, &mut out)?;
        } else {
            out.part(None, Payload::Fingerprint(store.fingerprint(&Range::FULL)?));
        }
        let mut enc = Encoder::new();
        for p in &out.parts {
            enc.push(p).map_err(inconsistent)?;
        }
        let msg = Message(enc.finish());
        self.sent(&msg);
        debug!(bytes = msg.len(), count, "reconcile: initiate");
        Ok(msg)
    }

    fn sent(&mut self, msg: &Message) {
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += msg.len() as u64;
    }

    /// The checks every received message passes first, in this order: the session has not
    /// ended, the message count, the message size.
    fn admit(&mut self, msg: &Message) -> Result<(), ReconcileError> {
        let stateless_responder = self.config.dialect == Dialect::NegentropyV1 && !self.initiator;
        if self.done && !stateless_responder {
            return Err(ReconcileError::Protocol(
                "peer sent a message after the session ended".into(),
            ));
        }
        if self.stats.messages_received >= self.config.max_messages {
            return Err(Limit::Messages {
                limit: self.config.max_messages,
            }
            .into());
        }
        self.started = true;
        self.stats.messages_received += 1;
        self.stats.bytes_received += msg.len() as u64;
        if let Some(limit) = self.config.max_message_bytes {
            if msg.len() > limit {
                return Err(Limit::MessageBytes {
                    size: msg.len(),
                    limit,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Handles a message from the peer and returns the reply (if one is due) and the
    /// differences learned. After an error the session must be abandoned.
    ///
    /// Checks, in order: a message after the session ended ([`ReconcileError::Protocol`]),
    /// [`Limit::Messages`], [`Limit::MessageBytes`], then the whole message is decoded
    /// ([`ReconcileError::Decode`], or [`Limit::Parts`] at the first part over the limit)
    /// before any part is acted on; then each part in order may fail with
    /// [`ReconcileError::Protocol`], [`Limit::SessionMemory`] or [`ReconcileError::Store`].
    pub fn handle<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
        msg: &Message,
    ) -> Result<Step, ReconcileError> {
        let _span = debug_span!(
            "reconcile",
            dialect = ?self.config.dialect,
            initiator = self.initiator,
            round = self.stats.messages_received + 1
        )
        .entered();
        self.admit(msg)?;
        if self.config.dialect == Dialect::NegentropyV1 {
            return self.handle_negentropy(store, msg);
        }
        // First pass: the whole message must be valid, and within the part limit, before
        // anything is acted on. Parts are decoded one at a time and dropped.
        let max_parts = self.config.max_parts;
        let mut count = 0usize;
        let mut expects_reply = false;
        for part in message::parts(&msg.0)? {
            let part = part?;
            count += 1;
            if count > max_parts {
                return Err(Limit::Parts { limit: max_parts }.into());
            }
            expects_reply |= part.payload.is_open();
        }
        trace!(parts = count, bytes = msg.len(), "reconcile: received");

        let limit = self.config.max_message_bytes.unwrap_or(usize::MAX);
        let mut enc = Encoder::new();
        let mut step = Step::default();
        let mut reply_open = false;
        let mut lower = EntryKey::MIN;
        let mut parts = message::parts(&msg.0)?;
        let mut at_end = false;
        let mut created = 0usize;
        loop {
            // the parts, then the implicit trailing Skip up to the end of the key space
            let part = match parts.next() {
                Some(part) => part?,
                None if at_end => break,
                None => Part {
                    upper: None,
                    payload: Payload::Skip,
                },
            };
            at_end |= part.upper.is_none();
            let range = Range::new(lower, part.upper);
            let mut out = Out::new();
            self.answer(store, &range, &part.payload, &mut out)?;
            let mark = enc.mark();
            for p in &out.parts {
                enc.push(p).map_err(inconsistent)?;
            }
            if enc.len() > limit.saturating_sub(CARRY_RESERVE) || enc.parts() > max_parts - 2 {
                // Out of room: everything from here on goes into one fingerprint that the
                // peer answers next round; what we were waiting on there starts over.
                enc.rollback(mark);
                for (_, p) in self.pending.split_off(&range.start) {
                    self.pending_bytes -= p.bytes();
                }
                enc.push(&Part {
                    upper: None,
                    payload: Payload::Fingerprint(
                        store.fingerprint(&Range::new(range.start, None))?,
                    ),
                })
                .map_err(inconsistent)?;
                reply_open = true;
                self.stats.carried_over += 1;
                debug!(from = ?range.start, "reconcile: message limit reached, carrying ranges over");
                break;
            }
            let added: usize = out.pending.iter().map(|(_, p)| p.bytes()).sum();
            created += added;
            let allowed = PENDING_PER_TRAFFIC_BYTE * (msg.len() + enc.len());
            if created > allowed {
                return Err(Limit::PendingState {
                    needed: created,
                    limit: allowed,
                }
                .into());
            }
            self.charge(added + (out.have.len() + out.need.len()) * REPORTED_KEY_BYTES)?;
            self.pending_bytes += added;
            self.pending.extend(out.pending);
            let reported = &mut self.reported;
            step.have
                .extend(out.have.into_iter().filter(|k| reported.insert(*k)));
            step.need
                .extend(out.need.into_iter().filter(|k| reported.insert(*k)));
            reply_open |= out.parts.iter().any(|p| p.payload.is_open());
            self.stats.prefix_collisions += out.collisions;
            lower = part.upper.unwrap_or(lower);
        }
        if expects_reply {
            let reply = Message(enc.finish());
            self.sent(&reply);
            step.reply = Some(reply);
            self.done = !reply_open && self.pending.is_empty();
        } else if !self.pending.is_empty() {
            return Err(ReconcileError::Protocol(format!(
                "peer ended the session with {} ranges still open",
                self.pending.len()
            )));
        } else {
            self.done = true;
        }
        debug!(
            have = step.have.len(),
            need = step.need.len(),
            reply = step.reply.as_ref().map(Message::len),
            done = self.done,
            "reconcile: handled message"
        );
        Ok(step)
    }

    /// [`Reconciler::handle`] for the Negentropy dialect: the same walk over the peer's
    /// ranges, with Negentropy's answers and its frame limit rule. Nothing is pending between
    /// messages in this dialect.
    fn handle_negentropy<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
        msg: &Message,
    ) -> Result<Step, ReconcileError> {
        use negentropy::Payload as NPayload;
        let mut step = Step::default();
        let max_parts = self.config.max_parts;
        match negentropy::parts(&msg.0) {
            Ok(parts) => {
                let mut count = 0usize;
                for part in parts {
                    part?;
                    count += 1;
                    if count > max_parts {
                        return Err(Limit::Parts { limit: max_parts }.into());
                    }
                }
            }
            Err(negentropy::DecodeError::UnsupportedVersion(v)) if !self.initiator => {
                // Tell the peer which version we speak, so it can downgrade.
                debug!(version = v, "reconcile: negentropy version not supported");
                let reply = Message(vec![negentropy::PROTOCOL_VERSION]);
                self.sent(&reply);
                self.done = true;
                step.reply = Some(reply);
                return Ok(step);
            }
            Err(e) => return Err(e.into()),
        }
        // Negentropy stops adding ranges once a message would pass `limit - 200` bytes.
        let budget = self
            .config
            .max_message_bytes
            .map_or(usize::MAX, |l| l.saturating_sub(negentropy::FRAME_RESERVE));
        let mut enc = negentropy::Encoder::new();
        let mut written = 0usize;
        let mut lower = EntryKey::MIN;
        for part in negentropy::parts(&msg.0)? {
            let part = part?;
            let range = neg_range(lower, &part.upper);
            let skip = negentropy::Part {
                upper: part.upper,
                payload: NPayload::Skip,
            };
            let mark = enc.mark();
            // whether the output for this range stays even if it overflows the frame
            let mut keep = false;
            let mut push = |enc: &mut negentropy::Encoder, p: &negentropy::Part| {
                written += usize::from(!matches!(p.payload, NPayload::Skip)) * 2;
                enc.push(p).map_err(inconsistent)
            };
            match &part.payload {
                NPayload::Skip => push(&mut enc, &skip)?,
                NPayload::Fingerprint(fp) => {
                    if store.negentropy_fingerprint(&range)? == *fp {
                        push(&mut enc, &skip)?;
                    } else {
                        for p in neg_split(store, &range, part.upper)? {
                            push(&mut enc, &p)?;
                        }
                    }
                }
                NPayload::IdList(theirs) if self.initiator => {
                    let mut theirs: Vec<Hash> = theirs.clone();
                    theirs.sort_unstable();
                    theirs.dedup();
                    let mut matched = vec![false; theirs.len()];
                    // A range carried over by our own frame limit restarts at the last range
                    // we wrote and can settle again what we already reported: report once.
                    // Our keys are read a chunk at a time; each chunk is charged first.
                    let (reported, reported_hashes) = (&self.reported, &self.reported_hashes);
                    let base = self.pending_bytes
                        + reported.len() * REPORTED_KEY_BYTES
                        + reported_hashes.len() * REPORTED_HASH_BYTES;
                    let limit = self.config.max_session_memory;
                    let mut new_have: Vec<EntryKey> = Vec::new();
                    for_each_chunk(store, &range, |keys| {
                        for k in keys {
                            match theirs.binary_search(&k.hash) {
                                Ok(i) => matched[i] = true,
                                Err(_) if !reported.contains(k) => new_have.push(*k),
                                Err(_) => {}
                            }
                        }
                        let needed = base + new_have.len() * REPORTED_KEY_BYTES;
                        if needed > limit {
                            return Err(StoreError::new(Limit::SessionMemory { needed, limit }));
                        }
                        Ok(true)
                    })
                    .map_err(|e| {
                        match e.into_inner().downcast::<Limit>() {
                            Ok(limit) => ReconcileError::Limit(*limit),
                            Err(other) => ReconcileError::Store(StoreError::new(other)),
                        }
                    })?;
                    let unmatched = matched.iter().filter(|m| !**m).count();
                    self.charge(
                        new_have.len() * REPORTED_KEY_BYTES + unmatched * REPORTED_HASH_BYTES,
                    )?;
                    for k in new_have {
                        if self.reported.insert(k) {
                            step.have.push(k);
                        }
                    }
                    let reported = &mut self.reported_hashes;
                    step.need_hashes.extend(
                        theirs
                            .iter()
                            .zip(&matched)
                            .filter(|(h, m)| !**m && reported.insert(**h))
                            .map(|(h, _)| *h),
                    );
                    push(&mut enc, &skip)?;
                }
                NPayload::IdList(_) => {
                    // The responder answers with its own ids, cut short where the frame fills;
                    // the cut list stays and the rest of the key space is carried over. Keys
                    // are read a chunk at a time and never past what the frame can take.
                    let start = enc.len();
                    let mut upper = part.upper;
                    let mut ids = Vec::new();
                    for_each_chunk(store, &range, |keys| {
                        for k in keys {
                            if start + 32 * ids.len() > budget {
                                upper = negentropy::Bound::at(k);
                                return Ok(false);
                            }
                            ids.push(k.hash);
                        }
                        Ok(true)
                    })?;
                    push(
                        &mut enc,
                        &negentropy::Part {
                            upper,
                            payload: NPayload::IdList(ids),
                        },
                    )?;
                    keep = true;
                }
            }
            if enc.len() > budget || written > max_parts - 2 {
                // Out of room: one fingerprint covers everything after the last range written,
                // for the peer to answer next round.
                if !keep {
                    enc.rollback(mark);
                }
                enc.drop_skip();
                let rest = neg_range(enc.written_upto(), &negentropy::Bound::INFINITY);
                enc.push(&negentropy::Part {
                    upper: negentropy::Bound::INFINITY,
                    payload: NPayload::Fingerprint(store.negentropy_fingerprint(&rest)?),
                })
                .map_err(inconsistent)?;
                self.stats.carried_over += 1;
                debug!(from = ?rest.start, "reconcile: negentropy frame limit reached, carrying ranges over");
                break;
            }
            lower = part.upper.key();
        }
        let bytes = enc.finish();
        if self.initiator && bytes.len() == 1 {
            // Nothing left to ask: the session ends here and the empty answer is not sent.
            self.done = true;
        } else {
            let reply = Message(bytes);
            self.sent(&reply);
            step.reply = Some(reply);
            self.done = !self.initiator;
        }
        debug!(
            have = step.have.len(),
            need = step.need_hashes.len(),
            reply = step.reply.as_ref().map(Message::len),
            done = self.done,
            "reconcile: handled negentropy message"
        );
        Ok(step)
    }

    /// Removes and returns every pending range that overlaps `r`.
    fn take_overlapping(&mut self, r: &Range) -> Vec<(EntryKey, Pending)> {
        let mut starts = Vec::new();
        if let Some((s, p)) = self.pending.range(..r.start).next_back() {
            if p.end().is_none_or(|e| e > r.start) {
                starts.push(*s);
            }
        }
        for s in self.pending.range(r.start..).map(|(s, _)| *s) {
            if r.end.is_some_and(|e| s >= e) {
                break;
            }
            starts.push(s);
        }
        let taken: Vec<(EntryKey, Pending)> = starts
            .into_iter()
            .filter_map(|s| self.pending.remove(&s).map(|p| (s, p)))
            .collect();
        for (_, p) in &taken {
            self.pending_bytes -= p.bytes();
        }
        taken
    }

    /// Works out the answer to one part of the peer's message.
    fn answer<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
        range: &Range,
        payload: &Payload,
        out: &mut Out,
    ) -> Result<(), ReconcileError> {
        let overlapping = self.take_overlapping(range);
        let exact =
            |start: &EntryKey, end: Option<EntryKey>| *start == range.start && end == range.end;
        let unexpected = |what: &str| {
            Err(ReconcileError::Protocol(format!(
                "{} for [{:?}, {:?}) does not match what we are waiting on there",
                what, range.start, range.end
            )))
        };
        match payload {
            Payload::Skip => {
                for (start, p) in overlapping {
                    let inside = start >= range.start
                        && match (p.end(), range.end) {
                            (_, None) => true,
                            (Some(e), Some(re)) => e <= re,
                            (None, Some(_)) => false,
                        };
                    match p {
                        Pending::Resolved {
                            mine_only, wanted, ..
                        } if inside && wanted.is_empty() => out.have.extend(mine_only),
                        _ => return unexpected("Skip"),
                    }
                }
                out.part(range.end, Payload::Skip);
            }
            Payload::Fingerprint(fp) => {
                // Whatever we waited on inside this range, the peer has started it over.
                let mine = store.aggregate(range)?;
                if mine.fingerprint() == *fp {
                    out.part(range.end, Payload::Skip);
                } else if mine.count() <= self.config.list_threshold as u64 {
                    let keys = listed_keys(store, range, self.config.list_threshold)?;
                    let len = self.config.prefix_len;
                    let prefixes = keys
                        .iter()
                        .flat_map(|k| k.hash.0[..len as usize].iter().copied())
                        .collect();
                    out.part(range.end, Payload::PrefixList { len, prefixes });
                    out.pending.push((
                        range.start,
                        Pending::Listed {
                            end: range.end,
                            peer_fp: *fp,
                            keys,
                            full: false,
                        },
                    ));
                } else {
                    self.split(store, range, mine.count(), out)?;
                }
            }
            Payload::PrefixList { len, prefixes } => {
                if !overlapping.is_empty() {
                    return unexpected("PrefixList");
                }
                let count = store.count(range)?;
                if count > self.config.list_threshold as u64 {
                    return self.split(store, range, count, out);
                }
                let mine = listed_keys(store, range, self.config.list_threshold)?;
                let len = *len as usize;
                let mut unmatched: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
                for (i, k) in mine.iter().enumerate().rev() {
                    unmatched.entry(&k.hash.0[..len]).or_default().push(i);
                }
                let mut matched = vec![false; mine.len()];
                let mut missing = Vec::new();
                let mut wanted = Vec::new();
                for (pos, p) in prefixes.chunks_exact(len).enumerate() {
                    match unmatched.get_mut(p).and_then(Vec::pop) {
                        Some(i) => matched[i] = true,
                        None => {
                            missing.push(pos as u32);
                            wanted.extend_from_slice(p);
                        }
                    }
                }
                let mine_only: Vec<EntryKey> = mine
                    .iter()
                    .zip(&matched)
                    .filter(|(_, m)| !**m)
                    .map(|(k, _)| *k)
                    .collect();
                out.part(
                    range.end,
                    Payload::Resolve {
                        missing,
                        keys: mine_only.clone(),
                    },
                );
                // Nothing to wait for when both sides listed the same keys: the peer answers
                // with a Skip, which needs no pending state.
                if !mine_only.is_empty() || !wanted.is_empty() {
                    out.pending.push((
                        range.start,
                        Pending::Resolved {
                            end: range.end,
                            mine_only,
                            wanted,
                            wanted_len: len,
                        },
                    ));
                }
            }
            Payload::FullList(theirs) => {
                // Allowed only as the fallback for a prefix list we resolved.
                for (start, p) in &overlapping {
                    if !matches!(p, Pending::Resolved { end, .. } if exact(start, *end)) {
                        return unexpected("FullList");
                    }
                }
                let count = store.count(range)?;
                if count > self.config.list_threshold as u64 {
                    return self.split(store, range, count, out);
                }
                let mine = listed_keys(store, range, self.config.list_threshold)?;
                let missing = theirs
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| mine.binary_search(k).is_err())
                    .map(|(i, _)| i as u32)
                    .collect::<Vec<_>>();
                let mine_only: Vec<EntryKey> = mine
                    .iter()
                    .filter(|k| theirs.binary_search(k).is_err())
                    .copied()
                    .collect();
                out.need.extend(missing.iter().map(|&i| theirs[i as usize]));
                out.have.extend(mine_only.iter().copied());
                out.part(
                    range.end,
                    Payload::Resolve {
                        missing,
                        keys: mine_only,
                    },
                );
            }
            Payload::Resolve { missing, keys } => {
                let mut overlapping = overlapping.into_iter();
                let (Some((start, listed)), None) = (overlapping.next(), overlapping.next()) else {
                    return unexpected("Resolve");
                };
                let Pending::Listed {
                    end,
                    peer_fp,
                    keys: listed,
                    full,
                } = listed
                else {
                    return unexpected("Resolve");
                };
                if !exact(&start, end) {
                    return unexpected("Resolve");
                }
                if missing.last().is_some_and(|&m| m as usize >= listed.len()) {
                    return Err(ReconcileError::Protocol(format!(
                        "Resolve names position {} of a list of {}",
                        missing.last().copied().unwrap_or_default(),
                        listed.len()
                    )));
                }
                let mut flagged = vec![false; listed.len()];
                for &m in missing {
                    flagged[m as usize] = true;
                }
                // The peer's set as the Resolve describes it must have the peer's fingerprint;
                // otherwise a prefix collision (or a change under our feet) hid a difference.
                let mut theirs: Vec<EntryKey> = listed
                    .iter()
                    .zip(&flagged)
                    .filter(|(_, f)| !**f)
                    .map(|(k, _)| *k)
                    .chain(keys.iter().copied())
                    .collect();
                theirs.sort_unstable();
                theirs.dedup();
                if Aggregate::of_keys(&theirs).fingerprint() == peer_fp {
                    let gave: Vec<EntryKey> = missing.iter().map(|&m| listed[m as usize]).collect();
                    out.have.extend(gave.iter().copied());
                    out.need
                        .extend(keys.iter().filter(|k| listed.binary_search(k).is_err()));
                    if full || gave.is_empty() {
                        out.part(range.end, Payload::Skip);
                    } else {
                        out.part(range.end, Payload::Keys(gave));
                    }
                } else if !full {
                    debug!(range = ?range.start, "reconcile: prefix collision, resending the range in full");
                    out.collisions += 1;
                    out.part(range.end, Payload::FullList(listed.clone()));
                    out.pending.push((
                        start,
                        Pending::Listed {
                            end,
                            peer_fp,
                            keys: listed,
                            full: true,
                        },
                    ));
                } else {
                    // Even full keys do not reproduce the peer's fingerprint: a store changed
                    // during the session, or the peer is lying. Start the range over.
                    debug!(range = ?range.start, "reconcile: peer's answer contradicts its fingerprint, restarting range");
                    out.part(range.end, Payload::Fingerprint(store.fingerprint(range)?));
                }
            }
            Payload::Keys(theirs) => {
                let mut overlapping = overlapping.into_iter();
                let (Some((start, p)), None) = (overlapping.next(), overlapping.next()) else {
                    return unexpected("Keys");
                };
                let Pending::Resolved {
                    end,
                    mine_only,
                    wanted,
                    wanted_len,
                } = p
                else {
                    return unexpected("Keys");
                };
                if !exact(&start, end) {
                    return unexpected("Keys");
                }
                let answers = theirs.len() * wanted_len == wanted.len()
                    && theirs
                        .iter()
                        .zip(wanted.chunks_exact(wanted_len))
                        .all(|(k, w)| k.hash.0.starts_with(w));
                if !answers {
                    return Err(ReconcileError::Protocol(
                        "Keys do not match the prefixes we asked for".into(),
                    ));
                }
                out.have.extend(mine_only);
                out.need.extend(theirs.iter().copied());
                out.part(range.end, Payload::Skip);
            }
        }
        Ok(())
    }

    /// Splits `range`, where we hold `count > list_threshold` keys, into parts of about
    /// `list_threshold` keys each (at most `branching` parts) and sends their fingerprints.
    fn split<S: RangeStore + ?Sized>(
        &self,
        store: &S,
        range: &Range,
        count: u64,
        out: &mut Out,
    ) -> Result<(), ReconcileError> {
        let k = (count.div_ceil(self.config.list_threshold as u64))
            .clamp(2, self.config.branching as u64);
        let mut lower = range.start;
        for i in 1..=k {
            let upper = if i == k {
                range.end
            } else {
                let rank = i * count / k;
                let (Some(pred), Some(item)) =
                    (store.key_at(range, rank - 1)?, store.key_at(range, rank)?)
                else {
                    return Err(inconsistent("key_at found fewer keys than count"));
                };
                // The separator must fall strictly inside the range, above the last bound:
                // a store whose set changed between the two calls could answer otherwise.
                let sep = message::separator(&pred, &item)
                    .filter(|s| *s > lower && range.end.is_none_or(|e| *s < e))
                    .ok_or_else(|| {
                        inconsistent(format!(
                            "key_at gave {pred:?} then {item:?} at ranks {} and {rank}",
                            rank - 1
                        ))
                    })?;
                Some(sep)
            };
            let child = Range::new(lower, upper);
            out.part(upper, Payload::Fingerprint(store.fingerprint(&child)?));
            if let Some(u) = upper {
                lower = u;
            }
        }
        Ok(())
    }
}

/// The key range a Negentropy range covers: from `lower` up to (excluding) `upper`. The
/// infinity bound is the key `(u64::MAX, 0)`, so keys with that HLC are outside every range,
/// as in Negentropy, which reserves the timestamp.
fn neg_range(lower: EntryKey, upper: &negentropy::Bound) -> Range {
    Range::new(lower, Some(upper.key()))
}

/// Negentropy's answer for a range whose fingerprints differ, and its opening message: the
/// ids if we hold fewer than 32 keys in it, otherwise 16 fingerprinted buckets of (nearly)
/// equal size by rank, the larger ones first, separated by minimal bounds.
fn neg_split<S: RangeStore + ?Sized>(
    store: &S,
    range: &Range,
    upper: negentropy::Bound,
) -> Result<Vec<negentropy::Part>, ReconcileError> {
    use negentropy::{Part as NPart, Payload as NPayload, BUCKETS, ID_LIST_BELOW};
    let count = store.count(range)?;
    if count < ID_LIST_BELOW {
        let keys = listed_keys(store, range, ID_LIST_BELOW as usize)?;
        let ids = keys.iter().map(|k| k.hash).collect();
        return Ok(vec![NPart {
            upper,
            payload: NPayload::IdList(ids),
        }]);
    }
    let missing = || inconsistent("key_at found fewer keys than count");
    let (per, extra) = (count / BUCKETS, count % BUCKETS);
    let mut parts = Vec::with_capacity(BUCKETS as usize);
    let mut lower = range.start;
    let mut rank = 0;
    for i in 0..BUCKETS {
        rank += per + u64::from(i < extra);
        let bound = if rank == count {
            upper
        } else {
            let prev = store.key_at(range, rank - 1)?.ok_or_else(missing)?;
            let curr = store.key_at(range, rank)?.ok_or_else(missing)?;
            let bound = negentropy::Bound::minimal(&prev, &curr);
            if prev >= curr || bound.key() < lower || !range.contains(&curr) {
                return Err(inconsistent(format!(
                    "key_at gave {prev:?} then {curr:?} at ranks {} and {rank}",
                    rank - 1
                )));
            }
            bound
        };
        let fp = store.negentropy_fingerprint(&Range::new(lower, Some(bound.key())))?;
        parts.push(NPart {
            upper: bound,
            payload: NPayload::Fingerprint(fp),
        });
        lower = bound.key();
    }
    Ok(parts)
}

/// Room kept in every limited message for the Skip and Fingerprint parts that carry leftover
/// ranges into the next round.
const CARRY_RESERVE: usize = 2 * (1 + 1 + 10 + 32) + 16;

const _: () = assert!(MAX_LIST_ITEMS >= 64);
