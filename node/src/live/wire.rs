//! The frames of the streams a live connection carries besides sessions (spec 9.9), in the
//! protocol's own codec ([`oplog_protocol::session::frame`]: the first frame of a stream names
//! the job, `06 PUSH` carries entries pushed unasked, and the ancestry and END frames are those
//! of spec 9.2 and 6.3), and reading and writing them on a stream.
//!
//! Frames are a 4-byte big-endian length and that many bytes, the first of which is the type.

use std::io;

use oplog_protocol::session::frame::{self as codec, Frame};
use oplog_protocol::session::EndCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use oplog_protocol::session::frame::kind::{
    ANCESTRY_ANSWER as KIND_ANCESTRY_ANSWER, ANCESTRY_REQUEST as KIND_ANCESTRY_REQUEST,
    END as KIND_END, MESSAGE as KIND_MESSAGE, PUSH as KIND_PUSH,
};
pub use oplog_protocol::session::frame::{end_frame, push_frame, whole as frame};
pub use oplog_protocol::session::MAX_REASON_BYTES as MAX_END_REASON;

/// Decodes an END frame's payload (the frame body after its type byte):
/// `code || varint len || reason (UTF-8, at most 256 bytes)`.
///
/// # Errors
///
/// What is malformed, as the protocol's frame decoder says it.
pub fn parse_end(payload: &[u8]) -> Result<(EndCode, String), String> {
    let mut body = Vec::with_capacity(payload.len() + 1);
    body.push(KIND_END);
    body.extend_from_slice(payload);
    match codec::parse(&body) {
        Ok(Frame::End { code, reason }) => Ok((code, reason)),
        Ok(other) => Err(format!("not an END frame: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// What [`read_frame`] found.
#[derive(Debug)]
pub(crate) enum ReadFrame {
    /// A frame's body (type byte first).
    Body(Vec<u8>),
    /// The stream ended cleanly before a header.
    Eof,
    /// The header announced 0 bytes or more than the limit (the body is left unread).
    BadLength(u32),
}

/// Reads one frame of at most `max` bytes.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    recv: &mut R,
    max: usize,
) -> io::Result<ReadFrame> {
    let mut header = [0u8; 4];
    match recv.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(ReadFrame::Eof),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header);
    let Some(size) = usize::try_from(len).ok().filter(|&n| n > 0 && n <= max) else {
        return Ok(ReadFrame::BadLength(len));
    };
    let mut body = vec![0u8; size];
    recv.read_exact(&mut body).await?;
    Ok(ReadFrame::Body(body))
}

/// Writes a whole frame.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    send: &mut W,
    frame: &[u8],
) -> io::Result<()> {
    send.write_all(frame).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_payloads_decode_with_the_protocol_codec() {
        let f = end_frame(EndCode::Limit, "over budget");
        assert_eq!(f[4], KIND_END);
        assert_eq!(
            parse_end(&f[5..]).unwrap(),
            (EndCode::Limit, "over budget".to_string())
        );
        assert!(parse_end(&[]).is_err(), "no code");
        assert!(parse_end(&[0, 2, b'a']).is_err(), "reason cut short");
        assert!(parse_end(&[0, 1, b'a', 0]).is_err(), "trailing byte");
        assert!(parse_end(&[0, 1, 0xff]).is_err(), "not UTF-8");
    }
}
