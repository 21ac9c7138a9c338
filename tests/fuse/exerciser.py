#!/usr/bin/env python3
"""Model-checked random exerciser for vdfs-fuse.

Runs the same random POSIX operations against a vdfs-fuse mount and a
reference directory on tmpfs, and after every step compares the result of
the call (value or errno) and the state of the paths it touched; the whole
tree (listings, type, mode, nlink, size, link targets, xattrs, file bytes)
is compared every --full-every steps, after every remount and at the end.
Every --remount-every steps (on average) the datastore is unmounted,
checked with fsck.vdfs -n and mounted again, to check persistence.  The run
ends with unmount and a clean fsck.

A divergence prints the seed, the step number, the operation, what
differed, the last operations and the command that replays the run, and
exits 1.  Any other failure (mount, fsck, daemon death) exits 2.

    exerciser.py --build BUILD_ROOT [--seed N] [--ops M] [-v]

--fault KIND:STEP deliberately breaks the reference at STEP, to show that
a divergence is caught: 'byte' flips a byte of the reference's largest
file, 'skip' drops the reference side of the next write that extends a file.
"""
import argparse
import collections
import ctypes
import errno
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10

NAMES = ["a", "b", "c", "d", "e", "f", "g"]
# New names in the top directory also come from a pool of 120 long names,
# so that one directory outgrows the descriptor and spans directory blocks.
WIDE_NAMES = [f"wide-{i:03d}-" + "n" * 190 for i in range(120)]  # ~19 per 4 KiB block
XATTRS = ["user.x", "user.y", "user.zz"]
# An absolute target whose parent never exists: following it must fail the
# same way on both sides, never reach a file outside the two trees.
SYMLINK_TARGETS = ["a", "b", "../a", "c/d", "/nonexistent-vdfs-exerciser/target", "."]
TOP = "x"  # both trees live in TOP, so the datastore's lost+found stays out


class Divergence(Exception):
    pass


class Interrupted(Exception):
    """SIGTERM (meson's timeout) or SIGINT: clean up the mounts, exit 2."""


def interrupted(signum, _frame):
    raise Interrupted(f"stopped by signal {signum}")


def call(fn, *args):
    """('ok', value) or ('err', errno name): the outcome compared per step."""
    try:
        return ("ok", fn(*args))
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, str(e.errno)))


def check_ctypes(rc):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return 0


def renameat2(old, new, flags):
    return check_ctypes(libc.renameat2(AT_FDCWD, old.encode(), AT_FDCWD, new.encode(), flags))


def fallocate_fd(fd, mode, off, length, is_reference):
    # tmpfs has no ZERO_RANGE: the reference does what ZERO_RANGE means,
    # punch (reads as zeros) then extend the size unless KEEP_SIZE.
    if is_reference and mode & FALLOC_FL_ZERO_RANGE:
        if mode & ~(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE):
            raise OSError(errno.EINVAL, "bad mode")
        check_ctypes(libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, length))
        if not mode & FALLOC_FL_KEEP_SIZE and off + length > os.fstat(fd).st_size:
            os.ftruncate(fd, off + length)
        return 0
    return check_ctypes(libc.fallocate(fd, mode, off, length))


def clear_setid_like_vdfs(fd):
    """libvdfs clears S_ISUID, and S_ISGID when group-executable, on every
    write, also for a writer with CAP_FSETID (POSIX allows that; Linux's own
    filesystems keep the bits for root).  The reference does the same."""
    mode = os.fstat(fd).st_mode
    new = mode & ~stat.S_ISUID
    if mode & stat.S_IXGRP:
        new &= ~stat.S_ISGID
    if new != mode:
        os.fchmod(fd, stat.S_IMODE(new))


def write_like_vdfs(fd, data, off, is_reference):
    n = os.write(fd, data) if off is None else os.pwrite(fd, data, off)
    if is_reference and n > 0:
        clear_setid_like_vdfs(fd)
    return n


def with_open(path, flags, fn):
    fd = os.open(path, flags)
    try:
        return fn(fd)
    finally:
        os.close(fd)


def summary(st):
    """What must agree between the two trees for one object."""
    kind = stat.S_IFMT(st.st_mode)
    size = None if kind == stat.S_IFDIR else st.st_size  # tmpfs sizes directories its own way
    return (stat.filemode(st.st_mode), oct(st.st_mode), st.st_nlink, size, st.st_uid, st.st_gid)


def lstat_summary(path):
    try:
        return summary(os.lstat(path))
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)


