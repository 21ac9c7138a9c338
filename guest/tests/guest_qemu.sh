#!/bin/sh
# Runs the test guest under QEMU/KVM and checks its serial output protocol
# (docs/guest.md).  Usage: guest_qemu.sh CASE GUEST_ELF BLKCHECK_PY
#   ready            microvm, mode=ready: READY, DONE status=0, exit code 1
#   pci              pc, mode=pci: the virtio-blk-pci device is listed
#   blktest-pc       pc (SeaBIOS assigns BARs, 0xCF8 config access)
#   blktest-microvm  microvm,pcie=on (guest assigns BARs, ECAM access)
#   blktest-ro       pc, read-only disk: writes refused, file untouched
#   blkbench         microvm,pcie=on, a short count= run prints iops
#   bad-cmdline      an unknown key ends with DONE status=2
#   fault            mode=fault: the ring-3 #UD is reported, DONE status=4
#   no-exit-device   without isa-debug-exit the guest halts (no spin, no fault)
# Exit 77 (skipped) without /dev/kvm or qemu-system-x86_64.
set -u

case_name=$1
guest=$2
blkcheck=$3

command -v qemu-system-x86_64 >/dev/null 2>&1 || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
[ -w /dev/kvm ] || { echo "SKIP: /dev/kvm not usable"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/guest-qemu.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
serial=$work/serial.log
disk=$work/disk.img

fail() {
	echo "FAIL ($case_name): $*"
	echo "--- serial output:"
	cat "$serial" 2>/dev/null
	exit 1
}

# run_qemu MACHINE CMDLINE [extra qemu args...]: sets qemu_rc.
run_qemu() {
	machine=$1
	cmdline=$2
	shift 2
	timeout 120 qemu-system-x86_64 -enable-kvm -M "$machine" -m 128 -smp 1 \
		-nodefaults -nographic -no-reboot -display none \
		-serial "file:$serial" \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel "$guest" -append "$cmdline" "$@" >"$work/qemu.out" 2>&1
	qemu_rc=$?
	[ "$qemu_rc" -eq 124 ] && fail "QEMU timed out after 120 s"
}

# expect_done STATUS: DONE line and QEMU's isa-debug-exit code (status<<1)|1.
expect_done() {
	grep -qx "VDFS-GUEST READY" "$serial" || fail "no READY line"
	grep -qx "VDFS-GUEST DONE status=$1" "$serial" || fail "no 'DONE status=$1' line"
	[ "$qemu_rc" -eq $(($1 * 2 + 1)) ] || fail "QEMU exit code $qemu_rc, want $(($1 * 2 + 1))"
	! grep -q "result=fail" "$serial" || [ "$1" -ne 0 ] || fail "a RESULT line failed"
}

expect_line() {
	grep -q "$1" "$serial" || fail "no line matching '$1'"
}

blk_drive="file=$disk,if=none,id=d0,format=raw,cache=none,aio=io_uring,discard=unmap"
blk_device="virtio-blk-pci,drive=d0,disable-legacy=on,serial=vdfs-guest-test"

case $case_name in
ready)
	run_qemu microvm "mode=ready"
	expect_done 0
	;;
pci)
	python3 "$blkcheck" prepare "$disk" 8M || fail "blkcheck prepare"
	run_qemu pc "mode=pci" -drive "$blk_drive" -device "$blk_device"
	expect_done 0
	expect_line "^RESULT pci bdf=00:..\.0 vendor=1af4 device=1042 class=010000$"
	expect_line "^RESULT pci bdf=00:00\.0 vendor=8086 device=1237 "
	expect_line "^RESULT pci_count=[0-9]* access=cf8$"
	;;
blktest-pc | blktest-microvm)
	python3 "$blkcheck" prepare "$disk" 16M || fail "blkcheck prepare"
	if [ "$case_name" = blktest-pc ]; then
		run_qemu pc "mode=blktest" -drive "$blk_drive" -device "$blk_device"
	else
		# microvm's ECAM window is described only in AML, so it is given.
		run_qemu microvm,pcie=on "mode=blktest ecam=0xe0000000" -drive "$blk_drive" -device "$blk_device"
	fi
	expect_done 0
	for t in read_pattern read_scatter write_readback flush discard write_zeroes read_past_end get_id device_status; do
		expect_line "^RESULT test=$t result=pass"
	done
	python3 "$blkcheck" verify "$disk" || fail "blkcheck verify"
	;;
