//! The live node (feature `iroh`): one connection per peer carrying many streams, push of
//! every local append, anti-entropy sessions on an interval, merges by the spec's merge rule
//! and run-time membership. See [`Node`].

pub(crate) mod push;
pub(crate) mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iroh::endpoint::Connection;
use iroh::protocol::Router;
use iroh::{Endpoint, EndpointAddr, EndpointId};
use oplog_protocol::dag::{merge_parents, should_merge};
use oplog_protocol::replica::InsertOutcome;
use oplog_protocol::session::{SessionConfig, SyncReport};
use oplog_protocol::{Hlc, HlcClock, LogEntry, NodeId, ObjectId, Op, SigningKey, VerifiedEntry};
use oplog_store::Store;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::driver::SessionOutcome;
use crate::error::{NodeError, SyncError};
use crate::handler::{LiveHooks, OplogSync, CLOSE_DONE, CLOSE_NOT_ALLOWED};
use crate::ALPN;
use push::{push_on, PushError, PushStats};

pub use push::{receive_push, PushVerdict};
pub use wire::{
    end_frame, parse_end, push_frame, KIND_ANCESTRY_ANSWER, KIND_ANCESTRY_REQUEST, KIND_END,
    KIND_MESSAGE, KIND_PUSH, MAX_END_REASON,
};

/// Default [`NodeConfig::anti_entropy`]: a session with each configured peer every 10 s.
pub const DEFAULT_ANTI_ENTROPY: Duration = Duration::from_secs(10);
/// Longest wait between two attempts to reach an unreachable peer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait after a failed attempt to reach a peer; doubled on each further failure up to
/// [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Entries queued at most per peer for pushing; an append that finds the queue full drops the
/// push to that peer (counted in `oplog_pushes_dropped_total`) and anti-entropy carries the
/// entry instead.
pub const PUSH_QUEUE: usize = 256;
/// How long a node lets entries settle after a session or push before it applies the merge
/// rule: what arrives meanwhile is covered by the same check, so a burst of concurrent
/// writes causes few merges.
pub const MERGE_SETTLE: Duration = Duration::from_millis(50);
/// Most entries one PUSH frame carries (and at most the session's frame limit in bytes).
pub const MAX_PUSH_BATCH: usize = 64;

/// How a [`Node`] runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The ALPN the node dials and answers under: [`ALPN`] (the default) or a
    /// [`cluster_alpn`](crate::cluster_alpn).
    pub alpn: Vec<u8>,
    /// Configured peers: the node keeps a connection to each and runs anti-entropy sessions
    /// with it (their id and an address to dial them by).
    pub peers: Vec<EndpointAddr>,
    /// The members: the peers that may connect and whose entries are admitted (this node is
    /// always one). A configured peer that is not a member is not synced with.
    pub allowed: Vec<EndpointId>,
    /// The anti-entropy interval, jittered by +-25% (default [`DEFAULT_ANTI_ENTROPY`]).
    pub anti_entropy: Duration,
    /// Budgets and deadlines of sessions and of push streams.
    pub session: SessionConfig,
    /// Whether the node writes merges by the merge rule (default `true`).
    pub merge: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            alpn: ALPN.to_vec(),
            peers: Vec::new(),
            allowed: Vec::new(),
            anti_entropy: DEFAULT_ANTI_ENTROPY,
            session: SessionConfig::default(),
            merge: true,
        }
    }
}

impl NodeConfig {
    /// A default configuration with these peers, all of them members.
    pub fn with_peers(peers: impl IntoIterator<Item = EndpointAddr>) -> Self {
        let peers: Vec<EndpointAddr> = peers.into_iter().collect();
        NodeConfig {
            allowed: peers.iter().map(|p| p.id).collect(),
            peers,
            ..NodeConfig::default()
        }
    }
}

/// What one session did, in a node's status (the last one per peer).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionSummary {
    /// `done`, or the end code and who sent it.
    pub end: String,
    /// Round trips.
    pub round_trips: u64,
    /// Entries sent to the peer.
    pub entries_sent: u64,
    /// Entries received from the peer.
    pub entries_received: u64,
    /// Bytes sent, frames included.
    pub bytes_sent: u64,
    /// Bytes received, frames included.
    pub bytes_received: u64,
    /// How long it took, milliseconds.
    pub duration_ms: u64,
}

