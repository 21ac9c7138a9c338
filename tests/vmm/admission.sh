#!/bin/sh
# Admission against host capacity: CPU overcommit up to a ratio, memory
# overcommit refused unless allowed (then a warning), stale registry
# entries ignored, and `vdfs-vm ps` reporting allocations.
# Usage: admission.sh VDFS_VM MKPVH
VDFS_VM=$1
MKPVH=$2
. "$(dirname "$0")/lib.sh"
need_kvm

"$MKPVH" "$work/k.elf" exit:0 || exit 1
"$MKPVH" "$work/spin.elf" spin || exit 1
mkdir -p "$VDFS_VM_RUN_DIR"
cores=$(getconf _NPROCESSORS_ONLN)
host_mib=$(( $(getconf _PHYS_PAGES) * $(getconf PAGE_SIZE) / 1048576 ))

# A VM "running" in this shell holds almost all host RAM.
big=$(( (host_mib - 8) * 1048576 ))
printf '{"pid": %d, "name": "big", "cpus": 1, "memory": %d, "started": 0}\n' $$ $big \
	>"$VDFS_VM_RUN_DIR/$$.vm"
run_vm "$work/out" "$work/err" run --kernel "$work/k.elf" --memory 64M
expect_rc "memory overcommit refused" 1
expect_in "$work/err" "admission refused: .*MiB host RAM (memory overcommit needs --allow-mem-overcommit)" "refusal says why"
run_vm "$work/out" "$work/err" run --kernel "$work/k.elf" --memory 64M --allow-mem-overcommit
expect_rc "memory overcommit allowed on request" 0
expect_in "$work/err" "warning: memory overcommitted" "overcommit warning"

# The same entry with a dead pid is stale: ignored and removed.
rm -f "$VDFS_VM_RUN_DIR/$$.vm"
sh -c 'exit 0' &
dead=$!
wait $dead
printf '{"pid": %d, "name": "gone", "cpus": 64, "memory": %d, "started": 0}\n' $dead $big \
	>"$VDFS_VM_RUN_DIR/$dead.vm"
run_vm "$work/out" "$work/err" run --kernel "$work/k.elf" --memory 64M
expect_rc "stale entry of a dead process ignored" 0
[ -e "$VDFS_VM_RUN_DIR/$dead.vm" ] && fail "stale entry not removed" || pass "stale entry removed"

# A live pid whose start time differs is a later process reusing the pid.
printf '{"pid": %d, "name": "reused", "cpus": 64, "memory": %d, "started": 0, "start_ticks": 1}\n' $$ $big \
	>"$VDFS_VM_RUN_DIR/$$.vm"
run_vm "$work/out" "$work/err" run --kernel "$work/k.elf" --memory 64M
expect_rc "entry of a reused pid ignored" 0
[ -e "$VDFS_VM_RUN_DIR/$$.vm" ] && fail "reused-pid entry not removed" || pass "reused-pid entry removed"

# CPU: the default ratio allows 4 vCPUs per core.
limit=$((cores * 4))
run_vm "$work/out" "$work/err" run --kernel "$work/k.elf" --memory 16M --cpus $((limit + 1))
expect_rc "CPU overcommit beyond ratio 4 refused" 1
expect_in "$work/err" "CPU overcommit ratio 4.00" "CPU refusal names the ratio"
run_vm "$work/out" "$work/err" run --kernel "$work/k.elf" --memory 16M --cpus $((limit + 1)) --cpu-ratio 5
expect_rc "--cpu-ratio 5 admits it" 0
run_vm "$work/out" "$work/err" run --kernel "$work/k.elf" --memory 16M --cpus 2 --cpu-ratio 0.5
if [ "$cores" -lt 4 ]; then
	expect_rc "--cpu-ratio 0.5 refuses 2 vCPUs on $cores cores" 1
fi

# Running VMs count against later ones and show in ps.
"$VDFS_VM" run --kernel "$work/spin.elf" --memory 32M --cpus 2 --name spinner >/dev/null 2>&1 &
spin=$!
i=0
until [ -e "$VDFS_VM_RUN_DIR/$spin.vm" ] || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
run_vm "$work/out" "$work/err" run --kernel "$work/k.elf" --memory 16M --cpus $((limit - 1))
expect_rc "running VM's vCPUs count against the ratio" 1
"$VDFS_VM" ps >"$work/ps" 2>&1
expect_in "$work/ps" "spinner *$spin *2 *32 MiB  running" "ps lists the VM"
expect_in "$work/ps" "host: 2 vCPUs on $cores cores" "ps shows totals against capacity"
"$VDFS_VM" ps --json >"$work/ps.json"
if python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
vm = [v for v in d["vms"] if v["name"] == "spinner"][0]
assert vm["pid"] == int(sys.argv[2]) and vm["cpus"] == 2 and vm["memory"] == 32 << 20, vm
assert vm["state"] == "running" and "waiting_disk" not in vm, vm
assert d["host"]["cores"] == int(sys.argv[3]) and d["total"]["cpus"] == 2, d
' "$work/ps.json" "$spin" "$cores"; then pass "ps --json"; else fail "ps --json"; cat "$work/ps.json"; fi
kill -TERM $spin
wait $spin
"$VDFS_VM" ps --json >"$work/ps.json"
grep -q '"vms": \[\]' "$work/ps.json" && pass "ps empty after the VM ended" || fail "ps after end: $(cat "$work/ps.json")"
[ ! -e "$VDFS_VM_RUN_DIR/$spin.state" ] && pass "the VM's state file is gone" || fail "$spin.state left behind"
finish
