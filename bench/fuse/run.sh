#!/bin/bash
# FUSE datastore benchmark: vdfs-fuse against libfuse's passthrough_ll over
# ext4 and against that ext4 itself, all on one ext4 on a loop device, in
# one invocation.  See --help.  Needs root, fio, libfuse3-dev, a C compiler.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/bench/fuse"
build="$root/build"
size=4G
files=100000
dirs=1
repeats=3
runtime=20
workbase=/var/tmp
systems="vdfs passthrough ext4"
workloads="seq_write seq_read rand_read rand_write meta"
fuse_readahead=""
before_build=""

usage() {
    cat <<EOF
usage: $0 [-b BUILD_DIR] [-s SIZE] [-n FILES] [-d DIRS] [-r REPEATS] [-t SECONDS]
          [-w WORK_PARENT] [--systems "vdfs passthrough ext4"] [--fuse-readahead KB]
          [--workloads "seq_write seq_read rand_read rand_write meta"]
          [-B BEFORE_BUILD_DIR] [--quick] [-h]

Runs fio and a create/stat/unlink program against
  vdfs         vdfs-fuse over a vdfs image file on the ext4
  passthrough  libfuse's passthrough_ll example over a directory of the ext4
  ext4         the ext4 itself (on a loop device with direct I/O to its image)
and prints each figure's median over the repeats with the ratios
vdfs/passthrough_ll and vdfs/ext4 against the targets.

  -b DIR       meson build directory with fuse/vdfs-fuse, mkfs/mkfs.vdfs (default $build)
  -s SIZE      sequential file size, fio syntax (default $size)
  -n FILES     files for create/stat/unlink (default $files)
  -d DIRS      spread the files over DIRS directories (default $dirs)
  -r N         repeats; medians are quoted (default $repeats)
  -t SECONDS   run time of each 4 KiB random job (default $runtime)
  -w DIR       where the ext4 image goes; not tmpfs (default $workbase)
  --systems L  subset to run, e.g. "vdfs ext4"
  --workloads L  subset of workloads, e.g. "rand_read rand_write" (the random
               jobs then run on a file fio lays out itself)
  -B DIR       also run the vdfs-fuse of another build as system "before"
               (a second image on the same ext4), so a change is measured
               against its predecessor in one invocation; adds the column
               vdfs/before
  --fuse-readahead KB  set read_ahead_kb of both FUSE mounts (default: the
               kernel's 128, which makes FUSE reads 128 KiB requests)
  --quick      -s 512M -n 5000 -r 1 -t 5: a smoke run of a minute or two

Workloads (fio $(fio --version 2>/dev/null || echo '?')):
  seq write   1 MiB, psync, direct=0, end_fsync=1 (the figure includes
              getting the data to the loop device)
  seq read    1 MiB, psync, direct=0, after sync + drop_caches
  rand read   4 KiB, libaio, iodepth=32, direct=1, time based, on the seq
              file, after sync + drop_caches
  rand write  4 KiB, libaio, iodepth=32, direct=1, time based, end_fsync=1
              passthrough_ll is built with O_DIRECT dropped from its backing
              opens (libfuse gives it unaligned write buffers, so O_DIRECT
              writes fail with EINVAL); its 4 KiB I/O is therefore buffered
              in ext4 below it, which favours it.
  create/stat/unlink   bench/fuse/metaops.c: open(O_CREAT|O_EXCL)+close,
              stat, unlink of FILES empty files, one thread; dentry and
              inode caches dropped before the stat pass and, untimed,
              after every 5000 files of each pass (passthrough_ll keeps a
              descriptor per inode the kernel knows: without the drops it
              fails past the descriptor limit, 20000 in this container)
EOF
}

while (($#)); do
    case "$1" in
    -b) build="$(cd "$2" && pwd)"; shift 2 ;;
    -s) size="$2"; shift 2 ;;
    -n) files="$2"; shift 2 ;;
    -d) dirs="$2"; shift 2 ;;
    -r) repeats="$2"; shift 2 ;;
    -t) runtime="$2"; shift 2 ;;
    -w) workbase="$2"; shift 2 ;;
    --systems) systems="$2"; shift 2 ;;
    --workloads) workloads="$2"; shift 2 ;;
    -B) before_build="$(cd "$2" && pwd)"; shift 2 ;;
    --fuse-readahead) fuse_readahead="$2"; shift 2 ;;
    --quick) size=512M; files=5000; repeats=1; runtime=5; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

