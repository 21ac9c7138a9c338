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
# QEMU `cache=none,aio=io_uring`), 1 vCPU, 256 MiB.  BLK_CACHE=writeback
# puts both on the host page cache instead (`cache=writeback`), with the
# file read once first so that it starts cached; BLK_CACHE=cold does the
# same but drops the page cache before every run (needs root).  QEMU is
# `-M microvm,pcie=on` with virtio-blk-pci (modern only).  Runs alternate
# between the VMMs, which one goes first rotating too, so that load from
# other processes hits all of them; the figures are medians over RUNS runs.
# "ratio" is median vdfs-vm / median QEMU; "paired" is the median of the
# per-round ratios (the runs of one round are seconds apart, so they share
# the machine's load: steadier on a busy machine).
#
# Each run also reports the host CPU the VMM used outside its vCPU thread
# per guest I/O while the guest is timing (/proc/PID/task/*/schedstat,
# sampled every 50 ms; start-up and boot are left out): the cost of the VMM's own
# I/O path, which moves far less with the machine's load than IOPS do.
#
# BLK_BASELINE=/path/to/another/vdfs-vm adds that binary as a third VMM,
# "before", in the same rotation: a change measured before and after in
# one invocation.
#
# Usage: bench/vmm/blk.sh BUILD_DIR [RUNS] [SECONDS] [DISK_SIZE_MIB]
#   BUILD_DIR has vmm/vdfs-vm and guest/guest.elf.  The disk file is made in
#   $BENCH_DIR (default: the current directory; not tmpfs, which has no
#   O_DIRECT) and removed afterwards.  Needs /dev/kvm and qemu-system-x86_64.
set -eu
build=${1:?usage: blk.sh BUILD_DIR [RUNS] [SECONDS] [DISK_SIZE_MIB]}
runs=${2:-5}
seconds=${3:-5}
size_mib=${4:-1024}
vm=$build/vmm/vdfs-vm
guest=$build/guest/guest.elf
baseline=${BLK_BASELINE:-}
for f in "$vm" "$guest" $baseline; do
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
# BLK_CACHE=writeback: every run starts from a cached file.
if [ "${BLK_CACHE:-none}" = writeback ]; then cat "$work/disk.img" >/dev/null; fi

# Not exec: the EXIT trap must still remove the disk file.
python3 - "$vm" "$guest" "$work/disk.img" "$runs" "$seconds" "$baseline" <<'PY'
import os, re, statistics, subprocess, sys, tempfile, time

vm, guest, disk, runs, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
baseline = sys.argv[6]
MEM_MB = 256
MODE = os.environ.get("BLK_CACHE", "none")
if MODE not in ("none", "writeback", "cold"):
    raise SystemExit(f"BLK_CACHE={MODE}: expected none, writeback or cold")
CACHE = "none" if MODE == "none" else "writeback"

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

def vdfs_vm(args, binary=vm):
    return [binary, "run", "--memory", f"{MEM_MB}M", "--kernel", guest, "--cmdline", args,
            "--disk", f"{disk},cache={CACHE}"]

def qemu(args):
    return ["qemu-system-x86_64", "-enable-kvm", "-M", "microvm,pcie=on", "-m", str(MEM_MB),
            "-smp", "1", "-name", "bench,debug-threads=on", "-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", guest,
            "-append", args + " ecam=0xe0000000",
            "-drive", f"file={disk},if=none,id=d0,format=raw,cache={CACHE},aio=io_uring",
            "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"]

VMMS = [("vdfs-vm", vdfs_vm), ("qemu", qemu)]
# vdfs-vm names its vCPU threads vcpuN; QEMU with debug-threads=on, "CPU N/KVM".
VCPU_THREAD = re.compile(r"^(vcpu\d+|CPU \d+/KVM)$")
if baseline:
    VMMS.append(("before", lambda args: vdfs_vm(args, baseline)))

