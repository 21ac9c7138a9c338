#!/bin/bash
# vdfs-vm stop: the ACPI power button ends a guest that obeys it (test guest
# mode=wait) with status 0; a guest that ignores it keeps running until
# --timeout runs out (exit 1), and --force then powers it off; by name or
# PID; bad targets and arguments are refused.
# Usage: stop.sh VDFS_VM GUEST_ELF.  Exit 77 without KVM.
set -euo pipefail
VM=$1 GUEST=$2
[[ -w /dev/kvm ]] || { echo "SKIP: /dev/kvm not usable"; exit 77; }
dir=$(mktemp -d /tmp/vdfs-vm-stop.XXXXXX)
export VDFS_VM_RUN_DIR=$dir/run
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    for f in "$dir"/*.log "$dir"/*.err; do [[ -s $f ]] && { echo "--- $(basename "$f")"; cat "$f"; }; done
    exit 1
}
tsc_khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)

boot() { # boot NAME [CMDLINE...]: a waiting guest in the background; its console is NAME.N.log
    local name=$1 log=$dir/$1.${#pids[@]}
    shift
    "$VM" run --name "$name" --memory 32M --kernel "$GUEST" --serial "file:$log.log" \
        --cmdline "mode=wait seconds=60 tsc_khz=$tsc_khz $*" 2>"$log.err" &
    last=$!
    last_log=$log
    pids+=("$last")
    for _ in $(seq 100); do grep -q "mode=wait" "$log.log" 2>/dev/null && return; sleep 0.05; done
    fail "$name did not start waiting"
}
listed() { "$VM" ps --json | python3 -c 'import json,sys; print(" ".join(v["name"] for v in json.load(sys.stdin)["vms"]))'; }
expect_rc() { # expect_rc CODE PATTERN ARGS...: vdfs-vm's exit code and a stderr line
    local want=$1 pattern=$2 rc=0
    shift 2
    "$VM" "$@" 2>"$dir/cmd.err" || rc=$?
    [[ $rc == "$want" ]] || fail "vdfs-vm $* exited $rc, want $want: $(cat "$dir/cmd.err")"
    [[ -z $pattern ]] || grep -q -- "$pattern" "$dir/cmd.err" || fail "vdfs-vm $* said '$(cat "$dir/cmd.err")', want /$pattern/"
}

# A guest that obeys: stop returns once it has powered off, with status 0.
boot obey
vm=$last
start=$(date +%s%N)
expect_rc 0 "" stop obey
(( ($(date +%s%N) - start) / 1000000 < 10000 )) || fail "stop took over 10 s"
rc=0; wait "$vm" || rc=$?
[[ $rc == 0 ]] || fail "the guest that obeyed ended with $rc, want 0"
grep -q "VDFS-GUEST power button pressed: powering off" "$last_log.log" || fail "the guest saw no power button"
grep -q "power button pressed (SIGPWR)" "$last_log.err" || fail "the VMM did not say it pressed the button"
[[ -z $(listed) ]] || fail "ps still lists $(listed)"

# A guest that ignores it: stop times out, the VM runs on; --force ends it.
boot deaf power_button=ignore
vm=$last
expect_rc 1 "deaf (PID $vm) did not power off within 2 s; vdfs-vm stop --force powers it off" stop deaf --timeout 2
kill -0 "$vm" || fail "the VM ended although its guest ignored the button"
grep -q "power button pressed 1 times: ignored" "$last_log.log" || fail "the button did not reach the guest"
expect_rc 0 "" stop --force deaf
rc=0; wait "$vm" || rc=$?
[[ $rc == 1 ]] || fail "a forced stop ended the VMM with $rc, want 1 (stopped by a signal)"

# By PID, and two VMs of one name: the name is refused, the PIDs work.
boot twin
twin1=$last
boot twin
twin2=$last
expect_rc 1 "2 VMs are named twin; name one by its PID" stop twin
expect_rc 0 "" stop "$twin1"
expect_rc 0 "" stop --timeout 30 "$twin2"
wait "$twin1" "$twin2" || fail "a twin did not end with 0"

expect_rc 1 "no running VM named nosuch" stop nosuch
expect_rc 1 "no running VM with PID 999999" stop 999999
expect_rc 2 "bad --timeout 'soon'" stop x --timeout soon
expect_rc 2 "usage: vdfs-vm stop" stop
expect_rc 2 "unexpected argument '--now'" stop x --now
echo "ok stop"
