//! The insert pipeline over redb: the rules of [`oplog_protocol::replica::insert`] (the same code
//! reference `MemoryReplica` runs) over the tables of one write transaction, so
//! [`Store::insert`] returns the same [`InsertReport`] and a failed call writes nothing.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use oplog_protocol::dag::{lww_cmp, LwwWrite};
use oplog_protocol::replica::InsertReport;
use oplog_protocol::replica::{self as apply, ReplicaState, Usage};
use oplog_protocol::{
    verify_batch, Action, EntryKey, Hash, Hlc, LogEntry, NodeId, RangeIndex, Unverified,
    VerifiedEntry,
};
use redb::{Durability, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use tracing::debug_span;

use crate::error::Error;
use crate::schema::{
    ViewRow, BY_HASH, DEFERRED, DEFERRED_BY_AUTHOR, DEFERRED_DUE, ENTRIES, HEADS, HELD,
    HELD_BY_AUTHOR, HELD_LACKING, HELD_ORDER, KEPT_BYTES, KEPT_USAGE, VIEW, WAITING, WRITES,
};
use crate::{decode_stored, register_bytes, Store};

/// At most this many commits in a row are buffered by [`Store::insert_verified_buffered`]
/// (the last of them is made durable): with sync batches of about 1 MiB, a crash loses at most
/// about 16 MiB of entries that the next sync fetches again, and redb reuses freed pages at
/// least that often.
pub const MAX_BUFFERED_COMMITS: u32 = 16;

/// The tables one insert transaction writes.
struct Tables<'t> {
    entries: Table<'t, (u64, [u8; 32]), &'static [u8]>,
    by_hash: Table<'t, [u8; 32], u64>,
    heads: Table<'t, [u8; 32], (u64, [u8; 32])>,
    held: Table<'t, [u8; 32], &'static [u8]>,
    waiting: Table<'t, ([u8; 32], [u8; 32]), ()>,
    deferred: Table<'t, [u8; 32], (u64, &'static [u8])>,
    deferred_due: Table<'t, (u64, [u8; 32]), ()>,
    held_lacking: Table<'t, [u8; 32], u32>,
    held_order: Table<'t, (u64, [u8; 32]), ()>,
    held_by_author: Table<'t, ([u8; 32], u64, [u8; 32]), ()>,
    deferred_by_author: Table<'t, ([u8; 32], u64, [u8; 32]), ()>,
    kept_usage: Table<'t, (u8, [u8; 32]), u64>,
    kept_bytes: Table<'t, u8, u64>,
    view: Table<'t, &'static [u8], ViewRow>,
    writes: Table<'t, (&'static [u8], u64, [u8; 32]), ()>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, Error> {
        Ok(Tables {
            entries: txn.open_table(ENTRIES)?,
            by_hash: txn.open_table(BY_HASH)?,
            heads: txn.open_table(HEADS)?,
            held: txn.open_table(HELD)?,
            waiting: txn.open_table(WAITING)?,
            deferred: txn.open_table(DEFERRED)?,
            deferred_due: txn.open_table(DEFERRED_DUE)?,
            held_lacking: txn.open_table(HELD_LACKING)?,
            held_order: txn.open_table(HELD_ORDER)?,
            held_by_author: txn.open_table(HELD_BY_AUTHOR)?,
            deferred_by_author: txn.open_table(DEFERRED_BY_AUTHOR)?,
            kept_usage: txn.open_table(KEPT_USAGE)?,
            kept_bytes: txn.open_table(KEPT_BYTES)?,
            view: txn.open_table(VIEW)?,
            writes: txn.open_table(WRITES)?,
        })
    }
}

