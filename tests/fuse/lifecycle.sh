#!/bin/bash
# How a vdfs-fuse mount starts and ends: SIGTERM, umount, fusermount3 -u,
# daemon mode, mount -t fuse.vdfs, a second mount refused, bad options;
# fsck.vdfs, a new mount and mkfs.vdfs right after umount.
# After each ending the datastore must check clean.
. "$(dirname "$0")/lib.sh" "$1"
make_image 1G

# SIGTERM: the session ends, the mount goes away, the journal is flushed.
mount_fg
echo term >"$MNT/after-term"
kill -TERM "$FUSE_PID"
wait_unmounted_and_exited
fsck_clean

# SIGHUP likewise (a background job of a script ignores SIGINT, as
# nohup-style inherited SIG_IGN is respected).
mount_fg
[ "$(cat "$MNT/after-term")" = term ] || fail "data written before SIGTERM lost"
kill -HUP "$FUSE_PID"
wait_unmounted_and_exited
fsck_clean

# fusermount3 -u.
mount_fg
echo fusermount >"$MNT/after-fusermount"
fusermount3 -u "$MNT"
wait_unmounted_and_exited
fsck_clean

# A second mount of a mounted datastore is refused before anything is
# mounted, with the holder named; the first mount is unharmed.
mount_fg
mkdir -p "$WORK/mnt2"
if "$VDFS_FUSE" "$IMG" "$WORK/mnt2" -f 2>"$WORK/second.err"; then
    fail "second mount of a mounted datastore succeeded"
fi
grep -q "mounted by host" "$WORK/second.err" || { cat "$WORK/second.err" >&2; fail "second mount: no clear error"; }
! mountpoint -q "$WORK/mnt2" || fail "second mount left something mounted"
if "$VDFS_FUSE" "$IMG" "$WORK/mnt2" 2>"$WORK/second-daemon.err"; then
    fail "second mount in daemon mode succeeded"
fi
grep -q "mounted by host" "$WORK/second-daemon.err" || fail "daemon mode: the refusal was not reported"
[ "$(cat "$MNT/after-fusermount")" = fusermount ] || fail "first mount harmed by the refused second"
unmount_fg
fsck_clean

# Daemon mode: the command returns once mounted; umount ends the daemon.
"$VDFS_FUSE" "$IMG" "$MNT" || fail "daemon mode mount failed"
mountpoint -q "$MNT" || fail "daemon mode: not mounted when the command returned"
daemon_pid=$(pgrep -f "^$VDFS_FUSE $IMG $MNT\$" | head -1)
[ -n "$daemon_pid" ] || fail "daemon mode: no daemon process"
echo daemon >"$MNT/daemon"
umount "$MNT"
for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$daemon_pid" 2>/dev/null || fail "daemon did not exit after umount"
fsck_clean

# umount returns before the daemon has written back what it holds and
# freed its slot.  fsck.vdfs, a new mount by the same host and mkfs.vdfs
# (at the end) wait for it instead of finding the datastore in use; a
# datastore that is still mounted is refused at once.
head -c 67108864 /dev/urandom >"$WORK/held"
"$VDFS_FUSE" "$IMG" "$MNT" -o hb_timeout_ms=15000 || fail "daemon mode mount failed"
cp "$WORK/held" "$MNT/held"
if "$FSCK" -n "$IMG" >"$WORK/fsck.out" 2>&1; then fail "fsck.vdfs -n accepted a mounted datastore"; fi
grep -q "in use" "$WORK/fsck.out" || { cat "$WORK/fsck.out" >&2; fail "fsck.vdfs -n on a mounted datastore: no clear refusal"; }
! grep -q "waiting" "$WORK/fsck.out" || fail "fsck.vdfs waited for a host that is still mounted"
umount "$MNT"
"$FSCK" -n "$IMG" >"$WORK/fsck.out" 2>&1 ||
    { cat "$WORK/fsck.out" >&2; fail "fsck.vdfs -n right after umount did not find a clean datastore"; }
"$VDFS_FUSE" "$IMG" "$MNT" -o hb_timeout_ms=15000 || fail "daemon mode mount failed"
cp "$WORK/held" "$MNT/held2"
umount "$MNT"
"$VDFS_FUSE" "$IMG" "$MNT" -f -o hb_timeout_ms=15000 2>"$WORK/remount.log" &
FUSE_PID=$!
wait_mounted "$MNT"
! grep -q "is gone" "$WORK/remount.log" || { cat "$WORK/remount.log" >&2; fail "the new mount took the unmounting one for a dead host"; }
cmp "$WORK/held" "$MNT/held" && cmp "$WORK/held" "$MNT/held2" || fail "data held at umount lost"
rm "$MNT/held" "$MNT/held2"
unmount_fg
fsck_clean

# -o ro: writes fail with EROFS, the datastore is left as it was.
mount_fg -o ro
[ "$(cat "$MNT/daemon")" = daemon ] || fail "ro: cannot read"
if echo x 2>/dev/null >"$MNT/new-in-ro"; then fail "ro: write succeeded"; fi
unmount_fg
fsck_clean

