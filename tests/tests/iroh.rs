//! Sync over real iroh connections on loopback (relays off, no address lookup, peers dialed
//! by id plus socket address) between nodes with real redb stores: `OplogSync` registered on
//! an iroh `Router`, exactly as a Shoal node registers it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use iroh::protocol::Router;
use iroh::Endpoint;
use oplog_node::{bind_loopback, loopback_addr, OplogSync, SyncError, ALPN};
use oplog_protocol::session::{EndCode, SessionConfig};
use oplog_protocol::testing::transcript;
use oplog_protocol::Config;
use oplog_store::{Options, Store};
use oplog_tests::fixture::{assert_converged, hashes, insert_all, Author, NOW, START};

fn open(path: &Path) -> Arc<Store> {
    Arc::new(Store::open_with(path, Options::default().clock(|| NOW)).expect("open store"))
}

/// A node: an offline endpoint, its store, and the handler on a router.
struct Node {
    endpoint: Endpoint,
    sync: OplogSync,
    router: Router,
}

impl Node {
    async fn start(store: Arc<Store>, config: SessionConfig) -> Node {
        let endpoint = bind_loopback(None, vec![]).await.expect("bind");
        let sync = OplogSync::new(store, []).with_config(config);
        let router = Router::builder(endpoint.clone())
            .accept(ALPN, sync.clone())
            .spawn();
        Node {
            endpoint,
            sync,
            router,
        }
    }

    fn allow(&self, other: &Node) {
        self.sync.allow(other.endpoint.id());
    }

    async fn sync_with(
        &self,
        other: &Node,
    ) -> Result<oplog_protocol::session::SyncReport, SyncError> {
        self.sync
            .sync_with(&self.endpoint, loopback_addr(&other.endpoint).unwrap())
            .await
    }

    async fn stop(self) {
        self.router.shutdown().await.expect("router shuts down");
    }
}

