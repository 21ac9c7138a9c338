#!/bin/sh
# The project's test guest boots through PVH, says READY and powers off
# with status 0 through the debug-exit port.  Usage: guest_ready.sh VDFS_VM GUEST_ELF
VDFS_VM=$1
GUEST=$2
. "$(dirname "$0")/lib.sh"
need_kvm

run_vm "$work/out" "$work/err" run --kernel "$GUEST" --memory 128M --cmdline "mode=ready"
expect_rc "guest mode=ready" 0
expect_in "$work/out" "^VDFS-GUEST READY" "READY line"
expect_in "$work/out" "^VDFS-GUEST DONE status=0" "DONE status=0 line"
run_vm "$work/out" "$work/err" run --kernel "$GUEST" --memory 128M --cpus 2 --cmdline "mode=nosuchmode"
[ "$rc" -ne 0 ] && pass "unknown guest mode gives a non-zero guest status ($rc)" || fail "unknown mode exited 0"
finish
