#!/bin/bash
# The host pings a switch port through the TAP uplink with the real ping:
# the TAP moves into a private network namespace with 10.77.0.1/24, and a
# responder on a switch port answers ARP and ICMP echo for 10.77.0.2.
set -euo pipefail
SWITCH=$1 RESPONDER=$2
dir=$(mktemp -d /tmp/vdfs-switch-ping.XXXXXX)
ns=vdfsping$$
tap=vswp$$
sw_pid= resp_pid=
cleanup() {
    [[ -n $resp_pid ]] && kill "$resp_pid" 2>/dev/null && wait "$resp_pid" 2>/dev/null || true
    [[ -n $sw_pid ]] && kill "$sw_pid" 2>/dev/null && wait "$sw_pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
"$SWITCH" daemon -f --name ping --socket "$dir/sw.sock" --uplink "$tap" &
sw_pid=$!
for _ in $(seq 100); do [[ -S $dir/sw.sock.ctl ]] && break; sleep 0.05; done
ip netns add "$ns"
ip link set "$tap" netns "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" addr add 10.77.0.1/24 dev "$tap"
ip -n "$ns" link set "$tap" up
"$RESPONDER" --socket "$dir/sw.sock" --ip 10.77.0.2 --mac 02:77:00:00:00:02 --seconds 20 &
resp_pid=$!
sleep 0.2
ip netns exec "$ns" ping -c 3 -i 0.2 -W 2 10.77.0.2
# The uplink learned the TAP's MAC and the port saw the echo requests.
learned=$("$SWITCH" --socket "$dir/sw.sock" --json mac list |
    python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin) if e["type"] == "learned"))')
[[ $learned -ge 1 ]] || { echo "FAIL: no MAC learned on the uplink"; exit 1; }
tx=$("$SWITCH" --socket "$dir/sw.sock" --json port stats --port 0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["tx_frames"])')
[[ $tx -ge 4 ]] || { echo "FAIL: uplink sent $tx frames, want ARP reply + 3 echo replies"; exit 1; }
echo "ok ping"
