//! The Negentropy protocol V1 wire format, for interoperability with Negentropy peers.
//!
//! [`Config::negentropy`](crate::Config::negentropy) switches a [`Reconciler`](crate::Reconciler)
//! to this codec and to Negentropy's splitting policy; this module holds the pieces that are
//! Negentropy's own: its varint, its bounds, its fingerprint and its message layout.
//! `spec/negentropy-v1.md` describes every byte.
//!
//! In this dialect an item's timestamp is the entry's HLC and its id is the entry's 32-byte
//! hash, so an item is exactly an [`EntryKey`] and Negentropy's item order is key order.
//!
//! Negentropy's fingerprint (SHA-256 over a sum of ids modulo 2^256) is much weaker than
//! oplog-sync's own: a member who chooses ids can craft collisions with Wagner's generalised
//! birthday attack and hide entries from honest peers. Use the dialect to talk to Negentropy
//! peers and to compare against them, not between oplog-sync nodes.

use sha2::{Digest, Sha256};

use crate::hlc::Hlc;
use crate::key::{EntryKey, Hash};

/// The protocol version byte that opens every Negentropy V1 message.
pub const PROTOCOL_VERSION: u8 = 0x61;
/// A range whose sender holds fewer items than this is sent as an id list, not split.
pub const ID_LIST_BELOW: u64 = 32;
/// Number of fingerprinted sub-ranges a differing range is split into.
pub const BUCKETS: u64 = 16;
/// Bytes kept free under the frame size limit: a message stops taking ranges once it would
/// grow past `limit - FRAME_RESERVE` bytes.
pub const FRAME_RESERVE: usize = 200;
/// Bytes of a Negentropy fingerprint.
pub const FINGERPRINT_LEN: usize = 16;
/// The timestamp reserved as "infinity"; no item may carry it.
pub const INFINITY_TIMESTAMP: u64 = u64::MAX;

