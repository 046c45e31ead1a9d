//! `oplog demo`: five real nodes in one process on loopback, each with its own redb file in a
//! temporary directory. All write; one is cut off while the others write thousands of entries
//! and conflict on the same keys; it heals; the demo prints what each healing sync sent next
//! to a full copy and Negentropy, the merge and its winners, and every node's view hash.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use iroh::{EndpointAddr, EndpointId, SecretKey};
use oplog_node::{bind_loopback, loopback_addr, Node, NodeConfig};
use oplog_store::protocol::testing::transcript;
use oplog_store::protocol::{Config, ObjectId, Op, SystemClock, WallClock};
use oplog_store::Store;
use serde_json::Value;

use crate::error::CliError;
use crate::exec::{self, Request};
use crate::output;

const NAMES: [&str; 5] = ["ada", "bo", "cy", "dee", "eve"];
/// Writes per node before the partition.
const WARMUP: usize = 200;
/// Writes by the cut-off node during the partition.
const CUT_OFF: usize = 200;
/// Keys everyone writes to: conflicts.
const KEYS: usize = 400;
/// The longest the demo waits for nodes to agree.
const CONVERGE: Duration = Duration::from_secs(120);

fn node_err(what: &str) -> impl Fn(oplog_node::NodeError) -> CliError + '_ {
    move |e| CliError::Node(format!("{what}: {e}"))
}

