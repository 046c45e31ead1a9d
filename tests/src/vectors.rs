//! The schema of the byte-exact test vectors in `spec/vectors/`, defined once.
//!
//! The generator (`cargo run -p oplog-tests --bin gen-vectors`) serialises these types and
//! `tests/tests/conformance.rs` deserialises them, so the two cannot disagree on a field. Every
//! struct refuses unknown fields when parsed, so a file cannot carry anything the checker does
//! not look at; optional fields marked `skip_serializing_if` are left out of the files when
//! absent, the others are written as `null`. Byte strings are lower-case hex and every `u64`
//! that can exceed 2^53 is a decimal string (see `spec/vectors/README.md`).
//!
//! Next to the types are the conversions both sides need: keys, actions and message parts to
//! and from their JSON form, the error names, and the key recipes.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use oplog_protocol::replica::{InsertOutcome, MemoryReplica};
use oplog_protocol::session::{EndCode, Event, Prepared, Role, Session, SessionConfig, SyncReport};
use oplog_protocol::wire::message::{DecodeError, Part, Payload};
use oplog_protocol::VerifiedEntry;
use oplog_protocol::{
    dag, negentropy, Config, EntryError, EntryKey, Fingerprint, Hash, LogEntry, MemoryStore,
    NodeId, ObjectId, Op, Reconciler, Salt,
};
use serde::{Deserialize, Serialize};

/// `spec/vectors/` in this checkout: where the generator writes and the conformance test reads.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

/// A `u64` as a decimal string: JSON numbers lose precision above 2^53 in many languages.
pub fn dec(v: u64) -> String {
    v.to_string()
}

/// Bytes as lower-case hex.
pub fn hx(b: &[u8]) -> String {
    hex::encode(b)
}

/// Parses a decimal `u64` string.
pub fn num(s: &str) -> Result<u64, String> {
    s.parse().map_err(|e| format!("bad u64 {s:?}: {e}"))
}

/// Parses hex.
pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("bad hex {s:?}: {e}"))
}

/// Parses hex of exactly 32 bytes.
pub fn unhex32(s: &str) -> Result<[u8; 32], String> {
    unhex(s)?
        .try_into()
        .map_err(|_| format!("{s:?} is not 32 bytes"))
}

/// `BLAKE3(i as u64 little-endian)`, the hash of key `i` in every recipe.
/// The fingerprint salt every vector session opens with (spec 7.1): fixed, so that vectors
/// are reproducible; a real session draws a random one.
pub const VECTOR_SALT: Salt = Salt([
    0x5a, 0x17, 0x00, 0xc3, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
]);

/// A 16-byte salt from hex.
pub fn salt(s: &str) -> Result<Salt, String> {
    let b = unhex(s)?;
    Ok(Salt(b.try_into().map_err(|b: Vec<u8>| {
        format!("a salt has 16 bytes, not {}", b.len())
    })?))
}

pub fn ih(i: u64) -> Hash {
    Hash(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

// ---------------------------------------------------------------------------------------------
// keys

/// An [`EntryKey`]: its HLC as a decimal string and its full 32-byte hash.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct KeyJson {
    pub hlc: String,
    pub hash_hex: String,
}

impl KeyJson {
    /// The key this stands for.
    pub fn key(&self) -> Result<EntryKey, String> {
        Ok(EntryKey::new(num(&self.hlc)?, unhex32(&self.hash_hex)?))
    }
}

impl From<&EntryKey> for KeyJson {
    fn from(k: &EntryKey) -> Self {
        KeyJson {
            hlc: dec(k.hlc.0),
            hash_hex: hx(&k.hash.0),
        }
    }
}

/// Keys in their JSON form.
pub fn keys_json(keys: &[EntryKey]) -> Vec<KeyJson> {
    keys.iter().map(KeyJson::from).collect()
}

/// The keys a JSON list stands for.
pub fn keys(list: &[KeyJson]) -> Result<Vec<EntryKey>, String> {
    list.iter().map(KeyJson::key).collect()
}

// ---------------------------------------------------------------------------------------------
// entries.json

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct EntriesFile {
    pub description: String,
    pub valid: Vec<ValidEntry>,
    pub invalid: Vec<InvalidEntry>,
}

/// An [`Op`], tagged by `type`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ActionJson {
    Put {
        bucket: String,
        key: String,
        object_id_hex: String,
    },
    Delete {
        bucket: String,
        key: String,
    },
    Merge,
}

impl ActionJson {
    /// The action this stands for.
    pub fn op(&self) -> Result<Op, String> {
        Ok(match self {
            ActionJson::Put {
                bucket,
                key,
                object_id_hex,
            } => Op::Put {
                bucket: bucket.clone(),
                key: key.clone(),
                object_id: ObjectId(unhex32(object_id_hex)?),
            },
            ActionJson::Delete { bucket, key } => Op::Delete {
                bucket: bucket.clone(),
                key: key.clone(),
            },
            ActionJson::Merge => Op::Merge,
        })
    }
}

