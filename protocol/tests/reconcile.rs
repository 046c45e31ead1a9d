//! Reconciliation between two in-memory stores: exact differences, round bounds, frame limits.

use std::collections::BTreeSet;

use oplog_protocol::testing::transcript::{run, Transcript};
use oplog_protocol::{
    Config, Dialect, EntryKey, Limit, MemoryStore, Message, ReconcileError, Reconciler,
};
use proptest::prelude::*;

fn key(hlc: u64, seed: u64) -> EntryKey {
    EntryKey::new(hlc, *blake3::hash(&seed.to_le_bytes()).as_bytes())
}

/// Checks that both sides learned exactly the set differences.
fn check(a: &BTreeSet<EntryKey>, b: &BTreeSet<EntryKey>, t: &Transcript) {
    let a_only: Vec<EntryKey> = a.difference(b).copied().collect();
    let b_only: Vec<EntryKey> = b.difference(a).copied().collect();
    assert_eq!(t.initiator.have, a_only, "initiator have");
    assert_eq!(t.initiator.need, b_only, "initiator need");
    assert_eq!(t.responder.have, b_only, "responder have");
    assert_eq!(t.responder.need, a_only, "responder need");
}

fn stores(a: &BTreeSet<EntryKey>, b: &BTreeSet<EntryKey>) -> (MemoryStore, MemoryStore) {
    (a.iter().copied().collect(), b.iter().copied().collect())
}

#[test]
fn equal_sets_end_in_one_round_trip() {
    let a: BTreeSet<EntryKey> = (1..=5000).map(|i| key(i * 1000, i)).collect();
    let (sa, sb) = stores(&a, &a);
    let t = run(&sa, &sb, Config::default(), Config::default()).unwrap();
    check(&a, &a, &t);
    assert_eq!(t.messages.len(), 2);
    // the answer to an agreeing split is an empty message: just the tag byte
    assert_eq!(t.messages[1].as_bytes(), &[0x01]);
}

#[test]
fn empty_against_full_and_both_empty() {
    let a: BTreeSet<EntryKey> = (1..=3000).map(|i| key(i, i)).collect();
    let e = BTreeSet::new();
    for (x, y) in [(&a, &e), (&e, &a), (&e, &e)] {
        let (sx, sy) = stores(x, y);
        let t = run(&sx, &sy, Config::default(), Config::default()).unwrap();
        check(x, y, &t);
    }
}

#[test]
fn single_fingerprint_opening() {
    let a: BTreeSet<EntryKey> = (1..=1000).map(|i| key(i, i)).collect();
    let b: BTreeSet<EntryKey> = (1..=1000)
        .filter(|i| i % 7 != 0)
        .map(|i| key(i, i))
        .collect();
    let (sa, sb) = stores(&a, &b);
    let mut cfg = Config::default();
    cfg.initial_split = false;
    let t = run(&sa, &sb, cfg.clone(), cfg.clone()).unwrap();
    check(&a, &b, &t);
    let t = run(&sa, &sa, cfg.clone(), cfg).unwrap();
    assert_eq!(t.messages.len(), 2);
    assert_eq!(
        t.messages[0].len(),
        1 + 16 + 2 + 8,
        "the salt and one fingerprint of everything"
    );
}

#[test]
fn prefix_collisions_are_caught_and_resolved() {
    // One-byte prefixes collide all the time; the fingerprint check must catch every one.
    let a: BTreeSet<EntryKey> = (1..=4000).map(|i| key(i / 3, i)).collect();
    let b: BTreeSet<EntryKey> = (1..=4000)
        .filter(|i| i % 5 != 0)
        .map(|i| key(i / 3, i))
        .chain((5000..5400).map(|i| key(i / 4, i)))
        .collect();
    let (sa, sb) = stores(&a, &b);
    let mut cfg = Config::default();
    cfg.prefix_len = 1;
    let t = run(&sa, &sb, cfg.clone(), cfg).unwrap();
    check(&a, &b, &t);
    let collisions = t.initiator.stats.prefix_collisions + t.responder.stats.prefix_collisions;
    assert!(collisions > 0, "1-byte prefixes should have collided");
}

#[test]
fn frame_limit_is_respected_and_session_ends() {
    let a: BTreeSet<EntryKey> = (1..=20_000).map(|i| key(i, i)).collect();
    let b: BTreeSet<EntryKey> = (1..=20_000)
        .filter(|i| i % 3 != 0)
        .map(|i| key(i, i))
        .chain((1..2000).map(|i| key(i * 10 + 1, i + 1_000_000)))
        .collect();
    let (sa, sb) = stores(&a, &b);
    let mut cfg = Config::default();
    cfg.max_message_bytes = Some(4096);
    let t = run(&sa, &sb, cfg.clone(), cfg).unwrap();
    check(&a, &b, &t);
    assert!(t.messages.iter().all(|m| m.len() <= 4096));
    assert!(t.initiator.stats.carried_over + t.responder.stats.carried_over > 0);
}

