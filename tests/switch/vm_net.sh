#!/bin/bash
# vdfs-switch with real VMs: vdfs-vm boots the test guest (guest/guest.elf)
# with a virtio-net NIC on a switch port.  Cases:
#   vm-ping     two VMs: ARP + 5 ICMP echoes between them through the switch
#   vm-blast    net-blast sends 20000 frames to a net-responder VM; every
#               frame is accounted for by the receiver or the switch's drops
#   vm-restart  the responder VM powers off and boots again with the same MAC:
#               its port re-attaches and the peer reaches it again
#   daemon-restart  the switch, started with --config and named by the VMs
#               (--switch NAME), restarts under a running responder VM in a
#               port group made by the CLI: the group comes back from the file,
#               the VM's NIC attaches again by itself, and a peer reaches it
#   host-ping   the real ping, from a network namespace holding the switch's
#               TAP uplink, to a responder VM
#   nic-ping    the uplink is a NIC: one end of a veth pair (AF_PACKET); the
#               real ping from the other end's namespace reaches a VM untagged
#               and one on VLAN 10; bad NIC names are refused; deleting the
#               pair drops the uplink and the switch goes on
#   nic-offload the uplink is a NIC, and the other end's stack sends with
#               checksum offload and TSO: UDP and a real TCP connection reach
#               a port (tests/switch/nic_offload.py, no VM) as frames that fit
#               the MTU, with complete checksums; then the same through a TAP
# Usage: vm_net.sh CASE VDFS_SWITCH VDFS_VM GUEST_ELF.  Exit 77 without KVM.
set -euo pipefail
case=$1 SWITCH=$2 VM=$3 GUEST=$4
here=$(cd "$(dirname "$0")" && pwd)
[[ $case == nic-offload || -w /dev/kvm ]] || { echo "SKIP: /dev/kvm not usable"; exit 77; }
dir=$(mktemp -d /tmp/vdfs-vmnet.XXXXXX)
export VDFS_VM_RUN_DIR=$dir/run # private VM registry: no admission clash with other tests
ns=vdfsvm$$ tap=vswv$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    # A VMM that ignores SIGTERM must not outlive the test.
    for p in "${pids[@]}"; do
        kill -0 "$p" 2>/dev/null || continue
        pkill -KILL -P "$p" 2>/dev/null || true
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    ip netns del "${ns}s" 2>/dev/null || true
    rm -f "/run/vdfs-switch/vmnet$$.sock" "/run/vdfs-switch/vmnet$$.sock.ctl"
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "FAIL ($case): $*"
    for f in "$dir"/*.log "$dir"/*.err; do [[ -s $f ]] && { echo "--- $(basename "$f")"; cat "$f"; }; done
    exit 1
}
tsc_khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
# The switch's name and port socket, and what the VMs' --switch names.
swname=vmnet sock=$dir/sw.sock switch_arg=$dir/sw.sock
sw() { "$SWITCH" --socket "$sock" "$@"; }

start_switch() { # [ip netns exec NS] is put before the switch by SWITCH_PREFIX
    ${SWITCH_PREFIX:-} "$SWITCH" daemon -f --name "$swname" --socket "$sock" "$@" 2>>"$dir/switch.err" &
    switch_pid=$!
    pids+=($switch_pid)
    for _ in $(seq 100); do [[ -S $sock.ctl ]] && return; sleep 0.05; done
    fail "switch did not start"
}

# veth_uplink [SWITCH ARGS]: a veth pair, up0 in the switch's own namespace
# as its NIC uplink, up1 in $ns with 10.77.0.1/24 and fd77::1/64; starts
# the switch there.
veth_uplink() {
    ip netns add "$ns"
    ip netns add "${ns}s"
    ip -n "${ns}s" link add up0 type veth peer name up1 netns "$ns"
    ip -n "${ns}s" link set up0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add 10.77.0.1/24 dev up1
    ip -n "$ns" addr add fd77::1/64 dev up1 nodad
    ip -n "$ns" link set up1 up
    SWITCH_PREFIX="ip netns exec ${ns}s" start_switch --uplink-nic up0 "$@"
}

# boot NAME MAC CMDLINE [PORTGROUP]: starts a VM in the background; its console goes to NAME.log.
boot() {
    local name=$1 mac=$2 cmdline=$3 pg=${4:-default}
    timeout -k 5 60 "$VM" run --name "$name" --memory 64M --kernel "$GUEST" --switch "$switch_arg" \
        --nic "$pg,mac=$mac" --cmdline "$cmdline tsc_khz=$tsc_khz" \
        --serial "file:$dir/$name.log" 2>"$dir/$name.err" &
    last_vm=$!
    pids+=($last_vm)
}

# wait_line NAME PATTERN: waits up to 20 s for a console line.
wait_line() {
    for _ in $(seq 200); do grep -q -- "$2" "$dir/$1.log" 2>/dev/null && return; sleep 0.1; done
    fail "$1: no '$2' on the console"
}

# field NAME LINE_PATTERN KEY: the value of KEY= on the console line matching LINE_PATTERN.
field() {
    grep -- "$2" "$dir/$1.log" | tail -1 | tr ' ' '\n' | sed -n "s/^$3=//p"
}

# end_responder NS IFACE MAC [VLAN]: the generator's END frame, sent by hand
# through IFACE in NS (tagged when VLAN is given), ends the responder VM
# with that MAC.
end_responder() {
    ip netns exec "$1" python3 -c '
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
tag = bytes.fromhex("8100%04x" % int(sys.argv[3])) if len(sys.argv) > 3 else b""
end = bytes.fromhex(sys.argv[2] + "027700000001") + tag + bytes.fromhex("88b5" "56444642" "02") + bytes(41)
s.send(end)' "$2" "$3" ${4:+"$4"}
}

expect_done() { # expect_done NAME PID STATUS
    local rc=0
    wait "$2" || rc=$?
    [[ $rc == "$3" ]] || fail "$1: vdfs-vm exited $rc, want $3"
    grep -qx "VDFS-GUEST DONE status=$3" "$dir/$1.log" || fail "$1: no 'DONE status=$3'"
}

ping_pair() { # ping_pair ROUND [PORTGROUP]: responder a (10.0.0.2) must already be up
    boot "b$1" 02:00:00:00:0b:01 "mode=net-ping ip=10.0.0.1 peer=10.0.0.2 count=5" "${2:-default}"
    local b=$last_vm
    expect_done "b$1" "$b" 0
    expect_done "a$1" "$a_pid" 0
    [[ $(field "b$1" mode=net-ping received) == 5 ]] || fail "round $1: not 5 replies"
    [[ $(field "b$1" mode=net-ping peer_mac) == 02:00:00:00:0a:01 ]] || fail "round $1: ARP gave the wrong MAC"
    [[ $(field "a$1" mode=net-responder echo_replies) == 5 ]] || fail "round $1: responder sent no 5 replies"
    [[ $(field "a$1" mode=net-responder arp_replies) -ge 1 ]] || fail "round $1: responder answered no ARP"
    [[ $(field "a$1" mode=net-responder ended) == end-frame ]] || fail "round $1: responder missed the END frame"
}

case $case in
vm-ping)
    start_switch
    boot a1 02:00:00:00:0a:01 "mode=net-responder ip=10.0.0.2 seconds=30"
    a_pid=$last_vm
    wait_line a1 "nic=ready"
    ping_pair 1
    ;;
vm-restart)
    start_switch
    boot a1 02:00:00:00:0a:01 "mode=net-responder ip=10.0.0.2 seconds=30"
    a_pid=$last_vm
    wait_line a1 "nic=ready"
    port1=$(sw --json port list | python3 -c 'import json,sys; print([p["port"] for p in json.load(sys.stdin) if p["mac"] == "02:00:00:00:0a:01"][0])')
    ping_pair 1
    # Both VMs are gone: their ports and MACs are free again.
    for _ in $(seq 50); do [[ $(sw --json port list) == "[]" ]] && break; sleep 0.1; done
    [[ $(sw --json port list) == "[]" ]] || fail "ports still attached after the VMs powered off"
    boot a2 02:00:00:00:0a:01 "mode=net-responder ip=10.0.0.2 seconds=30"
    a_pid=$last_vm
    wait_line a2 "nic=ready"
    attached=$(sw --json port list | python3 -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin) if p["mac"] == "02:00:00:00:0a:01"))')
    [[ $attached == 1 ]] || fail "restarted VM's MAC attached $attached times"
    ping_pair 2
    echo "port before restart: $port1"
    ;;
daemon-restart)
    swname=vmnet$$ sock=/run/vdfs-switch/vmnet$$.sock switch_arg=vmnet$$
    start_switch --config "$dir/sw.conf"
    sw portgroup add --name lab --vlan 5 >/dev/null
    boot a1 02:00:00:00:0a:01 "mode=net-responder ip=10.0.0.2 seconds=40" lab
    a_pid=$last_vm
    wait_line a1 "nic=ready"
    kill "$switch_pid"
    wait "$switch_pid" || true
    start_switch --config "$dir/sw.conf"
    attached=
    for _ in $(seq 100); do
        attached=$(sw --json port list | python3 -c 'import json,sys; print(" ".join(p["portgroup"] for p in json.load(sys.stdin) if p["mac"] == "02:00:00:00:0a:01"))')
        [[ -n $attached ]] && break
        sleep 0.1
    done
    [[ $attached == lab ]] || fail "after the switch restarted, the responder's NIC is attached to '$attached', not 'lab'"
    ping_pair 1 lab
    ;;
vm-blast)
    start_switch
    boot rx 02:00:00:00:0a:01 "mode=net-responder ip=10.0.0.2 seconds=30"
    rx_pid=$last_vm
    wait_line rx "nic=ready"
    rx_port=$(sw --json port list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["port"])')
    boot tx 02:00:00:00:0b:01 "mode=net-blast dst=02:00:00:00:0a:01 size=64 count=20000 end=0"
    expect_done tx "$last_vm" 0
    sent=$(field tx mode=net-blast frames)
    [[ $sent == 20000 ]] || fail "generator sent $sent frames, want 20000"
    read -r tx_frames queue_full < <(sw --json port stats --port "$rx_port" |
        python3 -c 'import json,sys; p=json.load(sys.stdin)[0]; print(p["tx_frames"], p["drops"]["queue_full"])')
    (( tx_frames + queue_full == sent )) || fail "switch: $tx_frames delivered + $queue_full dropped != $sent sent"
    # Now that the counters are read, an END frame from a port of our own ends the receiver.
    python3 -c '
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
mac = bytes.fromhex("02000000ee01")
s.send(struct.pack("<IHH6s2x32s16s", 0x57534456, 1, 0, mac, b"default", b"vm_net.sh"))
ack = s.recv(64)
assert len(ack) == 64 and struct.unpack_from("<H", ack, 6)[0] == 0, "switch refused the port"
s.send(bytes.fromhex("020000000a01") + mac + bytes.fromhex("88b5" "56444642" "02") + bytes(41))
s.close()' "$dir/sw.sock" || fail "could not send the END frame"
    expect_done rx "$rx_pid" 0
    got=$(field rx blast_rx frames)
    [[ $got == "$tx_frames" ]] || fail "receiver counted $got frames, the switch delivered $tx_frames"
    (( got >= sent / 10 )) || fail "receiver got only $got of $sent frames"
    echo "sent=$sent delivered=$tx_frames dropped_queue_full=$queue_full counted=$got"
    ;;
host-ping)
    start_switch --uplink "$tap"
    ip netns add "$ns"
    ip link set "$tap" netns "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add 10.77.0.1/24 dev "$tap"
    ip -n "$ns" link set "$tap" up
    boot vm 02:77:00:00:00:02 "mode=net-responder ip=10.77.0.2 seconds=30"
    vm_pid=$last_vm
    wait_line vm "nic=ready"
    ip netns exec "$ns" ping -c 3 -i 0.2 -W 2 10.77.0.2 >"$dir/ping.out" || fail "ping: $(cat "$dir/ping.out")"
    cat "$dir/ping.out"
    end_responder "$ns" "$tap" 027700000002
    expect_done vm "$vm_pid" 0
    [[ $(field vm mode=net-responder echo_replies) -ge 3 ]] || fail "the VM sent fewer than 3 echo replies"
    [[ $(field vm mode=net-responder arp_replies) -ge 1 ]] || fail "the VM answered no ARP"
    ;;
nic-ping)
    veth_uplink --portgroup vl10:10
    sw --json status | grep -q '"uplink":"up0","uplink_kind":"nic"' || fail "status: $(sw --json status)"
    boot vm 02:77:00:00:00:02 "mode=net-responder ip=10.77.0.2 seconds=30"
    vm_pid=$last_vm
    boot vl 02:77:00:00:00:0a "mode=net-responder ip=10.78.0.2 seconds=30" vl10
    vl_pid=$last_vm
    wait_line vm "nic=ready"
    wait_line vl "nic=ready"
    ip netns exec "$ns" ping -c 3 -i 0.2 -W 2 10.77.0.2 >"$dir/ping.out" || fail "ping: $(cat "$dir/ping.out")"
    cat "$dir/ping.out"
    # This kernel has no VLAN interfaces: tagged ARP and echoes by hand.
    ip netns exec "$ns" python3 "$here/vlan_ping.py" up1 10 10.78.0.1 10.78.0.2 3 >"$dir/ping10.out" ||
        fail "ping on VLAN 10: $(cat "$dir/ping10.out")"
    cat "$dir/ping10.out"
    # VLANs are isolated: the untagged VM is not on VLAN 10.
    ip netns exec "$ns" python3 "$here/vlan_ping.py" up1 10 10.78.0.1 10.77.0.2 1 --expect-none >"$dir/iso.out" ||
        fail "VLAN 10 reached the untagged VM: $(cat "$dir/iso.out")"
    # A NIC that goes down keeps its place as the uplink, and frames move
    # again once it is up.
    ip -n "${ns}s" link set up0 down
    sleep 0.3
    sw uplink show | grep -q "^uplink NIC up0" || fail "the uplink went with its NIC's link: $(sw uplink show)"
    ip -n "${ns}s" link set up0 up
    ip netns exec "$ns" ping -c 2 -i 0.2 -w 5 10.77.0.2 >"$dir/ping.out" || fail "ping after the NIC came back up"
    end_responder "$ns" up1 027700000002
    end_responder "$ns" up1 02770000000a 10
    expect_done vm "$vm_pid" 0
    expect_done vl "$vl_pid" 0
    for v in vm vl; do
        [[ $(field $v mode=net-responder echo_replies) -ge 3 ]] || fail "$v sent fewer than 3 echo replies"
    done
    sw --json uplink show | python3 -c '
import json, sys
u = json.load(sys.stdin)
assert u["kind"] == "nic" and u["interface"] == "up0" and u["tap"] is None, u
assert u["stats"]["rx_frames"] >= 6 and u["stats"]["tx_frames"] >= 6, u' || fail "uplink show: $(sw --json uplink show)"
    rc=0; sw uplink set --nic nosuch0 >"$dir/bad.out" 2>&1 || rc=$?
    [[ $rc == 1 ]] && grep -q "no network interface 'nosuch0'" "$dir/bad.out" || fail "unknown NIC: rc $rc, $(cat "$dir/bad.out")"
    rc=0; sw uplink set --nic lo >"$dir/bad.out" 2>&1 || rc=$?
    [[ $rc == 1 ]] && grep -q "not an Ethernet interface" "$dir/bad.out" || fail "lo as uplink: rc $rc, $(cat "$dir/bad.out")"
    rc=0; sw uplink set --nic up0 --tap x0 >"$dir/bad.out" 2>&1 || rc=$?
    [[ $rc != 0 ]] || fail "both --nic and --tap accepted"
    sw --json uplink show | grep -q '"interface":"up0"' || fail "a refused uplink set replaced the uplink"
    # Deleting the pair takes the uplink away; the switch says so and goes on.
    ip -n "$ns" link del up1
    for _ in $(seq 50); do grep -q "uplink NIC up0 went away" "$dir/switch.err" && break; sleep 0.1; done
    grep -q "uplink NIC up0 went away" "$dir/switch.err" || fail "no message about the lost uplink"
    sw uplink show | grep -q "no uplink" || fail "uplink still shown: $(sw uplink show)"
    ;;
nic-offload)
    veth_uplink
    ip netns exec "$ns" timeout 60 python3 "$here/nic_offload.py" "$dir/sw.sock" up1 >"$dir/offload.out" 2>&1 ||
        fail "$(cat "$dir/offload.out")"
    cat "$dir/offload.out"
    sw --json uplink show | python3 -c '
import json, sys
s = json.load(sys.stdin)["stats"]
assert s["gso_split"] >= 1, "no super-frame was split: %s" % s
assert s["drops"]["oversize"] == 0, "oversize frames dropped: %s" % s' || fail "uplink stats: $(sw --json uplink show)"
    # The same through a TAP uplink: there the host's stack finishes its
    # offloads itself (a TAP offers none), and nothing is left to split.
    ip -n "$ns" link del up1
    sw uplink set --tap "$tap" >/dev/null
    ip -n "${ns}s" link set "$tap" netns "$ns"
    ip -n "$ns" addr add 10.77.0.1/24 dev "$tap"
    ip -n "$ns" addr add fd77::1/64 dev "$tap" nodad
    ip -n "$ns" link set "$tap" up
    ip netns exec "$ns" timeout 60 python3 "$here/nic_offload.py" "$dir/sw.sock" "$tap" >"$dir/offload.out" 2>&1 ||
        fail "through the TAP: $(cat "$dir/offload.out")"
    cat "$dir/offload.out"
    ;;
*)
    echo "usage: vm_net.sh vm-ping|vm-blast|vm-restart|host-ping|nic-ping VDFS_SWITCH VDFS_VM GUEST_ELF" >&2
    exit 2
    ;;
esac
echo "ok $case"
