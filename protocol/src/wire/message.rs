//! The reconciliation wire format: a message is a tag byte followed by parts, each covering a
//! half-open range of the key space that starts where the previous part ended.
//!
//! `spec/SPEC.md` ("Reconciliation messages") is the normative description of every byte; this
//! module is its only implementation. Messages come in two [`KeyForm`]s: inline (8.3), and
//! carried (8.12), where Resolve and Keys payloads write only their key count and the keys
//! travel beside the message ([`encode_carried`], [`parts_carried`]). Decoding is strict: every accepted message re-encodes to
//! the same bytes, and nothing a peer sends can make the decoder panic or allocate more than a
//! small multiple of the input.

use crate::fingerprint::{Fingerprint, Salt, FINGERPRINT_LEN, SALT_LEN};
use crate::hlc::{Hlc, MAX_HLC};
use crate::key::{EntryKey, Hash};

/// First byte of every oplog-sync v1 reconciliation message. In the initiator's first
/// message of a session (its *opening*) the session's fingerprint [`Salt`] follows it
/// (`spec/SPEC.md` 8.3); only the receiver's position in the session tells the two apart.
pub const MESSAGE_TAG: u8 = 0x01;
/// Most items a list, key or index payload may carry.
pub const MAX_LIST_ITEMS: usize = 256;

/// How the keys of `Resolve` and `Keys` payloads travel (`spec/SPEC.md` 8.12).
///
/// Both sides of a session must use the same form; the session layer chooses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyForm {
    /// Keys are written in the message in full (8.3): `varint m || m × (delta hlc, hash)`.
    #[default]
    Inline,
    /// Only the count `m` is written; the keys are the next `m` keys of a *carried key list*
    /// that travels beside the message: the keys of the entries the sender sent just before
    /// it, in key order. See [`encode_carried`] and [`parts_carried`].
    Carried,
}

/// Part modes, the low three bits of a part's header byte.
pub(crate) mod mode {
    pub const SKIP: u8 = 0;
    pub const FINGERPRINT: u8 = 1;
    pub const PREFIX_LIST: u8 = 2;
    pub const FULL_LIST: u8 = 3;
    pub const RESOLVE: u8 = 4;
    pub const KEYS: u8 = 5;
    /// Not a payload: the header of a run of Fingerprint parts whose bounds have no hash
    /// prefix (`spec/SPEC.md` 8.3); the header's high five bits hold the run length minus 2.
    pub const FINGERPRINT_RUN: u8 = 6;
}

/// Most Fingerprint parts one run header covers (`spec/SPEC.md` 8.3).
pub const MAX_RUN: u8 = 33;

/// What a part says about its range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Nothing more to say about this range: agreed, or settled.
    Skip,
    /// The sender's fingerprint of the range; the receiver compares it with its own.
    Fingerprint(Fingerprint),
    /// Short hash prefixes of every key the sender holds in the range, in key order; the
    /// receiver answers with [`Payload::Resolve`] (or splits the range).
    PrefixList {
        /// Bytes per prefix, 1 to 32.
        len: u8,
        /// `count * len` bytes.
        prefixes: Vec<u8>,
    },
    /// Every key the sender holds in the range, in full; the receiver answers with
    /// [`Payload::Resolve`] (or splits the range).
    FullList(Vec<EntryKey>),
    /// The answer to a list: which list positions the sender lacks, and the sender's keys in
    /// the range that the list did not cover.
    Resolve {
        /// Strictly ascending 0-based positions in the list being answered.
        missing: Vec<u32>,
        /// Keys the list's sender lacks, ascending.
        keys: Vec<EntryKey>,
    },
    /// The last word on a resolved range: the keys of the listed items the receiver lacks.
    Keys {
        /// Leading hash bytes left out of every key on the wire (inline form only, 0 to 32):
        /// the prefix length of the `PrefixList` being answered, whose prefixes the receiver
        /// holds in its pending state (`spec/SPEC.md` 8.3, 8.4). Decoded keys have these bytes
        /// zero until the receiver fills them in; 0 means full keys, and is the only value
        /// the carried form allows.
        omitted: u8,
        /// The keys, ascending once their omitted bytes are filled in.
        keys: Vec<EntryKey>,
    },
}

impl Payload {
    pub(crate) fn mode(&self) -> u8 {
        match self {
            Payload::Skip => mode::SKIP,
            Payload::Fingerprint(_) => mode::FINGERPRINT,
            Payload::PrefixList { .. } => mode::PREFIX_LIST,
            Payload::FullList(_) => mode::FULL_LIST,
            Payload::Resolve { .. } => mode::RESOLVE,
            Payload::Keys { .. } => mode::KEYS,
        }
    }

    /// Whether the part asks the receiver for an answer.
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            Payload::Fingerprint(_)
                | Payload::PrefixList { .. }
                | Payload::FullList(_)
                | Payload::Resolve { .. }
        )
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Payload::Skip => "Skip",
            Payload::Fingerprint(_) => "Fingerprint",
            Payload::PrefixList { .. } => "PrefixList",
            Payload::FullList(_) => "FullList",
            Payload::Resolve { .. } => "Resolve",
            Payload::Keys { .. } => "Keys",
        }
    }
}

