//! TEMPORARY stand-in for `oplog_protocol::session` until the lead's session machine lands on
//! `main`: the same names and call shapes, with a naive behaviour (each side streams all its
//! entries, then END) so the driver and the iroh glue can be exercised. Deleted at the merge.
#![allow(missing_docs, dead_code, clippy::pedantic)]

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use oplog_protocol::{Action, EntryKey, LogEntry, RangeStore, VerifiedEntry};

pub const FRAME_HEADER_LEN: usize = 4;

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub max_frame_len: u32,
    pub idle_timeout: Duration,
    pub batch: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_frame_len: 4 << 20,
            idle_timeout: Duration::from_secs(10),
            batch: 256,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EndCode {
    Ok = 0,
    Busy = 1,
    Internal = 2,
    Protocol = 3,
    FrameTooLarge = 4,
    Timeout = 5,
}

impl EndCode {
    fn from_u8(b: u8) -> EndCode {
        match b {
            0 => EndCode::Ok,
            1 => EndCode::Busy,
            2 => EndCode::Internal,
            4 => EndCode::FrameTooLarge,
            5 => EndCode::Timeout,
            _ => EndCode::Protocol,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    pub frames_sent: u64,
    pub frames_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub entries_sent: u64,
    pub entries_received: u64,
    pub end: Option<EndCode>,
}

#[derive(Debug)]
pub enum Event<A> {
    Apply(Vec<VerifiedEntry<A>>),
    Progress(SyncReport),
    Done(SyncReport),
    Ended {
        code: EndCode,
        reason: String,
        by_peer: bool,
        report: SyncReport,
    },
}

#[derive(Debug)]
pub struct SessionError;

pub trait SessionStore<A: Action> {
    fn entries_from(&self, from: EntryKey, limit: usize) -> Vec<LogEntry<A>>;
}

impl<A: Action> SessionStore<A> for oplog_store::Store<A> {
    fn entries_from(&self, from: EntryKey, limit: usize) -> Vec<LogEntry<A>> {
        self.log(from, limit).unwrap_or_default()
    }
}

pub struct Session<A: Action, R: RangeStore> {
    config: SessionConfig,
    role: Role,
    cursor: Option<EntryKey>,
    sent_all: bool,
    end_sent: bool,
    peer_end: bool,
    closing: Option<(EndCode, String)>,
    events: VecDeque<Event<A>>,
    deadline: Instant,
    report: SyncReport,
    _r: PhantomData<R>,
}

impl<A: Action, R: RangeStore> Session<A, R> {
    pub fn new(config: SessionConfig, role: Role, _snapshot: R, now: Instant) -> Result<Self, SessionError> {
        Ok(Session {
            deadline: now + config.idle_timeout,
            config,
            role,
            cursor: Some(EntryKey::MIN),
            sent_all: false,
            end_sent: false,
            peer_end: false,
            closing: None,
            events: VecDeque::new(),
            report: SyncReport::default(),
            _r: PhantomData,
        })
    }

    pub fn handle_frame_len(&mut self, len: u32) -> bool {
        if len == 0 || len > self.config.max_frame_len {
            self.close(EndCode::FrameTooLarge, "frame too large");
            return false;
        }
        true
    }

    pub fn handle_frame(&mut self, body: Vec<u8>, now: Instant) {
        self.deadline = now + self.config.idle_timeout;
        self.report.frames_received += 1;
        self.report.bytes_received += body.len() as u64 + 4;
        if self.peer_end || self.end_sent && self.closing.is_some() {
            return;
        }
        match body.first() {
            Some(2) => {
                let mut rest = &body[1..];
                let mut out = Vec::new();
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return self.close(EndCode::Protocol, "truncated");
                    }
                    let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    rest = &rest[4..];
                    if rest.len() < n {
                        return self.close(EndCode::Protocol, "truncated");
                    }
                    match LogEntry::<A>::decode(&rest[..n]).map_err(|_| ()).and_then(|e| VerifiedEntry::new(e).map_err(|_| ())) {
                        Ok(v) => out.push(v),
                        Err(()) => return self.close(EndCode::Protocol, "bad entry"),
                    }
                    rest = &rest[n..];
                }
                self.report.entries_received += out.len() as u64;
                self.events.push_back(Event::Apply(out));
            }
            Some(4) if body.len() >= 2 => {
                self.peer_end = true;
                let code = EndCode::from_u8(body[1]);
                let reason = String::from_utf8_lossy(&body[2..]).into_owned();
                if code == EndCode::Ok {
                    if self.closing.is_none() && self.end_sent {
                        self.report.end = Some(EndCode::Ok);
                        self.events.push_back(Event::Done(self.report.clone()));
                    }
                } else {
                    self.report.end = Some(code);
                    self.closing = Some((code, reason.clone()));
                    self.end_sent = true; // do not answer an error END
                    self.events.push_back(Event::Ended { code, reason, by_peer: true, report: self.report.clone() });
                }
            }
            _ => self.close(EndCode::Protocol, "garbage"),
        }
    }

