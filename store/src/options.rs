//! What a store is told at open: the drift bound, the clock, who may write and how much of
//! the file to check.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use oplog_protocol::replica::Limits;
use oplog_protocol::{NodeId, SystemClock, WallClock};

/// How a [`Store`](crate::Store) checks incoming entries.
#[derive(Clone)]
pub struct Options {
    /// The drift bound (an entry stamped more than `limits.max_drift` ahead of local wall time
    /// is deferred until local time catches up; default 60 s) and the caps on held-back and
    /// deferred entries, with their eviction rule. Defaults: [`Limits::default`].
    pub limits: Limits,
    /// Authors allowed to write; `None` accepts every author.
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
}

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
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("limits", &self.limits)
            .field("allowed_authors", &self.allowed_authors)
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

    /// Uses `clock` as local wall time (tests inject a manual clock).
    #[must_use]
    pub fn clock(mut self, clock: impl WallClock + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}
