#!/usr/bin/env bash
# Sets everything up and starts the Collection Store server with the demo app.
#
# Usage: scripts/run.sh [cstore serve options], e.g. scripts/run.sh --listen 127.0.0.1:7070
# Defaults (from `cstore serve`): data in ./cstore-data, listening on 127.0.0.1:7070.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/scripts/setup.sh"
say "building and starting the server (release build; the first one takes a few minutes)"
exec cargo run --release -p cstore-server --bin cstore -- serve "$@"
