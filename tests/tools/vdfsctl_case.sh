#!/bin/bash
# Integration tests of vdfsctl with the real binaries.
# usage: vdfsctl_case.sh CASE VDFSCTL MKFS FSCK [VDFS_FUSE]
set -u
case_name=$1 VDFSCTL=$2 MKFS=$3 FSCK=$4 VDFS_FUSE=${5:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/vdfsctl-test.XXXXXX")
loopdev="" hostmnt=""
fusemnt="" fusepid=""
cleanup() {
    [ -n "$fusemnt" ] && { fusermount3 -u "$fusemnt" 2>/dev/null || umount -l "$fusemnt" 2>/dev/null; }
    [ -n "$fusepid" ] && kill "$fusepid" 2>/dev/null && wait "$fusepid" 2>/dev/null
    [ -n "$hostmnt" ] && umount "$hostmnt" 2>/dev/null
    [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
export VDFS_HOST_UUID=7e57e57e-0000-4000-8000-0000000000c7
img=$work/ds.img

fail() { echo "FAIL: $*" >&2; exit 1; }
ctl() { "$VDFSCTL" "$@"; }
# Runs a command that must succeed.
ok() { "$@" || fail "command failed ($?): $*"; }
# Runs a command and checks its exit status.
expect_exit() {
    local want=$1; shift
    "$@" >"$work/out" 2>"$work/err"
    local got=$?
    [ "$got" -eq "$want" ] || { cat "$work/out" "$work/err" >&2; fail "exit $got, wanted $want: $*"; }
}
json_ok() { python3 -c 'import json,sys; json.load(sys.stdin)' || fail "not valid JSON"; }
fsck_clean() {
    "$FSCK" -n "$1" >"$work/fsck.out" 2>&1 || { cat "$work/fsck.out" >&2; fail "fsck.vdfs -n $1 is not clean"; }
}
make_image() { ok "$MKFS" -q -H 4 "$img" "${1:-4G}"; }
# mount_fuse HOST_UUID [OPTIONS]: a vdfs-fuse host of $img on $work/mnt, in
# the background, with a short heartbeat; unmount_fuse ends it.
mount_fuse() {
    fusemnt=$work/mnt
    mkdir -p "$fusemnt"
    "$VDFS_FUSE" "$img" "$fusemnt" -f -o "host_uuid=$1,hb_interval_ms=100,hb_timeout_ms=3000${2:+,$2}" \
        2>"$work/fuse.err" &
    fusepid=$!
    for _ in $(seq 100); do mountpoint -q "$fusemnt" && break; sleep 0.05; done
    mountpoint -q "$fusemnt" || { cat "$work/fuse.err" >&2; fail "vdfs-fuse did not mount"; }
}
unmount_fuse() {
    fusermount3 -u "$fusemnt" || fail "fusermount3 -u"
    fusemnt=""
    local rc=0
    wait "$fusepid" || rc=$?
    fusepid=""
    [ "$rc" = 0 ] || { cat "$work/fuse.err" >&2; fail "vdfs-fuse exit status $rc"; }
}

case "$case_name" in
roundtrip)
    make_image
    src=$work/src
    mkdir -p "$src/a/b/c" "$src/empty"
    echo hello >"$src/small"
    head -c 100000 /dev/urandom >"$src/a/medium"
    head -c 3000000 /dev/urandom >"$src/a/b/large"
    truncate -s 50M "$src/a/b/c/sparse"
    printf 'tail' | dd of="$src/a/b/c/sparse" bs=1 seek=20000000 conv=notrunc status=none
    ln -s ../small "$src/a/link"
    : >"$src/zero-length"
    ok ctl put -r "$img" "$src" /tree
    ok ctl get -r "$img" /tree "$work/out-tree"
    diff -r --no-dereference "$src" "$work/out-tree" || fail "tree differs after put/get"
    [ "$(readlink "$work/out-tree/a/link")" = ../small ] || fail "symlink target lost"
    ctl get "$img" /tree/small | grep -qx hello || fail "get to stdout"
    ctl ls "$img" /tree | grep -q small || fail "ls misses a file"
    ctl ls --json "$img" /tree | json_ok
    ctl stat --json "$img" /tree/a/medium | json_ok
    # stat shows a link's target and a device's number, as stat(1) does.
    ctl stat "$img" /tree/a/link | grep -qx 'target   ../small' || fail "stat of a symlink: no target"
    ctl stat --json "$img" /tree/a/link | python3 -c 'import json,sys; assert json.load(sys.stdin)["target"] == "../small"' ||
        fail "stat --json of a symlink: no target"
    if [ "$(id -u)" -eq 0 ]; then
        mknod "$work/null" c 1 3
        ok ctl put "$img" "$work/null" /null
        ctl stat "$img" /null | grep -qx 'device   1,3' || fail "stat of a char device: no device number"
        ctl stat --json "$img" /null |
            python3 -c 'import json,sys; d=json.load(sys.stdin); assert (d["major"], d["minor"]) == (1, 3), d' ||
            fail "stat --json of a char device"
    fi
    ctl info --json "$img" | json_ok
    fsck_clean "$img"
    ;;
usage)
    make_image
    ok truncate -s 10G "$work/thin"
    head -c 3M /dev/urandom | dd of="$work/thin" bs=1M seek=4096 conv=notrunc status=none
    ok ctl put "$img" "$work/thin" /thin
    ctl usage --json "$img" >"$work/usage.json" || fail "usage --json"
    python3 - "$work/usage.json" <<'PY' || fail "usage figures"
import json, sys
u = json.load(open(sys.argv[1]))
assert u["provisioned"] == 10 << 30, u
# 3 MiB of data plus the directories' sub-blocks.
assert 3 << 20 <= u["allocated"] < (3 << 20) + (1 << 20), u
assert u["files"] == 1 and u["directories"] == 2, u
# Capacity and free take in the sub-blocks (small files, directories).
assert u["capacity"] - u["free"] == u["allocated"], u
assert u["capacity"] == (u["file_blocks"]["total"] << 20) + (u["sub_blocks"]["total"] << 16), u
PY
    ctl usage "$img" | grep -q '^provisioned' || fail "usage text"
    fsck_clean "$img"
    ;;
map)
    make_image
    truncate -s 12M "$work/f"
    head -c 4096 /dev/urandom | dd of="$work/f" conv=notrunc status=none
    head -c 4096 /dev/urandom | dd of="$work/f" bs=1M seek=10 conv=notrunc status=none
    ok ctl put "$img" "$work/f" /f
    ctl map --json "$img" /f >"$work/map.json" || fail "map --json"
    python3 - "$work/map.json" <<'PY' || fail "map ranges"
