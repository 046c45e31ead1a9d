//! The insert pipeline: verify, defer, hold back, apply and promote, in one write
//! transaction. It follows [`oplog_protocol::dag::MemoryReplica`] step for step and returns the
//! same [`InsertReport`]; the DAG rules themselves ([`check_parent_order`], [`missing_parents`],
//! [`admission`], [`lww_cmp`]) come from `oplog_protocol`.

use std::borrow::Cow;
use std::cmp::Ordering;

use oplog_protocol::dag::{
    check_parent_order, lww_cmp, missing_parents, DagError, DagView, InsertError, InsertOutcome,
    InsertReport, LwwWrite,
};
use oplog_protocol::hlc::{admission, Admission};
use oplog_protocol::{Action, EntryError, EntryKey, Hash, LogEntry, NodeId, StoreError};
use redb::{ReadableTable, Table, WriteTransaction};
use tracing::debug_span;

use crate::error::{from_store_error, Error};
use crate::schema::*;
use crate::{decode_stored, register_bytes, Store};

/// The tables one insert transaction writes.
pub(crate) struct Tables<'t> {
    pub(crate) entries: Table<'t, (u64, [u8; 32]), &'static [u8]>,
    pub(crate) by_hash: Table<'t, [u8; 32], u64>,
    pub(crate) heads: Table<'t, [u8; 32], (u64, [u8; 32])>,
    pub(crate) held: Table<'t, [u8; 32], &'static [u8]>,
    pub(crate) waiting: Table<'t, ([u8; 32], [u8; 32]), ()>,
    pub(crate) deferred: Table<'t, [u8; 32], (u64, &'static [u8])>,
    pub(crate) deferred_due: Table<'t, (u64, [u8; 32]), ()>,
    pub(crate) view: Table<'t, &'static [u8], ViewRow>,
    pub(crate) writes: Table<'t, (&'static [u8], u64, [u8; 32]), ()>,
}

impl<'t> Tables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, Error> {
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

    fn is_applied(&self, hash: &Hash) -> Result<bool, Error> {
        Ok(self.by_hash.get(hash.0)?.is_some())
    }
}

/// The applied entries of an open write transaction, as the protocol's DAG rules read them.
struct TxnDag<'a, 't>(&'a Tables<'t>);

impl<A: Action> DagView<A> for TxnDag<'_, '_> {
    fn get(&self, hash: &Hash) -> Result<Option<Cow<'_, LogEntry<A>>>, StoreError> {
        let Some(hlc) = self.0.by_hash.get(hash.0).map_err(Error::from)? else {
            return Ok(None);
        };
        let hlc = hlc.value();
        let bytes = self
            .0
            .entries
            .get((hlc, hash.0))
            .map_err(Error::from)?
            .ok_or_else(|| Error::Corrupt(format!("by_hash names {hash} but entries lacks it")))?;
        Ok(Some(Cow::Owned(decode_stored(
            bytes.value(),
            "applied entry",
        )?)))
    }

    fn contains(&self, hash: &Hash) -> Result<bool, StoreError> {
        Ok(self.0.is_applied(hash)?)
    }
}

fn dag_err(e: DagError) -> Result<InsertError, Error> {
    match e {
        DagError::ParentOrder(e) => Ok(InsertError::ParentOrder(e)),
        DagError::Store(e) => Err(from_store_error(e)),
        other => Err(Error::Corrupt(other.to_string())),
    }
}

/// One insert or retry call in progress.
struct Pass<'a, 't, A: Action> {
    t: &'a mut Tables<'t>,
    report: InsertReport,
    applied: Vec<LogEntry<A>>,
}

impl<A: Action> Pass<'_, '_, A> {
    fn insert_one(
        &mut self,
        entry: LogEntry<A>,
        verified: Option<Result<(), EntryError>>,
        now_nanos: u64,
        options: &crate::Options,
    ) -> Result<InsertOutcome, Error> {
        if self.t.is_applied(&entry.hash)? {
            return Ok(InsertOutcome::Duplicate);
        }
        if self.t.held.get(entry.hash.0)?.is_some() {
            return Ok(InsertOutcome::HeldBack {
                missing: self.unapplied_parents(&entry)?,
            });
        }
        if let Err(e) = verified.unwrap_or_else(|| entry.verify()) {
            return Ok(InsertOutcome::Rejected(e.into()));
        }
        if let Some(allowed) = &options.allowed_authors {
            if !allowed.contains(&entry.node_id) {
                return Ok(InsertOutcome::Rejected(InsertError::NotAllowed(
                    entry.node_id,
                )));
            }
        }
        if let Admission::Defer { not_before } = admission(entry.hlc, now_nanos, options.max_drift)
        {
            self.remove_deferred(&entry.hash)?;
            let bytes = entry.encode();
            self.t
                .deferred
                .insert(entry.hash.0, (not_before, bytes.as_slice()))?;
            self.t.deferred_due.insert((not_before, entry.hash.0), ())?;
            return Ok(InsertOutcome::Deferred { not_before });
        }
        self.remove_deferred(&entry.hash)?;
        self.admit(entry)
    }

