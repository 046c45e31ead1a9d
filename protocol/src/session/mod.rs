//! A whole sync session between two nodes as a state machine that never touches a socket, a
//! disk write or a clock (spec section 9), the way `quinn-proto`'s `Connection` sits under
//! `quinn`.
//!
//! The driver feeds it what arrives ([`Session::handle_frame_len`], [`Session::handle_frame`],
//! [`Session::handle_eof`]) and the time ([`Session::handle_timeout`]); it takes out, in this
//! order after every call, the events ([`Session::poll_event`]: entries to apply, progress,
//! the end) and the frames to send ([`Session::poll_transmit`]). The session reads the store
//! through [`SessionStore`] (entries to send, the fetch list, ancestry answers) and reconciles
//! over a snapshot of its keys taken when the session starts; it never writes: every received
//! entry comes out verified in an [`Event::Apply`], and the driver stores it before polling for
//! frames.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use oplog_protocol::replica::MemoryReplica;
//! use oplog_protocol::session::{Event, Role, Session, SessionConfig};
//! use oplog_protocol::{HlcClock, LogEntry, MemoryStore, ObjectId, Op, SigningKey};
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let mut clock = HlcClock::new(|| 1_780_000_000_000_000_000u64, Duration::from_secs(60));
//! let mut alice: MemoryReplica<Op> = MemoryReplica::new();
//! let mut bob: MemoryReplica<Op> = MemoryReplica::new();
//! let mut parent = vec![];
//! for i in 0..100u8 {
//!     let put = Op::Put { bucket: "b".into(), key: format!("k{i}"), object_id: ObjectId([i; 32]) };
//!     let e = LogEntry::sign(&key, clock.tick()?, put, parent)?;
//!     parent = vec![e.hash];
//!     alice.insert(vec![e], clock.wall(), Duration::from_secs(60), None);
//! }
//!
//! // Frames go straight across here; a driver writes them to a stream and applies each
//! // side's events before polling it for frames.
//! fn pump(from: &mut Session<Op, MemoryStore>, from_store: &MemoryReplica<Op>,
//!         to: &mut Session<Op, MemoryStore>, to_store: &mut MemoryReplica<Op>, now: Instant) {
//!     while let Some(frame) = from.poll_transmit(from_store, now) {
//!         let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
//!         if to.handle_frame_len(len) {
//!             to.handle_frame(frame[4..].to_vec(), now);
//!         }
//!         while let Some(event) = to.poll_event() {
//!             if let Event::Apply(entries) = event {
//!                 let entries: Vec<_> = entries.into_iter().map(|e| e.into_inner()).collect();
//!                 to_store.insert(entries, 1_780_000_000_000_000_000, Duration::from_secs(60), None);
//!             }
//!         }
//!     }
//! }
//! let now = Instant::now();
//! let mut a = Session::new(SessionConfig::default(), Role::Initiator, alice.key_set(), now)?;
//! let mut b = Session::new(SessionConfig::default(), Role::Responder, bob.key_set(), now)?;
//! while !(a.is_finished() && b.is_finished()) {
//!     pump(&mut a, &alice, &mut b, &mut bob, now);
//!     pump(&mut b, &bob, &mut a, &mut alice, now);
//! }
//! assert!(a.report().is_done() && b.report().is_done());
//! assert_eq!(bob.len(), 100);
//! assert_eq!(b.report().entries_received, 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::time::Instant;

use tracing::{debug, debug_span, warn};

use crate::entry::{verify_decoded, Action, Decoded, Unverified, VerifiedEntry};
use crate::key::EntryKey;
use crate::range::RangeStore;
use crate::reconcile::{KeyForm, Message, ReconcileError, Reconciler};
use crate::wire::{AncestryAnswer, AncestryRequest, MAX_HAVES, MAX_WANTS};

mod config;
mod end;
pub mod frame;
mod push;
mod report;
mod store;

pub use config::{
    SessionConfig, DEFAULT_BATCH_BYTES, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_ANCESTRY_REQUESTS,
    DEFAULT_MAX_BYTES_RECEIVED, DEFAULT_MAX_DURATION, DEFAULT_MAX_FRAME_BYTES, MIN_FRAME_BYTES,
};
pub use end::EndCode;
pub use frame::{FrameError, FRAME_HEADER_LEN, MAX_REASON_BYTES};
pub use push::check_push;
pub use report::SyncReport;
pub use store::SessionStore;

