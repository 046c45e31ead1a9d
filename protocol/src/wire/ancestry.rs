//! The ancestry request and answer on the wire (spec 6.3): what a replica with held-back
//! entries asks a peer, and the entries (or the reason there are none) that come back.
//!
//! ```
//! use oplog_protocol::wire::{AncestryAnswer, AncestryRequest};
//! use oplog_protocol::Hash;
//!
//! let req = AncestryRequest::new(vec![Hash([2; 32]), Hash([1; 32])], vec![Hash([9; 32])], 100)?;
//! let bytes = req.encode();
//! assert_eq!(AncestryRequest::decode(&bytes)?, req);
//! // an answerer that does not hold a want says so
//! let answer = AncestryAnswer::UnknownWant(Hash([1; 32]));
//! assert_eq!(AncestryAnswer::decode(&answer.encode(), req.limit)?, answer);
//! # Ok::<(), oplog_protocol::wire::AncestryDecodeError>(())
//! ```

use crate::dag::{ancestry_to_send, DagError, DagView};
use crate::entry::Action;
use crate::entry::MAX_ENTRY_BYTES;
use crate::key::Hash;
use crate::range::StoreError;
use crate::wire::message::{put_varint, DecodeError, Reader};

/// Most wants one request may carry (the most parents one entry names).
pub const MAX_WANTS: usize = 1024;
/// Most haves one request may carry.
pub const MAX_HAVES: usize = 32;
/// Largest `limit` a request may ask for.
pub const MAX_ANCESTRY_LIMIT: u32 = 65_536;

/// Why ancestry bytes were refused (spec Appendix A.8). The session ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AncestryDecodeError {
    /// The input ends inside a field.
    #[error("ancestry message truncated in {0}")]
    Truncated(&'static str),
    /// Bytes follow the last field.
    #[error("{0} bytes after the end of the ancestry message")]
    TrailingBytes(usize),
    /// A varint is over-long, non-minimal or above 2^64 - 1.
    #[error("bad varint in {0}")]
    BadVarint(&'static str),
    /// A count or the limit is out of its range.
    #[error("{what} is {value}, outside {min} to {max}")]
    Count {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Least allowed.
        min: u64,
        /// Most allowed.
        max: u64,
    },
    /// A want is below the one before it (wants are strictly ascending).
    #[error("wants are not in ascending order at position {0}")]
    Unsorted(usize),
    /// A want or a have repeats.
    #[error("repeated hash in {0}")]
    Duplicate(&'static str),
    /// The answer's status byte is not 0 to 3.
    #[error("unknown ancestry answer status {0:#04x}")]
    BadStatus(u8),
    /// An entry's length is 0 or above the entry size limit.
    #[error("entry length {0} outside 1 to {MAX_ENTRY_BYTES}")]
    EntryLength(u64),
}

impl From<DecodeError> for AncestryDecodeError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::BadVarint(what) => AncestryDecodeError::BadVarint(what),
            DecodeError::Truncated(what) => AncestryDecodeError::Truncated(what),
            _ => AncestryDecodeError::Truncated("field"),
        }
    }
}

/// A request for every entry the asker lacks to hold `want` with its ancestry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AncestryRequest {
    /// Hashes wanted: the asker's fetch list; 1 to [`MAX_WANTS`], strictly ascending.
    pub want: Vec<Hash>,
    /// A sample of what the asker holds ([`haves_for_request`](crate::dag::haves_for_request)):
    /// 0 to [`MAX_HAVES`], no repeats.
    pub have: Vec<Hash>,
    /// Most entries to send back: 1 to [`MAX_ANCESTRY_LIMIT`].
    pub limit: u32,
}

fn count(what: &'static str, value: u64, min: u64, max: u64) -> Result<u64, AncestryDecodeError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(AncestryDecodeError::Count {
            what,
            value,
            min,
            max,
        })
    }
}

/// [`count`] against a bound that is a capacity: the checked value as a `usize`.
fn capacity(
    what: &'static str,
    value: u64,
    min: usize,
    max: usize,
) -> Result<usize, AncestryDecodeError> {
    let error = AncestryDecodeError::Count {
        what,
        value,
        min: min as u64,
        max: max as u64,
    };
    usize::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or(error)
}

fn hash(r: &mut Reader<'_>, what: &'static str) -> Result<Hash, AncestryDecodeError> {
    let b = r.bytes(32, what)?;
    let mut h = [0; 32];
    h.copy_from_slice(b);
    Ok(Hash(h))
}

impl AncestryRequest {
    /// A request, with `want` sorted and deduplicated here; fails like [`decode`] would on
    /// counts out of range or repeated haves.
    ///
    /// [`decode`]: AncestryRequest::decode
    pub fn new(
        mut want: Vec<Hash>,
        have: Vec<Hash>,
        limit: u32,
    ) -> Result<Self, AncestryDecodeError> {
        want.sort_unstable();
        want.dedup();
        let req = AncestryRequest { want, have, limit };
        req.check()?;
        Ok(req)
    }

