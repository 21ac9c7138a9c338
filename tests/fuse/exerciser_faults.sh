#!/bin/bash
# The exerciser can fail: with the reference broken on purpose it must
# report a divergence (exit 1) naming the seed, the step and the
# operation, and still leave nothing mounted.
set -u
BUILD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp /tmp/vdfs-exerciser-faults.XXXXXX)
trap 'rm -f "$OUT"' EXIT
fail() { echo "FAIL: $*" >&2; cat "$OUT" >&2; exit 1; }

expect_divergence() { # FAULT PATTERN
    mounts_before=$(grep -c vdfs-exerciser /proc/mounts)
    python3 "$HERE/exerciser.py" --build "$BUILD" --seed 1 --ops 3000 --fault "$1" >"$OUT" 2>&1
    rc=$?
    [ $rc = 1 ] || fail "--fault $1: exit $rc, expected 1 (divergence)"
    grep -qE "^DIVERGENCE seed=1 step [0-9]+: $2" "$OUT" || fail "--fault $1: no DIVERGENCE line matching /$2/"
    grep -q "^replay: .*--seed 1 " "$OUT" || fail "--fault $1: no replay command"
    [ "$(grep -c vdfs-exerciser /proc/mounts)" = "$mounts_before" ] || fail "--fault $1: left a mount behind"
}

# A byte flipped in a reference file: the full tree compare finds it.
expect_divergence byte:1500 "full compare: '[^']+': bytes differ at [0-9]+"
# A write the reference never got: the per-step compare of the written
# file (or a later read or full compare) finds it.
expect_divergence skip:500 "write '[^']+' off="
echo PASS
