//! The carried key form (spec 8.12): two reconcilers that pass each reply's carried key list
//! beside it find exactly the differences the inline form finds, send every key they hold and
//! the peer lacks in a carried list, save the inline key bytes, and refuse every malformed
//! carried list with a typed error.

use std::collections::BTreeSet;

use oplog_protocol::testing::transcript::{run, Transcript};
use oplog_protocol::wire::message::{
    decode, decode_carried, decode_opening, encode, encode_carried, parts_carried_opening,
    DecodeError, Part, Payload,
};
use oplog_protocol::{
    Config, EntryKey, KeyForm, Limit, MemoryStore, Message, ReconcileError, Reconciler, Salt,
    MIN_CARRIED_KEYS, SALT_LEN,
};
use proptest::prelude::*;

fn key(hlc: u64, seed: u64) -> EntryKey {
    EntryKey::new(hlc, *blake3::hash(&seed.to_le_bytes()).as_bytes())
}

/// `encoded`, message `index` of a session re-encoded by `encode` or `encode_carried`, as
/// sent: the session's opening (index 0) has the salt after its tag (spec 8.3).
fn as_sent(index: usize, salt: &Salt, encoded: Vec<u8>) -> Vec<u8> {
    if index == 0 {
        let mut out = vec![encoded[0]];
        out.extend_from_slice(&salt.0);
        out.extend_from_slice(&encoded[1..]);
        out
    } else {
        encoded
    }
}

/// Message `index` of a session decoded in the carried form.
fn decode_nth(index: usize, bytes: &[u8], list: &[EntryKey]) -> Result<Vec<Part>, DecodeError> {
    if index == 0 {
        parts_carried_opening(bytes, list)?.collect()
    } else {
        decode_carried(bytes, list)
    }
}

/// The salt of the sessions whose two forms are compared byte for byte.
const SALT: Salt = Salt([0x5a; SALT_LEN]);

fn carried(mut c: Config) -> Config {
    c.key_form = KeyForm::Carried;
    c
}

/// One side's view of a carried-form session.
#[derive(Default, Debug)]
struct Side {
    have: Vec<EntryKey>,
    need: Vec<EntryKey>,
    /// Every key this side put in a carried list, in the order sent.
    sent_keys: Vec<EntryKey>,
    prefix_collisions: u64,
    carried_over: u64,
}

/// A carried-form session: every message with the carried list that travelled beside it.
#[derive(Debug)]
struct CarriedTranscript {
    messages: Vec<(Message, Vec<EntryKey>)>,
    initiator: Side,
    responder: Side,
}

/// Runs a carried-form session, passing each reply's `step.carried` to the next
/// `handle_carried`, as the session layer does with the entries it sends before a message.
fn run_carried<S: oplog_protocol::RangeStore>(
    a: &S,
    b: &S,
    config_a: Config,
    config_b: Config,
) -> Result<CarriedTranscript, ReconcileError> {
    let mut ra = Reconciler::new(config_a)?;
    let mut rb = Reconciler::new(config_b)?;
    let (mut sa, mut sb) = (Side::default(), Side::default());
    let first = ra.initiate(a)?;
    let mut messages = vec![(first.clone(), Vec::new())];
    let mut next = Some((first, Vec::new()));
    let mut to_b = true;
    while let Some((msg, list)) = next.take() {
        assert!(messages.len() < 10_000, "session does not end");
        let (r, store, side) = if to_b {
            (&mut rb, b, &mut sb)
        } else {
            (&mut ra, a, &mut sa)
        };
        let step = r.handle_carried(store, &msg, &list)?;
        side.have.extend(step.have);
        side.need.extend(step.need);
        if let Some(reply) = step.reply {
            side.sent_keys.extend(step.carried.iter().copied());
            messages.push((reply.clone(), step.carried.clone()));
            next = Some((reply, step.carried));
        } else {
            assert!(step.carried.is_empty(), "carried keys without a reply");
        }
        to_b = !to_b;
    }
    assert!(ra.is_done() && rb.is_done(), "a side is still waiting");
    for (side, r) in [(&mut sa, &ra), (&mut sb, &rb)] {
        // the carried form keeps no record of reported keys (spec 8.12): a key may come twice
        side.have.sort_unstable();
        side.have.dedup();
        side.need.sort_unstable();
        side.need.dedup();
        side.prefix_collisions = r.stats().prefix_collisions;
        side.carried_over = r.stats().carried_over;
    }
    Ok(CarriedTranscript {
        messages,
        initiator: sa,
        responder: sb,
    })
}

