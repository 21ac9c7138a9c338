#!/bin/bash
# A thin disk whose space runs out while the guest writes (docs/vmm.md,
# "When a disk's space runs out"): the writes wait, the VMM says so once, and
# they complete once space is freed. The guest sees no error and the disk
# holds every byte it wrote. Cases:
#   plain-file  the disk is a sparse file on a tmpfs too small for it; the
#               tmpfs is then made larger
#   datastore   the disk is vdfs:IMAGE:/vm/disk.img on a datastore that a
#               filler file has nearly filled; another host (vdfsctl) then
#               removes the filler
#   datastore-grow  the same full datastore; another host (vdfsctl grow)
#               then grows it, as an ESXi admin extends a full datastore
# Usage: thin_full.sh CASE VDFS_VM GUEST_ELF MKFS_VDFS VDFSCTL FSCK_VDFS.
# Exit 77 without KVM.
set -euo pipefail
case=$1 VM=$2 GUEST=$3 MKFS=$4 VDFSCTL=$5 FSCK=$6
[[ -w /dev/kvm ]] || { echo "SKIP: /dev/kvm not usable"; exit 77; }
dir=$(mktemp -d /tmp/vdfs-thin-full.XXXXXX)
export VDFS_VM_RUN_DIR=$dir/run
vm_pid=
cleanup() {
    # TERM, which timeout(1) passes on to the VMM (KILL would leave it).
    [[ -n $vm_pid ]] && kill "$vm_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    mountpoint -q "$dir/fs" 2>/dev/null && umount "$dir/fs"
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "FAIL ($case): $*"
    for f in "$dir"/vm.err "$dir"/console.log; do [[ -s $f ]] && { echo "--- $(basename "$f")"; cat "$f"; }; done
    exit 1
}
tsc_khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
MIB=64

# The guest writes $MIB MiB of 0xa5 from byte 0, 1 MiB per request, 4 at a time.
start_guest() {
    timeout -k 5 120 "$VM" run --name thin-full --memory 64M --kernel "$GUEST" --disk "$1" \
        --cmdline "mode=blkbench op=seqwrite bs=1M qd=4 count=$MIB timeout_ms=100000 tsc_khz=$tsc_khz" \
        --serial "file:$dir/console.log" 2>"$dir/vm.err" &
    vm_pid=$!
}

# The writes wait: the VMM said so, and after a while the guest has neither
# finished nor failed.
expect_waiting() {
    for _ in $(seq 300); do grep -q "found no space" "$dir/vm.err" && break; sleep 0.1; done
    grep -q "found no space (No space left on device); writes that need space wait" "$dir/vm.err" ||
        fail "the VMM did not say that writes wait for space"
    sleep 2
    kill -0 "$vm_pid" 2>/dev/null || fail "the VM ended while its disk was full"
    ! grep -q "RESULT" "$dir/console.log" || fail "the guest finished while its disk was full"
    # vdfs-vm ps shows it, as ESXi shows a VM's question.
    "$VM" ps >"$dir/ps" 2>&1 || fail "vdfs-vm ps: $(cat "$dir/ps")"
    grep -q "^thin-full  *[0-9]*  *1  *64 MiB  waiting for space$" "$dir/ps" ||
        fail "ps does not show the VM waiting: $(cat "$dir/ps")"
    grep -qF "): writes to $1 have waited for space for" "$dir/ps" ||
        fail "ps does not name the disk: $(cat "$dir/ps")"
    "$VM" ps --json | python3 -c '
import json, sys, time
vm = json.load(sys.stdin)["vms"][0]
assert vm["state"] == "waiting-for-space" and vm["waiting_disk"] == sys.argv[1], vm
assert time.time() - 60 < vm["waiting_since"] <= time.time(), vm' "$1" || fail "ps --json does not show the wait"
}

expect_done() {
    local rc=0
    wait "$vm_pid" || rc=$?
    vm_pid=
    [[ $rc == 0 ]] || fail "vdfs-vm exited $rc"
    grep -q "RESULT op=seqwrite bs=1048576 qd=4 ios=$MIB errors=0 " "$dir/console.log" ||
        fail "the guest saw errors or did not finish"
    grep -q "space found; writes that waited: [1-9][0-9]*, all done" "$dir/vm.err" ||
        fail "the VMM did not say that space was found"
}

# expect_content < DISK_BYTES: the disk holds $MIB MiB of 0xa5.
expect_content() {
    cmp <(head -c "${MIB}M" /dev/zero | tr '\0' '\245') - || fail "the disk does not hold what the guest wrote"
}

case $case in
plain-file)
    mkdir "$dir/fs"
    mount -t tmpfs -o size=24m tmpfs "$dir/fs"
    truncate -s "${MIB}M" "$dir/fs/disk.img"
    start_guest "$dir/fs/disk.img"
    expect_waiting "$dir/fs/disk.img"
    mount -o remount,size=100m "$dir/fs"
    expect_done
    expect_content <"$dir/fs/disk.img"
    ;;
datastore | datastore-grow)
    ds=$dir/ds.img
    truncate -s 300M "$ds"
    "$MKFS" -q -H 4 -J 4M "$ds"
    "$VDFSCTL" mkdir "$ds" /vm
    truncate -s "${MIB}M" "$dir/thin.img"
    "$VDFSCTL" put "$ds" "$dir/thin.img" /vm/disk.img
    # Leave about 24 MiB of file blocks for the disk.
    read -r used total < <("$VDFSCTL" usage --json "$ds" |
        python3 -c 'import json,sys; b=json.load(sys.stdin)["file_blocks"]; print(b["used"], b["total"])')
    head -c "$(( (total - used - 24) * 1024 * 1024 ))" /dev/urandom >"$dir/filler"
    "$VDFSCTL" put "$ds" "$dir/filler" /filler
    start_guest "vdfs:$ds:/vm/disk.img"
    expect_waiting "vdfs:$ds:/vm/disk.img"
    if [[ $case == datastore ]]; then
        "$VDFSCTL" rm "$ds" /filler || fail "another host could not remove the filler while the VM waited"
    else
        "$VDFSCTL" grow "$ds" 600M || fail "another host could not grow the datastore while the VM waited"
    fi
    expect_done
    "$VDFSCTL" get "$ds" /vm/disk.img - | expect_content
    "$FSCK" -n "$ds" >"$dir/fsck.out" || fail "fsck after the run: $(cat "$dir/fsck.out")"
    ;;
*)
    echo "unknown case $case"
    exit 2
    ;;
esac
echo "ok $case"
