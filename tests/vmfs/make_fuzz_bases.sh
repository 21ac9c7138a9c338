#!/bin/sh
# Makes the two base images of the metadata fuzzers (fuzz_mount.c,
# tests/fsck/fuzz_fsck.c) in DIR, unless both are there: clean.img, filled
# and unmounted, and live.img, copied while its host held the metadata lock
# with transactions in its journal.
#   make_fuzz_bases.sh MKFS FUZZ_MOUNT_BASE DIR
set -eu
mkfs=$1 fill=$2 dir=$3
[ -f "$dir/clean.img" ] && [ -f "$dir/live.img" ] && exit 0
rm -f "$dir/clean.img" "$dir/live.img" "$dir/tmp.img"
"$mkfs" -q -f -b 64K -s 8K -H 4 -J 1M "$dir/clean.img" 64M
"$fill" "$dir/clean.img"
"$mkfs" -q -f -b 64K -s 8K -H 4 -J 1M "$dir/tmp.img" 64M
"$fill" "$dir/tmp.img" "$dir/live.img"
rm -f "$dir/tmp.img"