impl From<&Op> for ActionJson {
    fn from(op: &Op) -> Self {
        match op {
            Op::Put {
                bucket,
                key,
                object_id,
            } => ActionJson::Put {
                bucket: bucket.clone(),
                key: key.clone(),
                object_id_hex: hx(&object_id.0),
            },
            Op::Delete { bucket, key } => ActionJson::Delete {
                bucket: bucket.clone(),
                key: key.clone(),
            },
            Op::Merge => ActionJson::Merge,
            other => unimplemented!("the vectors have no form for {other:?} yet"),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ValidEntry {
    pub name: String,
    pub description: String,
    pub seed_hex: String,
    pub public_key_hex: String,
    pub hlc: String,
    pub action: ActionJson,
    pub parents_hex: Vec<String>,
    pub body_hex: String,
    pub hash_hex: String,
    pub signature_hex: String,
    pub encoded_hex: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct InvalidEntry {
    pub name: String,
    pub description: String,
    pub encoded_hex: String,
    /// The hash the entry was requested under, when the check is against a claimed hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_hash_hex: Option<String>,
    /// `decode` if decoding must fail, `verify` if decoding succeeds and verification fails.
    pub stage: String,
    pub error: String,
}

/// The name an [`EntryError`] has in the vectors: its variant name.
pub fn entry_error_name(e: &EntryError) -> &'static str {
    match e {
        EntryError::Malformed(_) => "Malformed",
        EntryError::NonCanonical => "NonCanonical",
        EntryError::TooLarge { .. } => "TooLarge",
        EntryError::TooManyParents(_) => "TooManyParents",
        EntryError::ParentsNotCanonical => "ParentsNotCanonical",
        EntryError::MergeNeedsParents(_) => "MergeNeedsParents",
        EntryError::HlcOutOfRange(_) => "HlcOutOfRange",
        EntryError::InvalidAction(_) => "InvalidAction",
        EntryError::HashMismatch { .. } => "HashMismatch",
        EntryError::InvalidAuthor(_) => "InvalidAuthor",
        EntryError::BadSignature(_) => "BadSignature",
        _ => "Unnamed",
    }
}

// ---------------------------------------------------------------------------------------------
// hlc.json

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct HlcFile {
    pub description: String,
    pub sequences: Vec<HlcSequence>,
    pub admission: Vec<AdmissionCase>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct HlcSequence {
    pub name: String,
    pub description: String,
    pub max_drift_ns: String,
    /// `last` restored from storage, or `null` for a fresh clock (last = 0).
    pub restore_last: Option<String>,
    pub ops: Vec<HlcOp>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct HlcOp {
    /// `tick` or `observe`.
    pub op: String,
    pub wall: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// `ok`, `TooFarAhead`, `OutOfRange` or `Exhausted`.
    pub result: String,
    /// The issued stamp of a successful tick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
    /// `TooFarAhead`: how far ahead the remote stamp was (remote - wall).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ahead_ns: Option<String>,
    /// Exhausted: the stamp the clock is stuck at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exhausted_at: Option<String>,
    pub last_after: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct AdmissionCase {
    pub stamp: String,
    pub now: String,
    pub max_drift_ns: String,
    /// `Now` or `Defer`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// fingerprints.json

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FingerprintsFile {
    pub description: String,
    pub item_context: String,
    pub digest_context: String,
    /// The salt every `fingerprint_hex` of the file is keyed by.
    pub salt_hex: String,
    pub items: Vec<ItemVector>,
    pub aggregates: Vec<AggregateVector>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ItemVector {
    pub hlc: String,
    pub hash_hex: String,
    pub key_bytes_hex: String,
    pub term_first64_hex: String,
    /// The whole 512-byte term, given for the first item only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term_hex: Option<String>,
    /// The fingerprint of the one-key set.
    pub fingerprint_hex: String,
}

/// Keys `i` for `i` in `from..to`: `hlc = hlc_base + i * hlc_step`, `hash = BLAKE3(i as u64 LE)`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FpRecipe {
    pub from: u64,
    pub to: u64,
    pub hlc_base: String,
    pub hlc_step: String,
}

impl FpRecipe {
    /// The keys the recipe stands for, in recipe order.
    pub fn keys(&self) -> Result<Vec<EntryKey>, String> {
        let (base, step) = (num(&self.hlc_base)?, num(&self.hlc_step)?);
        Ok((self.from..self.to)
            .map(|i| EntryKey::new(base + i * step, ih(i)))
            .collect())
    }
}

/// An aggregate of the keys listed or of the keys of a recipe (exactly one of the two).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct AggregateVector {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyJson>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipe: Option<FpRecipe>,
    pub count: u64,
    pub sum_hex: String,
    pub fingerprint_hex: String,
}

// ---------------------------------------------------------------------------------------------
// messages.json

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct MessagesFile {
    pub description: String,
    pub valid: Vec<ValidMessage>,
    pub invalid: Vec<InvalidMessage>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ValidMessage {
    pub name: String,
    pub description: String,
    /// The salt of an opening message (tag 02, spec 8.3); absent for every other message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt_hex: Option<String>,
    pub hex: String,
    pub parts: Vec<PartJson>,
}

/// A message [`Part`].
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct PartJson {
    /// Exclusive upper bound; `null` is the end of the key space.
    pub upper: Option<KeyJson>,
    pub payload: PayloadJson,
}

/// A [`Payload`], tagged by `mode`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(tag = "mode", deny_unknown_fields)]
pub enum PayloadJson {
    Skip,
    Fingerprint {
        fingerprint_hex: String,
    },
    PrefixList {
        prefix_len: u8,
        prefixes_hex: Vec<String>,
    },
    FullList {
        keys: Vec<KeyJson>,
    },
    Resolve {
        missing: Vec<u32>,
        keys: Vec<KeyJson>,
    },
    Keys {
        /// Leading hash bytes each key leaves out on the wire (inline form, 8.3); absent = 0.
        /// The keys listed here have those bytes zero, as decoded.
        #[serde(default, skip_serializing_if = "is_zero")]
        omitted: u8,
        keys: Vec<KeyJson>,
    },
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(v: &u8) -> bool {
    *v == 0
}

impl PartJson {
    /// The part this stands for.
    pub fn part(&self) -> Result<Part, String> {
        let upper = self.upper.as_ref().map(KeyJson::key).transpose()?;
        let payload = match &self.payload {
            PayloadJson::Skip => Payload::Skip,
            PayloadJson::Fingerprint { fingerprint_hex } => Payload::Fingerprint(Fingerprint(
                unhex(fingerprint_hex)?
                    .try_into()
                    .map_err(|_| "fingerprint is not 16 bytes")?,
            )),
            PayloadJson::PrefixList {
                prefix_len,
                prefixes_hex,
            } => {
                let mut prefixes = Vec::new();
                for p in prefixes_hex {
                    let p = unhex(p)?;
                    if p.len() != *prefix_len as usize {
                        return Err(format!(
                            "prefix {} is not {prefix_len} bytes",
                            hex::encode(p)
                        ));
                    }
                    prefixes.extend(p);
                }
                Payload::PrefixList {
                    len: *prefix_len,
                    prefixes,
                }
            }
            PayloadJson::FullList { keys: k } => Payload::FullList(keys(k)?),
            PayloadJson::Resolve { missing, keys: k } => Payload::Resolve {
                missing: missing.clone(),
                keys: keys(k)?,
            },
            PayloadJson::Keys { omitted, keys: k } => Payload::Keys {
                omitted: *omitted,
                keys: keys(k)?,
            },
        };
        Ok(Part { upper, payload })
    }
}

impl From<&Part> for PartJson {
    fn from(p: &Part) -> Self {
        PartJson {
            upper: p.upper.as_ref().map(KeyJson::from),
            payload: match &p.payload {
                Payload::Skip => PayloadJson::Skip,
                Payload::Fingerprint(fp) => PayloadJson::Fingerprint {
                    fingerprint_hex: hx(&fp.0),
                },
                Payload::PrefixList { len, prefixes } => PayloadJson::PrefixList {
                    prefix_len: *len,
                    prefixes_hex: prefixes.chunks(*len as usize).map(hx).collect(),
                },
                Payload::FullList(keys) => PayloadJson::FullList {
                    keys: keys_json(keys),
                },
                Payload::Resolve { missing, keys } => PayloadJson::Resolve {
                    missing: missing.clone(),
                    keys: keys_json(keys),
                },
                Payload::Keys { omitted, keys } => PayloadJson::Keys {
                    omitted: *omitted,
                    keys: keys_json(keys),
                },
            },
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct InvalidMessage {
    pub name: String,
    pub description: String,
    pub hex: String,
    pub error: String,
}

/// The name a [`DecodeError`] has in the vectors: its variant name.
pub fn decode_error_name(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::BadTag(_) => "BadTag",
        DecodeError::Truncated(_) => "Truncated",
        DecodeError::BadVarint(_) => "BadVarint",
        DecodeError::UnknownMode(_) => "UnknownMode",
        DecodeError::BadBound(_) => "BadBound",
        DecodeError::BadPayload { .. } => "BadPayload",
        DecodeError::NonCanonicalSkip => "NonCanonicalSkip",
        DecodeError::NonCanonicalRun => "NonCanonicalRun",
        // the enum is non-exhaustive; a variant added later has no vector name yet
        _ => "Unnamed",
    }
}

// ---------------------------------------------------------------------------------------------
// transcripts.json

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct TranscriptsFile {
    pub description: String,
    pub transcripts: Vec<TranscriptVector>,
}

/// One side's reconciler configuration, every tuning value explicit.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ConfigJson {
    /// Always `OplogV1` here: these transcripts are of oplog-sync's own wire format.
    pub dialect: String,
    pub branching: usize,
    pub list_threshold: usize,
    /// 0: the length by list size (spec 8.4, the default); 1 to 32: fixed.
    pub prefix_len: u8,
    pub max_message_bytes: Option<usize>,
    pub initial_split: bool,
    /// The fingerprint salt (16 bytes, hex) the side sends if it opens the session (spec 7.1,
    /// 8.3); a responder uses the initiator's. Fixed here so that sessions are reproducible.
    pub salt_hex: String,
}

impl ConfigJson {
    /// The configuration this stands for; any dialect but `OplogV1` is refused.
    pub fn config(&self) -> Result<Config, String> {
        if self.dialect != "OplogV1" {
            return Err(format!("unknown dialect {}", self.dialect));
        }
        // Every tuning value comes from the file; `..Config::default()` only fills in fields
        // that select the wire format (the default, oplog-sync v1). A default that spoke
        // anything else would fail every transcript byte comparison of the conformance test.
        let mut config = Config::default();
        config.branching = self.branching;
        config.list_threshold = self.list_threshold;
        config.prefix_len = self.prefix_len;
        config.max_message_bytes = self.max_message_bytes;
        config.initial_split = self.initial_split;
        config.salt = Some(salt(&self.salt_hex)?);
        Ok(config)
    }
}

/// Key `i` is `(hlc_base + (i / hlc_div) * hlc_step, BLAKE3(i as u64 LE))`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct KeyRecipe {
    pub hlc_base: String,
    pub hlc_step: String,
    pub hlc_div: u64,
}

impl KeyRecipe {
    /// The keys `i` for every `[from, to, step]` run: `i = from, from + step, ... < to`.
    pub fn keys(&self, runs: &[[u64; 3]]) -> Result<BTreeSet<EntryKey>, String> {
        let (base, step) = (num(&self.hlc_base)?, num(&self.hlc_step)?);
        if self.hlc_div == 0 {
            return Err("hlc_div is 0".into());
        }
        let mut set = BTreeSet::new();
        for &[from, to, by] in runs {
            if by == 0 {
                return Err("run step is 0".into());
            }
            let mut i = from;
            while i < to {
                set.insert(EntryKey::new(base + (i / self.hlc_div) * step, ih(i)));
                i += by;
            }
        }
        Ok(set)
    }
}

/// A set is the keys `i` for every `[from, to, step]` run: `i = from, from + step, ... < to`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct SetJson {
    pub runs: Vec<[u64; 3]>,
    pub count: usize,
    /// The keys themselves, for small sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyJson>>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct MessageJson {
    /// `initiator` or `responder`.
    pub from: String,
    pub hex: String,
}

/// One side's outcome of a session.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct SideJson {
    pub have: Vec<KeyJson>,
    pub need: Vec<KeyJson>,
    pub prefix_collisions: u64,
    pub carried_over: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct TranscriptVector {
    pub name: String,
    pub description: String,
    pub config_initiator: ConfigJson,
    pub config_responder: ConfigJson,
    pub key_recipe: KeyRecipe,
    pub initiator_set: SetJson,
    pub responder_set: SetJson,
    pub messages: Vec<MessageJson>,
    pub initiator: SideJson,
    pub responder: SideJson,
}

// ---------------------------------------------------------------------------------------------
// limits.json

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub description: String,
    pub cases: Vec<LimitCase>,
}

/// An entry at or just past a limit, or with a non-canonical or weak signature or key.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct LimitCase {
    pub name: String,
    pub description: String,
    /// Length of `encoded_hex` in bytes.
    pub size: usize,
    pub encoded_hex: String,
    /// `ok` if the entry decodes and verifies, else the stage that refuses it: `decode` or
    /// `verify`.
    pub stage: String,
    /// The `EntryError` name when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The entry's hash when it decodes (the BLAKE3 hash of the body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_hex: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// failures.json

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FailuresFile {
    pub description: String,
    pub cases: Vec<FailureCase>,
}

/// A session that a peer breaks: every message but the last is what an honest side sends; the
/// last is the peer's bad message, and its receiver must end the session with `error`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FailureCase {
    pub name: String,
    pub description: String,
    pub config_initiator: ConfigJson,
    pub config_responder: ConfigJson,
    pub key_recipe: KeyRecipe,
    pub initiator_set: SetJson,
    pub responder_set: SetJson,
    pub messages: Vec<MessageJson>,
    /// The `ReconcileError` variant the receiver of the last message returns: `Decode` or
    /// `Protocol`.
    pub error: String,
    /// For `Decode`: the `DecodeError` name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
}

/// The name a [`ReconcileError`](oplog_protocol::ReconcileError) has in the vectors.
pub fn reconcile_error_name(e: &oplog_protocol::ReconcileError) -> &'static str {
    use oplog_protocol::ReconcileError as E;
    match e {
        E::Config(_) => "Config",
        E::Decode(_) => "Decode",
        E::NegentropyDecode(_) => "NegentropyDecode",
        E::Protocol(_) => "Protocol",
        E::Store(_) => "Store",
        E::Misuse(_) => "Misuse",
        E::Limit(l) => limit_name(l),
        _ => "Unnamed",
    }
}

/// The name a [`Limit`](oplog_protocol::Limit) has in the vectors: `Limit(<variant>)`.
pub fn limit_name(l: &oplog_protocol::Limit) -> &'static str {
    use oplog_protocol::Limit as L;
    match l {
        L::MessageBytes { .. } => "Limit(MessageBytes)",
        L::Parts { .. } => "Limit(Parts)",
        L::Messages { .. } => "Limit(Messages)",
        L::PendingState { .. } => "Limit(PendingState)",
        L::SessionMemory { .. } => "Limit(SessionMemory)",
        _ => "Limit(Unnamed)",
    }
}

// ---------------------------------------------------------------------------------------------
// negentropy.json

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct NegentropyFile {
    pub description: String,
    pub valid: Vec<NegMessage>,
    pub invalid: Vec<NegInvalid>,
    pub transcripts: Vec<NegTranscript>,
}

/// A Negentropy V1 message and its ranges.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct NegMessage {
    pub name: String,
    pub description: String,
    pub hex: String,
    pub parts: Vec<NegPartJson>,
}

/// A Negentropy range: upper bound (timestamp as a decimal string, `18446744073709551615`
/// for infinity; id prefix) and payload.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct NegPartJson {
    pub upper_timestamp: String,
    pub upper_prefix_hex: String,
    pub payload: NegPayloadJson,
}

/// A Negentropy payload, tagged by `mode`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(tag = "mode", deny_unknown_fields)]
pub enum NegPayloadJson {
    Skip,
    Fingerprint { fingerprint_hex: String },
    IdList { ids_hex: Vec<String> },
}

impl NegPartJson {
    /// The part this stands for.
    pub fn part(&self) -> Result<negentropy::Part, String> {
        let upper =
            negentropy::Bound::new(num(&self.upper_timestamp)?, &unhex(&self.upper_prefix_hex)?)
                .map_err(|e| e.to_string())?;
        let payload = match &self.payload {
            NegPayloadJson::Skip => negentropy::Payload::Skip,
            NegPayloadJson::Fingerprint { fingerprint_hex } => {
                negentropy::Payload::Fingerprint(negentropy::Fingerprint(
                    unhex(fingerprint_hex)?
                        .try_into()
                        .map_err(|_| "fingerprint is not 16 bytes")?,
                ))
            }
            NegPayloadJson::IdList { ids_hex } => negentropy::Payload::IdList(
                ids_hex
                    .iter()
                    .map(|h| unhex32(h).map(Hash))
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(negentropy::Part { upper, payload })
    }
}

impl From<&negentropy::Part> for NegPartJson {
    fn from(p: &negentropy::Part) -> Self {
        NegPartJson {
            upper_timestamp: dec(p.upper.timestamp()),
            upper_prefix_hex: hx(p.upper.prefix()),
            payload: match &p.payload {
                negentropy::Payload::Skip => NegPayloadJson::Skip,
                negentropy::Payload::Fingerprint(fp) => NegPayloadJson::Fingerprint {
                    fingerprint_hex: hx(&fp.0),
                },
                negentropy::Payload::IdList(ids) => NegPayloadJson::IdList {
                    ids_hex: ids.iter().map(|h| hx(&h.0)).collect(),
                },
            },
        }
    }
}

/// Bytes a Negentropy decoder must refuse.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct NegInvalid {
    pub name: String,
    pub description: String,
    pub hex: String,
    /// The `negentropy::DecodeError` name.
    pub error: String,
    /// What a responder sends back instead of failing (only for an unsupported version: the
    /// one version byte it speaks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub responder_reply_hex: Option<String>,
}

/// The name a Negentropy [`DecodeError`](negentropy::DecodeError) has in the vectors.
pub fn neg_decode_error_name(e: &negentropy::DecodeError) -> &'static str {
    use negentropy::DecodeError as E;
    match e {
        E::Empty => "Empty",
        E::NotNegentropy(_) => "NotNegentropy",
        E::UnsupportedVersion(_) => "UnsupportedVersion",
        E::Truncated(_) => "Truncated",
        E::BadVarint(_) => "BadVarint",
        E::UnknownMode(_) => "UnknownMode",
        E::BadBound(_) => "BadBound",
        E::BadIdList(_) => "BadIdList",
        _ => "Unnamed",
    }
}

/// A whole Negentropy session: sets by recipe (timestamp = HLC, id = hash), every message, and
/// what the initiator learns (the responder learns nothing in this dialect).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct NegTranscript {
    pub name: String,
    pub description: String,
    /// Both sides' frame size limit in bytes (`Config::negentropy(frame_limit)`), or `null`.
    pub frame_limit: Option<usize>,
    pub key_recipe: KeyRecipe,
    pub initiator_set: SetJson,
    pub responder_set: SetJson,
    pub messages: Vec<MessageJson>,
    /// Keys the initiator holds and the responder lacks, sorted.
    pub initiator_have: Vec<KeyJson>,
    /// Ids the responder holds and the initiator lacks, sorted bytewise.
    pub initiator_need_hashes: Vec<String>,
    /// How many of its messages each side cut at the frame limit.
    pub initiator_carried_over: u64,
    pub responder_carried_over: u64,
}

