//! iroh glue for oplog-sync. Not built yet: the protocol handler, sessions and the `oplog`
//! program come after the protocol core and the store. This crate exists so the workspace has
//! its final shape.

/// The ALPN oplog-sync registers on an iroh `Router`.
pub const ALPN: &[u8] = b"oplog-sync/1";
