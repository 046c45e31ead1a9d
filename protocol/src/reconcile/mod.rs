//! The reconciliation state machine: two peers find out which keys each lacks by exchanging
//! [`Message`]s, recursively splitting ranges whose fingerprints differ.
//!
//! The machine never touches a socket or a clock: [`Reconciler::initiate`] produces the first
//! message, [`Reconciler::handle`] consumes one and returns a [`Step`] with the reply to send
//! (if any) and the differences learned. The caller moves bytes, like `quinn` drives
//! `quinn-proto`. In the carried key form ([`KeyForm::Carried`], spec 8.12) the caller uses
//! [`Reconciler::handle_carried`] instead, passing the keys of the entries the peer sent just
//! before the message, and sends the entries of [`Step::carried`] just before each reply.
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

use crate::fingerprint::{Salt, FINGERPRINT_LEN};
use crate::key::{EntryKey, Hash, Range};
#[cfg(feature = "negentropy")]
use crate::negentropy;
use crate::range::RangeStore;
use crate::wire::message::{self, Encoder, Part, Payload, MAX_LIST_ITEMS};

mod answer;
mod config;
mod error;
#[cfg(feature = "negentropy")]
mod negentropy_dialect;
mod pending;
mod split;
mod step;

use answer::Out;
use error::inconsistent;
#[cfg(feature = "negentropy")]
use negentropy_dialect::{neg_range, neg_split};
use pending::{Pending, REPORTED_HASH_BYTES, REPORTED_KEY_BYTES};

