//! Whole sync sessions (spec 9) between two real redb stores, with no socket: the sans-IO
//! [`Session`](oplog_protocol::session::Session) on both sides, joined by an in-process link
//! with a virtual clock (`oplog_tests::link`).

use std::path::Path;
use std::time::Duration;

use oplog_protocol::replica::MemoryReplica;
use oplog_protocol::session::{EndCode, Event, Role, Session, SessionConfig};
use oplog_protocol::{LogEntry, MemoryStore, Op};
use oplog_store::{Options, Store};
use oplog_tests::fixture::{assert_converged, insert_all, Author, NOW, START};
use oplog_tests::link::{run, run_from, LinkConfig};

fn open(path: &Path) -> Store {
    Store::open_with(path, Options::default().clock(|| NOW)).expect("open store")
}

/// A shared history of `base` entries, then `only_a` entries on `a` and `only_b` on `b`,
/// each side's on top of the shared heads (so the two sides branch).
fn diverged(dir: &Path, base: usize, only_a: usize, only_b: usize) -> (Store, Store) {
    let mut shared = Author::new(1, START);
    let common: Vec<LogEntry<Op>> = shared.write(base);
    let heads = shared.heads().to_vec();
    let a = open(&dir.join("a.redb"));
    let b = open(&dir.join("b.redb"));
    insert_all(&a, &common);
    insert_all(&b, &common);
    let mut wa = Author::new(2, shared.hlc()).on(heads.clone());
    insert_all(&a, &wa.write(only_a));
    let mut wb = Author::new(3, shared.hlc() + 500).on(heads);
    insert_all(&b, &wb.write(only_b));
    (a, b)
}

#[test]
fn two_sessions_converge_and_send_exactly_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = diverged(dir.path(), 5_000, 300, 700);
    let out = run(&a, &b, &SessionConfig::default(), LinkConfig::default());
    assert!(out.initiator.is_done(), "{:?}", out.initiator);
    assert!(out.responder.is_done(), "{:?}", out.responder);
    assert_converged(&a, &b);
    // entries move once each, in the turn that learns of them
    assert_eq!(out.initiator.entries_sent, 300);
    assert_eq!(out.responder.entries_sent, 700);
    assert_eq!(out.initiator.entries_received, 700);
    assert_eq!(out.responder.entries_received, 300);
    // both sides count the same traffic
    assert_eq!(out.initiator.bytes_sent, out.responder.bytes_received);
    assert_eq!(out.responder.bytes_sent, out.initiator.bytes_received);
    assert_eq!(out.initiator.round_trips(), out.responder.round_trips());
    println!(
        "5,000 shared, 300 + 700 apart: {} round trips, {} frames, overhead {} B, entries {} B",
        out.initiator.round_trips(),
        out.frames,
        out.initiator.overhead_bytes(),
        out.initiator.entry_bytes_sent + out.initiator.entry_bytes_received
    );

    // a second session finds nothing to do
    let again = run(&a, &b, &SessionConfig::default(), LinkConfig::default());
    assert!(again.initiator.is_done() && again.responder.is_done());
    assert_eq!(
        again.initiator.entries_sent + again.responder.entries_sent,
        0
    );
}

#[test]
fn time_to_converge_is_the_chain_of_turns_times_the_delay() {
    for rtt_ms in [1u64, 50, 200] {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = diverged(dir.path(), 2_000, 100, 100);
        let one_way = Duration::from_micros(rtt_ms * 500);
        let out = run(
            &a,
            &b,
            &SessionConfig::default(),
            LinkConfig {
                one_way,
                cut_after: None,
            },
        );
        assert!(out.initiator.is_done() && out.responder.is_done());
        assert_converged(&a, &b);
        // Every message, request and answer waits for the one before it; the two END frames
        // cross, adding one more delay.
        let r = out.initiator;
        let hops = r.messages_sent
            + r.messages_received
            + 2 * (r.ancestry_requests_sent + r.ancestry_requests_answered)
            + 1;
        assert_eq!(out.elapsed, one_way * u32::try_from(hops).unwrap());
        println!(
            "RTT {rtt_ms} ms: {} round trips, converged after {:?}",
            r.round_trips(),
            out.elapsed
        );
    }
}

