#!/bin/bash
# The main job, end to end: a thin 1 TiB datastore image is formatted and
# mounted with vdfs-fuse, a directory tree goes in through the mount and reads
# back unchanged, du/df/usage show that only written data takes space and a
# punched hole gives it back, a VM boots from its folder inside the datastore
# (config, kernel and disk read by the VMM through libvdfs), and
# fsck finds the datastore clean.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ -n "${VDFS_DEMO_BUILD:-}" ] || "$root/scripts/setup.sh"
bin="${VDFS_DEMO_BUILD:-$root/build}"
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

step "vdfs-fuse: mount the datastore and copy the tree in through the mount"
mnt="$work/mnt"
mkdir -p "$mnt"
"$bin/fuse/vdfs-fuse" "$image" "$mnt"
trap 'umount "$mnt" 2>/dev/null; rm -rf "$work"' EXIT
findmnt -n -o SOURCE,TARGET,FSTYPE "$mnt"
time cp -a "$src" "$mnt/datastore"
sync -f "$mnt"
ls -l "$mnt/datastore/vms/web"

step "thin provisioning seen from outside: du and df on the mount"
echo "web-flat.vmdk: $(du -h --apparent-size "$mnt/datastore/vms/web/web-flat.vmdk" | cut -f1) apparent, $(du -h "$mnt/datastore/vms/web/web-flat.vmdk" | cut -f1) allocated"
df -h "$mnt"

step "compare the tree through the mount, then punch a hole and watch the space come back"
diff -r "$src" "$mnt/datastore" && echo "identical: every file, symlink and directory reads back unchanged"
before=$(du -k "$mnt/datastore/vms/web/web-flat.vmdk" | cut -f1)
fallocate --punch-hole --keep-size -o 1G -l 4M "$mnt/datastore/vms/web/web-flat.vmdk"
after=$(du -k "$mnt/datastore/vms/web/web-flat.vmdk" | cut -f1)
echo "allocated before the punch: ${before} KiB, after: ${after} KiB"
fallocate --punch-hole --keep-size -o 1G -l 4M "$src/vms/web/web-flat.vmdk"
cmp "$src/vms/web/web-flat.vmdk" "$mnt/datastore/vms/web/web-flat.vmdk" && echo "the punched range reads as zeros"

step "vdfs-vm: boot the test guest from a VM folder in the datastore while it stays mounted here"
python3 "$root/guest/tests/blkcheck.py" prepare "$work/disk.img" 64M
mkdir -p "$mnt/datastore/vms/test"
cp --sparse=always "$work/disk.img" "$mnt/datastore/vms/test/disk.img"
cp "$bin/guest/guest.elf" "$mnt/datastore/vms/test/guest.elf"
printf '%s\n' "name = demo-vm" "cpus = 1" "memory = 128M" "kernel = guest.elf" "cmdline = mode=blktest" \
    "disk = disk.img,serial=demo-disk" >"$mnt/datastore/vms/test/test.vmx"
cat "$mnt/datastore/vms/test/test.vmx"
sync -f "$mnt"
# The VMM reads the config, the kernel and the disk from the datastore
# itself, joins it as a host of its own and takes the disk's lock.
"$bin/vmm/vdfs-vm" run "vdfs:$image:/datastore/vms/test/test.vmx"
echo "the VM powered off with status $? (0: every virtio-blk check passed)"
python3 "$root/guest/tests/blkcheck.py" verify "$mnt/datastore/vms/test/disk.img" &&
    echo "read through the mount, the disk holds exactly what the guest wrote"

step "one writer per file: a second VM on a disk that is open for writing is refused"
exec 3>>"$mnt/datastore/vms/test/disk.img"
"$bin/vmm/vdfs-vm" run --name demo-vm2 --memory 32M --kernel "$bin/guest/guest.elf" \
    --disk "vdfs:$image:/datastore/vms/test/disk.img" && echo "unexpected: it started" || echo "refused, as it must be"
exec 3>&-

step "two VMs from the datastore reach each other through vdfs-switch"
VDFS_BUILD="$bin" "$root/scripts/demo-net.sh" "$image"

step "vdfsctl hosts: this mount is the one live host now"
"$bin/tools/vdfsctl" hosts "$image"

step "unmount: the journal is committed and the heartbeat slot released"
umount "$mnt"
trap 'rm -rf "$work"' EXIT

step "vdfsctl map: the VM disk is thin (holes are not allocated)"
"$bin/tools/vdfsctl" map "$image" /datastore/vms/web/web-flat.vmdk

step "vdfsctl usage: provisioned against allocated"
"$bin/tools/vdfsctl" usage "$image"

step "vdfsctl truncate and cp -r: a new 20 GiB thin disk, and a thin clone of the VM's folder"
"$bin/tools/vdfsctl" truncate "$image" /datastore/vms/test/data.img 20G
"$bin/tools/vdfsctl" cp -r "$image" /datastore/vms/test /datastore/vms/test-clone
"$bin/tools/vdfsctl" ls -l "$image" /datastore/vms/test-clone
"$bin/tools/vdfsctl" usage "$image" | grep -E "^(provisioned|allocated)"

step "vdfsctl get -r: copy it back out without a mount and compare"
"$bin/tools/vdfsctl" get -r "$image" /datastore "$work/out"
diff -r -x test -x test-clone "$src" "$work/out" && echo "identical (vms/test and its clone are the VM added above)"
echo "digest of the VM disk in the datastore: $("$bin/tools/vdfsctl" digest "$image" /datastore/vms/web/web-flat.vmdk)"
echo "sha256sum of the original:              $(sha256sum "$src/vms/web/web-flat.vmdk")"

step "vdfsctl grow and label: the image grows to 2 TiB and the datastore takes it; a new name"
"$bin/tools/vdfsctl" grow "$image" 2T
"$bin/tools/vdfsctl" label "$image" "demo datastore"
"$bin/tools/vdfsctl" info "$image" | grep -E "^(label|size|file blocks|grow limit)"

step "fsck.vdfs -n: the datastore is consistent"
"$bin/fsck/fsck.vdfs" -n "$image"
echo
echo "demo finished: datastore image was $image (removed on exit)"
