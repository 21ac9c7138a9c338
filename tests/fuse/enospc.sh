#!/bin/bash
# ENOSPC through the mount: a 64 MiB datastore filled through vdfs-fuse
# (file blocks, then sub-blocks, then descriptors) refuses writes and
# creates with ENOSPC, keeps the files written before intact, checks clean
# while full, and gives the space back after deleting.  Ends with unmount
# and a clean fsck.
. "$(dirname "$0")/lib.sh" "$1"
"$MKFS" -q -H 2 -J 1M -N 256 "$IMG" 64M || fail "mkfs.vdfs of a 64 MiB datastore"
# Freed blocks return to df at the next journal commit: commit often.
mount_fg -o commit_ms=200
df_avail_mib() { df -B1M --output=avail "$MNT" | tail -1 | tr -d ' '; }
df_ifree() { stat -f -c %d "$MNT"; }

for i in 1 2 3; do
    head -c 2000000 /dev/urandom >"$WORK/keep$i"
    cp "$WORK/keep$i" "$MNT/keep$i"
done

# File blocks: one file grows until the datastore is full.
if dd if=/dev/zero of="$MNT/fill" bs=1M 2>"$WORK/dd.err"; then fail "filling a 64 MiB datastore never failed"; fi
grep -q "No space left on device" "$WORK/dd.err" || { cat "$WORK/dd.err" >&2; fail "fill: not ENOSPC"; }
# df still shows the free sub-blocks (at most 128 x 64 KiB), which small files can use.
avail=$(df_avail_mib)
[ "$avail" -ge 1 ] && [ "$avail" -le 8 ] || fail "df shows $avail MiB free with only sub-blocks left"
# Sub-blocks: small files until they run out; then descriptors.
n=0
while head -c 50000 /dev/zero 2>/dev/null >"$MNT/small$n"; do n=$((n + 1)); [ $n -lt 1000 ] || fail "small files never ran out"; done
[ "$(df_avail_mib)" = 0 ] || fail "df shows $(df_avail_mib) MiB free on a full datastore"
n=0
while touch "$MNT/empty$n" 2>"$WORK/touch.err"; do n=$((n + 1)); [ $n -lt 1000 ] || fail "descriptors never ran out"; done
grep -q "No space left on device" "$WORK/touch.err" || { cat "$WORK/touch.err" >&2; fail "create on a full datastore: not ENOSPC"; }
[ "$(df_ifree)" = 0 ] || fail "df -i shows $(df_ifree) free descriptors"

python3 - "$MNT" <<'PY' || fail "errno on a full datastore"
import errno, os, sys
mnt = sys.argv[1]
def expect_enospc(what, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        assert e.errno == errno.ENOSPC, f"{what}: {e}"
        return
    raise AssertionError(f"{what}: succeeded on a full datastore")
fd = os.open(os.path.join(mnt, "keep1"), os.O_WRONLY)
expect_enospc("write into a hole (a new block)", os.pwrite, fd, b"x" * 65536, 8 << 20)
os.close(fd)
# On the filler, not a kept file: a failed extending fallocate leaves the
# size extended today (see fallocate_enospc.sh).
fd = os.open(os.path.join(mnt, "fill"), os.O_WRONLY)
expect_enospc("extending fallocate", os.posix_fallocate, fd, 0, 100 << 20)
os.close(fd)
expect_enospc("create", os.open, os.path.join(mnt, "new"), os.O_CREAT | os.O_WRONLY, 0o644)
expect_enospc("mkdir", os.mkdir, os.path.join(mnt, "newdir"))
expect_enospc("symlink", os.symlink, "target", os.path.join(mnt, "newlink"))
PY

for i in 1 2 3; do cmp "$WORK/keep$i" "$MNT/keep$i" || fail "keep$i changed on a full datastore"; done
mountpoint -q "$MNT" && kill -0 "$FUSE_PID" || fail "the mount went away"

# A full datastore unmounts and checks clean.
unmount_fg
fsck_clean
mount_fg -o commit_ms=200
for i in 1 2 3; do cmp "$WORK/keep$i" "$MNT/keep$i" || fail "keep$i after remounting the full datastore"; done

# Deleting gives the space back.
rm -f "$MNT/fill" "$MNT"/small* "$MNT"/empty*
for _ in $(seq 50); do [ "$(df_avail_mib)" -ge 40 ] && break; sleep 0.1; done
[ "$(df_avail_mib)" -ge 40 ] || fail "space not returned after deleting: $(df_avail_mib) MiB free"
[ "$(df_ifree)" -ge 200 ] || fail "descriptors not returned after deleting: $(df_ifree) free"
head -c 30000000 /dev/urandom >"$WORK/after"
cp "$WORK/after" "$MNT/after" || fail "writing 30 MB after freeing space"
mkdir "$MNT/dir-after" || fail "mkdir after freeing space"
unmount_fg
fsck_clean
mount_fg
cmp "$WORK/after" "$MNT/after" || fail "file written after freeing space"
for i in 1 2 3; do cmp "$WORK/keep$i" "$MNT/keep$i" || fail "keep$i at the end"; done
finish
