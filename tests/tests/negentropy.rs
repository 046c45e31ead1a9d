//! oplog-sync's Negentropy V1 dialect against the `negentropy` crate (Negentropy's Rust
//! implementation) as a live peer, in both roles: every session must find exactly the
//! difference, only the initiator learns it, and every message must be byte-identical to
//! what the crate sends in the same place.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use oplog_protocol::negentropy as neg;
use oplog_protocol::{Config, EntryKey, MemoryStore, Message, Reconciler};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

type Item = (u64, [u8; 32]);

/// One side of a session, whichever implementation it is.
trait Peer {
    fn initiate(&mut self) -> Vec<u8>;
    /// As initiator: the reply (None when done), adding the ids learned.
    fn client(
        &mut self,
        msg: &[u8],
        have: &mut Vec<[u8; 32]>,
        need: &mut Vec<[u8; 32]>,
    ) -> Option<Vec<u8>>;
    /// As responder: the reply.
    fn server(&mut self, msg: &[u8]) -> Vec<u8>;
}

struct Ours<'a> {
    store: &'a MemoryStore,
    r: Reconciler,
}

impl<'a> Ours<'a> {
    fn new(store: &'a MemoryStore, limit: Option<usize>) -> Self {
        Ours {
            store,
            r: Reconciler::new(Config::negentropy(limit)).unwrap(),
        }
    }
}

impl Peer for Ours<'_> {
    fn initiate(&mut self) -> Vec<u8> {
        self.r.initiate(self.store).unwrap().into_bytes()
    }

    fn client(
        &mut self,
        msg: &[u8],
        have: &mut Vec<[u8; 32]>,
        need: &mut Vec<[u8; 32]>,
    ) -> Option<Vec<u8>> {
        let step = self
            .r
            .handle(self.store, &Message::from_bytes(msg.to_vec()))
            .unwrap();
        assert!(step.need.is_empty(), "negentropy need comes as hashes");
        have.extend(step.have.iter().map(|k| k.hash.0));
        need.extend(step.need_hashes.iter().map(|h| h.0));
        assert_eq!(self.r.is_done(), step.reply.is_none());
        step.reply.map(Message::into_bytes)
    }

    fn server(&mut self, msg: &[u8]) -> Vec<u8> {
        let step = self
            .r
            .handle(self.store, &Message::from_bytes(msg.to_vec()))
            .unwrap();
        // Only the initiator learns the difference in Negentropy.
        assert!(step.have.is_empty() && step.need.is_empty() && step.need_hashes.is_empty());
        assert!(self.r.is_done(), "a negentropy responder keeps no state");
        step.reply.expect("a responder always answers").into_bytes()
    }
}

struct Theirs<'a>(Negentropy<'a, NegentropyStorageVector>);

impl<'a> Theirs<'a> {
    fn new(storage: &'a NegentropyStorageVector, limit: Option<usize>) -> Self {
        Theirs(Negentropy::borrowed(storage, limit.unwrap_or(0) as u64).unwrap())
    }
}

impl Peer for Theirs<'_> {
    fn initiate(&mut self) -> Vec<u8> {
        self.0.initiate().unwrap()
    }

    fn client(
        &mut self,
        msg: &[u8],
        have: &mut Vec<[u8; 32]>,
        need: &mut Vec<[u8; 32]>,
    ) -> Option<Vec<u8>> {
        let (mut h, mut n) = (Vec::new(), Vec::new());
        let reply = self.0.reconcile_with_ids(msg, &mut h, &mut n).unwrap();
        have.extend(h.iter().map(|id| id.to_bytes()));
        need.extend(n.iter().map(|id| id.to_bytes()));
        reply
    }

    fn server(&mut self, msg: &[u8]) -> Vec<u8> {
        self.0.reconcile(msg).unwrap()
    }
}

/// Every message of a session and what the initiator learned.
#[derive(Debug)]
struct Session {
    messages: Vec<Vec<u8>>,
    have: BTreeSet<[u8; 32]>,
    need: BTreeSet<[u8; 32]>,
    /// ids the initiator reported more than once
    duplicates: usize,
}

