//! [`Config`], the [`Dialect`] it selects, and the defaults and bounds of its limits.

use super::ReconcileError;
use crate::fingerprint::Salt;
#[cfg(feature = "negentropy")]
use crate::negentropy;
pub use crate::wire::message::KeyForm;
use crate::wire::message::MAX_LIST_ITEMS;

#[cfg(doc)]
use super::{Limit, Reconciler};

/// The smallest message size limit a [`Config`] may set; every part the reconciler produces
/// fits in it with room to spare.
pub const MIN_MESSAGE_BYTES: usize = 4096;
/// The default [`Config::max_message_bytes`]: 4 MiB, the session layer's frame limit. The
/// largest message of the 10^6-key benchmark (100,000 differences) is 3.84 MB, so honest
/// sessions of that size are not slowed down by carry-overs.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// The smallest [`Config::max_message_bytes`] (or none) with which a side lists and resolves
/// ranges of up to 256 keys ([`Config::list_max`], `spec/SPEC.md` 8.4): every such answer, a
/// `Resolve` or `FullList` of 256 keys written inline, fits in it.
pub const LONG_LIST_MESSAGE_BYTES: usize = 16 * 1024;
/// The default [`Config::max_messages`].
pub const DEFAULT_MAX_MESSAGES: u64 = 1024;
/// The default [`Config::max_parts`]: 2^16, twice the most parts (32,768) of any message of
/// the 10^6-key benchmark with 100,000 differences.
pub const DEFAULT_MAX_PARTS: usize = 1 << 16;
/// The smallest [`Config::max_parts`]: every single answer (at most 32 parts of a split)
/// plus the carry-over parts fits.
pub const MIN_PARTS: usize = 64;
/// The default [`Config::max_session_memory`]: 256 MiB.
pub const DEFAULT_MAX_SESSION_MEMORY: usize = 256 << 20;
/// Most bytes of pending state one received message may create, per byte of that message
/// and of its reply. The most an honest message creates is about 40 per byte (a one-byte
/// prefix list of 256 keys in a dense reply answering a fingerprint); a part's state costs at most about 300
/// bytes besides its keys, and every part that creates state is at least 5 bytes in and out.
pub const PENDING_PER_TRAFFIC_BYTE: usize = 64;
/// The smallest [`Config::max_session_memory`]: 1 MiB.
pub const MIN_SESSION_MEMORY: usize = 1 << 20;
/// The default [`Config::max_carried_keys`]: 2^16 keys (with entries of a few hundred bytes,
/// a carried list of this length travels with about as many entry bytes as the 4 MiB
/// message limit allows in message bytes, times a few).
pub const DEFAULT_MAX_CARRIED_KEYS: usize = 1 << 16;
/// The smallest [`Config::max_carried_keys`]: 256, the most keys one part carries, so that
/// every reply can answer at least one part.
pub const MIN_CARRIED_KEYS: usize = MAX_LIST_ITEMS;

/// The wire format and splitting policy a [`Reconciler`] speaks. Both peers must use the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// oplog-sync's own format (`spec/SPEC.md`): secure 4096-bit fingerprints, prefix lists,
    /// both sides learn the difference.
    #[default]
    OplogV1,
    /// Negentropy protocol V1 (`spec/negentropy-v1.md`), for interoperability with Negentropy
    /// peers and for comparison: SHA-256 over a 256-bit id sum as fingerprint, 16 buckets per
    /// split, id lists below 32 items, and only the initiator learns the difference. Keys are
    /// items with the HLC as timestamp and the hash as id. `branching`, `list_threshold`,
    /// `prefix_len` and `initial_split` are ignored: Negentropy fixes them. Needs the
    /// `negentropy` feature; without it a config naming it fails validation.
    NegentropyV1,
}

