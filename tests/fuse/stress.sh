#!/bin/bash
# Debian's stress tools against the mount, briefly: stress-ng filesystem
# stressors with --verify, dbench, and fio with verify= (buffered psync,
# O_DIRECT through io_uring and libaio, mmap), whose blocks fio checks
# again after a remount.  Ends with unmount and clean fsck.
. "$(dirname "$0")/lib.sh" "$1"
make_image 4G
mount_fg
mkdir "$MNT/stress"
for stressor in "hdd 1 --hdd-ops 200 --hdd-bytes 16m" "fallocate 1 --fallocate-ops 50" \
                "rename 1 --rename-ops 2000" "dir 1 --dir-ops 200" "dentry 1 --dentry-ops 50" \
                "seek 1 --seek-ops 2000" "sync-file 1 --sync-file-ops 50 --sync-file-bytes 16m"; do
    # shellcheck disable=SC2086
    stress-ng --$stressor --verify --timeout 20s --temp-path "$MNT/stress" \
        --metrics-brief >"$WORK/stress.log" 2>&1 || { cat "$WORK/stress.log" >&2; fail "stress-ng --$stressor"; }
    grep -q "unsuccessful run\|failed:" "$WORK/stress.log" && { cat "$WORK/stress.log" >&2; fail "stress-ng --$stressor reported failures"; }
done
dbench -t 5 -D "$MNT/stress" 2 >"$WORK/dbench.log" 2>&1 || { tail -20 "$WORK/dbench.log" >&2; fail "dbench"; }
grep -q "Throughput" "$WORK/dbench.log" || { tail -20 "$WORK/dbench.log" >&2; fail "dbench gave no result"; }
rm -rf "$MNT/stress"

# fio: every block it writes carries a checksum and its offset (verify=),
# read back and checked after the write phase; verify_fatal stops at the
# first bad block.  Block sizes, engines and preallocation vary, and the
# jobs run at once.
mkdir "$MNT/fio"
cat >"$WORK/verify.fio" <<JOBS
[global]
directory=$MNT/fio
size=48m
verify_fatal=1
do_verify=1
randrepeat=1

[buffered-psync]
ioengine=psync
rw=randwrite
bsrange=4k-256k
verify=crc32c
fallocate=none

[direct-io_uring]
ioengine=io_uring
direct=1
iodepth=16
rw=randwrite
bs=4k
verify=md5

[direct-libaio]
ioengine=libaio
direct=1
iodepth=8
rw=write
bs=1m
verify=sha256
fallocate=posix

[mmap]
ioengine=mmap
rw=randwrite
bs=64k
verify=xxhash
JOBS
fio "$WORK/verify.fio" --output="$WORK/fio.log" || { cat "$WORK/fio.log" >&2; fail "fio verify"; }
grep -qi "verify failed\|bad magic\|bad header\|crc32c: verify\|md5: verify\|sha256: verify\|xxhash: verify" "$WORK/fio.log" &&
    { cat "$WORK/fio.log" >&2; fail "fio reported a verify failure"; }
[ "$(grep -c "err= 0" "$WORK/fio.log")" = 4 ] || { cat "$WORK/fio.log" >&2; fail "not every fio job ended with err=0"; }
# The same blocks, checked again from a fresh mount: what fio wrote is what
# the datastore kept.
unmount_fg
mount_fg
fio "$WORK/verify.fio" --verify_only --output="$WORK/fio-again.log" ||
    { cat "$WORK/fio-again.log" >&2; fail "fio --verify_only after a remount"; }
[ "$(grep -c "err= 0" "$WORK/fio-again.log")" = 4 ] ||
    { cat "$WORK/fio-again.log" >&2; fail "fio --verify_only: not every job ended with err=0"; }
rm -rf "$MNT/fio"
finish
