//! The bandwidth harness's data and methods: key sets with a known difference over a modelled
//! DAG of real keys, and every reconciliation method it compares, each run on the same two
//! sets and checked to end with exactly the difference.
//!
//! Every method reports the bytes each way, round trips, messages and the CPU time each side
//! spent (thread CPU time, so a busy machine slows the figures less than wall time would).
//! Ids and keys are counted at their wire size; no method's framing is counted.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use merkle_search_tree::diff::{diff, PageRangeSnapshot};
use merkle_search_tree::MerkleSearchTree;
use oplog_protocol::{Config, EntryKey, MemoryStore, Reconciler, Salt};
use rand::{Rng, SeedableRng};

use crate::{replicas, universe};

/// Authors writing concurrently in the modelled DAG.
pub const AUTHORS: u8 = 4;
/// About one entry in this many is a merge of every author's latest entry.
pub const MERGE_EVERY: u32 = 64;

/// `n` keys in key order, and each key's parents (indices of older keys): a few author
/// chains joined by merges, as Shoal's log grows.
#[derive(Debug, Clone)]
pub struct Dag {
    /// The keys, sorted; a key's index is its name below.
    pub keys: Vec<EntryKey>,
    starts: Vec<u32>,
    parents: Vec<u32>,
}

impl Dag {
    /// Builds the DAG for `n` keys (deterministic for a seed). Stamps come from
    /// [`universe`]; each key's hash is the blake3 hash of its stamp, author and parents'
    /// hashes, so keys are real content addresses. Each entry's parent is its author's previous
    /// entry; about one in [`MERGE_EVERY`] is instead a merge whose parents are every author's
    /// latest entry, and every author's next entry then follows that merge (Shoal's authors
    /// adopt a merge they receive as their only tip).
    ///
    /// # Panics
    /// If `n` does not fit in `u32`.
    pub fn new(n: usize, seed: u64) -> Dag {
        assert!(u32::try_from(n).is_ok(), "at most 2^32 keys");
        let stamps = universe(n, seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
        let mut keys = Vec::with_capacity(n);
        let mut starts = Vec::with_capacity(n + 1);
        let mut parents: Vec<u32> = Vec::with_capacity(n + n / 8);
        let mut latest: Vec<Option<u32>> = vec![None; usize::from(AUTHORS)];
        for (i, stamp) in stamps.iter().enumerate() {
            #[allow(clippy::cast_possible_truncation)]
            let me = i as u32;
            starts.push(u32::try_from(parents.len()).unwrap_or(u32::MAX));
            let author: u8 = rng.gen_range(0..AUTHORS);
            let mut hasher = blake3::Hasher::new();
            hasher.update(&stamp.hlc.0.to_be_bytes());
            hasher.update(&[author]);
            let first = parents.len();
            if rng.gen_range(0..MERGE_EVERY) == 0 {
                let mut ps: Vec<u32> = latest.iter().flatten().copied().collect();
                ps.sort_unstable();
                ps.dedup();
                parents.extend(ps);
                latest.fill(Some(me));
            } else {
                parents.extend(latest[usize::from(author)]);
                latest[usize::from(author)] = Some(me);
            }
            for p in &parents[first..] {
                let pk: &EntryKey = &keys[*p as usize];
                hasher.update(&pk.hash.0);
            }
            keys.push(EntryKey::new(stamp.hlc, *hasher.finalize().as_bytes()));
        }
        starts.push(u32::try_from(parents.len()).unwrap_or(u32::MAX));
        Dag {
            keys,
            starts,
            parents,
        }
    }

    /// The parents of key `i`.
    pub fn parents(&self, i: usize) -> &[u32] {
        &self.parents[self.starts[i] as usize..self.starts[i + 1] as usize]
    }
}

/// Where the differing keys sit in key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Chosen uniformly at random.
    Uniform,
    /// The newest keys.
    Newest,
    /// Ten runs of consecutive keys at random places.
    Clusters,
}