import json, sys
m = json.load(open(sys.argv[1]))
ext = m["extents"]
assert m["size"] == 12 << 20, m
data = [e for e in ext if e["kind"] == "data"]
holes = [e for e in ext if e["kind"] == "hole"]
assert [e["offset"] for e in data] == [0, 10 << 20], ext
assert all(e["length"] == 1 << 20 for e in data), ext
assert any(e["offset"] == 1 << 20 and e["length"] == 9 << 20 for e in holes), ext
pos = 0
for e in ext:
    assert e["offset"] == pos, ext
    pos += e["length"]
PY
    ctl map "$img" /f | grep -q hole || fail "map text shows no hole"
    expect_exit 1 ctl map "$img" /missing
    ;;
digest)
    make_image
    head -c 5000000 /dev/urandom >"$work/dense"
    truncate -s 30M "$work/sparse"
    head -c 70000 /dev/urandom | dd of="$work/sparse" bs=1M seek=17 conv=notrunc status=none
    echo tiny >"$work/tiny"
    : >"$work/empty"
    for f in dense sparse tiny empty; do
        ok ctl put "$img" "$work/$f" "/$f"
        want=$(sha256sum <"$work/$f" | cut -d' ' -f1)
        # A hang (deadlock) must fail the case quickly, not eat the budget.
        got=$(timeout 10 "$VDFSCTL" digest "$img" "/$f")
        rc=$?
        [ $rc -eq 124 ] && fail "digest /$f hung (killed after 10 s)"
        [ $rc -eq 0 ] || fail "digest /$f: exit $rc"
        echo "$got" | grep -q "$want" || fail "digest of $f: got '$got', wanted $want"
    done
    ;;
hosts-locks)
    make_image
    echo x >"$work/x"
    ok ctl put "$img" "$work/x" /x
    ok ctl ls "$img" / >/dev/null
    ctl hosts --json "$img" >"$work/hosts.json" || fail "hosts --json"
    python3 - "$work/hosts.json" <<'PY' || fail "a host is still live after the commands ended"
import json, sys
slots = json.load(open(sys.argv[1]))
assert len(slots) == 4, slots
assert all(s["state"] == "free" for s in slots), slots
PY
    ok ctl hosts "$img" >/dev/null
    ctl locks "$img" >"$work/locks" || fail "locks"
    grep -q 'no lock is held' "$work/locks" || { cat "$work/locks" >&2; fail "locks held after the commands ended"; }
    ctl locks --json "$img" | json_ok
    ;;
links-xattrs)
    # put -r and get -r keep hard links as links (also across directories)
    # and copy extended attributes; one that cannot be copied is named and
    # fails the command, while the rest still arrives.
    make_image
    src=$work/src
    mkdir -p "$src/d"
    echo shared >"$src/d/a"
    ln "$src/d/a" "$src/b"
    ln "$src/d/a" "$src/d/c"
    echo solo >"$src/solo"
    python3 - "$src" <<'EOT' || fail "setting local xattrs"