use frame::Frame;

/// Bytes of an ENTRIES frame besides its entries and their lengths, at most: the type byte and
/// the entry count.
const ENTRIES_FRAME_FIXED: usize = 1 + 5;

/// A frame body with the costly part of handling it already done, for
/// [`Session::handle_prepared`]: the entries of an ENTRIES frame decoded and their signatures
/// checked (strict ed25519 on all cores, most of the CPU a sync spends).
///
/// [`Prepared::new`] needs no session, so a driver can prepare the next frame on another
/// thread while the session handles (and the store applies) the one before: verification and
/// storing then overlap. The session's checks, their order and every outcome are those of
/// [`Session::handle_frame`]; it only takes the verdicts from here. Any other frame, and one
/// that does not parse, is kept as it is for the session to judge.
pub struct Prepared<A = crate::Op> {
    body: Vec<u8>,
    entries: Option<Checked<A>>,
}

/// The entries of an ENTRIES frame, decoded and verified, or the first decoding failure.
type Checked<A> = Result<CheckedEntries<A>, (EndCode, String)>;

/// Received entries: their keys in frame order, and each one's verification verdict.
struct CheckedEntries<A> {
    keys: Vec<EntryKey>,
    verdicts: Vec<Result<VerifiedEntry<A>, Unverified>>,
}

impl<A: Action> Prepared<A> {
    /// Prepares a frame body (the bytes after its length header).
    pub fn new(body: Vec<u8>) -> Self {
        let entries = match frame::parse(&body) {
            Ok(Frame::Entries(raw)) => Some(check_entries(&raw)),
            _ => None,
        };
        Prepared { body, entries }
    }

    /// The body's length in bytes.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Whether the body is empty (a frame the session refuses).
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }
}

impl<A> std::fmt::Debug for Prepared<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("len", &self.body.len())
            .field(
                "entries",
                &self
                    .entries
                    .as_ref()
                    .map(|c| c.as_ref().map(|e| e.keys.len())),
            )
            .finish()
    }
}

/// Decodes entries, notes their keys, and verifies them (stopping at the first that does not
/// decode).
fn check_entries<A: Action>(raw: &[&[u8]]) -> Checked<A> {
    let decoded = decode_entries::<A>(raw)?;
    let keys = decoded.iter().map(|e| e.key()).collect();
    Ok(CheckedEntries {
        keys,
        verdicts: verify_decoded(decoded),
    })
}

/// Which side of the session this is: the initiator dialed and sends the first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opened the session (sent the first reconciliation message).
    Initiator,
    /// Accepted it.
    Responder,
}

/// What the driver must act on, from [`Session::poll_event`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<A = crate::Op> {
    /// Entries received and verified, in the order received (ascending keys within one
    /// frame): store them (spec 6.1) before the next [`Session::poll_transmit`].
    Apply(Vec<VerifiedEntry<A>>),
    /// A reconciliation message was handled; the counters so far.
    Progress(SyncReport),
    /// The session completed: both sides hold what the other held when it started (and the
    /// ancestry their held-back entries lacked, as far as the peer had it).
    Done(SyncReport),
    /// The session ended without completing. What was applied stays applied and valid.
    Ended {
        /// Why.
        code: EndCode,
        /// The reason in words (the peer's, if `by_peer`).
        reason: String,
        /// Whether the peer ended it (its END frame, or its stream ending).
        by_peer: bool,
        /// The counters at the end.
        report: SyncReport,
    },
}

/// Why [`Session::new`] refused to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The configuration is out of range; the message says which field.
    #[error(transparent)]
    Config(ReconcileError),
    /// The initiator could not build its first message from the snapshot.
    #[error("could not start the session: {0}")]
    Start(ReconcileError),
}

