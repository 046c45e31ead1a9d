//! [`OplogSync`]: the iroh protocol handler (the responder side) and [`OplogSync::sync_with`]
//! (the initiator side).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use iroh::endpoint::{Connection, ConnectionError, VarInt};
use iroh::protocol::{AcceptError, ProtocolHandler};
use iroh::{Endpoint, EndpointAddr, EndpointId};
use oplog_protocol::{Action, Op};
use oplog_store::Store;
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::driver::{run_session, SessionEnd, SessionOutcome};
use crate::error::SyncError;
use crate::live::push::{serve_ancestry, serve_push, PushError, PushStats, StreamBudget};
use crate::live::wire::{end_frame, write_frame, KIND_ANCESTRY_REQUEST, KIND_MESSAGE, KIND_PUSH};
use crate::ALPN;
use oplog_protocol::session::{EndCode, Role, Session, SessionConfig, SyncReport};

/// Connection close code: the session completed (or ended by its END frame).
pub const CLOSE_DONE: u32 = 0;
/// Connection close code: the dialing node is not in the allowed peer set; nothing it sent
/// was read.
pub const CLOSE_NOT_ALLOWED: u32 = 1;
/// Connection close code: this node ended the session because the peer broke the protocol
/// or a budget (the END frame before the close names the reason).
pub const CLOSE_SESSION_ERROR: u32 = 2;

/// Bytes an initiator reads after its session finished while it waits for the responder's
/// end of stream (nothing is due after an END frame).
const MAX_TRAILING_BYTES: usize = 1024;

/// Bytes reserved up front for a stream's first frame; a longer one grows as it arrives.
const FIRST_FRAME_RESERVE: usize = 64 << 10;

/// Longest reason text put in a connection close (QUIC sends it in one packet).
const MAX_CLOSE_REASON: usize = 512;

/// Streams of one connection served at once (sessions, pushes, ancestry fetches); further
/// streams wait, unaccepted, for a slot (QUIC flow control then holds the peer back).
pub const MAX_STREAMS_PER_CONNECTION: usize = 8;

/// Connections one peer may have open to this node at once (those it dialed; a live node
/// keeps one, and a one-shot `sync_with` opens one per session). A connection over it is
/// closed at once with [`CLOSE_SESSION_ERROR`], before anything is read: with
/// [`MAX_STREAMS_PER_CONNECTION`] it bounds what one member can make this node hold (at most
/// 64 streams, each reading at most one first frame of `max_frame_bytes`).
pub const MAX_CONNECTIONS_PER_PEER: usize = 8;

/// PUSH streams accepted per connection per second, sustained; a burst of
/// [`PUSH_BURST`] is allowed. A PUSH over the budget is answered END `03` unread.
pub const PUSHES_PER_SECOND: u32 = 64;

/// PUSH streams a connection may send at once before [`PUSHES_PER_SECOND`] applies.
pub const PUSH_BURST: u32 = 128;

/// PUSH frame bytes accepted per connection per second, sustained, with a burst of the same
/// size (at least the largest frame, so one frame of the maximum size always fits).
pub const PUSH_BYTES_PER_SECOND: u64 = 8 << 20;

/// Standalone ancestry fetches (streams whose first frame is `03`) answered per connection
/// per second, sustained; a burst of [`ANCESTRY_FETCH_BURST`] is allowed. A fetch over the
/// budget is answered END `03` without walking. Each answer walks at most `ancestry_visits`
/// entries, so with [`MAX_CONNECTIONS_PER_PEER`] this bounds the walks one member can make
/// this node do. The reference never opens such a stream (it asks for ancestry inside
/// sessions and on PUSH streams), so honest peers do not meet this budget.
pub const ANCESTRY_FETCHES_PER_SECOND: u32 = 2;

/// Standalone ancestry fetches a connection may make at once before
/// [`ANCESTRY_FETCHES_PER_SECOND`] applies.
pub const ANCESTRY_FETCH_BURST: u32 = 8;

/// Events a live node hears from its handler (connections, sessions and pushes it
/// answered).
pub(crate) trait LiveHooks: Send + Sync + 'static {
    /// An allowed peer's connection was accepted.
    fn connected(&self, peer: EndpointId, conn: &Connection);
    /// A session this node answered ended.
    fn session_ended(&self, peer: EndpointId, outcome: &SessionOutcome);
    /// A push from the peer was received (`result` is how its stream ended).
    fn push_received(&self, peer: EndpointId, stats: &PushStats, result: &Result<(), PushError>);
}