import os, sys
s = sys.argv[1]
os.setxattr(f"{s}/d/a", "user.color", b"blue")
os.setxattr(f"{s}/d", "user.dir", b"yes")
os.setxattr(f"{s}/solo", "trusted.t", b"\x00\x01binary")
EOT
    ok ctl put -r "$img" "$src" /
    ino() { ctl stat --json "$img" "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["ino"], s["nlink"])'; }
    want=$(ino /src/d/a)
    [ "${want#* }" = 3 ] || fail "three names, one file: nlink is ${want#* }"
    [ "$(ino /src/b)" = "$want" ] && [ "$(ino /src/d/c)" = "$want" ] || fail "hard links copied in as separate files"
    # Again, merged into the same tree: the links stay links.
    ok ctl put -r "$img" "$src" /
    [ "$(ino /src/b)" = "$want" ] && [ "$(ino /src/d/c)" = "$want" ] || fail "a second put -r broke the links"
    ok ctl get -r "$img" /src "$work/tree-out"
    [ "$(stat -c %i "$work/tree-out/b")" = "$(stat -c %i "$work/tree-out/d/a")" ] &&
        [ "$(stat -c %i "$work/tree-out/d/c")" = "$(stat -c %i "$work/tree-out/d/a")" ] || fail "hard links copied out as separate files"
    [ "$(stat -c %h "$work/tree-out/d/a")" = 3 ] || fail "copied-out link count"
    diff -r "$src" "$work/tree-out" || fail "tree differs after put/get"
    python3 - "$work/tree-out" <<'EOT' || fail "xattrs lost in the round trip"
import os, sys
o = sys.argv[1]
assert os.getxattr(f"{o}/d/a", "user.color") == b"blue"
assert os.getxattr(f"{o}/b", "user.color") == b"blue"
assert os.getxattr(f"{o}/d", "user.dir") == b"yes"
assert os.getxattr(f"{o}/solo", "trusted.t") == b"\x00\x01binary"
EOT
    # Bigger than a descriptor holds: named, exit 1, the data still in.
    echo big >"$work/big"
    python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.big", b"x" * 3000)' "$work/big"
    expect_exit 1 ctl put "$img" "$work/big" /big
    grep -q "user.big not copied" "$work/err" || { cat "$work/err" >&2; fail "the lost xattr is not named"; }
    ctl get "$img" /big | grep -qx big || fail "data not copied beside a lost xattr"
    fsck_clean "$img"
    ;;
cp-truncate)
    # truncate makes and resizes files (thin, or --thick: reserved and
    # reading as zeros); cp copies inside the datastore keeping the copy
    # thin, and -r copies trees with their links, symlinks and xattrs.
    make_image
    stat_of() { ctl stat --json "$img" "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["size"], s["allocated"])'; }
    ok ctl truncate "$img" /disk.img 10G
    [ "$(stat_of /disk.img)" = "10737418240 0" ] || fail "truncate 10G: $(stat_of /disk.img), want a thin 10 GiB file"
    ok ctl truncate "$img" /disk.img 20GiB
    [ "$(stat_of /disk.img)" = "21474836480 0" ] || fail "truncate 20GiB: $(stat_of /disk.img)"
    ok ctl truncate --thick "$img" /thick.img 100M
    read -r size alloc < <(stat_of /thick.img)
    [ "$size" = 104857600 ] && [ "$alloc" -ge 104857600 ] || fail "truncate --thick 100M: size $size, allocated $alloc"
    ctl get "$img" /thick.img | cmp - <(head -c 100M /dev/zero) || fail "a thick file does not read as zeros"
    ok ctl truncate "$img" /thick.img 50M
    read -r size alloc < <(stat_of /thick.img)
    [ "$size" = 52428800 ] && [ "$alloc" -lt 104857600 ] || fail "shrinking to 50M: size $size, allocated $alloc"
    expect_exit 2 ctl truncate "$img" /x 12Q
    grep -q "bad size '12Q'" "$work/err" || fail "bad size not named"
    expect_exit 2 ctl truncate "$img" /x -5
    expect_exit 2 ctl cp --thick "$img" /disk.img /y
    grep -q "thick applies to truncate only" "$work/err" || fail "--thick on cp"
    expect_exit 1 ctl truncate "$img" / 1G
    grep -q "Is a directory" "$work/err" || fail "truncate of a directory"
    ctl stat "$img" /x >/dev/null 2>&1 && fail "a refused truncate made a file"
    # A sparse disk: 3 MiB of data at 10 MiB and 1 MiB at 60 MiB of 64 MiB.
    truncate -s 64M "$work/sparse"
    head -c 3M /dev/urandom | dd of="$work/sparse" bs=1M seek=10 conv=notrunc status=none
    head -c 1M /dev/urandom | dd of="$work/sparse" bs=1M seek=60 conv=notrunc status=none
    ok ctl mkdir "$img" /vm
    ok ctl put "$img" "$work/sparse" /vm/disk.img
    ok ctl cp "$img" /vm/disk.img /vm/clone.img
    [ "$(ctl digest "$img" /vm/clone.img | cut -d' ' -f1)" = "$(sha256sum <"$work/sparse" | cut -d' ' -f1)" ] ||
        fail "the clone's content differs"
    [ "$(stat_of /vm/clone.img)" = "$(stat_of /vm/disk.img)" ] || fail "the clone is not as thin as its source: $(stat_of /vm/clone.img) against $(stat_of /vm/disk.img)"
    ok ctl cp "$img" /thick.img /thin-copy.img
    [ "$(stat_of /thin-copy.img)" = "52428800 0" ] || fail "a copy of a thick file of zeros takes space: $(stat_of /thin-copy.img)"
    ok ctl mkdir "$img" /dir
    ok ctl cp "$img" /vm/disk.img /dir
    [ "$(stat_of /dir/disk.img)" = "$(stat_of /vm/disk.img)" ] || fail "cp into a directory"
    echo over >"$work/over"
    ok ctl put "$img" "$work/over" /dir/over
    ok ctl cp "$img" /vm/disk.img /dir/over
    [ "$(stat_of /dir/over)" = "$(stat_of /vm/disk.img)" ] || fail "cp over an existing file"
    expect_exit 1 ctl cp "$img" /vm/disk.img /vm/disk.img
    grep -q "same file" "$work/err" || fail "cp onto itself"
    expect_exit 1 ctl cp "$img" /vm /vm2
    grep -q "is a directory (use -r)" "$work/err" || fail "cp of a directory without -r"
    expect_exit 1 ctl cp "$img" /nothing /n2
    grep -q "No such file" "$work/err" || fail "cp of a missing file"
    # Progress of a large copy on a terminal only, and not with -q.
    head -c 70M /dev/urandom >"$work/r70"
    ok ctl put -q "$img" "$work/r70" /r70
    script -qc "$VDFSCTL cp $img /r70 /r70b" /dev/null >"$work/tty" || fail "cp under a terminal"
    grep -q "vdfsctl: cp /r70: 70 of 70 MiB" "$work/tty" || { cat "$work/tty" >&2; fail "no progress on a terminal"; }
    script -qc "$VDFSCTL cp -q $img /r70 /r70c" /dev/null >"$work/tty" || fail "cp -q under a terminal"
    ! grep -q "MiB" "$work/tty" || fail "progress despite -q"
    ctl cp "$img" /r70 /r70d 2>"$work/err" || fail "cp /r70"
    [ ! -s "$work/err" ] || fail "progress on a stderr that is no terminal: $(cat "$work/err")"
    # A tree: links, a symlink, xattrs; then into itself, refused.
    src=$work/src
    mkdir -p "$src/d"
    echo shared >"$src/d/a"
    ln "$src/d/a" "$src/b"
    ln -s d/a "$src/sym"
    python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.color", b"blue")' "$src/d/a"
    ok ctl put -r "$img" "$src" /tree
    ok ctl cp -r "$img" /tree /tree2
    ok ctl get -r "$img" /tree2 "$work/tree2"
    diff -r --no-dereference "$src" "$work/tree2" || fail "cp -r: the trees differ"
    [ "$(stat -c %i "$work/tree2/b")" = "$(stat -c %i "$work/tree2/d/a")" ] || fail "cp -r: a hard link became a copy"
    python3 -c 'import os, sys; assert os.getxattr(sys.argv[1], "user.color") == b"blue"' "$work/tree2/d/a" ||
        fail "cp -r: xattr lost"
    expect_exit 1 ctl cp -r "$img" /tree /tree/d
    grep -q "into itself" "$work/err" || fail "cp -r into itself"
    # Into an existing directory, as cp(1) does; but never merged into an
    # existing tree.
    ok ctl cp -r "$img" /tree /tree2
    ctl stat "$img" /tree2/tree/d/a >/dev/null || fail "cp -r into an existing directory"
    expect_exit 1 ctl cp -r "$img" /tree /tree2
    grep -q "/tree2/tree: the target exists" "$work/err" || fail "cp -r onto an existing tree"
    fsck_clean "$img"
    ;;
readonly-image)
    # An image on a read-only file system: the commands that only read
    # work (read-only, without joining the cluster); a write is refused.
    [ "$(id -u)" -eq 0 ] || { echo "readonly-image needs root (a read-only tmpfs)"; exit 77; }
    make_image 1G
    echo "kept" >"$work/f"
    ok ctl put "$img" "$work/f" /f
    hostmnt=$work/ro
    mkdir -p "$hostmnt"
    mount -t tmpfs -o size=64M tmpfs "$hostmnt" || fail "tmpfs mount"
    cp --sparse=always "$img" "$hostmnt/ds.img"
    mount -o remount,ro "$hostmnt" || fail "remount ro"
    ctl ls "$hostmnt/ds.img" / >"$work/ls" || fail "ls of a read-only image"
    grep -qx f "$work/ls" || fail "ls of a read-only image misses /f"
    [ "$(ctl get "$hostmnt/ds.img" /f)" = kept ] || fail "get from a read-only image"
    ctl stat --json "$hostmnt/ds.img" /f | json_ok
    ctl usage "$hostmnt/ds.img" >/dev/null || fail "usage of a read-only image"
    expect_exit 1 ctl put "$hostmnt/ds.img" "$work/f" /g
    grep -q "Read-only file system" "$work/err" || { cat "$work/err" >&2; fail "put into a read-only image: no clear error"; }
    ;;
