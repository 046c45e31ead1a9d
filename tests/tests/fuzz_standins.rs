//! Proptest stand-ins for the cargo-fuzz targets of `fuzz/` (see `tests/README.md`), so that
//! `cargo test` on stable covers the same properties without nightly or libFuzzer:
//!
//! - every decoder (entries, oplog-v1 messages inline and carried, Negentropy V1, ancestry
//!   requests and answers, session frames) never panics on random bytes or on the vector
//!   files' byte strings with bytes flipped, inserted or deleted, and whatever it accepts
//!   re-encodes to exactly the bytes it was given;
//! - a `Session` (either role, each side of each `session.json` transcript) fed random or
//!   mutated frames, lying headers, timeouts and the end of the stream never panics, sends at
//!   most a bounded number of well-formed frames within its frame limit per step, and ends
//!   with exactly one end event, after which it sends nothing.
//!
//! The session input layout is the fuzz crate's (`fuzz/src/lib.rs`): byte 0 picks the side
//! (bit 0: responder) and transcript, then steps `00|01 len:u16 body` (an honest frame through
//! `handle_frame` / `handle_prepared`), `02 len:u32 body` (a header that may lie), `03 t`
//! (`t = 0`: end of stream; else the clock moves `4 t` seconds).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oplog_protocol::negentropy;
use oplog_protocol::session::frame::{self, kind, Frame};
use oplog_protocol::session::{Event, Prepared, Role, FRAME_HEADER_LEN};
use oplog_protocol::wire::{message, AncestryAnswer, AncestryRequest};
use oplog_protocol::{EntryKey, Hash, Hlc, LogEntry, Op, VerifiedEntry};
use oplog_tests::vectors::{vectors_dir, Graph, SessionFile, SessionSide};
use proptest::prelude::*;
use serde_json::Value;

/// Most frames a side may send after one step (a vector side holds a few dozen entries).
const MAX_FRAMES_PER_STEP: usize = 1_000;

fn json(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Every string under `path` (a `/`-separated list of keys, `*` for each array element) of a
/// vector file, hex-decoded, with `prefix` in front.
fn hexes(v: &Value, path: &str, prefix: &[u8]) -> Vec<Vec<u8>> {
    fn walk<'a>(v: &'a Value, keys: &[&str], out: &mut Vec<&'a str>) {
        match keys.split_first() {
            None => {
                if let Some(s) = v.as_str() {
                    out.push(s);
                }
            }
            Some((&"*", rest)) => {
                for x in v.as_array().into_iter().flatten() {
                    walk(x, rest, out);
                }
            }
            Some((k, rest)) => {
                if let Some(x) = v.get(k) {
                    walk(x, rest, out);
                }
            }
        }
    }
    let keys: Vec<&str> = path.split('/').collect();
    let mut strs = Vec::new();
    walk(v, &keys, &mut strs);
    strs.into_iter()
        .map(|s| {
            let mut b = prefix.to_vec();
            b.extend(hex::decode(s).unwrap_or_else(|e| panic!("{path}: bad hex {s}: {e}")));
            b
        })
        .collect()
}

struct Seeds {
    entries: Vec<Vec<u8>>,
    messages: Vec<Vec<u8>>,
    negentropy: Vec<Vec<u8>>,
    ancestry: Vec<Vec<u8>>,
    frames: Vec<Vec<u8>>,
    sessions: Vec<Vec<u8>>,
}

