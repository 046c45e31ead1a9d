//! oplog-v1 reconciliation messages (spec 8.3, 8.12): `wire::message::decode` on the input,
//! and `decode_carried` on the input's tail with a carried key list taken from its head.
//! Never panics; whatever decodes re-encodes (`encode`, `encode_carried`) to the same bytes
//! and the same carried keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oplog_protocol::wire::message;

fuzz_target!(|data: &[u8]| {
    if let Ok(parts) = message::decode(data) {
        let again = message::encode(&parts).expect("decoded parts encode");
        assert_eq!(again, data, "a decoded message re-encodes to other bytes");
    }
    let (carried, bytes) = oplog_fuzz::split_keys(data);
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
});
