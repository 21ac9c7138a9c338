#!/bin/bash
# EIO through the mount: a datastore with one damaged descriptor and one
# damaged directory block (made with the fsck suite's corrupter while
# unmounted) mounts; the damaged objects give EIO and the daemon logs
# their addresses; everything else reads back intact; the mount stays up
# and unmounts cleanly.  fsck -y then repairs, and the test ends with a
# mount, unmount and a clean fsck.
# Usage: eio.sh BUILD_ROOT CORRUPT
. "$(dirname "$0")/lib.sh" "$1"
CORRUPT=$2
make_image 1G

mount_fg
mkdir "$MNT/keep" "$MNT/bigdir"
head -c 3000000 /dev/urandom >"$WORK/big"
head -c 300000 /dev/urandom >"$WORK/victim"
cp "$WORK/big" "$MNT/keep/big"
cp "$WORK/victim" "$MNT/keep/victim"
echo small >"$MNT/keep/small"
# Enough entries that the directory has a directory block of its own.
for i in $(seq 60); do echo "$i" >"$MNT/bigdir/f$i"; done
victim_ino=$(stat -c %i "$MNT/keep/victim")  # FUSE node ids are descriptor numbers
bigdir_ino=$(stat -c %i "$MNT/bigdir")
unmount_fg
fsck_clean

"$CORRUPT" "$IMG" fd-csum "$victim_ino" || fail "corrupt descriptor $victim_ino"
"$CORRUPT" "$IMG" dir-csum "$bigdir_ino" || fail "corrupt directory $bigdir_ino"
# fsck names the damaged objects' addresses; the daemon must log the same.
"$FSCK" -n "$IMG" >"$WORK/fsck-damaged.out" 2>&1 || true
fd_addr=$(sed -n "s/.*bad checksum in descriptor $victim_ino at \(0x[0-9a-f]*\).*/\1/p" "$WORK/fsck-damaged.out")
dir_addr=$(sed -n "s/.*bad checksum in block 0 of directory $bigdir_ino at \(0x[0-9a-f]*\).*/\1/p" "$WORK/fsck-damaged.out")
[ -n "$fd_addr" ] && [ -n "$dir_addr" ] || { cat "$WORK/fsck-damaged.out" >&2; fail "fsck -n did not report both damaged objects"; }

mount_fg 2>"$WORK/daemon.log"
expect_eio() { # DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@" >/dev/null 2>"$WORK/eio.err"; then fail "$what: succeeded on a damaged object"; fi
    grep -q "Input/output error" "$WORK/eio.err" || { cat "$WORK/eio.err" >&2; fail "$what: not EIO"; }
}
expect_eio "stat of the file with the damaged descriptor" stat "$MNT/keep/victim"
expect_eio "read of the file with the damaged descriptor" cat "$MNT/keep/victim"
expect_eio "listing the directory with the damaged block" ls "$MNT/bigdir"
expect_eio "lookup in the directory with the damaged block" cat "$MNT/bigdir/f1"
expect_eio "create in the directory with the damaged block" touch "$MNT/bigdir/new"
grep -q "$fd_addr" "$WORK/daemon.log" || { cat "$WORK/daemon.log" >&2; fail "daemon did not log the descriptor's address $fd_addr"; }
grep -q "$dir_addr" "$WORK/daemon.log" || { cat "$WORK/daemon.log" >&2; fail "daemon did not log the directory block's address $dir_addr"; }
# Everything else is intact and the mount still works.
cmp "$WORK/big" "$MNT/keep/big" || fail "an undamaged file next to the damaged one differs"
[ "$(cat "$MNT/keep/small")" = small ] || fail "small file next to the damaged one"
[ "$(ls "$MNT/keep" | sort | tr '\n' ' ')" = "big small victim " ] || fail "listing of the directory holding the damaged file"
echo after >"$MNT/keep/new"
[ "$(cat "$MNT/keep/new")" = after ] || fail "writing after the EIOs"
mountpoint -q "$MNT" || fail "the mount went away"
kill -0 "$FUSE_PID" || fail "vdfs-fuse died"
unmount_fg

# fsck -n still reports the damage, -y repairs it, then all is clean.
"$FSCK" -n "$IMG" >"$WORK/fsck.out" 2>&1 && fail "fsck -n found nothing after the EIO mount"
rc=0
"$FSCK" -y "$IMG" >"$WORK/fsck-y.out" 2>&1 || rc=$?
[ $rc = 1 ] || { cat "$WORK/fsck-y.out" >&2; fail "fsck -y did not repair"; }
fsck_clean
mount_fg
cmp "$WORK/big" "$MNT/keep/big" || fail "big after repair"
[ "$(cat "$MNT/keep/new")" = after ] || fail "file written during the EIO mount lost"
finish