/// One side of a sync session. See the [module docs](self).
// The flags are independent facts of the turn protocol (whose turn, whether each END went,
// whether asking stopped); folding them into one enum would list their product.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug)]
pub struct Session<A: Action = crate::Op, R: RangeStore = crate::RangeIndex> {
    config: SessionConfig,
    snapshot: R,
    reconciler: Reconciler,
    report: SyncReport,
    started: Instant,
    last_activity: Instant,
    events: VecDeque<Event<A>>,
    /// Keys whose entries go out before `out_message`, in order.
    out_keys: VecDeque<EntryKey>,
    /// Entries loaded for sending and not yet framed.
    out_loaded: VecDeque<Vec<u8>>,
    /// Our next reconciliation message, sent after its entries.
    out_message: Option<Message>,
    /// Whether the peer's next reconciliation message is due (it has ours, or we respond).
    their_turn: bool,
    /// Keys of the entries received since the peer's last message: its carried list.
    turn_keys: Vec<EntryKey>,
    /// The `limit` of our ancestry request awaiting its answer.
    awaiting_answer: Option<u32>,
    /// No more ancestry requests: the peer lacked what we wanted, or stopped helping.
    ancestry_stop: bool,
    requests_received: u32,
    /// The peer's ancestry request, to answer in the next `poll_transmit`.
    to_answer: Option<AncestryRequest>,
    end_sent: bool,
    peer_done: bool,
    /// A failure decided here: its END frame goes out next, and nothing more is read.
    failing: Option<(EndCode, String)>,
    finished: bool,
}

