//! The control socket: how commands reach a running `serve`, and what they do without one.
//!
//! Protocol: a Unix stream socket `DATA_DIR/control.sock`; the client writes one request as a
//! JSON object on one line (`{"cmd": "put", ...}`, see [`Request::to_json`]) and reads one
//! answer line: `{"ok": true, "result": ...}` or `{"ok": false, "error": "...", "code": N}`
//! (`N` the exit code). A connection may carry several requests, one after the other. Lines
//! longer than [`MAX_LINE`] are refused.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oplog_store::{Options, Store};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::datadir::DataDir;
use crate::error::CliError;
use crate::exec::{self, Request};

/// Longest request or answer line accepted (answers with a long log can be large).
pub const MAX_LINE: u64 = 64 << 20;

/// Runs `request` against the node of `data_dir`: through its control socket if a server
/// answers there, on the log file directly otherwise. `progress` shows a progress line on
/// stderr for a long local sync.
pub async fn call(data_dir: &Path, request: &Request, progress: bool) -> Result<Value, CliError> {
    let dir = DataDir::existing(data_dir)?;
    let socket = dir.socket();
    if let Ok(stream) = UnixStream::connect(&socket).await {
        if !progress {
            return ask(stream, &socket, request).await;
        }
        // a sync through the server: watch its entry count on a second connection
        let shown = Arc::new(AtomicBool::new(false));
        let watcher = tokio::spawn(show_progress(
            Counter::Socket(socket.clone()),
            Arc::clone(&shown),
        ));
        let result = ask(stream, &socket, request).await;
        end_progress(watcher, &shown).await;
        return result;
    }
    // No server (no socket, or a stale one left by a killed server): open the file here.
    local(&dir, request, progress).await
}

async fn ask(stream: UnixStream, socket: &Path, request: &Request) -> Result<Value, CliError> {
    let broken = |reason: String| CliError::Control {
        path: socket.to_path_buf(),
        reason,
    };
    let (read, mut write) = stream.into_split();
    let mut line = request.to_json().to_string();
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|e| broken(format!("cannot send the request ({e})")))?;
    let mut answer = String::new();
    BufReader::new(read.take(MAX_LINE))
        .read_line(&mut answer)
        .await
        .map_err(|e| broken(format!("cannot read the answer ({e})")))?;
    if answer.is_empty() {
        return Err(broken(
            "the server closed the connection without answering".into(),
        ));
    }
    let v: Value = serde_json::from_str(&answer)
        .map_err(|e| broken(format!("the answer is not JSON ({e})")))?;
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    } else {
        Err(CliError::Remote {
            message: v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("the server reported an error without a message")
                .to_string(),
            code: v
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u8::try_from(c).ok())
                .filter(|c| *c != 0)
                .unwrap_or(1),
        })
    }
}

/// Opens the log of `dir` for this process, telling a lock held by another process apart.
pub fn open_store(dir: &DataDir, create: bool) -> Result<Store, CliError> {
    let path = dir.log();
    let opened = if create {
        Store::open_with(&path, Options::default())
    } else {
        Store::open_existing(&path, Options::default())
    };
    opened.map_err(|e| match e {
        oplog_store::Error::Open {
            source: redb::DatabaseError::DatabaseAlreadyOpen,
            ..
        } => CliError::Locked {
            path: path.clone(),
            socket: dir.socket(),
        },
        oplog_store::Error::NotFound { .. } => CliError::DataDir {
            path: dir.path().to_path_buf(),
            reason: format!(
                "holds no log yet ({} is missing); write to it or start `oplog serve` there first",
                path.display()
            ),
        },
        other => CliError::Store(other),
    })
}

