//! `oplog serve`: the node, its control socket and its metrics, until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMode};
use oplog_node::{cluster_alpn, Node, NodeConfig, NodeError, ALPN};
use serde_json::{json, Value};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use crate::cli::ServeArgs;
use crate::control;
use crate::datadir::DataDir;
use crate::error::CliError;
use crate::exec::{self, parse_id, parse_peer, Request};

/// Binds an iroh endpoint on `bind` with the node's secret key, no relay and no address
/// lookup: peers dial it by id plus socket address.
pub async fn bind_endpoint(
    secret: [u8; 32],
    bind: SocketAddr,
    alpns: Vec<Vec<u8>>,
) -> Result<Endpoint, CliError> {
    let builder = Endpoint::empty_builder(RelayMode::Disabled)
        .clear_ip_transports()
        .alpns(alpns)
        .secret_key(iroh::SecretKey::from_bytes(&secret))
        .bind_addr(bind)
        .map_err(|e| CliError::Node(format!("cannot bind on {bind}: {e}")))?;
    builder.bind().await.map_err(|e| {
        CliError::Node(format!(
            "cannot bind the endpoint on {bind}: {e}; pick a free port or another address with --bind"
        ))
    })
}

/// The address peers dial `endpoint` by: its first bound socket.
pub fn bound_addr(endpoint: &Endpoint) -> Result<SocketAddr, CliError> {
    endpoint
        .bound_sockets()
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Node("the endpoint bound but reports no socket address".into()))
}

/// Runs the node until Ctrl-C or SIGTERM.
pub async fn serve(data_dir: &Path, args: ServeArgs) -> Result<(), CliError> {
    let dir = DataDir::create(data_dir)?;
    let socket = dir.socket();
    if UnixStream::connect(&socket).await.is_ok() {
        return Err(CliError::Node(format!(
            "an `oplog serve` already runs on {} (its control socket {} answers); stop it first or use another --data-dir",
            dir.path().display(),
            socket.display()
        )));
    }
    let secret = dir.identity(true)?;
    let store = Arc::new(control::open_store(&dir, true)?);
    let mut peers = Vec::new();
    for p in &args.peers {
        match parse_peer(p)? {
            (id, Some(addr)) => peers.push(EndpointAddr::new(id).with_ip_addr(addr)),
            (id, None) => {
                return Err(CliError::Usage(format!(
                    "--peer needs an address: {id}@IP:PORT"
                )))
            }
        }
    }
    let mut allowed: Vec<EndpointId> = peers.iter().map(|p| p.id).collect();
    for a in &args.allow {
        allowed.push(parse_id(a)?);
    }
    if !(args.anti_entropy.is_finite() && args.anti_entropy > 0.0 && args.anti_entropy < 1e9) {
        return Err(CliError::Usage(format!(
            "--anti-entropy must be a positive number of seconds, got {}",
            args.anti_entropy
        )));
    }
    let alpn = args
        .cluster_secret
        .as_deref()
        .map_or_else(|| ALPN.to_vec(), |s| cluster_alpn(s.as_bytes()));
    let endpoint = bind_endpoint(secret, args.bind, vec![alpn.clone()]).await?;
    let addr = bound_addr(&endpoint)?;
    let mut config = NodeConfig::default();
    config.alpn = alpn;
    config.peers = peers;
    config.allowed = allowed;
    config.anti_entropy = Duration::from_secs_f64(args.anti_entropy);
    let node = Arc::new(
        Node::spawn(endpoint, store, config)
            .await
            .map_err(|e| CliError::Node(format!("the node did not start: {e}")))?,
    );

    // A socket file that no server answers on is left over from a killed server.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|e| {
        CliError::io(
            format!("cannot listen on the control socket {}", socket.display()),
            e,
        )
    })?;
    let control_node = Arc::clone(&node);
    let control = tokio::spawn(control::serve_socket(listener, move |req| {
        let node = Arc::clone(&control_node);
        async move { handle(&node, req).await }
    }));
    let metrics = match args.metrics {
        None => None,
        Some(at) => {
            let listener = TcpListener::bind(at)
                .await
                .map_err(|e| CliError::io(format!("cannot serve metrics on {at}"), e))?;
            let shown = listener.local_addr().unwrap_or(at);
            println!("metrics on http://{shown}/metrics");
            let metrics_node = Arc::clone(&node);
            Some(tokio::spawn(crate::metrics_http::serve(
                listener,
                move || metrics_node.metrics_text(),
            )))
        }
    };
    let id = node.id();
    println!("oplog node {id}");
    println!("listening on {addr}");
    println!("control socket {}", socket.display());
    println!("ready {id}@{addr}");
    let _ = std::io::stdout().flush();

    let stopped = wait_for_signal().await;
    control.abort();
    let _ = control.await;
    if let Some(m) = metrics {
        m.abort();
        let _ = m.await;
    }
    let _ = std::fs::remove_file(&socket);
    eprintln!("{stopped}: shutting down");
    match Arc::try_unwrap(node) {
        Ok(node) => node
            .shutdown()
            .await
            .map_err(|e| CliError::Node(format!("shutdown: {e}"))),
        // a control request still holds the node: it ends with the process
        Err(_) => Ok(()),
    }
}

