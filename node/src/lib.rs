//! iroh glue for oplog-sync: the protocol handler a node registers on its iroh `Router`,
//! [`OplogSync::sync_with`] to run a sync session with a peer, and [`Node`], a live node that
//! pushes, reconciles, merges and manages its members by itself.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use iroh::protocol::Router;
//! use oplog_node::{bind_loopback, loopback_addr, OplogSync, ALPN};
//! use oplog_store::{Store, protocol::{Hlc, LogEntry, Op, ObjectId, SigningKey}};
//!
//! let dir = tempfile::tempdir()?;
//! let (a, b) = (bind_loopback(None, vec![]).await?, bind_loopback(None, vec![]).await?);
//! let store_a: Arc<Store> = Arc::new(Store::open(dir.path().join("a.redb"))?);
//! let store_b: Arc<Store> = Arc::new(Store::open(dir.path().join("b.redb"))?);
//!
//! // One write on b.
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let put = Op::Put { bucket: "photos".into(), key: "cat.jpg".into(), object_id: ObjectId([1; 32]) };
//! store_b.insert([LogEntry::sign(&key, Hlc(1), put, vec![])?])?;
//!
//! // b answers a (and only a); a dials b.
//! let sync_b = OplogSync::new(Arc::clone(&store_b), [a.id()]);
//! let router = Router::builder(b.clone()).accept(ALPN, sync_b.clone()).spawn();
//! let sync_a = OplogSync::new(Arc::clone(&store_a), [b.id()]);
//! let report = sync_a.sync_with(&a, loopback_addr(&b)?).await?;
//!
//! assert_eq!(store_a.len(), 1);
//! println!("{report:?}");
//! router.shutdown().await?;
//! a.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # What a node registers
//!
//! [`OplogSync`] implements iroh's `ProtocolHandler`: a Shoal node adds one line to its
//! router, `Router::builder(endpoint).accept(oplog_node::ALPN, sync.clone())`, or, to keep
//! clusters apart as Shoal does with its own cluster ALPN, registers
//! [`cluster_alpn`]`(cluster_secret)` on both the router and the handler
//! ([`OplogSync::with_alpn`]). Connections from peers outside the allowed set are closed
//! with [`CLOSE_NOT_ALLOWED`] before anything is read, with a `warn!` line naming the peer.
//!
//! # Sessions
//!
//! A session (the sans-IO `oplog_protocol::session::Session`) runs on one bidirectional
//! stream, driven by [`run_session`]: frames are read and written concurrently, so flow
//! control can never stall both peers, and the session and the store writes run on tokio's
//! blocking pool. At most one session runs per pair of peers (a second one gets
//! [`SyncError::Busy`] locally, or END `Busy` from the peer).
//!
//! [`OplogSync::sync_with`] dials, runs one session and closes the connection: the responder
//! finishes its stream only when its session is over, and the initiator closes the
//! connection ([`CLOSE_DONE`]) once it has seen that end of stream, so no END frame is
//! dropped unread. A side that ended the session for cause (a protocol violation, a budget, a
//! timeout) closes the connection itself with [`CLOSE_SESSION_ERROR`] once its END is
//! acknowledged, the reason naming the END code. Every wait is bounded by the session's idle
//! timeout.
//!
//! # Streams on one connection (spec 9.9)
//!
//! The handler serves every stream a connection opens, at most
//! [`MAX_STREAMS_PER_CONNECTION`] at once; the first frame of a stream names its job: `01`
//! a session, `06` PUSH (entries the peer authored, pushed unasked, checked and applied by
//! [`live::receive_push`]'s rules, with at most one ancestry request back for what they
//! lack), `03` a standalone ancestry fetch. A peer may have at most
//! [`MAX_CONNECTIONS_PER_PEER`] connections open to a node; more are closed at once with
//! [`CLOSE_SESSION_ERROR`]. Pushes are budgeted per connection
//! ([`PUSHES_PER_SECOND`], [`PUSH_BURST`], [`PUSH_BYTES_PER_SECOND`]), and so are standalone
//! ancestry fetches ([`ANCESTRY_FETCHES_PER_SECOND`], [`ANCESTRY_FETCH_BURST`]). A peer removed from
//! the allowed set has its next stream refused and its connection closed
//! ([`CLOSE_NOT_ALLOWED`]).
//!
//! # The live node
//!
//! [`Node`] keeps one connection per peer and turns sessions into a cluster that stays
//! converged by itself: [`Node::append`] stamps (the node's HLC, resumed above its store's
//! newest entry after a restart), signs with the endpoint's key, stores, and pushes the entry
//! to every connected member without waiting for them (bounded per-peer queues; a full queue
//! drops the push and anti-entropy carries the entry); an anti-entropy loop per configured
//! peer runs a session every [`NodeConfig::anti_entropy`] (±25% jitter), reconnects with
//! exponential backoff up to 30 s, and starts early when a pushed entry stayed held back;
//! after every session and push the node writes a merge if the merge rule (spec 6.5) says so,
//! so a quiet cluster ends at one head and writes nothing more. [`Node::allow`] and
//! [`Node::disallow`] change the members at run time: both who may connect and whose entries
//! the store admits ([`oplog_store::Store::set_allowed_authors`]). [`Node::status`] (serde)
//! and [`Node::metrics_text`] (Prometheus text) are for operators;
//! [`Node::subscribe_synced`] ticks after every session or push applied.
//!
//! Each session runs in a tracing span `oplog.session` with the peer's short id and the
//! role, and logs its counters (round trips, frames, bytes and entries each way, overhead,
//! duration) in one `info!` line when it ends.
//!
//! # Features
//!
//! `iroh` (default): [`OplogSync`], [`Node`], the offline endpoint helpers, [`SyncError`]
//! and [`NodeError`], on iroh
//! 0.96.1 (the version Shoal runs). Without it the crate is only the transport-generic
//! driver ([`run_session`] and friends), which an iroh 1.x build reuses: iroh 0.96 and 1.x
//! cannot share one dependency graph.
//!
//! # Offline endpoints
//!
//! [`bind_loopback`] binds an endpoint on `127.0.0.1` with no relay and no address lookup;
//! [`loopback_addr`] gives the id plus socket address a peer dials it by. Tests, the example
//! above and benchmarks use them; a deployed node builds its endpoint as it always does.

