//! Answers as text (or as JSON with `--json`).

use std::fmt::Write as _;

use serde_json::Value;

use crate::error::CliError;
use crate::exec::Request;
use crate::graph::{draw, Node};
use crate::timefmt::format_hlc;
use oplog_store::protocol::Hlc;

/// Prints the answer to `request`. With `json` the answer is printed as it is, one JSON
/// document; otherwise as text. A `get` of a missing key and a `verify` that found problems
/// print their answer and fail (exit code 1) in both forms.
pub fn print(request: &Request, v: &Value, json: bool) -> Result<(), CliError> {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", text(request, v));
    }
    match request {
        Request::Get { bucket, key } if v.get("object_id").is_none_or(Value::is_null) => {
            Err(CliError::Missing(format!(
                "{bucket}/{key}: {}",
                if v.get("deleted").and_then(Value::as_bool) == Some(true) {
                    "deleted"
                } else {
                    "not found"
                }
            )))
        }
        Request::Verify if v.get("ok").and_then(Value::as_bool) != Some(true) => {
            Err(CliError::Missing(
                "verify found problems (listed above); restore the store from a peer or a backup"
                    .into(),
            ))
        }
        _ => Ok(()),
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn short(hex: &str) -> &str {
    hex.get(..10).unwrap_or(hex)
}

/// The text form of an answer.
pub fn text(request: &Request, v: &Value) -> String {
    match request {
        Request::Put { .. } | Request::Delete { .. } => format!(
            "wrote {} at {} (hlc {}) by {}, on {} parent(s)\n",
            short(s(v, "hash")),
            s(v, "time"),
            n(v, "hlc"),
            short(s(v, "author")),
            n(v, "parents")
        ),
        Request::Get { .. } => match v.get("object_id").and_then(Value::as_str) {
            Some(id) => format!("{id}\n"),
            None => String::new(),
        },
        Request::Ls { .. } => {
            let mut out = String::new();
            for row in v.get("objects").and_then(Value::as_array).into_iter().flatten() {
                let _ = writeln!(out, "{}  {}", s(row, "object_id"), s(row, "key"));
            }
            out
        }
        Request::Log { graph, .. } => log_text(v, *graph),
        Request::Sync { .. } => format!(
            "synced with {}: {} round trips; sent {} entries ({} B), received {} entries ({} B); protocol overhead {} B; {} ms\n",
            short(s(v, "peer")),
            n(v, "round_trips"),
            n(v, "entries_sent"),
            n(v, "entry_bytes_sent"),
            n(v, "entries_received"),
            n(v, "entry_bytes_received"),
            n(v, "overhead_bytes"),
            n(v, "millis")
        ),
        Request::Status => status_text(v),
        Request::Verify => {
            let mut out = format!(
                "{}: {} entries, {} held back, {} deferred checked\n",
                if v.get("ok").and_then(Value::as_bool) == Some(true) {
                    "ok"
                } else {
                    "PROBLEMS"
                },
                n(v, "entries"),
                n(v, "held_back"),
                n(v, "deferred")
            );
            for p in v.get("problems").and_then(Value::as_array).into_iter().flatten() {
                let _ = writeln!(out, "  {}", p.as_str().unwrap_or(""));
            }
            out
        }
        Request::Allow { id } => format!("allowed {id}\n"),
        Request::Disallow { id } => format!("disallowed {id} (its connection is closed, its new entries refused)\n"),
    }
}

fn status_text(v: &Value) -> String {
    let mut out = String::new();
    if let Some(id) = v.get("node").and_then(Value::as_str) {
        let _ = writeln!(out, "node      {id}");
    }
    let _ = writeln!(
        out,
        "server    {}",
        if v.get("server").and_then(Value::as_bool) == Some(true) {
            "running"
        } else {
            "not running (read from the file)"
        }
    );
    let _ = writeln!(
        out,
        "entries   {} applied, {} held back, {} deferred, {} registers",
        n(v, "entries"),
        n(v, "held_back"),
        n(v, "deferred"),
        n(v, "registers")
    );
    let heads = v.get("heads").and_then(Value::as_array);
    let _ = writeln!(out, "heads     {}", heads.map_or(0, Vec::len));
    for h in heads.into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {} {} by {}",
            short(s(h, "hash")),
            s(h, "time"),
            short(s(h, "author"))
        );
    }
    let peers = v.get("peers").and_then(Value::as_array);
    let _ = writeln!(out, "peers     {}", peers.map_or(0, Vec::len));
    for p in peers.into_iter().flatten() {
        let _ = writeln!(out, "  {}", peer_text(p));
    }
    out
}

