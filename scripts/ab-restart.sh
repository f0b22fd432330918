#!/usr/bin/env bash
# Compares how fast two `cstore` builds restart on the same data directory, alternating them
# (this machine's speed moves from minute to minute; only builds measured turn about can be
# told apart). Each run copies DATA_DIR afresh, starts the build's server on the copy, polls
# /v1/health every 2 ms, reads the server's CPU time from /proc/<pid>/stat once healthy, and
# stops the server by its PID. Rounds alternate which build goes first (the order of a pair
# was seen to matter). Prints one line per run, then each build's medians.
#
# Usage: scripts/ab-restart.sh ROUNDS OLD_BIN NEW_BIN DATA_DIR
#   DATA_DIR holds a `data/` directory, as `cstore-peers --workloads recovery --keep-data`
#   leaves it (its output names the kept dirs: one with checkpoints off, one with the default).
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -euo pipefail

[ $# -eq 4 ] || die "usage: scripts/ab-restart.sh ROUNDS OLD_BIN NEW_BIN DATA_DIR"
ROUNDS=$1
OLD=$2
NEW=$3
SOURCE=$4
[ -x "$OLD" ] || die "$OLD is not an executable"
[ -x "$NEW" ] || die "$NEW is not an executable"
[ -d "$SOURCE/data" ] || die "$SOURCE has no data/ directory"
TICKS=$(getconf CLK_TCK)
PORT=27191

WORK="$(mktemp -d /tmp/cstore-ab-restart.XXXXXX)"
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# run NAME BIN: one restart; appends "NAME ms_to_health server_cpu_ms" to $WORK/results.
run() {
  local name=$1 bin=$2 start end ticks
  rm -rf "$WORK/data"
  cp -r "$SOURCE/data" "$WORK/data"
  start=$(date +%s%N)
  "$bin" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  until curl -fs "http://127.0.0.1:$PORT/v1/health" >/dev/null 2>&1; do
    kill -0 "$SERVER" 2>/dev/null || die "$bin exited: $(tail -3 "$WORK/server.log")"
    sleep 0.002
  done
  end=$(date +%s%N)
  ticks=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  SERVER=""
  echo "$name $(((end - start) / 1000000)) $((ticks * 1000 / TICKS))" | tee -a "$WORK/results"
}

say "$ROUNDS rounds, alternating which build goes first, on copies of $SOURCE/data"
echo "build ms_to_health server_cpu_ms"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then
    run old "$OLD"
    run new "$NEW"
  else
    run new "$NEW"
    run old "$OLD"
  fi
done
echo "medians:"
for name in old new; do
  grep "^$name " "$WORK/results" | awk -v n="$name" '
    { h[NR] = $2; c[NR] = $3 }
    function med(a, k,   i, j, t) {
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    END { printf "  %s: %.0f ms to health, %.0f ms of server CPU (%d runs)\n", n, med(h, NR), med(c, NR), NR }'
done
