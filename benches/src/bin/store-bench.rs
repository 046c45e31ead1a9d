//! Speed and size of the redb store (`oplog-store`) at 10^3 .. 10^6 entries: insert rate,
//! open time, range fingerprint time and bytes on disk per entry.
//!
//! `cargo run --release -p oplog-benches --bin store-bench [-- --max 100000]`
//!
//! `-- --verified [--max N]` measures instead what a sync from empty does to the store: the
//! same entries, cut into batches of at most 1 MiB of encoded entries (one ENTRIES frame,
//! about 6 000 entries), stored with `Store::insert_verified` (verified beforehand, outside
//! the timing, as a session does on all cores) and with `Store::insert` (verification
//! included), at 10^5 and 10^6 entries (or up to `N`), one durable commit per batch; and
//! with `Store::insert_verified_buffered` (what a session's driver calls: commits that do not
//! wait for the disk, every 16th durable) and one `Store::persist` at the end, inside the
//! timing; `--no-plain` skips `Store::insert` (to profile `insert_verified` alone).
//!
//! Entries are four authors' interleaved chains (each entry's parent is its author's previous
//! entry), inserted in batches of 10 000 (a bulk sync's worth), each batch one durable
//! commit. The fingerprint of random ranges must not grow with the store: the last line
//! prints the ratio of its time at the largest size to its time at 10^3 (target: about 4 at
//! most). A default run takes about 3 minutes on 2 cores, most of it signing and verifying.

use std::time::{Duration, Instant};

use oplog_protocol::{verify_batch, VerifiedEntry};
use oplog_protocol::{
    Aggregate, EntryKey, Hash, Hlc, LogEntry, ObjectId, Op, Range, RangeStore, Salt, SigningKey,
};
use oplog_store::{Options, Store};
use rand::{Rng, SeedableRng};

const BATCH: usize = 10_000;
const AUTHORS: usize = 4;
const QUERIES: u32 = 2_000;

/// `n` entries over `AUTHORS` chains, in HLC order, signed on all cores.
fn entries(n: usize) -> Vec<LogEntry<Op>> {
    let threads = AUTHORS;
    let per = n.div_ceil(threads);
    let chains: Vec<Vec<LogEntry<Op>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let key =
                        SigningKey::from_bytes(&[u8::try_from(t + 1).expect("few authors"); 32]);
                    let mut out: Vec<LogEntry<Op>> = Vec::with_capacity(per);
                    for i in 0..per {
                        let hlc = 1_000 + (i * threads + t) as u64;
                        let parents: Vec<Hash> =
                            out.last().map(|e| vec![e.hash]).unwrap_or_default();
                        let action = Op::Put {
                            bucket: "bench".into(),
                            key: format!("objects/{:08}", (hlc * 7919) % 100_003),
                            object_id: ObjectId(blake3_like(hlc)),
                        };
                        out.push(LogEntry::sign(&key, Hlc(hlc), action, parents).expect("valid"));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("signer"))
            .collect()
    });
    let mut all: Vec<LogEntry<Op>> = chains.into_iter().flatten().collect();
    all.sort_by_key(oplog_protocol::LogEntry::key);
    all.truncate(n);
    all
}

fn blake3_like(x: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in (0u32..).zip(out.iter_mut()) {
        *b = (x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(i) >> 56) as u8;
    }
    out
}

/// `x` as an `f64`, for the printed figures: the counts and byte sizes measured here are far
/// below 2^52, where the conversion is exact.
#[allow(clippy::cast_precision_loss)]
fn float(x: u64) -> f64 {
    x as f64
}

struct Row {
    n: usize,
    insert_per_s: f64,
    open: Duration,
    fingerprint: Duration,
    negentropy: Duration,
    count: Duration,
    scan: Option<Duration>,
    bytes_per_entry: f64,
    index_bytes_per_entry: f64,
}