def xattrs_of(path):
    try:
        names = sorted(os.listxattr(path, follow_symlinks=False))
        return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)


def data_ranges(fd):
    ranges, off = [], 0
    while True:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return ranges
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        ranges.append((start, end))
        off = end


def merge(ranges):
    out = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


class Mount:
    """The vdfs side: image, foreground daemon, unmount, fsck."""

    def __init__(self, build, work, image_size, options):
        self.mkfs = os.path.join(build, "mkfs", "mkfs.vdfs")
        self.fsck = os.path.join(build, "fsck", "fsck.vdfs")
        self.fuse = os.path.join(build, "fuse", "vdfs-fuse")
        self.image = os.path.join(work, "img")
        self.mnt = os.path.join(work, "mnt")
        self.log = os.path.join(work, "vdfs-fuse.log")
        os.mkdir(self.mnt)
        subprocess.run([self.mkfs, "-q", self.image, image_size], check=True)
        self.options = options
        self.proc = None

    def mount(self):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([self.fuse, self.image, self.mnt, "-f", "-o", self.options],
                                         stdout=log, stderr=log)
        for _ in range(400):
            if os.path.ismount(self.mnt):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"vdfs-fuse exited with {self.proc.returncode}: {self.log_tail()}")
            time.sleep(0.025)
        raise RuntimeError("vdfs-fuse did not mount")

    def unmount(self):
        if self.proc is None:
            return
        subprocess.run(["umount", self.mnt], check=True)
        rc = self.proc.wait(timeout=60)
        self.proc = None
        if rc != 0:
            raise RuntimeError(f"vdfs-fuse exited with {rc} after unmount: {self.log_tail()}")

    def fsck_clean(self):
        r = subprocess.run([self.fsck, "-n", self.image], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"fsck.vdfs -n exited {r.returncode}:\n{r.stdout}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self):
        try:
            with open(self.log) as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def abandon(self):
        if self.proc is not None:
            subprocess.run(["umount", "-l", self.mnt], stderr=subprocess.DEVNULL)
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Exerciser:
    def __init__(self, args, vdfs_root, ref_root, mount):
        self.args = args
        self.rng = random.Random(args.seed)
        self.roots = (vdfs_root, ref_root)  # index 0 = vdfs, 1 = reference
        self.mount = mount
        self.fds = []  # open pairs: [vdfs_fd, ref_fd, path, flags]
        self.history = collections.deque(maxlen=12)
        self.step = 0
        self.dirs_cache = None
        self.counts = collections.Counter()
        self.seconds = collections.Counter()
        self.fault_kind, self.fault_step = None, -1
        self.full_after_fault = False
        if args.fault:
            self.fault_kind, step = args.fault.split(":")
            self.fault_step = int(step)

    # ---- helpers ---------------------------------------------------------
    def p(self, side, rel):
        return os.path.join(self.roots[side], TOP, rel) if rel else os.path.join(self.roots[side], TOP)

    def both(self, fn, *rel_args):
        """Runs fn on each side with paths made absolute; returns both outcomes."""
        return tuple(call(fn, *[self.p(s, r) for r in rel_args]) for s in (0, 1))

    def diverge(self, op, what):
        raise Divergence(f"{op}: {what}")

    def expect_same(self, op, outcomes, what="result"):
        if outcomes[0] != outcomes[1]:
            self.diverge(op, f"{what}: vdfs {outcomes[0]!r} != reference {outcomes[1]!r}")

    def ref_dirs(self):
        if self.dirs_cache is None:
            dirs, todo = [], [""]
            while todo:  # real directories only: os.walk would list symlinks to them too
                rel = todo.pop()
                dirs.append(rel)
                with os.scandir(self.p(1, rel)) as it:
                    subs = sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
                todo.extend(os.path.join(rel, d) if rel else d for d in reversed(subs))
            self.dirs_cache = dirs
        return self.dirs_cache

    def ref_entries(self):
        return sum(len(os.listdir(self.p(1, d))) for d in self.ref_dirs())

    def pick_path(self, existing_bias=0.8):
        dirs = self.ref_dirs()
        shallow = [d for d in dirs if d.count("/") < 2]  # keeps the tree bushy rather than deep
        r = self.rng.random()
        parent = "" if r < 0.25 else self.rng.choice(shallow if r < 0.9 else dirs)
        names = sorted(os.listdir(self.p(1, parent)))
        if names and self.rng.random() < existing_bias:
            name = self.rng.choice(names)
        elif parent == "" and self.rng.random() < 0.7:
            name = self.rng.choice(WIDE_NAMES)
        else:
            name = self.rng.choice(NAMES)
        return os.path.join(parent, name) if parent else name

    def pick_offset(self):
        r = self.rng.random()
        if r < 0.85:
            return self.rng.randrange(0, 3 * MiB // 2)
        if r < 0.95:  # around a 1 MiB block boundary
            return max(0, self.rng.randrange(1, 4) * MiB + self.rng.randrange(-8 * KiB, 8 * KiB))
        # sparse, past 4 GiB: a few fixed blocks so space stays bounded
        return self.rng.choice([4 * GiB - 2 * KiB, 4 * GiB + 5000, 5 * GiB + 12345, 4 * GiB + MiB - 100])

    def pick_length(self):
        r = self.rng.random()
        if r < 0.7:
            return self.rng.randrange(1, 4 * KiB + 1)
        if r < 0.98:
            return self.rng.randrange(1, 64 * KiB + 1)
        return self.rng.randrange(1, 1100 * KiB)

    def compare_paths(self, op, *rels):
        for rel in rels:
            a, b = lstat_summary(self.p(0, rel)), lstat_summary(self.p(1, rel))
            if a != b:
                self.diverge(op, f"lstat {rel!r}: vdfs {a} != reference {b}")

    def compare_listing(self, op, rel_dir):
        out = self.both(lambda path: sorted(os.listdir(path)), rel_dir)
        self.expect_same(op, out, f"listing of {rel_dir or '.'!r}")

    def compare_fds(self, op, slot):
        vfd, rfd, path, _ = self.fds[slot]
        a, b = summary(os.fstat(vfd)), summary(os.fstat(rfd))
        if a != b:
            self.diverge(op, f"fstat of fd opened on {path!r}: vdfs {a} != reference {b}")

    # ---- the operations --------------------------------------------------
    # Each returns a description; it raises Divergence when the sides differ.
    def op_write(self):
        rel, off, n = self.pick_path(), self.pick_offset(), self.pick_length()
        data = self.rng.randbytes(n)
        op = f"write {rel!r} off={off} len={n}"
        ref = self.p(1, rel)
        extends = os.path.isfile(ref) and off + n > os.stat(ref).st_size
        res = [call(with_open, self.p(0, rel), os.O_WRONLY, lambda fd: os.pwrite(fd, data, off))]
        # The deliberate fault is a write that extends the file, so the
        # step's own compare (sizes) must catch it.
        if res[0][0] == "ok" and extends and self.consume_fault("skip"):
            res.append(res[0])  # the deliberate fault: the reference loses this write
        else:
            res.append(call(with_open, self.p(1, rel), os.O_WRONLY, lambda fd: write_like_vdfs(fd, data, off, True)))
        self.expect_same(op, res)
        self.compare_paths(op, rel)
        return op

    def op_read(self):
        rel, off, n = self.pick_path(), self.pick_offset(), self.pick_length()
        op = f"read {rel!r} off={off} len={n}"
        res = self.both(lambda path: with_open(path, os.O_RDONLY, lambda fd: os.pread(fd, n, off)), rel)
        if res[0] != res[1]:
            if res[0][0] == res[1][0] == "ok":
                a, b = res[0][1], res[1][1]
                first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
                self.diverge(op, f"bytes differ: vdfs read {len(a)}, reference {len(b)}, first difference at +{first}")
            self.expect_same(op, res)
        return op

    def op_truncate(self):
        rel, size = self.pick_path(), self.pick_offset()
        op = f"truncate {rel!r} {size}"
        self.expect_same(op, self.both(lambda path: os.truncate(path, size), rel))
        self.compare_paths(op, rel)
        return op

    def pick_falloc_mode(self):
        return self.rng.choice([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_PUNCH_HOLE])

    def op_fallocate(self):
        rel, mode = self.pick_path(), self.pick_falloc_mode()
        off, n = self.pick_offset(), self.rng.randrange(1, 2 * MiB)
        op = f"fallocate {rel!r} mode={mode:#x} off={off} len={n}"
        res = tuple(call(with_open, self.p(s, rel), os.O_WRONLY,
                         lambda fd, s=s: fallocate_fd(fd, mode, off, n, s == 1)) for s in (0, 1))
        self.expect_same(op, res)
        self.compare_paths(op, rel)
        return op

    def open_flags(self):
        flags = os.O_RDWR
        for f, prob in ((os.O_CREAT, 0.6), (os.O_EXCL, 0.15), (os.O_TRUNC, 0.2), (os.O_APPEND, 0.3)):
            if self.rng.random() < prob:
                flags |= f
        return flags

    def op_open(self):
        if len(self.fds) >= 4:
            return self.op_close()
        rel, flags, mode = self.pick_path(), self.open_flags(), self.rng.choice([0o644, 0o600, 0o755, 0o000])
        op = f"open {rel!r} flags={flags:#o} mode={mode:#o}"
        res = self.both(lambda path: os.open(path, flags, mode), rel)
        if res[0][0] != res[1][0]:
            for r in res:
                if r[0] == "ok":
                    os.close(r[1])
            self.expect_same(op, res)
        if res[0][0] == "ok":
            self.fds.append([res[0][1], res[1][1], rel, flags])
            self.compare_fds(op, len(self.fds) - 1)
        else:
            self.expect_same(op, res)
        self.compare_paths(op, rel)
        self.compare_listing(op, os.path.dirname(rel))
        return op

    def op_close(self):
        if not self.fds:
            return self.op_open()
        slot = self.rng.randrange(len(self.fds))
        vfd, rfd, path, _ = self.fds.pop(slot)
        op = f"close fd on {path!r}"
        self.expect_same(op, (call(os.close, vfd), call(os.close, rfd)))
        return op

    def pick_fd(self):
        if not self.fds:
            return None
        return self.rng.randrange(len(self.fds))

    def op_fd_write(self):
        slot = self.pick_fd()
        if slot is None:
            return self.op_open()
        vfd, rfd, path, flags = self.fds[slot]
        off, data = self.pick_offset(), self.rng.randbytes(self.pick_length())
        append = flags & os.O_APPEND
        op = f"fd write on {path!r} " + ("append" if append else f"off={off}") + f" len={len(data)}"
        res = (call(write_like_vdfs, vfd, data, None if append else off, False),
               call(write_like_vdfs, rfd, data, None if append else off, True))
        self.expect_same(op, res)
        self.compare_fds(op, slot)
        return op

    def op_fd_write_pages(self):
        """Whole aligned pages through an open descriptor: the writes
        vdfs-fuse may hold for write-back (docs/vdfs-fuse.md, WRITE-BACK)."""
        slot = self.pick_fd()
        if slot is None:
            return self.op_open()
        vfd, rfd, path, flags = self.fds[slot]
        if flags & os.O_APPEND:
            return self.op_fd_write()
        off = self.rng.randrange(0, 3 * MiB // 2 // (4 * KiB)) * 4 * KiB
        data = self.rng.randbytes(self.rng.randrange(1, 17) * 4 * KiB)
        op = f"fd page write on {path!r} off={off} len={len(data)}"
        res = (call(write_like_vdfs, vfd, data, off, False), call(write_like_vdfs, rfd, data, off, True))
        self.expect_same(op, res)
        self.compare_fds(op, slot)
        return op

    def op_fd_read(self):
        slot = self.pick_fd()
        if slot is None:
            return self.op_open()
        vfd, rfd, path, _ = self.fds[slot]
        off, n = self.pick_offset(), self.pick_length()
        op = f"fd read on {path!r} off={off} len={n}"
        res = tuple(call(os.pread, fd, n, off) for fd in (vfd, rfd))
        if res[0] != res[1]:
            self.diverge(op, "bytes differ" if res[0][0] == res[1][0] == "ok" else f"vdfs {res[0]} != reference {res[1]}")
        return op

    def op_fd_truncate(self):
        slot = self.pick_fd()
        if slot is None:
            return self.op_open()
        vfd, rfd, path, _ = self.fds[slot]
        size = self.pick_offset()
        op = f"ftruncate on {path!r} {size}"
        self.expect_same(op, tuple(call(os.ftruncate, fd, size) for fd in (vfd, rfd)))
        self.compare_fds(op, slot)
        return op

    def op_fd_fallocate(self):
        slot = self.pick_fd()
        if slot is None:
            return self.op_open()
        vfd, rfd, path, _ = self.fds[slot]
        mode, off, n = self.pick_falloc_mode(), self.pick_offset(), self.rng.randrange(1, 2 * MiB)
        op = f"fd fallocate on {path!r} mode={mode:#x} off={off} len={n}"
        self.expect_same(op, (call(fallocate_fd, vfd, mode, off, n, False), call(fallocate_fd, rfd, mode, off, n, True)))
        self.compare_fds(op, slot)
        return op

    def op_fsync(self):
        slot = self.pick_fd()
        if slot is not None and self.rng.random() < 0.5:
            vfd, rfd, path, _ = self.fds[slot]
            op = f"fsync fd on {path!r}"
            self.expect_same(op, tuple(call(os.fsync, fd) for fd in (vfd, rfd)))
            return op
        rel = self.pick_path()
        op = f"fsync {rel!r}"
        self.expect_same(op, self.both(lambda path: with_open(path, os.O_RDONLY, os.fsync), rel))
        return op

    def op_rename(self):
        a, b = self.pick_path(), self.pick_path(0.6)
        flags = self.rng.choice([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE])
        op = f"rename {a!r} -> {b!r} flags={flags}"
        res = self.both(lambda x, y: renameat2(x, y, flags), a, b)
        self.expect_same(op, res)
        if res[1][0] == "ok":
            self.dirs_cache = None
        self.compare_paths(op, a, b, os.path.dirname(a), os.path.dirname(b))
        self.compare_listing(op, os.path.dirname(a))
        self.compare_listing(op, os.path.dirname(b))
        return op

    def op_link(self):
        a, b = self.pick_path(), self.pick_path(0.3)
        op = f"link {a!r} -> {b!r}"
        self.expect_same(op, self.both(lambda x, y: os.link(x, y, follow_symlinks=False), a, b))
        self.compare_paths(op, a, b)
        self.compare_listing(op, os.path.dirname(b))
        return op

    def op_symlink(self):
        target, rel = self.rng.choice(SYMLINK_TARGETS), self.pick_path(0.3)
        op = f"symlink {target!r} at {rel!r}"
        self.expect_same(op, self.both(lambda path: os.symlink(target, path), rel))
        self.expect_same(op, self.both(os.readlink, rel), "readlink")
        self.compare_paths(op, rel)
        return op

    def op_unlink(self):
        rel = self.pick_path(0.9)
        op = f"unlink {rel!r}"
        self.expect_same(op, self.both(os.unlink, rel))
        self.compare_paths(op, rel, os.path.dirname(rel))
        self.compare_listing(op, os.path.dirname(rel))
        return op

    def op_mkdir(self):
        rel, mode = self.pick_path(0.2), self.rng.choice([0o755, 0o700, 0o2775, 0o1777])
        op = f"mkdir {rel!r} {mode:#o}"
        res = self.both(lambda path: os.mkdir(path, mode), rel)
        self.expect_same(op, res)
        if res[1][0] == "ok" and self.dirs_cache is not None:
            self.dirs_cache.append(rel)
        self.compare_paths(op, rel, os.path.dirname(rel))
        return op

    def op_rmdir(self):
        rel = self.pick_path(0.9)
        op = f"rmdir {rel!r}"
        res = self.both(os.rmdir, rel)
        self.expect_same(op, res)
        if res[1][0] == "ok" and self.dirs_cache is not None:
            self.dirs_cache.remove(rel)
        self.compare_paths(op, rel, os.path.dirname(rel))
        self.compare_listing(op, os.path.dirname(rel))
        return op

    def op_chmod(self):
        rel, mode = self.pick_path(), self.rng.randrange(0, 0o10000)
        op = f"chmod {rel!r} {mode:#o}"
        self.expect_same(op, self.both(lambda path: os.chmod(path, mode), rel))
        self.compare_paths(op, rel)
        return op

    def op_utimens(self):
        rel = self.pick_path()
        times = (self.rng.randrange(0, 1 << 41) * 1000 + self.rng.randrange(1000),
                 self.rng.randrange(0, 1 << 41) * 1000 + self.rng.randrange(1000))
        follow = self.rng.random() < 0.7
        op = f"utimens {rel!r} ns={times} follow={follow}"
        self.expect_same(op, self.both(lambda path: os.utime(path, ns=times, follow_symlinks=follow), rel))
        self.expect_same(op, self.both(lambda path: os.stat(path, follow_symlinks=follow).st_mtime_ns, rel), "mtime")
        self.compare_paths(op, rel)
        return op

    def op_setxattr(self):
        rel, name = self.pick_path(), self.rng.choice(XATTRS)
        value = self.rng.randbytes(self.rng.randrange(0, 100))
        flags = self.rng.choice([0, 0, os.XATTR_CREATE, os.XATTR_REPLACE])
        op = f"setxattr {rel!r} {name} len={len(value)} flags={flags}"
        self.expect_same(op, self.both(lambda path: os.setxattr(path, name, value, flags, follow_symlinks=False), rel))
        self.expect_same(op, self.both(xattrs_of, rel), "xattrs")
        return op

    def op_removexattr(self):
        rel, name = self.pick_path(), self.rng.choice(XATTRS)
        op = f"removexattr {rel!r} {name}"
        self.expect_same(op, self.both(lambda path: os.removexattr(path, name, follow_symlinks=False), rel))
        self.expect_same(op, self.both(xattrs_of, rel), "xattrs")
        return op

    def op_getxattr(self):
        rel, name = self.pick_path(), self.rng.choice(XATTRS)
        op = f"getxattr {rel!r} {name}"
        self.expect_same(op, self.both(lambda path: os.getxattr(path, name, follow_symlinks=False), rel))
        return op

    def op_stat(self):
        rel = self.pick_path(0.9)
        op = f"stat {rel!r}"
        self.compare_paths(op, rel)
        if self.rng.random() < 0.3:
            self.expect_same(op, self.both(os.readlink, rel), "readlink")
        return op

    def op_listdir(self):
        rel = self.rng.choice(self.ref_dirs())
        op = f"readdir {rel or '.'!r}"
        self.compare_listing(op, rel)
        return op

    def op_prune(self):
        """rm -r of a subtree, step by step on both sides: keeps the tree
        small (rmdir alone rarely succeeds) so steps stay cheap."""
        dirs = [d for d in self.ref_dirs() if d]
        if not dirs:
            return self.op_mkdir()
        top = self.rng.choice(dirs)
        op = f"rm -r {top!r}"

        def remove(rel):
            with os.scandir(self.p(1, rel)) as it:
                children = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
            for name, is_dir in children:
                child = os.path.join(rel, name)
                if is_dir:
                    remove(child)
                else:
                    self.expect_same(f"{op}: unlink {child!r}", self.both(os.unlink, child))
            self.expect_same(f"{op}: rmdir {rel!r}", self.both(os.rmdir, rel))

        remove(top)
        self.dirs_cache = None
        self.compare_paths(op, top, os.path.dirname(top))
        self.compare_listing(op, os.path.dirname(top))
        return op

    OPS = [  # (weight, method)
        # Opening for write takes the file's on-disk lock (a few device I/Os),
        # so most data goes through the pool of open descriptors.
        (6, op_write), (5, op_read), (3, op_truncate), (3, op_fallocate),
        (4, op_open), (3, op_close), (16, op_fd_write), (8, op_fd_write_pages), (10, op_fd_read), (3, op_fd_truncate),
        (3, op_fd_fallocate),
        (1, op_fsync), (5, op_rename), (3, op_link), (3, op_symlink), (5, op_unlink), (2, op_mkdir), (3, op_rmdir),
        (3, op_chmod), (2, op_utimens), (3, op_setxattr), (2, op_removexattr), (2, op_getxattr), (3, op_stat),
        (2, op_listdir), (0, op_prune),
    ]
    PRUNE_WEIGHT, PRUNE_ABOVE = 4, 250  # entries in the tree

    # ---- faults, remounts, the full compare -----------------------------
    def consume_fault(self, kind):
        if self.fault_kind == kind and self.step >= self.fault_step:
            self.fault_kind = None
            print(f"fault injected: '{kind}' at step {self.step}", file=sys.stderr)
            return True
        return False

    def fault_byte(self):
        largest, size = None, 0
        for dirpath, _, files in os.walk(self.p(1, "")):
            for f in sorted(files):
                st = os.lstat(os.path.join(dirpath, f))
                if stat.S_ISREG(st.st_mode) and 0 < st.st_size < 64 * MiB and st.st_size > size:
                    largest, size = os.path.join(dirpath, f), st.st_size
        if largest:
            with open(largest, "r+b") as f:
                f.seek(size // 2)
                byte = f.read(1)
                f.seek(size // 2)
                f.write(bytes([byte[0] ^ 0x01]))
            print(f"fault injected: flipped the byte at {size // 2} of reference {largest}", file=sys.stderr)

    def close_all(self):
        for vfd, rfd, _, _ in self.fds:
            for fd in (vfd, rfd):
                call(os.close, fd)
        self.fds = []

    def remount(self):
        t0 = time.monotonic()
        self.close_all()
        self.mount.unmount()
        self.mount.fsck_clean()
        self.mount.mount()
        self.counts["remount"] += 1
        self.seconds["remount"] += time.monotonic() - t0

    def compare_file(self, rel):
        with open(self.p(0, rel), "rb") as fv, open(self.p(1, rel), "rb") as fr:
            ranges = merge(data_ranges(fv.fileno()) + data_ranges(fr.fileno()))
            for start, end in ranges:
                off = start
                while off < end:
                    n = min(MiB, end - off)
                    a, b = os.pread(fv.fileno(), n, off), os.pread(fr.fileno(), n, off)
                    if a != b:
                        first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
                        raise Divergence(f"full compare: {rel!r}: bytes differ at {off + first}")
                    off += n

    def full_compare(self, why):
        t0 = time.monotonic()
        try:
            self.full_compare_tree(why)
        finally:
            self.seconds["full compare"] += time.monotonic() - t0

    def full_compare_tree(self, why):
        self.counts["full compare"] += 1
        todo = [""]
        while todo:
            rel = todo.pop()
            names = [sorted(os.listdir(self.p(s, rel))) for s in (0, 1)]
            if names[0] != names[1]:
                raise Divergence(f"full compare ({why}): listing of {rel or '.'!r}: vdfs {names[0]} != reference {names[1]}")
            for name in names[1]:
                child = os.path.join(rel, name) if rel else name
                sts = [os.lstat(self.p(s, child)) for s in (0, 1)]
                if summary(sts[0]) != summary(sts[1]):
                    raise Divergence(f"full compare ({why}): lstat {child!r}: vdfs {summary(sts[0])} != reference {summary(sts[1])}")
                xa = [xattrs_of(self.p(s, child)) for s in (0, 1)]
                if xa[0] != xa[1]:
                    raise Divergence(f"full compare ({why}): xattrs of {child!r}: vdfs {xa[0]} != reference {xa[1]}")
                mode = sts[1].st_mode
                if stat.S_ISLNK(mode):
                    links = [os.readlink(self.p(s, child)) for s in (0, 1)]
                    if links[0] != links[1]:
                        raise Divergence(f"full compare ({why}): link {child!r}: vdfs {links[0]!r} != reference {links[1]!r}")
                elif stat.S_ISREG(mode):
                    self.compare_file(child)
                elif stat.S_ISDIR(mode):
                    todo.append(child)

    # ---- the run ---------------------------------------------------------
    def run(self):
        for s in (0, 1):
            os.mkdir(self.p(s, ""))
        weights = [w for w, _ in self.OPS]
        methods = [m for _, m in self.OPS]
        t0 = last_report = time.monotonic()
        last_step = 0
        for self.step in range(1, self.args.ops + 1):
            if self.step % 100 == 1:
                weights[-1] = self.PRUNE_WEIGHT if self.ref_entries() > self.PRUNE_ABOVE else 0
            method = self.rng.choices(methods, weights)[0]
            desc = method.__name__
            t_op = time.monotonic()
            try:
                desc = method(self)
            except Divergence as d:
                raise Divergence(f"step {self.step}: {d}") from None
            self.counts[method.__name__[3:]] += 1
            self.seconds[method.__name__[3:]] += time.monotonic() - t_op
            self.history.append(f"{self.step}: {desc}")
            if self.args.verbose:
                print(f"{self.step}: {desc}")
            if self.fault_kind == "byte" and self.step >= self.fault_step:
                self.fault_kind = None
                self.fault_byte()
                # The full compare is what must notice a wrong byte that no
                # later read happens to touch; run it now.
                self.full_after_fault = True
            if not self.mount.alive():
                raise RuntimeError(f"vdfs-fuse died at step {self.step}: {self.mount.log_tail()}")
            try:
                if self.step % self.args.full_every == 0 or self.full_after_fault:
                    self.full_after_fault = False
                    self.full_compare(f"every {self.args.full_every} steps")
                if self.args.remount_every and self.rng.random() < 1.0 / self.args.remount_every:
                    self.remount()
                    self.history.append(f"{self.step}: unmount, fsck -n, mount")
                    self.full_compare("after remount")
            except Divergence as d:
                raise Divergence(f"step {self.step}: {d}") from None
            now = time.monotonic()
            if now - last_report > 15 or self.args.verbose_progress and self.step % 5000 == 0:
                rate = (self.step - last_step) / (now - last_report)
                last_report, last_step = now, self.step
                print(f"... step {self.step}: {rate:.0f} ops/s, {len(self.ref_dirs())} directories, "
                      f"{self.ref_entries()} entries ({len(os.listdir(self.p(1, '')))} at the top)", flush=True)
                if self.args.verbose_progress:
                    print("    seconds by operation: " + ", ".join(
                        f"{k} {v:.1f}" for k, v in self.seconds.most_common(8)), flush=True)
        self.close_all()
        try:
            self.full_compare("at the end")
            self.mount.unmount()
            self.mount.fsck_clean()
            self.mount.mount()
            self.full_compare("after the final remount")
        except Divergence as d:
            raise Divergence(f"step {self.step} (end): {d}") from None
        return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("VDFS_BUILD", "build"), help="meson build directory (default: build)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ops", type=int, default=100000)
    ap.add_argument("--full-every", type=int, default=5000, metavar="N", help="full tree compare every N steps (default 5000)")
    ap.add_argument("--remount-every", type=int, default=10000, metavar="N",
                    help="unmount + fsck + mount once per N steps on average; 0: never (default 10000)")
    ap.add_argument("--image-size", default="4G")
    ap.add_argument("-o", "--mount-options", default="commit_ms=500", metavar="OPTS",
                    help="vdfs-fuse -o options (default commit_ms=500: freed blocks come back quickly)")
    ap.add_argument("--fault", metavar="KIND:STEP", help="break the reference on purpose: byte:STEP or skip:STEP")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (image, log) on failure")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every operation")
    ap.add_argument("--progress", dest="verbose_progress", action="store_true", help="report progress every 5000 steps")
    args = ap.parse_args()
    if args.fault and (args.fault.split(":")[0] not in ("byte", "skip") or not args.fault.split(":")[-1].isdigit()):
        ap.error("--fault must be byte:STEP or skip:STEP")
    if args.ops < 1 or args.full_every < 1 or args.remount_every < 0:
        ap.error("--ops and --full-every must be positive, --remount-every not negative")
    if os.geteuid() != 0:
        ap.error("must run as root (it mounts vdfs-fuse and a tmpfs)")
    build = os.path.abspath(args.build)
    if not os.access(os.path.join(build, "fuse", "vdfs-fuse"), os.X_OK):
        ap.error(f"{build}/fuse/vdfs-fuse not found: give --build BUILD_ROOT")

    os.umask(0)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    work = tempfile.mkdtemp(prefix="vdfs-exerciser.")
    ref = os.path.join(work, "ref")
    os.mkdir(ref)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g,mode=0755", "tmpfs", ref], check=True)
    mount = ex = None
    status, keep = 2, args.keep
    replay = f"{sys.argv[0]} --build {args.build} --seed {args.seed} --ops {args.ops} " \
             f"--full-every {args.full_every} --remount-every {args.remount_every} --image-size {args.image_size} " \
             f"-o {args.mount_options}" + \
             (f" --fault {args.fault}" if args.fault else "")
    try:
        mount = Mount(build, work, args.image_size, args.mount_options)
        mount.mount()
        ex = Exerciser(args, mount.mnt, ref, mount)
        try:
            secs = ex.run()
        except Divergence as d:
            print(f"DIVERGENCE seed={args.seed} {d}", file=sys.stderr)
            print("last operations:\n  " + "\n  ".join(ex.history), file=sys.stderr)
            tail = mount.log_tail()
            if tail:
                print("vdfs-fuse log:\n" + tail, file=sys.stderr)
            print(f"replay: {replay} -v", file=sys.stderr)
            status = 1
        else:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(ex.counts.items()))
            print(f"PASS seed={args.seed}: {args.ops} operations in {secs:.1f} s ({args.ops / secs:.0f}/s), "
                  f"zero divergence; unmount + fsck clean.\n  {counts}")
            status = 0
    except (RuntimeError, subprocess.CalledProcessError, OSError, Interrupted) as e:
        print(f"ERROR seed={args.seed} step={ex.step if ex else 0}: {e}", file=sys.stderr)
        if args.verbose:
            import traceback
            traceback.print_exc()
        if mount:
            print(mount.log_tail(), file=sys.stderr)
    finally:
        if ex:
            ex.close_all()
        if status != 0 and mount:
            mount.abandon()
        elif mount:
            try:
                mount.unmount()
                mount.fsck_clean()
            except (RuntimeError, subprocess.CalledProcessError) as e:
                print(f"ERROR seed={args.seed}: final unmount/fsck: {e}", file=sys.stderr)
                mount.abandon()
                status = 2
        subprocess.run(["umount", ref], check=False)
        if keep and status != 0:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