fn seeds() -> &'static Seeds {
    static S: OnceLock<Seeds> = OnceLock::new();
    S.get_or_init(|| {
        let entries_json = json("entries.json");
        let dag = json("dag.json");
        let session = json("session.json");
        let mut entries = hexes(&entries_json, "valid/*/encoded_hex", &[]);
        entries.extend(hexes(&entries_json, "invalid/*/encoded_hex", &[]));
        entries.extend(hexes(&json("limits.json"), "cases/*/encoded_hex", &[]));
        entries.extend(hexes(&session, "graph/entries/*/encoded_hex", &[]));
        let messages_json = json("messages.json");
        let mut messages = hexes(&messages_json, "valid/*/hex", &[]);
        messages.extend(hexes(&messages_json, "invalid/*/hex", &[]));
        messages.extend(hexes(
            &json("transcripts.json"),
            "transcripts/*/messages/*/hex",
            &[],
        ));
        let neg = json("negentropy.json");
        let mut negentropy = hexes(&neg, "valid/*/hex", &[]);
        negentropy.extend(hexes(&neg, "invalid/*/hex", &[]));
        negentropy.extend(hexes(&neg, "transcripts/*/messages/*/hex", &[]));
        let mut ancestry = hexes(&dag, "ancestry/*/request_hex", &[]);
        ancestry.extend(hexes(&dag, "ancestry/*/answer_hex", &[0xff, 0xff]));
        ancestry.extend(hexes(&dag, "ancestry_invalid/*/hex", &[]));
        let mut frames = hexes(&session, "frames/*/hex", &[]);
        frames.extend(hexes(&session, "transcripts/*/frames/*/hex", &[]));
        let frames: Vec<Vec<u8>> = frames
            .into_iter()
            .map(|f| f[FRAME_HEADER_LEN..].to_vec())
            .collect();
        // carried-form MESSAGE frames, behind a 00 byte (no carried keys)
        messages.extend(
            frames
                .iter()
                .filter(|f| f.first() == Some(&kind::MESSAGE))
                .map(|f| [&[0u8][..], f].concat()),
        );
        Seeds {
            entries,
            messages,
            negentropy,
            ancestry,
            frames,
            sessions: session_seeds(&vectors().1),
        }
    })
}

/// Each side of each transcript fed its peer's frames as honest steps, as `fuzz/seed.sh`
/// writes them.
fn session_seeds(f: &SessionFile) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, t) in f.transcripts.iter().enumerate() {
        for (bit, side) in [(0u8, "initiator"), (1, "responder")] {
            let mut input = vec![u8::try_from(i).unwrap() * 2 + bit];
            for fr in t.frames.iter().filter(|fr| fr.from != side) {
                let body = &hex::decode(&fr.hex).unwrap()[FRAME_HEADER_LEN..];
                input.push(0);
                input.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
                input.extend(body);
            }
            out.push(input);
        }
    }
    out
}

fn vectors() -> &'static (Graph, SessionFile) {
    static V: OnceLock<(Graph, SessionFile)> = OnceLock::new();
    V.get_or_init(|| {
        let text = std::fs::read_to_string(vectors_dir().join("session.json")).unwrap();
        let f: SessionFile = serde_json::from_str(&text).unwrap();
        (Graph::new(&f.graph).unwrap(), f)
    })
}

// ---------------------------------------------------------------------------------------------
// the properties (the fuzz targets' bodies)

fn entry_roundtrips(data: &[u8]) {
    if let Ok(entry) = LogEntry::<Op>::decode(data) {
        assert_eq!(
            entry.encode(),
            data,
            "a decoded entry re-encodes to other bytes"
        );
        assert_eq!(entry.hash.0, *blake3::hash(&entry.body()).as_bytes());
        let _ = entry.verify();
    }
}

fn split_keys(data: &[u8]) -> (Vec<EntryKey>, &[u8]) {
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
            hlc: Hlc(u64::from_be_bytes(hlc.try_into().unwrap())),
            hash: Hash(hash.try_into().unwrap()),
        });
        rest = tail;
    }
    (keys, rest)
}

fn message_roundtrips(data: &[u8]) {
    if let Ok(parts) = message::decode(data) {
        let again = message::encode(&parts).expect("decoded parts encode");
        assert_eq!(again, data, "a decoded message re-encodes to other bytes");
    }
    let (carried, bytes) = split_keys(data);
    if let Ok(parts) = message::decode_carried(bytes, &carried) {
        let (again, keys) = message::encode_carried(&parts).expect("decoded parts encode");
        assert_eq!(
            again, bytes,
            "a decoded carried message re-encodes to other bytes"
        );
        assert_eq!(
            keys, carried,
            "a decoded carried message re-encodes to other keys"
        );
    }
}