/// The outcome of a Negentropy session driven message by message.
#[derive(Debug, Clone, Default)]
pub struct NegRun {
    /// Every message, even indices from the initiator.
    pub messages: Vec<Vec<u8>>,
    /// The initiator's have, sorted.
    pub have: Vec<EntryKey>,
    /// The initiator's need, sorted.
    pub need_hashes: Vec<Hash>,
    /// Carry-overs of the initiator and of the responder.
    pub carried_over: (u64, u64),
}

/// Runs a Negentropy V1 session between two local sets (at most `max_messages` messages).
pub fn run_negentropy(
    a: &MemoryStore,
    b: &MemoryStore,
    frame_limit: Option<usize>,
    max_messages: usize,
) -> Result<NegRun, String> {
    let mut ra = Reconciler::new(Config::negentropy(frame_limit)).map_err(|e| e.to_string())?;
    let mut rb = Reconciler::new(Config::negentropy(frame_limit)).map_err(|e| e.to_string())?;
    let mut run = NegRun::default();
    let first = ra.initiate(a).map_err(|e| e.to_string())?;
    run.messages.push(first.as_bytes().to_vec());
    let mut next = Some(first);
    let mut to_b = true;
    while let Some(msg) = next.take() {
        if run.messages.len() > max_messages {
            return Err(format!("no end after {max_messages} messages"));
        }
        let step = if to_b {
            rb.handle(b, &msg)
        } else {
            ra.handle(a, &msg)
        }
        .map_err(|e| e.to_string())?;
        if !to_b {
            run.have.extend(step.have);
            run.need_hashes.extend(step.need_hashes);
        }
        if let Some(reply) = step.reply {
            run.messages.push(reply.as_bytes().to_vec());
            next = Some(reply);
        }
        to_b = !to_b;
    }
    if !ra.is_done() {
        return Err("the initiator is still waiting".into());
    }
    run.have.sort_unstable();
    run.need_hashes.sort_unstable();
    run.carried_over = (ra.stats().carried_over, rb.stats().carried_over);
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// dag.json

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct DagFile {
    pub description: String,
    /// The signing keys every entry below is made with.
    pub authors: Vec<AuthorJson>,
    /// Named sets of entries; every case below uses one.
    pub graphs: Vec<GraphJson>,
    pub sequences: Vec<InsertSequence>,
    pub haves: Vec<HavesCase>,
    pub ancestry: Vec<AncestryCase>,
    /// Ancestry requests and answers a decoder must refuse (SPEC 6.3, A.8).
    pub ancestry_invalid: Vec<AncestryInvalid>,
    pub conflicts: Vec<ConflictCase>,
    pub merge_rule: Vec<MergeRuleCase>,
}

/// Bytes that must not decode as an ancestry request (`kind` = `request`) or as the answer
/// to a request with `limit` (`kind` = `answer`), with the `AncestryDecodeError` name.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct AncestryInvalid {
    pub name: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    pub hex: String,
    pub error: String,
}

/// The name an [`AncestryDecodeError`](oplog_protocol::wire::AncestryDecodeError) has in the vectors.
pub fn ancestry_error_name(e: &oplog_protocol::wire::AncestryDecodeError) -> &'static str {
    use oplog_protocol::wire::AncestryDecodeError as E;
    match e {
        E::Truncated(_) => "Truncated",
        E::TrailingBytes(_) => "TrailingBytes",
        E::BadVarint(_) => "BadVarint",
        E::Count { .. } => "Count",
        E::Unsorted(_) => "Unsorted",
        E::Duplicate(_) => "Duplicate",
        E::BadStatus(_) => "BadStatus",
        E::EntryLength(_) => "EntryLength",
        _ => "Unnamed",
    }
}