/// The replica state inside one open write transaction, plus the entries it applied (published
/// to the index and subscribers after the commit).
///
/// The rows an applied entry adds to the random-key tables (`by_hash`, `heads`, `view`,
/// `writes`) are gathered in ordered maps and written once, in key order, by
/// [`TxnState::flush`] before the commit: a sync batch's entries have random hashes and
/// registers, and writing them sorted touches each B-tree page once in a row instead of
/// jumping between pages entry by entry. Lookups read the gathered rows first, so the
/// transaction sees exactly what writing them at once would show. They hold at most one row
/// per entry of the call (memory bounded by the batch, which is in memory anyway).
struct TxnState<'t, A> {
    t: Tables<'t>,
    applied: Vec<LogEntry<A>>,
    /// `by_hash` rows of the entries applied in this transaction, not yet written.
    new_by_hash: BTreeMap<[u8; 32], u64>,
    /// `heads` changes not yet written: a row to insert, or `None` to remove one.
    new_heads: BTreeMap<[u8; 32], Option<(u64, [u8; 32])>>,
    /// The winning write of each register among the writes applied in this transaction,
    /// compared with the stored `view` row (and written if it wins) at the flush: the winner
    /// of all writes is the winner of the stored one and the batch's winner.
    new_view: BTreeMap<Vec<u8>, LwwWrite>,
    /// `writes` rows not yet written.
    new_writes: BTreeSet<(Vec<u8>, u64, [u8; 32])>,
    /// Whether `waiting` may hold rows: false when it was empty at the start of the
    /// transaction and nothing was held back since, so looking for waiters can be skipped.
    may_wait: bool,
    /// The range index as of the start of the transaction: exactly the keys of the entries
    /// applied before it (the store's writer lock is held from before the transaction until
    /// after [`Store::publish`] added what it applied), so a received entry's duplicate check
    /// is an in-memory lookup instead of a random-key read of `by_hash`.
    index: RangeIndex,
}

/// The held-back set in `kept_usage` and `kept_bytes`.
const HELD_SET: u8 = 0;
/// The deferred set in `kept_usage` and `kept_bytes`.
const DEFERRED_SET: u8 = 1;

impl<'t, A: Action> TxnState<'t, A> {
    fn new(t: Tables<'t>, index: RangeIndex) -> Result<Self, Error> {
        let may_wait = !t.waiting.is_empty()?;
        Ok(TxnState {
            t,
            applied: Vec::new(),
            new_by_hash: BTreeMap::new(),
            new_heads: BTreeMap::new(),
            new_view: BTreeMap::new(),
            new_writes: BTreeSet::new(),
            may_wait,
            index,
        })
    }

    /// Writes the gathered rows of applied entries, each table in key order. Runs once, after
    /// the rules ran and before the commit.
    fn flush(&mut self) -> Result<(), Error> {
        for (hash, hlc) in std::mem::take(&mut self.new_by_hash) {
            self.t.by_hash.insert(hash, hlc)?;
        }
        for (hash, row) in std::mem::take(&mut self.new_heads) {
            match row {
                Some(row) => drop(self.t.heads.insert(hash, row)?),
                None => drop(self.t.heads.remove(hash)?),
            }
        }
        for (reg, write) in std::mem::take(&mut self.new_view) {
            let current = self
                .t
                .view
                .get(reg.as_slice())?
                .map(|v| write_of(v.value()));
            if current.is_none_or(|cur| lww_cmp(&write, &cur) == Ordering::Greater) {
                self.t.view.insert(reg.as_slice(), row_of(&write))?;
            }
        }
        for (reg, hlc, hash) in std::mem::take(&mut self.new_writes) {
            self.t.writes.insert((reg.as_slice(), hlc, hash), ())?;
        }
        Ok(())
    }

    fn remove_deferred(&mut self, hash: &Hash) -> Result<Option<LogEntry<A>>, Error> {
        let Some((not_before, bytes)) = self
            .t
            .deferred
            .remove(hash.0)?
            .map(|v| (v.value().0, v.value().1.to_vec()))
        else {
            return Ok(None);
        };
        self.t.deferred_due.remove((not_before, hash.0))?;
        let entry: LogEntry<A> = decode_stored(&bytes, "deferred entry")?;
        self.t
            .deferred_by_author
            .remove((entry.node_id.0, not_before, hash.0))?;
        self.count(DEFERRED_SET, &entry.node_id, -1, bytes.len())?;
        Ok(Some(entry))
    }