fn negentropy_roundtrips(data: &[u8]) {
    if let Ok(parts) = negentropy::decode(data) {
        let again = negentropy::encode(&parts).expect("decoded parts encode");
        assert_eq!(
            again, data,
            "a decoded Negentropy message re-encodes to other bytes"
        );
    }
}

fn ancestry_roundtrips(data: &[u8]) {
    if let Ok(req) = AncestryRequest::decode(data) {
        assert_eq!(
            req.encode(),
            data,
            "a decoded request re-encodes to other bytes"
        );
    }
    if let Some((limit, rest)) = data.split_first_chunk::<2>() {
        let limit = u32::from(u16::from_be_bytes(*limit));
        if let Ok(answer) = AncestryAnswer::decode(rest, limit) {
            assert_eq!(
                answer.encode(),
                rest,
                "a decoded answer re-encodes to other bytes"
            );
        }
    }
}

fn frame_roundtrips(data: &[u8]) {
    let Ok(f) = frame::parse(data) else { return };
    let whole = match f {
        Frame::Message => {
            assert_eq!(data[0], kind::MESSAGE);
            return;
        }
        Frame::AncestryRequest(p) | Frame::AncestryAnswer(p) => {
            assert_eq!(p, &data[1..]);
            return;
        }
        Frame::Entries(list) | Frame::Push(list) => {
            let mut f = frame::push_frame(list.iter().copied());
            f[FRAME_HEADER_LEN] = data[0];
            f
        }
        Frame::End { code, reason } => frame::end_frame(code, &reason),
        _ => return,
    };
    assert_eq!(
        &whole[FRAME_HEADER_LEN..],
        data,
        "a parsed frame re-encodes to other bytes"
    );
}

/// Drives one side of a vector transcript through the steps of `data` (module docs).
fn session_holds(data: &[u8]) {
    let Some((&b0, mut rest)) = data.split_first() else {
        return;
    };
    let (graph, file) = vectors();
    let t = &file.transcripts[usize::from(b0 >> 1) % file.transcripts.len()];
    let (role, side) = if b0 & 1 == 0 {
        (Role::Initiator, &t.initiator)
    } else {
        (Role::Responder, &t.responder)
    };
    let mut s = SessionSide::new(graph, side, role).expect("vector side starts");
    let max_frame = s.session.config().max_frame_bytes;
    let mut now = Instant::now();
    let mut ends = 0;
    let mut pump = |s: &mut SessionSide, now: Instant| {
        let mut frames = 0;
        loop {
            while let Some(ev) = s.session.poll_event() {
                match ev {
                    Event::Apply(entries) => {
                        let entries = entries.into_iter().map(VerifiedEntry::into_inner);
                        s.store.insert(entries, u64::MAX, Duration::ZERO, None);
                    }
                    Event::Done(_) | Event::Ended { .. } => {
                        ends += 1;
                        assert!(
                            s.session.is_finished(),
                            "an end event from a running session"
                        );
                    }
                    _ => {}
                }
            }
            let Some(f) = s.session.poll_transmit(&s.store, now) else {
                break;
            };
            frames += 1;
            assert!(
                frames <= MAX_FRAMES_PER_STEP,
                "unbounded output after one step"
            );
            let len = u32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
            assert_eq!(len, f.len() - FRAME_HEADER_LEN, "a frame whose header lies");
            assert!(len >= 1 && len <= max_frame, "a frame of {len} bytes");
        }
        assert!(ends <= 1, "two end events");
    };
    let take = |d: &mut &[u8], n: usize| {
        let (head, tail) = d.split_at(n.min(d.len()));
        *d = tail;
        head.to_vec()
    };
    pump(&mut s, now);
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op & 3 {
            0 | 1 => {
                let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                    break;
                };
                rest = tail;
                let body = take(&mut rest, usize::from(u16::from_be_bytes(*len)));
                if s.session
                    .handle_frame_len(u32::try_from(body.len()).unwrap())
                {
                    if op & 3 == 1 {
                        s.session.handle_prepared(Prepared::new(body), now);
                    } else {
                        s.session.handle_frame(body, now);
                    }
                }
            }
            2 => {
                let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                    break;
                };
                rest = tail;
                let len = u32::from_be_bytes(*len);
                if s.session.handle_frame_len(len) {
                    let body = take(&mut rest, (len as usize).min(1 << 16));
                    s.session.handle_frame(body, now);
                }
            }
            _ => {
                let Some((&t, tail)) = rest.split_first() else {
                    break;
                };
                rest = tail;
                if t == 0 {
                    s.session.handle_eof(now);
                } else {
                    now += Duration::from_secs(u64::from(t) * 4);
                    s.session.handle_timeout(now);
                }
            }
        }
        pump(&mut s, now);
    }
    if !s.session.is_finished() {
        s.session.handle_eof(now);
        pump(&mut s, now);
    }
    assert!(
        s.session.is_finished(),
        "still running after the peer's stream ended"
    );
    assert_eq!(
        ends, 1,
        "the session finished without exactly one end event"
    );
    assert!(
        s.session.poll_transmit(&s.store, now).is_none(),
        "a finished session sends"
    );
}

