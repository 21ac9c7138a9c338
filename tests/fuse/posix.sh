#!/bin/bash
# Files, trees, renames, links, attributes and the POSIX errno table
# through a vdfs-fuse mount; ends with unmount and a clean fsck.
. "$(dirname "$0")/lib.sh" "$1"
HERE=$(cd "$(dirname "$0")" && pwd)
make_image 2G
mount_fg

# Files: write, read back, overwrite in the middle.
head -c 5000000 /dev/urandom >"$WORK/ref"
cp "$WORK/ref" "$MNT/f1"
cmp "$WORK/ref" "$MNT/f1" || fail "copy in differs"
printf 'PATCH' | dd of="$WORK/ref" bs=1 seek=1234567 conv=notrunc status=none
printf 'PATCH' | dd of="$MNT/f1" bs=1 seek=1234567 conv=notrunc status=none
cmp "$WORK/ref" "$MNT/f1" || fail "overwrite in the middle differs"
echo small >"$MNT/small"
[ "$(cat "$MNT/small")" = small ] || fail "small file"

# Trees: mkdir -p, cp -a in and back out.
mkdir -p "$MNT/a/b/c/d/e"
[ -d "$MNT/a/b/c/d/e" ] || fail "mkdir -p"
mkdir -p "$WORK/tree/sub/deeper"
head -c 200000 /dev/urandom >"$WORK/tree/sub/blob"
echo text >"$WORK/tree/sub/deeper/t"
ln -s ../blob "$WORK/tree/sub/deeper/link"
ln "$WORK/tree/sub/blob" "$WORK/tree/hard"
chmod 0640 "$WORK/tree/sub/blob"
touch -d '2001-02-03 04:05:06' "$WORK/tree/sub/deeper/t"
cp -a "$WORK/tree" "$MNT/tree"
cp -a "$MNT/tree" "$WORK/tree.out"
diff -r "$WORK/tree" "$WORK/tree.out" || fail "tree copied in and out differs"
[ "$(stat -c %a "$WORK/tree.out/sub/blob")" = 640 ] || fail "cp -a kept no mode"
[ "$(stat -c %Y "$MNT/tree/sub/deeper/t")" = "$(stat -c %Y "$WORK/tree/sub/deeper/t")" ] || fail "cp -a kept no mtime"
[ "$(stat -c %h "$MNT/tree/hard")" = 2 ] || fail "cp -a kept no hard link"

# Rename, including mv -T over an empty directory.
mv "$MNT/f1" "$MNT/a/f1moved"
cmp "$WORK/ref" "$MNT/a/f1moved" || fail "rename across directories"
[ ! -e "$MNT/f1" ] || fail "old name survives rename"
mkdir "$MNT/src" "$MNT/dst"
echo in-src >"$MNT/src/x"
mv -T "$MNT/src" "$MNT/dst"
[ "$(cat "$MNT/dst/x")" = in-src ] || fail "mv -T onto an empty directory"

# Hard links and symlinks.
ln "$MNT/small" "$MNT/small.hard"
[ "$(stat -c %h "$MNT/small")" = 2 ] || fail "link count after ln"
[ "$(stat -c %i "$MNT/small")" = "$(stat -c %i "$MNT/small.hard")" ] || fail "hard link inode"
rm "$MNT/small"
[ "$(cat "$MNT/small.hard")" = small ] || fail "hard link after unlink"
ln -s small.hard "$MNT/sym"
[ "$(readlink "$MNT/sym")" = small.hard ] || fail "readlink"
[ "$(cat "$MNT/sym")" = small ] || fail "read through symlink"
long_target=$(printf 'x%.0s' $(seq 1000))
ln -s "$long_target" "$MNT/longsym"
[ "$(readlink "$MNT/longsym")" = "$long_target" ] || fail "1000-byte symlink target"

# chmod, chown, touch, truncate.
chmod 4711 "$MNT/small.hard"
[ "$(stat -c %a "$MNT/small.hard")" = 4711 ] || fail "chmod"
chown 1234:5678 "$MNT/small.hard"
[ "$(stat -c %u:%g "$MNT/small.hard")" = 1234:5678 ] || fail "chown"
touch -d '1999-12-31 23:59:58' "$MNT/small.hard"
[ "$(stat -c %Y "$MNT/small.hard")" = "$(date -d '1999-12-31 23:59:58' +%s)" ] || fail "touch -d"
touch -a -d '@1000000000' "$MNT/small.hard"
[ "$(stat -c %X "$MNT/small.hard")" = 1000000000 ] || fail "touch -a"
before=$(date +%s)
touch "$MNT/small.hard"
[ "$(stat -c %Y "$MNT/small.hard")" -ge "$before" ] || fail "touch (now)"
truncate -s 3000000 "$MNT/a/f1moved"
head -c 3000000 "$WORK/ref" | cmp - "$MNT/a/f1moved" || fail "truncate down"
truncate -s 4000000 "$MNT/a/f1moved"
[ "$(stat -c %s "$MNT/a/f1moved")" = 4000000 ] || fail "truncate up"
[ "$(tail -c 1000000 "$MNT/a/f1moved" | tr -d '\0' | wc -c)" = 0 ] || fail "truncate up reads zeros"

# Special files.
mkfifo "$MNT/fifo"
[ -p "$MNT/fifo" ] || fail "mkfifo"
mknod "$MNT/chr" c 1 3
[ "$(stat -c %t:%T "$MNT/chr")" = 1:3 ] || fail "mknod c 1 3"

python3 "$HERE/posix_checks.py" "$MNT" || fail "posix_checks.py"

# Everything is still there after a remount.
unmount_fg
fsck_clean
mount_fg
head -c 3000000 "$WORK/ref" | cmp - <(head -c 3000000 "$MNT/a/f1moved") || fail "data after remount"
diff -r "$WORK/tree" "$MNT/tree" || fail "tree after remount"
finish
