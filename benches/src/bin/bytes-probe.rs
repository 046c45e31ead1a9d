//! Where oplog-v1's bytes and round trips go, cell by cell, for tuning the reconciler: for a
//! few cells of the bandwidth grid at n = 10^6 (or `N`), each message of the inline and of
//! the carried session with its parts by mode and its bytes by what they carry (fingerprints,
//! prefix lists, keys, and the rest: headers, bounds, counts and positions).
//!
//! `cargo run --release -p oplog-benches --bin bytes-probe [-- CELL...]`, where a cell is
//! `placement-sides-d` (for example `uniform-both-1000`, `clusters-one-100000`); without
//! cells, the ones the tuning targets. `VERBOSE=1` prints every message.

use oplog_benches::bandwidth::{oplog, oplog_carried, sets, Dag, Placement, Sides, BENCH_SALT};
use oplog_protocol::wire::message::{self, Payload};
use oplog_protocol::{Config, EntryKey, KeyForm, Reconciler, FINGERPRINT_LEN, SALT_LEN};

/// Bytes of one message by what they carry, and its parts by mode.
#[derive(Default, Clone, Copy)]
struct Breakdown {
    total: usize,
    fps: usize,
    prefixes: usize,
    keys: usize,
    parts: [usize; 6],
}

impl Breakdown {
    fn add(&mut self, o: &Breakdown) {
        self.total += o.total;
        self.fps += o.fps;
        self.prefixes += o.prefixes;
        self.keys += o.keys;
        for i in 0..6 {
            self.parts[i] += o.parts[i];
        }
    }

    fn show(&self) -> String {
        let rest = self
            .total
            .saturating_sub(self.fps + self.prefixes + self.keys);
        format!(
            "{:>9} B: fp {:>8} pfx {:>8} keys {:>8} rest {:>8} | parts skip {} fp {} pl {} fl {} res {} keys {}",
            self.total,
            self.fps,
            self.prefixes,
            self.keys,
            rest,
            self.parts[0],
            self.parts[1],
            self.parts[2],
            self.parts[3],
            self.parts[4],
            self.parts[5]
        )
    }
}

fn breakdown(bytes: &[u8], opening: bool, carried: Option<&[EntryKey]>) -> Breakdown {
    let mut b = Breakdown {
        total: bytes.len(),
        ..Breakdown::default()
    };
    let parts: Vec<_> = match (opening, carried) {
        (true, None) => message::parts_opening(bytes).expect("opening").collect(),
        (false, None) => message::parts(bytes).expect("message").collect(),
        (true, Some(c)) => message::parts_carried_opening(bytes, c)
            .expect("opening")
            .collect(),
        (false, Some(c)) => message::parts_carried(bytes, c).expect("message").collect(),
    };
    if opening {
        b.total -= SALT_LEN;
    }
    for p in parts {
        let p = p.expect("valid part");
        let i = match &p.payload {
            Payload::Skip => 0,
            Payload::Fingerprint(_) => {
                b.fps += FINGERPRINT_LEN;
                1
            }
            Payload::PrefixList { prefixes, .. } => {
                b.prefixes += prefixes.len();
                2
            }
            Payload::FullList(k) => {
                b.keys += k.len() * 33;
                3
            }
            Payload::Resolve { keys, .. } => {
                if carried.is_none() {
                    b.keys += keys.len() * 33;
                }
                4
            }
            Payload::Keys { omitted, keys } => {
                if carried.is_none() {
                    b.keys += keys.len() * (33 - *omitted as usize);
                }
                5
            }
        };
        b.parts[i] += 1;
    }
    b
}

/// Runs one session message by message and prints each message's breakdown (or only the
/// total with `verbose` off).
fn trace(
    initiator: &oplog_protocol::MemoryStore,
    responder: &oplog_protocol::MemoryStore,
    form: KeyForm,
    verbose: bool,
) {
    let mut cfg = Config::default();
    cfg.salt = Some(BENCH_SALT);
    cfg.key_form = form;
    let mut ra = Reconciler::new(cfg.clone()).expect("config");
    let mut rb = Reconciler::new(cfg).expect("config");
    let first = ra.initiate(initiator).expect("initiate");
    let mut msg = Some((first, Vec::new()));
    let mut to_b = true;
    let mut i = 0;
    let mut sum = Breakdown::default();
    while let Some((x, carried)) = msg.take() {
        let c = (form == KeyForm::Carried).then_some(carried.as_slice());
        let br = breakdown(x.as_bytes(), i == 0, c);
        sum.add(&br);
        if verbose {
            println!("    msg {i} ({} carried) {}", carried.len(), br.show());
        }
        let (r, s) = if to_b {
            (&mut rb, responder)
        } else {
            (&mut ra, initiator)
        };
        let step = match form {
            KeyForm::Carried => r.handle_carried(s, &x, &carried),
            _ => r.handle(s, &x),
        }
        .expect("handle");
        msg = step.reply.map(|r| (r, step.carried));
        to_b = !to_b;
        i += 1;
    }
    println!("    {:?} total {}", form, sum.show());
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let verbose = std::env::var_os("VERBOSE").is_some();
    let mut cells: Vec<String> = std::env::args().skip(1).collect();
    if cells.is_empty() {
        cells = [
            "uniform-both-1000",
            "uniform-both-100000",
            "newest-one-10000",
            "newest-one-100000",
            "clusters-one-100000",
            "uniform-one-100000",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
    }
    let dag = Dag::new(n, 1);
    for cell in cells {
        let f: Vec<&str> = cell.split('-').collect();
        let placement = match f.first() {
            Some(&"uniform") => Placement::Uniform,
            Some(&"newest") => Placement::Newest,
            Some(&"clusters") => Placement::Clusters,
            _ => {
                eprintln!("bad cell {cell}");
                continue;
            }
        };
        let sides = if f.get(1) == Some(&"one") {
            Sides::One
        } else {
            Sides::Both
        };
        let d: usize = f.get(2).and_then(|d| d.parse().ok()).unwrap_or(1000);
        let s = sets(&dag, d, placement, sides, 2);
        let cfg = Config::default();
        let inline = oplog(&s, &cfg).expect("inline");
        let carried = oplog_carried(&s, &cfg).expect("carried");
        println!(
            "{cell}: inline {} B / {} rt, carried {} B / {} rt",
            inline.bytes_ab + inline.bytes_ba,
            inline.rounds,
            carried.bytes_ab + carried.bytes_ba,
            carried.rounds
        );
        trace(&s.a, &s.b, KeyForm::Inline, verbose);
        trace(&s.a, &s.b, KeyForm::Carried, verbose);
    }
}
