//! [`VerifiedEntry`]: the proof, in the types, that an entry passed verification, and
//! [`verify_batch`], which checks many on all cores.

use ed25519_dalek::SigningKey;

use super::{Action, AuthorKeys, EntryError, LogEntry, Op};
use crate::hlc::Hlc;
use crate::key::Hash;

/// A [`LogEntry`] that passed [`LogEntry::verify`]: structure, hash and strict signature.
///
/// Only verification builds one ([`VerifiedEntry::new`], [`verify_batch`]), or signing
/// ([`VerifiedEntry::sign`]), so a function that takes a `VerifiedEntry` cannot be handed an
/// entry straight off the wire. Replicas and stores apply only verified entries
/// ([`crate::replica::insert`]). It reads as the entry it wraps (`Deref`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEntry<A = Op>(LogEntry<A>);

impl<A: Action> VerifiedEntry<A> {
    /// Verifies `entry`; on failure the entry is dropped and the error says which rule failed.
    pub fn new(entry: LogEntry<A>) -> Result<Self, EntryError> {
        entry.verify()?;
        Ok(VerifiedEntry(entry))
    }

    /// Builds and signs an entry ([`LogEntry::sign`]): what a node writes itself is verified
    /// by construction.
    pub fn sign(
        key: &SigningKey,
        hlc: Hlc,
        action: A,
        parents: Vec<Hash>,
    ) -> Result<Self, EntryError> {
        LogEntry::sign(key, hlc, action, parents).map(VerifiedEntry)
    }

    /// Wraps an entry this crate verified before and kept in a replica's own state (held back
    /// or deferred entries handed back by a [`ReplicaState`](crate::replica::ReplicaState)).
    pub(crate) fn trusted(entry: LogEntry<A>) -> Self {
        VerifiedEntry(entry)
    }
}

impl<A> VerifiedEntry<A> {
    /// The verified entry.
    pub fn entry(&self) -> &LogEntry<A> {
        &self.0
    }

    /// Unwraps the entry, giving up the proof of verification.
    pub fn into_inner(self) -> LogEntry<A> {
        self.0
    }
}

impl<A> std::ops::Deref for VerifiedEntry<A> {
    type Target = LogEntry<A>;
    fn deref(&self) -> &LogEntry<A> {
        &self.0
    }
}

impl<A> AsRef<LogEntry<A>> for VerifiedEntry<A> {
    fn as_ref(&self) -> &LogEntry<A> {
        &self.0
    }
}

/// An entry that failed verification: the hash it claimed, and why it was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unverified {
    /// The hash the entry carried (its body may hash to something else).
    pub hash: Hash,
    /// The rule it broke.
    pub error: EntryError,
}

/// Below this many entries a batch is verified on the calling thread.
const PARALLEL_VERIFY_MIN: usize = 64;

/// Verifies a batch (strict ed25519, as [`LogEntry::verify`]), spread over the available cores
/// (at most 8 threads) for batches of 64 entries or more; one result per entry, in input order.
///
/// This is the only way, besides [`VerifiedEntry::new`], to obtain entries a replica accepts;
/// its output feeds [`crate::replica::insert`] directly.
pub fn verify_batch<A: Action>(
    entries: Vec<LogEntry<A>>,
) -> Vec<Result<VerifiedEntry<A>, Unverified>> {
    verify_many(entries, LogEntry::verify_cached)
}

/// An entry exactly as [`LogEntry::decode`] returned it: its hash was computed from the bytes
/// it was decoded from, and those bytes were checked to be the canonical encoding of a
/// structurally valid entry. Only [`Decoded::decode`] builds one and nothing can change the
/// entry inside, so of [`LogEntry::verify`]'s checks only the signature is left to do
/// ([`verify_decoded`]); the hash and the encoding are not computed a second time.
pub(crate) struct Decoded<A>(LogEntry<A>);

impl<A: Action> Decoded<A> {
    /// [`LogEntry::decode`], keeping the proof that it was.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        LogEntry::decode(bytes).map(Decoded)
    }
}

impl<A> std::ops::Deref for Decoded<A> {
    type Target = LogEntry<A>;
    fn deref(&self) -> &LogEntry<A> {
        &self.0
    }
}

/// [`verify_batch`] for entries just decoded: the same verdicts (the decoder already made
/// the structure and hash checks [`LogEntry::verify`] repeats), for the signature's cost.
pub(crate) fn verify_decoded<A: Action>(
    entries: Vec<Decoded<A>>,
) -> Vec<Result<VerifiedEntry<A>, Unverified>> {
    verify_many(
        entries.into_iter().map(|d| d.0).collect(),
        LogEntry::verify_signature,
    )
}

/// Runs `check` over `entries` on up to 8 threads (one for small batches), one verdict per
/// entry in input order.
fn verify_many<A: Action>(
    entries: Vec<LogEntry<A>>,
    check: fn(&LogEntry<A>, &mut AuthorKeys) -> Result<(), EntryError>,
) -> Vec<Result<VerifiedEntry<A>, Unverified>> {
    let one = |e: LogEntry<A>, keys: &mut AuthorKeys| match check(&e, keys) {
        Ok(()) => Ok(VerifiedEntry(e)),
        Err(error) => Err(Unverified {
            hash: e.hash,
            error,
        }),
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(8);
    if entries.len() < PARALLEL_VERIFY_MIN || threads == 1 {
        let mut keys = AuthorKeys::default();
        return entries.into_iter().map(|e| one(e, &mut keys)).collect();
    }
    let per = entries.len().div_ceil(threads);
    let mut chunks: Vec<Vec<LogEntry<A>>> = Vec::with_capacity(threads);
    let mut rest = entries.into_iter();
    loop {
        let chunk: Vec<_> = rest.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    let mut keys = AuthorKeys::default();
                    chunk
                        .into_iter()
                        .map(|e| one(e, &mut keys))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
