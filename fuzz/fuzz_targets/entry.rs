//! `LogEntry::<Op>::decode` on arbitrary bytes: never panics; whatever decodes re-encodes to
//! the same bytes and has the hash of its body; `verify` never panics on it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oplog_protocol::{LogEntry, Op};

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = LogEntry::<Op>::decode(data) {
        assert_eq!(
            entry.encode(),
            data,
            "a decoded entry re-encodes to other bytes"
        );
        assert_eq!(entry.hash.0, *blake3_of_body(&entry).as_bytes());
        let _ = entry.verify();
    }
});

fn blake3_of_body(entry: &LogEntry<Op>) -> blake3::Hash {
    blake3::hash(&entry.body())
}
