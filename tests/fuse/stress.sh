#!/bin/bash
# Debian's stress tools against the mount, briefly: stress-ng filesystem
# stressors with --verify, then dbench.  Ends with unmount and clean fsck.
. "$(dirname "$0")/lib.sh" "$1"
make_image 4G
mount_fg
mkdir "$MNT/stress"
for stressor in "hdd 1 --hdd-ops 200 --hdd-bytes 16m" "fallocate 1 --fallocate-ops 50" \
                "rename 1 --rename-ops 2000" "dir 1 --dir-ops 200" "dentry 1 --dentry-ops 50" \
                "seek 1 --seek-ops 2000" "sync-file 1 --sync-file-ops 50 --sync-file-bytes 16m"; do
    # shellcheck disable=SC2086
    stress-ng --$stressor --verify --timeout 20s --temp-path "$MNT/stress" \
        --metrics-brief >"$WORK/stress.log" 2>&1 || { cat "$WORK/stress.log" >&2; fail "stress-ng --$stressor"; }
    grep -q "unsuccessful run\|failed:" "$WORK/stress.log" && { cat "$WORK/stress.log" >&2; fail "stress-ng --$stressor reported failures"; }
done
dbench -t 5 -D "$MNT/stress" 2 >"$WORK/dbench.log" 2>&1 || { tail -20 "$WORK/dbench.log" >&2; fail "dbench"; }
grep -q "Throughput" "$WORK/dbench.log" || { tail -20 "$WORK/dbench.log" >&2; fail "dbench gave no result"; }
rm -rf "$MNT/stress"
finish
