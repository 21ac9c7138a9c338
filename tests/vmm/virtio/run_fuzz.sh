#!/bin/sh
# Fuzzes the VMM's virtqueue handling (and the virtio-blk and virtio-net
# devices behind it) with libFuzzer for SECONDS seconds per target
# (default 60).  Not part of CI; CI replays
# tests/vmm/virtio/fuzz-regressions/ through fuzz_replay.c.
# Usage: tests/vmm/virtio/run_fuzz.sh [SECONDS] [TARGET...]
# TARGET: fuzz_virtqueue, fuzz_virtio_blk, fuzz_virtio_net, fuzz_pci_config (default: all).
# Crashes land in build-fuzz-virtio/fuzz-crashes/<target>/; minimise one
# with `<target> -minimize_crash=1 -runs=10000 FILE` and add it to
# fuzz-regressions/<name>/ once the bug is fixed.
set -eu

seconds=${1:-60}
case $seconds in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && shift
targets=${*:-fuzz_virtqueue fuzz_virtio_blk fuzz_virtio_net fuzz_pci_config}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=$root/build-fuzz-virtio

if ! command -v clang >/dev/null 2>&1; then
    echo "$0: clang is required for libFuzzer" >&2
    exit 1
fi
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Db_lundef=false
fi
for t in $targets; do
    ninja -C "$build" "tests/vmm/virtio/$t"
done

status=0
for t in $targets; do
    seeds=$here/fuzz-regressions/${t#fuzz_}
    corpus=$build/fuzz-corpus/$t
    crashes=$build/fuzz-crashes/$t
    mkdir -p "$corpus" "$crashes"
    echo "== $t for $seconds s (corpus $corpus, seeds $seeds)"
    "$build/tests/vmm/virtio/$t" \
        -max_total_time="$seconds" \
        -artifact_prefix="$crashes/" \
        -print_final_stats=1 \
        "$corpus" "$seeds" || status=$?
done
exit $status
