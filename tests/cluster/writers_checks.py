#!/usr/bin/env python3
"""Checks for writers.sh; every failure is listed, exit 1 if any.

    writers_checks.py exclusive M1 M2 VDFSCTL IMAGE UUID1 UUID2
    writers_checks.py reopen FILE SECONDS      open O_RDWR until it works
    writers_checks.py multiwriter M1 M2
    writers_checks.py append M1 M2             O_APPEND from both hosts in turn
    writers_checks.py fresh_open M1 M2         an open sees the other host's new size
"""
import errno
import fcntl
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuse"))
from checklib import check, expect_errno, failures  # noqa: E402

NAME = "disk.vmdk"


def open_within(path, flags, seconds):
    """Close on another host is asynchronous (FUSE RELEASE): retry."""
    end = time.monotonic() + seconds
    while True:
        try:
            return os.open(path, flags)
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > end:
                raise
            time.sleep(0.02)


def slot_of(ctl, img, uuid):
    out = subprocess.run([ctl, "hosts", "--json", img], check=True, capture_output=True).stdout
    return [s["slot"] for s in json.loads(out) if s.get("host_uuid") == uuid and s["state"] == "live"]


def locks(ctl, img):
    return json.loads(subprocess.run([ctl, "locks", "--json", img], check=True, capture_output=True).stdout)


def exclusive(m1, m2, ctl, img, uuid1, uuid2):
    f1, f2 = f"{m1}/{NAME}", f"{m2}/{NAME}"
    a = os.open(f1, os.O_RDWR)
    os.pwrite(a, b"written by host 1\n", 0)
    os.fsync(a)
    expect_errno("host 2 O_WRONLY while host 1 writes", errno.EBUSY, os.open, f2, os.O_WRONLY)
    expect_errno("host 2 O_RDWR while host 1 writes", errno.EBUSY, os.open, f2, os.O_RDWR)
    expect_errno("host 2 O_WRONLY|O_TRUNC while host 1 writes", errno.EBUSY, os.open, f2, os.O_WRONLY | os.O_TRUNC)
    expect_errno("host 2 O_RDONLY while host 1 writes", errno.EBUSY, os.open, f2, os.O_RDONLY)
    check("host 2's refused O_TRUNC left the file alone", os.fstat(a).st_size == 18)

    ino = os.stat(f1).st_ino
    slots = slot_of(ctl, img, uuid1)
    check(f"host 1 ({uuid1}) has one live slot: {slots}", len(slots) == 1)
    held = [l for l in locks(ctl, img) if l["object"] == f"file {ino}"]
    check(f"vdfsctl locks shows file {ino} exclusive, owned by host 1's slot {slots}: {held}",
          len(held) == 1 and held[0]["mode"] == "exclusive" and [held[0]["owner_slot"]] == slots)

    os.close(a)
    try:
        b = open_within(f2, os.O_RDWR, 3)
    except OSError as e:
        check(f"host 2 O_RDWR after host 1 closed: {e}", False)
        return
    check("host 2 reads what host 1 wrote", os.pread(b, 100, 0) == b"written by host 1\n")
    expect_errno("host 1 O_WRONLY while host 2 writes", errno.EBUSY, os.open, f1, os.O_WRONLY)
    os.close(b)

    # Read-only opens share across hosts; a writer is kept out while they last.
    r1 = open_within(f1, os.O_RDONLY, 3)
    try:
        r2 = os.open(f2, os.O_RDONLY)
    except OSError as e:
        check(f"host 2 O_RDONLY while host 1 reads: {e}", False)
        r2 = None
    if r2 is not None:
        check("both hosts read the same bytes", os.pread(r1, 100, 0) == os.pread(r2, 100, 0))
        expect_errno("host 2 O_RDWR while both hosts read", errno.EBUSY, os.open, f2, os.O_RDWR)
        slots2 = slot_of(ctl, img, uuid2)
        held = [l for l in locks(ctl, img) if l["object"] == f"file {ino}"]
        check(f"vdfsctl locks shows file {ino} read-shared by both hosts: {held}",
              len(held) == 1 and held[0]["mode"] == "read-shared"
              and sorted(held[0]["holders"]) == sorted(slots + slots2))
        os.close(r2)
    expect_errno("host 2 O_RDWR while host 1 reads", errno.EBUSY, os.open, f2, os.O_RDWR)
    os.close(r1)
    try:
        os.close(open_within(f2, os.O_RDWR, 3))
    except OSError as e:
        check(f"host 2 O_RDWR after the readers closed: {e}", False)