pub use config::{
    Config, Dialect, KeyForm, DEFAULT_MAX_CARRIED_KEYS, DEFAULT_MAX_MESSAGES,
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_PARTS, DEFAULT_MAX_SESSION_MEMORY,
    LONG_LIST_MESSAGE_BYTES, MIN_CARRIED_KEYS, MIN_MESSAGE_BYTES, MIN_PARTS, MIN_SESSION_MEMORY,
    PENDING_PER_TRAFFIC_BYTE,
};
pub use error::{Limit, ReconcileError};
pub use step::{Message, SessionStats, Step};

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
    /// yield the same difference again, and each key is reported once. Empty in the carried
    /// form, which keeps no such record (spec 8.12).
    reported: HashSet<EntryKey>,
    /// Negentropy dialect: every hash already reported in [`Step::need_hashes`].
    reported_hashes: HashSet<Hash>,
    /// The session's fingerprint salt (spec 7.1): drawn (or taken from the config) by the
    /// initiator, read from the opening message by the responder; zero until then.
    salt: Salt,
    /// For the message being answered, when dense listing applies (spec 8.4): per
    /// Fingerprint part, in order, whether our fingerprint of its range equals it and our key
    /// count there, computed once before answering. At most `max_parts` entries.
    survey: std::collections::VecDeque<(bool, u64)>,
    /// Most keys the reply being built lists in answer to a Fingerprint: `list_max` when the
    /// reply is dense (at most 1/256 of the received message's Fingerprint parts agree with
    /// ours, and at least one differs), `list_threshold` otherwise.
    list_up_to: usize,
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
            salt: Salt::default(),
            survey: std::collections::VecDeque::new(),
            list_up_to: 0,
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
        #[cfg(feature = "negentropy")]
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
        self.salt = match self.config.salt {
            Some(salt) => salt,
            None => Salt::random()?,
        };
        let mut out = Out::new();
        let count = store.count(&Range::FULL)?;
        if self.config.initial_split && count > self.config.list_threshold as u64 {
            self.split(store, &Range::FULL, count, &mut out)?;
        } else {
            out.part(
                None,
                Payload::Fingerprint(store.fingerprint(&Range::FULL, &self.salt)?),
            );
        }
        let mut enc = Encoder::opening(KeyForm::Inline, Some(&self.salt));
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
    /// This is for the inline key form (the default); a reconciler configured with
    /// [`KeyForm::Carried`] fails with [`ReconcileError::Misuse`] and takes
    /// [`Reconciler::handle_carried`] instead.
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
        if self.config.key_form != KeyForm::Inline {
            return Err(ReconcileError::Misuse(
                "handle is for the inline key form; this reconciler is configured for KeyForm::Carried, call handle_carried",
            ));
        }
        self.handle_in(store, msg, None)
    }

    /// Handles a message in the carried key form (`spec/SPEC.md` 8.12): `carried` is the
    /// message's carried key list, the keys of the entries the peer sent just before it, in
    /// the order sent. Returns the reply (if one is due), the differences learned, and in
    /// [`Step::carried`] the keys whose entries must be sent just before the reply.
    ///
    /// A reconciler configured with [`KeyForm::Inline`] fails with
    /// [`ReconcileError::Misuse`]. Checks, in order: as [`Reconciler::handle`] up to
    /// [`Limit::MessageBytes`]; then [`Limit::CarriedKeys`]; then the whole message is decoded
    /// against `carried` ([`ReconcileError::Decode`], including a list that the message does
    /// not take exactly, or [`Limit::Parts`]); then each part as in [`Reconciler::handle`].
    /// `carried` is read twice (validation, then handling) and never copied whole.
    pub fn handle_carried<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
        msg: &Message,
        carried: &[EntryKey],
    ) -> Result<Step, ReconcileError> {
        if self.config.key_form != KeyForm::Carried {
            return Err(ReconcileError::Misuse(
                "handle_carried is for the carried key form; this reconciler is configured for KeyForm::Inline, call handle",
            ));
        }
        self.handle_in(store, msg, Some(carried))
    }

    /// [`Reconciler::handle`] and [`Reconciler::handle_carried`]: `carried` is `None` in
    /// inline form.
    fn handle_in<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
        msg: &Message,
        carried: Option<&[EntryKey]>,
    ) -> Result<Step, ReconcileError> {
        let _span = debug_span!(
            "reconcile",
            dialect = ?self.config.dialect,
            initiator = self.initiator,
            round = self.stats.messages_received + 1
        )
        .entered();
        self.admit(msg)?;
        #[cfg(feature = "negentropy")]
        if self.config.dialect == Dialect::NegentropyV1 {
            return self.handle_negentropy(store, msg);
        }
        let carried_in = carried.map_or(0, <[EntryKey]>::len);
        if carried_in > self.config.max_carried_keys {
            return Err(Limit::CarriedKeys {
                count: carried_in,
                limit: self.config.max_carried_keys,
            }
            .into());
        }
        // The responder's first message received is the session's opening: the salt of
        // every fingerprint follows its tag (spec 8.3).
        let opening = !self.initiator && self.stats.messages_received == 1;
        let read = |bytes| match (carried, opening) {
            (None, false) => message::parts(bytes),
            (None, true) => message::parts_opening(bytes),
            (Some(c), false) => message::parts_carried(bytes, c),
            (Some(c), true) => message::parts_carried_opening(bytes, c),
        };
        // First pass: the whole message must be valid, and within the part limit, before
        // anything is acted on. Parts are decoded one at a time and dropped.
        let max_parts = self.config.max_parts;
        let mut count = 0usize;
        let mut expects_reply = false;
        let mut reader = read(&msg.0)?;
        let salt = reader.salt();
        for part in &mut reader {
            let part = part?;
            count += 1;
            if count > max_parts {
                return Err(Limit::Parts { limit: max_parts }.into());
            }
            expects_reply |= part.payload.is_open();
        }
        trace!(parts = count, bytes = msg.len(), "reconcile: received");
        if let Some(salt) = salt {
            self.salt = salt;
        }
        self.survey_fingerprints(store, read(&msg.0)?)?;

        let mut reply = Reply {
            enc: Encoder::in_form(self.config.key_form),
            step: Step::default(),
            open: false,
            created: 0,
            received: msg.len(),
            carried_in,
            entries_may_follow: false,
        };
        let mut lower = EntryKey::MIN;
        let mut parts = read(&msg.0)?;
        let mut at_end = false;
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
            let fitted = if out.send_all && reply.entries_may_follow {
                // An earlier range of this reply may still bring the peer entries that
                // come before these in key order; sent now, these would arrive before
                // their parents. Hand the range back whole instead: the peer lists its
                // (empty) set again, and the range is sent in a later turn.
                let mut later = Out::new();
                later.part(
                    range.end,
                    Payload::Fingerprint(store.fingerprint(&range, &self.salt)?),
                );
                self.commit(store, range.start, later, &mut reply)?
            } else if out.send_all {
                self.send_all(store, &range, &mut reply)?
            } else {
                self.commit(store, range.start, out, &mut reply)?
            };
            if !fitted {
                break;
            }
            lower = part.upper.unwrap_or(lower);
        }
        self.survey.clear();
        let Reply {
            enc,
            mut step,
            open: reply_open,
            ..
        } = reply;
        if expects_reply {
            let (bytes, carried_out) = enc.finish_carried();
            let reply = Message(bytes);
            self.sent(&reply);
            step.reply = Some(reply);
            step.carried = carried_out;
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
}

