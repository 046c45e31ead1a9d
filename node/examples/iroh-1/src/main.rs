//! oplog-sync over iroh 1.x: two nodes in one process, each with an offline loopback endpoint
//! and its own redb store, sync their logs through iroh 1.x's `ProtocolHandler`.
//!
//! Node B registers [`OplogHandler`] on its `Router` under [`oplog_node::ALPN`]; node A dials
//! B by id plus socket address and runs the same session machine as the initiator. Both sides
//! drive it with `oplog_node::run_session`, the transport-generic driver (tokio
//! `AsyncRead`/`AsyncWrite`), which is all of `oplog-node` that builds without its iroh 0.96
//! feature. Afterwards the example checks that both stores hold the same entries, heads and
//! view, that `verify()` is clean on both, and that each side received exactly what it
//! lacked; it prints both sides' `SyncReport` and exits non-zero on any failure.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iroh::endpoint::{presets, Connection, PortmapperConfig, VarInt};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{Endpoint, EndpointAddr, RelayMode};
use oplog_node::{run_session, SessionOutcome};
use oplog_protocol::session::{Role, Session, SessionConfig, SessionError, SyncReport};
use oplog_protocol::{
    EntryError, EntryKey, Hash, HlcClock, HlcError, LogEntry, ObjectId, Op, SigningKey,
    SystemClock, DEFAULT_MAX_DRIFT,
};
use oplog_store::Store;
use tokio::sync::mpsc;

/// Entries both nodes hold before the sync (written by a third author, copied to both).
const SHARED: u32 = 500;
/// Entries only node A holds before the sync.
const ONLY_A: u32 = 2_000;
/// Entries only node B holds before the sync.
const ONLY_B: u32 = 3_000;

/// How long each side waits, once its session is over, for the other to finish (the
/// responder for the initiator's close, the initiator for the responder's end of stream),
/// and `main` for the responder's outcome.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Bytes the initiator reads after its session finished while it waits for the responder's
/// end of stream (nothing is due after an END frame).
const MAX_TRAILING_BYTES: usize = 1024;

/// Application close code: the session is over (completed, or ended by its END frame).
const CLOSE_DONE: u32 = 0;
/// Application close code: this side ended the session for cause (its END names the reason).
const CLOSE_SESSION_ERROR: u32 = 2;