rm-mkdir)
    make_image
    ok ctl mkdir -p "$img" /a/b/c/d
    ok ctl mkdir -p "$img" /a/b/c/d
    expect_exit 1 ctl mkdir "$img" /a/b
    expect_exit 1 ctl mkdir "$img" /x/y
    echo data >"$work/f"
    ok ctl put "$img" "$work/f" /a/b/c/d/f
    ok ctl put "$img" "$work/f" /a/f2
    # mv: into an existing directory under its own name, a rename, a
    # replaced file, and refusals (missing source, a directory into itself).
    ok ctl mv "$img" /a/f2 /a/b
    [ "$(ctl get "$img" /a/b/f2)" = data ] || fail "mv into a directory"
    ok ctl mv "$img" /a/b/f2 /a/renamed
    [ "$(ctl get "$img" /a/renamed)" = data ] || fail "mv to a new name"
    expect_exit 1 ctl stat "$img" /a/b/f2
    echo other >"$work/g"
    ok ctl put "$img" "$work/g" /a/g
    ok ctl mv "$img" /a/g /a/renamed
    [ "$(ctl get "$img" /a/renamed)" = other ] || fail "mv over an existing file"
    ok ctl mv "$img" /a/renamed /a/f2
    expect_exit 1 ctl mv "$img" /a/missing /a/x
    grep -q "No such file" "$work/err" || fail "mv of a missing file: no clear error"
    expect_exit 1 ctl mv "$img" /a /a/b/c
    expect_exit 2 ctl mv "$img" /a/f2
    expect_exit 1 ctl rm "$img" /a
    grep -q -- '-r' "$work/err" || fail "rm of a directory does not suggest -r"
    ok ctl rm "$img" /a/f2
    expect_exit 1 ctl stat "$img" /a/f2
    ok ctl rm -r "$img" /a
    expect_exit 1 ctl stat "$img" /a
    expect_exit 1 ctl rm "$img" /missing
    [ "$(ctl ls "$img" / | grep -vc lost+found)" -le 1 ] || fail "root not empty after rm -r"
    ctl usage --json "$img" | python3 -c 'import json,sys; u=json.load(sys.stdin); assert u["files"]==0 and u["directories"]==2, u' ||
        fail "descriptors leaked by rm -r"
    fsck_clean "$img"
    ;;
