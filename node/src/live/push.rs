//! PUSH streams (spec 9.9): the receiver's rules ([`receive_push`], pure over a store, which
//! the conformance vectors replay) and both ends of a PUSH stream over QUIC.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use oplog_protocol::replica::{InsertError, InsertOutcome};
use oplog_protocol::session::frame::{self as codec, Frame};
use oplog_protocol::session::{check_push, EndCode, SessionStore};
use oplog_protocol::wire::{AncestryAnswer, AncestryRequest, MAX_HAVES, MAX_WANTS};
use oplog_protocol::{Action, Hash, LogEntry, NodeId};
use oplog_store::Store;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::wire::{
    end_frame, frame, parse_end, read_frame, write_frame, ReadFrame, KIND_ANCESTRY_ANSWER,
    KIND_ANCESTRY_REQUEST, KIND_END,
};

/// What a receiver made of one PUSH frame ([`receive_push`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushVerdict {
    /// The END code the receiver answers with once the stream is over: [`EndCode::Done`]
    /// unless the frame broke a rule.
    pub code: EndCode,
    /// Why, when `code` is not `Done`.
    pub reason: String,
    /// Entries the push applied (pushed ones and held-back ones they released), in
    /// application order.
    pub applied: Vec<Hash>,
    /// Pushed entries now held back (their parents are not all applied here).
    pub held_back: Vec<Hash>,
    /// The parents those held-back entries wait for, ascending, at most
    /// [`MAX_WANTS`]: the wants of the one ancestry request the receiver sends (none if
    /// empty).
    pub want: Vec<Hash>,
}

impl PushVerdict {
    fn refuse(code: EndCode, reason: impl Into<String>) -> Self {
        PushVerdict {
            code,
            reason: reason.into(),
            applied: Vec::new(),
            held_back: Vec::new(),
            want: Vec::new(),
        }
    }
}

/// Applies one PUSH frame from `sender` to `store` by the rules of spec 9.9, in this order:
///
/// 1. `frame` is the whole frame (4-byte length header first). A length of 0 is END
///    `01 Protocol`, one over `max_frame_bytes` (or not matching the bytes given) END
///    `02 FrameTooLarge`; a type byte other than `06`, a count of 0, a malformed length or
///    trailing bytes END `01`.
/// 2. Every entry must decode and verify (hash, signature, structure): else END
///    `04 InvalidEntry`, and nothing of the frame is applied.
/// 3. Every entry must be authored by `sender` (a node pushes only its own appends): else
///    END `01`, nothing applied.
/// 4. The sender must be an allowed author of `store`: else END `05 Refused`, nothing
///    applied.
/// 5. The entries are inserted (spec 6.1). An entry refused for its parent order is END
///    `04` (the others stay as inserted); held-back entries make the verdict's `want`.
///
/// `Err` only when the store itself failed.
pub fn receive_push<A: Action>(
    store: &Store<A>,
    sender: NodeId,
    frame: &[u8],
    max_frame_bytes: usize,
) -> Result<PushVerdict, oplog_store::Error> {
    let Some((header, body)) = frame.split_first_chunk::<4>() else {
        return Ok(PushVerdict::refuse(
            EndCode::Protocol,
            "frame shorter than its length header",
        ));
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len == 0 {
        return Ok(PushVerdict::refuse(EndCode::Protocol, "empty frame"));
    }
    if len > max_frame_bytes {
        return Ok(PushVerdict::refuse(
            EndCode::FrameTooLarge,
            format!("frame of {len} bytes is over the limit of {max_frame_bytes}"),
        ));
    }
    if len != body.len() {
        return Ok(PushVerdict::refuse(
            EndCode::Protocol,
            format!("the header announces {len} bytes but {} follow", body.len()),
        ));
    }
    receive_push_body(store, sender, body)
}

/// [`receive_push`] on a frame body already read (type byte first, length checked).
pub(crate) fn receive_push_body<A: Action>(
    store: &Store<A>,
    sender: NodeId,
    body: &[u8],
) -> Result<PushVerdict, oplog_store::Error> {
    let raw = match codec::parse(body) {
        Ok(Frame::Push(raw)) => raw,
        Ok(_) => {
            return Ok(PushVerdict::refuse(
                EndCode::Protocol,
                format!("expected a PUSH frame (06), got type {:#04x}", body[0]),
            ))
        }
        Err(e) => return Ok(PushVerdict::refuse(EndCode::Protocol, e.to_string())),
    };
    let verified = match check_push::<A>(sender, &raw) {
        Ok(verified) => verified,
        Err((code, reason)) => return Ok(PushVerdict::refuse(code, reason)),
    };
    if store
        .allowed_authors()
        .is_some_and(|allowed| !allowed.contains(&sender))
    {
        return Ok(PushVerdict::refuse(
            EndCode::Refused,
            format!("author {sender} is not an allowed member of this log"),
        ));
    }
    let report = store.insert_verified(verified)?;
    let mut verdict = PushVerdict::refuse(EndCode::Done, "");
    let mut want = BTreeSet::new();
    for (hash, outcome) in &report.outcomes {
        match outcome {
            InsertOutcome::HeldBack { missing } => {
                verdict.held_back.push(*hash);
                want.extend(missing.iter().copied());
            }
            InsertOutcome::Rejected(InsertError::NotAllowed(author)) => {
                verdict.code = EndCode::Refused;
                verdict.reason = format!("author {author} is not an allowed member of this log");
            }
            // Check 8 of spec 9.9: only an entry refused for its parents' order (or for a
            // refused ancestor) makes the push invalid. An entry the held-back or deferred
            // caps turned away is not the pusher's fault: the push is accepted and
            // anti-entropy fetches the entry again once its ancestry or its time comes.
            InsertOutcome::Rejected(
                e @ (InsertError::ParentOrder(_)
                | InsertError::AncestorRejected(_)
                | InsertError::Invalid(_)),
            ) if verdict.code == EndCode::Done => {
                verdict.code = EndCode::InvalidEntry;
                verdict.reason = format!("entry {hash} refused: {e}");
            }
            _ => {}
        }
    }
    verdict.applied = report.applied;
    verdict.want = want.into_iter().take(MAX_WANTS).collect();
    Ok(verdict)
}

/// Budgets of one PUSH stream, from the session configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamBudget {
    /// Largest frame read or written.
    pub max_frame_bytes: usize,
    /// Longest wait for the peer's next frame.
    pub idle: Duration,
    /// The `limit` of the one ancestry request a receiver sends.
    pub ancestry_limit: u32,
    /// Visit budget of answering or preparing an ancestry request.
    pub ancestry_visits: u64,
}

