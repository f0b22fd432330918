#!/usr/bin/env bash
# Runs the benchmarks and writes BENCHMARKS.md: the machine, its load when the run started,
# and each table with the command that printed it. Takes about 5 minutes on 2 cores.
#
# Usage: scripts/bench.sh [--quick]     (--quick: shorter criterion runs and load runs)
#        scripts/bench.sh peers [--quick]  (cstore against etcd and redis: scripts/bench-peers.sh)
# The figures mean most on a quiet machine: the load average is recorded so a reader can tell.
# A full run keeps everything from the peers:begin marker to the end as it is: the peers
# sections and the hand-measured ones after them (replication, browser, fan-out).
set -euo pipefail
if [ "${1:-}" = "peers" ]; then
  shift
  exec "$(dirname "${BASH_SOURCE[0]}")/bench-peers.sh" "$@"
fi
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
LOAD_S=10
CRITERION_ARGS=(--measurement-time 5 --warm-up-time 2)
if [ "$QUICK" = 1 ]; then
  LOAD_S=4
  CRITERION_ARGS=(--measurement-time 2 --warm-up-time 1)
fi
OUT="$ROOT/BENCHMARKS.md"
WORK="$(mktemp -d -t cstore-bench.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
# The peers sections come from `scripts/bench.sh peers`, the ones after them from their own
# commands (named in each); keep them across this rewrite.
: > "$WORK/peers.md"
if [ -f "$OUT" ]; then
  awk '/^<!-- peers:begin/ { keep = 1 } keep { print }' "$OUT" > "$WORK/peers.md"
fi

echo "==> building release binaries"
cargo build --release -q -p cstore-server --bin cstore
cargo build --release -q -p cstore-tests --bin cstore-load
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

echo "==> core: criterion (apply, query)"
cargo bench -q -p cstore-core --bench core -- --output-format bencher "${CRITERION_ARGS[@]}" \
  2>/dev/null | grep '^test ' > "$WORK/core.txt"

echo "==> core: memory per document"
cargo bench -q -p cstore-core --bench memory 2>/dev/null | grep '^|' > "$WORK/memory.txt"

echo "==> file WAL: group commit by batch size"
cargo test -q --release -p cstore-server --test wal_bench -- --ignored --nocapture 2>/dev/null \
  | grep -E '^ *[0-9]+ |^entries|batch' > "$WORK/wal.txt"

echo "==> server: HTTP load (cstore-load --spawn)"
: > "$WORK/load.txt"
for args in "--mode insert --clients 64" "--mode txn --clients 16 --batch 100" "--mode insert --clients 1"; do
  # shellcheck disable=SC2086
  "$TARGET/cstore-load" --spawn $args --duration-s "$LOAD_S" > "$WORK/run.txt" 2>&1
  grep -E '^(insert|txn) ' "$WORK/run.txt" >> "$WORK/load.txt"
done

# criterion's bencher lines: "test apply/insert_one_index ... bench:  1,234 ns/iter (+/- 56)"
core_rows() {
  awk '{
    name = $2; ns = $5; gsub(",", "", ns);
    per_s = 1e9 / ns;
    printf "| `%s` | %s ns | %.0f/s |\n", name, $5, per_s
  }' "$WORK/core.txt"
}

{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Re-run it to refresh every figure."
  echo
  echo "## Machine"
  echo
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "- memory: $(free -g | awk '/^Mem:/ {print $2}') GiB; kernel $(uname -r)"
  echo "- load average when the run started: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD)"
  echo
  echo "## Core: applying entries and querying (one core)"
  echo
  echo "\`cargo bench -p cstore-core --bench core\`: user documents of about 110 bytes; the"
  echo "queries run on 100,000 of them with a unique index on \`email\` and an index on \`age\`."
  echo
  echo "| benchmark | time per operation | rate |"
  echo "|---|---:|---:|"
  core_rows
  echo
  echo "Targets: insert with one index ≥ 1M/s; indexed point query ≤ 1 µs."
  echo
  echo "## Core: memory per document"
  echo
  echo "\`cargo bench -p cstore-core --bench memory\`: resident memory of the state after 1M"
  echo "inserts (one process per row), against the canonical JSON size. Target: ≤ 1.5×."
  echo
  cat "$WORK/memory.txt"
  echo
  echo "A collection keeps its documents' texts back to back in runs of about 4 KiB, with a"
  echo "version and a 4-byte end each (\`core/src/state/docs.rs\`), and an index its entries (the"
  echo "key, then the id) back to back in runs of 2 KiB (\`core/src/packed.rs\`): no heap block"
  echo "per document or entry. What that costs in speed, and the layout before it:"
  echo "[docs/bench/memory.md](docs/bench/memory.md)."
  echo
  echo "## File WAL: group commit"
  echo
  echo "\`cargo test -p cstore-server --release --test wal_bench -- --ignored --nocapture\`:"
  echo "each batch is one append, one write and one \`fdatasync\`."
  echo
  echo '```'
  cat "$WORK/wal.txt"
  echo '```'
  echo
  echo "## Server: durable writes over HTTP"
  echo
  echo "\`target/release/cstore-load --spawn ARGS --duration-s $LOAD_S\`: the server in its own"
  echo "process on a fresh data dir, the clients in another, both on this machine's cores; every"
  echo "write is acknowledged only after its \`fdatasync\`."
  echo
  echo '```'
  echo "mode    clients batch     docs/s      req/s   p50 ms   p99 ms  p999 ms   max ms  errors"
  cat "$WORK/load.txt"
  echo '```'
  echo
  echo "Targets: ≥ 100K durable single-document inserts/s with 64 clients; ≥ 400K documents/s"
  echo "through \`/v1/txn\`. With 64 closed-loop clients, throughput is at most 64 divided by"
  echo "the fsync time (Little's law): 64K/s at 1 ms per fdatasync."
  echo
  echo "\`cstore-load\`'s documents are canonical JSON (keys in order, no spaces), as the npm"
  echo "package sends them: the server reads such inserts without building a tree of them. A"
  echo "client that sends other key orders takes the general path, as the peers rows below do."
  echo "What bounds the \`/v1/txn\` row, with profiles before and after:"
  echo "[docs/bench/txn-profile.md](docs/bench/txn-profile.md). Earlier A/B runs of these rows are"
  echo "in \"Server: durable writes over HTTP, measured by hand\" below."
  if [ -s "$WORK/peers.md" ]; then
    echo
    cat "$WORK/peers.md"
  fi
} > "$OUT"
echo "wrote $OUT"
