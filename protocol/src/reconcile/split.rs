//! Splitting a differing range into fingerprinted sub-ranges of about equal size.

use super::answer::Out;
use super::error::inconsistent;
use super::{ReconcileError, Reconciler};
use crate::key::Range;
use crate::range::RangeStore;
use crate::wire::message::{self, Payload};

impl Reconciler {
    /// Splits `range`, where we hold `count > list_threshold` keys, into parts of about
    /// `list_threshold` keys each (at most `branching` parts) and sends their fingerprints.
    pub(super) fn split<S: RangeStore + ?Sized>(
        &self,
        store: &S,
        range: &Range,
        count: u64,
        out: &mut Out,
    ) -> Result<(), ReconcileError> {
        let k = (count.div_ceil(self.config.list_threshold as u64))
            .clamp(2, self.config.branching as u64);
        let mut lower = range.start;
        for i in 1..=k {
            let upper = if i == k {
                range.end
            } else {
                let rank = i * count / k;
                let (Some(pred), Some(item)) =
                    (store.key_at(range, rank - 1)?, store.key_at(range, rank)?)
                else {
                    return Err(inconsistent("key_at found fewer keys than count"));
                };
                // The separator must fall strictly inside the range, above the last bound:
                // a store whose set changed between the two calls could answer otherwise.
                let sep = message::separator(&lower, &pred, &item)
                    .filter(|s| *s > lower && range.end.is_none_or(|e| *s < e))
                    .ok_or_else(|| {
                        inconsistent(format!(
                            "key_at gave {pred:?} then {item:?} at ranks {} and {rank}",
                            rank - 1
                        ))
                    })?;
                Some(sep)
            };
            let child = Range::new(lower, upper);
            out.part(
                upper,
                Payload::Fingerprint(store.fingerprint(&child, &self.salt)?),
            );
            if let Some(u) = upper {
                lower = u;
            }
        }
        Ok(())
    }
}
