#!/usr/bin/env bash
# Fuzzes every decoder of bytes from outside (the targets of fuzz/, listed in docs/FUZZING.md).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   coverage-guided: libFuzzer on stable Rust, SECONDS
#                                           per target (default 60), all targets by default
#   scripts/fuzz.sh --smoke [SECONDS]       the CI smoke (scripts/test.sh): replays the committed
#                                           corpus and mutates it with a seeded RNG, SECONDS per
#                                           target (default 3), debug build, no instrumentation
#
# Both print a table (target, executions, crashes, hangs) and fail on any crash or hang.
#
# libFuzzer needs no nightly: the libfuzzer-sys crate (pinned in fuzz/Cargo.toml) compiles
# libFuzzer's C++ with the system's c++, and stable rustc instruments the code with LLVM's
# sanitizer-coverage pass (-Cpasses=sancov-module, the flags cargo-fuzz passes). `--target` keeps
# the flags off build scripts and proc macros. No sanitizer (that would need nightly): a panic
# or an abort is a crash, `-rss_limit_mb` bounds memory, `-timeout` makes a hang, and every
# allocation above 64 MiB aborts (fuzz/src/alloc_guard.rs; libFuzzer's -malloc_limit_mb needs a
# sanitizer's hooks). The growing corpus and crash files stay under target/fuzz/; copy a
# finding into fuzz/corpus/<target>/ and add a test in the decoder's crate.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${1:-}" = "--smoke" ]; then
  seconds="${2:-3}"
  exec cargo run --quiet -p cstore-fuzz --bin fuzz-smoke -- --seconds "$seconds"
fi

seconds="${1:-60}"
[ "$#" -gt 0 ] && shift
# libfuzzer-sys compiles libFuzzer's C++ with the system's compiler.
if ! command -v c++ >/dev/null 2>&1; then
  say "installing g++ from apt (libfuzzer-sys compiles libFuzzer)"
  as_root apt-get update -qq && as_root apt-get install -y -qq g++ >/dev/null
fi

# The target names, from the (debug, uninstrumented) smoke runner, before the flags below.
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  list="$(cargo run --quiet -p cstore-fuzz --bin fuzz-smoke -- list)" || die "cannot list the targets"
  mapfile -t targets < <(awk '{print $1}' <<<"$list")
fi
[ "${#targets[@]}" -gt 0 ] || die "no targets"

OUT="$ROOT/target/fuzz"
host="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="$OUT"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
say "building the libFuzzer binary (profile fuzz, $host; minutes the first time)"
cargo build --quiet --profile fuzz --target "$host" -p cstore-fuzz --features libfuzzer --bin fuzz-libfuzzer
BIN="$OUT/$host/fuzz/fuzz-libfuzzer"


rows=()
failed=0
for target in "${targets[@]}"; do
  work="$OUT/corpus/$target"
  artifacts="$OUT/artifacts/$target"
  mkdir -p "$work" "$artifacts"
  log="$OUT/$target.log"
  marker="$OUT/$target.started"
  touch "$marker"
  say "$target: ${seconds}s"
  status=0
  CSTORE_FUZZ_TARGET="$target" "$BIN" "$work" "$ROOT/fuzz/corpus/$target" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  crashes="$(find "$artifacts" -name 'crash-*' -newer "$marker" 2>/dev/null | wc -l)"
  ooms="$(find "$artifacts" \( -name 'oom-*' -o -name 'leak-*' \) -newer "$marker" 2>/dev/null | wc -l)"
  hangs="$(find "$artifacts" -name 'timeout-*' -newer "$marker" 2>/dev/null | wc -l)"
  if [ "$status" -ne 0 ] && [ "$crashes$ooms$hangs" = "000" ]; then
    crashes=1 # a death libFuzzer did not file (see the log)
  fi
  corpus="$(find "$work" -type f | wc -l)"
  rows+=("$(printf '%-18s %12s %8s %6s %6s %8s' "$target" "${execs:-?}" "$crashes" "$hangs" "$ooms" "$corpus")")
  if [ "$crashes$ooms$hangs" != "000" ]; then
    failed=1
    say "$target: FINDING, see $log and $artifacts"
    grep -E '^(==|SUMMARY|panicked|thread)' "$log" | head -5 || true
  fi
done

echo
printf '%-18s %12s %8s %6s %6s %8s\n' target executions crashes hangs ooms corpus
printf '%s\n' "${rows[@]}"
[ "$failed" -eq 0 ] || die "findings above: reproduce with target/debug/fuzz-smoke replay TARGET FILE"
