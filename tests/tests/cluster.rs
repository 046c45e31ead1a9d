//! Live clusters: real `oplog_node::Node`s on loopback iroh endpoints, each with its own redb
//! file, kept converged by push and anti-entropy alone (no explicit `sync_with` unless a test
//! says why). Waits are on the nodes' `subscribe_synced` counters or on polling with a
//! generous deadline; nothing asserts on timing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use iroh::{EndpointAddr, SecretKey};
use oplog_node::{
    bind_loopback, loopback_addr, Node, NodeConfig, NodeError, SyncError, CLOSE_NOT_ALLOWED,
};
use oplog_protocol::replica::{InsertError, InsertOutcome};
use oplog_protocol::{Hlc, LogEntry, ObjectId, Op, SigningKey};
use oplog_store::Store;
use oplog_tests::fixture::{assert_converged, hashes};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Longest any wait here may take before the test fails (a generous bound, not a timing
/// assertion: a converging cluster gets there much sooner).
const DEADLINE: Duration = Duration::from_secs(120);

/// Anti-entropy interval in these tests.
const INTERVAL: Duration = Duration::from_millis(200);

fn secret(i: usize) -> SecretKey {
    let mut bytes = [0u8; 32];
    bytes[0] = 0xc1;
    bytes[1] = u8::try_from(i).unwrap();
    SecretKey::from_bytes(&bytes)
}

fn open(path: &Path) -> Arc<Store> {
    Arc::new(Store::open(path).expect("open store"))
}

/// A set of nodes, each with its own redb file, configured with the peers `links` names.
struct Cluster {
    _dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
    nodes: Vec<Option<Node>>,
    addrs: Vec<EndpointAddr>,
    links: Vec<Vec<usize>>,
    interval: Duration,
}

impl Cluster {
    /// `n` nodes; node `i` is configured with the nodes `links(i)` (every node is a member of
    /// every other).
    async fn start(n: usize, links: impl Fn(usize) -> Vec<usize>, interval: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..n)
            .map(|i| dir.path().join(format!("n{i}.redb")))
            .collect();
        let mut endpoints = Vec::new();
        for i in 0..n {
            endpoints.push(bind_loopback(Some(secret(i)), vec![]).await.expect("bind"));
        }
        let addrs: Vec<EndpointAddr> = endpoints
            .iter()
            .map(|e| loopback_addr(e).unwrap())
            .collect();
        let links: Vec<Vec<usize>> = (0..n).map(&links).collect();
        let mut cluster = Cluster {
            _dir: dir,
            paths,
            nodes: Vec::new(),
            addrs,
            links,
            interval,
        };
        for (i, endpoint) in endpoints.into_iter().enumerate() {
            let config = cluster.config(i);
            let node = Node::spawn(endpoint, open(&cluster.paths[i]), config)
                .await
                .expect("spawn node");
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    fn config(&self, i: usize) -> NodeConfig {
        let mut config = NodeConfig::default();
        config.peers = self.links[i]
            .iter()
            .map(|&j| self.addrs[j].clone())
            .collect();
        config.allowed = (0..self.addrs.len())
            .filter(|&j| j != i)
            .map(|j| self.addrs[j].id)
            .collect();
        config.anti_entropy = self.interval;
        config
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }

    /// Waits until every node has a connection open to each peer it is configured with (the
    /// first anti-entropy round opens them), so the writes that follow travel by push.
    async fn connected(&self) {
        wait_until("every node connects to its peers", || {
            self.running().all(|n| {
                let status = n.status().unwrap();
                status
                    .peers
                    .iter()
                    .filter(|p| p.addr.is_some())
                    .all(|p| p.connected)
            })
        })
        .await;
    }

    /// Waits until every running node holds the same entries, at one head, with nothing
    /// held back.
    async fn converged(&self) {
        wait_until("the cluster converges", || {
            let stores: Vec<&Arc<Store>> = self.running().map(Node::store).collect();
            let first = stores[0].snapshot();
            stores.iter().all(|s| {
                let snap = s.snapshot();
                snap.len() == first.len()
                    && snap.total() == first.total()
                    && s.heads().unwrap().len() == 1
                    && s.stats().unwrap().held_back == 0
            })
        })
        .await;
        let stores: Vec<&Arc<Store>> = self.running().map(Node::store).collect();
        for s in &stores[1..] {
            assert_converged(stores[0], s);
        }
    }

    /// Waits until every running node applied at least `rounds` more sessions or pushes
    /// (their `subscribe_synced` counters), then checks nothing was written meanwhile: a
    /// quiet cluster writes no merges.
    async fn stays_quiet(&self, rounds: u64) {
        let before: Vec<u64> = self.running().map(|n| n.store().len()).collect();
        for node in self.running() {
            let mut synced = node.subscribe_synced();
            let start = *synced.borrow_and_update();
            tokio::time::timeout(DEADLINE, async {
                while *synced.borrow_and_update() < start + rounds {
                    synced.changed().await.expect("node runs");
                }
            })
            .await
            .expect("the node keeps syncing");
        }
        let after: Vec<u64> = self.running().map(|n| n.store().len()).collect();
        assert_eq!(
            before, after,
            "a quiet, synced cluster writes nothing (no merge storm)"
        );
        for node in self.running() {
            assert_eq!(node.store().heads().unwrap().len(), 1, "one head");
        }
    }

    async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("node is running");
        let store = Arc::clone(node.store());
        node.shutdown().await.expect("shutdown");
        // The node's tasks let go of the store as they end; redb allows one open per file.
        wait_until("the stopped node releases its store", || {
            Arc::strong_count(&store) == 1
        })
        .await;
    }

    /// Restarts node `i` from its redb file with its key, on the address it had (as a
    /// restarted server comes back on its configured address; the peers' dials to it then
    /// reach it, and none is left to time out).
    async fn restart(&mut self, i: usize) {
        let old = *self.addrs[i].ip_addrs().next().expect("a socket address");
        let endpoint = iroh::Endpoint::empty_builder(iroh::RelayMode::Disabled)
            .clear_ip_transports()
            .bind_addr(old)
            .expect("a loopback address")
            .secret_key(secret(i))
            .bind()
            .await
            .expect("rebind the same address");
        self.addrs[i] = loopback_addr(&endpoint).unwrap();
        let config = self.config(i);
        let node = Node::spawn(endpoint, open(&self.paths[i]), config)
            .await
            .expect("respawn node");
        self.nodes[i] = Some(node);
        // Peers that dial it learn its address again (the same: nothing changes).
        for j in 0..self.nodes.len() {
            if j != i && self.links[j].contains(&i) {
                if let Some(node) = &self.nodes[j] {
                    node.add_peer(self.addrs[i].clone());
                }
            }
        }
    }

    /// Stops every node at once (a node's endpoint waits for its peers to acknowledge its
    /// closes, which they can only while they run).
    async fn shutdown(mut self) {
        let nodes: Vec<Node> = self.nodes.iter_mut().filter_map(Option::take).collect();
        let stores: Vec<Arc<Store>> = nodes.iter().map(|n| Arc::clone(n.store())).collect();
        futures_join_all(
            nodes
                .into_iter()
                .map(|n| async move { n.shutdown().await.expect("shutdown") })
                .collect(),
        )
        .await;
        wait_until("the stopped nodes release their stores", || {
            stores.iter().all(|s| Arc::strong_count(s) == 1)
        })
        .await;
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(DEADLINE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

fn object(n: u64) -> ObjectId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    ObjectId(id)
}

/// `per_node` random puts and deletes on a few keys from every node at once.
async fn random_writes(cluster: &Cluster, per_node: usize, seed: u64) {
    let mut tasks = Vec::new();
    for (i, node) in cluster.running().enumerate() {
        let mut rng = StdRng::seed_from_u64(seed + i as u64);
        let ops: Vec<Op> = (0..per_node)
            .map(|_| {
                let key = format!("k{}", rng.gen_range(0..12));
                if rng.gen_bool(0.2) {
                    Op::Delete {
                        bucket: "b".into(),
                        key,
                    }
                } else {
                    Op::Put {
                        bucket: "b".into(),
                        key,
                        object_id: object(rng.gen()),
                    }
                }
            })
            .collect();
        tasks.push(async move {
            for (n, op) in ops.into_iter().enumerate() {
                node.append(op).await.expect("append");
                if n % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    futures_join_all(tasks).await;
}

/// Runs the futures concurrently on this task.
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_with_random_writes_converge_by_push_and_anti_entropy() {
    let cluster = Cluster::start(3, |i| vec![(i + 1) % 3], INTERVAL).await;
    cluster.connected().await;
    random_writes(&cluster, 60, 1).await;
    cluster.converged().await;
    // Every write of every node is there (plus the merges that joined them).
    assert!(cluster.node(0).store().len() >= 180);
    cluster.stays_quiet(5).await;
    // What operators see: one head, every peer synced, the same in JSON and in metrics.
    for node in cluster.running() {
        let status = node.status().unwrap();
        assert_eq!(status.heads.len(), 1);
        assert_eq!(status.entries, node.store().len());
        assert_eq!((status.held_back, status.deferred), (0, 0));
        assert_eq!(status.peers.len(), 2, "both other members");
        assert!(status.peers.iter().all(|p| p.member && p.connected));
        assert!(status
            .peers
            .iter()
            .any(|p| p.sessions > 0 && p.last_sync.is_some()));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["entries"], status.entries);
        let metrics = node.metrics_text();
        assert!(metrics.contains("\noplog_heads 1\n"), "{metrics}");
        assert!(metrics.contains(&format!("\noplog_entries {}\n", status.entries)));
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_nodes_with_random_writes_converge_by_push_and_anti_entropy() {
    // A ring with chords: each node dials two others, so every node has a few connections
    // and pushes reach only part of the cluster directly; anti-entropy carries the rest.
    let cluster = Cluster::start(
        8,
        |i| vec![(i + 1) % 8, (i + 3) % 8],
        Duration::from_millis(300),
    )
    .await;
    cluster.connected().await;
    random_writes(&cluster, 40, 100).await;
    cluster.converged().await;
    assert!(cluster.node(0).store().len() >= 320);
    cluster.stays_quiet(4).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_one_key_have_one_winner_everywhere_and_a_delete_propagates() {
    let cluster = Cluster::start(3, |i| vec![(i + 1) % 3, (i + 2) % 3], INTERVAL).await;
    let writes = (0..3usize).map(|i| cluster.node(i).put("b", "same", object(i as u64 + 1)));
    let written = {
        let mut out = Vec::new();
        for w in writes {
            out.push(w.await.expect("put"));
        }
        out
    };
    cluster.converged().await;
    let winner = cluster.node(0).store().get("b", "same").unwrap();
    assert!(winner.is_some());
    assert!(written
        .iter()
        .any(|e| matches!(&e.action, Op::Put { object_id, .. } if Some(*object_id) == winner)));
    for node in cluster.running() {
        assert_eq!(
            node.store().get("b", "same").unwrap(),
            winner,
            "same winner everywhere"
        );
    }

    cluster.node(1).delete("b", "same").await.expect("delete");
    cluster.converged().await;
    for node in cluster.running() {
        assert_eq!(
            node.store().get("b", "same").unwrap(),
            None,
            "the delete reached every node"
        );
    }
    cluster.stays_quiet(5).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_catches_up_and_its_clock_does_not_go_back() {
    let mut cluster = Cluster::start(3, |i| vec![(i + 1) % 3, (i + 2) % 3], INTERVAL).await;
    random_writes(&cluster, 20, 7).await;
    cluster.converged().await;
    let newest = |store: &Store| -> Hlc {
        store
            .heads()
            .unwrap()
            .iter()
            .map(|(k, _)| k.hlc)
            .max()
            .unwrap()
    };
    let before = newest(cluster.node(2).store());
    cluster.stop(2).await;

    // The others write on while it is down.
    for _ in 0..30 {
        cluster
            .node(0)
            .put("b", "while-down", object(9))
            .await
            .expect("put");
        cluster.node(1).delete("b", "k1").await.expect("delete");
    }
    cluster.restart(2).await;
    cluster.converged().await;
    let entry = cluster
        .node(2)
        .put("b", "after", object(3))
        .await
        .expect("put");
    assert!(
        entry.hlc > before,
        "a restarted node stamps above what it had"
    );
    cluster.converged().await;
    // iroh's endpoint close on the restarted node can wait out the QUIC idle timeout (30 s)
    // for a connection left from its previous run; the others shut down as usual.
    let restarted = cluster.nodes[2].take().expect("running");
    cluster.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), restarted.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_at_run_time_can_no_longer_write_to_the_others() {
    let cluster = Cluster::start(3, |i| vec![(i + 1) % 3, (i + 2) % 3], INTERVAL).await;
    let early = cluster
        .node(2)
        .put("b", "before", object(1))
        .await
        .expect("put");
    cluster.converged().await;

    let removed = cluster.node(2).id();
    cluster.node(0).disallow(&removed);
    cluster.node(1).disallow(&removed);
    let late = cluster
        .node(2)
        .put("b", "after", object(2))
        .await
        .expect("its own store takes it");

    // It can no longer sync with them: the connection is refused before anything is read.
    // While its anti-entropy loop runs, an explicit sync can also find the pair busy (its
    // own loop's session, itself being refused) or time out connecting under load; those
    // say nothing either way, so it tries again until it sees the refusal.
    for i in 0..2 {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match cluster.node(2).sync_with(cluster.node(i).id()).await {
                Err(NodeError::Sync(SyncError::Refused { code, .. })) => {
                    assert_eq!(code, u64::from(CLOSE_NOT_ALLOWED));
                    break;
                }
                Err(NodeError::Sync(SyncError::Connection { .. })) => break,
                Err(
                    NodeError::Sync(
                        SyncError::Busy { .. }
                        | SyncError::Timeout { .. }
                        | SyncError::Connect { .. },
                    )
                    | NodeError::ConnectTimeout(_),
                ) if attempts < 50 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("expected a refusal after {attempts} attempts, got {other:?}"),
            }
        }
    }
    // Handed to a member's store directly, its new entry is refused as not allowed.
    let report = cluster.node(0).store().insert([late.clone()]).unwrap();
    assert!(matches!(
        report.outcomes[0].1,
        InsertOutcome::Rejected(InsertError::NotAllowed(_))
    ));
    // The members go on syncing with each other and never take it; its earlier entry stays.
    for i in 0..2 {
        let mut synced = cluster.node(i).subscribe_synced();
        let start = *synced.borrow_and_update();
        tokio::time::timeout(DEADLINE, async {
            while *synced.borrow_and_update() < start + 5 {
                synced.changed().await.unwrap();
            }
        })
        .await
        .expect("members keep syncing");
    }
    for i in 0..2 {
        let store = cluster.node(i).store();
        assert!(
            store.contains(&early.hash).unwrap(),
            "entries from before the removal stay"
        );
        assert!(
            !store.contains(&late.hash).unwrap(),
            "entries after the removal are refused"
        );
        assert!(store.verify().unwrap().is_ok());
    }
    assert_converged(cluster.node(0).store(), cluster.node(1).store());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_child_whose_parent_is_missing_is_held_back_and_closed_by_one_ancestry_request() {
    // Anti-entropy so slow it never runs in this test: only the push can carry the entries.
    let cluster = Cluster::start(2, |i| vec![1 - i], Duration::from_secs(3600)).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    // One session on empty stores opens the connection both nodes push on.
    b.sync_with(a.id()).await.expect("first sync");

    // A parent only a holds: written into a's store directly (no push), signed with a's key.
    let key = SigningKey::from_bytes(&secret(0).to_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let parent = LogEntry::sign(
        &key,
        Hlc(u64::try_from(now).unwrap()),
        Op::Put {
            bucket: "b".into(),
            key: "parent".into(),
            object_id: object(1),
        },
        vec![],
    )
    .unwrap();
    a.store().insert([parent.clone()]).unwrap();
    assert!(!b.store().contains(&parent.hash).unwrap());

    // a's next append names it as parent and is pushed; b holds it back, asks once, applies.
    let mut synced = b.subscribe_synced();
    let child = a.put("b", "child", object(2)).await.expect("put");
    assert_eq!(child.parents, vec![parent.hash]);
    tokio::time::timeout(DEADLINE, async {
        while !b.store().contains(&child.hash).unwrap() {
            synced.changed().await.unwrap();
        }
    })
    .await
    .expect("the push and its ancestry fetch arrive");
    assert!(b.store().contains(&parent.hash).unwrap());
    assert_eq!(b.store().stats().unwrap().held_back, 0);
    let metrics = b.metrics_text();
    assert!(
        metrics.contains("oplog_push_ancestry_requests_total 1\n"),
        "exactly one ancestry request: {metrics}"
    );
    let status = b.status().unwrap();
    assert_eq!(
        status.peers[0].sessions, 1,
        "no session besides the first one"
    );
    assert_eq!(hashes(a.store()), hashes(b.store()));
    cluster.shutdown().await;
}
