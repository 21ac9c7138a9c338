#!/bin/bash
# VM-to-VM frame rate through the switch, generated and counted by the test
# guest (guest/guest.elf): one VM runs mode=net-blast, the other
# mode=net-responder counts the frames.  Both rates are timed inside the
# guests with the TSC.  The peer is the same guest pair under QEMU/KVM
# (virtio-net-pci, -netdev vde) through vde_switch: vdfs-vm speaks only the
# vdfs-switch port protocol, so it cannot attach to vde_switch.
#   bench/switch/vm2vm.sh [BUILD_DIR] [SECONDS] [ROUNDS]
# Prints, per frame size (64 B, 1500 B), the receiver's frames/s and Gb/s
# (median of ROUNDS), the sender's frames/s and the loss, and the ratio.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
seconds=${2:-3}
rounds=${3:-3}
switch_bin=$build/vswitch/vdfs-switch vm_bin=$build/vmm/vdfs-vm guest=$build/guest/guest.elf
for f in "$switch_bin" "$vm_bin" "$guest"; do [[ -x $f ]] || { echo "no $f: build first (ninja -C $build)"; exit 1; }; done
[[ -w /dev/kvm ]] || { echo "/dev/kvm is not usable"; exit 1; }
have_qemu=1
command -v vde_switch >/dev/null && command -v qemu-system-x86_64 >/dev/null || have_qemu=0
work=$(mktemp -d /tmp/vdfs-vm2vm.XXXXXX)
export VDFS_VM_RUN_DIR=$work/run
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
tsc_khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
rx_mac=02:00:00:00:0a:01 tx_mac=02:00:00:00:0b:01

"$switch_bin" daemon -f --name vm2vm --socket "$work/vdfs.sock" 2>"$work/switch.err" &
pids+=($!)
if ((have_qemu)); then
    vde_switch --sock "$work/vde.ctl" --daemon --pidfile "$work/vde.pid"
fi
for _ in $(seq 100); do [[ -S $work/vdfs.sock.ctl ]] && ( ((!have_qemu)) || [[ -f $work/vde.pid ]] ) && break; sleep 0.05; done
((have_qemu)) && pids+=("$(cat "$work/vde.pid")")

# vm KIND NAME MAC CMDLINE: starts one VM in the background (pid in $vm_pid),
# console in NAME.log
vm() {
    local kind=$1 name=$2 mac=$3 cmdline="$4 tsc_khz=$tsc_khz"
    if [[ $kind == vdfs ]]; then
        timeout -k 5 120 "$vm_bin" run --name "$name" --memory 64M --kernel "$guest" --switch "$work/vdfs.sock" \
            --nic "default,mac=$mac" --cmdline "$cmdline" --serial "file:$work/$name.log" 2>"$work/$name.err" &
    else
        timeout -k 5 120 qemu-system-x86_64 -enable-kvm -M microvm,pcie=on -m 64 -smp 1 -nodefaults -nographic \
            -no-reboot -display none -serial "file:$work/$name.log" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
            -kernel "$guest" -append "$cmdline ecam=0xe0000000" -netdev "vde,id=n0,sock=$work/vde.ctl" \
            -device "virtio-net-pci,netdev=n0,mac=$mac,disable-legacy=on" >"$work/$name.err" 2>&1 &
    fi
    vm_pid=$!
    pids+=($vm_pid)
}

field() { grep -- "$2" "$work/$1.log" | tail -1 | tr ' ' '\n' | sed -n "s/^$3=//p"; }

# One round: "rx_fps rx_gbps tx_fps lost"
one_round() {
    local kind=$1 size=$2
    rm -f "$work"/rx.log "$work"/tx.log
    vm "$kind" rx "$rx_mac" "mode=net-responder ip=10.0.0.2 seconds=$((seconds + 60))"
    local rx=$vm_pid
    for _ in $(seq 200); do grep -q nic=ready "$work/rx.log" 2>/dev/null && break; sleep 0.05; done
    vm "$kind" tx "$tx_mac" "mode=net-blast dst=$rx_mac size=$size seconds=$seconds"
    wait "$vm_pid" || true
    wait "$rx" || true
    local rx_fps; rx_fps=$(field rx blast_rx fps)
    [[ -n $rx_fps ]] || { echo "no result from the $kind pair:" >&2; cat "$work"/*.log "$work"/rx.err "$work"/tx.err >&2; exit 1; }
    echo "$rx_fps $(field rx blast_rx gbps) $(field tx mode=net-blast fps) $(field rx blast_rx lost)"
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

kinds=vdfs
((have_qemu)) && kinds="vdfs qemu"
printf '%-6s %-26s %12s %8s %12s %10s\n' size pair "rx frames/s" "rx Gb/s" "tx frames/s" "lost"
for size in 64 1500; do
    for _ in $(seq "$rounds"); do
        for kind in $kinds; do one_round "$kind" "$size" >>"$work/$kind.$size"; done
    done
    for kind in $kinds; do
        f=$work/$kind.$size
        rx=$(cut -d' ' -f1 "$f" | median) gb=$(cut -d' ' -f2 "$f" | median)
        tx=$(cut -d' ' -f3 "$f" | median) lost=$(cut -d' ' -f4 "$f" | median)
        eval "rx_${kind}=$rx"
        name="vdfs-vm + vdfs-switch"; [[ $kind == qemu ]] && name="QEMU + vde_switch"
        printf '%-6s %-26s %12s %8s %12s %10s   (rx rounds: %s)\n' "$size" "$name" "$rx" "$gb" "$tx" "$lost" \
            "$(cut -d' ' -f1 "$f" | tr '\n' ' ')"
    done
    if ((have_qemu)); then
        echo "$size B: vdfs pair / QEMU+vde pair receive rate = $(awk -v a="$rx_vdfs" -v b="$rx_qemu" 'BEGIN {printf "%.2f", a / b}')x (median of $rounds rounds, ${seconds}s each)"
    fi
done
((have_qemu)) || echo "QEMU or vde_switch missing: no peer figures"