fn measure(all: &[LogEntry<Op>], n: usize) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.redb");
    let entries = &all[..n];
    let store: Store = Store::open_with(&path, Options::default()).expect("open");
    let start = Instant::now();
    for batch in entries.chunks(BATCH) {
        let report = store.insert(batch.to_vec()).expect("insert");
        assert_eq!(report.applied.len(), batch.len());
    }
    let insert_per_s = float(n as u64) / start.elapsed().as_secs_f64();
    drop(store);
    let bytes_per_entry = float(std::fs::metadata(&path).expect("file").len()) / float(n as u64);

    let start = Instant::now();
    let store: Store = Store::open(&path).expect("reopen");
    let open = start.elapsed();
    assert_eq!(store.len(), n as u64);
    let index_bytes_per_entry = float(store.stats().expect("stats").index_bytes) / float(n as u64);

    let keys: Vec<EntryKey> = entries.iter().map(oplog_protocol::LogEntry::key).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let ranges: Vec<Range> = (0..QUERIES)
        .map(|_| {
            let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
            Range::new(keys[a.min(b)], Some(keys[a.max(b)]))
        })
        .collect();
    // a session reads one snapshot, as a node does
    let snapshot = store.snapshot();
    let start = Instant::now();
    let mut sink = 0u8;
    for r in &ranges {
        sink ^= snapshot
            .fingerprint(r, &Salt::default())
            .expect("fingerprint")
            .0[0];
    }
    let fingerprint = start.elapsed() / QUERIES;
    // the Negentropy dialect's fingerprint, from the same index (no scan)
    let start = Instant::now();
    for r in &ranges {
        sink ^= snapshot.negentropy_fingerprint(r).expect("negentropy").0[0];
    }
    let negentropy = start.elapsed() / QUERIES;
    let start = Instant::now();
    let mut total = 0u64;
    for r in &ranges {
        total += snapshot.count(r).expect("count");
        total += snapshot
            .key_at(r, 3)
            .expect("key_at")
            .map_or(0, |k| k.hlc.0 & 1);
    }
    let count = start.elapsed() / QUERIES;
    // what a flat scan of the same ranges would cost (iroh-docs' approach), on a sample
    let scan = (n <= 100_000).then(|| {
        let start = Instant::now();
        for r in ranges.iter().take(20) {
            let lo = keys.partition_point(|k| *k < r.start);
            let hi = keys.partition_point(|k| Some(*k) < r.end);
            sink ^= Aggregate::of_keys(&keys[lo..hi])
                .fingerprint(&Salt::default())
                .0[0];
        }
        start.elapsed() / 20
    });
    std::hint::black_box((sink, total));
    Row {
        n,
        insert_per_s,
        open,
        fingerprint,
        negentropy,
        count,
        scan,
        bytes_per_entry,
        index_bytes_per_entry,
    }
}

/// Encoded bytes per batch in `--verified` mode: one ENTRIES frame of a sync.
const FRAME_BYTES: usize = 1 << 20;

/// `entries` cut into consecutive batches of at most [`FRAME_BYTES`] encoded bytes.
fn frames<T: Clone>(entries: &[T], encoded_len: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let len = encoded_len(e);
        if bytes + len > FRAME_BYTES && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += len;
        cur.push(e.clone());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// CPU seconds (user + system) this process used so far, from `/proc/self/stat` (Linux;
/// 0 elsewhere). The machine is shared, so entries per CPU second is the steadier figure.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // fields after the command name (which is in parentheses and may hold spaces)
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    float(ticks) / 100.0
}

