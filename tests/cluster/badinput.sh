#!/bin/bash
# Bad input around the cluster structures:
#  - a damaged heartbeat sector and a damaged lock sector (the volume
#    metadata lock, and a file's lock) are named by vdfsctl and by fsck -n
#    (exit 4), repaired by fsck -y (exit 1), and a second fsck -n is clean;
#    hosts then mount and the files read back unchanged;
#  - with every heartbeat slot taken (mkfs -H 2), a third host is refused
#    with a clear message and nothing mounted; a host UUID that is already
#    live is refused too; when a slot frees up the third host mounts.
# Usage: badinput.sh BUILD_ROOT SECTOR_HELPER
. "$(dirname "$0")/lib.sh" "$1" "$2"

# flip OFFSET: inverts one byte inside the sector at OFFSET (past the magic,
# so the checksum, not the magic, is what catches it).
flip() {
    python3 - "$IMG" "$1" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
at = int(sys.argv[2]) + 100
b = os.pread(fd, 1, at)
os.pwrite(fd, bytes([b[0] ^ 0xff]), at)
os.close(fd)
PY
}

# fsck_repairs PATTERN COUNT: -n names COUNT problems matching PATTERN
# (exit 4), -y repairs them (exit 1), and then -n is clean (exit 0).
fsck_repairs() {
    local pattern=$1 count=$2 want rc
    for want in "4 -n" "1 -y" "0 -n"; do
        set -- $want
        rc=0; "$FSCK" "$2" "$IMG" >"$WORK/fsck.out" 2>&1 || rc=$?
        [ "$rc" = "$1" ] || { cat "$WORK/fsck.out" >&2; fail "fsck $2 exited $rc, expected $1 (for /$pattern/)"; }
        if [ "$1" != 0 ]; then
            [ "$(grep -cE "$pattern" "$WORK/fsck.out")" = "$count" ] ||
                { cat "$WORK/fsck.out" >&2; fail "fsck $2 did not name $count x /$pattern/"; }
        fi
    done
}

make_image 512M -H 2
head -c 300000 /dev/urandom >"$WORK/data"
mount_host 1
mount_host 2
cp "$WORK/data" "$(mnt 1)/data"
echo hello >"$(mnt 2)/small"
exec 8>>"$(mnt 2)/small"   # host 2 holds small's write lock until unmount

# All slots taken: a third host is refused, clearly, and nothing is mounted.
if try_mount_host 3 "host_uuid=$(host_uuid 3)"; then fail "a third host mounted a datastore made for 2 hosts"; fi
cat "$WORK/h3.err"
grep -qiE "slot|hosts" "$WORK/h3.err" || fail "no clear message for a full datastore: $(cat "$WORK/h3.err")"
grep -qiE "sanitizer|segmentation|abort" "$WORK/h3.err" && fail "the refused mount crashed"
mountpoint -q "$(mnt 3)" && fail "refused host 3 left a mount behind"
# The same host UUID twice is refused as well, naming that UUID.
mkdir -p "$WORK/again"
rc=0; "$VDFS_FUSE" "$IMG" "$WORK/again" -f -o "host_uuid=$(host_uuid 1)" 2>"$WORK/again.err" || rc=$?
[ "$rc" != 0 ] || fail "host 1's UUID mounted twice"
grep -q "$(host_uuid 1)" "$WORK/again.err" || fail "second mount of one UUID: message names no UUID: $(cat "$WORK/again.err")"

ino=$(stat -c %i "$(mnt 2)/small")
exec 8>&-
unmount_host 2
mount_host 3   # a slot is free again
unmount_host 3
unmount_host 1
fsck_clean

# A damaged heartbeat slot: slot 0 was written by the hosts above.
flip "$("$SECTOR" "$IMG" hb 0)"
"$VDFSCTL" hosts --json "$IMG" >"$WORK/hosts.json" || true
grep -q '"slot": 0, "state": "corrupt"' "$WORK/hosts.json" || fail "vdfsctl hosts does not report the damaged slot 0: $(cat "$WORK/hosts.json")"
fsck_repairs "bad checksum in heartbeat slot 0" 1

# A damaged volume metadata lock (descriptor 0's record) and a damaged lock
# of a file that was opened for writing.
flip "$("$SECTOR" "$IMG" fdlock 0)"
flip "$("$SECTOR" "$IMG" fdlock "$ino")"
"$VDFSCTL" locks "$IMG" >"$WORK/locks.out" 2>&1 || true
[ "$(grep -c 'corrupt lock record' "$WORK/locks.out")" = 2 ] || fail "vdfsctl locks does not report both damaged records: $(cat "$WORK/locks.out")"
fsck_repairs "bad checksum in lock record" 2

mount_host 1
mount_host 2
cmp -s "$WORK/data" "$(mnt 2)/data" || fail "data changed after the repairs"
[ "$(cat "$(mnt 1)/small")" = hello ] || fail "small changed after the repairs"
echo again >>"$(mnt 1)/small" || fail "small cannot be written after its lock was repaired"
unmount_host 1
unmount_host 2
fsck_clean
echo PASS
