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