/// The view hash of a store: BLAKE3 over its view rows sorted by `(bucket, key)`, each row
/// `len(bucket) u32 LE, bucket, len(key) u32 LE, key, winner HLC u64 LE, winner hash (32),
/// winner author (32), 1 if a tombstone else 0`. Equal hashes mean equal visible state.
pub fn view_hash(store: &Store) -> Result<blake3::Hash, CliError> {
    let mut rows = store.view()?;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = blake3::Hasher::new();
    for ((bucket, key), w) in rows {
        for s in [&bucket, &key] {
            h.update(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
            h.update(s.as_bytes());
        }
        h.update(&w.key.hlc.0.to_le_bytes());
        h.update(&w.key.hash.0);
        h.update(&w.node_id.0);
        h.update(&[u8::from(w.is_delete)]);
    }
    Ok(h.finalize())
}

struct Demo {
    nodes: Vec<Node>,
    addrs: Vec<EndpointAddr>,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn ids(&self) -> Vec<EndpointId> {
        self.nodes.iter().map(Node::id).collect()
    }

    /// Waits until the nodes `which` hold the same entries, heads and view, with one head.
    async fn converge(&self, which: &[usize]) -> Result<(u64, blake3::Hash), CliError> {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let mut seen = Vec::new();
            for &i in which {
                let store = self.nodes[i].store();
                let heads = store.heads()?;
                seen.push((store.len(), heads, view_hash(store)?));
            }
            let first = &seen[0];
            if first.1.len() == 1 && seen.iter().all(|s| s == first) {
                return Ok((first.0, first.2));
            }
            if Instant::now() > deadline {
                return Err(CliError::Node(format!(
                    "the nodes did not converge within {CONVERGE:?}: entries {:?}, heads {:?}",
                    seen.iter().map(|s| s.0).collect::<Vec<_>>(),
                    seen.iter().map(|s| s.1.len()).collect::<Vec<_>>()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn object(i: usize, who: usize) -> ObjectId {
    ObjectId(*blake3::hash(format!("{who}/{i}").as_bytes()).as_bytes())
}

fn photo(i: usize) -> String {
    format!("2026/11/{:04}.jpg", i % KEYS)
}

async fn write(node: &Node, who: usize, n: usize, salt: usize) -> Result<(), CliError> {
    for i in 0..n {
        let key = photo(i * 7 + salt);
        if who == 4 && i % 10 == 9 {
            node.delete("photos", key)
                .await
                .map_err(node_err("a delete"))?;
        } else {
            node.put("photos", key, object(i + salt, who))
                .await
                .map_err(node_err("a put"))?;
        }
    }
    Ok(())
}

fn entry_bytes(store: &Store) -> Result<u64, CliError> {
    let mut total = 0u64;
    store.for_each_entry(|e| {
        total += e.encode().len() as u64;
        Ok(())
    })?;
    Ok(total)
}

/// Runs the demo; `partitioned` is the number of writes of each connected node while one is
/// cut off.
pub async fn run(partitioned: usize) -> Result<(), CliError> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| CliError::io("cannot create a temp dir", e))?;
    println!(
        "oplog demo: {} nodes on 127.0.0.1, each with its own redb file in {}",
        NAMES.len(),
        dir.path().display()
    );
    let mut endpoints = Vec::new();
    for i in 0..NAMES.len() {
        let key = SecretKey::from_bytes(&[u8::try_from(i + 1).unwrap_or(1); 32]);
        endpoints.push(
            bind_loopback(Some(key), vec![])
                .await
                .map_err(|e| CliError::Node(e.to_string()))?,
        );
    }
    let addrs: Vec<EndpointAddr> = endpoints
        .iter()
        .map(loopback_addr)
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::Node(e.to_string()))?;
    let mut nodes = Vec::new();
    for (i, ep) in endpoints.into_iter().enumerate() {
        let store = Arc::new(Store::open(dir.path().join(format!("{}.redb", NAMES[i])))?);
        let mut config = NodeConfig::with_peers(
            addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| a.clone()),
        );
        // eve's own anti-entropy is slow so that the healing syncs below are the ones measured
        config.anti_entropy = if i == 4 {
            Duration::from_secs(600)
        } else {
            Duration::from_secs(1)
        };
        let node = Node::spawn(ep, store, config)
            .await
            .map_err(node_err("a node did not start"))?;
        println!("  {:<4} {}", NAMES[i], node.id());
        nodes.push(node);
    }
    let demo = Demo {
        nodes,
        addrs,
        _dir: dir,
    };
    let ids = demo.ids();
    let all: Vec<usize> = (0..NAMES.len()).collect();

    // 1. everyone writes
    let t = Instant::now();
    let writes = demo
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| write(n, i, WARMUP, i * 1000));
    for r in join_all(writes).await {
        r?;
    }
    let (n, _) = demo.converge(&all).await?;
    println!(
        "\n1. all five write {WARMUP} entries each; push and anti-entropy converge them: {n} entries, one head ({:.1?})",
        t.elapsed()
    );

    // 2. eve is cut off; the others write thousands, on the same keys
    let eve = 4;
    for i in 0..eve {
        demo.nodes[i].remove_peer(&ids[eve]);
        demo.nodes[i].disallow(&ids[eve]);
        demo.nodes[eve].disallow(&ids[i]);
    }
    let t = Instant::now();
    let writes = demo.nodes.iter().enumerate().map(|(i, n)| {
        let count = if i == eve { CUT_OFF } else { partitioned };
        write(n, i, count, 10_000 + i * 13)
    });
    for r in join_all(writes).await {
        r?;
    }
    let four: Vec<usize> = (0..eve).collect();
    let (n4, _) = demo.converge(&four).await?;
    println!(
        "2. eve is cut off (removed from every member list); ada, bo, cy and dee write {partitioned} entries each and eve {CUT_OFF}, all on the same {KEYS} keys; the four converge at {n4} entries, eve holds {} ({:.1?})",
        demo.nodes[eve].store().len(),
        t.elapsed()
    );

    // 3. heal: eve syncs with each; measure each sync against a full copy and Negentropy
    let healed_at = SystemClock.now_nanos();
    for i in 0..eve {
        demo.nodes[i].allow(ids[eve]);
        demo.nodes[eve].allow(ids[i]);
    }
    println!("\n3. the partition heals: eve syncs with each of the others");
    println!("| sync | round trips | protocol bytes | entry bytes | entries in / out | full copy | Negentropy (reconciliation only) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for i in 0..eve {
        let (mine, theirs) = (demo.nodes[eve].store(), demo.nodes[i].store());
        let (snap_mine, snap_theirs) = (mine.snapshot(), theirs.snapshot());
        let neg = transcript::run(
            &snap_mine,
            &snap_theirs,
            Config::negentropy(Some(4 << 20)),
            Config::negentropy(Some(4 << 20)),
        )
        .map_err(|e| CliError::Node(format!("the Negentropy comparison failed: {e}")))?;
        let (neg_out, neg_in) = neg.bytes();
        let full = entry_bytes(theirs)?;
        let report = crate::serve::sync_now(&demo.nodes[eve], ids[i])
            .await
            .map_err(node_err("a healing sync"))?;
        println!(
            "| eve <-> {} | {} | {} B | {} B | {} / {} | {} B | {} B in {} round trips + 1 fetch |",
            NAMES[i],
            report.round_trips(),
            report.overhead_bytes(),
            report.entry_bytes_sent + report.entry_bytes_received,
            report.entries_received,
            report.entries_sent,
            full,
            neg_out + neg_in,
            neg.rounds()
        );
    }
    println!("   (protocol bytes: every frame byte both ways that is not an entry's own; full copy: every entry the peer holds; after the first sync the others usually have nothing left to send eve, as their own anti-entropy already spread its entries)");
    for i in 0..eve {
        demo.nodes[i].add_peer(demo.addrs[eve].clone());
    }
    let t = Instant::now();
    let (n, _) = demo.converge(&all).await?;
    println!(
        "   after the merges spread: {n} entries everywhere, one head ({:.1?})",
        t.elapsed()
    );

    // 4. the merge that joined the branches: of the merges written since the heal, the one that resolves
    // the most conflicts
    let store = demo.nodes[0].store();
    let mut merges = Vec::new();
    store.for_each_entry(|e| {
        if matches!(e.action, Op::Merge) && e.hlc.0 >= healed_at {
            merges.push(e);
        }
        Ok(())
    })?;
    let mut best: Option<(usize, Value, usize)> = None;
    for m in &merges {
        let row = exec::entry_json(store, m)?;
        let conflicts = row
            .get("conflicts")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if best.as_ref().is_none_or(|b| conflicts > b.0) {
            best = Some((conflicts, row, m.parents.len()));
        }
    }
    if let Some((conflicts, mut row, parents)) = best {
        println!(
            "\n4. the merge that joined the branches after the heal ({parents} parents) resolves {conflicts} conflicting keys; the first few:"
        );
        if let Some(list) = row.get_mut("conflicts").and_then(Value::as_array_mut) {
            list.truncate(3);
        }
        let log = serde_json::json!({"entries": [row], "total": store.len()});
        let text = output::text(
            &Request::Log {
                limit: 1,
                graph: false,
                register: None,
            },
            &log,
        );
        for line in text.lines().filter(|l| !l.starts_with('(')) {
            println!("   {line}");
        }
    }
    let register = ("photos".to_string(), photo(7));
    let request = Request::Log {
        limit: 12,
        graph: false,
        register: Some(register.clone()),
    };
    if let Some(v) = exec::read(store, &request)? {
        println!(
            "   `oplog log --key photos/{}` (newest first; every node shows the same winner):",
            register.1
        );
        for line in output::text(&request, &v).lines() {
            println!("   {line}");
        }
    }

    // 5. the view hashes
    println!("\n5. every node's view hash (BLAKE3 over its sorted view rows):");
    let mut hashes = Vec::new();
    for (i, node) in demo.nodes.iter().enumerate() {
        let h = view_hash(node.store())?;
        println!(
            "   {:<4} {}  ({} entries, {} registers)",
            NAMES[i],
            h.to_hex(),
            node.store().len(),
            node.store().view()?.len()
        );
        hashes.push(h);
    }
    let equal = hashes.iter().all(|h| *h == hashes[0]);
    for node in demo.nodes {
        let _ = node.shutdown().await;
    }
    if !equal {
        return Err(CliError::Node("the view hashes differ".into()));
    }
    println!("   all equal. Done in {:.1?}.", started.elapsed());
    Ok(())
}

/// Runs futures concurrently on this task and returns their outputs in order.
async fn join_all<F: Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, d) in futs.iter_mut().zip(done.iter_mut()) {
            if d.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *d = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