def thread_cpu_ns(pid):
    """{tid: (name, ns on CPU)} from /proc/PID/task/*/schedstat."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = (name, int(f.read().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
    return out

def run(cmd):
    # Host CPU the VMM spends outside its vCPU thread (device emulation,
    # I/O submission and completion), sampled from /proc until it exits:
    # a cost per I/O that, unlike IOPS, barely moves with the machine's load.
    # Output to files, not pipes: nobody reads a pipe while the VMM runs.
    if MODE == "cold":
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        samples = []
        deadline = time.monotonic() + seconds + 120
        while p.poll() is None and time.monotonic() < deadline:
            samples.append((time.monotonic(), thread_cpu_ns(p.pid)))
            time.sleep(0.05)
        if p.poll() is None:
            p.kill()
        p.wait()
        ended = time.monotonic()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    m = re.search(rb"^RESULT op=\S+ .*$", stdout, re.M)
    if not m or b"errors=0" not in m.group(0):
        sys.stderr.write(stdout.decode(errors="replace") + stderr.decode(errors="replace"))
        raise SystemExit(f"{cmd[0]}: no clean RESULT line (exit {p.returncode})")
    fields = dict(kv.split(b"=", 1) for kv in m.group(0).split()[1:])
    iops = int(fields[b"iops"])
    # Only the timed part counts (not VMM start-up or guest boot): from
    # 0.2 s after the guest started timing to the last sample.
    timed_from = ended - int(fields[b"elapsed_us"]) / 1e6 + 0.2
    inside = [smp for smp in samples if smp[0] >= timed_from]
    cpu_us_per_io = float("nan")
    if len(inside) >= 2:
        # Per thread, its latest figure minus its first: threads that end
        # before the last sample (at shutdown) keep what they used.
        latest = {}
        for _, threads in inside:
            latest.update(threads)
        first = inside[0][1]
        used_ns = sum(ns - first.get(tid, (name, 0))[1] for tid, (name, ns) in latest.items()
                      if not VCPU_THREAD.match(name))
        cpu_us_per_io = used_ns / 1000 / max(iops * (inside[-1][0] - inside[0][0]), 1)
    return {"iops": iops, "mbps": float(fields[b"mbps"]), "kicks": int(fields[b"kicks"]),
            "ios": int(fields[b"ios"]), "cpu_us_per_io": cpu_us_per_io}

with open("/proc/loadavg") as f:
    load_before = f.read().split()[:3]
results = {}
for name, args, _ in WORKLOADS:
    guest_args = f"mode=blkbench {args} seconds={seconds} tsc_khz={TSC_KHZ}"
    for i in range(runs):
        for vmm, make in VMMS[i % len(VMMS):] + VMMS[:i % len(VMMS)]:
            r = run(make(guest_args))
            results.setdefault((name, vmm), []).append(r)
            print(f"  run {i + 1} {vmm:8s} {name:18s} {r['iops']:8d} IOPS {r['mbps']:9.2f} MB/s"
                  f"  kicks {r['kicks']}  host CPU {r['cpu_us_per_io']:.2f} us/IO", flush=True)
with open("/proc/loadavg") as f:
    load_after = f.read().split()[:3]

print(f"\nvirtio-blk from the test guest, {seconds} s per run, median of {runs} runs, "
      f"cache={CACHE}" + {"none": " (O_DIRECT)", "writeback": " (host page cache, file cached)",
                          "cold": " (host page cache, dropped before each run)"}[MODE] +
      f" on both, 1 vCPU, {MEM_MB} MiB, tsc_khz={TSC_KHZ}")
print(f"load average before {' '.join(load_before)}, after {' '.join(load_after)} "
      f"({os.cpu_count()} cores)")
names = [vmm for vmm, _ in VMMS]
print(f"{'workload':18s} " + " ".join(f"{n:>22s}" for n in names) +
      f" {'ratio':>6s} {'paired':>6s}" + (f" {'after/before':>12s}" if baseline else "") + " target")
for name, _, key in WORKLOADS:
    k = "iops" if key == "iops" else "mbps"
    med = {n: (statistics.median(r["iops"] for r in results[(name, n)]),
               statistics.median(r["mbps"] for r in results[(name, n)])) for n in names}
    value = lambda n: med[n][0 if key == "iops" else 1]
    ratio = value("vdfs-vm") / max(value("qemu"), 1e-9)
    paired = statistics.median(a[k] / max(b[k], 1e-9) for a, b in
                               zip(results[(name, "vdfs-vm")], results[(name, "qemu")]))
    fmt = lambda v: f"{v[0]:8.0f} IOPS {v[1]:7.1f} MB/s"
    extra = f" {value('vdfs-vm') / max(value('before'), 1e-9):11.2f}x" if baseline else ""
    print(f"{name:18s} " + " ".join(f"{fmt(med[n]):>22s}" for n in names) +
          f" {ratio:5.2f}x {paired:5.2f}x{extra} >= 1.0x {'IOPS' if key == 'iops' else 'MB/s'}")
print("\nhost CPU outside the vCPU thread, us per guest I/O (median):")
for name, _, _ in WORKLOADS:
    print(f"{name:18s} " + " ".join(
        f"{n} {statistics.median(r['cpu_us_per_io'] for r in results[(name, n)]):.2f}" for n in names))
PY
