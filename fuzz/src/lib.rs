//! What the fuzz targets share: the carried-key split of the `message` target, and the
//! session driver of the `session` and `session_store` targets.
//!
//! A session target's input is a side and a list of steps:
//! - byte 0: bit 0 the role (0 initiator, 1 responder); the rest picks the transcript of
//!   `spec/vectors/session.json` whose side (store, snapshot, config) this side is;
//! - then steps, each an op byte and its operands (see [`Step`]).
//!
//! `fuzz/seed.sh` writes each transcript's peer frames as honest steps, so the corpus starts
//! from sessions that complete.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oplog_protocol::session::{Event, Prepared, Role, Session, SessionStore, FRAME_HEADER_LEN};
use oplog_protocol::RangeStore;
use oplog_protocol::{EntryKey, Hash, Hlc, LogEntry, Op, VerifiedEntry};
use oplog_tests::vectors::{Graph, SessionFile, SessionSideJson};

/// Most frames one side may send after one step before the target calls it unbounded: a
/// vector side holds a few dozen entries, so anything near this is a loop.
pub const MAX_FRAMES_PER_STEP: usize = 1_000;

/// Splits `data` into a carried key list and a message: byte 0 (mod 64) is the key count,
/// each key 40 bytes (HLC big-endian, hash); the rest is the message.
pub fn split_keys(data: &[u8]) -> (Vec<EntryKey>, &[u8]) {
    let Some((&n, mut rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let mut keys = Vec::new();
    for _ in 0..(n % 64) {
        let Some((k, tail)) = rest.split_first_chunk::<40>() else {
            break;
        };
        let (hlc, hash) = k.split_at(8);
        keys.push(EntryKey {
            hlc: Hlc(u64::from_be_bytes(hlc.try_into().unwrap_or_default())),
            hash: Hash(hash.try_into().unwrap_or_default()),
        });
        rest = tail;
    }
    (keys, rest)
}

/// One thing that happens to the session under test.
#[derive(Debug)]
pub enum Step<'a> {
    /// Op `0` / `1`, then a u16 big-endian length and that many bytes (fewer at the end of
    /// the input): an honest header (the body's real length) and the body, through
    /// `handle_frame` (`0`) or `handle_prepared` (`1`).
    Frame { body: &'a [u8], prepared: bool },
    /// Op `2`, then a u32 big-endian header value: a header that may lie; if accepted, up to
    /// that many of the following bytes (at most 64 KiB) are the body.
    Header { len: u32, body: &'a [u8] },
    /// Op `3`, then a byte `t`: `0` is the end of the peer's stream, else the clock moves
    /// `t × 4` seconds and `handle_timeout` runs.
    Time(u8),
}

/// Reads the steps of `data` (after byte 0).
pub fn steps(mut data: &[u8]) -> Vec<Step<'_>> {
    fn take<'a>(d: &mut &'a [u8], n: usize) -> &'a [u8] {
        let (a, b) = d.split_at(n.min(d.len()));
        *d = b;
        a
    }
    let mut out = Vec::new();
    while let Some((&op, rest)) = data.split_first() {
        data = rest;
        match op & 3 {
            0 | 1 => {
                let Some((len, rest)) = data.split_first_chunk::<2>() else {
                    break;
                };
                data = rest;
                let body = take(&mut data, usize::from(u16::from_be_bytes(*len)));
                out.push(Step::Frame {
                    body,
                    prepared: op & 3 == 1,
                });
            }
            2 => {
                let Some((len, rest)) = data.split_first_chunk::<4>() else {
                    break;
                };
                data = rest;
                let len = u32::from_be_bytes(*len);
                let n = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 16);
                let body = take(&mut data, n);
                out.push(Step::Header { len, body });
            }
            _ => {
                let Some((&t, rest)) = data.split_first() else {
                    break;
                };
                data = rest;
                out.push(Step::Time(t));
            }
        }
    }
    out
}

