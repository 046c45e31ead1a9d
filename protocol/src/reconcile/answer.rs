//! How one part of the peer's message is answered in the `OplogV1` dialect (`spec/SPEC.md` 8).

use std::collections::BTreeMap;

use tracing::debug;

use super::pending::Pending;
use super::{listed_keys, KeyForm, ReconcileError, Reconciler};
use crate::fingerprint::Aggregate;
use crate::key::{EntryKey, Range};
use crate::range::RangeStore;
use crate::wire::message::{Part, Payload};

/// The output being built for one reply, with its effects held until the part is committed.
pub(super) struct Out {
    pub(super) parts: Vec<Part>,
    pub(super) have: Vec<EntryKey>,
    pub(super) need: Vec<EntryKey>,
    pub(super) pending: Vec<(EntryKey, Pending)>,
    pub(super) collisions: u64,
    /// The answer is all our keys in the range, in pieces (the peer listed none there and we
    /// hold more than `list_threshold`): the caller writes them piece by piece, since they
    /// may not all fit the reply (`spec/SPEC.md` 8.4, empty lists).
    pub(super) send_all: bool,
}

impl Out {
    pub(super) fn new() -> Self {
        Out {
            parts: Vec::new(),
            have: Vec::new(),
            need: Vec::new(),
            pending: Vec::new(),
            collisions: 0,
            send_all: false,
        }
    }

    pub(super) fn part(&mut self, upper: Option<EntryKey>, payload: Payload) {
        self.parts.push(Part { upper, payload });
    }
}

