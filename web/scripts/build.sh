#!/usr/bin/env bash
# Builds the npm package `cstore` and the demo app:
#
#   wasm/ ──wasm-pack (release, wasm-opt from npm binaryen)──► web/pkg-web   (--target web)
#                                                           └► web/pkg-node  (--target nodejs)
#   web/src/*.ts  ──tsc──► web/dist/*.js + *.d.ts        (the package's TypeScript face)
#   web/demo/*    ──tsc (types only), esbuild (demo/build.mjs)──► web/dist/demo/
#                  (index.html, style.css, sw.js, shell.json, app.js, pkg-web/)
#
# The demo is a React app on `cstore` and `cstore/react`: esbuild bundles it with the package's
# built dist/*.js (imported by their names, as an app does) and React 19 from the
# devDependencies; the wasm glue and module stay files of their own in dist/demo/pkg-web/.
# web/dist/demo is self-contained, so `cstore serve` serves it as plain files.
#
# The wasm step is skipped when its output is newer than every Rust source and manifest (pass
# --force to rebuild anyway); tsc and esbuild always run (a few seconds).
#
# Usage: web/scripts/build.sh [--force]     (CSTORE_WASM_OPT_LEVEL: rustc opt-level, default z)
# Needs (scripts/setup.sh installs them): wasm-pack 0.15.1, wasm-bindgen-cli equal to
# Cargo.lock's wasm-bindgen, web/node_modules (npm ci: typescript, binaryen's wasm-opt).
set -euo pipefail

WEB="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(cd "$WEB/.." && pwd)"
cd "$WEB"

say() { printf '[web-build] %s\n' "$*"; }
die() { printf '[web-build] ERROR: %s\n' "$*" >&2; exit 1; }

FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
# npm's binaryen@132 wasm-opt must come first: Debian's binaryen writes modules that fail to
# load, and without any wasm-opt on PATH wasm-pack tries to download one (and fails offline).
export PATH="$WEB/node_modules/.bin:$CARGO_BIN:$PATH"

if [ ! -x node_modules/.bin/tsc ] || [ ! -x node_modules/.bin/wasm-opt ]; then
  die "web/node_modules is missing or incomplete: run scripts/setup.sh (or 'npm ci' in web/)"
fi

# --- the wasm module ---------------------------------------------------------------------------
wasm_is_fresh() {
  local out
  for out in pkg-web/cstore_wasm_bg.wasm pkg-node/cstore_wasm_bg.wasm; do
    [ -f "$out" ] || return 1
    if [ -n "$(find "$ROOT/core" "$ROOT/wasm" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" \
      -newer "$out" -type f \( -name '*.rs' -o -name '*.toml' -o -name '*.lock' \) \
      -not -path '*/target/*' -print -quit)" ]; then
      return 1
    fi
  done
}

if [ "$FORCE" = 0 ] && wasm_is_fresh; then
  say "wasm: up to date (pkg-web, pkg-node)"
else
  command -v wasm-pack >/dev/null 2>&1 ||
    die "wasm-pack not found: run scripts/setup.sh (cargo install wasm-pack --version 0.15.1 --locked)"
  # wasm-pack runs the wasm-bindgen on PATH only when it equals the lockfile's version (else it
  # tries to download one); check here to fail with a clear message instead.
  lock_version="$(awk '
    /^\[\[package\]\]/ { in_pkg = 0 }
    /^name = "wasm-bindgen"$/ { in_pkg = 1; next }
    in_pkg && /^version = / { gsub(/"/, "", $3); print $3; exit }
  ' "$ROOT/Cargo.lock")"
  cli_version="$({ wasm-bindgen --version 2>/dev/null || true; } | awk '{print $2}')"
  if [ -z "$lock_version" ] || [ "$cli_version" != "$lock_version" ]; then
    die "wasm-bindgen CLI is '${cli_version:-missing}' but Cargo.lock has '${lock_version:-none}': run scripts/setup.sh"
  fi

  # Size over speed for the browser, without changing the workspace's release profile (the
  # server's): cargo reads these per build. Seen on the replica build: opt-level "z" gives
  # 594 KB (247 KB gzipped), "s" 643 KB (266 KB); CSTORE_WASM_OPT_LEVEL=3 etc. overrides.
  export CARGO_PROFILE_RELEASE_OPT_LEVEL="${CSTORE_WASM_OPT_LEVEL:-z}" CARGO_PROFILE_RELEASE_LTO=true \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=0
  # wasm-pack runs wasm-opt with the flags in wasm/Cargo.toml
  # ([package.metadata.wasm-pack.profile.release]; docs/bench/wasm-size.md says why).
  for target in web nodejs; do
    out="pkg-${target/nodejs/node}"
    say "wasm: wasm-pack build --release --target $target -> web/$out"
    rm -rf "$out"
    wasm-pack --quiet build "$ROOT/wasm" --release --target "$target" \
      --out-dir "$WEB/$out" --out-name cstore_wasm 2>&1 |
      grep -v '^\[INFO\]' || true
    [ -f "$out/cstore_wasm_bg.wasm" ] || die "wasm-pack did not write $out/cstore_wasm_bg.wasm"
    # wasm-pack writes a '*' .gitignore (which npm pack would honour) and a README copy.
    rm -f "$out/.gitignore" "$out/README.md"
  done
  raw=$(stat -c %s pkg-web/cstore_wasm_bg.wasm)
  gz=$(gzip -9 -c pkg-web/cstore_wasm_bg.wasm | wc -c)
  say "wasm: cstore_wasm_bg.wasm $((raw / 1024)) KB, $((gz / 1024)) KB gzipped"
fi

# --- the TypeScript face and the demo ---------------------------------------------------------
say "tsc: web/src -> web/dist"
rm -rf dist
node_modules/.bin/tsc -p tsconfig.json
say "demo: tsc (types), esbuild: web/demo/app.tsx -> web/dist/demo/app.js"
node_modules/.bin/tsc -p demo/tsconfig.json
node demo/build.mjs
mkdir -p dist/demo/pkg-web
cp demo/index.html demo/style.css demo/sw.js dist/demo/
cp pkg-web/cstore_wasm.js pkg-web/cstore_wasm_bg.wasm dist/demo/pkg-web/
# The package's browser entry as plain files next to pkg-web/: the demo does not load them (it
# is one bundle), but tests that serve their own page beside the package copy them from here
# (tests/e2e/cluster.mjs); left out of the offline shell.
mkdir -p dist/demo/lib
cp dist/*.js dist/demo/lib/
rm dist/demo/lib/node.js dist/demo/lib/react.js
# The service worker caches these so the page loads offline ("./" is the page itself; the
# source map is for DevTools, which fetches it online).
(cd dist/demo && find . -type f ! -name sw.js ! -name shell.json ! -name '*.map' ! -path './lib/*' | sed 's|^\./||' | sort |
  awk 'BEGIN { printf "[\"./\"" } { printf ",\"%s\"", $0 } END { print "]" }') > dist/demo/shell.json
say "done: package in web/dist + web/pkg-*, demo in web/dist/demo"
