//! `negentropy-harness`: oplog-sync's reconciler in its Negentropy V1 dialect behind
//! Negentropy's conformance-harness line protocol, so Negentropy's own test scripts can drive
//! it like any other implementation.
//!
//! Input, one command per line on stdin (blank lines are ignored):
//! - `item,<timestamp>,<id hex>`: add an item (timestamp = HLC, id = 32-byte entry hash);
//! - `seal`: no more items; start a session;
//! - `initiate`: become the initiator and write the first message;
//! - `msg,<hex>`: a message from the peer (`msg,` alone is the empty message).
//!
//! Output on stdout: `msg,<hex>` for each message to send; on the initiating side also
//! `have,<id hex>` and `need,<id hex>` for each difference learned and `done` when the
//! session ends. The frame size limit comes from the environment variable `FRAMESIZELIMIT`
//! (absent or 0: none). Any error is printed on stderr and the exit status is 1.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use oplog_protocol::{Config, EntryKey, MemoryStore, Message, Reconciler};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("negentropy-harness: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A session: the items, and once sealed, the reconciler.
struct Harness {
    store: MemoryStore,
    session: Option<Reconciler>,
    limit: Option<usize>,
}

fn run() -> Result<(), String> {
    let limit = match std::env::var("FRAMESIZELIMIT") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(e) => return Err(format!("FRAMESIZELIMIT {v:?}: {e}")),
        },
        Err(_) => None,
    };
    let mut h = Harness {
        store: MemoryStore::new(),
        session: None,
        limit,
    };
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        h.command(line, &mut out)
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        out.flush().map_err(|e| format!("writing stdout: {e}"))?;
    }
    Ok(())
}

impl Harness {
    fn command(&mut self, line: &str, out: &mut impl Write) -> Result<(), String> {
        let fields: Vec<&str> = line.split(',').collect();
        let w = |out: &mut dyn Write, s: String| {
            writeln!(out, "{s}").map_err(|e| format!("writing stdout: {e}"))
        };
        match fields[0] {
            "item" => {
                let [_, ts, id] = fields[..] else {
                    return Err("item needs 3 fields".into());
                };
                if self.session.is_some() {
                    return Err("item after seal".into());
                }
                let ts: u64 = ts.parse().map_err(|e| format!("timestamp {ts:?}: {e}"))?;
                let id: [u8; 32] = hex::decode(id)
                    .map_err(|e| format!("id {id:?}: {e}"))?
                    .try_into()
                    .map_err(|_| format!("id {id:?} is not 32 bytes"))?;
                self.store.insert(EntryKey::new(ts, id));
            }
            "seal" => {
                if self.session.is_some() {
                    return Err("sealed twice".into());
                }
                let r =
                    Reconciler::new(Config::negentropy(self.limit)).map_err(|e| e.to_string())?;
                self.session = Some(r);
            }
            "initiate" => {
                let r = self.session.as_mut().ok_or("initiate before seal")?;
                let msg = r.initiate(&self.store).map_err(|e| e.to_string())?;
                self.check_limit(&msg)?;
                w(out, format!("msg,{}", hex::encode(msg.as_bytes())))?;
            }
            "msg" => {
                let bytes = match fields.get(1) {
                    Some(h) => hex::decode(h).map_err(|e| format!("message hex: {e}"))?,
                    None => Vec::new(),
                };
                let r = self.session.as_mut().ok_or("msg before seal")?;
                let initiator = r.is_initiator();
                let step = r
                    .handle(&self.store, &Message::from_bytes(bytes))
                    .map_err(|e| e.to_string())?;
                for k in &step.have {
                    w(out, format!("have,{}", hex::encode(k.hash.as_bytes())))?;
                }
                for h in &step.need_hashes {
                    w(out, format!("need,{}", hex::encode(h.as_bytes())))?;
                }
                match step.reply {
                    Some(reply) => {
                        self.check_limit(&reply)?;
                        w(out, format!("msg,{}", hex::encode(reply.as_bytes())))?;
                    }
                    None if initiator => w(out, "done".into())?,
                    None => return Err("no reply to send".into()),
                }
            }
            other => return Err(format!("unknown command {other:?}")),
        }
        Ok(())
    }

    fn check_limit(&self, msg: &Message) -> Result<(), String> {
        match self.limit {
            Some(l) if msg.len() > l => {
                Err(format!("frame size limit exceeded: {} > {l}", msg.len()))
            }
            _ => Ok(()),
        }
    }
}
