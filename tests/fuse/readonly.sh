#!/bin/bash
# A read-only mount beside a read-write host: `-o ro` joins the cluster as
# a host of its own (a slot, the metadata lock taken to read), so it sees
# what the other host creates, appends and removes while both are mounted,
# and refuses every write with EROFS.  `-o ro,nohost` takes no slot, and
# nohost without ro is refused; with every slot taken, -o ro reads without
# one.  Ends with unmount and a clean fsck.
. "$(dirname "$0")/lib.sh" "$1"
VDFSCTL=$BUILD/tools/vdfsctl
RO=$WORK/ro
mkdir -p "$RO"
make_image 2G
mount_fg
echo before >"$MNT/before"
"$VDFS_FUSE" "$IMG" "$RO" -o ro,hb_timeout_ms=15000 || fail "read-only mount beside a read-write host"
ro_cleanup() { mountpoint -q "$RO" && umount "$RO"; return 0; }
trap 'ro_cleanup; cleanup' EXIT

live_hosts() { "$VDFSCTL" hosts --json "$IMG" | python3 -c 'import json,sys; print(sum(1 for h in json.load(sys.stdin) if h["state"] == "live"))'; }
[ "$(live_hosts)" = 2 ] || fail "the read-only mount is not a live host: $(live_hosts) live"
"$VDFSCTL" hosts --json "$IMG" | python3 -c 'import json,sys
live = [h for h in json.load(sys.stdin) if h["state"] == "live"]
assert sorted(h["readonly"] for h in live) == [False, True], live' || fail "vdfsctl hosts does not mark the read-only host"
"$VDFSCTL" hosts "$IMG" | grep -q "^[0-9]* *live *ro " || fail "vdfsctl hosts: no ro mode column"
[ "$(cat "$RO/before")" = before ] || fail "ro: a file written before it mounted"

# Within the kernel's 1 s attribute and entry cache, plus a hand-over.
wait_for() { # DESCRIPTION COMMAND...
    local what=$1; shift
    for _ in $(seq 50); do "$@" && return 0; sleep 0.1; done
    fail "ro: $what"
}
echo during >"$MNT/during"
wait_for "does not see a file created after it mounted" test -e "$RO/during"
[ "$(cat "$RO/during")" = during ] || fail "ro: content of a new file"
echo more >>"$MNT/during"
wait_for "does not see an append" cmp -s "$MNT/during" "$RO/during"
mkdir "$MNT/dir"
rm "$MNT/before"
wait_for "still sees a removed file" test ! -e "$RO/before"
wait_for "does not see a new directory" test -d "$RO/dir"

for what in "create:touch $RO/new" "append:eval echo x >>$RO/during" "remove:rm $RO/during" "mkdir:mkdir $RO/d2"; do
    if ${what#*:} 2>"$WORK/ro.err"; then fail "ro: ${what%%:*} succeeded"; fi
    grep -q "Read-only file system" "$WORK/ro.err" || { cat "$WORK/ro.err" >&2; fail "ro: ${what%%:*}: not EROFS"; }
done
# The read-write host still writes while the reader is mounted.
head -c 3000000 /dev/urandom >"$WORK/big"
cp "$WORK/big" "$MNT/big" || fail "rw host: write beside a read-only host"
wait_for "does not see a 3 MB file" cmp -s "$WORK/big" "$RO/big"

# Its opens share the file locks as any host's: a file held open for
# writing on the other host is EBUSY here, and the other way round.
exec 3>>"$MNT/during"
if cat "$RO/during" 2>"$WORK/busy.err" >/dev/null; then fail "ro: read a file another host has open for writing"; fi
grep -q "Device or resource busy" "$WORK/busy.err" || { cat "$WORK/busy.err" >&2; fail "ro: not EBUSY"; }
exec 3>&-
wait_for "cannot read a file once the writer closed it" cmp -s "$MNT/during" "$RO/during"
exec 4<"$RO/during"
if echo x 2>/dev/null >>"$MNT/during"; then fail "rw host wrote a file the read-only host has open"; fi
exec 4<&-

umount "$RO"
for _ in $(seq 100); do [ "$(live_hosts)" = 1 ] && break; sleep 0.05; done
[ "$(live_hosts)" = 1 ] || fail "the read-only host's slot was not given back at unmount"

# ro,nohost: no slot; nohost alone is refused.
"$VDFS_FUSE" "$IMG" "$RO" -o ro,nohost || fail "ro,nohost mount"
[ "$(live_hosts)" = 1 ] || fail "ro,nohost took a slot"
cmp -s "$WORK/big" "$RO/big" || fail "ro,nohost: cannot read"
umount "$RO"
if "$VDFS_FUSE" "$IMG" "$RO" -o nohost 2>"$WORK/nohost.err"; then fail "-o nohost without ro mounted"; fi
grep -q "nohost: only with -o ro" "$WORK/nohost.err" || { cat "$WORK/nohost.err" >&2; fail "-o nohost: unclear message"; }
mountpoint -q "$RO" && fail "-o nohost without ro left a mount"
# Every slot taken (-H 2: one read-write host and one read-only host): a
# third read-only mount says it cannot join and reads without a slot.
IMG2=$WORK/img2
"$MKFS" -q -H 2 "$IMG2" 1G || fail "mkfs.vdfs -H 2"
mkdir -p "$WORK/m1" "$WORK/m2" "$WORK/m3"
"$VDFS_FUSE" "$IMG2" "$WORK/m1" -o hb_timeout_ms=15000 || fail "rw mount of a 2-slot datastore"
echo two >"$WORK/m1/two"
"$VDFS_FUSE" "$IMG2" "$WORK/m2" -o ro,hb_timeout_ms=15000 || fail "ro mount into the last slot"
"$VDFS_FUSE" "$IMG2" "$WORK/m3" -o ro 2>"$WORK/full.err" || { cat "$WORK/full.err" >&2; fail "ro mount with every slot taken"; }
grep -q "cannot join as a host" "$WORK/full.err" || { cat "$WORK/full.err" >&2; fail "ro with every slot taken: no word"; }
[ "$(cat "$WORK/m3/two")" = two ] || fail "the slotless reader cannot read"
"$VDFSCTL" ls "$IMG2" / | grep -qx two || fail "vdfsctl ls with every slot taken"
umount "$WORK/m3"
umount "$WORK/m2"
umount "$WORK/m1"
finish
