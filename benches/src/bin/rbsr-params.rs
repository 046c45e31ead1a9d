//! Prints bytes and round trips of oplog-sync reconciliation for a grid of branching factors,
//! list thresholds and prefix lengths, at n = 10^6 (or the `N` environment variable). With
//! `DEFAULTS_ONLY` set, only the default configuration (quick, for tuning), and where its
//! bytes go: fingerprints, prefix lists, keys, and headers with bounds.

use oplog_benches::{replicas, universe};
use oplog_protocol::testing::transcript::run;
use oplog_protocol::testing::transcript::Transcript;
use oplog_protocol::wire::message::Payload;
use oplog_protocol::{Config, FINGERPRINT_LEN, SALT_LEN};

/// Bytes of a session's messages by what they carry: fingerprints, prefix-list bodies, keys
/// (32-byte hashes and their HLC deltas, about 33 each), and the rest (tags, the salt, part
/// headers, bounds, counts and positions).
fn breakdown(t: &Transcript) -> String {
    let (mut fps, mut prefixes, mut keys, mut total) = (0usize, 0usize, 0usize, 0usize);
    for (i, m) in t.messages.iter().enumerate() {
        total += m.len();
        let parts = if i == 0 {
            m.opening_parts().expect("opening").1
        } else {
            m.parts().expect("message")
        };
        for p in parts {
            match p.payload {
                Payload::Fingerprint(_) => fps += FINGERPRINT_LEN,
                Payload::PrefixList { prefixes: b, .. } => prefixes += b.len(),
                Payload::FullList(k) | Payload::Resolve { keys: k, .. } => {
                    keys += k.len() * 33;
                }
                Payload::Keys { omitted, keys: k } => keys += k.len() * (33 - omitted as usize),
                Payload::Skip => {}
            }
        }
    }
    let rest = total.saturating_sub(fps + prefixes + keys);
    format!(
        "fingerprints {fps} B, prefixes {prefixes} B, keys ~{keys} B, headers/bounds/counts/salt ({SALT_LEN} B) {rest} B"
    )
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let u = universe(n, 1);
    let sets: Vec<_> = [(1_000usize, false), (n / 10, false), (1_000, true)]
        .into_iter()
        .map(|(d, newest)| (d, newest, replicas(&u, d, newest, 2)))
        .collect();
    println!("n = {n}; bytes are both directions together");
    println!(
        "{:>3} {:>3} {:>3} | {:>22} | {:>22} | {:>22}",
        "B", "L", "P", "1000 random", "10% random", "1000 newest"
    );
    let defaults_only = std::env::var_os("DEFAULTS_ONLY").is_some();
    let d = Config::default();
    for branching in [8usize, 16, 32] {
        for threshold in [16usize, 24, 32, 48, 64] {
            for prefix in [0u8, 3, 4] {
                if defaults_only
                    && (branching, threshold, prefix)
                        != (d.branching, d.list_threshold, d.prefix_len)
                {
                    continue;
                }
                let mut cfg = Config::default();
                cfg.salt = Some(oplog_benches::bandwidth::BENCH_SALT);
                cfg.branching = branching;
                cfg.list_threshold = threshold;
                cfg.prefix_len = prefix;
                let cells: Vec<String> = sets
                    .iter()
                    .map(|(_, _, (sa, sb))| {
                        let transcript = run(sa, sb, cfg.clone(), cfg.clone()).expect("session");
                        if defaults_only {
                            eprintln!("  {}", breakdown(&transcript));
                        }
                        let (out, back) = transcript.bytes();
                        format!("{:>12} B {:>2} rt", out + back, transcript.rounds())
                    })
                    .collect();
                println!(
                    "{branching:>3} {threshold:>3} {prefix:>3} | {} | {} | {}",
                    cells[0], cells[1], cells[2]
                );
            }
        }
    }
}
