#!/bin/sh
# How a VM ends: debug-exit status, ACPI poweroff, i8042 reset, triple fault,
# emulation failure (reason, RIP, bytes; never a hang), a kernel without a
# PVH note, SIGTERM, serial to a file.  Usage: platform_exits.sh VDFS_VM MKPVH
VDFS_VM=$1
MKPVH=$2
. "$(dirname "$0")/lib.sh"
need_kvm

img() { "$MKPVH" "$work/$1.elf" "$1" || { echo "mkpvh $1 failed"; exit 1; }; echo "$work/$1.elf"; }

run_vm "$work/out" "$work/err" run --kernel "$(img exit:7)" --memory 16M
expect_rc "debug-exit status 7" 7
expect_in "$work/out" "MKPVH HELLO" "guest console on stdout"

run_vm "$work/out" "$work/err" run --kernel "$(img exit:0)" --memory 16M --cpus 4
expect_rc "debug-exit status 0 with 4 vCPUs" 0

run_vm "$work/out" "$work/err" run --kernel "$(img poweroff)" --memory 16M
expect_rc "ACPI S5 poweroff" 0

run_vm "$work/out" "$work/err" run --kernel "$(img reset)" --memory 16M
expect_rc "i8042 reset" 3
expect_in "$work/err" "reset" "reset is reported"

run_vm "$work/out" "$work/err" run --kernel "$(img triple)" --memory 16M
expect_rc "triple fault" 2
expect_in "$work/err" "triple fault" "triple fault is reported"
expect_in "$work/err" "RIP=0x0000000000100011" "triple fault RIP"

start=$(date +%s)
run_vm "$work/out" "$work/err" run --kernel "$(img badinsn)" --memory 16M
took=$(( $(date +%s) - start ))
expect_rc "emulation failure" 2
expect_in "$work/err" "KVM_EXIT_INTERNAL_ERROR, suberror 1 (emulation failure)" "exit reason and suberror"
expect_in "$work/err" "RIP=0x0000000000100011" "failing RIP"
expect_in "$work/err" "instruction bytes at RIP.*: 0f ae 2d 80 01 10 00" "xrstor bytes"
[ "$took" -le 10 ] && pass "emulation failure reported in ${took}s" || fail "emulation failure took ${took}s"

run_vm "$work/out" "$work/err" run --kernel "$(img nonote:3)" --memory 16M
expect_rc "ELF without PVH note" 1
expect_in "$work/err" "no XEN_ELFNOTE_PHYS32_ENTRY note" "missing note is explained"

run_vm "$work/out" "$work/err" run --kernel "$(img exit:5)" --memory 16M --serial "file:$work/console.log"
expect_rc "serial to a file" 5
expect_in "$work/console.log" "MKPVH HELLO" "console in the serial file"
[ -s "$work/out" ] && fail "serial file mode still wrote to stdout" || pass "stdout left empty"

# Console input reaches the guest's receiver (polled through LSR data ready).
printf 'typed line\n' | timeout 60 "$VDFS_VM" run --kernel "$(img echo)" --memory 16M >"$work/out" 2>"$work/err"
rc=$?
expect_rc "console input echoed up to a newline" 33
expect_in "$work/out" "^typed line$" "guest echoed the input"
run_vm "$work/out" "$work/err" run --kernel "$(img exit:4)" --memory 16M </dev/null
expect_rc "no console input (stdin at EOF)" 4

# A guest spinning forever ends on SIGTERM, and leaves no registry entry.
spin=$(img spin)
"$VDFS_VM" run --kernel "$spin" --memory 16M --name spinner >"$work/spin.out" 2>"$work/err" &
pid=$!
i=0
until grep -q "MKPVH HELLO" "$work/spin.out" 2>/dev/null || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -e "$VDFS_VM_RUN_DIR/$pid.vm" ] && pass "running VM is registered" || fail "no registry entry for $pid"
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then
	fail "vdfs-vm ignored SIGTERM"
	kill -KILL "$pid"
fi
wait "$pid"
rc=$?
expect_rc "SIGTERM" 1
[ -e "$VDFS_VM_RUN_DIR/$pid.vm" ] && fail "registry entry left behind" || pass "registry entry removed"

finish
