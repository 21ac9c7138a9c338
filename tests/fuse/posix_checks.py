#!/usr/bin/env python3
"""POSIX semantics through a vdfs-fuse mount: each check names the call and
the errno or result it must give.  Usage: posix_checks.py MOUNTPOINT"""
import ctypes
import errno
import os
import stat
import struct
import sys

from checklib import check, expect_errno, failures

MNT = sys.argv[1]


def p(*parts):
    return os.path.join(MNT, *parts)


libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def renameat2(old, new, flags):
    if libc.renameat2(AT_FDCWD, old.encode(), AT_FDCWD, new.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


os.mkdir(p("e"))
base = p("e")

# --- errno table ---
write(p("e", "file"), b"x")
os.mkdir(p("e", "dir"))
write(p("e", "dir", "inner"), b"y")
expect_errno("mkdir over existing file", errno.EEXIST, os.mkdir, p("e", "file"))
expect_errno("O_CREAT|O_EXCL on existing", errno.EEXIST, os.open, p("e", "file"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
expect_errno("link onto existing", errno.EEXIST, os.link, p("e", "file"), p("e", "dir"))
expect_errno("rmdir non-empty", errno.ENOTEMPTY, os.rmdir, p("e", "dir"))
expect_errno("open dir for write", errno.EISDIR, os.open, p("e", "dir"), os.O_WRONLY)
expect_errno("unlink a directory", errno.EISDIR, os.unlink, p("e", "dir"))
expect_errno("rename file over dir", errno.EISDIR, os.rename, p("e", "file"), p("e", "dir"))
expect_errno("rmdir a file", errno.ENOTDIR, os.rmdir, p("e", "file"))
expect_errno("path through a file", errno.ENOTDIR, os.stat, p("e", "file", "x"))
os.mkdir(p("e", "emptydir"))
expect_errno("rename dir over file", errno.ENOTDIR, os.rename, p("e", "emptydir"), p("e", "file"))
expect_errno("256-byte name", errno.ENAMETOOLONG, os.open, p("e", "n" * 256), os.O_CREAT | os.O_WRONLY)
name255 = "m" * 255
write(p("e", name255), b"255")
check("255-byte name works", read(p("e", name255)) == b"255" and name255 in os.listdir(base))
os.symlink("loop_b", p("e", "loop_a"))
os.symlink("loop_a", p("e", "loop_b"))
expect_errno("symlink loop", errno.ELOOP, os.stat, p("e", "loop_a"))
expect_errno("missing file", errno.ENOENT, os.stat, p("e", "nothing"))
expect_errno("rename dir into itself", errno.EINVAL, os.rename, p("e", "dir"), p("e", "dir", "sub"))
expect_errno("xattr missing", errno.ENODATA, os.getxattr, p("e", "file"), "user.none")

# --- rename flags ---
write(p("e", "ra"), b"A")
write(p("e", "rb"), b"B")
expect_errno("RENAME_NOREPLACE onto existing", errno.EEXIST, renameat2, p("e", "ra"), p("e", "rb"), RENAME_NOREPLACE)
renameat2(p("e", "ra"), p("e", "rc"), RENAME_NOREPLACE)
check("RENAME_NOREPLACE to a new name", read(p("e", "rc")) == b"A" and not os.path.exists(p("e", "ra")))
renameat2(p("e", "rc"), p("e", "rb"), RENAME_EXCHANGE)
check("RENAME_EXCHANGE swaps files", read(p("e", "rc")) == b"B" and read(p("e", "rb")) == b"A")
renameat2(p("e", "dir"), p("e", "rb"), RENAME_EXCHANGE)
check("RENAME_EXCHANGE file and dir", os.path.isdir(p("e", "rb")) and os.path.isfile(p("e", "dir")))
expect_errno("RENAME_EXCHANGE with missing target", errno.ENOENT, renameat2, p("e", "rc"), p("e", "zz"), RENAME_EXCHANGE)

# --- xattrs in user., trusted., security. ---
f = p("e", "file")
for ns in ("user", "trusted", "security"):
    os.setxattr(f, f"{ns}.k", f"{ns}-value".encode())
    check(f"xattr {ns}. round trip", os.getxattr(f, f"{ns}.k") == f"{ns}-value".encode())
names = set(os.listxattr(f))
check("listxattr shows all three", {"user.k", "trusted.k", "security.k"} <= names)
expect_errno("XATTR_CREATE on existing", errno.EEXIST, os.setxattr, f, "user.k", b"v", os.XATTR_CREATE)
expect_errno("XATTR_REPLACE on missing", errno.ENODATA, os.setxattr, f, "user.new", b"v", os.XATTR_REPLACE)
os.removexattr(f, "user.k")
check("removexattr", "user.k" not in os.listxattr(f))
os.setxattr(f, "user.empty", b"")
check("empty xattr value", os.getxattr(f, "user.empty") == b"")
# POSIX ACLs are refused, as on VMFS or on ext4 mounted noacl: the kernel
# would not enforce them, so one denying user nobody must not be stored.
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in
                                      ((1, 6, 0xFFFFFFFF), (2, 0, 65534), (4, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
                                       (0x20, 4, 0xFFFFFFFF)))
expect_errno("POSIX access ACL refused", errno.EOPNOTSUPP, os.setxattr, f, "system.posix_acl_access", acl)
expect_errno("POSIX default ACL refused", errno.EOPNOTSUPP, os.setxattr, p("e"), "system.posix_acl_default", acl)
check("no ACL stored", not any(n.startswith("system.posix_acl") for n in os.listxattr(f)))

# --- O_APPEND and O_TRUNC ---
a = p("e", "append")
write(a, b"12345")
fd = os.open(a, os.O_WRONLY | os.O_APPEND)
os.write(fd, b"678")
os.lseek(fd, 0, os.SEEK_SET)
os.write(fd, b"9")
os.close(fd)
check("O_APPEND writes at the end", read(a) == b"123456789")
fd = os.open(a, os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"z")
os.close(fd)
check("O_TRUNC empties the file", read(a) == b"z")

# --- unlinked but open ---
u = p("e", "unlinked")
write(u, b"still here")
fd = os.open(u, os.O_RDWR)
os.unlink(u)
os.write(fd, b"STILL")
os.lseek(fd, 0, os.SEEK_SET)
check("open file survives unlink", os.read(fd, 100) == b"STILL here" and not os.path.exists(u))
os.close(fd)

# --- fsync / fdatasync ---
fd = os.open(p("e", "synced"), os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"durable")
os.fsync(fd)
os.fdatasync(fd)
os.close(fd)
dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
os.fsync(dfd)
os.close(dfd)

# --- shared writable mmap ---
import mmap
m = p("e", "mapped")
write(m, b"\0" * 8192)
with open(m, "r+b") as fh:
    mm = mmap.mmap(fh.fileno(), 8192, mmap.MAP_SHARED)
    mm[4096:4101] = b"hello"
    mm.flush()
    mm.close()
check("shared mmap writes reach the file", read(m)[4096:4101] == b"hello")

# --- copy_file_range ---
src = p("e", "cfr_src")
data = os.urandom(3 * 1024 * 1024 + 17)
write(src, data)
with open(src, "rb") as fi, open(p("e", "cfr_dst"), "wb") as fo:
    left = len(data)
    while left:
        n = os.copy_file_range(fi.fileno(), fo.fileno(), left)
        check("copy_file_range makes progress", n > 0)
        if n <= 0:
            break
        left -= n
check("copy_file_range copies", read(p("e", "cfr_dst")) == data)

# --- directory offsets stay valid while entries go away ---
d = p("e", "many")
os.mkdir(d)
for i in range(300):
    write(os.path.join(d, f"f{i:03d}"), b"")
seen = []
with os.scandir(d) as it:
    for n, ent in enumerate(it):
        seen.append(ent.name)
        if n == 10:
            for j in range(0, 300, 2):
                os.unlink(os.path.join(d, f"f{j:03d}"))
check("readdir while unlinking: no duplicates", len(seen) == len(set(seen)))
check("readdir while unlinking: every survivor seen", all(f"f{j:03d}" in seen for j in range(1, 300, 2)))

# --- rewinddir shows the directory as it is now ---
# os.listdir(fd) reads through a duplicate of fd and rewinds it at the
# end, so a second call reads the same open directory from offset 0.
r = p("e", "rewind")
os.mkdir(r)
write(os.path.join(r, "old"), b"")
dfd = os.open(r, os.O_RDONLY | os.O_DIRECTORY)
first = set(os.listdir(dfd))
write(os.path.join(r, "new"), b"")
os.unlink(os.path.join(r, "old"))
again = set(os.listdir(dfd))
os.close(dfd)
check(f"rewinddir lists what was created and not what was removed ({first} then {again})",
      first == {"old"} and again == {"new"})

# --- a removed directory that is still open, or still the working directory ---
# As on ext4 and tmpfs: stat works and shows no links, it lists nothing,
# and nothing can be created in it.
gone = p("e", "gone")
os.mkdir(gone)
write(os.path.join(gone, "f"), b"")
dfd = os.open(gone, os.O_RDONLY | os.O_DIRECTORY)
os.unlink(os.path.join(gone, "f"))
os.rmdir(gone)
st = os.fstat(dfd)
check(f"fstat of an open removed directory: a directory with no links ({st})",
      stat.S_ISDIR(st.st_mode) and st.st_nlink == 0)
check("an open removed directory lists nothing", os.listdir(dfd) == [])
os.close(dfd)
here = os.getcwd()
cwd = p("e", "cwd")
os.mkdir(cwd)
os.chdir(cwd)
os.rmdir(cwd)
try:
    st = os.stat(".")
    check(f"stat of a removed working directory: no links ({st})", st.st_nlink == 0 and stat.S_ISDIR(st.st_mode))
    check("a removed working directory lists nothing", os.listdir(".") == [])
    expect_errno("create in a removed working directory", errno.ENOENT, write, "new", b"")
    expect_errno("mkdir in a removed working directory", errno.ENOENT, os.mkdir, "newdir")
finally:
    os.chdir(here)

if failures:
    print(f"{len(failures)} checks failed", file=sys.stderr)
    sys.exit(1)
print("posix checks: all passed")
