#!/bin/sh
# The Linux boot check (BRIEF section 4): Debian's cloud kernel, booted with
# earlyprintk on the serial console, must get as far as QEMU does on this
# machine (banner, e820 map, ACPI tables, SMP CPU count, memory summary)
# and then, where KVM's emulator lacks an instruction, end with a clear
# report (exit reason, RIP, instruction bytes) rather than hang.  On real
# hardware the same kernel would go on to look for its root filesystem.
# Usage: linux_boot.sh VDFS_VM EXTRACT_SH pvh|bzimage
VDFS_VM=$1
EXTRACT=$2
variant=$3
. "$(dirname "$0")/lib.sh"
need_kvm

bzimage=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)
[ -n "$bzimage" ] || { echo "SKIP: no /boot/vmlinuz-*-cloud-amd64 (package linux-image-cloud-amd64)"; exit 77; }
[ -r "$bzimage" ] || { echo "SKIP: $bzimage is not readable"; exit 77; }

case $variant in
pvh)
	command -v lz4 >/dev/null || { echo "SKIP: no lz4"; exit 77; }
	"$EXTRACT" "$bzimage" "$work/vmlinux" || { echo "FAIL: cannot extract vmlinux"; exit 1; }
	kernel=$work/vmlinux
	limit=170
	;;
bzimage)
	kernel=$bzimage
	limit=1700
	;;
*)
	echo "usage: $0 VDFS_VM EXTRACT_SH pvh|bzimage"; exit 2
	;;
esac

start=$(date +%s)
timeout "$limit" "$VDFS_VM" run --kernel "$kernel" --memory 128M --cpus 2 \
	--cmdline "earlyprintk=serial console=ttyS0" >"$work/console" 2>"$work/err"
rc=$?
took=$(( $(date +%s) - start ))
echo "$variant boot ran ${took}s, exit $rc"
err=$work/err

[ "$rc" -ne 124 ] || fail "vdfs-vm hung: still running after ${limit}s"
expect_in "$work/console" "Linux version" "kernel banner"
expect_in "$work/console" "BIOS-e820: \[mem 0x0000000000100000-0x0000000007ffffff\] usable" "e820 map with 128 MiB"
for table in RSDP XSDT FACP DSDT APIC; do
	expect_in "$work/console" "ACPI: $table " "ACPI $table table found"
done
expect_in "$work/console" "smpboot: Allowing 2 CPUs" "both vCPUs from the MADT"
expect_in "$work/console" "Memory: [0-9]*K/[0-9]*K available" "memory summary"
if grep -q "Run /init\|VFS: Cannot open root device\|Kernel panic" "$work/console"; then
	pass "kernel went past the emulator's limit (real hardware?)"
else
	expect_rc "emulation failure ends the VM as a guest crash" 2
	expect_in "$err" "KVM_EXIT_INTERNAL_ERROR, suberror 1 (emulation failure)" "exit reason"
	expect_in "$err" "RIP=0xffffffff[89a-f]" "kernel RIP (KASLR moves it)"
	expect_in "$err" "instruction bytes at RIP.*: [0-9a-f][0-9a-f] " "instruction bytes"
fi
grep -E "Linux version|smpboot|Memory:" "$work/console" | cut -c1-120
sed -n '1,3p' "$err"
finish
