#!/usr/bin/env bash
# Kills the real server with SIGKILL at POINTS random moments of a mixed workload (default 100)
# and checks after each restart that it holds exactly the acknowledged prefix of the writes
# (tests/tests/crash_points.rs; CI runs the same test with 12 points). Prints one line per
# point and a summary.
#
# Usage: scripts/crash.sh [POINTS]        (CSTORE_TEST_SEED=<u64> picks other kill points)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

points="${1:-100}"
export CSTORE_CRASH_POINTS="$points"
# The test builds `cstore` (debug) itself before its first start (tests/src/binary.rs).
cargo test --quiet -p cstore-tests --test crash_points -- --nocapture
