//! Writes the byte-exact test vectors in `spec/vectors/` (see `spec/vectors/README.md`).
//!
//! ```text
//! cargo run -p oplog-tests --bin gen-vectors [-- <out dir>]
//! ```
//!
//! Everything is derived from fixed seeds and recipes, so the output is identical on every run
//! and every machine. Every value is also checked here (hand-built bytes, expected errors,
//! transcript properties) so that a vector cannot silently encode a bug.
//! The files' schema is [`oplog_tests::vectors`], which `tests/tests/conformance.rs` reads
//! back to recompute every file from its inputs.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use oplog_protocol::action::{MAX_BUCKET_LEN, MAX_OBJECT_KEY_LEN};
use oplog_protocol::entry::SIGNATURE_LEN;
use oplog_protocol::fingerprint::{DIGEST_CONTEXT, ITEM_CONTEXT, STATE_BYTES};
use oplog_protocol::hlc::{admission, Admission};
use oplog_protocol::message::{self, Part, Payload, MESSAGE_TAG};
use oplog_protocol::transcript::{self, Transcript};
use oplog_protocol::{
    Aggregate, EntryKey, Fingerprint, Hash, Hlc, HlcClock, HlcError, LogEntry, MemoryStore, NodeId,
    ObjectId, Op,
};
use oplog_tests::vectors::{
    dec, decode_error_name, entry_error_name, hx, ih, keys_json, vectors_dir, ActionJson,
    AdmissionCase, AggregateVector, ConfigJson, EntriesFile, FingerprintsFile, FpRecipe, HlcFile,
    HlcOp, HlcSequence, InvalidEntry, InvalidMessage, ItemVector, KeyRecipe, MessageJson,
    MessagesFile, PartJson, SetJson, SideJson, TranscriptVector, TranscriptsFile, ValidEntry,
    ValidMessage,
};
use serde::Serialize;

fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) {
    let mut text = serde_json::to_string_pretty(value).expect("serialisable");
    text.push('\n');
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!(
        "wrote {} ({} bytes)",
        path.display(),
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
    );
}

fn main() {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(vectors_dir);
    std::fs::create_dir_all(&dir).expect("create output dir");
    write_json(&dir, "entries.json", &entries());
    write_json(&dir, "hlc.json", &hlc());
    write_json(&dir, "fingerprints.json", &fingerprints());
    write_json(&dir, "messages.json", &messages());
    write_json(&dir, "transcripts.json", &transcripts());
}

// ---------------------------------------------------------------------------------------------
// entries.json

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The entry body built byte by byte from SPEC section 5, without postcard. For `Put` this is
/// exactly postcard of shoal-logtree's
/// `HashableContent { hlc: u64, node_id: NodeId([u8; 32]), action: &Action, parents: &Vec<[u8; 32]> }`
/// with `Action::Put { bucket: String, key: String, manifest_id: ObjectId([u8; 32]) }`
/// (variant 0): a struct is its fields in order, a newtype around `[u8; 32]` is its 32 raw
/// bytes, a `u64` and every length is a varint, an enum starts with its variant index.
fn hand_body(hlc: u64, node_id: &[u8; 32], op: &Op, parents: &[Hash]) -> Vec<u8> {
    let mut b = Vec::new();
    put_varint(&mut b, hlc);
    b.extend_from_slice(node_id);
    let string = |b: &mut Vec<u8>, s: &str| {
        put_varint(b, s.len() as u64);
        b.extend_from_slice(s.as_bytes());
    };
    match op {
        Op::Put {
            bucket,
            key,
            object_id,
        } => {
            b.push(0x00);
            string(&mut b, bucket);
            string(&mut b, key);
            b.extend_from_slice(&object_id.0);
        }
        Op::Delete { bucket, key } => {
            b.push(0x01);
            string(&mut b, bucket);
            string(&mut b, key);
        }
        Op::Merge => b.push(0x02),
    }
    put_varint(&mut b, parents.len() as u64);
    for p in parents {
        b.extend_from_slice(&p.0);
    }
    b
}

/// 2026-01-01T00:00:00Z in nanoseconds since the epoch: a realistic, 9-byte-varint HLC.
const T2026: u64 = 1_767_225_600_000_000_000;

