//! Real iroh 0.96 endpoints on loopback, real redb files: convergence, the allowlist, one
//! session per peer pair, a peer speaking garbage, and a silent one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::{Connection, ConnectionError, VarInt};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::Endpoint;
use oplog_node::{
    bind_loopback, cluster_alpn, loopback_addr, EndCode, OplogSync, SessionConfig, SyncError, ALPN,
    CLOSE_NOT_ALLOWED, CLOSE_SESSION_ERROR,
};
use oplog_store::Store;

use common::{assert_converged, chain, diverged, insert, keys, store};

/// Generous bound on anything a test waits for, so a bug fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(60);

async fn endpoint() -> Endpoint {
    common::init_tracing();
    bind_loopback(None, vec![]).await.expect("bind loopback")
}

/// A node answering `ALPN` for `allowed` over `store`.
fn serve(ep: &Endpoint, store: &Arc<Store>, allowed: &[&Endpoint]) -> (OplogSync, Router) {
    let sync = OplogSync::new(Arc::clone(store), allowed.iter().map(|e| e.id()));
    let router = Router::builder(ep.clone())
        .accept(ALPN, sync.clone())
        .spawn();
    (sync, router)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_differences_on_both_sides_converge() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = diverged(dir.path(), 3_000, 400, 250);
    let (ea, eb) = (endpoint().await, endpoint().await);
    let (_sync_b, router_b) = serve(&eb, &b, &[&ea]);
    let sync_a = OplogSync::new(Arc::clone(&a), [eb.id()]);

    let report = tokio::time::timeout(BOUND, sync_a.sync_with(&ea, loopback_addr(&eb).unwrap()))
        .await
        .expect("sync ends")
        .expect("sync succeeds");
    println!("{report:?}");
    assert!(report.is_done());
    assert_eq!(report.entries_sent, 400, "a sent exactly what b lacked");
    assert_eq!(
        report.entries_received, 250,
        "a received exactly what it lacked"
    );
    assert_converged(&a, &b);
    assert_eq!(keys(&a).len(), 3_000 + 400 + 250);

    // A second session finds nothing to send and still completes.
    let again = tokio::time::timeout(BOUND, sync_a.sync_with(&ea, loopback_addr(&eb).unwrap()))
        .await
        .expect("sync ends")
        .expect("second sync succeeds");
    println!("{again:?}");
    assert_eq!(again.entries_sent + again.entries_received, 0);
    assert_converged(&a, &b);
    router_b.shutdown().await.unwrap();
    ea.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_alpns_keep_clusters_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = diverged(dir.path(), 10, 5, 5);
    let (ea, eb) = (endpoint().await, endpoint().await);
    let alpn = cluster_alpn(b"cluster one");
    let sync_b = OplogSync::new(Arc::clone(&b), [ea.id()]).with_alpn(alpn.clone());
    let router_b = Router::builder(eb.clone()).accept(alpn, sync_b).spawn();

    let other = OplogSync::new(Arc::clone(&a), [eb.id()]).with_alpn(cluster_alpn(b"cluster two"));
    let err = other
        .sync_with(&ea, loopback_addr(&eb).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Connect { .. }), "{err}");

    let same = OplogSync::new(Arc::clone(&a), [eb.id()]).with_alpn(cluster_alpn(b"cluster one"));
    same.sync_with(&ea, loopback_addr(&eb).unwrap())
        .await
        .expect("same cluster syncs");
    assert_converged(&a, &b);
    router_b.shutdown().await.unwrap();
    ea.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_allowlist_is_refused_and_nothing_it_sent_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let b = store(dir.path(), "b");
    insert(&b, &chain(1, 100, 1_000, None));
    let stranger_store = store(dir.path(), "stranger");
    let theirs = chain(9, 50, 5_000, None);
    insert(&stranger_store, &theirs);

    let (friend, stranger, eb) = (endpoint().await, endpoint().await, endpoint().await);
    let (_sync_b, router_b) = serve(&eb, &b, &[&friend]);
    let before = keys(&b);

    let sync = OplogSync::new(Arc::clone(&stranger_store), [eb.id()]);
    let err = tokio::time::timeout(
        BOUND,
        sync.sync_with(&stranger, loopback_addr(&eb).unwrap()),
    )
    .await
    .expect("refusal is prompt")
    .unwrap_err();
    match err {
        SyncError::Refused { code, .. } => assert_eq!(code, u64::from(CLOSE_NOT_ALLOWED)),
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(keys(&b), before, "nothing the stranger sent was stored");
    assert!(!b.contains(&theirs[0].hash).unwrap());
    assert_eq!(keys(&stranger_store).len(), 50, "and it got nothing either");
    router_b.shutdown().await.unwrap();
    stranger.close().await;
    friend.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_syncs_to_one_peer_one_runs_the_other_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = diverged(dir.path(), 1_000, 100, 100);
    let (ea, eb) = (endpoint().await, endpoint().await);
    let (_sync_b, router_b) = serve(&eb, &b, &[&ea]);
    let sync_a = OplogSync::new(Arc::clone(&a), [eb.id()]);
    let addr = loopback_addr(&eb).unwrap();

    // Both are polled in one task: the first registers the peer before the second starts.
    let (first, second) = tokio::join!(
        sync_a.sync_with(&ea, addr.clone()),
        sync_a.sync_with(&ea, addr.clone())
    );
    first.expect("the first runs");
    match second.unwrap_err() {
        SyncError::Busy { by_peer, .. } => assert!(!by_peer, "found busy locally"),
        other => panic!("expected Busy, got {other}"),
    }
    assert_converged(&a, &b);
    // Once it ended, the pair is free again.
    sync_a
        .sync_with(&ea, addr)
        .await
        .expect("a later sync runs");
    router_b.shutdown().await.unwrap();
    ea.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_session_while_one_runs_with_that_peer_is_answered_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = diverged(dir.path(), 100, 10, 10);
    let (ea, eb) = (endpoint().await, endpoint().await);
    let (sync_b, router_b) = serve(&eb, &b, &[&ea]);
    let addr = loopback_addr(&eb).unwrap();

    // A raw connection from a's endpoint that sends a frame header and then nothing keeps a
    // session with a running on b.
    let hanging = ea.connect(addr.clone(), ALPN).await.unwrap();
    let (mut send, _recv) = hanging.open_bi().await.unwrap();
    send.write_all(&100u32.to_be_bytes()).await.unwrap();
    tokio::time::timeout(BOUND, async {
        while !sync_b.is_syncing(&ea.id()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("b starts the first session");

    // A second OplogSync on a's endpoint (its own running set) dials b: b answers Busy.
    let sync_a = OplogSync::new(Arc::clone(&a), [eb.id()]);
    let err = tokio::time::timeout(BOUND, sync_a.sync_with(&ea, addr))
        .await
        .expect("busy answer is prompt")
        .unwrap_err();
    match err {
        SyncError::Busy { by_peer, .. } => assert!(by_peer, "the peer found the pair busy"),
        other => panic!("expected Busy, got {other}"),
    }
    hanging.close(VarInt::from_u32(0), b"");
    router_b.shutdown().await.unwrap();
    ea.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_speaking_garbage_is_closed_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = diverged(dir.path(), 500, 50, 50);
    let (ea, eb, eg) = (endpoint().await, endpoint().await, endpoint().await);
    let (_sync_b, router_b) = serve(&eb, &b, &[&ea, &eg]);
    let addr = loopback_addr(&eb).unwrap();
    let before = keys(&b);

    for (garbage, code) in [
        // a frame of bytes that mean nothing (an unknown frame type)
        (
            [&7u32.to_be_bytes()[..], &[0xff; 7][..]].concat(),
            EndCode::Protocol,
        ),
        // a length far over any frame limit
        (u32::MAX.to_be_bytes().to_vec(), EndCode::FrameTooLarge),
    ] {
        let conn = eg.connect(addr.clone(), ALPN).await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&garbage).await.unwrap();
        // b answers with its END frame, finishes its stream, and closes the connection.
        let answer = tokio::time::timeout(BOUND, recv.read_to_end(1 << 20))
            .await
            .expect("b answers")
            .unwrap_or_default();
        // one frame: length, END type (05), the code, then the reason
        assert!(answer.len() >= 6, "an END frame came back: {answer:?}");
        let len = u32::from_be_bytes([answer[0], answer[1], answer[2], answer[3]]) as usize;
        assert_eq!(answer.len(), 4 + len, "nothing after the END frame");
        assert_eq!(answer[4], 0x05, "an END frame");
        assert_eq!(answer[5], code.to_u8(), "with the code for {code}");
        let closed = tokio::time::timeout(BOUND, conn.closed())
            .await
            .expect("b closes");
        match closed {
            ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, VarInt::from_u32(CLOSE_SESSION_ERROR));
            }
            other => panic!("expected an application close, got {other}"),
        }
    }
    assert_eq!(keys(&b), before, "garbage stored nothing");

    // b still serves a.
    let sync_a = OplogSync::new(Arc::clone(&a), [eb.id()]);
    tokio::time::timeout(BOUND, sync_a.sync_with(&ea, addr))
        .await
        .expect("sync ends")
        .expect("b still serves other peers");
    assert_converged(&a, &b);
    router_b.shutdown().await.unwrap();
    ea.close().await;
    eg.close().await;
}

/// Accepts one stream and never reads or writes it.
#[derive(Debug, Clone)]
struct Silent;

impl ProtocolHandler for Silent {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let (_send, _recv) = conn.accept_bi().await?;
        conn.closed().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_cut_by_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = diverged(dir.path(), 100, 10, 0);
    let (ea, eb) = (endpoint().await, endpoint().await);
    let router_b = Router::builder(eb.clone()).accept(ALPN, Silent).spawn();
    let mut config = SessionConfig::default();
    config.idle_timeout = Duration::from_millis(300);
    let sync_a = OplogSync::new(Arc::clone(&a), [eb.id()]).with_config(config);
    let err = tokio::time::timeout(BOUND, sync_a.sync_with(&ea, loopback_addr(&eb).unwrap()))
        .await
        .expect("the idle timeout ends the session")
        .unwrap_err();
    assert!(matches!(err, SyncError::Timeout { .. }), "{err}");
    assert!(!sync_a.is_syncing(&eb.id()), "the pair is free again");
    router_b.shutdown().await.unwrap();
    ea.close().await;
}