/// Why parts cannot be encoded as a valid Negentropy V1 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode negentropy range {index}: {why}")]
#[non_exhaustive]
pub struct EncodeError {
    /// 0-based index of the offending range.
    pub index: usize,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Why bytes are not a valid Negentropy V1 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message is empty.
    #[error("empty negentropy message (no protocol version byte)")]
    Empty,
    /// The first byte is not a Negentropy protocol version (0x60 to 0x6f).
    #[error("not a negentropy message (first byte {0:#04x})")]
    NotNegentropy(u8),
    /// A Negentropy version other than V1 (0x61).
    #[error("unsupported negentropy protocol version {0:#04x}")]
    UnsupportedVersion(u8),
    /// The input ended inside a field.
    #[error("negentropy message truncated while reading {0}")]
    Truncated(&'static str),
    /// A varint has a leading zero digit or does not fit in 64 bits.
    #[error("invalid varint while reading {0}")]
    BadVarint(&'static str),
    /// A mode other than Skip (0), Fingerprint (1) and `IdList` (2).
    #[error("unknown negentropy range mode {0}")]
    UnknownMode(u64),
    /// A bound is longer than 32 bytes, below the previous bound, or follows infinity.
    #[error("invalid bound: {0}")]
    BadBound(&'static str),
    /// An id list is malformed.
    #[error("invalid id list: {0}")]
    BadIdList(&'static str),
}

// ---------------------------------------------------------------------------------------------
// varints: base 128, most significant digit first, high bit set on every byte but the last

/// Appends `v` as a Negentropy varint: base-128 digits, most significant first, with the
/// high bit set on every byte except the last. This is not LEB128, which puts the least
/// significant digit first.
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    let digits = varint_len(v);
    for i in (0..digits).rev() {
        let digit = ((v >> (7 * i)) & 0x7f) as u8;
        out.push(if i == 0 { digit } else { digit | 0x80 });
    }
}

/// Bytes [`put_varint`] writes for `v`.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

/// A cursor over a received message.
#[derive(Debug)]
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// A varint in its shortest form that fits in 64 bits.
    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0.. {
            let b = self.bytes(1, what)?[0];
            if i == 0 && b == 0x80 {
                return Err(DecodeError::BadVarint(what));
            }
            if v >> 57 != 0 {
                return Err(DecodeError::BadVarint(what));
            }
            v = (v << 7) | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------------
// fingerprints

/// A Negentropy range fingerprint: the first 16 bytes of SHA-256 over the sum of the ids
/// (32-byte little-endian integers, modulo 2^256) followed by the count as a varint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Fingerprint(pub [u8; FINGERPRINT_LEN]);

/// The running state of a Negentropy fingerprint: the id sum modulo 2^256 and the count.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Accumulator {
    /// Little-endian 64-bit limbs of the sum.
    sum: [u64; 4],
    count: u64,
}

impl Accumulator {
    /// The accumulator of the empty set.
    pub const EMPTY: Accumulator = Accumulator {
        sum: [0; 4],
        count: 0,
    };

    /// Adds one id.
    pub fn add(&mut self, id: &Hash) {
        let mut carry = false;
        for (i, limb) in self.sum.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&id.0[i * 8..i * 8 + 8]);
            let (s, c1) = limb.overflowing_add(u64::from_le_bytes(word));
            let (s, c2) = s.overflowing_add(u64::from(carry));
            *limb = s;
            carry = c1 || c2;
        }
        self.count += 1;
    }

    /// Adds the accumulator of a disjoint set: `self` becomes the accumulator of the union.
    /// With [`Accumulator::sub_set`] this lets a store cache sums per tree node.
    pub fn add_set(&mut self, other: &Accumulator) {
        let mut carry = false;
        for (a, b) in self.sum.iter_mut().zip(other.sum.iter()) {
            let (s1, c1) = a.overflowing_add(*b);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *a = s2;
            carry = c1 || c2;
        }
        self.count = self.count.wrapping_add(other.count);
    }

    /// Removes the accumulator of a subset: `self` becomes the accumulator of the difference.
    pub fn sub_set(&mut self, other: &Accumulator) {
        let mut borrow = false;
        for (a, b) in self.sum.iter_mut().zip(other.sum.iter()) {
            let (d1, b1) = a.overflowing_sub(*b);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *a = d2;
            borrow = b1 || b2;
        }
        self.count = self.count.wrapping_sub(other.count);
    }

    /// The accumulator of `keys`' hashes.
    pub fn of_keys<'a>(keys: impl IntoIterator<Item = &'a EntryKey>) -> Self {
        let mut acc = Accumulator::EMPTY;
        for k in keys {
            acc.add(&k.hash);
        }
        acc
    }

    /// Number of ids added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The wire fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut input = Vec::with_capacity(32 + 10);
        for limb in &self.sum {
            input.extend_from_slice(&limb.to_le_bytes());
        }
        put_varint(&mut input, self.count);
        let digest = Sha256::digest(&input);
        let mut fp = [0u8; FINGERPRINT_LEN];
        fp.copy_from_slice(&digest[..FINGERPRINT_LEN]);
        Fingerprint(fp)
    }
}

// ---------------------------------------------------------------------------------------------
// bounds

/// A range bound: a timestamp and an id prefix of 0 to 32 bytes, the omitted bytes being
/// zero. `key` is the bound as a point of the key space (timestamp as HLC, prefix padded
/// with zeros); `prefix_len` is how many hash bytes the wire carries, which matters for
/// byte-identical output because a peer's bounds are echoed as they came.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Bound {
    key: EntryKey,
    prefix_len: u8,
}

impl Bound {
    /// The end of the key space: timestamp `u64::MAX`, empty prefix.
    pub const INFINITY: Bound = Bound {
        key: EntryKey {
            hlc: Hlc(INFINITY_TIMESTAMP),
            hash: Hash::ZERO,
        },
        prefix_len: 0,
    };

    /// A bound at `timestamp` with the id prefix `prefix` (at most 32 bytes).
    pub fn new(timestamp: u64, prefix: &[u8]) -> Result<Bound, DecodeError> {
        let prefix_len = u8::try_from(prefix.len())
            .ok()
            .filter(|len| *len <= 32)
            .ok_or(DecodeError::BadBound("id prefix longer than 32 bytes"))?;
        let mut hash = [0u8; 32];
        hash[..prefix.len()].copy_from_slice(prefix);
        Ok(Bound {
            key: EntryKey::new(Hlc(timestamp), Hash(hash)),
            prefix_len,
        })
    }

