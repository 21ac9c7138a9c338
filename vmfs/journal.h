/* The per-host redo journal (internal to libvdfs, also used by fsck). */
#ifndef VDFS_JOURNAL_H
#define VDFS_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "device.h"
#include "format.h"

/* Walks the journal of `slot` from its header: every complete transaction
 * (all descriptor groups intact, last one flagged VDFS_JDESC_LAST, images
 * matching images_csum, sequence numbers consecutive from start_seq) is
 * counted and, when `apply`, its images are written to their addresses.
 * Stops at the first group that is not intact.  On return *next_seq is the
 * sequence number after the last complete transaction.  Returns the number
 * of complete transactions, or -EIO if the header itself is unreadable. */
int vdfs_journal_replay(struct vdfs_dev *dev, const struct vdfs_super *sb, uint32_t slot, bool apply,
                        uint64_t *next_seq);

/* Marks the journal of `slot` empty: header start_block 1, start_seq
 * next_seq, flushed.  Only after the replayed images are durable. */
int vdfs_journal_reset(struct vdfs_dev *dev, const struct vdfs_super *sb, uint32_t slot, uint64_t next_seq,
                       const uint8_t host_uuid[VDFS_UUID_SIZE]);

#endif
