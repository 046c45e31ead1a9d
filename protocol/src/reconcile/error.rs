//! Why a session fails: [`ReconcileError`], and the [`Limit`] a peer's traffic hit.

use super::PENDING_PER_TRAFFIC_BYTE;
#[cfg(feature = "negentropy")]
use crate::negentropy;
use crate::range::StoreError;
use crate::wire::message::DecodeError;

#[cfg(doc)]
use super::Config;

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
    /// Carried form: a received message's carried key list is longer than
    /// [`Config::max_carried_keys`].
    #[error("carried key list of {count} keys exceeds max_carried_keys = {limit}; refused before decoding")]
    CarriedKeys {
        /// Keys in the received carried list.
        count: usize,
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
    #[cfg(feature = "negentropy")]
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
    /// `initiate` was called twice, or on a reconciler that already handled a message; or
    /// `handle` / `handle_carried` was called on a reconciler configured for the other
    /// [`KeyForm`](super::KeyForm).
    #[error("reconciler misuse: {0}")]
    Misuse(&'static str),
    /// The operating system could not provide the random fingerprint salt a session opens
    /// with (`spec/SPEC.md` 7.1). Nothing was sent; retry later, or set
    /// [`Config::salt`] (tests only: a predictable salt gives up the argument of 7.2).
    #[error("no random salt for the session: {0}")]
    Randomness(#[from] getrandom::Error),
}

/// A local store answer that would have produced an invalid message.
pub(super) fn inconsistent(what: impl std::fmt::Display) -> ReconcileError {
    ReconcileError::Store(StoreError::new(format!(
        "store answered inconsistently ({what}); did its set change during the call?"
    )))
}
