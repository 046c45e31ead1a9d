//! Faults over real iroh connections and real redb files: connections cut at seeded points
//! of a sync, node processes killed with SIGKILL while they write, sync and merge, writes
//! that fail (a full disk, a read-only file system) and bytes of a closed store file
//! corrupted at seeded offsets. After each: the store is valid (or refuses to open with a
//! clear error), every acknowledged write is there, and the next sync completes.
//!
//! Seeds: `OPLOG_FAULTS_SEED=N` replays one run; `OPLOG_FAULTS_LONG=1` runs many more
//! iterations. A failure prints the seed that reproduces it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iroh::protocol::Router;
use iroh::{Endpoint, EndpointAddr, SecretKey};
use oplog_node::{bind_loopback, loopback_addr, Node, NodeConfig, OplogSync, SyncError, ALPN};
use oplog_protocol::session::{SessionConfig, SyncReport};
use oplog_protocol::{Hash, ObjectId, Op};
use oplog_store::{Error as StoreError, Options, Store};
use oplog_tests::fixture::{assert_converged, hashes, insert_all, Author, START};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Environment variable selecting a child role (the test binary re-executes itself).
const CHILD_VAR: &str = "OPLOG_FAULTS_CHILD";
/// The child's store file.
const CHILD_STORE: &str = "OPLOG_FAULTS_STORE";
/// The socket address of the parent's node, for the child to dial.
const CHILD_PEER: &str = "OPLOG_FAULTS_PEER";

/// Key seed of the parent's node (its endpoint key and its entries' author key).
const PARENT_KEY: u8 = 0x51;
/// Key seed of the child node.
const CHILD_KEY: u8 = 0x52;

/// Session idle timeout of both nodes in the merge test: the killed child's half of a
/// session ends this soon at the parent, so the restarted child's sessions are not refused
/// as Busy for long (each refusal backs its anti-entropy off further).
const MERGE_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

fn secret(seed: u8) -> SecretKey {
    SecretKey::from_bytes(&[seed; 32])
}

fn long() -> bool {
    std::env::var("OPLOG_FAULTS_LONG").is_ok_and(|v| v == "1")
}

/// The run's base seed: `OPLOG_FAULTS_SEED`, or a fixed one (CI runs are reproducible).
fn base_seed(default: u64) -> u64 {
    std::env::var("OPLOG_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Prints the seed when the thread panics while it is alive.
struct SeedGuard<'a> {
    test: &'a str,
    seed: u64,
}

impl Drop for SeedGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{}: failed with seed {}; reproduce with OPLOG_FAULTS_SEED={} cargo test -p oplog-tests --test faults {}",
                self.test, self.seed, self.seed, self.test
            );
        }
    }
}

fn session_config() -> SessionConfig {
    let mut config = SessionConfig::default();
    // A peer killed mid-session leaves its half open; a short idle timeout lets the pair
    // sync again soon (the next session is Busy until then).
    config.idle_timeout = Duration::from_secs(3);
    // Small ENTRIES frames: more points to cut a sync at, and a receiver makes every
    // MAX_BUFFERED_COMMITS-th batch durable during the sync, not only at its end.
    config.batch_bytes = 64 * 1024;
    config
}

/// A plain responder: an endpoint, a store and `OplogSync` on a router.
struct Server {
    endpoint: Endpoint,
    sync: OplogSync,
    router: Router,
}

impl Server {
    async fn start(
        store: Arc<Store>,
        key: Option<SecretKey>,
        allowed: &[iroh::EndpointId],
    ) -> Self {
        let endpoint = bind_loopback(key, vec![]).await.expect("bind");
        let sync = OplogSync::new(store, allowed.iter().copied()).with_config(session_config());
        let router = Router::builder(endpoint.clone())
            .accept(ALPN, sync.clone())
            .spawn();
        Server {
            endpoint,
            sync,
            router,
        }
    }

    fn addr(&self) -> EndpointAddr {
        loopback_addr(&self.endpoint).unwrap()
    }

    async fn sync_with(&self, other: EndpointAddr) -> Result<SyncReport, SyncError> {
        self.sync.sync_with(&self.endpoint, other).await
    }

    /// Syncs until a session completes, waiting out a peer's half-open session (Busy) or a
    /// timeout it left behind; at most `tries` attempts.
    async fn sync_until_done(&self, other: EndpointAddr, tries: u32) -> SyncReport {
        self.sync_counting_retries(other, tries).await.0
    }

