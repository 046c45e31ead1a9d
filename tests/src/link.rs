//! Two [`Session`]s over real stores, joined by an in-process link with a virtual clock: every
//! frame arrives `one_way` after it was sent, so the session's time to converge is a count of
//! round trips times the RTT, with no socket and no sleeping. The link can cut the connection
//! after any number of frames, as a fault-injecting transport would.

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use oplog_protocol::session::{EndCode, Event, Role, Session, SessionConfig, SyncReport};
use oplog_protocol::{Op, RangeIndex};
use oplog_store::Store;

/// How the link between the two sessions behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkConfig {
    /// Delay of every frame, one way (half the RTT).
    pub one_way: Duration,
    /// Cut the connection once this many frames (both directions together) were delivered:
    /// nothing more arrives and both sides see their stream end.
    pub cut_after: Option<u64>,
}

/// What a run of the link produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The initiator's report.
    pub initiator: SyncReport,
    /// The responder's report.
    pub responder: SyncReport,
    /// Virtual time from the first frame sent to the last frame handled.
    pub elapsed: Duration,
    /// Frames delivered, both directions.
    pub frames: u64,
}

struct Side<'a> {
    session: Session<Op, RangeIndex>,
    store: &'a Store,
}

/// A frame in flight, ordered by arrival time (then by send order).
#[derive(PartialEq, Eq)]
struct InFlight {
    at: Duration,
    seq: u64,
    to: usize,
    frame: Vec<u8>,
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Runs one session with `a` initiating and `b` responding, each answering from a snapshot of
/// its store taken now, and each applying what it receives to its store.
///
/// # Panics
/// If a store fails, or if the sessions stall (neither has anything to send or deliver while
/// one is unfinished): both are bugs the calling test should see.
pub fn run(a: &Store, b: &Store, config: &SessionConfig, link: LinkConfig) -> Outcome {
    run_from(a, a.snapshot(), b, b.snapshot(), config, link)
}

/// [`run`] over snapshots taken earlier: what each store gains after its snapshot is not part
/// of the session's reconciliation (spec 8.1), though the session still reads it (entries to
/// send, ancestry answers).
///
/// # Panics
/// As [`run`].
pub fn run_from(
    a: &Store,
    a_snapshot: RangeIndex,
    b: &Store,
    b_snapshot: RangeIndex,
    config: &SessionConfig,
    link: LinkConfig,
) -> Outcome {
    let start = Instant::now();
    let mut sides = [
        Side {
            session: Session::new(config.clone(), Role::Initiator, a_snapshot, start)
                .expect("initiator starts"),
            store: a,
        },
        Side {
            session: Session::new(config.clone(), Role::Responder, b_snapshot, start)
                .expect("responder starts"),
            store: b,
        },
    ];
    let mut link_state = Link {
        queue: BinaryHeap::new(),
        seq: 0,
        one_way: link.one_way,
    };
    let mut delivered = 0u64;
    let mut now = Duration::ZERO;
    link_state.flush(&mut sides[0], 0, now, start);
    while !sides.iter().all(|s| s.session.is_finished()) {
        let f = link_state
            .queue
            .pop()
            .expect("sessions stalled: nothing in flight and not finished");
        now = f.at;
        if link.cut_after.is_some_and(|n| delivered >= n) {
            // the connection breaks: nothing more arrives, both sides see their stream end
            for side in &mut sides {
                side.session.handle_eof(start + now);
                drain(side);
            }
            break;
        }
        delivered += 1;
        let side = &mut sides[f.to];
        let len = u32::from_be_bytes([f.frame[0], f.frame[1], f.frame[2], f.frame[3]]);
        if side.session.handle_frame_len(len) {
            side.session
                .handle_frame(f.frame[4..].to_vec(), start + now);
        }
        link_state.flush(side, f.to, now, start);
    }
    let [a, b] = sides;
    Outcome {
        initiator: a.session.report(),
        responder: b.session.report(),
        elapsed: now,
        frames: delivered,
    }
}

/// Applies one side's events to its store.
fn drain(side: &mut Side<'_>) {
    while let Some(ev) = side.session.poll_event() {
        if let Event::Apply(entries) = ev {
            if let Err(e) = side.store.insert_verified(entries) {
                side.session
                    .close(EndCode::Internal, &format!("store failed: {e}"));
            }
        }
    }
}

/// The frames in flight.
struct Link {
    queue: BinaryHeap<InFlight>,
    seq: u64,
    one_way: Duration,
}

impl Link {
    /// After side `i` handled input: apply its events, then send what it has.
    fn flush(&mut self, side: &mut Side<'_>, i: usize, now: Duration, start: Instant) {
        loop {
            drain(side);
            let Some(frame) = side.session.poll_transmit(side.store, start + now) else {
                break;
            };
            self.seq += 1;
            self.queue.push(InFlight {
                at: now + self.one_way,
                seq: self.seq,
                to: 1 - i,
                frame,
            });
        }
        drain(side);
    }
}