    /// Adds (`delta = 1`) or removes (`-1`) one entry of `size` bytes by `author` to a kept
    /// set's counters.
    fn count(&mut self, set: u8, author: &NodeId, delta: i8, size: usize) -> Result<(), Error> {
        let size = size as u64;
        let n = self
            .t
            .kept_usage
            .get((set, author.0))?
            .map_or(0, |v| v.value());
        let bytes = self.t.kept_bytes.get(set)?.map_or(0, |v| v.value());
        let (n, bytes) = if delta > 0 {
            (n + 1, bytes + size)
        } else {
            (n.saturating_sub(1), bytes.saturating_sub(size))
        };
        if n == 0 {
            self.t.kept_usage.remove((set, author.0))?;
        } else {
            self.t.kept_usage.insert((set, author.0), n)?;
        }
        self.t.kept_bytes.insert(set, bytes)?;
        Ok(())
    }

    fn usage(&self, set: u8, author: &NodeId) -> Result<Usage, Error> {
        Ok(Usage {
            author_entries: self
                .t
                .kept_usage
                .get((set, author.0))?
                .map_or(0, |v| v.value()),
            total_bytes: self.t.kept_bytes.get(set)?.map_or(0, |v| v.value()),
        })
    }
}

impl<A: Action> ReplicaState<A> for TxnState<'_, A> {
    type Error = Error;

    fn applied_hlc(&self, hash: &Hash) -> Result<Option<Hlc>, Error> {
        if let Some(hlc) = self.new_by_hash.get(&hash.0) {
            return Ok(Some(Hlc(*hlc)));
        }
        Ok(self.t.by_hash.get(hash.0)?.map(|v| Hlc(v.value())))
    }

    fn is_applied_key(&self, key: &EntryKey) -> Result<bool, Error> {
        Ok(self.new_by_hash.contains_key(&key.hash.0) || self.index.contains(key))
    }

    /// Writes one entry whose parents are applied: its `entries` row now; its index, heads,
    /// view and history rows at [`TxnState::flush`].
    fn apply(&mut self, entry: VerifiedEntry<A>) -> Result<(), Error> {
        let (hlc, hash) = (entry.hlc.0, entry.hash.0);
        self.t.entries.insert((hlc, hash), &*entry.encoded())?;
        let entry = entry.into_inner();
        self.new_by_hash.insert(hash, hlc);
        for p in &entry.parents {
            // a parent applied in this transaction was never written as a head: forget it;
            // one applied before is removed at the flush
            if let Some(Some(_)) = self.new_heads.insert(p.0, None) {
                self.new_heads.remove(&p.0);
            }
        }
        self.new_heads.insert(hash, Some((hlc, entry.node_id.0)));
        if let Some((register, write)) = LwwWrite::of(&entry) {
            let reg = register_bytes(&register)?;
            self.new_writes.insert((reg.clone(), hlc, hash));
            match self.new_view.entry(reg) {
                Entry::Vacant(slot) => drop(slot.insert(write)),
                Entry::Occupied(mut slot) => {
                    if lww_cmp(&write, slot.get()) == Ordering::Greater {
                        slot.insert(write);
                    }
                }
            }
        }
        self.applied.push(entry);
        Ok(())
    }

    fn held(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, Error> {
        match self.t.held.get(hash.0)? {
            Some(bytes) => Ok(Some(Cow::Owned(decode_stored(
                bytes.value(),
                "held entry",
            )?))),
            None => Ok(None),
        }
    }

    fn is_held(&self, hash: &Hash) -> Result<bool, Error> {
        Ok(self.t.held.get(hash.0)?.is_some())
    }

    fn hold(&mut self, entry: LogEntry<A>, missing: &[Hash]) -> Result<(), Error> {
        let hash = entry.hash.0;
        self.may_wait = true;
        for p in missing {
            self.t.waiting.insert((p.0, hash), ())?;
        }
        let bytes = entry.encode();
        self.t.held.insert(hash, bytes.as_slice())?;
        let lacking = u32::try_from(missing.len()).unwrap_or(u32::MAX);
        self.t.held_lacking.insert(hash, lacking)?;
        self.t.held_order.insert((entry.hlc.0, hash), ())?;
        self.t
            .held_by_author
            .insert((entry.node_id.0, entry.hlc.0, hash), ())?;
        self.count(HELD_SET, &entry.node_id, 1, bytes.len())
    }

    fn parent_arrived(&mut self, child: &Hash) -> Result<Option<u32>, Error> {
        let Some(n) = self.t.held_lacking.get(child.0)?.map(|v| v.value()) else {
            return Ok(None);
        };
        let n = n.saturating_sub(1);
        self.t.held_lacking.insert(child.0, n)?;
        Ok(Some(n))
    }

    fn take_held(&mut self, hash: &Hash) -> Result<Option<LogEntry<A>>, Error> {
        let Some(bytes) = self.t.held.remove(hash.0)?.map(|v| v.value().to_vec()) else {
            return Ok(None);
        };
        let entry: LogEntry<A> = decode_stored(&bytes, "held entry")?;
        self.t.held_lacking.remove(hash.0)?;
        self.t.held_order.remove((entry.hlc.0, hash.0))?;
        self.t
            .held_by_author
            .remove((entry.node_id.0, entry.hlc.0, hash.0))?;
        self.count(HELD_SET, &entry.node_id, -1, bytes.len())?;
        Ok(Some(entry))
    }

    fn take_waiters(&mut self, parent: &Hash) -> Result<Vec<Hash>, Error> {
        let mut children = Vec::new();
        if !self.may_wait {
            return Ok(children);
        }
        for row in self
            .t
            .waiting
            .range((parent.0, [0u8; 32])..=(parent.0, [0xff; 32]))?
        {
            children.push(Hash(row?.0.value().1));
        }
        for c in &children {
            self.t.waiting.remove((parent.0, c.0))?;
        }
        Ok(children)
    }

    fn unwait(&mut self, parent: &Hash, child: &Hash) -> Result<(), Error> {
        self.t.waiting.remove((parent.0, child.0))?;
        Ok(())
    }

    fn held_usage(&self, author: &NodeId) -> Result<Usage, Error> {
        self.usage(HELD_SET, author)
    }

    fn oldest_held(&self, author: Option<&NodeId>) -> Result<Option<EntryKey>, Error> {
        let first = match author {
            None => self
                .t
                .held_order
                .first()?
                .map(|(k, _)| EntryKey::new(k.value().0, k.value().1)),
            Some(a) => self
                .t
                .held_by_author
                .range((a.0, 0, [0u8; 32])..=(a.0, u64::MAX, [0xff; 32]))?
                .next()
                .transpose()?
                .map(|(k, _)| EntryKey::new(k.value().1, k.value().2)),
        };
        Ok(first)
    }

    fn defer(&mut self, entry: LogEntry<A>, not_before: u64) -> Result<(), Error> {
        self.remove_deferred(&entry.hash)?;
        let bytes = entry.encode();
        let hash = entry.hash.0;
        self.t
            .deferred
            .insert(hash, (not_before, bytes.as_slice()))?;
        self.t.deferred_due.insert((not_before, hash), ())?;
        self.t
            .deferred_by_author
            .insert((entry.node_id.0, not_before, hash), ())?;
        self.count(DEFERRED_SET, &entry.node_id, 1, bytes.len())
    }

    fn deferred_until(&self, hash: &Hash) -> Result<Option<u64>, Error> {
        Ok(self.t.deferred.get(hash.0)?.map(|v| v.value().0))
    }

    fn undefer(&mut self, hash: &Hash) -> Result<(), Error> {
        self.remove_deferred(hash).map(drop)
    }

    fn take_due(&mut self, now_nanos: u64) -> Result<Vec<LogEntry<A>>, Error> {
        let mut due = Vec::new();
        for row in self.t.deferred_due.range(..=(now_nanos, [0xff; 32]))? {
            due.push(Hash(row?.0.value().1));
        }
        let mut entries = Vec::with_capacity(due.len());
        for hash in due {
            let entry = self
                .remove_deferred(&hash)?
                .ok_or_else(|| Error::corrupt("deferred_due", "names an entry deferred lacks"))?;
            entries.push(entry);
        }
        Ok(entries)
    }

    fn deferred_usage(&self, author: &NodeId) -> Result<Usage, Error> {
        self.usage(DEFERRED_SET, author)
    }

    fn latest_deferred(&self, author: Option<&NodeId>) -> Result<Option<(u64, Hash)>, Error> {
        let last = match author {
            None => self
                .t
                .deferred_due
                .last()?
                .map(|(k, _)| (k.value().0, Hash(k.value().1))),
            Some(a) => self
                .t
                .deferred_by_author
                .range((a.0, 0, [0u8; 32])..=(a.0, u64::MAX, [0xff; 32]))?
                .next_back()
                .transpose()?
                .map(|(k, _)| (k.value().1, Hash(k.value().2))),
        };
        Ok(last)
    }
}

