#!/bin/bash
# Bad -o options: vdfs-fuse must print a message that names the bad
# option, exit non-zero, and mount nothing; the datastore stays clean.
# Usage: bad_options.sh BUILD_ROOT syntax|range
#   syntax: unknown options and values that are not numbers or UUIDs;
#   range:  numbers out of range (known bug: accepted, so registered as
#           expected-to-fail; exit 1 = still accepted, 99 = set-up broke).
. "$(dirname "$0")/lib.sh" "$1"
MODE=$2
make_image 1G

# Runs vdfs-fuse in the foreground, in the background of this shell, so an
# option that is wrongly accepted ends as a mount (unmounted here) instead
# of a hang.
expect_refused() { # OPTION PATTERN(extended regexp, case-insensitive)
    local rc=0 pid
    "$VDFS_FUSE" "$IMG" "$MNT" -f -o "$1" >"$WORK/out" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        kill -0 $pid 2>/dev/null || break
        if mountpoint -q "$MNT"; then
            umount "$MNT"
            wait $pid || true
            fail "-o $1: accepted and mounted"
        fi
        sleep 0.05
    done
    if kill -0 $pid 2>/dev/null; then
        kill $pid
        wait $pid || true
        fail "-o $1: neither refused nor mounted after 10 s"
    fi
    wait $pid || rc=$?
    [ $rc != 0 ] || fail "-o $1: exit status 0"
    grep -qiE -- "$2" "$WORK/out" || { cat "$WORK/out" >&2; fail "-o $1: the message does not match /$2/"; }
}

case "$MODE" in
syntax)
    expect_refused no_such_option no_such_option
    expect_refused ro=1 ro=1
    expect_refused commit_ms=abc commit_ms=abc
    expect_refused commit_ms= commit_ms=
    expect_refused host_uuid=nope "host.uuid.*nope"
    expect_refused host_uuid=12345678-1234-1234-1234-1234567890zz "host.uuid"
    ;;
range)
    bad=0
    for opt in commit_ms=-5 commit_ms=99999999999999 max_background=0 max_background=65536 \
        writeback_mb=-1 writeback_mb=1048577 writeback_expire_ms=0 writeback_expire_ms=x; do
        if ! (expect_refused "$opt" "${opt%%=*}") 2>"$WORK/why"; then
            echo "BUG: $(cat "$WORK/why")" >&2
            bad=1
        fi
    done
    fail() { echo "ERROR: $*" >&2; exit 99; }
    fsck_clean
    [ $bad = 0 ] || exit 1
    echo PASS
    exit 0
    ;;
*)
    fail "usage: bad_options.sh BUILD_ROOT syntax|range"
    ;;
esac
fsck_clean
echo PASS
