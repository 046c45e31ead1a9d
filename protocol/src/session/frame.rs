//! The frames of a session and of the other streams of a live connection on the wire (spec
//! 9.2, 9.9): a 4-byte big-endian length, a type byte, and the type's payload. Public as
//! [`crate::session::frame`] for drivers that run PUSH and standalone ancestry streams.

use crate::entry::MAX_ENTRY_BYTES;
use crate::wire::message::{put_varint, DecodeError, Reader};

use super::end::EndCode;

/// Bytes of the length header in front of every frame.
pub const FRAME_HEADER_LEN: usize = 4;

/// Most bytes of UTF-8 an END frame's reason may hold.
pub const MAX_REASON_BYTES: usize = 256;

/// Frame types (spec 9.2, 9.9): the first byte after the length.
pub mod kind {
    /// A reconciliation message in carried form (spec 8.12); the type byte doubles as the
    /// message's tag byte. As a stream's first frame: a session.
    pub const MESSAGE: u8 = 0x01;
    /// A batch of entries.
    pub const ENTRIES: u8 = 0x02;
    /// An ancestry request (spec 6.3). As a stream's first frame: a standalone fetch.
    pub const ANCESTRY_REQUEST: u8 = 0x03;
    /// An ancestry answer (spec 6.3).
    pub const ANCESTRY_ANSWER: u8 = 0x04;
    /// The end of a session or stream.
    pub const END: u8 = 0x05;
    /// Entries pushed unasked (spec 9.9), laid out as ENTRIES. As a stream's first frame: a
    /// push.
    pub const PUSH: u8 = 0x06;
}