/// Both forms find exactly the set differences; in carried form each side's carried lists
/// hold every key it has and the peer lacks (the entries a session sends) and, unless a prefix
/// collision happened, nothing else; every list is within the limit and matches its message.
fn check_both_forms(
    a: &BTreeSet<EntryKey>,
    b: &BTreeSet<EntryKey>,
    config: &Config,
) -> (Transcript, CarriedTranscript) {
    let a_only: Vec<EntryKey> = a.difference(b).copied().collect();
    let b_only: Vec<EntryKey> = b.difference(a).copied().collect();
    let sa: MemoryStore = a.iter().copied().collect();
    let sb: MemoryStore = b.iter().copied().collect();
    // one salt for both sessions, so that their messages can be compared byte for byte
    let mut config = config.clone();
    config.salt = Some(SALT);
    let config = &config;
    let inline = run(&sa, &sb, config.clone(), config.clone()).unwrap();
    let c = run_carried(&sa, &sb, carried(config.clone()), carried(config.clone())).unwrap();
    assert_eq!(inline.initiator.have, a_only, "inline initiator have");
    assert_eq!(inline.responder.need, a_only, "inline responder need");
    assert_eq!(c.initiator.have, inline.initiator.have, "initiator have");
    assert_eq!(c.initiator.need, inline.initiator.need, "initiator need");
    assert_eq!(c.responder.have, inline.responder.have, "responder have");
    assert_eq!(c.responder.need, inline.responder.need, "responder need");
    assert_eq!(c.responder.have, b_only);
    for (side, have) in [(&c.initiator, &a_only), (&c.responder, &b_only)] {
        let sent: BTreeSet<EntryKey> = side.sent_keys.iter().copied().collect();
        let have: BTreeSet<EntryKey> = have.iter().copied().collect();
        let extra: Vec<_> = sent.difference(&have).collect();
        let missing: Vec<_> = have.difference(&sent).collect();
        // A prefix collision can make a resolver carry a key the lister holds (the key the
        // colliding prefix did not match); the lister then falls back to a full list. Without
        // one, exactly the keys the peer lacks are carried.
        // A cut reply (8.8) can also drop the lister's answer to such a Resolve before the
        // collision is noticed; the range then starts over and is never counted.
        let collisions = c.initiator.prefix_collisions + c.responder.prefix_collisions;
        let cuts = c.initiator.carried_over + c.responder.carried_over;
        assert!(
            (extra.is_empty() || collisions > 0 || cuts > 0) && missing.is_empty(),
            "carried keys differ from the keys the peer lacks: {} extra, {} missing (collisions {}, cuts {})",
            extra.len(), missing.len(), side.prefix_collisions, side.carried_over
        );
    }
    for (i, (msg, list)) in c.messages.iter().enumerate() {
        assert!(list.len() <= config.max_carried_keys);
        if let Some(limit) = config.max_message_bytes {
            assert!(msg.len() <= limit);
        }
        // the list is strictly ascending and is exactly what the message's parts take
        assert!(list.windows(2).all(|w| w[0] < w[1]));
        let parts = decode_nth(i, msg.as_bytes(), list).unwrap();
        let taken: Vec<EntryKey> = parts.iter().flat_map(answer_keys).collect();
        assert_eq!(&taken, list);
    }
    (inline, c)
}

/// The keys of a Resolve or Keys part (the ones the carried form moves out of the message).
fn answer_keys(p: &Part) -> Vec<EntryKey> {
    match &p.payload {
        Payload::Resolve { keys, .. } | Payload::Keys { keys, .. } => keys.clone(),
        _ => Vec::new(),
    }
}

fn varint_len(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).max(1).div_ceil(7)
}