impl SessionSummary {
    fn of(report: &SyncReport, end: String) -> Self {
        SessionSummary {
            end,
            round_trips: report.round_trips(),
            entries_sent: report.entries_sent,
            entries_received: report.entries_received,
            bytes_sent: report.bytes_sent,
            bytes_received: report.bytes_received,
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// One peer in a node's [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerStatus {
    /// The peer's endpoint id (hex).
    pub id: String,
    /// The configured address, if the peer is configured (anti-entropy runs with it).
    pub addr: Option<String>,
    /// Whether the peer is a member (may connect, its entries are admitted).
    pub member: bool,
    /// Whether a connection to the peer is open.
    pub connected: bool,
    /// When the last session with the peer completed, Unix milliseconds.
    pub last_sync: Option<u64>,
    /// The last session with the peer (either role).
    pub last_report: Option<SessionSummary>,
    /// Lag: entries the peer had that this node lacked in the last session (those it sent).
    pub lag_entries: u64,
    /// Seconds since the last completed session, if any.
    pub lag_seconds: Option<u64>,
    /// Bytes received from the peer (sessions and pushes).
    pub bytes_in: u64,
    /// Bytes sent to the peer (sessions and pushes).
    pub bytes_out: u64,
    /// Sessions with the peer that completed.
    pub sessions: u64,
    /// Sessions with the peer that failed (unreachable, refused, ended with an error code).
    pub sessions_failed: u64,
    /// Entries this node pushed to the peer.
    pub entries_pushed: u64,
    /// Entries whose push to the peer was dropped (queue full or no connection).
    pub pushes_dropped: u64,
}

/// A node's state for operators ([`Node::status`]); serializes to JSON with serde.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// This node's endpoint id (hex), which is also its author id.
    pub id: String,
    /// The heads of the applied DAG (hashes, hex), ascending by key.
    pub heads: Vec<String>,
    /// Applied entries.
    pub entries: u64,
    /// Entries held back (waiting for a parent).
    pub held_back: u64,
    /// Entries deferred (stamped too far ahead of local time).
    pub deferred: u64,
    /// Merges this node wrote since it started.
    pub merges_written: u64,
    /// Every peer the node knows (configured, connected or member), by id.
    pub peers: Vec<PeerStatus>,
}

/// Counters of one peer.
#[derive(Default)]
struct PeerStats {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    sessions: AtomicU64,
    sessions_failed: AtomicU64,
    entries_pushed: AtomicU64,
    pushes_dropped: AtomicU64,
    last_sync_ms: AtomicU64,
    lag_entries: AtomicU64,
    last_report: Mutex<Option<SessionSummary>>,
}

/// Counters of the node.
#[derive(Default)]
struct Metrics {
    sessions: AtomicU64,
    sessions_failed: AtomicU64,
    rounds: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    entries_pushed: AtomicU64,
    entries_push_received: AtomicU64,
    entries_pulled: AtomicU64,
    entries_sent: AtomicU64,
    pushes_dropped: AtomicU64,
    pushes_refused: AtomicU64,
    push_ancestry: AtomicU64,
    merges: AtomicU64,
    appends: AtomicU64,
}

/// One peer the node knows.
struct Peer {
    addr: Option<EndpointAddr>,
    conns: Vec<Connection>,
    push: mpsc::Sender<Arc<Vec<u8>>>,
    stats: Arc<PeerStats>,
    early: Arc<Notify>,
    pusher: JoinHandle<()>,
    anti_entropy: Option<JoinHandle<()>>,
}

impl Peer {
    /// The first open connection (closed ones are dropped).
    fn live_conn(&mut self) -> Option<Connection> {
        self.conns.retain(|c| c.close_reason().is_none());
        self.conns.first().cloned()
    }
}

struct Shared {
    id: EndpointId,
    me: NodeId,
    endpoint: Endpoint,
    store: Arc<Store<Op>>,
    key: SigningKey,
    clock: Mutex<HlcClock<StoreClock>>,
    /// Serializes the node's own writes: heads read, stamp, sign and insert as one step.
    writer: Mutex<()>,
    sync: OplogSync<Op>,
    config: NodeConfig,
    peers: Mutex<HashMap<EndpointId, Peer>>,
    metrics: Metrics,
    synced: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    runtime: tokio::runtime::Handle,
    jitter: std::collections::hash_map::RandomState,
    jitter_seq: AtomicU64,
    /// Whether a merge check (and `synced` bump) is queued and not started yet.
    after_sync_pending: AtomicBool,
}

/// A live oplog-sync node on an iroh endpoint: it answers peers (its `Router` registers
/// [`OplogSync`] under [`NodeConfig::alpn`]), pushes every local append to connected
/// members, reconciles with each configured peer every [`NodeConfig::anti_entropy`], writes
/// merges by the spec's merge rule (6.5) and applies membership changes at run time.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use oplog_node::{bind_loopback, Node, NodeConfig};
/// use oplog_store::{Store, protocol::ObjectId};
///
/// let endpoint = bind_loopback(None, vec![]).await?;
/// let store = Arc::new(Store::open("node.redb")?);
/// let node = Node::spawn(endpoint, store, NodeConfig::default()).await?;
/// node.put("photos", "cat.jpg", ObjectId([1; 32])).await?;
/// println!("{}", serde_json::to_string(&node.status()?)?);
/// node.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Node {
    shared: Arc<Shared>,
    router: Router,
    /// The task that admits deferred entries once their time has come.
    retry: JoinHandle<()>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// The wall clock the node stamps with: the store's (the one its drift bound is judged by).
type StoreClock = Box<dyn Fn() -> u64 + Send + Sync>;

/// The hooks the handler calls; they hold the node weakly (the node owns the handler).
struct Hooks(Weak<Shared>);

impl LiveHooks for Hooks {
    fn connected(&self, peer: EndpointId, conn: &Connection) {
        if let Some(shared) = self.0.upgrade() {
            shared.register_conn(peer, conn);
        }
    }

    fn session_ended(&self, peer: EndpointId, outcome: &SessionOutcome) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        if outcome
            .end
            .as_ref()
            .is_some_and(|end| end.code == oplog_protocol::session::EndCode::Busy)
        {
            // Not a session: the pair was busy (it is counted where it runs).
            return;
        }
        let end = match &outcome.end {
            None => Ok(()),
            Some(end) => Err(format!(
                "{} ({})",
                end.code,
                if end.by_peer { "by peer" } else { "by us" }
            )),
        };
        shared.record_session(
            peer,
            Some(&outcome.report),
            end.as_ref().copied().map_err(String::as_str),
        );
        shared.after_sync();
    }

