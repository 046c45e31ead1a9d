//! Two replicas of a signed log drift apart, find their difference with range-based set
//! reconciliation, exchange and verify the missing entries, and join their branches with one
//! merge. Prints every message that crosses the wire.
//!
//! Run: `cargo run -p oplog-protocol --example demo`

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use oplog_protocol::dag::{merge_conflicts, merge_parents, should_merge};
use oplog_protocol::replica::MemoryReplica;
use oplog_protocol::testing::transcript::{run, Transcript};
use oplog_protocol::wire::message::Payload;
use oplog_protocol::{
    Config, EntryKey, HlcClock, LogEntry, MemoryStore, NodeId, ObjectId, Op, SigningKey, WallClock,
};

const DRIFT: Duration = Duration::from_secs(60);

/// The demo's shared wall clock, advanced by hand.
struct Wall(Rc<Cell<u64>>);

impl WallClock for Wall {
    fn now_nanos(&self) -> u64 {
        self.0.get()
    }
}

/// One node: its key, its clock and its replica of the log.
struct Node {
    name: &'static str,
    key: SigningKey,
    clock: HlcClock<Wall>,
    replica: MemoryReplica<Op>,
}

impl Node {
    fn new(name: &'static str, seed: u8, wall: &Rc<Cell<u64>>) -> Self {
        Node {
            name,
            key: SigningKey::from_bytes(&[seed; 32]),
            clock: HlcClock::new(Wall(wall.clone()), DRIFT),
            replica: MemoryReplica::new(),
        }
    }

    fn id(&self) -> NodeId {
        NodeId(self.key.verifying_key().to_bytes())
    }

    /// Signs `action` on top of all current heads and applies it locally.
    fn write(&mut self, action: Op) -> LogEntry {
        let parents = self.replica.heads().hashes();
        let entry = LogEntry::sign(
            &self.key,
            self.clock.tick().expect("clock"),
            action,
            parents,
        )
        .expect("valid entry");
        self.apply(vec![entry.clone()]);
        entry
    }

    fn apply(&mut self, entries: Vec<LogEntry>) -> usize {
        let now = self.clock.wall();
        let report = self
            .replica
            .insert(entries, now, DRIFT, None::<&HashSet<NodeId>>);
        report.applied.len()
    }

    fn store(&self) -> MemoryStore {
        self.replica.keys().copied().collect()
    }

    /// What crosses the wire for `keys`: encoded entries, decoded and checked on arrival.
    fn send(&self, keys: &[EntryKey], to: &mut Node) -> (usize, usize) {
        let mut bytes = 0;
        let entries: Vec<LogEntry> = keys
            .iter()
            .map(|k| {
                let wire = self.replica.get(&k.hash).expect("we have it").encode();
                bytes += wire.len();
                let e = LogEntry::<Op>::decode(&wire).expect("decodes");
                assert_eq!(e.key(), *k, "the entry is the one asked for");
                e
            })
            .collect();
        (to.apply(entries), bytes)
    }
}

fn put(key: String, i: u64) -> Op {
    Op::Put {
        bucket: "photos".into(),
        key,
        object_id: ObjectId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
    }
}

/// Reconciles the two replicas (`a` opens) and prints what crossed the wire.
fn reconcile(a: &Node, b: &Node) -> Transcript {
    let t = run(&a.store(), &b.store(), Config::default(), Config::default()).expect("session");
    print_transcript(&t, a.name, b.name);
    t
}

fn print_transcript(t: &Transcript, a: &str, b: &str) {
    for (i, m) in t.messages.iter().enumerate() {
        let from = if i % 2 == 0 {
            format!("{a} -> {b}")
        } else {
            format!("{b} -> {a}")
        };
        let mut kinds: Vec<(&str, usize)> = Vec::new();
        for p in m.parts().expect("our own message decodes") {
            let name = match p.payload {
                Payload::Skip => continue,
                Payload::Fingerprint(_) => "fingerprint",
                Payload::PrefixList { .. } => "prefix-list",
                Payload::FullList(_) => "full-list",
                Payload::Resolve { .. } => "resolve",
                Payload::Keys { .. } => "keys",
            };
            match kinds.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => *n += 1,
                None => kinds.push((name, 1)),
            }
        }
        let summary: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "  message {}  {from:<14} {:>6} bytes  {}",
            i + 1,
            m.len(),
            if summary.is_empty() {
                "(all agreed)".to_string()
            } else {
                summary.join(", ")
            }
        );
    }
    let (ab, ba) = t.bytes();
    println!(
        "  {} messages, {} round trips, {ab} + {ba} bytes",
        t.messages.len(),
        t.rounds()
    );
}

