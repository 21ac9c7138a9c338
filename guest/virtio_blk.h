/* A polled virtio-blk driver with a fixed set of request slots. */
#ifndef GUEST_VIRTIO_BLK_H
#define GUEST_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio.h"
#include "virtio_spec.h"

#define SECTOR_SIZE 512

/* Payload of DISCARD and WRITE_ZEROES. */
struct virtio_blk_range {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct blk_slot;

struct blk_dev {
	struct virtio_pci vp;
	struct virtq vq;
	uint64_t capacity; /* in 512-byte sectors */
	uint32_t size_max, seg_max, blk_size;
	uint32_t max_discard_sectors, max_discard_seg;
	uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
	uint16_t slots, descs_per_slot;
	struct blk_slot *slot;
	uint64_t timeout_ticks;
};

/* Outcomes of blk_run and blk_wait besides the device's status byte. */
#define BLK_TIMEOUT (-1)
#define BLK_REJECTED (-2)

/* Finds the index-th virtio-blk function on bus 0 (0 = first). */
bool blk_find(unsigned index, struct pci_device *out);
/* Brings the device up with `slots` request slots (requests in flight). */
bool blk_open(struct blk_dev *b, const struct pci_device *d, uint16_t slots, uint64_t timeout_ms);
static inline bool blk_has(const struct blk_dev *b, unsigned feature)
{
	return virtio_has(&b->vp, feature);
}
/* Queues a request in a free slot; data is device-written for IN and GET_ID.
 * False (nothing queued) when it would break seg_max/size_max or the slot's
 * descriptor budget. */
bool blk_queue(struct blk_dev *b, uint16_t slot, uint32_t type, uint64_t sector, void *data, uint32_t len);
static inline void blk_publish(struct blk_dev *b)
{
	virtq_publish(&b->vq);
}
/* One completion if there is one: its slot and status byte. */
bool blk_poll(struct blk_dev *b, uint16_t *slot, uint8_t *status);
/* Waits for one completion; false after the timeout. */
bool blk_wait(struct blk_dev *b, uint16_t *slot, uint8_t *status);
/* One request, synchronously: the status byte, BLK_TIMEOUT or BLK_REJECTED. */
int blk_run(struct blk_dev *b, uint32_t type, uint64_t sector, void *data, uint32_t len);

#endif