/// One peer of `status`: the fields of the node's `PeerStatus` a person looks for first.
fn peer_text(p: &Value) -> String {
    let flag = |k: &str| p.get(k).and_then(Value::as_bool) == Some(true);
    let last = match p.get("last_sync").and_then(Value::as_u64) {
        Some(ms) => format!(
            "last sync {}",
            format_hlc(Hlc(ms.saturating_mul(1_000_000)))
        ),
        None => "never synced".into(),
    };
    let lag = match p.get("lag_seconds").and_then(Value::as_u64) {
        Some(secs) => format!("{secs} s ago, lag {} entries", n(p, "lag_entries")),
        None => format!("lag {} entries", n(p, "lag_entries")),
    };
    format!(
        "{} {} {}{}; {last} ({lag}); {} sessions ({} failed); in {} B, out {} B; pushed {}, dropped {}",
        short(s(p, "id")),
        p.get("addr").and_then(Value::as_str).unwrap_or("(no address)"),
        if flag("connected") { "connected" } else { "not connected" },
        if flag("member") { "" } else { ", NOT a member" },
        n(p, "sessions"),
        n(p, "sessions_failed"),
        n(p, "bytes_in"),
        n(p, "bytes_out"),
        n(p, "entries_pushed"),
        n(p, "pushes_dropped"),
    )
}

fn describe(row: &Value) -> String {
    let what = match s(row, "op") {
        "put" => format!(
            "put {}/{} -> {}",
            s(row, "bucket"),
            s(row, "key"),
            short(s(row, "object_id"))
        ),
        "delete" => format!("delete {}/{}", s(row, "bucket"), s(row, "key")),
        "merge" => format!(
            "merge of {} branches",
            row.get("parents")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        ),
        other => other.to_string(),
    };
    let won = match row.get("won").and_then(Value::as_bool) {
        Some(true) => "  [wins]",
        Some(false) => "  [overwritten]",
        None => "",
    };
    format!(
        "{} {} {}  {what}{won}",
        short(s(row, "hash")),
        s(row, "time"),
        short(s(row, "author"))
    )
}

fn conflict_lines(row: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for c in row
        .get("conflicts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let w = c.get("winner").unwrap_or(&Value::Null);
        let losers: Vec<String> = c
            .get("branch_winners")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|b| s(b, "hash") != s(w, "hash"))
            .map(|b| format!("{} by {}", short(s(b, "hash")), short(s(b, "author"))))
            .collect();
        out.push(format!(
            "conflict on {}/{}: {} {} by {} wins over {}",
            s(c, "bucket"),
            s(c, "key"),
            if w.get("delete").and_then(Value::as_bool) == Some(true) {
                "delete"
            } else {
                "put"
            },
            short(s(w, "hash")),
            short(s(w, "author")),
            losers.join(", ")
        ));
    }
    if let Some(e) = row.get("conflicts_error").and_then(Value::as_str) {
        out.push(format!("(conflicts not shown: {e})"));
    }
    out
}

fn log_text(v: &Value, graph: bool) -> String {
    let rows: Vec<&Value> = v
        .get("entries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let mut out = String::new();
    if graph {
        let nodes: Vec<Node<&str>> = rows
            .iter()
            .map(|r| Node {
                id: s(r, "hash"),
                parents: r
                    .get("parents")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect(),
            })
            .collect();
        for line in draw(&nodes) {
            match line.row {
                None => {
                    let _ = writeln!(out, "{}", line.graph);
                }
                Some(r) => {
                    let _ = writeln!(out, "{} {}", line.graph, describe(rows[r]));
                    let cont = line.graph.replace('*', "|");
                    for c in conflict_lines(rows[r]) {
                        let _ = writeln!(out, "{cont}     {c}");
                    }
                }
            }
        }
    } else {
        for r in &rows {
            out.push_str(&describe(r));
            out.push('\n');
            for c in conflict_lines(r) {
                let _ = writeln!(out, "    {c}");
            }
        }
    }
    let _ = writeln!(out, "({} of {} entries shown)", rows.len(), n(v, "total"));
    out
}