impl Placement {
    /// Every placement, in table order.
    pub const ALL: [Placement; 3] = [Placement::Uniform, Placement::Newest, Placement::Clusters];

    /// The name used in files.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Uniform => "uniform",
            Placement::Newest => "newest",
            Placement::Clusters => "clusters",
        }
    }
}

/// Which side lacks the differing keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sides {
    /// Each differing key is missing from alternating sides.
    Both,
    /// The responder lacks every differing key (the initiator holds a superset).
    One,
}

impl Sides {
    /// Both, in table order.
    pub const ALL: [Sides; 2] = [Sides::Both, Sides::One];

    /// The name used in files.
    pub fn name(self) -> &'static str {
        match self {
            Sides::Both => "both",
            Sides::One => "one",
        }
    }
}

/// Two sides' key sets and what each lacks.
#[derive(Debug)]
pub struct Sets {
    /// The initiator's keys.
    pub a: MemoryStore,
    /// The responder's keys.
    pub b: MemoryStore,
    /// Whether the initiator holds key `i` of the DAG.
    pub in_a: Vec<bool>,
    /// Whether the responder holds key `i` of the DAG.
    pub in_b: Vec<bool>,
    /// Keys only the initiator holds, sorted.
    pub a_only: Vec<EntryKey>,
    /// Keys only the responder holds, sorted.
    pub b_only: Vec<EntryKey>,
}

/// Splits the DAG's keys into two sides differing in `d` keys placed as asked. Uniform and
/// newest differences on both sides come from the shared [`replicas`]; clusters and one-sided
/// differences are picked here.
pub fn sets(dag: &Dag, d: usize, placement: Placement, sides: Sides, seed: u64) -> Sets {
    let n = dag.keys.len();
    let d = d.min(n);
    let (a, b) = if sides == Sides::Both && placement != Placement::Clusters {
        replicas(&dag.keys, d, placement == Placement::Newest, seed)
    } else {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut picked = vec![false; n];
        match placement {
            Placement::Newest => picked[n - d..].iter_mut().for_each(|p| *p = true),
            Placement::Uniform => {
                let mut left = d;
                while left > 0 {
                    let i = rng.gen_range(0..n);
                    if !picked[i] {
                        picked[i] = true;
                        left -= 1;
                    }
                }
            }
            Placement::Clusters => {
                // Ten slices of the key space, one run in each (fewer runs below ten keys).
                let runs = d.clamp(1, 10);
                let slice = n / runs;
                for r in 0..runs {
                    let len = d / runs + usize::from(r < d % runs);
                    let room = slice.saturating_sub(len);
                    let start = r * slice + rng.gen_range(0..=room);
                    picked[start..(start + len).min(n)]
                        .iter_mut()
                        .for_each(|p| *p = true);
                }
            }
        }
        let (mut a, mut b) = (MemoryStore::new(), MemoryStore::new());
        let mut flip = false;
        for (k, p) in dag.keys.iter().zip(picked) {
            if !p {
                a.insert(*k);
                b.insert(*k);
            } else if sides == Sides::One {
                a.insert(*k);
            } else {
                flip = !flip;
                if flip {
                    a.insert(*k);
                } else {
                    b.insert(*k);
                }
            }
        }
        (a, b)
    };
    let in_a: Vec<bool> = dag.keys.iter().map(|k| a.contains(k)).collect();
    let in_b: Vec<bool> = dag.keys.iter().map(|k| b.contains(k)).collect();
    let pick = |x: &[bool], y: &[bool]| -> Vec<EntryKey> {
        dag.keys
            .iter()
            .zip(x.iter().zip(y))
            .filter(|(_, (x, y))| **x && !**y)
            .map(|(k, _)| *k)
            .collect()
    };
    let a_only = pick(&in_a, &in_b);
    let b_only = pick(&in_b, &in_a);
    Sets {
        a,
        b,
        in_a,
        in_b,
        a_only,
        b_only,
    }
}