mod alpn;
mod driver;

#[cfg(feature = "iroh")]
mod error;
#[cfg(feature = "iroh")]
mod handler;
#[cfg(feature = "iroh")]
pub mod live;
#[cfg(feature = "iroh")]
mod offline;

pub use driver::{run_session, SessionEnd, SessionOutcome, SyncStore, FRAME_QUEUE};
pub use oplog_protocol::session::{
    EndCode, Event, Role, Session, SessionConfig, SessionError, SessionStore, SyncReport,
};

pub use alpn::{cluster_alpn, ALPN};
#[cfg(feature = "iroh")]
pub use error::{NodeError, SyncError};
#[cfg(feature = "iroh")]
pub use handler::{
    OplogSync, ANCESTRY_FETCHES_PER_SECOND, ANCESTRY_FETCH_BURST, CLOSE_DONE, CLOSE_NOT_ALLOWED,
    CLOSE_SESSION_ERROR, MAX_CONNECTIONS_PER_PEER, MAX_STREAMS_PER_CONNECTION, PUSHES_PER_SECOND,
    PUSH_BURST, PUSH_BYTES_PER_SECOND,
};
#[cfg(feature = "iroh")]
pub use live::{Node, NodeConfig, NodeStatus, PeerStatus, SessionSummary};
#[cfg(feature = "iroh")]
pub use offline::{bind_loopback, loopback_addr, OfflineBindError};