# A write-protected image (here on a read-only tmpfs) is mounted read-only
# with a warning, as mount(8) mounts a write-protected device.
mkdir -p "$WORK/rofs"
mount -t tmpfs -o size=1100M tmpfs "$WORK/rofs" || fail "tmpfs mount"
cp --sparse=always "$IMG" "$WORK/rofs/img"
mount -o remount,ro "$WORK/rofs" || fail "remount ro"
"$VDFS_FUSE" "$WORK/rofs/img" "$MNT" -f 2>"$WORK/wp.err" &
FUSE_PID=$!
wait_mounted "$MNT"
grep -q "write-protected.*mounting read-only" "$WORK/wp.err" || { cat "$WORK/wp.err" >&2; fail "write-protected image: no warning"; }
findmnt -n -o OPTIONS "$MNT" | grep -q '^ro,' || fail "write-protected image: the kernel mount is not read-only"
[ "$(cat "$MNT/daemon")" = daemon ] || fail "write-protected image: cannot read"
if echo x 2>/dev/null >"$MNT/new-in-wp"; then fail "write-protected image: write succeeded"; fi
unmount_fg
umount "$WORK/rofs"

# mount -t fuse.vdfs: mount(8) only looks for /sbin/mount.fuse.vdfs, so a
# private mount namespace lays the build tree's helper over /usr/sbin.
helper_dir=$WORK/helper
mkdir -p "$helper_dir"
ln -s "$BUILD/fuse/vdfs-fuse" "$helper_dir/mount.fuse.vdfs"
unshare -m --propagation private bash -eu -c '
    mount -t overlay overlay -o "lowerdir=$1:/usr/sbin" /usr/sbin
    mount -t fuse.vdfs -o rw,noatime,nofail,_netdev "$2" "$3"
    mountpoint -q "$3"
    findmnt -n -o FSTYPE,SOURCE "$3" | grep -q "^fuse.vdfs $2\$"
    [ "$(cat "$3/daemon")" = daemon ]
    echo via-mount >"$3/via-mount"
    cp "$5" "$3/held-mount8"
    umount "$3"
    # The daemon runs as mount.fuse.vdfs: fsck waits for it all the same.
    "$4" -n "$2" >/dev/null || { echo "fsck.vdfs -n right after umount of a mount(8) mount" >&2; exit 1; }
    for _ in $(seq 100); do pgrep -f "mount.fuse.vdfs $2 $3" >/dev/null || exit 0; sleep 0.05; done
    echo "helper daemon did not exit" >&2; exit 1
' _ "$helper_dir" "$IMG" "$MNT" "$FSCK" "$WORK/held" || fail "mount -t fuse.vdfs"
fsck_clean

# Bad input: a clear message and a non-zero exit, nothing mounted.
expect_usage_error() { # DESCRIPTION ARGS...
    local what=$1
    shift
    if "$VDFS_FUSE" "$@" -f >"$WORK/bad.out" 2>&1; then fail "$what: accepted"; fi
    [ -s "$WORK/bad.out" ] || fail "$what: no message"
    ! mountpoint -q "$MNT" || fail "$what: mounted anyway"
}
expect_usage_error "unknown option" "$IMG" "$MNT" -o no_such_option
expect_usage_error "bad commit_ms" "$IMG" "$MNT" -o commit_ms=abc
expect_usage_error "bad host_uuid" "$IMG" "$MNT" -o host_uuid=nope
expect_usage_error "missing image" "$WORK/none" "$MNT"
expect_usage_error "no mount point" "$IMG"
head -c 4194304 /dev/zero >"$WORK/not-vdfs"
expect_usage_error "not a datastore" "$WORK/not-vdfs" "$MNT"
"$VDFS_FUSE" --help | grep -q "usage:" || fail "--help"

mount_fg
[ "$(cat "$MNT/via-mount")" = via-mount ] || fail "data written via mount -t fuse.vdfs lost"
unmount_fg
fsck_clean

# mkfs.vdfs -f: refused while mounted, waits for the daemon right after umount.
"$VDFS_FUSE" "$IMG" "$MNT" -o hb_timeout_ms=15000 || fail "daemon mode mount failed"
cp "$WORK/held" "$MNT/held3"
if "$MKFS" -q -f "$IMG" 2>"$WORK/mkfs.err"; then fail "mkfs.vdfs -f formatted a mounted datastore"; fi
grep -q "mounted" "$WORK/mkfs.err" || { cat "$WORK/mkfs.err" >&2; fail "mkfs.vdfs -f on a mounted datastore: no clear refusal"; }
umount "$MNT"
"$MKFS" -q -f "$IMG" 2>"$WORK/mkfs.err" || { cat "$WORK/mkfs.err" >&2; fail "mkfs.vdfs -f right after umount refused"; }
fsck_clean
echo "PASS"
