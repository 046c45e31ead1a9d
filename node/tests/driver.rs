//! The transport-generic driver over in-memory pipes (no iroh): two sessions converge, also
//! through a pipe too small for one frame, where a driver that did not read while writing
//! would deadlock.

mod common;

use std::sync::Arc;
use std::time::Instant;

use oplog_node::{run_session, Role, Session, SessionConfig};

use common::{assert_converged, diverged, keys};

async fn sync_over_pipe(buffer: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = diverged(dir.path(), 2_000, 300, 200);
    let before_a = keys(&a).len();
    let (a_end, b_end) = tokio::io::duplex(buffer);
    let (a_recv, a_send) = tokio::io::split(a_end);
    let (b_recv, b_send) = tokio::io::split(b_end);
    let sa = Session::new(SessionConfig::default(), Role::Initiator, a.snapshot(), Instant::now()).unwrap();
    let sb = Session::new(SessionConfig::default(), Role::Responder, b.snapshot(), Instant::now()).unwrap();
    let (ra, rb) = tokio::join!(
        run_session(sa, Arc::clone(&a), a_recv, a_send),
        run_session(sb, Arc::clone(&b), b_recv, b_send),
    );
    assert!(ra.end.is_none(), "initiator completed: {ra:?}");
    assert!(rb.end.is_none(), "responder completed: {rb:?}");
    assert_converged(&a, &b);
    assert_eq!(keys(&a).len(), before_a + 200, "a received exactly b's 200 new entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_converge_over_a_pipe() {
    sync_over_pipe(64 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_smaller_than_one_frame_does_not_deadlock() {
    sync_over_pipe(64).await;
}
