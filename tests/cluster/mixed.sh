#!/bin/bash
# Four hosts (four vdfs-fuse mounts of one image) run workload.py at once
# for VDFS_CLUSTER_SECONDS (60): create, write+fsync, truncate, rename,
# unlink, mkdir, rmdir in private and shared directories, and O_EXCL claims
# of names all hosts compete for.  A fifth, read-only mount (-o ro) keeps
# walking the tree and stating every name meanwhile, and half-way through a
# sixth host (vdfsctl) grows the datastore from 2 to 3 GiB.  Then every
# mount, the read-only one too, must show exactly what the per-host logs say
# was fsync'ed, and the grown size; after all unmount, fsck -n is clean and
# a fresh mount shows the same tree.
# Usage: mixed.sh BUILD_ROOT     (VDFS_CLUSTER_SEED picks the op sequence)
. "$(dirname "$0")/lib.sh" "$1"
seconds=${VDFS_CLUSTER_SECONDS:-60}
seed=${VDFS_CLUSTER_SEED:-4}
read -r -a hosts <<<"${VDFS_CLUSTER_HOSTS:-1 2 3 4}"

# A 15 s heartbeat timeout: this test is about what the hosts see, not
# fencing, and this machine's storage has stalled every host's renewal
# past the default 3 s lease at once (all four fenced after a passing run).
hb=hb_timeout_ms=15000

make_image 2G -H 8
for n in "${hosts[@]}"; do mount_host "$n" "$hb"; done

python3 - "$VDFSCTL" "$IMG" "${hosts[@]}" <<'PY' || fail "vdfsctl hosts does not show the four live hosts"
import json, subprocess, sys
ctl, img, hosts = sys.argv[1], sys.argv[2], sys.argv[3:]
slots = json.loads(subprocess.run([ctl, "hosts", "--json", img], check=True, capture_output=True).stdout)
live = sorted(s["host_uuid"] for s in slots if s["state"] == "live")
want = sorted("00000000-0000-4000-8000-%012d" % int(h) for h in hosts)
assert live == want, f"live hosts {live}, expected {want}"
PY

reader=5
mount_host "$reader" "$hb,ro"
mkdir "$(mnt 1)/shared" "$(mnt 1)/shared/claims"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$(mnt 1)/shared"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$(mnt 1)"

blocks_before=$(stat -f -c %b "$(mnt 1)")
echo "seed $seed, $seconds s, hosts ${hosts[*]}"
declare -A wl=()
for n in "${hosts[@]}"; do
    python3 "$HERE/workload.py" --root "$(mnt "$n")" --host "$n" --seed "$seed" --seconds "$seconds" \
        --log "$WORK/log$n" &
    wl[$n]=$!
done
# The reader walks and stats (it opens no file: its read share of a file's
# lock would make the writers' opens EBUSY, as on any host).  Names vanish
# under it (ENOENT), which is fine; it must neither hang nor take the hosts
# down.
(
    while [ ! -e "$WORK/stop-reader" ]; do
        find "$(mnt "$reader")" -printf '%s %m %n\n' >/dev/null 2>&1 || :
        sleep 0.2
    done
) &
reader_pid=$!
(
    sleep $((seconds / 2))
    truncate -s 3G "$IMG" && "$VDFSCTL" grow -q "$IMG" 3G >"$WORK/grow.log" 2>&1
) &
grow_pid=$!
bad=
for n in "${hosts[@]}"; do
    wait "${wl[$n]}" || bad="$bad $n"
done
touch "$WORK/stop-reader"
wait "$reader_pid" || fail "the read-only host's reader loop failed"
wait "$grow_pid" || fail "vdfsctl grow beside the four hosts failed: $(cat "$WORK/grow.log")"
mountpoint -q "$(mnt "$reader")" || fail "the read-only host's mount went away"
[ -z "$bad" ] || fail "workload failed on host(s)$bad (seed $seed)"

# Attribute and entry caches expire within a second: then every host must
# see every other host's durable state.
sleep 1.5
mounts=()
for n in "${hosts[@]}" "$reader"; do mounts+=(--mount "$(mnt "$n")"); done
python3 "$HERE/verify.py" "${mounts[@]}" "$WORK"/log? || fail "the hosts do not show what was fsync'ed (seed $seed)"
# Every host sees 1 GiB more (statfs counts in f_frsize units, %S).
for n in "${hosts[@]}" "$reader"; do
    read -r got unit < <(stat -f -c '%b %S' "$(mnt "$n")")
    [ "$got" = $((blocks_before + (1 << 30) / unit)) ] ||
        fail "host $n sees $got blocks of $unit bytes after the grow, had $blocks_before"
done

for n in "${hosts[@]}" "$reader"; do unmount_host "$n"; done
fsck_clean
mount_host 1 "$hb"
python3 "$HERE/verify.py" --mount "$(mnt 1)" "$WORK"/log? || fail "after remount the tree differs (seed $seed)"
unmount_host 1
fsck_clean
echo PASS