/// Token buckets of one connection's pushes, and of its standalone ancestry fetches.
struct PushBudget {
    state: Mutex<Buckets>,
}

/// The buckets of one connection, refilled together from one clock.
struct Buckets {
    pushes: Bucket,
    bytes: Bucket,
    fetches: Bucket,
    /// When the buckets were last refilled.
    at: Instant,
}

/// One token bucket: `left` tokens, refilled at `per_second` up to `max`.
struct Bucket {
    left: f64,
    per_second: f64,
    max: f64,
}

impl Bucket {
    /// A full bucket.
    fn full(per_second: f64, max: f64) -> Self {
        Bucket {
            left: max,
            per_second,
            max,
        }
    }

    fn refill(&mut self, secs: f64) {
        self.left = (self.left + secs * self.per_second).min(self.max);
    }
}

impl Buckets {
    /// Refills every bucket for the time since the last call (a clock that went back adds
    /// nothing).
    fn refill(&mut self, now: Instant) {
        let now = now.max(self.at);
        let secs = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        for b in [&mut self.pushes, &mut self.bytes, &mut self.fetches] {
            b.refill(secs);
        }
    }
}

impl PushBudget {
    fn new(max_frame: usize) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let bytes = PUSH_BYTES_PER_SECOND.max(max_frame as u64) as f64;
        PushBudget {
            state: Mutex::new(Buckets {
                pushes: Bucket::full(f64::from(PUSHES_PER_SECOND), f64::from(PUSH_BURST)),
                bytes: Bucket::full(bytes, bytes),
                fetches: Bucket::full(
                    f64::from(ANCESTRY_FETCHES_PER_SECOND),
                    f64::from(ANCESTRY_FETCH_BURST),
                ),
                at: Instant::now(),
            }),
        }
    }

    /// Takes one standalone ancestry fetch from its bucket, or `false` if it is empty.
    fn admit_fetch(&self) -> bool {
        self.admit_fetch_at(Instant::now())
    }

    /// [`admit_fetch`](Self::admit_fetch) at the instant `now`.
    fn admit_fetch_at(&self, now: Instant) -> bool {
        let mut state = lock(&self.state);
        state.refill(now);
        if state.fetches.left >= 1.0 {
            state.fetches.left -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes one push of `bytes` from the buckets, or `false` if either is empty.
    fn admit(&self, bytes: usize) -> bool {
        self.admit_at(bytes, Instant::now())
    }

    /// [`admit`](Self::admit) at the instant `now`.
    fn admit_at(&self, bytes: usize, now: Instant) -> bool {
        let mut state = lock(&self.state);
        state.refill(now);
        #[allow(clippy::cast_precision_loss)]
        let cost = bytes as f64;
        if state.pushes.left >= 1.0 && state.bytes.left >= cost {
            state.pushes.left -= 1.0;
            state.bytes.left -= cost;
            true
        } else {
            false
        }
    }
}

/// The oplog-sync protocol on an iroh endpoint, over one [`Store`]: register it on a
/// `Router` to answer peers, call [`sync_with`](Self::sync_with) to start a session.
///
/// Cheap to clone (one `Arc`): every clone shares the store, the allowed peer set and the set
/// of peers a session is running with. At most one session runs per pair of peers at a time:
/// a second [`sync_with`](Self::sync_with) to a peer returns [`SyncError::Busy`] at once (it
/// does not wait), and a session the peer opens meanwhile is answered with END
/// [`EndCode::Busy`]. Two peers that dial each other at the same instant may both get `Busy`;
/// retry after a random delay.
pub struct OplogSync<A: Action = Op> {
    inner: Arc<Inner<A>>,
}

struct Inner<A: Action> {
    store: Arc<Store<A>>,
    allowed: RwLock<HashSet<EndpointId>>,
    config: SessionConfig,
    alpn: Vec<u8>,
    active: Mutex<HashSet<EndpointId>>,
    /// Connections each peer has open to this node (accepted ones).
    conns: Mutex<HashMap<EndpointId, usize>>,
    hooks: Option<Arc<dyn LiveHooks>>,
}

impl<A: Action> Clone for OplogSync<A> {
    fn clone(&self) -> Self {
        OplogSync {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A: Action> fmt::Debug for OplogSync<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OplogSync")
            .field("alpn", &String::from_utf8_lossy(&self.inner.alpn))
            .field("allowed_peers", &read(&self.inner.allowed).len())
            .field("active_sessions", &lock(&self.inner.active).len())
            .finish_non_exhaustive()
    }
}

impl OplogSync<Op> {
    /// Syncs `store` with the peers in `allowed` (their iroh endpoint ids), under [`ALPN`]
    /// with the default [`SessionConfig`]. Connections from any other peer are refused before
    /// anything is read. For a store of another action type, see
    /// [`with_store`](Self::with_store).
    pub fn new(store: Arc<Store<Op>>, allowed: impl IntoIterator<Item = EndpointId>) -> Self {
        Self::with_store(store, allowed)
    }
}

impl<A: Action> OplogSync<A> {
    /// [`new`](OplogSync::new) for a store of any action type `A` (both peers must use the
    /// same one: it is part of every entry's hash).
    pub fn with_store(store: Arc<Store<A>>, allowed: impl IntoIterator<Item = EndpointId>) -> Self {
        OplogSync {
            inner: Arc::new(Inner {
                store,
                allowed: RwLock::new(allowed.into_iter().collect()),
                config: SessionConfig::default(),
                alpn: ALPN.to_vec(),
                active: Mutex::new(HashSet::new()),
                conns: Mutex::new(HashMap::new()),
                hooks: None,
            }),
        }
    }

    /// The same handler with the session configuration `config` (budgets and deadlines).
    /// Call it before cloning: clones made earlier keep the old configuration.
    #[must_use]
    pub fn with_config(self, config: SessionConfig) -> Self {
        self.rebuild(|inner| inner.config = config)
    }

    /// The same handler dialing under `alpn` instead of [`ALPN`], e.g. a
    /// [`cluster_alpn`](crate::cluster_alpn); register it on the `Router` under the same
    /// [`alpn`](Self::alpn). Call it before cloning.
    #[must_use]
    pub fn with_alpn(self, alpn: impl Into<Vec<u8>>) -> Self {
        let alpn = alpn.into();
        self.rebuild(|inner| inner.alpn = alpn)
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner<A>)) -> Self {
        let mut inner = Inner {
            store: Arc::clone(&self.inner.store),
            allowed: RwLock::new(read(&self.inner.allowed).clone()),
            config: self.inner.config.clone(),
            alpn: self.inner.alpn.clone(),
            active: Mutex::new(HashSet::new()),
            conns: Mutex::new(HashMap::new()),
            hooks: self.inner.hooks.clone(),
        };
        change(&mut inner);
        OplogSync {
            inner: Arc::new(inner),
        }
    }

    /// The same handler reporting to a live node's hooks. Call it before cloning.
    #[must_use]
    pub(crate) fn with_hooks(self, hooks: Arc<dyn LiveHooks>) -> Self {
        self.rebuild(|inner| inner.hooks = Some(hooks))
    }

    /// The budgets of a push or ancestry stream, from the session configuration.
    pub(crate) fn stream_budget(&self) -> StreamBudget {
        let c = &self.inner.config;
        StreamBudget {
            max_frame_bytes: c.max_frame_bytes,
            idle: c.idle_timeout,
            ancestry_limit: c.ancestry_limit,
            ancestry_visits: c.ancestry_visits,
        }
    }

    /// The ALPN this handler dials under; register it on the `Router` under the same one.
    pub fn alpn(&self) -> &[u8] {
        &self.inner.alpn
    }

    /// The store sessions read from and apply to.
    pub fn store(&self) -> &Arc<Store<A>> {
        &self.inner.store
    }

    /// Adds `peer` to the allowed set (takes effect for the next connection).
    pub fn allow(&self, peer: EndpointId) {
        write(&self.inner.allowed).insert(peer);
    }

    /// Removes `peer` from the allowed set (a session already running with it goes on).
    pub fn disallow(&self, peer: &EndpointId) {
        write(&self.inner.allowed).remove(peer);
    }

    /// The allowed peer set now.
    pub fn allowed(&self) -> HashSet<EndpointId> {
        read(&self.inner.allowed).clone()
    }

    /// Whether connections from `peer` are accepted.
    pub fn is_allowed(&self, peer: &EndpointId) -> bool {
        read(&self.inner.allowed).contains(peer)
    }

    /// Whether a session with `peer` is running now (either role).
    pub fn is_syncing(&self, peer: &EndpointId) -> bool {
        lock(&self.inner.active).contains(peer)
    }

    /// Marks a session with `peer` as running, or `None` if one already is.
    fn begin(&self, peer: EndpointId) -> Option<ActiveGuard<A>> {
        lock(&self.inner.active).insert(peer).then(|| ActiveGuard {
            inner: Arc::clone(&self.inner),
            peer,
        })
    }

    fn new_session(&self, role: Role) -> Result<Session<A, oplog_protocol::RangeIndex>, SyncError> {
        Session::new(
            self.inner.config.clone(),
            role,
            self.inner.store.snapshot(),
            Instant::now(),
        )
        .map_err(|e| SyncError::Config {
            reason: e.to_string(),
        })
    }

    /// Dials `peer`, opens one stream and runs one session as the initiator; returns its
    /// report when both stores hold the union of their entries (as far as each side's
    /// budgets allowed: the report says what crossed).
    ///
    /// Before closing the connection it waits (at most the session's idle timeout) for the
    /// responder's end of stream, which comes once the responder's session is over, so the
    /// last frame is never dropped unread. A second call for the same peer while this one
    /// runs returns [`SyncError::Busy`] at once.
    pub async fn sync_with(
        &self,
        endpoint: &Endpoint,
        peer: impl Into<EndpointAddr>,
    ) -> Result<SyncReport, SyncError> {
        let peer: EndpointAddr = peer.into();
        let id = peer.id;
        let span = info_span!("oplog.session", peer = %id.fmt_short(), role = "initiator");
        async move {
            let Some(_active) = self.begin(id) else {
                info!("a session with this peer is already running");
                return Err(SyncError::Busy {
                    peer: id,
                    by_peer: false,
                });
            };
            let conn = endpoint
                .connect(peer, &self.inner.alpn)
                .await
                .map_err(|source| SyncError::Connect { peer: id, source })?;
            self.run_initiator(&conn, id, true).await
        }
        .instrument(span)
        .await
    }

    /// Serves the streams `peer` opens on `conn`, a connection this node dialed (a live
    /// node's peer pushes on it too).
    pub(crate) async fn serve_dialed(&self, conn: Connection, peer: EndpointId) {
        let span = info_span!("oplog.connection", peer = %peer.fmt_short(), dialed = true);
        self.serve(conn, peer, false).instrument(span).await;
    }

    /// Runs one session as the initiator on `conn`, an open connection to `peer`, on a new
    /// stream; the connection stays open for other streams (a live node's connection). See
    /// [`sync_with`](Self::sync_with) for the rest.
    pub(crate) async fn session_on(
        &self,
        conn: &Connection,
        peer: EndpointId,
    ) -> Result<SyncReport, SyncError> {
        let span = info_span!("oplog.session", peer = %peer.fmt_short(), role = "initiator");
        async move {
            let Some(_active) = self.begin(peer) else {
                debug!("a session with this peer is already running");
                return Err(SyncError::Busy {
                    peer,
                    by_peer: false,
                });
            };
            self.run_initiator(conn, peer, false).await
        }
        .instrument(span)
        .await
    }

    /// The initiator's session on a new stream of `conn`; `close` closes the connection
    /// when it is done (one connection per session, as `sync_with`).
    async fn run_initiator(
        &self,
        conn: &Connection,
        id: EndpointId,
        close: bool,
    ) -> Result<SyncReport, SyncError> {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|source| connection_error(id, source))?;
        let session = self.new_session(Role::Initiator)?;
        let outcome =
            run_session(session, Arc::clone(&self.inner.store), &mut recv, &mut send).await;
        // A session that saw the connection end: did the peer close it with a code?
        let closed_by_peer = conn.close_reason().as_ref().and_then(application_close);
        let idle = self.inner.config.idle_timeout;
        match &outcome.end {
            Some(end) if !end.by_peer && end.code != EndCode::Busy => {
                // This side ended it for cause: once the peer has our END (acknowledged
                // at the QUIC level), close, naming the reason.
                let _ = tokio::time::timeout(idle, send.stopped()).await;
                conn.close(CLOSE_SESSION_ERROR.into(), close_reason(end).as_bytes());
            }
            _ => {
                // The responder finishes its stream only once its session is over, so
                // its end of stream means it read everything we sent: only then is
                // closing safe (closing earlier may make it drop our END unread).
                // Bounded, for a peer that never ends it.
                let _ = tokio::time::timeout(idle, recv.read_to_end(MAX_TRAILING_BYTES)).await;
                if close {
                    conn.close(CLOSE_DONE.into(), b"done");
                }
            }
        }
        log_outcome(&outcome);
        classify(id, outcome, closed_by_peer)
    }

    /// Serves one incoming connection from an allowed peer: every stream it opens, at most
    /// [`MAX_STREAMS_PER_CONNECTION`] at once, until the connection ends. The first frame of
    /// a stream names its job (spec 9.9).
    async fn serve(&self, conn: Connection, peer: EndpointId, expect_stream: bool) {
        if let Some(hooks) = &self.inner.hooks {
            hooks.connected(peer, &conn);
        }
        let idle = self.inner.config.idle_timeout;
        let budget = Arc::new(PushBudget::new(self.inner.config.max_frame_bytes));
        let slots = Arc::new(Semaphore::new(MAX_STREAMS_PER_CONNECTION));
        let mut first = expect_stream;
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let accepted = if first {
                // A peer that connects and never opens a stream is not waited for forever.
                if let Ok(accepted) = tokio::time::timeout(idle, conn.accept_bi()).await {
                    accepted
                } else {
                    info!("the peer opened no stream in time; closing");
                    conn.close(CLOSE_SESSION_ERROR.into(), b"no stream opened");
                    return;
                }
            } else {
                conn.accept_bi().await
            };
            first = false;
            let (send, recv) = match accepted {
                Ok(streams) => streams,
                Err(e) => {
                    debug!(error = %e, "the connection ended");
                    return;
                }
            };
            if !self.is_allowed(&peer) {
                warn!(peer = %peer, "the peer was removed from the allowed set; closing its connection");
                conn.close(
                    CLOSE_NOT_ALLOWED.into(),
                    b"not in this node's allowed peer set",
                );
                return;
            }
            let this = self.clone();
            let conn = conn.clone();
            let budget = Arc::clone(&budget);
            tokio::spawn(
                async move { this.stream(conn, peer, send, recv, budget, permit).await }
                    .instrument(tracing::Span::current()),
            );
        }
    }

    /// One stream of a served connection: reads its first frame and runs its job.
    async fn stream(
        &self,
        conn: Connection,
        peer: EndpointId,
        mut send: iroh::endpoint::SendStream,
        mut recv: iroh::endpoint::RecvStream,
        budget: Arc<PushBudget>,
        _permit: OwnedSemaphorePermit,
    ) {
        let config = &self.inner.config;
        let idle = config.idle_timeout;
        let mut header = [0u8; 4];
        match tokio::time::timeout(idle, recv.read_exact(&mut header)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "a stream ended before its first frame");
                return;
            }
            Err(_) => {
                info!("the peer opened a stream and sent nothing in time; closing");
                finish_with_end(&mut send, EndCode::Timeout, "no first frame in time", idle).await;
                conn.close(
                    CLOSE_SESSION_ERROR.into(),
                    b"timed out (06): no first frame in time",
                );
                return;
            }
        }
        let len = u32::from_be_bytes(header);
        let Some(size) = usize::try_from(len)
            .ok()
            .filter(|&n| n > 0 && n <= config.max_frame_bytes)
        else {
            let code = if len == 0 {
                EndCode::Protocol
            } else {
                EndCode::FrameTooLarge
            };
            let reason = format!(
                "a first frame of {len} bytes (limit {})",
                config.max_frame_bytes
            );
            info!(%code, "refused the first frame of a stream; closing the connection");
            finish_with_end(&mut send, code, &reason, idle).await;
            conn.close(
                CLOSE_SESSION_ERROR.into(),
                format!("{code}: {reason}").as_bytes(),
            );
            return;
        };
        // Until the type byte is known the stream may be a session: it holds the pair's
        // session slot meanwhile (a push gives it back at once).
        let active = self.begin(peer);
        // The body is allocated as its bytes arrive, not from the header: a length that
        // lies costs this node what the peer really sent, not what it announced (64 KiB up
        // front, the most a small first frame needs).
        let mut body = Vec::with_capacity(size.min(FIRST_FRAME_RESERVE));
        let want = u64::try_from(size).unwrap_or(u64::MAX);
        match tokio::time::timeout(idle, (&mut recv).take(want).read_to_end(&mut body)).await {
            Ok(Ok(n)) if n == size => {}
            Ok(Ok(_)) => {
                debug!("a stream ended inside its first frame");
                return;
            }
            Ok(Err(e)) => {
                debug!(error = %e, "a stream ended inside its first frame");
                return;
            }
            Err(_) => {
                info!("the peer was silent inside its first frame; closing");
                finish_with_end(
                    &mut send,
                    EndCode::Timeout,
                    "silent inside the first frame",
                    idle,
                )
                .await;
                conn.close(
                    CLOSE_SESSION_ERROR.into(),
                    b"timed out (06): silent inside the first frame",
                );
                return;
            }
        }
        let active = if body[0] == KIND_MESSAGE {
            active
        } else {
            drop(active);
            None
        };
        match body[0] {
            KIND_MESSAGE => {
                let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
                let mut replay = len.to_be_bytes().to_vec();
                replay.extend_from_slice(&body);
                let recv = std::io::Cursor::new(replay).chain(recv);
                let span =
                    info_span!("oplog.session", peer = %peer.fmt_short(), role = "responder");
                self.respond_stream(&conn, peer, active, send, recv)
                    .instrument(span)
                    .await;
            }
            KIND_PUSH => {
                let span = info_span!("oplog.push", peer = %peer.fmt_short(), role = "receiver");
                async {
                    if !budget.admit(body.len() + 4) {
                        info!("a push over this connection's budget; answered END 03 unread");
                        finish_with_end(&mut send, EndCode::Limit, "pushes over this connection's budget (spec Appendix B); anti-entropy will carry them", config.idle_timeout).await;
                        return;
                    }
                    let sender = oplog_protocol::NodeId(*peer.as_bytes());
                    let store = Arc::clone(&self.inner.store);
                    let (stats, result) = serve_push(store, sender, body, self.stream_budget(), recv, send).await;
                    debug!(applied = stats.applied, unresolved = stats.unresolved, ok = result.is_ok(), "push received");
                    if let Some(hooks) = &self.inner.hooks {
                        hooks.push_received(peer, &stats, &result);
                    }
                }
                .instrument(span)
                .await;
            }
            KIND_ANCESTRY_REQUEST => {
                if !budget.admit_fetch() {
                    info!(
                        "an ancestry fetch over this connection's budget; answered END 03 unread"
                    );
                    finish_with_end(
                        &mut send,
                        EndCode::Limit,
                        "ancestry fetches over this connection's budget (spec Appendix B)",
                        config.idle_timeout,
                    )
                    .await;
                    return;
                }
                let store = Arc::clone(&self.inner.store);
                if let Err(e) = serve_ancestry(store, &body, self.stream_budget(), send).await {
                    debug!(error = %e, "an ancestry fetch from the peer failed");
                }
            }
            other => {
                let reason = format!("a stream cannot start with frame type {other:#04x}");
                info!(
                    reason,
                    "refused the first frame of a stream; closing the connection"
                );
                finish_with_end(&mut send, EndCode::Protocol, &reason, idle).await;
                conn.close(
                    CLOSE_SESSION_ERROR.into(),
                    format!("{}: {reason}", EndCode::Protocol).as_bytes(),
                );
            }
        }
    }

    /// Answers one session stream as the responder (its first frame is replayed in `recv`).
    async fn respond_stream<R: tokio::io::AsyncRead + Unpin + Send>(
        &self,
        conn: &Connection,
        peer: EndpointId,
        active: Option<ActiveGuard<A>>,
        mut send: iroh::endpoint::SendStream,
        mut recv: R,
    ) {
        let idle = self.inner.config.idle_timeout;
        let mut session = match self.new_session(Role::Responder) {
            Ok(session) => session,
            Err(e) => {
                warn!(error = %e, "cannot start a session");
                finish_with_end(
                    &mut send,
                    EndCode::Internal,
                    "the responder's configuration is invalid",
                    idle,
                )
                .await;
                return;
            }
        };
        if active.is_none() {
            info!("a session with this peer is already running; answering Busy");
            session.close(
                EndCode::Busy,
                "a session with this peer is already running; retry after it ends",
            );
        }
        let outcome =
            run_session(session, Arc::clone(&self.inner.store), &mut recv, &mut send).await;
        drop(active);
        log_outcome(&outcome);
        if let Some(end) = &outcome.end {
            if !end.by_peer && end.code != EndCode::Busy {
                // This side ended it for cause: once the peer has our END (acknowledged at
                // the QUIC level), close, naming the reason.
                let _ = tokio::time::timeout(idle, send.stopped()).await;
                conn.close(CLOSE_SESSION_ERROR.into(), close_reason(end).as_bytes());
            }
        }
        if let Some(hooks) = &self.inner.hooks {
            hooks.session_ended(peer, &outcome);
        }
    }
}

