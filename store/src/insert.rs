//! The insert pipeline over redb: the rules of [`oplog_protocol::apply`] (the same code
//! [`oplog_protocol::dag::MemoryReplica`] runs) over the tables of one write transaction, so
//! [`Store::insert`] returns the same [`InsertReport`] and a failed call writes nothing.

use std::borrow::Cow;
use std::cmp::Ordering;

use oplog_protocol::apply::{self, ReplicaState};
use oplog_protocol::dag::{lww_cmp, InsertReport, LwwWrite};
use oplog_protocol::{Action, EntryError, EntryKey, Hash, Hlc, LogEntry, NodeId};
use redb::{ReadableTable, Table, WriteTransaction};
use tracing::debug_span;

use crate::error::Error;
use crate::schema::*;
use crate::{decode_stored, register_bytes, Store};

/// The tables one insert transaction writes.
struct Tables<'t> {
    entries: Table<'t, (u64, [u8; 32]), &'static [u8]>,
    by_hash: Table<'t, [u8; 32], u64>,
    heads: Table<'t, [u8; 32], (u64, [u8; 32])>,
    held: Table<'t, [u8; 32], &'static [u8]>,
    waiting: Table<'t, ([u8; 32], [u8; 32]), ()>,
    deferred: Table<'t, [u8; 32], (u64, &'static [u8])>,
    deferred_due: Table<'t, (u64, [u8; 32]), ()>,
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
            view: txn.open_table(VIEW)?,
            writes: txn.open_table(WRITES)?,
        })
    }
}

/// The replica state inside one open write transaction, plus the entries it applied (published
/// to the index and subscribers after the commit).
struct TxnState<'t, A> {
    t: Tables<'t>,
    applied: Vec<LogEntry<A>>,
}

impl<A: Action> TxnState<'_, A> {
    fn remove_deferred(&mut self, hash: &Hash) -> Result<(), Error> {
        let old = self.t.deferred.remove(hash.0)?.map(|v| v.value().0);
        if let Some(not_before) = old {
            self.t.deferred_due.remove((not_before, hash.0))?;
        }
        Ok(())
    }
}

impl<A: Action> ReplicaState<A> for TxnState<'_, A> {
    type Error = Error;

    fn applied_hlc(&self, hash: &Hash) -> Result<Option<Hlc>, Error> {
        Ok(self.t.by_hash.get(hash.0)?.map(|v| Hlc(v.value())))
    }

    /// Writes one entry whose parents are applied: entries, index, heads, view, history.
    fn apply(&mut self, entry: LogEntry<A>) -> Result<(), Error> {
        let (hlc, hash) = (entry.hlc.0, entry.hash.0);
        let bytes = entry.encode();
        self.t.entries.insert((hlc, hash), bytes.as_slice())?;
        self.t.by_hash.insert(hash, hlc)?;
        for p in &entry.parents {
            self.t.heads.remove(p.0)?;
        }
        self.t.heads.insert(hash, (hlc, entry.node_id.0))?;
        if let Some((register, write)) = LwwWrite::of(&entry) {
            let reg = register_bytes(&register)?;
            let current = self
                .t
                .view
                .get(reg.as_slice())?
                .map(|v| write_of(v.value()));
            if current.is_none_or(|cur| lww_cmp(&write, &cur) == Ordering::Greater) {
                self.t.view.insert(reg.as_slice(), row_of(&write))?;
            }
            self.t.writes.insert((reg.as_slice(), hlc, hash), ())?;
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
        for p in missing {
            self.t.waiting.insert((p.0, entry.hash.0), ())?;
        }
        let bytes = entry.encode();
        self.t.held.insert(entry.hash.0, bytes.as_slice())?;
        Ok(())
    }

    fn take_held(&mut self, hash: &Hash) -> Result<Option<LogEntry<A>>, Error> {
        match self.t.held.remove(hash.0)? {
            Some(bytes) => Ok(Some(decode_stored(bytes.value(), "held entry")?)),
            None => Ok(None),
        }
    }

    fn take_waiters(&mut self, parent: &Hash) -> Result<Vec<Hash>, Error> {
        let mut children = Vec::new();
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

    fn defer(&mut self, entry: LogEntry<A>, not_before: u64) -> Result<(), Error> {
        self.remove_deferred(&entry.hash)?;
        let bytes = entry.encode();
        self.t
            .deferred
            .insert(entry.hash.0, (not_before, bytes.as_slice()))?;
        self.t.deferred_due.insert((not_before, entry.hash.0), ())?;
        Ok(())
    }

    fn undefer(&mut self, hash: &Hash) -> Result<(), Error> {
        self.remove_deferred(hash)
    }

    fn take_due(&mut self, now_nanos: u64) -> Result<Vec<LogEntry<A>>, Error> {
        let mut due = Vec::new();
        for row in self.t.deferred_due.range(..=(now_nanos, [0xff; 32]))? {
            due.push(row?.0.value());
        }
        let mut entries = Vec::with_capacity(due.len());
        for (not_before, hash) in due {
            self.t.deferred_due.remove((not_before, hash))?;
            let bytes = self
                .t
                .deferred
                .remove(hash)?
                .map(|v| v.value().1.to_vec())
                .ok_or_else(|| Error::corrupt("deferred_due", "names an entry deferred lacks"))?;
            entries.push(decode_stored::<A>(&bytes, "deferred entry")?);
        }
        Ok(entries)
    }
}

/// Below this many entries a batch is verified inline, one entry at a time.
const PARALLEL_VERIFY_MIN: usize = 64;

/// Signature and hash checks of a large batch, spread over the cores before the write
/// transaction starts (they are about a third of the insert cost), in input order. `None` for
/// a small batch: [`apply::insert`] then verifies each entry when it reaches that step.
fn verify_all<A: Action>(batch: &[LogEntry<A>]) -> Option<Vec<Result<(), EntryError>>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if batch.len() < PARALLEL_VERIFY_MIN || threads == 1 {
        return None;
    }
    let per = batch.len().div_ceil(threads);
    Some(std::thread::scope(|s| {
        let handles: Vec<_> = batch
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(|e| e.verify()).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    }))
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
        let verified = verify_all(&entries);
        let now = self.options.clock.now_nanos();
        let options = &self.options;
        self.write(|state| {
            apply::insert(
                state,
                entries,
                verified,
                now,
                options.max_drift,
                options.allowed_authors.as_ref(),
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
        self.write(|state| apply::retry_deferred(state, now))
    }

    /// Runs `body` in one write transaction, commits durably, then publishes what it applied.
    fn write(
        &self,
        body: impl FnOnce(&mut TxnState<'_, A>) -> Result<InsertReport, Error>,
    ) -> Result<InsertReport, Error> {
        let _writer = crate::lock(&self.writer);
        let txn = self.db.begin_write()?;
        let (report, applied) = {
            let mut state = TxnState {
                t: Tables::open(&txn)?,
                applied: Vec::new(),
            };
            let report = body(&mut state)?;
            (report, state.applied)
        };
        txn.commit()?;
        tracing::debug!(
            applied = report.applied.len(),
            dropped = report.dropped.len(),
            "committed"
        );
        self.publish(applied);
        Ok(report)
    }
}
