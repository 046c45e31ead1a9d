//! What a store is told at open: the drift bound, the clock, who may write and how much of
//! the file to check.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use oplog_protocol::replica::Limits;
use oplog_protocol::{Action, NodeId, SystemClock, WallClock};

/// How a [`Store`](crate::Store) checks incoming entries.
#[derive(Clone)]
pub struct Options {
    /// The drift bound (an entry stamped more than `limits.max_drift` ahead of local wall time
    /// is deferred until local time catches up; default 60 s) and the caps on held-back and
    /// deferred entries, with their eviction rule. Defaults: [`Limits::default`].
    pub limits: Limits,
    /// Authors allowed to write, fixed at open; `None` accepts every author. A list set at
    /// run time ([`Store::set_allowed_authors`](crate::Store::set_allowed_authors)) takes
    /// its place for admission. [`Store::verify`](crate::Store::verify) checks stored
    /// entries against this list only while no run-time list was set: once the members
    /// change at run time, entries admitted under an earlier list stay valid.
    pub allowed_authors: Option<HashSet<NodeId>>,
    /// The local wall clock, nanoseconds since the Unix epoch. Default: [`SystemClock`].
    pub clock: Arc<dyn WallClock + Send + Sync>,
    /// Whether [`Store::open_existing`](crate::Store::open_existing) (and so
    /// [`Store::open`](crate::Store::open) on an existing file) has redb verify the checksum of
    /// every page before the store trusts the file. Default: `true`. It reads the whole file
    /// once more at open; turned off, a file damaged outside redb may make redb panic instead
    /// of returning an error (redb's own documented behaviour for a plain open).
    pub check_integrity_on_open: bool,
    /// Most bytes of file pages redb keeps cached in memory. Default:
    /// [`DEFAULT_CACHE_BYTES`] (redb's own default, 1 GiB). With the store's key index
    /// (about 60 bytes per entry) it bounds the store's memory.
    pub cache_bytes: usize,
    /// The run-time author list, once set: `Some(None)` accepts every author. Shared by
    /// clones of these options (and so by every store opened with one of them).
    run_time_authors: Arc<RwLock<Option<AuthorList>>>,
}

/// An author list: `None` admits every author.
type AuthorList = Option<Arc<HashSet<NodeId>>>;

/// Default [`Options::cache_bytes`]: 1 GiB, redb's default.
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            allowed_authors: None,
            clock: Arc::new(SystemClock),
            check_integrity_on_open: true,
            cache_bytes: DEFAULT_CACHE_BYTES,
            run_time_authors: Arc::new(RwLock::new(None)),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("limits", &self.limits)
            .field("allowed_authors", &self.allowed_authors)
            .field("run_time_authors", &self.authors_now())
            .field("now_nanos", &self.clock.now_nanos())
            .field("check_integrity_on_open", &self.check_integrity_on_open)
            .field("cache_bytes", &self.cache_bytes)
            .finish()
    }
}

impl Options {
    /// Sets the most bytes of file pages redb caches in memory.
    #[must_use]
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Sets the maximum drift.
    #[must_use]
    pub fn max_drift(mut self, max_drift: Duration) -> Self {
        self.limits.max_drift = max_drift;
        self
    }

    /// Sets the drift bound and the caps on held-back and deferred entries.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Accepts entries only from these authors.
    #[must_use]
    pub fn allowed_authors(mut self, authors: impl IntoIterator<Item = NodeId>) -> Self {
        self.allowed_authors = Some(authors.into_iter().collect());
        self
    }

    /// Sets [`Options::check_integrity_on_open`].
    #[must_use]
    pub fn check_integrity_on_open(mut self, check: bool) -> Self {
        self.check_integrity_on_open = check;
        self
    }