/// Decodes invalid ancestry bytes and returns the error name (an error if they decode).
pub fn refuse_ancestry(case: &AncestryInvalid) -> Result<String, String> {
    let bytes = unhex(&case.hex)?;
    let got = match case.kind.as_str() {
        "request" => oplog_protocol::wire::AncestryRequest::decode(&bytes).map(drop),
        "answer" => {
            oplog_protocol::wire::AncestryAnswer::decode(&bytes, case.limit.unwrap_or(0)).map(drop)
        }
        other => return Err(format!("{}: unknown kind {other}", case.name)),
    };
    match got {
        Ok(()) => Err(format!("{}: decodes, but must be refused", case.name)),
        Err(e) => Ok(ancestry_error_name(&e).to_string()),
    }
}

/// What [`run_ancestry`] computes: the walk's result and the wire bytes of the request and of
/// the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AncestryRun {
    /// The owed hashes by name and the cut flag, or the `DagError` name.
    pub result: Result<(Vec<String>, bool), String>,
    /// The request as sent (wants sorted by hash).
    pub request_hex: String,
    /// The answer as sent.
    pub answer_hex: String,
}

/// An ed25519 key from a fixed seed.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct AuthorJson {
    pub name: String,
    pub seed_hex: String,
    pub public_key_hex: String,
}

/// Entries referred to by name in the cases that use the graph.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct GraphJson {
    pub name: String,
    pub description: String,
    pub entries: Vec<DagEntryJson>,
}

/// One entry: how it is made (author, hlc, action, parents) and its bytes. `corrupt` entries
/// have the last signature byte XOR-ed with 1 after signing.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct DagEntryJson {
    pub name: String,
    pub author: String,
    pub hlc: String,
    pub action: ActionJson,
    /// Parent hashes in the entry's (ascending) order; they may name entries of no graph.
    pub parents_hex: Vec<String>,
    pub corrupt: bool,
    pub hash_hex: String,
    pub encoded_hex: String,
}

/// Calls on one fresh `MemoryReplica`, then its whole state.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct InsertSequence {
    pub name: String,
    pub description: String,
    pub graph: String,
    pub max_drift_ns: String,
    /// Author names allowed to write, or `null` for any author.
    pub allowed: Option<Vec<String>>,
    /// The caps on held-back and deferred entries (SPEC 6.1, appendix B).
    pub limits: CapsJson,
    pub steps: Vec<InsertStep>,
    pub result: ReplicaStateJson,
}

/// `insert` (a batch of entries, by name, in the given order) or `retry_deferred`, at wall
/// time `now`, with what the call reports.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct InsertStep {
    /// `insert` or `retry_deferred`.
    pub op: String,
    pub now: String,
    /// If present, the allowed authors (by name) from this call on, replacing the sequence's
    /// set (a member removed at run time, SPEC 6.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
    /// The batch (empty for `retry_deferred`).
    pub entries: Vec<String>,
    /// One per entry of the batch in batch order (for `retry_deferred`, per entry that came
    /// due, in key order), as of the end of the call.
    pub outcomes: Vec<OutcomeJson>,
    /// Entries applied by the call, in application order.
    pub applied: Vec<String>,
    /// Entries dropped by this call (held back, earlier or in this call, and found never to
    /// apply; or evicted from the held-back or deferred set by a cap), with the reason, in the
    /// order it happened.
    pub dropped: Vec<DroppedJson>,
    /// Deferred entries that had come due and were admitted first, in key order.
    pub due: Vec<String>,
}

/// The caps of a replica (`oplog_protocol::replica::Limits` without the drift bound).
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
#[serde(deny_unknown_fields)]
pub struct CapsJson {
    pub max_held_per_author: u64,
    pub max_held_bytes: u64,
    pub max_deferred_per_author: u64,
    pub max_deferred_bytes: u64,
}

impl CapsJson {
    /// The defaults of `oplog_protocol::replica::Limits`.
    pub fn defaults() -> Self {
        let l = oplog_protocol::replica::Limits::default();
        CapsJson {
            max_held_per_author: l.max_held_per_author,
            max_held_bytes: l.max_held_bytes,
            max_deferred_per_author: l.max_deferred_per_author,
            max_deferred_bytes: l.max_deferred_bytes,
        }
    }

    /// These caps with drift bound `max_drift`.
    pub fn limits(&self, max_drift: std::time::Duration) -> oplog_protocol::replica::Limits {
        let mut l = oplog_protocol::replica::Limits::with_drift(max_drift);
        l.max_held_per_author = self.max_held_per_author;
        l.max_held_bytes = self.max_held_bytes;
        l.max_deferred_per_author = self.max_deferred_per_author;
        l.max_deferred_bytes = self.max_deferred_bytes;
        l
    }
}

/// What happened to one entry.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct OutcomeJson {
    pub entry: String,
    /// `Applied`, `Duplicate`, `HeldBack`, `Deferred` or `Rejected`.
    pub outcome: String,
    /// `HeldBack`: the parents not applied yet, ascending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_hex: Option<Vec<String>>,
    /// Deferred: the wall time from which it is admissible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Rejected: the `InsertError` name, see [`insert_error_name`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A held-back entry dropped, with the `InsertError` name.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct DroppedJson {
    pub entry: String,
    pub error: String,
}

/// A replica's state: applied entries in key order, heads and held-back entries (by name,
/// ascending by hash), hashes to fetch, deferred entries with `not_before`, the LWW view.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ReplicaStateJson {
    pub applied: Vec<String>,
    pub heads: Vec<String>,
    pub held_back: Vec<String>,
    pub missing_hex: Vec<String>,
    pub deferred: Vec<DeferredJson>,
    pub view: Vec<RegisterJson>,
}

/// A deferred entry.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct DeferredJson {
    pub entry: String,
    pub not_before: String,
}

/// One register of the last-writer-wins view and its winning write.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct RegisterJson {
    pub bucket: String,
    pub key: String,
    pub winner: String,
    /// Whether the winner is a Delete: the register reads as absent.
    pub tombstone: bool,
}

/// `haves_for_request(view, heads, max, oplog_protocol::dag::DEFAULT_MAX_VISITS)` over every entry of a graph, applied.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct HavesCase {
    pub name: String,
    pub description: String,
    pub graph: String,
    pub heads: Vec<String>,
    pub max: usize,
    pub haves: Vec<String>,
}

/// `ancestry_to_send(view, want, have, limit, oplog_protocol::dag::DEFAULT_MAX_VISITS)` over every entry of a graph, applied.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct AncestryCase {
    pub name: String,
    pub description: String,
    pub graph: String,
    /// Names of graph entries, or 64-hex for hashes the graph does not hold.
    pub want: Vec<String>,
    pub have: Vec<String>,
    pub limit: usize,
    /// The answerer's visit budget (decimal).
    pub max_visits: String,
    /// The answerer's size limit for the encoded answer.
    pub max_answer_bytes: usize,
    /// The answer, in order; `null` when the call fails.
    pub hashes: Option<Vec<String>>,
    pub truncated: Option<bool>,
    /// The `DagError` name when the call fails (`Missing`, `VisitBudget`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The request on the wire: the wants sorted by hash, the haves as given, the limit.
    pub request_hex: String,
    /// The answer on the wire (status, then entries or the reason), byte for byte.
    pub answer_hex: String,
}

/// `merge_conflicts(view, parents, oplog_protocol::dag::DEFAULT_MAX_VISITS)` over every entry of a graph, applied.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ConflictCase {
    pub name: String,
    pub description: String,
    pub graph: String,
    pub parents: Vec<String>,
    pub conflicts: Vec<ConflictJson>,
}

/// One register in conflict.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ConflictJson {
    pub bucket: String,
    pub key: String,
    /// The distinct branch winners, ascending in last-writer-wins order.
    pub branch_winners: Vec<String>,
    pub winner: String,
}

/// `should_merge(heads, me)` and `merge_parents(heads)`. Heads are given explicitly, or as
/// `heads_recipe = [n, hlc_base]`: head `i < n` is `(hlc_base + i, BLAKE3(i as u64 LE))`
/// written by author `i % 2` of `head_authors`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct MergeRuleCase {
    pub name: String,
    pub description: String,
    pub heads: Vec<HeadJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads_recipe: Option<HeadsRecipe>,
    /// Author name of the node asking.
    pub me: String,
    pub should_merge: bool,
    /// Hashes of the parents, ascending; with a recipe, the recipe indices instead.
    pub merge_parents_hex: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_parents_indices: Option<Vec<u64>>,
}

/// A head: its key and author.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct HeadJson {
    pub hlc: String,
    pub hash_hex: String,
    pub author: String,
}

/// Many heads: head `i < count` is `(hlc_base + i, BLAKE3(i as u64 LE))`, by
/// `authors[i % authors.len()]`.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct HeadsRecipe {
    pub count: u64,
    pub hlc_base: String,
    pub authors: Vec<String>,
}

