#!/usr/bin/env python3
"""One host's part of the cluster workload: a seeded random mix of create,
write+fsync, truncate, rename, unlink, mkdir, rmdir and exclusive "claims"
in the host's private directory /pH and in the shared /shared, against one
vdfs-fuse mount.

Every mutation is logged to LOG: an intent line before it ("I seq op
paths...") and, once it is durable (file and parent directories fsync'ed),
a record of the resulting state with the same seq:
    F seq path size sha256      the file's whole content
    R seq old new               a rename
    U seq path                  an unlink
    D seq path                  a mkdir
    Y seq path                  an rmdir
    O seq                       done, nothing to record (a lost claim)
verify.py replays these logs.  The op sequence is a function of
(seed, host) except where a claim race is won or lost.

Exit: 0 done, 1 a check failed (content read back wrong, unexpected
errno), 3 the mount went away (ENOTCONN/EIO: the daemon was killed).
"""
import argparse
import errno
import hashlib
import os
import random
import sys
import time

MAX_FILE = 512 << 10
BIG_FILE = (3 << 20) // 2  # crosses a 1 MiB file block: block addressing
MAX_FILES = 40
CLAIMS = 12
GONE = (errno.ENOTCONN, errno.EIO, errno.ECONNABORTED, errno.ENODEV)


class MountGone(Exception):
    pass


