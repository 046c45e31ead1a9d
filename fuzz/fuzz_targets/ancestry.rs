//! Ancestry requests and answers (spec 6.3, `oplog_protocol::wire`): never panic; whatever
//! decodes re-encodes to the same bytes. The answer's `limit` is the input's first two bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oplog_protocol::wire::{AncestryAnswer, AncestryRequest};

fuzz_target!(|data: &[u8]| {
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
});