/// What one PUSH stream did, either side.
#[derive(Debug, Clone, Default)]
pub(crate) struct PushStats {
    /// Bytes written to the stream.
    pub bytes_out: u64,
    /// Bytes read from the stream.
    pub bytes_in: u64,
    /// Entries this side applied (receiver).
    pub applied: u64,
    /// Pushed entries still not applied when the stream ended (receiver).
    pub unresolved: u64,
    /// Whether an ancestry request crossed.
    pub ancestry: bool,
}

/// Why a PUSH stream did not end with END `00`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PushError {
    /// The stream failed or timed out.
    #[error("the push stream failed: {0}")]
    Io(String),
    /// An END frame other than `00`, sent or received.
    #[error("the push ended with {code} ({}): {reason}", if *by_peer { "sent by the peer" } else { "sent by this node" })]
    Ended {
        code: EndCode,
        reason: String,
        by_peer: bool,
    },
    /// The local store failed.
    #[error("the local store failed: {0}")]
    Store(String),
}

fn io_err(e: impl std::fmt::Display) -> PushError {
    PushError::Io(e.to_string())
}

async fn timed<T>(
    idle: Duration,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, PushError> {
    tokio::time::timeout(idle, fut)
        .await
        .map_err(|_| PushError::Io("the peer was silent past the idle timeout".into()))?
        .map_err(io_err)
}

/// The pusher's side: writes one PUSH frame holding `entries` (encoded), answers at most one
/// ancestry request, and returns when the receiver's END came.
pub(crate) async fn push_on<A, R, W>(
    store: Arc<Store<A>>,
    entries: &[Vec<u8>],
    budget: StreamBudget,
    mut recv: R,
    mut send: W,
) -> (PushStats, Result<(), PushError>)
where
    A: Action,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut stats = PushStats::default();
    let result = async {
        let push = super::wire::push_frame(entries.iter().map(Vec::as_slice));
        stats.bytes_out += push.len() as u64;
        timed(budget.idle, write_frame(&mut send, &push)).await?;
        let mut answered = false;
        loop {
            let body = next_body(
                &mut recv,
                &mut send,
                &mut stats,
                budget,
                "the receiver ended the stream without END",
            )
            .await?;
            match body.split_first() {
                Some((&KIND_END, payload)) => {
                    return match parse_end(payload) {
                        Ok((EndCode::Done, _)) => Ok(()),
                        Ok((code, reason)) => Err(PushError::Ended {
                            code,
                            reason,
                            by_peer: true,
                        }),
                        Err(e) => Err(PushError::Ended {
                            code: EndCode::Protocol,
                            reason: format!("malformed END: {e}"),
                            by_peer: true,
                        }),
                    };
                }
                Some((&KIND_ANCESTRY_REQUEST, payload)) if !answered => {
                    answered = true;
                    stats.ancestry = true;
                    let req = match AncestryRequest::decode(payload) {
                        Ok(req) => req,
                        Err(e) => {
                            return Err(refuse(
                                &mut send,
                                &mut stats,
                                EndCode::Protocol,
                                format!("bad ancestry request: {e}"),
                            )
                            .await)
                        }
                    };
                    let room = budget.max_frame_bytes - 1;
                    let visits = budget.ancestry_visits;
                    let store = Arc::clone(&store);
                    let answer = tokio::task::spawn_blocking(move || {
                        store.answer_ancestry(&req, visits, room)
                    })
                    .await
                    .map_err(|e| PushError::Store(e.to_string()))?
                    .map_err(|e| PushError::Store(e.to_string()))?;
                    let reply = frame(KIND_ANCESTRY_ANSWER, &answer.encode());
                    stats.bytes_out += reply.len() as u64;
                    timed(budget.idle, write_frame(&mut send, &reply)).await?;
                }
                _ => {
                    return Err(refuse(
                        &mut send,
                        &mut stats,
                        EndCode::Protocol,
                        "only one ancestry request, then END, may follow a PUSH".into(),
                    )
                    .await)
                }
            }
        }
    }
    .await;
    let _ = tokio::time::timeout(budget.idle, send.shutdown()).await;
    (stats, result)
}