bad-args)
    make_image
    expect_exit 2 ctl
    grep -q usage "$work/err" || fail "no usage for no arguments"
    expect_exit 2 ctl frobnicate "$img"
    grep -q usage "$work/err" || fail "no usage for a bad command"
    expect_exit 2 ctl stat "$img"
    grep -q usage "$work/err" || fail "no usage for missing arguments"
    expect_exit 2 ctl info "$img" extra
    expect_exit 2 ctl ls --bogus "$img"
    expect_exit 0 ctl --help
    grep -q usage "$work/out" || fail "--help prints no usage"
    # A directory without -r: the message names the datastore's directory,
    # not the local name, and nothing is made.
    expect_exit 1 ctl get "$img" /lost+found "$work/not-made"
    grep -q '/lost+found is a directory (use -r)' "$work/err" || fail "get of a directory: $(cat "$work/err")"
    [ ! -e "$work/not-made" ] || fail "get of a directory without -r made $work/not-made"
    mkdir "$work/local-dir"
    expect_exit 1 ctl put "$img" "$work/local-dir" /d
    grep -q "local-dir is a directory (use -r)" "$work/err" || fail "put of a directory: $(cat "$work/err")"
    fsck_clean "$img"
    ;;
missing-image)
    expect_exit 1 ctl info "$work/nonexistent.img"
    [ -s "$work/err" ] || fail "no message for a missing image"
    grep -qi 'no such file' "$work/err" || fail "message does not say what is wrong: $(cat "$work/err")"
    expect_exit 1 ctl hosts "$work/nonexistent.img"
    ;;
random-image)
    head -c 64M /dev/urandom >"$img"
    for cmd in info "ls" usage hosts locks; do
        expect_exit 1 ctl $cmd "$img"
        grep -qiE 'not a valid|superblock|vdfs' "$work/err" || fail "$cmd: unclear message: $(cat "$work/err")"
    done
    expect_exit 1 ctl put "$img" /etc/hostname /x
    ;;