/// Bytes the inline form spends on the keys of Resolve and Keys parts, besides their count:
/// one varint HLC delta (from the part's lower bound, then the previous key) and 32 hash
/// bytes per key (spec 8.3).
fn inline_key_bytes(parts: &[Part]) -> usize {
    let mut lower = EntryKey::MIN;
    let mut total = 0;
    for p in parts {
        let mut prev = lower.hlc.0;
        // inline, a Keys part leaves out the listed prefix bytes and writes their number
        let omitted = match p.payload {
            Payload::Keys { omitted, .. } => {
                total += 1;
                usize::from(omitted)
            }
            _ => 0,
        };
        for k in answer_keys(p) {
            total += varint_len(k.hlc.0 - prev) + 32 - omitted;
            prev = k.hlc.0;
        }
        if let Some(u) = p.upper {
            lower = u;
        }
    }
    total
}

/// Builds two sets from `n` shared keys and a difference pattern: 0 random, 1 the newest,
/// 2 clustered runs.
fn sets(n: u64, da: u64, db: u64, kind: u8, seed: u64) -> (BTreeSet<EntryKey>, BTreeSet<EntryKey>) {
    let total = n + da + db;
    let mut set_a = BTreeSet::new();
    let mut set_b = BTreeSet::new();
    // which side each of the `total` keys (in key order) is on: 0 both, 1 a only, 2 b only
    let mut owner = vec![0u8; usize::try_from(total).unwrap()];
    let pick = |i: u64| {
        let h = blake3::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat());
        u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap())
    };
    match kind {
        0 => {
            let (mut left_a, mut left_b) = (da, db);
            for i in 0..100_000 {
                if left_a + left_b == 0 {
                    break;
                }
                let slot = usize::try_from(pick(i) % total).unwrap();
                if owner[slot] == 0 {
                    owner[slot] = if left_a > 0 { 1 } else { 2 };
                    if left_a > 0 {
                        left_a -= 1;
                    } else {
                        left_b -= 1;
                    }
                }
            }
            // unlikely: fill the first free slots with what is left
            for o in owner.iter_mut().filter(|o| **o == 0) {
                if left_a > 0 {
                    *o = 1;
                    left_a -= 1;
                } else if left_b > 0 {
                    *o = 2;
                    left_b -= 1;
                }
            }
        }
        1 => {
            // the newest keys, alternating between the sides while both have some left
            let m = da.min(db);
            for j in 0..da + db {
                let slot = usize::try_from(total - 1 - j).unwrap();
                owner[slot] = if j < 2 * m {
                    if j % 2 == 0 {
                        1
                    } else {
                        2
                    }
                } else if da > db {
                    1
                } else {
                    2
                };
            }
        }
        _ => {
            let start_a = seed % total.max(1);
            for i in 0..da {
                owner[usize::try_from((start_a + i) % total).unwrap()] = 1;
            }
            let mut placed = 0;
            let mut i = (start_a + da + total / 3) % total.max(1);
            while placed < db {
                let slot = usize::try_from(i % total).unwrap();
                if owner[slot] == 0 {
                    owner[slot] = 2;
                    placed += 1;
                }
                i += 1;
            }
        }
    }
    for (slot, o) in (1u64..).zip(&owner) {
        let k = key(slot * 3 + (slot % 5), slot ^ seed.rotate_left(17));
        match o {
            0 => {
                set_a.insert(k);
                set_b.insert(k);
            }
            1 => {
                set_a.insert(k);
            }
            _ => {
                set_b.insert(k);
            }
        }
    }
    (set_a, set_b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn carried_form_finds_what_inline_finds(
        n in 0u64..3000,
        da in 0u64..120,
        db in 0u64..120,
        kind in 0u8..3,
        seed in any::<u64>(),
        initial_split in any::<bool>(),
    ) {
        let (a, b) = sets(n, da, db, kind, seed);
        let mut config = Config::default();
        config.initial_split = initial_split;
        check_both_forms(&a, &b, &config);
    }

    #[test]
    fn carried_form_under_tight_limits(
        n in 0u64..4000,
        da in 0u64..700,
        db in 0u64..700,
        kind in 0u8..3,
        seed in any::<u64>(),
        prefix_len in 1u8..5,
    ) {
        let (a, b) = sets(n, da, db, kind, seed);
        let mut config = Config::default();
        config.max_message_bytes = Some(4096);
        config.max_carried_keys = MIN_CARRIED_KEYS;
        config.prefix_len = prefix_len;
        check_both_forms(&a, &b, &config);
    }
}