pub(crate) fn write_of(row: ViewRow) -> LwwWrite {
    LwwWrite {
        key: EntryKey::new(row.0, row.1),
        node_id: NodeId(row.2),
        is_delete: row.3,
    }
}

fn row_of(w: &LwwWrite) -> ViewRow {
    (w.key.hlc.0, w.key.hash.0, w.node_id.0, w.is_delete)
}

impl<A: Action> Store<A> {
    /// Verifies and stores `entries` (in any order) in one durable write transaction, by the
    /// rules of [`apply::insert`].
    ///
    /// Each entry is checked ([`LogEntry::verify`]: structure, hash, signature; the allowed
    /// authors; the drift bound, past which it is deferred; its HLC against its parents') and
    /// then applied if its parents are applied, held back otherwise; held-back entries are
    /// applied as soon as their parents are, whichever call brings them. Re-inserting a stored
    /// entry changes nothing. The batch is processed in key order, so a batch closed under
    /// parents applies fully.
    ///
    /// The report gives one [`InsertOutcome`](crate::InsertOutcome) per entry in input order
    /// (refused entries with their [`InsertError`](crate::InsertError)), every entry applied in
    /// application order, and earlier held-back entries dropped because an ancestor broke the
    /// parent HLC order. `Err` means the store failed and nothing of the batch was written.
    pub fn insert(
        &self,
        entries: impl IntoIterator<Item = LogEntry<A>>,
    ) -> Result<InsertReport, Error> {
        let entries: Vec<LogEntry<A>> = entries.into_iter().collect();
        let span = debug_span!("store.insert", entries = entries.len());
        let _guard = span.enter();
        // Signatures are checked on all cores before the write transaction starts (they are
        // about a third of the insert cost); only verified entries reach the tables.
        self.insert_checked(verify_batch(entries), Durability::Immediate)
    }