/// The name an [`InsertError`](oplog_protocol::replica::InsertError) has in the vectors:
/// `Invalid(<EntryError name>)`, `NotAllowed`, `ParentOrder` or `AncestorRejected`.
pub fn insert_error_name(e: &oplog_protocol::replica::InsertError) -> String {
    use oplog_protocol::replica::InsertError as E;
    match e {
        E::Invalid(inner) => format!("Invalid({})", entry_error_name(inner)),
        E::NotAllowed(_) => "NotAllowed".into(),
        E::ParentOrder(_) => "ParentOrder".into(),
        E::AncestorRejected(_) => "AncestorRejected".into(),
        E::HeldBackFull => "HeldBackFull".into(),
        E::DeferredFull => "DeferredFull".into(),
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// dag.json: one function per DAG rule, shared by the generator (which fills in the outputs)
// and the conformance test (which recomputes them). When the replica API changes, these are
// the only calls to adapt.

/// A graph's entries, decoded from their bytes, with names both ways.
pub struct Graph {
    /// Entries by name.
    pub by_name: std::collections::BTreeMap<String, LogEntry>,
    /// Names by hash.
    pub names: std::collections::HashMap<Hash, String>,
}

impl Graph {
    /// Decodes every entry's `encoded_hex` (corrupt ones too: they decode, and fail
    /// verification) and checks its hash.
    pub fn new(g: &GraphJson) -> Result<Graph, String> {
        let mut by_name = std::collections::BTreeMap::new();
        let mut names = std::collections::HashMap::new();
        for e in &g.entries {
            let entry = LogEntry::<Op>::decode(&unhex(&e.encoded_hex)?)
                .map_err(|err| format!("{}: {err}", e.name))?;
            if hx(&entry.hash.0) != e.hash_hex {
                return Err(format!("{}: hash differs", e.name));
            }
            names.insert(entry.hash, e.name.clone());
            if by_name.insert(e.name.clone(), entry).is_some() {
                return Err(format!("{}: name used twice", e.name));
            }
        }
        Ok(Graph { by_name, names })
    }

    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Result<&LogEntry, String> {
        self.by_name
            .get(name)
            .ok_or_else(|| format!("no entry {name}"))
    }

    /// The name of a hash, or its hex if the graph does not hold it.
    pub fn name(&self, h: &Hash) -> String {
        self.names.get(h).cloned().unwrap_or_else(|| hx(&h.0))
    }

    /// The hash a name stands for: an entry name or 64 hex digits.
    pub fn hash(&self, name: &str) -> Result<Hash, String> {
        match self.by_name.get(name) {
            Some(e) => Ok(e.hash),
            None => unhex32(name).map(Hash),
        }
    }

    /// A replica holding every entry of the graph, all applied (one batch, `now` far enough
    /// ahead that nothing is deferred).
    pub fn replica(&self) -> Result<MemoryReplica<Op>, String> {
        let mut r = MemoryReplica::new();
        let rep = r.insert(
            self.by_name.values().cloned(),
            u64::MAX,
            Duration::ZERO,
            None,
        );
        if r.len() != self.by_name.len() {
            return Err(format!("graph does not apply fully: {:?}", rep.outcomes));
        }
        Ok(r)
    }
}

fn outcome_json(g: &Graph, hash: &Hash, o: &InsertOutcome) -> Result<OutcomeJson, String> {
    let mut j = OutcomeJson {
        entry: g.name(hash),
        outcome: String::new(),
        missing_hex: None,
        not_before: None,
        error: None,
    };
    j.outcome = match o {
        InsertOutcome::Applied => "Applied",
        InsertOutcome::Duplicate => "Duplicate",
        InsertOutcome::HeldBack { missing } => {
            j.missing_hex = Some(missing.iter().map(|h| hx(&h.0)).collect());
            "HeldBack"
        }
        InsertOutcome::Deferred { not_before } => {
            j.not_before = Some(dec(*not_before));
            "Deferred"
        }
        InsertOutcome::Rejected(e) => {
            j.error = Some(insert_error_name(e));
            "Rejected"
        }
        other => return Err(format!("outcome {other:?} has no vector name yet")),
    }
    .into();
    Ok(j)
}

/// Rule 6.1 (apply order, held back, deferred, refused): runs the steps' inputs (`op`, `now`,
/// `entries`) on a fresh replica and returns the steps with their reported outputs filled in,
/// and the final state (6.2 heads, 6.4 view).
pub fn run_insert_sequence(
    g: &Graph,
    authors: &[AuthorJson],
    seq: &InsertSequence,
) -> Result<(Vec<InsertStep>, ReplicaStateJson), String> {
    let drift = Duration::from_nanos(num(&seq.max_drift_ns)?);
    let ids = |list: &[String]| -> Result<HashSet<NodeId>, String> {
        list.iter()
            .map(|n| {
                authors
                    .iter()
                    .find(|a| &a.name == n)
                    .ok_or_else(|| format!("no author {n}"))
                    .and_then(|a| unhex32(&a.public_key_hex).map(NodeId))
            })
            .collect()
    };
    let mut allowed: Option<HashSet<NodeId>> = seq.allowed.as_deref().map(ids).transpose()?;
    let mut r = MemoryReplica::<Op>::with_limits(seq.limits.limits(drift));
    let mut steps = Vec::new();
    for s in &seq.steps {
        let now = num(&s.now)?;
        if let Some(list) = &s.allowed {
            allowed = Some(ids(list)?);
        }
        let report = match s.op.as_str() {
            "insert" => {
                let batch: Vec<LogEntry> = s
                    .entries
                    .iter()
                    .map(|n| g.entry(n).cloned())
                    .collect::<Result<_, _>>()?;
                r.insert(batch, now, drift, allowed.as_ref())
            }
            "retry_deferred" => r.retry_deferred(now, allowed.as_ref()),
            other => return Err(format!("unknown op {other}")),
        };
        steps.push(InsertStep {
            op: s.op.clone(),
            now: s.now.clone(),
            allowed: s.allowed.clone(),
            entries: s.entries.clone(),
            outcomes: report
                .outcomes
                .iter()
                .map(|(h, o)| outcome_json(g, h, o))
                .collect::<Result<_, _>>()?,
            applied: report.applied.iter().map(|h| g.name(h)).collect(),
            dropped: report
                .dropped
                .iter()
                .map(|(h, e)| DroppedJson {
                    entry: g.name(h),
                    error: insert_error_name(e),
                })
                .collect(),
            due: report.due.iter().map(|h| g.name(h)).collect(),
        });
    }
    Ok((steps, replica_state(g, &r)))
}

/// The state of a replica in its JSON form.
pub fn replica_state(g: &Graph, r: &MemoryReplica<Op>) -> ReplicaStateJson {
    let mut held: Vec<Hash> = r.held_back().map(|e| e.hash).collect();
    held.sort_unstable();
    let mut deferred: Vec<(Hash, u64)> = r.deferred().map(|(e, t)| (e.hash, t)).collect();
    deferred.sort_unstable();
    ReplicaStateJson {
        applied: r.keys().map(|k| g.name(&k.hash)).collect(),
        heads: r.heads().hashes().iter().map(|h| g.name(h)).collect(),
        held_back: held.iter().map(|h| g.name(h)).collect(),
        missing_hex: r.missing().iter().map(|h| hx(&h.0)).collect(),
        deferred: deferred
            .iter()
            .map(|(h, t)| DeferredJson {
                entry: g.name(h),
                not_before: dec(*t),
            })
            .collect(),
        view: r
            .view()
            .iter()
            .map(|((bucket, key), w)| RegisterJson {
                bucket: bucket.clone(),
                key: key.clone(),
                winner: g.name(&w.key.hash),
                tombstone: w.is_delete,
            })
            .collect(),
    }
}

/// Rule 6.3, the request side: `haves_for_request` over the graph.
pub fn run_haves(g: &Graph, heads: &[String], max: usize) -> Result<Vec<String>, String> {
    let r = g.replica()?;
    let heads: Vec<Hash> = heads.iter().map(|n| g.hash(n)).collect::<Result<_, _>>()?;
    let out = dag::haves_for_request(&r, &heads, max, oplog_protocol::dag::DEFAULT_MAX_VISITS)
        .map_err(|e| e.to_string())?;
    Ok(out.iter().map(|h| g.name(h)).collect())
}

/// Rule 6.3, the answer side: `ancestry_to_send` over the graph. `Err` carries the `DagError`
/// name when the call fails.
pub fn run_ancestry(
    g: &Graph,
    want: &[String],
    have: &[String],
    limit: usize,
    max_visits: u64,
    max_answer_bytes: usize,
) -> Result<AncestryRun, String> {
    let r = g.replica()?;
    let want: Vec<Hash> = want.iter().map(|n| g.hash(n)).collect::<Result<_, _>>()?;
    let have: Vec<Hash> = have.iter().map(|n| g.hash(n)).collect::<Result<_, _>>()?;
    let result = match dag::ancestry_to_send(&r, &want, &have, limit, max_visits) {
        Ok(a) => Ok((a.hashes.iter().map(|h| g.name(h)).collect(), a.truncated)),
        Err(dag::DagError::Missing(_)) => Err("Missing".into()),
        Err(dag::DagError::VisitBudget { .. }) => Err("VisitBudget".into()),
        Err(e) => return Err(e.to_string()),
    };
    let limit = u32::try_from(limit).map_err(|e| e.to_string())?;
    let req =
        oplog_protocol::wire::AncestryRequest::new(want, have, limit).map_err(|e| e.to_string())?;
    let answer =
        oplog_protocol::wire::AncestryAnswer::answer(&r, &req, max_visits, max_answer_bytes)
            .map_err(|e| e.to_string())?;
    let answer_bytes = answer.encode();
    // the bytes read back as what was sent
    if oplog_protocol::wire::AncestryAnswer::decode(&answer_bytes, req.limit) != Ok(answer) {
        return Err("answer does not decode to itself".into());
    }
    Ok(AncestryRun {
        result,
        request_hex: hx(&req.encode()),
        answer_hex: hx(&answer_bytes),
    })
}

/// Rule 6.5, conflicts: `merge_conflicts` over the graph.
pub fn run_conflicts(g: &Graph, parents: &[String]) -> Result<Vec<ConflictJson>, String> {
    let r = g.replica()?;
    let parents: Vec<Hash> = parents
        .iter()
        .map(|n| g.hash(n))
        .collect::<Result<_, _>>()?;
    let out = dag::merge_conflicts(&r, &parents, oplog_protocol::dag::DEFAULT_MAX_VISITS)
        .map_err(|e| e.to_string())?;
    Ok(out
        .iter()
        .map(|c| ConflictJson {
            bucket: c.key.0.clone(),
            key: c.key.1.clone(),
            branch_winners: c
                .branch_winners
                .iter()
                .map(|w| g.name(&w.key.hash))
                .collect(),
            winner: g.name(&c.winner.key.hash),
        })
        .collect())
}

/// The heads of a merge-rule case, with the author names resolved.
pub fn merge_rule_heads(
    authors: &[AuthorJson],
    c: &MergeRuleCase,
) -> Result<Vec<(EntryKey, NodeId)>, String> {
    let node = |n: &str| {
        authors
            .iter()
            .find(|a| a.name == n)
            .ok_or_else(|| format!("no author {n}"))
            .and_then(|a| unhex32(&a.public_key_hex).map(NodeId))
    };
    let mut heads = Vec::new();
    for h in &c.heads {
        heads.push((
            EntryKey::new(num(&h.hlc)?, unhex32(&h.hash_hex)?),
            node(&h.author)?,
        ));
    }
    if let Some(r) = &c.heads_recipe {
        let base = num(&r.hlc_base)?;
        if r.authors.is_empty() {
            return Err("recipe without authors".into());
        }
        for (i, author) in (0..r.count).zip(r.authors.iter().cycle()) {
            heads.push((EntryKey::new(base + i, ih(i)), node(author)?));
        }
    }
    Ok(heads)
}

/// The merge rule of 6.5: `should_merge(heads, me)` and `merge_parents(heads)`.
pub fn run_merge_rule(heads: &[(EntryKey, NodeId)], me: &NodeId) -> (bool, Vec<Hash>) {
    (dag::should_merge(heads, me), dag::merge_parents(heads))
}

// ---------------------------------------------------------------------------------------------
// failures.json: replaying a broken session

/// Replays a failing session: both sides are built from the file; every honest message must be
/// what the sender produces, and the last message must make its receiver fail. Returns the
/// receiver's error: the `ReconcileError` name and, for `Decode`, the `DecodeError` name.
pub fn replay_failure(c: &FailureCase) -> Result<(String, Option<String>), String> {
    let build = |s: &SetJson| -> Result<MemoryStore, String> {
        let set = c.key_recipe.keys(&s.runs)?;
        if set.len() != s.count {
            return Err(format!("{}: set size {} != {}", c.name, set.len(), s.count));
        }
        if let Some(k) = &s.keys {
            if keys(k)? != set.iter().copied().collect::<Vec<_>>() {
                return Err(format!("{}: explicit keys differ from the recipe", c.name));
            }
        }
        Ok(set.into_iter().collect())
    };
    let set_a = build(&c.initiator_set)?;
    let set_b = build(&c.responder_set)?;
    let mut ra = Reconciler::new(c.config_initiator.config()?).map_err(|e| e.to_string())?;
    let mut rb = Reconciler::new(c.config_responder.config()?).map_err(|e| e.to_string())?;
    let msgs: Vec<Vec<u8>> = c
        .messages
        .iter()
        .map(|m| unhex(&m.hex))
        .collect::<Result<_, _>>()?;
    let last = msgs.len().checked_sub(1).ok_or("no messages")?;
    for (i, m) in c.messages.iter().enumerate() {
        let want = if i % 2 == 0 { "initiator" } else { "responder" };
        if m.from != want {
            return Err(format!("{}: message {i} is from {}", c.name, m.from));
        }
    }
    let first = ra.initiate(&set_a).map_err(|e| e.to_string())?;
    if last > 0 && first.as_bytes() != msgs[0] {
        return Err(format!("{}: message 0 is not the initiator's", c.name));
    }
    for (i, bytes) in msgs.iter().enumerate() {
        let msg = oplog_protocol::Message::from_bytes(bytes.clone());
        let step = if i % 2 == 0 {
            rb.handle(&set_b, &msg)
        } else {
            ra.handle(&set_a, &msg)
        };
        match step {
            Err(e) if i == last => {
                let inner = match &e {
                    oplog_protocol::ReconcileError::Decode(d) => {
                        Some(decode_error_name(d).to_string())
                    }
                    _ => None,
                };
                return Ok((reconcile_error_name(&e).to_string(), inner));
            }
            Err(e) => return Err(format!("{}: honest message {i} refused: {e}", c.name)),
            Ok(_) if i == last => return Err(format!("{}: the bad message was accepted", c.name)),
            Ok(step) => {
                let reply = step.reply.map(oplog_protocol::Message::into_bytes);
                if i + 1 < last && reply.as_ref() != Some(&msgs[i + 1]) {
                    return Err(format!(
                        "{}: message {} is not the honest reply",
                        c.name,
                        i + 1
                    ));
                }
                if reply.is_none() {
                    return Err(format!("{}: no reply to message {i}", c.name));
                }
            }
        }
    }
    Err(format!("{}: ended without an error", c.name))
}

// ---------------------------------------------------------------------------------------------
// session.json: the session layer (SPEC 9), frames and whole sessions over `MemoryReplica`s

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct SessionFile {
    pub description: String,
    /// The signing keys of the graph's entries.
    pub authors: Vec<AuthorJson>,
    /// Every entry any case below uses, by name.
    pub graph: GraphJson,
    pub frames: Vec<FrameCase>,
    pub transcripts: Vec<SessionTranscript>,
    pub invalid: Vec<InvalidFrameCase>,
}

/// The [`SessionConfig`] values a side uses; every other field is its default (the default
/// reconciler configuration, `idle_timeout` 30 s, `max_duration` 1 h: no vector reaches a time
/// budget).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfigJson {
    pub max_frame_bytes: usize,
    pub batch_bytes: usize,
    pub max_ancestry_requests: u32,
    pub ancestry_limit: u32,
    pub ancestry_visits: String,
    pub max_bytes_received: String,
    /// The reconciler's fingerprint salt if this side opens the session (spec 7.1).
    pub salt_hex: String,
}

impl SessionConfigJson {
    /// The defaults with `batch_bytes` set.
    pub fn with_batch(batch_bytes: usize) -> Self {
        let d = SessionConfig::default();
        SessionConfigJson {
            max_frame_bytes: d.max_frame_bytes,
            batch_bytes,
            max_ancestry_requests: d.max_ancestry_requests,
            ancestry_limit: d.ancestry_limit,
            ancestry_visits: dec(d.ancestry_visits),
            max_bytes_received: dec(d.max_bytes_received),
            salt_hex: hx(&VECTOR_SALT.0),
        }
    }

    /// The configuration these values stand for.
    pub fn config(&self) -> Result<SessionConfig, String> {
        let mut c = SessionConfig::default();
        c.max_frame_bytes = self.max_frame_bytes;
        c.batch_bytes = self.batch_bytes;
        c.max_ancestry_requests = self.max_ancestry_requests;
        c.ancestry_limit = self.ancestry_limit;
        c.ancestry_visits = num(&self.ancestry_visits)?;
        c.max_bytes_received = num(&self.max_bytes_received)?;
        c.reconcile.salt = Some(salt(&self.salt_hex)?);
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// One side of a session before it starts.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct SessionSideJson {
    /// Graph entries given to one `insert` call (now = 2^64 - 1, drift 0, no allowed set:
    /// nothing is deferred) before the session; parents may be missing (held back).
    pub store: Vec<String>,
    /// The keys the session reconciles over (SPEC 8.1), by name; `null`: the entries applied
    /// after the insert.
    pub snapshot: Option<Vec<String>>,
    pub config: SessionConfigJson,
}

/// A frame's meaning (SPEC 9.2), tagged by `type`. Entries and hashes are graph names (64
/// hex digits for a hash the graph does not hold).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum DecodedFrame {
    /// `01`: a reconciliation message of `message_bytes` bytes (its tag is the type byte).
    #[serde(rename = "MESSAGE")]
    Message { message_bytes: usize },
    /// `02`: entries, in frame order.
    #[serde(rename = "ENTRIES")]
    Entries { entries: Vec<String> },
    /// `03`: an ancestry request (SPEC 6.3).
    #[serde(rename = "ANCESTRY_REQUEST")]
    AncestryRequest {
        want: Vec<String>,
        have: Vec<String>,
        limit: u32,
    },
    /// `04`: an ancestry answer: its status, and its entries (status 0 and 1), the unknown
    /// want (2) or the answerer's visit budget (3, decimal).
    #[serde(rename = "ANCESTRY_ANSWER")]
    AncestryAnswer {
        status: u8,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        entries: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        unknown_want: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        budget: Option<String>,
    },
    /// `05`: the end of the session, with the code's name (the `EndCode` variant).
    #[serde(rename = "END")]
    End {
        code: u8,
        code_name: String,
        reason: String,
    },
}

/// A frame with its sender.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct SessionFrameJson {
    /// `initiator` or `responder`.
    pub from: String,
    /// The whole frame: length header, type byte, payload.
    pub hex: String,
    pub decoded: DecodedFrame,
}

