#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 180) one after the other, niced, on one core,
# logging to fuzz/logs/TARGET.log. Seeds first: fuzz/seed.sh.
set -uo pipefail
cd "$(dirname "$0")"
secs="${1:-180}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(entry message negentropy ancestry frame session session_store)
mkdir -p logs
for t in "${targets[@]}"; do
    echo "== $t $(date -u +%T)"
    nice -n 19 cargo +nightly fuzz run -s none -a "$t" -- -max_total_time="$secs" \
        -jobs=1 -workers=1 -print_final_stats=1 > "logs/$t.log" 2>&1
    echo "   exit $? $(date -u +%T)"
done