    /// Stores entries that are already verified (a node's own writes, signed as
    /// [`VerifiedEntry`]s, or entries verified elsewhere with
    /// [`verify_batch`]) by the same rules as [`Store::insert`], without checking their
    /// signatures a second time.
    pub fn insert_verified(
        &self,
        entries: impl IntoIterator<Item = VerifiedEntry<A>>,
    ) -> Result<InsertReport, Error> {
        let checked: Vec<_> = entries.into_iter().map(Ok).collect();
        let span = debug_span!("store.insert_verified", entries = checked.len());
        let _guard = span.enter();
        self.insert_checked(checked, Durability::Immediate)
    }

    /// [`Store::insert_verified`] for one batch of a sync: the same rules and the same report,
    /// but the commit does not wait for the disk (redb's `Durability::None`), which about
    /// doubles the rate of a bulk sync. Call [`Store::persist`] when the sync ends.
    ///
    /// Until then a crash (process or machine) loses this batch and every buffered one
    /// before it: the store reopens at its last durable commit, valid and closed under
    /// parents, and the next sync fetches the lost entries again. Use it only for entries
    /// another replica still holds, never for a node's own writes. Every
    /// [`MAX_BUFFERED_COMMITS`]-th buffered commit in a row is made durable, and any durable
    /// commit ([`Store::insert`], [`Store::insert_verified`]) flushes the buffered ones
    /// before it.
    pub fn insert_verified_buffered(
        &self,
        entries: impl IntoIterator<Item = VerifiedEntry<A>>,
    ) -> Result<InsertReport, Error> {
        let checked: Vec<_> = entries.into_iter().map(Ok).collect();
        let span = debug_span!("store.insert_verified_buffered", entries = checked.len());
        let _guard = span.enter();
        self.insert_checked(checked, Durability::None)
    }