die() { echo "run.sh: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (loop device, mounts, drop_caches)"
for tool in fio mkfs.ext4 losetup cc pkg-config python3 fusermount3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -x "$build/fuse/vdfs-fuse" && -x "$build/mkfs/mkfs.vdfs" ]] ||
    die "$build has no fuse/vdfs-fuse or mkfs/mkfs.vdfs (ninja -C BUILD fuse/vdfs-fuse mkfs/mkfs.vdfs, or -b)"
if [[ -n "$before_build" ]]; then
    [[ -x "$before_build/fuse/vdfs-fuse" ]] || die "$before_build has no fuse/vdfs-fuse"
    [[ " $systems " == *" before "* ]] || systems="$systems before"
fi
for w in $workloads; do
    [[ " seq_write seq_read rand_read rand_write meta " == *" $w "* ]] || die "unknown workload '$w'"
done
[[ "$(stat -f -c %T "$workbase")" != tmpfs ]] || die "$workbase is tmpfs; give -w a disk-backed directory"
[[ "$repeats" =~ ^[1-9][0-9]*$ && "$runtime" =~ ^[1-9][0-9]*$ && "$files" =~ ^[1-9][0-9]*$ ]] ||
    die "-r, -t and -n take positive integers"
size_bytes=$(numfmt --from=iec "${size%B}") || die "bad size '$size'"

work="$(mktemp -d "$workbase/vdfs-fusebench.XXXXXX")"
ext4="$work/ext4"
results="$work/results.tsv"
loopdev=""
cleanup() {
    set +e
    for m in "$work/vdfs" "$work/before" "$work/passthrough"; do
        mountpoint -q "$m" && { umount "$m" || fusermount3 -u -z "$m"; }
    done
    if mountpoint -q "$ext4"; then
        for _ in $(seq 50); do umount "$ext4" 2>/dev/null && break; sleep 0.2; done
    fi
    [[ -n "$loopdev" ]] && losetup -d "$loopdev"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }

# --- tools -------------------------------------------------------------
examples=/usr/share/doc/libfuse3-dev/examples
mkdir -p "$work/src"
for f in passthrough_ll.c passthrough_helpers.h; do
    if [[ -f "$examples/$f" ]]; then cp "$examples/$f" "$work/src/"
    elif [[ -f "$examples/$f.gz" ]]; then gunzip -c "$examples/$f.gz" > "$work/src/$f"
    else die "$examples/$f not found (apt-get install libfuse3-dev)"; fi
done
# libfuse hands passthrough_ll write data at an unaligned address, so its
# O_DIRECT writes to ext4 fail with EINVAL.  The one change made to the
# example: its backing opens drop O_DIRECT (see the workload notes).
sed -i -e 's/(fi->flags | O_CREAT) & ~O_NOFOLLOW/(fi->flags | O_CREAT) \& ~(O_NOFOLLOW | O_DIRECT)/' \
    -e 's/open(buf, fi->flags & ~O_NOFOLLOW)/open(buf, fi->flags \& ~(O_NOFOLLOW | O_DIRECT))/' "$work/src/passthrough_ll.c"
[[ $(grep -c 'O_NOFOLLOW | O_DIRECT' "$work/src/passthrough_ll.c") -eq 2 ]] ||
    die "passthrough_ll.c changed upstream: cannot drop O_DIRECT from its opens"
# shellcheck disable=SC2046
cc -O2 -w -o "$work/passthrough_ll" "$work/src/passthrough_ll.c" $(pkg-config --cflags --libs fuse3)
cc -O2 -Wall -Wextra -o "$work/metaops" "$here/metaops.c" -lpthread