/// What one method spent on one pair of sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measure {
    /// Bytes the initiator sent.
    pub bytes_ab: u64,
    /// Bytes the responder sent.
    pub bytes_ba: u64,
    /// Round trips (messages divided by two, rounded up, unless the method says otherwise).
    pub rounds: u64,
    /// Messages sent by both sides.
    pub messages: u64,
    /// CPU time the initiator spent.
    pub cpu_a: Duration,
    /// CPU time the responder spent.
    pub cpu_b: Duration,
}

/// Why a method could not run or did not find exactly the difference.
pub type Failure = String;

/// The CPU time this thread has used so far.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant libc knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

fn timed<T>(acc: &mut Duration, f: impl FnOnce() -> T) -> T {
    let t = thread_cpu();
    let out = f();
    *acc += thread_cpu().saturating_sub(t);
    out
}

fn check<T: Ord + Clone + std::fmt::Debug>(
    what: &str,
    got: impl IntoIterator<Item = T>,
    want: impl IntoIterator<Item = T>,
) -> Result<(), Failure> {
    let got: BTreeSet<T> = got.into_iter().collect();
    let want: BTreeSet<T> = want.into_iter().collect();
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what}: found {} keys, the difference has {} ({} missed, {} wrong)",
            got.len(),
            want.len(),
            want.difference(&got).count(),
            got.difference(&want).count()
        ))
    }
}

/// The fingerprint salt of every benchmark session (spec 7.1).
pub const BENCH_SALT: Salt = Salt(*b"oplog-bench-salt");

/// oplog-v1 reconciliation with `config` on both sides, driven message by message as
/// `oplog_protocol::testing::transcript::run` does, but timing each side apart. Both sides
/// must end knowing exactly what each lacks.
pub fn oplog(sets: &Sets, config: &Config) -> Result<Measure, Failure> {
    let err = |e: oplog_protocol::ReconcileError| format!("oplog-v1: {e}");
    // A fixed fingerprint salt (a real session draws one), so that every run counts the
    // same bytes and CI's regression check is exact.
    let mut config = config.clone();
    config.salt.get_or_insert(BENCH_SALT);
    let config = &config;
    let mut m = Measure::default();
    let mut ra = Reconciler::new(config.clone()).map_err(err)?;
    let mut rb = Reconciler::new(config.clone()).map_err(err)?;
    let (mut a_have, mut a_need, mut b_have, mut b_need) = (vec![], vec![], vec![], vec![]);
    let mut msg = Some(timed(&mut m.cpu_a, || ra.initiate(&sets.a)).map_err(err)?);
    let mut to_b = true;
    while let Some(x) = msg.take() {
        m.messages += 1;
        if m.messages > 100_000 {
            return Err("oplog-v1: more than 100,000 messages".into());
        }
        let step = if to_b {
            timed(&mut m.cpu_b, || rb.handle(&sets.b, &x)).map_err(err)?
        } else {
            timed(&mut m.cpu_a, || ra.handle(&sets.a, &x)).map_err(err)?
        };
        if to_b {
            b_have.extend(step.have);
            b_need.extend(step.need);
        } else {
            a_have.extend(step.have);
            a_need.extend(step.need);
        }
        msg = step.reply;
        to_b = !to_b;
    }
    if !ra.is_done() || !rb.is_done() {
        return Err("oplog-v1: the session stopped with a side still waiting".into());
    }
    m.bytes_ab = ra.stats().bytes_sent;
    m.bytes_ba = rb.stats().bytes_sent;
    m.rounds = m.messages.div_ceil(2);
    check("oplog-v1 initiator need", a_need, sets.b_only.clone())?;
    check("oplog-v1 initiator have", a_have, sets.a_only.clone())?;
    check("oplog-v1 responder need", b_need, sets.a_only.clone())?;
    check("oplog-v1 responder have", b_have, sets.b_only.clone())?;
    Ok(m)
}

