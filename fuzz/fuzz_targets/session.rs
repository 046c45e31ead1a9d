//! A `Session` (initiator or responder, a side of a `spec/vectors/session.json` transcript)
//! over a `MemoryReplica`, fed arbitrary frames, headers, timeouts and the end of the stream
//! (see `oplog_fuzz::Step`): never panics, sends bounded, well-formed frames, and ends with
//! exactly one end event.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use oplog_tests::vectors::SessionSide;

fuzz_target!(|data: &[u8]| {
    let Some((&b0, rest)) = data.split_first() else {
        return;
    };
    let (role, side) = oplog_fuzz::side(b0);
    let (graph, _) = oplog_fuzz::vectors();
    let s = SessionSide::new(graph, side, role).expect("vector side starts");
    let mut store = s.store;
    oplog_fuzz::drive(
        s.session,
        &mut store,
        |st, entries| {
            st.insert(oplog_fuzz::plain(entries), u64::MAX, Duration::ZERO, None);
        },
        &oplog_fuzz::steps(rest),
    );
});
