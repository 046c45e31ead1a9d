//! Cross-crate integration and conformance tests for oplog-sync.
//!
//! The tests themselves live in `tests/tests/`; this library holds what they share with the
//! crate's binaries:
//! - [`vectors`]: the schema of the byte-exact test vectors in `spec/vectors/`, written by the
//!   `gen-vectors` binary (`cargo run -p oplog-tests --bin gen-vectors`) and read by
//!   `tests/tests/conformance.rs`.
//!
//! - [`fixture`]: signed histories (chains of writes by one author) for tests and benchmarks.
//! - [`link`]: two sync sessions over real stores joined by an in-process link with a virtual
//!   clock (a set RTT) and an optional cut after any frame.
//! - [`heap`]: a counting global allocator for the tests that bound memory.
//!
//! The binaries in `src/bin/` are `gen-vectors` and `negentropy-harness` (Negentropy's
//! conformance-harness line protocol in front of oplog-sync's reconciler).

// The schema types mirror the JSON files field for field; `spec/vectors/README.md` and each
// file's `description` document the fields, so they carry no doc comments of their own.
#[allow(missing_docs)]
pub mod vectors;

pub mod fixture;
pub mod heap;
pub mod link;
