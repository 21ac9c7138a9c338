#!/usr/bin/env python3
"""Prepare and verify the disk for the test guest's mode=blktest.

The contract (docs/guest.md, guest/blk_layout.h): sectors are 512 bytes, o is
a byte offset from the start of the disk, words are 64-bit little endian.

  prepare FILE SIZE   every word at offset o becomes 0x5644465300000000 ^ o
  verify FILE         after a blktest run:
      sectors 2048..2303   hold 0xA5A5A5A500000000 ^ o   (guest's write)
      sectors 4096..6143   each sector holds the host pattern or zeros (discard)
      sectors 8192..8447   are zero                      (write-zeroes)
      every other sector   still holds the host pattern
  verify --read-only FILE  the whole disk still holds the host pattern
  verify --no-discard / --no-write-zeroes: those ranges must be untouched
      (for devices that do not offer the feature).

Exit status: 0 verified, 1 content differs, 2 usage or I/O error.
"""

import argparse
import array
import json
import os
import sys

SECTOR = 512
HOST_PATTERN = 0x5644465300000000
GUEST_PATTERN = 0xA5A5A5A500000000
WRITE = (2048, 256)
DISCARD = (4096, 2048)
ZERO = (8192, 256)
MIN_SECTORS = ZERO[0] + ZERO[1]
CHUNK = 1 << 20  # bytes per read/write; a multiple of SECTOR
LOW32 = 1 << 32


def pattern(base, offset, length):
    """Bytes of the words base ^ o for o in [offset, offset + length)."""
    words = array.array('Q')
    o = offset
    end = offset + length
    while o < end:
        # Within one 4 GiB span the high half of o is fixed, so base ^ o is
        # (base ^ high) | low: a plain arithmetic range.
        high = o & ~(LOW32 - 1)
        stop = min(end, high + LOW32)
        first = (base ^ high) | (o - high)
        words.extend(range(first, first + (stop - o), 8))
        o = stop
    if sys.byteorder != 'little':
        words.byteswap()
    return words.tobytes()


def parse_size(text):
    units = {'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30}
    text = text.strip().lower()
    scale = 1
    if text and text[-1] in units:
        scale = units[text[-1]]
        text = text[:-1]
    if not text.isdigit():
        raise ValueError
    return int(text) * scale


def prepare(path, size):
    with open(path, 'wb') as f:
        for offset in range(0, size, CHUNK):
            f.write(pattern(HOST_PATTERN, offset, min(CHUNK, size - offset)))
        f.flush()
        os.fsync(f.fileno())


def expectations(sectors, read_only, discard, write_zeroes):
    """(first sector, count, kind) covering the disk; kind is 'host',
    'guest', 'zero' or 'host-or-zero'."""
    special = []
    if not read_only:
        special.append((WRITE[0], WRITE[1], 'guest'))
        if discard:
            special.append((DISCARD[0], DISCARD[1], 'host-or-zero'))
        if write_zeroes:
            special.append((ZERO[0], ZERO[1], 'zero'))
    out = []
    cursor = 0
    for first, count, kind in special:
        if cursor < first:
            out.append((cursor, first - cursor, 'host'))
        out.append((first, count, kind))
        cursor = first + count
    if cursor < sectors:
        out.append((cursor, sectors - cursor, 'host'))
    return out


def first_bad_sector(data, first_sector, kind):
    """Sector number of the first sector of data not matching kind, or None."""
    offset = first_sector * SECTOR
    zero = bytes(SECTOR)
    if kind == 'zero':
        if data == bytes(len(data)):
            return None
        want = lambda i: zero
    elif kind in ('host', 'guest'):
        base = HOST_PATTERN if kind == 'host' else GUEST_PATTERN
        expected = pattern(base, offset, len(data))
        if data == expected:
            return None
        want = lambda i: expected[i * SECTOR:(i + 1) * SECTOR]
    else:
        expected = pattern(HOST_PATTERN, offset, len(data))
        for i in range(len(data) // SECTOR):
            got = data[i * SECTOR:(i + 1) * SECTOR]
            if got != zero and got != expected[i * SECTOR:(i + 1) * SECTOR]:
                return first_sector + i
        return None
    for i in range(len(data) // SECTOR):
        if data[i * SECTOR:(i + 1) * SECTOR] != want(i):
            return first_sector + i
    return None


def verify(path, read_only, discard, write_zeroes):
    """List of (sector, kind) problems; empty when the disk is as expected."""
    size = os.path.getsize(path)
    if size % SECTOR or size // SECTOR < MIN_SECTORS:
        return [(None, 'size %d is not a multiple of %d of at least %d sectors' % (size, SECTOR, MIN_SECTORS))]
    problems = []
    with open(path, 'rb') as f:
        for first, count, kind in expectations(size // SECTOR, read_only, discard, write_zeroes):
            sector = first
            end = first + count
            while sector < end:
                n = min(end - sector, CHUNK // SECTOR)
                f.seek(sector * SECTOR)
                data = f.read(n * SECTOR)
                if len(data) != n * SECTOR:
                    return problems + [(sector, 'short read')]
                bad = first_bad_sector(data, sector, kind)
                if bad is not None:
                    problems.append((bad, 'expected %s' % kind))
                    break
                sector += n
    return problems


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('prepare', help='write the host pattern over a new or existing FILE of SIZE bytes')
    p.add_argument('file')
    p.add_argument('size', help='bytes, or with a K/M/G suffix; at least %d sectors' % MIN_SECTORS)
    v = sub.add_parser('verify', help='check FILE after a blktest run')
    v.add_argument('file')
    v.add_argument('--read-only', action='store_true', help='the disk was read-only: nothing may have changed')
    v.add_argument('--no-discard', action='store_true', help='DISCARD was not offered: its range is untouched')
    v.add_argument('--no-write-zeroes', action='store_true', help='WRITE_ZEROES was not offered: its range is untouched')
    v.add_argument('--json', action='store_true', help='print the result as JSON')
    args = parser.parse_args(argv)

    try:
        if args.command == 'prepare':
            try:
                size = parse_size(args.size)
            except ValueError:
                print('blkcheck: bad size %r' % args.size, file=sys.stderr)
                return 2
            if size % SECTOR or size // SECTOR < MIN_SECTORS:
                print('blkcheck: size must be a multiple of %d and at least %d bytes' % (SECTOR, MIN_SECTORS * SECTOR),
                      file=sys.stderr)
                return 2
            prepare(args.file, size)
            return 0
        problems = verify(args.file, args.read_only, not args.no_discard, not args.no_write_zeroes)
    except OSError as e:
        print('blkcheck: %s' % e, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({'file': args.file, 'ok': not problems,
                          'problems': [{'sector': s, 'what': w} for s, w in problems]}))
    elif problems:
        for sector, what in problems:
            print('blkcheck: %s: sector %s: %s' % (args.file, sector, what))
    else:
        print('blkcheck: %s: ok' % args.file)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