#[test]
fn full_list_fallback_is_answered_with_keys() {
    // One-byte prefixes collide all the time, so the FullList path runs; in carried form the
    // lister's answer to the resolver's Resolve must be Keys (the resolver knows the keys but
    // not their entries) and the resolver must accept it.
    let (a, b) = sets(4000, 300, 300, 0, 7);
    let mut config = Config::default();
    config.prefix_len = 1;
    let (inline, c) = check_both_forms(&a, &b, &config);
    let collisions = c.initiator.prefix_collisions + c.responder.prefix_collisions;
    assert!(
        collisions > 0,
        "no prefix collision: the FullList path did not run"
    );
    assert_eq!(
        collisions,
        inline.initiator.stats.prefix_collisions + inline.responder.stats.prefix_collisions
    );
    // Every FullList is followed, in the message after next (the lister's answer to the
    // resolver's Resolve), by Keys for the same range when the resolver lacked listed keys.
    let mut keys_after_full = 0;
    for (i, (msg, list)) in c.messages.iter().enumerate() {
        let parts = decode_nth(i, msg.as_bytes(), list).unwrap();
        let mut lower = EntryKey::MIN;
        for p in &parts {
            if let Payload::FullList(listed) = &p.payload {
                let holder = if i % 2 == 0 { &b } else { &a };
                let lacked = listed.iter().filter(|k| !holder.contains(k)).count();
                let Some((answer, answer_list)) = c.messages.get(i + 2) else {
                    continue;
                };
                let answer = answer.parts_carried(answer_list).unwrap();
                let found = find_part(&answer, lower, p.upper);
                if lacked > 0 && c.initiator.carried_over + c.responder.carried_over == 0 {
                    assert!(
                        matches!(found, Some(Payload::Keys { keys: k, .. }) if k.len() == lacked),
                        "FullList answered by {found:?}"
                    );
                    keys_after_full += 1;
                }
            }
            lower = p.upper.unwrap_or(lower);
        }
    }
    assert!(keys_after_full > 0, "no FullList with keys lacked");
}

/// The payload of the part covering exactly `[lower, upper)`, if there is one.
fn find_part(parts: &[Part], lower: EntryKey, upper: Option<EntryKey>) -> Option<&Payload> {
    let mut l = EntryKey::MIN;
    for p in parts {
        if l == lower && p.upper == upper {
            return Some(&p.payload);
        }
        l = p.upper.unwrap_or(l);
    }
    None
}

#[test]
fn limits_cut_replies_and_everything_is_still_found() {
    let (a, b) = sets(3000, 900, 900, 0, 11);
    let cuts = |c: &CarriedTranscript| c.initiator.carried_over + c.responder.carried_over;
    // only max_carried_keys cuts (no byte limit)
    let mut config = Config::default();
    config.max_message_bytes = None;
    config.max_carried_keys = MIN_CARRIED_KEYS;
    let (_, c) = check_both_forms(&a, &b, &config);
    assert!(cuts(&c) > 0, "no cut at the carried-key limit");
    assert!(c
        .messages
        .iter()
        .any(|(_, l)| l.len() > MIN_CARRIED_KEYS / 2));
    // only the byte limit cuts
    let mut config = Config::default();
    config.max_message_bytes = Some(4096);
    let (_, c) = check_both_forms(&a, &b, &config);
    assert!(cuts(&c) > 0, "no cut at the byte limit");
    // both
    config.max_carried_keys = MIN_CARRIED_KEYS;
    let (_, c) = check_both_forms(&a, &b, &config);
    assert!(cuts(&c) > 0, "no cut at both limits");
}