    /// [`Server::sync_until_done`], also returning how many attempts failed first.
    async fn sync_counting_retries(&self, other: EndpointAddr, tries: u32) -> (SyncReport, u32) {
        let mut last = None;
        for failed in 0..tries {
            match self.sync_with(other.clone()).await {
                Ok(report) => return (report, failed),
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        panic!("no sync completed in {tries} attempts; last error: {last:?}");
    }

    async fn stop(self) {
        self.router.shutdown().await.expect("router shuts down");
    }
}

fn open(path: &Path) -> Arc<Store> {
    Arc::new(Store::open(path).expect("open store"))
}

fn assert_valid(store: &Store, what: &str) {
    let report = store.verify().expect("verify runs");
    assert!(report.is_ok(), "{what}: verify found {:?}", report.problems);
}

// ---------------------------------------------------------------------------------------
// Seeded cuts over iroh
// ---------------------------------------------------------------------------------------

/// Iterations per pair of stores: a fresh pair every this many, so the stores (and the
/// `verify()` after every cut) stay small.
const CUTS_PER_PAIR: u64 = 20;

/// Two stores, each with fresh writes every iteration, sync over iroh; the sync is cut after
/// a seeded delay within the last full sync's duration (its future dropped, so its
/// connection closes wherever the session is), with the initiator's role alternating
/// between the two. After each cut both stores verify clean, and the next sync (the other
/// way round) completes to the same set, heads and view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_cut_at_seeded_points_over_iroh_leave_both_stores_valid_and_the_next_sync_completes()
{
    let iterations = if long() { 1_000 } else { 100 };
    let seed = base_seed(0x0c07);
    let (mut cut, mut finished_first) = (0u32, 0u32);
    let (mut shipped, mut retries) = (0u64, 0u32);
    let run = Instant::now();
    for pair in 0..iterations / CUTS_PER_PAIR {
        let dir = tempfile::tempdir().unwrap();
        let (sa, sb) = (
            open(&dir.path().join("a.redb")),
            open(&dir.path().join("b.redb")),
        );
        let (ka, kb) = (secret(0x61), secret(0x62));
        let (ida, idb) = (ka.public(), kb.public());
        let a = Server::start(Arc::clone(&sa), Some(ka), &[idb]).await;
        let b = Server::start(Arc::clone(&sb), Some(kb), &[ida]).await;
        let mut wa = Author::new(0x61, START);
        let mut wb = Author::new(0x62, START + 500);
        // A common base, so every session reconciles a real range before it ships anything.
        insert_all(&sa, &wa.write(300));
        b.sync_until_done(a.addr(), 50).await;
        let mut full = Duration::from_millis(30);
        for j in 0..CUTS_PER_PAIR {
            let i = pair * CUTS_PER_PAIR + j;
            let it_seed = seed.wrapping_mul(1_000_003).wrapping_add(i);
            let _guard = SeedGuard {
                test: "syncs_cut_at_seeded_points_over_iroh_leave_both_stores_valid_and_the_next_sync_completes",
                seed: it_seed,
            };
            let mut rng = StdRng::seed_from_u64(it_seed);
            insert_all(&sa, &wa.write(rng.gen_range(1..80)));
            insert_all(&sb, &wb.write(rng.gen_range(1..80)));
            let (init, resp) = if i.is_multiple_of(2) {
                (&a, &b)
            } else {
                (&b, &a)
            };
            let delay = full.mul_f64(rng.gen_range(0.0..1.2));
            match tokio::time::timeout(delay, init.sync_with(resp.addr())).await {
                Ok(Ok(_)) => finished_first += 1,
                // cut, or refused because the last cut's session still ran at the peer
                Err(_) | Ok(Err(_)) => cut += 1,
            }
            assert_valid(&sa, "a after the cut");
            assert_valid(&sb, "b after the cut");

            let started = Instant::now();
            let (report, failed) = resp.sync_counting_retries(init.addr(), 400).await;
            full = started.elapsed().max(Duration::from_millis(5));
            retries += failed;
            shipped += report.entries_sent + report.entries_received;
            assert_eq!(sa.len(), sb.len(), "iteration {i}: the next sync converges");
            assert_eq!(
                sa.heads().unwrap(),
                sb.heads().unwrap(),
                "iteration {i}: heads"
            );
            assert_eq!(
                sa.snapshot().total(),
                sb.snapshot().total(),
                "iteration {i}: set fingerprint"
            );
        }
        assert_converged(&sa, &sb);
        a.stop().await;
        b.stop().await;
    }
    println!(
        "cuts over iroh: seed {seed}, {iterations} iterations, {cut} cut mid-sync, \
         {finished_first} finished before the cut, {shipped} entries shipped by the syncs \
         after the cuts, {retries} attempts of those refused first (the peer's half of the cut \
         session still running), {:.1} s",
        run.elapsed().as_secs_f64()
    );
    assert!(
        u64::from(cut) > iterations / 4,
        "most syncs are cut before they end"
    );
}

/// A UDP relay on loopback between one client and `server`: it forwards datagrams both ways
/// until it has forwarded `cut_after` of them, then drops every one (a network cut: neither
/// side sees a close, each finds out by its own timeouts).
struct Blackhole {
    addr: SocketAddr,
    forwarded: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Blackhole {
    fn start(server: SocketAddr, cut_after: u64) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let forwarded = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (forwarded, stop) = (Arc::clone(&forwarded), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut client: Option<SocketAddr> = None;
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if forwarded.load(Relaxed) >= cut_after {
                        continue;
                    }
                    let to = if from == server {
                        match client {
                            Some(c) => c,
                            None => continue,
                        }
                    } else {
                        client = Some(from);
                        server
                    };
                    if socket.send_to(&buf[..n], to).is_ok() {
                        forwarded.fetch_add(1, Relaxed);
                    }
                }
            })
        };
        Blackhole {
            addr,
            forwarded,
            stop,
            thread: Some(thread),
        }
    }

    fn forwarded(&self) -> u64 {
        self.forwarded.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Syncs over iroh through a UDP relay that silently drops everything after a seeded number
/// of datagrams (no close reaches either side): the initiator's sync ends with a typed error
/// by its timeouts, both stores verify clean, and a sync on the direct path then completes
/// (once the responder's half of the cut session has timed out) to the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_blackholed_after_a_seeded_number_of_datagrams_leave_both_stores_valid() {
    let iterations = if long() { 100 } else { 8 };
    let seed = base_seed(0xb1ac);
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = (
        open(&dir.path().join("a.redb")),
        open(&dir.path().join("b.redb")),
    );
    let (ka, kb) = (secret(0x63), secret(0x64));
    let (ida, idb) = (ka.public(), kb.public());
    let mut config = session_config();
    config.idle_timeout = Duration::from_secs(1);
    let start = |store: &Arc<Store>, key: SecretKey, peer| {
        let store = Arc::clone(store);
        let config = config.clone();
        async move {
            let endpoint = bind_loopback(Some(key), vec![]).await.expect("bind");
            let sync = OplogSync::new(store, [peer]).with_config(config);
            let router = Router::builder(endpoint.clone())
                .accept(ALPN, sync.clone())
                .spawn();
            Server {
                endpoint,
                sync,
                router,
            }
        }
    };
    let a = start(&sa, ka, idb).await;
    // The relayed syncs dial from an endpoint of their own (a's key) that never learns b's
    // direct address, so the connection cannot leave the relay's path.
    let relayed = |hole: &Blackhole| {
        let addr = EndpointAddr::new(idb).with_ip_addr(hole.addr);
        let sync = a.sync.clone();
        async move {
            let endpoint = bind_loopback(Some(secret(0x63)), vec![])
                .await
                .expect("bind");
            let result = sync.sync_with(&endpoint, addr).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.close()).await;
            result
        }
    };
    let b = start(&sb, kb, ida).await;
    let mut wa = Author::new(0x63, START);
    let mut wb = Author::new(0x64, START + 500);
    let server = *b.addr().ip_addrs().next().unwrap();

    // One full sync through the relay: how many datagrams a whole sync takes.
    insert_all(&sa, &wa.write(1_000));
    insert_all(&sb, &wb.write(1_000));
    let whole = {
        let hole = Blackhole::start(server, u64::MAX);
        relayed(&hole).await.expect("a sync through the relay");
        hole.forwarded()
    };
    assert_converged(&sa, &sb);
    let (mut cut, mut errors) = (0u32, Vec::new());
    for i in 0..iterations {
        let it_seed = seed.wrapping_mul(1_000_003).wrapping_add(i);
        let _guard = SeedGuard {
            test: "syncs_blackholed_after_a_seeded_number_of_datagrams_leave_both_stores_valid",
            seed: it_seed,
        };
        let mut rng = StdRng::seed_from_u64(it_seed);
        insert_all(&sa, &wa.write(rng.gen_range(100..600)));
        insert_all(&sb, &wb.write(rng.gen_range(100..600)));
        let cut_after = rng.gen_range(0..whole * 2 / 3);
        let hole = Blackhole::start(server, cut_after);
        let result = relayed(&hole).await;
        if let Err(e) = &result {
            cut += 1;
            errors.push(match e {
                SyncError::Timeout { .. } => "Timeout",
                SyncError::Connection { .. } => "Connection",
                SyncError::Connect { .. } => "Connect",
                SyncError::Ended { .. } => "Ended",
                SyncError::Busy { .. } => "Busy",
                _ => "other",
            });
        }
        drop(hole);
        assert_valid(&sa, "a after the cut");
        assert_valid(&sb, "b after the cut");
        a.sync_until_done(b.addr(), 100).await;
        assert_eq!(sa.len(), sb.len(), "iteration {i}: the next sync converges");
        assert_eq!(
            sa.heads().unwrap(),
            sb.heads().unwrap(),
            "iteration {i}: heads"
        );
    }
    assert_converged(&sa, &sb);
    println!(
        "blackholed syncs: seed {seed}, a whole sync is {whole} datagrams; {iterations} \
         iterations, {cut} ended by the cut, with {errors:?}; {} entries at the end",
        sa.len()
    );
    assert!(cut > 0, "the relay cuts syncs");
    a.stop().await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------------
