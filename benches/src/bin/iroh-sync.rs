//! Full sync from empty over iroh loopback between two real redb stores, next to the ceilings
//! of the same machine: one raw iroh stream's throughput, strict ed25519 verification on all
//! cores, and the store's insert rate.
//!
//! `cargo run --release -p oplog-benches --bin iroh-sync [n ...]` (default: 100000 1000000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use oplog_node::{bind_loopback, loopback_addr, OplogSync, ALPN};
use oplog_protocol::{verify_batch, Hlc, LogEntry, ObjectId, Op, SigningKey};
use oplog_store::{Options, Store};

const SINK_ALPN: &[u8] = b"oplog-bench/sink";

/// Reads one stream to its end and answers with the byte count.
#[derive(Debug, Clone)]
struct Sink;

impl ProtocolHandler for Sink {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut total = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        while let Some(n) = recv.read(&mut buf).await.map_err(AcceptError::from_err)? {
            total += n as u64;
        }
        send.write_all(&total.to_be_bytes())
            .await
            .map_err(AcceptError::from_err)?;
        send.finish()?;
        conn.closed().await;
        Ok(())
    }
}

#[allow(clippy::cast_precision_loss)]
fn per_sec(count: u64, d: Duration) -> f64 {
    count as f64 / d.as_secs_f64()
}

/// One iroh stream on loopback: MB/s of 1 GiB written and read.
async fn raw_stream() -> f64 {
    let a = bind_loopback(None, vec![]).await.expect("bind");
    let b = bind_loopback(None, vec![]).await.expect("bind");
    let router = Router::builder(b.clone()).accept(SINK_ALPN, Sink).spawn();
    let conn = a
        .connect(loopback_addr(&b).expect("addr"), SINK_ALPN)
        .await
        .expect("connect");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    let chunk = vec![7u8; 1 << 20];
    let total: u64 = 1 << 30;
    let t = Instant::now();
    for _ in 0..(total >> 20) {
        send.write_all(&chunk).await.expect("write");
    }
    send.finish().expect("finish");
    let mut got = [0u8; 8];
    recv.read_exact(&mut got).await.expect("count");
    let d = t.elapsed();
    assert_eq!(u64::from_be_bytes(got), total);
    conn.close(0u32.into(), b"done");
    router.shutdown().await.expect("shutdown");
    a.close().await;
    per_sec(total, d) / 1e6
}

/// Entries per second `verify_batch` checks on all cores: the median of three passes over
/// `sample` (a VM's speed drifts by a few percent from one second to the next, so the
/// ceiling is measured again right after each sync and the share is taken against that).
fn verify_ceiling(sample: &[LogEntry<Op>]) -> f64 {
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let ok = verify_batch(sample.to_vec()).into_iter().flatten().count();
            assert_eq!(ok, sample.len(), "every sample entry verifies");
            per_sec(ok as u64, t.elapsed())
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[1]
}

fn entries(n: usize) -> Vec<LogEntry<Op>> {
    let key = SigningKey::from_bytes(&[9; 32]);
    let mut parents = vec![];
    (0..n)
        .map(|i| {
            let op = Op::Put {
                bucket: "photos".into(),
                key: format!("2026/11/{i:08}.jpg"),
                object_id: ObjectId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
            };
            let e = LogEntry::sign(
                &key,
                Hlc(1_780_000_000_000_000_000 + i as u64 * 1_000),
                op,
                parents.clone(),
            )
            .expect("valid");
            parents = vec![e.hash];
            e
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = {
        let v: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if v.is_empty() {
            vec![100_000, 1_000_000]
        } else {
            v
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    println!("machine: {cores} cores; release build; loopback; relays off");

    // ceiling 1: strict ed25519 verification on all cores
    let sample = entries(64_000);
    let verify_rate = verify_ceiling(&sample);
    // ceiling 2: one raw iroh stream
    let stream_mb = raw_stream().await;
    let entry_len = sample[0].encode().len();
    println!("| ceiling | rate |");
    println!("| --- | --- |");
    println!("| strict ed25519 verification, all cores | {verify_rate:.0} entries/s |");
    #[allow(clippy::cast_precision_loss)]
    let stream_entries = stream_mb * 1e6 / entry_len as f64;
    println!("| one iroh stream on loopback | {stream_mb:.0} MB/s ({stream_entries:.0} entries/s of {entry_len} B) |");
    println!();
    println!("| n | store insert (entries/s) | full sync from empty (entries/s) | MB/s of entries | wire MB | round trips | seconds | verification ceiling right after (entries/s) | share of it |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let all = entries(n);
        let sa = Arc::new(
            Store::open_with(dir.path().join("a.redb"), Options::default()).expect("open"),
        );
        let t = Instant::now();
        for chunk in all.chunks(10_000) {
            sa.insert(chunk.to_vec()).expect("insert");
        }
        let insert_rate = per_sec(n as u64, t.elapsed());
        drop(all);
        let sb = Arc::new(
            Store::open_with(dir.path().join("b.redb"), Options::default()).expect("open"),
        );
        let a = bind_loopback(None, vec![]).await.expect("bind");
        let b = bind_loopback(None, vec![]).await.expect("bind");
        let router = Router::builder(a.clone())
            .accept(ALPN, OplogSync::new(Arc::clone(&sa), [b.id()]))
            .spawn();
        let sync_b = OplogSync::new(Arc::clone(&sb), [a.id()]);
        let t = Instant::now();
        let report = sync_b
            .sync_with(&b, loopback_addr(&a).expect("addr"))
            .await
            .expect("sync completes");
        let d = t.elapsed();
        assert_eq!(sb.len(), n as u64, "b holds everything");
        let rate = per_sec(report.entries_received, d);
        let mbs = per_sec(report.entry_bytes_received, d) / 1e6;
        #[allow(clippy::cast_precision_loss)]
        let wire = (report.bytes_sent + report.bytes_received) as f64 / 1e6;
        router.shutdown().await.expect("shutdown");
        b.close().await;
        let ceiling = verify_ceiling(&sample);
        println!(
            "| {n} | {insert_rate:.0} | {rate:.0} | {mbs:.1} | {wire:.1} | {} | {:.1} | {ceiling:.0} | {:.0}% |",
            report.round_trips(),
            d.as_secs_f64(),
            100.0 * rate / ceiling
        );
    }
}