/// One part of a message: a range ending at `upper` (exclusive; `None` = end of the key
/// space) and what the sender says about it. The range starts where the previous part ended,
/// or at the smallest key for the first part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Exclusive upper bound of the part's range.
    pub upper: Option<EntryKey>,
    /// What the part says.
    pub payload: Payload,
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message is empty or does not start with [`MESSAGE_TAG`].
    #[error("not an oplog-sync v1 reconciliation message (first byte {0:?}, expected 0x01)")]
    BadTag(Option<u8>),
    /// The input ended inside a field.
    #[error("message truncated while reading {0}")]
    Truncated(&'static str),
    /// A varint is over-long, longer than 10 bytes or larger than 2^64 - 1.
    #[error("invalid varint while reading {0}")]
    BadVarint(&'static str),
    /// A mode the v1 format does not define.
    #[error("unknown part mode {0}")]
    UnknownMode(u8),
    /// A bound is not canonical, not above the previous one, or follows the end bound.
    #[error("invalid bound: {0}")]
    BadBound(&'static str),
    /// A list or key payload is malformed (too long, out of order, outside its range).
    #[error("invalid {what}: {why}")]
    BadPayload {
        /// The payload kind.
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A Skip part follows a Skip part, or the message ends with a Skip part: both have a
    /// shorter canonical form.
    #[error("non-canonical skip parts")]
    NonCanonicalSkip,
    /// Carried form: a part takes more keys than remain in the carried key list, so the
    /// entries sent before the message do not match it.
    #[error("a part takes {asked} carried keys but only {left} remain in the carried list; the entries sent before the message do not match it")]
    CarriedKeysShort {
        /// Keys the part's count asks for.
        asked: usize,
        /// Keys left in the carried list at that part.
        left: usize,
    },
    /// A Fingerprint part whose bound has no hash prefix follows such a part (or run) that
    /// is not a full run of 33, or a run header follows one: consecutive such parts have one
    /// shorter, canonical form, greedy runs of up to 33 (`spec/SPEC.md` 8.3).
    #[error("non-canonical fingerprint run: consecutive fingerprints with empty bound prefixes must be grouped in runs of 33, the last one shorter")]
    NonCanonicalRun,
    /// Carried form: keys of the carried list are left over after the last part, so entries
    /// were sent before the message that it does not name.
    #[error("{0} carried keys left over after the last part; every entry sent before a message must be named by one of its parts")]
    CarriedKeysLeft(usize),
}

/// Why parts cannot be encoded as a valid message: the parts break a rule of the wire format
/// that a decoder would refuse. Encoding never writes such a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A part's upper bound is not above the previous part's bound, follows the end bound, or
    /// has an HLC above 2^64 - 2.
    #[error("cannot encode part {index}: invalid bound: {why}")]
    BadBound {
        /// 0-based index of the offending part.
        index: usize,
        /// What is wrong with the bound.
        why: &'static str,
    },
    /// A part's payload breaks a rule of its mode (list too long, keys out of order or outside
    /// the part's range, a prefix list whose bytes are not a whole number of prefixes, ...).
    #[error("cannot encode part {index}: invalid {what}: {why}")]
    BadPayload {
        /// 0-based index of the offending part.
        index: usize,
        /// The payload kind.
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

// ---------------------------------------------------------------------------------------------
// varints: unsigned LEB128, canonical (no over-long forms)

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // the low seven bits, with the continuation bit
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    // below 0x80 here: the low byte is the whole value
    out.push(v.to_le_bytes()[0]);
}

/// Writes a varint of up to 70 bits (at most 10 bytes), as [`put_varint`] does for 64.
fn put_wide_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(v.to_le_bytes()[0]);
}

/// The value a bound's `bound-hlc` field holds for an HLC `delta` above the previous bound's
/// (`spec/SPEC.md` 8.3), not counting the `+ 1` that keeps 0 for the end bound: 0 for a delta
/// of 0, otherwise `(m << 6) | e` for `delta = m · 2^e` with `m` odd. A delta that ends in many
/// zero bits (as the separators of 8.2 make them) is written in a few bytes.
fn delta_code(delta: u64) -> u128 {
    if delta == 0 {
        return 0;
    }
    let e = delta.trailing_zeros();
    (u128::from(delta >> e) << 6) | u128::from(e)
}

/// The delta a `bound-hlc` code stands for: `None` unless the code is canonical (`m` odd, or
/// `m = 0` with `e = 0`) and the delta fits in 64 bits.
fn delta_of_code(code: u128) -> Option<u64> {
    let e = u32::try_from(code & 63).ok()?;
    let m = u64::try_from(code >> 6).ok()?;
    if m == 0 {
        return (e == 0).then_some(0);
    }
    if m % 2 == 0 || m.leading_zeros() < e {
        return None;
    }
    Some(m << e)
}

#[cfg(test)]
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte(what)?;
            let chunk = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(DecodeError::BadVarint(what));
            }
            v |= chunk << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(DecodeError::BadVarint(what));
                }
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint(what))
    }

    /// A varint of at most 10 bytes (70 bits), canonical, for the `bound-hlc` field.
    fn wide_varint(&mut self, what: &'static str) -> Result<u128, DecodeError> {
        let mut v: u128 = 0;
        for i in 0..10 {
            let b = self.byte(what)?;
            v |= u128::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(DecodeError::BadVarint(what));
                }
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint(what))
    }

    /// A count of items each at least `min_item_bytes` long, checked against what is left.
    fn count(&mut self, what: &'static str, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.varint(what)?)
            .ok()
            .filter(|n| *n <= MAX_LIST_ITEMS)
            .ok_or(DecodeError::BadPayload {
                what,
                why: "more than 256 items",
            })?;
        if n * min_item_bytes > self.remaining() {
            return Err(DecodeError::Truncated(what));
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// bounds

/// The cheapest bound `b` with `pred < b <= item`, the split point between two adjacent keys
/// of a part that starts at `lower` (`spec/SPEC.md` 8.2).
///
/// If the HLCs differ the bound has an empty prefix and the HLC `h` in `(pred.hlc, item.hlc]`
/// for which `h - lower.hlc` ends in the most zero bits (there is exactly one), so that its
/// delta from the previous bound, which is `lower`, is written in few bytes (8.3). Otherwise
/// it is the item's HLC with the shortest hash prefix that exceeds `pred`'s hash.
///
/// `None` if `pred` is not below `item`, `pred` is below `lower`, or `item`'s HLC is above
/// 2^64 - 2 (no valid key has it, and no bound may carry it): such keys cannot come from a
/// consistent store.
pub fn separator(lower: &EntryKey, pred: &EntryKey, item: &EntryKey) -> Option<EntryKey> {
    if pred >= item || item.hlc > MAX_HLC || pred < lower {
        return None;
    }
    if pred.hlc < item.hlc {
        let base = lower.hlc.0;
        let (a, b) = (pred.hlc.0 - base, item.hlc.0 - base);
        // the highest bit in which a and b differ is set in b: keep b's bits from there up
        let k = (a ^ b).ilog2();
        return Some(EntryKey::new(Hlc(base + ((b >> k) << k)), Hash::ZERO));
    }
    let i = pred
        .hash
        .0
        .iter()
        .zip(item.hash.0.iter())
        .position(|(a, b)| a != b)
        .unwrap_or(31);
    let mut hash = [0u8; 32];
    hash[..=i].copy_from_slice(&item.hash.0[..=i]);
    Some(EntryKey::new(item.hlc, Hash(hash)))
}

/// Bytes of a bound's hash prefix: the hash without its trailing zero bytes.
fn prefix_len(key: &EntryKey) -> usize {
    32 - key.hash.0.iter().rev().take_while(|b| **b == 0).count()
}

// ---------------------------------------------------------------------------------------------
// encoding

/// Checks `keys` against the rules of a key payload in the part `[lower, upper)`.
fn check_keys(
    keys: &[EntryKey],
    lower: &EntryKey,
    upper: Option<&EntryKey>,
) -> Result<(), &'static str> {
    if keys.len() > MAX_LIST_ITEMS {
        return Err("more than 256 items");
    }
    let mut prev: Option<&EntryKey> = None;
    for k in keys {
        if k.hlc > MAX_HLC {
            return Err("hlc above 2^64 - 2");
        }
        if k < lower || upper.is_some_and(|u| k >= u) {
            return Err("key outside the part's range");
        }
        if prev.is_some_and(|p| k <= p) {
            return Err("keys not strictly ascending");
        }
        prev = Some(k);
    }
    Ok(())
}

/// Checks the HLCs of keys whose leading hash bytes are left out (a Keys payload with
/// `omitted > 0`): all a decoder can check before the receiver fills the bytes in from its
/// pending state (`spec/SPEC.md` 8.3).
fn check_key_hlcs(
    keys: &[EntryKey],
    lower: &EntryKey,
    upper: Option<&EntryKey>,
) -> Result<(), &'static str> {
    if keys.len() > MAX_LIST_ITEMS {
        return Err("more than 256 items");
    }
    let mut prev = lower.hlc;
    for k in keys {
        if k.hlc > MAX_HLC {
            return Err("hlc above 2^64 - 2");
        }
        if k.hlc < prev || upper.is_some_and(|u| k.hlc > u.hlc) {
            return Err("key hlcs not ascending inside the part's range");
        }
        prev = k.hlc;
    }
    Ok(())
}

