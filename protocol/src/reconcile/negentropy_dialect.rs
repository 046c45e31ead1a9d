//! The Negentropy V1 dialect's handling (`spec/negentropy-v1.md`): answering the peer's
//! ranges, and splitting a range into Negentropy's buckets.

use tracing::debug;

use super::error::inconsistent;
use super::pending::{REPORTED_HASH_BYTES, REPORTED_KEY_BYTES};
use super::{listed_keys, Limit, Message, ReconcileError, Reconciler, Step};
use crate::key::{EntryKey, Hash, Range};
use crate::negentropy;
use crate::range::{for_each_chunk, RangeStore, StoreError};

impl Reconciler {
    /// [`Reconciler::handle`] for the Negentropy dialect: the same walk over the peer's
    /// ranges, with Negentropy's answers and its frame limit rule. Nothing is pending between
    /// messages in this dialect.
    pub(super) fn handle_negentropy<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
        msg: &Message,
    ) -> Result<Step, ReconcileError> {
        use negentropy::Payload as NPayload;
        let mut step = Step::default();
        let max_parts = self.config.max_parts;
        match negentropy::parts(&msg.0) {
            Ok(parts) => {
                let mut count = 0usize;
                for part in parts {
                    part?;
                    count += 1;
                    if count > max_parts {
                        return Err(Limit::Parts { limit: max_parts }.into());
                    }
                }
            }
            Err(negentropy::DecodeError::UnsupportedVersion(v)) if !self.initiator => {
                // Tell the peer which version we speak, so it can downgrade.
                debug!(version = v, "reconcile: negentropy version not supported");
                let reply = Message(vec![negentropy::PROTOCOL_VERSION]);
                self.sent(&reply);
                self.done = true;
                step.reply = Some(reply);
                return Ok(step);
            }
            Err(e) => return Err(e.into()),
        }
        // Negentropy stops adding ranges once a message would pass `limit - 200` bytes.
        let budget = self
            .config
            .max_message_bytes
            .map_or(usize::MAX, |l| l.saturating_sub(negentropy::FRAME_RESERVE));
        let mut enc = negentropy::Encoder::new();
        let mut written = 0usize;
        let mut lower = EntryKey::MIN;
        for part in negentropy::parts(&msg.0)? {
            let part = part?;
            let range = neg_range(lower, &part.upper);
            let skip = negentropy::Part {
                upper: part.upper,
                payload: NPayload::Skip,
            };
            let mark = enc.mark();
            // whether the output for this range stays even if it overflows the frame
            let mut keep = false;
            let mut push = |enc: &mut negentropy::Encoder, p: &negentropy::Part| {
                written += usize::from(!matches!(p.payload, NPayload::Skip)) * 2;
                enc.push(p).map_err(inconsistent)
            };
            match &part.payload {
                NPayload::Skip => push(&mut enc, &skip)?,
                NPayload::Fingerprint(fp) => {
                    if store.negentropy_fingerprint(&range)? == *fp {
                        push(&mut enc, &skip)?;
                    } else {
                        for p in neg_split(store, &range, part.upper)? {
                            push(&mut enc, &p)?;
                        }
                    }
                }
                NPayload::IdList(theirs) if self.initiator => {
                    let mut theirs: Vec<Hash> = theirs.clone();
                    theirs.sort_unstable();
                    theirs.dedup();
                    let mut matched = vec![false; theirs.len()];
                    // A range carried over by our own frame limit restarts at the last range
                    // we wrote and can settle again what we already reported: report once.
                    // Our keys are read a chunk at a time; each chunk is charged first.
                    let (reported, reported_hashes) = (&self.reported, &self.reported_hashes);
                    let base = self.pending_bytes
                        + reported.len() * REPORTED_KEY_BYTES
                        + reported_hashes.len() * REPORTED_HASH_BYTES;
                    let limit = self.config.max_session_memory;
                    let mut new_have: Vec<EntryKey> = Vec::new();
                    for_each_chunk(store, &range, |keys| {
                        for k in keys {
                            match theirs.binary_search(&k.hash) {
                                Ok(i) => matched[i] = true,
                                Err(_) if !reported.contains(k) => new_have.push(*k),
                                Err(_) => {}
                            }
                        }
                        let needed = base + new_have.len() * REPORTED_KEY_BYTES;
                        if needed > limit {
                            return Err(StoreError::new(Limit::SessionMemory { needed, limit }));
                        }
                        Ok(true)
                    })
                    .map_err(|e| {
                        match e.into_inner().downcast::<Limit>() {
                            Ok(limit) => ReconcileError::Limit(*limit),
                            Err(other) => ReconcileError::Store(StoreError::new(other)),
                        }
                    })?;
                    let unmatched = matched.iter().filter(|m| !**m).count();
                    self.charge(
                        new_have.len() * REPORTED_KEY_BYTES + unmatched * REPORTED_HASH_BYTES,
                    )?;
                    for k in new_have {
                        if self.reported.insert(k) {
                            step.have.push(k);
                        }
                    }
                    let reported = &mut self.reported_hashes;
                    step.need_hashes.extend(
                        theirs
                            .iter()
                            .zip(&matched)
                            .filter(|(h, m)| !**m && reported.insert(**h))
                            .map(|(h, _)| *h),
                    );
                    push(&mut enc, &skip)?;
                }
                NPayload::IdList(_) => {
                    // The responder answers with its own ids, cut short where the frame fills;
                    // the cut list stays and the rest of the key space is carried over. Keys
                    // are read a chunk at a time and never past what the frame can take.
                    let start = enc.len();
                    let mut upper = part.upper;
                    let mut ids = Vec::new();
                    for_each_chunk(store, &range, |keys| {
                        for k in keys {
                            if start + 32 * ids.len() > budget {
                                upper = negentropy::Bound::at(k);
                                return Ok(false);
                            }
                            ids.push(k.hash);
                        }
                        Ok(true)
                    })?;
                    push(
                        &mut enc,
                        &negentropy::Part {
                            upper,
                            payload: NPayload::IdList(ids),
                        },
                    )?;
                    keep = true;
                }
            }
            if enc.len() > budget || written > max_parts - 2 {
                // Out of room: one fingerprint covers everything after the last range written,
                // for the peer to answer next round.
                if !keep {
                    enc.rollback(mark);
                }
                enc.drop_skip();
                let rest = neg_range(enc.written_upto(), &negentropy::Bound::INFINITY);
                enc.push(&negentropy::Part {
                    upper: negentropy::Bound::INFINITY,
                    payload: NPayload::Fingerprint(store.negentropy_fingerprint(&rest)?),
                })
                .map_err(inconsistent)?;
                self.stats.carried_over += 1;
                debug!(from = ?rest.start, "reconcile: negentropy frame limit reached, carrying ranges over");
                break;
            }
            lower = part.upper.key();
        }
        let bytes = enc.finish();
        if self.initiator && bytes.len() == 1 {
            // Nothing left to ask: the session ends here and the empty answer is not sent.
            self.done = true;
        } else {
            let reply = Message(bytes);
            self.sent(&reply);
            step.reply = Some(reply);
            self.done = !self.initiator;
        }
        debug!(
            have = step.have.len(),
            need = step.need_hashes.len(),
            reply = step.reply.as_ref().map(Message::len),
            done = self.done,
            "reconcile: handled negentropy message"
        );
        Ok(step)
    }
}

