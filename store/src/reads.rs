//! What a node reads: the DAG state (heads, held-back, missing, deferred), the
//! last-writer-wins view and its history, the log in key order and replays.

use std::collections::BTreeSet;

use oplog_protocol::dag::{LwwWrite, View};
use oplog_protocol::{Action, EntryKey, Hash, Hlc, LogEntry, NodeId, ObjectId, Op};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::error::Error;
use crate::insert::write_of;
use crate::range::ReadDag;
use crate::schema::{BY_HASH, DEFERRED, ENTRIES, HEADS, HELD, VIEW, WAITING, WRITES};
use crate::{decode_stored, register_bytes, Store};

/// One write to a register, as returned by [`Store::history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// The write.
    pub write: LwwWrite,
    /// Whether it is the register's current winner.
    pub won: bool,
}

/// Sizes of what a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Applied entries (the reconciled set).
    pub applied: u64,
    /// Entries held back for a missing parent.
    pub held_back: u64,
    /// Entries deferred for their HLC.
    pub deferred: u64,
    /// Registers in the view (tombstones included).
    pub registers: u64,
    /// Approximate heap bytes of the in-memory range index.
    pub index_bytes: u64,
}

impl<A: Action> Store<A> {
    /// Number of applied entries.
    pub fn len(&self) -> u64 {
        self.read_index().len()
    }

    /// Whether no entry is applied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sizes of the tables and the index.
    pub fn stats(&self) -> Result<Stats, Error> {
        let txn = self.db.begin_read()?;
        Ok(Stats {
            applied: txn.open_table(ENTRIES)?.len()?,
            held_back: txn.open_table(HELD)?.len()?,
            deferred: txn.open_table(DEFERRED)?.len()?,
            registers: txn.open_table(VIEW)?.len()?,
            index_bytes: self.read_index().heap_bytes() as u64,
        })
    }

    /// Whether the entry is applied.
    pub fn contains(&self, hash: &Hash) -> Result<bool, Error> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(BY_HASH)?.get(hash.0)?.is_some())
    }

    /// An applied entry by hash.
    pub fn entry(&self, hash: &Hash) -> Result<Option<LogEntry<A>>, Error> {
        ReadDag::open(&self.db)?.get(hash)
    }

    /// The heads of the applied DAG with their authors, ascending by key (the input of
    /// [`oplog_protocol::dag::should_merge`] and [`oplog_protocol::dag::merge_parents`]).
    pub fn heads(&self) -> Result<Vec<(EntryKey, NodeId)>, Error> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(HEADS)?.iter()? {
            let (k, v) = row?;
            let (hlc, author) = v.value();
            out.push((EntryKey::new(hlc, k.value()), NodeId(author)));
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Hashes to fetch: parents that held-back entries wait for and that are neither held
    /// back nor deferred here, ascending.
    pub fn missing(&self) -> Result<Vec<Hash>, Error> {
        let txn = self.db.begin_read()?;
        let (waiting, held, deferred) = (
            txn.open_table(WAITING)?,
            txn.open_table(HELD)?,
            txn.open_table(DEFERRED)?,
        );
        let mut out = BTreeSet::new();
        for row in waiting.iter()? {
            let parent = row?.0.value().0;
            if held.get(parent)?.is_none() && deferred.get(parent)?.is_none() {
                out.insert(Hash(parent));
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Held-back entries (verified, waiting for a parent), ascending by hash.
    pub fn held_back(&self) -> Result<Vec<LogEntry<A>>, Error> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(HELD)?.iter()? {
            out.push(decode_stored(row?.1.value(), "held entry")?);
        }
        Ok(out)
    }

    /// Deferred entries with the local wall time (ns) at which each becomes admissible.
    pub fn deferred(&self) -> Result<Vec<(LogEntry<A>, u64)>, Error> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(DEFERRED)?.iter()? {
            let row = row?;
            let (not_before, bytes) = row.1.value();
            out.push((decode_stored(bytes, "deferred entry")?, not_before));
        }
        Ok(out)
    }

    /// Up to `limit` applied entries from `from` on (inclusive), in `(HLC, hash)` order: the
    /// audit trail, and a replay source. Page on with the last key returned, plus one hash.
    pub fn log(&self, from: EntryKey, limit: usize) -> Result<Vec<LogEntry<A>>, Error> {
        let txn = self.db.begin_read()?;
        let entries = txn.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for row in entries.range((from.hlc.0, from.hash.0)..)?.take(limit) {
            out.push(decode_stored(row?.1.value(), "applied entry")?);
        }
        Ok(out)
    }

    /// Calls `f` on every applied entry in key order, stopping at the first error.
    pub fn for_each_entry(
        &self,
        mut f: impl FnMut(LogEntry<A>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let txn = self.db.begin_read()?;
        for row in txn.open_table(ENTRIES)?.iter()? {
            f(decode_stored(row?.1.value(), "applied entry")?)?;
        }
        Ok(())
    }

    /// The view as it was at stamp `hlc`: the replay of every applied entry with an HLC at or
    /// below it. Costs a scan of those entries.
    pub fn replay_until(&self, hlc: Hlc) -> Result<View<A>, Error> {
        let txn = self.db.begin_read()?;
        let mut view = View::new();
        for row in txn.open_table(ENTRIES)?.range(..=(hlc.0, [0xff; 32]))? {
            view.apply(&decode_stored::<A>(row?.1.value(), "applied entry")?);
        }
        Ok(view)
    }
}

impl<A: Action> Store<A> {
    /// The winning write of a register (a tombstone if the last write deleted it), or `None`
    /// if nothing was ever written to it.
    pub fn winner(&self, register: &A::Key) -> Result<Option<LwwWrite>, Error> {
        let reg = register_bytes(register)?;
        let txn = self.db.begin_read()?;
        let view = txn.open_table(VIEW)?;
        let row = view.get(reg.as_slice())?.map(|v| write_of(v.value()));
        Ok(row)
    }

    /// Every register with its winning write, in the order of the registers' encodings.
    pub fn view(&self) -> Result<Vec<(A::Key, LwwWrite)>, Error> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in txn.open_table(VIEW)?.iter()? {
            let (k, v) = row?;
            out.push((decode_register::<A>(k.value())?, write_of(v.value())));
        }
        Ok(out)
    }

    /// Every applied write of a register, oldest first, marking the winner.
    pub fn history(&self, register: &A::Key) -> Result<Vec<HistoryItem>, Error> {
        let reg = register_bytes(register)?;
        let winner = self.winner(register)?;
        let dag = ReadDag::open(&self.db)?;
        let txn = self.db.begin_read()?;
        let writes = txn.open_table(WRITES)?;
        let mut out = Vec::new();
        for row in writes
            .range((reg.as_slice(), 0u64, [0u8; 32])..=(reg.as_slice(), u64::MAX, [0xff; 32]))?
        {
            let (_, hlc, hash) = row?.0.value();
            let entry: LogEntry<A> = dag.get(&Hash(hash))?.ok_or_else(|| {
                Error::corrupt(
                    "writes",
                    format!("history names {} which is not applied", Hash(hash)),
                )
            })?;
            let (_, write) = LwwWrite::of(&entry).ok_or_else(|| {
                Error::corrupt(
                    "writes",
                    format!("history entry at {hlc} writes no register"),
                )
            })?;
            out.push(HistoryItem {
                won: Some(write) == winner,
                write,
            });
        }
        Ok(out)
    }
}

pub(crate) fn decode_register<A: Action>(bytes: &[u8]) -> Result<A::Key, Error> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::corrupt("view", format!("register key does not decode: {e}")))
}