    /// The bound exactly at `key`, carrying the full 32-byte id.
    pub fn at(key: &EntryKey) -> Bound {
        Bound {
            key: *key,
            prefix_len: 32,
        }
    }

    /// The shortest bound `b` with `prev < b <= curr`, as Negentropy chooses it: `curr`'s
    /// timestamp alone when the timestamps differ, otherwise `curr`'s timestamp with the
    /// shortest id prefix of `curr` that exceeds `prev`'s id.
    ///
    /// This differs from oplog-sync's own separator (`spec/SPEC.md` 8.2), which, when the
    /// timestamps differ, picks the HLC in `(prev.hlc, curr.hlc]` whose delta from the part's
    /// lower bound ends in the most zero bits, so that its delta code is short.
    pub fn minimal(prev: &EntryKey, curr: &EntryKey) -> Bound {
        if prev.hlc != curr.hlc {
            return Bound {
                key: EntryKey::new(curr.hlc, Hash::ZERO),
                prefix_len: 0,
            };
        }
        let shared = prev
            .hash
            .0
            .iter()
            .zip(curr.hash.0.iter())
            .take_while(|(a, b)| a == b)
            .count();
        let len = (shared + 1).min(32);
        let mut hash = [0u8; 32];
        hash[..len].copy_from_slice(&curr.hash.0[..len]);
        // at most 32, so it fits a byte
        #[allow(clippy::cast_possible_truncation)]
        let prefix_len = len as u8;
        Bound {
            key: EntryKey::new(curr.hlc, Hash(hash)),
            prefix_len,
        }
    }

    /// The bound as a point of the key space (the prefix padded with zero bytes).
    pub fn key(&self) -> EntryKey {
        self.key
    }

    /// The bound's timestamp.
    pub fn timestamp(&self) -> u64 {
        self.key.hlc.0
    }

    /// The id prefix the wire carries.
    pub fn prefix(&self) -> &[u8] {
        &self.key.hash.0[..self.prefix_len as usize]
    }

    /// Whether this is the infinity bound (timestamp `u64::MAX`).
    pub fn is_infinity(&self) -> bool {
        self.key.hlc.0 == INFINITY_TIMESTAMP
    }
}

// ---------------------------------------------------------------------------------------------
// ranges and messages

/// What a range says about itself.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Payload {
    /// Mode 0: nothing more to say about this range.
    Skip,
    /// Mode 1: the sender's fingerprint of the range.
    Fingerprint(Fingerprint),
    /// Mode 2: every id the sender holds in the range, in item order.
    IdList(Vec<Hash>),
}

impl Payload {
    fn mode(&self) -> u64 {
        match self {
            Payload::Skip => 0,
            Payload::Fingerprint(_) => 1,
            Payload::IdList(_) => 2,
        }
    }
}

/// One range of a message: it ends (exclusive) at `upper` and starts where the previous range
/// ended, or at timestamp 0 with an empty prefix for the first range.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Part {
    /// Exclusive upper bound.
    pub upper: Bound,
    /// What the sender says about the range.
    pub payload: Payload,
}

/// Writes parts one by one, delta-encoding timestamps within the message. A Skip is held
/// back and written only when a later part needs it, so that consecutive Skips merge and a
/// trailing one is dropped, as Negentropy does.
#[derive(Clone, Debug)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
    last_timestamp: u64,
    /// Upper bound of the last part written.
    lower: EntryKey,
    skip: Option<Bound>,
    /// Parts pushed, for error messages.
    pushed: usize,
}

/// A saved [`Encoder`] position.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    len: usize,
    last_timestamp: u64,
    lower: EntryKey,
    skip: Option<Bound>,
    pushed: usize,
}

impl Encoder {
    pub(crate) fn new() -> Self {
        Encoder {
            buf: vec![PROTOCOL_VERSION],
            last_timestamp: 0,
            lower: EntryKey::MIN,
            skip: None,
            pushed: 0,
        }
    }