/// oplog-v1 in the carried key form (spec 8.12), as a sync session runs it: the keys of the
/// entries a side sends ride in those entries, so a message writes only their count. Bytes
/// are the messages' alone: what the session sends beyond the entries it must send anyway.
/// This is the figure to set beside Negentropy's, whose initiator likewise never sends the
/// ids it holds (it learns them as "have" and sends their entries later). Both sides must
/// still end knowing exactly what each lacks.
pub fn oplog_carried(sets: &Sets, config: &Config) -> Result<Measure, Failure> {
    let err = |e: oplog_protocol::ReconcileError| format!("oplog-v1 carried: {e}");
    let mut config = config.clone();
    config.salt.get_or_insert(BENCH_SALT);
    config.key_form = oplog_protocol::KeyForm::Carried;
    let mut m = Measure::default();
    let mut ra = Reconciler::new(config.clone()).map_err(err)?;
    let mut rb = Reconciler::new(config).map_err(err)?;
    let (mut a_have, mut a_need, mut b_have, mut b_need) = (vec![], vec![], vec![], vec![]);
    let first = timed(&mut m.cpu_a, || ra.initiate(&sets.a)).map_err(err)?;
    let mut msg = Some((first, Vec::new()));
    let mut to_b = true;
    while let Some((x, carried)) = msg.take() {
        m.messages += 1;
        if m.messages > 100_000 {
            return Err("oplog-v1 carried: more than 100,000 messages".into());
        }
        let step = if to_b {
            timed(&mut m.cpu_b, || rb.handle_carried(&sets.b, &x, &carried)).map_err(err)?
        } else {
            timed(&mut m.cpu_a, || ra.handle_carried(&sets.a, &x, &carried)).map_err(err)?
        };
        if to_b {
            b_have.extend(step.have);
            b_need.extend(step.need);
        } else {
            a_have.extend(step.have);
            a_need.extend(step.need);
        }
        msg = step.reply.map(|r| (r, step.carried));
        to_b = !to_b;
    }
    if !ra.is_done() || !rb.is_done() {
        return Err("oplog-v1 carried: the session stopped with a side still waiting".into());
    }
    m.bytes_ab = ra.stats().bytes_sent;
    m.bytes_ba = rb.stats().bytes_sent;
    m.rounds = m.messages.div_ceil(2);
    check(
        "oplog-v1 carried initiator need",
        a_need,
        sets.b_only.clone(),
    )?;
    check(
        "oplog-v1 carried initiator have",
        a_have,
        sets.a_only.clone(),
    )?;
    check(
        "oplog-v1 carried responder need",
        b_need,
        sets.a_only.clone(),
    )?;
    check(
        "oplog-v1 carried responder have",
        b_have,
        sets.b_only.clone(),
    )?;
    Ok(m)
}

/// The `negentropy` crate (version 0.5, no frame limit), initiator against responder. Only
/// the initiator learns the difference in Negentropy; it is checked to learn exactly it.
pub fn negentropy(sets: &Sets) -> Result<Measure, Failure> {
    use negentropy::{Id, Negentropy, NegentropyStorageVector};
    let err = |e: negentropy::Error| format!("negentropy: {e}");
    let storage = |s: &MemoryStore| -> Result<NegentropyStorageVector, Failure> {
        let mut v = NegentropyStorageVector::with_capacity(s.len());
        for k in s {
            v.insert(k.hlc.0, Id::from_byte_array(k.hash.0))
                .map_err(err)?;
        }
        v.seal().map_err(err)?;
        Ok(v)
    };
    let (sa, sb) = (storage(&sets.a)?, storage(&sets.b)?);
    let mut m = Measure::default();
    let mut na = Negentropy::borrowed(&sa, 0).map_err(err)?;
    let mut nb = Negentropy::borrowed(&sb, 0).map_err(err)?;
    let (mut have, mut need) = (Vec::new(), Vec::new());
    let mut msg = timed(&mut m.cpu_a, || na.initiate()).map_err(err)?;
    loop {
        m.messages += 1;
        m.bytes_ab += msg.len() as u64;
        let reply = timed(&mut m.cpu_b, || nb.reconcile(&msg)).map_err(err)?;
        m.messages += 1;
        m.bytes_ba += reply.len() as u64;
        match timed(&mut m.cpu_a, || {
            na.reconcile_with_ids(&reply, &mut have, &mut need)
        })
        .map_err(err)?
        {
            Some(next) => msg = next,
            None => break,
        }
        if m.messages > 100_000 {
            return Err("negentropy: more than 100,000 messages".into());
        }
    }
    m.rounds = m.messages.div_ceil(2);
    check(
        "negentropy have",
        have.iter().map(|i| i.to_bytes()),
        sets.a_only.iter().map(|k| k.hash.0),
    )?;
    check(
        "negentropy need",
        need.iter().map(|i| i.to_bytes()),
        sets.b_only.iter().map(|k| k.hash.0),
    )?;
    Ok(m)
}

