//! The range fingerprint: a 4096-bit additive multiset hash with an 8-byte salted digest on the
//! wire.
//!
//! Every key is expanded by BLAKE3 in extendable-output mode into a 4096-bit integer; the
//! [`Aggregate`] of a set is the sum of those integers modulo 2^4096 together with the number
//! of keys. Addition makes the aggregate a commutative group, so the aggregate of a union of
//! disjoint ranges is the sum of theirs (a monoid homomorphism over key order, which lets a
//! store cache aggregates in a tree) and a range can be computed as a difference of prefixes.
//! Only [`Fingerprint`], the first 8 bytes of a BLAKE3 hash of `(salt, count, sum)` under a
//! per-session random [`Salt`], crosses the wire. `spec/SPEC.md` (7.2) explains why 4096 bits:
//! it defeats the crafted collisions that break XOR (linear algebra) and sums modulo 2^256
//! (Wagner's generalised birthday attack); and why 8 bytes suffice once the digest is keyed
//! by a salt that nobody knows when the sets are written.

use std::cell::RefCell;
use std::fmt;

use crate::key::EntryKey;

/// Number of 64-bit limbs in the 4096-bit sum.
pub const LIMBS: usize = 64;
/// Bytes in the local aggregate state (the 4096-bit sum).
pub const STATE_BYTES: usize = LIMBS * 8;
/// Bytes of a fingerprint on the wire.
pub const FINGERPRINT_LEN: usize = 8;
/// Bytes of a session's [`Salt`].
pub const SALT_LEN: usize = 16;

/// BLAKE3 key-derivation context for expanding one key into its 4096-bit term.
pub const ITEM_CONTEXT: &str = "oplog-sync v1 fingerprint item";
/// BLAKE3 key-derivation context for the salted wire digest of an aggregate.
pub const DIGEST_CONTEXT: &str = "oplog-sync v1 salted fingerprint digest";

/// The per-session random value that keys every wire [`Fingerprint`] of one session
/// (`spec/SPEC.md` 7.1). The initiator draws it and sends it in its first message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Salt(pub [u8; SALT_LEN]);

impl Salt {
    /// A fresh salt from the operating system's random source.
    ///
    /// Fails only if the operating system cannot provide randomness; the caller should then
    /// not start the session (a predictable salt gives up the argument of spec 7.2).
    pub fn random() -> Result<Salt, getrandom::Error> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::getrandom(&mut salt)?;
        Ok(Salt(salt))
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salt({})", hex::encode(self.0))
    }
}

/// The local, combinable state of a set of keys: their count and the sum of their terms
/// modulo 2^4096 (little-endian limbs).
#[derive(Clone, PartialEq, Eq)]
pub struct Aggregate {
    sum: [u64; LIMBS],
    count: u64,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate::EMPTY
    }
}

impl fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Aggregate {{ count: {}, sum: {:016x}.. }}",
            self.count,
            self.sum[LIMBS - 1]
        )
    }
}

impl Aggregate {
    /// The aggregate of the empty set.
    pub const EMPTY: Aggregate = Aggregate {
        sum: [0; LIMBS],
        count: 0,
    };

    /// The aggregate of the one-key set `{key}`.
    pub fn of_key(key: &EntryKey) -> Self {
        let mut agg = Aggregate::EMPTY;
        agg.add_key(key);
        agg
    }