// ---------------------------------------------------------------------------------------------
// inputs

/// One edit of a byte string: flip a bit, insert a byte, delete a byte, or overwrite one.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Set(usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
    ]
}

fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = bytes.len();
        match *e {
            Edit::Flip(i, b) if n > 0 => bytes[i % n] ^= 1 << b,
            Edit::Insert(i, b) => bytes.insert(i % (n + 1), b),
            Edit::Delete(i) if n > 0 => {
                bytes.remove(i % n);
            }
            Edit::Set(i, b) if n > 0 => bytes[i % n] = b,
            _ => {}
        }
    }
    bytes
}

/// A vector byte string of `pick` with 1 to 4 edits.
fn mutated(pick: fn(&Seeds) -> &Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(edit(), 1..5),
    )
        .prop_map(move |(i, edits)| {
            let list = pick(seeds());
            mutate(list[i.index(list.len())].clone(), &edits)
        })
}

fn random() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn entry_decoder_random(data in random()) { entry_roundtrips(&data) }
    #[test]
    fn entry_decoder_mutated(data in mutated(|s| &s.entries)) { entry_roundtrips(&data) }

    #[test]
    fn message_decoders_random(data in random()) { message_roundtrips(&data) }
    #[test]
    fn message_decoders_mutated(data in mutated(|s| &s.messages)) { message_roundtrips(&data) }

    #[test]
    fn negentropy_decoder_random(data in random()) { negentropy_roundtrips(&data) }
    #[test]
    fn negentropy_decoder_mutated(data in mutated(|s| &s.negentropy)) { negentropy_roundtrips(&data) }

    #[test]
    fn ancestry_decoders_random(data in random()) { ancestry_roundtrips(&data) }
    #[test]
    fn ancestry_decoders_mutated(data in mutated(|s| &s.ancestry)) { ancestry_roundtrips(&data) }

    #[test]
    fn frame_parser_random(data in random()) { frame_roundtrips(&data) }
    #[test]
    fn frame_parser_mutated(data in mutated(|s| &s.frames)) { frame_roundtrips(&data) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn session_random_steps(data in random()) { session_holds(&data) }
    #[test]
    fn session_mutated_transcripts(data in mutated(|s| &s.sessions)) { session_holds(&data) }
}

/// The unmutated seeds hold the properties too, and every session seed is a transcript side
/// that completes (so the mutated ones start from sessions that get somewhere).
#[test]
fn seeds_hold() {
    let s = seeds();
    assert!(s.entries.len() > 20 && s.messages.len() > 20 && s.frames.len() > 10);
    s.entries.iter().for_each(|d| entry_roundtrips(d));
    s.messages.iter().for_each(|d| message_roundtrips(d));
    s.negentropy.iter().for_each(|d| negentropy_roundtrips(d));
    s.ancestry.iter().for_each(|d| ancestry_roundtrips(d));
    s.frames.iter().for_each(|d| frame_roundtrips(d));
    s.sessions.iter().for_each(|d| session_holds(d));
}
