#!/bin/bash
# kill -9 of a host in the middle of its work: host 1 runs workload.py
# (creates, writes, renames with fsync, holding the metadata lock), host 2
# is idle.  At a seeded moment host 1's daemon gets SIGKILL; at once host 2
# makes a directory, which needs the lock host 1 held.  With the default
# heartbeat settings (mkfs's superblock: interval 1000 ms, timeout 4000 ms;
# printed) host 2 must be done within 5 s of the kill (the issue's target).
# On one machine the dead process's liveness lock is gone at once, so this
# is usually tens of ms; without that hint it is the timeout, counted from
# host 1's last renewal, plus replay.  (fence.sh times the timeout path.)  Then host 2
# must show everything host 1 fsync'ed; fsck -n is clean, although host 1
# died holding a file open for writing (no lock of a dead host may outlive
# the takeover); host 1 mounts again and can open that file for writing.
# Usage: failover.sh BUILD_ROOT SECTOR_HELPER
. "$(dirname "$0")/lib.sh" "$1" "$2"
seed=${VDFS_CLUSTER_SEED:-4}
bound_ms=${VDFS_FAILOVER_BOUND_MS:-5000}

make_image 2G -H 8
echo "datastore heartbeat defaults: $("$SECTOR" "$IMG" timing -)"
mount_host 1
mount_host 2
mkdir "$(mnt 1)/shared" "$(mnt 1)/shared/claims"
python3 -c 'import os,sys; os.fsync(os.open(sys.argv[1], os.O_RDONLY))' "$(mnt 1)"
ls "$(mnt 2)/shared" >/dev/null

# Like a running VM, host 1 also keeps a file open for writing: its lock
# dies with host 1 and must not outlive the takeover (fsck, reopen).
echo disk >"$(mnt 1)/held.vmdk"
python3 -c 'import os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); print("open", flush=True); time.sleep(600)' \
    "$(mnt 1)/held.vmdk" >"$WORK/holder.out" &
holder=$!
for _ in $(seq 100); do grep -q open "$WORK/holder.out" && break; sleep 0.05; done
grep -q open "$WORK/holder.out" || fail "host 1 could not open held.vmdk for writing"
python3 "$HERE/workload.py" --root "$(mnt 1)" --host 1 --seed "$seed" --seconds 60 --log "$WORK/log1" \
    >"$WORK/wl1.out" 2>&1 &
wl=$!
# 2 to 3.5 s of work first, so that the journal has wrapped through many
# transactions and one is most likely open.
sleep "$(python3 -c "import random; print(2 + random.Random($seed).random() * 1.5)")"
kill -0 "$wl" 2>/dev/null || { cat "$WORK/wl1.out"; fail "host 1's workload ended before the kill"; }
grep -q '^F ' "$WORK/log1" || fail "host 1 fsync'ed nothing before the kill"

t0=$(now_ms)
kill_host 1
timeout -k 2 30 mkdir "$(mnt 2)/after-takeover" || fail "host 2 could not make a directory after host 1 died"
t1=$(now_ms)
takeover=$((t1 - t0))
echo "takeover after kill -9: ${takeover} ms (bound ${bound_ms} ms)"
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
rc=0; wait "$wl" || rc=$?
[ "$rc" = 3 ] || { cat "$WORK/wl1.out"; fail "host 1's workload: status $rc, expected 3 (mount gone)"; }
[ "$takeover" -le "$bound_ms" ] || fail "takeover took ${takeover} ms, more than ${bound_ms} ms"

python3 - "$VDFSCTL" "$IMG" "$(host_uuid 1)" <<'PY' || fail "host 1 still shows as live after the takeover"
import json, subprocess, sys
ctl, img, dead = sys.argv[1:]
slots = json.loads(subprocess.run([ctl, "hosts", "--json", img], check=True, capture_output=True).stdout)
assert not [s for s in slots if s["host_uuid"] == dead and s["state"] == "live"], slots
PY

sleep 1.2  # host 2's entry and attribute caches
python3 "$HERE/verify.py" --pending-ok --ignore /after-takeover --ignore /held.vmdk --mount "$(mnt 2)" "$WORK/log1" ||
    fail "host 2 does not show what host 1 fsync'ed"
unmount_host 2
fsck_clean

mount_host 1
[ -d "$(mnt 1)/after-takeover" ] || fail "host 1 rejoined but does not see host 2's directory"
echo again >>"$(mnt 1)/held.vmdk" || fail "the file host 1 held open when it died cannot be opened for writing"
python3 "$HERE/verify.py" --pending-ok --ignore /after-takeover --ignore /held.vmdk --mount "$(mnt 1)" "$WORK/log1" ||
    fail "after host 1 rejoined the tree differs"
unmount_host 1
fsck_clean
echo PASS