/// Tuning and limits of a reconciler. Both peers may use different values; the wire format
/// carries everything the other side needs.
///
/// Build one from [`Config::default`] (or [`Config::negentropy`]) and assign fields:
///
/// ```
/// let mut config = oplog_protocol::Config::default();
/// config.max_message_bytes = Some(64 * 1024);
/// assert!(config.validate().is_ok());
/// ```
///
/// Every limit is on by default; `spec/SPEC.md` 8.11 lists them with what exceeding each does.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The wire format and splitting policy (default [`Dialect::OplogV1`]).
    pub dialect: Dialect,
    /// Most parts a differing range is split into (2 to 32; default 16).
    pub branching: usize,
    /// A side that holds at most this many keys in a differing range lists them instead of
    /// splitting; ranges are split into parts of about this many keys (1 to 64; default 32).
    pub list_threshold: usize,
    /// Bytes of each hash prefix in a prefix list: 1 to 32, or 0 (the default) for
    /// `ceil((log2(count) + 16) / 8)` bytes in a list of `count` keys (3 for 2 to 256 keys;
    /// [`Config::prefix_bytes`]). A prefix collision is caught by the fingerprint check and
    /// costs one extra round trip for that range.
    pub prefix_len: u8,
    /// Largest message this side sends or accepts, in bytes (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`], 4 MiB). Ranges whose answers do not fit are carried into
    /// the next round; a larger incoming message ends the session with [`Limit::MessageBytes`].
    /// `None`: no limit either way. At least [`MIN_MESSAGE_BYTES`].
    pub max_message_bytes: Option<usize>,
    /// Whether the first message already splits the whole key space (saving half a round trip
    /// when the sets differ) rather than sending one fingerprint of everything (cheapest when
    /// they are equal).
    pub initial_split: bool,
    /// Most messages this side handles in one session (default [`DEFAULT_MAX_MESSAGES`]);
    /// the next one ends the session with [`Limit::Messages`]. Honest sessions take at most
    /// `2 × (ceil(log_branching n) + 3)` messages without carry-overs, plus about one round
    /// trip per `max_message_bytes` of traffic with them. At least 1.
    pub max_messages: u64,
    /// Most parts in a message this side accepts or sends (default [`DEFAULT_MAX_PARTS`]);
    /// an incoming message with more ends the session with [`Limit::Parts`], an outgoing one
    /// is cut and the rest carried over as with the size limit. At least [`MIN_PARTS`].
    pub max_parts: usize,
    /// Most bytes of session state: pending ranges and the keys already reported (default
    /// [`DEFAULT_MAX_SESSION_MEMORY`]). A message whose handling would pass it ends the
    /// session with [`Limit::SessionMemory`]; differences reported before stay valid, and a
    /// new session continues with a smaller difference. At least [`MIN_SESSION_MEMORY`].
    pub max_session_memory: usize,
    /// How the keys of Resolve and Keys payloads travel (default [`KeyForm::Inline`]). With
    /// [`KeyForm::Carried`] (`spec/SPEC.md` 8.12) messages are handled with
    /// [`Reconciler::handle_carried`], and each [`Step`](super::Step) names in
    /// `carried` the keys whose entries must be sent just before its reply. Both peers must
    /// use the same form; only the `OplogV1` dialect has a carried form.
    pub key_form: KeyForm,
    /// Carried form: most keys in the carried list of a message this side accepts or sends
    /// (default [`DEFAULT_MAX_CARRIED_KEYS`]). A received list longer than this ends the
    /// session with [`Limit::CarriedKeys`] before decoding; a reply that would carry more is
    /// cut and the rest carried over (8.8). At least [`MIN_CARRIED_KEYS`]. Ignored in inline
    /// form.
    pub max_carried_keys: usize,
    /// Dense listing (default on; `spec/SPEC.md` 8.4): when at most 1/256 of the Fingerprint
    /// parts of a received message agree with this side's, it lists every differing range
    /// in which it holds at most [`Config::list_max`] keys instead of splitting it again. At
    /// 10% differences this saves the fingerprints of the last level and a round trip; at 1%
    /// or fewer it does not apply. Off: lists only up to `list_threshold` keys.
    pub dense_lists: bool,
    /// The fingerprint salt this side sends when it opens a session (`spec/SPEC.md` 7.1,
    /// 8.3). `None` (the default): a fresh random salt per session, which the security
    /// argument of 7.2 needs. A fixed salt is for test vectors and reproducible benchmarks
    /// only. A responder ignores it and uses the initiator's.
    pub salt: Option<Salt>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dialect: Dialect::OplogV1,
            branching: 16,
            list_threshold: 32,
            prefix_len: 0,
            max_message_bytes: Some(DEFAULT_MAX_MESSAGE_BYTES),
            initial_split: true,
            max_messages: DEFAULT_MAX_MESSAGES,
            max_parts: DEFAULT_MAX_PARTS,
            max_session_memory: DEFAULT_MAX_SESSION_MEMORY,
            key_form: KeyForm::Inline,
            max_carried_keys: DEFAULT_MAX_CARRIED_KEYS,
            dense_lists: true,
            salt: None,
        }
    }
}

