#!/bin/bash
# vdfsctl put/get of a large file against cp + sync on the same ext4.
# Usage: bench/vdfsctl/putget.sh [BUILD_DIR] [SIZE_MIB] [RUNS]
# The image and the copies live on one ext4 filesystem on a loop device, so
# both sides write to and read from the same kind of storage.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build}"
size_mib="${2:-2048}"
runs="${3:-3}"
work="$(mktemp -d /var/tmp/vdfs-bench.XXXXXX)"
mnt="$work/ext4"
cleanup() {
    mountpoint -q "$mnt" && umount "$mnt"
    [[ -n "${loopdev:-}" ]] && losetup -d "$loopdev" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
truncate -s $((size_mib * 5 + 2048))M "$work/ext4.img"
mkfs.ext4 -q -F "$work/ext4.img"
loopdev=$(losetup -f --show "$work/ext4.img")
mkdir -p "$mnt"
mount "$loopdev" "$mnt"
head -c $((size_mib << 20)) /dev/urandom > "$mnt/source"
sync
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }
declare -a cp_in vd_in cp_out vd_out
for ((i = 0; i < runs; i++)); do
    rm -f "$mnt/copy" "$mnt/vdfs.img" "$mnt/out"
    "$build/mkfs/mkfs.vdfs" -q "$mnt/vdfs.img" 64G
    sync; echo 3 > /proc/sys/vm/drop_caches
    t0=$(now); cp "$mnt/source" "$mnt/copy"; sync; t1=$(now)
    cp_in+=("$(echo "$size_mib / ($t1 - $t0)" | bc -l)")
    sync; echo 3 > /proc/sys/vm/drop_caches
    t0=$(now); "$build/tools/vdfsctl" put "$mnt/vdfs.img" "$mnt/source" /big; t1=$(now)
    vd_in+=("$(echo "$size_mib / ($t1 - $t0)" | bc -l)")
    sync; echo 3 > /proc/sys/vm/drop_caches
    t0=$(now); cp "$mnt/copy" "$mnt/out"; sync; t1=$(now)
    cp_out+=("$(echo "$size_mib / ($t1 - $t0)" | bc -l)")
    rm -f "$mnt/out"; sync; echo 3 > /proc/sys/vm/drop_caches
    t0=$(now); "$build/tools/vdfsctl" get "$mnt/vdfs.img" /big "$mnt/out"; sync; t1=$(now)
    vd_out+=("$(echo "$size_mib / ($t1 - $t0)" | bc -l)")
    cmp -s "$mnt/source" "$mnt/out" || { echo "putget: content differs after get" >&2; exit 1; }
done
m_cp_in=$(printf '%s\n' "${cp_in[@]}" | median); m_vd_in=$(printf '%s\n' "${vd_in[@]}" | median)
m_cp_out=$(printf '%s\n' "${cp_out[@]}" | median); m_vd_out=$(printf '%s\n' "${vd_out[@]}" | median)
printf '%-34s %10s %10s %8s\n' "workload (${size_mib} MiB, median of $runs)" "vdfsctl" "cp+sync" "ratio"
printf '%-34s %8.0f MB %8.0f MB %7.2f\n' "copy in  (put vs cp+sync)" "$m_vd_in" "$m_cp_in" "$(echo "$m_vd_in / $m_cp_in" | bc -l)"
printf '%-34s %8.0f MB %8.0f MB %7.2f\n' "copy out (get vs cp+sync)" "$m_vd_out" "$m_cp_out" "$(echo "$m_vd_out / $m_cp_out" | bc -l)"
