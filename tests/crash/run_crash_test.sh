#!/bin/sh
# The crash-journal test: format a fresh image, run the traced workload on a
# copy, then check every chosen crash state against the pristine image.
#   run_crash_test.sh MKFS FSCK WORKLOAD CHECK [crash-check options]
set -eu
if [ $# -lt 4 ]; then
    echo "usage: $0 MKFS FSCK WORKLOAD CHECK [crash-check options]" >&2
    exit 2
fi
mkfs=$1 fsck=$2 workload=$3 check=$4
shift 4
work=$(mktemp -d "${TMPDIR:-/tmp}/vdfs-crash.XXXXXX")
keep=0
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

# A small journal (1 MiB = 256 blocks) so the workload wraps it.
"$mkfs" -q -H 2 -J 1M "$work/base.img" 256M
# Room for the workload to grow the datastore into.
truncate -s 512M "$work/base.img"
cp --sparse=always "$work/base.img" "$work/run.img"
"$workload" "$work/run.img" "$work/trace.bin" "$work/manifest.txt"
"$fsck" -n "$work/run.img" >/dev/null || {
    echo "fsck.vdfs -n fails on the image after a clean unmount" >&2
    keep=1
    exit 1
}
if ! "$check" --fsck "$fsck" "$@" "$work/base.img" "$work/trace.bin" "$work/manifest.txt" "$work"; then
    keep=1
    echo "crash states kept in $work (base.img, trace.bin, manifest.txt; rebuild one with crash-replay)" >&2
    exit 1
fi
