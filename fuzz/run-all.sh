#!/usr/bin/env bash
# Runs every fuzz target (or those named after SECONDS) for SECONDS (default 180) one after
# the other, niced, on one core; libFuzzer's output goes to fuzz/logs/TARGET.out. Seed first
# with fuzz/seed.sh.
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
        -jobs=1 -workers=1 -print_final_stats=1 > "logs/$t.cargo" 2>&1
    echo "   exit $? $(date -u +%T)"
    # with -jobs, libFuzzer writes its output to fuzz-JOB.log in the working directory
    [ -f fuzz-0.log ] && mv fuzz-0.log "logs/$t.out"
done
