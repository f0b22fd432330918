#!/usr/bin/env bash
# Sets everything up, builds the npm package and the demo app (web/scripts/build.sh), and starts
# the Collection Store server, which serves the demo at http://127.0.0.1:7070/.
#
# Usage: scripts/run.sh [cstore serve options], e.g. scripts/run.sh --listen 127.0.0.1:7070
# Defaults (from `cstore serve`): data in ./cstore-data, listening on 127.0.0.1:7070.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/scripts/setup.sh"
say "building the npm package and the demo app (web/dist/demo)"
"$ROOT/web/scripts/build.sh"
say "building and starting the server (release build; the first one takes a few minutes)"
# From the repository root (lib.sh cd's there), `serve` finds the demo in web/dist/demo.
exec cargo run --release -p cstore-server --bin cstore -- serve "$@"
