//! Bandwidth and speed benchmarks for oplog-sync. The side-by-side benchmarks against other
//! reconciliation methods come with the node; see the README for what exists today.
