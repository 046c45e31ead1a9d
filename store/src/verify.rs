//! [`Store::verify`]: a full walk that re-derives everything the store keeps and compares.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use oplog_protocol::dag::{check_parent_order, missing_parents, Heads, LwwWrite, View};
use oplog_protocol::{Action, Aggregate, EntryKey, Hash, LogEntry};
use redb::{ReadableDatabase, ReadableTable};
use tracing::info_span;

use crate::error::{from_store_error, Error};
use crate::insert::write_of;
use crate::range::ReadDag;
use crate::schema::{
    DEFERRED, DEFERRED_BY_AUTHOR, DEFERRED_DUE, ENTRIES, HEADS, HELD, HELD_BY_AUTHOR, HELD_LACKING,
    HELD_ORDER, KEPT_BYTES, KEPT_USAGE, VIEW, WAITING, WRITES,
};
use crate::{register_bytes, Store};

/// One inconsistency found by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A stored entry fails decoding or [`LogEntry::verify`], or is stored under a wrong key.
    BadEntry {
        /// Where it is stored (`entries`, `held` or `deferred`) and under which key.
        at: String,
        /// What is wrong.
        error: String,
    },
    /// The DAG rules are broken: a parent is missing or not older, or a held-back entry has
    /// all its parents applied.
    Dag(String),
    /// A derived table (`by_hash`, `heads`, `view`, `writes`, `waiting`, `deferred_due`, or
    /// one of the cap tables `held_lacking`, `held_order`, `held_by_author`,
    /// `deferred_by_author`, `kept_usage`, `kept_bytes`) disagrees with a replay of the
    /// entries. For the cap tables the text starts with the table's name.
    Index(String),
    /// The in-memory range index disagrees with the `entries` table.
    RangeIndex(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadEntry { at, error } => write!(f, "bad entry at {at}: {error}"),
            Problem::Dag(s) => write!(f, "DAG rule broken: {s}"),
            Problem::Index(s) => write!(f, "derived table wrong: {s}"),
            Problem::RangeIndex(s) => write!(f, "range index wrong: {s}"),
        }
    }
}

/// What [`Store::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Applied entries checked.
    pub entries: u64,
    /// Held-back entries checked.
    pub held_back: u64,
    /// Deferred entries checked.
    pub deferred: u64,
    /// Everything found wrong (at most [`MAX_PROBLEMS`] are listed).
    pub problems: Vec<Problem>,
}

