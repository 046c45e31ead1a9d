//! Commands as requests, and what they do on a store: one code path whether the store is
//! opened by this process or held by a running `serve` (which runs the same functions when a
//! request comes in over the control socket). Every answer is a JSON value; `output` turns it
//! into text.

use std::collections::VecDeque;
use std::time::Duration;

use oplog_node::cluster_alpn;
use oplog_store::protocol::dag::{merge_conflicts, merge_parents, DEFAULT_MAX_VISITS};
use oplog_store::protocol::{
    Hlc, HlcClock, LogEntry, ObjectId, Op, SigningKey, SystemClock, DEFAULT_MAX_DRIFT,
};
use oplog_store::{InsertOutcome, LwwWrite, Store};
use serde_json::{json, Value};

use crate::cli::Command;
use crate::error::CliError;
use crate::timefmt::format_hlc;

/// One command, as sent over the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Point `bucket/key` at `object_id`.
    Put {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Object.
        object_id: ObjectId,
    },
    /// Delete `bucket/key`.
    Delete {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// Read `bucket/key`.
    Get {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// List a bucket.
    Ls {
        /// Bucket.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
    /// The audit trail.
    Log {
        /// At most this many entries, the newest.
        limit: usize,
        /// Draw the DAG (the client draws it; the rows are the same).
        graph: bool,
        /// Only the writes to this register.
        register: Option<(String, String)>,
    },
    /// Reconcile with a peer.
    Sync {
        /// The peer as given: `ID` or `ID@IP:PORT`.
        peer: String,
        /// The cluster secret (used only without a server).
        cluster_secret: Option<String>,
        /// Seconds to wait for the connection.
        timeout: u64,
    },
    /// The node's state.
    Status,
    /// Check the store.
    Verify,
    /// Admit a member.
    Allow {
        /// Its id (hex).
        id: String,
    },
    /// Remove a member.
    Disallow {
        /// Its id (hex).
        id: String,
    },
}

impl Request {
    /// The request for a command (not `serve` or `demo`, which run here).
    pub fn from_command(command: Command) -> Result<Self, CliError> {
        Ok(match command {
            Command::Put {
                bucket,
                key,
                object_id,
            } => Request::Put {
                bucket,
                key,
                object_id: ObjectId(parse_hex32(&object_id, "OBJECT_ID")?),
            },
            Command::Delete { bucket, key } => Request::Delete { bucket, key },
            Command::Get { bucket, key } => Request::Get { bucket, key },
            Command::Ls { bucket, prefix } => Request::Ls { bucket, prefix },
            Command::Log { limit, graph, key } => Request::Log {
                limit,
                graph,
                register: key.as_deref().map(parse_register).transpose()?,
            },
            Command::Sync {
                peer,
                cluster_secret,
                timeout,
            } => {
                parse_peer(&peer)?;
                Request::Sync {
                    peer,
                    cluster_secret,
                    timeout,
                }
            }
            Command::Status => Request::Status,
            Command::Verify => Request::Verify,
            Command::Allow { id } => {
                parse_id(&id)?;
                Request::Allow { id }
            }
            Command::Disallow { id } => {
                parse_id(&id)?;
                Request::Disallow { id }
            }
            Command::Serve(_) | Command::Demo { .. } => {
                return Err(CliError::Usage("serve and demo are not requests".into()))
            }
        })
    }

    /// The request as one JSON object (`{"cmd": ..., ...}`).
    pub fn to_json(&self) -> Value {
        match self {
            Request::Put {
                bucket,
                key,
                object_id,
            } => {
                json!({"cmd": "put", "bucket": bucket, "key": key, "object_id": hex::encode(object_id.0)})
            }
            Request::Delete { bucket, key } => {
                json!({"cmd": "delete", "bucket": bucket, "key": key})
            }
            Request::Get { bucket, key } => json!({"cmd": "get", "bucket": bucket, "key": key}),
            Request::Ls { bucket, prefix } => {
                json!({"cmd": "ls", "bucket": bucket, "prefix": prefix})
            }
            Request::Log {
                limit,
                graph,
                register,
            } => json!({"cmd": "log", "limit": limit, "graph": graph,
                "key": register.as_ref().map(|(b, k)| format!("{b}/{k}"))}),
            Request::Sync {
                peer,
                cluster_secret,
                timeout,
            } => {
                json!({"cmd": "sync", "peer": peer, "cluster_secret": cluster_secret, "timeout": timeout})
            }
            Request::Status => json!({"cmd": "status"}),
            Request::Verify => json!({"cmd": "verify"}),
            Request::Allow { id } => json!({"cmd": "allow", "id": id}),
            Request::Disallow { id } => json!({"cmd": "disallow", "id": id}),
        }
    }

    /// Parses a request sent over the control socket; the error says what is malformed.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let s = |name: &str| -> Result<String, String> {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("request lacks the string field `{name}`"))
        };
        let cmd = s("cmd")?;
        Ok(match cmd.as_str() {
            "put" => Request::Put {
                bucket: s("bucket")?,
                key: s("key")?,
                object_id: ObjectId(
                    parse_hex32(&s("object_id")?, "object_id").map_err(|e| e.to_string())?,
                ),
            },
            "delete" => Request::Delete {
                bucket: s("bucket")?,
                key: s("key")?,
            },
            "get" => Request::Get {
                bucket: s("bucket")?,
                key: s("key")?,
            },
            "ls" => Request::Ls {
                bucket: s("bucket")?,
                prefix: s("prefix")?,
            },
            "log" => Request::Log {
                limit: v
                    .get("limit")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or("request lacks the number field `limit`")?,
                graph: v.get("graph").and_then(Value::as_bool).unwrap_or(false),
                register: match v.get("key").and_then(Value::as_str) {
                    Some(k) => Some(parse_register(k).map_err(|e| e.to_string())?),
                    None => None,
                },
            },
            "sync" => Request::Sync {
                peer: s("peer")?,
                cluster_secret: v
                    .get("cluster_secret")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                timeout: v.get("timeout").and_then(Value::as_u64).unwrap_or(10),
            },
            "status" => Request::Status,
            "verify" => Request::Verify,
            "allow" => Request::Allow { id: s("id")? },
            "disallow" => Request::Disallow { id: s("id")? },
            other => return Err(format!("unknown command `{other}`")),
        })
    }
}

