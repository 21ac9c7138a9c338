#!/bin/bash
# Frames/s and Gb/s between two ports of vdfs-switch and of vde_switch, in
# the same run, at 64 B and 1500 B frames; prints both and the ratio.  Also
# the switch process's own CPU time per frame it forwarded (user + system,
# from /proc/PID/stat), which depends far less on the machine's load than
# the rate does: on a busy 2-core machine sender, switch and receiver share
# what CPU is left.
#   bench/switch/run.sh [BUILD_DIR] [SECONDS] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
seconds=${2:-3}
rounds=${3:-3}
switch_bin=$build/vswitch/vdfs-switch
[[ -x $switch_bin ]] || { echo "no $switch_bin: build first (ninja -C $build)"; exit 1; }
command -v vde_switch >/dev/null || { echo "vde_switch missing (Debian package vde2)"; exit 1; }
work=$(mktemp -d /tmp/vdfs-switch-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -D_GNU_SOURCE -I"$root/vswitch" -o "$work/blast" "$here/blast.c" -lvdeplug

"$switch_bin" daemon -f --name bench --socket "$work/vdfs.sock" 2>/dev/null &
pids+=($!)
vde_switch --sock "$work/vde.ctl" --daemon --pidfile "$work/vde.pid"
for _ in $(seq 100); do [[ -S $work/vdfs.sock.ctl && -f $work/vde.pid ]] && break; sleep 0.05; done
pids+=("$(cat "$work/vde.pid")")
vdfs_pid=${pids[0]} vde_pid=${pids[1]}
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One round: prints "fps gbps cpu_ns_per_frame": the rate as the receiver
# measured it, and the switch's CPU time over the frames the sender sent.
one_round() {
    local kind=$1 sock=$2 size=$3 pid=$vdfs_pid
    [[ $kind == vde ]] && pid=$vde_pid
    "$work/blast" "$kind" "$sock" recv "$size" "$seconds" >"$work/recv.out" &
    local recv_pid=$!
    sleep 0.3
    local t0; t0=$(cpu_ticks "$pid")
    "$work/blast" "$kind" "$sock" send "$size" "$seconds" 2>"$work/send.out"
    wait "$recv_pid"
    local t1 sent; t1=$(cpu_ticks "$pid") sent=$(sed -n 's/^sent=//p' "$work/send.out")
    printf '%s %d\n' "$(sed -E 's/.*fps=([0-9.]+) gbps=([0-9.]+).*/\1 \2/' "$work/recv.out")" \
        $(( (t1 - t0) * 1000000000 / clk_tck / sent ))
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

echo "load: $(uptime)"
printf '%-6s %-12s %14s %10s %14s\n' size switch frames/s Gb/s "CPU ns/frame"
for size in 64 1500; do
    for kind in vdfs vde; do
        sock=$work/vdfs.sock
        [[ $kind == vde ]] && sock=$work/vde.ctl
        : >"$work/$kind.$size"
        for _ in $(seq "$rounds"); do one_round "$kind" "$sock" "$size" >>"$work/$kind.$size"; done
        fps=$(cut -d' ' -f1 "$work/$kind.$size" | median)
        gbps=$(cut -d' ' -f2 "$work/$kind.$size" | median)
        cpu=$(cut -d' ' -f3 "$work/$kind.$size" | median)
        eval "fps_${kind}_$size=$fps cpu_${kind}_$size=$cpu"
        name=vdfs-switch; [[ $kind == vde ]] && name=vde_switch
        printf '%-6s %-12s %14.0f %10.3f %14s   (rounds: %s)\n' "$size" "$name" "$fps" "$gbps" "$cpu" "$(cut -d' ' -f1 "$work/$kind.$size" | tr '\n' ' ')"
    done
    eval "ratio=\$(awk -v a=\$fps_vdfs_$size -v b=\$fps_vde_$size 'BEGIN {printf \"%.2f\", a / b}')"
    eval "cpu_ratio=\$(awk -v a=\$cpu_vde_$size -v b=\$cpu_vdfs_$size 'BEGIN {printf \"%.2f\", a / b}')"
    echo "$size B: vdfs-switch / vde_switch frame rate = ${ratio}x; vde_switch needs ${cpu_ratio}x the CPU per frame (medians of $rounds rounds, ${seconds}s each)"
done
