//! What can go wrong in [`OplogSync::sync_with`](crate::OplogSync::sync_with).

use iroh::endpoint::{ConnectError, ConnectionError};
use iroh::EndpointId;

use oplog_protocol::session::{EndCode, SyncReport};

/// Why a sync with a peer did not complete. Each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The peer could not be reached or the QUIC handshake failed (wrong address, the peer
    /// is down, or it does not speak this ALPN: another cluster, or no oplog-sync).
    #[error("cannot connect to {peer}: {source}; check the peer's address, that it is up, and that both use the same (cluster) ALPN")]
    Connect {
        /// The peer dialed.
        peer: EndpointId,
        /// What iroh reported.
        #[source]
        source: ConnectError,
    },
    /// The peer closed the connection with an application error code before this side saw
    /// the session's END: [`CLOSE_NOT_ALLOWED`](crate::CLOSE_NOT_ALLOWED) means this node is
    /// not in the peer's allowed set (nothing was read);
    /// [`CLOSE_SESSION_ERROR`](crate::CLOSE_SESSION_ERROR) means the peer ended the session
    /// for cause, and `reason` names its END code and reason.
    #[error("{peer} closed the connection with code {code} ({reason}); code 1: this node is not in the peer's allowed set, ask its operator to add it; code 2: the peer ended the session for the reason given")]
    Refused {
        /// The peer.
        peer: EndpointId,
        /// The application error code it closed the connection with.
        code: u64,
        /// The reason text it gave.
        reason: String,
    },
    /// A session with this peer is already running, here (`by_peer: false`) or at the peer
    /// (`by_peer: true`, it answered with END [`EndCode::Busy`]). At most one session runs
    /// per pair of peers; nothing was exchanged.
    #[error("a sync session with {peer} is already running ({}); retry after it ends, it syncs the same data", if *by_peer { "at the peer" } else { "on this node" })]
    Busy {
        /// The peer.
        peer: EndpointId,
        /// Whether the peer (rather than this node) found the pair busy.
        by_peer: bool,
    },
    /// Applying received entries failed in the local store; the session was ended with
    /// [`EndCode::Internal`]. Entries applied before the failure stay applied.
    #[error("the local store failed while syncing with {peer}: {reason}; check the disk and the store (verify()), then retry")]
    Store {
        /// The peer.
        peer: EndpointId,
        /// The store's error.
        reason: String,
        /// The session's counters up to the failure.
        report: Box<SyncReport>,
    },
    /// The session ran past one of its deadlines (the peer was silent, too slow, or did
    /// not read).
    #[error("the sync session with {peer} timed out ({reason}); the peer is slow, overloaded or unreachable: retry later")]
    Timeout {
        /// The peer.
        peer: EndpointId,
        /// Which deadline.
        reason: String,
        /// The session's counters up to the timeout.
        report: Box<SyncReport>,
    },
    /// The session ended with an END frame other than success: a protocol violation by one
    /// side, a budget exceeded, or the peer's own failure. Entries applied before it stay
    /// applied; the next session resumes from there.
    #[error("the sync session with {peer} ended with {code:?} ({}): {reason}; retry later, and if it persists check both nodes' logs for this code", if *by_peer { "sent by the peer" } else { "sent by this node" })]
    Ended {
        /// The peer.
        peer: EndpointId,
        /// The end code.
        code: EndCode,
        /// The reason text of the END frame.
        reason: String,
        /// Whether the peer (rather than this node) ended it.
        by_peer: bool,
        /// The session's counters up to the end.
        report: Box<SyncReport>,
    },
    /// The QUIC connection failed or was lost before the session ended (not a refusal).
    #[error("the connection to {peer} failed: {source}; retry, and check the network path if it persists")]
    Connection {
        /// The peer.
        peer: EndpointId,
        /// What QUIC reported.
        #[source]
        source: ConnectionError,
    },
    /// The session could not be created (its configuration is invalid).
    #[error("cannot start a sync session: {reason}; fix the SessionConfig given to OplogSync")]
    Config {
        /// Why the session refused the configuration.
        reason: String,
    },
}

/// Why a [`Node`](crate::Node) operation failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The local store failed (disk, or a damaged file).
    #[error("the node's store failed: {0}; check the disk and run verify() on the store")]
    Store(#[from] oplog_store::Error),
    /// The store refused the node's own new entry (for instance this node is not in the
    /// store's allowed authors, or the entry is too large).
    #[error("the store refused this node's own entry: {0}; check the node's key against the allowed members and the entry's size")]
    Refused(#[from] oplog_protocol::replica::InsertError),
    /// The entry could not be built or signed (a field over its size limit, too many
    /// parents).
    #[error("cannot build the entry: {0}; shorten the bucket or key")]
    Entry(#[from] oplog_protocol::EntryError),
    /// The node's hybrid logical clock cannot issue a stamp (it reached its maximum, or the
    /// wall clock is unusable).
    #[error("the node's clock cannot stamp a new entry: {0}; check the system clock")]
    Clock(#[from] oplog_protocol::HlcError),
    /// A sync session with a peer failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// `sync_with` was asked for a peer that is not configured (no address to dial it by).
    #[error(
        "{0} is not a configured peer of this node; add it with add_peer (id and address) first"
    )]
    UnknownPeer(EndpointId),
    /// Connecting to the peer took longer than the session's idle timeout.
    #[error("connecting to {0} timed out; check that it is up and its address is right")]
    ConnectTimeout(EndpointId),
    /// The peer is configured but not a member (not in the allowed set): the node does not
    /// sync with it.
    #[error("{0} is not an allowed member of this node; allow it first")]
    NotAMember(EndpointId),
    /// The node's configuration is invalid.
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// The node is shutting down or has shut down.
    #[error("the node is shutting down; start a new one to go on")]
    Shutdown,
    /// A background task of the node panicked or was cancelled (a bug; the message says
    /// where).
    #[error("a task of the node failed: {0}; this is a bug, report it with the node's log")]
    Task(String),
}