#[test]
fn carried_form_saves_the_inline_key_bytes() {
    for (kind, seed) in [(0, 1), (1, 2), (2, 3)] {
        let (a, b) = sets(5000, 400, 250, kind, seed);
        let (inline, c) = check_both_forms(&a, &b, &Config::default());
        assert_eq!(
            c.initiator.prefix_collisions + c.responder.prefix_collisions,
            0
        );
        assert_eq!(c.initiator.carried_over + c.responder.carried_over, 0);
        // Without collisions or cuts both forms send the same parts: the carried session,
        // re-encoded inline, is the inline session byte for byte.
        assert_eq!(c.messages.len(), inline.messages.len());
        let (mut carried_bytes, mut inline_bytes, mut key_bytes, mut keys) = (0, 0, 0, 0);
        for (i, ((msg, list), inline_msg)) in c.messages.iter().zip(&inline.messages).enumerate() {
            let parts = decode_nth(i, msg.as_bytes(), list).unwrap();
            // the same parts, but Keys leave out the bytes of the prefixes listed (inline)
            let inline_parts = if i == 0 {
                decode_opening(inline_msg.as_bytes()).unwrap().1
            } else {
                decode(inline_msg.as_bytes()).unwrap()
            };
            let mut as_inline = parts.clone();
            for (p, q) in as_inline.iter_mut().zip(&inline_parts) {
                if let (
                    Payload::Keys { omitted, keys },
                    Payload::Keys {
                        omitted: o,
                        keys: short,
                    },
                ) = (&mut p.payload, &q.payload)
                {
                    *omitted = *o;
                    let o = usize::from(*o);
                    assert!(keys
                        .iter()
                        .zip(short)
                        .all(|(k, s)| k.hash.0[o..] == s.hash.0[o..] && k.hlc == s.hlc));
                }
            }
            assert_eq!(
                as_sent(i, &SALT, encode(&as_inline).unwrap()),
                inline_msg.as_bytes()
            );
            let (bytes, again) = encode_carried(&parts).unwrap();
            assert_eq!(
                (as_sent(i, &SALT, bytes), again),
                (msg.as_bytes().to_vec(), list.clone())
            );
            carried_bytes += msg.len();
            inline_bytes += inline_msg.len();
            key_bytes += inline_key_bytes(&as_inline);
            keys += list.len();
        }
        // no sent key is a duplicate
        let sent = c.initiator.sent_keys.len() + c.responder.sent_keys.len();
        assert_eq!(sent, keys);
        assert_eq!(keys, a.symmetric_difference(&b).count());
        // exactly the keys' inline bytes are saved (the count varints stay), at least 30 per
        // key (Keys leave out 2 or 3 prefix bytes, each of their keys costs at least 30)
        assert_eq!(inline_bytes - carried_bytes, key_bytes);
        assert!(key_bytes >= 30 * keys, "{key_bytes} < 30 × {keys}");
        eprintln!(
            "pattern {kind}: {keys} keys carried, inline {inline_bytes} B, carried {carried_bytes} B, saved {key_bytes} B"
        );
        let (ia, ib) = inline.bytes();
        assert_eq!(ia + ib, inline_bytes as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// hostile carried lists

fn k(hlc: u64, seed: u64) -> EntryKey {
    key(hlc, seed)
}

/// A message with a Resolve part over `[MIN, 100)` carrying two keys and a Keys part over
/// `[100, ∞)` carrying two, with its carried list.
fn sample() -> (Message, Vec<EntryKey>) {
    let parts = vec![
        Part {
            upper: Some(EntryKey::new(100, [0; 32])),
            payload: Payload::Resolve {
                missing: vec![1],
                keys: vec![k(10, 1), k(20, 2)],
            },
        },
        Part {
            upper: None,
            payload: Payload::Keys {
                omitted: 0,
                keys: vec![k(150, 3), k(160, 4)],
            },
        },
    ];
    let (bytes, list) = encode_carried(&parts).unwrap();
    assert_eq!(list, vec![k(10, 1), k(20, 2), k(150, 3), k(160, 4)]);
    assert_eq!(decode_carried(&bytes, &list).unwrap(), parts);
    // sent to a fresh responder: the session's opening, with the salt after the tag
    (Message::from_bytes(as_sent(0, &SALT, bytes)), list)
}

fn responder() -> Reconciler {
    Reconciler::new(carried(Config::default())).unwrap()
}

fn decode_error(r: Result<oplog_protocol::Step, ReconcileError>) -> DecodeError {
    match r {
        Err(ReconcileError::Decode(e)) => e,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn hostile_carried_lists_are_typed_errors() {
    let store = MemoryStore::default();
    let (msg, list) = sample();
    // the honest list decodes; the message then does not fit the session (nothing listed)
    assert!(matches!(
        responder().handle_carried(&store, &msg, &list),
        Err(ReconcileError::Protocol(_))
    ));
    // too long: a key no part takes
    let mut long = list.clone();
    long.push(k(170, 5));
    assert_eq!(
        decode_error(responder().handle_carried(&store, &msg, &long)),
        DecodeError::CarriedKeysLeft(1)
    );
    // too short: the Keys part asks for two keys, one remains
    assert_eq!(
        decode_error(responder().handle_carried(&store, &msg, &list[..3])),
        DecodeError::CarriedKeysShort { asked: 2, left: 1 }
    );
    assert_eq!(
        decode_error(responder().handle_carried(&store, &msg, &[])),
        DecodeError::CarriedKeysShort { asked: 2, left: 0 }
    );
    // unsorted inside a part
    let mut unsorted = list.clone();
    unsorted.swap(2, 3);
    assert!(matches!(
        decode_error(responder().handle_carried(&store, &msg, &unsorted)),
        DecodeError::BadPayload {
            why: "keys not strictly ascending",
            ..
        }
    ));
    // a key outside its part's range: the Resolve part ends at 100
    let mut outside = list.clone();
    outside[1] = k(120, 2);
    assert!(matches!(
        decode_error(responder().handle_carried(&store, &msg, &outside)),
        DecodeError::BadPayload {
            why: "key outside the part's range",
            ..
        }
    ));
    // keys in order but shifted one part over: the Keys part gets a key below its range
    let shifted = vec![k(10, 1), k(150, 3), k(20, 2), k(160, 4)];
    assert!(matches!(
        decode_error(responder().handle_carried(&store, &msg, &shifted)),
        DecodeError::BadPayload { .. }
    ));
    // an HLC no valid key has
    let mut high = list.clone();
    high[3] = EntryKey::new(u64::MAX, [9; 32]);
    assert!(matches!(
        decode_error(responder().handle_carried(&store, &msg, &high)),
        DecodeError::BadPayload {
            why: "hlc above 2^64 - 2",
            ..
        }
    ));
    // over max_carried_keys: refused before decoding, even for a message that would not decode
    let many: Vec<EntryKey> = (0..=MIN_CARRIED_KEYS as u64).map(|i| k(i + 1, i)).collect();
    let mut config = carried(Config::default());
    config.max_carried_keys = MIN_CARRIED_KEYS;
    let mut r = Reconciler::new(config).unwrap();
    assert!(matches!(
        r.handle_carried(&store, &Message::from_bytes(vec![1, 7]), &many),
        Err(ReconcileError::Limit(Limit::CarriedKeys { count, limit }))
            if count == MIN_CARRIED_KEYS + 1 && limit == MIN_CARRIED_KEYS
    ));
    // a message that carries no keys must come with an empty list
    let empty = Message::from_bytes(as_sent(0, &SALT, vec![1]));
    assert_eq!(
        decode_error(responder().handle_carried(&store, &empty, &list[..1])),
        DecodeError::CarriedKeysLeft(1)
    );
}

#[test]
fn the_wrong_entry_point_is_misuse_and_limits_are_validated() {
    let store = MemoryStore::default();
    let (msg, list) = sample();
    assert!(matches!(
        responder().handle(&store, &msg),
        Err(ReconcileError::Misuse(_))
    ));
    let mut inline = Reconciler::new(Config::default()).unwrap();
    assert!(matches!(
        inline.handle_carried(&store, &msg, &list),
        Err(ReconcileError::Misuse(_))
    ));
    let mut config = carried(Config::default());
    config.max_carried_keys = MIN_CARRIED_KEYS - 1;
    assert!(matches!(
        Reconciler::new(config),
        Err(ReconcileError::Config(_))
    ));
}

proptest! {
    #[test]
    fn random_carried_input_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        hlcs in proptest::collection::vec(0u64..400, 0..12),
        seed in any::<u64>(),
    ) {
        let list: Vec<EntryKey> = hlcs.iter().enumerate().map(|(i, h)| k(*h, seed ^ i as u64)).collect();
        let mut b = bytes.clone();
        if let Some(first) = b.first_mut() { *first = 1; }
        let store: MemoryStore = (1..300u64).map(|i| k(i, i)).collect();
        for m in [bytes, b] {
            let r = responder().handle_carried(&store, &Message::from_bytes(m.clone()), &list);
            if let Ok(step) = r {
                // whatever was accepted decodes with its list, and the reply's list matches it
                if let Some(reply) = step.reply {
                    prop_assert!(reply.parts_carried(&step.carried).is_ok());
                }
            }
            if let Ok(parts) = decode_carried(&m, &list) {
                prop_assert_eq!(encode_carried(&parts).unwrap(), (m.clone(), list.clone()));
            }
        }
    }
}

/// Found by `carried_form_under_tight_limits` in CI: the resolver carried a key the lister
/// holds (one-byte prefixes matched the wrong key), and the lister's reply was cut before it
/// answered that Resolve, so the collision was never counted; the range started over and the
/// extra entry is a harmless duplicate.
#[test]
fn an_extra_carried_key_whose_collision_was_cut_away() {
    let (a, b) = sets(3206, 34, 341, 2, 9_171_666_565_546_991_875);
    let mut config = Config::default();
    config.max_message_bytes = Some(4096);
    config.max_carried_keys = MIN_CARRIED_KEYS;
    config.prefix_len = 1;
    check_both_forms(&a, &b, &config);
}

/// A side that lacks everything (spec 8.4, sending all of a range): the holder splits once,
/// gets an empty list for every part and sends each part whole, so the session takes five
/// messages plus two per reply cut at `max_carried_keys`, however many keys there are;
/// both forms find everything.
#[test]
fn a_side_that_lacks_everything_gets_it_in_one_reply_per_cut() {
    let b: BTreeSet<EntryKey> = (0..20_000u64).map(|i| key(1_000 + i * 7, i)).collect();
    let a = BTreeSet::new();
    let mut config = Config::default();
    config.max_carried_keys = 4 * MIN_CARRIED_KEYS;
    let (inline, c) = check_both_forms(&a, &b, &config);
    let cuts = c.responder.carried_over;
    assert_eq!(cuts, 20_000 / (4 * MIN_CARRIED_KEYS) as u64);
    assert_eq!(c.messages.len() as u64, 5 + 2 * cuts);
    // no limit on the inline reply here: one reply carries everything
    assert_eq!(inline.messages.len(), 5);
    // every key travelled once, and the reconciliation bytes are a small part per key
    assert_eq!(c.responder.sent_keys.len(), 20_000);
    let bytes: usize = c.messages.iter().map(|(m, _)| m.len()).sum();
    assert!(
        bytes < 20_000 * 3,
        "{bytes} bytes of messages for 20,000 keys"
    );
}

/// Makes a bad reply from the holder's split.
type Forge = fn(&[Part]) -> Vec<Part>;

/// The pieces of a range sent whole are checked like any Resolve: no positions (the list
/// was empty), and a piece may not reach past the range that was listed.
#[test]
fn pieces_over_an_empty_list_are_checked() {
    // more keys than a dense reply lists at once (256, spec 8.4), so the holder splits
    let b: MemoryStore = (0..300u64).map(|i| key(1_000 + i, i)).collect();
    let a = MemoryStore::default();
    let config = Config::default();
    let bad_replies: [Forge; 2] = [
        // a position into the empty list
        |split| {
            let mut parts = split.to_vec();
            parts[0].payload = Payload::Resolve {
                missing: vec![0],
                keys: vec![],
            };
            parts
        },
        // a piece over the first two listed ranges
        |split| {
            let mut parts = split[1..].to_vec();
            parts[0].payload = Payload::Resolve {
                missing: vec![],
                keys: vec![],
            };
            parts
        },
    ];
    for (i, bad) in bad_replies.iter().enumerate() {
        let mut ra = Reconciler::new(config.clone()).unwrap();
        let mut rb = Reconciler::new(config.clone()).unwrap();
        let first = ra.initiate(&a).unwrap();
        let split = rb.handle(&b, &first).unwrap().reply.unwrap();
        let split_parts = oplog_protocol::wire::message::decode(split.as_bytes()).unwrap();
        assert!(split_parts.len() > 2, "the holder split the key space");
        let lists = ra.handle(&a, &split).unwrap().reply.unwrap();
        // the honest answer to those empty lists is accepted
        let honest = rb.handle(&b, &lists).unwrap().reply.unwrap();
        let mut ok = Reconciler::new(config.clone()).unwrap();
        let _ = ok.initiate(&a).unwrap();
        ok.handle(&a, &split).unwrap();
        let step = ok.handle(&a, &honest).unwrap();
        assert_eq!(
            step.need.len(),
            300,
            "case {i}: the honest pieces bring every key"
        );
        let bad = Message::from_bytes(encode(&bad(&split_parts)).unwrap());
        let err = ra.handle(&a, &bad).unwrap_err();
        assert!(
            matches!(err, ReconcileError::Protocol(_)),
            "case {i}: {err:?}"
        );
    }
}
