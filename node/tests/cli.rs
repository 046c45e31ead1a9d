//! The `oplog` program end to end.
