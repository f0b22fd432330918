#!/usr/bin/env bash
# Compares two `cstore` builds on one load, alternating them: this machine's throughput moves
# by ±15% from minute to minute whatever runs, so only builds measured turn about can be told
# apart. Each run starts the build's server on a fresh temp data dir, runs cstore-load against
# it, reads the server's CPU time from /proc/<pid>/stat, and stops the server by its PID.
# Prints one line per run, then each build's medians (docs/s, p50, p99, server CPU µs per
# document: the last is steadier than the rate, because the server takes what CPU it gets).
#
# Usage: scripts/ab.sh ROUNDS OLD_BIN NEW_BIN [cstore-load options]
#   e.g. scripts/ab.sh 5 /tmp/old-target/release/cstore target/release/cstore --clients 64
#   (the default load: --mode insert --clients 64 --duration-s 8)
# Build an older commit beside this tree with:
#   git worktree add /tmp/old-src REV && (cd /tmp/old-src && \
#     CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p cstore-server)
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

[ $# -ge 3 ] || die "usage: scripts/ab.sh ROUNDS OLD_BIN NEW_BIN [cstore-load options]"
ROUNDS=$1
OLD=$2
NEW=$3
shift 3
LOAD="$ROOT/target/release/cstore-load"
[ -x "$OLD" ] || die "$OLD is not an executable"
[ -x "$NEW" ] || die "$NEW is not an executable"
[ -x "$LOAD" ] || die "$LOAD missing: cargo build --release -p cstore-tests"
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(--mode insert --clients 64 --duration-s 8)
TICKS=$(getconf CLK_TCK)
PORT=27190

ab_setup cstore-ab

# run NAME BIN: one run; appends "NAME docs/s p50 p99 us_per_doc" to $WORK/results.
run() {
  local name=$1 bin=$2 data="$WORK/data" t0 t1 line docs
  rm -rf "$data"
  "$bin" serve --data-dir "$data" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/v1/health" >/dev/null 2>&1 && break
    sleep 0.05
  done
  t0=$(cpu_ticks "$SERVER")
  "$LOAD" --url "http://127.0.0.1:$PORT" "${ARGS[@]}" >"$WORK/load.log" 2>&1 ||
    die "cstore-load failed: $(tail -3 "$WORK/load.log")"
  t1=$(cpu_ticks "$SERVER")
  ab_stop_server
  # "mode clients batch docs/s req/s p50 p99 ..."
  line=$(grep -E '^(insert|txn|channel) ' "$WORK/load.log" | head -1 || true)
  # "N documents in M requests over S s"
  docs=$(awk '/ documents in / { print $1; exit }' "$WORK/load.log")
  [ -n "$line" ] && [ -n "$docs" ] || die "no result from cstore-load: $(tail -3 "$WORK/load.log")"
  echo "$line" | awk -v n="$name" -v t="$((t1 - t0))" -v hz="$TICKS" -v docs="$docs" \
    '{ printf "%s %d %.2f %.2f %.2f\n", n, $4, $6, $7, (docs > 0 ? t / hz * 1e6 / docs : 0) }' \
    | tee -a "$WORK/results"
}

say "$ROUNDS rounds of: cstore-load ${ARGS[*]}"
echo "build docs/s p50_ms p99_ms server_cpu_us_per_doc"
for _ in $(seq "$ROUNDS"); do
  run old "$OLD"
  run new "$NEW"
done
echo "medians:"
for name in old new; do
  grep "^$name " "$WORK/results" | awk -v n="$name" "$AWK_MEDIAN"'
    { r[NR] = $2; p[NR] = $3; q[NR] = $4; c[NR] = $5 }
    END { printf "  %s: %.0f docs/s, p50 %.2f ms, p99 %.2f ms, %.2f us of server CPU per doc (%d runs)\n",
          n, med(r, NR), med(p, NR), med(q, NR), med(c, NR), NR }'
done
