#!/bin/bash
# vdfs-switch daemon --config: the settings made through the CLI outlast a
# restart, options on the command line win over the file, a bad file stops
# the start with its line named, and a change that cannot be saved says so.
set -euo pipefail
SWITCH=$(readlink -f "$1")
dir=$(mktemp -d /tmp/vdfs-switch-config.XXXXXX)
sw_pid=
tap=vdfscfg$$
tap=${tap:0:15}
cleanup() {
    [[ -n $sw_pid ]] && kill "$sw_pid" 2>/dev/null && wait "$sw_pid" 2>/dev/null || true
    ip link del "$tap" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
sw() { "$SWITCH" --socket "$dir/sw.sock" "$@"; }
start() { # start OPTIONS...: a foreground daemon on $dir/sw.sock
    "$SWITCH" daemon -f --name cfg --socket "$dir/sw.sock" "$@" 2>>"$dir/daemon.err" &
    sw_pid=$!
    for _ in $(seq 100); do sw status >/dev/null 2>&1 && return 0; sleep 0.05; done
    fail "daemon $* did not start: $(cat "$dir/daemon.err")"
}
stop() {
    kill "$sw_pid"
    wait "$sw_pid" || true
    sw_pid=
}
# What a restart must keep: every port group with its policies, the switch
# policy, and the status fields that are settings.
settings() {
    {
        sw --json portgroup list
        sw --json policy show
        sw --json status | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(json.dumps({k: s[k] for k in ("mtu", "mac_cap", "mac_aging_s", "uplink", "config")}))'
    } | tr -d ' '
}
conf=$dir/etc/sw.conf
mkdir -p "$dir/etc"

start --config "$conf"
[[ -f $conf ]] || fail "the configuration file was not created at start"
grep -q "^mtu.set mtu=1500$" "$conf" || fail "a new file holds the defaults: $(cat "$conf")"
sw --json status | grep -q "\"config\":\"$conf\"" || fail "status names the configuration file"
sw portgroup add --name web --vlan 10 >/dev/null
sw portgroup add --name db --vlan 20 >/dev/null
sw portgroup add --name trunk --vlan 4095 >/dev/null
sw portgroup set --name web --forged-transmits accept --shaping avg=8M,peak=16M,burst=64k >/dev/null
sw portgroup set --name default --promiscuous accept >/dev/null
sw portgroup remove --name db >/dev/null
sw policy set --mac-changes accept --shaping avg=100M,peak=200M,burst=1M >/dev/null
sw mtu set --mtu 9000 >/dev/null
sw mac set --cap 128 --aging 60 >/dev/null
sw uplink set --tap "$tap" >/dev/null
rc=0; sw portgroup remove --name default 2>"$dir/err" || rc=$?
[[ $rc == 1 ]] && grep -q "always exists" "$dir/err" || fail "removing the default port group: $rc $(cat "$dir/err")"
before=$(settings)
grep -q '"name":"db"' <<<"$before" && fail "db was removed"
stop

# After a restart: the same settings, and the TAP uplink attached again.
start --config "$conf"
after=$(settings)
[[ $before == "$after" ]] || fail "settings changed across a restart:
before $before
after  $after"
ip link show "$tap" >/dev/null || fail "the TAP uplink was not attached again"

# The command line wins, and what it set is saved.
stop
start --config "$conf" --mtu 1500 --portgroup web:11
[[ $(sw --json mtu show) == '{"mtu":1500}' ]] || fail "--mtu did not win over the file"
grep -q "^mtu.set mtu=1500$" "$conf" || fail "--mtu was not saved"
grep -q "^portgroup.set name=web vlan=11 " "$conf" || fail "--portgroup web:11 was not saved: $(cat "$conf")"
grep -q "forged-transmits=accept shaping=avg=8000000" "$conf" || fail "web's policies were lost"

# A change that cannot be saved is applied, and the reply says it was not saved.
mv "$dir/etc" "$dir/etc.gone"
rc=0; sw mtu set --mtu 4000 2>"$dir/err" || rc=$?
[[ $rc == 1 ]] && grep -q "set, but not saved: cannot write $conf" "$dir/err" ||
    fail "unsaved change: exit $rc: $(cat "$dir/err")"
[[ $(sw --json mtu show) == '{"mtu":4000}' ]] || fail "the unsaved change was not applied"
mv "$dir/etc.gone" "$dir/etc"
stop

# A bad file stops the start, naming its line; the file is left as it was.
expect_bad() { # expect_bad PATTERN: the daemon refuses $conf with PATTERN
    local rc=0
    "$SWITCH" daemon -f --name cfg --socket "$dir/sw.sock" --config "$conf" 2>"$dir/err" || rc=$?
    [[ $rc == 1 ]] && grep -q -- "$1" "$dir/err" || fail "bad file: exit $rc, said '$(cat "$dir/err")', want /$1/"
    [[ ! -e $dir/sw.sock ]] || fail "a refused start left its socket"
}
cp "$conf" "$dir/good.conf"
echo "portgroup.add name=web" >>"$conf"
lines=$(wc -l <"$conf")
expect_bad "$conf:$lines: port group 'web' already exists"
printf 'status\n' >"$conf"
expect_bad "$conf:1: 'status' is not a setting"
printf '# comment\n\nmtu.set mtu=99999\n' >"$conf"
expect_bad "$conf:3: bad mtu '99999'"
[[ $(cat "$conf") == $'# comment\n\nmtu.set mtu=99999' ]] || fail "a refused file was rewritten"
rc=0; "$SWITCH" daemon -f --name cfg --socket "$dir/sw.sock" --config "$dir" 2>"$dir/err" || rc=$?
[[ $rc == 1 ]] && grep -q "Is a directory" "$dir/err" || fail "--config DIR: exit $rc: $(cat "$dir/err")"
echo "ok config"