    /// The aggregate of a set of distinct keys.
    pub fn of_keys<'a>(keys: impl IntoIterator<Item = &'a EntryKey>) -> Self {
        let mut agg = Aggregate::EMPTY;
        for k in keys {
            agg.add_key(k);
        }
        agg
    }

    /// Adds the term of a key not in the set: `self = self ∪ {key}`. The same as adding
    /// [`of_key`](Aggregate::of_key), without building it.
    pub fn add_key(&mut self, key: &EntryKey) {
        let sum = &mut self.sum;
        with_term(key, |term| {
            let (chunks, _) = term.as_chunks::<8>();
            let mut carry = false;
            for (a, chunk) in sum.iter_mut().zip(chunks) {
                let (s1, c1) = a.overflowing_add(u64::from_le_bytes(*chunk));
                let (s2, c2) = s1.overflowing_add(u64::from(carry));
                *a = s2;
                carry = c1 | c2;
            }
        });
        self.count = self.count.wrapping_add(1);
    }

    /// Removes the term of a key in the set: `self = self \ {key}`. The same as subtracting
    /// [`of_key`](Aggregate::of_key), without building it.
    pub fn sub_key(&mut self, key: &EntryKey) {
        let sum = &mut self.sum;
        with_term(key, |term| {
            let (chunks, _) = term.as_chunks::<8>();
            let mut borrow = false;
            for (a, chunk) in sum.iter_mut().zip(chunks) {
                let (d1, b1) = a.overflowing_sub(u64::from_le_bytes(*chunk));
                let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
                *a = d2;
                borrow = b1 | b2;
            }
        });
        self.count = self.count.wrapping_sub(1);
    }

    /// Number of keys aggregated.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds the aggregate of a disjoint set: `self = self ∪ other`.
    pub fn add(&mut self, other: &Aggregate) {
        let mut carry = false;
        for (a, b) in self.sum.iter_mut().zip(other.sum.iter()) {
            let (s1, c1) = a.overflowing_add(*b);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *a = s2;
            carry = c1 | c2;
        }
        self.count = self.count.wrapping_add(other.count);
    }

    /// Removes the aggregate of a subset: `self = self \ other`.
    pub fn sub(&mut self, other: &Aggregate) {
        let mut borrow = false;
        for (a, b) in self.sum.iter_mut().zip(other.sum.iter()) {
            let (d1, b1) = a.overflowing_sub(*b);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *a = d2;
            borrow = b1 | b2;
        }
        self.count = self.count.wrapping_sub(other.count);
    }

    /// The 512-byte little-endian form of the sum.
    pub fn sum_bytes(&self) -> [u8; STATE_BYTES] {
        let mut out = [0u8; STATE_BYTES];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(self.sum.iter()) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    /// The wire digest under the session's `salt`: the first 8 bytes of
    /// `BLAKE3-derive-key(DIGEST_CONTEXT, salt (16 bytes) || count as u64 LE || sum as 512
    /// bytes LE)`.
    pub fn fingerprint(&self, salt: &Salt) -> Fingerprint {
        // One contiguous input, so that BLAKE3 compresses its whole blocks in place instead
        // of copying three pieces through its block buffer.
        let mut input = [0u8; SALT_LEN + 8 + STATE_BYTES];
        input[..SALT_LEN].copy_from_slice(&salt.0);
        input[SALT_LEN..SALT_LEN + 8].copy_from_slice(&self.count.to_le_bytes());
        for (chunk, limb) in input[SALT_LEN + 8..]
            .chunks_exact_mut(8)
            .zip(self.sum.iter())
        {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        let mut out = [0u8; FINGERPRINT_LEN];
        with_hasher(&DIGEST_HASHER, DIGEST_CONTEXT, &mut |hasher| {
            hasher.update(&input);
            out.copy_from_slice(&hasher.finalize().as_bytes()[..FINGERPRINT_LEN]);
        });
        Fingerprint(out)
    }
}

thread_local! {
    /// This thread's derive-key hasher of `ITEM_CONTEXT`, reset before each use: deriving the
    /// context key costs one BLAKE3 compression (a third of expanding one key), and a hasher
    /// is large enough (about 2 KB) that copying one per key shows in a profile.
    /// With a buffer for the 512 bytes of a term, so that expanding a key neither zeroes nor
    /// copies one.
    static ITEM_HASHER: RefCell<(blake3::Hasher, [u8; STATE_BYTES])> =
        RefCell::new((blake3::Hasher::new_derive_key(ITEM_CONTEXT), [0; STATE_BYTES]));
    /// This thread's derive-key hasher of `DIGEST_CONTEXT`, reset before each use.
    static DIGEST_HASHER: RefCell<blake3::Hasher> =
        RefCell::new(blake3::Hasher::new_derive_key(DIGEST_CONTEXT));
}

/// Runs `f` on this thread's hasher in `cell`, reset (so in the state
/// `blake3::Hasher::new_derive_key` of its context returns); if that hasher is in use or
/// gone (thread teardown), on a new one for `context`.
fn with_hasher(
    cell: &'static std::thread::LocalKey<RefCell<blake3::Hasher>>,
    context: &str,
    f: &mut dyn FnMut(&mut blake3::Hasher),
) {
    let ran = cell
        .try_with(|h| match h.try_borrow_mut() {
            Ok(mut h) => {
                h.reset();
                f(&mut h);
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false);
    if !ran {
        f(&mut blake3::Hasher::new_derive_key(context));
    }
}

/// Calls `f` with a key's 4096-bit term as 512 little-endian bytes: BLAKE3 in derive-key
/// mode for `ITEM_CONTEXT` over the key's 40-byte form, extended to 512 bytes.
#[inline]
fn with_term(key: &EntryKey, mut f: impl FnMut(&[u8; STATE_BYTES])) {
    let input = key.to_bytes();
    let ran = ITEM_HASHER
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut state) => {
                let (hasher, term) = &mut *state;
                hasher.reset();
                hasher.update(&input);
                hasher.finalize_xof().fill(term);
                f(term);
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false);
    if !ran {
        let mut hasher = blake3::Hasher::new_derive_key(ITEM_CONTEXT);
        hasher.update(&input);
        let mut term = [0u8; STATE_BYTES];
        hasher.finalize_xof().fill(&mut term);
        f(&term);
    }
}

/// The 8-byte salted digest of an [`Aggregate`] that crosses the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; FINGERPRINT_LEN]);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Hash;

    const S: Salt = Salt([7; SALT_LEN]);

    #[test]
    fn the_salt_keys_the_digest() {
        let a = Aggregate::of_keys(&[k(1), k(2)]);
        assert_ne!(a.fingerprint(&S), a.fingerprint(&Salt([8; SALT_LEN])));
        assert_eq!(a.fingerprint(&S), a.clone().fingerprint(&S));
    }

    fn k(i: u64) -> EntryKey {
        EntryKey::new(i, *blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    #[test]
    fn homomorphic_over_adjacent_ranges() {
        let keys: Vec<EntryKey> = (1..200).map(k).collect();
        let whole = Aggregate::of_keys(&keys);
        for cut in [0, 1, 57, 198, 199] {
            let mut left = Aggregate::of_keys(&keys[..cut]);
            left.add(&Aggregate::of_keys(&keys[cut..]));
            assert_eq!(left, whole);
            assert_eq!(left.fingerprint(&S), whole.fingerprint(&S));
            let mut right = whole.clone();
            right.sub(&Aggregate::of_keys(&keys[..cut]));
            assert_eq!(right, Aggregate::of_keys(&keys[cut..]));
        }
    }

    #[test]
    fn count_is_bound_into_the_digest() {
        let a = Aggregate::of_key(&k(1));
        let mut b = a.clone();
        b.count = 2;
        assert_ne!(a.fingerprint(&S), b.fingerprint(&S));
        assert_ne!(Aggregate::EMPTY.fingerprint(&S), a.fingerprint(&S));
    }

    #[test]
    fn carries_propagate_across_limbs() {
        let mut a = Aggregate::EMPTY;
        a.sum[0] = u64::MAX;
        let mut one = Aggregate::EMPTY;
        one.sum[0] = 1;
        a.add(&one);
        assert_eq!(a.sum[0], 0);
        assert_eq!(a.sum[1], 1);
        a.sub(&one);
        assert_eq!(a.sum[0], u64::MAX);
        assert_eq!(a.sum[1], 0);
    }

    /// XOR of BLAKE3 hashes (iroh-docs' fingerprint) is linear over GF(2): among 257 keys some
    /// subset XORs to zero, found by Gaussian elimination, and splitting it gives two different
    /// sets with equal XOR fingerprints. Ours tells them apart.
    #[test]
    fn xor_crafted_collision_is_caught() {
        let keys: Vec<EntryKey> = (1..=257u64)
            .map(|i| EntryKey::new(i, Hash(*blake3::hash(&i.to_be_bytes()).as_bytes())))
            .collect();
        let xor_term = |key: &EntryKey| *blake3::hash(&key.to_bytes()).as_bytes();
        // Gaussian elimination; each row tracks which keys were combined into it.
        let n = keys.len();
        let mut rows: Vec<([u8; 32], Vec<bool>)> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let mut used = vec![false; n];
                used[i] = true;
                (xor_term(key), used)
            })
            .collect();
        let mut pivot_row = 0;
        for bit in 0..256 {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let Some(p) = (pivot_row..n).find(|&r| rows[r].0[byte] & mask != 0) else {
                continue;
            };
            rows.swap(pivot_row, p);
            let pivot = rows[pivot_row].clone();
            for (r, row) in rows.iter_mut().enumerate() {
                if r != pivot_row && row.0[byte] & mask != 0 {
                    for (x, y) in row.0.iter_mut().zip(pivot.0.iter()) {
                        *x ^= y;
                    }
                    for (x, y) in row.1.iter_mut().zip(pivot.1.iter()) {
                        *x ^= y;
                    }
                }
            }
            pivot_row += 1;
        }
        let zero_row = rows
            .iter()
            .find(|(v, used)| v.iter().all(|b| *b == 0) && used.iter().any(|u| *u))
            .expect("257 vectors in a 256-dimensional space are dependent");
        let subset: Vec<EntryKey> = (0..n).filter(|&i| zero_row.1[i]).map(|i| keys[i]).collect();
        assert!(subset.len() >= 2);
        let (a, b) = subset.split_at(subset.len() / 2);
        let xor_of = |s: &[EntryKey]| {
            s.iter().fold([0u8; 32], |mut acc, key| {
                for (x, y) in acc.iter_mut().zip(xor_term(key)) {
                    *x ^= y;
                }
                acc
            })
        };
        assert_eq!(xor_of(a), xor_of(b), "the XOR fingerprint collides");
        assert_ne!(
            Aggregate::of_keys(a).fingerprint(&S),
            Aggregate::of_keys(b).fingerprint(&S),
            "ours must not"
        );
        // Same count on both sides does not save XOR either: pad the smaller side with a
        // shared key and the collision remains, while ours still differs.
        assert_ne!(Aggregate::of_keys(a), Aggregate::of_keys(b));
    }
}
