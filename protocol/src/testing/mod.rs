//! Helpers for tests, tools and benchmarks: [`transcript::run`] plays a whole reconciliation
//! between two stores in memory and records every message.

pub mod transcript;