/// One frame on its own, as a session produced it: `source` is `close` (a fresh responder
/// over an empty set, `close(code, close_reason)`, then its first `poll_transmit`) or
/// `transcript` (frame `index` of the transcript named `transcript`).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FrameCase {
    pub name: String,
    pub description: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub close_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub transcript: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<usize>,
    pub hex: String,
    pub decoded: DecodedFrame,
}

/// A whole session, every frame in the order sent (see the file's description for the
/// schedule), and each side's outcome.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct SessionTranscript {
    pub name: String,
    pub description: String,
    pub initiator: SessionSideJson,
    pub responder: SessionSideJson,
    pub frames: Vec<SessionFrameJson>,
    pub initiator_result: SessionResultJson,
    pub responder_result: SessionResultJson,
}

/// A side's counters (`SyncReport`, SPEC 9.7) and store at the end of a session.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionResultJson {
    /// The `EndCode` name.
    pub end: String,
    pub ended_by_peer: bool,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub entries_sent: u64,
    pub entries_received: u64,
    pub entry_bytes_sent: u64,
    pub entry_bytes_received: u64,
    pub ancestry_requests_sent: u64,
    pub ancestry_requests_answered: u64,
    pub round_trips: u64,
    pub overhead_bytes: u64,
    /// Applied entries, in key order.
    pub applied: Vec<String>,
    /// Held-back entries, ascending by hash.
    pub held_back: Vec<String>,
}

