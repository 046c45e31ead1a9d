//! Drives one sans-IO [`Session`] over any pair of byte streams: no iroh types here, so an
//! iroh 1.x build (or a test over an in-memory pipe) reuses it unchanged.
//!
//! Three parts run concurrently inside [`run_session`]'s task:
//!
//! - the **reader** reads frames ahead of the session into a queue of at most
//!   [`FRAME_QUEUE`] frames: the 4-byte header, then the body if its length is within the
//!   session's frame limit (the session itself still judges each header, in order, before it
//!   sees the body; a header over the limit stops the reader unread). It never waits for the
//!   writer, so the peer's sends always drain even while ours are blocked by flow
//!   control (the deadlock of two peers that each wait for the other to read, issue 8);
//! - the **writer** writes the frames the session emitted, from a queue of at most
//!   [`FRAME_QUEUE`] frames, and finishes the stream when the session is done;
//! - the **driver** feeds the session frames, end of stream and time, applies what it emits
//!   to the store, and pulls frames for the writer only while the writer's queue has room, so
//!   a peer that does not read makes the session hold its output (bounded by the session's
//!   own budgets) instead of this process queueing it. Every session call and every store
//!   write runs on tokio's blocking pool, never on the reader or writer.
//!
//! Memory: at most [`FRAME_QUEUE`] frames queued each way, plus the frame being read and the
//! one being written, each at most the session's frame limit.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use oplog_protocol::{Action, RangeStore, VerifiedEntry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn, Span};

use oplog_protocol::session::{EndCode, Event, Prepared, Session, SessionStore, SyncReport};

/// Frames queued at most in each direction between the streams and the session.
pub const FRAME_QUEUE: usize = 2;

/// A store the driver can run a session against: the session's reads ([`SessionStore`]) plus
/// applying the verified entries the session hands out ([`Event::Apply`]).
///
/// [`oplog_store::Store`] implements it with [`Store::insert_verified`](oplog_store::Store::insert_verified).
pub trait SyncStore<A: Action>: SessionStore<A> + Send + Sync + 'static {
    /// Why applying failed (the store itself failed; refused entries are not errors).
    type Error: fmt::Display;

    /// Stores `entries` (already verified by the session) by the rules of section 6.1 of
    /// the spec. An `Err` ends the session with [`EndCode::Internal`].
    ///
    /// The entries need not be durable yet: the peer still holds them, so a crash before
    /// [`SyncStore::persist`] only means fetching them again.
    fn apply(&self, entries: Vec<VerifiedEntry<A>>) -> Result<(), Self::Error>;

    /// Makes everything [`SyncStore::apply`] stored durable; called once when the session
    /// ends, however it ends. The default does nothing (for stores whose `apply` is durable).
    fn persist(&self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl<A: Action> SyncStore<A> for oplog_store::Store<A> {
    type Error = oplog_store::Error;

    /// Commits each batch without waiting for the disk
    /// ([`Store::insert_verified_buffered`](oplog_store::Store::insert_verified_buffered)):
    /// about twice the rate of a durable commit per batch.
    fn apply(&self, entries: Vec<VerifiedEntry<A>>) -> Result<(), Self::Error> {
        let report = self.insert_verified_buffered(entries)?;
        debug!(
            applied = report.applied.len(),
            "applied entries from the peer"
        );
        Ok(())
    }

    fn persist(&self) -> Result<(), Self::Error> {
        oplog_store::Store::persist(self)
    }
}

/// What the reader hands the driver, in stream order.
enum Inbound<A> {
    /// A frame: its length header and its body (prepared: entries decoded and verified), or
    /// no body when the length is over the session's frame limit (the reader then stops:
    /// the session refuses it).
    Frame { len: u32, body: Option<Prepared<A>> },
    /// The peer's stream ended or failed: nothing more will come.
    End(Option<io::Error>),
}

/// How a session ended, from its [`Event::Ended`] (a session that completed has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnd {
    /// The end code of the END frame (sent or received).
    pub code: EndCode,
    /// The reason text of the END frame.
    pub reason: String,
    /// `true` if the peer ended the session, `false` if this side did.
    pub by_peer: bool,
}

/// What [`run_session`] returns: the session's counters and, unless it completed, how it ended.
#[derive(Clone, Debug)]
pub struct SessionOutcome {
    /// The session's final counters ([`Session::report`]).
    pub report: SyncReport,
    /// How the session ended, if not by completing ([`Event::Done`]).
    pub end: Option<SessionEnd>,
    /// The store's error, if applying received entries failed (the session then ended with
    /// [`EndCode::Internal`]).
    pub store_error: Option<String>,
}

