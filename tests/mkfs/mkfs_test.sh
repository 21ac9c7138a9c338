#!/bin/bash
# Integration tests of the real mkfs.vdfs binary, one case per invocation:
#   mkfs_test.sh CASE MKFS CHECK_IMAGE HOLD_HEARTBEAT
# Exit 0 pass, 1 fail, 77 skip (a needed tool or privilege is missing).
set -u
CASE=$1 MKFS=$2 CHECK=$3 HOLD=$4

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mkfs-test.XXXXXX")
CLEANUP=()
cleanup() {
    local i
    for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do eval "${CLEANUP[i]}" >/dev/null 2>&1; done
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL [$CASE]: $*" >&2; exit 1; }
skip() { echo "SKIP [$CASE]: $*" >&2; exit 77; }
need_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }

# run CMD...: runs it, keeping status in $RC and output in $OUT / $ERR.
run() {
    "$@" >"$WORK/out" 2>"$WORK/err"
    RC=$?
    OUT=$(cat "$WORK/out")
    ERR=$(cat "$WORK/err")
}
expect_rc() { [ "$RC" = "$1" ] || fail "expected exit $1, got $RC from: ${*:2}; stderr: $ERR"; }
expect_err() { grep -q -- "$1" <<<"$ERR" || fail "stderr lacks \"$1\": $ERR"; }
sum() { sha256sum "$1" | cut -d' ' -f1; }
# Small images need few hosts and a small journal to fit.
SMALL=(-H 2 -J 1M)

# Refuses IMAGE (holding FSNAME) without -f, leaving it unchanged; formats it with -f.
refuse_then_force() {
    local img=$1 fsname=$2 before
    before=$(sum "$img")
    run "$MKFS" "${SMALL[@]}" "$img"
    expect_rc 1 mkfs.vdfs "$img"
    expect_err "already holds $fsname"
    expect_err "use -f"
    [ "$(sum "$img")" = "$before" ] || fail "refused run changed $img"
    run "$MKFS" -q -f "${SMALL[@]}" "$img"
    expect_rc 0 mkfs.vdfs -f "$img"
    run "$CHECK" "$img"
    expect_rc 0 check_image; echo "$OUT"
    run "$MKFS" "${SMALL[@]}" -n "$img"
    expect_rc 1 "mkfs.vdfs over the new datastore"
    expect_err "already holds vdfs"
}

case $CASE in
sparse16t)
    # Formatting 16 TiB must cost metadata, not capacity: < 1 s, < 64 MiB.
    dir=
    for d in "$WORK" /dev/shm; do
        if truncate -s 16T "$d/probe16t" 2>/dev/null; then dir=$d; rm -f "$d/probe16t"; break; fi
    done
    [ -n "$dir" ] || fail "no filesystem here holds a 16 TiB sparse file (tried $WORK and /dev/shm)"
    img=$dir/mkfs-16t.$$.img
    CLEANUP+=("rm -f '$img'")
    truncate -s 16T "$img"
    t0=$(date +%s%N)
    run "$MKFS" --json "$img"
    t1=$(date +%s%N)
    expect_rc 0 mkfs.vdfs 16T
    ms=$(((t1 - t0) / 1000000))
    used=$(($(stat -c %b "$img") * 512))
    reported=$(python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["bytes_written"] + j["bytes_zeroed"])' <<<"$OUT") ||
        fail "--json output does not parse: $OUT"
    echo "16 TiB: ${ms} ms, image allocates $used bytes, mkfs reports $reported bytes written"
    [ "$ms" -lt 1000 ] || fail "took $ms ms (limit 1000)"
    [ "$used" -lt $((64 << 20)) ] || fail "image allocates $used bytes (limit 64 MiB)"
    [ "$reported" -lt $((64 << 20)) ] || fail "mkfs wrote $reported bytes (limit 64 MiB)"
    [ "$(stat -c %s "$img")" = $((16 << 40)) ] || fail "image size changed"
    run "$CHECK" "$img" --total $((16 << 40))
    expect_rc 0 check_image; echo "$OUT"
    ;;
