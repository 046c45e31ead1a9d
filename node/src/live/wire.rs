//! The frames of the streams a live connection carries besides sessions (spec 9.9): the
//! first frame of a stream names the job, `06 PUSH` carries entries pushed unasked, and the
//! ancestry and END frames are those of spec 9.2 and 6.3.
//!
//! Frames are a 4-byte big-endian length and that many bytes, the first of which is the type.

use std::io;

use oplog_protocol::session::EndCode;
use oplog_protocol::MAX_ENTRY_BYTES;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Type byte of a session's reconciliation message: a stream that starts with it is a session.
pub const KIND_MESSAGE: u8 = 0x01;
/// Type byte of an ancestry request: a stream that starts with it is a standalone ancestry
/// fetch.
pub const KIND_ANCESTRY_REQUEST: u8 = 0x03;
/// Type byte of an ancestry answer.
pub const KIND_ANCESTRY_ANSWER: u8 = 0x04;
/// Type byte of an END frame.
pub const KIND_END: u8 = 0x05;
/// Type byte of a PUSH frame: entries pushed unasked, laid out as an ENTRIES frame's body.
pub const KIND_PUSH: u8 = 0x06;

/// Most bytes of an END frame's reason.
pub const MAX_END_REASON: usize = 256;

/// Why a PUSH frame (or the first frame of a stream) was refused before any entry was
/// decoded, with the END code it is answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushFrameError {
    /// The frame is empty, the count or a length is malformed, or bytes trail the entries.
    #[error("malformed PUSH frame: {0}")]
    Malformed(String),
}

impl PushFrameError {
    /// The END code a receiver answers this error with.
    pub fn end_code(&self) -> EndCode {
        match self {
            PushFrameError::Malformed(_) => EndCode::Protocol,
        }
    }
}

/// Appends `v` as a minimal LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads a minimal LEB128 varint (at most 10 bytes, no trailing zero groups).
fn take_varint(input: &mut &[u8], what: &str) -> Result<u64, String> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some((&byte, rest)) = input.split_first() else {
            return Err(format!("truncated in {what}"));
        };
        *input = rest;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return Err(format!("varint over 2^64 - 1 in {what}"));
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && bits == 0 {
                return Err(format!("non-minimal varint in {what}"));
            }
            return Ok(value);
        }
    }
    Err(format!("over-long varint in {what}"))
}

/// A whole frame (length header included) of type `kind` around `payload`.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len() + 1).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(5 + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

/// A whole PUSH frame (length header included) holding `entries` (each in its encoded form,
/// spec 5.5): `06 || varint m || m × (varint len || entry)`.
pub fn push_frame<'a>(entries: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut payload = Vec::new();
    put_varint(&mut payload, entries.len() as u64);
    for e in entries {
        put_varint(&mut payload, e.len() as u64);
        payload.extend_from_slice(e);
    }
    frame(KIND_PUSH, &payload)
}

/// Splits the payload of a PUSH frame (the frame body after its type byte) into its encoded
/// entries: `varint m` (at least 1) then `m × (varint len || entry)`, each `len` 1 to
/// [`MAX_ENTRY_BYTES`], nothing after.
pub fn parse_push(payload: &[u8]) -> Result<Vec<&[u8]>, PushFrameError> {
    let bad = PushFrameError::Malformed;
    let mut r = payload;
    let m = take_varint(&mut r, "entry count").map_err(bad)?;
    if m == 0 {
        return Err(bad("a PUSH frame holds at least one entry".into()));
    }
    if m > (payload.len() / 2) as u64 {
        return Err(bad(format!(
            "{m} entries cannot fit in {} bytes",
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(usize::try_from(m).unwrap_or(0));
    for _ in 0..m {
        let len = take_varint(&mut r, "entry length").map_err(bad)?;
        let size = usize::try_from(len)
            .ok()
            .filter(|s| (1..=MAX_ENTRY_BYTES).contains(s))
            .ok_or_else(|| bad(format!("entry length {len} outside 1 to {MAX_ENTRY_BYTES}")))?;
        if r.len() < size {
            return Err(bad("truncated in entry".into()));
        }
        let (entry, rest) = r.split_at(size);
        out.push(entry);
        r = rest;
    }
    if !r.is_empty() {
        return Err(bad(format!("{} bytes after the last entry", r.len())));
    }
    Ok(out)
}

/// A whole END frame; the reason is cut to [`MAX_END_REASON`] bytes at a character boundary.
pub fn end_frame(code: EndCode, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_END_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = vec![code.to_u8()];
    put_varint(&mut payload, cut as u64);
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    frame(KIND_END, &payload)
}

/// Decodes an END frame's payload: `code || varint len || reason (UTF-8, at most 256 bytes)`.
pub fn parse_end(payload: &[u8]) -> Result<(EndCode, String), String> {
    let Some((&code, mut r)) = payload.split_first() else {
        return Err("END frame without a code".into());
    };
    let len = take_varint(&mut r, "reason length")?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_END_REASON && *l <= r.len())
        .ok_or_else(|| format!("reason length {len} over {MAX_END_REASON} or the frame"))?;
    let (reason, rest) = r.split_at(len);
    if !rest.is_empty() {
        return Err(format!("{} bytes after the reason", rest.len()));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| "the reason is not UTF-8".to_string())?;
    Ok((EndCode::from_u8(code), reason.to_owned()))
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
    fn end_frames_round_trip_and_cut_long_reasons_on_a_character_boundary() {
        let f = end_frame(EndCode::Limit, "over budget");
        assert_eq!(&f[..4], &u32::try_from(f.len() - 4).unwrap().to_be_bytes());
        assert_eq!(f[4], KIND_END);
        assert_eq!(
            parse_end(&f[5..]).unwrap(),
            (EndCode::Limit, "over budget".to_string())
        );
        // 255 ASCII bytes then a 2-byte character: the cut falls before it
        let reason = format!("{}é", "x".repeat(255));
        let f = end_frame(EndCode::Protocol, &reason);
        let (_, got) = parse_end(&f[5..]).unwrap();
        assert_eq!(got, "x".repeat(255));
    }

    #[test]
    fn malformed_end_payloads_are_refused() {
        assert!(parse_end(&[]).is_err(), "no code");
        assert!(parse_end(&[0, 2, b'a']).is_err(), "reason cut short");
        assert!(parse_end(&[0, 1, b'a', 0]).is_err(), "trailing byte");
        assert!(parse_end(&[0, 1, 0xff]).is_err(), "not UTF-8");
        assert!(parse_end(&[0, 0x80, 0x02]).is_err(), "over 256 bytes");
        assert!(parse_end(&[0, 0x80, 0x00]).is_err(), "non-minimal varint");
        assert_eq!(
            parse_end(&[9, 0]).unwrap(),
            (EndCode::Shutdown, String::new())
        );
    }

    #[test]
    fn push_frames_split_back_into_their_entries() {
        let entries: [&[u8]; 2] = [&[1, 2, 3], &[4; 200]];
        let f = push_frame(entries.iter().copied());
        assert_eq!(f[4], KIND_PUSH);
        assert_eq!(parse_push(&f[5..]).unwrap(), entries.to_vec());
        assert!(parse_push(&f[5..f.len() - 1]).is_err(), "truncated");
    }
}