fn sk(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn oid(label: &str) -> ObjectId {
    ObjectId(*blake3::hash(label.as_bytes()).as_bytes())
}

fn put(bucket: &str, key: &str, object: &str) -> Op {
    Op::Put {
        bucket: bucket.into(),
        key: key.into(),
        object_id: oid(object),
    }
}

/// Signs the given body bytes as they are (no canonicalisation): for invalid vectors.
fn raw_encoded(key: &SigningKey, body: &[u8]) -> Vec<u8> {
    let hash = blake3::hash(body);
    let mut out = body.to_vec();
    out.extend_from_slice(&key.sign(hash.as_bytes()).to_bytes());
    out
}

fn entries() -> EntriesFile {
    let mut valid = Vec::new();
    let mut made: Vec<LogEntry> = Vec::new();
    let mut add = |name: &'static str,
                   description: String,
                   seed: u8,
                   hlc: u64,
                   op: Op,
                   parents: Vec<Hash>|
     -> LogEntry {
        let key = sk(seed);
        let e = LogEntry::sign(&key, Hlc(hlc), op, parents).expect("valid entry");
        e.verify().expect("verifies");
        let body = e.body();
        assert_eq!(
            body,
            hand_body(hlc, &e.node_id.0, &e.action, &e.parents),
            "{name}: postcard body differs from the hand-built body"
        );
        assert_eq!(e.hash.0, *blake3::hash(&body).as_bytes());
        let encoded = e.encode();
        assert_eq!(encoded.len(), body.len() + SIGNATURE_LEN);
        assert_eq!(LogEntry::<Op>::decode(&encoded).expect("decodes"), e);
        valid.push(ValidEntry {
            name: name.into(),
            description,
            seed_hex: hx(&[seed; 32]),
            public_key_hex: hx(&e.node_id.0),
            hlc: dec(hlc),
            action: ActionJson::from(&e.action),
            parents_hex: e.parents.iter().map(|p| hx(&p.0)).collect(),
            body_hex: hx(&body),
            hash_hex: hx(&e.hash.0),
            signature_hex: hx(&e.signature.0),
            encoded_hex: hx(&encoded),
        });
        made.push(e.clone());
        e
    };

    let genesis = add(
        "genesis-put",
        "A Put with no parents (a genesis entry), author seed 01*32, HLC 2026-01-01T00:00:00Z in ns.".into(),
        1,
        T2026,
        put("photos", "cat.jpg", "manifest of cat.jpg"),
        vec![],
    );
    let child = add(
        "put-one-parent",
        "A Put following the genesis entry (one parent), same author.".into(),
        1,
        T2026 + 1,
        put("photos", "dog.jpg", "manifest of dog.jpg"),
        vec![genesis.hash],
    );
    let del = add(
        "delete",
        "A Delete (variant 1) by a second author (seed 02*32), following the genesis entry.".into(),
        2,
        T2026 + 1_000_000,
        Op::Delete {
            bucket: "photos".into(),
            key: "cat.jpg".into(),
        },
        vec![genesis.hash],
    );
    let merge2 = add(
        "merge-two-parents",
        "A Merge (variant 2, no fields) joining two heads; parents are in ascending byte order."
            .into(),
        2,
        T2026 + 2_000_000,
        Op::Merge,
        vec![del.hash, child.hash],
    );
    let shoal_description = "Shoal-compatibility vector. `body` equals postcard of shoal-logtree's \
        `HashableContent { hlc: u64, node_id: NodeId([u8; 32]), action: &Action, parents: &Vec<[u8; 32]> }` \
        for `Action::Put { bucket, key, manifest_id: ObjectId }` (variant 0), so `hash` = BLAKE3(body) \
        equals the hash Shoal computes for the same fields. The generator builds these body bytes by \
        hand (varint hlc, 32-byte node id, 00 variant, varint length + bucket, varint length + key, \
        32-byte object id, varint parent count + parents) independently of postcard and asserts they \
        equal what LogEntry produces. Shoal does not sort parents; this entry's parents are given in \
        ascending order, which oplog-sync requires."
        .to_string();
    let shoal = add(
        "shoal-compat-put",
        shoal_description,
        3,
        T2026 + 3_000_000,
        put("shoal-bucket", "2026/03/report.pdf", "shoal manifest"),
        vec![merge2.hash, child.hash],
    );
    add(
        "merge-three-parents",
        "A Merge of three parents by a third author (seed 03*32); LogEntry::sign was given them \
         in reverse order plus a duplicate and sorted and deduplicated them."
            .into(),
        3,
        T2026 + 4_000_000,
        Op::Merge,
        {
            let mut p = vec![shoal.hash, del.hash, child.hash, del.hash];
            p.sort_unstable_by(|a, b| b.cmp(a));
            p
        },
    );
    add(
        "unicode",
        "Bucket and key with multi-byte UTF-8 (lengths are in bytes, not characters).".into(),
        4,
        T2026 + 5_000_000,
        put("bücket-ñ", "日本語/ファイル 😀.txt", "unicode object"),
        vec![shoal.hash],
    );
    add(
        "max-lengths",
        format!(
            "Bucket of {MAX_BUCKET_LEN} bytes (the maximum, 2-byte length varint) and key of \
             {MAX_OBJECT_KEY_LEN} bytes (the maximum, 2-byte length varint)."
        ),
        4,
        T2026 + 6_000_000,
        put(
            &"b".repeat(MAX_BUCKET_LEN),
            &"k/".repeat(MAX_OBJECT_KEY_LEN / 2),
            "max object",
        ),
        vec![genesis.hash],
    );
    add(
        "min-hlc-empty-key",
        "HLC 1 (the smallest valid stamp, one varint byte) and an empty object key (allowed)."
            .into(),
        5,
        1,
        Op::Delete {
            bucket: "b".into(),
            key: "".into(),
        },
        vec![],
    );
    add(
        "max-hlc",
        "HLC 2^64 - 2, the largest valid stamp (a 10-byte varint ending in 01).".into(),
        5,
        u64::MAX - 1,
        put("b", "k", "max hlc"),
        vec![],
    );

    // ------------------------------------------------------------------ invalid entries
    let mut invalid = Vec::new();
    let mut bad = |name: &'static str,
                   description: &'static str,
                   encoded: Vec<u8>,
                   claimed: Option<Hash>,
                   expected: &'static str| {
        let stage = match LogEntry::<Op>::decode(&encoded) {
            Err(e) => {
                assert!(claimed.is_none());
                assert_eq!(entry_error_name(&e), expected, "{name}: {e}");
                "decode"
            }
            Ok(mut d) => {
                if let Some(c) = claimed {
                    d.hash = c;
                }
                let e = d.verify().expect_err(name);
                assert_eq!(entry_error_name(&e), expected, "{name}: {e}");
                "verify"
            }
        };
        invalid.push(InvalidEntry {
            name: name.into(),
            description: description.into(),
            encoded_hex: hx(&encoded),
            claimed_hash_hex: claimed.map(|c| hx(&c.0)),
            stage: stage.into(),
            error: expected.into(),
        });
    };
    let k1 = sk(1);
    let n1 = NodeId(k1.verifying_key().to_bytes());
    let merge = &made[3];
    assert!(merge.action == Op::Merge && merge.parents.len() == 2);

    let mut swapped = merge.parents.clone();
    swapped.swap(0, 1);
    bad(
        "unsorted-parents",
        "A Merge whose two parents are in descending order, correctly signed over its body.",
        raw_encoded(&k1, &hand_body(5, &n1.0, &Op::Merge, &swapped)),
        None,
        "ParentsNotCanonical",
    );
    bad(
        "duplicate-parents",
        "A Merge naming the same parent twice.",
        raw_encoded(
            &k1,
            &hand_body(5, &n1.0, &Op::Merge, &[merge.parents[0], merge.parents[0]]),
        ),
        None,
        "ParentsNotCanonical",
    );
    bad(
        "merge-one-parent",
        "A Merge with a single parent: a merge joins at least two.",
        raw_encoded(&k1, &hand_body(5, &n1.0, &Op::Merge, &merge.parents[..1])),
        None,
        "MergeNeedsParents",
    );
    bad(
        "merge-no-parents",
        "A Merge with no parents.",
        raw_encoded(&k1, &hand_body(5, &n1.0, &Op::Merge, &[])),
        None,
        "MergeNeedsParents",
    );
    let g_body = genesis.body();
    let g_enc = genesis.encode();
    {
        // the HLC as an over-long varint: same value, one extra 0x80.. group
        let mut hlc = Vec::new();
        put_varint(&mut hlc, T2026);
        let mut b = hlc[..hlc.len() - 1].to_vec();
        b.push(hlc[hlc.len() - 1] | 0x80);
        b.push(0x00);
        b.extend_from_slice(&g_body[hlc.len()..]);
        bad(
            "overlong-varint-hlc",
            "The genesis entry with its HLC re-encoded as an over-long varint (a trailing 00 \
             group): it decodes to the same fields but is not canonical.",
            raw_encoded(&k1, &b),
            None,
            "NonCanonical",
        );
    }
    {
        let mut b = hand_body(7, &n1.0, &put("b", "k", "x"), &[]);
        // length of "b" as 81 00 instead of 01
        let pos = 1 + 32 + 1;
        assert_eq!(b[pos], 1);
        b.splice(pos..=pos, [0x81, 0x00]);
        bad(
            "overlong-varint-length",
            "A Put whose bucket length 1 is written as the over-long varint 81 00.",
            raw_encoded(&k1, &b),
            None,
            "NonCanonical",
        );
    }
    {
        let mut b = g_body.clone();
        b.push(0x00);
        b.extend_from_slice(&genesis.signature.0);
        bad(
            "trailing-byte-before-signature",
            "The genesis entry with one extra byte between the body and the signature.",
            b,
            None,
            "Malformed",
        );
        let mut b = g_enc.clone();
        b.push(0x00);
        bad(
            "trailing-byte-after-signature",
            "The genesis entry with one extra byte at the end: the last 64 bytes are no longer \
             the signature and the body gains a trailing byte.",
            b,
            None,
            "Malformed",
        );
        bad(
            "truncated-signature",
            "The genesis entry with the last byte of its signature cut off.",
            g_enc[..g_enc.len() - 1].to_vec(),
            None,
            "Malformed",
        );
        bad(
            "shorter-than-signature",
            "63 bytes: shorter than a signature.",
            g_enc[g_enc.len() - 63..].to_vec(),
            None,
            "Malformed",
        );
    }
    {
        let mut b = g_enc.clone();
        let last = b.len() - 1;
        b[last - 10] ^= 0x01;
        bad(
            "bad-signature",
            "The genesis entry with one bit of its signature's s half flipped.",
            b,
            None,
            "BadSignature",
        );
        let mut b = g_enc.clone();
        let pos = g_body.len() - 3; // inside the object id
        b[pos] ^= 0x01;
        bad(
            "flipped-body-byte",
            "The genesis entry with one bit of its body flipped (inside the object id): it \
             decodes, hashes to a different value, and the signature over the original hash \
             does not verify.",
            b.clone(),
            None,
            "BadSignature",
        );
        bad(
            "flipped-body-byte-claimed-hash",
            "The same flipped entry fetched under the genesis entry's hash (claimed_hash_hex): \
             BLAKE3 of the body does not equal the hash it was requested under.",
            b,
            Some(genesis.hash),
            "HashMismatch",
        );
    }
    bad(
        "zero-hlc",
        "A Put with HLC 0, which no clock issues.",
        raw_encoded(&k1, &hand_body(0, &n1.0, &put("b", "k", "x"), &[])),
        None,
        "HlcOutOfRange",
    );
    bad(
        "hlc-2-pow-64-minus-1",
        "A Put with HLC 2^64 - 1, above the largest valid stamp 2^64 - 2.",
        raw_encoded(&k1, &hand_body(u64::MAX, &n1.0, &put("b", "k", "x"), &[])),
        None,
        "HlcOutOfRange",
    );
    bad(
        "empty-bucket",
        "A Put with an empty bucket name.",
        raw_encoded(&k1, &hand_body(9, &n1.0, &put("", "k", "x"), &[])),
        None,
        "InvalidAction",
    );
    bad(
        "bucket-too-long",
        "A Put whose bucket name is one byte over the limit.",
        raw_encoded(
            &k1,
            &hand_body(
                9,
                &n1.0,
                &put(&"b".repeat(MAX_BUCKET_LEN + 1), "k", "x"),
                &[],
            ),
        ),
        None,
        "InvalidAction",
    );
    bad(
        "key-too-long",
        "A Put whose object key is one byte over the limit.",
        raw_encoded(
            &k1,
            &hand_body(
                9,
                &n1.0,
                &put("b", &"k".repeat(MAX_OBJECT_KEY_LEN + 1), "x"),
                &[],
            ),
        ),
        None,
        "InvalidAction",
    );
    {
        let mut b = hand_body(9, &n1.0, &Op::Merge, &[]);
        b[1 + 32] = 0x03; // variant 3: Shoal's Snapshot, not in Op
        bad(
            "unknown-action-variant",
            "Variant index 3 (Shoal's Snapshot), which the default action set does not define.",
            raw_encoded(&k1, &b),
            None,
            "Malformed",
        );
        let mut b = hand_body(9, &n1.0, &put("b", "k", "x"), &[]);
        let pos = 1 + 32 + 1 + 2 + 1; // the key's single byte
        assert_eq!(b[pos], b'k');
        b[pos] = 0xff;
        bad(
            "invalid-utf8-key",
            "A Put whose object key is the single byte ff, not UTF-8.",
            raw_encoded(&k1, &b),
            None,
            "Malformed",
        );
        let mut b = hand_body(9, &n1.0, &Op::Merge, &merge.parents);
        let cut = b.len() - 1;
        b.truncate(cut);
        let mut enc = b;
        enc.extend_from_slice(&[0u8; 64]);
        bad(
            "truncated-parent",
            "A Merge whose second parent hash is one byte short (followed by 64 zero bytes as \
             the signature).",
            enc,
            None,
            "Malformed",
        );
    }
    {
        // an author id that is not a point on the curve
        let not_a_point = (0u8..=255)
            .map(|i| {
                let mut b = [i; 32];
                b[31] &= 0x7f;
                b
            })
            .find(|b| VerifyingKey::from_bytes(b).is_err())
            .expect("some byte pattern is not a curve point");
        bad(
            "invalid-author",
            "The author id is 32 bytes that do not decompress to an ed25519 point.",
            raw_encoded(&k1, &hand_body(9, &not_a_point, &Op::Merge, &merge.parents)),
            None,
            "InvalidAuthor",
        );
        // the identity point as author and the signature (R = identity, s = 0): non-strict
        // ed25519 verification accepts it for every message; strict verification must not.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let vk = VerifyingKey::from_bytes(&identity).expect("identity decompresses");
        let body = hand_body(9, &identity, &put("b", "forged", "x"), &[]);
        let hash = blake3::hash(&body);
        let mut sig = [0u8; 64];
        sig[0] = 1;
        let s = ed25519_dalek::Signature::from_bytes(&sig);
        assert!(
            vk.verify(hash.as_bytes(), &s).is_ok(),
            "the weak-key forgery passes non-strict verification"
        );
        let mut enc = body;
        enc.extend_from_slice(&sig);
        bad(
            "weak-author-key",
            "Author = the identity point (small order) and signature R = identity, s = 0. \
             Non-strict ed25519 verification (as in RFC 8032 cofactored or dalek's `verify`, \
             which Shoal uses) accepts this for ANY message; strict verification (SPEC 5.4) \
             rejects weak keys.",
            enc,
            None,
            "BadSignature",
        );
    }

    EntriesFile {
        description: "Signed log entries (SPEC section 5). body = postcard((hlc, node_id, action, parents)); \
            hash = BLAKE3(body); signature = ed25519(secret key from seed, hash); encoded = body || signature. \
            Seeds are ed25519 secret key seeds (RFC 8032); public_key_hex is the author's NodeId. \
            u64 values are decimal strings. For each valid entry, re-sign from (seed, hlc, action, parents) \
            and compare every hex field; decode encoded_hex and verify. For each invalid entry, decoding \
            (stage decode) or decoding then verifying (stage verify; with claimed_hash_hex, verifying against \
            that hash) must fail with the named error.".into(),
        valid,
        invalid,
    }
}