host-full)
    [ "$(id -u)" -eq 0 ] || { echo "host-full needs root (loop device)"; exit 77; }
    hostmnt=$work/mnt
    mkdir -p "$hostmnt"
    truncate -s 64M "$work/host.ext4"
    mkfs.ext4 -q -F "$work/host.ext4" || fail "mkfs.ext4"
    loopdev=$(losetup --find --show "$work/host.ext4") || fail "losetup"
    mount "$loopdev" "$hostmnt" || fail "mount host fs"
    img=$hostmnt/ds.img
    make_image 1G
    head -c 80M /dev/urandom >"$work/big"
    expect_exit 1 ctl put "$img" "$work/big" /big
    grep -qiE 'space|I/O error' "$work/err" || fail "put on a full host: unclear message: $(cat "$work/err")"
    echo "vdfsctl said: $(cat "$work/err")"
    "$FSCK" -n "$img" >"$work/fsck.out" 2>&1
    rc=$?
    [ $rc -eq 0 ] || { cat "$work/fsck.out" >&2; fail "fsck.vdfs -n exit $rc after host ENOSPC: datastore inconsistent"; }
    ;;
cluster)
    # vdfsctl beside a mounted vdfs-fuse host: it joins as a second host,
    # sees the mount's changes, its own changes reach the mount, and a file
    # the mount holds open for write is refused (put, rm) with the holder named.
    { [ "$(id -u)" -eq 0 ] && [ -e /dev/fuse ] && [ -n "$VDFS_FUSE" ]; } ||
        { echo "cluster needs root, /dev/fuse and vdfs-fuse"; exit 77; }
    make_image 1G
    fuse_uuid=7e57e57e-0000-4000-8000-0000000000f1
    mount_fuse "$fuse_uuid" host_name=fuse-host
    echo "from the mount" >"$fusemnt/a"
    ok ctl ls "$img" / >"$work/ls"
    grep -qx a "$work/ls" || { cat "$work/ls" >&2; fail "vdfsctl does not see the mount's new file"; }
    [ "$(ctl get "$img" /a)" = "from the mount" ] || fail "vdfsctl get: wrong content"
    echo "from vdfsctl" >"$work/b"
    ok ctl put "$img" "$work/b" /b
    [ "$(cat "$fusemnt/b")" = "from vdfsctl" ] || fail "the mount does not see vdfsctl's file"
    ctl hosts --json "$img" >"$work/hosts.json" || fail "hosts --json"
    python3 - "$work/hosts.json" "$fuse_uuid" <<'PY' || fail "hosts --json does not show the mount as live"
import json, sys
slots = json.load(open(sys.argv[1]))
live = [s for s in slots if s["state"] == "live"]
assert [s["host_uuid"] for s in live] == [sys.argv[2]], slots
assert live[0]["live"] is True and live[0]["stale"] is False and live[0]["hostname"] == "fuse-host", live
assert live[0]["timeout_ms"] == 3000, live
PY
    exec 3>>"$fusemnt/a"
    expect_exit 1 ctl put "$img" "$work/b" /a
    grep -q "locked by host fuse-host" "$work/err" || { cat "$work/err" >&2; fail "put on a locked file: holder not named"; }
    ctl locks --json "$img" >"$work/locks.json" || fail "locks --json"
    python3 - "$work/locks.json" <<'PY' || fail "locks --json does not show the open file's exclusive lock"
import json, sys
locks = json.load(open(sys.argv[1]))
files = [l for l in locks if l["object"].startswith("file ")]
assert any(l["mode"] == "exclusive" and l["owner_host"] == "fuse-host" for l in files), locks
PY
    # Nor removed, as VMFS refuses to delete a running VM's disk.
    expect_exit 1 ctl rm "$img" /a
    grep -q "a is locked by host fuse-host" "$work/err" || { cat "$work/err" >&2; fail "rm of a locked file: holder not named"; }
    # Nor cloned half-written, resized, or overwritten by a copy.
    expect_exit 1 ctl cp "$img" /a /a-clone
    grep -q "/a is locked by host fuse-host" "$work/err" || { cat "$work/err" >&2; fail "cp of a locked file: holder not named"; }
    ctl stat "$img" /a-clone >/dev/null 2>&1 && fail "a refused cp left its target"
    expect_exit 1 ctl truncate "$img" /a 1G
    grep -q "/a is locked by host fuse-host" "$work/err" || { cat "$work/err" >&2; fail "truncate of a locked file: holder not named"; }
    expect_exit 1 ctl cp "$img" /b /a
    grep -q "/a is locked by host fuse-host" "$work/err" || { cat "$work/err" >&2; fail "cp onto a locked file: holder not named"; }
    exec 3>&-
    [ "$(cat "$fusemnt/a")" = "from the mount" ] || fail "the refused put changed the file"
    ok ctl put "$img" "$work/b" /a
    unmount_fuse
    fsck_clean "$img"
    ;;
