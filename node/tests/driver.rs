//! The transport-generic driver over in-memory pipes (no iroh): two sessions converge, also
//! through a pipe too small for one frame, where a driver that did not read while writing
//! would deadlock.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use oplog_node::{run_session, EndCode, Role, Session, SessionConfig};

use common::{assert_converged, diverged, keys};

async fn sync_over_pipe(buffer: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = diverged(dir.path(), 2_000, 300, 200);
    let before_a = keys(&a).len();
    let (pipe_a, pipe_b) = tokio::io::duplex(buffer);
    let (read_a, write_a) = tokio::io::split(pipe_a);
    let (read_b, write_b) = tokio::io::split(pipe_b);
    let sa = Session::new(
        SessionConfig::default(),
        Role::Initiator,
        a.snapshot(),
        Instant::now(),
    )
    .unwrap();
    let sb = Session::new(
        SessionConfig::default(),
        Role::Responder,
        b.snapshot(),
        Instant::now(),
    )
    .unwrap();
    let (ra, rb) = tokio::join!(
        Box::pin(run_session(sa, Arc::clone(&a), read_a, write_a)),
        Box::pin(run_session(sb, Arc::clone(&b), read_b, write_b)),
    );
    assert!(
        ra.end.is_none() && ra.report.is_done(),
        "initiator completed: {ra:?}"
    );
    assert!(
        rb.end.is_none() && rb.report.is_done(),
        "responder completed: {rb:?}"
    );
    assert_eq!(
        ra.report.entries_received, 200,
        "a received exactly what it lacked"
    );
    assert_eq!(
        rb.report.entries_received, 300,
        "b received exactly what it lacked"
    );
    assert_converged(&a, &b);
    assert_eq!(
        keys(&a).len(),
        before_a + 200,
        "a received exactly b's 200 new entries"
    );
    // batches were committed without waiting for the disk, and made durable at the end
    assert_eq!(a.buffered_commits(), 0, "a persisted what it received");
    assert_eq!(b.buffered_commits(), 0, "b persisted what it received");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_converge_over_a_pipe() {
    Box::pin(sync_over_pipe(64 * 1024)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_smaller_than_one_frame_does_not_deadlock() {
    Box::pin(sync_over_pipe(64)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_cut_by_the_idle_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = diverged(dir.path(), 2_000, 10, 0);
    // The far end is held open but never read nor written: our writes block after 64 bytes.
    let (ours, theirs) = tokio::io::duplex(64);
    let (recv, send) = tokio::io::split(ours);
    let mut config = SessionConfig::default();
    config.idle_timeout = Duration::from_millis(200);
    let session = Session::new(config, Role::Initiator, a.snapshot(), Instant::now()).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        run_session(session, Arc::clone(&a), recv, send),
    )
    .await
    .expect("the driver returns although its writes block");
    drop(theirs);
    assert!(
        out.report.bytes_sent > 64,
        "more was due than the pipe holds: {out:?}"
    );
    let end = out.end.expect("the session ended without completing");
    assert_eq!(end.code, EndCode::Timeout, "{end:?}");
    assert!(!end.by_peer);
}
