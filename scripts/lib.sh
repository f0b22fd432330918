# shellcheck shell=bash
# Shared helpers for scripts/*.sh. Sourced, not run.
#
# Every script works from the repository root and finds cargo's binaries even when the shell
# that started it (CI, a fresh login) never read ~/.cargo/env: rustup puts cargo,
# wasm-bindgen and wasm-bindgen-test-runner there.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
  *":$CARGO_BIN:"*) ;;
  *) export PATH="$CARGO_BIN:$PATH" ;;
esac

# One short progress line, prefixed with the script's name.
say() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*"; }

# Print a message and stop.
die() { printf '[%s] ERROR: %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

# --- A/B runs (scripts/ab.sh, scripts/ab-restart.sh): one server at a time ------------------

# ab_setup PREFIX: a temp dir in $WORK, removed on exit, after the server whose PID is in
# $SERVER (if any) is stopped by that PID.
ab_setup() {
  WORK="$(mktemp -d "/tmp/$1.XXXXXX")"
  SERVER=""
  trap ab_cleanup EXIT
}
ab_cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}

# Stops the server whose PID is in $SERVER.
ab_stop_server() {
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  SERVER=""
}

# cpu_ticks PID: user + system time of the process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# awk source of med(a, k): the median of a[1..k] (sorts a in place).
# shellcheck disable=SC2034 # used by the scripts that source this file
AWK_MEDIAN='function med(a, k,   i, j, t) {
  for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}'

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run '$*', and sudo is not installed"
  fi
}
