//! Prints bytes and round trips of oplog-sync reconciliation for a grid of branching factors,
//! list thresholds and prefix lengths, at n = 10^6 (or the `N` environment variable). With
//! `DEFAULTS_ONLY` set, only the default configuration (quick, for tuning).

use oplog_benches::{replicas, universe};
use oplog_protocol::testing::transcript::run;
use oplog_protocol::Config;

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
