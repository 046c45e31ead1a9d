//! A fresh node syncs 10^5 fat entries from empty over a real iroh connection, and the
//! process's heap grows by about what the batches, the queues and the store's own caches hold,
//! not by the size of the log. Its own test binary: the counting allocator sees everything the
//! process allocates, so nothing else may run beside it.

use std::sync::Arc;

use iroh::protocol::Router;
use oplog_node::{bind_loopback, loopback_addr, OplogSync, ALPN};
use oplog_protocol::session::{SessionConfig, DEFAULT_BATCH_BYTES, DEFAULT_MAX_FRAME_BYTES};
use oplog_store::{Options, Store};
use oplog_tests::fixture::{insert_all, Author, NOW, START};

#[global_allocator]
static ALLOCATOR: oplog_tests::heap::Counting = oplog_tests::heap::Counting;

const MIB: f64 = 1024.0 * 1024.0;
/// redb's page cache for each store in this test.
const CACHE: usize = 8 << 20;

#[allow(clippy::cast_precision_loss)]
fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_syncs_a_large_log_in_memory_bounded_by_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().clock(|| NOW).cache_bytes(CACHE);
    let sa = Arc::new(Store::open_with(dir.path().join("a.redb"), options()).unwrap());
    let sb = Arc::new(Store::open_with(dir.path().join("b.redb"), options()).unwrap());
    let n = 100_000;
    let mut log_bytes = 0usize;
    let mut w = Author::new(1, START).key_len(1_000);
    for _ in 0..n / 5_000 {
        let batch = w.write(5_000);
        log_bytes += batch.iter().map(|e| e.encode().len()).sum::<usize>();
        insert_all(&sa, &batch);
    }

    let a = bind_loopback(None, vec![]).await.unwrap();
    let b = bind_loopback(None, vec![]).await.unwrap();
    let sync_a = OplogSync::new(Arc::clone(&sa), [b.id()]);
    let router = Router::builder(a.clone()).accept(ALPN, sync_a).spawn();
    let sync_b = OplogSync::new(Arc::clone(&sb), [a.id()]).with_config(SessionConfig::default());

    let base = oplog_tests::heap::start();
    let report = sync_b
        .sync_with(&b, loopback_addr(&a).unwrap())
        .await
        .expect("sync completes");
    let peak = oplog_tests::heap::growth_since(base);
    assert_eq!(report.entries_received, 100_000);
    assert_eq!(sb.len(), 100_000);

    // What the sync may hold at once, each item a bound of the design rather than a figure
    // measured here:
    // - b's key index, which grows with the log by design (spec: the store keeps every key in
    //   memory): measured exactly;
    // - both stores' page caches (CACHE each) and one write transaction's dirty pages (one
    //   batch of entries plus their index rows, under 4 batches);
    // - frames queued in each driver (a few each way, at most the frame limit each; a
    //   received ENTRIES frame read ahead also holds its decoded, verified entries, about
    //   its own size again) and QUIC's stream windows;
    // - one turn's carried keys on each side (65,536 × 40 bytes).
    let index = sb.snapshot().heap_bytes();
    let allowance =
        2 * CACHE + 4 * DEFAULT_BATCH_BYTES + 6 * DEFAULT_MAX_FRAME_BYTES + 2 * 65_536 * 40;
    println!(
        "synced {n} entries ({:.1} MiB of log) from empty: peak heap growth {:.1} MiB, of which b's key index {:.1} MiB; allowance {:.1} MiB",
        mib(log_bytes),
        mib(peak),
        mib(index),
        mib(allowance)
    );
    assert!(
        peak <= index + allowance,
        "peak heap growth {:.1} MiB is over the bound {:.1} MiB",
        mib(peak),
        mib(index + allowance)
    );
    assert!(
        peak < log_bytes / 2,
        "peak heap growth {:.1} MiB is not small beside the log's {:.1} MiB",
        mib(peak),
        mib(log_bytes)
    );
    router.shutdown().await.unwrap();
    b.close().await;
}
