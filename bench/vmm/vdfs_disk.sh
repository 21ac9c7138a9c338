#!/bin/bash
# Datastore disks against plain files: the same bytes served to the test
# guest (mode=blkbench, timed inside the guest) three ways in one rotation:
#   vdfs     vdfs-vm, disk = vdfs:IMAGE:/disk.img (libvdfs, O_DIRECT image)
#   workers  the same with VDFS_VM_DIRECT_IO=0: every request a libvdfs call
#            on the disk's worker threads, none straight to the device
#   file     vdfs-vm, disk = the same content as a plain file, cache=none
#   qemu     QEMU (-M microvm,pcie=on, virtio-blk-pci, cache=none, aio=io_uring)
#            on that plain file, the issue's peer
# and, with BASELINE=/path/to/another/vdfs-vm, "before": that binary on the
# datastore disk (a change measured before and after in one invocation).
# Prints medians per workload and ratios to the plain file and to QEMU.
#
# Usage: bench/vmm/vdfs_disk.sh BUILD_DIR [RUNS] [SECONDS] [DISK_MIB]
#   Files go in $BENCH_DIR (default: the current directory; not tmpfs).
set -eu
build=${1:?usage: vdfs_disk.sh BUILD_DIR [RUNS] [SECONDS] [DISK_MIB]}
runs=${2:-3}
seconds=${3:-3}
size_mib=${4:-512}
vm=$build/vmm/vdfs-vm
guest=$build/guest/guest.elf
for f in "$vm" "$guest" "$build/mkfs/mkfs.vdfs" "$build/tools/vdfsctl" ${BASELINE:-}; do
	[ -x "$f" ] || [ -f "$f" ] || { echo "missing $f: build it first"; exit 1; }
done
[ -w /dev/kvm ] || { echo "/dev/kvm not usable"; exit 1; }
work=$(mktemp -d "${BENCH_DIR:-$PWD}/vdfs-disk-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
export VDFS_VM_RUN_DIR="$work/run"
khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)

dd if=/dev/urandom of="$work/disk.img" bs=1M count="$size_mib" oflag=direct status=none
"$build/mkfs/mkfs.vdfs" -q "$work/ds.img" "$((size_mib * 2 + 1024))M"
"$build/tools/vdfsctl" put "$work/ds.img" "$work/disk.img" /disk.img
sync

workloads=("randread bs=4096 qd=32" "randwrite bs=4096 qd=32" "seqread bs=1048576 qd=32" "seqwrite bs=1048576 qd=32")
kinds="vdfs workers file"
command -v qemu-system-x86_64 >/dev/null && kinds="$kinds qemu"
[ -n "${BASELINE:-}" ] && kinds="$kinds before"

run_one() { # KIND WORKLOAD -> "iops mbps"
	local args="mode=blkbench op=$2 seconds=$seconds tsc_khz=$khz" out
	case $1 in
	vdfs) out=$("$vm" run --memory 256M --kernel "$guest" --cmdline "$args" --disk "vdfs:$work/ds.img:/disk.img") ;;
	workers) out=$(VDFS_VM_DIRECT_IO=0 "$vm" run --memory 256M --kernel "$guest" --cmdline "$args" \
		--disk "vdfs:$work/ds.img:/disk.img") ;;
	before) out=$("$BASELINE" run --memory 256M --kernel "$guest" --cmdline "$args" --disk "vdfs:$work/ds.img:/disk.img") ;;
	file) out=$("$vm" run --memory 256M --kernel "$guest" --cmdline "$args" --disk "$work/disk.img,cache=none") ;;
	qemu) out=$(timeout 120 qemu-system-x86_64 -enable-kvm -M microvm,pcie=on -m 256 -smp 1 -nodefaults \
		-no-reboot -display none -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel "$guest" -append "$args ecam=0xe0000000" \
		-drive "file=$work/disk.img,format=raw,if=none,id=d0,cache=none,aio=io_uring" \
		-device virtio-blk-pci,drive=d0,disable-legacy=on || true) ;;
	esac
	echo "$out" | awk '/^RESULT/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		print v["iops"], v["mbps"]; found = 1 } END { if (!found) print "0 0" }'
}

declare -A results
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$runs"); do
	for w in "${workloads[@]}"; do
		for k in $kinds; do
			r=$(run_one "$k" "$w")
			results["$k|$w"]+="$r;"
			echo "  round $round  $k  $w: $r"
		done
	done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { # "iops mbps;iops mbps;..." FIELD
	echo "$1" | tr ';' '\n' | awk -v f="$2" 'NF { print $f }' | sort -n |
		awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2];
			else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

echo
echo "datastore disk vs plain file, ${seconds} s per run, median of $runs, 1 vCPU, 256 MiB, ${size_mib} MiB disk"
printf "%-26s" "workload"
for k in $kinds; do printf "%14s" "$k"; done
printf "%12s%12s%14s" "vdfs/file" "vdfs/qemu" "vdfs/workers"
[ -n "${BASELINE:-}" ] && printf "%14s" "vdfs/before"
echo
for w in "${workloads[@]}"; do
	field=1 unit=IOPS
	case $w in seq*) field=2 unit=MB/s ;; esac
	printf "%-26s" "$w"
	declare -A m=()
	for k in $kinds; do
		m[$k]=$(median "${results["$k|$w"]}" "$field")
		printf "%9s %-4s" "${m[$k]}" "$unit"
	done
	ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else printf "-" }'; }
	printf "%12s" "$(ratio "${m[vdfs]}" "${m[file]}")"
	printf "%12s" "$( [ -n "${m[qemu]:-}" ] && ratio "${m[vdfs]}" "${m[qemu]}" || echo -)"
	printf "%14s" "$(ratio "${m[vdfs]}" "${m[workers]}")"
	[ -n "${BASELINE:-}" ] && printf "%14s" "$(ratio "${m[vdfs]}" "${m[before]}")"
	echo
	unset m
done
