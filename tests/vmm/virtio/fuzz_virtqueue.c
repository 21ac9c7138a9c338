/* libFuzzer target for the split virtqueue (vmm/virtqueue.c) over untrusted
 * guest RAM.  The input is a queue geometry followed by a script of driver
 * writes (RAM bytes, descriptors, avail ring entries and indices, flags)
 * and device calls (pop, unpop, push, publish, enable/disable notify,
 * reset).  Every device call is checked against a reference model of the
 * ring written from the virtio 1.2 rules in vmm/virtqueue.h:
 *
 *   - a popped chain equals the model's walk: same head, segments (all
 *     inside guest RAM), nout/nin, out_len/in_len; readable before writable;
 *   - a refused chain (or geometry) returns -EINVAL with a non-empty reason,
 *     exactly when the model finds a rule broken; the device then stops
 *     using the queue until a reset, as its contract says;
 *   - no more chains in flight than the queue size, never a head twice;
 *   - pop writes nothing to guest RAM; push/publish/notify calls write only
 *     their own used-ring fields, with the values the model expects.
 *
 * Guest RAM is a heap buffer of exactly RAM_SIZE bytes, so any access past
 * it is also caught by AddressSanitizer.  A violation abort()s. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "fuzz_input.h"
#include "virtqueue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM_SIZE 0x10000u
#define MAX_STEPS 512

struct guest_memory {
    uint8_t *base;
    uint64_t size;
};

void *guest_memory_at(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
    if (gpa > mem->size || len > mem->size - gpa)
        return NULL;
    return mem->base + gpa;
}

uint64_t guest_memory_size(const struct guest_memory *mem)
{
    return mem->size;
}

#define CHECK(cond) FUZZ_CHECK("fuzz_virtqueue", stderr, cond)


/* Guest addresses: mostly inside RAM, some straddling its end, some near
 * 2^64 so that addr + len wraps. */
static uint64_t get_gpa(struct input *in)
{
    uint16_t low = get16(in);
    switch (get8(in) & 7) {
    case 6:
        return RAM_SIZE - (low & 0x3ff);
    case 7:
        return UINT64_MAX - low;
    default:
        return low;
    }
}

/* Descriptor and head indices: any byte, or (top bit set) one near the
 * queue size, where off-by-one errors live. */
static uint16_t get_index(struct input *in, uint16_t size)
{
    uint8_t b = get8(in);
    return b & 0x80 ? (uint16_t)(size + (b & 7) - 4) : b;
}

static uint16_t rd16(const uint8_t *ram, uint64_t gpa)
{
    uint16_t v;
    memcpy(&v, ram + gpa, 2);
    return v;
}
static uint32_t rd32(const uint8_t *ram, uint64_t gpa)
{
    uint32_t v;
    memcpy(&v, ram + gpa, 4);
    return v;
}

static bool range_in_ram(uint64_t gpa, uint64_t len)
{
    return gpa <= RAM_SIZE && len <= RAM_SIZE - gpa;
}

/* The model: what the device side of the ring must look like. */
struct model {
    uint16_t size;
    bool event_idx;
    uint64_t desc, avail, used;
    uint16_t last_avail, used_idx, published, signalled;
    bool signalled_valid;
    bool in_flight[VIRTQ_MAX_SIZE];
    unsigned nflight;
    bool broken; /* the device saw -EINVAL: no queue calls until reset */
    int last_popped; /* head the last call popped, for unpop; -1 if none */
    uint16_t driver_avail_idx; /* the driver's shadow of avail->idx */
};

struct expect_seg {
    uint64_t gpa;
    uint32_t len;
    bool writable;
};

/* Walks the chain at the next avail slot.  Returns 1 (chain in `seg`),
 * 0 (ring empty) or -EINVAL. */
