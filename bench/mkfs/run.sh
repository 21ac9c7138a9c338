#!/bin/bash
# mkfs.vdfs against mkfs.ext4 on the same sparse image: wall time, bytes the
# process wrote (write_bytes from /proc, taken at reap time through wait4's
# ru_oublock) and bytes the image allocates afterwards (st_blocks * 512).
# Medians of RUNS runs (default 5) for each size (default 16T and 1T).
#
#   bench/mkfs/run.sh [BUILD_DIR]          (as root: a scratch XFS holds the images)
#   RUNS=5 SIZES="16T 1T" bench/mkfs/run.sh build
#
# 16 TiB sparse files do not fit on ext4, so as root the images live on a
# scratch XFS mounted from a sparse loop file; without root they live on
# /dev/shm (tmpfs), where write_bytes is not accounted and only the image
# allocation is meaningful.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${1:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
MKFS_VDFS=$BUILD/mkfs/mkfs.vdfs
RUNS=${RUNS:-5}
SIZES=${SIZES:-16T 1T}
[ -x "$MKFS_VDFS" ] || { echo "no $MKFS_VDFS; build first (ninja -C $BUILD)" >&2; exit 1; }
command -v mkfs.ext4 >/dev/null || { echo "mkfs.ext4 not installed" >&2; exit 1; }

SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/vdfs-bench-mkfs.XXXXXX")
LOOP=
cleanup() {
    mountpoint -q "$SCRATCH/mnt" 2>/dev/null && umount "$SCRATCH/mnt"
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

if [ "$(id -u)" = 0 ] && command -v mkfs.xfs >/dev/null; then
    truncate -s 64G "$SCRATCH/scratch.xfs"
    mkfs.xfs -q "$SCRATCH/scratch.xfs"
    LOOP=$(losetup -f --show "$SCRATCH/scratch.xfs")
    mkdir "$SCRATCH/mnt"
    mount "$LOOP" "$SCRATCH/mnt"
    DIR=$SCRATCH/mnt
    WHERE="scratch XFS on a loop device"
else
    DIR=$(mktemp -d /dev/shm/vdfs-bench-mkfs.XXXXXX)
    trap 'rm -rf "$DIR"; cleanup' EXIT
    WHERE="tmpfs (/dev/shm): write_bytes not accounted"
fi

# measure IMAGE SIZE CMD...: prints "seconds write_bytes image_bytes" for one run.
measure() {
    local img=$1 size=$2
    shift 2
    rm -f "$img"
    truncate -s "$size" "$img"
    sync
    python3 - "$@" <<'PY'
import os, sys, time
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
t1 = time.monotonic()
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit("command failed: " + " ".join(sys.argv[1:]))
print(f"{t1 - t0:.4f} {ru.ru_oublock * 512}")
PY
}

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "mkfs bench: $RUNS runs per figure, medians; images on $WHERE"
printf '%-6s %-10s %12s %16s %16s\n' size tool seconds write_bytes image_bytes
for size in $SIZES; do
    img=$DIR/bench.img
    for tool in vdfs ext4; do
        : >"$SCRATCH/$tool.runs"
        for _ in $(seq "$RUNS"); do
            if [ $tool = vdfs ]; then
                r=$(measure "$img" "$size" "$MKFS_VDFS" -q "$img")
            else
                r=$(measure "$img" "$size" mkfs.ext4 -q -F "$img")
            fi
            echo "$r $(($(stat -c %b "$img") * 512))" >>"$SCRATCH/$tool.runs"
        done
        t=$(cut -d' ' -f1 "$SCRATCH/$tool.runs" | median)
        w=$(cut -d' ' -f2 "$SCRATCH/$tool.runs" | median)
        b=$(cut -d' ' -f3 "$SCRATCH/$tool.runs" | median)
        printf '%-6s %-10s %12s %16s %16s\n' "$size" "mkfs.$tool" "$t" "$w" "$b"
        eval "${tool}_t=$t ${tool}_w=$w ${tool}_b=$b"
    done
    rm -f "$img"
    # shellcheck disable=SC2154
    python3 - "$size" "$vdfs_t" "$ext4_t" "$vdfs_w" "$ext4_w" "$vdfs_b" "$ext4_b" <<'PY'
import sys
size, vt, et, vw, ew, vb, eb = sys.argv[1], *map(float, sys.argv[2:])
r = lambda e, v: f"{e / v:.1f}x" if v > 0 else "n/a"
print(f"{size:6} ratio ext4/vdfs: time {r(et, vt)}, write_bytes {r(ew, vw)}, image bytes {r(eb, vb)}")
PY
done
