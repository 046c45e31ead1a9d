//! Bytes, round trips, messages and CPU time of every reconciliation method on the same sets.
//!
//! `cargo run --release -p oplog-benches --bin bandwidth [-- --quick [--write]] [--out DIR]
//! [--max-n N]`
//!
//! Full mode: n in {10^3, 10^4, 10^5, 10^6} (up to `--max-n`), d in {0, 1, 10, 100, 1,000,
//! 10,000, 10% of n} (d <= n), differences placed uniformly, among the newest and in ten
//! clusters, missing from both sides or from one; writes `bandwidth.csv`, `bandwidth.md` and
//! SVG charts for the largest n to `DIR` (default `benches/results`).
//!
//! `--quick`: n <= 10^4, no parameter sweep; compares bytes each way and round trips of every
//! method and cell with `benches/results/quick.csv` and exits 1 on any regression (more bytes
//! or rounds than recorded, or a row missing on either side). `--quick --write` rewrites it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use oplog_benches::bandwidth::{
    id_copy, lower_bound, mst, negentropy, oplog, oplog_carried, sets, shoal_tips, Dag, Measure,
    Placement, Sides,
};
use oplog_benches::chart::{line_chart, Series, YScale};
use oplog_protocol::Config;

/// Methods in table order (the sweep's rows come after, in the CSV only and their own table).
const METHODS: [&str; 8] = [
    "oplog-v1",
    "oplog-v1-carried",
    "negentropy",
    "merkle-search-tree",
    "id-copy",
    "shoal-tips",
    "lower-bound",
    "lower-bound-initiator",
];

struct Row {
    n: usize,
    d: usize,
    placement: Placement,
    sides: Sides,
    method: String,
    result: Result<Measure, String>,
}

impl Row {
    fn key(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.n,
            self.d,
            self.placement.name(),
            self.sides.name(),
            self.method
        )
    }
}

fn ds(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [0, 1, 10, 100, 1_000, 10_000, n / 10]
        .into_iter()
        .filter(|d| *d <= n)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn sweep() -> Vec<(String, Config)> {
    let mut v = Vec::new();
    for branching in [8usize, 16, 32] {
        for threshold in [16usize, 32, 64] {
            let mut c = Config::default();
            if (branching, threshold) == (c.branching, c.list_threshold) {
                continue;
            }
            c.branching = branching;
            c.list_threshold = threshold;
            v.push((format!("oplog-v1 B{branching} L{threshold}"), c));
        }
    }
    v
}

fn run(ns: &[usize], with_sweep: bool) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let sweep = if with_sweep { sweep() } else { Vec::new() };
    for &n in ns {
        let started = Instant::now();
        let dag = Dag::new(n, 1);
        for placement in Placement::ALL {
            for sides in Sides::ALL {
                for d in ds(n) {
                    let x = sets(&dag, d, placement, sides, 2);
                    let mut push = |method: &str, result: Result<Measure, String>| {
                        if let Err(e) = &result {
                            if !e.starts_with("n/a") {
                                return Err(format!(
                                    "n={n} d={d} {} {}: {e}",
                                    placement.name(),
                                    sides.name()
                                ));
                            }
                        }
                        rows.push(Row {
                            n,
                            d,
                            placement,
                            sides,
                            method: method.to_string(),
                            result,
                        });
                        Ok(())
                    };
                    push("oplog-v1", oplog(&x, &Config::default()))?;
                    push("oplog-v1-carried", oplog_carried(&x, &Config::default()))?;
                    push("negentropy", negentropy(&x))?;
                    push("merkle-search-tree", mst(&x))?;
                    push("id-copy", id_copy(&x))?;
                    push("shoal-tips", shoal_tips(&dag, &x))?;
                    for (name, learned) in [
                        ("lower-bound", d),
                        ("lower-bound-initiator", x.b_only.len()),
                    ] {
                        // Total bytes only: how they split between directions is not bounded.
                        push(
                            name,
                            Ok(Measure {
                                bytes_ab: 0,
                                bytes_ba: lower_bound(n, d, learned),
                                rounds: 1,
                                messages: 2,
                                ..Measure::default()
                            }),
                        )?;
                    }
                    if placement == Placement::Uniform && sides == Sides::Both {
                        for (name, cfg) in &sweep {
                            push(name, oplog(&x, cfg))?;
                        }
                    }
                }
            }
        }
        eprintln!("n = {n}: done in {:.1?}", started.elapsed());
    }
    Ok(rows)
}