/// The round bound from the issue: without a frame limit, round trips never exceed
/// `ceil(log_B(n))` + 3.
fn round_bound(n: usize, b: usize) -> usize {
    let mut levels = 0;
    let mut cap = 1usize;
    while cap < n.max(1) {
        cap = cap.saturating_mul(b);
        levels += 1;
    }
    levels + 3
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Random,
    Clustered,
    Newest,
}

fn arb_sets() -> impl Strategy<Value = (BTreeSet<EntryKey>, BTreeSet<EntryKey>)> {
    (
        prop_oneof![3 => 0usize..3_000, 1 => 0usize..100_000],
        0.0f64..1.0,
        prop_oneof![
            Just(Shape::Random),
            Just(Shape::Clustered),
            Just(Shape::Newest)
        ],
        any::<u64>(),
        0.0f64..1.0,
    )
        .prop_map(|(n, diff, shape, seed, lean)| make_sets(n, diff, shape, seed, lean))
}

/// `n` shared-universe keys; a fraction `diff` of them differ, each missing from A with
/// probability `lean` and from B otherwise.
fn make_sets(
    n: usize,
    diff: f64,
    shape: Shape,
    seed: u64,
    lean: f64,
) -> (BTreeSet<EntryKey>, BTreeSet<EntryKey>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut a = BTreeSet::new();
    let mut b = BTreeSet::new();
    let mut hlc = 1_700_000_000_000_000_000u64;
    let cluster_start = rng.gen_range(0..=n);
    // a fraction (0 to 1) of a test-sized count: non-negative, and exact far below 2^52
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let cluster_len = (n as f64 * diff) as usize;
    for i in 0..n {
        hlc += rng.gen_range(1..5_000_000);
        // a few keys share an HLC, so bounds need hash prefixes too
        let k = key(
            if rng.gen_bool(0.05) { hlc - 1 } else { hlc },
            seed ^ i as u64,
        );
        let differs = match shape {
            Shape::Random => rng.gen_bool(diff),
            Shape::Clustered => (cluster_start..cluster_start + cluster_len).contains(&i),
            Shape::Newest => i >= n - cluster_len.min(n),
        };
        if !differs {
            a.insert(k);
            b.insert(k);
        } else if rng.gen_bool(lean) {
            b.insert(k);
        } else {
            a.insert(k);
        }
    }
    (a, b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn exact_difference_within_round_bound((a, b) in arb_sets(), branching in 2usize..=32, threshold in 1usize..=64, initial_split in any::<bool>()) {
        let (sa, sb) = stores(&a, &b);
        let mut cfg = Config::default();
        cfg.branching = branching;
        cfg.list_threshold = threshold;
        cfg.initial_split = initial_split;
        let t = run(&sa, &sb, cfg.clone(), cfg).unwrap();
        check(&a, &b, &t);
        let n = a.len().max(b.len());
        prop_assert!(t.rounds() <= round_bound(n, branching), "{} rounds for n={} B={}", t.rounds(), n, branching);
    }

    #[test]
    fn any_frame_limit_terminates((a, b) in arb_sets(), limit in prop_oneof![4096usize..20_000, 20_000usize..500_000]) {
        let (sa, sb) = stores(&a, &b);
        let mut cfg = Config::default();
        cfg.max_message_bytes = Some(limit);
        // Termination is the property here. The default budget of 1,024 messages is a bound
        // against hostile peers sized for the default 4 MiB frames; with 4 KiB frames a large
        // difference honestly needs more, as the spec's limits table says.
        cfg.max_messages = 100_000;
        let t = run(&sa, &sb, cfg.clone(), cfg).unwrap();
        check(&a, &b, &t);
        prop_assert!(t.messages.iter().all(|m| m.len() <= limit));
    }
}

#[test]
fn large_sets_default_config() {
    for (n, diff, shape) in [
        (100_000usize, 0.0, Shape::Random),
        (100_000, 0.001, Shape::Random),
        (100_000, 0.5, Shape::Random),
        (100_000, 1.0, Shape::Random),
        (100_000, 0.01, Shape::Clustered),
        (100_000, 0.01, Shape::Newest),
    ] {
        let (a, b) = make_sets(n, diff, shape, 7, 0.5);
        let (sa, sb) = stores(&a, &b);
        let t = run(&sa, &sb, Config::default(), Config::default()).unwrap();
        check(&a, &b, &t);
        assert!(
            t.rounds() <= round_bound(n, 16),
            "{shape:?} {diff}: {} rounds",
            t.rounds()
        );
    }
}

/// Bounds near the top of the key space: the reply's merged Skip must still encode (found
/// by the vectors work: 2^64 - 1 overflowed the bound encoding, which is why it is no longer
/// a valid stamp).
#[test]
fn bounds_at_the_top_of_the_key_space() {
    use oplog_protocol::wire::message::{encode_opening, Part, Payload};
    use oplog_protocol::MAX_HLC;
    use oplog_protocol::{Aggregate, Message, RangeStore, Reconciler, Salt};

    let salt = Salt([5; 16]);
    let store: MemoryStore = (1..=50).map(|i| key(i * 1000, i)).collect();
    let whole = store
        .fingerprint(&oplog_protocol::Range::FULL, &salt)
        .unwrap();
    let top = EntryKey::new(MAX_HLC, [0x80; 32]);
    let parts = vec![
        Part {
            upper: Some(EntryKey::new(1, [0; 32])),
            payload: Payload::Fingerprint(Aggregate::EMPTY.fingerprint(&salt)),
        },
        Part {
            upper: Some(top),
            payload: Payload::Fingerprint(whole),
        },
        Part {
            upper: None,
            payload: Payload::Fingerprint(Aggregate::EMPTY.fingerprint(&salt)),
        },
    ];
    let mut r = Reconciler::new(Config::default()).unwrap();
    let step = r
        .handle(
            &store,
            &Message::from_bytes(encode_opening(&salt, &parts).unwrap()),
        )
        .unwrap();
    let reply = step.reply.expect("fingerprints ask for an answer");
    reply.parts().expect("the reply decodes");

    // One step further is not a valid stamp: the decoder refuses it, nothing panics.
    let mut bytes = vec![0x02];
    bytes.extend([5u8; 16]);
    bytes.extend([0x01, 0x02]);
    bytes.extend([0u8; 8]);
    bytes.push(0x01);
    bytes.extend([0xff; 9]);
    bytes.push(0x01);
    bytes.extend([0u8; 8]);
    let mut r = Reconciler::new(Config::default()).unwrap();
    assert!(matches!(
        r.handle(&store, &Message::from_bytes(bytes)),
        Err(ReconcileError::Decode(_))
    ));
}

/// A session between `a` and `b` in which the message at index `at` is replaced by
/// `corrupt(message)` before delivery. Returns the error that ended it, if any; checks on the
/// way that every message sent fits the sender's limits and decodes.
// `a`, `b`: the two sets; `r`, `s`: the receiver of a message and its set
#[allow(clippy::many_single_char_names)]
fn corrupted_session(
    a: &MemoryStore,
    b: &MemoryStore,
    cfg: &Config,
    at: usize,
    corrupt: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<(), ReconcileError> {
    let negentropy = cfg.dialect == Dialect::NegentropyV1;
    let mut ra = Reconciler::new(cfg.clone()).unwrap();
    let mut rb = Reconciler::new(cfg.clone()).unwrap();
    let mut next = Some(ra.initiate(a)?);
    let mut i = 0;
    while let Some(msg) = next.take() {
        if !negentropy {
            let decoded = if i == 0 {
                msg.opening_parts().map(|(_, p)| p)
            } else {
                msg.parts()
            };
            assert!(decoded.is_ok(), "message {i} does not decode");
        }
        assert!(msg.len() <= cfg.max_message_bytes.unwrap_or(usize::MAX));
        let msg = if i == at {
            Message::from_bytes(corrupt(msg.as_bytes()))
        } else {
            msg
        };
        let (r, s) = if i % 2 == 0 {
            (&mut rb, b)
        } else {
            (&mut ra, a)
        };
        next = r.handle(s, &msg)?.reply;
        i += 1;
        assert!(i <= 10_000, "no limit ended the session");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any corruption of any message of a live session, in either dialect and under tight
    /// limits: no panic, never a `Misuse` error, and every message sent decodes and fits.
    #[test]
    fn corrupted_messages_mid_session_never_panic(
        (a, b) in arb_sets(),
        at in 0usize..8,
        pos in any::<prop::sample::Index>(),
        how in 0u8..4,
        byte in any::<u8>(),
        negentropy in any::<bool>(),
        small in any::<bool>(),
    ) {
        let (sa, sb) = stores(&a, &b);
        let mut cfg = if negentropy { Config::negentropy(Some(4096)) } else { Config::default() };
        if small {
            cfg.max_message_bytes = Some(4096);
            cfg.max_parts = 64;
            cfg.max_messages = 400;
            cfg.max_session_memory = 1 << 20;
        }
        let corrupt = |m: &[u8]| -> Vec<u8> {
            let mut m = m.to_vec();
            let i = pos.index(m.len().max(1));
            match how {
                0 if !m.is_empty() => m[i] ^= byte | 1,
                1 => m.truncate(i),
                2 => m.insert(i.min(m.len()), byte),
                _ => m.extend(std::iter::repeat_n(byte, 64)),
            }
            m
        };
        match corrupted_session(&sa, &sb, &cfg, at, corrupt) {
            Err(ReconcileError::Misuse(e)) => prop_assert!(false, "peer-caused Misuse: {e}"),
            Err(ReconcileError::Config(e)) => prop_assert!(false, "config error: {e}"),
            _ => {}
        }
    }

    /// Honest sessions under tight part and memory limits either find the exact difference or
    /// end with a `Limit` error; messages never exceed the size or part limits.
    #[test]
    fn honest_sessions_respect_tight_limits((a, b) in arb_sets(), parts in 64usize..200, memory in 1usize..4) {
        let (sa, sb) = stores(&a, &b);
        let mut cfg = Config::default();
        cfg.max_message_bytes = Some(4096);
        cfg.max_parts = parts;
        cfg.max_session_memory = memory << 20;
        cfg.max_messages = 100_000;
        match run(&sa, &sb, cfg.clone(), cfg) {
            Ok(t) => {
                check(&a, &b, &t);
                for (i, m) in t.messages.iter().enumerate() {
                    prop_assert!(m.len() <= 4096);
                    let decoded = if i == 0 { m.opening_parts().unwrap().1 } else { m.parts().unwrap() };
                    prop_assert!(decoded.len() <= parts);
                }
            }
            Err(ReconcileError::Limit(Limit::SessionMemory { .. })) => {}
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}

/// Spec 8.3: the initiator's first message carries the session's salt after its tag, and
/// every session draws a fresh one, so the same sets give different fingerprints in two
/// sessions; a responder reads it, and a first message without one does not decode.
#[test]
fn the_opening_message_carries_a_fresh_salt() {
    use oplog_protocol::wire::message::{decode_opening, encode};
    use oplog_protocol::{Message, ReconcileError, Reconciler};

    let a: MemoryStore = (1..=100).map(|i| key(i * 10, i)).collect();
    let b: MemoryStore = (1..=100)
        .filter(|i| i % 7 != 0)
        .map(|i| key(i * 10, i))
        .collect();
    let first = Reconciler::new(Config::default())
        .unwrap()
        .initiate(&a)
        .unwrap();
    let (salt, parts) = decode_opening(first.as_bytes()).unwrap();
    let again = Reconciler::new(Config::default())
        .unwrap()
        .initiate(&a)
        .unwrap();
    let (salt2, parts2) = decode_opening(again.as_bytes()).unwrap();
    assert_ne!(salt, salt2, "each session draws its own salt");
    assert_ne!(parts, parts2, "so its fingerprints differ");
    // the responder keys its answer by the initiator's salt: the range it lists is the one
    // whose fingerprint differs under that salt, and the session ends with the difference
    let t = run(&a, &b, Config::default(), Config::default()).unwrap();
    assert_eq!(t.responder.need.len(), 14);
    // the same opening without its salt: the parts' bytes are read as a salt, and what is
    // left is not a message
    let plain = Message::from_bytes(encode(&parts).unwrap());
    let mut rb = Reconciler::new(Config::default()).unwrap();
    assert!(matches!(
        rb.handle(&b, &plain),
        Err(ReconcileError::Decode(_))
    ));
    // a truncated salt is a decode error
    assert!(decode_opening(&first.as_bytes()[..10]).is_err());
}

/// Dense listing (spec 8.4): when most fingerprints differ, ranges of up to 256 keys are
/// listed rather than split again, which saves a round trip and bytes; with few differences
/// the sessions are identical with it on or off.
#[test]
fn dense_listing_pays_when_most_ranges_differ_and_only_then() {
    let all: Vec<EntryKey> = (1..=60_000u64).map(|i| key(i * 3_600_000, i)).collect();
    let sides = |every: u64| {
        let a: BTreeSet<EntryKey> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| !(*i as u64).is_multiple_of(every))
            .map(|(_, k)| *k)
            .collect();
        let b: BTreeSet<EntryKey> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 % every != 1)
            .map(|(_, k)| *k)
            .collect();
        (a, b)
    };
    // a fixed salt, so that the sessions with and without dense listing can be compared
    let mut on = Config::default();
    on.salt = Some(oplog_protocol::Salt([7; 16]));
    let mut off = on.clone();
    off.dense_lists = false;
    // every 10th key differs (5% each way): every range differs
    let (a, b) = sides(20);
    let (sa, sb) = stores(&a, &b);
    let dense = run(&sa, &sb, on.clone(), on.clone()).unwrap();
    let sparse = run(&sa, &sb, off.clone(), off.clone()).unwrap();
    check(&a, &b, &dense);
    check(&a, &b, &sparse);
    let total = |t: &Transcript| t.bytes().0 + t.bytes().1;
    assert!(
        dense.rounds() < sparse.rounds(),
        "{} vs {}",
        dense.rounds(),
        sparse.rounds()
    );
    assert!(
        total(&dense) < total(&sparse),
        "{} vs {}",
        total(&dense),
        total(&sparse)
    );
    // a handful of differences: identical messages
    let (a, b) = sides(6_000);
    let (sa, sb) = stores(&a, &b);
    let dense = run(&sa, &sb, on.clone(), on).unwrap();
    let sparse = run(&sa, &sb, off.clone(), off).unwrap();
    check(&a, &b, &dense);
    assert_eq!(dense.messages, sparse.messages);
    // below 16 KiB messages long lists are off: every answer must fit 4 KiB
    let mut small = Config::default();
    small.max_message_bytes = Some(4096);
    assert_eq!(small.list_max(), small.list_threshold);
    let (a, b) = sides(20);
    let (sa, sb) = stores(&a, &b);
    let t = run(&sa, &sb, small.clone(), small).unwrap();
    check(&a, &b, &t);
    assert!(t.messages.iter().all(|m| m.len() <= 4096));
}

/// Inline Keys answers leave out the bytes of the prefixes the resolver listed against
/// (spec 8.3); the resolver fills them in and only then can check the keys' order, and it
/// refuses a Keys part that leaves out another number of bytes.
#[test]
fn keys_without_listed_prefixes_are_filled_in_and_checked() {
    use oplog_protocol::wire::message::{decode, encode, Payload};
    let shared: Vec<EntryKey> = (0..10).map(|i| key(i, i)).collect();
    // two keys only the responder (the lister) holds, the lower one's hash above the other's,
    // so giving both the lower HLC puts them out of order once their prefixes are filled in
    let seed = (1000u64..2000)
        .find(|s| key(100, *s).hash.0[..3] > key(101, s + 1).hash.0[..3])
        .unwrap();
    let (low, high) = (key(100, seed), key(101, seed + 1));
    let a: BTreeSet<EntryKey> = shared.iter().copied().collect();
    let mut b = a.clone();
    b.extend([low, high]);
    let (sa, sb) = stores(&a, &b);
    let cfg = Config::default();
    let tamper = |f: fn(&mut u8, &mut Vec<EntryKey>)| {
        move |bytes: &[u8]| {
            let mut parts = decode(bytes).unwrap();
            let Payload::Keys { omitted, keys } = &mut parts[0].payload else {
                panic!("message 3 is not the Keys answer: {parts:?}")
            };
            f(omitted, keys);
            encode(&parts).unwrap()
        }
    };
    // honest: 3 prefix bytes left out of each of the 2 keys, and the session ends exactly
    corrupted_session(
        &sa,
        &sb,
        &cfg,
        3,
        tamper(|o, k| {
            assert_eq!((*o, k.len()), (3, 2));
            assert!(k.iter().all(|k| k.hash.0[..3] == [0; 3]));
        }),
    )
    .unwrap();
    let honest = run(&sa, &sb, cfg.clone(), cfg.clone()).unwrap();
    check(&a, &b, &honest);
    // the second key given the first one's HLC: ascending on the wire, not once filled in
    let err = corrupted_session(&sa, &sb, &cfg, 3, tamper(|_, k| k[1].hlc = k[0].hlc));
    assert!(
        matches!(&err, Err(ReconcileError::Protocol(m)) if m.contains("not ascending")),
        "{err:?}"
    );
    // whole keys where the listed prefixes' length is due
    let err = corrupted_session(&sa, &sb, &cfg, 3, tamper(|o, _| *o = 0));
    assert!(
        matches!(&err, Err(ReconcileError::Protocol(m)) if m.contains("leave out 0")),
        "{err:?}"
    );
}
