#!/bin/bash
# SIGSTOP a host past its lease, then SIGCONT: it must have fenced itself.
# Hosts 1 and 2 mount with hb_interval_ms=100,hb_timeout_ms=3000.  Host 1
# writes a file and keeps the metadata lock; then it is stopped.  Host 2
# takes over (bound: timeout + 2 s), makes changes and unmounts.  The image
# is hashed; host 1 is continued and every writing op on it must fail with
# EIO; the image must hash the same afterwards, also after host 1's umount
# (a fenced host writes nothing, not even its heartbeat).  fsck -n is clean,
# and host 1 mounting again sees host 2's work and none of its own failed ops.
# Usage: fence.sh BUILD_ROOT
. "$(dirname "$0")/lib.sh" "$1"
hb=hb_interval_ms=100,hb_timeout_ms=3000
bound_ms=5000

make_image 512M -H 4
mount_host 1 "$hb"
mount_host 2 "$hb"
m1=$(mnt 1) m2=$(mnt 2)
head -c 100000 /dev/urandom >"$WORK/a.data"
cp "$WORK/a.data" "$m1/a"
python3 -c 'import os,sys; os.fsync(os.open(sys.argv[1], os.O_RDONLY))' "$m1/a"
mkdir "$m1/d1"
touch "$m1/d1/keep"
python3 -c 'import os,sys; os.fsync(os.open(sys.argv[1], os.O_RDONLY))' "$m1/d1"

kill -STOP "${HOST_PID[1]}"
t0=$(now_ms)
timeout -k 2 30 mkdir "$m2/b" || fail "host 2 could not make a directory while host 1 is stopped"
t1=$(now_ms)
echo "host 2 took over from the stopped host 1 after $((t1 - t0)) ms (bound $bound_ms ms)"
[ $((t1 - t0)) -le "$bound_ms" ] || fail "takeover from a stopped host took $((t1 - t0)) ms"
cmp -s "$WORK/a.data" "$m2/a" || fail "host 2 reads host 1's fsync'ed file wrong"
echo from-host-2 >"$m2/b/c"
python3 -c 'import os,sys; os.fsync(os.open(sys.argv[1], os.O_RDONLY))' "$m2/b/c"
unmount_host 2
sleep 0.5  # well past host 1's lease by now
sha_before=$(image_digest)

kill -CONT "${HOST_PID[1]}"
python3 - "$m1" <<'PY' || fail "host 1 did not fail its writes with EIO after SIGCONT"
import errno, os, sys
m = sys.argv[1]
bad = []
def expect_eio(what, fn):
    try:
        fn()
    except OSError as e:
        if e.errno != errno.EIO:
            bad.append(f"{what}: {errno.errorcode.get(e.errno)}, expected EIO")
        return
    bad.append(f"{what}: succeeded, expected EIO")

def write_and_fsync():
    fd = os.open(f"{m}/a", os.O_WRONLY)
    try:
        os.pwrite(fd, b"fenced host writing", 0)
        os.fsync(fd)
    finally:
        os.close(fd)

def create():
    os.close(os.open(f"{m}/z", os.O_CREAT | os.O_WRONLY, 0o644))

expect_eio("create z", create)
expect_eio("mkdir zd", lambda: os.mkdir(f"{m}/zd"))
expect_eio("write+fsync a", write_and_fsync)
expect_eio("unlink d1/keep", lambda: os.unlink(f"{m}/d1/keep"))
expect_eio("rename a", lambda: os.rename(f"{m}/a", f"{m}/a2"))
expect_eio("chmod a", lambda: os.chmod(f"{m}/a", 0o600))
expect_eio("sync", lambda: os.fsync(os.open(m, os.O_RDONLY)))
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
sleep 1  # give a misbehaving renewal or commit thread time to write
[ "$(image_digest)" = "$sha_before" ] || fail "the fenced host 1 wrote to the image after SIGCONT"

umount "$m1" || fail "umount of the fenced host 1"
for _ in $(seq 200); do kill -0 "${HOST_PID[1]}" 2>/dev/null || break; sleep 0.05; done
kill -0 "${HOST_PID[1]}" 2>/dev/null && fail "the fenced host 1 did not exit after umount"
wait "${HOST_PID[1]}" || echo "(fenced host 1 exited with status $?)"
unset "HOST_PID[1]"
[ "$(image_digest)" = "$sha_before" ] || fail "the fenced host 1 wrote to the image at unmount"
fsck_clean

mount_host 1
cmp -s "$WORK/a.data" "$m1/a" || fail "after rejoining, host 1's fsync'ed file a is wrong"
[ "$(cat "$m1/b/c")" = from-host-2 ] || fail "after rejoining, host 1 does not see host 2's b/c"
[ -e "$m1/d1/keep" ] || fail "d1/keep is gone: a fenced unlink landed"
for p in z zd a2; do [ ! -e "$m1/$p" ] || fail "$p exists: a fenced op landed"; done
touch "$m1/rejoined" || fail "host 1 cannot create after rejoining"
unmount_host 1
fsck_clean
echo PASS
