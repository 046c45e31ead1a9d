//! Whole sync sessions (reconciliation plus the entries) over the README's grid, beside
//! Negentropy on the same sets: round trips until both sides hold the union, and the bytes
//! that were not entries.
//!
//! `cargo run --release -p oplog-benches --bin session-grid [n]` (default n = 1,000,000;
//! `--quick` for n = 100,000). Every entry is a real signed entry; both sessions are checked to
//! end with both sides holding the union.
//!
//! Negentropy's figures are its reconciliation (`Config::negentropy`, 16 buckets, 4 MiB
//! frames) on the same key sets, plus the one round trip it then needs to fetch the entries it
//! learned it lacks (the entries themselves are not counted for either method).
//!
//! Time to converge over a link of round-trip time `rtt` is modelled, not slept: the
//! session's own compute time (both sides, one after the other, as measured here) plus half an
//! `rtt` for every leg of the exchange that carried a frame; Negentropy's is its measured
//! reconciliation time, plus the time `verify_batch` takes on the entries it fetches (oplog's
//! session verifies what it receives, and so must any sync of signed entries), plus `rtt` per
//! round trip, its fetch included. oplog has converged once the last leg that carried
//! entries has arrived; legs after it only close the session. Bandwidth is not modelled (the
//! bytes are in the other columns).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use oplog_benches::replicas;
use oplog_protocol::session::{Event, Role, Session, SessionConfig, SessionStore};
use oplog_protocol::testing::transcript;
use oplog_protocol::wire::{AncestryAnswer, AncestryRequest};
use oplog_protocol::{
    verify_batch, Config, EntryKey, Hash, Hlc, LogEntry, MemoryStore, ObjectId, Op, SigningKey,
    StoreError,
};
use rand::{Rng, SeedableRng};

/// One side: the keys it holds (live) and the shared bytes of every entry of the universe.
struct Side {
    keys: MemoryStore,
    universe: Arc<HashMap<EntryKey, Vec<u8>>>,
}

impl SessionStore<Op> for Side {
    fn load(&self, keys: &[EntryKey], out: &mut Vec<Vec<u8>>) -> Result<(), StoreError> {
        for k in keys {
            out.push(
                self.universe
                    .get(k)
                    .ok_or_else(|| StoreError::new("key outside the universe"))?
                    .clone(),
            );
        }
        Ok(())
    }
    fn fetch_list(&self, _max: usize) -> Result<Vec<Hash>, StoreError> {
        Ok(Vec::new())
    }
    fn haves(&self, _max: usize, _visits: u64) -> Result<Vec<Hash>, StoreError> {
        Ok(Vec::new())
    }
    fn answer_ancestry(
        &self,
        _req: &AncestryRequest,
        _visits: u64,
        _bytes: usize,
    ) -> Result<AncestryAnswer, StoreError> {
        Ok(AncestryAnswer::Entries {
            complete: true,
            entries: Vec::new(),
        })
    }
}

/// `n` signed root entries by 16 authors, stamps about 3.6 ms apart, signed on all cores.
fn universe(n: usize) -> Vec<(EntryKey, Vec<u8>)> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                    let keys: Vec<SigningKey> = (0..16u8)
                        .map(|i| SigningKey::from_bytes(&[i + 1; 32]))
                        .collect();
                    let lo = t * per;
                    let hi = ((t + 1) * per).min(n);
                    (lo..hi)
                        .map(|i| {
                            let hlc = 1_780_000_000_000_000_000u64
                                + i as u64 * 3_600_000
                                + rng.gen_range(0..3_600_000);
                            let op = Op::Put {
                                bucket: "photos".into(),
                                key: format!("2026/11/{i:08}.jpg"),
                                object_id: ObjectId(rng.gen()),
                            };
                            let e = LogEntry::sign(&keys[i % 16], Hlc(hlc), op, vec![])
                                .expect("valid entry");
                            (e.key(), e.encode())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(EntryKey, Vec<u8>)> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect();
        all.sort_unstable_by_key(|(k, _)| *k);
        all
    })
}

struct Run {
    round_trips: u64,
    overhead: u64,
    entry_bytes: u64,
    entries: u64,
    /// Legs (one direction, one turn) up to and including the last that carried entries.
    legs: u64,
    /// The keys of the entries that moved, either way.
    moved: Vec<EntryKey>,
    millis: f64,
}

/// The round-trip times the time to converge is modelled for, in milliseconds.
const RTTS_MS: [f64; 3] = [1.0, 50.0, 200.0];

/// Modelled time to converge: compute plus half a round trip per leg, in seconds.
#[allow(clippy::cast_precision_loss)]
fn converge_s(compute_ms: f64, legs: u64, rtt_ms: f64) -> f64 {
    (compute_ms + legs as f64 * rtt_ms / 2.0) / 1e3
}