// ---------------------------------------------------------------------------------------------
// hlc.json

enum Do {
    Tick(u64),
    Observe(u64, u64),
}

fn hlc_sequence(
    name: &'static str,
    description: &'static str,
    max_drift_ns: u64,
    restore: Option<u64>,
    ops: &[Do],
) -> HlcSequence {
    let wall = Rc::new(Cell::new(0u64));
    let w = wall.clone();
    let wall_fn = move || w.get();
    let drift = Duration::from_nanos(max_drift_ns);
    let mut clock = match restore {
        None => HlcClock::new(wall_fn, drift),
        Some(last) => HlcClock::restore(wall_fn, drift, Hlc(last)),
    };
    let mut out = Vec::new();
    for op in ops {
        let mut o = HlcOp {
            op: "tick".into(),
            wall: String::new(),
            remote: None,
            result: "ok".into(),
            stamp: None,
            ahead_ns: None,
            exhausted_at: None,
            last_after: String::new(),
        };
        match *op {
            Do::Tick(now) => {
                wall.set(now);
                o.wall = dec(now);
                match clock.tick() {
                    Ok(s) => o.stamp = Some(dec(s.0)),
                    Err(HlcError::Exhausted(at)) => {
                        o.result = "Exhausted".into();
                        o.exhausted_at = Some(dec(at.0));
                    }
                    Err(e) => panic!("{name}: unexpected {e}"),
                }
            }
            Do::Observe(now, remote) => {
                wall.set(now);
                o.op = "observe".into();
                o.wall = dec(now);
                o.remote = Some(dec(remote));
                match clock.observe(Hlc(remote)) {
                    Ok(()) => {}
                    Err(HlcError::TooFarAhead {
                        remote: r,
                        local,
                        ahead_ns,
                        max_drift_ns: m,
                    }) => {
                        assert_eq!((r.0, local, m), (remote, now, max_drift_ns));
                        o.result = "TooFarAhead".into();
                        o.ahead_ns = Some(dec(ahead_ns));
                    }
                    Err(HlcError::OutOfRange(r)) => {
                        assert_eq!(r.0, remote);
                        o.result = "OutOfRange".into();
                    }
                    Err(e) => panic!("{name}: unexpected {e}"),
                }
            }
        }
        o.last_after = dec(clock.last().0);
        out.push(o);
    }
    HlcSequence {
        name: name.into(),
        description: description.into(),
        max_drift_ns: dec(max_drift_ns),
        restore_last: restore.map(dec),
        ops: out,
    }
}