    /// Bytes written so far; a held-back Skip is not counted.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Upper bound of the last part written (not counting a held-back Skip): where a range
    /// appended now would be read to start.
    pub(crate) fn written_upto(&self) -> EntryKey {
        self.lower
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            len: self.buf.len(),
            last_timestamp: self.last_timestamp,
            lower: self.lower,
            skip: self.skip,
            pushed: self.pushed,
        }
    }

    pub(crate) fn rollback(&mut self, mark: Mark) {
        self.buf.truncate(mark.len);
        self.last_timestamp = mark.last_timestamp;
        self.lower = mark.lower;
        self.skip = mark.skip;
        self.pushed = mark.pushed;
    }

    /// Forgets a held-back Skip.
    pub(crate) fn drop_skip(&mut self) {
        self.skip = None;
    }

    /// Where the next range starts, or `None` after the infinity bound.
    fn next_lower(&self) -> Option<EntryKey> {
        let last = self.skip.map_or(self.lower, |b| b.key);
        (last.hlc.0 != INFINITY_TIMESTAMP).then_some(last)
    }

    /// Adds a part, holding Skips back, after checking that a decoder would read it back.
    pub(crate) fn push(&mut self, part: &Part) -> Result<(), EncodeError> {
        check_part(self.pushed, self.next_lower().as_ref(), part)?;
        self.pushed += 1;
        if let Payload::Skip = part.payload {
            self.skip = Some(part.upper);
            return Ok(());
        }
        if let Some(upper) = self.skip.take() {
            self.write(&Part {
                upper,
                payload: Payload::Skip,
            });
        }
        self.write(part);
        Ok(())
    }

    /// Writes a part as it is.
    fn write(&mut self, part: &Part) {
        let out = &mut self.buf;
        let ts = part.upper.timestamp();
        if ts == INFINITY_TIMESTAMP {
            put_varint(out, 0);
        } else {
            put_varint(
                out,
                ts.saturating_sub(self.last_timestamp).saturating_add(1),
            );
        }
        self.last_timestamp = ts;
        put_varint(out, u64::from(part.upper.prefix_len));
        out.extend_from_slice(part.upper.prefix());
        put_varint(out, part.payload.mode());
        match &part.payload {
            Payload::Skip => {}
            Payload::Fingerprint(fp) => out.extend_from_slice(&fp.0),
            Payload::IdList(ids) => {
                put_varint(out, ids.len() as u64);
                for id in ids {
                    out.extend_from_slice(&id.0);
                }
            }
        }
        self.lower = part.upper.key;
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Checks that `part` may follow a range ending at `lower` (`None`: after infinity).
fn check_part(index: usize, lower: Option<&EntryKey>, part: &Part) -> Result<(), EncodeError> {
    let err = |why| EncodeError { index, why };
    let lower = lower.ok_or(err("a range follows the infinity bound"))?;
    if part.upper.key < *lower {
        return Err(err("bound below the previous one"));
    }
    if part.upper.is_infinity() && part.upper.prefix_len != 0 {
        return Err(err("infinity bound with an id prefix"));
    }
    Ok(())
}

/// Encodes parts as a message, each written as given (no Skip merging).
///
/// Every part is checked first (bounds never decreasing, nothing after the infinity bound,
/// infinity without an id prefix); the first that breaks a rule is named in the error, so
/// the result always decodes to the same parts.
pub fn encode(parts: &[Part]) -> Result<Vec<u8>, EncodeError> {
    let mut enc = Encoder::new();
    let mut lower = Some(EntryKey::MIN);
    for (index, p) in parts.iter().enumerate() {
        check_part(index, lower.as_ref(), p)?;
        lower = (!p.upper.is_infinity()).then_some(p.upper.key);
        enc.write(p);
    }
    Ok(enc.finish())
}

/// Decodes and checks a message. Accepted: everything a Negentropy V1 implementation sends.
/// Rejected: any other version byte, truncated fields, varints that are over-long or exceed
/// 64 bits, unknown modes, prefixes over 32 bytes, a bound below the previous one, a range
/// after the infinity bound, and id lists whose count exceeds what the message holds.
///
/// This holds every range in memory; [`parts`] reads them one at a time instead.
pub fn decode(bytes: &[u8]) -> Result<Vec<Part>, DecodeError> {
    parts(bytes)?.collect()
}

/// Reads a message's ranges one at a time with the checks of [`decode`], so that only one
/// range (its ids take as many bytes as on the wire) is decoded in memory at once.
///
/// Fails at once on a missing or foreign version byte; each later error is yielded in place
/// of a range and ends the iteration.
pub fn parts(bytes: &[u8]) -> Result<PartReader<'_>, DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if !(0x60..=0x6f).contains(&version) {
        return Err(DecodeError::NotNegentropy(version));
    }
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    Ok(PartReader {
        r: Reader { buf: rest },
        last_timestamp: 0,
        lower: EntryKey::MIN,
        ended: false,
        failed: false,
    })
}

