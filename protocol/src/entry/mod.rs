//! Signed log entries: construction, canonical encoding, hashing and verification.
//!
//! An entry travels and is stored as `body || signature`, where
//! `body = postcard((hlc, node_id, action, parents))`, `hash = BLAKE3(body)` and the signature
//! is ed25519 over the 32-byte hash. This is Shoal's `shoal-logtree` construction, so entries
//! with the same fields have the same hash in both systems.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

mod action;
mod verified;

use crate::hlc::Hlc;
use crate::key::{EntryKey, Hash, NodeId};
pub use action::{Action, ObjectId, Op, MAX_BUCKET_LEN, MAX_OBJECT_KEY_LEN};
pub use verified::{verify_batch, Unverified, VerifiedEntry};
pub(crate) use verified::{verify_decoded, Decoded};

/// Largest encoded entry (`body || signature`) accepted, in bytes.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;
/// Most parents an entry may name.
pub const MAX_PARENTS: usize = 1024;
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", &hex::encode(self.0)[..16])
    }
}

/// Why an entry was refused. Every variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The bytes are not a postcard-encoded entry body followed by a 64-byte signature.
    #[error("malformed entry: {0}")]
    Malformed(String),
    /// The body decodes but is not the canonical encoding of what it decodes to
    /// (an over-long varint, for example), so its hash would be ambiguous.
    #[error("entry body is not canonically encoded")]
    NonCanonical,
    /// The encoded entry exceeds [`MAX_ENTRY_BYTES`].
    #[error("entry is {size} bytes, more than the limit of {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_PARENTS`] parents.
    #[error("entry names {0} parents, more than the limit of {MAX_PARENTS}")]
    TooManyParents(usize),
    /// Parents are not in strictly ascending byte order (sorted, no duplicates).
    #[error("parents must be sorted ascending without duplicates")]
    ParentsNotCanonical,
    /// A merge entry must join at least two parents.
    #[error("merge entry has {0} parents; a merge joins at least two")]
    MergeNeedsParents(usize),
    /// The HLC is 0 or above [`MAX_HLC`](crate::hlc::MAX_HLC), which no clock issues.
    #[error("entry HLC {0} is outside the valid range 1 to 2^64 - 2")]
    HlcOutOfRange(Hlc),
    /// The action's own check failed.
    #[error("invalid action: {0}")]
    InvalidAction(String),
    /// The stored or claimed hash is not the BLAKE3 hash of the body.
    #[error("hash mismatch: entry claims {claimed}, body hashes to {computed}")]
    HashMismatch {
        /// The hash the entry carried or was requested under.
        claimed: Hash,
        /// The hash of its body.
        computed: Hash,
    },
    /// The author id is not a valid ed25519 public key.
    #[error("author {0} is not a valid ed25519 public key")]
    InvalidAuthor(NodeId),
    /// The signature does not verify (strict ed25519) under the author's key.
    #[error("signature does not verify under author {0}")]
    BadSignature(NodeId),
}

/// A signed, hashed mutation of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry<A = Op> {
    /// Hybrid logical clock stamp; greater than every parent's.
    pub hlc: Hlc,
    /// The author's ed25519 public key (its iroh endpoint id).
    pub node_id: NodeId,
    /// What the entry does.
    pub action: A,
    /// Hashes of the entries this one follows, strictly ascending.
    pub parents: Vec<Hash>,
    /// `BLAKE3(body)`.
    pub hash: Hash,
    /// ed25519 signature of `hash` by `node_id`.
    pub signature: Signature,
}

/// The hashed part of an entry: `postcard((hlc, node_id, action, parents))`.
///
/// # Panics
///
/// Only if `A`'s `Serialize` implementation returns an error (postcard itself cannot fail
/// writing into a `Vec`); the actions of this crate never do.
pub fn body_bytes<A: Action>(hlc: Hlc, node_id: &NodeId, action: &A, parents: &[Hash]) -> Vec<u8> {
    postcard::to_allocvec(&(hlc.0, node_id.0, action, parents))
        .expect("postcard encoding into a Vec cannot fail")
}

