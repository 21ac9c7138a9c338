#!/bin/sh
# Extracts the ELF vmlinux from a bzImage whose payload is LZ4-compressed
# (Debian's cloud kernel).  The payload's place comes from the setup header
# (payload_offset at 0x248, payload_length at 0x24c, both relative to the
# protected-mode code that starts after (setup_sects + 1) * 512 bytes).
# Usage: extract-vmlinux.sh BZIMAGE OUTPUT
set -eu

[ $# -eq 2 ] || { echo "usage: $0 BZIMAGE OUTPUT" >&2; exit 2; }
bzimage=$1
out=$2

le32() { od -An -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }
byte() { od -An -t u1 -j "$2" -N 1 "$1" | tr -d ' '; }

[ "$(dd if="$bzimage" bs=1 skip=514 count=4 2>/dev/null)" = "HdrS" ] ||
	{ echo "$bzimage: no HdrS setup header: not a bzImage" >&2; exit 1; }
setup_sects=$(byte "$bzimage" 497)
[ "$setup_sects" -eq 0 ] && setup_sects=4
pm_start=$(( (setup_sects + 1) * 512 ))
payload_offset=$(le32 "$bzimage" 584)
payload_length=$(le32 "$bzimage" 588)
[ "$payload_length" -gt 0 ] || { echo "$bzimage: setup header has no payload" >&2; exit 1; }

magic=$(od -An -t x1 -j $((pm_start + payload_offset)) -N 4 "$bzimage" | tr -d ' ')
[ "$magic" = "02214c18" ] ||
	{ echo "$bzimage: payload is not an LZ4 legacy frame (magic $magic)" >&2; exit 1; }
command -v lz4 >/dev/null || { echo "lz4 not installed (apt-get install lz4)" >&2; exit 1; }

tmp=$out.tmp.$$
trap 'rm -f "$tmp"' EXIT
# The kernel build appends the uncompressed size (4 bytes) to the frame;
# lz4 stops at the end of the legacy frame's blocks and warns about it.
tail -c +$((pm_start + payload_offset + 1)) "$bzimage" | head -c "$payload_length" |
	lz4 -dc 2>/dev/null >"$tmp" || true
[ "$(od -An -c -N 4 "$tmp" | tr -d ' ')" = "177ELF" ] ||
	{ echo "$bzimage: decompressed payload is not an ELF" >&2; exit 1; }
mv "$tmp" "$out"
trap - EXIT