impl Reconciler {
    /// Dense listing (spec 8.4): with [`Config::dense_lists`] on and long lists allowed,
    /// computes our fingerprint and count of every Fingerprint part's range of a validated
    /// message, keeps them for the answers, and decides whether the reply is dense.
    fn survey_fingerprints<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
        parts: message::PartReader<'_>,
    ) -> Result<(), ReconcileError> {
        self.survey.clear();
        self.list_up_to = self.config.list_threshold;
        if !self.config.dense_lists || self.config.list_max() <= self.config.list_threshold {
            return Ok(());
        }
        let mut lower = EntryKey::MIN;
        let mut differ = 0usize;
        for part in parts {
            let part = part?;
            if let Payload::Fingerprint(fp) = &part.payload {
                let mine = store.aggregate(&Range::new(lower, part.upper))?;
                let equal = mine.fingerprint(&self.salt) == *fp;
                differ += usize::from(!equal);
                self.survey.push_back((equal, mine.count()));
            }
            if let Some(u) = part.upper {
                lower = u;
            }
        }
        // dense when at most 1/256 of the fingerprints agree: differences are then so dense
        // (about 5.5 or more per range) that the next level's fingerprints would mostly differ
        // too; at 1% differences in 10^6 keys, 9% of the last level's ranges agree
        let agree = self.survey.len() - differ;
        if differ > 0 && agree * 256 <= self.survey.len() {
            self.list_up_to = self.config.list_max();
        }
        Ok(())
    }
}

/// The reply being built for one received message, with what it has reported so far.
struct Reply {
    enc: Encoder,
    step: Step,
    /// Whether a part of the reply expects an answer.
    open: bool,
    /// Bytes of pending state the reply's answers created.
    created: usize,
    /// Bytes of the received message.
    received: usize,
    /// Keys carried beside the received message.
    carried_in: usize,
    /// Whether an answer so far is a `Fingerprint`, `PrefixList` or `FullList` part: a range
    /// that may still make this side send entries in a later turn.
    entries_may_follow: bool,
}