fn session(init: &mut dyn Peer, resp: &mut dyn Peer, limit: Option<usize>) -> Session {
    let (mut have, mut need) = (Vec::new(), Vec::new());
    let mut msg = init.initiate();
    let mut messages = vec![msg.clone()];
    loop {
        assert!(messages.len() < 20_000, "session does not end");
        let reply = resp.server(&msg);
        messages.push(reply.clone());
        match init.client(&reply, &mut have, &mut need) {
            Some(next) => {
                messages.push(next.clone());
                msg = next;
            }
            None => break,
        }
    }
    if let Some(l) = limit {
        for (i, m) in messages.iter().enumerate() {
            assert!(m.len() <= l, "message {i} has {} bytes > {l}", m.len());
        }
    }
    // The crate can report an id twice: when the initiator's own frame fills, the fingerprint
    // it carries over starts at the last range it wrote, before id lists it already settled.
    let reported = have.len() + need.len();
    let have: BTreeSet<_> = have.into_iter().collect();
    let need: BTreeSet<_> = need.into_iter().collect();
    Session {
        messages,
        duplicates: reported - have.len() - need.len(),
        have,
        need,
    }
}

fn ours_store(items: &[Item]) -> MemoryStore {
    items.iter().map(|(t, id)| EntryKey::new(*t, *id)).collect()
}

fn their_store(items: &[Item]) -> NegentropyStorageVector {
    let mut s = NegentropyStorageVector::with_capacity(items.len());
    for (t, id) in items {
        s.insert(*t, Id::from_byte_array(*id)).unwrap();
    }
    s.seal().unwrap();
    s
}