fn hlc() -> HlcFile {
    const MIN: u64 = 60_000_000_000;
    let s1 = hlc_sequence(
        "stalled-and-backward-wall",
        "Ticks with a wall clock that stalls, runs backwards and jumps; observes older and newer remote stamps.",
        500,
        None,
        &[
            Do::Tick(1_000),
            Do::Tick(1_000),
            Do::Tick(999),
            Do::Tick(5_000),
            Do::Observe(5_000, 5_400),
            Do::Tick(5_001),
            Do::Observe(5_002, 10),
            Do::Tick(5_002),
            Do::Tick(8_000),
        ],
    );
    let s2 = hlc_sequence(
        "drift-bound",
        "Remote stamps exactly at and one past wall + max_drift; a refusal leaves the clock unchanged and the same stamp is admitted once wall time catches up.",
        500,
        None,
        &[
            Do::Tick(1_000_000),
            Do::Observe(1_000_000, 1_000_501),
            Do::Observe(1_000_000, 1_000_500),
            Do::Tick(1_000_000),
            Do::Observe(1_000_000, 1_000_502),
            Do::Observe(1_000_002, 1_000_502),
            Do::Tick(1_000_002),
        ],
    );
    let s3 = hlc_sequence(
        "zero-drift",
        "max_drift 0: a remote stamp equal to wall time is admitted, one nanosecond more is not.",
        0,
        None,
        &[
            Do::Observe(7_000, 7_000),
            Do::Observe(7_000, 7_001),
            Do::Tick(6_000),
        ],
    );
    let s4 = hlc_sequence(
        "exhausted",
        "A clock restored at 2^64 - 3 issues the last valid stamp 2^64 - 2 then refuses; a remote stamp 2^64 - 1 is out of range.",
        MIN,
        Some(u64::MAX - 2),
        &[
            Do::Tick(5),
            Do::Tick(5),
            Do::Tick(5),
            Do::Observe(u64::MAX - 10, u64::MAX),
            Do::Tick(u64::MAX),
        ],
    );
    let s5 = hlc_sequence(
        "restore-after-backward-restart",
        "A clock restored with last far ahead of a wall clock that went backwards keeps counting from last.",
        MIN,
        Some(T2026 + 500),
        &[Do::Tick(T2026), Do::Tick(T2026 + 501), Do::Tick(T2026 + 10_000)],
    );
    let s6 = hlc_sequence(
        "realistic-nanoseconds",
        "Wall times around 2026-01-01 in ns with the default 60 s drift: a peer 59 s ahead is admitted, one 61 s ahead is deferred.",
        MIN,
        None,
        &[
            Do::Tick(T2026),
            Do::Tick(T2026),
            Do::Observe(T2026 + 1_000, T2026 + 59_000_000_000),
            Do::Tick(T2026 + 2_000),
            Do::Observe(T2026 + 3_000, T2026 + 3_000 + 61_000_000_000),
            Do::Tick(T2026 + 4_000),
        ],
    );
    let mut adm = Vec::new();
    for (stamp, now, drift) in [
        (1_100u64, 1_000u64, 100u64),
        (1_101, 1_000, 100),
        (500, 1_000, 0),
        (1_001, 1_000, 0),
        (u64::MAX, u64::MAX - 5, 100),
        (u64::MAX, 0, MIN),
        (T2026 + MIN, T2026, MIN),
        (T2026 + MIN + 1, T2026, MIN),
    ] {
        let (result, not_before) = match admission(Hlc(stamp), now, Duration::from_nanos(drift)) {
            Admission::Now => ("Now", None),
            Admission::Defer { not_before } => ("Defer", Some(dec(not_before))),
        };
        adm.push(AdmissionCase {
            stamp: dec(stamp),
            now: dec(now),
            max_drift_ns: dec(drift),
            result: result.into(),
            not_before,
        });
    }
    HlcFile {
        description: "Hybrid logical clock (SPEC section 4). A fresh clock has last = 0, a restored one last = restore_last. \
            Before each op the wall clock is set to `wall`. tick: if last >= 2^64 - 2 fail with Exhausted (clock unchanged), \
            else last := min(max(wall, last + 1), 2^64 - 2) and return it. observe(remote): if remote > 2^64 - 2 fail with \
            OutOfRange (clock unchanged); admissible iff remote <= wall + max_drift \
            (the sum saturating at 2^64 - 1); if not, fail with TooFarAhead (ahead_ns = remote - wall) and leave the clock \
            unchanged; else last := max(last, remote). last_after is `last` after the op. admission: Now iff \
            stamp <= now + max_drift (saturating), else Defer with not_before = stamp - max_drift. u64 values are decimal strings.".into(),
        sequences: vec![s1, s2, s3, s4, s5, s6],
        admission: adm,
    }
}

// ---------------------------------------------------------------------------------------------
// fingerprints.json

fn term_bytes(k: &EntryKey) -> [u8; STATE_BYTES] {
    Aggregate::of_key(k).sum_bytes()
}