/// An iterator over the ranges of a Negentropy message; see [`parts`].
#[derive(Debug)]
pub struct PartReader<'a> {
    r: Reader<'a>,
    last_timestamp: u64,
    lower: EntryKey,
    ended: bool,
    failed: bool,
}

impl Iterator for PartReader<'_> {
    type Item = Result<Part, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let result = self.read_part();
        self.failed = result.is_err();
        Some(result)
    }
}

impl PartReader<'_> {
    fn read_part(&mut self) -> Result<Part, DecodeError> {
        let r = &mut self.r;
        if self.ended {
            return Err(DecodeError::BadBound("a range follows the infinity bound"));
        }
        let t = r.varint("bound timestamp")?;
        let timestamp = if t == 0 {
            INFINITY_TIMESTAMP
        } else {
            self.last_timestamp
                .checked_add(t - 1)
                .filter(|ts| *ts != INFINITY_TIMESTAMP)
                .ok_or(DecodeError::BadBound("timestamp overflows"))?
        };
        self.last_timestamp = timestamp;
        let len = usize::try_from(r.varint("bound prefix length")?)
            .ok()
            .filter(|len| *len <= 32)
            .ok_or(DecodeError::BadBound("id prefix longer than 32 bytes"))?;
        let upper = Bound::new(timestamp, r.bytes(len, "bound prefix")?)?;
        if upper.key < self.lower {
            return Err(DecodeError::BadBound("bound below the previous one"));
        }
        if upper.is_infinity() {
            if upper.prefix_len != 0 {
                return Err(DecodeError::BadBound("infinity bound with an id prefix"));
            }
            self.ended = true;
        }
        self.lower = upper.key;
        let payload = match r.varint("mode")? {
            0 => Payload::Skip,
            1 => {
                let mut fp = [0u8; FINGERPRINT_LEN];
                fp.copy_from_slice(r.bytes(FINGERPRINT_LEN, "fingerprint")?);
                Payload::Fingerprint(Fingerprint(fp))
            }
            2 => {
                let n = usize::try_from(r.varint("id count")?)
                    .ok()
                    .filter(|n| *n <= r.buf.len() / 32)
                    .ok_or(DecodeError::BadIdList("more ids than the message holds"))?;
                let raw = r.bytes(n * 32, "ids")?;
                let ids = raw
                    .chunks_exact(32)
                    .map(|c| {
                        let mut h = [0u8; 32];
                        h.copy_from_slice(c);
                        Hash(h)
                    })
                    .collect();
                Payload::IdList(ids)
            }
            m => return Err(DecodeError::UnknownMode(m)),
        };
        Ok(Part { upper, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_is_big_endian_base_128() {
        let cases: [(u64, &[u8]); 6] = [
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x81, 0x00]),
            (300, &[0x82, 0x2c]),
            (16_384, &[0x81, 0x80, 0x00]),
        ];
        for (v, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len());
            assert_eq!(Reader { buf: bytes }.varint("v"), Ok(v));
        }
        let mut max = Vec::new();
        put_varint(&mut max, u64::MAX);
        assert_eq!(max.len(), 10);
        assert_eq!(Reader { buf: &max }.varint("v"), Ok(u64::MAX));
        // a leading zero digit, 2^64, a missing last byte
        assert!(Reader { buf: &[0x80, 0x01] }.varint("v").is_err());
        let mut over = vec![0x82];
        over.extend([0x80; 8]);
        over.push(0x00);
        assert!(Reader { buf: &over }.varint("v").is_err());
        assert!(Reader { buf: &[0x81] }.varint("v").is_err());
    }

    #[test]
    fn fingerprint_of_known_sets() {
        // SHA-256 of 32 zero bytes followed by the varint 0.
        let empty = Accumulator::EMPTY.fingerprint();
        let mut input = vec![0u8; 33];
        input[32] = 0;
        assert_eq!(empty.0[..], Sha256::digest(&input)[..16]);
        // the sum carries across limbs and wraps at 2^256
        let mut acc = Accumulator::EMPTY;
        acc.add(&Hash([0xff; 32]));
        acc.add(&Hash({
            let mut h = [0u8; 32];
            h[0] = 1;
            h
        }));
        assert_eq!(acc.sum, [0; 4]);
        assert_eq!(acc.count(), 2);
        let mut input = vec![0u8; 32];
        input.push(2);
        assert_eq!(acc.fingerprint().0[..], Sha256::digest(&input)[..16]);
    }

    #[test]
    // `a`, `b`, `c`: three keys of a worked example, `m` a bound between two of them
    #[allow(clippy::many_single_char_names)]
    fn minimal_bounds() {
        let a = EntryKey::new(10, [7; 32]);
        let b = EntryKey::new(20, [1; 32]);
        let m = Bound::minimal(&a, &b);
        assert_eq!((m.timestamp(), m.prefix()), (20, &[][..]));
        let mut h = [7u8; 32];
        h[3] = 9;
        let c = EntryKey::new(10, h);
        let m = Bound::minimal(&a, &c);
        assert_eq!(m.prefix(), &[7, 7, 7, 9]);
        assert!(a < m.key() && m.key() <= c);
    }

    #[test]
    fn round_trip_and_delta_timestamps() {
        let parts = vec![
            Part {
                upper: Bound::new(1000, &[]).unwrap(),
                payload: Payload::Skip,
            },
            Part {
                upper: Bound::new(1000, &[5, 6]).unwrap(),
                payload: Payload::Fingerprint(Fingerprint([3; 16])),
            },
            Part {
                upper: Bound::at(&EntryKey::new(1200, [0; 32])),
                payload: Payload::IdList(vec![Hash([1; 32]), Hash([2; 32])]),
            },
            Part {
                upper: Bound::INFINITY,
                payload: Payload::IdList(vec![]),
            },
        ];
        let bytes = encode(&parts).unwrap();
        // 1 + (1000 + 1) as varint
        assert_eq!(&bytes[..4], &[0x61, 0x87, 0x69, 0x00]);
        assert_eq!(decode(&bytes).unwrap(), parts);
        assert_eq!(decode(&[0x61]).unwrap(), vec![]);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[0x01]), Err(DecodeError::NotNegentropy(1)));
        assert_eq!(decode(&[0x62]), Err(DecodeError::UnsupportedVersion(0x62)));
        assert_eq!(decode(&[0x61, 0, 0, 3]), Err(DecodeError::UnknownMode(3)));
        assert!(matches!(
            decode(&[0x61, 0, 33]),
            Err(DecodeError::BadBound(_))
        ));
        assert!(matches!(
            decode(&[0x61, 0, 0, 2, 0xc0, 0x80, 0x80, 0x80, 0x00]),
            Err(DecodeError::BadIdList(_))
        ));
        // a bound below the previous one: (5, [9]) then (5, [])
        assert!(matches!(
            decode(&[0x61, 6, 1, 9, 0, 1, 0, 0]),
            Err(DecodeError::BadBound(_))
        ));
        // anything after infinity
        assert!(matches!(
            decode(&[0x61, 0, 0, 0, 1, 0, 0]),
            Err(DecodeError::BadBound(_))
        ));
    }

    proptest! {
        #[test]
        fn decoder_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut b = bytes.clone();
            if let Some(first) = b.first_mut() { *first = PROTOCOL_VERSION; }
            if let Ok(parts) = decode(&b) {
                prop_assert_eq!(encode(&parts).unwrap(), b);
            }
            let _ = decode(&bytes);
        }
    }
}
