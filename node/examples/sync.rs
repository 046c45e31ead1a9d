//! Two nodes, each with its own redb file, drift apart and sync over a real iroh connection
//! on loopback (relays off, no address lookup): `cargo run --release -p oplog-node --example sync`.
//!
//! They share 20,000 writes, then each writes on its own (both to the same keys); one
//! `sync_with` later both hold the union, the same heads and the same view, and the report
//! says what crossed: round trips, frames, entry bytes and the protocol's own overhead.

use std::sync::Arc;
use std::time::Instant;

use iroh::protocol::Router;
use oplog_node::{bind_loopback, loopback_addr, OplogSync, ALPN};
use oplog_protocol::{
    EntryKey, Hash, Hlc, LogEntry, ObjectId, Op, SigningKey, SystemClock, WallClock,
};
use oplog_store::Store;

/// Signs `n` puts by `key`, each on top of `parents` and then of the previous one.
fn writes(key: &SigningKey, hlc: &mut u64, n: usize, mut parents: Vec<Hash>) -> Vec<LogEntry> {
    (0..n)
        .map(|i| {
            *hlc += 1_000_000;
            let op = Op::Put {
                bucket: "photos".into(),
                key: format!("2026/11/{:04}.jpg", i % 5_000),
                object_id: ObjectId(*blake3::hash(&hlc.to_le_bytes()).as_bytes()),
            };
            let e = LogEntry::sign(key, Hlc(*hlc), op, std::mem::take(&mut parents))
                .expect("valid write");
            parents = vec![e.hash];
            e
        })
        .collect()
}

fn insert(store: &Store, entries: &[LogEntry]) -> Result<(), Box<dyn std::error::Error>> {
    for chunk in entries.chunks(5_000) {
        store.insert(chunk.to_vec())?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let alice_store = Arc::new(Store::open(dir.path().join("alice.redb"))?);
    let bob_store = Arc::new(Store::open(dir.path().join("bob.redb"))?);
    let (alice_key, bob_key) = (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
    );

    // 20,000 shared writes, then a partition: 2,000 writes on alice, 3,000 on bob.
    let mut hlc = SystemClock.now_nanos() - 60_000_000_000;
    let shared = writes(&alice_key, &mut hlc, 20_000, vec![]);
    insert(&alice_store, &shared)?;
    insert(&bob_store, &shared)?;
    let tip = vec![shared[shared.len() - 1].hash];
    let mut bob_hlc = hlc + 500;
    insert(
        &alice_store,
        &writes(&alice_key, &mut hlc, 2_000, tip.clone()),
    )?;
    insert(&bob_store, &writes(&bob_key, &mut bob_hlc, 3_000, tip))?;
    println!(
        "before: alice holds {} entries, bob {} ({} shared)",
        alice_store.len(),
        bob_store.len(),
        shared.len()
    );

    // Each node: an offline endpoint and the handler on its router, allowing the other.
    let alice = bind_loopback(None, vec![]).await?;
    let bob = bind_loopback(None, vec![]).await?;
    let alice_sync = OplogSync::new(Arc::clone(&alice_store), [bob.id()]);
    let bob_sync = OplogSync::new(Arc::clone(&bob_store), [alice.id()]);
    let alice_router = Router::builder(alice.clone())
        .accept(ALPN, alice_sync.clone())
        .spawn();
    let bob_router = Router::builder(bob.clone()).accept(ALPN, bob_sync).spawn();

    let t = Instant::now();
    let report = alice_sync.sync_with(&alice, loopback_addr(&bob)?).await?;
    let took = t.elapsed();
    println!(
        "alice synced with bob over iroh in {took:.0?}: {} round trips; sent {} entries ({} B), received {} entries ({} B); {} frames; protocol overhead {} B both ways",
        report.round_trips(),
        report.entries_sent,
        report.entry_bytes_sent,
        report.entries_received,
        report.entry_bytes_received,
        report.frames_sent + report.frames_received,
        report.overhead_bytes()
    );

    let same_entries = alice_store.log(EntryKey::MIN, usize::MAX)?.len()
        == bob_store.log(EntryKey::MIN, usize::MAX)?.len();
    let same = same_entries
        && alice_store.heads()? == bob_store.heads()?
        && alice_store.view()? == bob_store.view()?
        && alice_store.verify()?.is_ok()
        && bob_store.verify()?.is_ok();
    println!(
        "after: both hold {} entries, {} heads (the branches, for a merge to join), the same view: {same}",
        alice_store.len(),
        alice_store.heads()?.len()
    );
    if let Some(winner) = alice_store.winner(&("photos".into(), "2026/11/0001.jpg".into()))? {
        println!("photos/2026/11/0001.jpg was written on both sides; the later write wins everywhere: {winner:?}");
    }
    alice_router.shutdown().await?;
    bob_router.shutdown().await?;
    if !same {
        return Err("the two stores differ after the sync".into());
    }
    Ok(())
}