impl Config {
    /// A configuration that speaks Negentropy V1 with Negentropy's fixed parameters, with an
    /// optional frame size limit (at least [`MIN_MESSAGE_BYTES`], as Negentropy requires;
    /// `None`: no limit, as Negentropy's frame limit 0) and the default session limits.
    #[cfg(feature = "negentropy")]
    // BUCKETS (16) and ID_LIST_BELOW (32) are small constants: the casts are exact
    #[allow(clippy::cast_possible_truncation)]
    pub fn negentropy(frame_limit: Option<usize>) -> Config {
        Config {
            dialect: Dialect::NegentropyV1,
            branching: negentropy::BUCKETS as usize,
            list_threshold: negentropy::ID_LIST_BELOW as usize - 1,
            prefix_len: 32,
            max_message_bytes: frame_limit,
            ..Config::default()
        }
    }

    /// Bytes of each prefix in a `PrefixList` of `count` keys (spec 8.4): [`Config::prefix_len`]
    /// when set, otherwise `ceil((log2(count) + 16) / 8)`: 2 bytes for one key, 3 for 2 to
    /// 256, which keeps the chance that a prefix matches a wrong key near `2^-16` per list.
    pub fn prefix_bytes(&self, count: usize) -> u8 {
        if self.prefix_len != 0 {
            return self.prefix_len;
        }
        // ceil(log2(count)) for count >= 1, as bits; the list holds at most 256 keys
        let log2 = usize::BITS - count.max(1).saturating_sub(1).leading_zeros();
        let bytes = (log2 + 16).div_ceil(8);
        u8::try_from(bytes.min(32)).unwrap_or(32)
    }

    /// Most keys this side resolves a received list against, or lists in a dense reply
    /// (`spec/SPEC.md` 8.4): 256 when [`Config::max_message_bytes`] is `None` or at least
    /// [`LONG_LIST_MESSAGE_BYTES`], otherwise `list_threshold` (so every answer fits the
    /// smallest message).
    pub fn list_max(&self) -> usize {
        if self
            .max_message_bytes
            .is_none_or(|m| m >= LONG_LIST_MESSAGE_BYTES)
        {
            MAX_LIST_ITEMS
        } else {
            self.list_threshold
        }
    }

    /// Checks that every value is in range.
    pub fn validate(&self) -> Result<(), ReconcileError> {
        let bad = |why: String| Err(ReconcileError::Config(why));
        if cfg!(not(feature = "negentropy")) && self.dialect == Dialect::NegentropyV1 {
            return bad(
                "the Negentropy dialect needs oplog-protocol's `negentropy` feature; enable it or use Dialect::OplogV1".into(),
            );
        }
        if !(2..=32).contains(&self.branching) {
            return bad(format!("branching is {}; use 2 to 32", self.branching));
        }
        if !(1..=64).contains(&self.list_threshold) {
            return bad(format!(
                "list_threshold is {}; use 1 to 64",
                self.list_threshold
            ));
        }
        if self.prefix_len > 32 {
            return bad(format!(
                "prefix_len is {}; use 1 to 32, or 0 for the length by list size",
                self.prefix_len
            ));
        }
        if let Some(m) = self.max_message_bytes {
            if m < MIN_MESSAGE_BYTES {
                return bad(format!(
                    "max_message_bytes is {m}; it must be at least {MIN_MESSAGE_BYTES}"
                ));
            }
        }
        if self.max_messages == 0 {
            return bad("max_messages is 0; it must be at least 1".into());
        }
        if self.max_parts < MIN_PARTS {
            return bad(format!(
                "max_parts is {}; it must be at least {MIN_PARTS}",
                self.max_parts
            ));
        }
        if self.max_session_memory < MIN_SESSION_MEMORY {
            return bad(format!(
                "max_session_memory is {}; it must be at least {MIN_SESSION_MEMORY}",
                self.max_session_memory
            ));
        }
        if self.max_carried_keys < MIN_CARRIED_KEYS {
            return bad(format!(
                "max_carried_keys is {}; it must be at least {MIN_CARRIED_KEYS}",
                self.max_carried_keys
            ));
        }
        if self.key_form == KeyForm::Carried && self.dialect == Dialect::NegentropyV1 {
            return bad(
                "the Negentropy dialect has no carried key form; use KeyForm::Inline or Dialect::OplogV1".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn prefix_bytes_follow_the_list_size_unless_fixed() {
        let mut c = Config::default();
        let by_count: Vec<u8> = [0, 1, 2, 3, 32, 64, 256]
            .iter()
            .map(|n| c.prefix_bytes(*n))
            .collect();
        assert_eq!(by_count, [2, 2, 3, 3, 3, 3, 3]);
        c.prefix_len = 4;
        assert_eq!(c.prefix_bytes(1), 4);
        assert_eq!(c.prefix_bytes(256), 4);
        c.prefix_len = 33;
        assert!(c.validate().is_err());
    }
}
