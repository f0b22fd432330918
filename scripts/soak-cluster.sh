#!/usr/bin/env bash
# Soak of cstore's Raft cluster mode: a 3-member cluster on loopback takes saturated writes
# (64 closed-loop clients on the leader) for MINUTES, then each member's election counters from
# /metrics are compared with their values at the start. The target: 0 elections after the
# initial one. Prints a PASS/FAIL line and exits non-zero on FAIL (any election started or won,
# leader change or term change after the start, a member gone, or a write the leader refused:
# a leader whose lease ran out steps down without an election, which the counters would miss).
#
# Usage: scripts/soak-cluster.sh [MINUTES] [--chaos] [-- CSTORE-SOAK-ARGS...]
#   MINUTES   how long to write (default 10; fractions are fine: 0.5)
#   --chaos   then also run the long kill -9 rounds test (CSTORE_CLUSTER_ROUNDS, default 200):
#             cargo test --release -p cstore-tests --test cluster_failover -- --nocapture
#   after --, arguments for target/release/cstore-soak (e.g. --clients 32 --heartbeat-ms 50)
# The members are started and stopped by target/release/cstore-soak, each by its own PID.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MINUTES=10
CHAOS=0
EXTRA=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --chaos) CHAOS=1 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *)
      [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "not a number of minutes: $1 (see --help)"
      MINUTES="$1"
      ;;
  esac
  shift
done

say "building release binaries"
cargo build --release -q -p cstore-server --bin cstore
cargo build --release -q -p cstore-tests --bin cstore-soak
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
export CSTORE_BIN="$TARGET/cstore"

say "soak: ${MINUTES} min of saturated writes on a 3-member cluster (load average $(cut -d' ' -f1-3 /proc/loadavg))"
status=0
"$TARGET/cstore-soak" --minutes "$MINUTES" --clients 64 --members 3 "${EXTRA[@]}" || status=$?

if [ "$CHAOS" = 1 ]; then
  rounds="${CSTORE_CLUSTER_ROUNDS:-200}"
  say "chaos: ${rounds} rounds of kill -9 (cluster_failover, release)"
  chaos=0
  CSTORE_CLUSTER_ROUNDS="$rounds" cargo test --release -p cstore-tests --test cluster_failover \
    -- --nocapture || chaos=$?
  if [ "$chaos" = 0 ]; then
    say "chaos: PASS (${rounds} rounds)"
  else
    say "chaos: FAIL (cargo test exited with $chaos)"
    [ "$status" = 0 ] && status="$chaos"
  fi
fi

if [ "$status" = 0 ]; then
  say "PASS"
else
  say "FAIL (exit $status)"
fi
exit "$status"