/// 32 bytes from 64 hex characters; `what` names the argument in the error.
pub fn parse_hex32(s: &str, what: &str) -> Result<[u8; 32], CliError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| {
        CliError::Usage(format!(
            "{what} must be 64 hex characters (32 bytes), got {:?}: {e}",
            truncate(s, 80)
        ))
    })?;
    Ok(out)
}

/// A node id: 64 hex characters naming a valid ed25519 public key.
pub fn parse_id(s: &str) -> Result<iroh::EndpointId, CliError> {
    let bytes = parse_hex32(s, "a node id")?;
    iroh::EndpointId::from_bytes(&bytes).map_err(|e| {
        CliError::Usage(format!(
            "{} is not a node id (not an ed25519 public key: {e}); copy the id `oplog serve` prints",
            truncate(s, 80)
        ))
    })
}

/// `ID` or `ID@IP:PORT`.
pub fn parse_peer(s: &str) -> Result<(iroh::EndpointId, Option<std::net::SocketAddr>), CliError> {
    match s.split_once('@') {
        None => Ok((parse_id(s)?, None)),
        Some((id, addr)) => {
            let addr = addr.parse().map_err(|e| {
                CliError::Usage(format!(
                    "peer address {:?} is not IP:PORT ({e}); write peers as ID@127.0.0.1:4433",
                    truncate(addr, 80)
                ))
            })?;
            Ok((parse_id(id)?, Some(addr)))
        }
    }
}