async fn wait_for_signal() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        () = term => "terminated",
    }
}

/// Runs a control request on the node.
async fn handle(node: &Arc<Node>, request: Request) -> Result<Value, CliError> {
    let blocking = |request: Request| {
        let store = Arc::clone(node.store());
        async move {
            tokio::task::spawn_blocking(move || exec::read(&store, &request))
                .await
                .map_err(|e| CliError::Node(format!("a read failed: {e}")))?
        }
    };
    match request {
        Request::Put {
            bucket,
            key,
            object_id,
        } => {
            let e = node
                .put(bucket, key, object_id)
                .await
                .map_err(|e| node_error(node, &e))?;
            Ok(exec::written(&e))
        }
        Request::Delete { bucket, key } => {
            let e = node
                .delete(bucket, key)
                .await
                .map_err(|e| node_error(node, &e))?;
            Ok(exec::written(&e))
        }
        Request::Status => {
            let mut v = blocking(Request::Status).await?.unwrap_or(Value::Null);
            let status = node.status().map_err(|e| node_error(node, &e))?;
            let status = serde_json::to_value(&status).unwrap_or(Value::Null);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("node".into(), node.id().to_string().into());
                obj.insert("server".into(), true.into());
                obj.insert(
                    "peers".into(),
                    status.get("peers").cloned().unwrap_or_else(|| json!([])),
                );
                obj.insert("node_status".into(), status);
            }
            Ok(v)
        }
        Request::Sync { peer, timeout, .. } => {
            let (id, addr) = parse_peer(&peer)?;
            if let Some(addr) = addr {
                node.add_peer(EndpointAddr::new(id).with_ip_addr(addr));
            }
            match tokio::time::timeout(Duration::from_secs(timeout.max(1)), sync_now(node, id))
                .await
            {
                Err(_) => Err(CliError::Unreachable {
                    peer: id.to_string(),
                    reason: format!("no session within {timeout} s"),
                }),
                Ok(Err(e)) => Err(node_error(node, &e)),
                Ok(Ok(report)) => Ok(exec::sync_json(&id, &report)),
            }
        }
        Request::Allow { id } => {
            node.allow(parse_id(&id)?);
            Ok(json!({"allowed": id}))
        }
        Request::Disallow { id } => {
            node.disallow(&parse_id(&id)?);
            Ok(json!({"disallowed": id}))
        }
        read => Ok(blocking(read).await?.unwrap_or(Value::Null)),
    }
}

/// One session with `peer` now. If one is already running (anti-entropy, or a session the
/// peer started), waits for it to end and runs another, so the answer is a session of ours;
/// gives up after [`BUSY_RETRIES`] tries.
pub async fn sync_now(node: &Node, peer: EndpointId) -> Result<oplog_node::SyncReport, NodeError> {
    let mut tries = 0;
    loop {
        match node.sync_with(peer).await {
            Err(NodeError::Sync(oplog_node::SyncError::Busy { .. })) if tries < BUSY_RETRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// How often [`sync_now`] tries again while another session with the peer runs (50 ms
/// apart: 30 s).
pub const BUSY_RETRIES: u32 = 600;

fn node_error(node: &Node, e: &NodeError) -> CliError {
    match e {
        NodeError::Sync(s) => match s {
            oplog_node::SyncError::Connect { peer, .. }
            | oplog_node::SyncError::Refused { peer, .. }
            | oplog_node::SyncError::Connection { peer, .. }
            | oplog_node::SyncError::Busy { peer, .. }
            | oplog_node::SyncError::Timeout { peer, .. }
            | oplog_node::SyncError::Ended { peer, .. }
            | oplog_node::SyncError::Store { peer, .. } => exec::sync_error(peer, &node.id(), s),
            other => CliError::Node(other.to_string()),
        },
        NodeError::UnknownPeer(peer) => CliError::Sync {
            peer: peer.to_string(),
            reason: format!(
                "it is not a configured peer of the running node; give its address: `oplog sync {peer}@IP:PORT`"
            ),
        },
        NodeError::NotAMember(peer) => CliError::Sync {
            peer: peer.to_string(),
            reason: format!("it is not a member of this node; admit it first: `oplog allow {peer}`"),
        },
        NodeError::ConnectTimeout(peer) => CliError::Unreachable {
            peer: peer.to_string(),
            reason: "connecting timed out".into(),
        },
        other => CliError::Node(other.to_string()),
    }
}
