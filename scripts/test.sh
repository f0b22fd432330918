#!/usr/bin/env bash
# Sets everything up and runs every check and test, cheapest first, stopping at the first
# failure: formatting, clippy (native, and wasm32 for the browser crate), core's wasm32 build
# (the proof that core stays sans-IO), the Rust tests, the wasm tests in headless Chromium, and
# the npm package's build, unit tests and the browser end-to-end suite. Ends with a summary and a total of tests.
#
# Usage: scripts/test.sh        (CI runs it through .ci/run)
# Environment: WASM_BINDGEN_TEST_TIMEOUT (seconds for one browser test module, default 60 here),
#              CHROMEDRIVER (defaults to the chromedriver on PATH).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STARTED_S=$SECONDS
LOG_DIR="$(mktemp -d -t cstore-test.XXXXXX)"
trap 'rm -rf "$LOG_DIR"' EXIT

step_names=()
step_results=()
step_seconds=()

# Totals over every `test result:` line printed by cargo test and wasm-bindgen-test-runner,
# and the closing counts of node's test runner (`# pass N` in TAP, `ℹ pass N` in spec).
count_tests() {
  cat "$LOG_DIR"/*.log 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | awk '
    /^test result: / {
      for (i = 1; i <= NF; i++) {
        if ($(i + 1) ~ /^passed/) passed += $i
        if ($(i + 1) ~ /^failed/) failed += $i
        if ($(i + 1) ~ /^ignored/) ignored += $i
      }
    }
    /^(# |ℹ )pass [0-9]+$/ { passed += $3 }
    /^(# |ℹ )fail [0-9]+$/ { failed += $3 }
    /^(# |ℹ )(skipped|todo) [0-9]+$/ { ignored += $3 }
    END { printf "%d passed, %d failed, %d skipped\n", passed, failed, ignored }'
}

summary() {
  local status=$1 i
  echo
  echo "==> summary"
  for i in "${!step_names[@]}"; do
    printf '  %-8s %-44s %5ss\n' "${step_results[$i]}" "${step_names[$i]}" "${step_seconds[$i]}"
  done
  local elapsed=$((SECONDS - STARTED_S))
  if [ "$status" -eq 0 ]; then
    printf 'all steps passed in %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
  else
    printf 'FAILED after %dm%02ds: see the output of the failed step above\n' $((elapsed / 60)) $((elapsed % 60))
  fi
  echo "tests: $(count_tests)"
}

# run_step NAME COMMAND...: runs one step, keeps its output for the test count, records the
# result, and stops everything (with the summary) when it fails.
run_step() {
  local name=$1 started=$SECONDS status=0
  shift
  echo
  echo "==> $name"
  "$@" 2>&1 | tee "$LOG_DIR/$(printf '%02d' "${#step_names[@]}").log" || status=$?
  step_names+=("$name")
  step_seconds+=($((SECONDS - started)))
  if [ "$status" -ne 0 ]; then
    step_results+=("FAILED")
    summary 1
    exit 1
  fi
  step_results+=("ok")
}

skip_step() {
  echo
  echo "==> $1: skipped ($2)"
  step_names+=("$1")
  step_results+=("skipped")
  step_seconds+=(0)
}

export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-60}"

run_step "setup" "$ROOT/scripts/setup.sh"
# After the setup, which installs chromedriver on a fresh machine: looked up before it, the
# path was empty there and the browser suites failed to spawn their driver.
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver || true)}"
run_step "rustfmt" cargo fmt --all -- --check
run_step "clippy (native, all targets)" cargo clippy --workspace --all-targets -- -D warnings
run_step "core builds for wasm32 (sans-IO proof)" \
  cargo check -p cstore-core --target wasm32-unknown-unknown
run_step "clippy (cstore-wasm on wasm32)" \
  cargo clippy -p cstore-wasm --target wasm32-unknown-unknown --all-targets -- -D warnings
# `cargo test --workspace` builds the `cstore` binary before it runs any test; point the
# real-process tests at it, or their harness would build the server again with the feature set
# of `-p cstore-server` (a second, slower build).
run_step "cargo test --workspace" \
  env CSTORE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/cstore" cargo test --workspace
run_step "fuzz smoke (corpus replay + 3 s of mutation per target)" "$ROOT/scripts/fuzz.sh" --smoke 3

# The browser replica suites talk to a real server (wasm/tests/replica_server.rs):
# server-control.mjs runs `cstore serve` on a free loopback port (and can stop, start and
# restart it for the tests); its URLs reach the test build through `option_env!`. It is
# stopped by its PID, and it stops the server by the server's own PID.
CONTROL_PID=""
stop_test_server() {
  if [ -n "$CONTROL_PID" ]; then
    kill "$CONTROL_PID" 2>/dev/null || true
    wait "$CONTROL_PID" 2>/dev/null || true
    CONTROL_PID=""
  fi
}
trap 'stop_test_server; rm -rf "$LOG_DIR"' EXIT
start_test_server() {
  local info="$LOG_DIR/server.json" i
  node wasm/tests/server-control.mjs --bin "${CARGO_TARGET_DIR:-$ROOT/target}/debug/cstore" \
    --data-dir "$LOG_DIR/server-data" --info "$info" >"$LOG_DIR/server.out" 2>&1 &
  CONTROL_PID=$!
  for i in $(seq 300); do
    [ -s "$info" ] && break
    kill -0 "$CONTROL_PID" 2>/dev/null || { cat "$LOG_DIR/server.out"; return 1; }
    sleep 0.1
  done
  [ -s "$info" ] || { cat "$LOG_DIR/server.out"; return 1; }
  CSTORE_TEST_CONTROL_URL="$(node -p "require('$info').control")"
  CSTORE_TEST_WS_URL="$(node -p "require('$info').ws")"
  export CSTORE_TEST_CONTROL_URL CSTORE_TEST_WS_URL
  say "test server: $CSTORE_TEST_CONTROL_URL (replication $CSTORE_TEST_WS_URL)"
}
# Not through run_step: its pipe would run the function in a subshell, and the exports and
# the PID must stay in this shell.
run_step_here() {
  local name=$1 started=$SECONDS status=0 log
  log="$LOG_DIR/$(printf '%02d' "${#step_names[@]}").txt"
  shift
  echo
  echo "==> $name"
  "$@" >"$log" 2>&1 || status=$?
  cat "$log"
  step_names+=("$name")
  step_seconds+=($((SECONDS - started)))
  if [ "$status" -ne 0 ]; then
    step_results+=("FAILED")
    summary 1
    exit 1
  fi
  step_results+=("ok")
}
run_step_here "start the test server" start_test_server
# The real-server suite fails instead of passing vacuously if the URLs did not get through.
export CSTORE_TEST_REQUIRE_SERVER=1
# Chromium under chromedriver (wasm-bindgen-test-runner) leaves two temp dirs of its own in
# $TMPDIR per test binary (org.chromium.Chromium.*, up to 54 MB each): 400 of them, 21 GB, had
# piled up in /tmp and filled the disk. The step gets a TMPDIR of its own, removed with LOG_DIR.
mkdir -p "$LOG_DIR/browser-tmp"
run_step "wasm tests in headless Chromium" \
  env TMPDIR="$LOG_DIR/browser-tmp" cargo test -p cstore-wasm --target wasm32-unknown-unknown
stop_test_server

# The npm package: wasm-pack + tsc, then its node unit tests (the TypeScript layer with a fake
# replica), then the browser end-to-end suite (Playwright driving Debian's chromium against real
# `cstore serve` processes started from the debug binary built above).
run_step "web: build the npm package and demo (wasm-pack, tsc)" "$ROOT/web/scripts/build.sh"
run_step "web: unit tests (node --test)" npm --prefix web test
run_step "web: browser end-to-end (npm run test:e2e)" \
  env CSTORE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/cstore" npm --prefix web run test:e2e

summary 0
