#!/bin/bash
# The filesystem under a thin image fills up (a full disk under the
# datastore, not a full datastore).  A 1 GiB thin image lives on a 48 MiB
# tmpfs; data goes in through vdfs-fuse until the tmpfs is full.  The writer
# must get an error (ENOSPC or EIO, never a silent short file), the host
# fences itself and says so, and nothing is lost or corrupted: after the
# tmpfs grows, fsck -y leaves the image clean, a new mount reads every file
# fsync'ed before the failure, and the datastore takes new writes.
# Round 1 unmounts at once (the fenced host hands over within its lease);
# round 2 unmounts after the lease ran out (the next mount recovers the
# slot and replays its journal).
. "$(dirname "$0")/lib.sh" "$1"
HOST=$WORK/host
mkdir -p "$HOST"
mount -t tmpfs -o size=48M tmpfs "$HOST" || fail "cannot mount a tmpfs (needs root)"
trap 'cleanup_host' EXIT
cleanup_host() {
    cleanup_mount_only
    umount "$HOST" 2>/dev/null || umount -l "$HOST" 2>/dev/null || true
    cleanup
}
cleanup_mount_only() {
    if mountpoint -q "$MNT" 2>/dev/null; then
        umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    fi
}
IMG=$HOST/img

# Waits for the daemon to exit after the unmount; it must report failure
# (status 1: the datastore could not be unmounted cleanly).
wait_failed_exit() {
    for _ in $(seq 200); do
        if ! kill -0 "$FUSE_PID" 2>/dev/null; then
            local status=0
            wait "$FUSE_PID" || status=$?
            FUSE_PID=
            [ "$status" = 1 ] || fail "vdfs-fuse exited with status $status after fencing, expected 1"
            return 0
        fi
        sleep 0.05
    done
    fail "vdfs-fuse did not exit after unmount"
}

head -c 6000000 /dev/urandom >"$WORK/keep"
for round in 1 2; do
    rm -f "$IMG"
    mount -o remount,size=48M "$HOST" || fail "cannot shrink the tmpfs back to 48 MiB"
    make_image 1G
    "$VDFS_FUSE" "$IMG" "$MNT" -f -o commit_ms=200,hb_interval_ms=100,hb_timeout_ms=1000 2>"$WORK/fuse.err" &
    FUSE_PID=$!
    wait_mounted "$MNT"
    cp "$WORK/keep" "$MNT/keep"
    mkdir "$MNT/dir"
    for i in 1 2 3; do echo "small $i" >"$MNT/dir/s$i"; done
    sync "$MNT/keep" "$MNT/dir/s1" "$MNT/dir/s2" "$MNT/dir/s3" "$MNT/dir" "$MNT"

    if dd if=/dev/urandom of="$MNT/fill" bs=1M count=200 conv=fsync 2>"$WORK/dd.err"; then
        fail "round $round: 200 MiB went into a datastore on a 48 MiB tmpfs without an error"
    fi
    grep -qE "No space left on device|Input/output error" "$WORK/dd.err" ||
        { cat "$WORK/dd.err" >&2; fail "round $round: dd failed without ENOSPC or EIO"; }
    if (echo after >"$MNT/after" && sync "$MNT/after") 2>/dev/null; then
        fail "round $round: a fenced host still took a new file"
    fi
    grep -q "fencing this host" "$WORK/fuse.err" ||
        { cat "$WORK/fuse.err" >&2; fail "round $round: the host did not say it fenced itself"; }
    [ "$round" = 2 ] && sleep 1.5 # past the 1000 ms timeout
    umount "$MNT"
    wait_failed_exit

    mount -o remount,size=256M "$HOST"
    code=0
    "$FSCK" -y "$IMG" >"$WORK/fsck.out" 2>&1 || code=$?
    [ "$code" -le 1 ] || { cat "$WORK/fsck.out" >&2; fail "round $round: fsck -y exited $code"; }
    fsck_clean

    mount_fg
    cmp -s "$WORK/keep" "$MNT/keep" || fail "round $round: the file fsync'ed before the disk filled changed"
    for i in 1 2 3; do
        [ "$(cat "$MNT/dir/s$i")" = "small $i" ] || fail "round $round: dir/s$i changed"
    done
    if [ -e "$MNT/fill" ]; then
        size=$(stat -c %s "$MNT/fill")
        [ "$size" -le $((200 << 20)) ] || fail "round $round: fill is $size bytes"
        cat "$MNT/fill" >/dev/null || fail "round $round: fill does not read back"
    fi
    head -c 3000000 /dev/urandom >"$WORK/new"
    cp "$WORK/new" "$MNT/new" && sync "$MNT/new" || fail "round $round: no new write after the disk grew"
    cmp -s "$WORK/new" "$MNT/new" || fail "round $round: the new file reads back wrong"
    unmount_fg
    fsck_clean
    echo "round $round: ok (fsck -y exit $code)"
done
echo PASS
