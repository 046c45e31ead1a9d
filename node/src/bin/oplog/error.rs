//! What the program reports when a command fails, and its exit code.

use std::path::PathBuf;

/// A failed command. Each variant says what went wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line was well formed for clap but an argument's value is not (an id that
    /// is not 64 hex characters, a `BUCKET/KEY` without a slash). Exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The data directory is missing or is not a directory.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The `--data-dir` given.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The identity key file cannot be read, created or is malformed.
    #[error("identity key {path}: {reason}")]
    Identity {
        /// The key file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Another process holds the log file open and no server answers on the control socket.
    #[error("{path} is locked by another process and no `oplog serve` answers on {socket}; stop that process and retry, or, if it is an `oplog serve` whose socket was removed, restart it (`oplog serve --data-dir {dir}`)", dir = .path.parent().map(|p| p.display().to_string()).unwrap_or_default(), socket = .socket.display())]
    Locked {
        /// The log file.
        path: PathBuf,
        /// The control socket that did not answer.
        socket: PathBuf,
    },
    /// The answer is printed but means failure (a `get` of a missing key, a `verify` that
    /// found problems).
    #[error("{0}")]
    Missing(String),
    /// The store failed (opening, reading or writing the log).
    #[error("{0}")]
    Store(#[from] oplog_store::Error),
    /// A write could not be made (clock exhausted, the store refused the entry).
    #[error("the write was not stored: {0}")]
    Write(String),
    /// The peer could not be reached.
    #[error("cannot reach peer {peer}: {reason}; check that it runs (`oplog serve`), its address, and that both use the same --cluster-secret")]
    Unreachable {
        /// The peer's id.
        peer: String,
        /// What the transport reported.
        reason: String,
    },
    /// The peer refused this node (not a member there).
    #[error("peer {peer} refused this node: {reason}; ask its operator to run `oplog allow {me}` there (or start it with --allow {me})")]
    Refused {
        /// The peer's id.
        peer: String,
        /// This node's id.
        me: String,
        /// What the peer said.
        reason: String,
    },
    /// The sync started but did not finish.
    #[error("sync with {peer} failed: {reason}")]
    Sync {
        /// The peer's id.
        peer: String,
        /// What went wrong and what to do.
        reason: String,
    },
    /// The command only works through a running server.
    #[error("`{command}` changes a running node: start `oplog serve --data-dir {dir}` first")]
    NeedsServer {
        /// The command.
        command: &'static str,
        /// The data directory.
        dir: String,
    },
    /// The server answered on the control socket with an error.
    #[error("{message}")]
    Remote {
        /// The server's message.
        message: String,
        /// The exit code the server chose.
        code: u8,
    },
    /// The control socket misbehaved (a broken answer, a closed connection).
    #[error("control socket {path}: {reason}; is the `oplog serve` there the same version as this program?")]
    Control {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Binding, the runtime, or the node itself failed.
    #[error("{0}")]
    Node(String),
    /// An I/O error outside the store (sockets, files).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The process exit code: 2 for a usage error, 1 for every other failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Remote { code, .. } => *code,
            _ => 1,
        }
    }

    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            what: what.into(),
            source,
        }
    }
}