/// Runs all four pairings on `a` (initiator) and `b` (responder) and checks them.
fn check_all_pairings(a: &[Item], b: &[Item], limit: Option<usize>) {
    let ids = |s: &[Item]| s.iter().map(|(_, id)| *id).collect::<BTreeSet<_>>();
    let (ia, ib) = (ids(a), ids(b));
    let a_only: BTreeSet<_> = ia.difference(&ib).copied().collect();
    let b_only: BTreeSet<_> = ib.difference(&ia).copied().collect();
    let (oa, ob) = (ours_store(a), ours_store(b));
    let (ta, tb) = (their_store(a), their_store(b));

    let reference = session(
        &mut Theirs::new(&ta, limit),
        &mut Theirs::new(&tb, limit),
        limit,
    );
    let pairs: [(&str, Session); 3] = [
        (
            "ours -> theirs",
            session(
                &mut Ours::new(&oa, limit),
                &mut Theirs::new(&tb, limit),
                limit,
            ),
        ),
        (
            "theirs -> ours",
            session(
                &mut Theirs::new(&ta, limit),
                &mut Ours::new(&ob, limit),
                limit,
            ),
        ),
        (
            "ours -> ours",
            session(
                &mut Ours::new(&oa, limit),
                &mut Ours::new(&ob, limit),
                limit,
            ),
        ),
    ];
    if reference.duplicates > 0 {
        eprintln!("the crate reported {} ids twice", reference.duplicates);
    }
    assert_eq!(reference.have, a_only, "reference have");
    assert_eq!(reference.need, b_only, "reference need");
    for (name, s) in &pairs {
        // The crate may report an id twice; ours reports each once.
        let ours_initiates = name.starts_with("ours ->");
        let dups = if ours_initiates {
            0
        } else {
            reference.duplicates
        };
        assert_eq!(s.duplicates, dups, "{name}: ids reported twice");
        assert_eq!(s.have, a_only, "{name}: have");
        assert_eq!(s.need, b_only, "{name}: need");
        assert_eq!(
            s.messages.len(),
            reference.messages.len(),
            "{name}: message count"
        );
        for (i, (m, r)) in s.messages.iter().zip(&reference.messages).enumerate() {
            assert!(
                m == r,
                "{name}: message {i} differs from the crate's ({} vs {} bytes)",
                m.len(),
                r.len()
            );
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// differences spread at random
    Random,
    /// differences in one run of consecutive items
    Clustered,
}

/// `n` items; about `diff` of them differ, each missing from one side at random. Timestamps
/// often repeat (so bounds need id prefixes), and some ids share long prefixes.
fn make_sets(n: usize, diff: f64, shape: Shape, seed: u64) -> (Vec<Item>, Vec<Item>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut ts = rng.gen_range(0..1_700_000_000u64);
    // a fraction (0 to 1) of a test-sized count: non-negative, and exact far below 2^52
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let run_len = (n as f64 * diff) as usize;
    let run_start = rng.gen_range(0..=n - run_len.min(n));
    let mut prev_id = [0u8; 32];
    let mut used = std::collections::HashSet::new();
    for i in 0..n {
        if rng.gen_bool(0.7) {
            ts += rng.gen_range(1..1000);
        }
        let mut id: [u8; 32] = rng.gen();
        if rng.gen_bool(0.05) {
            // share a prefix with the previous id
            let k = rng.gen_range(1..32);
            id[..k].copy_from_slice(&prev_id[..k]);
        }
        if rng.gen_bool(0.02) {
            id[31] = 0; // full-id bounds ending in zero bytes
        }
        if !used.insert(id) {
            continue; // ids are unique, as entry hashes are
        }
        prev_id = id;
        let differs = match shape {
            Shape::Random => rng.gen_bool(diff),
            Shape::Clustered => (run_start..run_start + run_len).contains(&i),
        };
        if !differs {
            a.push((ts, id));
            b.push((ts, id));
        } else if rng.gen_bool(0.5) {
            a.push((ts, id));
        } else {
            b.push((ts, id));
        }
    }
    (a, b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn small_sets_match_the_crate(
        n in prop_oneof![0usize..40, 0usize..3_000],
        diff in prop_oneof![Just(0.0), 0.0f64..0.05, 0.0f64..1.0],
        clustered in any::<bool>(),
        limit in prop_oneof![Just(None), (4096usize..20_000).prop_map(Some), (20_000usize..500_000).prop_map(Some)],
        seed in any::<u64>(),
    ) {
        let shape = if clustered { Shape::Clustered } else { Shape::Random };
        let (a, b) = make_sets(n, diff, shape, seed);
        check_all_pairings(&a, &b, limit);
    }

    /// Whatever the bytes, decoding fails or succeeds; it never panics, and neither does a
    /// reconciler handed them in either role.
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), fix_version in any::<bool>()) {
        let mut bytes = bytes;
        if fix_version {
            if let Some(b) = bytes.first_mut() { *b = neg::PROTOCOL_VERSION; }
        }
        if let Ok(parts) = neg::decode(&bytes) {
            prop_assert_eq!(neg::encode(&parts).unwrap(), bytes.clone());
        }
        let store: MemoryStore = (0..100u8).map(|i| EntryKey::new(u64::from(i) * 7, [i; 32])).collect();
        let mut responder = Reconciler::new(Config::negentropy(None)).unwrap();
        let _ = responder.handle(&store, &Message::from_bytes(bytes.clone()));
        let mut initiator = Reconciler::new(Config::negentropy(Some(4096))).unwrap();
        initiator.initiate(&store).unwrap();
        let _ = initiator.handle(&store, &Message::from_bytes(bytes));
    }
}

#[test]
fn empty_and_tiny_sets() {
    let one = vec![(5u64, [1u8; 32])];
    let two = vec![(5u64, [1u8; 32]), (5, [2; 32])];
    for (a, b) in [
        (vec![], vec![]),
        (one.clone(), vec![]),
        (vec![], one.clone()),
        (one.clone(), two.clone()),
        (two, one),
    ] {
        check_all_pairings(&a, &b, None);
        check_all_pairings(&a, &b, Some(4096));
    }
}

#[test]
fn large_sets_match_the_crate() {
    for (n, diff, shape, limit) in [
        (100_000, 0.0, Shape::Random, None),
        (100_000, 0.01, Shape::Random, None),
        (100_000, 0.02, Shape::Clustered, Some(60_000)),
        (100_000, 0.002, Shape::Random, Some(4096)),
        (100_000, 1.0, Shape::Random, Some(500_000)),
    ] {
        let (a, b) = make_sets(n, diff, shape, n as u64 ^ limit.unwrap_or(0) as u64);
        check_all_pairings(&a, &b, limit);
    }
}

#[test]
fn unsupported_version_is_answered_with_ours() {
    let items = vec![(1u64, [1u8; 32])];
    let (oa, ta) = (ours_store(&items), their_store(&items));
    let query = [0x62u8, 0x00, 0x00, 0x00];
    let mut ours = Ours::new(&oa, None);
    let mut theirs = Theirs::new(&ta, None);
    assert_eq!(ours.server(&query), vec![0x61]);
    assert_eq!(theirs.server(&query), vec![0x61]);
    // not a negentropy message at all: an error
    let mut r = Reconciler::new(Config::negentropy(None)).unwrap();
    assert!(r.handle(&oa, &Message::from_bytes(vec![0x01])).is_err());
    // the initiator cannot downgrade: an error
    let mut r = Reconciler::new(Config::negentropy(None)).unwrap();
    r.initiate(&oa).unwrap();
    assert!(r.handle(&oa, &Message::from_bytes(vec![0x62])).is_err());
}

#[test]
fn transcript_runner_drives_the_dialect() {
    let (a, b) = make_sets(5_000, 0.05, Shape::Random, 3);
    let (oa, ob) = (ours_store(&a), ours_store(&b));
    let cfg = Config::negentropy(Some(8192));
    let t = oplog_protocol::testing::transcript::run(&oa, &ob, cfg.clone(), cfg).unwrap();
    let ids = |s: &[Item]| s.iter().map(|(_, id)| *id).collect::<BTreeSet<_>>();
    let a_only: Vec<_> = ids(&a).difference(&ids(&b)).copied().collect();
    let have: Vec<_> = t.initiator.have.iter().map(|k| k.hash.0).collect();
    let mut have_sorted = have.clone();
    have_sorted.sort_unstable();
    assert_eq!(have_sorted, a_only);
    assert!(t.responder.have.is_empty() && t.responder.need.is_empty());
}

// ---------------------------------------------------------------------------------------------
// the harness binary

/// A running `negentropy-harness` speaking over pipes.
struct Harness {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Harness {
    fn start(items: &[Item], limit: Option<usize>) -> Harness {
        let mut child = Command::new(env!("CARGO_BIN_EXE_negentropy-harness"))
            .env("FRAMESIZELIMIT", limit.unwrap_or(0).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start negentropy-harness");
        let mut stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        for (t, id) in items {
            writeln!(stdin, "item,{t},{}", hex::encode(id)).unwrap();
        }
        writeln!(stdin, "seal").unwrap();
        Harness {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        assert!(!l.is_empty(), "harness closed its output");
        l.trim_end().to_string()
    }

    fn finish(self) {
        drop(self.stdin);
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn msg_of(line: &str) -> Vec<u8> {
    let hex = line
        .strip_prefix("msg,")
        .unwrap_or_else(|| panic!("expected msg, got {line:?}"));
    hex::decode(hex).unwrap()
}

#[test]
fn harness_session_matches_the_crate() {
    for (n, diff, limit) in [
        (0, 0.0, None),
        (3_000, 0.1, Some(4096)),
        (20_000, 0.01, None),
    ] {
        let (a, b) = make_sets(n, diff, Shape::Random, 11);
        let (ta, tb) = (their_store(&a), their_store(&b));
        let reference = session(
            &mut Theirs::new(&ta, limit),
            &mut Theirs::new(&tb, limit),
            limit,
        );

        let mut client = Harness::start(&a, limit);
        let mut server = Harness::start(&b, limit);
        client.send("initiate");
        let mut messages = vec![msg_of(&client.line())];
        let (mut have, mut need) = (BTreeSet::new(), BTreeSet::new());
        'session: loop {
            server.send(&format!("msg,{}", hex::encode(messages.last().unwrap())));
            let reply = msg_of(&server.line());
            client.send(&format!("msg,{}", hex::encode(&reply)));
            messages.push(reply);
            loop {
                let l = client.line();
                if let Some(id) = l.strip_prefix("have,") {
                    have.insert(hex::decode(id).unwrap());
                } else if let Some(id) = l.strip_prefix("need,") {
                    need.insert(hex::decode(id).unwrap());
                } else if l == "done" {
                    break 'session;
                } else {
                    messages.push(msg_of(&l));
                    break;
                }
            }
        }
        client.finish();
        server.finish();
        assert_eq!(messages, reference.messages, "n={n}");
        let v = |s: &BTreeSet<[u8; 32]>| s.iter().map(|x| x.to_vec()).collect::<BTreeSet<_>>();
        assert_eq!(have, v(&reference.have));
        assert_eq!(need, v(&reference.need));
    }
}

#[test]
fn harness_reports_errors() {
    for script in [
        "bogus\n",
        "item,1,00\n",
        "seal\nmsg,zz\n",
        "seal\nmsg,01\n",
        "initiate\n",
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_negentropy-harness"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{script:?} should fail");
        assert!(!out.stderr.is_empty(), "{script:?}: no error message");
    }
}

/// A longer randomized comparison, not run by default: `NEGENTROPY_SOAK=<cases> cargo test
/// -p oplog-tests --test negentropy soak -- --ignored`.
#[test]
#[ignore = "a long soak: NEGENTROPY_SOAK=<cases> sets how long"]
fn soak() {
    let cases: u64 = std::env::var("NEGENTROPY_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x50a4);
    for case in 0..cases {
        let n = if rng.gen_bool(0.2) {
            rng.gen_range(0..100_000)
        } else {
            rng.gen_range(0..20_000)
        };
        let diff = [0.0, 0.001, 0.01, 0.1, 0.5, 1.0][rng.gen_range(0..6)];
        let shape = if rng.gen_bool(0.5) {
            Shape::Random
        } else {
            Shape::Clustered
        };
        let limit = match rng.gen_range(0..3) {
            0 => None,
            1 => Some(rng.gen_range(4096..20_000)),
            _ => Some(rng.gen_range(20_000..500_000)),
        };
        let seed = rng.gen();
        eprintln!("case {case}: n={n} diff={diff} {shape:?} limit={limit:?} seed={seed}");
        let (a, b) = make_sets(n, diff, shape, seed);
        check_all_pairings(&a, &b, limit);
    }
}

/// Bytes and round trips of the Negentropy dialect next to oplog-v1 on the same sets, not run
/// by default: `cargo test -p oplog-tests --test negentropy compare -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement that prints figures and asserts nothing; run with --nocapture"]
fn compare_with_oplog_v1() {
    use oplog_protocol::testing::transcript::run;
    eprintln!(
        "{:>28} | {:>9} {:>12} {:>12} | {:>9} {:>12} {:>12}",
        "set / limit", "neg rt", "neg bytes", "neg max msg", "oplog rt", "oplog bytes", "oplog max"
    );
    for (n, diff, shape, limit) in [
        (100_000, 0.01, Shape::Random, None),
        (100_000, 0.01, Shape::Random, Some(60_000)),
        (100_000, 0.01, Shape::Random, Some(4096)),
        (100_000, 0.01, Shape::Clustered, None),
        (100_000, 0.0, Shape::Random, None),
        (100_000, 1.0, Shape::Random, Some(500_000)),
    ] {
        let (a, b) = make_sets(n, diff, shape, 42);
        let (oa, ob) = (ours_store(&a), ours_store(&b));
        let neg = Config::negentropy(limit);
        let mut oplog = Config::default();
        oplog.max_message_bytes = limit;
        let tn = run(&oa, &ob, neg.clone(), neg).unwrap();
        let to = run(&oa, &ob, oplog.clone(), oplog).unwrap();
        let total = |t: &oplog_protocol::testing::transcript::Transcript| {
            let (x, y) = t.bytes();
            x + y
        };
        let max = |t: &oplog_protocol::testing::transcript::Transcript| {
            t.messages.iter().map(Message::len).max().unwrap_or(0)
        };
        eprintln!(
            "{:>28} | {:>9} {:>12} {:>12} | {:>9} {:>12} {:>12}",
            format!("{n} {diff} {shape:?} {limit:?}"),
            tn.rounds(),
            total(&tn),
            max(&tn),
            to.rounds(),
            total(&to),
            max(&to)
        );
    }
}