/// Reads the peer's next frame body within the idle timeout and counts its bytes. A stream
/// that ends first is an I/O error saying `eof`; a length of 0 or over the frame limit is
/// refused with END `02` (the body is left unread); no whole frame within the idle timeout
/// is END `06`.
async fn next_body<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    recv: &mut R,
    send: &mut W,
    stats: &mut PushStats,
    budget: StreamBudget,
    eof: &str,
) -> Result<Vec<u8>, PushError> {
    let read = tokio::time::timeout(budget.idle, read_frame(recv, budget.max_frame_bytes)).await;
    let Ok(read) = read else {
        // A silent peer (or one sending a byte now and then) gets the typed end, not just
        // a finished stream.
        return Err(refuse(
            send,
            stats,
            EndCode::Timeout,
            "the peer was silent past the idle timeout".into(),
        )
        .await);
    };
    match read.map_err(io_err)? {
        ReadFrame::Body(body) => {
            stats.bytes_in += 4 + body.len() as u64;
            Ok(body)
        }
        ReadFrame::Eof => Err(PushError::Io(eof.into())),
        ReadFrame::BadLength(len) => Err(refuse(
            send,
            stats,
            EndCode::FrameTooLarge,
            format!("frame of {len} bytes"),
        )
        .await),
    }
}

/// Sends END `code` and returns the matching error.
async fn refuse<W: AsyncWrite + Unpin>(
    send: &mut W,
    stats: &mut PushStats,
    code: EndCode,
    reason: String,
) -> PushError {
    let end = end_frame(code, &reason);
    stats.bytes_out += end.len() as u64;
    let _ = tokio::time::timeout(Duration::from_secs(5), write_frame(send, &end)).await;
    PushError::Ended {
        code,
        reason,
        by_peer: false,
    }
}

