#!/bin/bash
# Frames/s and Gb/s between two ports of vdfs-switch and of vde_switch, in
# the same run, at 64 B and 1500 B frames; prints both and the ratio.  Also
# the switch process's own CPU time per frame it forwarded (user + system,
# from /proc/PID/stat), which depends far less on the machine's load than
# the rate does: on a busy 2-core machine sender, switch and receiver share
# what CPU is left.  And the whole path's CPU per frame received: sender +
# switch + receiver, since all three compete for the same two cores.
# Rounds alternate between the two switches, so a change in the machine's
# load hits both alike.  Both use the same blaster (bench/switch/blast.c):
# sendmmsg/recvmmsg batches of 64 on the connected port socket, with 4 MiB
# socket buffers (BLAST_SOCKBUF=BYTES in the environment changes them for
# both).
# vde_switch's ports are unconnected datagram sockets, so how many frames may
# wait at a vde port is net.unix.max_dgram_qlen (vdfs-switch's connected
# SEQPACKET ports are not limited by it).  The kernel default is 10; Debian
# hosts booted with systemd run with 512 (systemd's sysctl.d/50-default.conf).
# As root the benchmark runs in a private network namespace, where that
# sysctl is per-namespace, set to BENCH_UNIX_QLEN (default 512, or "host" to
# keep the machine's value); both switches see the same setting.
#   bench/switch/run.sh [BUILD_DIR] [SECONDS] [ROUNDS]
set -euo pipefail
qlen=${BENCH_UNIX_QLEN:-512}
if [[ $qlen != host && -z ${BENCH_IN_NETNS:-} && $(id -u) == 0 ]] && unshare --net true 2>/dev/null; then
    exec env BENCH_IN_NETNS=1 unshare --net -- "$0" "$@"
fi
if [[ -n ${BENCH_IN_NETNS:-} ]]; then
    sysctl -qw net.unix.max_dgram_qlen="$qlen"
fi
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

# One round: prints "fps gbps switch_ns path_ns send_ns recv_ns lost_pct": the
# rate as the receiver measured it, the switch's CPU time over the frames the
# sender sent, sender + switch + receiver CPU over the frames received, the
# sender's and the receiver's own CPU per frame they moved, and the share of
# the sent frames that never arrived.
one_round() {
    local kind=$1 sock=$2 size=$3 pid=$vdfs_pid
    [[ $kind == vde ]] && pid=$vde_pid
    "$work/blast" "$kind" "$sock" recv "$size" "$seconds" >"$work/recv.out" &
    local recv_pid=$!
    sleep 0.3
    local t0; t0=$(cpu_ticks "$pid")
    "$work/blast" "$kind" "$sock" send "$size" "$seconds" 2>"$work/send.out"
    wait "$recv_pid"
    local t1 sent send_ns recv_ns frames
    t1=$(cpu_ticks "$pid")
    sent=$(sed -En 's/^sent=([0-9]+).*/\1/p' "$work/send.out")
    send_ns=$(sed -En 's/.*cpu_ns=([0-9]+).*/\1/p' "$work/send.out")
    recv_ns=$(sed -En 's/.*cpu_ns=([0-9]+).*/\1/p' "$work/recv.out")
    frames=$(sed -En 's/^frames=([0-9]+).*/\1/p' "$work/recv.out")
    local switch_ns=$(( (t1 - t0) * 1000000000 / clk_tck ))
    (( frames > 0 )) || frames=1
    printf '%s %d %d %d %d %d\n' "$(sed -E 's/.*fps=([0-9.]+) gbps=([0-9.]+).*/\1 \2/' "$work/recv.out")" \
        $(( switch_ns / sent )) $(( (send_ns + switch_ns + recv_ns) / frames )) $(( send_ns / sent )) $(( recv_ns / frames )) \
        $(( (sent - frames) * 100 / sent ))
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
column_median() { cut -d' ' -f"$2" "$1" | median; }

echo "load: $(uptime); net.unix.max_dgram_qlen=$(cat /proc/sys/net/unix/max_dgram_qlen); client socket buffers ${BLAST_SOCKBUF:-4194304} B"
printf '%-6s %-12s %10s %7s %10s %8s %8s %8s %5s\n' size switch frames/s Gb/s "switch ns" "path ns" "send ns" "recv ns" lost%
for size in 64 1500; do
    : >"$work/vdfs.$size"
    : >"$work/vde.$size"
    for _ in $(seq "$rounds"); do
        one_round vdfs "$work/vdfs.sock" "$size" >>"$work/vdfs.$size"
        one_round vde "$work/vde.ctl" "$size" >>"$work/vde.$size"
    done
    for kind in vdfs vde; do
        f=$work/$kind.$size
        fps=$(column_median "$f" 1) gbps=$(column_median "$f" 2)
        cpu=$(column_median "$f" 3) path=$(column_median "$f" 4)
        send=$(column_median "$f" 5) recv=$(column_median "$f" 6) lost=$(column_median "$f" 7)
        eval "fps_${kind}_$size=$fps cpu_${kind}_$size=$cpu path_${kind}_$size=$path"
        name=vdfs-switch; [[ $kind == vde ]] && name=vde_switch
        printf '%-6s %-12s %10.0f %7.3f %10s %8s %8s %8s %5s   (rounds: %s)\n' "$size" "$name" "$fps" "$gbps" \
            "$cpu" "$path" "$send" "$recv" "$lost" \
            "$(cut -d' ' -f1 "$f" | tr '\n' ' ')"
    done
    eval "ratio=\$(awk -v a=\$fps_vdfs_$size -v b=\$fps_vde_$size 'BEGIN {printf \"%.2f\", a / b}')"
    eval "cpu_ratio=\$(awk -v a=\$cpu_vde_$size -v b=\$cpu_vdfs_$size 'BEGIN {printf \"%.2f\", a / b}')"
    eval "path_ratio=\$(awk -v a=\$path_vde_$size -v b=\$path_vdfs_$size 'BEGIN {printf \"%.2f\", a / b}')"
    echo "$size B: vdfs-switch / vde_switch frame rate = ${ratio}x; vde_switch needs ${cpu_ratio}x the switch CPU" \
         "and ${path_ratio}x the whole path's CPU per frame (medians of $rounds rounds, ${seconds}s each)"
done
