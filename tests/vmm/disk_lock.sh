#!/bin/sh
# A disk file is written by one VM at a time on this host, as QEMU's image
# locking gives: a second VM that would write a disk another VM has open
# is refused before it boots, naming the lock; read-only VMs share a disk;
# the lock goes with the VMM; the same file twice in one VM is refused;
# vdfs-vm and QEMU keep each other out; and with MKFS and VDFS_FUSE, the
# same holds for a disk file on a vdfs-fuse mount.
# Usage: disk_lock.sh VDFS_VM GUEST_ELF [MKFS VDFS_FUSE]
VDFS_VM=$1
GUEST=$2
MKFS=${3:-}
VDFS_FUSE=${4:-}
. "$(dirname "$0")/lib.sh"
need_kvm

khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
disk=$work/disk.img
truncate -s 64M "$disk"
holder=

# hold DISKSPEC: a VM with the disk attached, in the background, until
# release; returns once its guest waits (its disk was attached at boot).
# It waits for the power button rather than for a fixed time, so a start
# that a storage stall makes slow cannot outlast the hold.
hold() {
	"$VDFS_VM" run --kernel "$GUEST" --memory 64M --disk "$1" \
		--cmdline "mode=wait seconds=120 tsc_khz=$khz" >"$work/hold.out" 2>"$work/hold.err" &
	holder=$!
	for _ in $(seq 400); do
		grep -q "^VDFS-GUEST mode=wait" "$work/hold.out" && return 0
		sleep 0.05
	done
	fail "the VM holding $1 did not start"
	cat "$work/hold.err"
}

# The holder powers off when asked, with status 0: the refused VMs did not
# disturb it.
release() {
	"$VDFS_VM" stop --timeout 60 "$holder" || fail "vdfs-vm stop of the holding VM failed"
	wait "$holder"
	hold_rc=$?
	if [ "$hold_rc" -eq 0 ]; then
		pass "the holding VM ran undisturbed"
	else
		fail "the holding VM exited $hold_rc"
		tail -5 "$work/hold.out" "$work/hold.err"
	fi
	holder=
}

# try DISKSPEC...: a short VM with these disks; sets rc
try() {
	args=
	for d in "$@"; do args="$args --disk $d"; done
	# shellcheck disable=SC2086
	run_vm "$work/out" "$work/err" run --kernel "$GUEST" --memory 64M --cmdline "mode=ready" $args
}

refused() { # WHAT PATTERN
	if [ "$rc" -ne 0 ] && grep -q -- "$2" "$work/err" && ! grep -q "VDFS-GUEST READY" "$work/out"; then
		pass "$1: refused before boot ($(head -1 "$work/err"))"
	else
		fail "$1: exit $rc, want a refusal naming /$2/"
		cat "$work/err"
	fi
}

hold "$disk"
try "$disk"
refused "a second writer" "is locked: another VM or process has it open for writing"
try "$disk,ro"
refused "a reader beside a writer" "is locked"
release
try "$disk"
expect_rc "a writer after the first VM exited" 0

hold "$disk,ro"
try "$disk,ro"
expect_rc "a second read-only VM" 0
try "$disk"
refused "a writer beside a reader" "holds a shared lock on it"
release

try "$disk" "$disk"
refused "the same disk twice in one VM" "is locked"

if command -v qemu-system-x86_64 >/dev/null; then
	hold "$disk"
	timeout 30 qemu-system-x86_64 -enable-kvm -M microvm -m 64 -nographic -no-reboot -kernel "$GUEST" \
		-append "mode=ready" -drive "file=$disk,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0 \
		>"$work/qemu.out" 2>&1
	if grep -qE 'Failed to (get "write" lock|lock byte)' "$work/qemu.out"; then
		pass "QEMU refuses a disk vdfs-vm writes"
	else
		fail "QEMU started on a disk vdfs-vm writes"
		head -5 "$work/qemu.out"
	fi
	release
fi
if [ -n "$VDFS_FUSE" ]; then
	mkdir "$work/mnt"
	"$MKFS" -q "$work/ds.img" 1G && "$VDFS_FUSE" "$work/ds.img" "$work/mnt" ||
		{ fail "could not mount a datastore"; finish; }
	truncate -s 64M "$work/mnt/disk.img"
	hold "$work/mnt/disk.img"
	try "$work/mnt/disk.img"
	refused "a second writer on a vdfs-fuse mount" "open for writing"
	release
	umount "$work/mnt" || umount -l "$work/mnt"
fi
finish
