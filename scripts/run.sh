#!/usr/bin/env bash
# Sets everything up, builds the npm package and the demo app (web/scripts/build.sh), and starts
# the Collection Store server, which serves the demo at http://127.0.0.1:7070/.
#
# Usage: scripts/run.sh [cstore serve options], e.g. scripts/run.sh --listen 127.0.0.1:7070
# Defaults (from `cstore serve`): data in ./cstore-data, listening on 127.0.0.1:7070.
#
#        scripts/run.sh --cluster N [cstore serve options]
# starts a Raft cluster of N members (1 to 9; 3 is the one to try) on 127.0.0.1:7071..707N
# instead, each serving the demo, with its data, logs and PIDs in ./cstore-cluster
# (scripts/cluster.sh start); the options go to every member. It prints the URLs, the PIDs and
# how to kill the leader (scripts/cluster.sh kill-leader), and stops every member, by PID, on
# Ctrl-C.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER=0
if [ "${1:-}" = "--cluster" ]; then
  [[ "${2:-}" =~ ^[1-9]$ ]] || die "--cluster takes the number of members, 1 to 9 (e.g. --cluster 3)"
  CLUSTER="$2"
  shift 2
fi

"$ROOT/scripts/setup.sh"
say "building the npm package and the demo app (web/dist/demo)"
"$ROOT/web/scripts/build.sh"

if [ "$CLUSTER" = 0 ]; then
  say "building and starting the server (release build; the first one takes a few minutes)"
  # From the repository root (lib.sh cd's there), `serve` finds the demo in web/dist/demo.
  exec cargo run --release -p cstore-server --bin cstore -- serve "$@"
fi

say "building the server (release build; the first one takes a few minutes)"
cargo build --release -p cstore-server --bin cstore
export CSTORE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/cstore"
# The members run from the repository root too, so each serves web/dist/demo.
stopped=0
sleeper=""
stop_members() {
  [ "$stopped" = 1 ] && return
  stopped=1
  [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
  echo
  "$ROOT/scripts/cluster.sh" stop || true
}
# `start` stops what it started when no leader appears, and refuses to run while members of an
# earlier run still do: the traps below (which stop every member of the run directory) are set
# only once these members are ours.
"$ROOT/scripts/cluster.sh" start "$CLUSTER" -- "$@"
trap 'stop_members; exit 130' INT
trap 'stop_members; exit 143' TERM
trap stop_members EXIT
first="http://127.0.0.1:$((${CSTORE_CLUSTER_BASE_PORT:-7070} + 1))/"
cat <<EOF

  Open the demo on any member: $first (the page follows every member)
  Kill the leader:             scripts/cluster.sh kill-leader
  Bring a member back:         scripts/cluster.sh restart N
  Who leads:                   scripts/cluster.sh status
  Logs:                        ${CSTORE_CLUSTER_DIR:-./cstore-cluster}/node-N.log

  Ctrl-C stops every member.
EOF
# Wait for Ctrl-C. `sleep` in the background and `wait` let the trap run at once.
while :; do
  sleep 3600 &
  sleeper=$!
  wait "$sleeper" || true
done