/// Checks that `part` may follow a part ending at `lower` (`None`: the previous part ended
/// at the end bound), so that the message a decoder reads back is exactly the parts given.
fn check_part(index: usize, lower: Option<&EntryKey>, part: &Part) -> Result<(), EncodeError> {
    let bound = |why| EncodeError::BadBound { index, why };
    let payload = |what, why| EncodeError::BadPayload { index, what, why };
    let Some(lower) = lower else {
        return Err(bound("a part follows the end bound"));
    };
    if let Some(u) = &part.upper {
        if u.hlc > MAX_HLC {
            return Err(bound("hlc above 2^64 - 2"));
        }
        if u <= lower {
            return Err(bound("bound not above the previous one"));
        }
    }
    let upper = part.upper.as_ref();
    match &part.payload {
        Payload::Skip | Payload::Fingerprint(_) => {}
        Payload::PrefixList { len, prefixes } => {
            let what = "prefix list";
            if !(1..=32).contains(len) {
                return Err(payload(what, "prefix length must be 1 to 32"));
            }
            if prefixes.len() % *len as usize != 0 {
                return Err(payload(what, "bytes are not a whole number of prefixes"));
            }
            if prefixes.len() / *len as usize > MAX_LIST_ITEMS {
                return Err(payload(what, "more than 256 items"));
            }
        }
        Payload::FullList(keys) => {
            check_keys(keys, lower, upper).map_err(|why| payload("full list", why))?;
        }
        Payload::Keys { omitted: 0, keys } => {
            check_keys(keys, lower, upper).map_err(|why| payload("keys", why))?;
        }
        Payload::Keys { omitted, keys } => {
            if *omitted > 32 {
                return Err(payload("keys", "more than 32 omitted prefix bytes"));
            }
            check_key_hlcs(keys, lower, upper).map_err(|why| payload("keys", why))?;
        }
        Payload::Resolve { missing, keys } => {
            if missing.len() > MAX_LIST_ITEMS {
                return Err(payload("resolve", "more than 256 positions"));
            }
            if missing.windows(2).any(|w| w[0] >= w[1]) {
                return Err(payload("resolve", "positions not strictly ascending"));
            }
            if missing
                .last()
                .is_some_and(|&m| m as usize >= MAX_LIST_ITEMS)
            {
                return Err(payload("resolve", "position beyond the longest list"));
            }
            check_keys(keys, lower, upper).map_err(|why| payload("resolve keys", why))?;
        }
    }
    Ok(())
}

/// A saved encoder position.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    len: usize,
    prev_hlc: u64,
    lower: EntryKey,
    ended: bool,
    // as in `Encoder`
    #[allow(clippy::option_option)]
    skip_upper: Option<Option<EntryKey>>,
    parts: usize,
    pushed: usize,
    carried: usize,
    run: Option<(usize, u8)>,
    run_header: u8,
}

/// Builds a message part by part, merging adjacent Skip parts and dropping a trailing one.
/// Every part is checked before it is written, so the bytes always decode.
#[derive(Debug)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
    prev_hlc: u64,
    /// The lower bound of the next part: the previous part's upper bound.
    lower: EntryKey,
    ended: bool,
    /// A Skip part held back to merge with the next one: `None` when there is none,
    /// `Some(None)` for one up to the end, `Some(Some(k))` for one up to `k`.
    #[allow(clippy::option_option)]
    skip_upper: Option<Option<EntryKey>>,
    /// Parts written (a held-back Skip not counted).
    parts: usize,
    /// Parts pushed, for error messages.
    pushed: usize,
    /// Carried form: the keys of Resolve and Keys payloads written so far, in order; `None`
    /// in inline form.
    carried: Option<Vec<EntryKey>>,
    /// The last parts written are Fingerprints with empty bound prefixes: the position of
    /// their (single or run) header byte and how many there are, at most [`MAX_RUN`].
    run: Option<(usize, u8)>,
}

impl Encoder {
    /// An encoder for the inline key form.
    pub(crate) fn new() -> Self {
        Self::in_form(KeyForm::Inline)
    }

    /// An encoder for `form`, of any message but a session's opening.
    pub(crate) fn in_form(form: KeyForm) -> Self {
        Self::opening(form, None)
    }

    /// An encoder for `form` whose message carries `salt` after the tag when there is one:
    /// the initiator's first message (`01 || salt || part*`).
    pub(crate) fn opening(form: KeyForm, salt: Option<&Salt>) -> Self {
        let mut buf = Vec::with_capacity(1 + SALT_LEN);
        buf.push(MESSAGE_TAG);
        if let Some(s) = salt {
            buf.extend_from_slice(&s.0);
        }
        Encoder {
            buf,
            prev_hlc: 0,
            lower: EntryKey::MIN,
            ended: false,
            skip_upper: None,
            parts: 0,
            pushed: 0,
            carried: (form == KeyForm::Carried).then(Vec::new),
            run: None,
        }
    }

    /// Keys collected into the carried list so far (always 0 in inline form).
    pub(crate) fn carried_len(&self) -> usize {
        self.carried.as_ref().map_or(0, Vec::len)
    }

    /// Encoded length so far, not counting a pending Skip that a later part would flush.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Parts written so far, not counting a pending Skip.
    pub(crate) fn parts(&self) -> usize {
        self.parts
    }

