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

use std::collections::BTreeSet;
use std::path::PathBuf;

use oplog_protocol::message::{DecodeError, Part, Payload};
use oplog_protocol::{Config, EntryError, EntryKey, Fingerprint, Hash, ObjectId, Op};
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
    /// TooFarAhead: how far ahead the remote stamp was (remote - wall).
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