impl Store<Op> {
    /// The object `bucket/key` points at now, or `None` if it was never written or deleted.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<ObjectId>, Error> {
        let Some(w) = self.winner(&(bucket.to_string(), key.to_string()))? else {
            return Ok(None);
        };
        if w.is_delete {
            return Ok(None);
        }
        self.object_of(&w)
    }

    fn object_of(&self, w: &LwwWrite) -> Result<Option<ObjectId>, Error> {
        match self.entry(&w.key.hash)? {
            Some(LogEntry {
                action: Op::Put { object_id, .. },
                ..
            }) => Ok(Some(object_id)),
            Some(_) => Err(Error::corrupt(
                "view",
                format!("view winner {} is not a put", w.key.hash),
            )),
            None => Err(Error::corrupt(
                "view",
                format!("view winner {} is not applied", w.key.hash),
            )),
        }
    }

    /// The live objects of `bucket` whose key starts with `prefix`, in key order (deleted keys
    /// left out). Scans the bucket's registers.
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, ObjectId)>, Error> {
        // postcard writes a string as varint length then bytes, so every register of the
        // bucket starts with the encoding of the bucket name alone.
        let start = register_bytes(&bucket.to_string())?;
        let txn = self.db.begin_read()?;
        let view = txn.open_table(VIEW)?;
        let mut live = Vec::new();
        for row in view.range(start.as_slice()..)? {
            let (k, v) = row?;
            if !k.value().starts_with(&start) {
                break;
            }
            let (b, key): (String, String) = decode_register::<Op>(k.value())?;
            let w = write_of(v.value());
            if b == bucket && key.starts_with(prefix) && !w.is_delete {
                live.push((key, w));
            }
        }
        drop(view);
        drop(txn);
        let mut out = Vec::with_capacity(live.len());
        for (key, w) in live {
            if let Some(id) = self.object_of(&w)? {
                out.push((key, id));
            }
        }
        out.sort();
        Ok(out)
    }
}
