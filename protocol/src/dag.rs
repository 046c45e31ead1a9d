//! DAG rules: missing ancestry, heads, last-writer-wins and merges. (Being written.)
