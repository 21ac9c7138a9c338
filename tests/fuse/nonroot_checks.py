#!/usr/bin/env python3
"""Run as an unprivileged user against a vdfs-fuse mount made by root with
-o allow_other: ownership from the caller, permissions, sticky and setgid
directories, long names and paths.  Usage: nonroot_checks.py MOUNTPOINT"""
import errno
import os
import stat
import sys

from checklib import check, expect_errno, failures

MNT = sys.argv[1]
uid, gid = os.getuid(), os.getgid()
assert uid != 0, "must not run as root"


pub = os.path.join(MNT, "pub")
mine = os.path.join(pub, f"mine-{uid}")
with open(mine, "w") as f:
    f.write("mine")
st = os.stat(mine)
check("file created in a 1777 dir is owned by the caller", (st.st_uid, st.st_gid) == (uid, gid))
os.mkdir(os.path.join(pub, f"dir-{uid}"))
st = os.stat(os.path.join(pub, f"dir-{uid}"))
check("directory owned by the caller", (st.st_uid, st.st_gid) == (uid, gid))
os.symlink("target", os.path.join(pub, f"sym-{uid}"))
check("symlink owned by the caller", os.lstat(os.path.join(pub, f"sym-{uid}")).st_uid == uid)

priv = os.path.join(MNT, "priv")
expect_errno("create in a root 0700 dir", errno.EACCES, os.open, os.path.join(priv, "x"), os.O_CREAT | os.O_WRONLY)
expect_errno("list a root 0700 dir", errno.EACCES, os.listdir, priv)
expect_errno("read a root 0600 file", errno.EACCES, os.open, os.path.join(MNT, "rootfile"), os.O_RDONLY)
expect_errno("chmod a root file", errno.EPERM, os.chmod, os.path.join(MNT, "rootfile"), 0o666)
expect_errno("chown own file to root", errno.EPERM, os.chown, mine, 0, 0)
expect_errno("utimes on a root file", errno.EPERM, os.utime, os.path.join(MNT, "rootfile"), (1, 1))
expect_errno("sticky dir: unlink root's file", errno.EPERM, os.unlink, os.path.join(pub, "root-in-pub"))
expect_errno("sticky dir: rename root's file", errno.EPERM, os.rename, os.path.join(pub, "root-in-pub"),
             os.path.join(pub, "stolen"))
expect_errno("rename across filesystems", errno.EXDEV, os.rename, mine, "/tmp/vdfs-exdev-target")
os.chmod(mine, 0o600)
check("chmod own file", stat.S_IMODE(os.stat(mine).st_mode) == 0o600)
os.utime(mine, (1000, 2000))
check("utimes own file", os.stat(mine).st_mtime == 2000)

sg = os.path.join(MNT, "setgid")
sg_gid = os.stat(sg).st_gid
with open(os.path.join(sg, f"f-{uid}"), "w") as f:
    f.write("x")
check("setgid dir passes its group to files", os.stat(os.path.join(sg, f"f-{uid}")).st_gid == sg_gid)
os.mkdir(os.path.join(sg, f"d-{uid}"))
st = os.stat(os.path.join(sg, f"d-{uid}"))
check("setgid dir passes group and setgid to subdirs", st.st_gid == sg_gid and st.st_mode & stat.S_ISGID)

# 255-byte names, and a path close to PATH_MAX.
deep = os.path.join(pub, f"deep-{uid}")
os.mkdir(deep)
path = deep
while len(path) + 256 + 256 < 4096:
    path = os.path.join(path, "d" * 255)
    os.mkdir(path)
leaf = os.path.join(path, "f" * min(255, 4095 - len(path) - 2))
with open(leaf, "w") as f:
    f.write("deep")
check(f"a {len(leaf)}-byte path works", open(leaf).read() == "deep" and len(leaf) >= 3800)

if failures:
    print(f"{len(failures)} checks failed", file=sys.stderr)
    sys.exit(1)
print("non-root checks: all passed")