/// The key range a Negentropy range covers: from `lower` up to (excluding) `upper`. The
/// infinity bound is the key `(u64::MAX, 0)`, so keys with that HLC are outside every range,
/// as in Negentropy, which reserves the timestamp.
pub(super) fn neg_range(lower: EntryKey, upper: &negentropy::Bound) -> Range {
    Range::new(lower, Some(upper.key()))
}

/// Negentropy's answer for a range whose fingerprints differ, and its opening message: the
/// ids if we hold fewer than 32 keys in it, otherwise 16 fingerprinted buckets of (nearly)
/// equal size by rank, the larger ones first, separated by minimal bounds.
// BUCKETS (16) and ID_LIST_BELOW (32) are small constants: their casts to usize are exact
#[allow(clippy::cast_possible_truncation)]
pub(super) fn neg_split<S: RangeStore + ?Sized>(
    store: &S,
    range: &Range,
    upper: negentropy::Bound,
) -> Result<Vec<negentropy::Part>, ReconcileError> {
    use negentropy::{Part as NPart, Payload as NPayload, BUCKETS, ID_LIST_BELOW};
    let count = store.count(range)?;
    if count < ID_LIST_BELOW {
        let keys = listed_keys(store, range, ID_LIST_BELOW as usize)?;
        let ids = keys.iter().map(|k| k.hash).collect();
        return Ok(vec![NPart {
            upper,
            payload: NPayload::IdList(ids),
        }]);
    }
    let missing = || inconsistent("key_at found fewer keys than count");
    let (per, extra) = (count / BUCKETS, count % BUCKETS);
    let mut parts = Vec::with_capacity(BUCKETS as usize);
    let mut lower = range.start;
    let mut rank = 0;
    for i in 0..BUCKETS {
        rank += per + u64::from(i < extra);
        let bound = if rank == count {
            upper
        } else {
            let prev = store.key_at(range, rank - 1)?.ok_or_else(missing)?;
            let curr = store.key_at(range, rank)?.ok_or_else(missing)?;
            let bound = negentropy::Bound::minimal(&prev, &curr);
            if prev >= curr || bound.key() < lower || !range.contains(&curr) {
                return Err(inconsistent(format!(
                    "key_at gave {prev:?} then {curr:?} at ranks {} and {rank}",
                    rank - 1
                )));
            }
            bound
        };
        let fp = store.negentropy_fingerprint(&Range::new(lower, Some(bound.key())))?;
        parts.push(NPart {
            upper: bound,
            payload: NPayload::Fingerprint(fp),
        });
        lower = bound.key();
    }
    Ok(parts)
}