/// One input to the session, run on the blocking pool.
enum Input<A> {
    /// Nothing new: only pull frames (at start, or when the writer made room).
    Pull,
    /// A frame's length header and, unless the reader refused it unread, its body.
    Frame(u32, Option<Prepared<A>>),
    Eof,
    Timeout,
    Close(EndCode, String),
}

/// What one step of the session produced.
struct Output {
    /// The session refused a frame's length: read nothing more.
    refused: bool,
    frames: Vec<Vec<u8>>,
    /// The writer's room ran out before the session ran out of frames.
    more: bool,
    finished: bool,
    timeout: Option<Instant>,
    report: SyncReport,
}

/// The session and its store, moved onto the blocking pool for each step.
struct Core<A: Action, R: RangeStore, S> {
    session: Session<A, R>,
    store: Arc<S>,
    end: Option<SessionEnd>,
    store_error: Option<String>,
}

impl<A, R, S> Core<A, R, S>
where
    A: Action,
    R: RangeStore,
    S: SyncStore<A>,
{
    /// Feeds `input`, applies every event, then pulls at most `room` frames (the driver
    /// contract: events first, then frames).
    fn step(&mut self, input: Input<A>, room: usize) -> Output {
        let now = Instant::now();
        let mut refused = false;
        match input {
            Input::Pull => {}
            Input::Frame(len, body) => {
                // The session checks the header before it sees the body (the reader only
                // read a body within the frame limit).
                match body {
                    Some(body) if self.session.handle_frame_len(len) => {
                        self.session.handle_prepared(body, now);
                    }
                    Some(_) => refused = true,
                    None => refused = !self.session.handle_frame_len(len),
                }
            }
            Input::Eof => self.session.handle_eof(now),
            Input::Timeout => self.session.handle_timeout(now),
            Input::Close(code, reason) => self.session.close(code, &reason),
        }
        self.drain_events();
        let mut frames = Vec::new();
        while frames.len() < room {
            match self.session.poll_transmit(&*self.store, now) {
                Some(frame) => frames.push(frame),
                None => break,
            }
        }
        // Pulling may have produced events too (the session finishing on its last frame).
        self.drain_events();
        Output {
            refused,
            more: frames.len() == room,
            frames,
            finished: self.session.is_finished(),
            timeout: self.session.poll_timeout(),
            report: self.session.report(),
        }
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Apply(entries) => {
                    if let Err(e) = self.store.apply(entries) {
                        warn!(error = %e, "store failed while applying entries from the peer; ending the session");
                        self.store_error.get_or_insert_with(|| e.to_string());
                        self.session
                            .close(EndCode::Internal, "the receiving store failed; retry later");
                    }
                }
                Event::Progress(report) => debug!(?report, "session progress"),
                Event::Done(report) => {
                    debug!(?report, "session done");
                    self.persist();
                }
                Event::Ended {
                    code,
                    reason,
                    by_peer,
                    ..
                } => {
                    debug!(?code, %reason, by_peer, "session ended");
                    self.end.get_or_insert(SessionEnd {
                        code,
                        reason,
                        by_peer,
                    });
                    self.persist();
                }
                other => debug!(event = ?other, "session event not handled by this driver"),
            }
        }
    }
}

