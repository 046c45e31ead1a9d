//! The ranges a reconciler is waiting on between messages, and what its session state is
//! charged against the memory budget.

use super::{Limit, ReconcileError, Reconciler};
use crate::fingerprint::Fingerprint;
use crate::key::{EntryKey, Range};

/// A range this side is waiting on.
#[derive(Debug)]
pub(super) enum Pending {
    /// We listed our keys in the range in answer to the peer's fingerprint; a Resolve is due.
    Listed {
        end: Option<EntryKey>,
        peer_fp: Fingerprint,
        keys: Vec<EntryKey>,
        full: bool,
    },
    /// We resolved the peer's prefix list; Keys (or a Skip meaning "no keys") is due.
    Resolved {
        end: Option<EntryKey>,
        mine_only: Vec<EntryKey>,
        /// Prefixes of the listed keys we lack, `wanted_len` bytes each, whose full keys the
        /// Keys part must carry.
        wanted: Vec<u8>,
        wanted_len: usize,
    },
}

/// Bytes charged for one pending range besides its lists: the map entry, counted twice for
/// B-tree nodes that are half full.
const PENDING_ENTRY_BYTES: usize = 2 * std::mem::size_of::<(EntryKey, Pending)>();
/// Bytes charged per reported key: a hash set slot (40-byte key, 1 control byte) at the
/// lowest load a hash set has right after growing (7/16).
pub(super) const REPORTED_KEY_BYTES: usize = 96;
/// Bytes charged per reported Negentropy hash, as [`REPORTED_KEY_BYTES`] for 32 bytes.
pub(super) const REPORTED_HASH_BYTES: usize = 80;

impl Pending {
    pub(super) fn end(&self) -> Option<EntryKey> {
        match self {
            Pending::Listed { end, .. } | Pending::Resolved { end, .. } => *end,
        }
    }

    /// Bytes this pending range holds, as charged against the session memory budget.
    pub(super) fn bytes(&self) -> usize {
        let key = std::mem::size_of::<EntryKey>();
        PENDING_ENTRY_BYTES
            + match self {
                Pending::Listed { keys, .. } => keys.capacity() * key,
                Pending::Resolved {
                    mine_only, wanted, ..
                } => mine_only.capacity() * key + wanted.capacity(),
            }
    }
}

impl Reconciler {
    /// Fails with [`Limit::SessionMemory`] unless `extra` more bytes of state fit the budget.
    pub(super) fn charge(&self, extra: usize) -> Result<(), ReconcileError> {
        let needed = self.session_memory().saturating_add(extra);
        if needed > self.config.max_session_memory {
            return Err(Limit::SessionMemory {
                needed,
                limit: self.config.max_session_memory,
            }
            .into());
        }
        Ok(())
    }

    /// Removes and returns every pending range that overlaps `r`.
    pub(super) fn take_overlapping(&mut self, r: &Range) -> Vec<(EntryKey, Pending)> {
        let mut starts = Vec::new();
        if let Some((s, p)) = self.pending.range(..r.start).next_back() {
            if p.end().is_none_or(|e| e > r.start) {
                starts.push(*s);
            }
        }
        for s in self.pending.range(r.start..).map(|(s, _)| *s) {
            if r.end.is_some_and(|e| s >= e) {
                break;
            }
            starts.push(s);
        }
        let taken: Vec<(EntryKey, Pending)> = starts
            .into_iter()
            .filter_map(|s| self.pending.remove(&s).map(|p| (s, p)))
            .collect();
        for (_, p) in &taken {
            self.pending_bytes -= p.bytes();
        }
        taken
    }
}
