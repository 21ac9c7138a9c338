"""Shared by the FUSE check scripts: record failures instead of stopping at
the first, so one run names every broken behaviour."""
import errno
import sys

failures = []


def check(what, cond):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def expect_errno(what, err, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        check(f"{what}: errno {errno.errorcode.get(e.errno)} expected {errno.errorcode[err]}", e.errno == err)
        return
    check(f"{what}: succeeded, expected {errno.errorcode[err]}", False)