// SIGKILL: the child roles
// ---------------------------------------------------------------------------------------

fn child_config(peer: Option<EndpointAddr>, anti_entropy: Duration) -> NodeConfig {
    let mut config = NodeConfig::default();
    config.session = session_config();
    config.anti_entropy = anti_entropy;
    if let Some(peer) = peer {
        config.allowed = vec![peer.id];
        config.peers = vec![peer];
    }
    config
}

fn peer_from_env() -> Option<EndpointAddr> {
    let addr: SocketAddr = std::env::var(CHILD_PEER).ok()?.parse().ok()?;
    Some(EndpointAddr::new(secret(PARENT_KEY).public()).with_ip_addr(addr))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// The child: a live node on the store file given, in the role `OPLOG_FAULTS_CHILD` names.
/// It prints `acked <hash>` after every append its store committed, and never exits by
/// itself; the parent kills it.
#[test]
#[ignore = "run by the SIGKILL tests in a child process"]
fn fault_child() {
    let (Ok(role), Ok(path)) = (std::env::var(CHILD_VAR), std::env::var(CHILD_STORE)) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = open(Path::new(&path));
        let endpoint = bind_loopback(Some(secret(CHILD_KEY)), vec![])
            .await
            .unwrap();
        let peer = peer_from_env();
        let interval = match role.as_str() {
            "merge" => Duration::from_millis(100),
            _ => Duration::from_secs(3600),
        };
        let mut config = child_config(peer.clone(), interval);
        if role == "merge" {
            config.session.idle_timeout = MERGE_IDLE_TIMEOUT;
        }
        let node = Node::spawn(endpoint, store, config).await.unwrap();
        say("ready");
        let mut n = 0u64;
        loop {
            n += 1;
            let entry = node
                .put("b", format!("child-{}", n % 50), object(n))
                .await
                .unwrap();
            say(&format!("acked {}", hex::encode(entry.hash.0)));
            match role.as_str() {
                "sync" => {
                    if let Some(peer) = &peer {
                        say("syncing");
                        let result = node.sync_with(peer.id).await;
                        say(&format!("synced {}", result.is_ok()));
                    }
                }
                "merge" => {
                    let merges = node.status().unwrap().merges_written;
                    say(&format!("merges {merges}"));
                    // Slower than the parent, so sessions bring its entries in between and
                    // the child has heads to merge.
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                _ => {}
            }
        }
    });
}

