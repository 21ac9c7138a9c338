#!/bin/sh
# A disk inside a vdfs datastore (vdfs:IMAGE:/path), opened by vdfs-vm through
# libvdfs: the test guest's virtio-blk checks pass, the file's content is what
# the guest wrote (with requests going straight to the device where they may,
# while another host writes the datastore, and with every request a libvdfs
# call), discard gives space back to the datastore, and while one VM runs a
# second VM on the same disk is refused with the holder's name, while a VM
# on another disk of the same datastore runs beside it (each VMM is a host).
# Then a VM run by the datastore name of its config (vdfs:IMAGE:/vm1/vm1.vmx),
# with its kernel and disk beside it, and the errors of such configs; and a
# VM whose VMM's host fences itself is stopped.
# Usage: vdfs_disk.sh VDFS_VM GUEST_ELF BLKCHECK_PY MKFS_VDFS VDFSCTL MKPVH FSCK_VDFS
VDFS_VM=$1
GUEST=$2
BLKCHECK=$3
MKFS=$4
VDFSCTL=$5
MKPVH=$6
FSCK=$7
. "$(dirname "$0")/lib.sh"
need_kvm

ds=$work/ds.img
truncate -s 256M "$ds"
"$MKFS" -q -H 4 -J 4M "$ds" || { echo "FAIL: mkfs.vdfs"; exit 1; }
python3 "$BLKCHECK" prepare "$work/disk.img" 16M || { echo "FAIL: blkcheck prepare"; exit 1; }
"$VDFSCTL" put "$ds" "$work/disk.img" /disk.img || { echo "FAIL: vdfsctl put"; exit 1; }
"$VDFSCTL" put "$ds" "$work/disk.img" /workers.img || { echo "FAIL: vdfsctl put"; exit 1; }
"$VDFSCTL" put "$ds" "$work/disk.img" /shared.img || { echo "FAIL: vdfsctl put"; exit 1; }
allocated() { "$VDFSCTL" usage --json "$ds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["allocated"])'; }
before=$(allocated)

# Reads and overwrites of written blocks go straight to the device; writes
# into the holes discard made, and reads of them, are libvdfs calls.  With
# VDFS_VM_DIRECT_IO=0 every request is a libvdfs call.  Both must be right.
blktest() { # FILE WHAT
	run_vm "$work/out" "$work/err" run -v --kernel "$GUEST" --memory 128M --cmdline mode=blktest \
		--disk "vdfs:$ds:$1,serial=vdfs-guest-test"
	expect_rc "blktest on a datastore disk ($2)" 0
	for t in read_pattern read_scatter write_readback flush discard write_zeroes get_id; do
		expect_in "$work/out" "^RESULT test=$t result=pass" "guest check $t ($2)"
	done
	"$VDFSCTL" get "$ds" "$1" "$work/back.img" || fail "vdfsctl get"
	python3 "$BLKCHECK" verify "$work/back.img" && pass "file content matches what the guest wrote ($2)" ||
		fail "blkcheck verify of the datastore file ($2)"
}
blktest /disk.img "direct and libvdfs paths"
expect_in "$work/err" "datastore disks: [1-9][0-9]* reads and writes straight to the device, [1-9][0-9]* through libvdfs" \
	"requests took both paths"
# The same while another host writes the datastore all along: the metadata
# lock moves between the hosts, so requests meet it elsewhere and take the
# libvdfs path at those moments, and the direct ones must stay right.
head -c 100000 /dev/urandom >"$work/small"
(
	n=0
	while [ ! -e "$work/stop-churn" ]; do
		"$VDFSCTL" put "$ds" "$work/small" /churn && "$VDFSCTL" rm "$ds" /churn || echo "round $n" >>"$work/churn.err"
		n=$((n + 1))
	done
	echo "$n" >"$work/churn.rounds"
) &
churn=$!
blktest /shared.img "while another host writes the datastore"
touch "$work/stop-churn"
wait $churn
rounds=$(cat "$work/churn.rounds")
[ "$rounds" -gt 0 ] && [ ! -e "$work/churn.err" ] && pass "the other host put and removed a file $rounds times meanwhile" ||
	fail "the other host's writes: $rounds rounds, failures: $(cat "$work/churn.err" 2>/dev/null)"

export VDFS_VM_DIRECT_IO=0
blktest /workers.img "libvdfs only"
unset VDFS_VM_DIRECT_IO
expect_in "$work/err" "datastore disks: 0 reads and writes straight to the device, [1-9][0-9]* through libvdfs" \
	"VDFS_VM_DIRECT_IO=0 keeps every request in libvdfs"
after=$(allocated)
[ "$after" -lt "$before" ] && pass "discard returned space: allocated $before -> $after" ||
	fail "allocated $before -> $after after discard"

"$MKPVH" "$work/idle.elf" idle
"$VDFS_VM" run --kernel "$work/idle.elf" --memory 32M --disk "vdfs:$ds:/disk.img" >"$work/first.out" 2>&1 &
first=$!
i=0
until grep -q "MKPVH HELLO" "$work/first.out" 2>/dev/null || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
grep -q "MKPVH HELLO" "$work/first.out" || fail "first VM did not start: $(cat "$work/first.out")"
run_vm "$work/out" "$work/err" run --kernel "$work/idle.elf" --memory 32M --disk "vdfs:$ds:/disk.img"
expect_rc "second VM on the same datastore disk refused" 1
expect_in "$work/err" "/disk.img is locked by host .*slot" "refusal names the disk and the host that holds it"
"$VDFSCTL" put "$ds" "$work/disk.img" /other.img || fail "vdfsctl put while a VM runs"
run_vm "$work/out" "$work/err" run --kernel "$GUEST" --memory 128M --cmdline mode=blktest \
	--disk "vdfs:$ds:/other.img"
expect_rc "a VM on another disk of the datastore runs beside the first" 0
kill -TERM $first
wait $first

run_vm "$work/out" "$work/err" run --kernel "$work/idle.elf" --memory 32M --disk "vdfs:$ds:/nosuch.img"
expect_rc "missing datastore file" 1
expect_in "$work/err" "/nosuch.img: " "missing file is named"
run_vm "$work/out" "$work/err" run --kernel "$work/idle.elf" --memory 32M --disk "vdfs:$ds"
expect_rc "malformed vdfs: disk" 1
expect_in "$work/err" "expected vdfs:IMAGE:/path" "format is explained"

# A VM folder in the datastore, run by its config's datastore name: config,
# kernel, initrd and disk are read through libvdfs, relative names in the
# config's folder (where an initrd lands is vmm-core's test).
"$VDFSCTL" mkdir "$ds" /vm1 || fail "vdfsctl mkdir"
"$VDFSCTL" put "$ds" "$GUEST" /vm1/guest.elf || fail "vdfsctl put guest"
"$VDFSCTL" put "$ds" "$work/disk.img" /vm1/root.img || fail "vdfsctl put disk"
head -c 300000 /dev/urandom >"$work/initrd.img"
"$VDFSCTL" put "$ds" "$work/initrd.img" /vm1/initrd.img || fail "vdfsctl put initrd"
printf '%s\n' "name = vm1" "memory = 128M" "kernel = guest.elf" "initrd = initrd.img" "cmdline = mode=blktest" \
	"disk = root.img,serial=vdfs-guest-test" >"$work/vm1.vmx"
"$VDFSCTL" put "$ds" "$work/vm1.vmx" /vm1/vm1.vmx || fail "vdfsctl put config"
run_vm "$work/out" "$work/err" run "vdfs:$ds:/vm1/vm1.vmx"
expect_rc "a VM whose config, kernel and disk are in the datastore" 0
expect_in "$work/out" "^RESULT test=write_readback result=pass" "its guest checks pass"
"$VDFSCTL" get "$ds" /vm1/root.img "$work/back.img" || fail "vdfsctl get"
python3 "$BLKCHECK" verify "$work/back.img" && pass "its disk holds what the guest wrote" ||
	fail "blkcheck verify of /vm1/root.img"
run_vm "$work/out" "$work/err" run "vdfs:$ds:/vm1/nosuch.vmx"
expect_rc "a config missing from the datastore" 1
expect_in "$work/err" "/vm1/nosuch.vmx: " "the missing config is named"
printf '%s\n' "kernel = nokernel.elf" >"$work/bad.vmx"
"$VDFSCTL" put "$ds" "$work/bad.vmx" /vm1/bad.vmx || fail "vdfsctl put"
run_vm "$work/out" "$work/err" run "vdfs:$ds:/vm1/bad.vmx"
expect_rc "a kernel missing from the datastore" 1
expect_in "$work/err" "kernel vdfs:.*:/vm1/nokernel.elf: " "the missing kernel is named"
printf '%s\n' "kernel = guest.elf" "serial = file:console.log" >"$work/bad.vmx"
"$VDFSCTL" put "$ds" "$work/bad.vmx" /vm1/bad2.vmx || fail "vdfsctl put"
run_vm "$work/out" "$work/err" run "vdfs:$ds:/vm1/bad2.vmx"
expect_rc "a relative console file in a datastore config" 1
expect_in "$work/err" "bad2.vmx:2: serial: a console file of a config in a datastore must be an absolute host path" \
	"a relative console file is refused with its line"
# A VMM whose host on the datastore fences itself (here: stopped past its
# heartbeat timeout, 3 s) stops its VM at once, with the reason: other hosts
# may take its disk's lock from then on and start the same VM. The next VM
# on that disk then starts (the stale host is recovered).
"$VDFS_VM" run --kernel "$work/idle.elf" --memory 32M --disk "vdfs:$ds:/disk.img" >"$work/fenced.out" 2>"$work/fenced.err" &
fenced=$!
i=0
until grep -q "MKPVH HELLO" "$work/fenced.out" 2>/dev/null || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -STOP $fenced
sleep 4.5
kill -CONT $fenced
i=0
while kill -0 $fenced 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $fenced 2>/dev/null; then
	fail "the VM of a fenced host still runs 10 s after it was continued"
	kill -KILL $fenced
fi
wait $fenced
rc=$?
err=$work/fenced.err
expect_rc "the VM of a fenced host stops" 1
expect_in "$work/fenced.err" "has fenced itself.*stopping the VM" "the VMM says why it stopped the VM"
run_vm "$work/out" "$work/err" run --kernel "$GUEST" --memory 64M --cmdline mode=ready --disk "vdfs:$ds:/disk.img"
expect_rc "the same disk starts again after the fenced VM stopped" 0
# Every VMM above left the datastore as it should: a clean check.
"$FSCK" -n "$ds" >"$work/fsck.out" 2>&1 && pass "fsck -n is clean after the VMs" ||
	fail "fsck after the VMs: $(cat "$work/fsck.out")"
finish
