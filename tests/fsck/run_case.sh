#!/bin/bash
# One fsck.vdfs test case: run_case.sh CASE FSCK MKFS POPULATE CORRUPT
# A damage case goes: fresh image -> populate -> digests -> damage ->
# fsck -n (exit 4, problem named) -> fsck -y (exit 1) -> fsck -n (exit 0)
# -> every file not expected to change still has its digest.
set -u
CASE=$1 FSCK=$2 MKFS=$3 POPULATE=$4 CORRUPT=$5
WORK=$(mktemp -d /tmp/fsck-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
IMG=$WORK/img

fail() { echo "FAIL ($CASE): $*"; exit 1; }

fresh() {
    "$MKFS" -q "$IMG" 2G >/dev/null 2>&1 || "$MKFS" "$IMG" 2G >"$WORK/mkfs.out" 2>&1 || fail "mkfs: $(cat "$WORK/mkfs.out")"
}

populate() {
    "$POPULATE" create "$IMG" >"$WORK/manifest" 2>"$WORK/populate.err" || fail "populate: $(cat "$WORK/populate.err")"
    "$POPULATE" digest "$IMG" >"$WORK/before" 2>&1 || fail "digest before: $(cat "$WORK/before")"
    grep -q '^/dir1/sub/deep.bin ' "$WORK/before" || fail "populate made no /dir1/sub/deep.bin"
}

ino() { awk -v p="$1" '$3 == p { print $1; exit }' "$WORK/manifest"; }

# run_fsck EXPECTED_EXIT ARGS...: output in $WORK/out
run_fsck() {
    local want=$1; shift
    "$FSCK" "$@" "$IMG" >"$WORK/out" 2>&1
    local got=$?
    cat "$WORK/out" >>"$WORK/log"
    [ "$got" = "$want" ] || { cat "$WORK/out"; fail "fsck $* exited $got, expected $want"; }
}

# three_runs PATTERN: -n finds PATTERN (exit 4), -y fixes (exit 1), -n is clean
three_runs() {
    run_fsck 4 -n
    grep -qiE "$1" "$WORK/out" || { cat "$WORK/out"; fail "fsck -n did not name the problem /$1/"; }
    run_fsck 1 -y
    grep -qiE "$1" "$WORK/out" || { cat "$WORK/out"; fail "fsck -y did not name the problem /$1/"; }
    run_fsck 0 -n
    grep -q "clean" "$WORK/out" || fail "second check not clean"
}

# intact EXCLUDED_PATH...: every other file's size and sha256 unchanged
intact() {
    "$POPULATE" digest "$IMG" >"$WORK/after" 2>&1 || fail "digest after: $(cat "$WORK/after")"
    local pat='^$'
    for p in "$@"; do pat="$pat|^$p "; done
    grep -vE "$pat" "$WORK/before" | sort >"$WORK/want"
    sort "$WORK/after" >"$WORK/got"
    local missing
    missing=$(comm -23 "$WORK/want" "$WORK/got")
    [ -z "$missing" ] || { echo "after:"; cat "$WORK/after"; fail "files changed or lost: $missing"; }
}

digest_of() { awk -v p="$1" '$1 == p { print $2 " " $3 }' "$2"; }

case "$CASE" in
clean)
    fresh
    run_fsck 0 -n
    populate
    run_fsck 0 -n
    run_fsck 0 -y
    grep -q clean "$WORK/out" || fail "populated image not clean"
    ;;
bad-fd-checksum)
    fresh; populate
    "$CORRUPT" "$IMG" fd-csum "$(ino /dir2/b.bin)" || fail corrupt
    three_runs "bad checksum in descriptor $(ino /dir2/b.bin)"
    intact /dir2/b.bin
    ;;
bad-dir-checksum)
    fresh; populate
    "$CORRUPT" "$IMG" dir-csum "$(ino /dir1/sub)" || fail corrupt
    three_runs "bad checksum in block 0 of directory $(ino /dir1/sub)"
    intact /dir1/sub/deep.bin
    # deep.bin lost its name with the block and comes back in lost+found
    d=$(ino /dir1/sub/deep.bin)
    [ "$(digest_of "/lost+found/#$d" "$WORK/after")" = "$(digest_of /dir1/sub/deep.bin "$WORK/before")" ] ||
        fail "deep.bin not in lost+found as #$d with its content"
    ;;
bad-pb-checksum)
    fresh; populate
    "$CORRUPT" "$IMG" pb-csum "$(ino /sparse.bin)" || fail corrupt
    three_runs "bad checksum in pointer block"
    intact /sparse.bin
    ;;