fn object(n: u64) -> ObjectId {
    ObjectId(*blake3::hash(&n.to_be_bytes()).as_bytes())
}

fn spawn_child(role: &str, store: &Path, peer: Option<SocketAddr>) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--ignored", "--exact", "fault_child", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_VAR, role)
        .env(CHILD_STORE, store)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(peer) = peer {
        command.env(CHILD_PEER, peer.to_string());
    }
    command.spawn().expect("spawn the child")
}

fn parse_hash(hex_text: &str) -> Hash {
    let bytes: [u8; 32] = hex::decode(hex_text.trim())
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    Hash(bytes)
}

/// Runs `role` in a child on `store`, reads its lines until `ready_when` says so, waits a
/// seeded delay, SIGKILLs it, and returns every hash it acknowledged (read up to its end).
fn run_and_kill(
    role: &str,
    store: &Path,
    peer: Option<SocketAddr>,
    delay: Duration,
    mut ready_when: impl FnMut(&str) -> bool,
) -> (Vec<Hash>, Vec<String>) {
    let mut child = spawn_child(role, store, peer);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // the test harness prints `test fault_child ... ` before the first line
            let line = match line.strip_prefix("test fault_child ... ") {
                Some(rest) => rest.to_owned(),
                None => line,
            };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("child {role} never got ready; its lines: {lines:?}")
            });
        let ready = ready_when(&line);
        lines.push(line);
        if ready {
            break;
        }
    }
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL the child");
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let acked = lines
        .iter()
        .filter_map(|l| l.strip_prefix("acked "))
        .map(parse_hash)
        .collect();
    (acked, lines)
}