fn fingerprints() -> FingerprintsFile {
    let item_keys = [
        EntryKey::new(T2026, ih(0)),
        EntryKey::MIN,
        EntryKey::new(u64::MAX, [0xff; 32]),
        EntryKey::new(1, ih(1)),
    ];
    let items = item_keys
        .iter()
        .enumerate()
        .map(|(n, k)| {
            let term = term_bytes(k);
            // independent computation of the term: BLAKE3 derive_key XOF over the 40-byte key
            let mut h = blake3::Hasher::new_derive_key(ITEM_CONTEXT);
            h.update(&k.to_bytes());
            let mut direct = [0u8; STATE_BYTES];
            h.finalize_xof().fill(&mut direct);
            assert_eq!(term, direct);
            ItemVector {
                hlc: dec(k.hlc.0),
                hash_hex: hx(&k.hash.0),
                key_bytes_hex: hx(&k.to_bytes()),
                term_first64_hex: hx(&term[..64]),
                term_hex: (n == 0).then(|| hx(&term)),
                fingerprint_hex: hx(&Aggregate::of_key(k).fingerprint().0),
            }
        })
        .collect();

    let explicit = |name: &'static str, keys: &[EntryKey]| {
        let agg = Aggregate::of_keys(keys);
        check_digest(&agg);
        AggregateVector {
            name: name.into(),
            keys: Some(keys_json(keys)),
            recipe: None,
            count: agg.count(),
            sum_hex: hx(&agg.sum_bytes()),
            fingerprint_hex: hx(&agg.fingerprint().0),
        }
    };
    let three = [
        EntryKey::new(T2026, ih(1)),
        EntryKey::new(T2026, ih(2)),
        EntryKey::new(T2026 + 1, ih(3)),
    ];
    let recipe_keys: Vec<EntryKey> = (0..1000u64)
        .map(|i| EntryKey::new(i * 1000, ih(i)))
        .collect();
    let recipe = FpRecipe {
        from: 0,
        to: 1000,
        hlc_base: dec(0),
        hlc_step: dec(1000),
    };
    assert_eq!(
        recipe.keys(),
        Ok(recipe_keys.clone()),
        "the recipe as written"
    );
    let big = Aggregate::of_keys(&recipe_keys);
    check_digest(&big);
    // order does not matter
    let mut rev = recipe_keys.clone();
    rev.reverse();
    assert_eq!(Aggregate::of_keys(&rev), big);
    let aggregates = vec![
        explicit("empty", &[]),
        explicit("one-key", &three[..1]),
        explicit("three-keys", &three),
        AggregateVector {
            name: "thousand-keys".into(),
            keys: None,
            recipe: Some(recipe),
            count: big.count(),
            sum_hex: hx(&big.sum_bytes()),
            fingerprint_hex: hx(&big.fingerprint().0),
        },
    ];
    FingerprintsFile {
        description: "Range fingerprints (SPEC section 7). A key's 40-byte form is hlc (8 bytes big-endian) || hash. \
            Its term is the first 512 bytes of the BLAKE3 XOF in derive_key mode with context item_context over the \
            40-byte key, read as a 4096-bit little-endian integer. An aggregate is (count, sum of terms mod 2^4096); \
            sum_hex is the sum as 512 bytes little-endian (the 1000-key sum wraps modulo 2^4096 many times). \
            The fingerprint is the first 16 bytes of BLAKE3 derive_key(digest_context) over count (u64 little-endian) \
            || sum (512 bytes). A recipe stands for the keys i in [from, to): hlc = hlc_base + i * hlc_step, \
            hash = BLAKE3(i as u64 little-endian).".into(),
        item_context: ITEM_CONTEXT.into(),
        digest_context: DIGEST_CONTEXT.into(),
        items,
        aggregates,
    }
}

/// Recomputes the digest from count and sum directly, independently of `Aggregate::fingerprint`.
fn check_digest(agg: &Aggregate) {
    let mut h = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
    h.update(&agg.count().to_le_bytes());
    h.update(&agg.sum_bytes());
    assert_eq!(h.finalize().as_bytes()[..16], agg.fingerprint().0);
}

// ---------------------------------------------------------------------------------------------
// messages.json

fn bound(hlc: u64, prefix: &[u8]) -> EntryKey {
    let mut h = [0u8; 32];
    h[..prefix.len()].copy_from_slice(prefix);
    EntryKey::new(hlc, h)
}

fn sorted(mut keys: Vec<EntryKey>) -> Vec<EntryKey> {
    keys.sort_unstable();
    keys
}

fn fp(label: &str) -> Fingerprint {
    let mut f = [0u8; 16];
    f.copy_from_slice(&blake3::hash(label.as_bytes()).as_bytes()[..16]);
    Fingerprint(f)
}