/// Writes END `code` and finishes the stream, each step bounded by `idle`.
async fn finish_with_end(
    send: &mut iroh::endpoint::SendStream,
    code: EndCode,
    reason: &str,
    idle: Duration,
) {
    let end = end_frame(code, reason);
    let _ = tokio::time::timeout(idle, write_frame(send, &end)).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(idle, send.stopped()).await;
}

impl<A: Action> ProtocolHandler for OplogSync<A> {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = conn.remote_id();
        if !self.is_allowed(&peer) {
            warn!(peer = %peer, "refused an oplog-sync connection from a peer outside the allowed set");
            conn.close(
                CLOSE_NOT_ALLOWED.into(),
                b"not in this node's allowed peer set",
            );
            return Ok(());
        }
        let Some(_slot) = self.connection_slot(peer) else {
            info!(peer = %peer.fmt_short(), limit = MAX_CONNECTIONS_PER_PEER, "refused a connection over the peer's connection limit");
            conn.close(
                CLOSE_SESSION_ERROR.into(),
                format!(
                    "{}: too many connections from this peer (limit {MAX_CONNECTIONS_PER_PEER})",
                    EndCode::Limit
                )
                .as_bytes(),
            );
            return Ok(());
        };
        let span = info_span!("oplog.connection", peer = %peer.fmt_short());
        self.serve(conn, peer, true).instrument(span).await;
        Ok(())
    }
}