# --- the ext4 everything lives on ---------------------------------------
image_bytes=$((size_bytes * 3 + (16 << 30)))
truncate -s "$image_bytes" "$work/ext4.img"
mkfs.ext4 -q -F "$work/ext4.img"
# Direct I/O from the loop device to its image: the host's page cache
# would otherwise hold a second copy and drop_caches would not be enough.
loopdev=$(losetup -f --show --direct-io=on "$work/ext4.img")
mkdir -p "$ext4" "$work/vdfs" "$work/before" "$work/passthrough"
mount "$loopdev" "$ext4"
mkdir -p "$ext4/plain" "$ext4/under-passthrough"

# Enough descriptors for the metadata run whatever the image size (mkfs's
# default is one per 256 KiB, 65536 for this image).
"$build/mkfs/mkfs.vdfs" -q -N $((files + 4096)) "$ext4/vdfs.img" $((size_bytes * 2 + (8 << 30)))
"$build/fuse/vdfs-fuse" "$ext4/vdfs.img" "$work/vdfs"
if [[ -n "$before_build" ]]; then
    "$build/mkfs/mkfs.vdfs" -q -N $((files + 4096)) "$ext4/before.img" $((size_bytes * 2 + (8 << 30)))
    "$before_build/fuse/vdfs-fuse" "$ext4/before.img" "$work/before"
fi
# passthrough_ll keeps a file descriptor open per inode it knows: without a
# higher limit it fails the 100k-file run with EBADF/EMFILE.
ulimit -n "$(ulimit -Hn)"
"$work/passthrough_ll" -o source="$ext4/under-passthrough" "$work/passthrough"
if [[ -n "$fuse_readahead" ]]; then
    [[ "$fuse_readahead" =~ ^[1-9][0-9]*$ ]] || die "--fuse-readahead takes KiB"
    for m in "$work/vdfs" "$work/before" "$work/passthrough"; do
        mountpoint -q "$m" || continue
        dev=$(awk -v m="$m" '$5 == m {print $3}' /proc/self/mountinfo)
        [[ -n "$dev" ]] || die "$m: not in /proc/self/mountinfo"
        echo "$fuse_readahead" > "/sys/class/bdi/$dev/read_ahead_kb"
    done
fi

dir_of() {
    case "$1" in
    vdfs) echo "$work/vdfs" ;;
    before) echo "$work/before" ;;
    passthrough) echo "$work/passthrough" ;;
    ext4) echo "$ext4/plain" ;;
    esac
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
wanted() { [[ " $workloads " == *" $1 "* ]]; }

# fio_job NAME FILE extra-args... -> prints the figure (MiB/s or IOPS)
fio_job() {
    local name="$1" file="$2"; shift 2
    local out="$work/fio-$name.json"
    fio --name="$name" --filename="$file" --output-format=json --output="$out" "$@" >/dev/null
    python3 - "$out" "$name" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
kind = "read" if "read" in sys.argv[2] else "write"
io = job[kind]
print(f"{io['bw_bytes'] / 1048576:.1f}" if sys.argv[2].startswith("seq") else f"{io['iops']:.0f}")
PY
}

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$results"; }

run_system() {
    local sys="$1" rep="$2" dir file
    dir="$(dir_of "$sys")"
    file="$dir/fio.dat"
    log "repeat $rep: $sys"
    if wanted seq_write; then
        record "$rep" "$sys" seq_write "$(fio_job seqwrite "$file" --rw=write --bs=1M --size="$size" \
            --ioengine=psync --direct=0 --end_fsync=1)"
        drop_caches
    fi
    if wanted seq_read; then
        record "$rep" "$sys" seq_read "$(fio_job seqread "$file" --rw=read --bs=1M --size="$size" \
            --ioengine=psync --direct=0)"
        drop_caches
    fi
    if [[ ! -f "$file" ]] && { wanted rand_read || wanted rand_write; }; then
        # Without the sequential jobs the file is laid out here (not timed).
        fio --name=layout --filename="$file" --rw=write --bs=1M --size="$size" --ioengine=psync \
            --output=/dev/null >/dev/null
        drop_caches
    fi
    wanted rand_read && record "$rep" "$sys" rand_read "$(fio_job randread "$file" --rw=randread --bs=4k \
        --size="$size" --ioengine=libaio --iodepth=32 --direct=1 --time_based --runtime="$runtime")"
    wanted rand_write && record "$rep" "$sys" rand_write "$(fio_job randwrite "$file" --rw=randwrite --bs=4k \
        --size="$size" --ioengine=libaio --iodepth=32 --direct=1 --time_based --runtime="$runtime" --end_fsync=1)"
    rm -f "$file"
    if wanted meta; then
        mkdir -p "$dir/meta"
        "$work/metaops" "$dir/meta" "$files" "$dirs" 1 --drop --drop-every 5000 > "$work/meta.out"
        while read -r phase rate; do record "$rep" "$sys" "$phase" "$rate"; done < "$work/meta.out"
        rmdir "$dir/meta"
    fi
    sync
}

