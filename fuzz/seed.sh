#!/usr/bin/env bash
# Writes the byte strings of spec/vectors/*.json, valid and invalid, into each fuzz target's
# corpus directory (fuzz/corpus/TARGET/seed-*), in the input layout the target reads.
# Needs jq and xxd. Run from anywhere: fuzz/seed.sh
set -euo pipefail
cd "$(dirname "$0")"
V=../spec/vectors

# put TARGET: one hex string per line on stdin, each written as a binary seed file
put() {
    local dir="corpus/$1" n=0 hex
    mkdir -p "$dir"
    while IFS= read -r hex; do
        local f="$dir/seed-$(printf '%s' "$hex" | sha1sum | cut -c1-16)"
        printf '%s' "$hex" | xxd -r -p > "$f"
        n=$((n + 1))
    done
    echo "$1: $n seeds"
}

# entries: every encoded entry, valid or not
jq -r '.valid[].encoded_hex, .invalid[].encoded_hex' $V/entries.json \
    | cat - <(jq -r '.cases[].encoded_hex' $V/limits.json) \
        <(jq -r '.graphs[].entries[].encoded_hex' $V/dag.json) \
        <(jq -r '.graph.entries[].encoded_hex' $V/session.json) | sort -u | put entry

# oplog-v1 messages: inline ones as they are; the session's MESSAGE frames (carried form)
# behind a 00 byte (no carried keys) for the carried decoder
{
    jq -r '.valid[].hex, .invalid[].hex' $V/messages.json
    jq -r '.transcripts[].messages[].hex' $V/transcripts.json
    jq -r '.cases[].messages[].hex' $V/failures.json
    jq -r '.transcripts[].frames[].hex[8:] | select(startswith("01")) | "00" + .' $V/session.json
} | sort -u | put message

jq -r '.valid[].hex, .invalid[].hex, .transcripts[].messages[].hex' $V/negentropy.json \
    | sort -u | put negentropy

# ancestry: requests as they are; answers behind the limit ffff (the answer target reads a
# u16 limit first)
{
    jq -r '.ancestry[].request_hex' $V/dag.json
    jq -r '.ancestry[].answer_hex | "ffff" + .' $V/dag.json
    jq -r '.ancestry_invalid[] | if .kind == "request" then .hex else "ffff" + .hex end' $V/dag.json
} | sort -u | put ancestry

# frames: bodies (the header cut off) of every frame in session.json
jq -r '.frames[].hex[8:], .transcripts[].frames[].hex[8:], .invalid[].frames[][8:]' $V/session.json \
    | sort -u | put frame

# sessions: byte 0 = transcript index × 2 + (1 for the responder), then the peer's frames as
# honest steps (00, u16 length, body); invalid cases replay `after` frames of the transcript,
# then their frames (a lone header as a lying-header step: 02, u32)
session_seeds() {
    jq -r '
      def hex2: "0123456789abcdef" as $d | ($d[(. / 16 | floor):(. / 16 | floor) + 1]) + ($d[(. % 16):(. % 16) + 1]);
      def frame_step: (.[8:]) as $b | if ($b | length) == 0 then "02" + . else "00" + (($b | length / 2) as $n | ($n / 256 | floor | hex2) + ($n % 256 | hex2)) + $b end;
      .transcripts as $ts
      | ($ts | to_entries[] | .key as $i | .value as $t
         | ("initiator", "responder") as $side
         | (($i * 2 + (if $side == "responder" then 1 else 0 end)) | hex2)
           + ([$t.frames[] | select(.from != $side) | .hex | frame_step] | join(""))),
        (.invalid[] | .side as $side | .transcript as $name
         | ($ts | map(.name) | index($name)) as $i
         | ($ts[$i].frames[:.after] | map(select(.from != $side) | .hex)) as $before
         | (($i * 2 + (if $side == "responder" then 1 else 0 end)) | hex2)
           + ([($before + .frames)[] | frame_step] | join("")))
    ' $V/session.json
}
session_seeds | sort -u | put session
session_seeds | sort -u | put session_store