/// A frame's type and payload as received, before the payload's own decoder runs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Frame<'a> {
    /// A reconciliation message: the whole frame body is the message (its tag byte is the
    /// frame type), so the caller takes the body itself.
    Message,
    /// The payload of an ENTRIES frame: the entries' bytes, each still to be decoded.
    Entries(Vec<&'a [u8]>),
    /// The payload of an ancestry request.
    AncestryRequest(&'a [u8]),
    /// The payload of an ancestry answer.
    AncestryAnswer(&'a [u8]),
    /// An END frame.
    End {
        /// Its code.
        code: EndCode,
        /// Its reason (UTF-8, at most [`MAX_REASON_BYTES`]).
        reason: String,
    },
    /// The payload of a PUSH frame (spec 9.9): the entries' bytes, each still to be decoded.
    Push(Vec<&'a [u8]>),
}

/// Why a frame was refused before its payload's own decoder ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame of zero bytes (it has no type byte).
    #[error("empty frame: every frame has at least its type byte")]
    Empty,
    /// The frame is longer than the receiver accepts.
    #[error("frame of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// The length the header announced.
        len: u64,
        /// The receiver's limit.
        limit: usize,
    },
    /// A type byte no frame has.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// The ENTRIES frame or END frame is malformed.
    #[error("malformed {what} frame: {detail}")]
    Malformed {
        /// Which frame.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl FrameError {
    fn malformed(what: &'static str, e: impl std::fmt::Display) -> Self {
        FrameError::Malformed {
            what,
            detail: e.to_string(),
        }
    }
}

/// Splits a frame body (the bytes after the length header) into its type and payload;
/// ENTRIES, PUSH and END payloads are decoded here.
///
/// # Errors
///
/// [`FrameError::Empty`], [`FrameError::UnknownType`], or [`FrameError::Malformed`] for an
/// ENTRIES, PUSH or END payload that breaks its layout.
pub fn parse(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let (&kind, payload) = body.split_first().ok_or(FrameError::Empty)?;
    Ok(match kind {
        kind::MESSAGE => Frame::Message,
        kind::ENTRIES => Frame::Entries(entries(payload, "ENTRIES")?),
        kind::PUSH => Frame::Push(entries(payload, "PUSH")?),
        kind::ANCESTRY_REQUEST => Frame::AncestryRequest(payload),
        kind::ANCESTRY_ANSWER => Frame::AncestryAnswer(payload),
        kind::END => {
            let (code, reason) = end(payload).map_err(|e| FrameError::malformed("END", e))?;
            Frame::End { code, reason }
        }
        other => return Err(FrameError::UnknownType(other)),
    })
}

/// `varint m (at least 1) || m × (varint len || entry)`, each `len` 1 to
/// [`MAX_ENTRY_BYTES`], nothing after (the payload of ENTRIES and PUSH, named `what`).
fn entries<'a>(payload: &'a [u8], what: &'static str) -> Result<Vec<&'a [u8]>, FrameError> {
    let bad = |e: DecodeError| FrameError::malformed(what, e);
    let mut r = Reader::new(payload);
    let m = r.varint("entry count").map_err(bad)?;
    if m == 0 {
        return Err(FrameError::malformed(
            what,
            "an entries frame holds at least one entry",
        ));
    }
    // every entry takes at least two bytes, so a count above that is a lie told cheaply
    if m > (payload.len() / 2) as u64 {
        return Err(FrameError::malformed(
            what,
            format!("{m} entries cannot fit in {} bytes", payload.len()),
        ));
    }
    let mut out = Vec::with_capacity(usize::try_from(m).unwrap_or(0));
    for _ in 0..m {
        let len = r.varint("entry length").map_err(bad)?;
        let size = usize::try_from(len)
            .ok()
            .filter(|s| (1..=MAX_ENTRY_BYTES).contains(s))
            .ok_or_else(|| {
                FrameError::malformed(
                    what,
                    format!("entry length {len} outside 1 to {MAX_ENTRY_BYTES}"),
                )
            })?;
        out.push(r.bytes(size, "entry").map_err(bad)?);
    }
    if !r.is_empty() {
        return Err(FrameError::malformed(
            what,
            format!("{} bytes after the last entry", r.remaining()),
        ));
    }
    Ok(out)
}

fn end(payload: &[u8]) -> Result<(EndCode, String), String> {
    let mut r = Reader::new(payload);
    let code = EndCode::from_u8(r.byte("end code").map_err(|e| e.to_string())?);
    let len = r.varint("reason length").map_err(|e| e.to_string())?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_REASON_BYTES)
        .ok_or_else(|| format!("reason of {len} bytes is over {MAX_REASON_BYTES}"))?;
    let reason = r.bytes(len, "reason").map_err(|e| e.to_string())?;
    let reason = std::str::from_utf8(reason)
        .map_err(|_| "the reason is not UTF-8".to_string())?
        .to_owned();
    if !r.is_empty() {
        return Err(format!("{} bytes after the reason", r.remaining()));
    }
    Ok((code, reason))
}

/// Starts a frame of type `kind`: room for the header, then the type byte.
pub(crate) fn start(kind: u8) -> Vec<u8> {
    let mut out = vec![0; FRAME_HEADER_LEN];
    out.push(kind);
    out
}

/// Writes the length header of a frame begun by [`start`].
pub(crate) fn seal(mut frame: Vec<u8>) -> Vec<u8> {
    let len = u32::try_from(frame.len() - FRAME_HEADER_LEN).unwrap_or(u32::MAX);
    frame[..FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    frame
}

/// A whole frame (length header included) of type `kind` around `payload`.
pub fn whole(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = start(kind);
    f.extend_from_slice(payload);
    seal(f)
}

/// A whole MESSAGE frame: the message's bytes already begin with its tag, the type byte.
pub(crate) fn message(bytes: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_HEADER_LEN + bytes.len());
    f.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    f.extend_from_slice(bytes);
    seal(f)
}

/// A whole ENTRIES frame holding `entries` (encoded entries, section 5.5).
pub(crate) fn entries_frame<'a>(entries: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    list_frame(kind::ENTRIES, entries)
}

/// A whole PUSH frame (spec 9.9) holding `entries` (encoded entries, section 5.5; at least
/// one, each 1 to [`MAX_ENTRY_BYTES`] bytes).
pub fn push_frame<'a>(entries: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    list_frame(kind::PUSH, entries)
}

/// A whole frame of type `kind` with the ENTRIES layout.
fn list_frame<'a>(kind: u8, entries: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut f = start(kind);
    put_varint(&mut f, entries.len() as u64);
    for e in entries {
        put_varint(&mut f, e.len() as u64);
        f.extend_from_slice(e);
    }
    seal(f)
}

/// A whole END frame; the reason is cut to [`MAX_REASON_BYTES`] at a character boundary.
pub fn end_frame(code: EndCode, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut f = start(kind::END);
    f.push(code.to_u8());
    put_varint(&mut f, cut as u64);
    f.extend_from_slice(&reason.as_bytes()[..cut]);
    seal(f)
}

/// Bytes an ENTRIES frame adds around one entry of `len` bytes at most: its length varint.
pub(crate) fn entry_overhead(len: usize) -> usize {
    let bits = 64 - (len as u64).leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}
