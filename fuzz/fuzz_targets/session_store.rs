//! As `session`, against a real `oplog_store::Store` (a redb file in a tempdir, on /dev/shm
//! when there is one, so that a commit is not a disk flush): the side's entries are inserted
//! first and the session reconciles over the store's snapshot. Afterwards `verify()` finds
//! nothing wrong and every entry the store held before is still there.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use oplog_protocol::Op;
use oplog_store::{Options, Store};

fuzz_target!(|data: &[u8]| {
    let Some((&b0, rest)) = data.split_first() else {
        return;
    };
    let (role, side) = oplog_fuzz::side(b0);
    let (graph, _) = oplog_fuzz::vectors();
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let mut options = Options::default();
    // the vectors insert at now = 2^64 - 1: nothing is deferred
    options.clock = Arc::new(|| u64::MAX);
    options.cache_bytes = 1 << 20;
    let store: Store<Op> = Store::create(dir.path().join("fuzz.redb"), options).expect("store");
    let entries = side
        .store
        .iter()
        .map(|n| graph.entry(n).cloned())
        .collect::<Result<Vec<_>, _>>()
        .expect("vector entries");
    let before: Vec<_> = entries.iter().map(|e| e.hash).collect();
    store.insert(entries).expect("insert the side's entries");
    let held: Vec<_> = before
        .into_iter()
        .filter(|h| store.contains(h).expect("store reads"))
        .collect();
    let config = side.config.config().expect("vector config");
    let session = oplog_protocol::session::Session::new(
        config,
        role,
        store.snapshot(),
        std::time::Instant::now(),
    )
    .expect("session starts");
    let mut store = store;
    oplog_fuzz::drive(
        session,
        &mut store,
        |st, entries| {
            st.insert_verified(entries).expect("store insert");
        },
        &oplog_fuzz::steps(rest),
    );
    let report = store.verify().expect("store verifies");
    assert!(
        report.is_ok(),
        "store problems after a session: {:?}",
        report.problems
    );
    for h in &held {
        assert!(store.contains(h).expect("store reads"), "an entry was lost");
    }
});
