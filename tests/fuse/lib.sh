# Shared by the vdfs-fuse tests: a fresh image, a foreground mount, and
# the unmount + clean fsck that ends every test.
# Usage: . lib.sh BUILD_ROOT
set -eu
BUILD=$1
MKFS=$BUILD/mkfs/mkfs.vdfs
FSCK=$BUILD/fsck/fsck.vdfs
VDFS_FUSE=$BUILD/fuse/vdfs-fuse
WORK=$(mktemp -d /tmp/vdfs-fuse-test.XXXXXX)
IMG=$WORK/img
MNT=$WORK/mnt
FUSE_PID=
mkdir -p "$MNT"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

cleanup() {
    if mountpoint -q "$MNT" 2>/dev/null; then
        umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    fi
    if [ -n "$FUSE_PID" ]; then
        kill "$FUSE_PID" 2>/dev/null || true
        wait "$FUSE_PID" 2>/dev/null || true
    fi
    # Whatever else a test mounted in its directory (a tmpfs, say).
    findmnt -rn -o TARGET | grep "^$WORK/" | sort -r | xargs -r umount -l 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

make_image() { # SIZE
    "$MKFS" -q "$IMG" "$1" || fail "mkfs.vdfs $IMG $1"
}

wait_mounted() { # MOUNTPOINT
    for _ in $(seq 100); do
        mountpoint -q "$1" && return 0
        sleep 0.05
    done
    fail "$1 did not get mounted"
}

wait_unmounted_and_exited() {
    for _ in $(seq 200); do
        if ! mountpoint -q "$MNT" && ! kill -0 "$FUSE_PID" 2>/dev/null; then
            wait "$FUSE_PID" || fail "vdfs-fuse exited with status $?"
            FUSE_PID=
            return 0
        fi
        sleep 0.05
    done
    fail "vdfs-fuse did not exit after unmount"
}

# Mounts in the foreground, in the background of this shell.  With a 15 s
# heartbeat timeout unless the test gives its own (a later -o wins): this
# machine's storage has stalled a renewal for 5.5 s under CI, past the
# mkfs default's 3 s lease, and these tests are not about fencing (the
# cluster suite and host_full.sh are, with their own timing).
mount_fg() { # [-o opts]
    "$VDFS_FUSE" "$IMG" "$MNT" -f -o hb_timeout_ms=15000 "$@" &
    FUSE_PID=$!
    wait_mounted "$MNT"
}

unmount_fg() {
    umount "$MNT"
    wait_unmounted_and_exited
}

fsck_clean() {
    "$FSCK" -n "$IMG" >"$WORK/fsck.out" 2>&1 || { cat "$WORK/fsck.out" >&2; fail "fsck.vdfs -n found problems"; }
}

finish() {
    unmount_fg
    fsck_clean
    echo "PASS"
}