/// After a kill: the store reopens, verifies clean and holds every acknowledged write.
fn reopen_and_check(path: &Path, acked: &[Hash], what: &str) -> Arc<Store> {
    let store = Arc::new(
        Store::open(path)
            .unwrap_or_else(|e| panic!("{what}: the killed node's store reopens: {e}")),
    );
    assert_valid(&store, what);
    let missing = acked.iter().filter(|h| !store.contains(h).unwrap()).count();
    assert_eq!(
        missing,
        0,
        "{what}: {missing} of {} acknowledged writes lost",
        acked.len()
    );
    store
}

/// The reopened child store syncs with the parent's node under the child's identity; the
/// session completes and the child then holds everything the parent held before it.
async fn next_sync_completes(child: &Arc<Store>, parent: EndpointAddr, parent_store: &Store) {
    let before: HashSet<Hash> = hashes(parent_store).into_iter().collect();
    let me = Server::start(Arc::clone(child), Some(secret(CHILD_KEY)), &[parent.id]).await;
    me.sync_until_done(parent, 100).await;
    let now: HashSet<Hash> = hashes(child).into_iter().collect();
    assert!(
        before.is_subset(&now),
        "the next sync brings the parent's entries"
    );
    assert_valid(child, "after the next sync");
    me.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_writes_reopens_valid_with_every_acknowledged_write() {
    let seed = base_seed(0x5161);
    let _guard = SeedGuard {
        test: "a_node_killed_during_writes_reopens_valid_with_every_acknowledged_write",
        seed,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("child.redb");
    let mut all = Vec::new();
    let rounds = if long() { 20 } else { 4 };
    for round in 0..rounds {
        let delay = Duration::from_millis(rng.gen_range(0..300));
        let acks_before = rng.gen_range(1..40);
        let mut acks = 0;
        let (acked, _) = run_and_kill("write", &path, None, delay, |l| {
            acks += usize::from(l.starts_with("acked "));
            acks >= acks_before
        });
        all.extend(acked);
        let store = reopen_and_check(&path, &all, &format!("writes, round {round}"));
        assert!(store.len() >= all.len() as u64);
    }
    // The next sync completes: a fresh peer takes everything.
    let store = open(&path);
    let other = open(&dir.path().join("other.redb"));
    let server = Server::start(
        Arc::clone(&other),
        Some(secret(PARENT_KEY)),
        &[secret(CHILD_KEY).public()],
    )
    .await;
    let me = Server::start(
        Arc::clone(&store),
        Some(secret(CHILD_KEY)),
        &[secret(PARENT_KEY).public()],
    )
    .await;
    me.sync_until_done(server.addr(), 50).await;
    assert_converged(&store, &other);
    println!(
        "SIGKILL during writes: seed {seed}, {rounds} kills, {} acknowledged writes, all present",
        all.len()
    );
    me.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_a_sync_reopens_valid_and_the_next_sync_completes() {
    let seed = base_seed(0x5162);
    let _guard = SeedGuard {
        test: "a_node_killed_during_a_sync_reopens_valid_and_the_next_sync_completes",
        seed,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    // The parent serves a history large enough that a sync takes a while.
    let parent_store = open(&dir.path().join("parent.redb"));
    let mut author = Author::new(PARENT_KEY, START).key_len(200);
    insert_all(&parent_store, &author.write(20_000));
    let server = Server::start(
        Arc::clone(&parent_store),
        Some(secret(PARENT_KEY)),
        &[secret(CHILD_KEY).public()],
    )
    .await;
    let peer = *server.addr().ip_addrs().next().unwrap();
    let path = dir.path().join("child.redb");
    let mut all = Vec::new();
    let rounds = if long() { 12 } else { 3 };
    let mut partial = Vec::new();
    for round in 0..rounds {
        let delay = Duration::from_millis(rng.gen_range(0..1_500));
        let (acked, _) = run_and_kill("sync", &path, Some(peer), delay, |l| l == "syncing");
        all.extend(acked);
        let store = reopen_and_check(&path, &all, &format!("sync, round {round}"));
        partial.push(store.len());
    }
    let store = reopen_and_check(&path, &all, "sync, the last reopen");
    next_sync_completes(&store, server.addr(), &parent_store).await;
    // and the parent has every acknowledged write of the child
    let missing = all
        .iter()
        .filter(|h| !parent_store.contains(h).unwrap())
        .count();
    assert_eq!(
        missing, 0,
        "the parent took the child's acknowledged writes"
    );
    println!(
        "SIGKILL during a sync: seed {seed}, {rounds} kills, entries in the child's store \
         after each kill {partial:?} (of {}), {} acknowledged writes, all present",
        parent_store.len(),
        all.len()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_it_merges_reopens_valid_and_the_next_sync_completes() {
    let seed = base_seed(0x5163);
    let _guard = SeedGuard {
        test: "a_node_killed_while_it_merges_reopens_valid_and_the_next_sync_completes",
        seed,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    // The parent is a live node writing all the time, so the child merges after every push
    // and session.
    let parent_store = open(&dir.path().join("parent.redb"));
    let endpoint = bind_loopback(Some(secret(PARENT_KEY)), vec![])
        .await
        .unwrap();
    let parent_addr = loopback_addr(&endpoint).unwrap();
    let mut config = child_config(None, Duration::from_millis(100));
    config.allowed = vec![secret(CHILD_KEY).public()];
    config.session.idle_timeout = MERGE_IDLE_TIMEOUT;
    let parent = Node::spawn(endpoint, Arc::clone(&parent_store), config)
        .await
        .unwrap();
    let peer = *parent_addr.ip_addrs().next().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (parent_store, stop) = (Arc::clone(&parent_store), Arc::clone(&stop));
        let parent = &parent;
        async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                parent
                    .put("b", format!("parent-{}", n % 50), object(n))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            drop(parent_store);
        }
    };
    let path = dir.path().join("child.redb");
    let rounds = if long() { 12 } else { 3 };
    let killer = {
        let stop = Arc::clone(&stop);
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            let mut merges = Vec::new();
            for round in 0..rounds {
                let delay = Duration::from_millis(rng.gen_range(0..200));
                let (acked, lines) = run_and_kill("merge", &path, Some(peer), delay, |l| {
                    l.strip_prefix("merges ")
                        .is_some_and(|m| m.parse::<u64>().unwrap() >= 2)
                });
                all.extend(acked);
                merges.push(
                    lines
                        .iter()
                        .filter_map(|l| l.strip_prefix("merges "))
                        .next_back()
                        .unwrap()
                        .to_owned(),
                );
                drop(reopen_and_check(
                    &path,
                    &all,
                    &format!("merge, round {round}"),
                ));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (all, merges)
        })
    };
    let ((), result) = tokio::join!(writer, killer);
    let (all, merges) = result.unwrap();
    let store = reopen_and_check(&path, &all, "merge, the last reopen");
    next_sync_completes(&store, parent_addr, &parent_store).await;
    println!(
        "SIGKILL while merging: seed {seed}, {rounds} kills, merges written before each kill \
         {merges:?}, {} acknowledged writes, all present, {} entries after the next sync",
        all.len(),
        store.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), parent.shutdown()).await;
}

// ---------------------------------------------------------------------------------------
// Writes that fail: a full disk, a read-only file system
// ---------------------------------------------------------------------------------------

/// A tmpfs mounted on a temporary directory, unmounted on drop (also after a failure).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount` takes it: `2m`) or says why not.
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

macro_rules! tmpfs_or_skip {
    ($size:expr) => {
        match Tmpfs::mount($size) {
            Ok(t) => t,
            Err(why) => {
                println!("SKIPPED: needs a tmpfs mount (run as root): {why}");
                return;
            }
        }
    };
}

#[test]
fn a_full_disk_during_inserts_gives_a_typed_error_and_the_store_reopens_with_every_acked_write() {
    let disk = tmpfs_or_skip!("2m");
    let path = disk.path().join("log.redb");
    let store = Store::open(&path).expect("open on the small disk");
    let mut author = Author::new(7, START).key_len(300);
    let mut acked: Vec<Hash> = Vec::new();
    let mut error = None;
    for _ in 0..10_000 {
        let batch = author.write(20);
        let hashes: Vec<Hash> = batch.iter().map(|e| e.hash).collect();
        match store.insert(batch) {
            Ok(report) => {
                assert_eq!(report.applied.len(), 20);
                acked.extend(hashes);
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let error = error.expect("a 2 MiB disk fills up");
    println!(
        "full disk during inserts: {} writes acknowledged, then: {error}",
        acked.len()
    );
    assert!(
        matches!(error, StoreError::Database(_)),
        "a full disk is a database (I/O) error: {error:?}"
    );
    // Writes go on failing with typed errors, never a panic; reads still work.
    for _ in 0..3 {
        assert!(store.insert(author.write(20)).is_err());
    }
    assert!(store.len() >= acked.len() as u64);
    drop(store);

    // Reopened (on the still full disk, and then with room): valid, nothing acknowledged lost.
    match Store::open(&path) {
        Ok(store) => {
            assert_valid(&store, "reopened on the full disk");
            assert!(acked.iter().all(|h| store.contains(h).unwrap()));
        }
        Err(e) => println!("reopen on the full disk refused: {e}"),
    }
    disk.remount("size=16m");
    let store = Store::open(&path).expect("reopens once there is room");
    assert_valid(&store, "reopened with room");
    let lost = acked.iter().filter(|h| !store.contains(h).unwrap()).count();
    assert_eq!(lost, 0, "acknowledged writes lost");
    // and it takes writes again
    let more = author.write(20);
    store.insert(more).expect("writes go on once there is room");
    assert_valid(&store, "after writing again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_during_a_sync_ends_it_with_a_typed_error_and_the_next_sync_completes() {
    let disk = tmpfs_or_skip!("2m");
    let dir = tempfile::tempdir().unwrap();
    let big = open(&dir.path().join("big.redb"));
    let mut author = Author::new(8, START).key_len(300);
    insert_all(&big, &author.write(20_000));
    let small = open(&disk.path().join("small.redb"));
    let mut own = Author::new(9, START + 7);
    let acked = own.write(30);
    insert_all(&small, &acked);
    let (kb, ks) = (secret(0x71), secret(0x72));
    let (idb, ids) = (kb.public(), ks.public());
    let server = Server::start(Arc::clone(&big), Some(kb), &[ids]).await;
    let client = Server::start(Arc::clone(&small), Some(ks), &[idb]).await;
    let result = client.sync_with(server.addr()).await;
    println!("full disk during a sync: {result:?}");
    assert!(
        matches!(result, Err(SyncError::Store { .. })),
        "the sync ends with the store's error: {result:?}"
    );
    assert_valid(&small, "the store the sync filled");
    assert!(acked.iter().all(|e| small.contains(&e.hash).unwrap()));
    let got = small.len();
    client.stop().await;
    drop(small);
    // Room again: it reopens valid with what it had, and the next sync completes.
    disk.remount("size=64m");
    let small = reopen_and_check(
        &disk.path().join("small.redb"),
        &acked.iter().map(|e| e.hash).collect::<Vec<_>>(),
        "after the full disk",
    );
    let client = Server::start(Arc::clone(&small), Some(secret(0x72)), &[idb]).await;
    client.sync_until_done(server.addr(), 50).await;
    assert_converged(&small, &big);
    println!(
        "full disk during a sync: {got} of {} entries before the disk filled; the next sync \
         completed",
        big.len()
    );
    client.stop().await;
    server.stop().await;
}

#[test]
fn a_store_on_a_read_only_file_system_or_file_refuses_to_open_with_a_clear_error() {
    let disk = tmpfs_or_skip!("8m");
    let path = disk.path().join("log.redb");
    {
        let store = Store::open(&path).unwrap();
        insert_all(&store, &Author::new(3, START).write(50));
    }
    // As root, a 0444 file is still writable; a read-only mount is what refuses writes.
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&path, perms).unwrap();
    disk.remount("ro");
    let result = std::panic::catch_unwind(|| Store::<Op>::open(&path));
    let error = result
        .expect("opening a read-only file does not panic")
        .expect_err("a read-only store file is refused");
    println!("read-only store file: {error}");
    assert!(
        matches!(error, StoreError::Open { .. } | StoreError::Database(_)),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("log.redb"),
        "the error names the file: {text}"
    );
    disk.remount("rw");
    let store = Store::open(&path).expect("writable again");
    assert_valid(&store, "after the read-only episode");
    assert_eq!(store.len(), 50);
}

// ---------------------------------------------------------------------------------------
// Corrupt bytes of a closed store file
// ---------------------------------------------------------------------------------------

#[derive(Default, Debug)]
struct Outcomes {
    refused: u32,
    reported: u32,
    read_error: u32,
    unaffected: u32,
}

/// What a store file with damaged bytes does: `Ok` says how it failed safely.
fn judge(path: &Path, want: &[Hash], view: &str, outcomes: &mut Outcomes) -> Result<(), String> {
    let Ok(store) = Store::<Op>::open_with(path, Options::default()) else {
        outcomes.refused += 1;
        return Ok(());
    };
    match store.verify() {
        Err(_) => {
            outcomes.read_error += 1;
            return Ok(());
        }
        Ok(report) if !report.is_ok() => {
            outcomes.reported += 1;
            return Ok(());
        }
        Ok(_) => {}
    }
    // It opened and verify() found nothing: then every read must give the original data.
    let Ok(entries) = store.log(oplog_protocol::EntryKey::MIN, usize::MAX) else {
        outcomes.read_error += 1;
        return Ok(());
    };
    let got: Vec<Hash> = entries.into_iter().map(|e| e.hash).collect();
    if got != want {
        return Err(format!(
            "opened, verify() clean, but the log differs ({} entries, {} expected)",
            got.len(),
            want.len()
        ));
    }
    match store.view() {
        Ok(v) if format!("{v:?}") == view => {}
        Ok(_) => return Err("opened, verify() clean, but the view differs".into()),
        Err(_) => {
            outcomes.read_error += 1;
            return Ok(());
        }
    }
    outcomes.unaffected += 1;
    Ok(())
}

#[test]
fn corrupt_bytes_in_a_closed_store_are_refused_or_reported_never_a_panic_or_wrong_data() {
    let iterations = if long() { 2_000 } else { 150 };
    let seed = base_seed(0xc0);
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.redb");
    let (want, view) = {
        let store = Store::open(&original).unwrap();
        let mut a = Author::new(4, START);
        let mut b = Author::new(5, START + 3);
        insert_all(&store, &a.write(300));
        insert_all(&store, &b.write(300));
        (hashes(&store), format!("{:?}", store.view().unwrap()))
    };
    let bytes = std::fs::read(&original).unwrap();
    // Offsets of bytes that are not zero: pages in use, mostly.
    let live: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] != 0).collect();
    let mut outcomes = Outcomes::default();
    let damaged = dir.path().join("damaged.redb");
    for i in 0..iterations {
        let it_seed = seed.wrapping_mul(1_000_003).wrapping_add(i);
        let _guard = SeedGuard {
            test: "corrupt_bytes_in_a_closed_store_are_refused_or_reported_never_a_panic_or_wrong_data",
            seed: it_seed,
        };
        let mut rng = StdRng::seed_from_u64(it_seed);
        let mut copy = bytes.clone();
        for _ in 0..rng.gen_range(1..=8) {
            let at = if rng.gen_bool(0.7) {
                live[rng.gen_range(0..live.len())]
            } else {
                rng.gen_range(0..copy.len())
            };
            copy[at] ^= rng.gen_range(1..=255u8);
        }
        std::fs::write(&damaged, &copy).unwrap();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            judge(&damaged, &want, &view, &mut outcomes)
        }));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(wrong)) => panic!("seed {it_seed}: silently wrong data: {wrong}"),
            Err(payload) => panic!(
                "seed {it_seed}: a damaged store file made the store panic: {:?}",
                payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
            ),
        }
    }
    println!(
        "corrupt bytes: seed {seed}, {iterations} damaged copies of a {}-byte file: {outcomes:?}",
        bytes.len()
    );
    assert!(
        outcomes.refused + outcomes.reported + outcomes.read_error > 0,
        "some damage is detected"
    );
}

