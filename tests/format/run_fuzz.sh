#!/bin/sh
# Fuzzes every on-disk format decoder with libFuzzer for SECONDS seconds
# (default 60).  Not part of CI.  Usage: tests/format/run_fuzz.sh [SECONDS]
set -eu

seconds=${1:-60}
case $seconds in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build-fuzz

if ! command -v clang >/dev/null 2>&1; then
    echo "$0: clang is required for libFuzzer" >&2
    exit 1
fi
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Db_lundef=false
fi
ninja -C "$build" tests/format/fuzz_decode

mkdir -p "$build/fuzz-corpus" "$build/fuzz-crashes"
exec "$build/tests/format/fuzz_decode" \
    -max_total_time="$seconds" \
    -artifact_prefix="$build/fuzz-crashes/" \
    -print_final_stats=1 \
    "$build/fuzz-corpus"