create)
    # A SIZE creates a sparse image; the datastore covers SIZE bytes.
    img=$WORK/new.img
    run "$MKFS" -q "$img" 1T
    expect_rc 0 mkfs.vdfs new.img 1T
    [ -z "$OUT" ] || fail "-q printed: $OUT"
    [ "$(stat -c %s "$img")" = $((1 << 40)) ] || fail "image is not 1 TiB"
    [ $(($(stat -c %b "$img") * 512)) -lt $((64 << 20)) ] || fail "1 TiB image is not sparse"
    run "$CHECK" "$img" --total $((1 << 40))
    expect_rc 0 check_image; echo "$OUT"
    # No SIZE and no file: a clear error, nothing created.
    run "$MKFS" "$WORK/missing.img"
    expect_rc 1 mkfs.vdfs missing.img
    expect_err "does not exist; give a SIZE"
    [ ! -e "$WORK/missing.img" ] || fail "created an image without SIZE"
    ;;
sizes)
    # An existing file without SIZE is formatted whole; a larger SIZE
    # extends it; a smaller SIZE formats a prefix and leaves the file alone.
    img=$WORK/sized.img
    truncate -s 2G "$img"
    run "$MKFS" -q "$img"; expect_rc 0 mkfs.vdfs sized.img
    run "$CHECK" "$img" --total $((2 << 30)); expect_rc 0 check_image 2G
    run "$MKFS" -q -f "$img" 4G; expect_rc 0 mkfs.vdfs -f sized.img 4G
    [ "$(stat -c %s "$img")" = $((4 << 30)) ] || fail "image was not extended to 4 GiB"
    run "$CHECK" "$img" --total $((4 << 30)); expect_rc 0 check_image 4G
    run "$MKFS" -q -f "$img" 1G; expect_rc 0 mkfs.vdfs -f sized.img 1G
    [ "$(stat -c %s "$img")" = $((4 << 30)) ] || fail "a smaller SIZE truncated the image"
    run "$CHECK" "$img" --total $((1 << 30)); expect_rc 0 check_image 1G
    echo "$OUT"
    ;;
options)
    img=$WORK/opts.img
    uuid=0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9
    run "$MKFS" -L "vm datastore 1" -U "$uuid" -H 4 -b 4M -s 128K -J 2M -N 100000 "$img" 8G
    expect_rc 0 mkfs.vdfs with every option
    grep -q "$uuid" <<<"$OUT" || fail "summary lacks the uuid: $OUT"
    grep -q "vm datastore 1" <<<"$OUT" || fail "summary lacks the label: $OUT"
    run "$CHECK" "$img" --label "vm datastore 1" --uuid "$uuid" --hosts 4 --block $((4 << 20)) \
        --subblock $((128 << 10)) --journal-blocks 512 --fds 100000 --total $((8 << 30))
    expect_rc 0 check_image; echo "$OUT"
    run "$MKFS" -f -U time --json "$img"
    expect_rc 0 mkfs.vdfs -U time
    python3 - "$OUT" <<'PY' || fail "--json output wrong: $OUT"
import json, sys
j = json.loads(sys.argv[1])
assert j["uuid"][14] == "1", "time uuid is not version 1"
assert j["dry_run"] is False and j["total_bytes"] == 8 << 30
assert j["block_size"] == 1 << 20 and j["subblock_size"] == 64 << 10 and j["max_hosts"] == 32
assert j["descriptors"]["count"] > 0 and j["file_blocks"]["clusters"] >= 1
PY
    run "$MKFS" -f -U random -q "$img"
    expect_rc 0 mkfs.vdfs -U random
    run "$CHECK" "$img"; expect_rc 0 check_image
    v=$(sed -n 's/.*uuid \([0-9a-f-]*\) .*/\1/p' <<<"$OUT")
    [ "${v:14:1}" = 4 ] || fail "random uuid $v is not version 4"
    ;;
grow-limit)
    # Room to grow: 4x by default, -G for more (with pointer blocks for a
    # quarter of it), and a limit below the size is refused.
    img=$WORK/grow.img
    run "$MKFS" -q --json -H 4 "$img" 1G
    expect_rc 0 mkfs.vdfs --json
    python3 - "$OUT" <<'PY' || fail "default grow limit: $OUT"
import json, sys
j = json.loads(sys.argv[1])
cluster = j["file_blocks"]["per_cluster"] * j["block_size"]
assert 4 << 30 <= j["grow_limit_bytes"] < (4 << 30) + j["file_blocks"]["start"] + cluster, j["grow_limit_bytes"]
PY
    run "$MKFS" -q -f --json -H 4 -G 64T "$img" 1G
    expect_rc 0 mkfs.vdfs -G 64T
    python3 - "$OUT" <<'PY' || fail "-G 64T: $OUT"
