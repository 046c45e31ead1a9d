//! Cross-crate integration and conformance tests live in `tests/`.
