//! What a store is told at open: the drift bound, the clock, who may write and how much of
//! the file to check.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use oplog_protocol::hlc::DEFAULT_MAX_DRIFT;
use oplog_protocol::{NodeId, SystemClock, WallClock};

/// How a [`Store`](crate::Store) checks incoming entries.
#[derive(Clone)]
pub struct Options {
    /// An entry stamped more than this ahead of local wall time is deferred (kept aside, not
    /// dropped) until local time catches up. Default: [`DEFAULT_MAX_DRIFT`] (60 s).
    pub max_drift: Duration,
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_drift: DEFAULT_MAX_DRIFT,
            allowed_authors: None,
            clock: Arc::new(SystemClock),
            check_integrity_on_open: true,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("max_drift", &self.max_drift)
            .field("allowed_authors", &self.allowed_authors)
            .field("now_nanos", &self.clock.now_nanos())
            .field("check_integrity_on_open", &self.check_integrity_on_open)
            .finish()
    }
}

impl Options {
    /// Sets the maximum drift.
    pub fn max_drift(mut self, max_drift: Duration) -> Self {
        self.max_drift = max_drift;
        self
    }

    /// Accepts entries only from these authors.
    pub fn allowed_authors(mut self, authors: impl IntoIterator<Item = NodeId>) -> Self {
        self.allowed_authors = Some(authors.into_iter().collect());
        self
    }

    /// Sets [`Options::check_integrity_on_open`].
    pub fn check_integrity_on_open(mut self, check: bool) -> Self {
        self.check_integrity_on_open = check;
        self
    }

    /// Uses `clock` as local wall time (tests inject a manual clock).
    pub fn clock(mut self, clock: impl WallClock + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}