    /// A point to [`Encoder::rollback`] to.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            len: self.buf.len(),
            prev_hlc: self.prev_hlc,
            lower: self.lower,
            ended: self.ended,
            skip_upper: self.skip_upper,
            parts: self.parts,
            pushed: self.pushed,
            carried: self.carried_len(),
            run: self.run,
            run_header: self.run.map_or(0, |(at, _)| self.buf[at]),
        }
    }

    /// Forgets every part pushed since `mark`.
    pub(crate) fn rollback(&mut self, mark: Mark) {
        self.buf.truncate(mark.len);
        self.prev_hlc = mark.prev_hlc;
        self.lower = mark.lower;
        self.ended = mark.ended;
        self.skip_upper = mark.skip_upper;
        self.parts = mark.parts;
        self.pushed = mark.pushed;
        if let Some(c) = &mut self.carried {
            c.truncate(mark.carried);
        }
        self.run = mark.run;
        if let Some((at, _)) = mark.run {
            self.buf[at] = mark.run_header;
        }
    }

    /// Where the next part starts (`None`: after the end bound, where no part may follow).
    fn next_lower(&self) -> Option<EntryKey> {
        match self.skip_upper {
            Some(upper) => upper,
            None if self.ended => None,
            None => Some(self.lower),
        }
    }

    /// Appends `part` after checking it against the wire format's rules; on error nothing is
    /// written.
    pub(crate) fn push(&mut self, part: &Part) -> Result<(), EncodeError> {
        check_part(self.pushed, self.next_lower().as_ref(), part)?;
        if self.carried.is_some() && matches!(part.payload, Payload::Keys { omitted: 1.., .. }) {
            return Err(EncodeError::BadPayload {
                index: self.pushed,
                what: "keys",
                why: "the carried form sends whole keys (omitted must be 0)",
            });
        }
        self.pushed += 1;
        if let Payload::Skip = part.payload {
            self.skip_upper = Some(part.upper);
            return Ok(());
        }
        self.flush_skip();
        self.write(part);
        Ok(())
    }

    fn flush_skip(&mut self) {
        if let Some(upper) = self.skip_upper.take() {
            self.write(&Part {
                upper,
                payload: Payload::Skip,
            });
        }
    }

    /// Writes a part that [`check_part`] accepted.
    fn write(&mut self, part: &Part) {
        let out = &mut self.buf;
        let plen = part.upper.as_ref().map_or(0, prefix_len);
        // `check_part` accepted the part: its prefix is at most 32 bytes, so both casts are exact
        #[allow(clippy::cast_possible_truncation)]
        let (field, plen_byte) = (plen.min(31) as u8, plen as u8);
        let runs = plen == 0 && matches!(part.payload, Payload::Fingerprint(_));
        match self.run {
            // another Fingerprint with an empty prefix: it joins the run, whose header
            // (a single part's until now) becomes or stays a run header
            Some((at, k)) if runs && k < MAX_RUN => {
                out[at] = mode::FINGERPRINT_RUN | ((k + 1 - 2) << 3);
                self.run = Some((at, k + 1));
            }
            _ => {
                self.run = runs.then_some((out.len(), 1));
                out.push(part.payload.mode() | (field << 3));
                if field == 31 {
                    out.push(plen_byte);
                }
            }
        }
        match part.upper {
            None => put_varint(out, 0),
            Some(u) => {
                // checked: prev_hlc <= u.hlc <= MAX_HLC = 2^64 - 2, so the delta does not
                // underflow, and its code is below 2^70 - 1
                put_wide_varint(out, delta_code(u.hlc.0 - self.prev_hlc) + 1);
                out.extend_from_slice(&u.hash.0[..plen]);
            }
        }
        let lower_hlc = self.lower.hlc.0;
        let inline = self.carried.is_none();
        let carried = &mut self.carried;
        // Resolve and Keys keys: inline, or only their count with the keys carried beside
        let mut put_answer_keys = |out: &mut Vec<u8>, keys: &[EntryKey]| match carried {
            None => put_keys(out, lower_hlc, keys),
            Some(c) => {
                put_varint(out, keys.len() as u64);
                c.extend_from_slice(keys);
            }
        };
        match &part.payload {
            Payload::Skip => {}
            Payload::Fingerprint(fp) => out.extend_from_slice(&fp.0),
            Payload::PrefixList { len, prefixes } => {
                out.push(*len);
                put_varint(out, (prefixes.len() / *len as usize) as u64);
                out.extend_from_slice(prefixes);
            }
            Payload::FullList(keys) => put_keys(out, lower_hlc, keys),
            Payload::Keys { omitted, keys } if inline => {
                out.push(*omitted);
                put_key_suffixes(out, lower_hlc, *omitted as usize, keys);
            }
            Payload::Keys { keys, .. } => put_answer_keys(out, keys),
            Payload::Resolve { missing, keys } => {
                put_varint(out, missing.len() as u64);
                let mut next = 0u64;
                for &m in missing {
                    put_varint(out, u64::from(m) - next);
                    next = u64::from(m) + 1;
                }
                put_answer_keys(out, keys);
            }
        }
        self.parts += 1;
        match part.upper {
            None => self.ended = true,
            Some(u) => {
                self.prev_hlc = u.hlc.0;
                self.lower = u;
            }
        }
    }

    /// The finished message bytes (a trailing Skip is implicit and dropped).
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// The finished message bytes and the carried key list to send beside them (empty in
    /// inline form).
    pub(crate) fn finish_carried(self) -> (Vec<u8>, Vec<EntryKey>) {
        (self.buf, self.carried.unwrap_or_default())
    }
}

fn put_keys(out: &mut Vec<u8>, lower_hlc: u64, keys: &[EntryKey]) {
    put_key_suffixes(out, lower_hlc, 0, keys);
}

/// Writes `keys` as a key list whose hashes leave out their first `omitted` bytes.
fn put_key_suffixes(out: &mut Vec<u8>, lower_hlc: u64, omitted: usize, keys: &[EntryKey]) {
    put_varint(out, keys.len() as u64);
    let mut prev = lower_hlc;
    for k in keys {
        put_varint(out, k.hlc.0 - prev);
        out.extend_from_slice(&k.hash.0[omitted..]);
        prev = k.hlc.0;
    }
}

/// Encodes parts into a message, merging adjacent Skip parts and dropping a trailing one.
///
/// Every part is checked first: upper bounds strictly increasing with only the last allowed
/// to be `None`, HLCs at most 2^64 - 2, lists of at most 256 items, keys strictly ascending
/// inside their part's range, prefix lists a whole number of 1- to 32-byte prefixes, Resolve
/// positions strictly ascending and below 256. The first part that breaks a rule is named in
/// the error and nothing is returned, so the result always decodes.
pub fn encode(parts: &[Part]) -> Result<Vec<u8>, EncodeError> {
    let mut enc = Encoder::new();
    for p in parts {
        enc.push(p)?;
    }
    Ok(enc.finish())
}

/// Encodes parts into a message in the carried key form (`spec/SPEC.md` 8.12): as [`encode`],
/// except that each Resolve and Keys payload writes only its key count, and its keys are
/// appended, in order, to the carried key list returned beside the bytes.
///
/// The keys of the returned list are strictly ascending (parts cover ascending ranges), and
/// [`decode_carried`] with that list gives back `parts` (after Skip merging, as [`encode`]).
pub fn encode_carried(parts: &[Part]) -> Result<(Vec<u8>, Vec<EntryKey>), EncodeError> {
    let mut enc = Encoder::in_form(KeyForm::Carried);
    for p in parts {
        enc.push(p)?;
    }
    Ok(enc.finish_carried())
}

/// Encodes the initiator's first message of a session (`spec/SPEC.md` 8.3): [`MESSAGE_TAG`],
/// the session's `salt`, then `parts` as [`encode`] writes them.
pub fn encode_opening(salt: &Salt, parts: &[Part]) -> Result<Vec<u8>, EncodeError> {
    let mut enc = Encoder::opening(KeyForm::Inline, Some(salt));
    for p in parts {
        enc.push(p)?;
    }
    Ok(enc.finish())
}

// ---------------------------------------------------------------------------------------------
// decoding

/// Decodes and validates the initiator's first message of a session into its salt and its
/// parts (`spec/SPEC.md` 8.3).
pub fn decode_opening(bytes: &[u8]) -> Result<(Salt, Vec<Part>), DecodeError> {
    let reader = parts_opening(bytes)?;
    let salt = reader.salt().unwrap_or_default();
    Ok((salt, reader.collect::<Result<_, _>>()?))
}

/// Decodes and validates a message (other than a session's opening, [`decode_opening`]) into
/// its parts.
///
/// This holds every part in memory; [`parts`] reads them one at a time instead.
pub fn decode(bytes: &[u8]) -> Result<Vec<Part>, DecodeError> {
    parts(bytes)?.collect()
}

/// Decodes and validates a message in the carried key form (`spec/SPEC.md` 8.12) into its
/// parts, taking the keys of its Resolve and Keys parts from `carried` in order.
///
/// This holds every part in memory; [`parts_carried`] reads them one at a time instead.
pub fn decode_carried(bytes: &[u8], carried: &[EntryKey]) -> Result<Vec<Part>, DecodeError> {
    parts_carried(bytes, carried)?.collect()
}