import json, sys
j = json.loads(sys.argv[1])
assert j["grow_limit_bytes"] >= 64 << 40, j["grow_limit_bytes"]
assert j["pointer_blocks"]["count"] == (16 << 40) // (1 << 20) // 256 * 2, j["pointer_blocks"]
PY
    run "$CHECK" "$img"; expect_rc 0 check_image
    img=$WORK/small.img
    run "$MKFS" -q "${SMALL[@]}" "$img" 64M
    before=$(sum "$img")
    run "$MKFS" -f "${SMALL[@]}" -G 32M "$img"
    expect_rc 1 "mkfs.vdfs -G below the size"
    expect_err "grow limit 33554432 bytes (-G) is below the datastore's size, 67108864 bytes"
    [ "$(sum "$img")" = "$before" ] || fail "a refused -G changed the image"
    ;;
bad-options)
    img=$WORK/never.img
    bad=(
        "-b 3000" "-b 0" "-b 128M" "-s 2K" "-b 64K -s 128K" "-b 64M -s 4K" "-H 0" "-H 65" "-H x"
        "-J 1000" "-J 512K" "-N 5" "-N lots" "-G 0" "-G big" "-U nonsense" "-U 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0fz"
        "-L $(printf 'x%.0s' {1..65})" "--bogus" "-b"
    )
    for opts in "${bad[@]}"; do
        # shellcheck disable=SC2086
        run "$MKFS" $opts "$img" 1G
        expect_rc 1 mkfs.vdfs $opts
        expect_err "Usage:"
        [ ! -e "$img" ] || fail "mkfs.vdfs $opts created the image"
    done
    for args in "" "$img 1G extra" "$img 12X" "$img 0"; do
        # shellcheck disable=SC2086
        run "$MKFS" $args
        expect_rc 1 mkfs.vdfs $args
        expect_err "Usage:"
    done
    run "$MKFS" "$WORK"
    expect_rc 1 mkfs.vdfs DIRECTORY
    expect_err "neither a block device nor a regular file"
    run "$MKFS" "$WORK/no/such/dir/x.img" 1G
    expect_rc 1 mkfs.vdfs in a missing directory
    expect_err "cannot create"
    echo "all bad options refused with usage"
    ;;
help)
    for h in --help -h; do
        run "$MKFS" $h
        expect_rc 0 mkfs.vdfs $h
        grep -q "^Usage: mkfs.vdfs" <<<"$OUT" || fail "$h printed no usage"
        grep -q -- "--json" <<<"$OUT" || fail "$h does not describe --json"
    done
    ;;
too-small)
    img=$WORK/small.img
    truncate -s 1M "$img"
    before=$(sum "$img")
    run "$MKFS" "$img"
    expect_rc 1 mkfs.vdfs 1M
    expect_err "device too small: 1048576 bytes; vdfs needs at least"
    [ "$(sum "$img")" = "$before" ] || fail "refused run changed the image"
    # The minimum it names must be exact: that size works, 4 KiB less does not.
    min=$(sed -n 's/.*needs at least \([0-9]*\) bytes.*/\1/p' <<<"$ERR")
    [ -n "$min" ] || fail "no minimum in: $ERR"
    run "$MKFS" -q "$WORK/min.img" "$min"
    expect_rc 0 mkfs.vdfs at the named minimum "$min"
    run "$CHECK" "$WORK/min.img"; expect_rc 0 check_image at minimum
    run "$MKFS" -q "$WORK/below.img" $((min - 4096))
    expect_rc 1 mkfs.vdfs 4 KiB below the minimum
    expect_err "device too small"
    [ ! -e "$WORK/below.img" ] || fail "a refused SIZE left an image behind"
    echo "minimum $min bytes confirmed"
    ;;
small-journal)
    # Without -J, a device too small for 32 journals of 16 MiB gets the
    # largest smaller journal that fits (down to 1 MiB); with -J it is refused.
    for want in 100M:1048576 200M:4194304 400M:8388608 2G:16777216; do
        size=${want%%:*} journal=${want#*:}
        run "$MKFS" -q --json -f "$WORK/j.img" "$size"
        expect_rc 0 mkfs.vdfs "$size" without -J
        got=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["journal_bytes_per_host"])' <<<"$OUT")
        [ "$got" = "$journal" ] || fail "$size: journal of $got bytes per host, wanted $journal"
        run "$CHECK" "$WORK/j.img"; expect_rc 0 check_image of "$size"
        rm -f "$WORK/j.img"
    done
    run "$MKFS" -q -J 16M "$WORK/j.img" 200M
    expect_rc 1 mkfs.vdfs 200M -J 16M
    expect_err "device too small"
    ;;
