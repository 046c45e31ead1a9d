//! Running a whole session between two local stores: for tests, examples, test vectors and
//! benchmarks. Real peers drive [`Reconciler`]s over a connection instead.

use crate::key::EntryKey;
use crate::range::RangeStore;
use crate::reconcile::{Config, Limit, Message, ReconcileError, Reconciler, SessionStats};

/// Most messages [`run`] exchanges before it gives up on a session that does not end.
pub const MAX_MESSAGES: usize = 100_000;

/// What one side learned and spent.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Keys it holds that the other side lacks, sorted.
    pub have: Vec<EntryKey>,
    /// Keys the other side holds that it lacks, sorted.
    pub need: Vec<EntryKey>,
    /// Its counters.
    pub stats: SessionStats,
}

/// Every message of a session, in order, and what each side ended with.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// Messages in the order sent; even indices come from the initiator.
    pub messages: Vec<Message>,
    /// The side that opened the session.
    pub initiator: Outcome,
    /// The side that answered.
    pub responder: Outcome,
}

impl Transcript {
    /// Round trips: messages divided by two, rounded up.
    pub fn rounds(&self) -> usize {
        self.messages.len().div_ceil(2)
    }

    /// Bytes sent by the initiator and by the responder.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.initiator.stats.bytes_sent,
            self.responder.stats.bytes_sent,
        )
    }
}

/// Reconciles `a` (initiator) with `b` (responder) in memory.
pub fn run<A: RangeStore + ?Sized, B: RangeStore + ?Sized>(
    a: &A,
    b: &B,
    config_a: Config,
    config_b: Config,
) -> Result<Transcript, ReconcileError> {
    let mut ra = Reconciler::new(config_a)?;
    let mut rb = Reconciler::new(config_b)?;
    let (mut oa, mut ob) = (Outcome::default(), Outcome::default());
    let first = ra.initiate(a)?;
    let mut messages = vec![first.clone()];
    let mut next = Some(first);
    let mut to_b = true;
    while let Some(msg) = next.take() {
        if messages.len() > MAX_MESSAGES {
            return Err(Limit::Messages {
                limit: MAX_MESSAGES as u64,
            }
            .into());
        }
        let (r, store_out): (&mut Reconciler, &mut Outcome) = if to_b {
            (&mut rb, &mut ob)
        } else {
            (&mut ra, &mut oa)
        };
        let step = if to_b {
            r.handle(b, &msg)?
        } else {
            r.handle(a, &msg)?
        };
        store_out.have.extend(step.have);
        store_out.need.extend(step.need);
        if let Some(reply) = step.reply {
            messages.push(reply.clone());
            next = Some(reply);
        }
        to_b = !to_b;
    }
    if !ra.is_done() || !rb.is_done() {
        return Err(ReconcileError::Protocol(
            "session stopped with a side still waiting".into(),
        ));
    }
    oa.stats = ra.stats();
    ob.stats = rb.stats();
    for o in [&mut oa, &mut ob] {
        o.have.sort_unstable();
        o.need.sort_unstable();
    }
    Ok(Transcript {
        messages,
        initiator: oa,
        responder: ob,
    })
}