/// The receiver's side, once the first frame (`body`, type `06`) was read: applies it,
/// sends one ancestry request if anything is held back and applies the answer, then ends
/// with END (`00` or the code of the broken rule).
pub(crate) async fn serve_push<A, R, W>(
    store: Arc<Store<A>>,
    sender: NodeId,
    body: Vec<u8>,
    budget: StreamBudget,
    mut recv: R,
    mut send: W,
) -> (PushStats, Result<(), PushError>)
where
    A: Action,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut stats = PushStats {
        bytes_in: 4 + body.len() as u64,
        ..PushStats::default()
    };
    let result = async {
        let verdict = blocking(&store, move |s| receive_push_body(s, sender, &body)).await?;
        stats.applied += verdict.applied.len() as u64;
        if verdict.code != EndCode::Done {
            return Err(refuse(&mut send, &mut stats, verdict.code, verdict.reason).await);
        }
        let pending = verdict.held_back.clone();
        if !verdict.want.is_empty() {
            stats.ancestry = true;
            let visits = budget.ancestry_visits;
            let have = blocking(&store, move |s| s.haves(MAX_HAVES, visits))
                .await
                .unwrap_or_default();
            let have: Vec<Hash> = have
                .into_iter()
                .filter(|h| !verdict.want.contains(h))
                .collect();
            let req = AncestryRequest::new(verdict.want.clone(), have, budget.ancestry_limit)
                .map_err(|e| {
                    PushError::Store(format!("could not build the ancestry request: {e}"))
                })?;
            let frame = frame(KIND_ANCESTRY_REQUEST, &req.encode());
            stats.bytes_out += frame.len() as u64;
            timed(budget.idle, write_frame(&mut send, &frame)).await?;
            let body = next_body(
                &mut recv,
                &mut send,
                &mut stats,
                budget,
                "the pusher ended the stream before answering",
            )
            .await?;
            let answer = match body.split_first() {
                Some((&KIND_ANCESTRY_ANSWER, payload)) => {
                    AncestryAnswer::decode(payload, req.limit)
                        .map_err(|e| format!("bad ancestry answer: {e}"))
                }
                Some((&KIND_END, payload)) => {
                    let (code, reason) =
                        parse_end(payload).unwrap_or((EndCode::Protocol, "malformed END".into()));
                    return Err(PushError::Ended {
                        code,
                        reason,
                        by_peer: true,
                    });
                }
                _ => Err("expected an ancestry answer".to_string()),
            };
            let answer = match answer {
                Ok(a) => a,
                Err(reason) => {
                    return Err(refuse(&mut send, &mut stats, EndCode::Protocol, reason).await)
                }
            };
            if let AncestryAnswer::Entries { entries, .. } = answer {
                let mut decoded = Vec::with_capacity(entries.len());
                for bytes in &entries {
                    match LogEntry::<A>::decode(bytes) {
                        Ok(e) => decoded.push(e),
                        Err(e) => {
                            return Err(refuse(
                                &mut send,
                                &mut stats,
                                EndCode::InvalidEntry,
                                format!("an answered entry does not decode: {e}"),
                            )
                            .await)
                        }
                    }
                }
                let report = blocking(&store, move |s| s.insert(decoded)).await?;
                if let Some((hash, outcome)) = report
                    .outcomes
                    .iter()
                    .find(|(_, o)| matches!(o, InsertOutcome::Rejected(InsertError::Invalid(_))))
                {
                    let reason = format!("answered entry {hash} refused: {outcome:?}");
                    return Err(refuse(&mut send, &mut stats, EndCode::InvalidEntry, reason).await);
                }
                stats.applied += report.applied.len() as u64;
            }
        }
        let still = blocking(&store, move |s| {
            let mut n = 0u64;
            for h in &pending {
                if !s.contains(h)? {
                    n += 1;
                }
            }
            Ok::<_, oplog_store::Error>(n)
        })
        .await?;
        stats.unresolved = still;
        let end = end_frame(EndCode::Done, "");
        stats.bytes_out += end.len() as u64;
        timed(budget.idle, write_frame(&mut send, &end)).await?;
        Ok(())
    }
    .await;
    let _ = tokio::time::timeout(budget.idle, send.shutdown()).await;
    if let Err(e) = &result {
        debug!(error = %e, "push from the peer ended with an error");
    }
    (stats, result)
}