/// Reads a message's parts one at a time, validating each as it goes, so that at most one
/// part (at most about 10 KB) is decoded in memory at once whatever the message's size.
///
/// Fails at once on a bad tag byte; each later error is yielded in place of a part and ends
/// the iteration. A message is valid if and only if every item is `Ok`.
pub fn parts(bytes: &[u8]) -> Result<PartReader<'_>, DecodeError> {
    reader(bytes, None, false)
}

/// As [`parts`], for the initiator's first message of a session, whose salt follows the tag
/// (`spec/SPEC.md` 8.3); [`PartReader::salt`] returns it. A truncated salt fails at once
/// with [`DecodeError::Truncated`].
pub fn parts_opening(bytes: &[u8]) -> Result<PartReader<'_>, DecodeError> {
    reader(bytes, None, true)
}

/// As [`parts_carried`], for the initiator's first message of a session (see
/// [`parts_opening`]).
pub fn parts_carried_opening<'a>(
    bytes: &'a [u8],
    carried: &'a [EntryKey],
) -> Result<PartReader<'a>, DecodeError> {
    reader(bytes, Some(carried), true)
}

/// As [`parts`], for a message in the carried key form (`spec/SPEC.md` 8.12): each Resolve or
/// Keys part's count `m` takes the next `m` keys of `carried`, which are checked exactly as
/// inline keys are (at most 256 per part, HLC at most 2^64 - 2, strictly ascending, inside the
/// part's range). A part asking for more keys than remain yields
/// [`DecodeError::CarriedKeysShort`]; keys left after the last part yield
/// [`DecodeError::CarriedKeysLeft`] as the last item. Nothing of `carried` is copied beyond
/// the keys of the part being yielded.
pub fn parts_carried<'a>(
    bytes: &'a [u8],
    carried: &'a [EntryKey],
) -> Result<PartReader<'a>, DecodeError> {
    reader(bytes, Some(carried), false)
}

fn reader<'a>(
    bytes: &'a [u8],
    carried: Option<&'a [EntryKey]>,
    opening: bool,
) -> Result<PartReader<'a>, DecodeError> {
    let mut r = Reader::new(bytes);
    match r.byte("tag") {
        Ok(MESSAGE_TAG) => {}
        Ok(b) => return Err(DecodeError::BadTag(Some(b))),
        Err(_) => return Err(DecodeError::BadTag(None)),
    }
    let salt = if opening {
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(r.bytes(SALT_LEN, "salt")?);
        Some(Salt(salt))
    } else {
        None
    };
    Ok(PartReader {
        r,
        salt,
        lower: EntryKey::MIN,
        prev_hlc: 0,
        ended: false,
        last_skip: false,
        finished: false,
        carried,
        run_left: 0,
        run_len: 0,
    })
}

/// An iterator over the parts of a message; see [`parts`] and [`parts_carried`].
#[derive(Debug)]
pub struct PartReader<'a> {
    r: Reader<'a>,
    /// The salt of an opening message ([`parts_opening`]); `None` for every other message.
    salt: Option<Salt>,
    lower: EntryKey,
    prev_hlc: u64,
    ended: bool,
    last_skip: bool,
    finished: bool,
    /// Carried form: the keys of the carried list not yet taken; `None` in inline form.
    carried: Option<&'a [EntryKey]>,
    /// Members of the current Fingerprint run still to read (they have no header).
    run_left: u8,
    /// Length of the group of Fingerprints with empty bound prefixes the last part belongs
    /// to (1 for a single one, `k` for a run), 0 if it is any other part. Once the group is
    /// read, another such part may follow only a full run of [`MAX_RUN`].
    run_len: u8,
}

impl Iterator for PartReader<'_> {
    type Item = Result<Part, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        if self.r.is_empty() && self.run_left == 0 {
            self.finished = true;
            if self.last_skip {
                return Some(Err(DecodeError::NonCanonicalSkip));
            }
            let left = self.carried.map_or(0, <[EntryKey]>::len);
            return (left > 0).then_some(Err(DecodeError::CarriedKeysLeft(left)));
        }
        let result = self.read_part();
        if result.is_err() {
            self.finished = true;
        }
        Some(result)
    }
}

impl PartReader<'_> {
    /// The session's fingerprint salt if this reads an opening message ([`parts_opening`],
    /// [`parts_carried_opening`]), `None` otherwise.
    pub fn salt(&self) -> Option<Salt> {
        self.salt
    }

    /// The keys of a Resolve or Keys payload: inline, or taken from the carried list.
    fn answer_keys(
        &mut self,
        lower: EntryKey,
        upper: Option<EntryKey>,
        what: &'static str,
    ) -> Result<Vec<EntryKey>, DecodeError> {
        let Some(carried) = &mut self.carried else {
            return read_keys(&mut self.r, lower, upper, what);
        };
        let n = usize::try_from(self.r.varint(what)?)
            .ok()
            .filter(|n| *n <= MAX_LIST_ITEMS)
            .ok_or(DecodeError::BadPayload {
                what,
                why: "more than 256 items",
            })?;
        if n > carried.len() {
            return Err(DecodeError::CarriedKeysShort {
                asked: n,
                left: carried.len(),
            });
        }
        let (keys, rest) = carried.split_at(n);
        check_keys(keys, &lower, upper.as_ref())
            .map_err(|why| DecodeError::BadPayload { what, why })?;
        *carried = rest;
        Ok(keys.to_vec())
    }

    fn read_part(&mut self) -> Result<Part, DecodeError> {
        let r = &mut self.r;
        if self.ended {
            return Err(DecodeError::BadBound("a part follows the end bound"));
        }
        let (m, plen) = if self.run_left > 0 {
            // a member of a run: no header, an empty bound prefix, a fingerprint
            self.run_left -= 1;
            (mode::FINGERPRINT, 0)
        } else {
            let header = r.byte("part header")?;
            let m = header & 7;
            let field = header >> 3;
            let run_open = self.run_len > 0 && self.run_len < MAX_RUN;
            if m == mode::FINGERPRINT_RUN {
                if run_open {
                    return Err(DecodeError::NonCanonicalRun);
                }
                self.run_len = field + 2;
                self.run_left = field + 1;
                (mode::FINGERPRINT, 0)
            } else {
                let mut plen = field as usize;
                if plen == 31 {
                    plen = r.byte("bound prefix length")? as usize;
                    if !(31..=32).contains(&plen) {
                        return Err(DecodeError::BadBound(
                            "escaped prefix length must be 31 or 32",
                        ));
                    }
                }
                if m == mode::FINGERPRINT && plen == 0 {
                    if run_open {
                        return Err(DecodeError::NonCanonicalRun);
                    }
                    self.run_len = 1;
                }
                (m, plen)
            }
        };
        let t = r.wide_varint("bound hlc")?;
        let upper = if t == 0 {
            if plen != 0 {
                return Err(DecodeError::BadBound("end bound with a hash prefix"));
            }
            self.ended = true;
            None
        } else {
            let delta = delta_of_code(t - 1).ok_or(DecodeError::BadBound(
                "hlc delta not in canonical form (odd multiplier, or zero)",
            ))?;
            let hlc = self
                .prev_hlc
                .checked_add(delta)
                .filter(|h| *h <= MAX_HLC.0)
                .ok_or(DecodeError::BadBound("hlc above 2^64 - 2"))?;
            let mut hash = [0u8; 32];
            hash[..plen].copy_from_slice(r.bytes(plen, "bound prefix")?);
            if plen > 0 && hash[plen - 1] == 0 {
                return Err(DecodeError::BadBound("prefix ends in a zero byte"));
            }
            let key = EntryKey::new(Hlc(hlc), Hash(hash));
            if key <= self.lower {
                return Err(DecodeError::BadBound("bound not above the previous one"));
            }
            self.prev_hlc = hlc;
            Some(key)
        };
        let lower = self.lower;
        let payload = match m {
            mode::SKIP => {
                if self.last_skip {
                    return Err(DecodeError::NonCanonicalSkip);
                }
                Payload::Skip
            }
            mode::FINGERPRINT => {
                let mut fp = [0u8; FINGERPRINT_LEN];
                fp.copy_from_slice(r.bytes(FINGERPRINT_LEN, "fingerprint")?);
                Payload::Fingerprint(Fingerprint(fp))
            }
            mode::PREFIX_LIST => {
                let len = r.byte("prefix length")?;
                if !(1..=32).contains(&len) {
                    return Err(DecodeError::BadPayload {
                        what: "prefix list",
                        why: "prefix length must be 1 to 32",
                    });
                }
                let n = r.count("prefix list", len as usize)?;
                let prefixes = r.bytes(n * len as usize, "prefixes")?.to_vec();
                Payload::PrefixList { len, prefixes }
            }
            mode::FULL_LIST => Payload::FullList(read_keys(r, lower, upper, "full list")?),
            mode::RESOLVE => {
                let n = r.count("resolve positions", 1)?;
                let mut missing = Vec::with_capacity(n);
                let mut next = 0u64;
                for _ in 0..n {
                    let gap = r.varint("resolve position")?;
                    let pos = next
                        .checked_add(gap)
                        .filter(|p| *p < MAX_LIST_ITEMS as u64)
                        .and_then(|p| u32::try_from(p).ok())
                        .ok_or(DecodeError::BadPayload {
                            what: "resolve",
                            why: "position beyond the longest list",
                        })?;
                    missing.push(pos);
                    next = u64::from(pos) + 1;
                }
                let keys = self.answer_keys(lower, upper, "resolve keys")?;
                Payload::Resolve { missing, keys }
            }
            mode::KEYS if self.carried.is_some() => Payload::Keys {
                omitted: 0,
                keys: self.answer_keys(lower, upper, "keys")?,
            },
            mode::KEYS => {
                let omitted = r.byte("omitted prefix length")?;
                if omitted > 32 {
                    return Err(DecodeError::BadPayload {
                        what: "keys",
                        why: "more than 32 omitted prefix bytes",
                    });
                }
                let keys = read_key_suffixes(r, lower, upper, omitted as usize, "keys")?;
                Payload::Keys { omitted, keys }
            }
            other => return Err(DecodeError::UnknownMode(other)),
        };
        if let Some(u) = upper {
            self.lower = u;
        }
        self.last_skip = matches!(payload, Payload::Skip);
        if !(m == mode::FINGERPRINT && plen == 0) {
            self.run_len = 0;
        }
        Ok(Part { upper, payload })
    }
}