/// Most problems [`Store::verify`] lists before it stops listing.
pub const MAX_PROBLEMS: usize = 1000;

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn push(&mut self, p: Problem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

fn bad(at: impl fmt::Display, error: impl fmt::Display) -> Problem {
    Problem::BadEntry {
        at: at.to_string(),
        error: error.to_string(),
    }
}

impl<A: Action> Store<A> {
    /// Walks the whole store: checks every entry's hash and signature (and author, if the
    /// store restricts authors), every parent link and the parent HLC order, the `by_hash`,
    /// `heads`, `view`, `writes`, held-back and deferred tables against a replay of the
    /// entries with the protocol's rules, the tables behind the caps on held-back and deferred
    /// entries (`held_lacking`, `held_order`, `held_by_author`, `deferred_by_author`,
    /// `kept_usage`, `kept_bytes`) against the held-back and deferred entries, and the
    /// in-memory range index against the entries.
    ///
    /// Costs a full scan and one signature check per entry (about 30 000 per second per core).
    /// Inserts wait while it runs. `Err` only when the store cannot be read at all; what is
    /// wrong is listed in [`VerifyReport::problems`].
    pub fn verify(&self) -> Result<VerifyReport, Error> {
        let span = info_span!("store.verify");
        let _guard = span.enter();
        let _writer = crate::lock(&self.writer);
        let mut report = VerifyReport::default();
        let dag = ReadDag::open(&self.db)?;
        let txn = self.db.begin_read()?;
        let entries = txn.open_table(ENTRIES)?;

        let mut heads = Heads::new();
        let mut view: View<A> = View::new();
        let mut writes: Vec<(Vec<u8>, u64, [u8; 32])> = Vec::new();
        let mut keys: Vec<EntryKey> = Vec::new();
        for row in entries.iter()? {
            let (k, v) = row?;
            let (hlc, hash) = k.value();
            let at = format!("entries ({hlc}, {})", Hash(hash));
            report.entries += 1;
            keys.push(EntryKey::new(hlc, hash));
            let entry = match LogEntry::<A>::decode(v.value()) {
                Ok(e) => e,
                Err(e) => {
                    report.push(bad(&at, e));
                    continue;
                }
            };
            self.check_entry(&entry, &at, &mut report);
            if entry.key() != EntryKey::new(hlc, hash) {
                report.push(bad(&at, format!("entry's own key is {:?}", entry.key())));
            }
            match dag.by_hash.get(hash)? {
                Some(h) if h.value() == hlc => {}
                other => report.push(Problem::Index(format!(
                    "by_hash[{}] is {:?}, expected {hlc}",
                    Hash(hash),
                    other.map(|h| h.value())
                ))),
            }
            match missing_parents(&entry, &dag) {
                Ok(m) if m.is_empty() => {}
                Ok(m) => report.push(Problem::Dag(format!(
                    "applied entry {} lacks parents {m:?}",
                    entry.hash
                ))),
                Err(e) => report.push(Problem::Dag(e.to_string())),
            }
            if let Err(e) = check_parent_order(&entry, &dag) {
                report.push(Problem::Dag(e.to_string()));
            }
            if let Some((reg, _)) = LwwWrite::of(&entry) {
                writes.push((register_bytes(&reg)?, hlc, hash));
            }
            view.apply(&entry);
            heads.apply(&entry);
        }
        let by_hash_len = redb::ReadableTableMetadata::len(&dag.by_hash)?;
        if by_hash_len != report.entries {
            report.push(Problem::Index(format!(
                "by_hash has {by_hash_len} rows for {} entries",
                report.entries
            )));
        }

        // heads, recomputed with the protocol's rule
        let expected_heads: BTreeSet<Hash> = heads.hashes().into_iter().collect();
        let mut stored_heads = BTreeSet::new();
        for row in txn.open_table(HEADS)?.iter()? {
            let (k, v) = row?;
            stored_heads.insert(Hash(k.value()));
            match dag.get::<A>(&Hash(k.value())) {
                Ok(Some(e)) if (e.hlc.0, e.node_id.0) == v.value() => {}
                Ok(_) => report.push(Problem::Index(format!(
                    "head {} does not match an applied entry",
                    Hash(k.value())
                ))),
                Err(e) => report.push(Problem::Index(e.to_string())),
            }
        }
        if stored_heads != expected_heads {
            report.push(Problem::Index(format!(
                "heads are {stored_heads:?}, a replay gives {expected_heads:?}"
            )));
        }

        // the view against a replay
        let mut expected_view: BTreeMap<Vec<u8>, LwwWrite> = BTreeMap::new();
        for (k, w) in view.iter() {
            expected_view.insert(register_bytes(k)?, *w);
        }
        let mut stored_view = BTreeMap::new();
        for row in txn.open_table(VIEW)?.iter()? {
            let (k, v) = row?;
            stored_view.insert(k.value().to_vec(), write_of(v.value()));
        }
        if stored_view != expected_view {
            let differ = expected_view
                .iter()
                .filter(|(k, w)| stored_view.get(*k) != Some(*w))
                .count()
                + stored_view
                    .keys()
                    .filter(|k| !expected_view.contains_key(*k))
                    .count();
            report.push(Problem::Index(format!(
                "view differs from a replay in {differ} registers"
            )));
        }
        writes.sort();
        let mut stored_writes = Vec::new();
        for row in txn.open_table(WRITES)?.iter()? {
            let row = row?;
            let (reg, hlc, hash) = row.0.value();
            stored_writes.push((reg.to_vec(), hlc, hash));
        }
        if stored_writes != writes {
            report.push(Problem::Index(format!(
                "writes has {} rows, a replay gives {}",
                stored_writes.len(),
                writes.len()
            )));
        }

        self.verify_held(&txn, &dag, &mut report)?;
        self.verify_deferred(&txn, &mut report)?;
        Self::verify_caps(&txn, &mut report)?;

        // the in-memory range index
        let index = self.read_index();
        if index.len() != keys.len() as u64 {
            report.push(Problem::RangeIndex(format!(
                "index holds {} keys, entries {}",
                index.len(),
                keys.len()
            )));
        } else if index.all_keys() != keys {
            report.push(Problem::RangeIndex("index keys differ from entries".into()));
        } else if *index.total() != Aggregate::of_keys(keys.iter()) {
            report.push(Problem::RangeIndex(
                "index aggregate differs from the keys' aggregate".into(),
            ));
        }
        Ok(report)
    }

    fn check_entry(&self, entry: &LogEntry<A>, at: &str, report: &mut VerifyReport) {
        if let Err(e) = entry.verify() {
            report.push(bad(at, e));
        }
        // Once the authors changed at run time, which list admitted a stored entry is not
        // recorded: every stored entry was admitted by the list in force then.
        let open_time = (!self.options.run_time_authors_set())
            .then_some(self.options.allowed_authors.as_ref())
            .flatten();
        if let Some(allowed) = open_time {
            if !allowed.contains(&entry.node_id) {
                report.push(bad(at, format!("author {} is not allowed", entry.node_id)));
            }
        }
    }

    fn verify_held(
        &self,
        txn: &redb::ReadTransaction,
        dag: &ReadDag,
        report: &mut VerifyReport,
    ) -> Result<(), Error> {
        let held = txn.open_table(HELD)?;
        let mut expected_waiting = BTreeSet::new();
        for row in held.iter()? {
            let (k, v) = row?;
            let at = format!("held {}", Hash(k.value()));
            report.held_back += 1;
            let entry = match LogEntry::<A>::decode(v.value()) {
                Ok(e) => e,
                Err(e) => {
                    report.push(bad(&at, e));
                    continue;
                }
            };
            self.check_entry(&entry, &at, report);
            if entry.hash.0 != k.value() {
                report.push(bad(&at, format!("entry's own hash is {}", entry.hash)));
            }
            if dag.by_hash.get(k.value())?.is_some() {
                report.push(Problem::Dag(format!(
                    "{} is both held back and applied",
                    entry.hash
                )));
            }
            let missing = missing_parents(&entry, dag).map_err(|e| match e {
                oplog_protocol::dag::DagError::Store(e) => from_store_error(e),
                other => Error::corrupt("held", other.to_string()),
            })?;
            if missing.is_empty() {
                report.push(Problem::Dag(format!(
                    "{} is held back but all its parents are applied",
                    entry.hash
                )));
            }
            for p in missing {
                expected_waiting.insert((p.0, entry.hash.0));
            }
        }
        let mut stored_waiting = BTreeSet::new();
        for row in txn.open_table(WAITING)?.iter()? {
            stored_waiting.insert(row?.0.value());
        }
        if stored_waiting != expected_waiting {
            report.push(Problem::Index(format!(
                "waiting has {} rows, the held-back entries need {}",
                stored_waiting.len(),
                expected_waiting.len()
            )));
        }
        Ok(())
    }

    fn verify_deferred(
        &self,
        txn: &redb::ReadTransaction,
        report: &mut VerifyReport,
    ) -> Result<(), Error> {
        let mut expected_due = BTreeSet::new();
        for row in txn.open_table(DEFERRED)?.iter()? {
            let (k, v) = row?;
            let (not_before, bytes) = v.value();
            let at = format!("deferred {}", Hash(k.value()));
            report.deferred += 1;
            match LogEntry::<A>::decode(bytes) {
                Ok(e) => {
                    self.check_entry(&e, &at, report);
                    if e.hash.0 != k.value() {
                        report.push(bad(&at, format!("entry's own hash is {}", e.hash)));
                    }
                }
                Err(e) => report.push(bad(&at, e)),
            }
            expected_due.insert((not_before, k.value()));
        }
        let mut stored_due = BTreeSet::new();
        for row in txn.open_table(DEFERRED_DUE)?.iter()? {
            stored_due.insert(row?.0.value());
        }
        if stored_due != expected_due {
            report.push(Problem::Index(
                "deferred_due does not match deferred".to_string(),
            ));
        }
        Ok(())
    }

    /// Checks the cap tables against the held-back and deferred entries they describe:
    /// `held_lacking` against `waiting`, the order tables against each entry's key, author and
    /// due time, and the counters of `kept_usage` and `kept_bytes` against a recount.
    fn verify_caps(txn: &redb::ReadTransaction, report: &mut VerifyReport) -> Result<(), Error> {
        let mut counts = KeptCounts::default();

        // the held-back set; undecodable entries (already listed) are counted in bytes only,
        // and rows naming them are neither expected nor stray
        let mut held_hashes = BTreeSet::new();
        let mut undecodable = BTreeSet::new();
        let mut expected_order = BTreeSet::new();
        let mut expected_by_author = BTreeSet::new();
        for row in txn.open_table(HELD)?.iter()? {
            let (k, v) = row?;
            let hash = k.value();
            held_hashes.insert(hash);
            let bytes = v.value();
            counts.add_bytes(HELD_SET, bytes.len());
            match LogEntry::<A>::decode(bytes) {
                Ok(e) => {
                    expected_order.insert((e.hlc.0, hash));
                    expected_by_author.insert((e.node_id.0, e.hlc.0, hash));
                    counts.add_entry(HELD_SET, e.node_id.0);
                }
                Err(_) => {
                    undecodable.insert(hash);
                }
            }
        }

        // held_lacking: one row per held entry, equal to its waiting rows
        let mut waiting_per_child: BTreeMap<[u8; 32], u64> = BTreeMap::new();
        for row in txn.open_table(WAITING)?.iter()? {
            *waiting_per_child.entry(row?.0.value().1).or_default() += 1;
        }
        let mut lacking = BTreeMap::new();
        for row in txn.open_table(HELD_LACKING)?.iter()? {
            let (k, v) = row?;
            lacking.insert(k.value(), v.value());
        }
        for hash in &held_hashes {
            let waits = waiting_per_child.get(hash).copied().unwrap_or(0);
            match lacking.get(hash) {
                None => report.push(Problem::Index(format!(
                    "held_lacking has no row for held entry {} ({waits} waiting rows name it)",
                    Hash(*hash)
                ))),
                Some(&n) if u64::from(n) != waits => report.push(Problem::Index(format!(
                    "held_lacking says held entry {} lacks {n} parents, waiting names it {waits} times",
                    Hash(*hash)
                ))),
                Some(_) => {}
            }
        }
        let stray: Vec<[u8; 32]> = lacking
            .keys()
            .filter(|h| !held_hashes.contains(*h))
            .copied()
            .collect();
        if let Some(first) = stray.first() {
            report.push(Problem::Index(format!(
                "held_lacking has {} rows without a held entry (first: {})",
                stray.len(),
                Hash(*first)
            )));
        }

        let stored_order = read_keys(txn, HELD_ORDER)?;
        compare_rows(
            "held_order",
            "held",
            &expected_order,
            &stored_order,
            |(_, h)| undecodable.contains(h),
            |(hlc, h)| format!("({hlc}, {})", Hash(*h)),
            report,
        );
        let stored_by_author = read_keys(txn, HELD_BY_AUTHOR)?;
        compare_rows(
            "held_by_author",
            "held",
            &expected_by_author,
            &stored_by_author,
            |(_, _, h)| undecodable.contains(h),
            |(a, hlc, h)| format!("({}, {hlc}, {})", Hash(*a), Hash(*h)),
            report,
        );

        // the deferred set
        let mut undecodable = BTreeSet::new();
        let mut expected_by_author = BTreeSet::new();
        for row in txn.open_table(DEFERRED)?.iter()? {
            let (k, v) = row?;
            let hash = k.value();
            let (not_before, bytes) = v.value();
            counts.add_bytes(DEFERRED_SET, bytes.len());
            match LogEntry::<A>::decode(bytes) {
                Ok(e) => {
                    expected_by_author.insert((e.node_id.0, not_before, hash));
                    counts.add_entry(DEFERRED_SET, e.node_id.0);
                }
                Err(_) => {
                    undecodable.insert(hash);
                }
            }
        }
        let stored_by_author = read_keys(txn, DEFERRED_BY_AUTHOR)?;
        compare_rows(
            "deferred_by_author",
            "deferred",
            &expected_by_author,
            &stored_by_author,
            |(_, _, h)| undecodable.contains(h),
            |(a, nb, h)| format!("({}, {nb}, {})", Hash(*a), Hash(*h)),
            report,
        );

        // the counters the caps are checked against
        for row in txn.open_table(KEPT_USAGE)?.iter()? {
            let (k, v) = row?;
            let (set, author) = k.value();
            let n = v.value();
            let expected = counts.usage.remove(&(set, author));
            if n == 0 {
                report.push(Problem::Index(format!(
                    "kept_usage has a row of count 0 for ({set}, {}): zero counts are removed",
                    Hash(author)
                )));
            } else if set != HELD_SET && set != DEFERRED_SET {
                report.push(Problem::Index(format!(
                    "kept_usage has a row for set {set}, which is neither held (0) nor deferred (1)"
                )));
            } else if expected != Some(n) {
                report.push(Problem::Index(format!(
                    "kept_usage counts {n} entries of {} in set {set}, the set holds {}",
                    Hash(author),
                    expected.unwrap_or(0)
                )));
            }
        }
        // authors with entries but no row
        for ((set, author), n) in &counts.usage {
            report.push(Problem::Index(format!(
                "kept_usage has no row for {} in set {set}, the set holds {n} of their entries",
                Hash(*author)
            )));
        }
        let mut stored_bytes = BTreeMap::new();
        for row in txn.open_table(KEPT_BYTES)?.iter()? {
            let (k, v) = row?;
            stored_bytes.insert(k.value(), v.value());
        }
        for set in [HELD_SET, DEFERRED_SET] {
            // a set never written to has no row, which counts as 0
            let stored = stored_bytes.remove(&set).unwrap_or(0);
            let expected = counts.bytes[usize::from(set)];
            if stored != expected {
                report.push(Problem::Index(format!(
                    "kept_bytes says set {set} holds {stored} bytes, its entries encode to {expected}"
                )));
            }
        }
        if let Some((set, _)) = stored_bytes.first_key_value() {
            report.push(Problem::Index(format!(
                "kept_bytes has {} rows for sets other than held (0) and deferred (1) (first: {set})",
                stored_bytes.len()
            )));
        }
        Ok(())
    }
}

/// The held-back set in `kept_usage` and `kept_bytes`.
const HELD_SET: u8 = 0;
/// The deferred set in `kept_usage` and `kept_bytes`.
const DEFERRED_SET: u8 = 1;

/// A recount of what `kept_usage` and `kept_bytes` should hold.
#[derive(Default)]
struct KeptCounts {
    /// Entries per `(set, author)`.
    usage: BTreeMap<(u8, [u8; 32]), u64>,
    /// Encoded bytes of the held (0) and deferred (1) sets.
    bytes: [u64; 2],
}

impl KeptCounts {
    fn add_entry(&mut self, set: u8, author: [u8; 32]) {
        *self.usage.entry((set, author)).or_default() += 1;
    }

    fn add_bytes(&mut self, set: u8, len: usize) {
        let b = &mut self.bytes[usize::from(set)];
        *b = b.saturating_add(len as u64);
    }
}

/// Every key of a table whose values are `()`.
fn read_keys<K>(
    txn: &redb::ReadTransaction,
    def: redb::TableDefinition<K, ()>,
) -> Result<BTreeSet<K>, Error>
where
    K: redb::Key + for<'a> redb::Value<SelfType<'a> = K> + Ord + 'static,
{
    let mut out = BTreeSet::new();
    for row in txn.open_table(def)?.iter()? {
        out.insert(row?.0.value());
    }
    Ok(out)
}

/// Reports the rows `expected` has and `stored` lacks, and the rows `stored` has that are not
/// expected (except those `skip` says belong to an entry already reported as undecodable).
fn compare_rows<T: Ord>(
    table: &str,
    set: &str,
    expected: &BTreeSet<T>,
    stored: &BTreeSet<T>,
    skip: impl Fn(&T) -> bool,
    show: impl Fn(&T) -> String,
    report: &mut VerifyReport,
) {
    let mut lacking = expected.difference(stored);
    if let Some(first) = lacking.next() {
        report.push(Problem::Index(format!(
            "{table} lacks the rows of {} {set} entries (first: {})",
            1 + lacking.count(),
            show(first)
        )));
    }
    let mut stray = stored.difference(expected).filter(|r| !skip(r));
    if let Some(first) = stray.next() {
        report.push(Problem::Index(format!(
            "{table} has {} rows matching no {set} entry (first: {})",
            1 + stray.count(),
            show(first)
        )));
    }
}