impl Reconciler {
    /// Works out the answer to one part of the peer's message.
    pub(super) fn answer<S: RangeStore + ?Sized>(
        &mut self,
        store: &S,
        range: &Range,
        payload: &Payload,
        out: &mut Out,
    ) -> Result<(), ReconcileError> {
        let overlapping = self.take_overlapping(range);
        let exact =
            |start: &EntryKey, end: Option<EntryKey>| *start == range.start && end == range.end;
        let unexpected = |what: &str| {
            Err(ReconcileError::Protocol(format!(
                "{} for [{:?}, {:?}) does not match what we are waiting on there",
                what, range.start, range.end
            )))
        };
        match payload {
            Payload::Skip => {
                for (start, p) in overlapping {
                    let inside = start >= range.start
                        && match (p.end(), range.end) {
                            (_, None) => true,
                            (Some(e), Some(re)) => e <= re,
                            (None, Some(_)) => false,
                        };
                    match p {
                        Pending::Resolved {
                            mine_only, wanted, ..
                        } if inside && wanted.is_empty() => out.have.extend(mine_only),
                        _ => return unexpected("Skip"),
                    }
                }
                out.part(range.end, Payload::Skip);
            }
            Payload::Fingerprint(fp) => {
                // Whatever we waited on inside this range, the peer has started it over.
                let surveyed = self.survey.pop_front();
                let (equal, count) = if let Some(s) = surveyed {
                    s
                } else {
                    let mine = store.aggregate(range)?;
                    (mine.fingerprint(&self.salt) == *fp, mine.count())
                };
                let list_up_to = self.list_up_to;
                if equal {
                    out.part(range.end, Payload::Skip);
                } else if count <= list_up_to as u64 {
                    let keys = listed_keys(store, range, list_up_to)?;
                    let len = self.config.prefix_bytes(keys.len());
                    let prefixes = keys
                        .iter()
                        .flat_map(|k| k.hash.0[..len as usize].iter().copied())
                        .collect();
                    out.part(range.end, Payload::PrefixList { len, prefixes });
                    out.pending.push((
                        range.start,
                        Pending::Listed {
                            end: range.end,
                            peer_fp: *fp,
                            keys,
                            full: false,
                        },
                    ));
                } else {
                    self.split(store, range, count, out)?;
                }
            }
            Payload::PrefixList { len, prefixes } => {
                if !overlapping.is_empty() {
                    return unexpected("PrefixList");
                }
                let count = store.count(range)?;
                let list_max = self.config.list_max();
                if count > self.config.list_threshold as u64 {
                    if prefixes.is_empty() {
                        // The peer holds nothing here: splitting would only find that out
                        // range by range. Send everything at once instead.
                        out.send_all = true;
                        return Ok(());
                    }
                    if count > list_max as u64 {
                        return self.split(store, range, count, out);
                    }
                }
                let mine = listed_keys(store, range, list_max)?;
                let len = *len as usize;
                let mut unmatched: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
                for (i, k) in mine.iter().enumerate().rev() {
                    unmatched.entry(&k.hash.0[..len]).or_default().push(i);
                }
                let mut matched = vec![false; mine.len()];
                let mut missing = Vec::new();
                let mut wanted = Vec::new();
                for (pos, p) in prefixes.chunks_exact(len).enumerate() {
                    if let Some(i) = unmatched.get_mut(p).and_then(Vec::pop) {
                        matched[i] = true;
                    } else {
                        missing.push(list_position(pos)?);
                        wanted.extend_from_slice(p);
                    }
                }
                let mine_only: Vec<EntryKey> = mine
                    .iter()
                    .zip(&matched)
                    .filter(|(_, m)| !**m)
                    .map(|(k, _)| *k)
                    .collect();
                out.part(
                    range.end,
                    Payload::Resolve {
                        missing,
                        keys: mine_only.clone(),
                    },
                );
                // Nothing to wait for when both sides listed the same keys: the peer answers
                // with a Skip, which needs no pending state.
                if !mine_only.is_empty() || !wanted.is_empty() {
                    out.pending.push((
                        range.start,
                        Pending::Resolved {
                            end: range.end,
                            mine_only,
                            wanted,
                            wanted_len: len,
                        },
                    ));
                }
            }
            Payload::FullList(theirs) => {
                // Allowed only as the fallback for a prefix list we resolved.
                for (start, p) in &overlapping {
                    if !matches!(p, Pending::Resolved { end, .. } if exact(start, *end)) {
                        return unexpected("FullList");
                    }
                }
                let count = store.count(range)?;
                let list_max = self.config.list_max();
                if count > list_max as u64 {
                    return self.split(store, range, count, out);
                }
                let mine = listed_keys(store, range, list_max)?;
                let missing = theirs
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| mine.binary_search(k).is_err())
                    .map(|(i, _)| list_position(i))
                    .collect::<Result<Vec<_>, _>>()?;
                let mine_only: Vec<EntryKey> = mine
                    .iter()
                    .filter(|k| theirs.binary_search(k).is_err())
                    .copied()
                    .collect();
                out.need.extend(missing.iter().map(|&i| theirs[i as usize]));
                out.have.extend(mine_only.iter().copied());
                // Carried form: we know the listed keys we lack but not their entries, so the
                // lister answers with Keys carrying them; wait for exactly those keys.
                if self.config.key_form == KeyForm::Carried && !missing.is_empty() {
                    let wanted: Vec<u8> = missing
                        .iter()
                        .flat_map(|&i| theirs[i as usize].hash.0)
                        .collect();
                    out.pending.push((
                        range.start,
                        Pending::Resolved {
                            end: range.end,
                            mine_only: Vec::new(),
                            wanted,
                            wanted_len: 32,
                        },
                    ));
                }
                out.part(
                    range.end,
                    Payload::Resolve {
                        missing,
                        keys: mine_only,
                    },
                );
            }
            Payload::Resolve { missing, keys } => {
                let mut overlapping = overlapping.into_iter();
                let (Some((start, listed)), None) = (overlapping.next(), overlapping.next()) else {
                    return unexpected("Resolve");
                };
                let Pending::Listed {
                    end,
                    peer_fp,
                    keys: listed,
                    full,
                } = listed
                else {
                    return unexpected("Resolve");
                };
                if listed.is_empty() && !full {
                    // We listed nothing: every key is one we lack, and there is no prefix
                    // that could have hidden a difference, so no fingerprint to check. The
                    // peer may answer in pieces: each covers the start of what is left.
                    let piece_end = match (range.end, end) {
                        (Some(r), Some(e)) if r < e => Some(r),
                        (Some(r), None) => Some(r),
                        _ => None,
                    };
                    if start != range.start
                        || !missing.is_empty()
                        || (piece_end.is_none() && range.end != end)
                    {
                        return unexpected("Resolve");
                    }
                    out.need.extend(keys.iter().copied());
                    out.part(range.end, Payload::Skip);
                    if let Some(rest) = piece_end {
                        out.pending.push((
                            rest,
                            Pending::Listed {
                                end,
                                peer_fp,
                                keys: listed,
                                full,
                            },
                        ));
                    }
                    return Ok(());
                }
                if !exact(&start, end) {
                    return unexpected("Resolve");
                }
                if missing.last().is_some_and(|&m| m as usize >= listed.len()) {
                    return Err(ReconcileError::Protocol(format!(
                        "Resolve names position {} of a list of {}",
                        missing.last().copied().unwrap_or_default(),
                        listed.len()
                    )));
                }
                let mut flagged = vec![false; listed.len()];
                for &m in missing {
                    flagged[m as usize] = true;
                }
                // The peer's set as the Resolve describes it must have the peer's fingerprint;
                // otherwise a prefix collision (or a change under our feet) hid a difference.
                let mut theirs: Vec<EntryKey> = listed
                    .iter()
                    .zip(&flagged)
                    .filter(|(_, f)| !**f)
                    .map(|(k, _)| *k)
                    .chain(keys.iter().copied())
                    .collect();
                theirs.sort_unstable();
                theirs.dedup();
                if Aggregate::of_keys(&theirs).fingerprint(&self.salt) == peer_fp {
                    let gave: Vec<EntryKey> = missing.iter().map(|&m| listed[m as usize]).collect();
                    out.have.extend(gave.iter().copied());
                    out.need
                        .extend(keys.iter().filter(|k| listed.binary_search(k).is_err()));
                    // After a full list the peer knows the keys it lacks; in inline form that
                    // is all it needs, in carried form it still needs their entries.
                    if gave.is_empty() || (full && self.config.key_form == KeyForm::Inline) {
                        out.part(range.end, Payload::Skip);
                    } else {
                        // Inline, the peer holds the prefixes we listed: each key goes
                        // without them (8.3). Carried, the keys travel whole beside.
                        let omitted = match self.config.key_form {
                            KeyForm::Inline if !full => self.config.prefix_bytes(listed.len()),
                            _ => 0,
                        };
                        out.part(
                            range.end,
                            Payload::Keys {
                                omitted,
                                keys: gave,
                            },
                        );
                    }
                } else if !full {
                    debug!(range = ?range.start, "reconcile: prefix collision, resending the range in full");
                    out.collisions += 1;
                    out.part(range.end, Payload::FullList(listed.clone()));
                    out.pending.push((
                        start,
                        Pending::Listed {
                            end,
                            peer_fp,
                            keys: listed,
                            full: true,
                        },
                    ));
                } else {
                    // Even full keys do not reproduce the peer's fingerprint: a store changed
                    // during the session, or the peer is lying. Start the range over.
                    debug!(range = ?range.start, "reconcile: peer's answer contradicts its fingerprint, restarting range");
                    out.part(
                        range.end,
                        Payload::Fingerprint(store.fingerprint(range, &self.salt)?),
                    );
                }
            }
            Payload::Keys { omitted, keys } => {
                let mut overlapping = overlapping.into_iter();
                let (Some((start, p)), None) = (overlapping.next(), overlapping.next()) else {
                    return unexpected("Keys");
                };
                let Pending::Resolved {
                    end,
                    mine_only,
                    wanted,
                    wanted_len,
                } = p
                else {
                    return unexpected("Keys");
                };
                if !exact(&start, end) {
                    return unexpected("Keys");
                }
                let omitted = usize::from(*omitted);
                let expected = match self.config.key_form {
                    KeyForm::Inline => wanted_len,
                    KeyForm::Carried => 0,
                };
                if omitted != expected {
                    return Err(ReconcileError::Protocol(format!(
                        "Keys leave out {omitted} prefix bytes of each key, expected {expected}"
                    )));
                }
                if keys.len() * wanted_len != wanted.len() {
                    return Err(ReconcileError::Protocol(format!(
                        "Keys bring {} keys for the {} prefixes we asked for",
                        keys.len(),
                        wanted.len() / wanted_len.max(1)
                    )));
                }
                // Fill in the omitted bytes from the prefixes we asked for; the order of the
                // keys and their range could not be checked before (8.3, 8.4).
                let mut theirs = keys.clone();
                for (k, w) in theirs.iter_mut().zip(wanted.chunks_exact(wanted_len)) {
                    k.hash.0[..omitted].copy_from_slice(&w[..omitted]);
                }
                if !theirs
                    .iter()
                    .zip(wanted.chunks_exact(wanted_len))
                    .all(|(k, w)| k.hash.0.starts_with(w))
                {
                    return Err(ReconcileError::Protocol(
                        "Keys do not match the prefixes we asked for".into(),
                    ));
                }
                if theirs.windows(2).any(|w| w[0] >= w[1])
                    || theirs
                        .iter()
                        .any(|k| *k < range.start || range.end.is_some_and(|e| *k >= e))
                {
                    return Err(ReconcileError::Protocol(
                        "Keys, with the prefixes we asked for filled in, are not ascending inside the part's range".into(),
                    ));
                }
                out.have.extend(mine_only);
                out.need.extend(theirs.iter().copied());
                out.part(range.end, Payload::Skip);
            }
        }
        Ok(())
    }
}

/// A position in a list the peer sent, as the wire's `u32`. Decoded lists hold at most
/// [`MAX_LIST_ITEMS`](crate::wire::message::MAX_LIST_ITEMS) items, so this fails only for a
/// list that did not come through the decoder.
fn list_position(pos: usize) -> Result<u32, ReconcileError> {
    u32::try_from(pos).map_err(|_| {
        ReconcileError::Protocol(format!("list position {pos} does not fit the wire's u32"))
    })
}
