/* Split virtqueue, device side, over untrusted guest memory. */
#include "virtqueue.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "virtio rings are little-endian; this code maps them directly");

/* The guest writes these areas concurrently: every field is read exactly
 * once, with an atomic load, and decisions use that copy only. */
static inline uint16_t load16(const uint8_t *p)
{
    return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED);
}
static inline void store16(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)(void *)p, v, __ATOMIC_RELAXED);
}
static inline void store32(uint8_t *p, uint32_t v)
{
    __atomic_store_n((uint32_t *)(void *)p, v, __ATOMIC_RELAXED);
}

#define AVAIL_FLAGS 0
#define AVAIL_IDX 2
#define AVAIL_RING 4
#define USED_FLAGS 0
#define USED_IDX 2
#define USED_RING 4

static uint8_t *avail_used_event(const struct virtqueue *vq)
{
    return vq->avail + AVAIL_RING + 2u * vq->size;
}
static uint8_t *used_avail_event(const struct virtqueue *vq)
{
    return vq->used + USED_RING + 8u * vq->size;
}

static void *ring_area(const struct guest_memory *mem, uint64_t gpa, uint64_t len,
                       uint64_t align, const char *what, char *err, size_t errlen)
{
    if (gpa & (align - 1)) {
        snprintf(err, errlen, "%s ring at 0x%llx is not %llu-byte aligned", what,
                 (unsigned long long)gpa, (unsigned long long)align);
        return NULL;
    }
    void *p = gpa + len < gpa ? NULL : guest_memory_at(mem, gpa, len);
    if (!p)
        snprintf(err, errlen, "%s ring [0x%llx, +%llu) is outside guest RAM", what,
                 (unsigned long long)gpa, (unsigned long long)len);
    return p;
}

int virtqueue_enable(struct virtqueue *vq, const struct guest_memory *mem, uint16_t size,
                     uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa, bool event_idx,
                     char *err, size_t errlen)
{
    memset(vq, 0, sizeof(*vq));
    if (size == 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1))) {
        snprintf(err, errlen, "queue size %u is not a power of two <= %u", size,
                 VIRTQ_MAX_SIZE);
        return -EINVAL;
    }
    vq->desc = ring_area(mem, desc_gpa, 16ull * size, 16, "descriptor", err, errlen);
    if (!vq->desc)
        return -EINVAL;
    vq->avail = ring_area(mem, avail_gpa, 6ull + 2ull * size, 2, "available", err, errlen);
    if (!vq->avail)
        return -EINVAL;
    vq->used = ring_area(mem, used_gpa, 6ull + 8ull * size, 4, "used", err, errlen);
    if (!vq->used)
        return -EINVAL;
    vq->mem = mem;
    vq->size = size;
    vq->event_idx = event_idx;
    /* The driver may have initialised the rings; start where they stand
     * (both are zero after a fresh driver setup). */
    vq->last_avail = 0;
    vq->used_idx = 0;
    vq->ready = true;
    return 0;
}

void virtqueue_disable(struct virtqueue *vq)
{
    memset(vq, 0, sizeof(*vq));
}