    /// How many commits of [`Store::insert_verified_buffered`] are not durable yet (0 after
    /// [`Store::persist`] or any durable commit; never [`MAX_BUFFERED_COMMITS`] or more).
    pub fn buffered_commits(&self) -> u32 {
        *crate::lock(&self.writer)
    }

    /// Makes every commit of [`Store::insert_verified_buffered`] durable (one empty durable
    /// commit); does nothing when there is none. When it returns `Ok`, everything the store
    /// reported applied is on disk.
    pub fn persist(&self) -> Result<(), Error> {
        let mut buffered = crate::lock(&self.writer);
        if *buffered == 0 {
            return Ok(());
        }
        let span = debug_span!("store.persist", buffered = *buffered);
        let _guard = span.enter();
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        *buffered = 0;
        Ok(())
    }

    /// One write transaction running [`apply::insert`] over verification verdicts.
    fn insert_checked(
        &self,
        checked: Vec<Result<VerifiedEntry<A>, Unverified>>,
        durability: Durability,
    ) -> Result<InsertReport, Error> {
        let now = self.options.clock.now_nanos();
        let options = &self.options;
        self.write(durability, |state| {
            apply::insert(
                state,
                checked,
                now,
                &options.limits,
                options.authors_now().as_deref(),
            )
        })
    }

    /// Admits every deferred entry whose time has come (local wall time at or past its
    /// `not_before`), in key order, as [`Store::insert`] would, by [`apply::retry_deferred`].
    /// Call it periodically.
    pub fn retry_deferred(&self) -> Result<InsertReport, Error> {
        let span = debug_span!("store.retry_deferred");
        let _guard = span.enter();
        let now = self.options.clock.now_nanos();
        let limits = &self.options.limits;
        let allowed = self.options.authors_now();
        self.write(Durability::Immediate, |state| {
            apply::retry_deferred(state, now, limits, allowed.as_deref())
        })
    }

    /// Runs `body` in one write transaction, commits it with `durability` (a buffered commit
    /// that would make [`MAX_BUFFERED_COMMITS`] in a row is made durable), then publishes
    /// what it applied.
    fn write(
        &self,
        durability: Durability,
        body: impl FnOnce(&mut TxnState<'_, A>) -> Result<InsertReport, Error>,
    ) -> Result<InsertReport, Error> {
        let mut buffered = crate::lock(&self.writer);
        let durability = match durability {
            Durability::None if *buffered + 1 < MAX_BUFFERED_COMMITS => Durability::None,
            _ => Durability::Immediate,
        };
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        let (report, applied) = {
            let mut state = TxnState::new(Tables::open(&txn)?, self.read_index())?;
            let report = body(&mut state)?;
            state.flush()?;
            (report, state.applied)
        };
        txn.commit()?;
        *buffered = match durability {
            Durability::None => *buffered + 1,
            _ => 0,
        };
        tracing::debug!(
            applied = report.applied.len(),
            dropped = report.dropped.len(),
            durable = *buffered == 0,
            "committed"
        );
        self.publish(&applied);
        Ok(report)
    }
}
