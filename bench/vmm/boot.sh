#!/bin/sh
# Boot time and memory overhead: vdfs-vm against QEMU microvm, same guest.
#
#   time:  process start -> "VDFS-GUEST READY" on the serial console, and
#          process start -> process exit after the guest's poweroff (the
#          test guest, mode=ready, writes its status to port 0xf4).
#   RSS:   VMM memory beyond guest RAM, read from /proc/PID/status (VmRSS)
#          and /proc/PID/smaps while an idle guest sits halted: VmRSS minus
#          the resident part of the guest RAM mapping (the anonymous
#          mapping as large as guest RAM), i.e. minus the guest memory the
#          guest has touched.  tests/vmm/mkpvh's "idle" image is used for
#          this because mode=ready powers off at once.
#
# Usage: bench/vmm/boot.sh BUILD_DIR [RUNS]   (needs /dev/kvm and qemu-system-x86_64)
set -eu
build=${1:?usage: boot.sh BUILD_DIR [RUNS]}
runs=${2:-10}
vm=$build/vmm/vdfs-vm
guest=$build/guest/guest.elf
mkpvh=$build/tests/vmm/mkpvh
for f in "$vm" "$guest" "$mkpvh"; do
	[ -x "$f" ] || [ -f "$f" ] || { echo "missing $f: build it first (ninja -C $build)"; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 not installed"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$mkpvh" "$work/idle.elf" idle
export VDFS_VM_RUN_DIR="$work/run"

python3 - "$vm" "$guest" "$work/idle.elf" "$runs" <<'PY'
import os, statistics, subprocess, sys, time

vm, guest, idle, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
MEM_MB = 128
qemu_base = ["qemu-system-x86_64", "-enable-kvm", "-M", "microvm", "-m", str(MEM_MB), "-smp", "1",
             "-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
             "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
commands = {
    "vdfs-vm": lambda k, c: [vm, "run", "--kernel", k, "--memory", f"{MEM_MB}M", "--cmdline", c],
    "qemu-microvm": lambda k, c: qemu_base + ["-kernel", k, "-append", c],
}

def boot_once(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ready = None
    for line in p.stdout:
        if line.strip() == b"VDFS-GUEST READY" and ready is None:
            ready = time.perf_counter() - t0
    p.wait()
    total = time.perf_counter() - t0
    if ready is None:
        raise SystemExit(f"{cmd[0]}: no READY line")
    return ready, total

def rss_overhead(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in p.stdout:
        if b"MKPVH HELLO" in line:
            break
    time.sleep(0.5)
    vmrss = 0
    with open(f"/proc/{p.pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"):
                vmrss = int(l.split()[1])
    guest_rss, size = 0, 0
    with open(f"/proc/{p.pid}/smaps") as f:
        for l in f:
            if l.startswith("Size:"):
                size = int(l.split()[1])
            elif l.startswith("Rss:") and size >= MEM_MB * 1024:
                guest_rss += int(l.split()[1])
    p.terminate()
    p.wait()
    return vmrss, guest_rss

results = {}
for name in commands:
    results[name] = {"ready": [], "total": []}
for i in range(runs):
    for name, make in commands.items():  # interleaved, so noise hits both
        r, t = boot_once(make(guest, "mode=ready"))
        results[name]["ready"].append(r * 1000)
        results[name]["total"].append(t * 1000)

print(f"boot of the test guest (mode=ready, {MEM_MB} MiB, 1 vCPU), {runs} runs each, medians:")
for name in commands:
    print(f"  {name:13s} start->READY {statistics.median(results[name]['ready']):7.1f} ms"
          f"   start->exit {statistics.median(results[name]['total']):7.1f} ms")
for key in ("ready", "total"):
    ratio = statistics.median(results["vdfs-vm"][key]) / statistics.median(results["qemu-microvm"][key])
    print(f"  ratio vdfs-vm/qemu ({'start->READY' if key == 'ready' else 'start->exit'}): {ratio:.2f}x (target <= 0.5x)")
print("memory beyond guest RAM (idle guest, VmRSS minus resident guest RAM):")
for name, make in commands.items():
    vmrss, guest_rss = rss_overhead(make(idle, ""))
    print(f"  {name:13s} VmRSS {vmrss / 1024:6.1f} MiB, guest RAM resident {guest_rss / 1024:5.1f} MiB,"
          f" VMM overhead {(vmrss - guest_rss) / 1024:6.1f} MiB")
PY