impl Reconciler {
    /// Appends one answer `out`, for a range starting at `start`, to the reply and takes on
    /// its effects; or, when it does not fit the reply's limits (8.8), discards it, cuts the
    /// reply with one Fingerprint of `[start, ∞)` and returns `false`.
    fn commit<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
        start: EntryKey,
        out: Out,
        reply: &mut Reply,
    ) -> Result<bool, ReconcileError> {
        let limit = self.config.max_message_bytes.unwrap_or(usize::MAX);
        let enc = &mut reply.enc;
        let mark = enc.mark();
        for p in &out.parts {
            enc.push(p).map_err(inconsistent)?;
        }
        if enc.len() > limit.saturating_sub(CARRY_RESERVE)
            || enc.parts() > self.config.max_parts - 2
            || enc.carried_len() > self.config.max_carried_keys
        {
            // Out of room: everything from here on goes into one fingerprint that the
            // peer answers next round; what we were waiting on there starts over.
            enc.rollback(mark);
            for (_, p) in self.pending.split_off(&start) {
                self.pending_bytes -= p.bytes();
            }
            enc.push(&Part {
                upper: None,
                payload: Payload::Fingerprint(
                    store.fingerprint(&Range::new(start, None), &self.salt)?,
                ),
            })
            .map_err(inconsistent)?;
            reply.open = true;
            self.stats.carried_over += 1;
            debug!(from = ?start, "reconcile: message limit reached, carrying ranges over");
            return Ok(false);
        }
        let added: usize = out.pending.iter().map(|(_, p)| p.bytes()).sum();
        reply.created += added;
        // carried keys travel as entries beside the messages: at least 40 bytes each
        let traffic =
            reply.received + enc.len() + CARRIED_KEY_BYTES * (reply.carried_in + enc.carried_len());
        let allowed = PENDING_PER_TRAFFIC_BYTE * traffic;
        if reply.created > allowed {
            return Err(Limit::PendingState {
                needed: reply.created,
                limit: allowed,
            }
            .into());
        }
        let step = &mut reply.step;
        if self.config.key_form == KeyForm::Carried {
            // No record of reported keys (spec 8.12): session memory stays independent
            // of the size of the difference; a key may be reported twice.
            self.charge(added)?;
            self.pending_bytes += added;
            self.pending.extend(out.pending);
            step.have.extend(out.have);
            step.need.extend(out.need);
        } else {
            self.charge(added + (out.have.len() + out.need.len()) * REPORTED_KEY_BYTES)?;
            self.pending_bytes += added;
            self.pending.extend(out.pending);
            let reported = &mut self.reported;
            step.have
                .extend(out.have.into_iter().filter(|k| reported.insert(*k)));
            step.need
                .extend(out.need.into_iter().filter(|k| reported.insert(*k)));
        }
        reply.open |= out.parts.iter().any(|p| p.payload.is_open());
        reply.entries_may_follow |= out.parts.iter().any(|p| {
            matches!(
                p.payload,
                Payload::Fingerprint(_) | Payload::PrefixList { .. } | Payload::FullList(_)
            )
        });
        self.stats.prefix_collisions += out.collisions;
        Ok(true)
    }

    /// Answers the peer's empty prefix list over `range`, where we hold more than
    /// `list_threshold` keys, with all of them: Resolve parts over consecutive pieces of
    /// `range`, each committed as one answer (so a full reply is cut between pieces). A piece
    /// holds up to [`Config::list_max`] keys inline (so it fits the smallest message allowed
    /// with that limit, as every other answer does) and up to 256 in the carried form, where
    /// its keys ride beside the message and a piece costs a few bytes whatever its size; with
    /// messages of 16 KiB or more both forms send the same parts. Returns `false` if the reply
    /// was cut.
    fn send_all<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
        range: &Range,
        reply: &mut Reply,
    ) -> Result<bool, ReconcileError> {
        let piece = match self.config.key_form {
            KeyForm::Carried => MAX_LIST_ITEMS,
            _ => self.config.list_max(),
        };
        let mut lower = range.start;
        loop {
            let rest = Range::new(lower, range.end);
            let mut keys = listed_keys(store, &rest, piece + 1)?;
            let upper = if keys.len() > piece {
                let (pred, item) = (keys[piece - 1], keys[piece]);
                keys.truncate(piece);
                let sep = message::separator(&lower, &pred, &item)
                    .filter(|s| *s > lower && range.end.is_none_or(|e| *s < e))
                    .ok_or_else(|| inconsistent("no bound between two listed keys"))?;
                Some(sep)
            } else {
                range.end
            };
            if keys.is_empty() {
                return Err(inconsistent("a range counted non-empty lists no keys"));
            }
            let mut out = Out::new();
            out.part(
                upper,
                Payload::Resolve {
                    missing: Vec::new(),
                    keys: keys.clone(),
                },
            );
            out.pending.push((
                lower,
                Pending::Resolved {
                    end: upper,
                    mine_only: keys,
                    wanted: Vec::new(),
                    wanted_len: 32,
                },
            ));
            if !self.commit(store, lower, out, reply)? {
                return Ok(false);
            }
            match upper {
                Some(u) if upper != range.end => lower = u,
                _ => return Ok(true),
            }
        }
    }
}

/// Room kept in every limited message for the Skip and Fingerprint parts that carry leftover
/// ranges into the next round.
const CARRY_RESERVE: usize = 2 * (1 + 1 + 10 + 32) + FINGERPRINT_LEN;

/// Bytes of traffic a carried key stands for when bounding pending state (8.11): the key's
/// own 40 bytes (HLC and hash), which its entry carries beside the message.
const CARRIED_KEY_BYTES: usize = 40;

const _: () = assert!(MAX_LIST_ITEMS >= 64);