    fn remove_deferred(&mut self, hash: &Hash) -> Result<(), Error> {
        let old = self.t.deferred.remove(hash.0)?.map(|v| v.value().0);
        if let Some(not_before) = old {
            self.t.deferred_due.remove((not_before, hash.0))?;
        }
        Ok(())
    }

    /// Admits a verified, admissible entry: parent order, then apply or hold back.
    fn admit(&mut self, entry: LogEntry<A>) -> Result<InsertOutcome, Error> {
        if let Err(e) = check_parent_order(&entry, &TxnDag(self.t)) {
            let err = dag_err(e)?;
            self.drop_waiters(entry.hash)?;
            return Ok(InsertOutcome::Rejected(err));
        }
        let missing = missing_parents(&entry, &TxnDag(self.t)).map_err(|e| match dag_err(e) {
            Ok(e) => Error::Corrupt(e.to_string()),
            Err(e) => e,
        })?;
        if missing.is_empty() {
            self.apply_ready(entry)?;
            return Ok(InsertOutcome::Applied);
        }
        for p in &missing {
            self.t.waiting.insert((p.0, entry.hash.0), ())?;
        }
        let bytes = entry.encode();
        self.t.held.insert(entry.hash.0, bytes.as_slice())?;
        Ok(InsertOutcome::HeldBack { missing })
    }

    /// Applies an entry whose parents are all applied, then every held-back entry this makes
    /// ready, iteratively (long chains arriving child-first do not recurse).
    fn apply_ready(&mut self, entry: LogEntry<A>) -> Result<(), Error> {
        let mut ready = vec![entry];
        while let Some(entry) = ready.pop() {
            if let Err(e) = check_parent_order(&entry, &TxnDag(self.t)) {
                let err = dag_err(e)?;
                self.report.dropped.push((entry.hash, err));
                self.drop_waiters(entry.hash)?;
                continue;
            }
            self.apply(&entry)?;
            self.report.applied.push(entry.hash);
            for child in self.take_waiters(entry.hash)? {
                let Some(bytes) = self.t.held.get(child.0)?.map(|b| b.value().to_vec()) else {
                    continue;
                };
                let held: LogEntry<A> = decode_stored(&bytes, "held entry")?;
                if self.unapplied_parents(&held)?.is_empty() {
                    self.t.held.remove(child.0)?;
                    ready.push(held);
                }
            }
            self.applied.push(entry);
        }
        Ok(())
    }

