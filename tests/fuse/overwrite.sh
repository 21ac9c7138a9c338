#!/bin/bash
# Overwrites of an open file's allocated blocks (the path that does its
# device I/O outside libvdfs's volume lock and updates mtime/ctime at most
# once per 4 ms granule): data, times, setuid dropping, persistence.
. "$(dirname "$0")/lib.sh" "$1"
HERE=$(cd "$(dirname "$0")" && pwd)
make_image 1G

# The kernel's limit of asynchronous requests (max_background) is what
# vdfs-fuse asked for: the kernel's 12 by default, or -o max_background.
connection_max_background() {
    mountpoint -q /sys/fs/fuse/connections || mount -t fusectl none /sys/fs/fuse/connections
    local dev
    dev=$(awk -v m="$MNT" '$5 == m {print $3}' /proc/self/mountinfo)
    cat "/sys/fs/fuse/connections/${dev#*:}/max_background"
}
mount_fg -o max_background=48
[ "$(connection_max_background)" = 48 ] || fail "-o max_background=48 gave $(connection_max_background)"
unmount_fg
mount_fg
[ "$(connection_max_background)" = 12 ] || fail "default max_background is $(connection_max_background), not 12"
python3 "$HERE/overwrite_checks.py" "$MNT" "$WORK/state" || fail "overwrite checks"
unmount_fg
fsck_clean
mount_fg
python3 "$HERE/overwrite_checks.py" "$MNT" "$WORK/state" --after-remount || fail "overwrite checks after remount"
finish
