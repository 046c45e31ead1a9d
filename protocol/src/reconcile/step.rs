//! What crosses between the caller and a reconciler: the [`Message`] bytes, the [`Step`] one
//! handled message produces, and the session's [`SessionStats`].

use crate::fingerprint::Salt;
use crate::key::{EntryKey, Hash};
use crate::wire::message::{self, DecodeError, Part};

#[cfg(doc)]
use super::Reconciler;

/// A reconciliation message: the bytes to put in one frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Message(pub(super) Vec<u8>);

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

    /// Decodes the parts of an inline-form message, for inspection and logging.
    pub fn parts(&self) -> Result<Vec<Part>, DecodeError> {
        message::decode(&self.0)
    }

    /// Decodes the salt and parts of a session's opening message (the initiator's first,
    /// `spec/SPEC.md` 8.3), for inspection and logging.
    pub fn opening_parts(&self) -> Result<(Salt, Vec<Part>), DecodeError> {
        message::decode_opening(&self.0)
    }

    /// Decodes the parts of a carried-form message (`spec/SPEC.md` 8.12), taking the keys of
    /// its Resolve and Keys parts from `carried`, for inspection and logging.
    pub fn parts_carried(&self, carried: &[EntryKey]) -> Result<Vec<Part>, DecodeError> {
        message::decode_carried(&self.0, carried)
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
    /// Carried key form only: the keys, in order, whose entries must be sent just before
    /// `reply` (the reply's carried key list, `spec/SPEC.md` 8.12). Empty in inline form.
    pub carried: Vec<EntryKey>,
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
    /// resent the same keys as a `FullList` (spec 8.4, 8.5).
    pub prefix_collisions: u64,
    /// Replies this side cut short at a size or part limit, ending them with one Fingerprint
    /// of the rest of the key space (spec 8.8); at most one per reply.
    pub carried_over: u64,
}
