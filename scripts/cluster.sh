#!/usr/bin/env bash
# A local Raft cluster of `cstore serve` members for the demo: start it, see who leads, kill the
# leader (kill -9, by the PID in its pid file), bring a member back, stop everything.
#
# Usage: scripts/cluster.sh COMMAND
#   start [N] [-- SERVE-ARGS...]  start N members (default 3) on 127.0.0.1:7071..707N, wait for a
#                                 leader, print the URLs and PIDs (SERVE-ARGS go to every member)
#   status                        each member's id, URL, PID, role, term and leader
#   kill-leader                   kill -9 the member that leads (asks the members' /v1/status)
#   kill N                        kill -9 member N
#   restart N                     start member N again (same data, list and arguments)
#   stop                          stop every member (SIGTERM by PID, SIGKILL after 5 s)
#
# Everything lives in one run directory, CSTORE_CLUSTER_DIR (default ./cstore-cluster):
# node-N/ (data), node-N.log, node-N.pid, and cluster.env (the member list, the binary and the
# arguments, so `restart` starts a member exactly as `start` did). CSTORE_BIN picks the binary
# (default: the release build, which scripts/run.sh --cluster builds), CSTORE_CLUSTER_BASE_PORT
# the ports (member i listens on BASE+i; default 7070). Members are signalled by their PIDs,
# never by name. Each member serves the demo (web/dist/demo) at /.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUN_DIR="${CSTORE_CLUSTER_DIR:-$ROOT/cstore-cluster}"
ENV_FILE="$RUN_DIR/cluster.env"
# How long a leader may take to appear: the first election, or one after a kill (about 0.5 s).
LEADER_WAIT_S=20

# The comment block at the top of this file, without the '#'.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

# The PID in member N's pid file, empty when there is none.
pid_of() { cat "$RUN_DIR/node-$1.pid" 2>/dev/null || true; }

# Whether member N's recorded PID is a live `cstore` process (a stale pid file after a reboot
# could name an unrelated process: never signal that).
alive() {
  local pid
  pid="$(pid_of "$1")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "serve .*--node-id $1 "
}

load_env() {
  [ -f "$ENV_FILE" ] || die "no cluster in $RUN_DIR: start one with scripts/cluster.sh start (or scripts/run.sh --cluster 3)"
  # shellcheck source=/dev/null
  source "$ENV_FILE"
}

# One line per member, tab-separated: id url role term leader_id (role "down" when the member
# does not answer). Node is the one JSON reader a machine set up by scripts/setup.sh is sure to
# have; it asks every member at once, each with a 1 s timeout.
member_lines() {
  node --input-type=module -e '
    const members = process.argv[1].split(",").map((m) => m.split("="));
    const rows = await Promise.all(members.map(async ([id, url]) => {
      try {
        const res = await fetch(`${url}/v1/status`, { signal: AbortSignal.timeout(1000) });
        const s = await res.json();
        return [id, url, s.role ?? "?", s.term ?? "", s.leader_id ?? ""];
      } catch {
        return [id, url, "down", "", ""];
      }
    }));
    for (const row of rows) console.log(row.join("\t"));
  ' "$MEMBERS"
}

# The id of the member that leads, when exactly one says it does and every member that answers
# names it as the leader; empty otherwise (an election in progress). With "all", also empty
# while a member does not answer.
leader_id() {
  member_lines | awk -F'\t' -v all="${1:-}" '
    $3 == "down" { down++; next }
    $3 == "leader" { leaders++; id = $1 }
    { named[$5]++; up++ }
    END { if (leaders == 1 && named[id] == up && !(all && down)) print id }'
}

# Waits until a leader is elected (with "all": and every member answers); prints its id.
wait_for_leader() {
  local until=$((SECONDS + LEADER_WAIT_S)) id
  while [ "$SECONDS" -lt "$until" ]; do
    id="$(leader_id "${1:-}")"
    if [ -n "$id" ]; then
      echo "$id"
      return 0
    fi
    sleep 0.2
  done
  return 1
}

# Starts member N in the background and records its PID (the `cstore` process itself: the
# subshell execs it).
spawn_member() {
  local n="$1" port=$((BASE_PORT + $1))
  alive "$n" && die "member $n is already running (PID $(pid_of "$n"))"
  mkdir -p "$RUN_DIR/node-$n"
  # shellcheck disable=SC2086 # SERVE_ARGS is a list of words, written by `start`.
  (exec "$BIN" serve --data-dir "$RUN_DIR/node-$n" --listen "127.0.0.1:$port" --node-id "$n" \
    --cluster "$MEMBERS" $SERVE_ARGS </dev/null >>"$RUN_DIR/node-$n.log" 2>&1) &
  echo $! >"$RUN_DIR/node-$n.pid"
}