impl<A: Action> LogEntry<A> {
    /// Builds and signs an entry. `parents` are sorted and deduplicated here, so callers may
    /// pass them in any order.
    ///
    /// ```
    /// use oplog_protocol::{LogEntry, Op, Hlc};
    /// use ed25519_dalek::SigningKey;
    ///
    /// let key = SigningKey::from_bytes(&[7; 32]);
    /// let e: LogEntry = LogEntry::sign(&key, Hlc(1), Op::Merge, vec![[2; 32].into(), [1; 32].into()]).unwrap();
    /// e.verify().unwrap();
    /// assert_eq!(LogEntry::<Op>::decode(&e.encode()).unwrap(), e);
    /// ```
    pub fn sign(
        key: &SigningKey,
        hlc: Hlc,
        action: A,
        mut parents: Vec<Hash>,
    ) -> Result<Self, EntryError> {
        parents.sort_unstable();
        parents.dedup();
        let node_id = NodeId(key.verifying_key().to_bytes());
        let body = body_bytes(hlc, &node_id, &action, &parents);
        let hash = Hash(*blake3::hash(&body).as_bytes());
        let signature = Signature(key.sign(&hash.0).to_bytes());
        let entry = LogEntry {
            hlc,
            node_id,
            action,
            parents,
            hash,
            signature,
        };
        entry.check_structure(body.len() + SIGNATURE_LEN)?;
        Ok(entry)
    }

    /// The ordering key `(hlc, hash)`.
    pub fn key(&self) -> EntryKey {
        EntryKey {
            hlc: self.hlc,
            hash: self.hash,
        }
    }

    /// The hashed body, `postcard((hlc, node_id, action, parents))`.
    pub fn body(&self) -> Vec<u8> {
        body_bytes(self.hlc, &self.node_id, &self.action, &self.parents)
    }

    /// The wire and storage form: `body || signature`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature.0);
        out
    }

    /// Decodes `body || signature`, checking size, canonical encoding and structure, and
    /// computing the hash. Does not check the signature: call [`LogEntry::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge {
                size: bytes.len(),
                max: MAX_ENTRY_BYTES,
            });
        }
        let Some((body, sig)) = bytes.split_last_chunk::<SIGNATURE_LEN>() else {
            return Err(EntryError::Malformed(format!(
                "{} bytes is shorter than a signature",
                bytes.len()
            )));
        };
        let ((hlc, node_id, action, parents), rest): ((u64, [u8; 32], A, Vec<Hash>), _) =
            postcard::take_from_bytes(body).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(EntryError::Malformed(format!(
                "{} bytes between the body and the signature",
                rest.len()
            )));
        }
        let entry = LogEntry {
            hlc: Hlc(hlc),
            node_id: NodeId(node_id),
            action,
            parents,
            hash: Hash(*blake3::hash(body).as_bytes()),
            signature: Signature(*sig),
        };
        if entry.body() != body {
            return Err(EntryError::NonCanonical);
        }
        entry.check_structure(bytes.len())?;
        Ok(entry)
    }

    fn check_structure(&self, encoded_len: usize) -> Result<(), EntryError> {
        if encoded_len > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge {
                size: encoded_len,
                max: MAX_ENTRY_BYTES,
            });
        }
        if self.hlc.0 == 0 || self.hlc > crate::hlc::MAX_HLC {
            return Err(EntryError::HlcOutOfRange(self.hlc));
        }
        if self.parents.len() > MAX_PARENTS {
            return Err(EntryError::TooManyParents(self.parents.len()));
        }
        if self.parents.windows(2).any(|w| w[0] >= w[1]) {
            return Err(EntryError::ParentsNotCanonical);
        }
        if self.action.is_merge() && self.parents.len() < 2 {
            return Err(EntryError::MergeNeedsParents(self.parents.len()));
        }
        self.action.check().map_err(EntryError::InvalidAction)
    }

    /// Checks everything an entry can prove about itself: structure, that `hash` is the hash
    /// of the body, and that the signature verifies strictly under `node_id`.
    pub fn verify(&self) -> Result<(), EntryError> {
        self.verify_cached(&mut AuthorKeys::default())
    }

    /// [`LogEntry::verify`], taking the author's decompressed key from `keys` (and adding
    /// it there): decompressing a public key is about a fifth of a strict verification, and
    /// a batch usually has few authors.
    pub(crate) fn verify_cached(&self, keys: &mut AuthorKeys) -> Result<(), EntryError> {
        let body = self.body();
        self.check_structure(body.len() + SIGNATURE_LEN)?;
        let computed = Hash(*blake3::hash(&body).as_bytes());
        if computed != self.hash {
            return Err(EntryError::HashMismatch {
                claimed: self.hash,
                computed,
            });
        }
        self.verify_signature(keys)
    }

    /// The last check of [`LogEntry::verify`]: the signature over `hash`, strictly, under
    /// `node_id`. Alone it proves the entry only if `hash` and the structure are known good,
    /// which is what [`Decoded`] records.
    fn verify_signature(&self, keys: &mut AuthorKeys) -> Result<(), EntryError> {
        let vk = keys
            .get(&self.node_id)
            .ok_or(EntryError::InvalidAuthor(self.node_id))?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        vk.verify_strict(&self.hash.0, &sig)
            .map_err(|_| EntryError::BadSignature(self.node_id))
    }
}

