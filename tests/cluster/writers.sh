#!/bin/bash
# One writer per file across hosts (the VMFS "file is locked" rule):
# while host 1 holds a file open for writing, host 2's opens of it fail with
# EBUSY (write, read-write, truncate, and read-only: an exclusive lock
# shares with nothing), `vdfsctl locks` names host 1's slot as the
# exclusive owner, and once host 1 closes, host 2 can open it for writing
# and reads host 1's data.  Read-only opens share between hosts and keep
# writers out.  O_APPEND writes from both hosts in turn all land, and an
# open reads all of a file the other host just rewrote longer.  Two mounts
# with -o multiwriter both write.  A writer whose host is killed (-9) stops
# blocking the file after the heartbeat timeout.
# Usage: writers.sh BUILD_ROOT
. "$(dirname "$0")/lib.sh" "$1"
hb=hb_interval_ms=100,hb_timeout_ms=3000

make_image 512M -H 4
mount_host 1 "$hb"
mount_host 2 "$hb"
echo original >"$(mnt 1)/disk.vmdk"
python3 "$HERE/writers_checks.py" exclusive "$(mnt 1)" "$(mnt 2)" "$VDFSCTL" "$IMG" \
    "$(host_uuid 1)" "$(host_uuid 2)" || fail "exclusive writer checks"

# O_APPEND from both hosts in turn, each kernel remembering a size the
# other host has since moved: no append lands on another.
python3 "$HERE/writers_checks.py" append "$(mnt 1)" "$(mnt 2)" || fail "O_APPEND across hosts"
# An open after the other host rewrote the file reads all of it.
python3 "$HERE/writers_checks.py" fresh_open "$(mnt 1)" "$(mnt 2)" || fail "open after another host's rewrite"

# A host that dies holding the write lock: its lock is broken after the timeout.
python3 -c '
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
print("open", flush=True)
time.sleep(600)' "$(mnt 1)/disk.vmdk" >"$WORK/holder.out" &
holder=$!
for _ in $(seq 100); do grep -q open "$WORK/holder.out" && break; sleep 0.05; done
grep -q open "$WORK/holder.out" || fail "host 1 could not open disk.vmdk for writing"
t0=$(now_ms)
kill_host 1
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
python3 "$HERE/writers_checks.py" reopen "$(mnt 2)/disk.vmdk" 10 || fail "host 2 never got disk.vmdk after host 1 died"
t1=$(now_ms)
echo "host 2 opened the dead host's file for writing $((t1 - t0)) ms after kill -9 (timeout 3000 ms; its liveness lock went with it)"
[ $((t1 - t0)) -le 3500 ] || fail "breaking the dead writer's lock took $((t1 - t0)) ms"
unmount_host 2
fsck_clean

# Opt-in multi-writer: both hosts write the same file.
mount_host 1 "$hb,multiwriter"
mount_host 2 "$hb,multiwriter"
python3 "$HERE/writers_checks.py" multiwriter "$(mnt 1)" "$(mnt 2)" || fail "multi-writer checks"
unmount_host 1
unmount_host 2
fsck_clean
echo PASS