def reopen(path, seconds):
    try:
        fd = open_within(path, os.O_RDWR, float(seconds))
    except OSError as e:
        check(f"O_RDWR of {path}: {e}", False)
        return
    check("the dead host's fsync'ed data is there", os.pread(fd, 100, 0) == b"written by host 1\n")
    os.close(fd)


def multiwriter(m1, m2):
    a = os.open(f"{m1}/{NAME}", os.O_RDWR)
    try:
        b = os.open(f"{m2}/{NAME}", os.O_RDWR)
    except OSError as e:
        check(f"host 2 O_RDWR of a multi-writer file host 1 writes: {e}", False)
        os.close(a)
        return
    os.pwrite(a, b"A" * 4096, 0)
    os.fsync(a)
    os.pwrite(b, b"B" * 4096, 4096)
    os.fsync(b)
    check("host 1 reads host 2's part", os.pread(a, 4096, 4096) == b"B" * 4096)
    check("host 2 reads host 1's part", os.pread(b, 4096, 0) == b"A" * 4096)
    os.close(a)
    os.close(b)


def append(m1, m2):
    """O_APPEND writes from both hosts in turn, each host's kernel still
    remembering the size from before the other host's append (the attribute
    timeout is 1 s): every write lands after the last, none on another."""
    with open(f"{m1}/log", "w") as f:
        f.write("base-")
    time.sleep(1.2)  # past the attribute timeout: host 2 asks afresh
    os.stat(f"{m2}/log")  # and remembers size 5 for the next second
    want = "base-"
    for who, m in (("A", m1), ("B", m2), ("C", m1), ("D", m2)):
        fd = os.open(f"{m}/log", os.O_WRONLY | os.O_APPEND)
        os.write(fd, who.encode() * 4 + b"-")
        os.close(fd)
        want += who * 4 + "-"
    time.sleep(1.2)
    for host, m in (("host 1", m1), ("host 2", m2)):
        with open(f"{m}/log") as f:
            got = f.read()
        check(f"{host} reads every append in order: {got!r}", got == want)
    # With O_APPEND cleared by fcntl, a write goes where it is told again.
    fd = os.open(f"{m1}/log", os.O_WRONLY | os.O_APPEND)
    fcntl.fcntl(fd, fcntl.F_SETFL, 0)
    os.pwrite(fd, b"B", 0)
    os.close(fd)
    with open(f"{m1}/log") as f:
        got = f.read()
    check(f"a write after O_APPEND was cleared lands at its offset: {got!r}", got == "B" + want[1:])


def fresh_open(m1, m2):
    """A file host 1 rewrote longer while host 2's kernel remembered its
    old size: host 2's next open reads all of it, and SEEK_END finds its
    end, within the attribute timeout."""
    with open(f"{m1}/conf", "w") as f:
        f.write("old")
    time.sleep(1.2)  # past the attribute timeout: host 2 asks afresh
    check("host 2 sees the old size", os.stat(f"{m2}/conf").st_size == 3)
    new = "new content, longer than the old"
    with open(f"{m1}/conf", "w") as f:
        f.write(new)
    with open(f"{m2}/conf") as f:
        got = f.read()
    check(f"host 2 reads all of host 1's rewrite: {got!r}", got == new)
    fd = os.open(f"{m2}/conf", os.O_RDONLY)
    end = os.lseek(fd, 0, os.SEEK_END)
    os.close(fd)
    check(f"host 2's SEEK_END is the new end: {end}", end == len(new))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    checks = {"exclusive": exclusive, "reopen": reopen, "multiwriter": multiwriter, "append": append,
              "fresh_open": fresh_open}
    checks[cmd](*args)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
