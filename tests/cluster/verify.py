#!/usr/bin/env python3
"""Checks a vdfs tree against the per-host logs of workload.py.

    verify.py [--pending-ok] [--ignore PATH]... --mount MNT [--mount MNT]... LOG...

Replays every log into the set of files (with size and SHA-256) and
directories its host made durable, then walks each mount: every expected
file must be there with that content, every expected directory must be
there, and nothing else may be (lost+found and --ignore'd paths aside).
Two hosts may not both hold one path (a claim won twice).  With
--pending-ok, the paths of a host's last op that never completed (its
daemon was killed) may be in either state; without it such an op fails.
Exit 0 when everything matches, 1 with every difference listed.
"""
import argparse
import hashlib
import os
import sys


def replay(log):
    files, dirs, pending = {}, set(), None
    with open(log) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            kind = w[0]
            if kind == "I":
                pending = (w[1], w[3:])
                continue
            if kind == "E":
                continue
            seq = w[1]
            if kind == "F":
                files[w[2]] = (int(w[3]), w[4])
            elif kind == "R":
                files[w[3]] = files.pop(w[2])
            elif kind == "U":
                files.pop(w[2])
            elif kind == "D":
                dirs.add(w[2])
            elif kind == "Y":
                dirs.discard(w[2])
            elif kind != "O":
                raise SystemExit(f"{log}: bad record {line!r}")
            if pending and pending[0] == seq:
                pending = None
    return files, dirs, pending


def walk(root, skip):
    """Never opens what it skips: opening a file takes its lock."""
    files, dirs = {}, set()
    for top, dnames, fnames in os.walk(root):
        rel = top[len(root):] or "/"
        dnames[:] = [d for d in dnames if not under(os.path.join(rel, d), skip)]
        for d in dnames:
            dirs.add(os.path.join(rel, d))
        for n in fnames:
            path = os.path.join(rel, n)
            if under(path, skip):
                continue
            with open(os.path.join(top, n), "rb") as f:
                data = f.read()
            files[path] = (len(data), hashlib.sha256(data).hexdigest())
    return files, dirs


def under(path, prefixes):
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mount", action="append", required=True)
    ap.add_argument("--pending-ok", action="store_true")
    ap.add_argument("--ignore", action="append", default=[])
    ap.add_argument("logs", nargs="+")
    a = ap.parse_args()

    problems = []
    want_files, want_dirs, owner = {}, {"/shared", "/shared/claims"}, {}
    uncertain = ["/lost+found"] + a.ignore
    for log in a.logs:
        files, dirs, pending = replay(log)
        if pending:
            if a.pending_ok:
                uncertain += pending[1]
            else:
                problems.append(f"{log}: op {pending[0]} on {' '.join(pending[1])} never completed")
        for path, content in files.items():
            if path in owner:
                problems.append(f"{path} is held by both {owner[path]} and {log}")
            owner[path] = log
            want_files[path] = content
        want_dirs |= dirs
    want_files = {p: c for p, c in want_files.items() if not under(p, uncertain)}
    want_dirs = {d for d in want_dirs if not under(d, uncertain)}

    for mnt in a.mount:
        files, dirs = walk(mnt, uncertain)
        for p in sorted(want_files.keys() - files.keys()):
            problems.append(f"{mnt}: {p} is missing ({owner[p]} fsync'ed it)")
        for p in sorted(files.keys() - want_files.keys()):
            problems.append(f"{mnt}: {p} should not exist")
        for p in sorted(want_files.keys() & files.keys()):
            if files[p] != want_files[p]:
                problems.append(f"{mnt}: {p} has {files[p][0]} bytes sha {files[p][1][:12]}, "
                                f"{owner[p]} fsync'ed {want_files[p][0]} bytes sha {want_files[p][1][:12]}")
        for d in sorted(want_dirs - dirs):
            problems.append(f"{mnt}: directory {d} is missing")
        for d in sorted(dirs - want_dirs):
            problems.append(f"{mnt}: directory {d} should not exist")
    for p in problems[:50]:
        print("FAIL:", p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} differences", file=sys.stderr)
        return 1
    print(f"ok: {len(want_files)} files and {len(want_dirs)} directories match on {len(a.mount)} mount(s)"
          + (f" ({len(uncertain) - 1 - len(a.ignore)} paths of unfinished ops left out)" if a.pending_ok else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
