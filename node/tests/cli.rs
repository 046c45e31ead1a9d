//! The `oplog` program end to end: the built binary, `serve` in child processes on temp
//! directories, commands through the control socket and on the file directly, and the errors
//! a user meets. Children are killed when their guard drops. Waits have generous deadlines
//! and nothing asserts on time.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_oplog");
/// How long a test waits for something that should happen within a second or two.
const PATIENCE: Duration = Duration::from_secs(90);

fn oplog(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("the oplog binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn json(o: &Output) -> Value {
    let text = ok(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A node whose identity the test chooses: `identity.key` written before anything runs.
fn node_dir(root: &Path, name: &str, seed: u8) -> (std::path::PathBuf, String) {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("identity.key"), [seed; 32]).unwrap();
    let id = iroh::SecretKey::from_bytes(&[seed; 32])
        .public()
        .to_string();
    (dir, id)
}

/// A running `oplog serve`, killed on drop.
struct Serve {
    child: Child,
    /// `ID@IP:PORT`.
    at: String,
    /// The metrics address, with `--metrics`.
    metrics: Option<String>,
}

impl Serve {
    fn start(dir: &Path, args: &[&str]) -> Serve {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut serve = Serve {
            child,
            at: String::new(),
            metrics: None,
        };
        loop {
            let line = rx
                .recv_timeout(PATIENCE)
                .expect("serve prints `ready ID@ADDR`");
            if let Some(m) = line.strip_prefix("metrics on http://") {
                serve.metrics = m.strip_suffix("/metrics").map(str::to_string);
            }
            if let Some(at) = line.strip_prefix("ready ") {
                serve.at = at.to_string();
                return serve;
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `args` until it succeeds (the cluster converging), or panics after [`PATIENCE`].
fn eventually(dir: &Path, args: &[&str]) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let o = oplog(dir, args);
        if o.status.success() {
            return stdout(&o);
        }
        assert!(
            Instant::now() < deadline,
            "`oplog {}` never succeeded; last stderr: {}",
            args.join(" "),
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const OBJ_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OBJ_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[test]
fn put_on_one_served_node_get_on_another() {
    let root = tempfile::tempdir().unwrap();
    let (a, a_id) = node_dir(root.path(), "a", 1);
    let (b, b_id) = node_dir(root.path(), "b", 2);
    let sa = Serve::start(&a, &["--allow", &b_id, "--cluster-secret", "s3"]);
    let peer = sa.at.clone();
    let _sb = Serve::start(
        &b,
        &[
            "--peer",
            &peer,
            "--anti-entropy",
            "0.5",
            "--cluster-secret",
            "s3",
        ],
    );
    assert!(sa.at.starts_with(&a_id));

    ok(&oplog(&a, &["put", "photos", "cat.jpg", OBJ_A]));
    assert_eq!(eventually(&b, &["get", "photos", "cat.jpg"]).trim(), OBJ_A);
    ok(&oplog(&b, &["put", "photos", "dog.jpg", OBJ_B]));
    assert_eq!(eventually(&a, &["get", "photos", "dog.jpg"]).trim(), OBJ_B);

    // the served node answers reading commands in JSON through its socket
    let status = json(&oplog(&b, &["--json", "status"]));
    assert_eq!(status["server"], true);
    assert_eq!(status["node"], b_id.as_str());
    let peers = status["peers"].as_array().expect("peers");
    assert!(
        peers.iter().any(|p| p.to_string().contains(&a_id)),
        "b lists a among its peers: {status}"
    );
    let ls = json(&oplog(&a, &["--json", "ls", "photos"]));
    let keys: Vec<&str> = ls["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["cat.jpg", "dog.jpg"]);

    // a delete on b propagates to a
    ok(&oplog(&b, &["delete", "photos", "cat.jpg"]));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let o = oplog(&a, &["get", "photos", "cat.jpg"]);
        if o.status.code() == Some(1) && stderr(&o).contains("deleted") {
            break;
        }
        assert!(Instant::now() < deadline, "the delete never reached a");
        std::thread::sleep(Duration::from_millis(100));
    }
    let verify = json(&oplog(&a, &["--json", "verify"]));
    assert_eq!(verify["ok"], true);
}

#[test]
fn json_answers_parse_without_a_server() {
    let root = tempfile::tempdir().unwrap();
    let (d, id) = node_dir(root.path(), "n", 3);
    let w = json(&oplog(&d, &["--json", "put", "b", "k/1", OBJ_A]));
    assert_eq!(w["author"], id.as_str());
    json(&oplog(&d, &["--json", "put", "b", "k/2", OBJ_B]));
    json(&oplog(&d, &["--json", "put", "b", "k/1", OBJ_B]));

    let get = json(&oplog(&d, &["--json", "get", "b", "k/1"]));
    assert_eq!(get["object_id"], OBJ_B, "the later write wins");
    let ls = json(&oplog(&d, &["--json", "ls", "b", "k/"]));
    assert_eq!(ls["objects"].as_array().unwrap().len(), 2);
    let log = json(&oplog(&d, &["--json", "log", "--key", "b/k/1"]));
    let rows = log["entries"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["won"], true, "newest first, and it won");
    assert_eq!(rows[1]["won"], false);
    assert_eq!(rows[0]["object_id"], OBJ_B);
    let status = json(&oplog(&d, &["--json", "status"]));
    assert_eq!(status["entries"], 3);
    assert_eq!(status["server"], false);
    assert_eq!(status["heads"].as_array().unwrap().len(), 1, "a chain");
    let verify = json(&oplog(&d, &["--json", "verify"]));
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["entries"], 3);
    // a missing key: the answer still parses, and the exit code says it is missing
    let o = oplog(&d, &["--json", "get", "b", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["object_id"].is_null());
}

#[test]
fn a_wrong_data_directory_is_named() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing");
    let o = oplog(&missing, &["get", "b", "k"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));

    let file = root.path().join("file");
    std::fs::write(&file, b"not a dir").unwrap();
    let o = oplog(&file, &["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));

    // a directory without a log yet, for a read
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = oplog(&empty, &["ls", "b"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("holds no log yet"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_with_2() {
    let root = tempfile::tempdir().unwrap();
    let o = oplog(root.path(), &["put", "b", "k", "not-hex"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("64 hex"), "{}", stderr(&o));
    let o = oplog(root.path(), &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = oplog(root.path(), &["log", "--key", "no-slash"]);
    assert_eq!(o.status.code(), Some(2));
    let o = oplog(root.path(), &["sync", "abc@127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2));
    // allow needs a running server
    let id = iroh::SecretKey::from_bytes(&[9; 32]).public().to_string();
    let o = oplog(root.path(), &["allow", &id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("oplog serve"), "{}", stderr(&o));
}

#[test]
fn a_locked_file_without_a_socket_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let (d, _) = node_dir(root.path(), "n", 4);
    let _s = Serve::start(&d, &[]);
    // through the socket: fine
    ok(&oplog(&d, &["put", "b", "k", OBJ_A]));
    // without it (as if another program held the file): the lock is named
    std::fs::remove_file(d.join("control.sock")).unwrap();
    let o = oplog(&d, &["get", "b", "k"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("locked by another process"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreachable_and_a_refusing_peer_are_told_apart() {
    let root = tempfile::tempdir().unwrap();
    let (a, _) = node_dir(root.path(), "a", 5);
    let (c, c_id) = node_dir(root.path(), "c", 6);
    let sa = Serve::start(&a, &[]);

    // nobody listens on this port (bound, then released)
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = iroh::SecretKey::from_bytes(&[7; 32]).public();
    let target = format!("{nobody}@127.0.0.1:{port}");
    let o = oplog(&c, &["sync", &target, "--timeout", "3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot reach peer"), "{}", stderr(&o));

    // a runs, but c is not one of its members
    let o = oplog(&c, &["sync", &sa.at, "--timeout", "30"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("refused this node"), "{err}");
    assert!(
        err.contains(&c_id),
        "the error names the id to allow: {err}"
    );

    // once a allows c (at run time), the same sync succeeds
    ok(&oplog(&a, &["allow", &c_id]));
    ok(&oplog(&a, &["put", "b", "k", OBJ_A]));
    let synced = json(&oplog(&c, &["--json", "sync", &sa.at, "--timeout", "30"]));
    assert_eq!(synced["entries_received"], 1);
    assert_eq!(ok(&oplog(&c, &["get", "b", "k"])).trim(), OBJ_A);

    // and once a removes c again, c is refused again
    ok(&oplog(&a, &["disallow", &c_id]));
    let o = oplog(&c, &["sync", &sa.at, "--timeout", "30"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refused this node"), "{}", stderr(&o));
}

#[test]
fn serve_answers_metrics_and_removes_its_socket_on_sigterm() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().unwrap();
    let (d, _) = node_dir(root.path(), "m", 12);
    let mut s = Serve::start(&d, &["--metrics", "127.0.0.1:0"]);
    ok(&oplog(&d, &["put", "b", "k", OBJ_A]));
    let at = s.metrics.clone().expect("serve prints its metrics address");
    let mut http = std::net::TcpStream::connect(&at).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(
        answer.contains("\r\n\r\n# "),
        "a Prometheus text body: {answer}"
    );

    assert!(d.join("control.sock").exists());
    let term = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a clean shutdown");
    assert!(!d.join("control.sock").exists(), "the socket is removed");
    // and the file is free again for commands without a server
    assert_eq!(ok(&oplog(&d, &["get", "b", "k"])).trim(), OBJ_A);
}

#[test]
fn log_graph_draws_a_fork_and_its_join() {
    let root = tempfile::tempdir().unwrap();
    let (x, _) = node_dir(root.path(), "x", 10);
    let (y, y_id) = node_dir(root.path(), "y", 11);
    let sx = Serve::start(&x, &["--allow", &y_id, "--anti-entropy", "3600"]);
    // a common root, then one write on each side, then y joins both branches
    ok(&oplog(&x, &["put", "b", "root", OBJ_A]));
    ok(&oplog(&y, &["sync", &sx.at, "--timeout", "30"]));
    ok(&oplog(&y, &["put", "b", "from-y", OBJ_B]));
    ok(&oplog(&x, &["put", "b", "from-x", OBJ_B]));
    ok(&oplog(&y, &["sync", &sx.at, "--timeout", "30"]));
    let status = json(&oplog(&y, &["--json", "status"]));
    assert_eq!(status["heads"].as_array().unwrap().len(), 2, "two branches");
    ok(&oplog(&y, &["put", "b", "join", OBJ_A]));

    let graph = ok(&oplog(&y, &["log", "--graph"]));
    let lines: Vec<&str> = graph.lines().collect();
    let stars: Vec<&&str> = lines.iter().filter(|l| l.contains('*')).collect();
    assert_eq!(stars.len(), 4, "{graph}");
    assert!(
        lines[0].starts_with("* ") && lines[0].contains("b/join"),
        "{graph}"
    );
    assert_eq!(
        lines[1], "|\\",
        "the join opens a lane for its second parent:\n{graph}"
    );
    assert!(
        lines.contains(&"|/"),
        "the branches meet at the root:\n{graph}"
    );
    assert!(
        stars[3].starts_with("* ") && stars[3].contains("b/root"),
        "{graph}"
    );
}

#[test]
fn demo_converges_and_prints_its_table() {
    let root = tempfile::tempdir().unwrap();
    let out = ok(&oplog(root.path(), &["demo", "--writes", "100"]));
    assert!(out.contains("| eve <-> ada |"), "{out}");
    assert!(
        out.contains("conflict on photos/"),
        "the merge shows its winners: {out}"
    );
    let hashes: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" registers)"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(hashes.len(), 5, "{out}");
    assert!(
        hashes.iter().all(|h| *h == hashes[0] && h.len() == 64),
        "{out}"
    );
    assert!(out.contains("all equal"), "{out}");
}