grow)
    # vdfsctl grow: the datastore takes the space its image file gained,
    # while a vdfs-fuse host has it mounted and writes past the old end;
    # a grow that stopped between its superblock and the last bitmap, or
    # between the two superblocks, is accepted by the library and repaired
    # by fsck.
    { [ "$(id -u)" -eq 0 ] && [ -e /dev/fuse ] && [ -n "$VDFS_FUSE" ]; } ||
        { echo "grow needs root, /dev/fuse and vdfs-fuse"; exit 77; }
    ok "$MKFS" -q -H 4 --json "$img" 256M >"$work/mkfs.json"
    read -r limit blocks bitmap backup < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
fb = d["file_blocks"]
print(d["grow_limit_bytes"], fb["count"], fb["bitmap_offset"], d["backup_offset"])' "$work/mkfs.json")
    [ "$limit" -ge $((1024 << 20)) ] || fail "a 256M datastore can grow only to $limit bytes, want at least 4x"
    info_json() { ctl info --json "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"$2\"])"; }
    [ "$(info_json "$img" grow_limit)" = "$limit" ] || fail "info --json grow_limit differs from mkfs's"
    cp --sparse=always "$img" "$work/before.img"
    mount_fuse 7e57e57e-0000-4000-8000-0000000000f2
    blocks_before=$(stat -f -c %b "$fusemnt")
    # More than the datastore holds before the grow.
    head -c $(((blocks + 64) << 20)) /dev/urandom >"$work/data"
    cp "$work/data" "$fusemnt/data" 2>/dev/null && fail "$((blocks + 64)) MiB fit into $blocks file blocks"
    rm -f "$fusemnt/data"
    expect_exit 0 ctl grow "$img" 1G
    grep -q "grew the datastore from 256.0 MiB to 1.0 GiB: 768 file blocks added" "$work/out" ||
        fail "grow said: $(cat "$work/out")"
    [ "$(stat -c %s "$img")" = $((1024 << 20)) ] || fail "the image file was not extended to 1 GiB"
    blocks_after=$(stat -f -c %b "$fusemnt")
    [ "$blocks_after" -ge $((blocks_before + 768)) ] ||
        fail "the mount still sees $blocks_after blocks after the grow (had $blocks_before)"
    cp "$work/data" "$fusemnt/data" || fail "the file does not fit into the grown datastore through the mount"
    cmp "$work/data" "$fusemnt/data" || fail "the file written past the old end reads back wrong"
    unmount_fuse
    fsck_clean "$img"
    [ "$(info_json "$img" size)" = $((1024 << 20)) ] || fail "info --json size after the grow"
    [ "$(ctl digest "$img" /data | cut -d' ' -f1)" = "$(sha256sum "$work/data" | cut -d' ' -f1)" ] ||
        fail "the file's digest after unmount"
    # Without SIZE: the size the image file has now.
    truncate -s 2G "$img"
    ok ctl grow --json "$img" >"$work/grow.json"
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["old_size"] == 1 << 30 and d["size"] == 2 << 30 and d["added_blocks"] == 1024, d' "$work/grow.json" ||
        fail "grow --json: $(cat "$work/grow.json")"
    expect_exit 0 ctl grow "$img"
    grep -q "already" "$work/out" || fail "a grow to the same size: $(cat "$work/out")"
    expect_exit 1 ctl grow "$img" 1G
    grep -q "cannot shrink" "$work/err" || fail "shrink: $(cat "$work/err")"
    expect_exit 1 ctl grow "$img" $((limit + (1 << 30)))
    grep -q "more than this datastore can grow to, $limit bytes" "$work/err" || fail "past the limit: $(cat "$work/err")"
    [ "$(stat -c %s "$img")" = $((2048 << 20)) ] || fail "a refused grow changed the image file's size"
    expect_exit 2 ctl grow "$img" 12Q
    fsck_clean "$img"
    # The backup stays where mkfs put it for 256 MiB: fsck finds it for a
    # damaged primary by searching, and restores the grown datastore.
    [ "$(info_json "$img" backup_offset)" = "$backup" ] || fail "info --json backup_offset"
    cp --sparse=always "$img" "$work/noprimary.img"
    dd if=/dev/zero of="$work/noprimary.img" bs=4096 count=1 conv=notrunc status=none || fail "dd"
    expect_exit 4 "$FSCK" -n "$work/noprimary.img"
    grep -q "primary superblock damaged; using the backup at 0x$(printf %x "$backup")" "$work/out" ||
        { cat "$work/out" "$work/err" >&2; fail "fsck does not find the backup of a grown datastore"; }
    expect_exit 1 "$FSCK" -y "$work/noprimary.img"
    fsck_clean "$work/noprimary.img"
    [ "$(info_json "$work/noprimary.img" size)" = $((2048 << 20)) ] || fail "the restored superblock lost the growth"

    # On a block device (a loop device here, a LUN elsewhere): the device
    # must grow first (losetup -c), and grow without SIZE takes all of it.
    truncate -s 256M "$work/lun.img"
    loopdev=$(losetup -f --show "$work/lun.img") || { echo "no loop device"; exit 77; }
    ok "$MKFS" -q -H 4 "$loopdev"
    truncate -s 1G "$work/lun.img"
    expect_exit 1 ctl grow "$loopdev" 1G
    grep -q "is only 268435456 bytes (256.0 MiB): extend the LUN or loop device (losetup -c) first" "$work/err" ||
        fail "grow past a block device: $(cat "$work/err")"
    losetup -c "$loopdev" || fail "losetup -c"
    expect_exit 0 ctl grow "$loopdev"
    grep -q "from 256.0 MiB to 1.0 GiB" "$work/out" || fail "grow of the loop device: $(cat "$work/out")"
    fsck_clean "$loopdev"
    losetup -d "$loopdev"
    loopdev=""

    # A grow that stopped after the primary superblock: the last cluster's
    # old bitmap (and the old backup superblock) are still on disk.
    crashed=$work/crashed.img
    cp --sparse=always "$work/before.img" "$crashed"
    ok ctl grow -q "$crashed" 1G
    grown=$(info_json "$crashed" blocks)
    for off in "$bitmap" "$backup"; do
        dd if="$work/before.img" of="$crashed" bs=4096 skip=$((off / 4096)) seek=$((off / 4096)) count=1 \
            conv=notrunc status=none || fail "dd"
    done
    cp --sparse=always "$crashed" "$work/crashed2.img"
    expect_exit 4 "$FSCK" -n "$crashed"
    grep -q "covers $blocks of its $grown blocks" "$work/out" || { cat "$work/out" >&2; fail "fsck does not name the short bitmap"; }
    grep -q "backup superblock gives $((256 << 20)) bytes" "$work/out" || { cat "$work/out" >&2; fail "fsck does not name the stale backup"; }
    expect_exit 1 "$FSCK" -y "$crashed"
    fsck_clean "$crashed"
    # The library takes the short bitmap as the rest of its cluster free,
    # and a writing host brings both up to date.
    ok ctl put "$work/crashed2.img" "$work/data" /data
    fsck_clean "$work/crashed2.img"
    ;;