/// The session vectors, parsed once.
pub fn vectors() -> &'static (Graph, SessionFile) {
    static V: OnceLock<(Graph, SessionFile)> = OnceLock::new();
    V.get_or_init(|| {
        let f: SessionFile = serde_json::from_str(include_str!("../../spec/vectors/session.json"))
            .expect("session.json parses");
        let g = Graph::new(&f.graph).expect("session.json's graph decodes");
        (g, f)
    })
}

/// The role and the vector side byte 0 picks.
pub fn side(byte0: u8) -> (Role, &'static SessionSideJson) {
    let (_, f) = vectors();
    let t = &f.transcripts[usize::from(byte0 >> 1) % f.transcripts.len()];
    if byte0 & 1 == 0 {
        (Role::Initiator, &t.initiator)
    } else {
        (Role::Responder, &t.responder)
    }
}

/// Drives `session` (over `store`, applying with `apply`) through `steps`, checking after
/// each step that it sends at most [`MAX_FRAMES_PER_STEP`] frames, each with a true header
/// within `max_frame_bytes`, and at the end (after the peer's stream ends, if the steps left
/// it running) that it finished with exactly one `Done` or `Ended` event and sends nothing
/// more.
///
/// # Panics
/// When one of those properties breaks (the fuzz target's finding).
pub fn drive<R: RangeStore, S: SessionStore<Op>>(
    mut session: Session<Op, R>,
    store: &mut S,
    mut apply: impl FnMut(&mut S, Vec<VerifiedEntry<Op>>),
    steps: &[Step<'_>],
) {
    let start = Instant::now();
    let mut now = start;
    let mut ends = 0usize;
    let max_frame = session.config().max_frame_bytes;
    let mut pump = |session: &mut Session<Op, R>, store: &mut S, now: Instant| {
        let mut frames = 0;
        loop {
            while let Some(ev) = session.poll_event() {
                match ev {
                    Event::Apply(entries) => apply(store, entries),
                    Event::Done(_) | Event::Ended { .. } => {
                        ends += 1;
                        assert!(session.is_finished(), "an end event from a running session");
                    }
                    _ => {}
                }
            }
            let Some(f) = session.poll_transmit(&*store, now) else {
                break;
            };
            frames += 1;
            assert!(
                frames <= MAX_FRAMES_PER_STEP,
                "over {MAX_FRAMES_PER_STEP} frames after one step"
            );
            assert!(f.len() > FRAME_HEADER_LEN, "a frame without a type byte");
            let len = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
            assert_eq!(len, f.len() - FRAME_HEADER_LEN, "a frame whose header lies");
            assert!(
                len <= max_frame,
                "a frame of {len} bytes over the limit {max_frame}"
            );
        }
        assert!(ends <= 1, "two end events");
    };
    pump(&mut session, store, now);
    for step in steps {
        match *step {
            Step::Frame { body, prepared } => {
                let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
                if session.handle_frame_len(len) {
                    if prepared {
                        session.handle_prepared(Prepared::new(body.to_vec()), now);
                    } else {
                        session.handle_frame(body.to_vec(), now);
                    }
                }
            }
            Step::Header { len, body } => {
                if session.handle_frame_len(len) {
                    session.handle_frame(body.to_vec(), now);
                }
            }
            Step::Time(0) => session.handle_eof(now),
            Step::Time(t) => {
                now += Duration::from_secs(u64::from(t) * 4);
                session.handle_timeout(now);
            }
        }
        pump(&mut session, store, now);
    }
    if !session.is_finished() {
        session.handle_eof(now);
        pump(&mut session, store, now);
    }
    assert!(
        session.is_finished(),
        "still running after the peer's stream ended"
    );
    assert_eq!(
        ends, 1,
        "the session finished without exactly one end event"
    );
    assert!(
        session.poll_transmit(&*store, now).is_none(),
        "a finished session sends"
    );
    assert!(
        session.report().end.is_some(),
        "a finished session's report has no end code"
    );
}

/// Converts verified entries back to plain ones, for stores that take those.
pub fn plain(entries: Vec<VerifiedEntry<Op>>) -> Vec<LogEntry<Op>> {
    entries.into_iter().map(VerifiedEntry::into_inner).collect()
}