/// `base` shared entries written once and copied (as a file) to the second store, then
/// `only_a` and `only_b` entries on each side, branching from the shared heads.
fn diverged(dir: &Path, base: usize, only_a: usize, only_b: usize) -> (Arc<Store>, Arc<Store>) {
    let mut shared = Author::new(1, START);
    let common = shared.write(base);
    {
        let a = open(&dir.join("a.redb"));
        insert_all(&a, &common);
    }
    std::fs::copy(dir.join("a.redb"), dir.join("b.redb")).expect("copy the shared history");
    let (a, b) = (open(&dir.join("a.redb")), open(&dir.join("b.redb")));
    let heads = shared.heads().to_vec();
    let mut wa = Author::new(2, shared.hlc()).on(heads.clone());
    insert_all(&a, &wa.write(only_a));
    let mut wb = Author::new(3, shared.hlc() + 500).on(heads);
    insert_all(&b, &wb.write(only_b));
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_entries_with_differences_on_both_sides_converge() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = diverged(dir.path(), 98_000, 1_000, 1_000);
    let a = Node::start(Arc::clone(&sa), SessionConfig::default()).await;
    let b = Node::start(Arc::clone(&sb), SessionConfig::default()).await;
    a.allow(&b);
    b.allow(&a);
    let report = a.sync_with(&b).await.expect("sync completes");
    assert!(report.is_done(), "{report:?}");
    assert_eq!(report.entries_sent, 1_000);
    assert_eq!(report.entries_received, 1_000);
    assert_eq!(sa.len(), 100_000);
    assert_converged(&sa, &sb);
    println!(
        "10^5 entries, 1,000 apart each way: {} round trips, {} frames sent / {} received, overhead {} B, entries {} B, {:?}",
        report.round_trips(),
        report.frames_sent,
        report.frames_received,
        report.overhead_bytes(),
        report.entry_bytes_sent + report.entry_bytes_received,
        report.duration
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_the_newest_ten_thousand_receives_exactly_those() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Author::new(1, START);
    let old = w.write(90_000);
    let newest = w.write(10_000);
    {
        let s = open(&dir.path().join("a.redb"));
        insert_all(&s, &old);
    }
    std::fs::copy(dir.path().join("a.redb"), dir.path().join("b.redb")).unwrap();
    let (sa, sb) = (
        open(&dir.path().join("a.redb")),
        open(&dir.path().join("b.redb")),
    );
    insert_all(&sa, &newest);

    // Negentropy's reconciliation on the same two sets, for the bound below: the bytes it
    // needs just to learn the difference (not counting the round trip that then fetches the
    // entries, nor the fetch request's 32 bytes per id).
    let neg = transcript::run(
        &sb.snapshot(),
        &sa.snapshot(),
        Config::negentropy(Some(4 << 20)),
        Config::negentropy(Some(4 << 20)),
    )
    .expect("negentropy reconciles");
    let (n_out, n_in) = neg.bytes();
    let negentropy_bytes = n_out + n_in;

    let a = Node::start(Arc::clone(&sa), SessionConfig::default()).await;
    let b = Node::start(Arc::clone(&sb), SessionConfig::default()).await;
    a.allow(&b);
    b.allow(&a);
    let report = b.sync_with(&a).await.expect("sync completes");
    assert_eq!(report.entries_received, 10_000, "exactly the difference");
    assert_eq!(report.entries_sent, 0);
    let entry_bytes: u64 = newest.iter().map(|e| e.encode().len() as u64).sum();
    assert_eq!(report.entry_bytes_received, entry_bytes);
    assert_converged(&sa, &sb);
    // Protocol overhead: every byte of every frame both ways that is not an entry's own
    // bytes (frame headers, messages, entry lengths, END frames; QUIC's own headers are
    // neither side's protocol and not counted for either).
    let overhead = report.overhead_bytes();
    println!(
        "10^5 entries, newest 10,000 missing: overhead {overhead} B vs Negentropy {negentropy_bytes} B ({} round trips to Negentropy's {} + 1 fetch)",
        report.round_trips(),
        neg.rounds()
    );
    assert!(
        overhead <= negentropy_bytes,
        "overhead {overhead} B is above Negentropy's {negentropy_bytes} B on the same sets"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_allowlist_is_refused_and_nothing_it_sent_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = diverged(dir.path(), 1_000, 200, 0);
    let a = Node::start(Arc::clone(&sa), SessionConfig::default()).await;
    let b = Node::start(Arc::clone(&sb), SessionConfig::default()).await;
    a.allow(&b); // a trusts b, but b does not list a
    let before = hashes(&sb);
    let err = a.sync_with(&b).await.expect_err("b refuses a");
    assert!(
        matches!(err, SyncError::Refused { .. }),
        "expected a refusal, got {err}"
    );
    assert_eq!(hashes(&sb), before, "nothing a sent was stored");
    // once allowed, the same peer syncs
    b.allow(&a);
    let report = a.sync_with(&b).await.expect("sync completes");
    assert_eq!(report.entries_sent, 200);
    assert_converged(&sa, &sb);
    a.stop().await;
    b.stop().await;
}

/// Writes `bytes` on a fresh stream to `node` and returns the END frame's code it answers
/// with, if it answers with one before closing.
async fn attack(from: &Endpoint, node: &Node, bytes: &[u8], keep_open: bool) -> Option<EndCode> {
    let conn = from
        .connect(loopback_addr(&node.endpoint).unwrap(), ALPN)
        .await
        .expect("connect");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(bytes).await.expect("write");
    if !keep_open {
        let _ = send.finish();
    }
    // read frames until END
    let read = async {
        loop {
            let mut header = [0u8; 4];
            recv.read_exact(&mut header).await.ok()?;
            let len = u32::from_be_bytes(header) as usize;
            let mut body = vec![0u8; len];
            recv.read_exact(&mut body).await.ok()?;
            if body.first() == Some(&0x05) {
                return body.get(1).map(|c| EndCode::from_u8(*c));
            }
        }
    };
    let code = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .ok()
        .flatten();
    // the node closes the connection after its END
    let closed = tokio::time::timeout(Duration::from_secs(20), conn.closed()).await;
    assert!(closed.is_ok(), "the node did not close the connection");
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_get_their_end_code_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = diverged(dir.path(), 2_000, 100, 100);
    let mut config = SessionConfig::default();
    config.idle_timeout = Duration::from_secs(1);
    let b = Node::start(Arc::clone(&sb), config).await;
    let attacker = bind_loopback(None, vec![]).await.unwrap();
    b.sync.allow(attacker.id());

    // a frame over the limit
    let mut big = (5u32 << 20).to_be_bytes().to_vec();
    big.extend_from_slice(&[1; 64]);
    assert_eq!(
        attack(&attacker, &b, &big, true).await,
        Some(EndCode::FrameTooLarge)
    );

    // a length that lies: 1,000 bytes announced, 10 sent, then silence
    let mut lying = 1_000u32.to_be_bytes().to_vec();
    lying.extend_from_slice(&[1; 10]);
    assert_eq!(
        attack(&attacker, &b, &lying, true).await,
        Some(EndCode::Timeout)
    );

    // garbage: a frame of an unknown type
    let mut garbage = 8u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xEE; 8]);
    assert_eq!(
        attack(&attacker, &b, &garbage, true).await,
        Some(EndCode::Protocol)
    );

    // entries out of turn before any message: a well-formed ENTRIES frame is still refused
    let mut entries = 3u32.to_be_bytes().to_vec();
    entries.extend_from_slice(&[0x02, 0x00, 0x00]);
    assert_eq!(
        attack(&attacker, &b, &entries, true).await,
        Some(EndCode::Protocol)
    );

    assert_eq!(
        hashes(&sb).len(),
        2_100,
        "nothing from the attacker was stored"
    );

    // the node still serves an honest peer
    let a = Node::start(Arc::clone(&sa), SessionConfig::default()).await;
    a.allow(&b);
    b.allow(&a);
    let report = a.sync_with(&b).await.expect("honest sync completes");
    assert!(report.is_done());
    assert_converged(&sa, &sb);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_rounds_end_with_a_limit_and_the_next_session_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = diverged(dir.path(), 20_000, 2_000, 2_000);
    let mut tight = SessionConfig::default();
    tight.reconcile.max_messages = 2;
    let a = Node::start(Arc::clone(&sa), SessionConfig::default()).await;
    let b = Node::start(Arc::clone(&sb), tight).await;
    a.allow(&b);
    b.allow(&a);
    let err = a.sync_with(&b).await.expect_err("b's round budget ends it");
    match err {
        SyncError::Ended { code, by_peer, .. } => {
            assert_eq!(code, EndCode::Limit);
            assert!(by_peer, "b ended it");
        }
        other => panic!("expected END Limit from b, got {other}"),
    }
    for s in [&sa, &sb] {
        assert!(s.verify().unwrap().is_ok());
    }
    // the same stores with the default budget converge
    b.stop().await;
    let b = Node::start(Arc::clone(&sb), SessionConfig::default()).await;
    a.allow(&b);
    b.allow(&a);
    let report = a.sync_with(&b).await.expect("sync completes");
    assert!(report.is_done());
    assert_converged(&sa, &sb);
    a.stop().await;
    b.stop().await;
}