fn main() {
    let wall = Rc::new(Cell::new(1_780_000_000_000_000_000u64));
    let mut alice = Node::new("alice", 1, &wall);
    let mut bob = Node::new("bob", 2, &wall);

    // A shared history of 20,000 signed writes.
    for i in 0..20_000u64 {
        wall.set(wall.get() + 1_000_000);
        let writer = if i % 2 == 0 { &mut alice } else { &mut bob };
        let e = writer.write(put(format!("img-{i}.jpg"), i));
        let other = if i % 2 == 0 { &mut bob } else { &mut alice };
        other.apply(vec![e]);
    }
    // Then a partition: 40 writes only Alice sees, 25 only Bob sees, both touching img-7.jpg.
    for i in 0..40u64 {
        wall.set(wall.get() + 1_000_000);
        alice.write(put(format!("new-a-{i}.jpg"), 100_000 + i));
    }
    alice.write(put("img-7.jpg".into(), 7_000_001));
    for i in 0..25u64 {
        wall.set(wall.get() + 1_000_000);
        bob.write(put(format!("new-b-{i}.jpg"), 200_000 + i));
    }
    bob.write(Op::Delete {
        bucket: "photos".into(),
        key: "img-7.jpg".into(),
    });
    println!(
        "alice holds {} entries, bob holds {}; alice opens a reconciliation:",
        alice.replica.len(),
        bob.replica.len()
    );

    let t = reconcile(&alice, &bob);
    println!(
        "  alice learned she has {} entries bob lacks and needs {}; bob learned the mirror image",
        t.initiator.have.len(),
        t.initiator.need.len()
    );
    assert_eq!(
        (&t.initiator.have, &t.initiator.need),
        (&t.responder.need, &t.responder.have)
    );

    // The missing entries cross; each side decodes, verifies and applies them parents first.
    let (to_bob, bytes_ab) = alice.send(&t.initiator.have, &mut bob);
    let (to_alice, bytes_ba) = bob.send(&t.responder.have, &mut alice);
    println!(
        "entries cross: {to_bob} to bob ({bytes_ab} bytes), {to_alice} to alice ({bytes_ba} bytes), every hash and signature verified"
    );
    assert_eq!(alice.store().len(), bob.store().len());
    println!(
        "both hold {} entries and {} heads: the partition left two branches",
        alice.replica.len(),
        alice.replica.heads().len()
    );

    // The merge rule: only the author of the greatest head merges, so exactly one node does.
    let heads = alice.replica.heads().with_keys();
    let mergers: Vec<&str> = [&alice, &bob]
        .into_iter()
        .filter(|n| should_merge(&heads, &n.id()))
        .map(|n| n.name)
        .collect();
    println!("merge rule: {mergers:?} merges, the other waits");
    assert_eq!(mergers.len(), 1);
    let conflicts = merge_conflicts(
        &alice.replica,
        &merge_parents(&heads),
        oplog_protocol::dag::DEFAULT_MAX_VISITS,
    )
    .expect("walk");
    for c in &conflicts {
        println!(
            "  conflict on {:?}: {} concurrent winners; the {} at HLC {} wins",
            c.key,
            c.branch_winners.len(),
            if c.winner.is_delete { "delete" } else { "put" },
            c.winner.key.hlc
        );
    }
    wall.set(wall.get() + 1_000_000);
    let (merger, other) = if mergers[0] == "alice" {
        (&mut alice, &mut bob)
    } else {
        (&mut bob, &mut alice)
    };
    let merge = merger.write(Op::Merge);
    other.apply(vec![merge]);

    println!("after the merge, a second reconciliation finds nothing to do:");
    let t = reconcile(&alice, &bob);
    assert!(t.initiator.have.is_empty() && t.initiator.need.is_empty());
    let view_a: Vec<_> = alice.replica.view().iter().collect();
    let view_b: Vec<_> = bob.replica.view().iter().collect();
    assert_eq!(view_a, view_b);
    println!(
        "both replicas: {} entries, {} head, identical views of {} keys; photos/img-7.jpg is {}",
        alice.replica.len(),
        alice.replica.heads().len(),
        view_a.len(),
        match alice
            .replica
            .view()
            .get(&("photos".into(), "img-7.jpg".into()))
        {
            Some(w) if w.is_delete => "deleted (bob's later delete won)",
            Some(_) => "present",
            None => "absent",
        }
    );
    assert_eq!(alice.replica.heads().len(), 1);
    assert!(!should_merge(
        &alice.replica.heads().with_keys(),
        &alice.id()
    ));
}