    fn push_received(&self, peer: EndpointId, stats: &PushStats, result: &Result<(), PushError>) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let s = shared.peer_stats(peer);
        s.bytes_in.fetch_add(stats.bytes_in, Ordering::Relaxed);
        s.bytes_out.fetch_add(stats.bytes_out, Ordering::Relaxed);
        let m = &shared.metrics;
        m.bytes_in.fetch_add(stats.bytes_in, Ordering::Relaxed);
        m.bytes_out.fetch_add(stats.bytes_out, Ordering::Relaxed);
        m.entries_push_received
            .fetch_add(stats.applied, Ordering::Relaxed);
        if result.is_err() {
            m.pushes_refused.fetch_add(1, Ordering::Relaxed);
        }
        if stats.ancestry {
            m.push_ancestry.fetch_add(1, Ordering::Relaxed);
        }
        if stats.unresolved > 0 {
            debug!(peer = %peer.fmt_short(), unresolved = stats.unresolved, "a pushed entry is still held back after its ancestry fetch; syncing early");
            shared.wake(peer);
        }
        shared.after_sync();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn node_id(id: &EndpointId) -> NodeId {
    NodeId(*id.as_bytes())
}

impl Shared {
    /// The store's author list: the members and this node.
    fn sync_authors(&self, members: &HashSet<EndpointId>) {
        let mut authors: HashSet<NodeId> = members.iter().map(node_id).collect();
        authors.insert(self.me);
        self.store.set_allowed_authors(Some(authors));
    }

    fn is_member(&self, id: &EndpointId) -> bool {
        self.sync.is_allowed(id)
    }