/// Bytes of one serialised page: its first and last key (40 bytes each) and its 16-byte hash.
pub const MST_PAGE_BYTES: u64 = 96;
/// Bytes of one requested key range: first and last key.
pub const MST_RANGE_BYTES: u64 = 80;
/// Bytes of one key sent in answer to a range.
pub const MST_KEY_BYTES: u64 = 40;

type Mst = MerkleSearchTree<[u8; 40], ()>;

/// The `merkle-search-tree` crate with the exchange its documentation describes: each side
/// sends every page of its tree (`serialise_page_ranges`), each computes `diff(local, peer)`
/// and requests those key ranges, and the peer answers with every key it holds in them.
/// Message 1: the initiator's pages; 2: the responder's pages and its requests; 3: the
/// initiator's requests and its answers; 4: the responder's answers. The exchange repeats
/// (the crate's documentation only promises convergence in a finite number of rounds) until
/// both sides hold exactly the union; no round that merely confirms equality is counted
/// after that, and equal sets stop after messages 1 and 2.
pub fn mst(sets: &Sets) -> Result<Measure, Failure> {
    let build = |s: &MemoryStore| {
        let mut t = Mst::default();
        let mut keys = BTreeSet::new();
        for k in s {
            t.upsert(k.to_bytes(), &());
            keys.insert(k.to_bytes());
        }
        (t, keys)
    };
    let (mut ta, mut ka) = build(&sets.a);
    let (mut tb, mut kb) = build(&sets.b);
    let (a_start, b_start) = (ka.clone(), kb.clone());
    let mut m = Measure::default();
    let pages = |t: &mut Mst, k: &BTreeSet<[u8; 40]>| -> PageRangeSnapshot<[u8; 40]> {
        if k.is_empty() {
            return PageRangeSnapshot::from(
                Vec::<merkle_search_tree::diff::PageRange<'_, [u8; 40]>>::new(),
            );
        }
        let _ = t.root_hash();
        PageRangeSnapshot::from(t.serialise_page_ranges().unwrap_or_default())
    };
    let answer = |k: &BTreeSet<[u8; 40]>, want: &[([u8; 40], [u8; 40])]| -> Vec<[u8; 40]> {
        want.iter()
            .flat_map(|(s, e)| k.range(*s..=*e).copied())
            .collect()
    };
    for _ in 0..50 {
        let pa = timed(&mut m.cpu_a, || pages(&mut ta, &ka));
        m.messages += 1;
        m.bytes_ab += pa.iter().len() as u64 * MST_PAGE_BYTES;
        let (pb, want_b) = timed(&mut m.cpu_b, || {
            let pb = pages(&mut tb, &kb);
            let want: Vec<([u8; 40], [u8; 40])> = diff(pb.iter(), pa.iter())
                .iter()
                .map(|r| (*r.start(), *r.end()))
                .collect();
            (pb, want)
        });
        m.messages += 1;
        m.bytes_ba +=
            pb.iter().len() as u64 * MST_PAGE_BYTES + want_b.len() as u64 * MST_RANGE_BYTES;
        let (want_a, to_b) = timed(&mut m.cpu_a, || {
            let want: Vec<([u8; 40], [u8; 40])> = diff(pa.iter(), pb.iter())
                .iter()
                .map(|r| (*r.start(), *r.end()))
                .collect();
            (want, answer(&ka, &want_b))
        });
        if want_a.is_empty() && want_b.is_empty() {
            break;
        }
        m.messages += 1;
        m.bytes_ab += want_a.len() as u64 * MST_RANGE_BYTES + to_b.len() as u64 * MST_KEY_BYTES;
        let to_a = timed(&mut m.cpu_b, || {
            for k in to_b {
                if kb.insert(k) {
                    tb.upsert(k, &());
                }
            }
            answer(&kb, &want_a)
        });
        m.messages += 1;
        m.bytes_ba += to_a.len() as u64 * MST_KEY_BYTES;
        timed(&mut m.cpu_a, || {
            for k in to_a {
                if ka.insert(k) {
                    ta.upsert(k, &());
                }
            }
        });
        if ka == kb {
            break;
        }
    }
    m.rounds = m.messages.div_ceil(2);
    check(
        "merkle-search-tree initiator learned",
        ka.difference(&a_start).copied(),
        sets.b_only.iter().map(EntryKey::to_bytes),
    )?;
    check(
        "merkle-search-tree responder learned",
        kb.difference(&b_start).copied(),
        sets.a_only.iter().map(EntryKey::to_bytes),
    )?;
    Ok(m)
}