static int model_pop(const struct model *m, const uint8_t *ram, unsigned iov_cap,
                     struct expect_seg *seg, unsigned *nseg, uint16_t *head_out)
{
    uint16_t avail_idx = rd16(ram, m->avail + 2);
    uint16_t pending = (uint16_t)(avail_idx - m->last_avail);
    if (pending == 0)
        return 0;
    if (pending > m->size)
        return -EINVAL;
    uint16_t head = rd16(ram, m->avail + 4 + 2ull * (m->last_avail % m->size));
    if (head >= m->size || m->in_flight[head])
        return -EINVAL;
    *head_out = head;
    *nseg = 0;
    bool seen_writable = false;
    uint16_t i = head;
    for (unsigned hops = 1;; hops++) {
        if (hops > m->size)
            return -EINVAL;
        uint64_t d = m->desc + 16ull * i;
        uint64_t addr;
        memcpy(&addr, ram + d, 8);
        uint32_t len = rd32(ram, d + 8);
        uint16_t flags = rd16(ram, d + 12), next = rd16(ram, d + 14);
        if (flags & VIRTQ_DESC_F_INDIRECT)
            return -EINVAL;
        bool writable = flags & VIRTQ_DESC_F_WRITE;
        if (!writable && seen_writable)
            return -EINVAL;
        if (len) {
            if (!range_in_ram(addr, len) || *nseg == iov_cap)
                return -EINVAL;
            seg[*nseg].gpa = addr;
            seg[*nseg].len = len;
            seg[*nseg].writable = writable;
            (*nseg)++;
            seen_writable |= writable;
        }
        if (!(flags & VIRTQ_DESC_F_NEXT))
            return 1;
        if (next >= m->size)
            return -EINVAL;
        i = next;
    }
}

struct harness {
    struct guest_memory mem;
    uint8_t *ram;
    uint8_t *shadow; /* RAM as the driver left it */
    struct virtqueue vq;
    struct model m;
    unsigned iov_cap;
    struct iovec iov[VIRTQ_MAX_SIZE + 1];
};

/* Guest RAM may differ from the driver's shadow only inside
 * [allow_gpa, allow_gpa + allow_len); the shadow then takes it in. */
static void check_writes(struct harness *h, uint64_t allow_gpa, uint64_t allow_len)
{
    if (allow_len == 0) {
        CHECK(memcmp(h->ram, h->shadow, RAM_SIZE) == 0);
        return;
    }
    CHECK(memcmp(h->ram, h->shadow, allow_gpa) == 0);
    uint64_t end = allow_gpa + allow_len;
    CHECK(memcmp(h->ram + end, h->shadow + end, RAM_SIZE - end) == 0);
    memcpy(h->shadow + allow_gpa, h->ram + allow_gpa, allow_len);
}

static void driver_write(struct harness *h, uint64_t gpa, const void *src, size_t len)
{
    if (!range_in_ram(gpa, len))
        return;
    memcpy(h->ram + gpa, src, len);
    memcpy(h->shadow + gpa, src, len);
}

static void check_err(int rc, const char *err)
{
    CHECK(rc == -EINVAL);
    CHECK(err[0] != 0);
    CHECK(strlen(err) < 256);
}

static bool geometry_ok(uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
    if (size == 0 || size > VIRTQ_MAX_SIZE || (size & (size - 1)))
        return false;
    return !(desc & 15) && !(avail & 1) && !(used & 3) && range_in_ram(desc, 16ull * size) &&
           range_in_ram(avail, 6ull + 2ull * size) && range_in_ram(used, 6ull + 8ull * size);
}

/* Enables the queue (again, after a reset); returns whether it is live. */
static bool enable(struct harness *h)
{
    struct model *m = &h->m;
    char err[256] = "";
    int rc = virtqueue_enable(&h->vq, &h->mem, m->size, m->desc, m->avail, m->used, m->event_idx,
                              err, sizeof(err));
    bool ok = geometry_ok(m->size, m->desc, m->avail, m->used);
    if (!ok) {
        check_err(rc, err);
        return false;
    }
    CHECK(rc == 0);
    CHECK(h->vq.ready);
    m->last_avail = m->used_idx = m->published = m->signalled = 0;
    m->signalled_valid = false;
    memset(m->in_flight, 0, sizeof(m->in_flight));
    m->nflight = 0;
    m->broken = false;
    m->last_popped = -1;
    check_writes(h, 0, 0);
    return true;
}