    fn check(&self) -> Result<(), AncestryDecodeError> {
        count("want count", self.want.len() as u64, 1, MAX_WANTS as u64)?;
        if let Some(i) = self.want.windows(2).position(|w| w[0] >= w[1]) {
            return Err(if self.want[i] == self.want[i + 1] {
                AncestryDecodeError::Duplicate("wants")
            } else {
                AncestryDecodeError::Unsorted(i + 1)
            });
        }
        count("have count", self.have.len() as u64, 0, MAX_HAVES as u64)?;
        for (i, h) in self.have.iter().enumerate() {
            if self.have[..i].contains(h) {
                return Err(AncestryDecodeError::Duplicate("haves"));
            }
        }
        count(
            "limit",
            u64::from(self.limit),
            1,
            u64::from(MAX_ANCESTRY_LIMIT),
        )?;
        Ok(())
    }

    /// The wire form: `varint n || n × want || varint h || h × have || varint limit`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + 32 * (self.want.len() + self.have.len()) + 3);
        put_varint(&mut out, self.want.len() as u64);
        for w in &self.want {
            out.extend_from_slice(&w.0);
        }
        put_varint(&mut out, self.have.len() as u64);
        for h in &self.have {
            out.extend_from_slice(&h.0);
        }
        put_varint(&mut out, u64::from(self.limit));
        out
    }

    /// Decodes and checks a request, naming the first violation in reading order. Holds at
    /// most 1,056 hashes whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Self, AncestryDecodeError> {
        let mut r = Reader::new(bytes);
        let n = capacity("want count", r.varint("want count")?, 1, MAX_WANTS)?;
        let mut want: Vec<Hash> = Vec::with_capacity(n);
        for i in 0..n {
            let w = hash(&mut r, "want")?;
            if let Some(prev) = want.last() {
                if w == *prev {
                    return Err(AncestryDecodeError::Duplicate("wants"));
                }
                if w < *prev {
                    return Err(AncestryDecodeError::Unsorted(i));
                }
            }
            want.push(w);
        }
        let h = capacity("have count", r.varint("have count")?, 0, MAX_HAVES)?;
        let mut have: Vec<Hash> = Vec::with_capacity(h);
        for _ in 0..h {
            let x = hash(&mut r, "have")?;
            if have.contains(&x) {
                return Err(AncestryDecodeError::Duplicate("haves"));
            }
            have.push(x);
        }
        let limit = count(
            "limit",
            r.varint("limit")?,
            1,
            u64::from(MAX_ANCESTRY_LIMIT),
        )?;
        if !r.is_empty() {
            return Err(AncestryDecodeError::TrailingBytes(r.remaining()));
        }
        Ok(AncestryRequest {
            want,
            have,
            limit: u32::try_from(limit).unwrap_or(MAX_ANCESTRY_LIMIT),
        })
    }
}

/// The answer to an [`AncestryRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AncestryAnswer {
    /// Owed entries, encoded (`body || signature`), in ascending key order: all of them
    /// (`complete`), or the oldest ones (cut by the request's limit or the answer size).
    Entries {
        /// Whether every owed entry is included (status `00`) or more remain (`01`).
        complete: bool,
        /// The encoded entries, each to be decoded and verified before insertion.
        entries: Vec<Vec<u8>>,
    },
    /// The answerer does not hold this want (the first such in request order): status `02`.
    UnknownWant(Hash),
    /// The walk went over the answerer's visit budget (status `03`); the asker should
    /// reconcile instead.
    OverBudget {
        /// The answerer's budget.
        budget: u64,
    },
}

const COMPLETE: u8 = 0;
const TRUNCATED: u8 = 1;
const UNKNOWN_WANT: u8 = 2;
const OVER_BUDGET: u8 = 3;

impl AncestryAnswer {
    /// Answers `req` from `view`: walks it ([`ancestry_to_send`], at most `max_visits`) and
    /// packs the owed entries, oldest first, until the request's limit or until the next entry
    /// would take the answer past `max_bytes`. `Err` only when the answerer's own store
    /// failed (or is not closed under parents): end the session then, do not answer.
    pub fn answer<A: Action>(
        view: &impl DagView<A>,
        req: &AncestryRequest,
        max_visits: u64,
        max_bytes: usize,
    ) -> Result<Self, StoreError> {
        let owed =
            match ancestry_to_send(view, &req.want, &req.have, req.limit as usize, max_visits) {
                Ok(owed) => owed,
                Err(DagError::Missing(h)) if req.want.contains(&h) => {
                    return Ok(AncestryAnswer::UnknownWant(h))
                }
                Err(DagError::VisitBudget { max }) => {
                    return Ok(AncestryAnswer::OverBudget { budget: max })
                }
                Err(DagError::Store(e)) => return Err(e),
                Err(e) => return Err(StoreError::new(e.to_string())),
            };
        let mut size = 1 + 3; // status and the largest count varint
        let mut entries = Vec::with_capacity(owed.hashes.len());
        let mut complete = !owed.truncated;
        for h in &owed.hashes {
            let Some(entry) = view.get(h)? else {
                return Err(StoreError::new(format!(
                    "entry {h} vanished during an ancestry answer"
                )));
            };
            let bytes = entry.encode();
            let add = 3 + bytes.len();
            if size + add > max_bytes {
                complete = false;
                break;
            }
            size += add;
            entries.push(bytes);
        }
        Ok(AncestryAnswer::Entries { complete, entries })
    }