/// Bytes of one id in a full id copy and in Shoal's tip sync.
pub const ID_BYTES: u64 = 32;

/// A full id copy, what Shoal's bulk pull does: the initiator asks (the request is not
/// counted) and the responder sends the 32-byte id of every key it holds; the initiator then
/// knows both differences, the responder neither.
pub fn id_copy(sets: &Sets) -> Result<Measure, Failure> {
    let mut m = Measure {
        messages: 2,
        rounds: 1,
        ..Measure::default()
    };
    let ids: Vec<[u8; 32]> = timed(&mut m.cpu_b, || sets.b.iter().map(|k| k.hash.0).collect());
    m.bytes_ba = ids.len() as u64 * ID_BYTES;
    let (have, need) = timed(&mut m.cpu_a, || {
        let theirs: HashSet<[u8; 32]> = ids.iter().copied().collect();
        let ours: HashSet<[u8; 32]> = sets.a.iter().map(|k| k.hash.0).collect();
        let have: Vec<[u8; 32]> = ours.difference(&theirs).copied().collect();
        let need: Vec<[u8; 32]> = theirs.difference(&ours).copied().collect();
        (have, need)
    });
    check("id copy have", have, sets.a_only.iter().map(|k| k.hash.0))?;
    check("id copy need", need, sets.b_only.iter().map(|k| k.hash.0))?;
    Ok(m)
}

/// Why a side's set is not closed under parents, if it is not.
fn not_closed(dag: &Dag, holds: &[bool], side: &str) -> Option<String> {
    (0..holds.len())
        .find(|&i| holds[i] && dag.parents(i).iter().any(|p| !holds[*p as usize]))
        .map(|_| {
            format!(
                "n/a: the {side} holds an entry without its parent (not DAG-closed), which \
                 tip-based sync cannot produce or repair"
            )
        })
}

/// The tips of a side: keys it holds that no key it holds names as a parent.
fn tips(dag: &Dag, holds: &[bool]) -> Vec<usize> {
    let mut has_child = vec![false; holds.len()];
    for i in (0..holds.len()).filter(|i| holds[*i]) {
        for p in dag.parents(i) {
            has_child[*p as usize] = true;
        }
    }
    (0..holds.len())
        .filter(|i| holds[*i] && !has_child[*i])
        .collect()
}