    pub fn handle_eof(&mut self, _now: Instant) {
        if !self.peer_end {
            self.peer_end = true;
            if self.closing.is_none() {
                self.close(EndCode::Protocol, "stream ended before END");
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.deadline && self.closing.is_none() {
            self.close(EndCode::Timeout, "idle");
            self.peer_end = true;
        }
    }

    pub fn close(&mut self, code: EndCode, reason: &str) {
        if self.closing.is_some() {
            return;
        }
        self.report.end = Some(code);
        self.closing = Some((code, reason.to_owned()));
        self.peer_end = true;
        self.events.push_back(Event::Ended { code, reason: reason.to_owned(), by_peer: false, report: self.report.clone() });
    }

    pub fn poll_event(&mut self) -> Option<Event<A>> {
        self.events.pop_front()
    }

    pub fn poll_transmit<S: SessionStore<A>>(&mut self, store: &S, _now: Instant) -> Option<Vec<u8>> {
        if self.end_sent {
            return None;
        }
        let frame = if let Some((code, reason)) = &self.closing {
            self.end_sent = true;
            let mut f = vec![4, *code as u8];
            f.extend_from_slice(reason.as_bytes());
            f
        } else if !self.sent_all {
            let from = self.cursor.unwrap_or(EntryKey::MIN);
            let mut batch = store.entries_from(from, self.config.batch + 1);
            if batch.first().map(LogEntry::key) == self.cursor && self.cursor != Some(EntryKey::MIN) {
                batch.remove(0);
            }
            batch.truncate(self.config.batch);
            if batch.is_empty() {
                self.sent_all = true;
                return self.poll_transmit(store, _now);
            }
            self.cursor = batch.last().map(LogEntry::key);
            let mut f = vec![2];
            for e in &batch {
                let b = e.encode();
                f.extend_from_slice(&(b.len() as u32).to_be_bytes());
                f.extend_from_slice(&b);
            }
            self.report.entries_sent += batch.len() as u64;
            f
        } else {
            self.end_sent = true;
            if self.peer_end && self.closing.is_none() {
                self.report.end = Some(EndCode::Ok);
                self.events.push_back(Event::Done(self.report.clone()));
            }
            vec![4, 0]
        };
        self.report.frames_sent += 1;
        self.report.bytes_sent += frame.len() as u64 + 4;
        let mut out = (frame.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&frame);
        Some(out)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_finished() {
            None
        } else {
            Some(self.deadline)
        }
    }

    pub fn is_finished(&self) -> bool {
        self.end_sent && self.peer_end && self.events.is_empty()
    }

    pub fn report(&self) -> SyncReport {
        self.report.clone()
    }

    pub fn role(&self) -> Role {
        self.role
    }
}
