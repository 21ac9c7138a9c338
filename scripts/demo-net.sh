#!/bin/bash
# Two VMs reach each other through vdfs-switch.  A switch with port group
# "demo" starts on a private socket; two test-guest VMs (guest/guest.elf)
# boot under vdfs-vm, each with a virtio-net NIC on "demo" and a disk: a
# file inside the vdfs datastore IMAGE (vdfs:IMAGE:/path; each VMM joins it
# as a host), or a plain file in DIR.  VM "web" answers ARP and ping at 10.0.0.2; VM "app" (10.0.0.1)
# resolves it by ARP and pings it 5 times; the switch's ports and counters
# are shown.  Everything it created (VMs, switch, disks) is removed on exit.
#   scripts/demo-net.sh IMAGE_OR_DIR      (VDFS_BUILD=DIR picks the build, default build/)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${VDFS_BUILD:-$root/build}"
if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    echo "usage: scripts/demo-net.sh IMAGE_OR_DIR   (a vdfs datastore image, or a directory for plain disk files)" >&2
    exit 2
fi
target=$1
for f in vswitch/vdfs-switch vmm/vdfs-vm guest/guest.elf; do
    [[ -x $bin/$f ]] || { echo "demo-net: no $bin/$f (build first: ninja -C $bin)" >&2; exit 1; }
done
[[ -w /dev/kvm ]] || { echo "demo-net: /dev/kvm is not usable" >&2; exit 1; }
work="$(mktemp -d /tmp/vdfs-demo-net.XXXXXX)"
export VDFS_VM_RUN_DIR="$work/run"
pids=()
datastore_dir=
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n $datastore_dir ]]; then
        "$bin/tools/vdfsctl" rm -r "$target" "$datastore_dir" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sw() { "$bin/vswitch/vdfs-switch" --socket "$work/sw.sock" "$@"; }

step "disks for the two VMs"
declare -A disk
for vm in web app; do truncate -s 16M "$work/$vm.img"; done
if [[ -d $target ]]; then
    for vm in web app; do
        disk[$vm]="$target/demo-net-$vm.img"
        cp --sparse=always "$work/$vm.img" "${disk[$vm]}"
    done
    trap 'rm -f "${disk[web]}" "${disk[app]}"; cleanup' EXIT
    echo "plain files: ${disk[web]} ${disk[app]}"
elif [[ -f $target ]]; then
    [[ -x $bin/tools/vdfsctl ]] || { echo "demo-net: no $bin/tools/vdfsctl" >&2; exit 1; }
    # Each VMM joins the datastore as a host of its own, so both VMs run
    # from it at once.
    datastore_dir=/datastore/vms/demo-net-$$
    "$bin/tools/vdfsctl" mkdir -p "$target" "$datastore_dir"
    for vm in web app; do
        "$bin/tools/vdfsctl" put "$target" "$work/$vm.img" "$datastore_dir/$vm.img"
        disk[$vm]="vdfs:$target:$datastore_dir/$vm.img"
    done
    echo "in the datastore: ${disk[web]} ${disk[app]}"
else
    echo "demo-net: $target is neither a vdfs image nor a directory" >&2
    exit 2
fi

step "vdfs-switch: port group 'demo'"
"$bin/vswitch/vdfs-switch" daemon -f --name demo-net --socket "$work/sw.sock" --portgroup demo 2>"$work/switch.err" &
pids+=($!)
for _ in $(seq 100); do [[ -S $work/sw.sock.ctl ]] && break; sleep 0.05; done
sw portgroup list

tsc_khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
boot() { # boot NAME MAC CMDLINE: starts the VM in the background, its pid in $vm_pid
    timeout -k 5 60 "$bin/vmm/vdfs-vm" run --name "$1" --cpus 1 --memory 64M --kernel "$bin/guest/guest.elf" \
        --disk "${disk[$1]}" --switch "$work/sw.sock" --nic "demo,mac=$2" \
        --cmdline "$3 tsc_khz=$tsc_khz" --serial "file:$work/$1.log" 2>"$work/$1.err" &
    vm_pid=$!
    pids+=($vm_pid)
}

step "boot VM 'web' (10.0.0.2): answers ARP and ping"
boot web 02:de:00:00:00:02 "mode=net-responder ip=10.0.0.2 seconds=60"
for _ in $(seq 200); do grep -q nic=ready "$work/web.log" 2>/dev/null && break; sleep 0.05; done
grep -q nic=ready "$work/web.log" || { echo "demo-net: VM web did not come up"; cat "$work/web.log" "$work/web.err"; exit 1; }
grep RESULT "$work/web.log"
sw port list

step "boot VM 'app' (10.0.0.1): ARP for 10.0.0.2, then 5 pings"
rc=0
boot app 02:de:00:00:00:01 "mode=net-ping ip=10.0.0.1 peer=10.0.0.2 count=5 end=0"
wait "$vm_pid" || rc=$?
grep -E "RESULT|ERROR" "$work/app.log" || true

step "vdfs-switch: what web's port saw (app has powered off; its port is gone)"
sw port stats
if [[ $rc -eq 0 ]] && grep -q "received=5" "$work/app.log"; then
    echo
    echo "demo-net: the two VMs reached each other through the switch (ARP + 5/5 pings)"
else
    echo
    echo "demo-net: FAILED: VM app exited with status $rc"
    cat "$work/app.err" "$work/web.err"
    exit 1
fi
