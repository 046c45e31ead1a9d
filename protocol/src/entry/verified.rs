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
#[derive(Clone, Debug)]
pub struct VerifiedEntry<A = Op> {
    entry: LogEntry<A>,
    /// The bytes the entry was decoded from, when it came off the wire: its canonical
    /// encoding (spec 5.5), kept so that storing it does not encode it again.
    wire: Option<Box<[u8]>>,
}

/// Equal when the entries are: the kept bytes, when present, are the entry's one canonical
/// encoding, so they add nothing to compare.
impl<A: PartialEq> PartialEq for VerifiedEntry<A> {
    fn eq(&self, other: &Self) -> bool {
        self.entry == other.entry
    }
}

impl<A: Eq> Eq for VerifiedEntry<A> {}

impl<A: Action> VerifiedEntry<A> {
    /// Verifies `entry`; on failure the entry is dropped and the error says which rule failed.
    pub fn new(entry: LogEntry<A>) -> Result<Self, EntryError> {
        entry.verify()?;
        Ok(VerifiedEntry::plain(entry))
    }

    /// Builds and signs an entry ([`LogEntry::sign`]): what a node writes itself is verified
    /// by construction.
    pub fn sign(
        key: &SigningKey,
        hlc: Hlc,
        action: A,
        parents: Vec<Hash>,
    ) -> Result<Self, EntryError> {
        LogEntry::sign(key, hlc, action, parents).map(VerifiedEntry::plain)
    }

    /// Wraps an entry this crate verified before and kept in a replica's own state (held back
    /// or deferred entries handed back by a [`ReplicaState`](crate::replica::ReplicaState)).
    pub(crate) fn trusted(entry: LogEntry<A>) -> Self {
        VerifiedEntry::plain(entry)
    }

    /// The entry's wire and storage form (spec 5.5): the bytes it was decoded from if it came
    /// off the wire (no work), else [`LogEntry::encode`].
    pub fn encoded(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.wire {
            Some(bytes) => std::borrow::Cow::Borrowed(bytes),
            None => std::borrow::Cow::Owned(self.entry.encode()),
        }
    }
}

impl<A> VerifiedEntry<A> {
    fn plain(entry: LogEntry<A>) -> Self {
        VerifiedEntry { entry, wire: None }
    }

    /// The verified entry.
    pub fn entry(&self) -> &LogEntry<A> {
        &self.entry
    }

    /// Unwraps the entry, giving up the proof of verification.
    pub fn into_inner(self) -> LogEntry<A> {
        self.entry
    }
}

impl<A> std::ops::Deref for VerifiedEntry<A> {
    type Target = LogEntry<A>;
    fn deref(&self) -> &LogEntry<A> {
        &self.entry
    }
}

impl<A> AsRef<LogEntry<A>> for VerifiedEntry<A> {
    fn as_ref(&self) -> &LogEntry<A> {
        &self.entry
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
    verify_many(
        entries.into_iter().map(VerifiedEntry::plain).collect(),
        LogEntry::verify_cached,
    )
}

/// An entry exactly as [`LogEntry::decode`] returned it, with the bytes it was decoded from:
/// its hash was computed from those bytes, and they were checked to be the canonical encoding
/// of a structurally valid entry. Only [`Decoded::decode`] builds one and nothing can change
/// the entry inside, so of [`LogEntry::verify`]'s checks only the signature is left to do
/// ([`verify_decoded`]); the hash and the encoding are not computed a second time, and the
/// bytes go on with the [`VerifiedEntry`] to the store ([`VerifiedEntry::encoded`]).
pub(crate) struct Decoded<A> {
    entry: LogEntry<A>,
    bytes: Box<[u8]>,
}

impl<A: Action> Decoded<A> {
    /// [`LogEntry::decode`], keeping the proof that it was and the bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        LogEntry::decode(bytes).map(|entry| Decoded {
            entry,
            bytes: bytes.into(),
        })
    }
}

impl<A> std::ops::Deref for Decoded<A> {
    type Target = LogEntry<A>;
    fn deref(&self) -> &LogEntry<A> {
        &self.entry
    }
}

/// [`verify_batch`] for entries just decoded: the same verdicts (the decoder already made
/// the structure and hash checks [`LogEntry::verify`] repeats), for the signature's cost.
pub(crate) fn verify_decoded<A: Action>(
    entries: Vec<Decoded<A>>,
) -> Vec<Result<VerifiedEntry<A>, Unverified>> {
    verify_many(
        entries
            .into_iter()
            .map(|d| VerifiedEntry {
                entry: d.entry,
                wire: Some(d.bytes),
            })
            .collect(),
        LogEntry::verify_signature,
    )
}

/// Runs `check` over `candidates` on up to 8 threads (one for small batches), one verdict
/// per entry in input order. A candidate is a `VerifiedEntry` only once `check` passed: the
/// ones that fail leave as [`Unverified`].
fn verify_many<A: Action>(
    candidates: Vec<VerifiedEntry<A>>,
    check: fn(&LogEntry<A>, &mut AuthorKeys) -> Result<(), EntryError>,
) -> Vec<Result<VerifiedEntry<A>, Unverified>> {
    let one = |c: VerifiedEntry<A>, keys: &mut AuthorKeys| match check(&c.entry, keys) {
        Ok(()) => Ok(c),
        Err(error) => Err(Unverified {
            hash: c.entry.hash,
            error,
        }),
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(8);
    if candidates.len() < PARALLEL_VERIFY_MIN || threads == 1 {
        let mut keys = AuthorKeys::default();
        return candidates.into_iter().map(|c| one(c, &mut keys)).collect();
    }
    let per = candidates.len().div_ceil(threads);
    let mut chunks: Vec<Vec<VerifiedEntry<A>>> = Vec::with_capacity(threads);
    let mut rest = candidates.into_iter();
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
                        .map(|c| one(c, &mut keys))
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
