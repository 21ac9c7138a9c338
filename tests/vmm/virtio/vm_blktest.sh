#!/bin/sh
# End-to-end virtio-blk check: vdfs-vm boots the test guest in mode=blktest
# against a disk prepared by blkcheck.py, then blkcheck.py verifies the file
# (guest writes landed, discard punched or zeroed, write-zeroes zeroed, the
# rest untouched).  Usage: vm_blktest.sh rw|ro VDFS_VM GUEST_ELF BLKCHECK_PY
# Exit 77 (skipped) without a usable /dev/kvm.
set -u
mode=$1 vm=$2 guest=$3 blkcheck=$4

[ -w /dev/kvm ] || { echo "SKIP: /dev/kvm not usable"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/vm-blktest.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
serial=$work/serial.log
disk=$work/disk.img

fail() {
	echo "FAIL ($mode): $*"
	echo "--- serial output:"
	cat "$serial" 2>/dev/null
	echo "--- vdfs-vm stderr:"
	cat "$work/vm.err" 2>/dev/null
	exit 1
}

python3 "$blkcheck" prepare "$disk" 16M || fail "blkcheck prepare"
opts=serial=vdfs-guest-test
[ "$mode" = ro ] && opts="ro,$opts"
timeout 100 "$vm" run --memory 128M --kernel "$guest" --cmdline "mode=blktest" \
	--disk "$disk,$opts" --serial "file:$serial" 2>"$work/vm.err"
rc=$?
[ "$rc" -eq 124 ] && fail "vdfs-vm timed out"
[ "$rc" -eq 0 ] || fail "vdfs-vm exit status $rc, want 0"
grep -qx "VDFS-GUEST DONE status=0" "$serial" || fail "no 'DONE status=0' line"
! grep -q "result=fail" "$serial" || fail "a RESULT line failed"
grep -q "^RESULT test=get_id result=pass serial=vdfs-guest-test" "$serial" || fail "serial not seen"
grep -q "^RESULT test=read_past_end result=pass at_end=ioerr straddling=ioerr" "$serial" ||
	fail "reads past the end were not refused"
if [ "$mode" = ro ]; then
	grep -q "^RESULT test=device result=pass .* ro=1 " "$serial" || fail "RO not offered"
	grep -q "^RESULT test=write_refused result=pass status=ioerr" "$serial" || fail "write not refused"
	python3 "$blkcheck" verify --read-only "$disk" || fail "blkcheck verify --read-only"
else
	for t in read_pattern read_scatter write_readback flush discard write_zeroes device_status; do
		grep -q "^RESULT test=$t result=pass" "$serial" || fail "no pass for $t"
	done
	python3 "$blkcheck" verify "$disk" || fail "blkcheck verify"
fi
echo "PASS ($mode)"
