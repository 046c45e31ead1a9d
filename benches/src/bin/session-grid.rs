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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use oplog_benches::replicas;
use oplog_protocol::session::{Event, Role, Session, SessionConfig, SessionStore};
use oplog_protocol::testing::transcript;
use oplog_protocol::wire::{AncestryAnswer, AncestryRequest};
use oplog_protocol::{
    Config, EntryKey, Hash, Hlc, LogEntry, MemoryStore, ObjectId, Op, SigningKey, StoreError,
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
    millis: u128,
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
    let mut turn = 0;
    while !(sa.is_finished() && sb.is_finished()) {
        let (from, from_side, to, to_side) = if turn % 2 == 0 {
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
                    for e in entries {
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
        millis: t.elapsed().as_millis(),
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
    for (name, d, newest) in [
        ("1 random", 1, false),
        ("1,000 random", 1_000, false),
        ("10% random", n / 10, false),
        ("1 newest", 1, true),
        ("1,000 newest", 1_000, true),
        ("10% newest", n / 10, true),
    ] {
        let (ka, kb) = replicas(&keys, d, newest, 7);
        let neg = transcript::run(
            &ka,
            &kb,
            Config::negentropy(Some(4 << 20)),
            Config::negentropy(Some(4 << 20)),
        )
        .expect("negentropy session");
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
        assert_eq!(r.entries, d as u64, "exactly the difference moved");
        let neg_bytes = n_out + n_in;
        #[allow(clippy::cast_precision_loss)]
        let ratio = r.overhead as f64 / neg_bytes as f64;
        println!(
            "| {name} | {} | {neg_rounds} | {} | {neg_bytes} | {ratio:.2} | {} | {} | {} |",
            r.round_trips, r.overhead, r.entries, r.entry_bytes, r.millis
        );
    }
}
