#!/usr/bin/env python3
"""blkcheck.py's own checks: a freshly prepared disk fails verify (the guest
has not written yet), a disk carrying exactly what blktest leaves behind
passes, and each kind of corruption is caught."""

import os
import struct
import subprocess
import sys
import tempfile

SECTOR = 512


def run(blkcheck, *args):
    return subprocess.run([sys.executable, blkcheck, *args], capture_output=True, text=True).returncode


def write_words(f, first_sector, sectors, base):
    f.seek(first_sector * SECTOR)
    offset = first_sector * SECTOR
    f.write(b''.join(struct.pack('<Q', base ^ (offset + 8 * i)) for i in range(sectors * SECTOR // 8)))


def expect(what, got, want):
    if got != want:
        print('FAIL: %s: exit %d, want %d' % (what, got, want))
        sys.exit(1)
    print('ok: %s' % what)


def main():
    blkcheck = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, 'disk.img')
        expect('prepare 8M', run(blkcheck, 'prepare', disk, '8M'), 0)
        expect('prepared size', os.path.getsize(disk), 8 << 20)
        expect('fresh disk is not a finished blktest', run(blkcheck, 'verify', disk), 1)
        expect('fresh disk passes --read-only', run(blkcheck, 'verify', '--read-only', disk), 0)

        # What a passing blktest leaves: guest pattern, half-discarded range, zeros.
        with open(disk, 'r+b') as f:
            write_words(f, 2048, 256, 0xA5A5A5A500000000)
            f.seek(4096 * SECTOR)
            f.write(bytes(1024 * SECTOR))
            f.seek(8192 * SECTOR)
            f.write(bytes(256 * SECTOR))
        expect('blktest result verifies', run(blkcheck, 'verify', disk), 0)
        expect('--read-only rejects changes', run(blkcheck, 'verify', '--read-only', disk), 1)

        with open(disk, 'r+b') as f:
            f.seek(5000 * SECTOR + 100)
            f.write(b'\x01')
        expect('garbage in the discard range is caught', run(blkcheck, 'verify', disk), 1)
        with open(disk, 'r+b') as f:
            write_words(f, 5000, 1, 0x5644465300000000)
            f.seek(16000 * SECTOR)
            f.write(b'\x00' * 8)
        expect('a changed untouched sector is caught', run(blkcheck, 'verify', disk), 1)

        expect('bad size is refused', run(blkcheck, 'prepare', disk, '12x'), 2)
        expect('too small is refused', run(blkcheck, 'prepare', disk, '1M'), 2)
        expect('missing file is an error', run(blkcheck, 'verify', os.path.join(tmp, 'none')), 2)


if __name__ == '__main__':
    main()
