//! [`OplogSync`]: the iroh protocol handler (the responder side) and [`OplogSync::sync_with`]
//! (the initiator side).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use iroh::endpoint::{Connection, ConnectionError, VarInt};
use iroh::protocol::{AcceptError, ProtocolHandler};
use iroh::{Endpoint, EndpointAddr, EndpointId};
use oplog_protocol::{Action, Op};
use oplog_store::Store;
use tracing::{info, info_span, warn, Instrument};

use crate::driver::{run_session, SessionEnd, SessionOutcome};
use crate::error::SyncError;
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

/// Longest reason text put in a connection close (QUIC sends it in one packet).
const MAX_CLOSE_REASON: usize = 512;

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
        };
        change(&mut inner);
        OplogSync {
            inner: Arc::new(inner),
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
                Some(end) if !end.by_peer => {
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
                    conn.close(CLOSE_DONE.into(), b"done");
                }
            }
            log_outcome(&outcome);
            classify(id, outcome, closed_by_peer)
        }
        .instrument(span)
        .await
    }

    /// Answers one incoming connection from an allowed peer: one stream, one session as the
    /// responder.
    async fn respond(&self, conn: Connection, peer: EndpointId) -> Result<(), AcceptError> {
        // A peer that connects and never opens a stream is not waited for forever.
        let idle = self.inner.config.idle_timeout;
        let Ok(accepted) = tokio::time::timeout(idle, conn.accept_bi()).await else {
            info!("the peer opened no stream in time; closing");
            conn.close(CLOSE_SESSION_ERROR.into(), b"no stream opened");
            return Ok(());
        };
        let (mut send, mut recv) = accepted?;
        let active = self.begin(peer);
        let mut session = self
            .new_session(Role::Responder)
            .map_err(AcceptError::from_err)?;
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
        match &outcome.end {
            Some(end) if !end.by_peer && end.code != EndCode::Busy => {
                // This side ended it for cause: once the peer has our END (acknowledged at
                // the QUIC level), close, naming the reason.
                let _ = tokio::time::timeout(idle, send.stopped()).await;
                conn.close(CLOSE_SESSION_ERROR.into(), close_reason(end).as_bytes());
            }
            _ => {
                // The initiator closes once it has read everything; give it a bound.
                let _ = tokio::time::timeout(idle, conn.closed()).await;
            }
        }
        Ok(())
    }
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
        let span = info_span!("oplog.session", peer = %peer.fmt_short(), role = "responder");
        self.respond(conn, peer).instrument(span).await
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
    let Some(end) = end else {
        return Ok(report);
    };
    if let Some(reason) = store_error {
        return Err(SyncError::Store {
            peer,
            reason,
            report: Box::new(report),
        });
    }
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