static void device_pop(struct harness *h)
{
    struct model *m = &h->m;
    struct expect_seg seg[VIRTQ_MAX_SIZE + 1];
    unsigned nseg = 0;
    uint16_t head = 0;
    int want = model_pop(m, h->ram, h->iov_cap, seg, &nseg, &head);
    struct virtq_chain c = {.iov = h->iov, .iov_cap = h->iov_cap};
    char err[256] = "";
    int rc = virtqueue_pop(&h->vq, &c, err, sizeof(err));
    check_writes(h, 0, 0);
    m->last_popped = -1;
    if (want < 0) {
        check_err(rc, err);
        m->broken = true;
        return;
    }
    CHECK(rc == want);
    if (rc == 0)
        return;
    CHECK(c.head == head && head < m->size);
    CHECK(c.nout + c.nin == nseg && c.nout + c.nin <= h->iov_cap);
    uint64_t out_len = 0, in_len = 0;
    for (unsigned i = 0; i < nseg; i++) {
        CHECK(seg[i].writable == (i >= c.nout));
        CHECK(h->iov[i].iov_base == h->ram + seg[i].gpa);
        CHECK(h->iov[i].iov_len == seg[i].len);
        CHECK((uint8_t *)h->iov[i].iov_base >= h->ram &&
              h->iov[i].iov_len <= (size_t)(h->ram + RAM_SIZE - (uint8_t *)h->iov[i].iov_base));
        *(seg[i].writable ? &in_len : &out_len) += seg[i].len;
    }
    CHECK(c.out_len == out_len && c.in_len == in_len);
    m->in_flight[head] = true;
    m->nflight++;
    CHECK(m->nflight <= m->size);
    m->last_avail++;
    m->last_popped = head;
}

static void device_unpop(struct harness *h)
{
    struct model *m = &h->m;
    if (m->last_popped < 0)
        return;
    virtqueue_unpop(&h->vq, (uint16_t)m->last_popped);
    check_writes(h, 0, 0);
    m->in_flight[m->last_popped] = false;
    m->nflight--;
    m->last_avail--;
    m->last_popped = -1;
}

static void device_push(struct harness *h, uint8_t pick, uint32_t len)
{
    struct model *m = &h->m;
    if (!m->nflight)
        return;
    unsigned k = pick % m->nflight;
    uint16_t head = 0;
    for (unsigned i = 0; i < m->size; i++)
        if (m->in_flight[i] && k-- == 0) {
            head = (uint16_t)i;
            break;
        }
    virtqueue_push(&h->vq, head, len);
    uint64_t elem = m->used + 4 + 8ull * (m->used_idx % m->size);
    check_writes(h, elem, 8);
    CHECK(rd32(h->ram, elem) == head && rd32(h->ram, elem + 4) == len);
    m->in_flight[head] = false;
    m->nflight--;
    m->used_idx++;
    m->last_popped = -1;
}

