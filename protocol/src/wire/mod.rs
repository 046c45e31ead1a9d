//! Wire encodings that are not reconciliation messages.

mod ancestry;

pub use ancestry::{
    AncestryAnswer, AncestryDecodeError, AncestryRequest, MAX_ANCESTRY_LIMIT, MAX_HAVES, MAX_WANTS,
};
