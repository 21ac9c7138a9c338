#!/bin/bash
# CI's run of fsck.vdfs's fuzz target (fuzz_fsck.c): builds the two base
# images (filled and unmounted; copied while mounted, with a journal to
# replay), replays every regression input, then random inputs from a fixed
# seed for up to FUZZ_FSCK_SECONDS (default 40) or FUZZ_FSCK_ITERATIONS
# (default 3000).
#   fuzz_replay.sh MKFS FUZZ_MOUNT_BASE FUZZ_FSCK_REPLAY REGRESSION_DIR
set -eu
mkfs=$1 base=$2 replay=$3 regressions=$4
work=$(mktemp -d /tmp/vdfs-test-fsckfuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$(dirname "$0")/../vmfs/make_fuzz_bases.sh" "$mkfs" "$base" "$work"
shopt -s nullglob
inputs=("$regressions"/*)
# fsck's messages about the damage go to a file: thousands of lines that
# only matter when an input fails.
if FUZZ_FSCK_BASE="$work/clean.img:$work/live.img" \
    "$replay" "${FUZZ_FSCK_ITERATIONS:-3000}" "${FUZZ_FSCK_SECONDS:-40}" "${FUZZ_FSCK_SEED:-20261127}" \
    "${inputs[@]}" 2>"$work/stderr"; then
    echo "fsck's messages: $(wc -l <"$work/stderr") lines"
else
    rc=$?
    tail -n 40 "$work/stderr"
    exit "$rc"
fi