fn messages() -> MessagesFile {
    let mut valid = Vec::new();
    let mut ok =
        |name: &'static str, description: &'static str, parts: Vec<Part>, hand: Option<Vec<u8>>| {
            let bytes = message::encode(&parts).expect(name);
            if let Some(h) = hand {
                assert_eq!(
                    bytes, h,
                    "{name}: encoder differs from the hand-built bytes"
                );
            }
            let decoded = message::decode(&bytes).expect(name);
            assert_eq!(message::encode(&decoded).expect(name), bytes);
            valid.push(ValidMessage {
                name: name.into(),
                description: description.into(),
                hex: hx(&bytes),
                parts: decoded.iter().map(PartJson::from).collect(),
            });
        };
    let f1 = fp("fingerprint one");
    let f2 = fp("fingerprint two");
    let k = |hlc: u64, i: u64| EntryKey::new(hlc, ih(i));

    ok(
        "empty",
        "No parts: the tag byte alone. The whole key space is an implicit Skip (used as the answer when every range agrees).",
        vec![],
        Some(vec![MESSAGE_TAG]),
    );
    let mut h = vec![0x01, 0x01, 0x00];
    h.extend_from_slice(&f1.0);
    ok(
        "fingerprint-everything",
        "One Fingerprint part over [MIN, end): header 01 (mode 1, empty prefix), bound varint 00 = end.",
        vec![Part {
            upper: None,
            payload: Payload::Fingerprint(f1),
        }],
        Some(h),
    );
    let mut h = vec![0x01, 0x00, 0xe9, 0x07, 0x01, 0x00];
    h.extend_from_slice(&f2.0);
    ok(
        "skip-then-fingerprint",
        "Skip [MIN, (1000, empty prefix)) then Fingerprint to the end. The bound's HLC is written as hlc - previous bound hlc + 1 = 1001 (e9 07).",
        vec![
            Part {
                upper: Some(bound(1000, &[])),
                payload: Payload::Skip,
            },
            Part {
                upper: None,
                payload: Payload::Fingerprint(f2),
            },
        ],
        Some(h),
    );
    let mut p31 = [0xacu8; 31];
    p31[30] = 0x01;
    ok(
        "bound-prefix-lengths",
        "Bounds with hash prefixes of 0, 3, 31 and 32 bytes (trailing zero bytes of the hash are not sent). Prefix lengths 31 and 32 use the escape: header field 31 followed by a length byte. Same-HLC bounds have HLC delta varint 01.",
        vec![
            Part {
                upper: Some(bound(T2026, &[])),
                payload: Payload::Fingerprint(f1),
            },
            Part {
                upper: Some(bound(T2026, &[0xab, 0xcd, 0xef])),
                payload: Payload::Fingerprint(f2),
            },
            Part {
                upper: Some(bound(T2026, &p31)),
                payload: Payload::Skip,
            },
            Part {
                upper: Some(EntryKey::new(T2026 + 5, [0xee; 32])),
                payload: Payload::Fingerprint(f1),
            },
            Part {
                upper: None,
                payload: Payload::Fingerprint(f2),
            },
        ],
        None,
    );
    ok(
        "prefix-list",
        "A PrefixList of three 4-byte prefixes over [MIN, end): prefix length byte, varint count, then count * len bytes.",
        vec![Part {
            upper: None,
            payload: Payload::PrefixList {
                len: 4,
                prefixes: [ih(1).0[..4].to_vec(), ih(2).0[..4].to_vec(), ih(3).0[..4].to_vec()].concat(),
            },
        }],
        None,
    );
    ok(
        "prefix-list-one-byte-empty",
        "A PrefixList with 1-byte prefixes and no items (the sender holds no key in the range).",
        vec![
            Part {
                upper: Some(bound(500, &[])),
                payload: Payload::PrefixList {
                    len: 1,
                    prefixes: vec![],
                },
            },
            Part {
                upper: None,
                payload: Payload::PrefixList {
                    len: 1,
                    prefixes: vec![0x00, 0x7f, 0xff],
                },
            },
        ],
        None,
    );
    ok(
        "full-list",
        "A FullList bounded above: varint count, then per key the HLC delta from the previous key (the first from the part's lower bound HLC) and the 32-byte hash.",
        vec![
            Part {
                upper: Some(bound(T2026, &[])),
                payload: Payload::Skip,
            },
            Part {
                upper: Some(bound(T2026 + 1_000, &[])),
                payload: Payload::FullList(sorted(vec![k(T2026, 1), k(T2026, 2), k(T2026 + 999, 3)])),
            },
        ],
        None,
    );
    ok(
        "resolve",
        "A Resolve: varint count of missing positions, each as the gap from the previous position + 1 (first from 0), then keys like a FullList.",
        vec![Part {
            upper: None,
            payload: Payload::Resolve {
                missing: vec![0, 3, 4, 255],
                keys: vec![k(7, 4), k(300, 5)],
            },
        }],
        None,
    );
    ok(
        "resolve-empty",
        "A Resolve naming no positions and carrying no keys (the lists agreed).",
        vec![Part {
            upper: Some(bound(99, &[])),
            payload: Payload::Resolve {
                missing: vec![],
                keys: vec![],
            },
        }],
        None,
    );
    ok(
        "keys",
        "A Keys part: the full keys answering a Resolve, encoded like a FullList.",
        vec![
            Part {
                upper: Some(bound(100, &[])),
                payload: Payload::Skip,
            },
            Part {
                upper: None,
                payload: Payload::Keys(vec![k(100, 6), k(u64::MAX - 1, 7)]),
            },
        ],
        None,
    );
    ok(
        "every-mode",
        "One message with a part of every mode, bounds with and without hash prefixes.",
        vec![
            Part {
                upper: Some(bound(100, &[])),
                payload: Payload::Skip,
            },
            Part {
                upper: Some(bound(200, &[0x33])),
                payload: Payload::Fingerprint(f1),
            },
            Part {
                upper: Some(bound(300, &[])),
                payload: Payload::PrefixList {
                    len: 2,
                    prefixes: vec![1, 2, 3, 4],
                },
            },
            Part {
                upper: Some(bound(400, &[])),
                payload: Payload::FullList(vec![k(300, 8), k(399, 9)]),
            },
            Part {
                upper: Some(bound(500, &[])),
                payload: Payload::Resolve {
                    missing: vec![1],
                    keys: vec![k(450, 10)],
                },
            },
            Part {
                upper: None,
                payload: Payload::Keys(sorted(vec![k(600, 11), k(600, 12)])),
            },
        ],
        None,
    );

    // ------------------------------------------------------------------ invalid messages
    let mut invalid = Vec::new();
    let mut bad =
        |name: &'static str, description: &'static str, bytes: Vec<u8>, expected: &'static str| {
            let e = message::decode(&bytes).expect_err(name);
            assert_eq!(decode_error_name(&e), expected, "{name}: {e}");
            invalid.push(InvalidMessage {
                name: name.into(),
                description: description.into(),
                hex: hx(&bytes),
                error: expected.into(),
            });
        };
    let with = |prefix: &[u8], tail: &[&[u8]]| {
        let mut v = prefix.to_vec();
        for t in tail {
            v.extend_from_slice(t);
        }
        v
    };
    let f = f1.0;
    bad("empty-input", "No bytes at all.", vec![], "BadTag");
    bad(
        "wrong-tag",
        "First byte 02 instead of 01.",
        vec![0x02, 0x01, 0x00],
        "BadTag",
    );
    bad(
        "truncated-fingerprint",
        "A Fingerprint part with 10 of its 16 bytes.",
        with(&[0x01, 0x01, 0x00], &[&f[..10]]),
        "Truncated",
    );
    bad(
        "truncated-bound",
        "A part header without its bound.",
        vec![0x01, 0x01],
        "Truncated",
    );
    bad(
        "truncated-bound-prefix",
        "A bound announcing a 3-byte prefix with 2 bytes present.",
        vec![0x01, 0x19, 0x05, 0xaa, 0xbb],
        "Truncated",
    );
    bad(
        "count-beyond-input",
        "A FullList announcing 2 keys with bytes for less than one.",
        with(&[0x01, 0x03, 0x00, 0x02, 0x00], &[&[0x11; 20]]),
        "Truncated",
    );
    bad(
        "overlong-varint",
        "The end bound written as the over-long varint 80 00.",
        with(&[0x01, 0x01, 0x80, 0x00], &[&f]),
        "BadVarint",
    );
    bad(
        "varint-too-long",
        "A bound varint of 11 bytes.",
        with(&[0x01, 0x01], &[&[0xff; 10], &[0x01], &f]),
        "BadVarint",
    );
    bad(
        "varint-overflow",
        "A 10-byte varint whose last byte is 02: more than 2^64 - 1.",
        with(&[0x01, 0x01], &[&[0xff; 9], &[0x02], &f]),
        "BadVarint",
    );
    bad(
        "unknown-mode-6",
        "Mode 6 is not defined.",
        vec![0x01, 0x06, 0x00],
        "UnknownMode",
    );
    bad(
        "unknown-mode-7",
        "Mode 7 is not defined.",
        vec![0x01, 0x07, 0x00],
        "UnknownMode",
    );
    bad(
        "end-bound-with-prefix",
        "The end bound (HLC varint 00) with a 1-byte hash prefix.",
        with(&[0x01, 0x09, 0x00, 0xaa], &[&f]),
        "BadBound",
    );
    bad(
        "prefix-ends-in-zero",
        "A 1-byte bound prefix 00: not the shortest form.",
        with(&[0x01, 0x09, 0x05, 0x00], &[&f]),
        "BadBound",
    );
    bad(
        "escaped-prefix-length-30",
        "Header prefix field 31 (escape) followed by length 30, which has a direct form.",
        with(&[0x01, 0xf9, 0x1e, 0x05], &[&[0x11; 30], &f]),
        "BadBound",
    );
    bad(
        "bound-equal-to-min",
        "A first bound equal to the smallest key (0, 00..00): the range would be empty.",
        with(&[0x01, 0x01, 0x01], &[&f]),
        "BadBound",
    );
    bad(
        "bounds-not-increasing",
        "Two parts with the same bound (HLC 4, then delta 0 -> varint 01).",
        with(&[0x01, 0x01, 0x05], &[&f, &[0x01, 0x01], &f]),
        "BadBound",
    );
    bad(
        "part-after-end",
        "A part after the part that ends at the end of the key space.",
        with(&[0x01, 0x01, 0x00], &[&f, &[0x01, 0x00], &f]),
        "BadBound",
    );
    bad(
        "bound-hlc-overflow",
        "A second bound whose HLC delta overflows 2^64 - 1.",
        with(&[0x01, 0x01, 0x0b], &[&f, &[0x01], &[0xff; 9], &[0x01], &f]),
        "BadBound",
    );
    bad(
        "bound-hlc-2-pow-64-minus-1",
        "A second bound at HLC 1 + (2^64 - 2) = 2^64 - 1, above the largest valid stamp.",
        with(&[0x01, 0x01, 0x02], &[&f, &[0x01], &[0xff; 9], &[0x01], &f]),
        "BadBound",
    );
    bad(
        "key-hlc-2-pow-64-minus-1",
        "A Keys part to the end holding one key with HLC 2^64 - 1.",
        with(
            &[0x01, 0x05, 0x00, 0x01],
            &[&[0xff; 9], &[0x01], &[0x22; 32]],
        ),
        "BadPayload",
    );
    bad(
        "prefix-len-zero",
        "A PrefixList with prefix length 0.",
        vec![0x01, 0x02, 0x00, 0x00, 0x00],
        "BadPayload",
    );
    bad(
        "prefix-len-33",
        "A PrefixList with prefix length 33.",
        vec![0x01, 0x02, 0x00, 0x21, 0x00],
        "BadPayload",
    );
    bad(
        "too-many-items",
        "A PrefixList announcing 257 items (the limit is 256).",
        with(&[0x01, 0x02, 0x00, 0x01, 0x81, 0x02], &[&[0x11; 257]]),
        "BadPayload",
    );
    {
        let a = ih(1).0;
        let mut lo = a;
        lo[0] = 0x00;
        bad(
            "keys-not-ascending",
            "A Keys part with the same key twice.",
            with(&[0x01, 0x05, 0x00, 0x02, 0x05], &[&a, &[0x00], &a]),
            "BadPayload",
        );
        bad(
            "key-outside-range",
            "A Keys part over [MIN, (10, empty)) holding a key with HLC 20.",
            with(&[0x01, 0x05, 0x0b, 0x01, 0x14], &[&a]),
            "BadPayload",
        );
        bad(
            "key-below-range",
            "A Skip to the bound (10, 80) then a Keys part over [(10, 80), end) holding a key
             (10, 00 ..), below the part's lower bound.",
            with(&[0x01, 0x08, 0x0b, 0x80, 0x05, 0x00, 0x01, 0x00], &[&lo]),
            "BadPayload",
        );
    }
    bad(
        "resolve-position-too-large",
        "A Resolve naming position 256 (lists hold at most 256 items).",
        vec![0x01, 0x04, 0x00, 0x01, 0x80, 0x02, 0x00],
        "BadPayload",
    );
    bad(
        "trailing-skip",
        "A message ending with a Skip part (the trailing Skip is implicit).",
        with(&[0x01, 0x01, 0x05], &[&f, &[0x00, 0x00]]),
        "NonCanonicalSkip",
    );
    bad(
        "skip-only",
        "A lone Skip to the end: the canonical form is the empty message.",
        vec![0x01, 0x00, 0x00],
        "NonCanonicalSkip",
    );
    bad(
        "two-skips",
        "Two adjacent Skip parts: they must be merged into one.",
        with(&[0x01, 0x00, 0x05, 0x00, 0x02, 0x01, 0x00], &[&f]),
        "NonCanonicalSkip",
    );
    MessagesFile {
        description: "Reconciliation messages (SPEC section 8.3). Each valid message is given as hex and as its decoded parts; \
            decoding hex must give exactly these parts, and encoding the parts must give exactly hex. A part's range starts \
            at the previous part's upper bound (the first at MIN = (0, 00..00)); a bound's hash_hex is the full 32 bytes, \
            of which only the bytes up to the last non-zero one are on the wire. Each invalid message must be refused with \
            the named error.".into(),
        valid,
        invalid,
    }
}