label)
    # vdfsctl label prints or sets the label (e2label, a datastore rename in
    # vSphere) while a vdfs-fuse host has the datastore mounted; the mount
    # goes on working, and a backup superblock left with the old label is
    # updated by the next writing host.
    { [ "$(id -u)" -eq 0 ] && [ -e /dev/fuse ] && [ -n "$VDFS_FUSE" ]; } ||
        { echo "label needs root, /dev/fuse and vdfs-fuse"; exit 77; }
    ok "$MKFS" -q -H 4 -L old --json "$img" 256M >"$work/mkfs.json"
    backup=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["backup_offset"])' "$work/mkfs.json")
    cp --sparse=always "$img" "$work/before.img"
    [ "$(ctl label "$img")" = old ] || fail "label prints $(ctl label "$img"), want old"
    mount_fuse 7e57e57e-0000-4000-8000-0000000000f3
    echo before >"$fusemnt/a"
    ok ctl label "$img" "web datastore"
    echo after >"$fusemnt/b" || { cat "$work/fuse.err" >&2; fail "the mount cannot write after the label changed"; }
    [ "$(cat "$fusemnt/a")" = before ] || fail "the mount cannot read after the label changed"
    [ "$(ctl label --json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["label"])')" = "web datastore" ] ||
        fail "label --json"
    ctl info "$img" | grep -qx "label          web datastore" || fail "info does not show the new label"
    expect_exit 1 ctl label "$img" "$(printf 'x%.0s' {1..65})"
    grep -q "is longer than 64 bytes" "$work/err" || fail "a long label: $(cat "$work/err")"
    [ "$(ctl label "$img")" = "web datastore" ] || fail "a refused label changed the label"
    expect_exit 2 ctl label "$img" a b
    unmount_fuse
    fsck_clean "$img"
    [ "$(ctl get "$img" /b)" = after ] || fail "the mount's write after the relabel is lost"
    ok ctl label "$img" ""
    [ -z "$(ctl label "$img")" ] || fail "label '' does not clear the label"
    # The backup superblock of before: fsck names it, and a writing host
    # brings it up to the primary.
    ok ctl label "$img" renamed
    dd if="$work/before.img" of="$img" bs=4096 skip=$((backup / 4096)) seek=$((backup / 4096)) count=1 conv=notrunc \
        status=none || fail "dd"
    expect_exit 4 "$FSCK" -n "$img"
    grep -q "or another label" "$work/out" || { cat "$work/out" >&2; fail "fsck does not name the stale backup"; }
    ok ctl mkdir "$img" /dir
    fsck_clean "$img"
    [ "$(ctl label "$img")" = renamed ] || fail "the label after the backup was updated"
    ;;
*)
    fail "unknown case $case_name"
    ;;
esac
echo "PASS: $case_name"
