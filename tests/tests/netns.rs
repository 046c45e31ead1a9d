//! Several hosts: two live nodes, each in its own network namespace joined by a veth pair
//! (10.77.0.1 and 10.77.0.2), each a child process (this test binary run again under
//! `ip netns exec`) on its own redb file. A partition is the veth link going down: writes on
//! both sides stay apart while it is down and converge once it is up again.
//!
//! Needs root and `ip netns`; otherwise the test prints why and passes without running.
//! The namespaces are deleted when the test ends, failed or not.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iroh::{EndpointAddr, SecretKey};
use oplog_node::{Node, NodeConfig};
use oplog_protocol::session::SessionConfig;
use oplog_protocol::ObjectId;
use oplog_store::Store;
use oplog_tests::fixture::{assert_converged, hashes};

const ROLE_VAR: &str = "OPLOG_NETNS_CHILD";
const STORE_VAR: &str = "OPLOG_NETNS_STORE";

/// Each side's address (side 0 and side 1) and port.
const ADDRS: [&str; 2] = ["10.77.0.1:7411", "10.77.0.2:7411"];

/// Longest any wait here may take (a generous bound, not a timing assertion).
const DEADLINE: Duration = Duration::from_secs(120);

fn secret(side: usize) -> SecretKey {
    SecretKey::from_bytes(&[0xe0 + u8::try_from(side).unwrap(); 32])
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces joined by a veth pair; deleted on drop (the veth goes with them).
struct Namespaces {
    ns: [String; 2],
    veth: [String; 2],
}

impl Namespaces {
    fn create() -> Result<Self, String> {
        let pid = std::process::id();
        let made = Namespaces {
            ns: [format!("oplog-{pid}-a"), format!("oplog-{pid}-b")],
            veth: [format!("oa{pid}"), format!("ob{pid}")],
        };
        let (na, nb) = (&made.ns[0], &made.ns[1]);
        let (va, vb) = (&made.veth[0], &made.veth[1]);
        run(&["netns", "add", na])?;
        run(&["netns", "add", nb])?;
        run(&["link", "add", va, "type", "veth", "peer", "name", vb])?;
        run(&["link", "set", va, "netns", na])?;
        run(&["link", "set", vb, "netns", nb])?;
        for (side, (ns, veth)) in made.ns.iter().zip(&made.veth).enumerate() {
            let ip = ADDRS[side].split(':').next().unwrap();
            run(&["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", veth])?;
            run(&["-n", ns, "link", "set", veth, "up"])?;
            run(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(made)
    }

    /// Sets side `side`'s end of the link up or down.
    fn link(&self, side: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        run(&["-n", &self.ns[side], "link", "set", &self.veth[side], state]).expect("set the link");
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = run(&["netns", "del", ns]);
        }
        // The veth pair normally goes with its namespaces; if they were never moved there
        // (a failed setup), delete it here.
        let _ = run(&["link", "del", &self.veth[0]]);
    }
}

fn object(n: u64) -> ObjectId {
    ObjectId(*blake3::hash(&n.to_be_bytes()).as_bytes())
}

/// The child: a live node on `ADDRS[side]` with the other side as its only peer. It reads
/// commands on stdin, one a line (`put KEY N`, `state`, `quit`), and answers each with one
/// line.
#[test]
#[ignore = "run by the netns test in a child process inside a namespace"]
fn netns_child() {
    let (Ok(side), Ok(path)) = (std::env::var(ROLE_VAR), std::env::var(STORE_VAR)) else {
        return;
    };
    let side: usize = side.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(Store::open(Path::new(&path)).unwrap());
    let node = runtime.block_on(async {
        let me: SocketAddr = ADDRS[side].parse().unwrap();
        let other: SocketAddr = ADDRS[1 - side].parse().unwrap();
        let endpoint = iroh::Endpoint::empty_builder(iroh::RelayMode::Disabled)
            .clear_ip_transports()
            .bind_addr(me)
            .unwrap()
            .secret_key(secret(side))
            .bind()
            .await
            .unwrap();
        let peer = EndpointAddr::new(secret(1 - side).public()).with_ip_addr(other);
        let mut config = NodeConfig::default();
        config.allowed = vec![peer.id];
        config.peers = vec![peer];
        config.anti_entropy = Duration::from_millis(300);
        let mut session = SessionConfig::default();
        session.idle_timeout = Duration::from_secs(3);
        config.session = session;
        Node::spawn(endpoint, Arc::clone(&store), config)
            .await
            .unwrap()
    });
    let mut out = std::io::stdout();
    let mut say = |line: String| {
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    say("ready".into());
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["put", key, n] => {
                let entry = runtime
                    .block_on(node.put("b", *key, object(n.parse().unwrap())))
                    .unwrap();
                say(format!("ok {}", hex::encode(entry.hash.0)));
            }
            ["has", hash] => {
                let bytes: [u8; 32] = hex::decode(hash).unwrap().try_into().unwrap();
                let has = store.contains(&oplog_protocol::Hash(bytes)).unwrap();
                say(format!("has {has}"));
            }
            ["state"] => {
                let digest =
                    blake3::hash(&hashes(&store).iter().flat_map(|h| h.0).collect::<Vec<u8>>());
                say(format!(
                    "state {} {} {} {}",
                    store.len(),
                    store.heads().unwrap().len(),
                    store.stats().unwrap().held_back,
                    digest.to_hex()
                ));
            }
            ["quit"] => {
                let _ = runtime.block_on(async {
                    tokio::time::timeout(Duration::from_secs(5), node.shutdown()).await
                });
                say("bye".into());
                return;
            }
            _ => say(format!("unknown command {line}")),
        }
    }
}

/// A child node in a namespace, driven line by line.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Proc {
    fn spawn(ns: &str, side: usize, store: &Path) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "netns_child", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(ROLE_VAR, side.to_string())
            .env(STORE_VAR, store)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child under ip netns exec");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // the test harness prints `test netns_child ... ` before the first line
                let line = match line.strip_prefix("test netns_child ... ") {
                    Some(rest) => rest.to_owned(),
                    None => line,
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let mut proc = Proc {
            child,
            stdin,
            lines,
        };
        proc.expect_line(|l| l == "ready");
        proc
    }

    fn expect_line(&mut self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the child answers");
            if want(&line) {
                return line;
            }
        }
    }

    fn ask(&mut self, command: &str, answer: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let prefix = format!("{answer} ");
        let line = self.expect_line(|l| l.starts_with(&prefix) || l == answer);
        line.strip_prefix(&prefix).unwrap_or("").to_owned()
    }

    fn put(&mut self, key: &str, n: u64) -> String {
        self.ask(&format!("put {key} {n}"), "ok")
    }

    fn has(&mut self, hash: &str) -> bool {
        self.ask(&format!("has {hash}"), "has") == "true"
    }

    /// (entries, heads, held back, digest of the entry set)
    fn state(&mut self) -> (u64, usize, u64, String) {
        let s = self.ask("state", "state");
        let w: Vec<&str> = s.split_whitespace().collect();
        (
            w[0].parse().unwrap(),
            w[1].parse().unwrap(),
            w[2].parse().unwrap(),
            w[3].to_owned(),
        )
    }

    fn quit(mut self) {
        self.ask("quit", "bye");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_converged(a: &mut Proc, b: &mut Proc, what: &str) -> (u64, Duration) {
    let started = Instant::now();
    loop {
        let (sa, sb) = (a.state(), b.state());
        if sa.3 == sb.3 && sa.1 == 1 && sb.1 == 1 && sa.2 == 0 && sb.2 == 0 {
            return (sa.0, started.elapsed());
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: no convergence: {sa:?} vs {sb:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn nodes_in_two_network_namespaces_stay_apart_while_the_link_is_down_and_converge_after() {
    let nets = match Namespaces::create() {
        Ok(n) => n,
        Err(why) => {
            println!(
                "SKIPPED: network namespaces are not available (needs root and ip netns): {why}"
            );
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let paths = [dir.path().join("a.redb"), dir.path().join("b.redb")];
    let mut a = Proc::spawn(&nets.ns[0], 0, &paths[0]);
    let mut b = Proc::spawn(&nets.ns[1], 1, &paths[1]);

    // Connected: writes on both sides reach the other.
    for n in 0..20 {
        a.put(&format!("a{}", n % 5), n);
        b.put(&format!("b{}", n % 5), n);
    }
    let (before, first) = wait_converged(&mut a, &mut b, "before the partition");

    // The link goes down: writes on each side stay on that side.
    nets.link(0, false);
    let mut only_a = Vec::new();
    let mut only_b = Vec::new();
    for n in 100..130 {
        only_a.push(a.put("same", n));
        only_b.push(b.put("same", n + 1_000));
    }
    // Several anti-entropy intervals pass while the link is down; nothing crosses.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !b.has(only_a.last().unwrap()) && !a.has(only_b.last().unwrap()),
        "nothing crosses a link that is down"
    );
    let (sa, sb) = (a.state(), b.state());
    assert_ne!(sa.3, sb.3, "the sides differ while partitioned");

    // Up again: they converge to one state holding every write of both sides.
    nets.link(0, true);
    let (after, heal) = wait_converged(&mut a, &mut b, "after the partition");
    for h in only_a.iter().chain(&only_b) {
        assert!(a.has(h) && b.has(h), "a write from the partition is lost");
    }
    a.quit();
    b.quit();
    let (sa, sb) = (
        Store::open(&paths[0]).unwrap(),
        Store::open(&paths[1]).unwrap(),
    );
    assert_converged(&sa, &sb);
    println!(
        "netns: {before} entries converged in {:.1} s before the partition; 60 writes while \
         the link was down; {after} entries converged {:.1} s after it came up",
        first.as_secs_f64(),
        heal.as_secs_f64()
    );
    drop(nets);
}