impl<A: Action, R: RangeStore, S: SyncStore<A>> Core<A, R, S> {
    /// Makes what the session applied durable, once it is over (its last event).
    fn persist(&mut self) {
        if let Err(e) = self.store.persist() {
            warn!(error = %e, "store failed to make the session's entries durable");
            self.store_error.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Runs `session` over `recv`/`send` until it is finished, applying what it receives to
/// `store`, and returns how it went: its final counters and, unless it completed, its end.
///
/// Frames are a 4-byte big-endian length and that many bytes. Reading and writing run
/// concurrently (see the module docs), so neither side's flow control can stall the other. A
/// silent or slow peer is cut by the session's own deadlines ([`Session::poll_timeout`]).
/// Once the session is ending, its last frames get the session's idle timeout
/// ([`SessionConfig::idle_timeout`](oplog_protocol::session::SessionConfig::idle_timeout)) to
/// be written; after it, a peer that does not read is dropped and the session ends as on a
/// broken connection (its [`SessionEnd`] keeps the code it was ending with). On return the
/// send stream has been shut down (a QUIC stream: finished) unless writing to it failed or
/// timed out; waiting until the peer has read it is the caller's part (over QUIC: the peer's
/// end of stream, or `SendStream::stopped`).
///
/// Never panics on any input from the peer; an I/O error either way ends the session as a
/// broken connection ([`Session::handle_eof`]).
pub async fn run_session<A, R, S, Rd, Wr>(
    session: Session<A, R>,
    store: Arc<S>,
    recv: Rd,
    send: Wr,
) -> SessionOutcome
where
    A: Action,
    R: RangeStore + Send + 'static,
    Session<A, R>: Send,
    S: SyncStore<A>,
    Rd: AsyncRead + Unpin + Send,
    Wr: AsyncWrite + Unpin + Send,
{
    let (in_tx, in_rx) = mpsc::channel(FRAME_QUEUE);
    let (out_tx, out_rx) = mpsc::channel(FRAME_QUEUE);
    let (deadline_tx, deadline_rx) = watch::channel(None);

    let max_frame = session.config().max_frame_bytes;
    let reader = read_frames(recv, in_tx, max_frame);
    let writer = async move {
        tokio::select! {
            result = write_frames(send, out_rx) => result,
            () = flush_deadline(deadline_rx) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not take the session's last frames in time",
            )),
        }
    };
    let core = Core {
        session,
        store,
        end: None,
        store_error: None,
    };
    let driver = drive(core, in_rx, out_tx, deadline_tx);
    let work = async { tokio::join!(driver, writer) };

    tokio::pin!(reader);
    tokio::pin!(work);
    let mut reader_done = false;
    let (outcome, written) = loop {
        tokio::select! {
            done = &mut work => break done,
            () = &mut reader, if !reader_done => reader_done = true,
        }
    };
    if let Err(e) = written {
        debug!(error = %e, "the session's stream could not be written to the end");
    }
    outcome
}

/// Waits until the driver sets a flush deadline, then until that deadline.
async fn flush_deadline(mut rx: watch::Receiver<Option<Instant>>) {
    loop {
        let deadline = *rx.borrow_and_update();
        if let Some(deadline) = deadline {
            tokio::time::sleep_until(deadline.into()).await;
            return;
        }
        if rx.changed().await.is_err() {
            // The driver is gone without setting one: the writer finishes on its own.
            std::future::pending::<()>().await;
        }
    }
}

/// Reads frames into `tx`, ahead of the session by at most the queue: a header, then, if the
/// length is within `max_frame` (so the allocation is bounded), the body. A header over the
/// limit goes alone and ends the reading (the session refuses it).
async fn read_frames<A: Action, Rd: AsyncRead + Unpin>(
    mut recv: Rd,
    tx: mpsc::Sender<Inbound<A>>,
    max_frame: usize,
) {
    loop {
        let mut header = [0u8; 4];
        if let Err(e) = recv.read_exact(&mut header).await {
            let error = (e.kind() != io::ErrorKind::UnexpectedEof).then_some(e);
            let _ = tx.send(Inbound::End(error)).await;
            return;
        }
        let len = u32::from_be_bytes(header);
        let size = usize::try_from(len)
            .ok()
            .filter(|&n| n > 0 && n <= max_frame);
        let Some(size) = size else {
            let _ = tx.send(Inbound::Frame { len, body: None }).await;
            return;
        };
        let mut body = vec![0u8; size];
        let item = match recv.read_exact(&mut body).await {
            // Entries are decoded and verified here, on the blocking pool, while the session
            // handles the frame before and the store applies it: the two overlap.
            Ok(_) => match tokio::task::spawn_blocking(move || Prepared::new(body)).await {
                Ok(prepared) => Inbound::Frame {
                    len,
                    body: Some(prepared),
                },
                Err(e) => Inbound::End(Some(io::Error::other(format!(
                    "verifying a received frame failed: {e}"
                )))),
            },
            Err(e) => Inbound::End(Some(e)),
        };
        let end = matches!(item, Inbound::End(_));
        if tx.send(item).await.is_err() || end {
            return;
        }
    }
}

/// Writes every frame from `rx`, then shuts the stream down once the driver is done.
async fn write_frames<Wr: AsyncWrite + Unpin>(
    mut send: Wr,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> io::Result<()> {
    while let Some(frame) = rx.recv().await {
        send.write_all(&frame).await?;
    }
    send.flush().await?;
    send.shutdown().await
}

/// The driver loop: see the module docs.
async fn drive<A, R, S>(
    core: Core<A, R, S>,
    mut in_rx: mpsc::Receiver<Inbound<A>>,
    out_tx: mpsc::Sender<Vec<u8>>,
    deadline_tx: watch::Sender<Option<Instant>>,
) -> SessionOutcome
where
    A: Action,
    R: RangeStore + Send + 'static,
    Session<A, R>: Send,
    S: SyncStore<A>,
{
    let span = Span::current();
    let flush_bound = core.session.config().idle_timeout;
    let mut report = core.session.report();
    let mut core = Some(core);
    let mut input = Input::Pull;
    let mut inbound_open = true;
    let mut writer_open = true;
    let mut flush_at: Option<Instant> = None;

    loop {
        // Frames the writer has no room for stay in the session; after the writer died,
        // frames are pulled and dropped so the session can reach its end.
        let room = if writer_open {
            out_tx.capacity()
        } else {
            FRAME_QUEUE
        };
        let Some(taken) = core.take() else {
            return outcome::<A, R, S>(None, report);
        };
        let out = match step_blocking(taken, input, room, &span).await {
            Ok((taken, out)) => {
                core = Some(taken);
                out
            }
            Err(e) => {
                // A panic in the session or the store: nothing more can be driven.
                warn!(error = %e, "session step failed; dropping the session");
                return outcome::<A, R, S>(None, report);
            }
        };
        report = out.report;
        if out.refused {
            // The peer's stream is not read any further (the reader may hold frames read
            // ahead; they are dropped unseen).
            inbound_open = false;
        }
        for frame in out.frames {
            if writer_open && out_tx.try_send(frame).is_err() {
                writer_open = false;
            }
        }
        if out.finished {
            // Dropping `out_tx` (on return) lets the writer finish the stream.
            let _ = deadline_tx.send(Some(Instant::now() + flush_bound));
            return outcome(core, report);
        }
        // No deadline while not finished: the session is ending (its END is queued or the
        // peer's came) and waits only for its last frames to be taken.
        if out.timeout.is_none() && flush_at.is_none() {
            let at = Instant::now() + flush_bound;
            flush_at = Some(at);
            let _ = deadline_tx.send(Some(at));
        }
        if out.more && !writer_open {
            input = Input::Pull;
            continue;
        }
        let pull = out.more;
        let timeout = out.timeout;
        input = tokio::select! {
            biased;
            item = in_rx.recv(), if inbound_open => match item {
                Some(Inbound::Frame { len, body }) => Input::Frame(len, body),
                Some(Inbound::End(error)) => {
                    if let Some(e) = error {
                        debug!(error = %e, "reading from the peer failed");
                    }
                    inbound_open = false;
                    Input::Eof
                }
                None => {
                    inbound_open = false;
                    Input::Eof
                }
            },
            permit = out_tx.reserve(), if pull => {
                if permit.is_err() {
                    // The stream to the peer broke: the connection is gone for the session.
                    writer_open = false;
                    Input::Eof
                } else {
                    Input::Pull
                }
            }
            () = out_tx.closed(), if writer_open => {
                writer_open = false;
                Input::Eof
            }
            () = sleep_until_opt(timeout), if timeout.is_some() => Input::Timeout,
            () = sleep_until_opt(flush_at), if flush_at.is_some() => {
                debug!("the session's end could not be delivered in time; dropping the stream");
                // The END cannot go out: the session ends as on a broken connection, keeping
                // the code it was ending with.
                if let Some(taken) = core.take() {
                    if let Ok((taken, out)) = step_blocking(taken, Input::Eof, 0, &span).await {
                        report = out.report;
                        core = Some(taken);
                    }
                }
                return outcome(core, report);
            }
            else => {
                // No input can come and no deadline is set: end it here rather than wait.
                Input::Close(EndCode::Internal, "the session stalled with nothing to wait for".into())
            }
        };
    }
}

/// One [`Core::step`] on tokio's blocking pool, inside `span`; `Err` if it panicked.
async fn step_blocking<A, R, S>(
    mut core: Core<A, R, S>,
    input: Input<A>,
    room: usize,
    span: &Span,
) -> Result<(Core<A, R, S>, Output), tokio::task::JoinError>
where
    A: Action,
    R: RangeStore + Send + 'static,
    Session<A, R>: Send,
    S: SyncStore<A>,
{
    let span = span.clone();
    tokio::task::spawn_blocking(move || {
        let _guard = span.enter();
        let out = core.step(input, room);
        (core, out)
    })
    .await
}

/// The outcome from the driven core, or, if a step panicked and took the core with it, an
/// internal end.
fn outcome<A: Action, R: RangeStore, S>(
    core: Option<Core<A, R, S>>,
    report: SyncReport,
) -> SessionOutcome {
    match core {
        Some(core) => SessionOutcome {
            report,
            end: core.end,
            store_error: core.store_error,
        },
        None => SessionOutcome {
            report,
            end: Some(SessionEnd {
                code: EndCode::Internal,
                reason: "the session or the store panicked".into(),
                by_peer: false,
            }),
            store_error: None,
        },
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