leaked-block)
    fresh; populate
    "$CORRUPT" "$IMG" leak || fail corrupt
    three_runs "1 leaked FB resource"
    intact
    ;;
block-referenced-twice)
    fresh; populate
    a=$(ino /big.bin) b=$(ino /dir2/b.bin)
    "$CORRUPT" "$IMG" dup "$a" "$b" || fail corrupt
    three_runs "file block [0-9]+ referenced by ino $a and ino $b"
    # b.bin now holds a private copy of big.bin's first block; big.bin is untouched
    intact /dir2/b.bin
    ;;
pointer-out-of-range)
    fresh; populate
    "$CORRUPT" "$IMG" ptr-range "$(ino /medium.bin)" || fail corrupt
    three_runs "ino $(ino /medium.bin): sub-block pointer slot 0 is out of range"
    intact /medium.bin
    ;;
entry-to-free-fd)
    fresh; populate
    s=$(ino /small.txt)
    "$CORRUPT" "$IMG" free-fd "$s" || fail corrupt
    three_runs "entry 'small.txt' in directory 1 points to free descriptor $s"
    intact /small.txt
    grep -q '^/small.txt ' "$WORK/after" && fail "small.txt still listed"
    ;;
orphan)
    fresh; populate
    m=$(ino /medium.bin)
    "$CORRUPT" "$IMG" unlink 1 medium.bin || fail corrupt
    three_runs "orphan descriptor $m .*lost\+found"
    intact /medium.bin
    [ "$(digest_of "/lost+found/#$m" "$WORK/after")" = "$(digest_of /medium.bin "$WORK/before")" ] ||
        fail "medium.bin not in lost+found as #$m with its content"
    ;;
duplicate-name)
    # Two entries of one directory with one name: the later one goes, and
    # the file it named (now nameless) goes to lost+found with its content.
    fresh; populate
    s=$(ino /sparse.bin)
    "$CORRUPT" "$IMG" rename 1 sparse.bin medium.bin || fail corrupt
    three_runs "entry 'medium.bin' in directory 1 \(descriptor $s\) repeats a name already in it"
    grep -qE "orphan descriptor $s .*lost\+found" "$WORK/log" || fail "the second medium.bin's file not in lost+found"
    intact /sparse.bin
    [ "$(digest_of "/lost+found/#$s" "$WORK/after")" = "$(digest_of /sparse.bin "$WORK/before")" ] ||
        fail "sparse.bin not in lost+found as #$s with its content"
    ;;
root-not-directory)
    # A root descriptor that says it is a regular file is recreated as an
    # empty directory in the same run that frees the blocks it mapped (they
    # once showed as leaked only in a second run); the files it named go to
    # lost+found.
    fresh; populate
    m=$(ino /medium.bin)
    "$CORRUPT" "$IMG" mode 1 0100644 || fail corrupt
    three_runs "the root directory \(ino 1\) is missing or not a directory"
    "$POPULATE" digest "$IMG" >"$WORK/after" 2>&1 || fail "digest after: $(cat "$WORK/after")"
    [ "$(digest_of "/lost+found/#$m" "$WORK/after")" = "$(digest_of /medium.bin "$WORK/before")" ] ||
        fail "medium.bin not in lost+found as #$m with its content"
    ;;
wrong-link-count)
    fresh; populate
    a=$(ino /dir1/a.txt)
    "$CORRUPT" "$IMG" nlink "$a" 7 || fail corrupt
    three_runs "descriptor $a \(file\) has link count 7, should be 2"
    [ "$("$CORRUPT" "$IMG" nlink-of "$a")" = 2 ] || fail "link count not repaired"
    intact
    ;;
dir-size-beyond-blocks)
    # A directory claiming more blocks than it has (a block-mapped one could
    # claim 2^44 bytes: 2^32 blocks for pass 4 to walk, or 0 once wrapped):
    # its size is cut to what is allocated.
    fresh; populate
    d=$(ino /dir1/sub)
    "$CORRUPT" "$IMG" size "$d" $((1 << 20)) || fail corrupt
    three_runs "directory $d: size 1048576 is beyond its 65536 allocated bytes"
    intact
    ;;
wrong-free-count)
    fresh; populate
    "$CORRUPT" "$IMG" free-count 3 || fail corrupt
    three_runs "wrong free count in FB cluster 0"
    intact
    ;;
