#!/usr/bin/env python3
"""Checks of vdfs-fuse's write-back cache of overwrites.  Usage:
writeback_checks.py MOUNTPOINT IMAGE VDFSCTL PHASE

Each phase works on /disk (prepared by writeback.sh: random data written
with O_DIRECT and closed, so it is on the device).  Where held data is
checked on the device, the file's extents come from `vdfsctl map` and
the bytes from the image itself.  The map is read before the file is
opened: running vdfsctl closes the child's copy of every descriptor at
exec, and FUSE turns each close into a flush, which writes held pages
back (as close(2) does)."""
import ctypes
import json
import mmap
import os
import subprocess
import sys
import threading
import time

from checklib import check as check_one, failures


def check(what, cond, detail=""):
    check_one(f"{what} ({detail})" if detail and not cond else what, cond)

MNT, IMG, VDFSCTL, PHASE = sys.argv[1:5]
PATH = os.path.join(MNT, "disk")
PAGE = 4096
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def pattern(tag, page):
    unit = f"{tag}:{page}:".encode()
    return (unit * (PAGE // len(unit) + 1))[:PAGE]


def aligned(data):
    buf = mmap.mmap(-1, len(data))
    buf.write(data)
    return buf


def extents():
    out = subprocess.run([VDFSCTL, "map", "--json", IMG, "/disk"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["extents"]


EXTENTS = extents()  # overwrites never change it


def on_device(page):
    """The page's bytes as the image holds them now."""
    off = page * PAGE
    for e in EXTENTS:
        if e["offset"] <= off < e["offset"] + e["length"] and e["kind"] == "data":
            fd = os.open(IMG, os.O_RDONLY)
            try:
                return os.pread(fd, PAGE, e["device_offset"] + off - e["offset"])
            finally:
                os.close(fd)
    return None


def write_page(fd, tag, page):
    os.pwrite(fd, aligned(pattern(tag, page)), page * PAGE)


def read_page(fd, page):
    buf = aligned(bytes(PAGE))
    n = os.preadv(fd, [buf], page * PAGE)
    return bytes(buf[:n])


def open_direct():
    return os.open(PATH, os.O_RDWR | os.O_DIRECT)


def phase_held():
    fd = open_direct()
    pages = [0, 8, 9, 10, 300]
    before = time.time_ns()
    for p in pages:
        write_page(fd, "A", p)
    buffered = os.open(PATH, os.O_RDONLY)
    for p in pages:
        check(f"page {p} reads back through O_DIRECT while held", read_page(fd, p) == pattern("A", p))
        check(f"page {p} reads back buffered while held", os.pread(buffered, PAGE, p * PAGE) == pattern("A", p))
    held = [p for p in pages if on_device(p) != pattern("A", p)]
    check("written pages are held, not yet on the device", held == pages, f"on the device: {set(pages) - set(held)}")
    # Closing any descriptor of the file writes its held pages back.
    os.close(buffered)
    check("close of another descriptor writes held pages back", on_device(0) == pattern("A", 0))
    st = os.fstat(fd)
    check("mtime is the write's, not the write-back's", st.st_mtime_ns >= before - 50_000_000,
          f"{st.st_mtime_ns} < {before}")
    time.sleep(0.05)
    os.fsync(fd)
    check("fsync leaves mtime alone", os.fstat(fd).st_mtime_ns == st.st_mtime_ns)
    for p in pages:
        check(f"page {p} is on the device after fsync", on_device(p) == pattern("A", p))
    write_page(fd, "B", 20)
    check("page 20 is held before close", on_device(20) != pattern("B", 20))
    os.close(fd)
    check("page 20 is on the device after close", on_device(20) == pattern("B", 20))


def phase_caps():
    """An O_DIRECT open bypasses the kernel's file_remove_privs, so the
    daemon drops security.capability on write, as the kernel would."""
    caps = b"\x00\x00\x00\x02" + (0x400).to_bytes(4, "little") + bytes(12)  # VFS_CAP_REVISION_2
    os.setxattr(PATH, "security.capability", caps)
    check("security.capability is set", os.getxattr(PATH, "security.capability") == caps)
    fd = open_direct()
    write_page(fd, "K", 1)
    try:
        os.getxattr(PATH, "security.capability")
        check("an O_DIRECT write drops security.capability", False)
    except OSError:
        pass
    os.close(fd)


def phase_truncate():
    fd = open_direct()
    write_page(fd, "C", 700)
    os.ftruncate(fd, 2 << 20)
    os.ftruncate(fd, 3 << 20)
    check("a held page cut off by truncate reads as zeros", read_page(fd, 700) == bytes(PAGE))
    write_page(fd, "D", 100)
    check("punch succeeds", libc.fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 100 * PAGE, PAGE) == 0)
    check("a held page punched out reads as zeros", read_page(fd, 100) == bytes(PAGE))
    os.close(fd)
    fd = os.open(PATH, os.O_RDONLY)
    check("truncated page stays zeros after close", os.pread(fd, PAGE, 700 * PAGE) == bytes(PAGE))
    check("punched page stays zeros after close", os.pread(fd, PAGE, 100 * PAGE) == bytes(PAGE))
    os.close(fd)


def phase_after_truncate():
    fd = os.open(PATH, os.O_RDONLY)
    check("truncated page is zeros after remount", os.pread(fd, PAGE, 700 * PAGE) == bytes(PAGE))
    check("punched page is zeros after remount", os.pread(fd, PAGE, 100 * PAGE) == bytes(PAGE))
    check("page 20 kept its close-time data after remount", os.pread(fd, PAGE, 20 * PAGE) == pattern("B", 20))
    os.close(fd)


def phase_fsync_then_hold():
    """Leaves the file open with page 50 fsync'ed and page 60 held; the
    shell kills the daemon meanwhile."""
    fd = open_direct()
    write_page(fd, "E", 50)
    os.fsync(fd)
    write_page(fd, "F", 60)
    print("ready", flush=True)
    sys.stdin.read()  # until the shell closes it (after the kill)


def phase_after_kill():
    fd = os.open(PATH, os.O_RDONLY)
    check("an fsync'ed page survives kill -9 of the daemon", os.pread(fd, PAGE, 50 * PAGE) == pattern("E", 50))
    old = os.pread(fd, PAGE, 60 * PAGE)
    check("a held page is either written or not, never torn", old == pattern("F", 60) or b"F:60:" not in old)
    os.close(fd)


def phase_concurrent():
    """Writers read back their own pages while other threads fsync and
    truncate to the same size (a setattr, which writes everything back and
    keeps new pages out meanwhile) over and over: no deadlock, no lost or
    stale page."""
    size = os.stat(PATH).st_size
    stop = threading.Event()
    errors = []
    expect = {}

    def writer(wid):
        fd = open_direct()
        try:
            for i in range(1500):
                page = (i * 7919 + wid) % (size // PAGE) // 4 * 4 + wid
                tag = f"W{wid}.{i}"
                write_page(fd, tag, page)
                if read_page(fd, page) != pattern(tag, page):
                    errors.append(f"page {page} did not read back")
                    return
                expect[page] = tag
        except OSError as e:
            errors.append(f"writer {wid}: {e}")
        finally:
            os.close(fd)

    def churn(op):
        fd = os.open(PATH, os.O_RDWR)
        try:
            while not stop.is_set():
                op(fd)
        except OSError as e:
            errors.append(f"{op.__name__}: {e}")
        finally:
            os.close(fd)

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    churners = [threading.Thread(target=churn, args=(os.fsync,)),
                threading.Thread(target=churn, args=(lambda fd: os.ftruncate(fd, size),))]
    for t in writers + churners:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in churners:
        t.join()
    check("no errors from concurrent writes, fsync and truncate", not errors, "; ".join(errors[:3]))
    fd = os.open(PATH, os.O_RDONLY)
    bad = [p for p, tag in expect.items() if os.pread(fd, PAGE, p * PAGE) != pattern(tag, p)]
    os.close(fd)
    check("every page holds its last write", not bad, f"{len(bad)} pages differ")


def phase_through():
    fd = open_direct()
    write_page(fd, "G", 5)
    check("with writeback_mb=0 a write is on the device when it returns", on_device(5) == pattern("G", 5))
    os.close(fd)


def phase_limit():
    fd = open_direct()
    size = os.fstat(fd).st_size
    pages = list(range(size // PAGE))
    for p in pages:
        write_page(fd, "L", p)
    on_dev = sum(on_device(p) == pattern("L", p) for p in pages)
    # writeback_mb=1: the flusher starts at 1 MiB, a writer writes back
    # itself past 2 MiB, so at most 512 pages (and those being written by
    # the flusher) may still be held.
    check("held data stays within the limit", on_dev >= len(pages) - 1024, f"{on_dev} of {len(pages)} on the device")
    for p in pages:
        if read_page(fd, p) != pattern("L", p):
            check(f"page {p} reads back", False)
            break
    os.close(fd)


def phase_expire():
    fd = open_direct()
    write_page(fd, "H", 3)
    deadline = time.monotonic() + 5
    while on_device(3) != pattern("H", 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    check("held data is written back once older than writeback_expire_ms", on_device(3) == pattern("H", 3))
    os.close(fd)


def phase_small_units():
    """On a volume of 4 KiB blocks, adjacent held pages make one write-back
    run over many more file blocks than one device batch maps: fsync must
    still write every page."""
    fd = open_direct()
    pages = range(0, 600)
    for p in pages:
        write_page(fd, "S", p)
    check("pages are held before fsync", on_device(599) != pattern("S", 599))
    try:
        os.fsync(fd)
        check("fsync of a long run of held pages over 4 KiB blocks succeeds", True)
    except OSError as e:
        check("fsync of a long run of held pages over 4 KiB blocks succeeds", False, f"errno {e.errno}")
    wrong = [p for p in pages if on_device(p) != pattern("S", p)]
    check("every page is on the device after fsync", not wrong, f"{len(wrong)} not, first {wrong[:3]}")
    os.close(fd)


def phase_fenced():
    """Holds a page, lets the shell stop the daemon past its lease (it
    fences itself, so the write-back fails), then closes: close(2) must
    report the lost write."""
    fd = open_direct()
    write_page(fd, "Z", 7)
    print("ready", flush=True)
    sys.stdin.readline()  # the shell stopped and resumed the daemon
    try:
        os.close(fd)
        check("close reports a write-back that failed (EIO)", False)
    except OSError as e:
        check("close reports a write-back that failed (EIO)", e.errno == 5, f"errno {e.errno}")


globals()["phase_" + PHASE.replace("-", "_")]()
sys.exit(1 if failures else 0)
