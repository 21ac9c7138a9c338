/* A split virtqueue (virtio 1.2 §2.7) seen from the device, over untrusted
 * guest memory.  Every descriptor chain is validated before a device sees
 * it: hop limit, indices, guest ranges (through guest_memory_at), direction
 * order, no indirect descriptors (the feature is never offered).  The
 * caller serialises all calls on one queue. */
#ifndef VDFS_VMM_VIRTQUEUE_H
#define VDFS_VMM_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "bus.h"
#include "virtio_spec.h"

#define VIRTQ_MAX_SIZE 256

struct virtqueue {
    const struct guest_memory *mem;
    uint16_t size;
    bool event_idx;
    bool ready;
    uint8_t *desc;  /* host views of the three areas, validated at enable */
    uint8_t *avail;
    uint8_t *used;
    uint16_t last_avail; /* next avail ring slot the device will read */
    uint16_t used_idx;   /* shadow of used->idx, published by virtqueue_publish */
    uint16_t published;  /* used idx the driver can see */
    uint16_t signalled_used; /* used idx at the last interrupt */
    bool signalled_valid;
    /* Heads popped and not yet pushed: a driver that makes one available
     * again before it is used would otherwise get unbounded requests in
     * flight. */
    uint64_t in_use[VIRTQ_MAX_SIZE / 64];
};

/* A validated chain: `nout` device-readable segments followed by `nin`
 * device-writable ones, all inside guest RAM. */
struct virtq_chain {
    uint16_t head;
    unsigned nout, nin;
    uint64_t out_len, in_len;
    struct iovec *iov; /* caller-provided, `iov_cap` entries */
    unsigned iov_cap;
};

/* Maps the rings (size a power of two <= VIRTQ_MAX_SIZE, areas aligned and
 * inside RAM).  Returns 0 or -EINVAL with a reason in `err`. */
int virtqueue_enable(struct virtqueue *vq, const struct guest_memory *mem, uint16_t size,
                     uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa, bool event_idx,
                     char *err, size_t errlen);
void virtqueue_disable(struct virtqueue *vq);

/* Takes the next available chain.  Returns 1 with `chain` filled, 0 when the
 * ring is empty, or -EINVAL when the guest broke the ring (reason in err);
 * the device must then stop using the queue until reset. */
int virtqueue_pop(struct virtqueue *vq, struct virtq_chain *chain, char *err, size_t errlen);
/* Gives back the chain just popped, at `head` (the device could not use it
 * yet). */
void virtqueue_unpop(struct virtqueue *vq, uint16_t head);
/* Records a finished chain in the used ring; visible after virtqueue_publish. */
void virtqueue_push(struct virtqueue *vq, uint16_t head, uint32_t len);
/* Makes pushed entries visible to the driver.  Returns true if the driver
 * asked to be interrupted for them (event-idx or NO_INTERRUPT rules). */
bool virtqueue_publish(struct virtqueue *vq);
/* With event-idx: tells the driver which avail index to kick at next, then
 * returns true if more chains arrived meanwhile (so the device looks again).
 * Without event-idx it toggles VIRTQ_USED_F_NO_NOTIFY to the same effect. */
bool virtqueue_enable_notify(struct virtqueue *vq);
void virtqueue_disable_notify(struct virtqueue *vq);

/* Byte-stream helpers over iovec arrays. */
size_t iov_copy_from(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len);
size_t iov_copy_to(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len);
/* Fills `dst` with the [skip, skip+len) part of `src`; returns the number of
 * entries, or -1 if it needs more than `dst_cap` or the range is too long. */
int iov_slice(const struct iovec *src, unsigned n, size_t skip, size_t len, struct iovec *dst,
              unsigned dst_cap);

#endif
