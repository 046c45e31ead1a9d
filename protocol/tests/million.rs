//! Reconciles a million keys in memory and prints what crossed the wire.
//!
//! Asserts only what does not depend on the machine: exact differences, round trips within
//! ceil(log16 n) + 3, and bytes within the budgets `spec/SPEC.md` argues for.

use std::collections::BTreeSet;

use oplog_protocol::testing::transcript::run;
use oplog_protocol::{Config, EntryKey, MemoryStore};
use rand::{Rng, SeedableRng};

const N: usize = 1_000_000;

struct Case {
    name: &'static str,
    diffs: usize,
    newest: bool,
}

#[test]
fn million_keys() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    // A million keys, about 3 ms apart on average (an hour of writes by a busy cluster).
    let mut hlc = 1_780_000_000_000_000_000u64;
    let universe: Vec<EntryKey> = (0..N)
        .map(|_| {
            hlc += rng.gen_range(1..7_200_000);
            let mut hash = [0u8; 32];
            rng.fill(&mut hash[..]);
            EntryKey::new(hlc, hash)
        })
        .collect();
    let cases = [
        Case {
            name: "1 random difference",
            diffs: 1,
            newest: false,
        },
        Case {
            name: "1,000 random differences",
            diffs: 1_000,
            newest: false,
        },
        Case {
            name: "100,000 random differences",
            diffs: 100_000,
            newest: false,
        },
        Case {
            name: "1,000 differences among the newest",
            diffs: 1_000,
            newest: true,
        },
    ];
    println!("n = {N}, default config (branching 16, list threshold 32, prefixes sized by list, salted 8-byte fingerprints)");
    println!(
        "{:<38} {:>12} {:>12} {:>12} {:>9} {:>7} {:>9}",
        "case", "init->resp", "resp->init", "total", "B/diff", "rounds", "messages"
    );
    for case in cases {
        // Differences alternate between the two sides.
        let picked: BTreeSet<usize> = if case.newest {
            (N - case.diffs..N).collect()
        } else {
            let mut s = BTreeSet::new();
            while s.len() < case.diffs {
                s.insert(rng.gen_range(0..N));
            }
            s
        };
        let mut a = MemoryStore::new();
        let mut b = MemoryStore::new();
        let (mut a_only, mut b_only) = (Vec::new(), Vec::new());
        let mut flip = false;
        for (i, k) in universe.iter().enumerate() {
            if picked.contains(&i) {
                flip = !flip;
                if flip {
                    a.insert(*k);
                    a_only.push(*k);
                } else {
                    b.insert(*k);
                    b_only.push(*k);
                }
            } else {
                a.insert(*k);
                b.insert(*k);
            }
        }
        let t = run(&a, &b, Config::default(), Config::default()).unwrap();
        assert_eq!(t.initiator.have, a_only);
        assert_eq!(t.initiator.need, b_only);
        assert_eq!(t.responder.have, b_only);
        assert_eq!(t.responder.need, a_only);
        let (ab, ba) = t.bytes();
        let total = ab + ba;
        println!(
            "{:<38} {:>12} {:>12} {:>12} {:>9} {:>7} {:>9}",
            case.name,
            ab,
            ba,
            total,
            total / case.diffs as u64,
            t.rounds(),
            t.messages.len()
        );
        // ceil(log16(10^6)) = 5
        assert!(
            t.rounds() <= 5 + 3,
            "{}: {} round trips",
            case.name,
            t.rounds()
        );
        if case.diffs == 100_000 {
            // never more than copying every 32-byte id
            assert!(total < (N * 32) as u64, "{}: {total} bytes", case.name);
        }
    }
}