impl<A: Action> OplogSync<A> {
    /// Counts one more accepted connection of `peer`, or `None` if it has
    /// [`MAX_CONNECTIONS_PER_PEER`] open already.
    fn connection_slot(&self, peer: EndpointId) -> Option<ConnectionSlot<A>> {
        let mut conns = lock(&self.inner.conns);
        let n = conns.entry(peer).or_insert(0);
        if *n >= MAX_CONNECTIONS_PER_PEER {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            inner: Arc::clone(&self.inner),
            peer,
        })
    }
}

/// One accepted connection of a peer, counted until dropped.
struct ConnectionSlot<A: Action> {
    inner: Arc<Inner<A>>,
    peer: EndpointId,
}

impl<A: Action> Drop for ConnectionSlot<A> {
    fn drop(&mut self) {
        let mut conns = lock(&self.inner.conns);
        if let Some(n) = conns.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                conns.remove(&self.peer);
            }
        }
    }
}

/// Removes its peer from the running set when dropped.
struct ActiveGuard<A: Action> {
    inner: Arc<Inner<A>>,
    peer: EndpointId,
}

impl<A: Action> Drop for ActiveGuard<A> {
    fn drop(&mut self) {
        lock(&self.inner.active).remove(&self.peer);
    }
}

/// The code and reason of a connection closed by the peer's application with a non-zero code.
fn application_close(error: &ConnectionError) -> Option<(u64, String)> {
    match error {
        ConnectionError::ApplicationClosed(close)
            if close.error_code != VarInt::from_u32(CLOSE_DONE) =>
        {
            Some((
                close.error_code.into_inner(),
                String::from_utf8_lossy(&close.reason).into_owned(),
            ))
        }
        _ => None,
    }
}

