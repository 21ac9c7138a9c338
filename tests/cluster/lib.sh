# Shared by the cluster tests: one image, several vdfs-fuse mounts of it,
# each mount one host with its own host UUID.  Host N mounts at $WORK/hN.
# Usage: . lib.sh BUILD_ROOT [SECTOR_HELPER]
set -eu
BUILD=$1
SECTOR=${2:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MKFS=$BUILD/mkfs/mkfs.vdfs
FSCK=$BUILD/fsck/fsck.vdfs
VDFS_FUSE=$BUILD/fuse/vdfs-fuse
VDFSCTL=$BUILD/tools/vdfsctl
WORK=$(mktemp -d /tmp/vdfs-cluster-test.XXXXXX)
IMG=$WORK/img
declare -A HOST_PID=()

fail() {
    echo "FAIL: $*" >&2
    for f in "$WORK"/h*.err; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

host_uuid() { printf '00000000-0000-4000-8000-%012d' "$1"; }
mnt() { echo "$WORK/h$1"; }

cleanup() {
    local n
    for n in "${!HOST_PID[@]}"; do
        kill -CONT "${HOST_PID[$n]}" 2>/dev/null || true
    done
    for n in "${!HOST_PID[@]}"; do
        if mountpoint -q "$(mnt "$n")" 2>/dev/null; then
            umount "$(mnt "$n")" 2>/dev/null || umount -l "$(mnt "$n")" 2>/dev/null || true
        fi
    done
    # A daemon finishes its unmount (journal, heartbeat slot) after umount
    # returns: give it time before signalling, so that left-over state in
    # a kept work directory is the test's, not the clean-up's.
    for _ in $(seq 100); do
        local alive=
        for n in "${!HOST_PID[@]}"; do kill -0 "${HOST_PID[$n]}" 2>/dev/null && alive=1; done
        [ -z "$alive" ] && break
        sleep 0.05
    done
    for n in "${!HOST_PID[@]}"; do
        kill "${HOST_PID[$n]}" 2>/dev/null || true
        wait "${HOST_PID[$n]}" 2>/dev/null || true
    done
    if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

make_image() { # SIZE [mkfs options]
    local size=$1; shift
    "$MKFS" -q "$@" "$IMG" "$size" || fail "mkfs.vdfs $* $IMG $size"
}

# mount_host N [-o-style option list]: host N mounts in the foreground, in
# the background of this shell; fails the test if the mount is refused.
mount_host() {
    local n=$1 opts="host_uuid=$(host_uuid "$1")"
    [ $# -ge 2 ] && [ -n "$2" ] && opts="$opts,$2"
    try_mount_host "$n" "$opts" || fail "host $n could not mount: $(cat "$WORK/h$n.err")"
}

# try_mount_host N OPTS: 0 when mounted, 1 when vdfs-fuse exited instead.
try_mount_host() {
    local n=$1 m
    m=$(mnt "$n")
    mkdir -p "$m"
    "$VDFS_FUSE" "$IMG" "$m" -f -o "$2" 2>"$WORK/h$n.err" &
    HOST_PID[$n]=$!
    for _ in $(seq 200); do
        mountpoint -q "$m" && return 0
        if ! kill -0 "${HOST_PID[$n]}" 2>/dev/null; then
            wait "${HOST_PID[$n]}" 2>/dev/null || true
            unset "HOST_PID[$n]"
            return 1
        fi
        sleep 0.05
    done
    fail "host $n did not get mounted within 10 s"
}

# unmount_host N: umount, then the daemon must exit with status 0.
unmount_host() {
    local n=$1 m pid rc
    m=$(mnt "$n")
    pid=${HOST_PID[$n]}
    umount "$m" || fail "umount of host $n"
    for _ in $(seq 400); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rc=0; wait "$pid" || rc=$?
            unset "HOST_PID[$n]"
            [ "$rc" = 0 ] || fail "host $n's vdfs-fuse exited with status $rc after umount"
            return 0
        fi
        sleep 0.05
    done
    fail "host $n's vdfs-fuse did not exit after umount"
}

# kill_host N: kill -9 the daemon and detach its (now dead) mount.
kill_host() {
    local n=$1
    kill -9 "${HOST_PID[$n]}"
    wait "${HOST_PID[$n]}" 2>/dev/null || true
    unset "HOST_PID[$n]"
    umount -l "$(mnt "$n")" 2>/dev/null || true
}

fsck_clean() {
    "$FSCK" -n "$IMG" >"$WORK/fsck.out" 2>&1 || { cat "$WORK/fsck.out" >&2; fail "fsck.vdfs -n found problems"; }
}

# Milliseconds of CLOCK_MONOTONIC (bash's EPOCHREALTIME is wall time, which is fine at this scale).
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

# image_digest: SHA-256 over the image's data extents and where they lie
# (holes are skipped: hashing a sparse image whole reads gigabytes of zeros).
image_digest() {
    python3 - "$IMG" <<'PY'
import hashlib, os, sys
h = hashlib.sha256()
fd = os.open(sys.argv[1], os.O_RDONLY)
size, off = os.fstat(fd).st_size, 0
while off < size:
    try:
        start = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    end = os.lseek(fd, start, os.SEEK_HOLE)
    h.update(f"{start}-{end}:".encode())
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(1 << 20, end - pos), pos)
        h.update(chunk)
        pos += len(chunk)
    off = end
print(h.hexdigest())
PY
}