/// `BUCKET/KEY`, split at the first slash (keys may contain slashes, buckets may not).
pub fn parse_register(s: &str) -> Result<(String, String), CliError> {
    s.split_once('/')
        .map(|(b, k)| (b.to_string(), k.to_string()))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--key wants BUCKET/KEY, got {:?} (no slash)",
                truncate(s, 80)
            ))
        })
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The answer to the reading requests (`get`, `ls`, `log`, `verify`) and the store's part of
/// `status`, from the store alone; `None` for requests that are not pure reads.
pub fn read(store: &Store, request: &Request) -> Result<Option<Value>, CliError> {
    Ok(Some(match request {
        Request::Get { bucket, key } => {
            let winner = store.winner(&(bucket.clone(), key.clone()))?;
            json!({
                "bucket": bucket,
                "key": key,
                "object_id": store.get(bucket, key)?.map(|o| hex::encode(o.0)),
                "deleted": winner.is_some_and(|w| w.is_delete),
                "written_by": winner.map(|w| w.node_id.to_string()),
                "hlc": winner.map(|w| w.key.hlc.0),
            })
        }
        Request::Ls { bucket, prefix } => {
            let rows: Vec<Value> = store
                .list(bucket, prefix)?
                .into_iter()
                .map(|(k, o)| json!({"key": k, "object_id": hex::encode(o.0)}))
                .collect();
            json!({"bucket": bucket, "prefix": prefix, "objects": rows})
        }
        Request::Log {
            limit, register, ..
        } => log(store, *limit, register.as_ref())?,
        Request::Verify => {
            let r = store.verify()?;
            json!({
                "ok": r.is_ok(),
                "entries": r.entries,
                "held_back": r.held_back,
                "deferred": r.deferred,
                "problems": r.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        }
        Request::Status => store_status(store)?,
        _ => return Ok(None),
    }))
}

/// The store's part of `status`.
pub fn store_status(store: &Store) -> Result<Value, CliError> {
    let stats = store.stats()?;
    let heads: Vec<Value> = store
        .heads()?
        .into_iter()
        .map(|(k, author)| {
            json!({"hash": k.hash.to_string(), "hlc": k.hlc.0, "time": format_hlc(k.hlc), "author": author.to_string()})
        })
        .collect();
    Ok(json!({
        "entries": stats.applied,
        "held_back": stats.held_back,
        "deferred": stats.deferred,
        "registers": stats.registers,
        "heads": heads,
    }))
}

/// The newest `limit` entries (or a register's writes), newest first, each with who wrote
/// it, when, what, whether it is the current winner, and for merges the conflicts they
/// resolve.
fn log(
    store: &Store,
    limit: usize,
    register: Option<&(String, String)>,
) -> Result<Value, CliError> {
    let mut entries: VecDeque<LogEntry> = VecDeque::new();
    if let Some(reg) = register {
        for item in store.history(reg)? {
            if let Some(e) = store.entry(&item.write.key.hash)? {
                if entries.len() == limit {
                    entries.pop_front();
                }
                entries.push_back(e);
            }
        }
    } else if limit > 0 {
        store.for_each_entry(|e| {
            if entries.len() == limit {
                entries.pop_front();
            }
            entries.push_back(e);
            Ok(())
        })?;
    }
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries.iter().rev() {
        rows.push(entry_json(store, e)?);
    }
    Ok(json!({"entries": rows, "total": store.len()}))
}

fn write_json(w: &LwwWrite) -> Value {
    json!({"hash": w.key.hash.to_string(), "hlc": w.key.hlc.0, "author": w.node_id.to_string(), "delete": w.is_delete})
}

/// One log row.
pub fn entry_json(store: &Store, e: &LogEntry) -> Result<Value, CliError> {
    let mut row = json!({
        "hash": e.hash.to_string(),
        "hlc": e.hlc.0,
        "time": format_hlc(e.hlc),
        "author": e.node_id.to_string(),
        "parents": e.parents.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    let obj = row.as_object_mut().expect("a json object");
    match &e.action {
        Op::Put {
            bucket,
            key,
            object_id,
        } => {
            obj.insert("op".into(), "put".into());
            obj.insert("bucket".into(), bucket.as_str().into());
            obj.insert("key".into(), key.as_str().into());
            obj.insert("object_id".into(), hex::encode(object_id.0).into());
        }
        Op::Delete { bucket, key } => {
            obj.insert("op".into(), "delete".into());
            obj.insert("bucket".into(), bucket.as_str().into());
            obj.insert("key".into(), key.as_str().into());
        }
        Op::Merge => {
            obj.insert("op".into(), "merge".into());
        }
        other => {
            obj.insert("op".into(), format!("{other:?}").into());
        }
    }
    if let Some((reg, _)) = LwwWrite::of(e) {
        let won = store.winner(&reg)?.is_some_and(|w| w.key.hash == e.hash);
        obj.insert("won".into(), won.into());
    }
    if matches!(e.action, Op::Merge) {
        // Conflicts explain a merge; a walk over a damaged or huge DAG is reported, not fatal.
        match merge_conflicts::<Op>(store, &e.parents, DEFAULT_MAX_VISITS) {
            Ok(conflicts) => {
                let list: Vec<Value> = conflicts
                    .iter()
                    .map(|c| {
                        json!({
                            "bucket": c.key.0, "key": c.key.1,
                            "winner": write_json(&c.winner),
                            "branch_winners": c.branch_winners.iter().map(write_json).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                obj.insert("conflicts".into(), list.into());
            }
            Err(err) => {
                obj.insert("conflicts_error".into(), err.to_string().into());
            }
        }
    }
    Ok(row)
}

/// A write made by this process on a store it opened itself: stamped with a clock restored
/// past every stamp in the store (so it never goes backwards across restarts and wins over
/// everything it has seen), parented on every head (it joins the branches, as any write does),
/// signed with the node's identity key.
pub fn local_write(store: &Store, key: &SigningKey, op: Op) -> Result<Value, CliError> {
    let heads = store.heads()?;
    // The greatest stamp in the store is a head's: a child's stamp exceeds its parents'.
    let last = heads.iter().map(|(k, _)| k.hlc).max().unwrap_or(Hlc(0));
    let mut clock = HlcClock::restore(SystemClock, DEFAULT_MAX_DRIFT, last);
    let hlc = clock
        .tick()
        .map_err(|e| CliError::Write(format!("the clock cannot stamp it: {e}")))?;
    let entry = LogEntry::sign(key, hlc, op, merge_parents(&heads))
        .map_err(|e| CliError::Write(format!("{e}")))?;
    let report = store.insert([entry.clone()])?;
    match report.outcomes.first().map(|(_, o)| o) {
        Some(InsertOutcome::Applied | InsertOutcome::Duplicate) => {}
        Some(other) => return Err(CliError::Write(format!("the store answered {other:?}"))),
        None => return Err(CliError::Write("the store reported no outcome".into())),
    }
    Ok(written(&entry))
}

/// The answer to a write.
pub fn written(e: &LogEntry) -> Value {
    json!({
        "hash": e.hash.to_string(),
        "hlc": e.hlc.0,
        "time": format_hlc(e.hlc),
        "author": e.node_id.to_string(),
        "parents": e.parents.len(),
    })
}

/// The answer to a sync.
pub fn sync_json(peer: &iroh::EndpointId, r: &oplog_node::SyncReport) -> Value {
    json!({
        "peer": peer.to_string(),
        "round_trips": r.round_trips(),
        "entries_sent": r.entries_sent,
        "entries_received": r.entries_received,
        "entry_bytes_sent": r.entry_bytes_sent,
        "entry_bytes_received": r.entry_bytes_received,
        "bytes_sent": r.bytes_sent,
        "bytes_received": r.bytes_received,
        "overhead_bytes": r.overhead_bytes(),
        "millis": u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
    })
}

/// Maps a failed sync to the error a user can act on.
pub fn sync_error(
    peer: &iroh::EndpointId,
    me: &iroh::EndpointId,
    e: &oplog_node::SyncError,
) -> CliError {
    use oplog_node::SyncError as E;
    match e {
        E::Connect { source, .. } => CliError::Unreachable {
            peer: peer.to_string(),
            reason: source.to_string(),
        },
        E::Refused { code, reason, .. } if *code == u64::from(oplog_node::CLOSE_NOT_ALLOWED) => {
            CliError::Refused {
                peer: peer.to_string(),
                me: me.to_string(),
                reason: reason.clone(),
            }
        }
        other => CliError::Sync {
            peer: peer.to_string(),
            reason: other.to_string(),
        },
    }
}

/// `sync` without a server: an endpoint of our own (the node's identity, loopback or any
/// address, no relay, no lookup) dials the peer and runs one session on the store.
pub async fn local_sync(
    store: std::sync::Arc<Store>,
    secret: [u8; 32],
    peer: &str,
    cluster_secret: Option<&str>,
    timeout: u64,
) -> Result<Value, CliError> {
    let (id, addr) = parse_peer(peer)?;
    let Some(addr) = addr else {
        return Err(CliError::Usage(format!(
            "without a running `oplog serve` the peer needs its address: {id}@IP:PORT"
        )));
    };
    // loopback peers are dialled from loopback, others from every interface
    let bind: std::net::SocketAddr = match addr.ip() {
        ip if ip.is_loopback() => (ip, 0).into(),
        std::net::IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        std::net::IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let endpoint = crate::serve::bind_endpoint(secret, bind, vec![]).await?;
    let me = endpoint.id();
    let alpn =
        cluster_secret.map_or_else(|| oplog_node::ALPN.to_vec(), |s| cluster_alpn(s.as_bytes()));
    let sync = oplog_node::OplogSync::new(store, [id]).with_alpn(alpn);
    let target = iroh::EndpointAddr::new(id).with_ip_addr(addr);
    let result = tokio::time::timeout(
        Duration::from_secs(timeout.max(1)),
        sync.sync_with(&endpoint, target),
    )
    .await;
    endpoint.close().await;
    match result {
        Err(_) => Err(CliError::Unreachable {
            peer: id.to_string(),
            reason: format!("no answer within {timeout} s"),
        }),
        Ok(Err(e)) => Err(sync_error(&id, &me, &e)),
        Ok(Ok(report)) => Ok(sync_json(&id, &report)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oplog_store::protocol::WallClock;

    fn id(seed: u8) -> String {
        iroh::SecretKey::from_bytes(&[seed; 32])
            .public()
            .to_string()
    }

    #[test]
    fn every_request_survives_the_control_socket() {
        let requests = [
            Request::Put {
                bucket: "b".into(),
                key: "a/b c".into(),
                object_id: ObjectId([7; 32]),
            },
            Request::Delete {
                bucket: "b".into(),
                key: "k".into(),
            },
            Request::Get {
                bucket: "b".into(),
                key: "k".into(),
            },
            Request::Ls {
                bucket: "b".into(),
                prefix: "2026/".into(),
            },
            Request::Log {
                limit: 7,
                graph: true,
                register: Some(("b".into(), "x/y".into())),
            },
            Request::Log {
                limit: 0,
                graph: false,
                register: None,
            },
            Request::Sync {
                peer: format!("{}@127.0.0.1:4", id(1)),
                cluster_secret: Some("s".into()),
                timeout: 3,
            },
            Request::Status,
            Request::Verify,
            Request::Allow { id: id(2) },
            Request::Disallow { id: id(3) },
        ];
        for r in requests {
            let line = r.to_json().to_string();
            let back: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(Request::from_json(&back), Ok(r), "{line}");
        }
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        for (v, says) in [
            (json!({}), "cmd"),
            (json!({"cmd": "launch"}), "unknown command"),
            (json!({"cmd": "get", "bucket": "b"}), "`key`"),
            (
                json!({"cmd": "put", "bucket": "b", "key": "k", "object_id": "zz"}),
                "64 hex",
            ),
            (json!({"cmd": "log", "limit": -1}), "limit"),
            (
                json!({"cmd": "log", "limit": 1, "key": "noslash"}),
                "BUCKET/KEY",
            ),
        ] {
            let err = Request::from_json(&v).unwrap_err();
            assert!(err.contains(says), "{v}: {err}");
        }
    }

    #[test]
    fn arguments_are_checked_before_anything_runs() {
        assert!(matches!(parse_hex32("ab", "X"), Err(CliError::Usage(_))));
        assert_eq!(parse_hex32(&"0f".repeat(32), "X").unwrap(), [0x0f; 32]);
        let (peer, addr) = parse_peer(&format!("{}@127.0.0.1:9", id(4))).unwrap();
        assert_eq!(peer.to_string(), id(4));
        assert_eq!(addr, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(parse_peer(&id(4)).unwrap().1, None);
        assert!(matches!(
            parse_peer(&format!("{}@nowhere", id(4))),
            Err(CliError::Usage(_))
        ));
        assert_eq!(
            parse_register("photos/2026/cat.jpg").unwrap(),
            ("photos".to_string(), "2026/cat.jpg".to_string())
        );
        assert!(parse_register("photos").is_err());
    }

    #[test]
    fn a_local_write_follows_every_head_and_stamps_past_them() {
        let dir = tempfile::tempdir().unwrap();
        let store: Store = Store::open(dir.path().join("log.redb")).unwrap();
        let (a, b) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        // two concurrent roots, one stamped far in the future of the other
        let far = SystemClock.now_nanos() + 5_000_000_000; // 5 s ahead: within the drift
        let put = |k: &str| Op::Put {
            bucket: "b".into(),
            key: k.into(),
            object_id: ObjectId([1; 32]),
        };
        let r1 = LogEntry::sign(&a, Hlc(5), put("x"), vec![]).unwrap();
        let r2 = LogEntry::sign(&b, Hlc(far), put("y"), vec![]).unwrap();
        store.insert([r1.clone(), r2.clone()]).unwrap();
        assert_eq!(store.heads().unwrap().len(), 2);
        let w = local_write(&store, &a, put("x")).unwrap();
        assert!(w["hlc"].as_u64().unwrap() > far, "stamped past every head");
        assert_eq!(w["parents"], 2, "joins both branches");
        assert_eq!(store.heads().unwrap().len(), 1);
        let row = read(
            &store,
            &Request::Get {
                bucket: "b".into(),
                key: "x".into(),
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(row["written_by"], hex::encode(a.verifying_key().as_bytes()));
    }
}