/// Frames a peer sends that must end the session: side `side` of transcript `transcript` is
/// replayed through the transcript's first `after` frames, then given `frames` in order
/// (whole frames; a frame whose length header is refused is given as the header alone). All
/// but the last are accepted; the last makes the side send an END frame with `code` as its
/// next frame, and nothing of that frame is applied. `config`, when given, replaces the side's
/// config (the replayed frames must come out the same).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct InvalidFrameCase {
    pub name: String,
    pub description: String,
    pub transcript: String,
    pub side: String,
    pub after: usize,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub config: Option<SessionConfigJson>,
    pub frames: Vec<String>,
    pub code: u8,
    pub code_name: String,
}

/// The name an [`EndCode`] has in the vectors: its variant name (`Other` for codes without one).
pub fn end_code_name(code: u8) -> &'static str {
    match EndCode::from_u8(code) {
        EndCode::Done => "Done",
        EndCode::Protocol => "Protocol",
        EndCode::FrameTooLarge => "FrameTooLarge",
        EndCode::Limit => "Limit",
        EndCode::InvalidEntry => "InvalidEntry",
        EndCode::Refused => "Refused",
        EndCode::Timeout => "Timeout",
        EndCode::Busy => "Busy",
        EndCode::Internal => "Internal",
        EndCode::Shutdown => "Shutdown",
        EndCode::ConnectionLost => "ConnectionLost",
        _ => "Other",
    }
}

/// A varint of SPEC section 2 (minimal, at most 10 bytes), read from `b` at `*at`.
fn read_varint(b: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let byte = *b.get(*at).ok_or("varint truncated")?;
        *at += 1;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err("varint above 2^64 - 1".into());
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err("varint not minimal".into());
            }
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// Decodes a whole frame by SPEC 9.2 alone (not with the session's own parser): the length
/// header must match, and each payload must decode completely.
pub fn decode_frame(g: &Graph, frame: &[u8]) -> Result<DecodedFrame, String> {
    let header: [u8; 4] = frame
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or("frame shorter than its header")?;
    let body = &frame[4..];
    if u32::from_be_bytes(header) as usize != body.len() {
        return Err(format!(
            "header says {} bytes, the body has {}",
            u32::from_be_bytes(header),
            body.len()
        ));
    }
    let (&kind, payload) = body.split_first().ok_or("empty frame")?;
    let entry_names = |raw: &[Vec<u8>]| -> Result<Vec<String>, String> {
        raw.iter()
            .map(|e| {
                LogEntry::<Op>::decode(e)
                    .map(|e| g.name(&e.hash))
                    .map_err(|err| format!("entry does not decode: {err}"))
            })
            .collect()
    };
    Ok(match kind {
        0x01 => DecodedFrame::Message {
            message_bytes: body.len(),
        },
        0x02 => {
            let mut at = 0;
            let m = read_varint(payload, &mut at)?;
            if m == 0 {
                return Err("ENTRIES with no entry".into());
            }
            let mut raw = Vec::new();
            for _ in 0..m {
                let len =
                    usize::try_from(read_varint(payload, &mut at)?).map_err(|e| e.to_string())?;
                let end = at
                    .checked_add(len)
                    .filter(|e| *e <= payload.len())
                    .ok_or("entry truncated")?;
                raw.push(payload[at..end].to_vec());
                at = end;
            }
            if at != payload.len() {
                return Err("bytes after the last entry".into());
            }
            DecodedFrame::Entries {
                entries: entry_names(&raw)?,
            }
        }
        0x03 => {
            let req = oplog_protocol::wire::AncestryRequest::decode(payload)
                .map_err(|e| e.to_string())?;
            DecodedFrame::AncestryRequest {
                want: req.want.iter().map(|h| g.name(h)).collect(),
                have: req.have.iter().map(|h| g.name(h)).collect(),
                limit: req.limit,
            }
        }
        0x04 => {
            use oplog_protocol::wire::AncestryAnswer as A;
            let status = *payload.first().ok_or("answer without status")?;
            match A::decode(payload, oplog_protocol::wire::MAX_ANCESTRY_LIMIT)
                .map_err(|e| e.to_string())?
            {
                A::Entries { entries, .. } => DecodedFrame::AncestryAnswer {
                    status,
                    entries: Some(entry_names(&entries)?),
                    unknown_want: None,
                    budget: None,
                },
                A::UnknownWant(h) => DecodedFrame::AncestryAnswer {
                    status,
                    entries: None,
                    unknown_want: Some(g.name(&h)),
                    budget: None,
                },
                A::OverBudget { budget } => DecodedFrame::AncestryAnswer {
                    status,
                    entries: None,
                    unknown_want: None,
                    budget: Some(dec(budget)),
                },
            }
        }
        0x05 => {
            let code = *payload.first().ok_or("END without a code")?;
            let mut at = 1;
            let len = read_varint(payload, &mut at)?;
            if len > oplog_protocol::session::MAX_REASON_BYTES as u64 {
                return Err("reason over 256 bytes".into());
            }
            let end = at + usize::try_from(len).map_err(|e| e.to_string())?;
            let reason = payload.get(at..end).ok_or("reason truncated")?;
            if end != payload.len() {
                return Err("bytes after the reason".into());
            }
            DecodedFrame::End {
                code,
                code_name: end_code_name(code).into(),
                reason: String::from_utf8(reason.to_vec()).map_err(|e| e.to_string())?,
            }
        }
        other => return Err(format!("unknown frame type {other:#04x}")),
    })
}

/// The instant every session of the vectors runs at: no vector reaches a time budget.
fn session_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One side of a session being run or replayed: the session, its store, and its end.
pub struct SessionSide {
    pub role: Role,
    pub session: Session<Op, MemoryStore>,
    pub store: MemoryReplica<Op>,
    /// The report of the `Done` or `Ended` event, with the code, reason and `by_peer`.
    pub ended: Option<(SyncReport, EndCode, String, bool)>,
    /// Entries handed out by `Apply` events so far.
    pub applied_events: usize,
}

impl SessionSide {
    /// A side as `side` describes it, its session not started on anything yet.
    pub fn new(g: &Graph, side: &SessionSideJson, role: Role) -> Result<Self, String> {
        let mut store = MemoryReplica::new();
        let batch: Vec<LogEntry> = side
            .store
            .iter()
            .map(|n| g.entry(n).cloned())
            .collect::<Result<_, _>>()?;
        store.insert(batch, u64::MAX, Duration::ZERO, None);
        let snapshot: MemoryStore = match &side.snapshot {
            None => store.key_set(),
            Some(names) => names
                .iter()
                .map(|n| g.entry(n).map(LogEntry::key))
                .collect::<Result<_, _>>()?,
        };
        let session = Session::new(side.config.config()?, role, snapshot, session_epoch())
            .map_err(|e| e.to_string())?;
        Ok(SessionSide {
            role,
            session,
            store,
            ended: None,
            applied_events: 0,
        })
    }