blktest-ro)
	python3 "$blkcheck" prepare "$disk" 16M || fail "blkcheck prepare"
	run_qemu pc "mode=blktest" -drive "$blk_drive,readonly=on" -device "$blk_device"
	expect_done 0
	expect_line "^RESULT test=device result=pass .* ro=1 "
	expect_line "^RESULT test=write_refused result=pass"
	python3 "$blkcheck" verify --read-only "$disk" || fail "blkcheck verify --read-only"
	;;
blkbench)
	python3 "$blkcheck" prepare "$disk" 64M || fail "blkcheck prepare"
	run_qemu microvm,pcie=on "mode=blkbench op=randread bs=4096 qd=32 count=20000 tsc_khz=2000000 ecam=0xe0000000" \
		-drive "$blk_drive" -device "$blk_device"
	expect_done 0
	expect_line "^RESULT op=randread bs=4096 qd=32 ios=20000 errors=0 elapsed_us=[1-9][0-9]* iops=[1-9][0-9]* mbps=[0-9.]* kicks=[1-9][0-9]*$"
	;;
net-ping-pc)
	# QEMU's user-mode network answers ARP and ICMP echo for its gateway,
	# 10.0.2.2; restrict=on keeps it off the host's network.
	run_qemu pc "mode=net-ping ip=10.0.2.15 peer=10.0.2.2 count=3 end=0" \
		-netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,disable-legacy=on,mac=02:00:00:00:00:31
	expect_done 0
	expect_line "^RESULT nic=ready mac=02:00:00:00:00:31 ip=10.0.2.15 "
	expect_line "^RESULT mode=net-ping peer=10.0.2.2 peer_mac=[0-9a-f:]* arp_us=[0-9]* sent=3 received=3 "
	;;
net-blast-microvm)
	# The generator's frames leave through QEMU's user network (which drops
	# them): every one must be handed back by the device.
	run_qemu microvm,pcie=on "mode=net-blast dst=02:00:00:00:00:99 size=1500 count=5000 end=0 tsc_khz=2000000 ecam=0xe0000000" \
		-netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,disable-legacy=on
	expect_done 0
	expect_line "^RESULT mode=net-blast dst=02:00:00:00:00:99 size=1500 frames=5000 bytes=7500000 elapsed_us=[1-9][0-9]* fps=[1-9][0-9]* gbps=[0-9.]* kicks=[1-9][0-9]*$"
	;;
bad-cmdline)
	run_qemu microvm "mode=ready frobnicate=1"
	expect_done 2
	expect_line "^VDFS-GUEST ERROR unknown cmdline word 'frobnicate'$"
	;;
fault)
	run_qemu microvm "mode=fault"
	grep -q "^VDFS-GUEST FAULT vector=6 error=0x0 rip=0x[0-9a-f]* cr2=0x0 rflags=0x[0-9a-f]* cs=0x23$" "$serial" ||
		fail "no FAULT line for #UD in ring 3"
	expect_done 4
	;;
no-exit-device)
	timeout 3 qemu-system-x86_64 -enable-kvm -M microvm -m 128 -smp 1 -nodefaults -nographic -no-reboot \
		-display none -serial "file:$serial" -kernel "$guest" -append "mode=ready" >"$work/qemu.out" 2>&1
	qemu_rc=$?
	[ "$qemu_rc" -eq 124 ] || fail "QEMU exited ($qemu_rc): the guest should halt, not end or crash"
	grep -qx "VDFS-GUEST DONE status=0" "$serial" || fail "no DONE line"
	! grep -q "FAULT" "$serial" || fail "halting faulted"
	;;
*)
	echo "usage: $0 ready|pci|blktest-pc|blktest-microvm|blktest-ro|blkbench|net-ping-pc|net-blast-microvm|bad-cmdline|fault|no-exit-device GUEST_ELF BLKCHECK_PY" >&2
	exit 2
	;;
esac
echo "PASS ($case_name)"
