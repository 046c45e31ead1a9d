//! Two replicas of a signed log drift apart, then find their difference with range-based set
//! reconciliation. Prints every message that crosses the wire and what each side learned.
//!
//! Run: `cargo run -p oplog-protocol --example demo`

use std::collections::HashMap;

use oplog_protocol::message::Payload;
use oplog_protocol::transcript::run;
use oplog_protocol::{Config, Hash, Hlc, LogEntry, MemoryStore, ObjectId, Op, SigningKey};

fn main() {
    let alice = SigningKey::from_bytes(&[1; 32]);
    let bob = SigningKey::from_bytes(&[2; 32]);

    // A shared history of 20,000 signed writes, then 40 writes only Alice has and 25 only Bob has.
    let mut log: HashMap<Hash, LogEntry> = HashMap::new();
    let (mut a, mut b) = (MemoryStore::new(), MemoryStore::new());
    let mut hlc = 1_780_000_000_000_000_000u64;
    let mut parent: Option<Hash> = None;
    let mut write = |author: &SigningKey, i: u64, parent: &mut Option<Hash>| {
        hlc += 1_000_000;
        let action = Op::Put {
            bucket: "photos".into(),
            key: format!("img-{i}.jpg"),
            object_id: ObjectId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
        };
        let e = LogEntry::sign(author, Hlc(hlc), action, parent.iter().copied().collect())
            .expect("valid entry");
        *parent = Some(e.hash);
        e
    };
    for i in 0..20_000 {
        let e = write(if i % 2 == 0 { &alice } else { &bob }, i, &mut parent);
        a.insert(e.key());
        b.insert(e.key());
        log.insert(e.hash, e);
    }
    let fork = parent;
    for i in 0..40 {
        let e = write(&alice, 100_000 + i, &mut parent);
        a.insert(e.key());
        log.insert(e.hash, e);
    }
    let mut bob_tip = fork;
    for i in 0..25 {
        let e = write(&bob, 200_000 + i, &mut bob_tip);
        b.insert(e.key());
        log.insert(e.hash, e);
    }
    println!(
        "alice holds {} entries, bob holds {}; reconciling (alice opens)\n",
        a.len(),
        b.len()
    );

    let t = run(&a, &b, Config::default(), Config::default()).expect("session");
    for (i, m) in t.messages.iter().enumerate() {
        let from = if i % 2 == 0 {
            "alice -> bob  "
        } else {
            "bob   -> alice"
        };
        let parts = m.parts().expect("our own message decodes");
        let mut kinds: Vec<(&str, usize)> = Vec::new();
        for p in &parts {
            let name = match p.payload {
                Payload::Skip => "skip",
                Payload::Fingerprint(_) => "fingerprint",
                Payload::PrefixList { .. } => "prefix-list",
                Payload::FullList(_) => "full-list",
                Payload::Resolve { .. } => "resolve",
                Payload::Keys(_) => "keys",
            };
            match kinds.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => *n += 1,
                None => kinds.push((name, 1)),
            }
        }
        let summary: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "message {}  {from}  {:>6} bytes  {}",
            i + 1,
            m.len(),
            if summary.is_empty() {
                "(nothing left to say)".to_string()
            } else {
                summary.join(", ")
            }
        );
    }
    let (ab, ba) = t.bytes();
    println!(
        "\n{} messages, {} round trips, {} bytes alice->bob, {} bytes bob->alice",
        t.messages.len(),
        t.rounds(),
        ab,
        ba
    );
    println!(
        "alice learned: she has {} entries bob lacks, and needs {} from him",
        t.initiator.have.len(),
        t.initiator.need.len()
    );
    println!(
        "bob learned:   he has {} entries alice lacks, and needs {} from her",
        t.responder.have.len(),
        t.responder.need.len()
    );
    assert_eq!(t.initiator.have, t.responder.need);
    assert_eq!(t.initiator.need, t.responder.have);

    // What would cross next: the entries themselves, each checked on arrival.
    let bytes: usize = t
        .initiator
        .have
        .iter()
        .chain(&t.responder.have)
        .map(|k| {
            let e = &log[&k.hash];
            let wire = e.encode();
            let back = LogEntry::<Op>::decode(&wire).expect("decodes");
            back.verify().expect("hash and signature verify");
            assert_eq!(back.key(), *k);
            wire.len()
        })
        .sum();
    println!(
        "then {} entries ({bytes} bytes) cross and every hash and signature verifies",
        t.initiator.have.len() + t.responder.have.len()
    );
}