// ---------------------------------------------------------------------------------------------
// transcripts.json

/// Largest set whose keys are listed explicitly.
const EXPLICIT_MAX: usize = 64;

struct Case {
    name: &'static str,
    description: &'static str,
    config_initiator: ConfigJson,
    config_responder: ConfigJson,
    recipe: KeyRecipe,
    a: Vec<[u64; 3]>,
    b: Vec<[u64; 3]>,
    check: fn(&Transcript),
}

fn transcript_vector(c: Case) -> TranscriptVector {
    let keys = |runs: &[[u64; 3]]| {
        c.recipe
            .keys(runs)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name))
    };
    let (set_a, set_b) = (keys(&c.a), keys(&c.b));
    let a: Vec<EntryKey> = set_a.iter().copied().collect();
    let b: Vec<EntryKey> = set_b.iter().copied().collect();
    let sa: MemoryStore = a.iter().copied().collect();
    let sb: MemoryStore = b.iter().copied().collect();
    let t = transcript::run(
        &sa,
        &sb,
        c.config_initiator.config().expect("OplogV1"),
        c.config_responder.config().expect("OplogV1"),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let a_only: Vec<EntryKey> = set_a.difference(&set_b).copied().collect();
    let b_only: Vec<EntryKey> = set_b.difference(&set_a).copied().collect();
    assert_eq!(t.initiator.have, a_only, "{}", c.name);
    assert_eq!(t.initiator.need, b_only, "{}", c.name);
    assert_eq!(t.responder.have, b_only, "{}", c.name);
    assert_eq!(t.responder.need, a_only, "{}", c.name);
    (c.check)(&t);
    let set = |runs: Vec<[u64; 3]>, keys: &[EntryKey]| SetJson {
        runs,
        count: keys.len(),
        keys: (keys.len() <= EXPLICIT_MAX).then(|| keys_json(keys)),
    };
    let side = |o: &transcript::Outcome| SideJson {
        have: keys_json(&o.have),
        need: keys_json(&o.need),
        prefix_collisions: o.stats.prefix_collisions,
        carried_over: o.stats.carried_over,
    };
    TranscriptVector {
        name: c.name.into(),
        description: c.description.into(),
        config_initiator: c.config_initiator,
        config_responder: c.config_responder,
        key_recipe: c.recipe,
        initiator_set: set(c.a, &a),
        responder_set: set(c.b, &b),
        messages: t
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| MessageJson {
                from: if i % 2 == 0 { "initiator" } else { "responder" }.into(),
                hex: hx(m.as_bytes()),
            })
            .collect(),
        initiator: side(&t.initiator),
        responder: side(&t.responder),
    }
}