fn read_keys(
    r: &mut Reader<'_>,
    lower: EntryKey,
    upper: Option<EntryKey>,
    what: &'static str,
) -> Result<Vec<EntryKey>, DecodeError> {
    read_key_suffixes(r, lower, upper, 0, what)
}

/// Reads a key list whose hashes leave out their first `omitted` bytes (left zero in the keys
/// returned). With `omitted > 0` only the HLCs can be checked against the range (the order of
/// keys with equal HLCs, and the range at its ends, depend on the missing bytes); the receiver
/// checks the rest once it has filled them in (`spec/SPEC.md` 8.4).
fn read_key_suffixes(
    r: &mut Reader<'_>,
    lower: EntryKey,
    upper: Option<EntryKey>,
    omitted: usize,
    what: &'static str,
) -> Result<Vec<EntryKey>, DecodeError> {
    let n = r.count(what, 33 - omitted)?;
    let mut keys = Vec::with_capacity(n);
    let mut prev_hlc = lower.hlc.0;
    let mut prev: Option<EntryKey> = None;
    for _ in 0..n {
        let d = r.varint(what)?;
        let hlc =
            prev_hlc
                .checked_add(d)
                .filter(|h| *h <= MAX_HLC.0)
                .ok_or(DecodeError::BadPayload {
                    what,
                    why: "hlc above 2^64 - 2",
                })?;
        let mut hash = [0u8; 32];
        hash[omitted..].copy_from_slice(r.bytes(32 - omitted, what)?);
        let key = EntryKey::new(Hlc(hlc), Hash(hash));
        if omitted > 0 {
            if upper.is_some_and(|u| hlc > u.hlc.0) {
                return Err(DecodeError::BadPayload {
                    what,
                    why: "key hlcs not ascending inside the part's range",
                });
            }
            keys.push(key);
            prev_hlc = hlc;
            continue;
        }
        if key < lower || upper.is_some_and(|u| key >= u) {
            return Err(DecodeError::BadPayload {
                what,
                why: "key outside the part's range",
            });
        }
        if prev.is_some_and(|p| key <= p) {
            return Err(DecodeError::BadPayload {
                what,
                why: "keys not strictly ascending",
            });
        }
        prev = Some(key);
        prev_hlc = hlc;
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(h: u64, b: u8) -> EntryKey {
        let mut hash = [b; 32];
        hash[31] = 7;
        EntryKey::new(h, hash)
    }

    #[test]
    fn varint_canonical() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            assert_eq!(Reader::new(&b).varint("v").unwrap(), v);
        }
        assert!(Reader::new(&[0x80, 0x00]).varint("v").is_err());
        assert!(Reader::new(&[0xff; 10]).varint("v").is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint("v")
                .is_err()
        );
    }

    #[test]
    // `a`, `b`, `c`, `d`: four keys of a worked example, `s` a separator between two of them
    #[allow(clippy::many_single_char_names)]
    fn separator_is_between_and_short() {
        let m = EntryKey::MIN;
        let a = key(10, 1);
        let b = key(20, 0);
        // 16 is the HLC in (10, 20] with the most trailing zero bits
        assert_eq!(separator(&m, &a, &b), Some(EntryKey::new(16, [0; 32])));
        // measured from a lower bound at HLC 3: 13 - 3 = 10 (two zero bits) ... 19 - 3 = 16
        assert_eq!(
            separator(&EntryKey::new(3, [0; 32]), &a, &b),
            Some(EntryKey::new(19, [0; 32]))
        );
        // adjacent HLCs leave one choice
        assert_eq!(
            separator(&m, &a, &key(11, 0)),
            Some(EntryKey::new(11, [0; 32]))
        );
        assert_eq!(separator(&m, &b, &a), None);
        assert_eq!(separator(&m, &a, &a), None);
        // pred below the part's lower bound: not from a consistent store
        assert_eq!(separator(&key(12, 0), &a, &b), None);
        let c = EntryKey::new(
            5,
            [
                1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0,
            ],
        );
        let mut dh = c.hash.0;
        dh[2] = 9;
        dh[30] = 4;
        let d = EntryKey::new(5, dh);
        let s = separator(&m, &c, &d).unwrap();
        assert!(c < s && s <= d);
        assert_eq!(prefix_len(&s), 3);
    }

    #[test]
    fn bound_delta_codes_are_canonical_and_short() {
        for d in [
            0u64,
            1,
            2,
            3,
            1 << 20,
            3 << 40,
            1 << 63,
            MAX_HLC.0,
            u64::MAX,
        ] {
            let c = delta_code(d);
            assert!(c + 1 < 1u128 << 70);
            assert_eq!(delta_of_code(c), Some(d));
        }
        // a delta with many trailing zeros is short: 45 << 21 takes 2 bytes, not 4
        let mut b = Vec::new();
        put_wide_varint(&mut b, delta_code(45 << 21) + 1);
        assert_eq!(b.len(), 2);
        // non-canonical codes: even multiplier, zero with an exponent, overflow
        assert_eq!(delta_of_code(2 << 6), None);
        assert_eq!(delta_of_code(5), None);
        assert_eq!(delta_of_code((3 << 6) | 63), None);
        assert_eq!(delta_of_code((1 << 6) | 63), Some(1 << 63));
        // the longest bound field: 10 bytes; an 11th is refused
        let mut b = Vec::new();
        put_wide_varint(&mut b, delta_code(MAX_HLC.0) + 1);
        assert_eq!(b.len(), 10);
        assert_eq!(
            Reader::new(&b).wide_varint("t").ok(),
            Some(delta_code(MAX_HLC.0) + 1)
        );
        assert!(Reader::new(&[0xff; 11]).wide_varint("t").is_err());
        assert!(Reader::new(&[0x81, 0x00]).wide_varint("t").is_err());
    }

    #[test]
    fn fingerprints_with_empty_prefixes_share_run_headers() {
        let fp = |i: u8| Payload::Fingerprint(Fingerprint([i; 8]));
        // 40 fingerprints one HLC apart, then one whose bound has a prefix, then two more
        let mut parts: Vec<Part> = (1..=40u8)
            .map(|i| Part {
                upper: Some(EntryKey::new(u64::from(i), [0; 32])),
                payload: fp(i),
            })
            .collect();
        parts.push(Part {
            upper: Some(key(41, 3)),
            payload: fp(41),
        });
        parts.push(Part {
            upper: Some(EntryKey::new(42, [0; 32])),
            payload: fp(42),
        });
        parts.push(Part {
            upper: None,
            payload: fp(43),
        });
        let bytes = encode(&parts).unwrap();
        // a run of 33 (header 6 | 31 << 3), a run of 7, the prefixed part alone, a run of 2
        assert_eq!(bytes[1], 6 | (31 << 3));
        assert_eq!(bytes[1 + 1 + 33 * 9], 6 | (5 << 3));
        // tag; 40 members of 9 bytes (bound 1, fingerprint 8) under 2 run headers; the prefixed
        // part (header, plen byte, bound 1 + 32, fingerprint 8); a run of 2 members of 9 bytes
        assert_eq!(
            bytes.len(),
            1 + (2 + 40 * 9) + (1 + 1 + 33 + 8) + (1 + 2 * 9)
        );
        assert_eq!(decode(&bytes).unwrap(), parts);
        // a single fingerprint after a short run, or a run header after a single one, is not
        // canonical
        let mut single_after = encode(&parts[..2]).unwrap();
        single_after[1] = 1;
        single_after.insert(1 + 1 + 9, 1);
        assert_eq!(decode(&single_after), Err(DecodeError::NonCanonicalRun));
        // a run cut short by the end of the message
        let mut short = encode(&parts[..3]).unwrap();
        short.truncate(short.len() - 9);
        assert!(matches!(decode(&short), Err(DecodeError::Truncated(_))));
        // rolling back past a run restores its header
        let mut enc = Encoder::new();
        enc.push(&parts[0]).unwrap();
        enc.push(&parts[1]).unwrap();
        let mark = enc.mark();
        enc.push(&parts[2]).unwrap();
        enc.rollback(mark);
        assert_eq!(enc.finish(), encode(&parts[..2]).unwrap());
    }

    #[test]
    fn round_trip_every_mode() {
        let parts = vec![
            Part {
                upper: Some(key(100, 0)),
                payload: Payload::Skip,
            },
            Part {
                upper: Some(key(200, 3)),
                payload: Payload::Fingerprint(Fingerprint([9; 8])),
            },
            Part {
                upper: Some(key(300, 0)),
                payload: Payload::PrefixList {
                    len: 2,
                    prefixes: vec![1, 2, 3, 4],
                },
            },
            Part {
                upper: Some(key(400, 0)),
                payload: Payload::FullList(vec![key(300, 5), key(399, 1)]),
            },
            Part {
                upper: Some(key(500, 0)),
                payload: Payload::Resolve {
                    missing: vec![0, 3, 255],
                    keys: vec![key(450, 1)],
                },
            },
            Part {
                upper: None,
                payload: Payload::Keys {
                    omitted: 0,
                    keys: vec![key(600, 1), key(600, 2)],
                },
            },
        ];
        let bytes = encode(&parts).unwrap();
        assert_eq!(decode(&bytes).unwrap(), parts);
    }

    #[test]
    fn carried_form_moves_only_answer_keys() {
        let parts = vec![
            Part {
                upper: Some(key(100, 0)),
                payload: Payload::FullList(vec![key(30, 5), key(99, 1)]),
            },
            Part {
                upper: Some(key(200, 0)),
                payload: Payload::Resolve {
                    missing: vec![0, 3],
                    keys: vec![key(150, 1), key(151, 2)],
                },
            },
            Part {
                upper: Some(key(300, 0)),
                payload: Payload::Skip,
            },
            Part {
                upper: None,
                payload: Payload::Keys {
                    omitted: 0,
                    keys: vec![key(600, 1)],
                },
            },
        ];
        let inline = encode(&parts).unwrap();
        let (bytes, carried) = encode_carried(&parts).unwrap();
        assert_eq!(carried, vec![key(150, 1), key(151, 2), key(600, 1)]);
        // each carried key saves its delta varint and its 32 hash bytes, and the carried Keys
        // part has no omitted-length byte; FullList stays inline
        let saved: usize = [(150 - 100, 151 - 150), (600 - 300, 0)]
            .iter()
            .map(|&(a, b)| varint_len(a) + 32 + if b > 0 { varint_len(b) + 32 } else { 0 })
            .sum();
        assert_eq!(inline.len() - bytes.len(), saved + 1);
        assert_eq!(decode_carried(&bytes, &carried).unwrap(), parts);
        // the same bytes read inline are a different (truncated) message
        assert!(decode(&bytes).is_err());
        // the list must be taken exactly
        assert_eq!(
            decode_carried(&bytes, &carried[..2]),
            Err(DecodeError::CarriedKeysShort { asked: 1, left: 0 })
        );
        let mut long = carried.clone();
        long.push(key(700, 1));
        assert_eq!(
            decode_carried(&bytes, &long),
            Err(DecodeError::CarriedKeysLeft(1))
        );
        // the encoder's rollback drops the carried keys of the parts it forgets
        let mut enc = Encoder::in_form(KeyForm::Carried);
        enc.push(&parts[0]).unwrap();
        let mark = enc.mark();
        enc.push(&parts[1]).unwrap();
        assert_eq!(enc.carried_len(), 2);
        enc.rollback(mark);
        assert_eq!(enc.carried_len(), 0);
        enc.push(&parts[1]).unwrap();
        assert_eq!(enc.finish_carried().1, carried[..2].to_vec());
    }

    #[test]
    fn skips_merge_and_trailing_skip_is_implicit() {
        let parts = vec![
            Part {
                upper: Some(key(1, 0)),
                payload: Payload::Skip,
            },
            Part {
                upper: Some(key(2, 0)),
                payload: Payload::Skip,
            },
            Part {
                upper: Some(key(3, 0)),
                payload: Payload::Fingerprint(Fingerprint([1; 8])),
            },
            Part {
                upper: None,
                payload: Payload::Skip,
            },
        ];
        let decoded = decode(&encode(&parts).unwrap()).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].upper, Some(key(2, 0)));
        assert_eq!(encode(&[]).unwrap(), vec![MESSAGE_TAG]);
        assert_eq!(decode(&[MESSAGE_TAG]).unwrap(), vec![]);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode(&[]), Err(DecodeError::BadTag(None)));
        assert_eq!(decode(&[0x61]), Err(DecodeError::BadTag(Some(0x61))));
        assert_eq!(decode(&[1, 7, 65]), Err(DecodeError::UnknownMode(7)));
        // bound deltas not in canonical form: zero with an exponent, an even multiplier
        for code in [1u128, 2 << 6, (4 << 6) | 3] {
            let mut b = vec![1, 1];
            put_wide_varint(&mut b, code + 1);
            b.extend([0; 8]);
            assert!(
                matches!(decode(&b), Err(DecodeError::BadBound(_))),
                "{code}"
            );
        }
        // Skip to the end is non-canonical
        assert_eq!(decode(&[1, 0, 0]), Err(DecodeError::NonCanonicalSkip));
        // bound not increasing: two fingerprints at the same bound
        let mut b = vec![1, 1, 65];
        b.extend([0; 16]);
        b.extend([1, 1]);
        b.extend([0; 16]);
        assert!(matches!(decode(&b), Err(DecodeError::BadBound(_))));
        // a count larger than the input
        assert!(matches!(
            decode(&[1, 5, 0, 0x80, 0x02]),
            Err(DecodeError::BadPayload { .. } | DecodeError::Truncated(_))
        ));
    }

    #[test]
    fn encode_refuses_what_decode_would_refuse() {
        let fp = Payload::Fingerprint(Fingerprint([1; 8]));
        let part = |upper, payload| Part { upper, payload };
        // bounds going backwards, equal bounds, a part after the end bound
        for parts in [
            vec![
                part(Some(key(5, 1)), fp.clone()),
                part(Some(key(4, 1)), fp.clone()),
            ],
            vec![
                part(Some(key(5, 1)), fp.clone()),
                part(Some(key(5, 1)), fp.clone()),
            ],
            vec![part(None, fp.clone()), part(Some(key(9, 1)), fp.clone())],
            vec![
                part(Some(key(5, 1)), Payload::Skip),
                part(Some(key(3, 1)), Payload::Skip),
                part(None, fp.clone()),
            ],
            vec![part(Some(EntryKey::new(u64::MAX, [1; 32])), fp.clone())],
        ] {
            assert!(
                matches!(encode(&parts), Err(EncodeError::BadBound { .. })),
                "{parts:?}"
            );
        }
        // payloads: keys outside the range or unordered, a ragged prefix list, bad positions
        for payload in [
            Payload::Keys {
                omitted: 0,
                keys: vec![key(20, 1)],
            },
            Payload::Keys {
                omitted: 3,
                keys: vec![key(20, 1)],
            },
            Payload::Keys {
                omitted: 33,
                keys: vec![],
            },
            Payload::Keys {
                omitted: 2,
                keys: vec![key(8, 1), key(7, 1)],
            },
            Payload::FullList(vec![key(8, 2), key(8, 1)]),
            Payload::Keys {
                omitted: 0,
                keys: vec![],
            },
            Payload::PrefixList {
                len: 3,
                prefixes: vec![1, 2],
            },
            Payload::PrefixList {
                len: 0,
                prefixes: vec![],
            },
            Payload::PrefixList {
                len: 1,
                prefixes: vec![0; 257],
            },
            Payload::Resolve {
                missing: vec![3, 3],
                keys: vec![],
            },
            Payload::Resolve {
                missing: vec![256],
                keys: vec![],
            },
            Payload::FullList((0..257u32).map(|i| key(6, i.to_le_bytes()[0])).collect()),
        ] {
            let r = encode(&[part(Some(key(10, 0)), payload.clone())]);
            if matches!(&payload, Payload::Keys { omitted: 0, keys } if keys.is_empty()) {
                assert!(r.is_ok());
            } else {
                assert!(
                    matches!(r, Err(EncodeError::BadPayload { index: 0, .. })),
                    "{payload:?}"
                );
            }
        }
    }

    #[test]
    fn opening_carries_the_salt_after_the_tag() {
        let salt = Salt([0xab; SALT_LEN]);
        let parts = vec![Part {
            upper: None,
            payload: Payload::Fingerprint(Fingerprint([3; 8])),
        }];
        let bytes = encode_opening(&salt, &parts).unwrap();
        assert_eq!(bytes.len(), 1 + SALT_LEN + 2 + 8);
        assert_eq!(bytes[0], MESSAGE_TAG);
        assert_eq!(bytes[1..=SALT_LEN], salt.0);
        assert_eq!(decode_opening(&bytes).unwrap(), (salt, parts.clone()));
        // the same bytes read as a later message are something else entirely
        assert_ne!(decode(&bytes).ok(), Some(parts));
        for cut in 0..=SALT_LEN {
            let e = decode_opening(&bytes[..cut]).unwrap_err();
            let want = if cut == 0 {
                DecodeError::BadTag(None)
            } else {
                DecodeError::Truncated("salt")
            };
            assert_eq!(e, want, "cut at {cut}");
        }
        // an opening without parts is the tag and the salt
        assert_eq!(
            decode_opening(&bytes[..=SALT_LEN]).unwrap(),
            (salt, Vec::new())
        );
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = bytes.clone();
            if let Some(first) = b.first_mut() { *first = MESSAGE_TAG; }
            if let Ok(parts) = decode(&b) {
                // whatever decodes re-encodes to the same bytes
                prop_assert_eq!(encode(&parts).unwrap(), b.clone());
            }
            if let Ok((salt, parts)) = decode_opening(&b) {
                prop_assert_eq!(encode_opening(&salt, &parts).unwrap(), b);
            }
            let _ = decode(&bytes);
            let _ = decode_opening(&bytes);
        }

        #[test]
        fn carried_decoder_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            hlcs in proptest::collection::vec(0u64..600, 0..8),
        ) {
            let mut b = bytes.clone();
            if let Some(first) = b.first_mut() { *first = MESSAGE_TAG; }
            let mut list: Vec<EntryKey> = hlcs.iter().map(|h| key(*h, 3)).collect();
            list.sort_unstable();
            if let Ok(parts) = decode_carried(&b, &list) {
                // whatever decodes re-encodes to the same bytes and the same list
                prop_assert_eq!(encode_carried(&parts).unwrap(), (b, list.clone()));
            }
            let _ = decode_carried(&bytes, &list);
        }
    }
}
