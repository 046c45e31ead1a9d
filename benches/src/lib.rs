//! Bandwidth and speed benchmarks for oplog-sync, and the data sets they share.
//!
//! Run `cargo run --release -p oplog-benches --bin rbsr-params` to see how the reconciler's
//! branching factor, list threshold and prefix length trade bytes for rounds.

pub mod bandwidth;
pub mod chart;

use oplog_protocol::{EntryKey, MemoryStore};
use rand::{Rng, SeedableRng};

/// `n` keys with random hashes, HLCs about 3.6 ms apart on average (an hour of a busy
/// cluster's writes), deterministic for a seed.
pub fn universe(n: usize, seed: u64) -> Vec<EntryKey> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut hlc = 1_780_000_000_000_000_000u64;
    (0..n)
        .map(|_| {
            hlc += rng.gen_range(1..7_200_000);
            let mut hash = [0u8; 32];
            rng.fill(&mut hash[..]);
            EntryKey::new(hlc, hash)
        })
        .collect()
}

/// Two replicas of `universe` that differ in `diffs` keys (the newest ones if `newest`,
/// otherwise chosen at random), each difference missing from alternating sides.
pub fn replicas(
    universe: &[EntryKey],
    diffs: usize,
    newest: bool,
    seed: u64,
) -> (MemoryStore, MemoryStore) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = universe.len();
    let mut picked = vec![false; n];
    if newest {
        picked[n - diffs.min(n)..]
            .iter_mut()
            .for_each(|p| *p = true);
    } else {
        let mut left = diffs.min(n);
        while left > 0 {
            let i = rng.gen_range(0..n);
            if !picked[i] {
                picked[i] = true;
                left -= 1;
            }
        }
    }
    let (mut a, mut b) = (MemoryStore::new(), MemoryStore::new());
    let mut flip = false;
    for (k, p) in universe.iter().zip(picked) {
        if p {
            flip = !flip;
            if flip {
                a.insert(*k);
            } else {
                b.insert(*k);
            }
        } else {
            a.insert(*k);
            b.insert(*k);
        }
    }
    (a, b)
}
