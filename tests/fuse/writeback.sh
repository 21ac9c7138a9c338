#!/bin/bash
# vdfs-fuse's write-back cache of overwrites (fuse/wcache.c): held pages
# read back, stay off the device until fsync or close, never outlive a
# truncate or punch, keep their write's mtime, survive kill -9 once
# fsync'ed; -o writeback_mb=0 writes through, the limit and the expiry
# push data out on their own.
. "$(dirname "$0")/lib.sh" "$1"
HERE=$(cd "$(dirname "$0")" && pwd)
VDFSCTL=$BUILD/tools/vdfsctl
make_image 1G
checks() { python3 "$HERE/writeback_checks.py" "$MNT" "$IMG" "$VDFSCTL" "$@"; }
fresh_disk() { # MiB
    rm -f "$MNT/disk"
    dd if=/dev/urandom of="$MNT/disk" bs=1M count="$1" oflag=direct status=none || fail "dd"
}

# Held for the whole test unless fsync, close or truncate write it back.
mount_fg -o writeback_expire_ms=3600000
fresh_disk 3
checks held || fail "held pages"
checks caps || fail "security.capability"
checks truncate || fail "truncate and punch"
unmount_fg
fsck_clean
mount_fg
checks after-truncate || fail "after remount"
checks concurrent || fail "concurrent writes, fsync and truncate"

# kill -9 with one page fsync'ed and one held.
coproc HOLDER { checks fsync-then-hold; }
read -r ready <&"${HOLDER[0]}"
[ "$ready" = ready ] || fail "holder did not get ready"
kill -9 "$FUSE_PID"
wait "$FUSE_PID" 2>/dev/null || true
FUSE_PID=
umount -l "$MNT" 2>/dev/null || true
exec {HOLDER[1]}>&-
wait "$HOLDER_PID" 2>/dev/null || true
mount_fg
checks after-kill || fail "after kill -9"
unmount_fg
fsck_clean

mount_fg -o writeback_mb=0
checks through || fail "writeback_mb=0"
unmount_fg

mount_fg -o writeback_mb=1,writeback_expire_ms=3600000
fresh_disk 16
checks limit || fail "writeback_mb=1"
unmount_fg

mount_fg -o writeback_expire_ms=200
checks expire || fail "writeback_expire_ms"
unmount_fg
fsck_clean

# A write-back that fails (the host fenced itself while stopped past its
# lease) is the close's error: EXPIRE_MS 3600000 fails it at the close
# itself; 700 fails it in the expiry flusher first, with the file in
# nobody's hands, and the error must still wait for the close.
fenced_close() { # EXPIRE_MS
    mount_fg -o "hb_interval_ms=100,hb_timeout_ms=1000,writeback_expire_ms=$1"
    coproc FENCED { checks fenced; }
    read -r ready <&"${FENCED[0]}"
    [ "$ready" = ready ] || fail "fenced ($1): holder did not get ready"
    kill -STOP "$FUSE_PID"
    sleep 2
    kill -CONT "$FUSE_PID"
    sleep 1.5
    echo go >&"${FENCED[1]}"
    wait "$FENCED_PID" || fail "fenced ($1): close did not report the failed write-back"
    umount "$MNT"
    wait "$FUSE_PID" 2>/dev/null && fail "a fenced host's unmount reported success"
    FUSE_PID=
    mount_fg # recovers the fenced host's slot
    unmount_fg
}
# 4 KiB file blocks: a run of held pages spans far more units than one
# device batch of the library maps.
rm -f "$IMG"
"$MKFS" -q -b 4K -s 4K "$IMG" 1G || fail "mkfs.vdfs -b 4K"
mount_fg -o writeback_expire_ms=3600000
fresh_disk 3
checks small-units || fail "write-back over 4 KiB blocks"
unmount_fg
fsck_clean
rm -f "$IMG"
make_image 1G
mount_fg
fresh_disk 3
unmount_fg

fenced_close 3600000
fenced_close 700
mount_fg
finish
