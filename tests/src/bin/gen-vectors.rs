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
use oplog_protocol::negentropy;
use oplog_protocol::session::Role;
use oplog_protocol::testing::transcript::{self, Transcript};
use oplog_protocol::wire::message::{self, Part, Payload, MESSAGE_TAG};
use oplog_protocol::{admission, Admission};
use oplog_protocol::{
    Aggregate, Config, EntryKey, Fingerprint, Hash, Hlc, HlcClock, HlcError, LogEntry, MemoryStore,
    NodeId, ObjectId, Op, Reconciler, FINGERPRINT_LEN,
};
use oplog_protocol::{DIGEST_CONTEXT, ITEM_CONTEXT, STATE_BYTES};
use oplog_protocol::{MAX_BUCKET_LEN, MAX_OBJECT_KEY_LEN};
use oplog_protocol::{MAX_ENTRY_BYTES, MAX_PARENTS, SIGNATURE_LEN};
use oplog_tests::vectors::{
    close_frame, decode_frame, end_code_name, feed_invalid, replay_session, run_session, unhex,
    DecodedFrame, FrameCase, InvalidFrameCase, SessionConfigJson, SessionFile, SessionResultJson,
    SessionSideJson, SessionTranscript,
};
use oplog_tests::vectors::{
    dec, decode_error_name, entry_error_name, hx, ih, keys_json, merge_rule_heads,
    neg_decode_error_name, refuse_ancestry, replay_failure, run_ancestry, run_conflicts, run_haves,
    run_insert_sequence, run_merge_rule, run_negentropy, vectors_dir, ActionJson, AdmissionCase,
    AggregateVector, AncestryCase, AncestryInvalid, AuthorJson, CapsJson, ConfigJson, ConflictCase,
    DagEntryJson, DagFile, EntriesFile, FailureCase, FailuresFile, FingerprintsFile, FpRecipe,
    Graph, GraphJson, HavesCase, HeadJson, HeadsRecipe, HlcFile, HlcOp, HlcSequence,
    InsertSequence, InsertStep, InvalidEntry, InvalidMessage, ItemVector, KeyRecipe, LimitCase,
    LimitsFile, MergeRuleCase, MessageJson, MessagesFile, NegInvalid, NegMessage, NegPartJson,
    NegTranscript, NegentropyFile, PartJson, ReplicaStateJson, SetJson, SideJson, TranscriptVector,
    TranscriptsFile, ValidEntry, ValidMessage, VECTOR_SALT,
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
        std::fs::metadata(&path).map_or(0, |m| m.len())
    );
}

fn main() {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map_or_else(vectors_dir, PathBuf::from);
    std::fs::create_dir_all(&dir).expect("create output dir");
    write_json(&dir, "entries.json", &entries());
    write_json(&dir, "hlc.json", &hlc());
    write_json(&dir, "fingerprints.json", &fingerprints());
    write_json(&dir, "messages.json", &messages());
    write_json(&dir, "transcripts.json", &transcripts());
    write_json(&dir, "limits.json", &limits());
    write_json(&dir, "failures.json", &failures());
    write_json(&dir, "negentropy.json", &negentropy_vectors());
    write_json(&dir, "dag.json", &dag_vectors());
    write_json(&dir, "session.json", &session_vectors());
}

// ---------------------------------------------------------------------------------------------
// entries.json

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // the low seven bits, with the continuation bit
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).expect("below 0x80 after the loop"));
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
        other => unimplemented!("no hand-built body for {other:?} yet"),
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
            key: String::new(),
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
                fingerprint_hex: hx(&Aggregate::of_key(k).fingerprint(&VECTOR_SALT).0),
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
            fingerprint_hex: hx(&agg.fingerprint(&VECTOR_SALT).0),
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
            fingerprint_hex: hx(&big.fingerprint(&VECTOR_SALT).0),
        },
    ];
    FingerprintsFile {
        description: "Range fingerprints (SPEC section 7). A key's 40-byte form is hlc (8 bytes big-endian) || hash. \
            Its term is the first 512 bytes of the BLAKE3 XOF in derive_key mode with context item_context over the \
            40-byte key, read as a 4096-bit little-endian integer. An aggregate is (count, sum of terms mod 2^4096); \
            sum_hex is the sum as 512 bytes little-endian (the 1000-key sum wraps modulo 2^4096 many times). \
            The fingerprint is the first 8 bytes of BLAKE3 derive_key(digest_context) over salt (16 bytes, salt_hex) \
            || count (u64 little-endian) || sum (512 bytes). A recipe stands for the keys i in [from, to): hlc = hlc_base + i * hlc_step, \
            hash = BLAKE3(i as u64 little-endian).".into(),
        item_context: ITEM_CONTEXT.into(),
        digest_context: DIGEST_CONTEXT.into(),
        salt_hex: hx(&VECTOR_SALT.0),
        items,
        aggregates,
    }
}

/// Recomputes the digest from count and sum directly, independently of `Aggregate::fingerprint`.
fn check_digest(agg: &Aggregate) {
    let mut h = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
    h.update(&VECTOR_SALT.0);
    h.update(&agg.count().to_le_bytes());
    h.update(&agg.sum_bytes());
    assert_eq!(
        h.finalize().as_bytes()[..FINGERPRINT_LEN],
        agg.fingerprint(&VECTOR_SALT).0
    );
}

// ---------------------------------------------------------------------------------------------
// messages.json

fn bound(hlc: u64, prefix: &[u8]) -> EntryKey {
    let mut h = [0u8; 32];
    h[..prefix.len()].copy_from_slice(prefix);
    EntryKey::new(hlc, h)
}

/// The `bound-hlc` field for an HLC delta (SPEC 8.3), written here from the spec's text: the
/// varint of `1 + ((m << 6) | e)` for `delta = m * 2^e` with `m` odd (0 for a delta of 0).
fn bound_t(delta: u64) -> Vec<u8> {
    let code: u128 = if delta == 0 {
        0
    } else {
        let e = delta.trailing_zeros();
        (u128::from(delta >> e) << 6) | u128::from(e)
    };
    wide_varint(code + 1)
}

/// A LEB128 varint of up to 70 bits.
fn wide_varint(mut v: u128) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(v.to_le_bytes()[0]);
    out
}

fn sorted(mut keys: Vec<EntryKey>) -> Vec<EntryKey> {
    keys.sort_unstable();
    keys
}