dry-run)
    img=$WORK/dry.img
    run "$MKFS" -n "$img" 1G
    expect_rc 0 mkfs.vdfs -n new image
    grep -q "Would create" <<<"$OUT" || fail "-n summary: $OUT"
    [ ! -e "$img" ] || fail "-n created the image"
    run "$MKFS" -q "${SMALL[@]}" "$img" 64M; expect_rc 0 mkfs.vdfs
    before=$(sum "$img")
    run "$MKFS" -n -f "${SMALL[@]}" "$img"
    expect_rc 0 mkfs.vdfs -n -f
    [ "$(sum "$img")" = "$before" ] || fail "-n changed the image"
    run "$MKFS" -n -f --json "${SMALL[@]}" "$img" 512M
    expect_rc 0 mkfs.vdfs -n -f 512M
    grep -q '"dry_run": true' <<<"$OUT" || fail "--json dry run: $OUT"
    [ "$(stat -c %s "$img")" = $((64 << 20)) ] || fail "-n extended the image"
    [ "$(sum "$img")" = "$before" ] || fail "-n changed the image"
    run "$MKFS" -n "${SMALL[@]}" "$img"
    expect_rc 1 "mkfs.vdfs -n without -f on a datastore"
    expect_err "already holds vdfs"
    ;;
refuse-ext4)
    command -v mkfs.ext4 >/dev/null || skip "mkfs.ext4 not installed"
    img=$WORK/ext4.img
    truncate -s 64M "$img"
    mkfs.ext4 -q -F "$img" || fail "mkfs.ext4 failed"
    refuse_then_force "$img" "ext2/ext3/ext4"
    ;;
refuse-xfs)
    command -v mkfs.xfs >/dev/null || skip "mkfs.xfs not installed"
    img=$WORK/xfs.img
    truncate -s 320M "$img"
    mkfs.xfs -q -f "$img" || fail "mkfs.xfs failed"
    refuse_then_force "$img" "xfs"
    ;;
refuse-btrfs)
    command -v mkfs.btrfs >/dev/null || skip "mkfs.btrfs not installed"
    img=$WORK/btrfs.img
    truncate -s 256M "$img"
    mkfs.btrfs -q -f "$img" >/dev/null || fail "mkfs.btrfs failed"
    refuse_then_force "$img" "btrfs"
    ;;
refuse-other)
    # Partition tables and swap are data too.
    img=$WORK/other.img
    truncate -s 64M "$img"
    printf 'EFI PART' | dd of="$img" bs=1 seek=512 conv=notrunc status=none
    refuse_then_force "$img" "a GPT partition table"
    truncate -s 0 "$img"; truncate -s 64M "$img"
    printf '\x55\xaa' | dd of="$img" bs=1 seek=510 conv=notrunc status=none
    refuse_then_force "$img" "a DOS partition table"
    if command -v mkswap >/dev/null; then
        truncate -s 0 "$img"; truncate -s 64M "$img"
        mkswap -q "$img" >/dev/null 2>&1 || mkswap "$img" >/dev/null || fail "mkswap failed"
        refuse_then_force "$img" "swap"
    fi
    ;;
refuse-vdfs)
    img=$WORK/vdfs.img
    run "$MKFS" -q "${SMALL[@]}" "$img" 64M; expect_rc 0 mkfs.vdfs
    refuse_then_force "$img" "vdfs"
    # With the primary superblock destroyed the backup still identifies vdfs.
    dd if=/dev/zero of="$img" bs=4096 count=1 conv=notrunc status=none
    before=$(sum "$img")
    run "$MKFS" "${SMALL[@]}" "$img"
    expect_rc 1 mkfs.vdfs over a datastore without its primary superblock
    expect_err "already holds vdfs (signature at byte [1-9]"
    [ "$(sum "$img")" = "$before" ] || fail "refused run changed the image"
    run "$MKFS" -q -f "${SMALL[@]}" "$img"; expect_rc 0 mkfs.vdfs -f
    run "$CHECK" "$img"; expect_rc 0 check_image; echo "$OUT"
    ;;