static void device_publish(struct harness *h)
{
    struct model *m = &h->m;
    bool want = false, fresh = m->published != m->used_idx;
    if (fresh) {
        if (!m->event_idx) {
            want = !(rd16(h->ram, m->avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
        } else {
            uint16_t event = rd16(h->ram, m->avail + 4 + 2ull * m->size);
            want = !m->signalled_valid ||
                   (uint16_t)(m->used_idx - event - 1) < (uint16_t)(m->used_idx - m->signalled);
            m->signalled = m->used_idx;
            m->signalled_valid = true;
        }
    }
    bool got = virtqueue_publish(&h->vq);
    check_writes(h, m->used + 2, 2);
    CHECK(got == want);
    m->published = m->used_idx;
    if (fresh) /* otherwise the idx is what the driver last wrote there */
        CHECK(rd16(h->ram, m->used + 2) == m->used_idx);
}

static void device_enable_notify(struct harness *h)
{
    struct model *m = &h->m;
    bool got = virtqueue_enable_notify(&h->vq);
    if (m->event_idx) {
        uint64_t avail_event = m->used + 4 + 8ull * m->size;
        check_writes(h, avail_event, 2);
        CHECK(rd16(h->ram, avail_event) == m->last_avail);
    } else {
        check_writes(h, m->used, 2);
        CHECK(rd16(h->ram, m->used) == 0);
    }
    CHECK(got == (rd16(h->ram, m->avail + 2) != m->last_avail));
}

static void device_disable_notify(struct harness *h)
{
    struct model *m = &h->m;
    virtqueue_disable_notify(&h->vq);
    if (m->event_idx) {
        check_writes(h, 0, 0);
    } else {
        check_writes(h, m->used, 2);
        CHECK(rd16(h->ram, m->used) == VIRTQ_USED_F_NO_NOTIFY);
    }
}

/* Input: flags, size, iov_cap, three ring addresses (when flags ask for
 * them), then steps of one opcode byte and its operands. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    static struct harness h;
    if (!h.ram) {
        h.ram = malloc(RAM_SIZE);
        h.shadow = malloc(RAM_SIZE);
        if (!h.ram || !h.shadow)
            abort();
    }
    memset(h.ram, 0, RAM_SIZE);
    memset(h.shadow, 0, RAM_SIZE);
    h.mem.base = h.ram;
    h.mem.size = RAM_SIZE;
    memset(&h.m, 0, sizeof(h.m));
    struct model *m = &h.m;

    uint8_t flags = get8(&in);
    uint16_t size_raw = get16(&in);
    m->event_idx = flags & 1;
    m->size = flags & 2 ? size_raw : (uint16_t)(1u << (size_raw % 9));
    h.iov_cap = 1 + get8(&in) % VIRTQ_MAX_SIZE;
    if (flags & 4) {
        m->desc = get_gpa(&in);
        m->avail = get_gpa(&in);
        m->used = get_gpa(&in);
    } else { /* the layout of virtio 1.2 §2.7 with the rings back to back */
        uint32_t base = (get16(&in) & 0x7ff0u);
        m->desc = base;
        m->avail = base + 16ull * m->size;
        m->used = (m->avail + 6 + 2ull * m->size + 3) & ~3ull;
    }
    if (!enable(&h))
        return 0;

    for (unsigned step = 0; step < MAX_STEPS && in.n; step++) {
        uint8_t op = get8(&in);
        switch (op % 12) {
        case 0: { /* driver writes bytes */
            uint64_t gpa = get_gpa(&in);
            uint8_t len = get8(&in) % 32;
            uint8_t buf[32];
            for (unsigned i = 0; i < len; i++)
                buf[i] = get8(&in);
            driver_write(&h, gpa, buf, len);
            break;
        }
        case 1: { /* driver fills a descriptor */
            uint16_t idx = get8(&in);
            uint8_t d[16];
            uint64_t addr = get_gpa(&in);
            uint16_t len_lo = get16(&in);
            uint8_t len_hi = get8(&in);
            uint32_t len = len_hi & 0x80 ? (uint32_t)len_hi << 24 | len_lo : len_lo;
            uint16_t dflags = get8(&in);
            uint16_t next = get_index(&in, m->size);
            memcpy(d, &addr, 8);
            memcpy(d + 8, &len, 4);
            memcpy(d + 12, &dflags, 2);
            memcpy(d + 14, &next, 2);
            driver_write(&h, m->desc + 16ull * (idx % (m->size ? m->size : 1)), d, 16);
            break;
        }
        case 2: { /* driver makes a head available */
            uint16_t head = get_index(&in, m->size);
            uint8_t b[2];
            memcpy(b, &head, 2);
            driver_write(&h, m->avail + 4 + 2ull * (m->driver_avail_idx % m->size), b, 2);
            m->driver_avail_idx++;
            memcpy(b, &m->driver_avail_idx, 2);
            driver_write(&h, m->avail + 2, b, 2);
            break;
        }
        case 3: { /* driver sets avail->idx to anything */
            m->driver_avail_idx = get16(&in);
            uint8_t b[2];
            memcpy(b, &m->driver_avail_idx, 2);
            driver_write(&h, m->avail + 2, b, 2);
            break;
        }
        case 4: { /* driver sets avail->flags or used_event */
            uint16_t v = get16(&in);
            uint8_t b[2];
            memcpy(b, &v, 2);
            driver_write(&h, v & 0x8000 ? m->avail + 4 + 2ull * m->size : m->avail, b, 2);
            break;
        }
        case 5:
        case 6: {
            unsigned n = 1 + get8(&in) % 8;
            for (unsigned i = 0; i < n && !m->broken; i++)
                device_pop(&h);
            break;
        }
        case 7:
            if (!m->broken)
                device_unpop(&h);
            break;
        case 8: {
            uint8_t pick = get8(&in);
            uint32_t len = get32(&in);
            if (!m->broken)
                device_push(&h, pick, len);
            break;
        }
        case 9:
            if (!m->broken)
                device_publish(&h);
            break;
        case 10:
            if (m->broken)
                break;
            if (get8(&in) & 1)
                device_enable_notify(&h);
            else
                device_disable_notify(&h);
            break;
        case 11: /* device reset: the driver starts its rings over */
            virtqueue_disable(&h.vq);
            CHECK(!h.vq.ready);
            m->driver_avail_idx = 0;
            if (!enable(&h))
                return 0;
            break;
        }
    }
    virtqueue_disable(&h.vq);
    return 0;
}