/// What a responder holding `holds` sends to a requester whose tips are `their_tips`: Shoal's
/// walk back from its own tips, not past an entry named among the requester's tips.
fn walk(dag: &Dag, holds: &[bool], their_tips: &[usize]) -> Vec<usize> {
    let stop: HashSet<usize> = their_tips.iter().copied().collect();
    let mut seen = vec![false; holds.len()];
    let mut queue: std::collections::VecDeque<usize> = tips(dag, holds).into();
    let mut out = Vec::new();
    while let Some(i) = queue.pop_front() {
        if seen[i] || stop.contains(&i) {
            continue;
        }
        seen[i] = true;
        out.push(i);
        for p in dag.parents(i) {
            queue.push_back(*p as usize);
        }
    }
    out
}

/// Shoal's tip-based pull, run both ways at once as its 5 s timer does (so one round trip
/// and four messages): each side sends its tips (32 bytes each) and the other walks back from
/// its own tips until it meets one of them and returns everything it walked (counted as 32-byte
/// ids; entries themselves are counted for no method). `Err` with "n/a" when a side's set is
/// not closed under parents (random and clustered placements), since the method only exists
/// for DAG-closed logs.
pub fn shoal_tips(dag: &Dag, sets: &Sets) -> Result<Measure, Failure> {
    if let Some(why) = not_closed(dag, &sets.in_a, "initiator")
        .or_else(|| not_closed(dag, &sets.in_b, "responder"))
    {
        return Err(why);
    }
    let mut m = Measure {
        messages: 4,
        rounds: 1,
        ..Measure::default()
    };
    let tips_a = timed(&mut m.cpu_a, || tips(dag, &sets.in_a));
    let tips_b = timed(&mut m.cpu_b, || tips(dag, &sets.in_b));
    let to_b = timed(&mut m.cpu_a, || walk(dag, &sets.in_a, &tips_b));
    let to_a = timed(&mut m.cpu_b, || walk(dag, &sets.in_b, &tips_a));
    m.bytes_ab = (tips_a.len() + to_b.len()) as u64 * ID_BYTES;
    m.bytes_ba = (tips_b.len() + to_a.len()) as u64 * ID_BYTES;
    let learned_a: Vec<EntryKey> = timed(&mut m.cpu_a, || {
        to_a.iter()
            .filter(|i| !sets.in_a[**i])
            .map(|i| dag.keys[*i])
            .collect()
    });
    let learned_b: Vec<EntryKey> = timed(&mut m.cpu_b, || {
        to_b.iter()
            .filter(|i| !sets.in_b[**i])
            .map(|i| dag.keys[*i])
            .collect()
    });
    check(
        "shoal tips initiator learned",
        learned_a,
        sets.b_only.clone(),
    )?;
    check(
        "shoal tips responder learned",
        learned_b,
        sets.a_only.clone(),
    )?;
    Ok(m)
}