    /// The authors whose entries are admitted now: the run-time list if one was set
    /// ([`Store::set_allowed_authors`](crate::Store::set_allowed_authors)), else
    /// [`Options::allowed_authors`]; `None` admits every author.
    pub fn authors_now(&self) -> Option<Arc<HashSet<NodeId>>> {
        let run_time = self
            .run_time_authors
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match &*run_time {
            Some(list) => list.clone(),
            None => self.allowed_authors.clone().map(Arc::new),
        }
    }

    /// Whether a run-time author list was ever set on a store with these options.
    pub(crate) fn run_time_authors_set(&self) -> bool {
        self.run_time_authors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Uses `clock` as local wall time (tests inject a manual clock).
    #[must_use]
    pub fn clock(mut self, clock: impl WallClock + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

impl<A: Action> crate::Store<A> {
    /// Replaces, at run time, the authors whose entries this store admits: `Some(set)` admits
    /// only authors in `set`, `None` admits every author. It applies to every
    /// [`insert`](crate::Store::insert) and [`insert_verified`](crate::Store::insert_verified)
    /// that starts after it returns (a node removing a member calls it; the member's entries
    /// already stored, held back or deferred stay). It takes the place of
    /// [`Options::allowed_authors`] for admission; entries admitted before a removal remain
    /// valid (and [`verify`](crate::Store::verify) stops checking authors,
    /// since which list admitted each stored entry is not recorded).
    pub fn set_allowed_authors(&self, authors: Option<HashSet<NodeId>>) {
        *self
            .options
            .run_time_authors
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(authors.map(Arc::new));
    }

    /// The authors admitted now ([`Options::authors_now`]); `None` admits every author.
    pub fn allowed_authors(&self) -> Option<Arc<HashSet<NodeId>>> {
        self.options.authors_now()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use oplog_protocol::replica::{InsertError, InsertOutcome};
    use oplog_protocol::{Hlc, LogEntry, NodeId, ObjectId, Op, SigningKey};

    use crate::{Options, Store};

    fn put(key: &SigningKey, hlc: u64, name: &str) -> LogEntry<Op> {
        let op = Op::Put {
            bucket: "b".into(),
            key: name.into(),
            object_id: ObjectId([7; 32]),
        };
        LogEntry::sign(key, Hlc(hlc), op, vec![]).unwrap()
    }

    #[test]
    fn the_run_time_author_list_admits_and_refuses_from_the_next_insert_on() {
        let (a, b) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let id = |k: &SigningKey| NodeId(k.verifying_key().to_bytes());
        let store: Store<Op> =
            Store::in_memory(Options::default().allowed_authors([id(&a)])).unwrap();
        let refused = store.insert([put(&b, 1, "early")]).unwrap();
        assert!(matches!(
            refused.outcomes[0].1,
            InsertOutcome::Rejected(InsertError::NotAllowed(_))
        ));

        // b joins at run time: its entries are admitted.
        store.set_allowed_authors(Some(HashSet::from([id(&a), id(&b)])));
        let admitted = put(&b, 2, "joined");
        assert_eq!(
            store.insert([admitted.clone()]).unwrap().applied,
            vec![admitted.hash]
        );

        // b leaves: its next entry is refused, the one before stays and verifies clean.
        store.set_allowed_authors(Some(HashSet::from([id(&a)])));
        let late = store.insert([put(&b, 3, "late")]).unwrap();
        assert!(matches!(
            late.outcomes[0].1,
            InsertOutcome::Rejected(InsertError::NotAllowed(_))
        ));
        assert!(store.contains(&admitted.hash).unwrap());
        assert!(
            store.verify().unwrap().is_ok(),
            "entries admitted earlier stay valid"
        );
        assert_eq!(
            store.allowed_authors().as_deref(),
            Some(&HashSet::from([id(&a)]))
        );

        // None admits every author.
        store.set_allowed_authors(None);
        assert_eq!(store.insert([put(&b, 4, "open")]).unwrap().applied.len(), 1);
        assert!(store.allowed_authors().is_none());
    }
}