fn cfg(
    branching: usize,
    list_threshold: usize,
    prefix_len: u8,
    max_message_bytes: Option<usize>,
    initial_split: bool,
) -> ConfigJson {
    ConfigJson {
        dialect: "OplogV1".into(),
        branching,
        list_threshold,
        prefix_len,
        max_message_bytes,
        initial_split,
    }
}

fn recipe(base: u64, step: u64, div: u64) -> KeyRecipe {
    KeyRecipe {
        hlc_base: dec(base),
        hlc_step: dec(step),
        hlc_div: div,
    }
}

fn transcripts() -> TranscriptsFile {
    let small = cfg(4, 8, 4, None, true);
    let standard = cfg(16, 32, 4, None, true);
    let cases = vec![
        Case {
            name: "small-differences",
            description: "About 40 keys on each side, 3 held only by the initiator and 4 only by the responder; \
                branching 4, list threshold 8, 4-byte prefixes.",
            config_initiator: small.clone(),
            config_responder: small.clone(),
            recipe: recipe(1_000, 10, 1),
            a: vec![[0, 12, 1], [13, 20, 1], [21, 38, 1], [39, 43, 1]],
            b: vec![[0, 38, 1], [40, 41, 1], [43, 45, 1]],
            check: |t| assert!(t.messages.len() > 2),
        },
        Case {
            name: "equal-sets-single-fingerprint",
            description: "Equal sets of 50 keys with initial_split off: one fingerprint of everything, answered by the empty message.",
            config_initiator: cfg(16, 32, 4, None, false),
            config_responder: cfg(16, 32, 4, None, false),
            recipe: recipe(T2026, 1_000_000, 1),
            a: vec![[0, 50, 1]],
            b: vec![[0, 50, 1]],
            check: |t| {
                assert_eq!(t.messages.len(), 2);
                assert_eq!(t.messages[1].as_bytes(), &[MESSAGE_TAG]);
            },
        },
        Case {
            name: "equal-sets-split",
            description: "Equal sets of 600 keys with initial_split on: the opening splits the key space, every fingerprint matches, the answer is the empty message.",
            config_initiator: standard.clone(),
            config_responder: standard.clone(),
            recipe: recipe(T2026, 1_000_000, 1),
            a: vec![[0, 600, 1]],
            b: vec![[0, 600, 1]],
            check: |t| {
                assert_eq!(t.messages.len(), 2);
                assert_eq!(t.messages[1].as_bytes(), &[MESSAGE_TAG]);
            },
        },
        Case {
            name: "responder-empty",
            description: "The initiator holds 30 keys, the responder none.",
            config_initiator: standard.clone(),
            config_responder: standard.clone(),
            recipe: recipe(1, 1, 1),
            a: vec![[0, 30, 1]],
            b: vec![],
            check: |_| {},
        },
        Case {
            name: "initiator-empty",
            description: "The initiator holds nothing, the responder 100 keys (more than the list threshold, so the responder splits).",
            config_initiator: standard.clone(),
            config_responder: standard.clone(),
            recipe: recipe(T2026, 7, 1),
            a: vec![],
            b: vec![[0, 100, 1]],
            check: |_| {},
        },
        Case {
            name: "both-empty",
            description: "Two empty sets.",
            config_initiator: standard.clone(),
            config_responder: standard.clone(),
            recipe: recipe(1, 1, 1),
            a: vec![],
            b: vec![],
            check: |t| assert_eq!(t.messages.len(), 2),
        },
        Case {
            name: "prefix-collision",
            description: "1950 keys on each side, i < 2000, with a clustered difference: in i = 1500..1600 the initiator \
                holds only the even and the responder only the odd i. One-byte prefixes make prefix collisions certain; each is caught by the \
                fingerprint check and the range is resent as a FullList.",
            config_initiator: cfg(16, 32, 1, None, true),
            config_responder: cfg(16, 32, 1, None, true),
            recipe: recipe(1_000_000, 1_000, 1),
            a: vec![[0, 1500, 1], [1500, 1600, 2], [1600, 2000, 1]],
            b: vec![[0, 1500, 1], [1501, 1600, 2], [1600, 2000, 1]],
            check: |t| {
                let c = t.initiator.stats.prefix_collisions + t.responder.stats.prefix_collisions;
                assert!(c > 0, "no prefix collision happened");
            },
        },
        Case {
            name: "message-limit-carry-over",
            description: "3000 keys, the responder lacking every 7th; both sides limit messages to 4096 bytes, so ranges that \
                do not fit are carried into the next round as one fingerprint of the rest of the key space.",
            config_initiator: cfg(32, 32, 4, Some(4096), true),
            config_responder: cfg(32, 32, 4, Some(4096), true),
            recipe: recipe(T2026, 1_000, 1),
            a: vec![[0, 3000, 1]],
            b: (1..7).map(|r| [r, 3000, 7]).collect(),
            check: |t| {
                let c = t.initiator.stats.carried_over + t.responder.stats.carried_over;
                assert!(c > 0, "nothing was carried over");
                assert!(t.messages.iter().all(|m| m.len() <= 4096));
            },
        },
        Case {
            name: "shared-hlcs",
            description: "300 keys where every 8 consecutive i share one HLC, so split bounds carry hash prefixes; \
                the responder lacks i = 100..110 and holds 5 keys the initiator lacks.",
            config_initiator: small.clone(),
            config_responder: small.clone(),
            recipe: recipe(5_000, 3, 8),
            a: vec![[0, 100, 1], [110, 300, 1]],
            b: vec![[0, 300, 1], [300, 305, 1]],
            check: |t| {
                let has_prefix_bound = t.messages.iter().any(|m| {
                    m.parts()
                        .unwrap()
                        .iter()
                        .any(|p| p.upper.is_some_and(|u| u.hash != Hash::ZERO))
                });
                assert!(has_prefix_bound, "no bound with a hash prefix");
            },
        },
        Case {
            name: "different-configs",
            description: "The two sides use different parameters (the wire carries everything needed): the initiator \
                branching 2, list threshold 4, 2-byte prefixes, no initial split; the responder branching 32, threshold 64, 8-byte prefixes.",
            config_initiator: cfg(2, 4, 2, None, false),
            config_responder: cfg(32, 64, 8, None, true),
            recipe: recipe(T2026, 1_000_000, 1),
            a: vec![[0, 200, 1]],
            b: vec![[0, 60, 1], [61, 150, 3], [150, 220, 1]],
            check: |_| {},
        },
    ];
    TranscriptsFile {
        description: "Full reconciliation sessions (SPEC section 8) between an initiator and a responder, each with its own \
            explicit configuration. Keys: key i = (hlc_base + floor(i / hlc_div) * hlc_step, BLAKE3(i as u64 little-endian)); \
            a set is every i in each run [from, to, step) (i = from, from + step, ... < to); small sets also list their keys. \
            messages[0] is the initiator's opening; each following message is the reply to the one before it, alternating \
            sides; the session ends when a side handles a message and has nothing to reply. An implementation replaying \
            one side must produce exactly the messages of that side, byte for byte, and end with exactly the listed have \
            (keys it holds that the peer lacks) and need (keys the peer holds that it lacks), sorted ascending.".into(),
        transcripts: cases.into_iter().map(transcript_vector).collect(),
    }
}