#[test]
fn a_session_cut_at_every_frame_boundary_leaves_valid_stores_and_the_next_completes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (a, b) = diverged(dir.path(), 3_000, 400, 250);
        drop((a, b));
    }
    // how many frames an uncut session takes
    let total = {
        let probe = tempfile::tempdir().unwrap();
        for f in ["a.redb", "b.redb"] {
            std::fs::copy(dir.path().join(f), probe.path().join(f)).unwrap();
        }
        let (a, b) = (
            open(&probe.path().join("a.redb")),
            open(&probe.path().join("b.redb")),
        );
        run(&a, &b, &SessionConfig::default(), LinkConfig::default()).frames
    };
    assert!(
        total >= 6,
        "the session should take several frames, took {total}"
    );
    for cut in 0..total {
        let copy = tempfile::tempdir().unwrap();
        for f in ["a.redb", "b.redb"] {
            std::fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
        }
        let (a, b) = (
            open(&copy.path().join("a.redb")),
            open(&copy.path().join("b.redb")),
        );
        let out = run(
            &a,
            &b,
            &SessionConfig::default(),
            LinkConfig {
                one_way: Duration::ZERO,
                cut_after: Some(cut),
            },
        );
        for (side, r) in [("initiator", out.initiator), ("responder", out.responder)] {
            // a side may have completed if only the other side's END was lost
            assert!(
                r.end.is_some(),
                "cut after {cut}: the {side} never ended: {r:?}"
            );
        }
        assert!(
            !(out.initiator.is_done() && out.responder.is_done()),
            "cut after {cut} of {total} frames, yet both sides completed"
        );
        for s in [&a, &b] {
            let report = s.verify().unwrap();
            assert!(report.is_ok(), "cut after {cut}: {:?}", report.problems);
        }
        let next = run(&a, &b, &SessionConfig::default(), LinkConfig::default());
        assert!(
            next.initiator.is_done() && next.responder.is_done(),
            "cut after {cut}: the next session failed: {next:?}"
        );
        assert_converged(&a, &b);
    }
}

#[test]
fn held_back_entries_get_their_ancestry_in_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir.path().join("a.redb"));
    let b = open(&dir.path().join("b.redb"));
    let mut w = Author::new(1, START);
    let first = w.write(1_000);
    insert_all(&a, &first);
    insert_all(&b, &first);
    // a writes 50 more after the session's snapshots are taken; b already holds the last 10
    // of them (pushed to it, say), held back for want of the 40 before
    let (sa, sb) = (a.snapshot(), b.snapshot());
    let later = w.write(50);
    insert_all(&a, &later);
    let report = b.insert(later[40..].to_vec()).unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(b.missing().unwrap(), vec![later[39].hash]);

    let out = run_from(
        &a,
        sa,
        &b,
        sb,
        &SessionConfig::default(),
        LinkConfig::default(),
    );
    assert!(
        out.initiator.is_done() && out.responder.is_done(),
        "{out:?}"
    );
    assert_eq!(out.responder.ancestry_requests_sent, 1);
    assert_eq!(out.initiator.ancestry_requests_answered, 1);
    // the answer holds exactly the 40 entries b lacked
    assert_eq!(out.responder.entries_received, 40);
    assert!(b.missing().unwrap().is_empty());
    assert_converged(&a, &b);
}

#[test]
fn too_many_rounds_end_the_session_with_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = diverged(dir.path(), 20_000, 2_000, 2_000);
    let mut tight = SessionConfig::default();
    tight.reconcile.max_messages = 2;
    let out = run(&a, &b, &tight, LinkConfig::default());
    let ends = [out.initiator.end, out.responder.end];
    assert!(ends.contains(&Some(EndCode::Limit)), "{ends:?}");
    for s in [&a, &b] {
        assert!(s.verify().unwrap().is_ok());
    }
    // with the default budget the same stores converge
    let out = run(&a, &b, &SessionConfig::default(), LinkConfig::default());
    assert!(out.initiator.is_done() && out.responder.is_done());
    assert_converged(&a, &b);
}

/// Writes `v` as the spec's varint (LEB128, minimal).
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap() | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap());
}

/// An ENTRIES frame body (spec 9.2) holding `entries`.
fn entries_body(entries: &[LogEntry<Op>]) -> Vec<u8> {
    let mut body = vec![0x02];
    varint(&mut body, entries.len() as u64);
    for e in entries {
        let bytes = e.encode();
        varint(&mut body, bytes.len() as u64);
        body.extend_from_slice(&bytes);
    }
    body
}

#[test]
fn more_entries_in_one_turn_than_the_budget_end_with_a_limit() {
    let mut config = SessionConfig::default();
    config.reconcile.max_carried_keys = oplog_protocol::MIN_CARRIED_KEYS;
    let store: MemoryReplica<Op> = MemoryReplica::new();
    let now = std::time::Instant::now();
    let mut responder =
        Session::<Op, MemoryStore>::new(config, Role::Responder, MemoryStore::new(), now).unwrap();
    // one turn of 200 entries, then 57 more: one over the budget of 256
    let entries = Author::new(1, START).write(257);
    for (chunk, within) in [(&entries[..200], true), (&entries[200..], false)] {
        let body = entries_body(chunk);
        assert!(responder.handle_frame_len(u32::try_from(body.len()).unwrap()));
        responder.handle_frame(body, now);
        let mut applied = 0;
        while let Some(ev) = responder.poll_event() {
            if let Event::Apply(batch) = ev {
                applied += batch.len();
            }
        }
        // the frame over the budget is refused whole: nothing of it is applied
        assert_eq!(applied, if within { chunk.len() } else { 0 });
    }
    let end = responder.poll_transmit(&store, now).expect("an END frame");
    assert_eq!(&end[4..6], &[0x05, EndCode::Limit.to_u8()]);
    assert!(responder.is_finished());
    assert_eq!(responder.report().end, Some(EndCode::Limit));
}