class Host:
    def __init__(self, args):
        self.root = args.root
        self.host = args.host
        self.rng = random.Random(f"{args.seed}:{args.host}")
        self.log = open(args.log, "a", buffering=1)
        self.priv = f"/p{args.host}"
        self.files = {}   # path -> bytearray (what was made durable)
        self.dirs = []    # own directories (private root, and made ones)
        self.seq = 0
        self.counter = 0
        self.stats = {}

    # ---- helpers -------------------------------------------------------
    def p(self, path):
        return self.root + path

    def note(self, line):
        self.log.write(line + "\n")

    def intent(self, op, *paths):
        self.seq += 1
        self.note(f"I {self.seq} {op} " + " ".join(paths))
        return self.seq

    def name(self, kind):
        self.counter += 1
        return f"h{self.host}-{kind}{self.counter}"

    def fsync_dir(self, path):
        fd = os.open(self.p(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def record_file(self, seq, path):
        data = self.files[path]
        self.note(f"F {seq} {path} {len(data)} {hashlib.sha256(data).hexdigest()}")

    def count(self, op):
        self.stats[op] = self.stats.get(op, 0) + 1

    # ---- operations ----------------------------------------------------
    def op_create(self):
        parent = self.rng.choice(self.dirs + ["/shared"])
        path = f"{parent}/{self.name('f')}"
        size = BIG_FILE if self.rng.random() < 0.05 else self.rng.randrange(0, 96 << 10)
        data = bytearray(self.rng.randbytes(size))
        seq = self.intent("create", path)
        fd = os.open(self.p(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.fsync_dir(parent)
        self.files[path] = data
        self.record_file(seq, path)

    def op_write(self):
        path = self.rng.choice(sorted(f for f in self.files if "/claims/" not in f))
        data = self.files[path]
        seq = self.intent("write", path)
        fd = os.open(self.p(path), os.O_WRONLY)
        try:
            if self.rng.random() < 0.2:
                size = self.rng.randrange(0, len(data) + 1)
                os.ftruncate(fd, size)
                del data[size:]
            else:
                cap = max(MAX_FILE, len(data))
                off = self.rng.randrange(0, min(len(data), cap - 1) + 1)
                n = self.rng.randrange(1, min(64 << 10, cap - off) + 1)
                chunk = self.rng.randbytes(n)
                os.pwrite(fd, chunk, off)
                if off > len(data):
                    data.extend(bytes(off - len(data)))
                data[off:off + n] = chunk
            os.fsync(fd)
        finally:
            os.close(fd)
        self.record_file(seq, path)

    def op_rename(self):
        old = self.rng.choice(sorted(f for f in self.files if "/claims/" not in f))
        parent = self.rng.choice(self.dirs + ["/shared"])
        new = f"{parent}/{self.name('r')}"
        seq = self.intent("rename", old, new)
        os.rename(self.p(old), self.p(new))
        self.fsync_dir(os.path.dirname(old))
        self.fsync_dir(parent)
        self.files[new] = self.files.pop(old)
        self.note(f"R {seq} {old} {new}")

    def op_unlink(self):
        path = self.rng.choice(sorted(self.files))
        seq = self.intent("unlink", path)
        os.unlink(self.p(path))
        self.fsync_dir(os.path.dirname(path))
        del self.files[path]
        self.note(f"U {seq} {path}")

    def op_mkdir(self):
        parent = self.rng.choice([d for d in self.dirs if d.count("/") < 4] + ["/shared"])
        path = f"{parent}/{self.name('d')}"
        seq = self.intent("mkdir", path)
        os.mkdir(self.p(path))
        self.fsync_dir(parent)
        self.dirs.append(path)
        self.note(f"D {seq} {path}")

    def op_rmdir(self):
        empty = [d for d in self.dirs[1:]
                 if not any(x.startswith(d + "/") for x in list(self.files) + self.dirs)]
        if not empty:
            return self.op_mkdir()
        path = self.rng.choice(empty)
        seq = self.intent("rmdir", path)
        os.rmdir(self.p(path))
        self.fsync_dir(os.path.dirname(path))
        self.dirs.remove(path)
        self.note(f"Y {seq} {path}")

    def op_claim(self):
        """O_EXCL create of a name every host competes for: at most one
        host may believe it holds it (verify.py checks the final state)."""
        path = f"/shared/claims/claim{self.rng.randrange(CLAIMS)}"
        if path in self.files:
            return self.op_unlink_path(path)
        data = bytearray(f"host-{self.host}\n".encode())
        seq = self.intent("claim", path)
        try:
            fd = os.open(self.p(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self.note(f"O {seq}")
            return
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.fsync_dir("/shared/claims")
        self.files[path] = data
        self.record_file(seq, path)

    def op_unlink_path(self, path):
        seq = self.intent("unlink", path)
        os.unlink(self.p(path))
        self.fsync_dir(os.path.dirname(path))
        del self.files[path]
        self.note(f"U {seq} {path}")

    def op_read(self):
        """Reads an own file back, and looks at what the other hosts made."""
        if self.files:
            path = self.rng.choice(sorted(self.files))
            with open(self.p(path), "rb") as f:
                got = f.read()
            if got != self.files[path]:
                raise AssertionError(f"{path}: read back {len(got)} bytes that differ from the "
                                     f"{len(self.files[path])} written")
        for name in os.listdir(self.p("/shared/claims")):
            try:
                with open(self.p("/shared/claims/" + name), "rb") as f:
                    got = f.read()
            except OSError as e:
                # Unlinked by its owner meanwhile (ENOENT, ESTALE), or its owner
                # is still writing it: one writer per file, nobody else opens.
                if e.errno in (errno.ENOENT, errno.ESTALE, errno.EBUSY):
                    continue
                raise
            if got and not (got.startswith(b"host-") and got.endswith(b"\n")):
                raise AssertionError(f"claim {name} holds {len(got)} bytes, sha256 "
                                     f"{hashlib.sha256(got).hexdigest()}: {got[:24]!r}")

    def step(self):
        r = self.rng.random()
        if not self.files or r < 0.22:
            op = self.op_create if len(self.files) < MAX_FILES else self.op_unlink
        elif r < 0.57:
            own = any("/claims/" not in f for f in self.files)
            op = (self.op_write if r < 0.45 else self.op_rename) if own else self.op_create
        elif r < 0.65:
            op = self.op_unlink
        elif r < 0.73:
            op = self.op_mkdir
        elif r < 0.77:
            op = self.op_rmdir
        elif r < 0.87:
            op = self.op_claim
        else:
            op = self.op_read
        op()
        self.count(op.__name__[3:])

    def run(self, seconds, max_ops, until_seq):
        seq = self.intent("mkdir", self.priv)
        os.mkdir(self.p(self.priv))
        self.fsync_dir("/")
        self.dirs.append(self.priv)
        self.note(f"D {seq} {self.priv}")
        end = time.monotonic() + seconds
        ops = 0
        while (time.monotonic() < end and (max_ops == 0 or ops < max_ops)
               and (until_seq == 0 or self.seq < until_seq)):
            self.step()
            ops += 1
        return ops


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the host's mount point")
    ap.add_argument("--host", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--ops", type=int, default=0, help="stop after this many ops (0: no limit)")
    ap.add_argument("--until-seq", type=int, default=0,
                    help="stop once op SEQ is done: replays a single host's run (no claim races) into a "
                         "local directory, to see the bytes a failed run should have shown")
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    h = Host(args)
    try:
        ops = h.run(args.seconds, args.ops, args.until_seq)
    except OSError as e:
        h.note(f"E {h.seq} {errno.errorcode.get(e.errno, e.errno)} {e}")
        # The harness detaches a killed host's mount (umount -l): an op that
        # starts after that resolves in the empty directory underneath.
        if e.errno in GONE or not os.path.ismount(args.root):
            print(f"host {args.host}: mount went away after {h.seq} ops: {e}", file=sys.stderr)
            return 3
        print(f"host {args.host}: FAIL: unexpected error in op {h.seq}: {e}", file=sys.stderr)
        return 1
    except AssertionError as e:
        h.note(f"E {h.seq} check {e}")
        print(f"host {args.host}: FAIL: {e}", file=sys.stderr)
        return 1
    print(f"host {args.host}: {ops} ops in {args.seconds:.0f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(h.stats.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
