#!/bin/sh
# A whole VM under the seccomp allow-lists: vdfs-vm runs the test guest's
# virtio-blk benchmark on a file disk with a NIC on a real vdfs-switch.
# While it runs, every thread of the process must carry a filter (the
# process filter, plus its own for the threads vdfs-vm starts); the switch
# is restarted, so the NIC's thread must make a new socket and connect
# under its filter; the guest must finish without errors.  A second run
# (mode=blktest, cache=none: O_DIRECT) checks that the disk's content is
# right under the filters.
# Usage: seccomp_vm.sh VDFS_VM GUEST_ELF BLKCHECK_PY VDFS_SWITCH
VDFS_VM=$1
GUEST=$2
BLKCHECK=$3
SWITCH=$4
. "$(dirname "$0")/lib.sh"
need_kvm

sock=$work/sw.sock
start_switch() {
	"$SWITCH" daemon --name seccomp-test --socket "$sock" --portgroup pg0 -f >>"$work/switch.log" 2>&1 &
	switch_pid=$!
	i=0
	until [ -S "$sock" ] || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done
	[ -S "$sock" ] || { echo "SKIP: vdfs-switch did not start"; cat "$work/switch.log"; exit 77; }
}
# count_in FILE PATTERN
count_in() { n=$(grep -c -- "$2" "$1" 2>/dev/null); echo "${n:-0}"; }
wait_for() { # FILE PATTERN N: until FILE has N lines matching, 10 s at most
	i=0
	until [ "$(count_in "$1" "$2")" -ge "$3" ] || [ $i -ge 200 ]; do sleep 0.05; i=$((i + 1)); done
}
trap 'kill $switch_pid 2>/dev/null; rm -rf "$work"' EXIT INT TERM
start_switch

python3 "$BLKCHECK" prepare "$work/disk.img" 16M || { echo "FAIL: blkcheck prepare"; exit 1; }
tsc_khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
timeout 60 "$VDFS_VM" run --kernel "$GUEST" --memory 128M \
	--cmdline "mode=blkbench op=randwrite qd=32 seconds=4 span=8M tsc_khz=$tsc_khz" \
	--disk "$work/disk.img,cache=none" --nic pg0 --switch "$sock" \
	>"$work/out" 2>"$work/err" </dev/null &
vm=$!
i=0
until pid=$(pgrep -P $vm) || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done
wait_for "$work/err" "connected to switch port" 1
[ "$(count_in "$work/err" "connected to switch port")" -ge 1 ] && pass "NIC attached to the switch" ||
	fail "NIC did not attach"
wait_for "$work/out" "VDFS-GUEST READY" 1

# Every thread is confined: the process filter reaches threads started
# before setup ended (TSYNC); the threads vdfs-vm starts add their own.
unconfined=0 threads=0 own=0
for status in /proc/$pid/task/*/status; do
	filters=$(awk '/^Seccomp_filters:/ { print $2 }' "$status" 2>/dev/null) || continue
	[ -n "$filters" ] || continue
	threads=$((threads + 1))
	[ "$filters" -ge 1 ] || unconfined=$((unconfined + 1))
	[ "$filters" -ge 2 ] && own=$((own + 1))
done
[ "$threads" -ge 4 ] && [ "$unconfined" -eq 0 ] &&
	pass "all $threads threads filtered ($own with their own profile on top)" ||
	fail "$unconfined of $threads threads have no seccomp filter"
[ "$own" -ge 4 ] && pass "main, vCPU, disk and NIC threads have their own profile" ||
	fail "only $own threads have their own profile"

# The NIC's thread reconnects under its filter: socket(AF_UNIX) + connect.
kill $switch_pid
wait $switch_pid 2>/dev/null
wait_for "$work/err" "switch port lost" 1
start_switch
wait_for "$work/err" "connected to switch port" 2
[ "$(count_in "$work/err" "connected to switch port")" -ge 2 ] &&
	pass "NIC reconnected to a restarted switch under its filter" || fail "no reconnection"

wait $vm
rc=$?
expect_rc "blkbench with a NIC under seccomp" 0
expect_in "$work/out" "^RESULT op=randwrite .* errors=0 " "benchmark finished without I/O errors"
expect_in "$work/out" "^VDFS-GUEST DONE status=0" "guest finished"
if grep -q "Bad system call\|SIGSYS" "$work/err"; then fail "a thread was killed"; fi

python3 "$BLKCHECK" prepare "$work/disk.img" 16M || { echo "FAIL: blkcheck prepare"; exit 1; }
run_vm "$work/out2" "$work/err2" run --kernel "$GUEST" --memory 128M --cmdline mode=blktest \
	--disk "$work/disk.img,serial=seccomp,cache=none" --nic pg0 --switch "$sock"
expect_rc "blktest (cache=none) with a NIC under seccomp" 0
expect_in "$work/out2" "^VDFS-GUEST DONE status=0" "blktest passed"
python3 "$BLKCHECK" verify "$work/disk.img" >"$work/verify" 2>&1 && pass "disk content verified" ||
	{ fail "blkcheck verify"; cat "$work/verify"; }
finish