    /// The wire form: a status byte and its body (spec 6.3).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            AncestryAnswer::Entries { complete, entries } => {
                out.push(if *complete { COMPLETE } else { TRUNCATED });
                put_varint(&mut out, entries.len() as u64);
                for e in entries {
                    put_varint(&mut out, e.len() as u64);
                    out.extend_from_slice(e);
                }
            }
            AncestryAnswer::UnknownWant(h) => {
                out.push(UNKNOWN_WANT);
                out.extend_from_slice(&h.0);
            }
            AncestryAnswer::OverBudget { budget } => {
                out.push(OVER_BUDGET);
                put_varint(&mut out, *budget);
            }
        }
        out
    }

    /// Decodes an answer to a request that asked for at most `limit` entries. Entry bytes are
    /// only framed here: decode and verify each before inserting it.
    pub fn decode(bytes: &[u8], limit: u32) -> Result<Self, AncestryDecodeError> {
        let mut r = Reader::new(bytes);
        let status = r.byte("status")?;
        let answer = match status {
            COMPLETE | TRUNCATED => {
                let m = count("entry count", r.varint("entry count")?, 0, u64::from(limit))?;
                let mut entries = Vec::new();
                for _ in 0..m {
                    let len = r.varint("entry length")?;
                    let size = usize::try_from(len)
                        .ok()
                        .filter(|size| (1..=MAX_ENTRY_BYTES).contains(size))
                        .ok_or(AncestryDecodeError::EntryLength(len))?;
                    entries.push(r.bytes(size, "entry")?.to_vec());
                }
                AncestryAnswer::Entries {
                    complete: status == COMPLETE,
                    entries,
                }
            }
            UNKNOWN_WANT => AncestryAnswer::UnknownWant(hash(&mut r, "unknown want")?),
            OVER_BUDGET => AncestryAnswer::OverBudget {
                budget: r.varint("visit budget")?,
            },
            other => return Err(AncestryDecodeError::BadStatus(other)),
        };
        if !r.is_empty() {
            return Err(AncestryDecodeError::TrailingBytes(r.remaining()));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever decodes re-encodes to the same bytes, and nothing panics.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), limit in 0u32..70_000) {
            if let Ok(req) = AncestryRequest::decode(&bytes) {
                prop_assert_eq!(req.encode(), bytes.clone());
            }
            if let Ok(answer) = AncestryAnswer::decode(&bytes, limit) {
                prop_assert_eq!(answer.encode(), bytes);
            }
        }

        /// Valid requests survive the round trip.
        #[test]
        fn requests_round_trip(want in proptest::collection::btree_set(any::<[u8; 32]>(), 1..40),
                               have in proptest::collection::btree_set(any::<[u8; 32]>(), 0..33),
                               limit in 1u32..=MAX_ANCESTRY_LIMIT) {
            let req = AncestryRequest::new(
                want.into_iter().map(Hash).collect(),
                have.into_iter().map(Hash).rev().collect(),
                limit,
            ).unwrap();
            prop_assert_eq!(AncestryRequest::decode(&req.encode()).unwrap(), req);
        }
    }

    #[test]
    fn constructor_refuses_what_decode_refuses() {
        let h = Hash([1; 32]);
        assert!(matches!(
            AncestryRequest::new(vec![], vec![], 1),
            Err(AncestryDecodeError::Count { .. })
        ));
        assert_eq!(
            AncestryRequest::new(vec![h], vec![h, h], 1),
            Err(AncestryDecodeError::Duplicate("haves"))
        );
        assert!(matches!(
            AncestryRequest::new(vec![h], vec![], MAX_ANCESTRY_LIMIT + 1),
            Err(AncestryDecodeError::Count { .. })
        ));
        let wants: Vec<Hash> = (0..=u32::try_from(MAX_WANTS).unwrap())
            .map(|i| {
                let mut b = [0; 32];
                b[..4].copy_from_slice(&i.to_be_bytes());
                Hash(b)
            })
            .collect();
        assert!(matches!(
            AncestryRequest::new(wants, vec![], 1),
            Err(AncestryDecodeError::Count { .. })
        ));
    }
}