const CSV_HEADER: &str =
    "n,d,placement,sides,method,bytes_ab,bytes_ba,bytes_total,round_trips,messages,cpu_a_us,cpu_b_us,note";
const QUICK_HEADER: &str = "n,d,placement,sides,method,bytes_ab,bytes_ba,round_trips";

fn csv(rows: &[Row]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in rows {
        let _ = match &r.result {
            Ok(m) => writeln!(
                out,
                "{},{},{},{},{},{},{},{},",
                r.key(),
                m.bytes_ab,
                m.bytes_ba,
                m.bytes_ab + m.bytes_ba,
                m.rounds,
                m.messages,
                m.cpu_a.as_micros(),
                m.cpu_b.as_micros()
            ),
            Err(e) => writeln!(out, "{},,,,,,,,\"{}\"", r.key(), e.replace('"', "'")),
        };
    }
    out
}

fn quick_csv(rows: &[Row]) -> String {
    let mut out = format!("{QUICK_HEADER}\n");
    for r in rows {
        if let Ok(m) = &r.result {
            let _ = writeln!(
                out,
                "{},{},{},{}",
                r.key(),
                m.bytes_ab,
                m.bytes_ba,
                m.rounds
            );
        }
    }
    out
}

/// Compares the quick run with the recorded counts; returns the lines to print and whether
/// anything regressed.
fn compare(recorded: &str, rows: &[Row]) -> Result<(Vec<String>, bool), String> {
    let mut want: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for (i, line) in recorded.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 8 {
            return Err(format!(
                "quick.csv line {}: expected 8 fields ({QUICK_HEADER}), found {}; rewrite it \
                 with --quick --write",
                i + 1,
                f.len()
            ));
        }
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|e| format!("quick.csv line {}: {s:?} is not a count ({e})", i + 1))
        };
        want.insert(f[..5].join(","), [num(f[5])?, num(f[6])?, num(f[7])?]);
    }
    let mut lines = Vec::new();
    let mut bad = false;
    for r in rows {
        let Ok(m) = &r.result else { continue };
        let got = [m.bytes_ab, m.bytes_ba, m.rounds];
        match want.remove(&r.key()) {
            None => {
                bad = true;
                lines.push(format!("NEW   {}: {got:?} is not recorded", r.key()));
            }
            Some(w) if got.iter().zip(w).any(|(g, w)| *g > w) => {
                bad = true;
                lines.push(format!(
                    "WORSE {}: bytes a->b, b->a, rounds {got:?} > recorded {w:?}",
                    r.key()
                ));
            }
            Some(w) if got != w => {
                lines.push(format!("better {}: {got:?} < recorded {w:?}", r.key()));
            }
            Some(_) => {}
        }
    }
    for k in want.keys() {
        bad = true;
        lines.push(format!("GONE  {k}: recorded but not measured"));
    }
    Ok((lines, bad))
}

fn cell(m: &Result<Measure, String>) -> String {
    match m {
        Ok(m) => format!("{} / {}", m.bytes_ab + m.bytes_ba, m.rounds),
        Err(_) => "n/a".into(),
    }
}