fn fp(label: &str) -> Fingerprint {
    let mut f = [0u8; FINGERPRINT_LEN];
    f.copy_from_slice(&blake3::hash(label.as_bytes()).as_bytes()[..FINGERPRINT_LEN]);
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
                salt_hex: None,
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
    // the same part as a session's opening message: the salt after the tag
    let mut h = vec![MESSAGE_TAG];
    h.extend_from_slice(&VECTOR_SALT.0);
    h.extend_from_slice(&[0x01, 0x00]);
    h.extend_from_slice(&f1.0);
    let opening_parts = vec![Part {
        upper: None,
        payload: Payload::Fingerprint(f1),
    }];
    let bytes = message::encode_opening(&VECTOR_SALT, &opening_parts).unwrap();
    assert_eq!(
        bytes, h,
        "opening: encoder differs from the hand-built bytes"
    );
    assert_eq!(
        message::decode_opening(&bytes).unwrap(),
        (VECTOR_SALT, opening_parts.clone())
    );
    let opening_vector = ValidMessage {
        name: "opening".into(),
        description: "The initiator's first message of a session (its opening): tag 01, the 16-byte fingerprint salt (salt_hex), then the parts as in any message (here one Fingerprint of everything, keyed by that salt). Only the receiver's place in the session tells an opening from another message.".into(),
        salt_hex: Some(hx(&VECTOR_SALT.0)),
        hex: hx(&bytes),
        parts: opening_parts.iter().map(PartJson::from).collect(),
    };
    let mut h = vec![0x01, 0x00, 0xc4, 0x3e, 0x01, 0x00];
    h.extend_from_slice(&f2.0);
    ok(
        "skip-then-fingerprint",
        "Skip [MIN, (1000, empty prefix)) then Fingerprint to the end. The bound's HLC delta from the previous bound (0) is 1000 = 125 * 2^3, written as ((125 << 6) | 3) + 1 = 8004 (c4 3e).",
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
        "Bounds with hash prefixes of 0, 3, 31 and 32 bytes (trailing zero bytes of the hash are not sent). Prefix lengths 31 and 32 use the escape: header field 31 followed by a length byte. Same-HLC bounds have HLC delta 0, written as varint 01.",
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
        "fingerprint-run",
        "Three Fingerprint parts with empty bound prefixes written as one run: header 0e (mode 6, k - 2 = 1 in the high bits), then per part the bound's HLC code and the 8-byte fingerprint. A part whose bound has a prefix (here the second) ends a run; a group of one keeps header 01.",
        vec![
            Part {
                upper: Some(bound(T2026, &[])),
                payload: Payload::Fingerprint(f1),
            },
            Part {
                upper: Some(bound(T2026, &[0x42])),
                payload: Payload::Fingerprint(f2),
            },
            Part {
                upper: Some(bound(T2026 + (3 << 20), &[])),
                payload: Payload::Fingerprint(f1),
            },
            Part {
                upper: Some(bound(T2026 + (5 << 20), &[])),
                payload: Payload::Fingerprint(f2),
            },
            Part {
                upper: None,
                payload: Payload::Fingerprint(f1),
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
        "A Keys part with omitted length 0: the full keys answering a Resolve, encoded like a FullList after the omitted-length byte 00.",
        vec![
            Part {
                upper: Some(bound(100, &[])),
                payload: Payload::Skip,
            },
            Part {
                upper: None,
                payload: Payload::Keys {
                    omitted: 0,
                    keys: vec![k(100, 6), k(u64::MAX - 1, 7)],
                },
            },
        ],
        None,
    );
    ok(
        "keys-without-prefixes",
        "A Keys part answering a 3-byte PrefixList: omitted length 3, each key written without the first 3 bytes of its hash (decoded as zero; the receiver fills them in from the prefixes it asked for). The second key has the first key's HLC (delta 0): its order is checked only after the filling in.",
        vec![
            Part {
                upper: Some(bound(100, &[])),
                payload: Payload::Skip,
            },
            Part {
                upper: None,
                payload: Payload::Keys {
                    omitted: 3,
                    keys: vec![k(150, 6), k(150, 7)]
                        .into_iter()
                        .map(|mut k| {
                            k.hash.0[..3].fill(0);
                            k
                        })
                        .collect(),
                },
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
                payload: Payload::Keys {
                    omitted: 0,
                    keys: sorted(vec![k(600, 11), k(600, 12)]),
                },
            },
        ],
        None,
    );

    valid.push(opening_vector);

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
        "First byte 03 instead of 01.",
        vec![0x03, 0x01, 0x00],
        "BadTag",
    );
    bad(
        "truncated-fingerprint",
        "A Fingerprint part with 5 of its 8 bytes.",
        with(&[0x01, 0x01, 0x00], &[&f[..5]]),
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
        vec![0x01, 0x19, 0x41, 0xaa, 0xbb],
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
        "A FullList count written as a 10-byte varint whose last byte is 02: more than 2^64 - 1.",
        with(&[0x01, 0x03, 0x00], &[&[0xff; 9], &[0x02]]),
        "BadVarint",
    );
    bad(
        "bound-delta-even-multiplier",
        "A bound delta code (2 << 6) | 0 (m = 2, e = 0): the canonical code of the delta 2 is (1 << 6) | 1.",
        with(&[0x01, 0x01], &[&wide_varint((2 << 6) + 1), &f]),
        "BadBound",
    );
    bad(
        "bound-delta-zero-with-exponent",
        "A bound delta code 0 << 6 | 4 (m = 0, e = 4): a delta of 0 has only the code 0.",
        with(&[0x01, 0x01, 0x05], &[&f]),
        "BadBound",
    );
    bad(
        "bound-delta-code-overflow",
        "A bound delta code (3 << 6) | 63: 3 * 2^63 does not fit 64 bits.",
        with(&[0x01, 0x01], &[&wide_varint(((3 << 6) | 63) + 1), &f]),
        "BadBound",
    );
    bad(
        "run-ends-early",
        "A run header for 2 Fingerprint parts (06) whose first member ends the message: the second is missing.",
        with(&[0x01, 0x06, 0x41], &[&f]),
        "Truncated",
    );
    bad(
        "run-after-single-fingerprint",
        "A Fingerprint part with an empty bound prefix (header 01), then a run header: the two belong in one run.",
        with(&[0x01, 0x01, 0x41], &[&f, &[0x06, 0x41], &f, &[0x00], &f]),
        "NonCanonicalRun",
    );
    bad(
        "single-fingerprint-after-short-run",
        "A run of 2, then a Fingerprint part with an empty bound prefix and header 01: it belongs in the run.",
        with(&[0x01, 0x06, 0x41], &[&f, &[0x41], &f, &[0x01, 0x00], &f]),
        "NonCanonicalRun",
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
        with(&[0x01, 0x09, 0x41, 0x00], &[&f]),
        "BadBound",
    );
    bad(
        "escaped-prefix-length-30",
        "Header prefix field 31 (escape) followed by length 30, which has a direct form.",
        with(&[0x01, 0xf9, 0x1e, 0x41], &[&[0x11; 30], &f]),
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
        "A run of two Fingerprint parts with the same bound (HLC 4 = 1 * 2^2 -> code (1 << 6) | 2, varint 43; then delta 0 -> varint 01).",
        with(&[0x01, 0x06, 0x43], &[&f, &[0x01], &f]),
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
        "A run of two Fingerprint parts: a first bound at HLC 10, then one whose HLC delta 2^64 - 1 (m = 2^64 - 1, e = 0) takes it past 2^64 - 1.",
        with(&[0x01, 0x06], &[&bound_t(10), &f, &bound_t(u64::MAX), &f]),
        "BadBound",
    );
    bad(
        "bound-hlc-2-pow-64-minus-1",
        "A run of two Fingerprint parts, the second bound at HLC 1 + (2^64 - 2) = 2^64 - 1, above the largest valid stamp.",
        with(&[0x01, 0x06], &[&bound_t(1), &f, &bound_t(u64::MAX - 1), &f]),
        "BadBound",
    );
    bad(
        "key-hlc-2-pow-64-minus-1",
        "A Keys part to the end holding one key with HLC 2^64 - 1.",
        with(
            &[0x01, 0x05, 0x00, 0x00, 0x01],
            &[&[0xff; 9], &[0x01], &[0x22; 32]],
        ),
        "BadPayload",
    );
    bad(
        "keys-omitted-33",
        "A Keys part to the end whose omitted length is 33 (at most 32).",
        vec![0x01, 0x05, 0x00, 0x21, 0x00],
        "BadPayload",
    );
    bad(
        "keys-suffix-hlc-above-bound",
        "A Keys part over [MIN, (10, empty)) with omitted length 3 holding a key with HLC 11: with prefixes left out only the HLCs are checked against the range, and 11 is above the bound's 10.",
        with(&[0x01, 0x05], &[&bound_t(10), &[0x03, 0x01, 0x0b], &[0x22; 29]]),
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
            with(&[0x01, 0x05, 0x00, 0x00, 0x02, 0x05], &[&a, &[0x00], &a]),
            "BadPayload",
        );
        bad(
            "key-outside-range",
            "A Keys part over [MIN, (10, empty)) holding a key with HLC 20.",
            with(&[0x01, 0x05], &[&bound_t(10), &[0x00, 0x01, 0x14], &a]),
            "BadPayload",
        );
        bad(
            "key-below-range",
            "A Skip to the bound (10, 80) then a Keys part over [(10, 80), end) holding a key
             (10, 00 ..), below the part's lower bound.",
            with(
                &[0x01, 0x08],
                &[&bound_t(10), &[0x80, 0x05, 0x00, 0x00, 0x01, 0x00], &lo],
            ),
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
        with(&[0x01, 0x01, 0x43], &[&f, &[0x00, 0x00]]),
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
        with(&[0x01, 0x00, 0x43, 0x00, 0x41, 0x01, 0x00], &[&f]),
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
        salt_hex: hx(&VECTOR_SALT.0),
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
    let standard = cfg(16, 32, 0, None, true);
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
            config_initiator: cfg(16, 32, 0, None, false),
            config_responder: cfg(16, 32, 0, None, false),
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
            name: "initiator-empty-sent-whole",
            description: "The initiator holds nothing, the responder 5000 keys. The responder splits the key space into 16 \
                ranges of about 312 keys; the initiator answers each with an empty PrefixList; the responder, holding more \
                than the list threshold in each, sends all its keys there at once as Resolve parts of at most 32 keys \
                over consecutive pieces of the range (8.4), instead of splitting again.",
            config_initiator: standard.clone(),
            config_responder: standard.clone(),
            recipe: recipe(T2026, 1_000, 1),
            a: vec![],
            b: vec![[0, 5000, 1]],
            check: |t| {
                assert_eq!(t.messages.len(), 5, "fingerprint, split, empty lists, pieces, 01");
                let pieces = t.messages[3].parts().unwrap();
                assert!(pieces.len() > 16 && pieces.iter().all(|p| p.payload.name() == "Resolve"));
            },
        },
        Case {
            name: "initiator-empty-sent-whole-cut",
            description: "As initiator-empty-sent-whole with 2000 keys and both sides limiting messages to 4096 bytes: a \
                reply of pieces is cut between two pieces (8.8), the rest of the key space is carried over as one \
                Fingerprint, the initiator answers it with an empty PrefixList, and the pieces resume there.",
            config_initiator: cfg(16, 32, 0, Some(4096), true),
            config_responder: cfg(16, 32, 0, Some(4096), true),
            recipe: recipe(T2026, 1_000, 1),
            a: vec![],
            b: vec![[0, 2000, 1]],
            check: |t| {
                assert!(t.responder.stats.carried_over > 0, "no piece reply was cut");
                assert!(t.messages.iter().all(|m| m.len() <= 4096));
            },
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
                let has_prefix_bound = t.messages.iter().enumerate().any(|(i, m)| {
                    parts_of_nth(i, m.as_bytes())
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

// ---------------------------------------------------------------------------------------------
// limits.json

/// `n` distinct parent hashes, ascending: `BLAKE3(i as u64 LE)` for `i < n`, sorted.
fn recipe_parents(n: u64) -> Vec<Hash> {
    let mut v: Vec<Hash> = (0..n).map(ih).collect();
    v.sort_unstable();
    v
}

fn limit_case(name: &str, description: &str, bytes: &[u8]) -> LimitCase {
    let (stage, error, hash) = match LogEntry::<Op>::decode(bytes) {
        Err(e) => ("decode", Some(entry_error_name(&e).to_string()), None),
        Ok(e) => match e.verify() {
            Err(err) => (
                "verify",
                Some(entry_error_name(&err).to_string()),
                Some(hx(&e.hash.0)),
            ),
            Ok(()) => ("ok", None, Some(hx(&e.hash.0))),
        },
    };
    LimitCase {
        name: name.into(),
        description: description.into(),
        size: bytes.len(),
        encoded_hex: hx(bytes),
        stage: stage.into(),
        error,
        hash_hex: hash,
    }
}

/// A canonical body signed as it is, whatever its structure.
fn signed_body(key: &SigningKey, hlc: u64, op: &Op, parents: &[Hash]) -> Vec<u8> {
    let body = hand_body(hlc, &key.verifying_key().to_bytes(), op, parents);
    raw_encoded(key, &body)
}

fn limits() -> LimitsFile {
    let key = sk(41);
    let mut cases = Vec::new();
    let names = |b: usize, k: usize| Op::Put {
        bucket: "b".repeat(b),
        key: "k".repeat(k),
        object_id: oid("limits"),
    };

    // The largest entry the default actions allow: HLC 2^64-2 (10-byte varint), a Put with a
    // 255-byte bucket and a 1024-byte key, 1024 parents.
    let biggest = LogEntry::sign(
        &key,
        Hlc(u64::MAX - 1),
        names(MAX_BUCKET_LEN, MAX_OBJECT_KEY_LEN),
        recipe_parents(MAX_PARENTS as u64),
    )
    .expect("largest valid entry");
    let bytes = biggest.encode();
    assert_eq!(bytes.len(), 34_192);
    cases.push(limit_case(
        "largest-default-entry",
        "The largest entry the default actions allow, 34,192 bytes: HLC 2^64-2, Put with a 255-byte bucket of 'b' and a 1024-byte key of 'k', object id BLAKE3(\"limits\"), 1,024 parents (BLAKE3(i as u64 LE) for i < 1024, sorted), seed 41 repeated. Accepted. With the default actions no entry can reach the 65,536-byte limit.",
        &bytes,
    ));

    let p1025 = recipe_parents(MAX_PARENTS as u64 + 1);
    let ok1024 = signed_body(&key, T2026, &names(1, 1), &p1025[..MAX_PARENTS]);
    cases.push(limit_case(
        "parents-1024",
        "Exactly 1,024 parents (the limit): Put b/k, HLC 2026-01-01T00:00:00Z, parents BLAKE3(i as u64 LE) for i < 1025, sorted, the first 1,024 of them. Accepted.",
        &ok1024,
    ));
    let bad1025 = signed_body(&key, T2026, &names(1, 1), &p1025);
    cases.push(limit_case(
        "parents-1025",
        "1,025 parents, one over the limit, otherwise canonical and validly signed: refused while decoding with TooManyParents.",
        &bad1025,
    ));

    // Exactly 65,536 bytes: 2,043 parents (2-byte count varint) and a Put with 13-byte names:
    // 1 + 32 + (1 + 1 + 13 + 1 + 13 + 32) + 2 + 2,043 * 32 + 64 = 65,536.
    let p2043 = recipe_parents(2043);
    let at_limit = signed_body(&key, 1, &names(13, 13), &p2043);
    assert_eq!(at_limit.len(), MAX_ENTRY_BYTES);
    cases.push(limit_case(
        "size-65536",
        "Exactly 65,536 bytes (the size limit): HLC 1, Put with a 13-byte bucket and a 13-byte key, 2,043 parents (BLAKE3(i as u64 LE) for i < 2043, sorted). The size check passes; the next check refuses it: TooManyParents. The size limit is checked first, before the body is parsed.",
        &at_limit,
    ));
    let over = signed_body(&key, 1, &names(13, 14), &p2043);
    assert_eq!(over.len(), MAX_ENTRY_BYTES + 1);
    cases.push(limit_case(
        "size-65537",
        "65,537 bytes, one over the size limit (the same entry with a 14-byte key): refused with TooLarge before anything else is looked at.",
        &over,
    ));

    // Signature with S + L: the same R, a scalar that is not reduced below the group order.
    let e = LogEntry::sign(&key, Hlc(T2026), put("b", "k", "s"), vec![]).unwrap();
    let mut bytes = e.encode();
    let n = bytes.len();
    let s = &mut bytes[n - 32..];
    let mut carry = 0u16;
    for (b, l) in s.iter_mut().zip(GROUP_ORDER) {
        let [low, high] = (u16::from(*b) + u16::from(l) + carry).to_le_bytes();
        *b = low;
        carry = u16::from(high);
    }
    assert_eq!(carry, 0);
    cases.push(limit_case(
        "non-canonical-s",
        "A valid signature with L (the ed25519 group order, 2^252 + 27742317777372353535851937790883648493) added to its S half (little-endian, bytes 32..64 of the signature): the same point equation holds, but S >= L is not canonical. Refused at verification: BadSignature.",
        &bytes,
    ));

    // The identity point as public key, R = identity, S = 0: the cofactorless equation
    // [S]B = R + [k]A holds for every message, so a non-strict verifier accepts this forgery.
    let identity = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };
    let body = hand_body(T2026, &identity, &put("b", "k", "weak"), &[]);
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    let hash = blake3::hash(&body);
    let weak = VerifyingKey::from_bytes(&identity).expect("the identity decompresses");
    let forged = ed25519_dalek::Signature::from_bytes(&sig);
    assert!(
        weak.verify(hash.as_bytes(), &forged).is_ok(),
        "non-strict accepts"
    );
    assert!(weak.verify_strict(hash.as_bytes(), &forged).is_err());
    let mut bytes = body;
    bytes.extend_from_slice(&sig);
    cases.push(limit_case(
        "small-order-key",
        "Author key 0100..00 (the identity point, order 1), signature R = 0100..00 (identity), S = 0: non-strict verification accepts it for any message; strict verification refuses the small-order key: BadSignature.",
        &bytes,
    ));

    // A 32-byte string that is no point on the curve.
    let not_a_point = (2u8..=255)
        .map(|i| {
            let mut b = [0u8; 32];
            b[0] = i;
            b
        })
        .find(|b| VerifyingKey::from_bytes(b).is_err())
        .expect("some small y is not on the curve");
    let body = hand_body(T2026, &not_a_point, &put("b", "k", "nopoint"), &[]);
    let mut bytes = body;
    bytes.extend_from_slice(&[0u8; 64]);
    cases.push(limit_case(
        "key-not-a-point",
        "Author key whose y coordinate (the first byte, then zeros; the smallest such y) has no x on the curve: it does not decompress. Refused at verification: InvalidAuthor.",
        &bytes,
    ));

    // y = p + 1 (non-canonical encoding of y = 1, the identity): decompresses (reduced mod
    // p) to a small-order point.
    let mut noncanon = [0xffu8; 32];
    noncanon[0] = 0xee;
    noncanon[31] = 0x7f;
    let body = hand_body(T2026, &noncanon, &put("b", "k", "noncanon"), &[]);
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    let mut bytes = body;
    bytes.extend_from_slice(&sig);
    cases.push(limit_case(
        "non-canonical-key",
        "Author key eeff..ff7f: y = p + 1 with p = 2^255 - 19, the non-canonical encoding of y = 1 (the identity); signature R = identity, S = 0. Refused at verification: BadSignature (strict verification refuses the small-order key; a key that is not canonically encoded is never the output of key generation).",
        &bytes,
    ));

    // y = 1 with the sign bit set: x = 0 has no negative, and RFC 8032 refuses this encoding.
    let mut signed_zero = identity;
    signed_zero[31] |= 0x80;
    let body = hand_body(T2026, &signed_zero, &put("b", "k", "signbit"), &[]);
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    let mut bytes = body;
    bytes.extend_from_slice(&sig);
    cases.push(limit_case(
        "identity-with-sign-bit",
        "Author key 0100..0080: y = 1 (the identity, x = 0) with the sign bit set, an encoding RFC 8032 refuses; signature R = identity, S = 0. The reference decompresses it to the identity (a sign bit on x = 0 is ignored) and refuses the small-order key: BadSignature.",
        &bytes,
    ));

    // what each description claims
    let expected = [
        ("largest-default-entry", "ok", None),
        ("parents-1024", "ok", None),
        ("parents-1025", "decode", Some("TooManyParents")),
        ("size-65536", "decode", Some("TooManyParents")),
        ("size-65537", "decode", Some("TooLarge")),
        ("non-canonical-s", "verify", Some("BadSignature")),
        ("small-order-key", "verify", Some("BadSignature")),
        ("key-not-a-point", "verify", Some("InvalidAuthor")),
        ("non-canonical-key", "verify", Some("BadSignature")),
        ("identity-with-sign-bit", "verify", Some("BadSignature")),
    ];
    assert_eq!(cases.len(), expected.len());
    for (c, (name, stage, error)) in cases.iter().zip(expected) {
        assert_eq!(
            (c.name.as_str(), c.stage.as_str(), c.error.as_deref()),
            (name, stage, error)
        );
    }
    LimitsFile {
        description: "Entries at and past the limits of SPEC 5.3 and the strict signature rules of 5.4. For each: the bytes (`encoded_hex`, `size` bytes), and `stage`: `ok` (decodes and verifies), `decode` (LogEntry::decode refuses it) or `verify` (decodes, verify refuses it), with the EntryError name in `error` and the body's hash when it decodes. Built from seed 41 repeated 32 times; parents come from the recipe BLAKE3(i as u64 LE), sorted.".into(),
        cases,
    }
}

/// The ed25519 group order L, little-endian.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

// ---------------------------------------------------------------------------------------------
// failures.json

struct Failure {
    name: &'static str,
    description: &'static str,
    /// How many honest messages come before the bad one.
    honest: usize,
    /// The bad message, from the honest session (it replaces message `honest`).
    bad: fn(&[Vec<u8>]) -> Vec<u8>,
    error: &'static str,
    decode_error: Option<&'static str>,
}

fn parts_of(bytes: &[u8]) -> Vec<Part> {
    message::decode(bytes).expect("honest message decodes")
}

/// The parts of message `index` of a session: the first is the opening, with its salt.
fn parts_of_nth(index: usize, bytes: &[u8]) -> Vec<Part> {
    if index == 0 {
        message::decode_opening(bytes)
            .expect("honest opening decodes")
            .1
    } else {
        parts_of(bytes)
    }
}

fn failures() -> FailuresFile {
    // 20 keys each, 18 shared: one Fingerprint, a PrefixList from the responder, a Resolve
    // from the initiator, Keys from the responder.
    let config = cfg(16, 32, 4, None, true);
    let recipe = recipe(T2026, 1000, 1);
    let (a_runs, b_runs) = (vec![[0, 20, 1]], vec![[2, 22, 1]]);
    let set_a = recipe.keys(&a_runs).unwrap();
    let set_b = recipe.keys(&b_runs).unwrap();
    let sa: MemoryStore = set_a.iter().copied().collect();
    let sb: MemoryStore = set_b.iter().copied().collect();
    let honest = transcript::run(&sa, &sb, config.config().unwrap(), config.config().unwrap())
        .expect("honest session");
    let honest: Vec<Vec<u8>> = honest
        .messages
        .iter()
        .map(|m| m.as_bytes().to_vec())
        .collect();
    // the shape the cases rely on
    let modes = |i: usize| -> Vec<&'static str> {
        parts_of_nth(i, &honest[i])
            .iter()
            .map(|p| p.payload.name())
            .collect()
    };
    assert_eq!(honest.len(), 4);
    assert_eq!(modes(0), ["Fingerprint"]);
    assert_eq!(modes(1), ["PrefixList"]);
    assert_eq!(modes(2), ["Resolve"]);
    assert_eq!(modes(3), ["Keys"]);

    let cases = vec![
        Failure {
            name: "resolve-never-listed",
            description: "The first message is a Resolve over the whole key space: the responder never listed anything, so nothing is pending there.",
            honest: 0,
            bad: |_| opening(&[Part { upper: None, payload: Payload::Resolve { missing: vec![], keys: vec![] } }]),
            error: "Protocol",
            decode_error: None,
        },
        Failure {
            name: "resolve-position-beyond-list",
            description: "The initiator's Resolve names position 20 of the responder's 20-item prefix list (positions are 0 to 19).",
            honest: 2,
            bad: |h| {
                let mut parts = parts_of(&h[1]);
                let Payload::PrefixList { len, prefixes } = &parts[0].payload else { unreachable!() };
                let n = u32::try_from(prefixes.len() / *len as usize).unwrap();
                parts[0].payload = Payload::Resolve { missing: vec![n], keys: vec![] };
                enc(&parts)
            },
            error: "Protocol",
            decode_error: None,
        },
        Failure {
            name: "resolve-other-range",
            description: "The initiator answers the responder's prefix list over [MIN, inf) with a Resolve over [MIN, (2026-01-01 + 10 us, 00..)) and a Fingerprint over the rest: a Resolve must cover exactly the range listed.",
            honest: 2,
            bad: |_| {
                let mid = EntryKey::new(T2026 + 10 * 1000, [0; 32]);
                enc(&[
                    Part { upper: Some(mid), payload: Payload::Resolve { missing: vec![], keys: vec![] } },
                    Part { upper: None, payload: Payload::Fingerprint(fp("rest")) },
                ])
            },
            error: "Protocol",
            decode_error: None,
        },
        Failure {
            name: "keys-whole",
            description: "The responder's Keys answer writes its keys whole (omitted 0), its first one replaced by a key with the same HLC and another hash (BLAKE3(1000 as u64 LE)), instead of leaving out the bytes of the prefixes the initiator listed: the omitted length must be the listed prefix length.",
            honest: 3,
            bad: |h| {
                let mut parts = parts_of(&h[3]);
                let Payload::Keys { omitted, keys } = &mut parts[0].payload else { unreachable!() };
                // fill the omitted bytes back in: the prefixes of message 1's list at the
                // positions message 2's Resolve named
                let Some((len, prefixes)) = parts_of(&h[1]).into_iter().find_map(|p| match p.payload {
                    Payload::PrefixList { len, prefixes } => Some((len as usize, prefixes)),
                    _ => None,
                }) else { unreachable!() };
                let Some(missing) = parts_of(&h[2]).into_iter().find_map(|p| match p.payload {
                    Payload::Resolve { missing, .. } => Some(missing),
                    _ => None,
                }) else { unreachable!() };
                for (k, m) in keys.iter_mut().zip(missing) {
                    let at = m as usize * len;
                    k.hash.0[..len].copy_from_slice(&prefixes[at..at + len]);
                }
                *omitted = 0;
                keys[0].hash = ih(1000);
                enc(&parts)
            },
            error: "Protocol",
            decode_error: None,
        },
        Failure {
            name: "keys-too-few",
            description: "The responder's Keys answer leaves out its last key: Keys must answer the wanted prefixes one for one.",
            honest: 3,
            bad: |h| {
                let mut parts = parts_of(&h[3]);
                let Payload::Keys { keys, .. } = &mut parts[0].payload else { unreachable!() };
                keys.pop();
                enc(&parts)
            },
            error: "Protocol",
            decode_error: None,
        },
        Failure {
            name: "keys-unasked",
            description: "The first message is Keys over the whole key space: the responder resolved nothing, so no Keys are due.",
            honest: 0,
            bad: |_| opening(&[Part { upper: None, payload: Payload::Keys { omitted: 0, keys: vec![] } }]),
            error: "Protocol",
            decode_error: None,
        },
        Failure {
            name: "ends-with-ranges-open",
            description: "The initiator answers the responder's prefix list with the empty message 01, which expects no answer, while the responder waits for a Resolve of [MIN, inf).",
            honest: 2,
            bad: |_| vec![MESSAGE_TAG],
            error: "Protocol",
            decode_error: None,
        },
        Failure {
            name: "skip-over-listed-range",
            description: "The initiator answers the responder's prefix list with Skip up to (2026-01-01 + 10 us, 00..) and a Fingerprint of the rest: a Skip may only cover ranges that are settled (Resolved with nothing wanted), and it overlaps the Listed range without covering it.",
            honest: 2,
            bad: |_| {
                let mid = EntryKey::new(T2026 + 10 * 1000, [0; 32]);
                enc(&[
                    Part { upper: Some(mid), payload: Payload::Skip },
                    Part { upper: None, payload: Payload::Fingerprint(fp("rest")) },
                ])
            },
            error: "Protocol",
            decode_error: None,
        },
        Failure {
            name: "prefix-list-over-pending",
            description: "The initiator answers the responder's prefix list with a prefix list of its own over the same range: a PrefixList over a pending range is refused.",
            honest: 2,
            bad: |_| enc(&[Part { upper: None, payload: Payload::PrefixList { len: 4, prefixes: vec![1, 2, 3, 4] } }]),
            error: "Protocol",
            decode_error: None,
        },
        Failure {
            name: "full-list-over-listed",
            description: "The initiator answers the responder's prefix list with a FullList over the same range: a FullList is allowed only over a range the receiver Resolved (the collision fallback), not one it Listed.",
            honest: 2,
            bad: |_| enc(&[Part { upper: None, payload: Payload::FullList(vec![]) }]),
            error: "Protocol",
            decode_error: None,
        },
        Failure {
            name: "truncated-mid-session",
            description: "The initiator's Resolve loses its last byte: the receiver's decoder refuses it.",
            honest: 2,
            bad: |h| h[2][..h[2].len() - 1].to_vec(),
            error: "Decode",
            decode_error: Some("Truncated"),
        },
        Failure {
            name: "bad-tag-mid-session",
            description: "The responder's Keys message starts with 03 instead of 01.",
            honest: 3,
            bad: |h| {
                let mut b = h[3].clone();
                b[0] = 0x03;
                b
            },
            error: "Decode",
            decode_error: Some("BadTag"),
        },
        Failure {
            name: "opening-truncated-salt",
            description: "The initiator's first message cut after 9 bytes of its 16-byte salt (8.3).",
            honest: 0,
            bad: |h| h[0][..=9].to_vec(),
            error: "Decode",
            decode_error: Some("Truncated"),
        },
        Failure {
            name: "key-outside-range-mid-session",
            description: "The initiator's Resolve over [MIN, (2026-01-01 + 10 us, 00..)) carries a key at 2026-01-01 + 15 us, outside its range.",
            honest: 2,
            bad: |_| {
                // The encoder refuses such a message, so encode the key inside the range and
                // then rewrite its HLC delta (same LEB128 length) to point outside it.
                let mid = EntryKey::new(T2026 + 10 * 1000, [0; 32]);
                let inside = enc(&[
                    Part { upper: Some(mid), payload: Payload::Resolve { missing: vec![], keys: vec![EntryKey::new(T2026 + 5 * 1000, ih(15))] } },
                    Part { upper: None, payload: Payload::Fingerprint(fp("rest")) },
                ]);
                let (from, to) = (leb128(T2026 + 5 * 1000), leb128(T2026 + 15 * 1000));
                assert_eq!(from.len(), to.len());
                let at = inside.windows(from.len()).position(|w| w == from.as_slice()).expect("delta present");
                let mut b = inside;
                b[at..at + to.len()].copy_from_slice(&to);
                b
            },
            error: "Decode",
            decode_error: Some("BadPayload"),
        },
    ];
    let set = |runs: &[[u64; 3]], keys: &std::collections::BTreeSet<EntryKey>| SetJson {
        runs: runs.to_vec(),
        count: keys.len(),
        keys: Some(keys_json(&keys.iter().copied().collect::<Vec<_>>())),
    };
    let cases = cases
        .into_iter()
        .map(|f| {
            let mut msgs: Vec<Vec<u8>> = honest[..f.honest].to_vec();
            msgs.push((f.bad)(&honest));
            let case = FailureCase {
                name: f.name.into(),
                description: f.description.into(),
                config_initiator: config.clone(),
                config_responder: config.clone(),
                key_recipe: recipe.clone(),
                initiator_set: set(&a_runs, &set_a),
                responder_set: set(&b_runs, &set_b),
                messages: msgs
                    .iter()
                    .enumerate()
                    .map(|(i, m)| MessageJson {
                        from: if i % 2 == 0 { "initiator" } else { "responder" }.into(),
                        hex: hx(m),
                    })
                    .collect(),
                error: f.error.into(),
                decode_error: f.decode_error.map(Into::into),
            };
            let got = replay_failure(&case).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                got,
                (f.error.to_string(), f.decode_error.map(String::from)),
                "{}",
                f.name
            );
            case
        })
        .collect();
    FailuresFile {
        description: "Sessions a peer breaks (SPEC 8.3, 8.4): both sides use the default config (branching 16, list threshold 32, 4-byte prefixes); the initiator holds keys 0..20 and the responder keys 2..22 of the recipe (hlc = 2026-01-01T00:00:00Z + i us, hash = BLAKE3(i as u64 LE)). The honest session is: Fingerprint, PrefixList, Resolve, Keys. Each case keeps the first honest messages and replaces the next one with a bad message; its receiver must end the session with `error` (the ReconcileError variant: Protocol, or Decode with the DecodeError name in `decode_error`). Messages alternate initiator, responder.".into(),
        cases,
    }
}

// ---------------------------------------------------------------------------------------------
// negentropy.json

fn neg_fp(label: &str) -> negentropy::Fingerprint {
    let mut f = [0u8; 16];
    f.copy_from_slice(&blake3::hash(label.as_bytes()).as_bytes()[..16]);
    negentropy::Fingerprint(f)
}

fn nbound(ts: u64, prefix: &[u8]) -> negentropy::Bound {
    negentropy::Bound::new(ts, prefix).expect("prefix of at most 32 bytes")
}

fn negentropy_vectors() -> NegentropyFile {
    type Runs = Vec<[u64; 3]>;
    use negentropy::{Part as NPart, Payload as NP};
    let mut valid = Vec::new();
    let mut ok = |name: &str, description: &str, bytes: Vec<u8>| {
        let parts = negentropy::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(nenc(&parts), bytes, "{name}: re-encodes");
        valid.push(NegMessage {
            name: name.into(),
            description: description.into(),
            hex: hx(&bytes),
            parts: parts.iter().map(NegPartJson::from).collect(),
        });
    };
    ok(
        "empty",
        "The version byte 61 alone: no ranges (the initiator's answer when nothing is left to ask; it is not sent).",
        vec![negentropy::PROTOCOL_VERSION],
    );
    let mut hand = vec![0x61, 0x00, 0x00, 0x01];
    hand.extend_from_slice(&neg_fp("all").0);
    ok(
        "one-fingerprint",
        "One Fingerprint over the whole key space: bound timestamp varint 0 (infinity), prefix length 0, mode 1, 16 bytes.",
        hand.clone(),
    );
    assert_eq!(
        nenc(&[NPart {
            upper: negentropy::Bound::INFINITY,
            payload: NP::Fingerprint(neg_fp("all"))
        }]),
        hand
    );
    ok(
        "all-modes",
        "Skip up to timestamp 1000, Fingerprint up to (1000, prefix ab), IdList of two ids up to timestamp 2^40 + 1000, then Skip to infinity written out. Timestamps are deltas from the previous bound's plus one (0 is infinity), in Negentropy's big-endian base-128 varint.",
        nenc(&[
            NPart { upper: nbound(1000, &[]), payload: NP::Skip },
            NPart { upper: nbound(1000, &[0xab]), payload: NP::Fingerprint(neg_fp("f")) },
            NPart { upper: nbound((1 << 40) + 1000, &[]), payload: NP::IdList(vec![ih(1), ih(2)]) },
            NPart { upper: negentropy::Bound::INFINITY, payload: NP::Skip },
        ]),
    );
    ok(
        "full-id-bound",
        "An empty IdList up to a bound carrying a whole 32-byte id (as a responder writes when its frame fills inside a list), then a Fingerprint of the rest.",
        nenc(&[
            NPart { upper: negentropy::Bound::at(&EntryKey::new(T2026, ih(7))), payload: NP::IdList(vec![]) },
            NPart { upper: negentropy::Bound::INFINITY, payload: NP::Fingerprint(neg_fp("rest")) },
        ]),
    );
    ok(
        "max-timestamp",
        "A bound at timestamp 2^64 - 2 (the largest below infinity): a 10-byte varint delta.",
        nenc(&[NPart {
            upper: nbound(u64::MAX - 1, &[]),
            payload: NP::Fingerprint(neg_fp("x")),
        }]),
    );

    let mut invalid = Vec::new();
    let mut bad = |name: &str, description: &str, bytes: Vec<u8>, error: &str| {
        let e = negentropy::decode(&bytes).expect_err(name);
        assert_eq!(neg_decode_error_name(&e), error, "{name}");
        // a responder answers an unsupported version with the version it speaks
        let mut r = Reconciler::new(Config::negentropy(None)).unwrap();
        let reply = match r.handle(
            &MemoryStore::new(),
            &oplog_protocol::Message::from_bytes(bytes.clone()),
        ) {
            Ok(step) => Some(hx(step.reply.expect("a reply").as_bytes())),
            Err(oplog_protocol::ReconcileError::NegentropyDecode(d)) => {
                assert_eq!(d, e, "{name}");
                None
            }
            Err(other) => panic!("{name}: {other}"),
        };
        assert_eq!(reply.is_some(), error == "UnsupportedVersion", "{name}");
        invalid.push(NegInvalid {
            name: name.into(),
            description: description.into(),
            hex: hx(&bytes),
            error: error.into(),
            responder_reply_hex: reply,
        });
    };
    bad("empty", "No bytes at all.", vec![], "Empty");
    bad(
        "not-negentropy",
        "First byte 01 (an oplog-sync message) is outside 60 to 6f.",
        vec![0x01, 0x00, 0x00, 0x00],
        "NotNegentropy",
    );
    bad("version-2", "First byte 62, a later Negentropy version: refused, and a responder answers with the single byte 61 (the version it speaks) and ends the session.", vec![0x62], "UnsupportedVersion");
    bad(
        "truncated-fingerprint",
        "A Fingerprint with 15 of its 16 bytes.",
        hand[..hand.len() - 1].to_vec(),
        "Truncated",
    );
    bad(
        "varint-leading-zero",
        "Bound timestamp varint 80 01: a leading zero digit (not the shortest form).",
        vec![0x61, 0x80, 0x01, 0x00, 0x00],
        "BadVarint",
    );
    bad(
        "varint-over-64-bits",
        "Bound timestamp varint of 11 bytes (2^70): more than 64 bits.",
        {
            let mut b = vec![0x61, 0x81];
            b.extend([0x80; 9]);
            b.push(0x00);
            b.extend([0x00, 0x00]);
            b
        },
        "BadVarint",
    );
    bad(
        "unknown-mode",
        "Mode 3 over the whole key space.",
        vec![0x61, 0x00, 0x00, 0x03],
        "UnknownMode",
    );
    bad(
        "prefix-33-bytes",
        "A bound with a 33-byte id prefix.",
        {
            let mut b = vec![0x61, 0x02, 33];
            b.extend([0x11; 33]);
            b.push(0x00);
            b
        },
        "BadBound",
    );
    bad("bound-goes-back", "A bound at (1, prefix 05) followed by one at (1, prefix 04): below the previous bound (delta 1 keeps the timestamp).", vec![0x61, 0x02, 0x01, 0x05, 0x00, 0x01, 0x01, 0x04, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "BadBound");
    bad(
        "after-infinity",
        "A range after the infinity bound.",
        vec![0x61, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        "BadBound",
    );
    bad(
        "infinity-with-prefix",
        "The infinity bound (timestamp varint 0) with a 1-byte prefix.",
        vec![0x61, 0x00, 0x01, 0x07, 0x00],
        "BadBound",
    );
    bad("timestamp-overflow", "A Skip up to timestamp 2^64 - 2 (delta varint 2^64 - 1), then a bound with delta varint 2: its timestamp would be 2^64 - 1, reserved for infinity.", {
        let mut b = vec![0x61];
        negentropy::put_varint(&mut b, u64::MAX);
        b.extend([0x00, 0x00, 0x02, 0x00, 0x00]);
        b
    }, "BadBound");
    bad(
        "id-count-too-large",
        "An IdList announcing 2 ids with 32 bytes left.",
        {
            let mut b = vec![0x61, 0x00, 0x00, 0x02, 0x02];
            b.extend([0x22; 32]);
            b
        },
        "BadIdList",
    );

    let recipe = recipe(T2026, 1000, 1);
    let cases: Vec<(&str, &str, Option<usize>, Runs, Runs)> = vec![
        ("small-differences", "20 keys each, 18 shared: fewer than 32 keys, so the initiator's first message is one IdList of all its ids; the responder answers with its own ids over the same range; the initiator's answer would be empty and is not sent.", None, vec![[0, 20, 1]], vec![[2, 22, 1]]),
        ("equal-sets", "Equal sets of 100 keys: the initiator's 16 bucket fingerprints all match; the responder answers with 61 alone and the initiator ends.", None, vec![[0, 100, 1]], vec![[0, 100, 1]]),
        ("empty-initiator", "The initiator holds nothing: an empty IdList over everything; the responder answers with one IdList of its 40 ids.", None, vec![], vec![[0, 40, 1]]),
        ("empty-responder", "The responder holds nothing; the initiator has 50 keys and sends 16 bucket fingerprints; the responder answers each with an empty IdList.", None, vec![[0, 50, 1]], vec![]),
        ("thousand-ten-percent", "1,000 keys on the initiator; the responder lacks every 10th and has 100 keys of its own: several rounds of 16-way splits, no frame limit.", None, vec![[0, 1000, 1]], vec![[1, 1000, 10], [2, 1000, 10], [3, 1000, 10], [4, 1000, 10], [5, 1000, 10], [6, 1000, 10], [7, 1000, 10], [8, 1000, 10], [9, 1000, 10], [1000, 1100, 1]]),
        ("thousand-ten-percent-4096", "The same sets with a 4096-byte frame limit on both sides: replies stop adding ranges past 4096 - 200 bytes and carry the rest in a Fingerprint to infinity.", Some(4096), vec![[0, 1000, 1]], vec![[1, 1000, 10], [2, 1000, 10], [3, 1000, 10], [4, 1000, 10], [5, 1000, 10], [6, 1000, 10], [7, 1000, 10], [8, 1000, 10], [9, 1000, 10], [1000, 1100, 1]]),
        ("disjoint-4096", "Disjoint sets of 600 and 600 keys with a 4096-byte frame limit: the responder's id lists are cut at the frame and continued over several rounds.", Some(4096), vec![[0, 1200, 2]], vec![[1, 1200, 2]]),
    ];
    let mut transcripts = Vec::new();
    for (name, description, limit, a_runs, b_runs) in cases {
        let set_a = recipe.keys(&a_runs).unwrap();
        let set_b = recipe.keys(&b_runs).unwrap();
        let sa: MemoryStore = set_a.iter().copied().collect();
        let sb: MemoryStore = set_b.iter().copied().collect();
        let run = run_negentropy(&sa, &sb, limit, 10_000).unwrap_or_else(|e| panic!("{name}: {e}"));
        let a_only: Vec<EntryKey> = set_a.difference(&set_b).copied().collect();
        let mut b_only: Vec<Hash> = set_b.difference(&set_a).map(|k| k.hash).collect();
        b_only.sort_unstable();
        assert_eq!(run.have, a_only, "{name}");
        assert_eq!(run.need_hashes, b_only, "{name}");
        if let Some(l) = limit {
            assert!(
                run.messages.iter().all(|m| m.len() <= l),
                "{name}: frame limit"
            );
            assert!(
                run.carried_over.0 + run.carried_over.1 > 0,
                "{name}: the limit bites"
            );
        }
        let set = |runs: &[[u64; 3]], keys: &std::collections::BTreeSet<EntryKey>| SetJson {
            runs: runs.to_vec(),
            count: keys.len(),
            keys: (keys.len() <= EXPLICIT_MAX)
                .then(|| keys_json(&keys.iter().copied().collect::<Vec<_>>())),
        };
        transcripts.push(NegTranscript {
            name: name.into(),
            description: description.into(),
            frame_limit: limit,
            key_recipe: recipe.clone(),
            initiator_set: set(&a_runs, &set_a),
            responder_set: set(&b_runs, &set_b),
            messages: run
                .messages
                .iter()
                .enumerate()
                .map(|(i, m)| MessageJson {
                    from: if i % 2 == 0 { "initiator" } else { "responder" }.into(),
                    hex: hx(m),
                })
                .collect(),
            initiator_have: keys_json(&run.have),
            initiator_need_hashes: run.need_hashes.iter().map(|h| hx(&h.0)).collect(),
            initiator_carried_over: run.carried_over.0,
            responder_carried_over: run.carried_over.1,
        });
    }
    NegentropyFile {
        description: "The Negentropy V1 dialect (spec/negentropy-v1.md; Config::negentropy(frame_limit)). `valid`: messages with their decoded ranges (timestamps as decimal strings, 18446744073709551615 = infinity); every one re-encodes to the same bytes. `invalid`: bytes a decoder refuses, with the negentropy DecodeError name (and, for an unsupported version, the responder's one-byte answer instead of an error). `transcripts`: whole sessions between two sets given by recipe (item timestamp = HLC = 2026-01-01T00:00:00Z + i us, id = BLAKE3(i as u64 LE)), every message in order (alternating initiator, responder), the initiator's have (keys) and need (ids: id lists carry no timestamps), and how often each side cut a message at the frame limit. The responder learns nothing in this dialect.".into(),
        valid,
        invalid,
        transcripts,
    }
}

// ---------------------------------------------------------------------------------------------
// dag.json

/// Builds a graph's entries by name; parents are names of earlier entries or `#i` for the
/// invented hash `BLAKE3(i as u64 LE)`, which no graph holds.
struct GraphBuilder {
    authors: Vec<(String, SigningKey)>,
    entries: Vec<DagEntryJson>,
    hashes: std::collections::HashMap<String, Hash>,
}

impl GraphBuilder {
    fn new(authors: &[(String, SigningKey)]) -> Self {
        GraphBuilder {
            authors: authors.to_vec(),
            entries: Vec::new(),
            hashes: std::collections::HashMap::default(),
        }
    }

    fn add(&mut self, name: &str, author: &str, hlc: u64, op: Op, parents: &[&str], corrupt: bool) {
        let key = &self
            .authors
            .iter()
            .find(|(n, _)| n == author)
            .expect("author")
            .1;
        let parents: Vec<Hash> = parents
            .iter()
            .map(|p| match p.strip_prefix('#') {
                Some(i) => ih(i.parse().expect("index")),
                None => *self
                    .hashes
                    .get(*p)
                    .unwrap_or_else(|| panic!("{name}: no parent {p}")),
            })
            .collect();
        let action = ActionJson::from(&op);
        let e = LogEntry::sign(key, Hlc(hlc), op, parents).expect(name);
        let mut bytes = e.encode();
        if corrupt {
            *bytes.last_mut().unwrap() ^= 1;
        }
        self.hashes.insert(name.into(), e.hash);
        self.entries.push(DagEntryJson {
            name: name.into(),
            author: author.into(),
            hlc: dec(hlc),
            action,
            parents_hex: e.parents.iter().map(|h| hx(&h.0)).collect(),
            corrupt,
            hash_hex: hx(&e.hash.0),
            encoded_hex: hx(&bytes),
        });
    }

    fn finish(self, name: &str, description: &str) -> GraphJson {
        GraphJson {
            name: name.into(),
            description: description.into(),
            entries: self.entries,
        }
    }
}

/// [`step`] that first replaces the allowed authors (a member removed at run time).
fn step_allowing(op: &str, now: u64, entries: &[&str], allowed: &[&str]) -> InsertStep {
    InsertStep {
        allowed: Some(allowed.iter().copied().map(String::from).collect()),
        ..step(op, now, entries)
    }
}

fn step(op: &str, now: u64, entries: &[&str]) -> InsertStep {
    InsertStep {
        op: op.into(),
        now: dec(now),
        allowed: None,
        entries: entries.iter().copied().map(String::from).collect(),
        outcomes: vec![],
        applied: vec![],
        dropped: vec![],
        due: vec![],
    }
}

fn empty_state() -> ReplicaStateJson {
    ReplicaStateJson {
        applied: vec![],
        heads: vec![],
        held_back: vec![],
        missing_hex: vec![],
        deferred: vec![],
        view: vec![],
    }
}

// the scenarios read as a table: `t` the base time, `b` a put to bucket "b", `g` the graph
#[allow(clippy::many_single_char_names)]
fn dag_vectors() -> DagFile {
    let authors: Vec<(String, SigningKey)> = [("alice", 51u8), ("bob", 52), ("carol", 53)]
        .iter()
        .map(|(n, s)| (n.to_string(), sk(*s)))
        .collect();
    let us = 1000u64; // one microsecond
    let t = T2026;
    let now = t + 1_000_000_000; // T + 1 s
    let drift = 60_000_000_000u64; // 60 s
    let b = |k: &str, o: &str| put("b", k, o);
    let del = |k: &str| Op::Delete {
        bucket: "b".into(),
        key: k.into(),
    };

    let mut g = GraphBuilder::new(&authors);
    g.add("c1", "alice", t, b("x", "x1"), &[], false);
    g.add("c2", "alice", t + 10 * us, b("y", "y1"), &["c1"], false);
    g.add("c3", "alice", t + 20 * us, del("x"), &["c2"], false);
    g.add("edge", "alice", now + drift, b("z", "edge"), &["c3"], false);
    g.add(
        "future",
        "bob",
        now + 3600 * 1_000_000_000,
        b("z", "future"),
        &["c3"],
        false,
    );
    g.add(
        "after-future",
        "bob",
        now + 3600 * 1_000_000_000 + 1,
        b("w", "w1"),
        &["future"],
        false,
    );
    g.add(
        "orphan",
        "bob",
        t + 30 * us,
        b("o", "o1"),
        &["#9999"],
        false,
    );
    g.add(
        "orphan2",
        "bob",
        t + 31 * us,
        b("o", "o2"),
        &["#9998"],
        false,
    );
    g.add(
        "orphan3",
        "bob",
        t + 32 * us,
        b("o", "o3"),
        &["#9997"],
        false,
    );
    g.add(
        "future2",
        "bob",
        now + 7200 * 1_000_000_000,
        b("z", "future2"),
        &["c3"],
        false,
    );
    g.add(
        "bad-sig",
        "alice",
        t + 40 * us,
        b("x", "forged"),
        &["c3"],
        true,
    );
    g.add(
        "child-of-bad-sig",
        "alice",
        t + 41 * us,
        b("v", "v1"),
        &["bad-sig"],
        false,
    );
    g.add(
        "by-carol",
        "carol",
        t + 50 * us,
        b("x", "carol"),
        &["c3"],
        false,
    );
    g.add(
        "bad-order",
        "bob",
        t + 5 * us,
        b("y", "early"),
        &["c2"],
        false,
    );
    g.add(
        "child-of-bad-order",
        "bob",
        t + 60 * us,
        b("y", "late"),
        &["bad-order"],
        false,
    );
    let chain = g.finish("chain", "A chain c1 <- c2 <- c3 by alice (Put b/x, Put b/y, Delete b/x) at 2026-01-01T00:00:00Z (T) + 0, 10, 20 us; `edge` (alice, Put b/z) exactly max_drift (60 s) ahead of now = T + 1 s; `future` (bob, Put b/z) one hour ahead of now, and `after-future` its child; `orphan` (bob) naming the invented parent BLAKE3(9999 as u64 LE); `bad-sig` (alice) with a flipped signature bit; `by-carol`, by an author outside the allowed set; `bad-order` (bob, T + 5 us) whose parent c2 is at T + 10 us; `child-of-bad-order`.");

    let mut g = GraphBuilder::new(&authors);
    g.add("g", "alice", t, b("k", "v0"), &[], false);
    g.add("a1", "alice", t + 100 * us, b("k", "a1"), &["g"], false);
    g.add(
        "a1-twin",
        "alice",
        t + 100 * us,
        b("k", "a1-twin"),
        &["g"],
        false,
    );
    g.add("b1", "bob", t + 100 * us, b("k", "b1"), &["g"], false);
    g.add("b-old", "bob", t + 50 * us, b("k", "old"), &["g"], false);
    g.add("a2", "alice", t + 200 * us, del("k"), &["a1"], false);
    g.add("bj", "bob", t + 150 * us, b("j", "j1"), &["b1"], false);
    g.add("m", "bob", t + 300 * us, Op::Merge, &["a2", "bj"], false);
    let lww = g.finish("lww", "Register b/k written concurrently from genesis g (alice, T): a1 and a1-twin (alice, T + 100 us: the same author and stamp twice), b1 (bob, T + 100 us), b-old (bob, T + 50 us); a2 (alice, T + 200 us) deletes b/k after a1; bj (bob, T + 150 us) writes b/j after b1; m (bob, T + 300 us) merges a2 and bj.");

    let mut g = GraphBuilder::new(&authors);
    g.add("r", "alice", t, b("r", "r0"), &[], false);
    g.add("w1", "alice", t + 10 * us, b("r", "w1"), &["r"], false);
    g.add("w2", "bob", t + 11 * us, b("r", "w2"), &["r"], false);
    g.add("c", "bob", t + 20 * us, b("r", "c"), &["r"], false);
    g.add(
        "p1",
        "alice",
        t + 30 * us,
        b("s", "p1"),
        &["w1", "c"],
        false,
    );
    g.add("p2", "bob", t + 31 * us, b("t", "p2"), &["w2", "c"], false);
    let diamond = g.finish("diamond", "From root r (alice, Put b/r): w1 (alice, T + 10 us) and w2 (bob, T + 11 us) write b/r on two branches; c (bob, T + 20 us) writes b/r too and is a parent of both p1 = (w1, c) and p2 = (w2, c), so it is common to both branches and newer than both branch writes.");

    let mut g = GraphBuilder::new(&authors);
    for i in 0..20u64 {
        let parent = (i > 0).then(|| format!("l{}", i - 1));
        let parents: Vec<&str> = parent.iter().map(String::as_str).collect();
        g.add(
            &format!("l{i}"),
            "alice",
            t + i * us,
            b("l", &format!("l{i}")),
            &parents,
            false,
        );
    }
    g.add("x1", "bob", t + 10 * us + 1, b("x", "x1"), &["l10"], false);
    g.add("x2", "bob", t + 30 * us, b("x", "x2"), &["x1"], false);
    g.add("x3", "bob", t + 40 * us, b("x", "x3"), &["x2"], false);
    let long = g.finish("long", "A chain l0 <- ... <- l19 by alice (T + i us, Put b/l), and a branch x1 <- x2 <- x3 by bob from l10 (T + 10 us + 1 ns, T + 30 us, T + 40 us).");

    let graphs = vec![chain, lww, diamond, long];
    let authors_json: Vec<AuthorJson> = authors
        .iter()
        .map(|(n, k)| AuthorJson {
            name: n.clone(),
            seed_hex: hx(&k.to_bytes()),
            public_key_hex: hx(&k.verifying_key().to_bytes()),
        })
        .collect();
    let graph = |name: &str| {
        Graph::new(graphs.iter().find(|g| g.name == name).expect("graph")).expect("graph decodes")
    };

    // 6.1-6.2, 6.4: insert sequences
    let capped = |name: &str,
                  description: &str,
                  gname: &str,
                  allowed: Option<&[&str]>,
                  limits: CapsJson,
                  steps: Vec<InsertStep>| {
        let mut s = InsertSequence {
            name: name.into(),
            description: description.into(),
            graph: gname.into(),
            max_drift_ns: dec(drift),
            allowed: allowed.map(|a| a.iter().copied().map(String::from).collect()),
            limits,
            steps,
            result: empty_state(),
        };
        let (steps, result) = run_insert_sequence(&graph(gname), &authors_json, &s).expect(name);
        s.steps = steps;
        s.result = result;
        s
    };
    let seq = |name: &str,
               description: &str,
               gname: &str,
               allowed: Option<&[&str]>,
               steps: Vec<InsertStep>| {
        capped(
            name,
            description,
            gname,
            allowed,
            CapsJson::defaults(),
            steps,
        )
    };
    let with = |f: &dyn Fn(&mut CapsJson)| {
        let mut c = CapsJson::defaults();
        f(&mut c);
        c
    };
    let later = now + 3600 * 1_000_000_000 - drift;
    let sequences = vec![
        seq("in-order", "c1, c2, c3 one per call: each applied; the heads move along the chain; b/x ends as a tombstone.", "chain", None,
            vec![step("insert", now, &["c1"]), step("insert", now, &["c2"]), step("insert", now, &["c3"])]),
        seq("child-first", "c3, c2, c1 one per call: c3 and c2 are held back (each missing its parent), c1 applies and promotes c2 then c3.", "chain", None,
            vec![step("insert", now, &["c3"]), step("insert", now, &["c2"]), step("insert", now, &["c1"])]),
        seq("batch-any-order", "c3, c1, c2 in one call: a batch is processed in key order, so all three apply.", "chain", None,
            vec![step("insert", now, &["c3", "c1", "c2"])]),
        seq("duplicates", "c1 twice (Duplicate), c3 twice while held back (HeldBack both times, nothing changes), then c2 promotes c3.", "chain", None,
            vec![step("insert", now, &["c1"]), step("insert", now, &["c1"]), step("insert", now, &["c3"]), step("insert", now, &["c3"]), step("insert", now, &["c2"])]),
        seq("deferred", "After the chain: `edge`, exactly max_drift ahead, applies; `future`, an hour ahead, is deferred with not_before = hlc - max_drift; its child (one nanosecond later, so also too far ahead) is deferred as well; re-inserting `future` changes nothing; retry_deferred one nanosecond before not_before admits nothing; at not_before `future` applies; one nanosecond later its child does.", "chain", None,
            vec![step("insert", now, &["c1", "c2", "c3"]), step("insert", now, &["edge"]), step("insert", now, &["future"]), step("insert", now, &["after-future"]), step("insert", now, &["future"]), step("retry_deferred", later - 1, &[]), step("retry_deferred", later, &[]), step("retry_deferred", later + 1, &[])]),
        seq("refused", "After the chain, with allowed authors alice and bob: a broken signature (Invalid(BadSignature)), carol (NotAllowed), an HLC below a parent's (ParentOrder), and an orphan, held back with its invented parent on the fetch list.", "chain", Some(&["alice", "bob"]),
            vec![step("insert", now, &["c1", "c2", "c3"]), step("insert", now, &["bad-sig"]), step("insert", now, &["by-carol"]), step("insert", now, &["bad-order"]), step("insert", now, &["orphan"])]),
        seq("ancestor-rejected", "child-of-bad-order is held back waiting for bad-order; bad-order then fails the parent order and its held-back descendant is dropped (AncestorRejected).", "chain", None,
            vec![step("insert", now, &["c1", "c2"]), step("insert", now, &["child-of-bad-order"]), step("insert", now, &["bad-order"])]),
        seq("lww-all", "Every lww entry in one batch: b/k's winner is the greatest (hlc, node id, hash), a2, a Delete: a tombstone; b/j is bj; the heads are m and the two entries no one names as a parent, a1-twin and b-old.", "lww", None,
            vec![step("insert", now, &["m", "bj", "a2", "b-old", "b1", "a1-twin", "a1", "g"])]),
        seq("lww-no-resurrection", "g, a1, a2 (the Delete wins), then the older Put b-old and b1 arrive: the tombstone stays; the view equals lww-all's for the same registers.", "lww", None,
            vec![step("insert", now, &["g"]), step("insert", now, &["a1"]), step("insert", now, &["a2"]), step("insert", now, &["b-old"]), step("insert", now, &["b1"])]),
        seq("lww-same-stamp", "g, then a1 and a1-twin: one author, one stamp, two entries: the greater hash wins b/k.", "lww", None,
            vec![step("insert", now, &["g"]), step("insert", now, &["a1-twin"]), step("insert", now, &["a1"])]),
        seq("refused-parent-same-call", "After the chain, child-of-bad-sig and bad-sig in one call: bad-sig fails verification, so its child in the same call is refused (AncestorRejected naming bad-sig) rather than held back; nothing is left to fetch.", "chain", None,
            vec![step("insert", now, &["c1", "c2", "c3"]), step("insert", now, &["child-of-bad-sig", "bad-sig"])]),
        seq("due-on-insert", "After the chain, `future` is deferred; an insert at its not_before (of c1 again, a Duplicate) first admits it: it is listed as due and applied.", "chain", None,
            vec![step("insert", now, &["c1", "c2", "c3"]), step("insert", now, &["future"]), step("insert", later, &["c1"])]),
        seq("member-removed-held-back", "Allowed alice and bob: l0 to l9 apply; bob's x1 is held back waiting for l10. Then bob is removed (allowed: alice): l10 applies, and x1, now complete, is dropped (NotAllowed) instead of applied.", "long", Some(&["alice", "bob"]),
            vec![step("insert", now, &["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9"]), step("insert", now, &["x1"]), step_allowing("insert", now, &["l10"], &["alice"])]),
        seq("member-removed-deferred", "Allowed alice and bob: after the chain, bob's `future` is deferred. Then bob is removed (allowed: alice): at its not_before the retry refuses it (NotAllowed) instead of applying it.", "chain", Some(&["alice", "bob"]),
            vec![step("insert", now, &["c1", "c2", "c3"]), step("insert", now, &["future"]), step_allowing("retry_deferred", later, &[], &["alice"])]),
        capped("held-back-author-cap", "max_held_per_author = 2. orphan3, then orphan (both bob, held back); orphan2 finds bob at the cap and evicts bob's held-back entry with the lowest key, orphan (dropped: HeldBackFull); orphan again is now the lowest key itself and is refused (HeldBackFull).", "chain", None,
            with(&|c| c.max_held_per_author = 2),
            vec![step("insert", now, &["orphan3"]), step("insert", now, &["orphan"]), step("insert", now, &["orphan2"]), step("insert", now, &["orphan"])]),
        capped("held-back-byte-cap", "max_held_bytes = 200 (one orphan is 175 bytes encoded). orphan is held back; orphan2 would pass the byte cap, so the held-back entry with the lowest key of all authors, orphan, is evicted.", "chain", None,
            with(&|c| c.max_held_bytes = 200),
            vec![step("insert", now, &["orphan"]), step("insert", now, &["orphan2"])]),
        capped("deferred-author-cap", "max_deferred_per_author = 1. future2 (due in two hours) is deferred; future (due in one) evicts it, being due sooner (dropped: DeferredFull); future2 again is refused (DeferredFull): it would be due last.", "chain", None,
            with(&|c| c.max_deferred_per_author = 1),
            vec![step("insert", now, &["c1", "c2", "c3"]), step("insert", now, &["future2"]), step("insert", now, &["future"]), step("insert", now, &["future2"])]),
    ];

    // 6.3
    let haves = [
        ("two-heads", "Heads x3 and l19, 32 hashes at most: each head, then ancestors at 1, 2, 4, 8, ... steps behind each, round-robin, following the parent with the greatest key, down to each root.", vec!["x3", "l19"], 32),
        ("budget-4", "The same heads with at most 4 hashes.", vec!["x3", "l19"], 4),
        ("one-head", "Head l19 alone, 32 at most.", vec!["l19"], 32),
    ]
    .into_iter()
    .map(|(name, description, heads, max)| {
        let heads: Vec<String> = heads.into_iter().map(String::from).collect();
        HavesCase {
            name: name.into(),
            description: description.into(),
            graph: "long".into(),
            haves: run_haves(&graph("long"), &heads, max).expect(name),
            heads,
            max,
        }
    })
    .collect();
    let unknown = hx(&ih(777).0);
    let ancestry = [
        (
            "want-head-have-ancestor",
            "Want l19, have l5: l6 to l19, oldest first.",
            vec!["l19"],
            vec!["l5".to_string()],
            100,
        ),
        (
            "limit-cuts-oldest-first",
            "Want l19, have l5, limit 5: the five oldest owed (l6 to l10), truncated.",
            vec!["l19"],
            vec!["l5".into()],
            5,
        ),
        (
            "no-haves",
            "Want l19 with no haves: the whole chain l0 to l19.",
            vec!["l19"],
            vec![],
            100,
        ),
        (
            "unknown-have-ignored",
            "Want l3, have an unknown hash: ignored, l0 to l3.",
            vec!["l3"],
            vec![unknown.clone()],
            100,
        ),
        (
            "branch-against-other-head",
            "Want x3, have l19: the branch x1 to x3 only (l10 and below are ancestors of l19).",
            vec!["x3"],
            vec!["l19".into()],
            100,
        ),
        (
            "two-wants",
            "Want x3 and l19, have l12: x1, l13 to l19, x2, x3 in key order.",
            vec!["x3", "l19"],
            vec!["l12".into()],
            100,
        ),
        (
            "unknown-want",
            "Want an unknown hash: error Missing; the answer is status 02 naming it.",
            vec![],
            vec![],
            100,
        ),
        (
            "over-budget",
            "Want l19 with no haves under a visit budget of 20: the walk of 20 entries and their parent edges goes over it; error VisitBudget, answer status 03 with the budget.",
            vec!["l19"],
            vec![],
            100,
        ),
        (
            "size-cut",
            "Want l19, have l5, with the answer limited to 700 bytes: only the oldest owed entries that fit are sent (status 01), although the walk owes l6 to l19.",
            vec!["l19"],
            vec!["l5".into()],
            100,
        ),
    ]
    .into_iter()
    .map(|(name, description, want, have, limit)| {
        let mut want: Vec<String> = want.into_iter().map(String::from).collect();
        if name == "unknown-want" {
            want.push(unknown.clone());
        }
        let (max_visits, max_answer_bytes) = match name {
            "over-budget" => (20, 4 << 20),
            "size-cut" => (1 << 20, 700),
            _ => (1 << 20, 4 << 20),
        };
        let run = run_ancestry(&graph("long"), &want, &have, limit, max_visits, max_answer_bytes)
            .expect(name);
        let (hashes, truncated, error) = match run.result {
            Ok((h, t)) => (Some(h), Some(t), None),
            Err(e) => (None, None, Some(e)),
        };
        AncestryCase {
            name: name.into(),
            description: description.into(),
            graph: "long".into(),
            want,
            have,
            limit,
            max_visits: dec(max_visits),
            max_answer_bytes,
            hashes,
            truncated,
            error,
            request_hex: run.request_hex,
            answer_hex: run.answer_hex,
        }
    })
    .collect();
    let h = |b: u8| hx(&[b; 32]);
    let ancestry_invalid = [
        ("request-empty", "request", None, String::new(), "Truncated"),
        (
            "request-no-wants",
            "request",
            None,
            format!("00{}", "0001"),
            "Count",
        ),
        (
            "request-too-many-wants",
            "request",
            None,
            "8108".to_string(),
            "Count",
        ),
        (
            "request-unsorted-wants",
            "request",
            None,
            format!("02{}{}0001", h(2), h(1)),
            "Unsorted",
        ),
        (
            "request-repeated-want",
            "request",
            None,
            format!("02{}{}0001", h(1), h(1)),
            "Duplicate",
        ),
        (
            "request-repeated-have",
            "request",
            None,
            format!("01{}02{}{}01", h(1), h(5), h(5)),
            "Duplicate",
        ),
        (
            "request-too-many-haves",
            "request",
            None,
            format!("01{}21", h(1)),
            "Count",
        ),
        (
            "request-limit-zero",
            "request",
            None,
            format!("01{}0000", h(1)),
            "Count",
        ),
        (
            "request-limit-too-large",
            "request",
            None,
            format!("01{}00818008", h(1)),
            "Count",
        ),
        (
            "request-non-minimal-varint",
            "request",
            None,
            format!("8100{}0001", h(1)),
            "BadVarint",
        ),
        (
            "request-truncated-want",
            "request",
            None,
            format!("01{}", &h(1)[..40]),
            "Truncated",
        ),
        (
            "request-trailing",
            "request",
            None,
            format!("01{}000100", h(1)),
            "TrailingBytes",
        ),
        (
            "answer-empty",
            "answer",
            Some(10),
            String::new(),
            "Truncated",
        ),
        (
            "answer-bad-status",
            "answer",
            Some(10),
            "04".to_string(),
            "BadStatus",
        ),
        (
            "answer-over-limit",
            "answer",
            Some(1),
            "0002".to_string(),
            "Count",
        ),
        (
            "answer-zero-length-entry",
            "answer",
            Some(10),
            "000100".to_string(),
            "EntryLength",
        ),
        (
            "answer-entry-too-long",
            "answer",
            Some(10),
            "0001818004".to_string(),
            "EntryLength",
        ),
        (
            "answer-truncated-entry",
            "answer",
            Some(10),
            "000105aabb".to_string(),
            "Truncated",
        ),
        (
            "answer-trailing",
            "answer",
            Some(10),
            "0000ff".to_string(),
            "TrailingBytes",
        ),
        (
            "answer-short-unknown-want",
            "answer",
            Some(10),
            format!("02{}", &h(3)[..62]),
            "Truncated",
        ),
    ]
    .into_iter()
    .map(|(name, kind, limit, hex, error)| {
        let case = AncestryInvalid {
            name: name.into(),
            kind: kind.into(),
            limit,
            hex,
            error: error.into(),
        };
        assert_eq!(refuse_ancestry(&case).expect(name), error, "{name}");
        case
    })
    .collect();

    // 6.5
    let conflicts = [
        ("merge-of-m", "lww", "The parents of m (a2, bj): b/k differs (a2's Delete against b1); b/j is written on one branch only.", vec!["a2", "bj"]),
        ("same-stamp-authors", "lww", "a1 (alice) against b1 (bob), one stamp: the greater node id, compared as unsigned bytes, wins.", vec!["a1", "b1"]),
        ("same-author-twin", "lww", "a1 against a1-twin: same stamp and author; the greater hash wins.", vec!["a1", "a1-twin"]),
        ("three-parents", "lww", "a2, b1 and b-old: three branches of b/k.", vec!["a2", "b1", "b-old"]),
        ("one-parent", "lww", "A single parent: no conflicts.", vec!["a2"]),
        ("branch-writes", "diamond", "w1 against w2: b/r written on both branches.", vec!["w1", "w2"]),
        ("common-newer-write", "diamond", "p1 against p2: both branches wrote b/r (w1, w2), but c, common to both and newer, is each branch's winner: no conflict.", vec!["p1", "p2"]),
    ]
    .into_iter()
    .map(|(name, gname, description, parents)| {
        let parents: Vec<String> = parents.into_iter().map(String::from).collect();
        ConflictCase {
            name: name.into(),
            description: description.into(),
            graph: gname.into(),
            conflicts: run_conflicts(&graph(gname), &parents).expect(name),
            parents,
        }
    })
    .collect();

    // the merge rule
    let head = |hlc: u64, i: u64, author: &str| HeadJson {
        hlc: dec(hlc),
        hash_hex: hx(&ih(i).0),
        author: author.into(),
    };
    let merge_rule = vec![
        ("one-head", "A single head: nobody merges.", vec![head(t, 1, "alice")], None, "alice"),
        ("greatest-is-mine", "Two heads; alice wrote the greater key: alice merges, joining both.", vec![head(t, 1, "bob"), head(t + 1, 2, "alice")], None, "alice"),
        ("greatest-is-not-mine", "The same heads seen by bob: bob does not merge.", vec![head(t, 1, "bob"), head(t + 1, 2, "alice")], None, "bob"),
        ("same-stamp-hash-decides", "Two heads with one stamp, seen by alice: the greater hash is the greater key, and it is bob's.", vec![head(t, 1, "alice"), head(t, 2, "bob")], None, "alice"),
        ("over-1024-heads", "1,030 heads (recipe: head i at T + i, hash BLAKE3(i as u64 LE), alternately alice and bob): bob wrote the greatest (i = 1029) and merges; the parents are the 1,024 greatest keys (i = 6 to 1029), ascending by hash, given as recipe indices.", vec![], Some(HeadsRecipe { count: 1030, hlc_base: dec(t), authors: vec!["alice".into(), "bob".into()] }), "bob"),
    ]
    .into_iter()
    .map(|(name, description, heads, recipe, me)| {
        let mut c = MergeRuleCase {
            name: name.into(),
            description: description.into(),
            heads,
            heads_recipe: recipe,
            me: me.into(),
            should_merge: false,
            merge_parents_hex: vec![],
            merge_parents_indices: None,
        };
        let hs = merge_rule_heads(&authors_json, &c).expect(name);
        let me = NodeId(authors.iter().find(|(n, _)| n == me).unwrap().1.verifying_key().to_bytes());
        let (should, parents) = run_merge_rule(&hs, &me);
        c.should_merge = should;
        if c.heads_recipe.is_some() {
            let index: std::collections::HashMap<Hash, u64> = (0..1030).map(|i| (ih(i), i)).collect();
            c.merge_parents_indices = Some(parents.iter().map(|h| index[h]).collect());
        } else {
            c.merge_parents_hex = parents.iter().map(|h| hx(&h.0)).collect();
        }
        c
    })
    .collect();

    DagFile {
        description: "The DAG rules of SPEC 6 on oplog_protocol::replica::MemoryReplica. `authors`: ed25519 keys from fixed seeds. `graphs`: entries made from (author, hlc, action, parents) and signed (deterministic ed25519); `corrupt` entries then have the last signature byte XOR-ed with 1; every case uses the entries of one graph by name. `sequences`: calls on a fresh replica (insert of a batch in the given order at wall time `now` with `max_drift_ns` and the `allowed` authors, or retry_deferred at `now`; a step's own `allowed`, where present, replaces the allowed authors from that call on: a member removed at run time), each with its reported outcomes (in batch order), applied entries (in application order) and dropped entries, then the replica's state: applied entries in key order; heads, held-back entries and deferred entries ascending by hash; hashes to fetch (parents that held-back entries wait for and that are neither held back nor deferred, ascending); and the last-writer-wins view in register order (bucket, then key, compared as bytes) with each register's winner and whether it is a tombstone. `haves` (haves_for_request), `ancestry` (ancestry_to_send: hashes in order and the cut flag, or the error) and `conflicts` (merge_conflicts) run over a replica holding the whole graph. `merge_rule`: should_merge and merge_parents over given heads. Names stand for entries of the graph; 64-hex strings are hashes no graph entry has. Outcome errors are InsertError names: Invalid(<EntryError name>), NotAllowed, ParentOrder, AncestorRejected, HeldBackFull, DeferredFull. `limits` gives each sequence's caps on held-back and deferred entries; `due` lists the deferred entries a call admitted first because they had come due.".into(),
        authors: authors_json,
        graphs,
        sequences,
        haves,
        ancestry,
        ancestry_invalid,
        conflicts,
        merge_rule,
    }
}

/// Encodes parts the generator built by hand; they are valid by construction.
fn enc(parts: &[Part]) -> Vec<u8> {
    message::encode(parts).expect("hand-built message encodes")
}

/// As [`enc`], for a session's opening message (the salt after the tag, 8.3).
fn opening(parts: &[Part]) -> Vec<u8> {
    message::encode_opening(&VECTOR_SALT, parts).expect("hand-built message encodes")
}

/// Encodes Negentropy parts the generator built by hand; they are valid by construction.
fn nenc(parts: &[negentropy::Part]) -> Vec<u8> {
    negentropy::encode(parts).expect("hand-built negentropy message encodes")
}

/// Unsigned LEB128, as the message format writes varints.
fn leb128(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

// ---------------------------------------------------------------------------------------------
// session.json

/// A whole frame (length header, type byte, payload) built by hand from SPEC 9.2.
fn hand_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len() + 1).expect("small frame");
    let mut f = len.to_be_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(payload);
    f
}

/// A hand-built ENTRIES frame of the given encoded entries.
fn hand_entries(entries: &[&[u8]]) -> Vec<u8> {
    let mut p = Vec::new();
    put_varint(&mut p, entries.len() as u64);
    for e in entries {
        put_varint(&mut p, e.len() as u64);
        p.extend_from_slice(e);
    }
    hand_frame(0x02, &p)
}

fn session_side(store: &[&str], snapshot: Option<&[&str]>, batch: usize) -> SessionSideJson {
    SessionSideJson {
        store: store.iter().map(ToString::to_string).collect(),
        snapshot: snapshot.map(|s| s.iter().map(ToString::to_string).collect()),
        config: SessionConfigJson::with_batch(batch),
    }
}

#[allow(clippy::too_many_lines)]
fn session_vectors() -> SessionFile {
    let authors: Vec<(String, SigningKey)> = [("alice", 71u8), ("bob", 72)]
        .iter()
        .map(|(n, s)| (n.to_string(), sk(*s)))
        .collect();
    let us = 1000u64;
    let t = T2026;
    let b = |k: &str, o: &str| put("b", k, o);
    let mut gb = GraphBuilder::new(&authors);
    gb.add("c1", "alice", t, b("x", "c1"), &[], false);
    gb.add("c2", "alice", t + 10 * us, b("y", "c2"), &["c1"], false);
    gb.add("c3", "alice", t + 20 * us, b("x", "c3"), &["c2"], false);
    gb.add("a4", "alice", t + 30 * us, b("a", "a4"), &["c3"], false);
    gb.add("a5", "alice", t + 40 * us, b("a", "a5"), &["a4"], false);
    gb.add("a6", "alice", t + 50 * us, b("a", "a6"), &["a5"], false);
    gb.add("b1", "bob", t + 35 * us, b("b", "b1"), &["c3"], false);
    gb.add("b2", "bob", t + 45 * us, b("b", "b2"), &["b1"], false);
    gb.add("b3", "bob", t + 55 * us, b("b", "b3"), &["b2"], false);
    gb.add("p", "bob", t + 60 * us, b("p", "p"), &["c3"], false);
    gb.add("h", "bob", t + 70 * us, b("h", "h"), &["p"], false);
    gb.add("bad", "alice", t + 80 * us, b("z", "bad"), &["c3"], true);
    let graph_json = gb.finish(
        "session",
        "A chain c1-c3 both sides share; alice's a4-a6 and bob's b1-b3 continue it; p follows c3 and h follows p; `bad` has a corrupt signature.",
    );
    let authors_json: Vec<AuthorJson> = authors
        .iter()
        .map(|(n, k)| AuthorJson {
            name: n.clone(),
            seed_hex: hx(&k.to_bytes()),
            public_key_hex: hx(&k.verifying_key().to_bytes()),
        })
        .collect();
    let g = Graph::new(&graph_json).expect("graph");
    let enc = |n: &str| g.entry(n).expect("entry").encode();
    let raw = |n: &str| {
        unhex(
            &graph_json
                .entries
                .iter()
                .find(|e| e.name == n)
                .expect("entry")
                .encoded_hex,
        )
        .expect("hex")
    };
    // two of alice's entries and their varint lengths fit one batch, three do not
    let largest = ["a4", "a5", "a6", "b1", "b2", "b3"]
        .iter()
        .map(|n| enc(n).len())
        .max()
        .expect("entries");
    let batch = 2 * (largest + 2);
    let default_batch = oplog_protocol::session::DEFAULT_BATCH_BYTES;

    let shared = ["c1", "c2", "c3"];
    let mut transcripts = vec![
        SessionTranscript {
            name: "equal".into(),
            description: "Both sides hold the same three entries: one message each way, then both END frames.".into(),
            initiator: session_side(&shared, None, default_batch),
            responder: session_side(&shared, None, default_batch),
            frames: vec![],
            initiator_result: empty_result(),
            responder_result: empty_result(),
        },
        SessionTranscript {
            name: "both-differ".into(),
            description: format!("Each side holds three entries the other lacks (a4-a6, b1-b3) on the shared chain; batch_bytes {batch} puts two entries in a frame, so each side's entries go out as an ENTRIES frame of two and one of one, before the message that ends the turn."),
            initiator: session_side(&["c1", "c2", "c3", "a4", "a5", "a6"], None, batch),
            responder: session_side(&["c1", "c2", "c3", "b1", "b2", "b3"], None, batch),
            frames: vec![],
            initiator_result: empty_result(),
            responder_result: empty_result(),
        },
        SessionTranscript {
            name: "ancestry".into(),
            description: "The initiator holds a4, which the responder lacks, and h held back for its parent p. The responder holds p, but got it after its snapshot (c1-c3), so reconciliation does not send it: after reconciliation the initiator asks for p with one ancestry request (want p, its heads as haves), the responder answers with p (status 00), and h is applied with it. The responder's END goes out before the request arrives; it still answers. h stays with the initiator: it was held back when the initiator's snapshot was taken, so the next session sends it.".into(),
            initiator: session_side(&["c1", "c2", "c3", "a4", "h"], None, default_batch),
            responder: session_side(&["c1", "c2", "c3", "p"], Some(&shared), default_batch),
            frames: vec![],
            initiator_result: empty_result(),
            responder_result: empty_result(),
        },
    ];
    for tr in &mut transcripts {
        let (frames, [init, resp]) = run_session(&g, tr).expect("session runs");
        tr.frames = frames;
        tr.initiator_result = init;
        tr.responder_result = resp;
        assert_eq!(tr.initiator_result.end, "Done", "{}", tr.name);
        assert_eq!(tr.responder_result.end, "Done", "{}", tr.name);
        let mut union = tr.responder_result.applied.clone();
        if tr.name == "ancestry" {
            // h was held back when the initiator's snapshot was taken: the next session sends it
            union.push("h".into());
        }
        assert_eq!(
            tr.initiator_result.applied, union,
            "{}: both sides hold the union",
            tr.name
        );
        assert!(
            tr.initiator_result.held_back.is_empty() && tr.responder_result.held_back.is_empty()
        );
        // replaying each side alone gives the same frames and results
        assert_eq!(
            replay_session(&g, tr, Role::Initiator).expect("replay"),
            tr.initiator_result
        );
        assert_eq!(
            replay_session(&g, tr, Role::Responder).expect("replay"),
            tr.responder_result
        );
    }
    let by_name = |n: &str| {
        transcripts
            .iter()
            .find(|t| t.name == n)
            .expect("transcript")
    };
    let find = |t: &SessionTranscript, pred: &dyn Fn(&DecodedFrame) -> bool| {
        t.frames
            .iter()
            .position(|f| pred(&f.decoded))
            .expect("frame")
    };
    let differ = by_name("both-differ");
    assert_eq!(differ.initiator_result.entries_sent, 3);
    assert_eq!(differ.responder_result.entries_sent, 3);
    let two = find(
        differ,
        &|d| matches!(d, DecodedFrame::Entries { entries } if entries.len() == 2),
    );
    let first_msg = find(differ, &|d| matches!(d, DecodedFrame::Message { .. }));
    let anc = by_name("ancestry");
    assert_eq!(anc.initiator_result.ancestry_requests_sent, 1);
    assert_eq!(anc.responder_result.ancestry_requests_answered, 1);
    let req = find(anc, &|d| matches!(d, DecodedFrame::AncestryRequest { .. }));
    let ans = find(anc, &|d| matches!(d, DecodedFrame::AncestryAnswer { .. }));
    let equal = by_name("equal");
    let done = find(equal, &|d| matches!(d, DecodedFrame::End { .. }));

    // frames
    let mut frames = Vec::new();
    let from_transcript = |name: &str, desc: &str, t: &SessionTranscript, i: usize| FrameCase {
        name: name.into(),
        description: desc.into(),
        source: "transcript".into(),
        close_reason: None,
        transcript: Some(t.name.clone()),
        index: Some(i),
        hex: t.frames[i].hex.clone(),
        decoded: t.frames[i].decoded.clone(),
    };
    frames.push(from_transcript(
        "end-done",
        "END Done with no reason: \"I will ask for nothing more\".",
        equal,
        done,
    ));
    frames.push(from_transcript("message-first", "The initiator's first reconciliation message: the frame type 01 is the message's tag byte.", differ, first_msg));
    frames.push(from_transcript(
        "entries-two",
        "An ENTRIES frame of two entries, ascending by key.",
        differ,
        two,
    ));
    frames.push(from_transcript(
        "ancestry-request",
        "An ancestry request (SPEC 6.3): one want, the requester's heads as haves, limit 65,536.",
        anc,
        req,
    ));
    frames.push(from_transcript(
        "ancestry-answer",
        "The answer: status 00 (complete), one entry.",
        anc,
        ans,
    ));
    let long_ascii = "r".repeat(300);
    let long_utf8 = format!("{}\u{e9}tc", "a".repeat(255));
    let closes: [(&str, &str, u8, &str); 7] = [
        ("end-protocol", "END Protocol with a reason.", 1, "entries of a turn are not in ascending key order"),
        ("end-busy", "END Busy: a session between the two nodes is already running.", 7, "busy"),
        ("end-refused", "END Refused.", 5, "not in the allowed set"),
        ("end-shutdown-empty-reason", "END Shutdown with an empty reason.", 9, ""),
        ("end-unknown-code", "A code with no name (0x42): carried as it is; a receiver treats it as a failure.", 0x42, "?"),
        ("end-reason-cut-256", "A reason of 300 ASCII bytes is cut to its first 256.", 6, &long_ascii),
        ("end-reason-cut-char", "A reason of 255 'a', then U+00E9 (2 bytes, ending at byte 257), then \"tc\": the cut at 256 would split the character, so the reason keeps 255 bytes.", 3, &long_utf8),
    ];
    for (name, desc, code, reason) in closes {
        let f = close_frame(code, reason).expect("close");
        let decoded = decode_frame(&g, &f).expect("decodes");
        if let DecodedFrame::End { reason: r, .. } = &decoded {
            assert!(r.len() <= 256 && reason.starts_with(r.as_str()));
        }
        frames.push(FrameCase {
            name: name.into(),
            description: desc.into(),
            source: "close".into(),
            close_reason: Some(reason.to_string()),
            transcript: None,
            index: None,
            hex: hx(&f),
            decoded,
        });
    }

    // invalid frames
    let responder_end = equal
        .frames
        .iter()
        .position(|f| f.from == "responder" && matches!(f.decoded, DecodedFrame::End { .. }))
        .expect("responder END");
    let reconciled = responder_end + 1;
    assert_eq!(equal.frames[reconciled].from, "initiator");
    let a4 = raw("a4");
    let a5 = raw("a5");
    let bad = raw("bad");
    let request = unhex(&anc.frames[req].hex).expect("hex");
    let mut long_reason = vec![0x01];
    put_varint(&mut long_reason, 257);
    long_reason.extend(std::iter::repeat_n(b'x', 257));
    let entries_payload = |entries: &[&[u8]], count: u64, extra: &[u8]| {
        let mut p = Vec::new();
        put_varint(&mut p, count);
        for e in entries {
            put_varint(&mut p, e.len() as u64);
            p.extend_from_slice(e);
        }
        p.extend_from_slice(extra);
        hand_frame(0x02, &p)
    };
    let trailing = entries_payload(&[&a4], 1, &[0]);
    let lying = entries_payload(&[&a4], 200, &[]);
    let short_count = entries_payload(&[&a4], 2, &[]);
    let max = u32::try_from(oplog_protocol::session::DEFAULT_MAX_FRAME_BYTES).expect("fits");
    let fresh = |name: &str, desc: &str, frames: Vec<Vec<u8>>, code: u8| InvalidFrameCase {
        name: name.into(),
        description: desc.into(),
        transcript: "equal".into(),
        side: "responder".into(),
        after: 0,
        config: None,
        frames: frames.iter().map(|f| hx(f)).collect(),
        code,
        code_name: end_code_name(code).into(),
    };
    let mut invalid = vec![
        fresh("empty-frame", "A length header of 0: a frame has at least its type byte (refused at the header).", vec![0u32.to_be_bytes().to_vec()], 1),
        fresh("oversized-length", "A length header one above max_frame_bytes (4 MiB): refused at the header, before reading the body.", vec![(max + 1).to_be_bytes().to_vec()], 2),
        fresh("unknown-type-00", "Frame type 00.", vec![hand_frame(0x00, &[])], 1),
        fresh("unknown-type-06", "Frame type 06.", vec![hand_frame(0x06, &[1, 2, 3])], 1),
        fresh("entries-zero-count", "An ENTRIES frame with count 0.", vec![hand_frame(0x02, &[0])], 1),
        fresh("entries-lying-count", "An ENTRIES frame whose count (200) is more than its payload can hold at two bytes an entry: refused before reading entries.", vec![lying], 1),
        fresh("entries-count-beyond-data", "An ENTRIES frame with count 2 and one entry: the payload ends where the second entry's length should be.", vec![short_count], 1),
        fresh("entries-length-zero", "An ENTRIES frame with one entry of length 0.", vec![hand_frame(0x02, &[1, 0])], 1),
        fresh("entries-trailing-bytes", "An ENTRIES frame with one valid entry and a byte after it.", vec![trailing], 1),
        fresh("entries-undecodable", "An ENTRIES frame whose entry does not decode as an entry (five bytes ff).", vec![hand_entries(&[&[0xff; 5]])], 4),
        fresh("entries-bad-signature", "An ENTRIES frame of a valid entry (a4) then one whose signature fails (bad): the session ends with 04 and neither is applied.", vec![hand_entries(&[&a4, &bad])], 4),
        fresh("entries-descending", "An ENTRIES frame with a5 before a4: entries of a turn ascend by key.", vec![hand_entries(&[&a5, &a4])], 1),
        fresh("entries-descending-across-frames", "a5 in one ENTRIES frame (accepted, held back), a4 in the next of the same turn: keys ascend across the frames of a turn too.", vec![hand_entries(&[&a5]), hand_entries(&[&a4])], 1),
        fresh("message-undecodable", "A MESSAGE whose only part has mode 7.", vec![hand_frame(0x01, &[0x07])], 1),
        fresh("ancestry-request-before-reconciliation", "A valid ancestry request before reconciliation ended on the receiver.", vec![request.clone()], 1),
        fresh("ancestry-answer-unasked", "An ancestry answer (status 00, no entries) nobody asked for.", vec![hand_frame(0x04, &[0, 0])], 1),
        fresh("end-done-early", "END Done before reconciliation ended on the receiver.", vec![hand_frame(0x05, &[0, 0])], 1),
        fresh("end-no-code", "An END frame with no code byte.", vec![hand_frame(0x05, &[])], 1),
        fresh("end-reason-too-long", "An END frame whose reason is 257 bytes.", vec![hand_frame(0x05, &long_reason)], 1),
        fresh("end-reason-not-utf8", "An END frame whose reason is not UTF-8 (ff fe).", vec![hand_frame(0x05, &[1, 2, 0xff, 0xfe])], 1),
        fresh("end-trailing-bytes", "An END frame with a byte after its (empty) reason.", vec![hand_frame(0x05, &[1, 0, 0])], 1),
    ];
    let after_reconciliation = |name: &str, desc: &str, frames: Vec<Vec<u8>>, code: u8| {
        InvalidFrameCase {
        name: name.into(),
        description: format!("{desc} The receiver is the responder of `equal` after its reply and its END Done (reconciliation over on both sides; the initiator's END not yet received)."),
        transcript: "equal".into(),
        side: "responder".into(),
        after: reconciled,
        config: None,
        frames: frames.iter().map(|f| hx(f)).collect(),
        code,
        code_name: end_code_name(code).into(),
    }
    };
    invalid.extend([
        after_reconciliation(
            "message-out-of-turn",
            "A MESSAGE (01, the empty message) after reconciliation ended.",
            vec![hand_frame(0x01, &[])],
            1,
        ),
        after_reconciliation(
            "entries-out-of-turn",
            "An ENTRIES frame after reconciliation ended.",
            vec![hand_entries(&[&a4])],
            1,
        ),
        after_reconciliation(
            "ancestry-answer-unasked-after-reconciliation",
            "An ancestry answer when no request of the receiver is open.",
            vec![hand_frame(0x04, &[0, 0])],
            1,
        ),
        after_reconciliation(
            "ancestry-request-malformed",
            "An ancestry request with n = 0 wants.",
            vec![hand_frame(0x03, &[0, 0, 1])],
            1,
        ),
    ]);
    // budgets: the responder of `equal` with one budget lowered
    let mut small_bytes = SessionConfigJson::with_batch(default_batch);
    small_bytes.max_bytes_received = dec(64);
    let mut no_requests = SessionConfigJson::with_batch(default_batch);
    no_requests.max_ancestry_requests = 0;
    let entries_a4 = hand_entries(&[&a4]);
    invalid.push(InvalidFrameCase {
        name: "bytes-received-over-budget".into(),
        description: "A fresh responder whose max_bytes_received is 64 gets the header of an ENTRIES frame that would pass it: refused at the header (4 header bytes counted, plus the announced length).".into(),
        transcript: "equal".into(),
        side: "responder".into(),
        after: 0,
        config: Some(small_bytes),
        frames: vec![hx(&entries_a4[..4])],
        code: 3,
        code_name: "Limit".into(),
    });
    invalid.push(InvalidFrameCase {
        name: "ancestry-requests-over-budget".into(),
        description: "A responder whose max_ancestry_requests is 0, after reconciliation, gets a valid ancestry request: counted before it is decoded, and over the budget.".into(),
        transcript: "equal".into(),
        side: "responder".into(),
        after: reconciled,
        config: Some(no_requests),
        frames: vec![hx(&request)],
        code: 3,
        code_name: "Limit".into(),
    });
    // a second END Done: the initiator of `equal` after the responder's END
    invalid.push(InvalidFrameCase {
        name: "end-done-twice".into(),
        description: "A second END Done from a peer that already sent one: the initiator of `equal` after it received the responder's reply and END, before sending its own END.".into(),
        transcript: "equal".into(),
        side: "initiator".into(),
        after: reconciled,
        config: None,
        frames: vec![hx(&hand_frame(0x05, &[0, 0]))],
        code: 1,
        code_name: "Protocol".into(),
    });
    for c in &invalid {
        let got = feed_invalid(&g, &transcripts, c).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, c.code, "{}", c.name);
    }
    SessionFile {
        description: "The session layer of SPEC 9 on oplog_protocol::session::Session over MemoryReplica stores. `graph`: entries by name (as in dag.json; `corrupt` = last signature byte XOR 1 after signing). Each side of a transcript: the entries given to one insert call before the session (now = 2^64 - 1, drift 0, no allowed set), the snapshot it reconciles over (null: its applied keys), and its session config (fields not listed are the defaults; the reconciler config is the default). Schedule: the initiator sends every frame it has (poll_transmit until none), then the responder is given them in order, applying each Apply event to its store at once, then sends every frame it has, and so on until both are finished; `frames` lists them in that order. Replaying one side alone: give it the peer's frames in order; each of its own must be exactly what it sends next, and where the peer's frames begin it must have nothing more to send. `*_result`: the side's SyncReport counters and store at the end (applied in key order, held back by hash). `frames`: single frames with their decoded fields, each produced by a session (`close`: a fresh responder over an empty set, close(code, close_reason), first poll_transmit; `transcript`: frame `index` of that transcript). `invalid`: frames a peer sends that end the session: replay `side` of `transcript` through its first `after` frames, give it `frames` (a header alone means the header is refused), and its next frame is an END with `code`; nothing of the last frame is applied and the side reads nothing more.".into(),
        authors: authors_json,
        graph: graph_json,
        frames,
        transcripts,
        invalid,
    }
}

fn empty_result() -> SessionResultJson {
    SessionResultJson {
        end: String::new(),
        ended_by_peer: false,
        frames_sent: 0,
        frames_received: 0,
        bytes_sent: 0,
        bytes_received: 0,
        messages_sent: 0,
        messages_received: 0,
        entries_sent: 0,
        entries_received: 0,
        entry_bytes_sent: 0,
        entry_bytes_received: 0,
        ancestry_requests_sent: 0,
        ancestry_requests_answered: 0,
        round_trips: 0,
        overhead_bytes: 0,
        applied: vec![],
        held_back: vec![],
    }
}
