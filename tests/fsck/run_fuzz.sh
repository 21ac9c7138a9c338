#!/bin/sh
# Fuzzes fsck.vdfs's repairs (tests/fsck/fuzz_fsck.c) with libFuzzer for
# SECONDS seconds (default 600), at the lowest CPU priority.  Not part of
# CI (CI runs the same target from fixed seeds: fuzz_replay.sh).  Builds
# build-fuzz-fsck/ with clang, makes the two base images in WORKDIR
# (default /var/tmp/vdfs-fuzz-fsck) and keeps the corpus and any crashes
# there.  A crash becomes a regression input: copy it into
# tests/fsck/fuzz-regressions/.
#   tests/fsck/run_fuzz.sh [SECONDS] [WORKDIR]
set -eu

seconds=${1:-600}
work=${2:-/var/tmp/vdfs-fuzz-fsck}
case $seconds in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS] [WORKDIR]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build-fuzz-fsck

if ! command -v clang >/dev/null 2>&1; then
    echo "$0: clang is required for libFuzzer" >&2
    exit 1
fi
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Db_lundef=false
fi
ninja -C "$build" tests/fsck/fuzz_fsck tests/vmfs/fuzz_mount_base mkfs/mkfs.vdfs

mkdir -p "$work/corpus" "$work/crashes"
"$root/tests/vmfs/make_fuzz_bases.sh" "$build/mkfs/mkfs.vdfs" "$build/tests/vmfs/fuzz_mount_base" "$work"
# Seeds: each base, re-sealed and raw, no patch; plus the regression inputs.
for flags in 00 01 02 03; do
    [ -f "$work/corpus/seed-$flags" ] || printf "\\$(printf '%03o' 0x$flags)" > "$work/corpus/seed-$flags"
done
for f in "$root"/tests/fsck/fuzz-regressions/*; do
    [ -f "$f" ] && cp "$f" "$work/corpus/"
done

FUZZ_FSCK_BASE="$work/clean.img:$work/live.img" exec nice -n 19 "$build/tests/fsck/fuzz_fsck" \
    -timeout=30 -rss_limit_mb=4096 -max_len=512 -len_control=0 \
    -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$work/crashes/" "$work/corpus"
