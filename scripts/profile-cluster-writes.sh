#!/usr/bin/env bash
# Durable writes with 64 clients on a 3-member cstore Raft cluster and on 3 etcd 3.4 members, in
# one run (`cstore-peers --workloads raft-writes`), with the CPU each system spent per
# acknowledged write over the measured window (user + system time of every member, and of the
# cstore leader alone, from /proc/PID/stat), and optionally a `perf record -g` of the cstore
# leader. This VM exposes no hardware counters (`perf stat -e instructions` says "not
# supported"), so CPU time per write is the load-robust figure: it does not depend on how many
# writes the shared machine let through, only (a little) on cache and frequency effects.
#
# Usage: [CSTORE_BIN=path] scripts/profile-cluster-writes.sh [--perf FILE] [--duration-s N] [--runs N]
#     [--no-build]
#   --perf FILE: also record the cstore leader's stacks (perf record -g) during the window into
#   FILE (then `perf report -i FILE --no-children`); the recording costs the leader some CPU,
#   so do not quote that run's throughput.
#   --runs N: N runs one after the other (each runs cstore, then etcd), one summary line each.
# Prints one line per run and system: writes/s, load average, CPU ms per 1,000 writes.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PERF_OUT=""
DURATION_S=8
WARMUP_S=1
RUNS=1
NO_BUILD=""
while [ $# -gt 0 ]; do
  case "$1" in
    --perf) PERF_OUT="$2"; shift 2 ;;
    --duration-s) DURATION_S="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --no-build) NO_BUILD=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# CSTORE_BIN=/path/to/cstore measures that server binary instead of this tree's (for a before /
# after comparison in one sitting); --no-build uses the binaries as they are.
if [ -z "$NO_BUILD" ]; then
  [ -n "${CSTORE_BIN:-}" ] || cargo build --release -q -p cstore-server --bin cstore
  cargo build --release -q -p cstore-tests --bin cstore-peers
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
export CSTORE_BIN="${CSTORE_BIN:-$TARGET/cstore}"
WORK="$(mktemp -d -t cstore-profile.XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
TICKS="$(getconf CLK_TCK)"

cpu_ticks() {  # cpu_ticks PID...: user + system ticks of the processes (0 for a gone one)
  local total=0 pid fields
  for pid in "$@"; do
    if fields="$(cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null)"; then
      # After "pid (comm)": state is field 1, utime field 12, stime field 13.
      total=$((total + $(echo "$fields" | awk '{print $12 + $13}')))
    fi
  done
  echo "$total"
}

# watch LOG: for each "pids [..]" line of cstore-peers, waits out the warm-up, then samples the
# members' CPU over the measured window; writes "system all_ticks leader_ticks" lines.
watch() {
  local log="$1" seen=0
  while true; do
    local lines
    lines="$(grep -E '^    (cstore|etcd) pids' "$log" 2>/dev/null || true)"
    local count
    count="$(printf '%s' "$lines" | grep -c . || true)"
    if [ "$count" -gt "$seen" ]; then
      seen=$((seen + 1))
      local line system pids leader_pid=""
      line="$(printf '%s\n' "$lines" | sed -n "${seen}p")"
      system="$(echo "$line" | awk '{print $1}')"
      pids="$(echo "$line" | sed -E 's/.*pids \[([0-9, ]+)\].*/\1/' | tr -d ,)"
      if [ "$system" = cstore ]; then
        local member
        member="$(echo "$line" | sed -E 's/.*leader member ([0-9]+).*/\1/')"
        leader_pid="$(echo "$pids" | awk -v m="$member" '{print $m}')"
      fi
      sleep "$WARMUP_S"
      local all0 lead0 all1 lead1 perf_pid=""
      # shellcheck disable=SC2086
      all0="$(cpu_ticks $pids)"
      lead0="$(cpu_ticks ${leader_pid:-0})"
      if [ -n "$PERF_OUT" ] && [ -n "$leader_pid" ]; then
        /usr/bin/perf record ${PERF_ARGS:--g} -o "$PERF_OUT" -p "$leader_pid" -- sleep "$DURATION_S" \
          >"$WORK/perf.log" 2>&1 &
        perf_pid=$!
      fi
      # Samples until the window ends (the members stop right after it): the last sample
      # taken while they all still ran closes the window.
      all1="$all0"; lead1="$lead0"
      local deadline=$((SECONDS + ${DURATION_S%.*} + 2))
      while [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.25
        local alive=1 pid
        for pid in $pids; do [ -e "/proc/$pid/stat" ] || alive=0; done
        [ "$alive" = 1 ] || break
        local all lead
        # shellcheck disable=SC2086
        all="$(cpu_ticks $pids)"
        lead="$(cpu_ticks ${leader_pid:-0})"
        # A member that exited meanwhile counts 0: such a sample is not the window's end.
        if [ "$all" -ge "$all1" ] && [ "$lead" -ge "$lead1" ]; then all1="$all"; lead1="$lead"; fi
      done
      if [ -n "$perf_pid" ]; then wait "$perf_pid" || true; fi
      echo "$system $((all1 - all0)) $((lead1 - lead0))" >> "$log.cpu"
      [ "$seen" -ge 2 ] && return
    fi
    sleep 0.1
  done
}

for run in $(seq 1 "$RUNS"); do
  LOG="$WORK/run$run.log"
  : > "$LOG"
  watch "$LOG" &
  WATCH=$!
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  "$TARGET/cstore-peers" --workloads raft-writes --clients 64 --warmup-s "$WARMUP_S" \
    --duration-s "$DURATION_S" --out "$WORK/out$run" > "$LOG" 2>&1 || true
  wait "$WATCH" || true
  mapfile -t rates < <(grep -E '^    [0-9]+ ops/s' "$LOG" | awk '{print $1}')
  i=0
  while read -r system all lead; do
    rate="${rates[$i]:-0}"
    writes=$((rate * DURATION_S))
    if [ "$writes" -gt 0 ]; then
      per_k="$(awk -v t="$all" -v hz="$TICKS" -v w="$writes" 'BEGIN {printf "%.0f", t / hz * 1e6 / w}')"
      lead_k="$(awk -v t="$lead" -v hz="$TICKS" -v w="$writes" 'BEGIN {printf "%.0f", t / hz * 1e6 / w}')"
    else
      per_k="-"; lead_k="-"
    fi
    if [ "$system" = cstore ]; then
      echo "run $run: cstore 3-member Raft: $rate writes/s, load $load; CPU ms per 1,000 writes: all members $per_k, leader $lead_k"
    else
      echo "run $run: etcd 3.4, 3 members: $rate writes/s, load $load; CPU ms per 1,000 writes: all members $per_k"
    fi
    i=$((i + 1))
  done < "$LOG.cpu"
  grep -E 'errors [1-9]' "$LOG" || true
done
