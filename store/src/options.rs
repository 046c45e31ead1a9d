//! What a store is told at open: the drift bound, the clock and who may write.

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_drift: DEFAULT_MAX_DRIFT,
            allowed_authors: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("max_drift", &self.max_drift)
            .field("allowed_authors", &self.allowed_authors)
            .field("now_nanos", &self.clock.now_nanos())
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

    /// Uses `clock` as local wall time (tests inject a manual clock).
    pub fn clock(mut self, clock: impl WallClock + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}