int virtqueue_pop(struct virtqueue *vq, struct virtq_chain *chain, char *err, size_t errlen)
{
    if (!vq->ready)
        return 0;
    uint16_t avail_idx = __atomic_load_n((uint16_t *)(void *)(vq->avail + AVAIL_IDX),
                                         __ATOMIC_ACQUIRE);
    uint16_t pending = (uint16_t)(avail_idx - vq->last_avail);
    if (pending == 0)
        return 0;
    if (pending > vq->size) {
        snprintf(err, errlen, "available index jumped from %u to %u (queue size %u)",
                 vq->last_avail, avail_idx, vq->size);
        return -EINVAL;
    }
    uint16_t head = load16(vq->avail + AVAIL_RING + 2u * (vq->last_avail & (vq->size - 1)));
    if (head >= vq->size) {
        snprintf(err, errlen, "head index %u >= queue size %u", head, vq->size);
        return -EINVAL;
    }
    if (vq->in_use[head / 64] >> (head % 64) & 1) {
        snprintf(err, errlen, "head index %u made available again while the device still uses it", head);
        return -EINVAL;
    }
    chain->head = head;
    chain->nout = chain->nin = 0;
    chain->out_len = chain->in_len = 0;
    uint16_t i = head;
    for (unsigned hops = 1;; hops++) {
        if (hops > vq->size) {
            snprintf(err, errlen, "chain at head %u has more than %u descriptors (a loop)",
                     head, vq->size);
            return -EINVAL;
        }
        uint8_t d[16];
        memcpy(d, vq->desc + 16u * i, sizeof(d));
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;
        memcpy(&addr, d, 8);
        memcpy(&len, d + 8, 4);
        memcpy(&flags, d + 12, 2);
        memcpy(&next, d + 14, 2);
        if (flags & VIRTQ_DESC_F_INDIRECT) {
            snprintf(err, errlen, "descriptor %u is indirect (feature not offered)", i);
            return -EINVAL;
        }
        bool writable = flags & VIRTQ_DESC_F_WRITE;
        if (!writable && chain->nin) {
            snprintf(err, errlen, "descriptor %u is device-readable after a writable one", i);
            return -EINVAL;
        }
        if (len) {
            void *p = addr + len < addr ? NULL : guest_memory_at(vq->mem, addr, len);
            if (!p) {
                snprintf(err, errlen, "descriptor %u: [0x%llx, +%u) is outside guest RAM", i,
                         (unsigned long long)addr, len);
                return -EINVAL;
            }
            unsigned n = chain->nout + chain->nin;
            if (n == chain->iov_cap) {
                snprintf(err, errlen, "chain at head %u has more than %u segments", head,
                         chain->iov_cap);
                return -EINVAL;
            }
            chain->iov[n].iov_base = p;
            chain->iov[n].iov_len = len;
            if (writable) {
                chain->nin++;
                chain->in_len += len;
            } else {
                chain->nout++;
                chain->out_len += len;
            }
        }
        if (!(flags & VIRTQ_DESC_F_NEXT))
            break;
        if (next >= vq->size) {
            snprintf(err, errlen, "descriptor %u links to index %u >= queue size %u", i, next,
                     vq->size);
            return -EINVAL;
        }
        i = next;
    }
    vq->in_use[head / 64] |= UINT64_C(1) << (head % 64);
    vq->last_avail++;
    return 1;
}

void virtqueue_unpop(struct virtqueue *vq, uint16_t head)
{
    vq->in_use[head / 64] &= ~(UINT64_C(1) << (head % 64));
    vq->last_avail--;
}

void virtqueue_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
    vq->in_use[head / 64] &= ~(UINT64_C(1) << (head % 64));
    uint8_t *e = vq->used + USED_RING + 8u * (vq->used_idx & (vq->size - 1));
    store32(e, head);
    store32(e + 4, len);
    vq->used_idx++;
}

static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtqueue_publish(struct virtqueue *vq)
{
    if (!vq->ready)
        return false;
    if (vq->published == vq->used_idx)
        return false;
    vq->published = vq->used_idx;
    __atomic_store_n((uint16_t *)(void *)(vq->used + USED_IDX), vq->used_idx, __ATOMIC_RELEASE);
    /* The driver's suppression fields must be read after the index store. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!vq->event_idx)
        return !(load16(vq->avail + AVAIL_FLAGS) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    bool valid = vq->signalled_valid;
    uint16_t since = vq->signalled_used;
    vq->signalled_used = vq->used_idx;
    vq->signalled_valid = true;
    return !valid || need_event(load16(avail_used_event(vq)), vq->used_idx, since);
}

bool virtqueue_enable_notify(struct virtqueue *vq)
{
    if (!vq->ready)
        return false;
    if (vq->event_idx)
        store16(used_avail_event(vq), vq->last_avail);
    else
        store16(vq->used + USED_FLAGS, 0);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return load16(vq->avail + AVAIL_IDX) != vq->last_avail;
}

void virtqueue_disable_notify(struct virtqueue *vq)
{
    if (vq->ready && !vq->event_idx)
        store16(vq->used + USED_FLAGS, VIRTQ_USED_F_NO_NOTIFY);
}

size_t iov_copy_from(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t k = iov[i].iov_len - skip;
        if (k > len - done)
            k = len - done;
        memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + skip, k);
        done += k;
        skip = 0;
    }
    return done;
}

size_t iov_copy_to(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t k = iov[i].iov_len - skip;
        if (k > len - done)
            k = len - done;
        memcpy((uint8_t *)iov[i].iov_base + skip, (const uint8_t *)buf + done, k);
        done += k;
        skip = 0;
    }
    return done;
}

int iov_slice(const struct iovec *src, unsigned n, size_t skip, size_t len, struct iovec *dst,
              unsigned dst_cap)
{
    unsigned out = 0;
    for (unsigned i = 0; i < n && len; i++) {
        if (skip >= src[i].iov_len) {
            skip -= src[i].iov_len;
            continue;
        }
        size_t k = src[i].iov_len - skip;
        if (k > len)
            k = len;
        if (out == dst_cap)
            return -1;
        dst[out].iov_base = (uint8_t *)src[i].iov_base + skip;
        dst[out].iov_len = k;
        out++;
        len -= k;
        skip = 0;
    }
    return len ? -1 : (int)out;
}
