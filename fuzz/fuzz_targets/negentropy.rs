//! The Negentropy V1 decoder (`oplog_protocol::negentropy::decode`): never panics; whatever
//! decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oplog_protocol::negentropy;

fuzz_target!(|data: &[u8]| {
    if let Ok(parts) = negentropy::decode(data) {
        let again = negentropy::encode(&parts).expect("decoded parts encode");
        assert_eq!(
            again, data,
            "a decoded Negentropy message re-encodes to other bytes"
        );
    }
});
