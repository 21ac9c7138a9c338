/* The blktest disk contract shared with guest/tests/blkcheck.py and
 * documented in docs/guest.md.  Sectors are 512 bytes; o is a byte offset
 * from the start of the disk; words are 64-bit little endian. */
#ifndef GUEST_BLK_LAYOUT_H
#define GUEST_BLK_LAYOUT_H

/* Host-prepared content: the word at offset o is HOST_PATTERN ^ o. */
#define HOST_PATTERN 0x5644465300000000ull
/* The guest writes GUEST_PATTERN ^ o over WRITE_START .. +WRITE_SECTORS. */
#define GUEST_PATTERN 0xa5a5a5a500000000ull
#define WRITE_START 2048
#define WRITE_SECTORS 256
/* Discarded: each sector afterwards reads as the host pattern or zeros. */
#define DISCARD_START 4096
#define DISCARD_SECTORS 2048
/* Write-zeroes: reads as zeros afterwards. */
#define ZERO_START 8192
#define ZERO_SECTORS 256
#define BLKTEST_MIN_SECTORS (ZERO_START + ZERO_SECTORS)

#endif