log "workloads: $workloads; systems: $systems"
log "FUSE read_ahead_kb ${fuse_readahead:-kernel default}; size $size, $files files in $dirs dir(s), $repeats repeat(s), ${runtime}s random jobs, load: $(uptime)"
: > "$results"
for ((rep = 1; rep <= repeats; rep++)); do
    for sys in $systems; do
        run_system "$sys" "$rep"
    done
    log "load after repeat $rep: $(uptime)"
done

python3 - "$results" "$size" "$files" "$dirs" "$repeats" "$runtime" <<'PY'
import statistics, sys
from collections import defaultdict
path, size, files, dirs, repeats, runtime = sys.argv[1:]
vals = defaultdict(list)
for line in open(path):
    rep, system, metric, value = line.split("\t")
    vals[(system, metric)].append(float(value))
metrics = [("seq_write", "MiB/s", 0.90), ("seq_read", "MiB/s", 0.90),
           ("rand_read", "IOPS", 0.80), ("rand_write", "IOPS", 0.80),
           ("create", "ops/s", 0.50), ("stat", "ops/s", 0.50), ("unlink", "ops/s", 0.50)]
before = any(system == "before" for system, _ in vals)
def med(system, metric):
    v = vals.get((system, metric))
    return statistics.median(v) if v else None
def fmt(x):
    return "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"
def ratio(a, b):
    return "-" if a is None or not b else f"{100 * a / b:.0f}%"
print(f"# size {size}, {files} files in {dirs} dir(s), medians of {repeats}, random jobs {runtime}s")
extra_head = f" {'before':>9} | {'vdfs/before':>11} |" if before else ""
extra_rule = f"{'-'*11}|{'-'*13}|" if before else ""
print(f"| {'workload':<12} | {'unit':<5} | {'vdfs':>9} | {'passthrough_ll':>14} | {'ext4':>9} "
      f"| {'vdfs/pt_ll':>10} | {'target':>6} | {'vdfs/ext4':>9} | {'ok':<3} |" + extra_head)
print(f"|{'-'*14}|{'-'*7}|{'-'*11}|{'-'*16}|{'-'*11}|{'-'*12}|{'-'*8}|{'-'*11}|{'-'*5}|" + extra_rule)
for metric, unit, target in metrics:
    v, p, e = med("vdfs", metric), med("passthrough", metric), med("ext4", metric)
    if v is None and p is None and e is None:
        continue
    ok = "-" if v is None or not p else ("yes" if v >= target * p else "NO")
    extra = ""
    if before:
        b = med("before", metric)
        extra = f" {fmt(b):>9} | {ratio(v, b):>11} |"
    print(f"| {metric:<12} | {unit:<5} | {fmt(v):>9} | {fmt(p):>14} | {fmt(e):>9} "
          f"| {ratio(v, p):>10} | {'>=' + str(int(target * 100)) + '%':>6} | {ratio(v, e):>9} | {ok:<3} |" + extra)
print("# all runs (in repeat order):")
for (system, metric), v in sorted(vals.items()):
    print(f"#   {system:<12} {metric:<11} " + " ".join(fmt(x) for x in v))
PY
