#!/bin/bash
# The vdfs-switch CLI: every command's --json output parses, bad arguments
# give a clear message and exit 2, refused commands exit 1, an absent switch
# exits 3.
set -euo pipefail
SWITCH=$(readlink -f "$1")
dir=$(mktemp -d /tmp/vdfs-switch-cli.XXXXXX)
sw_pid=
cleanup() {
    [[ -n $sw_pid ]] && kill "$sw_pid" 2>/dev/null && wait "$sw_pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$SWITCH" daemon -f --name cli --socket "$dir/sw.sock" --portgroup web:10 &
sw_pid=$!
for _ in $(seq 100); do [[ -S $dir/sw.sock.ctl ]] && break; sleep 0.05; done
sw() { "$SWITCH" --socket "$dir/sw.sock" "$@"; }
expect_rc() { # expect_rc CODE PATTERN ARGS...: exit code and a stderr message matching PATTERN
    local want=$1 pattern=$2; shift 2
    local rc=0
    sw "$@" >"$dir/out" 2>"$dir/err" || rc=$?
    [[ $rc == "$want" ]] || fail "'$*' exited $rc, want $want ($(cat "$dir/err"))"
    grep -q -- "$pattern" "$dir/err" || fail "'$*' said '$(cat "$dir/err")', want /$pattern/"
}
json() { sw --json "$@" | python3 -c 'import json,sys; json.load(sys.stdin)' || fail "--json $* does not parse"; }

"$SWITCH" --help | grep -q "portgroup add" || fail "--help lists commands"
"$SWITCH" daemon --help | grep -q -- "--uplink" || fail "daemon --help lists options"
sw portgroup add --name db --vlan 20 | grep -q "db added" || fail "portgroup add"
sw portgroup set --name db --promiscuous accept --shaping avg=100M,peak=200M,burst=64k
sw policy set --forged-transmits accept
sw mac set --cap 128 --aging 60
sw mtu set --mtu 9000
for cmd in "status" "portgroup list" "policy show" "uplink show" "mtu show" "port list" "port stats" "mac list"; do
    json $cmd
done
sw --json portgroup list | python3 -c '
import json, sys
groups = {g["name"]: g for g in json.load(sys.stdin)}
assert groups["web"]["vlan"] == 10, groups
db = groups["db"]
assert db["vlan"] == 20 and db["effective"]["promiscuous"] == "accept", db
assert db["effective"]["forged_transmits"] == "accept", db
assert db["configured"]["shaping"] == {"average_bps": 100000000, "peak_bps": 200000000, "burst_bytes": 64000}, db
' || fail "portgroup list JSON content"
sw --json status | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["mtu"] == 9000 and s["mac_cap"] == 128 and s["mac_aging_s"] == 60 and s["uplink"] is None, s
' || fail "status JSON content"

expect_rc 2 "unknown command" frobnicate
expect_rc 2 "unknown command" portgroup explode
expect_rc 2 "needs --name" portgroup add --vlan 3
expect_rc 2 "does not take --colour" portgroup list --colour red
expect_rc 2 "needs a value" portgroup add --name
expect_rc 2 "given twice" portgroup add --name a --name b
expect_rc 1 "bad vlan '4096'" portgroup add --name x --vlan 4096
expect_rc 1 "bad vlan 'ten'" portgroup add --name x --vlan ten
expect_rc 1 "bad port group name" portgroup add --name 'a/b'
expect_rc 1 "already exists" portgroup add --name web
expect_rc 1 "no port group 'nope'" portgroup set --name nope --promiscuous accept
expect_rc 1 "bad promiscuous 'maybe'" portgroup set --name web --promiscuous maybe
expect_rc 1 "peak" portgroup set --name web --shaping avg=10M,peak=1M,burst=1k
expect_rc 1 "shaping needs" portgroup set --name web --shaping avg=10M
expect_rc 1 "bad burst value .nan." portgroup set --name web --shaping avg=8M,peak=16M,burst=nan
expect_rc 1 "bad avg value .nan." portgroup set --name web --shaping avg=nan,peak=nan,burst=1k
expect_rc 1 "bad mtu '9001'" mtu set --mtu 9001
expect_rc 1 "no port 7 attached" port stats --port 7
expect_rc 1 "cannot inherit" policy set --shaping inherit
expect_rc 3 "cannot reach" --control "$dir/nothing.ctl" status
rc=0; "$SWITCH" daemon --mtu 99999 2>"$dir/err" || rc=$?
[[ $rc == 2 ]] && grep -q "bad --mtu" "$dir/err" || fail "daemon --mtu 99999 exited $rc: $(cat "$dir/err")"
rc=0; "$SWITCH" daemon -f --name cli --socket "$dir/sw.sock" 2>"$dir/err" || rc=$?
[[ $rc == 1 ]] && grep -q "already listening" "$dir/err" || fail "second daemon on the same socket: $rc $(cat "$dir/err")"
# A daemon that detaches reports a failure at start in its exit status and
# leaves no sockets behind.
rc=0; "$SWITCH" daemon --name clibad --socket "$dir/bad.sock" --uplink-nic vdfsnosuch0 2>"$dir/err" || rc=$?
[[ $rc == 1 ]] && grep -q "vdfsnosuch0" "$dir/err" || fail "detaching daemon with a missing uplink NIC exited $rc: $(cat "$dir/err")"
[[ ! -e $dir/bad.sock && ! -e $dir/bad.sock.ctl ]] || fail "a daemon that failed to start left its sockets"
# A detached daemon started with relative paths answers, stops on SIGTERM and
# removes its sockets, though it has left that directory.
det=clidet$$
(cd "$dir" && "$SWITCH" daemon --name "$det" --socket det.sock) || fail "detached daemon did not start"
"$SWITCH" --socket "$dir/det.sock" status >/dev/null || fail "detached daemon does not answer"
det_pid=$(pgrep -f -- "--name $det --socket") || fail "no detached daemon process"
kill "$det_pid"
for _ in $(seq 100); do [[ -e $dir/det.sock || -e $dir/det.sock.ctl ]] || break; sleep 0.05; done
[[ ! -e $dir/det.sock && ! -e $dir/det.sock.ctl ]] || { kill -9 "$det_pid"; fail "detached daemon left its sockets at SIGTERM"; }
# The default socket directory may exist already (any start after the
# first since boot).
name=clitest$$
mkdir -p /run/vdfs-switch
"$SWITCH" daemon -f --name "$name" 2>"$dir/err-default" &
def_pid=$!
for _ in $(seq 100); do [[ -S /run/vdfs-switch/$name.sock.ctl ]] && break; sleep 0.05; done
"$SWITCH" --socket "/run/vdfs-switch/$name.sock" status >/dev/null ||
    { kill "$def_pid" 2>/dev/null; fail "daemon on the default socket path: $(cat "$dir/err-default")"; }
kill "$def_pid"
wait "$def_pid" || true
rm -f "/run/vdfs-switch/$name.sock" "/run/vdfs-switch/$name.sock.ctl"
sw portgroup remove --name db | grep -q removed || fail "portgroup remove"
sw status >/dev/null || fail "switch still answers"
echo "ok cli"