/// The lower bound in bytes for a difference of `d` keys among the `n` keys of the union, when
/// the hashes of `learned` keys must reach a side that lacks them:
/// `ceil((256·learned + log2 C(n, d)) / 8)`. Keys are blake3 hashes the lacking side has no
/// information about, so at least their 256 bits each must cross the link; and which `d` of
/// the `n` keys differ is `log2 C(n, d)` bits the sides must come to share. Both sides
/// learning takes `learned = d`; only the initiator learning (Negentropy, an id copy) takes
/// `learned` = the keys the initiator lacks. Stamps, framing and which side holds each key are
/// left out, so the true minimum is higher.
pub fn lower_bound(n: usize, d: usize, learned: usize) -> u64 {
    let d = d.min(n);
    #[allow(clippy::cast_precision_loss)]
    let log2_choose: f64 = (0..d)
        .map(|i| ((n - i) as f64 / (i + 1) as f64).log2())
        .sum();
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let bits = (256.0 * learned.min(d) as f64 + log2_choose).ceil() as u64;
    bits.div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells() -> Vec<(usize, Placement, Sides)> {
        let mut v = Vec::new();
        for d in [0, 1, 37, 400] {
            for p in Placement::ALL {
                for s in Sides::ALL {
                    v.push((d, p, s));
                }
            }
        }
        v
    }

    #[test]
    fn the_sets_differ_in_exactly_the_keys_asked_for_on_the_sides_asked_for() {
        let dag = Dag::new(2_000, 3);
        assert!(dag.keys.windows(2).all(|w| w[0] < w[1]), "keys in order");
        for (d, p, s) in cells() {
            let x = sets(&dag, d, p, s, 9);
            assert_eq!(x.a_only.len() + x.b_only.len(), d, "{d} {p:?} {s:?}");
            if s == Sides::One {
                assert!(x.b_only.is_empty());
            } else {
                assert!(x.a_only.len().abs_diff(x.b_only.len()) <= 1);
            }
            if p == Placement::Newest && d > 0 {
                assert_eq!(x.a_only.last().max(x.b_only.last()), dag.keys.last());
            }
        }
    }

    #[test]
    fn every_method_finds_exactly_the_difference() {
        let dag = Dag::new(3_000, 5);
        for (d, p, s) in cells() {
            let pair = sets(&dag, d, p, s, 11);
            let ours = oplog(&pair, &Config::default()).expect("oplog-v1");
            assert_eq!(ours.rounds, ours.messages.div_ceil(2));
            negentropy(&pair).expect("negentropy");
            let tree = mst(&pair).expect("merkle-search-tree");
            assert!(tree.bytes_ab > 0 && tree.bytes_ba > 0, "pages both ways");
            let copy = id_copy(&pair).expect("id copy");
            assert_eq!(copy.bytes_ba, pair.b.len() as u64 * 32);
            match shoal_tips(&dag, &pair) {
                Ok(m) => assert!(m.bytes_ab + m.bytes_ba >= d as u64 * 32),
                Err(e) => assert!(e.starts_with("n/a"), "{e}"),
            }
        }
    }

    #[test]
    fn the_timed_driver_sends_what_transcript_run_sends() {
        use oplog_protocol::testing::transcript::run;
        let dag = Dag::new(5_000, 7);
        let mut sweep = Config::default();
        sweep.branching = 8;
        sweep.list_threshold = 64;
        for (d, p, s) in cells() {
            let pair = sets(&dag, d, p, s, 13);
            for cfg in [Config::default(), sweep.clone()] {
                let ours = oplog(&pair, &cfg).expect("oplog-v1");
                let t = run(&pair.a, &pair.b, cfg.clone(), cfg).expect("transcript");
                assert_eq!((ours.bytes_ab, ours.bytes_ba), t.bytes());
                assert_eq!(ours.messages, t.messages.len() as u64);
                assert_eq!(ours.rounds, t.rounds() as u64);
            }
        }
    }

    #[test]
    fn tip_sync_runs_on_closed_sets_and_only_there() {
        let dag = Dag::new(3_000, 5);
        let newest = sets(&dag, 100, Placement::Newest, Sides::One, 1);
        let m = shoal_tips(&dag, &newest).expect("a prefix is DAG-closed");
        assert_eq!(m.rounds, 1);
        let random = sets(&dag, 100, Placement::Uniform, Sides::One, 1);
        assert!(shoal_tips(&dag, &random).is_err());
    }

    #[test]
    fn a_check_that_misses_a_key_fails() {
        assert!(check("x", [1, 2], [1, 2, 3]).is_err());
        assert!(check("x", [3, 2, 1], [1, 2, 3]).is_ok());
    }

    #[test]
    fn the_lower_bound_is_the_hashes_plus_their_places() {
        assert_eq!(lower_bound(1_000_000, 0, 0), 0);
        // 256 bits + log2(10^6) = 275.9 bits -> 35 bytes.
        assert_eq!(lower_bound(1_000_000, 1, 1), 35);
        // log2(10^6) = 19.9 bits -> 3 bytes when the hash need not cross.
        assert_eq!(lower_bound(1_000_000, 1, 0), 3);
        // The figure: 256,000 + 11,409 bits.
        assert_eq!(lower_bound(1_000_000, 1_000, 1_000), 33_426);
    }
}
