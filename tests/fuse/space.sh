#!/bin/bash
# Thin provisioning seen from outside: du, df, punching holes, a 100 GiB
# sparse file with 1 GiB written, offsets past 4 GiB, SEEK_DATA/SEEK_HOLE,
# fallocate modes.  Ends with unmount and a clean fsck.
. "$(dirname "$0")/lib.sh" "$1"
make_image 8G
# Freed blocks return to the pool when the journal commits; a short
# commit interval keeps the df checks quick.
mount_fg -o commit_ms=200
MiB=1048576

df_free_mib() { df -B1M --output=avail "$MNT" | tail -1 | tr -d ' '; }
du_mib() { du -B1M "$1" | cut -f1; }

# statfs: an 8 GiB datastore shows about 8 GiB, nearly all free.
size_mib=$(df -B1M --output=size "$MNT" | tail -1 | tr -d ' ')
[ "$size_mib" -gt 6000 ] && [ "$size_mib" -le 8192 ] || fail "df size $size_mib MiB for an 8 GiB datastore"
stat -f -c '%l' "$MNT" | grep -qx 255 || fail "statfs name max is not 255"

# 100 GiB sparse file, 1 GiB written: du ~1 GiB, df free drops ~1 GiB.
free0=$(df_free_mib)
truncate -s 100G "$MNT/thin"
[ "$(stat -c %s "$MNT/thin")" = 107374182400 ] || fail "100 GiB size"
[ "$(du_mib "$MNT/thin")" -le 1 ] || fail "an empty 100 GiB file allocates space"
dd if=/dev/urandom of="$WORK/chunk" bs=1M count=64 status=none
for i in $(seq 0 15); do
    # 16 x 64 MiB spread over the file, some past 4 GiB and near the end.
    dd if="$WORK/chunk" of="$MNT/thin" bs=1M seek=$((i * 6000)) conv=notrunc status=none
done
used=$(du_mib "$MNT/thin")
[ "$used" -ge 1024 ] && [ "$used" -le 1100 ] || fail "du of 1 GiB written into 100 GiB: $used MiB"
free1=$(df_free_mib)
drop=$((free0 - free1))
[ "$drop" -ge 1000 ] && [ "$drop" -le 1100 ] || fail "df free dropped by $drop MiB for 1 GiB written"
# Data past 4 GiB reads back; the holes read as zeros.
dd if="$MNT/thin" bs=1M skip=$((15 * 6000)) count=64 status=none | cmp - "$WORK/chunk" || fail "data at 87 GiB"
dd if="$MNT/thin" bs=1M skip=$((1 * 6000)) count=64 status=none | cmp - "$WORK/chunk" || fail "data at 5.8 GiB"
[ "$(dd if="$MNT/thin" bs=1M skip=5000 count=4 status=none | tr -d '\0' | wc -c)" = 0 ] || fail "hole is not zeros"

# SEEK_DATA / SEEK_HOLE.
python3 - "$MNT/thin" <<'PY' || fail "SEEK_DATA/SEEK_HOLE"
import errno, os, sys
MiB = 1 << 20
fd = os.open(sys.argv[1], os.O_RDONLY)
assert os.lseek(fd, 0, os.SEEK_DATA) == 0
assert os.lseek(fd, 0, os.SEEK_HOLE) == 64 * MiB, os.lseek(fd, 0, os.SEEK_HOLE)
assert os.lseek(fd, 64 * MiB, os.SEEK_DATA) == 6000 * MiB
assert os.lseek(fd, 6000 * MiB + 5, os.SEEK_DATA) == 6000 * MiB + 5
assert os.lseek(fd, 15 * 6000 * MiB + 64 * MiB, os.SEEK_HOLE) == 15 * 6000 * MiB + 64 * MiB
try:
    os.lseek(fd, 15 * 6000 * MiB + 64 * MiB, os.SEEK_DATA)
    raise AssertionError("SEEK_DATA after the last data succeeded")
except OSError as e:
    assert e.errno == errno.ENXIO, e
try:
    os.lseek(fd, 200 << 30, os.SEEK_HOLE)
    raise AssertionError("SEEK_HOLE past EOF succeeded")
except OSError as e:
    assert e.errno == errno.ENXIO, e
os.close(fd)
PY

# Punching a hole gives the space back.
fallocate -p -o $((6000 * MiB)) -l $((64 * MiB)) "$MNT/thin"
used2=$(du_mib "$MNT/thin")
[ $((used - used2)) -ge 63 ] && [ $((used - used2)) -le 65 ] || fail "punch 64 MiB: du $used -> $used2 MiB"
[ "$(dd if="$MNT/thin" bs=1M skip=6000 count=64 status=none | tr -d '\0' | wc -c)" = 0 ] || fail "punched range is not zeros"
[ "$(stat -c %s "$MNT/thin")" = 107374182400 ] || fail "punch changed the size"
rm "$MNT/thin"
for _ in $(seq 40); do
    free2=$(df_free_mib)
    [ $((free0 - free2)) -le 2 ] && break
    sleep 0.1
done
[ $((free0 - free2)) -le 2 ] || fail "space not returned after rm: $free0 -> $free2 MiB"

# Small files live in 64 KiB sub-blocks; df counts them as used, as du does.
free3=$(df -B64K --output=avail "$MNT" | tail -1 | tr -d ' ')
mkdir "$MNT/small"
for i in $(seq 100); do head -c 20000 /dev/urandom >"$MNT/small/f$i"; done
free4=$(df -B64K --output=avail "$MNT" | tail -1 | tr -d ' ')
[ $((free3 - free4)) -ge 100 ] && [ $((free3 - free4)) -le 102 ] ||
    fail "df free dropped by $((free3 - free4)) sub-blocks for 100 small files"
[ "$(du -s -B64K "$MNT/small" | cut -f1)" -ge 100 ] || fail "du of 100 small files"
rm -r "$MNT/small"

# fallocate modes: default allocates and extends, KEEP_SIZE does not
# extend, ZERO_RANGE zeros.
fallocate -l 10M "$MNT/fa"
[ "$(stat -c %s "$MNT/fa")" = $((10 * MiB)) ] || fail "fallocate size"
[ "$(du_mib "$MNT/fa")" -ge 10 ] || fail "fallocate allocated $(du_mib "$MNT/fa") MiB"
[ "$(tr -d '\0' <"$MNT/fa" | wc -c)" = 0 ] || fail "fallocated range is not zeros"
fallocate -n -o 10M -l 5M "$MNT/fa"
[ "$(stat -c %s "$MNT/fa")" = $((10 * MiB)) ] || fail "fallocate --keep-size changed the size"
head -c $((10 * MiB)) /dev/urandom >"$MNT/fz"
fallocate -z -o 1M -l 2M "$MNT/fz"
[ "$(dd if="$MNT/fz" bs=1M skip=1 count=2 status=none | tr -d '\0' | wc -c)" = 0 ] || fail "zero range"
[ "$(dd if="$MNT/fz" bs=1M skip=3 count=1 status=none | tr -d '\0' | wc -c)" -gt 0 ] || fail "zero range went too far"

# A file whose data sits across the 4 GiB boundary.
dd if="$WORK/chunk" of="$MNT/edge" bs=1M seek=4095 count=2 status=none
dd if="$MNT/edge" bs=1M skip=4095 count=2 status=none | cmp - <(head -c $((2 * MiB)) "$WORK/chunk") || fail "data across 4 GiB"

finish