impl<A: Action, R: RangeStore> Session<A, R> {
    /// A session over `snapshot`, this side's keys at the start (spec 8.1: every message is
    /// answered from it). The initiator's first message is ready for
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn new(
        config: SessionConfig,
        role: Role,
        snapshot: R,
        now: Instant,
    ) -> Result<Self, SessionError> {
        let mut config = config;
        config.reconcile.key_form = KeyForm::Carried;
        config.validate().map_err(SessionError::Config)?;
        let mut reconciler =
            Reconciler::new(config.reconcile.clone()).map_err(SessionError::Config)?;
        let out_message = match role {
            Role::Initiator => Some(
                reconciler
                    .initiate(&snapshot)
                    .map_err(SessionError::Start)?,
            ),
            Role::Responder => None,
        };
        Ok(Session {
            config,
            snapshot,
            reconciler,
            report: SyncReport::new(role),
            started: now,
            last_activity: now,
            events: VecDeque::new(),
            out_keys: VecDeque::new(),
            out_loaded: VecDeque::new(),
            out_message,
            their_turn: role == Role::Responder,
            turn_keys: Vec::new(),
            awaiting_answer: None,
            ancestry_stop: false,
            requests_received: 0,
            to_answer: None,
            end_sent: false,
            peer_done: false,
            failing: None,
            finished: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The counters so far.
    pub fn report(&self) -> SyncReport {
        self.report
    }

    /// Whether the session is over: nothing more will be sent or read. Drain
    /// [`poll_event`](Self::poll_event) once more, then close the stream.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The length header of the next frame. `false` means the frame is refused (longer than
    /// [`SessionConfig::max_frame_bytes`], empty, past [`SessionConfig::max_bytes_received`],
    /// or the session is ending): read nothing more, send what
    /// [`poll_transmit`](Self::poll_transmit) gives, and close.
    pub fn handle_frame_len(&mut self, len: u32) -> bool {
        if self.failing.is_some() || self.finished {
            return false;
        }
        self.report.bytes_received += FRAME_HEADER_LEN as u64;
        if len == 0 {
            self.fail(EndCode::Protocol, FrameError::Empty.to_string());
            return false;
        }
        if len as usize > self.config.max_frame_bytes {
            let e = FrameError::TooLarge {
                len: u64::from(len),
                limit: self.config.max_frame_bytes,
            };
            self.fail(EndCode::FrameTooLarge, e.to_string());
            return false;
        }
        if self.report.bytes_received + u64::from(len) > self.config.max_bytes_received {
            let limit = self.config.max_bytes_received;
            self.fail(
                EndCode::Limit,
                format!("the session would receive more than {limit} bytes"),
            );
            return false;
        }
        true
    }

    /// A frame's body: the bytes after its length header, exactly as many as the header said
    /// (the driver checked the header with [`handle_frame_len`](Self::handle_frame_len)).
    pub fn handle_frame(&mut self, body: Vec<u8>, now: Instant) {
        self.handle_prepared(
            Prepared {
                body,
                entries: None,
            },
            now,
        );
    }

    /// [`handle_frame`](Self::handle_frame) for a body prepared with [`Prepared::new`]
    /// (possibly on another thread): the same checks and outcomes, without decoding and
    /// verifying its entries here.
    pub fn handle_prepared(&mut self, frame: Prepared<A>, now: Instant) {
        let Prepared {
            body,
            entries: checked,
        } = frame;
        if self.failing.is_some() || self.finished {
            return;
        }
        self.last_activity = now;
        self.report.frames_received += 1;
        self.report.bytes_received += body.len() as u64;
        if body.len() > self.config.max_frame_bytes {
            self.fail(EndCode::FrameTooLarge, "frame body over the limit".into());
            return;
        }
        if body.first() == Some(&frame::kind::MESSAGE) {
            // the message keeps the frame's bytes: its tag is the type byte
            if let Err((code, reason)) = self.on_message(&Message::from_bytes(body)) {
                self.fail(code, reason);
            }
            return;
        }
        let frame = match frame::parse(&body) {
            Ok(f) => f,
            Err(e) => return self.fail(EndCode::Protocol, e.to_string()),
        };
        let result = match frame {
            Frame::Message => unreachable_message(),
            Frame::Entries(entries) => self.on_entries(&entries, checked),
            Frame::AncestryRequest(bytes) => self.on_request(bytes),
            Frame::AncestryAnswer(bytes) => self.on_answer(bytes),
            Frame::End { code, reason } => {
                self.on_end(code, reason, now);
                Ok(())
            }
            Frame::Push(_) => Err((
                EndCode::Protocol,
                "a PUSH frame inside a session (PUSH only opens a stream of its own)".into(),
            )),
        };
        if let Err((code, reason)) = result {
            self.fail(code, reason);
        }
    }

    /// The peer's stream ended, or the connection broke, before the session finished.
    pub fn handle_eof(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        // a failure of ours whose END could not be delivered keeps its code; the peer sees
        // the connection end
        match self.failing.take() {
            Some((code, reason)) => self.finish(code, reason, false, now),
            None => self.finish(
                EndCode::ConnectionLost,
                "the peer's stream ended before its END frame".to_owned(),
                true,
                now,
            ),
        }
    }

    /// Checks the time budgets; call at or after [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished || self.failing.is_some() {
            return;
        }
        if now >= self.started + self.config.max_duration {
            let d = self.config.max_duration;
            self.fail(
                EndCode::Timeout,
                format!("the session ran past its time budget of {d:?}"),
            );
        } else if now >= self.last_activity + self.config.idle_timeout {
            let d = self.config.idle_timeout;
            self.fail(
                EndCode::Timeout,
                format!("nothing happened for {d:?} while waiting for the peer"),
            );
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due, while the session runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished || self.failing.is_some() {
            return None;
        }
        Some(
            (self.started + self.config.max_duration)
                .min(self.last_activity + self.config.idle_timeout),
        )
    }

    /// Ends the session by a local decision (the store failed, the node shuts down): an END
    /// frame with `code` is queued for [`poll_transmit`](Self::poll_transmit).
    pub fn close(&mut self, code: EndCode, reason: &str) {
        if self.finished || self.failing.is_some() {
            return;
        }
        self.fail(code, reason.to_owned());
    }

    /// The next event; drain them after every `handle_*` call, before polling for frames.
    pub fn poll_event(&mut self) -> Option<Event<A>> {
        self.events.pop_front()
    }

    /// The next whole frame to send (length header included), or `None` when nothing is due
    /// until more arrives. Reads `store` for entries to send, the fetch list and ancestry
    /// answers; apply every [`Event::Apply`] first.
    pub fn poll_transmit<S: SessionStore<A> + ?Sized>(
        &mut self,
        store: &S,
        now: Instant,
    ) -> Option<Vec<u8>> {
        if self.finished {
            return None;
        }
        if let Some((code, reason)) = self.failing.take() {
            let end = frame::end_frame(code, &reason);
            self.sent(&end, now);
            self.finish(code, reason, false, now);
            return Some(end);
        }
        match self.next_frame(store) {
            Ok(Some(f)) => {
                self.sent(&f, now);
                if self.end_sent && self.peer_done && self.to_answer.is_none() {
                    self.finish(EndCode::Done, String::new(), false, now);
                }
                Some(f)
            }
            Ok(None) => None,
            Err(e) => {
                self.fail(EndCode::Internal, format!("local store failed: {e}"));
                self.poll_transmit(store, now)
            }
        }
    }

    fn sent(&mut self, frame: &[u8], now: Instant) {
        self.report.frames_sent += 1;
        self.report.bytes_sent += frame.len() as u64;
        self.last_activity = now;
    }

    /// The frame due now, in order of precedence: the entries of our turn, the message
    /// closing it, an answer the peer waits for, then (once reconciliation is over) an
    /// ancestry request or our END.
    fn next_frame<S: SessionStore<A> + ?Sized>(
        &mut self,
        store: &S,
    ) -> Result<Option<Vec<u8>>, crate::StoreError> {
        if !self.out_keys.is_empty() || !self.out_loaded.is_empty() {
            return self.entries_frame(store).map(Some);
        }
        if let Some(msg) = self.out_message.take() {
            self.report.messages_sent += 1;
            self.their_turn = !self.reconciler.is_done();
            return Ok(Some(frame::message(msg.as_bytes())));
        }
        if let Some(req) = self.to_answer.take() {
            let room = self.config.max_frame_bytes - 1;
            let answer = store.answer_ancestry(&req, self.config.ancestry_visits, room)?;
            if let AncestryAnswer::Entries { entries, .. } = &answer {
                self.report.entries_sent += entries.len() as u64;
                self.report.entry_bytes_sent += entries.iter().map(|e| e.len() as u64).sum::<u64>();
            }
            self.report.ancestry_requests_answered += 1;
            return Ok(Some(frame::whole(
                frame::kind::ANCESTRY_ANSWER,
                &answer.encode(),
            )));
        }
        if !self.reconciler.is_done() || self.awaiting_answer.is_some() || self.end_sent {
            return Ok(None);
        }
        if !self.ancestry_stop
            && self.report.ancestry_requests_sent < u64::from(self.config.max_ancestry_requests)
        {
            let want = store.fetch_list(MAX_WANTS)?;
            if !want.is_empty() {
                let have = store.haves(MAX_HAVES, self.config.ancestry_visits)?;
                let have: Vec<_> = have.into_iter().filter(|h| !want.contains(h)).collect();
                let limit = self.config.ancestry_limit;
                match AncestryRequest::new(want, have, limit) {
                    Ok(req) => {
                        debug!(
                            wants = req.want.len(),
                            "session: asking for missing ancestry"
                        );
                        self.awaiting_answer = Some(limit);
                        self.report.ancestry_requests_sent += 1;
                        return Ok(Some(frame::whole(
                            frame::kind::ANCESTRY_REQUEST,
                            &req.encode(),
                        )));
                    }
                    Err(e) => {
                        return Err(crate::StoreError::new(format!(
                            "fetch list gave an invalid request: {e}"
                        )))
                    }
                }
            }
        }
        self.end_sent = true;
        Ok(Some(frame::end_frame(EndCode::Done, "")))
    }

    /// One ENTRIES frame of the keys queued for this turn: about `batch_bytes`, never over
    /// `max_frame_bytes` (the first entry always fits: entries are at most 64 KiB, frames at
    /// least 128 KiB), loaded from the store a few keys at a time.
    fn entries_frame<S: SessionStore<A> + ?Sized>(
        &mut self,
        store: &S,
    ) -> Result<Vec<u8>, crate::StoreError> {
        const LOAD_CHUNK: usize = 64;
        // the frame's type byte and entry count (at most 5 bytes: a frame holds under 2^32
        // entries) come on top of the entries and their lengths
        let budget = self
            .config
            .batch_bytes
            .min(self.config.max_frame_bytes - ENTRIES_FRAME_FIXED);
        let mut size = 0usize;
        let mut n = 0usize;
        loop {
            if n == self.out_loaded.len() {
                if self.out_keys.is_empty() {
                    break;
                }
                let take = self.out_keys.len().min(LOAD_CHUNK);
                let keys: Vec<EntryKey> = self.out_keys.drain(..take).collect();
                let mut loaded = Vec::with_capacity(keys.len());
                store.load(&keys, &mut loaded)?;
                if loaded.len() != keys.len() {
                    return Err(crate::StoreError::new(format!(
                        "asked for {} entries, the store gave {}",
                        keys.len(),
                        loaded.len()
                    )));
                }
                self.out_loaded.extend(loaded);
            }
            let len = self.out_loaded[n].len();
            let add = len + frame::entry_overhead(len);
            if n > 0 && size + add > budget {
                break;
            }
            size += add;
            n += 1;
        }
        let batch: Vec<Vec<u8>> = self.out_loaded.drain(..n).collect();
        self.report.entries_sent += batch.len() as u64;
        self.report.entry_bytes_sent += batch.iter().map(|e| e.len() as u64).sum::<u64>();
        Ok(frame::entries_frame(batch.iter().map(Vec::as_slice)))
    }

    fn on_message(&mut self, msg: &Message) -> Result<(), (EndCode, String)> {
        if !self.their_turn {
            return Err((
                EndCode::Protocol,
                "a reconciliation message out of turn".into(),
            ));
        }
        let _span = debug_span!("session", role = ?self.report.role).entered();
        let carried = std::mem::take(&mut self.turn_keys);
        let step = self
            .reconciler
            .handle_carried(&self.snapshot, msg, &carried)
            .map_err(|e| (end_code(&e), e.to_string()))?;
        self.report.messages_received += 1;
        self.their_turn = false;
        if let Some(reply) = step.reply {
            self.out_keys.extend(step.carried);
            self.out_message = Some(reply);
        }
        self.events.push_back(Event::Progress(self.report));
        Ok(())
    }

    fn on_entries(
        &mut self,
        entries: &[&[u8]],
        checked: Option<Checked<A>>,
    ) -> Result<(), (EndCode, String)> {
        if !self.their_turn {
            return Err((EndCode::Protocol, "entries outside the peer's turn".into()));
        }
        let max = self.reconciler.config().max_carried_keys;
        if self.turn_keys.len() + entries.len() > max {
            return Err((
                EndCode::Limit,
                format!("more than {max} entries in one turn"),
            ));
        }
        let checked = match checked {
            Some(checked) => checked?,
            None => check_entries(entries)?,
        };
        for key in checked.keys {
            if self.turn_keys.last().is_some_and(|last| *last >= key) {
                return Err((
                    EndCode::Protocol,
                    "entries of a turn are not in ascending key order".into(),
                ));
            }
            self.turn_keys.push(key);
        }
        self.received(entries, checked.verdicts)
    }

    /// Hands received entries to the driver if every one passed verification.
    fn received(
        &mut self,
        raw: &[&[u8]],
        verdicts: Vec<Result<VerifiedEntry<A>, Unverified>>,
    ) -> Result<(), (EndCode, String)> {
        let mut verified = Vec::with_capacity(verdicts.len());
        for v in verdicts {
            match v {
                Ok(e) => verified.push(e),
                Err(bad) => {
                    return Err((
                        EndCode::InvalidEntry,
                        format!("entry {} failed verification: {}", bad.hash, bad.error),
                    ))
                }
            }
        }
        self.report.entries_received += raw.len() as u64;
        self.report.entry_bytes_received += raw.iter().map(|e| e.len() as u64).sum::<u64>();
        if !verified.is_empty() {
            self.events.push_back(Event::Apply(verified));
        }
        Ok(())
    }

    fn on_request(&mut self, bytes: &[u8]) -> Result<(), (EndCode, String)> {
        if !self.reconciler.is_done() || self.peer_done || self.to_answer.is_some() {
            return Err((
                EndCode::Protocol,
                "an ancestry request before reconciliation ended, after the peer's END, or before our last answer".into(),
            ));
        }
        self.requests_received += 1;
        if self.requests_received > self.config.max_ancestry_requests {
            let max = self.config.max_ancestry_requests;
            return Err((
                EndCode::Limit,
                format!("more than {max} ancestry requests in one session"),
            ));
        }
        let req = AncestryRequest::decode(bytes)
            .map_err(|e| (EndCode::Protocol, format!("bad ancestry request: {e}")))?;
        self.to_answer = Some(req);
        Ok(())
    }

    fn on_answer(&mut self, bytes: &[u8]) -> Result<(), (EndCode, String)> {
        let Some(limit) = self.awaiting_answer.take() else {
            return Err((
                EndCode::Protocol,
                "an ancestry answer nobody asked for".into(),
            ));
        };
        let answer = AncestryAnswer::decode(bytes, limit)
            .map_err(|e| (EndCode::Protocol, format!("bad ancestry answer: {e}")))?;
        match answer {
            AncestryAnswer::Entries { complete, entries } => {
                if entries.is_empty() {
                    self.ancestry_stop = true;
                }
                let raw: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
                let decoded = decode_entries::<A>(&raw)?;
                if decoded.windows(2).any(|w| w[0].key() >= w[1].key()) {
                    return Err((
                        EndCode::Protocol,
                        "ancestry answer not in ascending key order".into(),
                    ));
                }
                debug!(entries = raw.len(), complete, "session: ancestry answer");
                self.received(&raw, verify_decoded(decoded))
            }
            AncestryAnswer::UnknownWant(h) => {
                debug!(want = %h, "session: the peer does not hold what we lack");
                self.ancestry_stop = true;
                Ok(())
            }
            AncestryAnswer::OverBudget { budget } => {
                warn!(
                    budget,
                    "session: the peer's ancestry walk went over its budget"
                );
                self.ancestry_stop = true;
                Ok(())
            }
        }
    }

    fn on_end(&mut self, code: EndCode, reason: String, now: Instant) {
        if code != EndCode::Done {
            debug!(%code, reason, "session: the peer ended the session");
            self.finish(code, reason, true, now);
            return;
        }
        // END means "I will ask for nothing more"; it may cross our own request, which the
        // peer still answers.
        if !self.reconciler.is_done() || self.peer_done {
            return self.fail(
                EndCode::Protocol,
                "the peer ended before the session was complete".into(),
            );
        }
        self.peer_done = true;
        if self.end_sent && self.to_answer.is_none() {
            self.finish(EndCode::Done, String::new(), false, now);
        }
    }

    /// Ends the session with a failure decided here: everything queued is dropped and one
    /// END frame with `code` is sent next.
    fn fail(&mut self, code: EndCode, reason: String) {
        warn!(role = ?self.report.role, %code, reason, "session: ending");
        self.out_keys.clear();
        self.out_loaded.clear();
        self.out_message = None;
        self.to_answer = None;
        self.turn_keys = Vec::new();
        self.failing = Some((code, reason));
    }

    fn finish(&mut self, code: EndCode, reason: String, by_peer: bool, now: Instant) {
        self.finished = true;
        self.report.end = Some(code);
        self.report.ended_by_peer = by_peer;
        self.report.duration = now.saturating_duration_since(self.started);
        let report = self.report;
        debug!(role = ?report.role, %code, frames_sent = report.frames_sent, frames_received = report.frames_received,
            entries_sent = report.entries_sent, entries_received = report.entries_received, "session: finished");
        self.events.push_back(if code == EndCode::Done {
            Event::Done(report)
        } else {
            Event::Ended {
                code,
                reason,
                by_peer,
                report,
            }
        });
    }
}

/// MESSAGE frames are taken whole before parsing; `parse` never yields one here.
fn unreachable_message() -> Result<(), (EndCode, String)> {
    Err((
        EndCode::Internal,
        "a MESSAGE frame reached the general frame path".into(),
    ))
}

/// Decodes received entry bytes; the first that fails ends the session.
fn decode_entries<A: Action>(raw: &[&[u8]]) -> Result<Vec<Decoded<A>>, (EndCode, String)> {
    raw.iter()
        .map(|b| {
            Decoded::<A>::decode(b)
                .map_err(|e| (EndCode::InvalidEntry, format!("undecodable entry: {e}")))
        })
        .collect()
}

/// The END code for a reconciliation failure.
fn end_code(e: &ReconcileError) -> EndCode {
    match e {
        ReconcileError::Limit(_) => EndCode::Limit,
        ReconcileError::Store(_) | ReconcileError::Misuse(_) | ReconcileError::Config(_) => {
            EndCode::Internal
        }
        _ => EndCode::Protocol,
    }
}