/// Entries per second of `Store::insert_verified` and of `Store::insert` in 1 MiB batches,
/// per second of wall time and per CPU second of the process.
/// With `plain` false, only `insert_verified` runs (to profile it alone).
fn verified_mode(max: usize, plain: bool) {
    let sizes: Vec<usize> = [100_000, 1_000_000]
        .into_iter()
        .filter(|n| *n <= max)
        .collect();
    let largest = sizes.last().copied().unwrap_or(max);
    let sizes = if sizes.is_empty() { vec![max] } else { sizes };
    let start = Instant::now();
    let all = entries(largest);
    println!("signed {largest} entries in {:.1?}", start.elapsed());
    let verified: Vec<VerifiedEntry<Op>> = verify_batch(all.clone())
        .into_iter()
        .map(|v| v.expect("signed here, so valid"))
        .collect();
    let total: usize = all.iter().map(|e| e.encode().len()).sum();
    println!(
        "{} B/entry, batches of at most {FRAME_BYTES} B",
        total / all.len().max(1)
    );
    println!(
        "{:>9} {:>8} {:>20} {:>14} {:>12} {:>14} {:>12} {:>14}",
        "entries",
        "batches",
        "insert_verified/s",
        "per CPU s",
        "buffered/s",
        "per CPU s",
        "insert/s",
        "per CPU s"
    );
    for n in sizes {
        let batches = frames(&verified[..n], |e| e.encode().len());
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Store = Store::open(dir.path().join("v.redb")).expect("open");
        let (start, cpu) = (Instant::now(), cpu_seconds());
        for batch in &batches {
            let report = store.insert_verified(batch.clone()).expect("insert");
            assert_eq!(report.applied.len(), batch.len());
        }
        let verified_rate = float(n as u64) / start.elapsed().as_secs_f64();
        let verified_cpu = float(n as u64) / (cpu_seconds() - cpu).max(0.01);
        drop(store);
        let store: Store = Store::open(dir.path().join("b.redb")).expect("open");
        let (start, cpu) = (Instant::now(), cpu_seconds());
        for batch in &batches {
            let report = store
                .insert_verified_buffered(batch.clone())
                .expect("insert");
            assert_eq!(report.applied.len(), batch.len());
        }
        store.persist().expect("persist");
        let buffered_rate = float(n as u64) / start.elapsed().as_secs_f64();
        let buffered_cpu = float(n as u64) / (cpu_seconds() - cpu).max(0.01);
        drop(store);
        if !plain {
            println!(
                "{n:>9} {:>8} {verified_rate:>20.0} {verified_cpu:>14.0} {buffered_rate:>12.0} {buffered_cpu:>14.0} {:>12} {:>14}",
                batches.len(),
                "-",
                "-"
            );
            continue;
        }
        let plain = frames(&all[..n], |e| e.encode().len());
        let store: Store = Store::open(dir.path().join("p.redb")).expect("open");
        let (start, cpu) = (Instant::now(), cpu_seconds());
        for batch in &plain {
            let report = store.insert(batch.clone()).expect("insert");
            assert_eq!(report.applied.len(), batch.len());
        }
        let plain_rate = float(n as u64) / start.elapsed().as_secs_f64();
        let plain_cpu = float(n as u64) / (cpu_seconds() - cpu).max(0.01);
        println!(
            "{n:>9} {:>8} {verified_rate:>20.0} {verified_cpu:>14.0} {buffered_rate:>12.0} {buffered_cpu:>14.0} {plain_rate:>12.0} {plain_cpu:>14.0}",
            batches.len()
        );
    }
}

fn main() {
    let mut max = 1_000_000usize;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--max") {
        max = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("usage: store-bench [--verified [--no-plain]] [--max N]");
                std::process::exit(2)
            });
    }
    if args.iter().any(|a| a == "--verified") {
        verified_mode(max, !args.iter().any(|a| a == "--no-plain"));
        return;
    }
    let sizes: Vec<usize> = [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|n| *n <= max)
        .collect();
    let Some(&largest) = sizes.last() else {
        eprintln!("--max must be at least 1000");
        std::process::exit(2)
    };
    let start = Instant::now();
    let all = entries(largest);
    println!("signed {largest} entries in {:.1?}", start.elapsed());
    println!(
        "{:>9} {:>12} {:>10} {:>14} {:>14} {:>14} {:>14} {:>12} {:>12}",
        "entries",
        "insert/s",
        "open",
        "fingerprint",
        "negentropy fp",
        "count+key_at",
        "flat scan",
        "disk B/ent",
        "index B/ent"
    );
    let mut rows = Vec::new();
    for n in sizes {
        let row = measure(&all, n);
        println!(
            "{:>9} {:>12.0} {:>10.1?} {:>14.1?} {:>14.1?} {:>14.1?} {:>14} {:>12.0} {:>12.0}",
            row.n,
            row.insert_per_s,
            row.open,
            row.fingerprint,
            row.negentropy,
            row.count,
            row.scan.map_or("-".to_string(), |d| format!("{d:.1?}")),
            row.bytes_per_entry,
            row.index_bytes_per_entry
        );
        rows.push(row);
    }
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    let ratio = last.fingerprint.as_secs_f64() / first.fingerprint.as_secs_f64();
    println!(
        "fingerprint time at {} / at {}: {ratio:.2} (target: at most about 4)",
        last.n, first.n
    );
}
