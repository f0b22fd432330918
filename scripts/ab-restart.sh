#!/usr/bin/env bash
# Compares how fast two `cstore` builds restart on the same data directory, alternating them
# (this machine's speed moves from minute to minute; only builds measured turn about can be
# told apart). Each run copies DATA_DIR afresh, starts the build's server on the copy, polls
# /v1/health every 2 ms, reads the server's CPU time from /proc/<pid>/stat and its peak RSS
# (VmHWM) from /proc/<pid>/status once healthy, and stops the server by its PID. Rounds
# alternate which build goes first (the order of a pair was seen to matter). Prints one line
# per run, then each build's medians.
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

ab_setup cstore-ab-restart

# run NAME BIN: one restart; appends "NAME ms_to_health server_cpu_ms peak_rss_mib" to
# $WORK/results.
run() {
  local name=$1 bin=$2 start end ticks rss_kib
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
  ticks=$(cpu_ticks "$SERVER")
  rss_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER/status")
  ab_stop_server
  echo "$name $(((end - start) / 1000000)) $((ticks * 1000 / TICKS)) $((rss_kib / 1024))" |
    tee -a "$WORK/results"
}

say "$ROUNDS rounds, alternating which build goes first, on copies of $SOURCE/data"
echo "build ms_to_health server_cpu_ms peak_rss_mib"
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
  grep "^$name " "$WORK/results" | awk -v n="$name" "$AWK_MEDIAN"'
    { h[NR] = $2; c[NR] = $3; m[NR] = $4 }
    END { printf "  %s: %.0f ms to health, %.0f ms of server CPU, peak RSS %.0f MiB (%d runs)\n",
          n, med(h, NR), med(c, NR), med(m, NR), NR }'
done
