#!/bin/bash
# Fail-over on the heartbeat-timeout path when the stopped host was busy.
# Hosts 1 and 2 mount with hb_interval_ms=100,hb_timeout_ms=3000 (the
# default timeout: a shorter lease fenced host 2 once in CI, when the
# machine stalled for about a second).  Host 1
# runs a metadata loop (create + write + close + stat + unlink, keeping the
# metadata lock, its commit thread polling the lock record every 5 ms), so
# a SIGSTOP often lands inside a compare-and-write or an atomic read, where
# host 1 keeps an OFD lock on a lock record that host 2 must then write.
# Host 2 makes a directory at once; it must be done within the timeout plus
# a slack (watch lag interval/4, lock polls, three 20 ms settles after
# writing without the OFD lock, the replay, the FUSE round trips, a loaded
# machine, an ASan build: up to ~330 ms seen).  Without the holder tags a
# takeover that meets a held OFD lock waits that lock's patience (the
# timeout) on top of the timeout: ~6 s.
# Then host 1 is continued (fenced: its loop gets EIO), unmounted, and
# mounts again for the next round.  ROUNDS rounds; fsck -n clean at the end.
# Usage: stopbusy.sh BUILD_ROOT
. "$(dirname "$0")/lib.sh" "$1"
timeout_ms=3000
hb=hb_interval_ms=100,hb_timeout_ms=$timeout_ms
slack_ms=${VDFS_STOPBUSY_SLACK_MS:-800}
bound_ms=$((timeout_ms + slack_ms))
rounds=${VDFS_STOPBUSY_ROUNDS:-8}

make_image 512M -H 4
mount_host 2 "$hb"
m2=$(mnt 2)
took=() over=0
for ((r = 1; r <= rounds; r++)); do
    mount_host 1 "$hb"
    m1=$(mnt 1)
    mkdir -p "$m1/busy$r"
    ls "$m2" >/dev/null # host 1 sees another host: its commit thread polls the lock every 5 ms
    python3 - "$m1/busy$r" >"$WORK/busy$r.out" 2>&1 <<'PY' &
import os, sys
d, i = sys.argv[1], 0
try:
    while True:
        p = f"{d}/f{i % 8}"
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, b"x" * 100)
        os.close(fd)
        os.stat(p)
        os.unlink(p)
        i += 1
except OSError as e:
    print(f"stopped after {i} iterations: {e}")
PY
    busy=$!
    sleep "$(python3 -c 'import random; print(0.3 + random.random() * 0.4)')"
    kill -0 "$busy" 2>/dev/null || fail "round $r: host 1's metadata loop died early: $(cat "$WORK/busy$r.out")"
    kill -STOP "${HOST_PID[1]}"
    t0=$(now_ms)
    timeout -k 2 30 mkdir "$m2/after$r" || fail "round $r: host 2 could not make a directory while host 1 is stopped"
    t1=$(now_ms)
    took+=($((t1 - t0)))
    [ $((t1 - t0)) -le "$bound_ms" ] || over=$((over + 1))
    kill -CONT "${HOST_PID[1]}"
    timeout -k 2 20 bash -c "wait $busy" 2>/dev/null || true
    kill "$busy" 2>/dev/null || true
    wait "$busy" 2>/dev/null || true
    umount "$m1" 2>/dev/null || umount -l "$m1"
    for _ in $(seq 200); do kill -0 "${HOST_PID[1]}" 2>/dev/null || break; sleep 0.05; done
    kill -0 "${HOST_PID[1]}" 2>/dev/null && fail "round $r: the fenced host 1 did not exit after umount"
    wait "${HOST_PID[1]}" 2>/dev/null || true
    unset "HOST_PID[1]"
    [ -d "$m2/after$r" ] || fail "round $r: host 2's directory is gone"
done
echo "takeover ms after SIGSTOP of a busy host: ${took[*]} (bound $bound_ms ms = timeout $timeout_ms + slack $slack_ms)"
[ "$over" = 0 ] || fail "$over of $rounds takeovers took longer than $bound_ms ms: ${took[*]}"
unmount_host 2
fsck_clean
echo PASS