unreplayed-journal)
    fresh; populate
    b=$(ino /big.bin)
    "$CORRUPT" "$IMG" journal "$b" 1234567890 || fail corrupt
    three_runs "journal of slot 0 needs replay: 1 committed transaction"
    [ "$("$CORRUPT" "$IMG" mtime "$b")" = 1234567890 ] || fail "the journaled mtime was not applied"
    intact
    ;;
stale-host)
    fresh; populate
    "$CORRUPT" "$IMG" stale-host 5 || fail corrupt
    three_runs "stale heartbeat: slot 5"
    grep -q "stale lock on ino 1" "$WORK/log" || fail "stale lock not reported"
    intact
    ;;
stale-host-bad-journal)
    # A dead host whose journal header is damaged: nothing can be replayed,
    # and one run still frees its slot and its locks.
    fresh; populate
    "$CORRUPT" "$IMG" stale-host 5 || fail corrupt
    "$CORRUPT" "$IMG" jheader 5 || fail corrupt
    three_runs "stale heartbeat: slot 5"
    intact
    ;;
bad-primary-super)
    fresh; populate
    "$CORRUPT" "$IMG" super-primary || fail corrupt
    three_runs "primary superblock damaged; using the backup"
    intact
    ;;
mounted)
    fresh; populate
    # A mounted host holds its heartbeat slot's OFD lock: fsck must refuse.
    coproc HOLD { "$POPULATE" hold "$IMG"; }
    read -r line <&"${HOLD[0]}"
    [ "$line" = mounted ] || fail "could not mount"
    run_fsck 8 -n
    grep -q "in use" "$WORK/out" || fail "no clear message: $(cat "$WORK/out")"
    run_fsck 8 -y
    eval "exec ${HOLD[1]}>&-"
    wait "$HOLD_PID"
    run_fsck 0 -n
    intact
    ;;
mounted-bad-backup)
    # A repair found in pass 0 (the backup superblock) must wait for the
    # live-host check: fsck -y on a mounted datastore writes nothing.
    fresh; populate
    "$CORRUPT" "$IMG" super-backup || fail corrupt
    coproc HOLD { "$POPULATE" hold "$IMG"; }
    read -r line <&"${HOLD[0]}"
    [ "$line" = mounted ] || fail "could not mount"
    run_fsck 8 -y
    grep -q "in use" "$WORK/out" || fail "no clear message: $(cat "$WORK/out")"
    eval "exec ${HOLD[1]}>&-"
    wait "$HOLD_PID"
    three_runs "backup superblock at 0x[0-9a-f]+ damaged"
    intact
    ;;
random-bytes)
    head -c $((8 << 20)) /dev/urandom >"$IMG"
    run_fsck 8 -n
    grep -q "not a vdfs datastore" "$WORK/out" || fail "no clear message: $(cat "$WORK/out")"
    run_fsck 8 -y
    ;;
truncated)
    fresh; populate
    truncate -s 1G "$IMG"
    run_fsck 8 -n
    grep -q "truncated" "$WORK/out" || fail "no clear message: $(cat "$WORK/out")"
    ;;
bad-options)
    fresh
    run_fsck 16 -n -y
    grep -q "usage:" "$WORK/out" || fail "no usage"
    run_fsck 16 --no-such-option
    "$FSCK" >"$WORK/out" 2>&1; [ $? = 16 ] || fail "no device: not 16"
    "$FSCK" -n "$IMG" "$IMG" >"$WORK/out" 2>&1; [ $? = 16 ] || fail "two devices: not 16"
    "$FSCK" -n "$WORK/missing" >"$WORK/out" 2>&1; [ $? = 8 ] || fail "missing device: not 8"
    "$FSCK" --help >"$WORK/out" 2>&1; [ $? = 0 ] || fail "--help: not 0"
    ;;
json)
    fresh; populate
    "$CORRUPT" "$IMG" nlink "$(ino /big.bin)" 3 || fail corrupt
    "$FSCK" -n --json "$IMG" >"$WORK/out" 2>"$WORK/err"; rc=$?
    [ $rc = 4 ] || fail "json -n exited $rc"
    python3 - "$WORK/out" <<'EOF' || fail "bad JSON report: $(cat "$WORK/out")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["exit"] == 4 and r["device"].endswith("img"), r
assert [p["pass"] for p in r["passes"]] == list(range(7)), r["passes"]
assert any(p["code"] == "nlink" and not p["fixed"] and p["pass"] == 5 for p in r["problems"]), r["problems"]
EOF
    ;;
*)
    fail "unknown case"
    ;;
esac
echo "ok $CASE"