/// One session between the two sides, frames passed straight across.
fn session(a: &mut Side, b: &mut Side) -> Run {
    let t = Instant::now();
    let now = Instant::now();
    let mut cfg = SessionConfig::default();
    // the benchmarks' fixed fingerprint salt, so that every run counts the same bytes
    cfg.reconcile.salt = Some(oplog_benches::bandwidth::BENCH_SALT);
    let mut sa =
        Session::<Op, MemoryStore>::new(cfg.clone(), Role::Initiator, a.keys.snapshot(), now)
            .expect("start");
    let mut sb = Session::<Op, MemoryStore>::new(cfg, Role::Responder, b.keys.snapshot(), now)
        .expect("start");
    let mut turn: u64 = 0;
    let mut legs = 0;
    let mut moved = Vec::new();
    while !(sa.is_finished() && sb.is_finished()) {
        let (from, from_side, to, to_side) = if turn.is_multiple_of(2) {
            (&mut sa, &*a, &mut sb, &mut *b)
        } else {
            (&mut sb, &*b, &mut sa, &mut *a)
        };
        while let Some(f) = from.poll_transmit(from_side, now) {
            let len = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
            if to.handle_frame_len(len) {
                to.handle_frame(f[4..].to_vec(), now);
            }
            while let Some(ev) = to.poll_event() {
                if let Event::Apply(entries) = ev {
                    legs = turn + 1;
                    for e in entries {
                        moved.push(e.key());
                        to_side.keys.insert(e.key());
                    }
                }
            }
        }
        turn += 1;
        assert!(turn < 10_000, "session did not finish");
    }
    let (ra, rb) = (sa.report(), sb.report());
    assert!(ra.is_done() && rb.is_done(), "{ra:?} {rb:?}");
    Run {
        round_trips: ra.round_trips(),
        overhead: ra.overhead_bytes(),
        entry_bytes: ra.entry_bytes_sent + ra.entry_bytes_received,
        entries: ra.entries_sent + ra.entries_received,
        legs,
        moved,
        millis: t.elapsed().as_secs_f64() * 1e3,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = if args.iter().any(|a| a == "--quick") {
        100_000
    } else {
        args.iter()
            .find_map(|a| a.parse().ok())
            .unwrap_or(1_000_000)
    };
    let started = Instant::now();
    let all = universe(n);
    let keys: Vec<EntryKey> = all.iter().map(|(k, _)| *k).collect();
    let universe: Arc<HashMap<EntryKey, Vec<u8>>> = Arc::new(all.into_iter().collect());
    eprintln!("{n} signed entries in {:?}", started.elapsed());
    println!("n = {n}; bytes are both directions; overhead = bytes on the wire minus the entries' own bytes");
    println!("| case | oplog round trips | negentropy round trips (+1 fetch) | oplog overhead B | negentropy B | ratio | entries moved | entry B | oplog session ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut times = Vec::new();
    for (name, d, newest) in [
        ("1 random", 1, false),
        ("1,000 random", 1_000, false),
        ("10% random", n / 10, false),
        ("1 newest", 1, true),
        ("1,000 newest", 1_000, true),
        ("10% newest", n / 10, true),
    ] {
        let (ka, kb) = replicas(&keys, d, newest, 7);
        let neg_started = Instant::now();
        let neg = transcript::run(
            &ka,
            &kb,
            Config::negentropy(Some(4 << 20)),
            Config::negentropy(Some(4 << 20)),
        )
        .expect("negentropy session");
        let neg_ms = neg_started.elapsed().as_secs_f64() * 1e3;
        let (n_out, n_in) = neg.bytes();
        let neg_rounds = neg.rounds() as u64 + 1;
        let mut a = Side {
            keys: ka,
            universe: universe.clone(),
        };
        let mut b = Side {
            keys: kb,
            universe: universe.clone(),
        };
        let r = session(&mut a, &mut b);
        assert_eq!(a.keys.len(), n, "initiator holds the union");
        assert_eq!(b.keys.len(), n, "responder holds the union");
        // every entry of the difference moved; a prefix collision in a dense list can make a
        // side send a few entries twice (spec 8.12), which the table's "entries moved" shows
        assert!(r.entries >= d as u64, "every entry of the difference moved");
        // a prefix collision in a dense list can make a side send a few entries twice (spec
        // 8.12): their second copies are counted as overhead, not as entry bytes
        let distinct: BTreeSet<EntryKey> = r.moved.iter().copied().collect();
        assert_eq!(distinct.len(), d, "exactly the difference moved");
        let distinct_bytes: u64 = distinct.iter().map(|k| universe[k].len() as u64).sum();
        let twice = r.entry_bytes.saturating_sub(distinct_bytes);
        if r.entries > d as u64 {
            eprintln!(
                "{name}: {} entries ({twice} B) sent twice (prefix collisions, spec 8.5, 8.12), counted as overhead",
                r.entries - d as u64
            );
        }
        let overhead = r.overhead + twice;
        let neg_bytes = n_out + n_in;
        #[allow(clippy::cast_precision_loss)]
        let ratio = overhead as f64 / neg_bytes as f64;
        println!(
            "| {name} | {} | {neg_rounds} | {overhead} | {neg_bytes} | {ratio:.2} | {} | {} | {:.0} |",
            r.round_trips, r.entries, r.entry_bytes, r.millis
        );
        let fetched: Vec<LogEntry<Op>> = distinct
            .iter()
            .map(|k| LogEntry::decode(&universe[k]).expect("universe entries decode"))
            .collect();
        let verify_started = Instant::now();
        let verified = verify_batch(fetched).into_iter().flatten().count();
        let neg_ms = neg_ms + verify_started.elapsed().as_secs_f64() * 1e3;
        assert_eq!(verified, d, "every fetched entry verifies");
        times.push((name, r.millis, r.legs, neg_ms, neg_rounds));
    }
    println!();
    println!(
        "Modelled time to converge, seconds (compute + half an RTT per leg; oplog / negentropy):"
    );
    println!("| case | legs oplog / negentropy | RTT 1 ms | RTT 50 ms | RTT 200 ms |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, ms, legs, neg_ms, neg_rounds) in times {
        let cells: Vec<String> = RTTS_MS
            .iter()
            .map(|&rtt| {
                format!(
                    "{:.2} / {:.2}",
                    converge_s(ms, legs, rtt),
                    converge_s(neg_ms, 2 * neg_rounds, rtt)
                )
            })
            .collect();
        println!(
            "| {name} | {legs} / {} | {} |",
            2 * neg_rounds,
            cells.join(" | ")
        );
    }
}
