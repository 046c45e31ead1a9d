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
use std::time::Duration;

use oplog_protocol::replica::{InsertOutcome, MemoryReplica};
use oplog_protocol::wire::message::{DecodeError, Part, Payload};
use oplog_protocol::{
    dag, negentropy, Config, EntryError, EntryKey, Fingerprint, Hash, LogEntry, MemoryStore,
    NodeId, ObjectId, Op, Reconciler,
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
        keys: Vec<KeyJson>,
    },
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
            PayloadJson::Keys { keys: k } => Payload::Keys(keys(k)?),
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
                Payload::Keys(keys) => PayloadJson::Keys {
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
    pub prefix_len: u8,
    pub max_message_bytes: Option<usize>,
    pub initial_split: bool,
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
    let allowed: Option<HashSet<NodeId>> = match &seq.allowed {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|n| {
                    authors
                        .iter()
                        .find(|a| &a.name == n)
                        .ok_or_else(|| format!("no author {n}"))
                        .and_then(|a| unhex32(&a.public_key_hex).map(NodeId))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let mut r = MemoryReplica::<Op>::with_limits(seq.limits.limits(drift));
    let mut steps = Vec::new();
    for s in &seq.steps {
        let now = num(&s.now)?;
        let report = match s.op.as_str() {
            "insert" => {
                let batch: Vec<LogEntry> = s
                    .entries
                    .iter()
                    .map(|n| g.entry(n).cloned())
                    .collect::<Result<_, _>>()?;
                r.insert(batch, now, drift, allowed.as_ref())
            }
            "retry_deferred" => r.retry_deferred(now),
            other => return Err(format!("unknown op {other}")),
        };
        steps.push(InsertStep {
            op: s.op.clone(),
            now: s.now.clone(),
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