/// A request run by this process on the log file.
async fn local(dir: &DataDir, request: &Request, progress: bool) -> Result<Value, CliError> {
    let dir_name = dir.path().display().to_string();
    match request {
        Request::Allow { .. } => Err(CliError::NeedsServer {
            command: "allow",
            dir: dir_name,
        }),
        Request::Disallow { .. } => Err(CliError::NeedsServer {
            command: "disallow",
            dir: dir_name,
        }),
        Request::Put {
            bucket,
            key,
            object_id,
        } => {
            let secret = dir.identity(true)?;
            let store = open_store(dir, true)?;
            let op = oplog_store::protocol::Op::Put {
                bucket: bucket.clone(),
                key: key.clone(),
                object_id: *object_id,
            };
            exec::local_write(&store, &signing_key(secret), op)
        }
        Request::Delete { bucket, key } => {
            let secret = dir.identity(true)?;
            let store = open_store(dir, true)?;
            let op = oplog_store::protocol::Op::Delete {
                bucket: bucket.clone(),
                key: key.clone(),
            };
            exec::local_write(&store, &signing_key(secret), op)
        }
        Request::Sync {
            peer,
            cluster_secret,
            timeout,
        } => {
            let secret = dir.identity(true)?;
            let store = Arc::new(open_store(dir, true)?);
            let shown = Arc::new(AtomicBool::new(false));
            let watcher = progress.then(|| {
                tokio::spawn(show_progress(
                    Counter::Store(Arc::clone(&store)),
                    Arc::clone(&shown),
                ))
            });
            let result =
                exec::local_sync(store, secret, peer, cluster_secret.as_deref(), *timeout).await;
            if let Some(w) = watcher {
                end_progress(w, &shown).await;
            }
            result
        }
        Request::Status => {
            let store = open_store(dir, false)?;
            let mut v = exec::store_status(&store)?;
            let me = dir.identity(false).ok().map(node_id_of);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("node".into(), me.map(|id| id.to_string()).into());
                obj.insert("server".into(), false.into());
                obj.insert("peers".into(), json!([]));
            }
            Ok(v)
        }
        read => {
            let store = open_store(dir, false)?;
            Ok(exec::read(&store, read)?.unwrap_or(Value::Null))
        }
    }
}

/// The entry-signing key of a node: its iroh secret key's bytes.
pub fn signing_key(secret: [u8; 32]) -> oplog_store::protocol::SigningKey {
    oplog_store::protocol::SigningKey::from_bytes(&secret)
}

/// The node id (iroh endpoint id) of a secret key.
pub fn node_id_of(secret: [u8; 32]) -> iroh::EndpointId {
    iroh::SecretKey::from_bytes(&secret).public()
}

/// Where the progress line reads the number of applied entries.
enum Counter {
    /// The store this process opened.
    Store(Arc<Store>),
    /// A running server, asked for its `status` on a connection of its own.
    Socket(std::path::PathBuf),
}

impl Counter {
    async fn entries(&self) -> Option<u64> {
        match self {
            Counter::Store(store) => Some(store.len()),
            Counter::Socket(path) => {
                let stream = UnixStream::connect(path).await.ok()?;
                let v = ask(stream, path, &Request::Status).await.ok()?;
                v.get("entries").and_then(Value::as_u64)
            }
        }
    }
}

/// Prints a progress line on stderr while a sync brings entries in (after a second, so short
/// syncs print nothing); sets `shown` once it printed, so the caller clears the line.
async fn show_progress(counter: Counter, shown: Arc<AtomicBool>) {
    let start = Instant::now();
    let before = counter.entries().await.unwrap_or(0);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        if start.elapsed() >= Duration::from_secs(1) {
            let Some(now) = counter.entries().await else {
                continue;
            };
            let got = now.saturating_sub(before);
            #[allow(clippy::cast_precision_loss)]
            let rate = got as f64 / start.elapsed().as_secs_f64();
            eprint!("\rsyncing: {got} entries received ({rate:.0}/s)   ");
            shown.store(true, Ordering::Relaxed);
        }
    }
}

/// Stops the progress line and clears it if it was shown.
async fn end_progress(watcher: tokio::task::JoinHandle<()>, shown: &AtomicBool) {
    watcher.abort();
    let _ = watcher.await;
    if shown.load(Ordering::Relaxed) {
        eprint!("\r\x1b[K");
    }
}

/// Serves the control socket at `path` until the returned future is dropped: each request is
/// parsed and given to `handler`; its answer (or error) goes back as one line.
pub async fn serve_socket<F, Fut>(listener: UnixListener, handler: F)
where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, CliError>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read);
            loop {
                let mut line = String::new();
                match (&mut lines).take(MAX_LINE).read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if !line.ends_with('\n') && line.len() as u64 >= MAX_LINE {
                    // the rest of the line cannot be told from a next request: answer, close
                    let _ = write
                        .write_all(
                            b"{\"ok\":false,\"error\":\"request line too long\",\"code\":2}\n",
                        )
                        .await;
                    return;
                }
                let answer = match serde_json::from_str::<Value>(&line)
                    .map_err(|e| format!("the request is not JSON: {e}"))
                    .and_then(|v| Request::from_json(&v))
                {
                    Err(e) => json!({"ok": false, "error": e, "code": 2}),
                    Ok(req) => match handler(req).await {
                        Ok(result) => json!({"ok": true, "result": result}),
                        Err(e) => {
                            json!({"ok": false, "error": e.to_string(), "code": e.exit_code()})
                        }
                    },
                };
                let mut out = answer.to_string();
                out.push('\n');
                if write.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}
