#!/bin/bash
# The main job, end to end: a thin 1 TiB datastore image is formatted, a
# directory tree goes in and comes back out unchanged, usage shows that only
# written data takes space, a VM boots from a disk inside the datastore, and
# fsck finds the datastore clean.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
bin="$root/build"
work="$(mktemp -d /var/tmp/vdfs-demo.XXXXXX)"
trap 'rm -rf "$work"' EXIT
image="$work/datastore.img"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "mkfs.vdfs: a thin 1 TiB datastore"
"$bin/mkfs/mkfs.vdfs" -L demo "$image" 1T
echo "image file: $(du -h --apparent-size "$image" | cut -f1) apparent, $(du -h "$image" | cut -f1) on the host"

step "a directory tree to copy in (with a 4 GiB sparse VM disk holding 8 MiB of data)"
src="$work/tree"
mkdir -p "$src/vms/web" "$src/iso" "$src/notes"
head -c 3000000 /dev/urandom > "$src/iso/installer.iso"
truncate -s 4G "$src/vms/web/web-flat.vmdk"
dd if=/dev/urandom of="$src/vms/web/web-flat.vmdk" bs=1M count=8 seek=1024 conv=notrunc status=none
printf 'name = web\ncpus = 2\nmemory = 512M\n' > "$src/vms/web/web.vmx"
for i in $(seq 1 200); do echo "note $i" > "$src/notes/note-$i.txt"; done
ln -s web/web.vmx "$src/vms/current.vmx"
du -sh --apparent-size "$src"; du -sh "$src"

step "vdfsctl put -r: copy the tree in"
time "$bin/tools/vdfsctl" put -r "$image" "$src" /datastore
"$bin/tools/vdfsctl" ls -l "$image" /datastore/vms/web

step "vdfsctl map: the VM disk is thin (holes are not allocated)"
"$bin/tools/vdfsctl" map "$image" /datastore/vms/web/web-flat.vmdk

step "vdfsctl usage: provisioned against allocated"
"$bin/tools/vdfsctl" usage "$image"

step "vdfsctl get -r: copy it back out and compare"
"$bin/tools/vdfsctl" get -r "$image" /datastore "$work/out"
diff -r "$src" "$work/out" && echo "identical: every file, symlink and directory came back unchanged"
echo "digest of the VM disk in the datastore: $("$bin/tools/vdfsctl" digest "$image" /datastore/vms/web/web-flat.vmdk)"
echo "sha256sum of the original:              $(sha256sum "$src/vms/web/web-flat.vmdk")"

step "vdfs-vm: boot the test guest from a disk that lives in the datastore"
python3 "$root/guest/tests/blkcheck.py" prepare "$work/disk.img" 64M
"$bin/tools/vdfsctl" mkdir -p "$image" /datastore/vms/test
"$bin/tools/vdfsctl" put "$image" "$work/disk.img" /datastore/vms/test/disk.img
"$bin/vmm/vdfs-vm" run --name demo-vm --cpus 1 --memory 128M --kernel "$bin/guest/guest.elf" \
    --cmdline mode=blktest --disk "vdfs:$image:/datastore/vms/test/disk.img,serial=demo-disk"
echo "the VM powered off with status $? (0: every virtio-blk check passed)"
"$bin/tools/vdfsctl" get "$image" /datastore/vms/test/disk.img "$work/disk-after.img"
python3 "$root/guest/tests/blkcheck.py" verify "$work/disk-after.img" && echo "the disk holds exactly what the guest wrote"

step "vdfsctl hosts: no host holds the datastore now"
"$bin/tools/vdfsctl" hosts "$image"

step "fsck.vdfs -n: the datastore is consistent"
"$bin/fsck/fsck.vdfs" -n "$image"
echo
echo "demo finished: datastore image was $image (removed on exit)"