    /// The side's name in the vectors.
    pub fn name(&self) -> &'static str {
        role_name(self.role)
    }

    /// Takes every event out: stores what it must apply (as the sender of SPEC 6.1 would),
    /// records the end. Returns the number of entries applied by these events.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Apply(entries) => {
                    n += entries.len();
                    let entries: Vec<LogEntry> =
                        entries.into_iter().map(VerifiedEntry::into_inner).collect();
                    self.store.insert(entries, u64::MAX, Duration::ZERO, None);
                }
                Event::Done(r) => self.ended = Some((r, EndCode::Done, String::new(), false)),
                Event::Ended {
                    code,
                    reason,
                    by_peer,
                    report,
                } => self.ended = Some((report, code, reason, by_peer)),
                _ => {}
            }
        }
        self.applied_events += n;
        n
    }

    /// The next frame this side sends, its events drained.
    pub fn transmit(&mut self) -> Option<Vec<u8>> {
        let f = self.session.poll_transmit(&self.store, session_epoch());
        self.drain();
        f
    }

    /// Gives this side a whole frame from its peer; `false` if it refused the length header.
    pub fn receive(&mut self, frame: &[u8]) -> Result<bool, String> {
        let header: [u8; 4] = frame
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or("frame shorter than its header")?;
        let len = u32::from_be_bytes(header);
        if !self.session.handle_frame_len(len) {
            self.drain();
            return Ok(false);
        }
        if frame.len() - 4 != len as usize {
            return Err(format!(
                "header says {len} bytes, the frame holds {}",
                frame.len() - 4
            ));
        }
        // Both ways in: a responder gets its frames through `Prepared` (entries verified
        // before the session sees them, as the node's driver does), an initiator through
        // `handle_frame`; every vector must come out the same either way.
        let body = frame[4..].to_vec();
        match self.role {
            Role::Responder => self
                .session
                .handle_prepared(Prepared::new(body), session_epoch()),
            Role::Initiator => self.session.handle_frame(body, session_epoch()),
        }
        self.drain();
        Ok(true)
    }

    /// The side's counters and store now.
    pub fn result(&self, g: &Graph) -> SessionResultJson {
        let r = self.session.report();
        let mut held: Vec<Hash> = self.store.held_back().map(|e| e.hash).collect();
        held.sort_unstable();
        SessionResultJson {
            end: r
                .end
                .map_or("running".into(), |c| end_code_name(c.to_u8()).into()),
            ended_by_peer: r.ended_by_peer,
            frames_sent: r.frames_sent,
            frames_received: r.frames_received,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            messages_sent: r.messages_sent,
            messages_received: r.messages_received,
            entries_sent: r.entries_sent,
            entries_received: r.entries_received,
            entry_bytes_sent: r.entry_bytes_sent,
            entry_bytes_received: r.entry_bytes_received,
            ancestry_requests_sent: r.ancestry_requests_sent,
            ancestry_requests_answered: r.ancestry_requests_answered,
            round_trips: r.round_trips(),
            overhead_bytes: r.overhead_bytes(),
            applied: self.store.keys().map(|k| g.name(&k.hash)).collect(),
            held_back: held.iter().map(|h| g.name(h)).collect(),
        }
    }
}

/// `initiator` or `responder`.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Initiator => "initiator",
        Role::Responder => "responder",
    }
}

/// Runs a session between the two sides of `t` on the schedule of the vectors: the side whose
/// turn it is sends every frame it has (`poll_transmit` until nothing), then the other side
/// is given all of them in order, and so on, until both are finished. Returns the frames with
/// their senders (decoded) and both sides' results.
pub fn run_session(
    g: &Graph,
    t: &SessionTranscript,
) -> Result<(Vec<SessionFrameJson>, [SessionResultJson; 2]), String> {
    let mut sides = [
        SessionSide::new(g, &t.initiator, Role::Initiator)?,
        SessionSide::new(g, &t.responder, Role::Responder)?,
    ];
    let mut frames = Vec::new();
    let mut turn = 0usize;
    let mut idle = 0;
    while !sides.iter().all(|s| s.session.is_finished()) {
        let mut sent = Vec::new();
        while let Some(f) = sides[turn].transmit() {
            sent.push(f);
            if sent.len() > 10_000 {
                return Err(format!("{}: a side sends without end", t.name));
            }
        }
        if sent.is_empty() {
            idle += 1;
            if idle == 2 {
                return Err(format!("{}: the sessions stalled", t.name));
            }
        } else {
            idle = 0;
        }
        for f in sent {
            if !sides[1 - turn].receive(&f)? {
                return Err(format!("{}: an honest frame was refused", t.name));
            }
            frames.push(SessionFrameJson {
                from: role_name(sides[turn].role).into(),
                hex: hx(&f),
                decoded: decode_frame(g, &f)?,
            });
        }
        turn = 1 - turn;
    }
    if frames.len() > 1_000 {
        return Err(format!("{}: too many frames", t.name));
    }
    let results = [sides[0].result(g), sides[1].result(g)];
    Ok((frames, results))
}

/// Replays side `role` of `t` through its first `upto` frames: each frame of the peer is
/// given to it, and each of its own must be exactly what it sends next; where the peer's
/// frames begin, it must have nothing more to send.
pub fn replay_side(
    g: &Graph,
    t: &SessionTranscript,
    role: Role,
    upto: usize,
) -> Result<SessionSide, String> {
    let side_json = match role {
        Role::Initiator => &t.initiator,
        Role::Responder => &t.responder,
    };
    let mut side = SessionSide::new(g, side_json, role)?;
    let me = role_name(role);
    let mut own_before = true;
    for (i, f) in t.frames.iter().enumerate().take(upto) {
        let bytes = unhex(&f.hex)?;
        if f.from == me {
            let got = side
                .transmit()
                .ok_or_else(|| format!("{} {me}: frame {i} is not sent", t.name))?;
            if got != bytes {
                return Err(format!(
                    "{} {me}: frame {i} differs: sent {}, the vector has {}",
                    t.name,
                    hx(&got),
                    f.hex
                ));
            }
            own_before = true;
        } else {
            if own_before {
                if let Some(extra) = side.transmit() {
                    return Err(format!(
                        "{} {me}: sends {} before frame {i}, the vector nothing",
                        t.name,
                        hx(&extra)
                    ));
                }
            }
            own_before = false;
            if !side.receive(&bytes)? {
                return Err(format!("{} {me}: frame {i} refused", t.name));
            }
        }
    }
    Ok(side)
}

/// Replays side `role` of `t` to its end: every own frame as in the vector, nothing more to
/// send after the last, finished; returns its result.
pub fn replay_session(
    g: &Graph,
    t: &SessionTranscript,
    role: Role,
) -> Result<SessionResultJson, String> {
    let mut side = replay_side(g, t, role, t.frames.len())?;
    if let Some(extra) = side.transmit() {
        return Err(format!(
            "{} {}: sends {} after the last frame",
            t.name,
            side.name(),
            hx(&extra)
        ));
    }
    if !side.session.is_finished() || side.ended.is_none() {
        return Err(format!("{} {}: not finished", t.name, side.name()));
    }
    Ok(side.result(g))
}

/// Feeds an invalid case to its side and returns the code of the END frame it sends, after
/// checking that the frames before the last were accepted, that nothing of the last frame was
/// applied, that the side reports the end as its own, and that it reads nothing more.
pub fn feed_invalid(
    g: &Graph,
    transcripts: &[SessionTranscript],
    c: &InvalidFrameCase,
) -> Result<u8, String> {
    let t = transcripts
        .iter()
        .find(|t| t.name == c.transcript)
        .ok_or_else(|| format!("{}: no transcript {}", c.name, c.transcript))?;
    let role = match c.side.as_str() {
        "initiator" => Role::Initiator,
        "responder" => Role::Responder,
        other => return Err(format!("{}: unknown side {other}", c.name)),
    };
    if c.after >= t.frames.len() {
        return Err(format!("{}: the side must not be finished", c.name));
    }
    let mut t = t.clone();
    if let Some(config) = &c.config {
        match role {
            Role::Initiator => t.initiator.config = config.clone(),
            Role::Responder => t.responder.config = config.clone(),
        }
    }
    let mut side = replay_side(g, &t, role, c.after)?;
    let last = c.frames.len().checked_sub(1).ok_or("no frames")?;
    for (i, hex) in c.frames.iter().enumerate() {
        let bytes = unhex(hex)?;
        let before = side.applied_events;
        let accepted = side.receive(&bytes)?;
        if i < last {
            if !accepted || side.session.poll_timeout().is_none() || side.ended.is_some() {
                return Err(format!("{}: frame {i} ended the session", c.name));
            }
        } else {
            if !accepted && bytes.len() != 4 {
                return Err(format!(
                    "{}: a refused header is given without its body",
                    c.name
                ));
            }
            if side.applied_events != before {
                return Err(format!("{}: entries of the bad frame were applied", c.name));
            }
        }
    }
    let end = side
        .transmit()
        .ok_or_else(|| format!("{}: no frame sent after the bad frame", c.name))?;
    let DecodedFrame::End { code, .. } = decode_frame(g, &end)? else {
        return Err(format!("{}: the next frame is not an END", c.name));
    };
    match &side.ended {
        Some((_, got, _, false)) if got.to_u8() == code => {}
        other => {
            return Err(format!(
                "{}: the side ended with {other:?}, not its own END {code}",
                c.name
            ))
        }
    }
    if !side.session.is_finished() || side.transmit().is_some() || side.session.handle_frame_len(1)
    {
        return Err(format!("{}: the side goes on after its END", c.name));
    }
    Ok(code)
}

/// The END frame a fresh responder over an empty set sends when closed with `code` and
/// `reason`.
pub fn close_frame(code: u8, reason: &str) -> Result<Vec<u8>, String> {
    let mut s: Session<Op, MemoryStore> = Session::new(
        SessionConfig::default(),
        Role::Responder,
        MemoryStore::default(),
        session_epoch(),
    )
    .map_err(|e| e.to_string())?;
    s.close(EndCode::from_u8(code), reason);
    s.poll_transmit(&MemoryReplica::<Op>::new(), session_epoch())
        .ok_or_else(|| "a closed session sends nothing".to_string())
}