/// The standalone ancestry fetch, answerer's side (spec 9.9): answers the request in `body`
/// (type `03`) with one `ANCESTRY_ANSWER` and END `00`, or END `01` if it is malformed.
pub(crate) async fn serve_ancestry<A, W>(
    store: Arc<Store<A>>,
    body: &[u8],
    budget: StreamBudget,
    mut send: W,
) -> Result<u64, PushError>
where
    A: Action,
    W: AsyncWrite + Unpin,
{
    let mut stats = PushStats::default();
    let payload = body.get(1..).unwrap_or_default();
    let result = match AncestryRequest::decode(payload) {
        Err(e) => Err(refuse(
            &mut send,
            &mut stats,
            EndCode::Protocol,
            format!("bad ancestry request: {e}"),
        )
        .await),
        Ok(req) => {
            let room = budget.max_frame_bytes - 1;
            let visits = budget.ancestry_visits;
            let answer = blocking(&store, move |s| s.answer_ancestry(&req, visits, room)).await;
            match answer {
                Err(e) => {
                    Err(refuse(&mut send, &mut stats, EndCode::Internal, e.to_string()).await)
                }
                Ok(answer) => {
                    let frame = frame(KIND_ANCESTRY_ANSWER, &answer.encode());
                    stats.bytes_out += frame.len() as u64;
                    let end = end_frame(EndCode::Done, "");
                    stats.bytes_out += end.len() as u64;
                    async {
                        timed(budget.idle, write_frame(&mut send, &frame)).await?;
                        timed(budget.idle, write_frame(&mut send, &end)).await
                    }
                    .await
                }
            }
        }
    };
    let _ = tokio::time::timeout(budget.idle, send.shutdown()).await;
    result.map(|()| stats.bytes_out)
}

/// Runs `f` on the store on tokio's blocking pool.
async fn blocking<A: Action, T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    store: &Arc<Store<A>>,
    f: impl FnOnce(&Store<A>) -> Result<T, E> + Send + 'static,
) -> Result<T, PushError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| PushError::Store(e.to_string()))?
        .map_err(|e| PushError::Store(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oplog_protocol::replica::Limits;
    use oplog_protocol::{Hlc, ObjectId, Op, SigningKey};
    use oplog_store::Options;

    fn put(i: u64) -> Op {
        Op::Put {
            bucket: "b".into(),
            key: format!("k{i}"),
            object_id: ObjectId([7; 32]),
        }
    }

    /// Entries the held-back or deferred caps turn away do not make a push invalid (spec
    /// 9.9, check 8): it ends with END 00, nothing is applied, and the caps hold.
    #[test]
    fn entries_turned_away_by_the_caps_do_not_make_a_push_invalid() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let sender = NodeId(key.verifying_key().to_bytes());
        let now = 1_800_000_000_000_000_000u64;
        let mut limits = Limits::default();
        limits.max_held_per_author = 4;
        limits.max_deferred_per_author = 4;
        let store: Store<Op> =
            Store::in_memory(Options::default().limits(limits).clock(move || now)).unwrap();
        // orphans: each names a parent that is nowhere
        let orphans: Vec<Vec<u8>> = (0..10u64)
            .map(|i| {
                LogEntry::sign(&key, Hlc(now - 1_000 + i), put(i), vec![Hash([9; 32])])
                    .unwrap()
                    .encode()
            })
            .collect();
        let frame = super::super::wire::push_frame(orphans.iter().map(Vec::as_slice));
        let v = receive_push(&store, sender, &frame, 1 << 20).unwrap();
        assert_eq!(v.code, EndCode::Done, "{}", v.reason);
        assert!(v.applied.is_empty());
        assert_eq!(store.held_back().unwrap().len(), 4);
        // a chain stamped an hour ahead: deferred up to the cap, the rest turned away
        let hour = 3_600_000_000_000u64;
        let mut parents = vec![];
        let mut future = Vec::new();
        for i in 0..10u64 {
            let e = LogEntry::sign(&key, Hlc(now + hour + i), put(i), parents).unwrap();
            parents = vec![e.hash];
            future.push(e.encode());
        }
        let frame = super::super::wire::push_frame(future.iter().map(Vec::as_slice));
        let v = receive_push(&store, sender, &frame, 1 << 20).unwrap();
        assert_eq!(v.code, EndCode::Done, "{}", v.reason);
        assert!(v.applied.is_empty());
        assert_eq!(store.deferred().unwrap().len(), 4);
        // an entry stamped at or below its parent's HLC is still END 04
        let parent = LogEntry::sign(&key, Hlc(now - 10), put(100), vec![]).unwrap();
        let child = LogEntry::sign(&key, Hlc(now - 10), put(101), vec![parent.hash]).unwrap();
        let pair = [parent.encode(), child.encode()];
        let frame = super::super::wire::push_frame(pair.iter().map(Vec::as_slice));
        let v = receive_push(&store, sender, &frame, 1 << 20).unwrap();
        assert_eq!(v.code, EndCode::InvalidEntry, "{}", v.reason);
    }
}
