#!/usr/bin/env bash
# Writes during checkpoints (issue 14's target: write p99 during a checkpoint of 1M documents
# ≤ 2× the p99 without one). Two runs of target/release/cstore-load, each on a server of its
# own (--spawn: a fresh temp data dir, stopped by its PID): 1,000,000 documents preloaded
# (transactions of 100, not measured), then 64 closed-loop clients insert for the window,
# once with checkpoints off and once with one every 50,000 entries (a checkpoint of 1.0 to
# 1.3M documents every few seconds). The second run's writes are split by whether they
# overlapped a checkpoint (the server's cstore_checkpoint_running gauge, polled every 5 ms).
# Prints markdown: a table, the checkpoints seen, and the verdict.
#
# Usage: scripts/bench-checkpoints.sh [DURATION_S [DOCS]]     (defaults: 15, 1000000)
# Needs: cargo build --release -p cstore-server --bin cstore -p cstore-tests --bin cstore-load
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
DURATION_S="${1:-15}"
DOCS="${2:-1000000}"
EVERY=50000
OFF=1000000000000
export CSTORE_BIN="$TARGET/cstore"

run() {  # run EVERY: cstore-load's output
  "$TARGET/cstore-load" --spawn --preload "$DOCS" --mode insert --clients 64 \
    --duration-s "$DURATION_S" --split-checkpoints \
    --server-arg=--checkpoint-every --server-arg="$1"
}
off="$(run "$OFF")"
on="$(run "$EVERY")"

# Fields of cstore-load's rows: the table row (mode clients batch docs/s req/s p50 p99 p999
# max errors) and the split lines ("<group> N writes p50 X p99 X p99.9 X max X ms errors N").
row() { awk '$1 == "insert" { printf "%.0f | %s | %s | %s | %s | %s", $4, $6, $7, $8, $9, $10 }'; }
split() {
  grep "^$1" | sed "s/^$1 *//" |
    awk '{ printf "%s | %s | %s | %s | %s | %s", "–", $4, $6, $8, $10, $13 }'
}
p99_of() { awk '$1 == "insert" { print $7 }'; }
p99_during="$(grep '^during a checkpoint' <<<"$on" | awk '{ print $9 }')"
p99_off="$(p99_of <<<"$off")"

echo "| checkpoints | writes | inserts/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
echo "| off | all | $(row <<<"$off") |"
echo "| every $EVERY entries | all | $(row <<<"$on") |"
echo "| every $EVERY entries | during a checkpoint ($(grep '^during a checkpoint' <<<"$on" | awk '{ print $4 }')) | $(split 'during a checkpoint' <<<"$on") |"
echo "| every $EVERY entries | outside checkpoints ($(grep '^outside checkpoints' <<<"$on" | awk '{ print $3 }')) | $(split 'outside checkpoints' <<<"$on") |"
echo
echo "- $(grep '^checkpoints seen' <<<"$on")"
echo "- $(grep '^preloaded' <<<"$on" | head -1) before the window"
ratio="$(awk -v a="$p99_during" -v b="$p99_off" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }')"
verdict="$(awk -v r="$ratio" 'BEGIN { print (r != "?" && r <= 2.0) ? "MET" : "MISSED" }')"
echo
echo "Verdict: write p99 during a checkpoint $p99_during ms against $p99_off ms with checkpoints off: ${ratio}× (target ≤ 2×): **$verdict**."