/// Decompressed author keys, for verifying many entries by few authors. Bounded: past
/// [`AuthorKeys::MAX`] authors it starts over (a batch by many authors only loses the
/// saving).
#[derive(Default)]
pub(crate) struct AuthorKeys(Vec<(NodeId, VerifyingKey)>);

impl AuthorKeys {
    /// Authors kept at most.
    const MAX: usize = 64;

    /// The author's key, or `None` if `id` is not a valid ed25519 point encoding.
    fn get(&mut self, id: &NodeId) -> Option<VerifyingKey> {
        if let Some((_, vk)) = self.0.iter().find(|(n, _)| n == id) {
            return Some(*vk);
        }
        let vk = VerifyingKey::from_bytes(&id.0).ok()?;
        if self.0.len() == Self::MAX {
            self.0.clear();
        }
        self.0.push((*id, vk));
        Some(vk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{ObjectId, MAX_OBJECT_KEY_LEN};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn put(k: &str) -> Op {
        Op::Put {
            bucket: "b".into(),
            key: k.into(),
            object_id: ObjectId([3; 32]),
        }
    }

    #[test]
    fn roundtrip_and_verify() {
        let e = LogEntry::sign(&key(1), Hlc(42), put("x"), vec![Hash([9; 32])]).unwrap();
        e.verify().unwrap();
        let bytes = e.encode();
        let d = LogEntry::<Op>::decode(&bytes).unwrap();
        assert_eq!(d, e);
        d.verify().unwrap();
    }

    /// The author-key cache changes no verdict: a batch by more authors than it keeps, with
    /// an entry signed by another key and one by an author that is no curve point among
    /// them, gets exactly the verdicts of verifying each entry alone.
    #[test]
    fn batch_verdicts_match_single_verification_across_many_authors() {
        let authors = u8::try_from(AuthorKeys::MAX + 10).unwrap();
        let mut entries: Vec<LogEntry<Op>> = (0..200u8)
            .map(|i| {
                let e = LogEntry::sign(
                    &key(i % authors + 1),
                    Hlc(1 + u64::from(i)),
                    put("k"),
                    vec![],
                );
                e.unwrap()
            })
            .collect();
        // author 2's key claimed (hash recomputed), signed by author 3: a bad signature for
        // a key already cached
        let mut wrong = LogEntry::sign(&key(3), Hlc(500), put("k"), vec![]).unwrap();
        wrong.node_id = NodeId(key(2).verifying_key().to_bytes());
        wrong.hash = Hash(*blake3::hash(&wrong.body()).as_bytes());
        entries.insert(100, wrong);
        // an author that is no point on the curve
        let bad_point = (2u8..=255)
            .map(|b| {
                let mut id = [0u8; 32];
                id[0] = b;
                id
            })
            .find(|id| VerifyingKey::from_bytes(id).is_err())
            .unwrap();
        let mut not_a_point = entries[5].clone();
        not_a_point.node_id = NodeId(bad_point);
        not_a_point.hash = Hash(*blake3::hash(&not_a_point.body()).as_bytes());
        entries.insert(150, not_a_point);
        let single: Vec<Result<(), EntryError>> = entries.iter().map(LogEntry::verify).collect();
        // the same entries off the wire: decoding did the hash and structure checks, so
        // only signatures are checked, and the verdicts must not change
        let decoded: Vec<Decoded<Op>> = entries
            .iter()
            .map(|e| Decoded::decode(&e.encode()).unwrap())
            .collect();
        let batch = crate::verify_batch(entries);
        let after_decoding = verify_decoded(decoded);
        assert_eq!(single.len(), batch.len());
        assert_eq!(single.len(), after_decoding.len());
        for ((s, b), d) in single.iter().zip(&batch).zip(&after_decoding) {
            assert_eq!(s.as_ref().err(), b.as_ref().err().map(|u| &u.error));
            assert_eq!(s.as_ref().err(), d.as_ref().err().map(|u| &u.error));
            // what a store writes: the bytes kept from the wire, or encoded now, are the same
            if let (Ok(b), Ok(d)) = (b, d) {
                assert_eq!(b.encoded(), d.encoded());
                assert_eq!(&*d.encoded(), d.encode().as_slice());
                assert_eq!(b, d);
            }
        }
        assert!(matches!(single[100], Err(EntryError::BadSignature(_))));
        assert!(matches!(single[150], Err(EntryError::InvalidAuthor(_))));
        assert_eq!(single.iter().filter(|r| r.is_ok()).count(), 200);
    }

    #[test]
    fn forged_fields_fail_verification() {
        let e = LogEntry::sign(&key(1), Hlc(42), put("x"), vec![]).unwrap();
        let mut forged = e.clone();
        forged.action = put("y");
        assert!(matches!(
            forged.verify(),
            Err(EntryError::HashMismatch { .. })
        ));
        let mut resigned = e.clone();
        resigned.node_id = NodeId(key(2).verifying_key().to_bytes());
        resigned.hash = Hash(*blake3::hash(&resigned.body()).as_bytes());
        assert_eq!(
            resigned.verify(),
            Err(EntryError::BadSignature(resigned.node_id))
        );
        let mut bad_sig = e.clone();
        bad_sig.signature.0[5] ^= 1;
        assert!(bad_sig.verify().is_err());
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let e = LogEntry::sign(&key(1), Hlc(1_000_000), put("k"), vec![Hash([1; 32])]).unwrap();
        let bytes = e.encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            if let Ok(d) = LogEntry::<Op>::decode(&b) {
                assert!(d.verify().is_err(), "flip at {i} still verifies");
            }
            if let Ok(d) = Decoded::<Op>::decode(&b) {
                let verdict = verify_decoded(vec![d]).pop().unwrap();
                assert!(verdict.is_err(), "flip at {i} passes the decoded path");
            }
        }
    }

    #[test]
    fn structural_rules() {
        assert_eq!(
            LogEntry::sign(&key(1), Hlc(0), put("x"), vec![]).unwrap_err(),
            EntryError::HlcOutOfRange(Hlc(0))
        );
        assert_eq!(
            LogEntry::sign(&key(1), Hlc(u64::MAX), put("x"), vec![]).unwrap_err(),
            EntryError::HlcOutOfRange(Hlc(u64::MAX))
        );
        LogEntry::sign(&key(1), crate::hlc::MAX_HLC, put("x"), vec![]).unwrap();
        assert_eq!(
            LogEntry::sign(&key(1), Hlc(1), Op::Merge, vec![Hash([1; 32])]).unwrap_err(),
            EntryError::MergeNeedsParents(1)
        );
        let e = LogEntry::sign(
            &key(1),
            Hlc(5),
            Op::Merge,
            vec![Hash([2; 32]), Hash([1; 32]), Hash([2; 32])],
        )
        .unwrap();
        assert_eq!(e.parents, vec![Hash([1; 32]), Hash([2; 32])]);
        // unsorted parents on the wire are refused
        let mut unsorted = e.clone();
        unsorted.parents.swap(0, 1);
        let mut bytes = unsorted.body();
        bytes.extend_from_slice(&e.signature.0);
        assert_eq!(
            LogEntry::<Op>::decode(&bytes).unwrap_err(),
            EntryError::ParentsNotCanonical
        );
        let long = Op::Put {
            bucket: "b".into(),
            key: "k".repeat(MAX_OBJECT_KEY_LEN + 1),
            object_id: ObjectId([0; 32]),
        };
        assert!(matches!(
            LogEntry::sign(&key(1), Hlc(1), long, vec![]).unwrap_err(),
            EntryError::InvalidAction(_)
        ));
    }

    #[test]
    fn non_canonical_varint_refused() {
        let e = LogEntry::sign(&key(1), Hlc(1), put("x"), vec![]).unwrap();
        let body = e.body();
        assert_eq!(body[0], 1); // hlc = 1, one varint byte
        let mut b = vec![0x81, 0x00];
        b.extend_from_slice(&body[1..]);
        b.extend_from_slice(&e.signature.0);
        assert_eq!(
            LogEntry::<Op>::decode(&b).unwrap_err(),
            EntryError::NonCanonical
        );
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(e) = LogEntry::<Op>::decode(&bytes) {
                // whatever decodes is canonical: it re-encodes to the same bytes
                proptest::prop_assert_eq!(e.encode(), bytes);
            }
        }

        #[test]
        fn mutated_entries_never_panic(pos in 0usize..200, byte in proptest::prelude::any::<u8>(), cut in 0usize..300) {
            let e = LogEntry::sign(&key(3), Hlc(77), put("some/key"), vec![Hash([4; 32]), Hash([5; 32])]).unwrap();
            let mut b = e.encode();
            let i = pos % b.len();
            b[i] = byte;
            b.truncate(cut.max(1));
            if let Ok(d) = LogEntry::<Op>::decode(&b) {
                proptest::prop_assert_eq!(d.encode(), b);
            }
        }
    }

    #[test]
    fn oversized_refused() {
        let b = vec![0u8; MAX_ENTRY_BYTES + 1];
        assert!(matches!(
            LogEntry::<Op>::decode(&b),
            Err(EntryError::TooLarge { .. })
        ));
    }
}