fn markdown(rows: &[Row], machine: &str, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Bandwidth: oplog-v1 beside the alternatives\n");
    let _ = writeln!(
        out,
        "Generated by `{command}` on {machine}. Every method ran on the same two sets per \
         cell and was checked to end with exactly the difference. Cells are `bytes both \
         directions / round trips`; the CSV beside this file has bytes each way, messages and \
         CPU time per side. Lower bounds: `ceil((256 L + log2 C(n, d)) / 8)` bytes with \
         L = d when both sides learn the difference (`lower-bound`, what oplog-v1 and \
         merkle-search-tree deliver) and L = the keys the initiator lacks when only it learns \
         (`lower-bound-initiator`, what Negentropy and an id copy deliver); see the README. \
         `shoal-tips` is n/a where a side holds an entry without its parent (random \
         and clustered differences), which Shoal's tip walk cannot produce or repair.\n"
    );
    let mut ns: Vec<usize> = rows.iter().map(|r| r.n).collect();
    ns.dedup();
    for n in ns {
        for placement in Placement::ALL {
            for sides in Sides::ALL {
                let _ = writeln!(
                    out,
                    "## n = {n}, {} differences, {} side{}\n",
                    placement.name(),
                    sides.name(),
                    if sides == Sides::Both { "s" } else { "" }
                );
                let _ = writeln!(out, "| d | {} |", METHODS.join(" | "));
                let _ = writeln!(out, "| ---{} |", " | ---".repeat(METHODS.len()));
                let mut d_seen: Vec<usize> = rows
                    .iter()
                    .filter(|r| r.n == n && r.placement == placement && r.sides == sides)
                    .map(|r| r.d)
                    .collect();
                d_seen.dedup();
                for d in d_seen {
                    let cells: Vec<String> = METHODS
                        .iter()
                        .map(|meth| {
                            rows.iter()
                                .find(|r| {
                                    r.n == n
                                        && r.d == d
                                        && r.placement == placement
                                        && r.sides == sides
                                        && r.method == *meth
                                })
                                .map_or_else(|| "-".into(), |r| cell(&r.result))
                        })
                        .collect();
                    let _ = writeln!(out, "| {d} | {} |", cells.join(" | "));
                }
                out.push('\n');
            }
        }
        // CPU per side for random differences on both sides.
        let _ = writeln!(
            out,
            "## n = {n}, CPU time per side (initiator / responder, ms), uniform differences on both sides\n"
        );
        let cpu_methods = &METHODS[..6];
        let _ = writeln!(out, "| d | {} |", cpu_methods.join(" | "));
        let _ = writeln!(out, "| ---{} |", " | ---".repeat(cpu_methods.len()));
        for d in ds(n) {
            let cells: Vec<String> = cpu_methods
                .iter()
                .map(|meth| {
                    rows.iter()
                        .find(|r| {
                            r.n == n
                                && r.d == d
                                && r.placement == Placement::Uniform
                                && r.sides == Sides::Both
                                && r.method == *meth
                        })
                        .map_or_else(
                            || "-".into(),
                            |r| match &r.result {
                                Ok(m) => format!(
                                    "{:.2} / {:.2}",
                                    m.cpu_a.as_secs_f64() * 1e3,
                                    m.cpu_b.as_secs_f64() * 1e3
                                ),
                                Err(_) => "n/a".into(),
                            },
                        )
                })
                .collect();
            let _ = writeln!(out, "| {d} | {} |", cells.join(" | "));
        }
        out.push('\n');
        // The sweep, if it ran.
        let sweep_rows: Vec<&Row> = rows
            .iter()
            .filter(|r| r.n == n && r.method.starts_with("oplog-v1 B"))
            .collect();
        if !sweep_rows.is_empty() {
            let _ = writeln!(
                out,
                "## n = {n}, oplog-v1 parameter sweep, uniform differences on both sides (bytes / round trips)\n"
            );
            let d_list = ds(n);
            let _ = writeln!(
                out,
                "| branching, list threshold | {} |",
                d_list
                    .iter()
                    .map(|d| format!("d = {d}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            let _ = writeln!(out, "| ---{} |", " | ---".repeat(d_list.len()));
            let mut names: Vec<String> = vec!["oplog-v1".into()];
            for r in &sweep_rows {
                if !names.contains(&r.method) {
                    names.push(r.method.clone());
                }
            }
            for name in names {
                let cells: Vec<String> = d_list
                    .iter()
                    .map(|d| {
                        rows.iter()
                            .find(|r| {
                                r.n == n
                                    && r.d == *d
                                    && r.placement == Placement::Uniform
                                    && r.sides == Sides::Both
                                    && r.method == name
                            })
                            .map_or_else(|| "-".into(), |r| cell(&r.result))
                    })
                    .collect();
                let label = if name == "oplog-v1" {
                    "16, 32 (default)".to_string()
                } else {
                    name.trim_start_matches("oplog-v1 B").replace(" L", ", ")
                };
                let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
            }
            out.push('\n');
        }
    }
    out
}

/// Two charts per placement and sides at the largest n: bytes and round trips against d.
fn charts(rows: &[Row], dir: &std::path::Path) -> Result<Vec<String>, String> {
    let Some(n) = rows.iter().map(|r| r.n).max() else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    for placement in Placement::ALL {
        for sides in Sides::ALL {
            let series = |rounds: bool| -> Vec<Series> {
                METHODS
                    .iter()
                    .map(|meth| Series {
                        name: (*meth).to_string(),
                        #[allow(clippy::cast_precision_loss)]
                        points: rows
                            .iter()
                            .filter(|r| {
                                r.n == n
                                    && r.placement == placement
                                    && r.sides == sides
                                    && r.method == *meth
                            })
                            .filter_map(|r| {
                                r.result.as_ref().ok().map(|m| {
                                    (
                                        r.d as f64,
                                        if rounds {
                                            m.rounds as f64
                                        } else {
                                            (m.bytes_ab + m.bytes_ba) as f64
                                        },
                                    )
                                })
                            })
                            .collect(),
                    })
                    .collect()
            };
            let what = format!(
                "n = {n}, {} differences, {} side{}",
                placement.name(),
                sides.name(),
                if sides == Sides::Both { "s" } else { "" }
            );
            let stem = format!("bandwidth-{}-{}", placement.name(), sides.name());
            let bytes = line_chart(
                &format!("Bytes both ways, {what}"),
                "d (keys that differ)",
                "bytes (log)",
                YScale::Log,
                &series(false),
            );
            let rounds = line_chart(
                &format!("Round trips, {what}"),
                "d (keys that differ)",
                "round trips",
                YScale::Linear,
                &series(true),
            );
            for (suffix, svg) in [("bytes", bytes), ("rounds", rounds)] {
                let name = format!("{stem}-{suffix}.svg");
                std::fs::write(dir.join(&name), svg)
                    .map_err(|e| format!("cannot write {}: {e}", dir.join(&name).display()))?;
                files.push(name);
            }
        }
    }
    Ok(files)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores ({cpu})")
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bandwidth: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<ExitCode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let write = args.iter().any(|a| a == "--write");
    let value = |flag: &str| -> Result<Option<String>, String> {
        match args.iter().position(|a| a == flag) {
            None => Ok(None),
            Some(i) => args
                .get(i + 1)
                .cloned()
                .map(Some)
                .ok_or_else(|| format!("{flag} needs a value")),
        }
    };
    for a in &args {
        if a.starts_with("--") && !["--quick", "--write", "--out", "--max-n"].contains(&a.as_str())
        {
            return Err(format!(
                "unknown option {a}; use [--quick [--write]] [--out DIR] [--max-n N]"
            ));
        }
    }
    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    let out = value("--out")?.map(PathBuf::from);
    let max_n: usize = match value("--max-n")? {
        Some(v) => v
            .parse()
            .map_err(|e| format!("--max-n {v:?} is not a number ({e})"))?,
        None => 1_000_000,
    };
    let ns: Vec<usize> = if quick {
        vec![1_000, 10_000]
    } else {
        [1_000, 10_000, 100_000, 1_000_000]
            .into_iter()
            .filter(|n| *n <= max_n)
            .collect()
    };
    let started = Instant::now();
    let rows = run(&ns, !quick)?;
    eprintln!("all cells in {:.1?}", started.elapsed());
    let machine = machine();
    if quick {
        let path = results.join("quick.csv");
        if let Some(dir) = &out {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            std::fs::write(dir.join("bandwidth.csv"), csv(&rows))
                .map_err(|e| format!("cannot write to {}: {e}", dir.display()))?;
        }
        if write {
            std::fs::create_dir_all(&results)
                .map_err(|e| format!("cannot create {}: {e}", results.display()))?;
            std::fs::write(&path, quick_csv(&rows))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        let recorded = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read {} ({e}); record it with --quick --write",
                path.display()
            )
        })?;
        let (lines, bad) = compare(&recorded, &rows)?;
        for l in &lines {
            println!("{l}");
        }
        if bad {
            println!(
                "bandwidth --quick: regression against {} (lines WORSE/NEW/GONE above); if the \
                 change is intended, rerun with --quick --write and commit the file",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        println!(
            "bandwidth --quick: {} rows, none worse than {}",
            rows.iter().filter(|r| r.result.is_ok()).count(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let dir = out.unwrap_or(results);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let command = format!(
        "cargo run --release -p oplog-benches --bin bandwidth{}",
        if max_n < 1_000_000 {
            format!(" -- --max-n {max_n}")
        } else {
            String::new()
        }
    );
    let mut md = markdown(&rows, &machine, &command);
    let files = charts(&rows, &dir)?;
    let _ = writeln!(md, "## Charts (largest n)\n");
    for f in &files {
        let _ = writeln!(md, "- [{f}]({f})");
    }
    std::fs::write(dir.join("bandwidth.csv"), csv(&rows))
        .map_err(|e| format!("cannot write to {}: {e}", dir.display()))?;
    std::fs::write(dir.join("bandwidth.md"), md)
        .map_err(|e| format!("cannot write to {}: {e}", dir.display()))?;
    println!(
        "wrote bandwidth.csv, bandwidth.md and {} charts to {} ({machine})",
        files.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, bytes_ab: u64, rounds: u64) -> Row {
        Row {
            n: 1_000,
            d: 10,
            placement: Placement::Uniform,
            sides: Sides::Both,
            method: method.into(),
            result: Ok(Measure {
                bytes_ab,
                bytes_ba: 7,
                rounds,
                ..Measure::default()
            }),
        }
    }

    #[test]
    fn the_quick_check_fails_on_more_bytes_or_rounds_and_on_rows_added_or_gone() {
        let recorded = quick_csv(&[row("a", 100, 3), row("b", 50, 2)]);
        let (_, bad) = compare(&recorded, &[row("a", 100, 3), row("b", 50, 2)]).unwrap();
        assert!(!bad, "the same counts pass");
        let (lines, bad) = compare(&recorded, &[row("a", 90, 3), row("b", 50, 1)]).unwrap();
        assert!(
            !bad && lines.len() == 2,
            "fewer bytes or rounds pass and are shown"
        );
        let (lines, bad) = compare(&recorded, &[row("a", 101, 3), row("b", 50, 2)]).unwrap();
        assert!(bad && lines[0].starts_with("WORSE"), "{lines:?}");
        let (_, bad) = compare(&recorded, &[row("a", 100, 4), row("b", 50, 2)]).unwrap();
        assert!(bad, "one more round trip fails");
        let (lines, bad) = compare(&recorded, &[row("a", 100, 3)]).unwrap();
        assert!(bad && lines[0].starts_with("GONE"), "{lines:?}");
        let (lines, bad) = compare(
            &recorded,
            &[row("a", 100, 3), row("b", 50, 2), row("c", 1, 1)],
        )
        .unwrap();
        assert!(bad && lines[0].starts_with("NEW"), "{lines:?}");
        assert!(
            compare("header\n1,2,3\n", &[]).is_err(),
            "a malformed file is an error"
        );
    }
}
