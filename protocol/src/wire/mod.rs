//! Wire encodings, in one place: reconciliation messages (spec 8.3) and the ancestry request
//! and answer (spec 6.3). The Negentropy dialect's own format is in
//! [`negentropy`](crate::negentropy).

mod ancestry;
pub mod message;

pub use ancestry::{
    AncestryAnswer, AncestryDecodeError, AncestryRequest, MAX_ANCESTRY_LIMIT, MAX_HAVES, MAX_WANTS,
};
