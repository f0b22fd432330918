#!/usr/bin/env bash
# The deterministic cluster simulation (server/tests/cluster_sim) at length, in a release
# build: SEEDS seeds (default 20000) on 3 and on 5 members, with each disk model (entries
# readable before their fsync, as the server does, and only after it), strict: a failure that
# comes from openraft fails the run too. A release build matters: openraft's debug assertions
# are compiled out there, so a fault they would catch shows as what users would see (the
# patched fault of third_party/openraft/PATCHES.md was found that way). CI runs 500 seeds per
# size in a debug build. 20,000 seeds take about 3 minutes on 2 cores, after the build.
#
# Usage: scripts/sim.sh [SEEDS]      (a failing seed prints the command that replays it)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seeds="${1:-20000}"
# CSTORE_SIM_DISK: empty for the server's model, `synced` for the other.
for disk in "" synced; do
  say "$seeds seeds per size, disk model: ${disk:-buffered, as the server does}"
  CSTORE_SIM_STRICT=1 CSTORE_SIM_SEEDS="$seeds" CSTORE_SIM_DISK="$disk" \
    cargo test --release --quiet -p cstore-server --test cluster_sim members_keep -- --nocapture
done