/// Everything that can make the example fail; each message says what to check.
#[derive(Debug, thiserror::Error)]
enum ExampleError {
    #[error("could not create a temporary directory for the stores ({0}); check that TMPDIR is writable")]
    TempDir(std::io::Error),
    #[error("store of node {node}: {source}")]
    Store {
        node: &'static str,
        #[source]
        source: oplog_store::Error,
    },
    #[error("could not sign an entry: {0}")]
    Sign(#[from] EntryError),
    #[error("the hybrid logical clock refused a stamp: {0}")]
    Clock(#[from] HlcError),
    #[error("node {node} refused {refused} of its own {total} entries; the store's rules or limits changed")]
    Refused {
        node: &'static str,
        refused: usize,
        total: usize,
    },
    #[error("could not bind node {node}'s endpoint on 127.0.0.1 ({reason}); is the loopback interface up?")]
    Bind { node: &'static str, reason: String },
    #[error("node A could not connect to node B at {addr} ({reason})")]
    Connect { addr: String, reason: String },
    #[error("could not open the session's stream ({0})")]
    Stream(String),
    #[error("the session could not start: {0}")]
    SessionStart(#[from] SessionError),
    #[error("node {node}'s session did not complete: {detail}")]
    Session { node: &'static str, detail: String },
    #[error("node B's handler reported no session within {CLOSE_WAIT:?}; it never accepted the connection or failed before running one")]
    NoResponderOutcome,
    #[error("the stores differ after the sync: {0}")]
    Mismatch(String),
}

/// The protocol handler node B registers: one bidirectional stream per connection, one
/// session as the responder over B's store. It reports each session's outcome to `main`.
#[derive(Debug, Clone)]
struct OplogHandler {
    store: Arc<Store>,
    outcomes: mpsc::Sender<SessionOutcome>,
}

impl ProtocolHandler for OplogHandler {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let session = Session::new(
            SessionConfig::default(),
            Role::Responder,
            self.store.snapshot(),
            Instant::now(),
        )
        .map_err(AcceptError::from_err)?;
        let outcome = run_session(session, Arc::clone(&self.store), &mut recv, &mut send).await;
        if ended_here(&outcome) {
            // Once the initiator has our END (acknowledged by QUIC), close, naming the reason.
            let _ = tokio::time::timeout(CLOSE_WAIT, send.stopped()).await;
            conn.close(VarInt::from_u32(CLOSE_SESSION_ERROR), b"session ended");
        } else {
            // The initiator closes once it has read everything; bounded.
            let _ = tokio::time::timeout(CLOSE_WAIT, conn.closed()).await;
        }
        // `main` holds the receiver until it has read one outcome; later ones have no reader.
        let _ = self.outcomes.try_send(outcome);
        Ok(())
    }
}

/// Whether this side ended the session for cause (its own END with a failure code).
fn ended_here(outcome: &SessionOutcome) -> bool {
    outcome.end.as_ref().is_some_and(|end| !end.by_peer)
}

/// Binds an endpoint that never touches the network: no relay, no address lookup, no port
/// mapper, one UDP socket on 127.0.0.1.
async fn bind_offline(node: &'static str) -> Result<(Endpoint, EndpointAddr), ExampleError> {
    let bind_err = |reason: String| ExampleError::Bind { node, reason };
    let endpoint = Endpoint::builder(presets::Minimal)
        .relay_mode(RelayMode::Disabled)
        .clear_address_lookup()
        .portmapper_config(PortmapperConfig::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .map_err(|e| bind_err(e.to_string()))?
        .bind()
        .await
        .map_err(|e| bind_err(e.to_string()))?;
    let Some(socket) = endpoint.bound_sockets().first().copied() else {
        return Err(bind_err("the endpoint reports no bound socket".into()));
    };
    let addr = EndpointAddr::new(endpoint.id()).with_ip_addr(socket);
    Ok((endpoint, addr))
}

/// Signs `count` entries by `key`, each following the previous one (the first follows
/// `parent`). Every fifth entry writes `photos/cover.jpg`, so both nodes write that register
/// and the sync has a last-writer-wins conflict to settle.
fn write_chain(
    key: &SigningKey,
    clock: &mut HlcClock<SystemClock>,
    prefix: &str,
    count: u32,
    mut parent: Option<Hash>,
) -> Result<Vec<LogEntry>, ExampleError> {
    let mut entries = Vec::new();
    for i in 0..count {
        let name = if i % 5 == 0 {
            "cover.jpg".to_owned()
        } else {
            format!("{prefix}-{i:05}.jpg")
        };
        let mut object = [0u8; 32];
        object[..4].copy_from_slice(&i.to_be_bytes());
        object[4..4 + prefix.len().min(28)]
            .copy_from_slice(&prefix.as_bytes()[..prefix.len().min(28)]);
        let put = Op::Put {
            bucket: "photos".into(),
            key: name,
            object_id: ObjectId(object),
        };
        let entry = LogEntry::sign(key, clock.tick()?, put, parent.into_iter().collect())?;
        parent = Some(entry.hash);
        entries.push(entry);
    }
    Ok(entries)
}

/// Inserts `entries` into `store` and fails unless every one of them was applied.
fn insert_all(
    node: &'static str,
    store: &Store,
    entries: Vec<LogEntry>,
) -> Result<(), ExampleError> {
    let total = entries.len();
    let report = store
        .insert(entries)
        .map_err(|source| ExampleError::Store { node, source })?;
    if report.applied.len() != total {
        return Err(ExampleError::Refused {
            node,
            refused: total - report.applied.len(),
            total,
        });
    }
    Ok(())
}

/// Every applied entry's key, in key order. The example's stores hold a few thousand
/// entries (fixed above), so the list stays small.
fn keys(node: &'static str, store: &Store) -> Result<Vec<EntryKey>, ExampleError> {
    let mut out = Vec::new();
    store
        .for_each_entry(|entry| {
            out.push(entry.key());
            Ok(())
        })
        .map_err(|source| ExampleError::Store { node, source })?;
    Ok(out)
}

/// Fails unless the session completed: no END with a failure code, no store error.
fn check_outcome(node: &'static str, outcome: &SessionOutcome) -> Result<(), ExampleError> {
    if let Some(error) = &outcome.store_error {
        return Err(ExampleError::Session {
            node,
            detail: format!("its store failed: {error}"),
        });
    }
    if let Some(end) = &outcome.end {
        let by = if end.by_peer { "the peer" } else { "this side" };
        return Err(ExampleError::Session {
            node,
            detail: format!("{by} ended it with {:?}: {}", end.code, end.reason),
        });
    }
    if !outcome.report.is_done() {
        return Err(ExampleError::Session {
            node,
            detail: format!("it finished with end code {:?}", outcome.report.end),
        });
    }
    Ok(())
}

fn print_report(node: &str, report: &SyncReport) {
    println!(
        "node {node} ({:?}): {} round trips, {:?}; sent {} frames / {} bytes / {} entries ({} entry bytes); \
         received {} frames / {} bytes / {} entries ({} entry bytes); protocol overhead {} bytes both ways",
        report.role,
        report.round_trips(),
        report.duration,
        report.frames_sent,
        report.bytes_sent,
        report.entries_sent,
        report.entry_bytes_sent,
        report.frames_received,
        report.bytes_received,
        report.entries_received,
        report.entry_bytes_received,
        report.overhead_bytes(),
    );
}

/// Compares the two stores and checks each side received exactly what it lacked.
fn check_converged(
    store_a: &Store,
    store_b: &Store,
    report_a: &SyncReport,
    report_b: &SyncReport,
) -> Result<(), ExampleError> {
    let mismatch = |what: String| Err(ExampleError::Mismatch(what));
    let want = u64::from(SHARED + ONLY_A + ONLY_B);
    if store_a.len() != want || store_b.len() != want {
        return mismatch(format!(
            "A holds {} entries and B {}, both should hold {want}",
            store_a.len(),
            store_b.len()
        ));
    }
    if keys("A", store_a)? != keys("B", store_b)? {
        return mismatch("the two logs hold different entries".into());
    }
    let heads_a = store_a
        .heads()
        .map_err(|source| ExampleError::Store { node: "A", source })?;
    let heads_b = store_b
        .heads()
        .map_err(|source| ExampleError::Store { node: "B", source })?;
    if heads_a != heads_b || heads_a.len() != 2 {
        return mismatch(format!(
            "heads differ or are not the two chain tips: A has {}, B has {}",
            heads_a.len(),
            heads_b.len()
        ));
    }
    let view_a = store_a
        .view()
        .map_err(|source| ExampleError::Store { node: "A", source })?;
    let view_b = store_b
        .view()
        .map_err(|source| ExampleError::Store { node: "B", source })?;
    if view_a != view_b {
        return mismatch("the last-writer-wins views differ".into());
    }
    for (node, store) in [("A", store_a), ("B", store_b)] {
        let verify = store
            .verify()
            .map_err(|source| ExampleError::Store { node, source })?;
        if !verify.is_ok() {
            return mismatch(format!(
                "node {node}'s store fails verify(): {:?}",
                verify.problems
            ));
        }
    }
    if report_a.entries_received != u64::from(ONLY_B)
        || report_b.entries_received != u64::from(ONLY_A)
    {
        return mismatch(format!(
            "A received {} entries (lacked {ONLY_B}) and B received {} (lacked {ONLY_A})",
            report_a.entries_received, report_b.entries_received
        ));
    }
    if report_a.round_trips() != report_b.round_trips() {
        return mismatch(format!(
            "the sides count {} and {} round trips",
            report_a.round_trips(),
            report_b.round_trips()
        ));
    }
    Ok(())
}

async fn run() -> Result<(), ExampleError> {
    let dir = tempfile::Builder::new()
        .prefix("oplog-iroh1-")
        .tempdir()
        .map_err(ExampleError::TempDir)?;
    let store_a = Arc::new(
        Store::open(dir.path().join("a.redb"))
            .map_err(|source| ExampleError::Store { node: "A", source })?,
    );
    let store_b = Arc::new(
        Store::open(dir.path().join("b.redb"))
            .map_err(|source| ExampleError::Store { node: "B", source })?,
    );

    // The log keys. Each node signs its own entries with its own ed25519-dalek 2 key; here they
    // are not the endpoint keys (iroh 1.x keys are ed25519-dalek 3), which a deployment may
    // use instead: `iroh::SecretKey::sign` signs the same bytes.
    let origin_key = SigningKey::from_bytes(&[1; 32]);
    let key_a = SigningKey::from_bytes(&[0xa; 32]);
    let key_b = SigningKey::from_bytes(&[0xb; 32]);

    let mut clock = HlcClock::new(SystemClock, DEFAULT_MAX_DRIFT);
    let shared = write_chain(&origin_key, &mut clock, "origin", SHARED, None)?;
    let fork = shared.last().map(|e| e.hash);
    insert_all("A", &store_a, shared.clone())?;
    insert_all("B", &store_b, shared)?;
    // Each node writes on from the shared tip with its own clock (which has seen that tip).
    let mut clock_b = clock.clone();
    insert_all(
        "A",
        &store_a,
        write_chain(&key_a, &mut clock, "a", ONLY_A, fork)?,
    )?;
    insert_all(
        "B",
        &store_b,
        write_chain(&key_b, &mut clock_b, "b", ONLY_B, fork)?,
    )?;
    println!(
        "before: A holds {} entries, B holds {} ({SHARED} shared)",
        store_a.len(),
        store_b.len()
    );

    let started = Instant::now();
    let (ep_a, _) = bind_offline("A").await?;
    let (ep_b, addr_b) = bind_offline("B").await?;
    let bound = started.elapsed();

    let (outcome_tx, mut outcome_rx) = mpsc::channel(1);
    let handler = OplogHandler {
        store: Arc::clone(&store_b),
        outcomes: outcome_tx,
    };
    let router = Router::builder(ep_b.clone())
        .accept(oplog_node::ALPN, handler)
        .spawn();

    let started = Instant::now();
    let addr = format!(
        "{} at {:?}",
        addr_b.id.fmt_short(),
        addr_b.ip_addrs().collect::<Vec<_>>()
    );
    let conn = ep_a
        .connect(addr_b, oplog_node::ALPN)
        .await
        .map_err(|e| ExampleError::Connect {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let connected = started.elapsed();
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| ExampleError::Stream(e.to_string()))?;
    let session = Session::new(
        SessionConfig::default(),
        Role::Initiator,
        store_a.snapshot(),
        Instant::now(),
    )?;
    let outcome_a = run_session(session, Arc::clone(&store_a), &mut recv, &mut send).await;
    if ended_here(&outcome_a) {
        // Once B has our END (acknowledged by QUIC), close, naming the reason.
        let _ = tokio::time::timeout(CLOSE_WAIT, send.stopped()).await;
        conn.close(VarInt::from_u32(CLOSE_SESSION_ERROR), b"session ended");
    } else {
        // B finishes its stream only once its session is over, so its end of stream means it
        // has read everything we sent (our END included): only then is closing safe.
        let _ = tokio::time::timeout(CLOSE_WAIT, recv.read_to_end(MAX_TRAILING_BYTES)).await;
        conn.close(VarInt::from_u32(CLOSE_DONE), b"done");
    }
    let outcome_b = tokio::time::timeout(CLOSE_WAIT, outcome_rx.recv())
        .await
        .ok()
        .flatten();
    let synced = started.elapsed();

    router.shutdown().await.ok();
    ep_a.close().await;

    println!("bound two endpoints in {bound:?}; connected to B ({addr}) in {connected:?}; connect + sync in {synced:?}");
    print_report("A", &outcome_a.report);
    if let Some(outcome_b) = &outcome_b {
        print_report("B", &outcome_b.report);
    }
    check_outcome("A", &outcome_a)?;
    let outcome_b = outcome_b.ok_or(ExampleError::NoResponderOutcome)?;
    check_outcome("B", &outcome_b)?;
    check_converged(&store_a, &store_b, &outcome_a.report, &outcome_b.report)?;
    let heads = store_a
        .heads()
        .map_err(|source| ExampleError::Store { node: "A", source })?;
    println!(
        "after: both hold {} entries, the same {} heads and the same view; verify() clean on both",
        store_a.len(),
        heads.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => {
            println!("ok: two nodes synced over iroh 1.x");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
