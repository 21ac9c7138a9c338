#!/bin/sh
# Fuzzes vdfs-switch (frames, hellos, control commands; tests/switch/fuzz_switch.c)
# with libFuzzer for SECONDS seconds (default 60).  Not part of CI; CI replays
# tests/switch/fuzz-regressions and random inputs (switch-fuzz-replay).
# Usage: tests/switch/run_fuzz.sh [SECONDS] [libFuzzer options...]
# A crash is written to build-fuzz-switch/fuzz-crashes/; minimise it with
#   build-fuzz-switch/tests/switch/fuzz_switch -minimize_crash=1 -runs=20000 CRASH
# and add it to tests/switch/fuzz-regressions/ with the fix.
set -eu

seconds=${1:-60}
case $seconds in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS] [libFuzzer options...]" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && shift

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz-switch}

if ! command -v clang >/dev/null 2>&1; then
    echo "$0: clang is required for libFuzzer" >&2
    exit 1
fi
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Db_lundef=false
fi
ninja -C "$build" tests/switch/fuzz_switch

corpus=$build/fuzz-switch-corpus
mkdir -p "$corpus" "$build/fuzz-crashes"
# The regression inputs seed the corpus; new finds stay in the build dir.
exec "$build/tests/switch/fuzz_switch" \
    -max_total_time="$seconds" \
    -dict="$root/tests/switch/fuzz_switch.dict" \
    -artifact_prefix="$build/fuzz-crashes/" \
    -print_final_stats=1 \
    -max_len=4096 \
    -len_control=20 \
    "$@" \
    "$corpus" "$root/tests/switch/fuzz-regressions"
