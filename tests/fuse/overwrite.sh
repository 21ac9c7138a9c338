#!/bin/bash
# Overwrites of an open file's allocated blocks (the path that does its
# device I/O outside libvdfs's volume lock and updates mtime/ctime at most
# once per 4 ms granule): data, times, setuid dropping, persistence.
. "$(dirname "$0")/lib.sh" "$1"
HERE=$(cd "$(dirname "$0")" && pwd)
make_image 1G
mount_fg
python3 "$HERE/overwrite_checks.py" "$MNT" "$WORK/state" || fail "overwrite checks"
unmount_fg
fsck_clean
mount_fg
python3 "$HERE/overwrite_checks.py" "$MNT" "$WORK/state" --after-remount || fail "overwrite checks after remount"
finish