# Stops every member of the list that runs: SIGTERM by the PID in its pid file, SIGKILL after
# 5 s; removes the pid files.
stop_all() {
  local pids=() still=() entry n pid
  for entry in ${MEMBERS//,/ }; do
    n="${entry%%=*}"
    if alive "$n"; then
      pid="$(pid_of "$n")"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$RUN_DIR/node-$n.pid"
  done
  for _ in $(seq 50); do
    still=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && still+=("$pid"); done
    [ "${#still[@]}" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${still[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [ "${#pids[@]}" -eq 0 ]; then say "no member was running"; else say "stopped ${#pids[@]} member(s): PIDs ${pids[*]}"; fi
}

print_status() {
  local id url role term leader pid
  printf '%-3s %-24s %-8s %-10s %-5s %s\n' id url pid role term leader
  while IFS=$'\t' read -r id url role term leader; do
    pid="$(pid_of "$id")"
    alive "$id" || pid="-"
    printf '%-3s %-24s %-8s %-10s %-5s %s\n' "$id" "$url" "$pid" "$role" "${term:--}" "${leader:--}"
  done < <(member_lines)
}

cmd_start() {
  local count=3
  if [ "$#" -gt 0 ] && [ "$1" != "--" ]; then
    [[ "$1" =~ ^[1-9]$ ]] || die "the number of members is 1 to 9, not '$1'"
    count="$1"
    shift
  fi
  [ "${1:-}" = "--" ] && shift
  BIN="${CSTORE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cstore}"
  [ -x "$BIN" ] || die "no cstore binary at $BIN: cargo build --release -p cstore-server --bin cstore (or set CSTORE_BIN)"
  BASE_PORT="${CSTORE_CLUSTER_BASE_PORT:-7070}"
  local members="" i
  for i in $(seq 1 "$count"); do members+="${members:+,}$i=http://127.0.0.1:$((BASE_PORT + i))"; done
  mkdir -p "$RUN_DIR"
  # Data of a run directory belongs to one member list: a cluster of another size would not
  # find its peers in the old Raft state.
  if [ -f "$ENV_FILE" ]; then
    local old
    old="$(. "$ENV_FILE" && echo "$MEMBERS")"
    [ "$old" = "$members" ] ||
      die "$RUN_DIR holds the cluster $old; remove that directory (its data too) to start $members"
  fi
  for i in $(seq 1 "$count"); do
    alive "$i" && die "member $i already runs (PID $(pid_of "$i")): scripts/cluster.sh stop first"
  done
  # Never committed by accident: the run directory holds data and logs.
  echo '*' >"$RUN_DIR/.gitignore"
  MEMBERS="$members"
  SERVE_ARGS="$*"
  {
    printf 'MEMBERS=%q\n' "$MEMBERS"
    printf 'BIN=%q\n' "$BIN"
    printf 'BASE_PORT=%q\n' "$BASE_PORT"
    printf 'SERVE_ARGS=%q\n' "$SERVE_ARGS"
  } >"$ENV_FILE"
  for i in $(seq 1 "$count"); do spawn_member "$i"; done
  say "started $count members ($MEMBERS), logs in $RUN_DIR/node-N.log; waiting for a leader"
  local leader
  if ! leader="$(wait_for_leader all)"; then
    print_status >&2
    stop_all >&2
    die "no leader after ${LEADER_WAIT_S} s, members stopped: see $RUN_DIR/node-*.log"
  fi
  print_status
  say "member $leader leads. The demo, on any member: $(for i in $(seq 1 "$count"); do printf 'http://127.0.0.1:%s/ ' $((BASE_PORT + i)); done)"
}

cmd_kill() {
  local n="$1" pid
  alive "$n" || die "member $n is not running"
  pid="$(pid_of "$n")"
  kill -9 "$pid"
  say "kill -9 $pid (member $n)"
}

case "${1:-}" in
  start)
    shift
    cmd_start "$@"
    ;;
  status)
    load_env
    print_status
    ;;
  kill-leader)
    load_env
    leader="$(leader_id)"
    [ -n "$leader" ] || { print_status >&2; die "no member leads right now (an election in progress?): try again"; }
    cmd_kill "$leader"
    say "member $leader led; the others elect a new leader within about a second. Bring it back: scripts/cluster.sh restart $leader"
    ;;
  kill)
    [[ "${2:-}" =~ ^[1-9]$ ]] || die "usage: scripts/cluster.sh kill N"
    load_env
    cmd_kill "$2"
    ;;
  restart)
    [[ "${2:-}" =~ ^[1-9]$ ]] || die "usage: scripts/cluster.sh restart N"
    load_env
    [[ ",$MEMBERS" == *",$2="* ]] || die "member $2 is not in $MEMBERS"
    spawn_member "$2"
    say "member $2 started again (PID $(pid_of "$2")); it rejoins as a follower and catches up"
    ;;
  stop)
    load_env
    stop_all
    ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