    /// The peer's entry, created (with its pusher task) if new. Call with the map locked.
    fn peer_mut<'a>(
        self: &Arc<Self>,
        peers: &'a mut HashMap<EndpointId, Peer>,
        id: EndpointId,
    ) -> &'a mut Peer {
        peers.entry(id).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PUSH_QUEUE);
            let stats = Arc::new(PeerStats::default());
            let span = info_span!("oplog.pusher", peer = %id.fmt_short());
            let pusher = self
                .runtime
                .spawn(pusher(Arc::downgrade(self), id, rx, Arc::clone(&stats)).instrument(span));
            Peer {
                addr: None,
                conns: Vec::new(),
                push: tx,
                stats,
                early: Arc::new(Notify::new()),
                pusher,
                anti_entropy: None,
            }
        })
    }

    fn peer_stats(self: &Arc<Self>, id: EndpointId) -> Arc<PeerStats> {
        let mut peers = lock(&self.peers);
        Arc::clone(&self.peer_mut(&mut peers, id).stats)
    }

    fn register_conn(self: &Arc<Self>, id: EndpointId, conn: &Connection) {
        let mut peers = lock(&self.peers);
        let peer = self.peer_mut(&mut peers, id);
        peer.conns.retain(|c| c.close_reason().is_none());
        if !peer.conns.iter().any(|c| c.stable_id() == conn.stable_id()) {
            peer.conns.push(conn.clone());
        }
    }

    fn live_conn(self: &Arc<Self>, id: EndpointId) -> Option<Connection> {
        lock(&self.peers).get_mut(&id).and_then(Peer::live_conn)
    }

    /// Runs `task` on the node's runtime until it ends or the node stops.
    fn spawn_until_stop(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut stop = self.stop.subscribe();
        if *stop.borrow_and_update() {
            return;
        }
        self.runtime.spawn(async move {
            tokio::select! {
                () = task => {}
                _ = stop.changed() => {}
            }
        });
    }

    /// An open connection to `id`: an existing one, or a new one dialed at its configured
    /// address (whose incoming streams are then served too).
    async fn connect(self: &Arc<Self>, id: EndpointId) -> Result<Connection, NodeError> {
        if let Some(conn) = self.live_conn(id) {
            return Ok(conn);
        }
        let addr = lock(&self.peers)
            .get(&id)
            .and_then(|p| p.addr.clone())
            .ok_or(NodeError::UnknownPeer(id))?;
        let conn = tokio::time::timeout(
            self.config.session.idle_timeout,
            self.endpoint.connect(addr, &self.config.alpn),
        )
        .await
        .map_err(|_| NodeError::ConnectTimeout(id))?
        .map_err(|source| NodeError::Sync(SyncError::Connect { peer: id, source }))?;
        self.register_conn(id, &conn);
        let sync = self.sync.clone();
        let served = conn.clone();
        self.spawn_until_stop(async move { sync.serve_dialed(served, id).await });
        Ok(conn)
    }

    /// One session with `id` on its connection; records it and merges after it.
    async fn session(self: &Arc<Self>, id: EndpointId) -> Result<SyncReport, NodeError> {
        if !self.is_member(&id) {
            return Err(NodeError::NotAMember(id));
        }
        let conn = match self.connect(id).await {
            Ok(conn) => conn,
            Err(e) => {
                self.peer_stats(id)
                    .sessions_failed
                    .fetch_add(1, Ordering::Relaxed);
                self.metrics.sessions_failed.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let result = self.sync.session_on(&conn, id).await;
        match &result {
            Ok(report) => self.record_session(id, Some(report), Ok(())),
            Err(SyncError::Busy { .. }) => {}
            Err(e) => {
                let report = match e {
                    SyncError::Store { report, .. }
                    | SyncError::Timeout { report, .. }
                    | SyncError::Ended { report, .. } => Some(&**report),
                    _ => None,
                };
                self.record_session(id, report, Err(&e.to_string()));
            }
        }
        self.after_sync();
        result.map_err(NodeError::Sync)
    }

    fn record_session(
        self: &Arc<Self>,
        id: EndpointId,
        report: Option<&SyncReport>,
        end: Result<(), &str>,
    ) {
        let stats = self.peer_stats(id);
        let m = &self.metrics;
        let Some(report) = report else {
            stats.sessions_failed.fetch_add(1, Ordering::Relaxed);
            m.sessions_failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        stats
            .bytes_in
            .fetch_add(report.bytes_received, Ordering::Relaxed);
        stats
            .bytes_out
            .fetch_add(report.bytes_sent, Ordering::Relaxed);
        m.bytes_in
            .fetch_add(report.bytes_received, Ordering::Relaxed);
        m.bytes_out.fetch_add(report.bytes_sent, Ordering::Relaxed);
        m.rounds.fetch_add(report.round_trips(), Ordering::Relaxed);
        m.entries_pulled
            .fetch_add(report.entries_received, Ordering::Relaxed);
        m.entries_sent
            .fetch_add(report.entries_sent, Ordering::Relaxed);
        let label = match &end {
            Ok(()) => {
                stats.sessions.fetch_add(1, Ordering::Relaxed);
                m.sessions.fetch_add(1, Ordering::Relaxed);
                stats.last_sync_ms.store(unix_ms(), Ordering::Relaxed);
                stats
                    .lag_entries
                    .store(report.entries_received, Ordering::Relaxed);
                "done".to_string()
            }
            Err(e) => {
                stats.sessions_failed.fetch_add(1, Ordering::Relaxed);
                m.sessions_failed.fetch_add(1, Ordering::Relaxed);
                e.to_string()
            }
        };
        *lock(&stats.last_report) = Some(SessionSummary::of(report, label));
    }

    /// Starts a session with `id` early (a pushed entry stayed held back).
    fn wake(self: &Arc<Self>, id: EndpointId) {
        let has_loop = match lock(&self.peers).get(&id) {
            Some(peer) if peer.anti_entropy.is_some() => {
                peer.early.notify_one();
                true
            }
            _ => false,
        };
        if !has_loop {
            // Not a configured peer: one session on its open connection.
            let shared = Arc::clone(self);
            self.spawn_until_stop(async move {
                if let Err(e) = shared.session(id).await {
                    debug!(error = %e, "early session with a pushing peer failed");
                }
            });
        }
    }

    /// After a session or push applied: merge if the rule says so, then bump `synced`.
    ///
    /// At most one such task is waiting at a time: events that land while one waits are
    /// covered by it (it reads the heads after it starts), so a burst of pushes costs one
    /// merge check, not one task each.
    fn after_sync(self: &Arc<Self>) {
        if self.after_sync_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(self);
        self.spawn_until_stop(async move {
            // Entries still arriving (a burst of pushes, a session under way) join this check
            // instead of each causing a merge of their own.
            tokio::time::sleep(MERGE_SETTLE).await;
            shared.after_sync_pending.store(false, Ordering::Release);
            if shared.config.merge && !*shared.stop.borrow() {
                if let Err(e) = shared.maybe_merge().await {
                    warn!(error = %e, "could not write a merge");
                }
            }
            shared.synced.send_modify(|n| *n += 1);
        });
    }

    async fn maybe_merge(self: &Arc<Self>) -> Result<(), NodeError> {
        let shared = Arc::clone(self);
        let merged = tokio::task::spawn_blocking(move || {
            let _writer = lock(&shared.writer);
            let heads = shared.store.heads()?;
            if !should_merge(&heads, &shared.me) {
                return Ok(None);
            }
            shared.append_locked(Op::Merge, &heads).map(Some)
        })
        .await
        .map_err(|e| NodeError::Task(e.to_string()))??;
        if let Some(entry) = merged {
            info!(hash = %entry.hash, parents = entry.parents.len(), "wrote a merge");
            self.metrics.merges.fetch_add(1, Ordering::Relaxed);
            self.push(&entry);
        }
        Ok(())
    }

    /// Stamps, signs and stores `op` with every head as a parent. Call with `writer` held.
    fn append_locked(
        &self,
        op: Op,
        heads: &[(oplog_protocol::EntryKey, NodeId)],
    ) -> Result<LogEntry<Op>, NodeError> {
        let parents = merge_parents(heads);
        let hlc = {
            let mut clock = lock(&self.clock);
            if let Some(newest) = heads.iter().map(|(k, _)| k.hlc).max() {
                // a head beyond the drift bound cannot be applied here; tick() then stays
                // above everything applied anyway
                let _ = clock.observe(newest);
            }
            clock.tick()?
        };
        let entry = VerifiedEntry::sign(&self.key, hlc, op, parents)?;
        let out = entry.entry().clone();
        let report = self.store.insert_verified([entry])?;
        if let Some((_, InsertOutcome::Rejected(e))) = report.outcomes.first() {
            return Err(NodeError::Refused(e.clone()));
        }
        self.metrics.appends.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Queues `entry` for every connected member (never blocks: a full queue drops it).
    fn push(self: &Arc<Self>, entry: &LogEntry<Op>) {
        let bytes = Arc::new(entry.encode());
        let mut peers = lock(&self.peers);
        for (id, peer) in peers.iter_mut() {
            if !self.sync.is_allowed(id) || peer.live_conn().is_none() {
                continue;
            }
            if peer.push.try_send(Arc::clone(&bytes)).is_err() {
                peer.stats.pushes_dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.pushes_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A delay of `base` +-25%.
    fn jittered(&self, base: Duration) -> Duration {
        let seq = self.jitter_seq.fetch_add(1, Ordering::Relaxed);
        let r = self.jitter.hash_one(seq) % 1001; // 0..=1000
        let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX / 2);
        let ms = base_ms.saturating_mul(750 + r / 2) / 1000;
        Duration::from_millis(ms.max(1))
    }
}

/// The pusher task of one peer: sends queued entries in PUSH streams, one stream at a
/// time (so a peer receives parents before children), until the node stops.
async fn pusher(
    node: Weak<Shared>,
    id: EndpointId,
    mut rx: mpsc::Receiver<Arc<Vec<u8>>>,
    stats: Arc<PeerStats>,
) {
    let mut carry: Option<Arc<Vec<u8>>> = None;
    loop {
        let first = match carry.take() {
            Some(e) => e,
            None => match rx.recv().await {
                Some(e) => e,
                None => return,
            },
        };
        let Some(shared) = node.upgrade() else {
            return;
        };
        let max_bytes = shared.config.session.max_frame_bytes - 16;
        let mut bytes = first.len() + 4;
        let mut batch = vec![first];
        while batch.len() < MAX_PUSH_BATCH {
            match rx.try_recv() {
                Ok(e) if bytes + e.len() + 4 <= max_bytes => {
                    bytes += e.len() + 4;
                    batch.push(e);
                }
                Ok(e) => {
                    carry = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let conn = if shared.is_member(&id) {
            shared.live_conn(id)
        } else {
            None
        };
        let Some(conn) = conn else {
            stats.pushes_dropped.fetch_add(n, Ordering::Relaxed);
            shared
                .metrics
                .pushes_dropped
                .fetch_add(n, Ordering::Relaxed);
            continue;
        };
        let (send, recv) = match conn.open_bi().await {
            Ok(streams) => streams,
            Err(e) => {
                debug!(error = %e, "cannot open a push stream");
                stats.pushes_dropped.fetch_add(n, Ordering::Relaxed);
                shared
                    .metrics
                    .pushes_dropped
                    .fetch_add(n, Ordering::Relaxed);
                continue;
            }
        };
        let entries: Vec<Vec<u8>> = batch.iter().map(|e| e.as_ref().clone()).collect();
        let (ps, result) = push_on(
            Arc::clone(&shared.store),
            &entries,
            shared.sync.stream_budget(),
            recv,
            send,
        )
        .await;
        stats.bytes_in.fetch_add(ps.bytes_in, Ordering::Relaxed);
        stats.bytes_out.fetch_add(ps.bytes_out, Ordering::Relaxed);
        shared
            .metrics
            .bytes_in
            .fetch_add(ps.bytes_in, Ordering::Relaxed);
        shared
            .metrics
            .bytes_out
            .fetch_add(ps.bytes_out, Ordering::Relaxed);
        match result {
            Ok(()) => {
                stats.entries_pushed.fetch_add(n, Ordering::Relaxed);
                shared
                    .metrics
                    .entries_pushed
                    .fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                debug!(error = %e, entries = n, "a push was not accepted; anti-entropy will carry it");
                stats.pushes_dropped.fetch_add(n, Ordering::Relaxed);
                shared
                    .metrics
                    .pushes_dropped
                    .fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// The anti-entropy loop of one configured peer.
async fn anti_entropy(node: Weak<Shared>, id: EndpointId, early: Arc<Notify>) {
    let mut failures: u32 = 0;
    let mut stop = match node.upgrade() {
        Some(shared) => shared.stop.subscribe(),
        None => return,
    };
    let mut first = true;
    loop {
        let wait = {
            let Some(shared) = node.upgrade() else {
                return;
            };
            if failures > 0 {
                FIRST_BACKOFF
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(MAX_BACKOFF)
            } else if first {
                shared.jittered(shared.config.anti_entropy) / 4
            } else {
                shared.jittered(shared.config.anti_entropy)
            }
        };
        first = false;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = early.notified() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let Some(shared) = node.upgrade() else {
            return;
        };
        if !shared.is_member(&id) {
            continue;
        }
        match shared.session(id).await {
            Ok(report) => {
                failures = 0;
                debug!(
                    entries_received = report.entries_received,
                    "anti-entropy session done"
                );
            }
            Err(NodeError::Sync(SyncError::Busy { .. })) => failures = 0,
            Err(
                NodeError::ConnectTimeout(_)
                | NodeError::Sync(
                    SyncError::Connect { .. }
                    | SyncError::Connection { .. }
                    | SyncError::Refused { .. }
                    | SyncError::Timeout { .. },
                ),
            ) => {
                failures = failures.saturating_add(1);
                debug!(failures, "peer unreachable; backing off");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                debug!(error = %e, "anti-entropy session failed");
            }
        }
    }
}

/// Admits deferred entries (stamped too far ahead when they came) once local time has caught
/// up, every anti-entropy interval, until the node stops.
async fn retry_deferred(node: Weak<Shared>) {
    loop {
        let Some(shared) = node.upgrade() else {
            return;
        };
        let wait = shared.jittered(shared.config.anti_entropy);
        let mut stop = shared.stop.subscribe();
        drop(shared);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        let Some(shared) = node.upgrade() else {
            return;
        };
        let store = Arc::clone(&shared.store);
        match tokio::task::spawn_blocking(move || store.retry_deferred()).await {
            Ok(Ok(report)) if !report.applied.is_empty() => {
                debug!(applied = report.applied.len(), "deferred entries came due");
                shared.after_sync();
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "could not admit deferred entries"),
            Err(e) => warn!(error = %e, "the deferred-entry task failed"),
        }
    }
}

impl Node {
    /// Starts a node on `endpoint` (already bound) over `store`: registers the protocol
    /// on a new `Router` under [`NodeConfig::alpn`], starts a pusher per peer and an
    /// anti-entropy loop per configured peer, and sets the store's allowed authors to the
    /// members plus this node.
    ///
    /// Entries are signed with the endpoint's secret key (the node's author id is its
    /// endpoint id). The node's clock resumes above the newest entry in the store, so a
    /// restarted node never stamps backwards.
    pub async fn spawn(
        endpoint: Endpoint,
        store: Arc<Store<Op>>,
        config: NodeConfig,
    ) -> Result<Node, NodeError> {
        config
            .session
            .validate()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        if config.anti_entropy.is_zero() {
            return Err(NodeError::Config("anti_entropy must be above zero".into()));
        }
        let id = endpoint.id();
        let me = node_id(&id);
        let key = SigningKey::from_bytes(&endpoint.secret_key().to_bytes());
        let newest = {
            let store = Arc::clone(&store);
            tokio::task::spawn_blocking(move || store.heads())
                .await
                .map_err(|e| NodeError::Task(e.to_string()))??
                .iter()
                .map(|(k, _)| k.hlc)
                .max()
                .unwrap_or(Hlc(0))
        };
        let wall = Arc::clone(&store.options().clock);
        let wall: StoreClock = Box::new(move || wall.now_nanos());
        let clock = HlcClock::restore(wall, store.options().limits.max_drift, newest);
        let members: HashSet<EndpointId> = config.allowed.iter().copied().collect();
        let (synced, _) = watch::channel(0);
        let (stop, _) = watch::channel(false);
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let sync = OplogSync::new(Arc::clone(&store), members.iter().copied())
                .with_config(config.session.clone())
                .with_alpn(config.alpn.clone())
                .with_hooks(Arc::new(Hooks(weak.clone())));
            Shared {
                id,
                me,
                endpoint: endpoint.clone(),
                store: Arc::clone(&store),
                key,
                clock: Mutex::new(clock),
                writer: Mutex::new(()),
                sync,
                config: config.clone(),
                peers: Mutex::new(HashMap::new()),
                metrics: Metrics::default(),
                synced,
                stop,
                runtime: tokio::runtime::Handle::current(),
                jitter: std::collections::hash_map::RandomState::new(),
                jitter_seq: AtomicU64::new(0),
                after_sync_pending: AtomicBool::new(false),
            }
        });
        shared.sync_authors(&members);
        let router = Router::builder(endpoint)
            .accept(config.alpn.clone(), shared.sync.clone())
            .spawn();
        let span = info_span!("oplog.deferred", node = %id.fmt_short());
        let retry = shared
            .runtime
            .spawn(retry_deferred(Arc::downgrade(&shared)).instrument(span));
        let node = Node {
            shared,
            router,
            retry,
        };
        for addr in config.peers {
            node.add_peer(addr);
        }
        info!(id = %id.fmt_short(), "node started");
        Ok(node)
    }

    /// This node's endpoint id (also its author id in the log).
    pub fn id(&self) -> EndpointId {
        self.shared.id
    }

    /// The store the node reads and writes.
    pub fn store(&self) -> &Arc<Store<Op>> {
        &self.shared.store
    }

    /// The endpoint the node runs on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// Appends `op`: stamps it with the node's clock, takes every head as a parent, signs
    /// it, stores it, and queues it for every connected member (without waiting for them).
    pub async fn append(&self, op: Op) -> Result<LogEntry<Op>, NodeError> {
        if *self.shared.stop.borrow() {
            return Err(NodeError::Shutdown);
        }
        let shared = Arc::clone(&self.shared);
        let entry = tokio::task::spawn_blocking(move || {
            let _writer = lock(&shared.writer);
            let heads = shared.store.heads()?;
            shared.append_locked(op, &heads)
        })
        .await
        .map_err(|e| NodeError::Task(e.to_string()))??;
        self.shared.push(&entry);
        Ok(entry)
    }

    /// Appends a put of `bucket/key` pointing at `object_id` ([`append`](Self::append)).
    pub async fn put(
        &self,
        bucket: impl Into<String>,
        key: impl Into<String>,
        object_id: ObjectId,
    ) -> Result<LogEntry<Op>, NodeError> {
        self.append(Op::Put {
            bucket: bucket.into(),
            key: key.into(),
            object_id,
        })
        .await
    }

    /// Appends a delete of `bucket/key` ([`append`](Self::append)).
    pub async fn delete(
        &self,
        bucket: impl Into<String>,
        key: impl Into<String>,
    ) -> Result<LogEntry<Op>, NodeError> {
        self.append(Op::Delete {
            bucket: bucket.into(),
            key: key.into(),
        })
        .await
    }

    /// Runs one session with `peer` now (on its open connection, or dialing its configured
    /// address), then merges if the rule says so. [`SyncError::Busy`] (inside
    /// [`NodeError::Sync`]) if a session with it is already running.
    pub async fn sync_with(&self, peer: EndpointId) -> Result<SyncReport, NodeError> {
        self.shared.session(peer).await
    }

    /// Configures a peer (or updates its address, and then tries it at once): the node
    /// connects to it and runs anti-entropy sessions with it while it is a member.
    pub fn add_peer(&self, addr: EndpointAddr) {
        let shared = &self.shared;
        let id = addr.id;
        if id == shared.id {
            return;
        }
        let mut peers = lock(&shared.peers);
        let peer = shared.peer_mut(&mut peers, id);
        let moved = peer.addr.as_ref().is_some_and(|old| *old != addr);
        peer.addr = Some(addr);
        if moved {
            // A new address (the peer restarted elsewhere): try it now, not after a backoff.
            peer.early.notify_one();
        }
        if peer
            .anti_entropy
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
        {
            let span = info_span!("oplog.anti_entropy", peer = %id.fmt_short());
            let task = anti_entropy(Arc::downgrade(shared), id, Arc::clone(&peer.early));
            peer.anti_entropy = Some(shared.runtime.spawn(task.instrument(span)));
        }
    }

    /// Stops anti-entropy with `id` and forgets its address (membership is unchanged; an
    /// open connection stays until it ends).
    pub fn remove_peer(&self, id: &EndpointId) {
        if let Some(peer) = lock(&self.shared.peers).get_mut(id) {
            peer.addr = None;
            if let Some(task) = peer.anti_entropy.take() {
                task.abort();
            }
        }
    }

    /// Makes `id` a member: it may connect, and its entries are admitted from now on.
    pub fn allow(&self, id: EndpointId) {
        self.shared.sync.allow(id);
        self.update_authors();
    }

    /// Removes `id` from the members: its connections are closed, new connections from it
    /// are refused, and every entry it authors from now on is refused (entries already
    /// stored stay).
    pub fn disallow(&self, id: &EndpointId) {
        self.shared.sync.disallow(id);
        self.update_authors();
        if let Some(peer) = lock(&self.shared.peers).get_mut(id) {
            for conn in peer.conns.drain(..) {
                conn.close(
                    CLOSE_NOT_ALLOWED.into(),
                    b"removed from this node's members",
                );
            }
        }
        info!(peer = %id.fmt_short(), "member removed");
    }

    fn update_authors(&self) {
        let members = self.shared.sync.allowed();
        self.shared.sync_authors(&members);
    }

    /// The node's state: heads, counts and every known peer.
    pub fn status(&self) -> Result<NodeStatus, NodeError> {
        let shared = &self.shared;
        let stats = shared.store.stats()?;
        let heads = shared
            .store
            .heads()?
            .iter()
            .map(|(k, _)| k.hash.to_string())
            .collect();
        let now = unix_ms();
        let members = shared.sync.allowed();
        let mut peers: Vec<PeerStatus> = {
            let mut map = lock(&shared.peers);
            map.iter_mut()
                .map(|(id, p)| {
                    let s = Arc::clone(&p.stats);
                    let last = s.last_sync_ms.load(Ordering::Relaxed);
                    let last_report = lock(&s.last_report).clone();
                    PeerStatus {
                        id: id.to_string(),
                        addr: p.addr.as_ref().map(|a| {
                            a.ip_addrs()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(",")
                        }),
                        member: members.contains(id),
                        connected: p.live_conn().is_some(),
                        last_sync: (last > 0).then_some(last),
                        last_report,
                        lag_entries: s.lag_entries.load(Ordering::Relaxed),
                        lag_seconds: (last > 0).then(|| now.saturating_sub(last) / 1000),
                        bytes_in: s.bytes_in.load(Ordering::Relaxed),
                        bytes_out: s.bytes_out.load(Ordering::Relaxed),
                        sessions: s.sessions.load(Ordering::Relaxed),
                        sessions_failed: s.sessions_failed.load(Ordering::Relaxed),
                        entries_pushed: s.entries_pushed.load(Ordering::Relaxed),
                        pushes_dropped: s.pushes_dropped.load(Ordering::Relaxed),
                    }
                })
                .collect()
        };
        for id in &members {
            let id = id.to_string();
            if !peers.iter().any(|p| p.id == id) {
                peers.push(PeerStatus {
                    id,
                    addr: None,
                    member: true,
                    connected: false,
                    last_sync: None,
                    last_report: None,
                    lag_entries: 0,
                    lag_seconds: None,
                    bytes_in: 0,
                    bytes_out: 0,
                    sessions: 0,
                    sessions_failed: 0,
                    entries_pushed: 0,
                    pushes_dropped: 0,
                });
            }
        }
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(NodeStatus {
            id: shared.id.to_string(),
            heads,
            entries: stats.applied,
            held_back: stats.held_back,
            deferred: stats.deferred,
            merges_written: shared.metrics.merges.load(Ordering::Relaxed),
            peers,
        })
    }

    /// The node's metrics in the Prometheus text exposition format: sessions, rounds,
    /// bytes, entries pushed and pulled, pushes dropped, merges, heads, held back and
    /// deferred entries, and per-peer lag and bytes.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let m = &self.shared.metrics;
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        line(
            "oplog_sessions_total",
            "counter",
            "Sync sessions that completed.",
            get(&m.sessions),
        );
        line(
            "oplog_sessions_failed_total",
            "counter",
            "Sync sessions that failed.",
            get(&m.sessions_failed),
        );
        line(
            "oplog_rounds_total",
            "counter",
            "Round trips of sync sessions.",
            get(&m.rounds),
        );
        line(
            "oplog_bytes_received_total",
            "counter",
            "Bytes received from peers (sessions and pushes).",
            get(&m.bytes_in),
        );
        line(
            "oplog_bytes_sent_total",
            "counter",
            "Bytes sent to peers (sessions and pushes).",
            get(&m.bytes_out),
        );
        line(
            "oplog_entries_pushed_total",
            "counter",
            "Entries pushed to peers and accepted.",
            get(&m.entries_pushed),
        );
        line(
            "oplog_entries_push_received_total",
            "counter",
            "Entries applied from peers' pushes.",
            get(&m.entries_push_received),
        );
        line(
            "oplog_entries_pulled_total",
            "counter",
            "Entries received in sync sessions.",
            get(&m.entries_pulled),
        );
        line(
            "oplog_entries_sent_total",
            "counter",
            "Entries sent in sync sessions.",
            get(&m.entries_sent),
        );
        line(
            "oplog_pushes_dropped_total",
            "counter",
            "Entry pushes dropped (queue full, no connection, or refused).",
            get(&m.pushes_dropped),
        );
        line(
            "oplog_pushes_refused_total",
            "counter",
            "Pushes from peers that ended with an error.",
            get(&m.pushes_refused),
        );
        line(
            "oplog_push_ancestry_requests_total",
            "counter",
            "Ancestry requests sent on received pushes whose entries were held back.",
            get(&m.push_ancestry),
        );
        line(
            "oplog_merges_total",
            "counter",
            "Merges this node wrote.",
            get(&m.merges),
        );
        line(
            "oplog_appends_total",
            "counter",
            "Entries this node appended (merges included).",
            get(&m.appends),
        );
        if let Ok(stats) = self.shared.store.stats() {
            line("oplog_entries", "gauge", "Applied entries.", stats.applied);
            line(
                "oplog_held_back",
                "gauge",
                "Entries held back waiting for a parent.",
                stats.held_back,
            );
            line(
                "oplog_deferred",
                "gauge",
                "Entries deferred (stamped too far ahead).",
                stats.deferred,
            );
        }
        if let Ok(heads) = self.shared.store.heads() {
            line(
                "oplog_heads",
                "gauge",
                "Heads of the applied DAG.",
                heads.len() as u64,
            );
        }
        let peers: Vec<(String, Arc<PeerStats>)> = lock(&self.shared.peers)
            .iter()
            .map(|(id, p)| (id.to_string(), Arc::clone(&p.stats)))
            .collect();
        let now = unix_ms();
        // One family per metric, one sample per peer that has a value.
        let mut family =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(&PeerStats) -> Option<u64>| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (id, s) in &peers {
                    if let Some(v) = value(s) {
                        let _ = writeln!(out, "{name}{{peer=\"{id}\"}} {v}");
                    }
                }
            };
        family(
            "oplog_peer_lag_entries",
            "gauge",
            "Entries the peer sent us in the last session.",
            &|s| Some(get(&s.lag_entries)),
        );
        family(
            "oplog_peer_lag_seconds",
            "gauge",
            "Seconds since the last completed session with the peer.",
            &|s| {
                let last = get(&s.last_sync_ms);
                (last > 0).then(|| now.saturating_sub(last) / 1000)
            },
        );
        family(
            "oplog_peer_bytes_received_total",
            "counter",
            "Bytes received from the peer.",
            &|s| Some(get(&s.bytes_in)),
        );
        family(
            "oplog_peer_bytes_sent_total",
            "counter",
            "Bytes sent to the peer.",
            &|s| Some(get(&s.bytes_out)),
        );
        out
    }

    /// A counter that goes up after the sessions and pushes this node takes part in (and
    /// the merge they may have caused; several that land together may count once): wait on
    /// it instead of sleeping.
    pub fn subscribe_synced(&self) -> watch::Receiver<u64> {
        self.shared.synced.subscribe()
    }

    /// Stops every task of the node, closes its connections and its endpoint.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.shared.stop.send(true);
        self.retry.abort();
        {
            let mut peers = lock(&self.shared.peers);
            for peer in peers.values_mut() {
                peer.pusher.abort();
                if let Some(task) = peer.anti_entropy.take() {
                    task.abort();
                }
                // Closed explicitly so peers learn at once (the endpoint's close then only
                // waits for their acknowledgements).
                for conn in peer.conns.drain(..) {
                    conn.close(CLOSE_DONE.into(), b"the node is shutting down");
                }
            }
        }
        self.router
            .shutdown()
            .await
            .map_err(|e| NodeError::Task(format!("the router did not shut down cleanly: {e}")))?;
        info!(id = %self.shared.id.fmt_short(), "node stopped");
        Ok(())
    }
}
