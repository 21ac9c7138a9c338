#!/usr/bin/env python3
"""Overwrites of an open file through a vdfs-fuse mount.  Usage:
overwrite_checks.py MOUNTPOINT STATEFILE [--after-remount]

The first run overwrites a 3 MiB file (direct and single-indirect blocks)
at random 4 KiB offsets from several threads with O_DIRECT, as fio does, and
checks the data, that mtime and ctime follow the writes (never older than
the last write by more than the 4 ms granule, never going backwards), and
that an overwrite drops setuid.  It saves the expected content and times;
the run after a remount checks that they persisted."""
import hashlib
import json
import mmap
import os
import random
import stat
import sys
import threading
import time

from checklib import check as check_one, failures


def check(what, cond, detail=""):
    check_one(f"{what} ({detail})" if detail and not cond else what, cond)

MNT, STATE = sys.argv[1], sys.argv[2]
AFTER_REMOUNT = "--after-remount" in sys.argv[3:]
PATH = os.path.join(MNT, "disk")
SIZE = 3 << 20
BS = 4096
GRANULE_NS = 4_000_000
SLACK_NS = 50_000_000  # clock reads of this process against the daemon's


def aligned(data):
    buf = mmap.mmap(-1, len(data))
    buf.write(data)
    return buf


if AFTER_REMOUNT:
    saved = json.load(open(STATE))
    st = os.stat(PATH)
    with open(PATH, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    check("content survives the remount", digest == saved["sha256"])
    check("mtime survives the remount", st.st_mtime_ns == saved["mtime_ns"], f"{st.st_mtime_ns} != {saved['mtime_ns']}")
    check("ctime survives the remount", st.st_ctime_ns == saved["ctime_ns"], f"{st.st_ctime_ns} != {saved['ctime_ns']}")
    sys.exit(1 if failures else 0)

rng = random.Random(7)
ref = bytearray(rng.randbytes(SIZE))
with open(PATH, "wb") as f:
    f.write(ref)
    os.fsync(f.fileno())

fd = os.open(PATH, os.O_RDWR | os.O_DIRECT)

# A write long after the last change moves mtime and ctime to now.
past = 1_000_000_000 * 1_000_000_000  # 2001-09-09
os.utime(PATH, ns=(past, past))
before = time.clock_gettime_ns(time.CLOCK_REALTIME)
block = rng.randbytes(BS)
os.pwrite(fd, aligned(block), 5 * BS)
ref[5 * BS:6 * BS] = block
after = time.clock_gettime_ns(time.CLOCK_REALTIME)
st = os.fstat(fd)
check("overwrite sets mtime to the time of the write",
      before - SLACK_NS <= st.st_mtime_ns <= after + SLACK_NS, f"{before} {st.st_mtime_ns} {after}")
check("overwrite sets ctime with mtime", st.st_ctime_ns == st.st_mtime_ns)

# Many threads overwriting at random offsets (direct, single-indirect
# blocks; the 1 MiB file block size puts offsets past 1 MiB in other
# blocks); each thread owns its own 4 KiB slots so the expected content is
# exact whatever the interleaving.
THREADS, PER_THREAD = 8, 400
slots = list(range(SIZE // BS))
rng.shuffle(slots)
owned = [slots[i::THREADS] for i in range(THREADS)]
errors = []


def writer(t):
    r = random.Random(100 + t)
    buf = mmap.mmap(-1, BS)
    try:
        for _ in range(PER_THREAD):
            slot = r.choice(owned[t])
            data = r.randbytes(BS)
            buf.seek(0)
            buf.write(data)
            os.pwrite(fd, buf, slot * BS)
            ref[slot * BS:(slot + 1) * BS] = data
    except OSError as e:
        errors.append(e)


threads = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
for t in threads:
    t.start()
last_mtime = 0
monotonic_times = True
while any(t.is_alive() for t in threads):
    m = os.fstat(fd).st_mtime_ns
    monotonic_times &= m >= last_mtime
    last_mtime = m
    time.sleep(0.002)
for t in threads:
    t.join()
check("concurrent overwrites succeed", not errors, str(errors[:1]))
check("mtime never goes backwards during overwrites", monotonic_times)

# The last write of a burst: mtime may lag it by at most the granule.
time.sleep(0.02)
start = time.clock_gettime_ns(time.CLOCK_REALTIME)
os.pwrite(fd, aligned(ref[0:BS]), 0)
end = time.clock_gettime_ns(time.CLOCK_REALTIME)
st = os.fstat(fd)
check("mtime after a burst is within the granule of the last write",
      start - GRANULE_NS - SLACK_NS <= st.st_mtime_ns <= end + SLACK_NS, f"{start} {st.st_mtime_ns} {end}")
check("mtime at or after the earlier stats", st.st_mtime_ns >= last_mtime)

with open(PATH, "rb") as f:
    check("data after concurrent overwrites", f.read() == bytes(ref))

# An overwrite drops setuid (and setgid of a group-executable file), also
# when it comes right after another write.
os.pwrite(fd, aligned(ref[BS:2 * BS]), BS)
os.chmod(PATH, 0o6775)
os.pwrite(fd, aligned(ref[BS:2 * BS]), BS)
mode = os.fstat(fd).st_mode
check("overwrite drops setuid", not mode & stat.S_ISUID, oct(mode))
check("overwrite drops setgid of a group-executable file", not mode & stat.S_ISGID, oct(mode))
os.close(fd)

st = os.stat(PATH)
json.dump({"sha256": hashlib.sha256(bytes(ref)).hexdigest(), "mtime_ns": st.st_mtime_ns,
           "ctime_ns": st.st_ctime_ns}, open(STATE, "w"))
sys.exit(1 if failures else 0)
