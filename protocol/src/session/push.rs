//! The entries of a PUSH frame (spec 9.9): what a receiver checks before it stores them.

use crate::entry::{verify_decoded, Action, Decoded, VerifiedEntry};
use crate::key::NodeId;

use super::end::EndCode;

/// Checks the entries of a PUSH frame from `sender` (the connection's remote endpoint id),
/// as parsed by [`frame::parse`](super::frame::parse) into
/// [`Frame::Push`](super::frame::Frame::Push), by checks 4 to 6 of spec 9.9 in this order:
/// every entry decodes (5.3), else END `04`; every entry is authored by `sender` (a node
/// pushes only its own entries), else END `01`; every entry verifies (5.6), else END `04`.
/// The first failure wins and nothing of the frame is to be stored.
///
/// The budget, length and layout checks (1 to 3) come before, from the frame itself; the
/// allowed authors and the insertion (7 and 8) are the store's.
///
/// # Errors
///
/// The END code and a reason naming the entry, for the first check that fails.
pub fn check_push<A: Action>(
    sender: NodeId,
    entries: &[&[u8]],
) -> Result<Vec<VerifiedEntry<A>>, (EndCode, String)> {
    let mut decoded = Vec::with_capacity(entries.len());
    for (i, bytes) in entries.iter().enumerate() {
        match Decoded::<A>::decode(bytes) {
            Ok(e) => decoded.push(e),
            Err(e) => {
                return Err((
                    EndCode::InvalidEntry,
                    format!("entry {i} does not decode: {e}"),
                ))
            }
        }
    }
    if let Some(e) = decoded.iter().find(|e| e.node_id != sender) {
        return Err((
            EndCode::Protocol,
            format!(
                "entry {} is authored by {}, not by the pushing node: a PUSH carries only the sender's own entries",
                e.hash, e.node_id
            ),
        ));
    }
    verify_decoded(decoded)
        .into_iter()
        .map(|v| {
            v.map_err(|bad| {
                (
                    EndCode::InvalidEntry,
                    format!("entry {} failed verification: {}", bad.hash, bad.error),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::frame::{self, Frame};
    use crate::{Hlc, LogEntry, ObjectId, Op, SigningKey};

    fn entry(seed: u8, hlc: u64) -> Vec<u8> {
        let put = Op::Put {
            bucket: "b".into(),
            key: "k".into(),
            object_id: ObjectId([seed; 32]),
        };
        LogEntry::sign(&SigningKey::from_bytes(&[seed; 32]), Hlc(hlc), put, vec![])
            .unwrap()
            .encode()
    }

    fn author(seed: u8) -> NodeId {
        NodeId(
            SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .to_bytes(),
        )
    }

    /// A PUSH frame round-trips through the frame codec, and its entries pass only for
    /// their author, each failure with its END code.
    #[test]
    fn push_frames_and_their_checks() {
        let entries = [entry(1, 10), entry(1, 11)];
        let f = frame::push_frame(entries.iter().map(Vec::as_slice));
        let Ok(Frame::Push(raw)) = frame::parse(&f[frame::FRAME_HEADER_LEN..]) else {
            panic!("not a PUSH frame");
        };
        assert_eq!(raw, [entries[0].as_slice(), entries[1].as_slice()]);
        assert_eq!(check_push::<Op>(author(1), &raw).unwrap().len(), 2);
        // someone else's entries
        assert_eq!(
            check_push::<Op>(author(2), &raw).unwrap_err().0,
            EndCode::Protocol
        );
        // a flipped signature byte: decodes, then fails verification
        let mut forged = entries[1].clone();
        *forged.last_mut().unwrap() ^= 1;
        let raw = [entries[0].as_slice(), forged.as_slice()];
        assert_eq!(
            check_push::<Op>(author(1), &raw).unwrap_err().0,
            EndCode::InvalidEntry
        );
        // an undecodable entry wins over the wrong author after it
        let raw = [&[0u8; 3][..], entries[0].as_slice()];
        assert_eq!(
            check_push::<Op>(author(2), &raw).unwrap_err().0,
            EndCode::InvalidEntry
        );
        // a PUSH with no entries is malformed
        assert!(frame::parse(&[frame::kind::PUSH, 0]).is_err());
    }
}