    /// Writes one entry whose parents are applied: entries, index, heads, view, history.
    fn apply(&mut self, entry: &LogEntry<A>) -> Result<(), Error> {
        let (hlc, hash) = (entry.hlc.0, entry.hash.0);
        let bytes = entry.encode();
        self.t.entries.insert((hlc, hash), bytes.as_slice())?;
        self.t.by_hash.insert(hash, hlc)?;
        for p in &entry.parents {
            self.t.heads.remove(p.0)?;
        }
        self.t.heads.insert(hash, (hlc, entry.node_id.0))?;
        if let Some((register, write)) = LwwWrite::of(entry) {
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
        Ok(())
    }

    /// Removes and returns the held-back entries recorded as waiting for `parent`.
    fn take_waiters(&mut self, parent: Hash) -> Result<Vec<Hash>, Error> {
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

    /// Drops, transitively, every held-back entry waiting for `root`, which can never apply.
    fn drop_waiters(&mut self, root: Hash) -> Result<(), Error> {
        let mut stack = vec![root];
        while let Some(h) = stack.pop() {
            for child in self.take_waiters(h)? {
                let Some(bytes) = self.t.held.remove(child.0)?.map(|b| b.value().to_vec()) else {
                    continue;
                };
                let held: LogEntry<A> = decode_stored(&bytes, "held entry")?;
                for p in &held.parents {
                    self.t.waiting.remove((p.0, child.0))?;
                }
                self.report
                    .dropped
                    .push((child, InsertError::AncestorRejected(root)));
                stack.push(child);
            }
        }
        Ok(())
    }

    fn unapplied_parents(&self, entry: &LogEntry<A>) -> Result<Vec<Hash>, Error> {
        let mut v = Vec::new();
        for p in &entry.parents {
            if !self.t.is_applied(p)? {
                v.push(*p);
            }
        }
        Ok(v)
    }

    /// Rewrites `HeldBack` outcomes of entries that a later entry of the same call promoted or
    /// dropped.
    fn finish(mut self) -> Result<(InsertReport, Vec<LogEntry<A>>), Error> {
        let mut outcomes = std::mem::take(&mut self.report.outcomes);
        for (hash, outcome) in &mut outcomes {
            if let InsertOutcome::HeldBack { .. } = outcome {
                *outcome = if self.t.is_applied(hash)? {
                    InsertOutcome::Applied
                } else if let Some(bytes) = self.t.held.get(hash.0)?.map(|b| b.value().to_vec()) {
                    let held: LogEntry<A> = decode_stored(&bytes, "held entry")?;
                    InsertOutcome::HeldBack {
                        missing: self.unapplied_parents(&held)?,
                    }
                } else {
                    let err = self
                        .report
                        .dropped
                        .iter()
                        .find(|(h, _)| h == hash)
                        .map(|(_, e)| e.clone())
                        .unwrap_or(InsertError::AncestorRejected(*hash));
                    InsertOutcome::Rejected(err)
                };
            }
        }
        self.report.outcomes = outcomes;
        Ok((self.report, self.applied))
    }
}

/// Below this many entries a batch is verified inline, one entry at a time.
const PARALLEL_VERIFY_MIN: usize = 64;

/// Signature and hash checks of a large batch, spread over the cores before the write
/// transaction starts (they are about a third of the insert cost). `None` for a small batch:
/// the pipeline then verifies each entry when it reaches that step, as the model does.
fn verify_all<A: Action>(batch: &[(usize, LogEntry<A>)]) -> Vec<Option<Result<(), EntryError>>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if batch.len() < PARALLEL_VERIFY_MIN || threads == 1 {
        return vec![None; batch.len()];
    }
    let per = batch.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = batch
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(_, e)| Some(e.verify()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
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
    /// Verifies and stores `entries` (in any order) in one durable write transaction.
    ///
    /// Each entry is checked ([`LogEntry::verify`]: structure, hash, signature; the allowed
    /// authors; the drift bound, past which it is deferred; its HLC against its parents') and
    /// then applied if its parents are applied, held back otherwise; held-back entries are
    /// applied as soon as their parents are, whichever call brings them. Re-inserting a stored
    /// entry changes nothing. The batch is processed in key order, so a batch closed under
    /// parents applies fully.
    ///
    /// The report gives one [`InsertOutcome`] per entry in input order (refused entries with
    /// their [`InsertError`]), every entry applied in application order, and earlier held-back
    /// entries dropped because an ancestor broke the parent HLC order. `Err` means the store
    /// failed and nothing of the batch was written.
    pub fn insert(
        &self,
        entries: impl IntoIterator<Item = LogEntry<A>>,
    ) -> Result<InsertReport, Error> {
        let mut batch: Vec<(usize, LogEntry<A>)> = entries.into_iter().enumerate().collect();
        let span = debug_span!("store.insert", entries = batch.len());
        let _guard = span.enter();
        batch.sort_by_key(|(_, e)| e.key());
        let mut verified = verify_all(&batch).into_iter();
        let now = self.options.clock.now_nanos();
        self.write(|pass| {
            let mut outcomes = vec![None; batch.len()];
            for (i, entry) in batch {
                let hash = entry.hash;
                let checked = verified.next().flatten();
                let outcome = pass.insert_one(entry, checked, now, &self.options)?;
                outcomes[i] = Some((hash, outcome));
            }
            pass.report.outcomes = outcomes.into_iter().flatten().collect();
            Ok(())
        })
    }

    /// Admits every deferred entry whose time has come (local wall time at or past its
    /// `not_before`), in key order, as [`Store::insert`] would. Call it periodically.
    pub fn retry_deferred(&self) -> Result<InsertReport, Error> {
        let span = debug_span!("store.retry_deferred");
        let _guard = span.enter();
        let now = self.options.clock.now_nanos();
        self.write(|pass| {
            let mut due = Vec::new();
            for row in pass.t.deferred_due.range(..=(now, [0xff; 32]))? {
                due.push(row?.0.value());
            }
            let mut entries = Vec::with_capacity(due.len());
            for (not_before, hash) in due {
                pass.t.deferred_due.remove((not_before, hash))?;
                let bytes = pass
                    .t
                    .deferred
                    .remove(hash)?
                    .map(|v| v.value().1.to_vec())
                    .ok_or_else(|| {
                        Error::Corrupt("deferred_due names an entry deferred lacks".into())
                    })?;
                entries.push(decode_stored::<A>(&bytes, "deferred entry")?);
            }
            entries.sort_by_key(|e| e.key());
            for entry in entries {
                let hash = entry.hash;
                let outcome = if pass.t.is_applied(&hash)? {
                    InsertOutcome::Duplicate
                } else {
                    pass.admit(entry)?
                };
                pass.report.outcomes.push((hash, outcome));
            }
            Ok(())
        })
    }

    /// Runs `body` in one write transaction, commits durably, then publishes what it applied.
    fn write(
        &self,
        body: impl FnOnce(&mut Pass<'_, '_, A>) -> Result<(), Error>,
    ) -> Result<InsertReport, Error> {
        let _writer = crate::lock(&self.writer);
        let txn = self.db.begin_write()?;
        let (report, applied) = {
            let mut tables = Tables::open(&txn)?;
            let mut pass = Pass {
                t: &mut tables,
                report: InsertReport::default(),
                applied: Vec::new(),
            };
            body(&mut pass)?;
            pass.finish()?
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