live-host)
    # A vdfs host that has the image mounted: refused even with -f.
    img=$WORK/live.img
    run "$MKFS" -q "${SMALL[@]}" "$img" 64M; expect_rc 0 mkfs.vdfs
    mkfifo "$WORK/hold.in"
    "$HOLD" "$img" 1 <"$WORK/hold.in" >"$WORK/hold.out" 2>&1 &
    holder=$!
    exec 9>"$WORK/hold.in"
    CLEANUP+=("exec 9>&-; wait $holder")
    for _ in $(seq 100); do grep -q ready "$WORK/hold.out" && break; sleep 0.05; done
    grep -q ready "$WORK/hold.out" || fail "hold_heartbeat did not start: $(cat "$WORK/hold.out")"
    before=$(sum "$img")
    run "$MKFS" -f "${SMALL[@]}" "$img"
    expect_rc 1 "mkfs.vdfs -f on a mounted datastore"
    expect_err "mounted by a running vdfs host (heartbeat slot 1, pid $holder"
    [ "$(sum "$img")" = "$before" ] || fail "refused run changed the image"
    # Once the host is gone its LIVE slot is stale and -f may format.
    exec 9>&-
    wait "$holder" || fail "hold_heartbeat failed"
    run "$MKFS" -q -f "${SMALL[@]}" "$img"
    expect_rc 0 mkfs.vdfs -f after the host exited
    run "$CHECK" "$img"; expect_rc 0 check_image; echo "$OUT"
    # A host in the middle of claiming a slot holds its liveness lock
    # while the slot still reads FREE: refused as well.
    "$HOLD" "$img" 0 lock-only <"$WORK/hold.in" >"$WORK/hold.out" 2>&1 &
    holder=$!
    exec 9>"$WORK/hold.in"
    CLEANUP+=("exec 9>&-; wait $holder")
    for _ in $(seq 100); do grep -q ready "$WORK/hold.out" && break; sleep 0.05; done
    grep -q ready "$WORK/hold.out" || fail "hold_heartbeat did not start: $(cat "$WORK/hold.out")"
    before=$(sum "$img")
    run "$MKFS" -f "${SMALL[@]}" "$img"
    expect_rc 1 "mkfs.vdfs -f while a host claims a slot"
    expect_err "in use by a running vdfs host or another mkfs.vdfs"
    [ "$(sum "$img")" = "$before" ] || fail "refused run changed the image"
    exec 9>&-
    wait "$holder" || fail "hold_heartbeat failed"
    ;;
loop)
    need_root
    command -v losetup >/dev/null || skip "losetup not installed"
    img=$WORK/loop.img
    truncate -s 2G "$img"
    dev=$(losetup -f --show "$img") || skip "no loop device available"
    CLEANUP+=("losetup -d $dev")
    run "$MKFS" -L looped "$dev"
    expect_rc 0 mkfs.vdfs "$dev"; echo "$OUT"
    run "$CHECK" "$dev" --label looped --total $((2 << 30)); expect_rc 0 check_image "$dev"; echo "$OUT"
    run "$MKFS" "$dev"
    expect_rc 1 mkfs.vdfs over a loop device holding vdfs
    expect_err "already holds vdfs"
    run "$MKFS" "$dev" 4G
    expect_rc 1 mkfs.vdfs with a SIZE beyond the device
    expect_err "larger than"
    losetup -d "$dev"
    run "$CHECK" "$img" --label looped; expect_rc 0 check_image after detaching
    ;;
mounted)
    need_root
    command -v mkfs.ext4 >/dev/null || skip "mkfs.ext4 not installed"
    img=$WORK/mounted.img
    truncate -s 64M "$img"
    mkfs.ext4 -q -F "$img" || fail "mkfs.ext4 failed"
    dev=$(losetup -f --show "$img") || skip "no loop device available"
    CLEANUP+=("losetup -d $dev")
    mkdir "$WORK/mnt"
    # Read-only without journal replay, so the mount itself writes nothing.
    mount -o ro,noload "$dev" "$WORK/mnt" || skip "cannot mount here"
    CLEANUP+=("umount '$WORK/mnt'")
    before=$(sum "$img")
    run "$MKFS" -f "${SMALL[@]}" "$dev"
    expect_rc 1 "mkfs.vdfs -f on a mounted device"
    expect_err "is mounted on $WORK/mnt"
    run "$MKFS" -f "${SMALL[@]}" "$img"
    expect_rc 1 "mkfs.vdfs -f on an image mounted through a loop device"
    expect_err "loop device over this image) is mounted on $WORK/mnt"
    umount "$WORK/mnt"
    [ "$(sum "$img")" = "$before" ] || fail "refused runs changed the image"
    run "$MKFS" -q -f "${SMALL[@]}" "$dev"
    expect_rc 0 mkfs.vdfs -f after unmounting
    run "$CHECK" "$dev"; expect_rc 0 check_image; echo "$OUT"
    ;;
*)
    fail "unknown case"
    ;;
esac
echo "PASS [$CASE]"
