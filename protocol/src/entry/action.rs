//! What a log entry does: the pluggable [`Action`] trait and the default [`Op`] enum.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What the protocol and the store need to know about an entry's action.
///
/// The action is hashed and signed as its postcard encoding, so the order of enum variants is
/// part of the format. Shoal's own action enum starts with `Put`, `Delete`, `Merge` in this
/// order, which is why [`Op`]'s entries hash identically to Shoal's; Shoal implements this
/// trait for its full enum to sync its other actions through the same protocol.
pub trait Action:
    Clone + fmt::Debug + PartialEq + Eq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The last-writer-wins register an action writes to, e.g. `(bucket, key)`. Stores
    /// persist it (the materialized view is keyed by it), hence the serde bounds.
    type Key: Clone
        + Ord
        + fmt::Debug
        + std::hash::Hash
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;

    /// The register this action writes, or `None` for actions that write no register
    /// (merges, for example).
    fn lww_key(&self) -> Option<Self::Key>;

    /// Whether the action removes its register's value (a tombstone wins like any write).
    fn is_delete(&self) -> bool;

    /// Whether this is a merge action, which joins branches and writes nothing.
    fn is_merge(&self) -> bool;

    /// The merge action.
    fn merge() -> Self;

    /// Checks limits of the action's own fields (lengths, for example). Runs on every decoded
    /// entry; the default accepts everything.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A 32-byte BLAKE3 content id of a stored object (Shoal's manifest id).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectId(pub [u8; 32]);

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", &hex::encode(self.0)[..16])
    }
}

/// Longest bucket name [`Op`] accepts, in bytes.
pub const MAX_BUCKET_LEN: usize = 255;
/// Longest object key [`Op`] accepts, in bytes.
pub const MAX_OBJECT_KEY_LEN: usize = 1024;

/// The default action set: the first three variants of Shoal's log, in Shoal's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Op {
    /// Point `bucket/key` at an object (variant index 0).
    Put {
        /// Bucket name.
        bucket: String,
        /// Object key within the bucket.
        key: String,
        /// The object's content id.
        object_id: ObjectId,
    },
    /// Remove `bucket/key` (variant index 1).
    Delete {
        /// Bucket name.
        bucket: String,
        /// Object key within the bucket.
        key: String,
    },
    /// Join branches of the DAG; writes nothing (variant index 2).
    Merge,
}

impl Action for Op {
    type Key = (String, String);

    fn lww_key(&self) -> Option<Self::Key> {
        match self {
            Op::Put { bucket, key, .. } | Op::Delete { bucket, key } => {
                Some((bucket.clone(), key.clone()))
            }
            Op::Merge => None,
        }
    }

    fn is_delete(&self) -> bool {
        matches!(self, Op::Delete { .. })
    }

    fn is_merge(&self) -> bool {
        matches!(self, Op::Merge)
    }

    fn merge() -> Self {
        Op::Merge
    }

    fn check(&self) -> Result<(), String> {
        match self {
            Op::Put { bucket, key, .. } | Op::Delete { bucket, key } => {
                if bucket.is_empty() || bucket.len() > MAX_BUCKET_LEN {
                    return Err(format!(
                        "bucket name is {} bytes; it must be 1 to {MAX_BUCKET_LEN}",
                        bucket.len()
                    ));
                }
                if key.len() > MAX_OBJECT_KEY_LEN {
                    return Err(format!(
                        "object key is {} bytes; at most {MAX_OBJECT_KEY_LEN} are allowed",
                        key.len()
                    ));
                }
                Ok(())
            }
            Op::Merge => Ok(()),
        }
    }
}
