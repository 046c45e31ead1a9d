//! `session::frame::parse` (spec 9.2, 9.9) on a frame body: never panics; ENTRIES, PUSH and
//! END frames that parse re-encode to the same body; the payload slices of the others are
//! the body after its type byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oplog_protocol::session::frame::{self, kind, Frame};

fuzz_target!(|data: &[u8]| {
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
            f[frame::FRAME_HEADER_LEN] = data[0];
            f
        }
        Frame::End { code, reason } => frame::end_frame(code, &reason),
        _ => return,
    };
    assert_eq!(
        &whole[frame::FRAME_HEADER_LEN..],
        data,
        "a parsed frame re-encodes to other bytes"
    );
});