/// A refusal if the peer closed the connection with a code, else a connection failure.
fn connection_error(peer: EndpointId, source: ConnectionError) -> SyncError {
    match application_close(&source) {
        Some((code, reason)) => SyncError::Refused { peer, code, reason },
        None => SyncError::Connection { peer, source },
    }
}

/// The reason text of a [`CLOSE_SESSION_ERROR`] close: the END code and its reason.
fn close_reason(end: &SessionEnd) -> String {
    let mut text = format!("{}: {}", end.code, end.reason);
    let mut cut = text.len().min(MAX_CLOSE_REASON);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

/// The result of `sync_with` from the session's outcome and how the peer closed the
/// connection (if it did, with a code).
fn classify(
    peer: EndpointId,
    outcome: SessionOutcome,
    closed_by_peer: Option<(u64, String)>,
) -> Result<SyncReport, SyncError> {
    let SessionOutcome {
        report,
        end,
        store_error,
    } = outcome;
    // A store error wins even over a session that ended Done: the last write (the durable
    // commit at the end of a sync) may be the one that failed, and then nothing received
    // is safely stored.
    if let Some(reason) = store_error {
        return Err(SyncError::Store {
            peer,
            reason,
            report: Box::new(report),
        });
    }
    let Some(end) = end else {
        return Ok(report);
    };
    match end.code {
        EndCode::Busy if end.by_peer => Err(SyncError::Busy {
            peer,
            by_peer: true,
        }),
        // The stream ended without an END: a close with a code says why.
        EndCode::ConnectionLost if closed_by_peer.is_some() => {
            let (code, reason) = closed_by_peer.unwrap_or_default();
            Err(SyncError::Refused { peer, code, reason })
        }
        EndCode::Timeout => Err(SyncError::Timeout {
            peer,
            reason: end.reason,
            report: Box::new(report),
        }),
        code => Err(SyncError::Ended {
            peer,
            code,
            reason: end.reason,
            by_peer: end.by_peer,
            report: Box::new(report),
        }),
    }
}

/// The session's counters, logged once at its end (inside its span: peer and role).
fn log_outcome(outcome: &SessionOutcome) {
    let r = &outcome.report;
    let (code, reason, by_peer) = match &outcome.end {
        None => (EndCode::Done, "", false),
        Some(end) => (end.code, end.reason.as_str(), end.by_peer),
    };
    info!(
        end = %code,
        reason,
        by_peer,
        round_trips = r.round_trips(),
        frames_sent = r.frames_sent,
        frames_received = r.frames_received,
        bytes_sent = r.bytes_sent,
        bytes_received = r.bytes_received,
        entries_sent = r.entries_sent,
        entries_received = r.entries_received,
        overhead_bytes = r.overhead_bytes(),
        duration_ms = u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
        "sync session ended"
    );
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_budget_allows_a_burst_then_the_sustained_rate() {
        let budget = PushBudget::new(1 << 20);
        let t0 = lock(&budget.state).at;
        for i in 0..PUSH_BURST {
            assert!(budget.admit_at(100, t0), "push {i} of the burst");
        }
        assert!(!budget.admit_at(100, t0), "the burst is spent");
        let later = t0 + Duration::from_secs(1);
        for i in 0..PUSHES_PER_SECOND {
            assert!(budget.admit_at(100, later), "push {i} a second later");
        }
        assert!(
            !budget.admit_at(100, later),
            "one second refills one second's rate"
        );
    }

    #[test]
    fn the_ancestry_fetch_budget_allows_a_burst_then_the_sustained_rate() {
        let budget = PushBudget::new(1 << 20);
        let t0 = lock(&budget.state).at;
        for i in 0..ANCESTRY_FETCH_BURST {
            assert!(budget.admit_fetch_at(t0), "fetch {i} of the burst");
        }
        assert!(!budget.admit_fetch_at(t0), "the burst is spent");
        // pushes have their own buckets
        assert!(budget.admit_at(100, t0));
        let later = t0 + Duration::from_secs(1);
        for i in 0..ANCESTRY_FETCHES_PER_SECOND {
            assert!(budget.admit_fetch_at(later), "fetch {i} a second later");
        }
        assert!(
            !budget.admit_fetch_at(later),
            "one second refills one second's rate"
        );
    }

    #[test]
    fn the_push_budget_bounds_bytes_too() {
        let budget = PushBudget::new(1 << 20);
        let t0 = lock(&budget.state).at;
        let all = usize::try_from(PUSH_BYTES_PER_SECOND).unwrap();
        assert!(budget.admit_at(all, t0), "one second's bytes at once");
        assert!(!budget.admit_at(1, t0), "nothing left");
        assert!(
            budget.admit_at(all / 2, t0 + Duration::from_millis(500)),
            "half refilled"
        );
        // a frame of the largest size always fits a full bucket
        let big = PushBudget::new(16 << 20);
        let t1 = lock(&big.state).at;
        assert!(big.admit_at(16 << 20, t1));
    }
}
