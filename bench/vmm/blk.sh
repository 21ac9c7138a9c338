#!/bin/sh
# virtio-blk IOPS and throughput, vdfs-vm against QEMU, timed inside the
# test guest (guest/mode_blkbench.c: rdtsc from the first request to the
# last completion, after boot, so VMM start-up is not counted).
#
#   4 KiB random read and random write, queue depth 32
#   1 MiB sequential read and write, queue depth 32
#
# Both VMMs boot the same guest.elf with the same command line on the same
# disk file, with the same host caching: O_DIRECT (vdfs-vm `cache=none`,
# QEMU `cache=none,aio=io_uring`), 1 vCPU, 256 MiB.  QEMU is
# `-M microvm,pcie=on` with virtio-blk-pci (modern only).  Runs alternate
# between the VMMs, which one goes first alternating too, so that load from
# other processes hits both; the figures are medians over RUNS runs.
#
# Usage: bench/vmm/blk.sh BUILD_DIR [RUNS] [SECONDS] [DISK_SIZE_MIB]
#   BUILD_DIR has vmm/vdfs-vm and guest/guest.elf.  The disk file is made in
#   $BENCH_DIR (default: the current directory; not tmpfs, which has no
#   O_DIRECT) and removed afterwards.  Needs /dev/kvm and qemu-system-x86_64.
set -eu
build=${1:?usage: blk.sh BUILD_DIR [RUNS] [SECONDS] [DISK_SIZE_MIB]}
runs=${2:-3}
seconds=${3:-5}
size_mib=${4:-1024}
vm=$build/vmm/vdfs-vm
guest=$build/guest/guest.elf
for f in "$vm" "$guest"; do
	[ -e "$f" ] || { echo "missing $f: build it first (ninja -C $build)"; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 not installed"; exit 1; }
[ -w /dev/kvm ] || { echo "/dev/kvm not usable"; exit 1; }
work=$(mktemp -d "${BENCH_DIR:-$PWD}/vmm-blk-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
export VDFS_VM_RUN_DIR="$work/run"
# Written data, not a sparse file: reads hit the disk's blocks on both VMMs.
# O_DIRECT, so no page-cache copy is left for the first VMM's O_DIRECT
# writes to invalidate.
dd if=/dev/urandom of="$work/disk.img" bs=1M count="$size_mib" oflag=direct status=none
sync

# Not exec: the EXIT trap must still remove the disk file.
python3 - "$vm" "$guest" "$work/disk.img" "$runs" "$seconds" <<'PY'
import os, re, statistics, subprocess, sys

vm, guest, disk, runs, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
MEM_MB = 256

def tsc_khz():
    # The guest converts rdtsc ticks with this; KVM gives the guest the host's TSC rate.
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    raise SystemExit("no 'cpu MHz' in /proc/cpuinfo")

TSC_KHZ = tsc_khz()
WORKLOADS = [("4K randread QD32", "op=randread bs=4096 qd=32", "iops"),
             ("4K randwrite QD32", "op=randwrite bs=4096 qd=32", "iops"),
             ("1M seqread QD32", "op=seqread bs=1048576 qd=32", "mbps"),
             ("1M seqwrite QD32", "op=seqwrite bs=1048576 qd=32", "mbps")]

def vdfs_vm(args):
    return [vm, "run", "--memory", f"{MEM_MB}M", "--kernel", guest, "--cmdline", args,
            "--disk", f"{disk},cache=none"]

def qemu(args):
    return ["qemu-system-x86_64", "-enable-kvm", "-M", "microvm,pcie=on", "-m", str(MEM_MB),
            "-smp", "1", "-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", guest,
            "-append", args + " ecam=0xe0000000",
            "-drive", f"file={disk},if=none,id=d0,format=raw,cache=none,aio=io_uring",
            "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"]

VMMS = [("vdfs-vm", vdfs_vm), ("qemu", qemu)]

def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=seconds + 120)
    m = re.search(rb"^RESULT op=\S+ .*$", p.stdout, re.M)
    if not m or b"errors=0" not in m.group(0):
        sys.stderr.write(p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))
        raise SystemExit(f"{cmd[0]}: no clean RESULT line (exit {p.returncode})")
    fields = dict(kv.split(b"=", 1) for kv in m.group(0).split()[1:])
    return {"iops": int(fields[b"iops"]), "mbps": float(fields[b"mbps"]), "kicks": int(fields[b"kicks"]),
            "ios": int(fields[b"ios"])}

with open("/proc/loadavg") as f:
    load_before = f.read().split()[:3]
results = {}
for name, args, _ in WORKLOADS:
    guest_args = f"mode=blkbench {args} seconds={seconds} tsc_khz={TSC_KHZ}"
    for i in range(runs):
        for vmm, make in (VMMS if i % 2 == 0 else VMMS[::-1]):
            r = run(make(guest_args))
            results.setdefault((name, vmm), []).append(r)
            print(f"  run {i + 1} {vmm:8s} {name:18s} {r['iops']:8d} IOPS {r['mbps']:9.2f} MB/s"
                  f"  kicks {r['kicks']}", flush=True)
with open("/proc/loadavg") as f:
    load_after = f.read().split()[:3]

print(f"\nvirtio-blk from the test guest, {seconds} s per run, median of {runs} runs, "
      f"cache=none (O_DIRECT) on both, 1 vCPU, {MEM_MB} MiB, tsc_khz={TSC_KHZ}")
print(f"load average before {' '.join(load_before)}, after {' '.join(load_after)} "
      f"({os.cpu_count()} cores)")
print(f"{'workload':18s} {'vdfs-vm':>22s} {'qemu':>22s} {'ratio':>7s} target")
for name, _, key in WORKLOADS:
    med = {}
    for vmm, _ in VMMS:
        rs = results[(name, vmm)]
        med[vmm] = (statistics.median(r["iops"] for r in rs), statistics.median(r["mbps"] for r in rs))
    ratio = med["vdfs-vm"][0 if key == "iops" else 1] / max(med["qemu"][0 if key == "iops" else 1], 1e-9)
    fmt = lambda v: f"{v[0]:8.0f} IOPS {v[1]:7.1f} MB/s"
    print(f"{name:18s} {fmt(med['vdfs-vm']):>22s} {fmt(med['qemu']):>22s} {ratio:6.2f}x "
          f">= 1.0x {'IOPS' if key == 'iops' else 'MB/s'}")
PY
