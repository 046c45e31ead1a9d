//! The command line (clap derive).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// oplog: a signed, causally ordered mutation log kept identical across peers.
#[derive(Debug, Parser)]
#[command(name = "oplog", version)]
pub struct Cli {
    /// Data directory: `identity.key`, `log.redb` and, while `serve` runs, `control.sock`.
    #[arg(long, global = true, default_value = "./oplog-data")]
    pub data_dir: PathBuf,
    /// Print the result as JSON (one document on stdout) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node: accept peers, push and reconcile, serve the control socket until Ctrl-C.
    Serve(ServeArgs),
    /// Point BUCKET/KEY at an object (its 64-hex-character id).
    Put {
        /// Bucket name.
        bucket: String,
        /// Object key in the bucket.
        key: String,
        /// The object's id: 32 bytes as 64 hex characters.
        object_id: String,
    },
    /// Delete BUCKET/KEY (a tombstone in the log).
    Delete {
        /// Bucket name.
        bucket: String,
        /// Object key in the bucket.
        key: String,
    },
    /// The object BUCKET/KEY points at now.
    Get {
        /// Bucket name.
        bucket: String,
        /// Object key in the bucket.
        key: String,
    },
    /// The live keys of BUCKET (optionally only those starting with PREFIX).
    Ls {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        #[arg(default_value = "")]
        prefix: String,
    },
    /// The audit trail, newest first: who wrote what, when, and which write won.
    Log {
        /// Show at most this many entries (the newest).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Draw the DAG with its branches and merges.
        #[arg(long)]
        graph: bool,
        /// Only the writes to one register, as BUCKET/KEY.
        #[arg(long, value_name = "BUCKET/KEY")]
        key: Option<String>,
    },
    /// Reconcile with a peer now (`PEER_ID`, or `PEER_ID@IP:PORT` for a peer not configured).
    Sync {
        /// The peer: its id (64 hex), optionally `@IP:PORT`.
        peer: String,
        /// Cluster secret the peer serves under (only without a running `serve`, which uses
        /// its own).
        #[arg(long)]
        cluster_secret: Option<String>,
        /// Give up connecting after this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Heads, entry counts, held-back and deferred entries, and the peers with their last sync.
    Status,
    /// Re-check every stored entry, the DAG and the view from scratch.
    Verify,
    /// Admit a member at run time (needs a running `serve`).
    Allow {
        /// The member's node id (64 hex).
        id: String,
    },
    /// Remove a member at run time: its connection is closed and its entries refused (needs a
    /// running `serve`).
    Disallow {
        /// The member's node id (64 hex).
        id: String,
    },
    /// Five real nodes on loopback drift apart, conflict and converge; prints what crossed.
    Demo {
        /// Writes by each of the four connected nodes while the fifth is cut off.
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        writes: u32,
    },
}

/// `oplog serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// UDP address to bind the iroh endpoint on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// A peer to keep in sync with, as ID@IP:PORT (repeatable). Peers are members too.
    #[arg(long = "peer", value_name = "ID@ADDR")]
    pub peers: Vec<String>,
    /// Another member (node id, 64 hex) that may connect and author entries (repeatable).
    #[arg(long = "allow", value_name = "ID")]
    pub allow: Vec<String>,
    /// Shared secret of the cluster: nodes with different secrets never connect.
    #[arg(long)]
    pub cluster_secret: Option<String>,
    /// Serve Prometheus metrics over HTTP on this address (`GET /metrics`).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Seconds between anti-entropy sessions with each peer (jittered).
    #[arg(long, default_value_t = 10.0)]
    pub anti_entropy: f64,
}