/// A sync of fewer batches than `MAX_BUFFERED_COMMITS` whose entries do not fit on the disk:
/// every batch is buffered (in redb's cache), and only the durable commit at the session's
/// end meets the full disk. The session itself ended Done, but none of its entries reached
/// the disk (they are gone after a reopen; the peer still holds them), so the caller must
/// be told `SyncError::Store`, not `Ok` (which `classify` in node/src/handler.rs answered
/// before it looked at the store error first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_final_persist_fails_on_a_full_disk_reports_the_store_error() {
    let disk = tmpfs_or_skip!("2m");
    let dir = tempfile::tempdir().unwrap();
    let big = open(&dir.path().join("big.redb"));
    insert_all(&big, &Author::new(8, START).key_len(300).write(20_000));
    let small = open(&disk.path().join("small.redb"));
    let (kb, ks) = (secret(0x73), secret(0x74));
    let (idb, ids) = (kb.public(), ks.public());
    // Default 1 MiB frames: about 10 batches, fewer than MAX_BUFFERED_COMMITS.
    let endpoint = bind_loopback(Some(kb), vec![]).await.unwrap();
    let sync = OplogSync::new(Arc::clone(&big), [ids]);
    let router = Router::builder(endpoint.clone()).accept(ALPN, sync).spawn();
    let client_endpoint = bind_loopback(Some(ks), vec![]).await.unwrap();
    let client = OplogSync::new(Arc::clone(&small), [idb]);
    let result = client
        .sync_with(&client_endpoint, loopback_addr(&endpoint).unwrap())
        .await;
    assert!(
        matches!(result, Err(SyncError::Store { .. })),
        "the disk is full, the entries are not durable: {result:?}"
    );
    router.shutdown().await.unwrap();
}
