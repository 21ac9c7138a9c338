/* Test-side virtio-pci driver (see test_driver.h). */
#include "test_driver.h"

#include <string.h>
#include <time.h>

#include "pci.h"
#include "virtio_pci.h"

static uint32_t conf1(unsigned slot, unsigned off)
{
    return 0x80000000u | slot << 11 | (off & 0xfc);
}

uint32_t tdrv_cfg_read(struct fake_vm *vm, unsigned slot, unsigned off, unsigned len)
{
    fake_vm_write(vm, BUS_PIO, 0xcf8, conf1(slot, off), 4);
    return (uint32_t)fake_vm_read(vm, BUS_PIO, 0xcfc + (off & 3), len);
}

void tdrv_cfg_write(struct fake_vm *vm, unsigned slot, unsigned off, uint32_t val, unsigned len)
{
    fake_vm_write(vm, BUS_PIO, 0xcf8, conf1(slot, off), 4);
    fake_vm_write(vm, BUS_PIO, 0xcfc + (off & 3), val, len);
}

int tdrv_find(struct fake_vm *vm, uint16_t device_id)
{
    for (unsigned s = 0; s < 32; s++)
        if (tdrv_cfg_read(vm, s, 0, 2) == VIRTIO_PCI_VENDOR && tdrv_cfg_read(vm, s, 2, 2) == device_id)
            return (int)s;
    return -1;
}

unsigned tdrv_find_cap(struct fake_vm *vm, unsigned slot, uint8_t id, int cfg_type)
{
    unsigned off = tdrv_cfg_read(vm, slot, PCI_CAPABILITY_LIST, 1);
    for (int hops = 0; off && hops < 48; hops++) {
        if (tdrv_cfg_read(vm, slot, off, 1) == id &&
            (cfg_type < 0 || tdrv_cfg_read(vm, slot, off + 3, 1) == (unsigned)cfg_type))
            return off;
        off = tdrv_cfg_read(vm, slot, off + 1, 1);
    }
    return 0;
}

uint64_t tdrv_common_read(struct tdrv *t, unsigned off, unsigned len)
{
    return fake_vm_read(t->vm, BUS_MMIO, t->bar + VIRTIO_PCI_COMMON_OFF + off, len);
}

void tdrv_common_write(struct tdrv *t, unsigned off, uint64_t val, unsigned len)
{
    fake_vm_write(t->vm, BUS_MMIO, t->bar + VIRTIO_PCI_COMMON_OFF + off, val, len);
}

uint8_t tdrv_status(struct tdrv *t)
{
    return (uint8_t)tdrv_common_read(t, VIRTIO_COMMON_STATUS, 1);
}

void tdrv_reset(struct tdrv *t)
{
    tdrv_common_write(t, VIRTIO_COMMON_STATUS, 0, 1);
    while (tdrv_status(t) != 0)
        ;
    for (unsigned q = 0; q < t->nq; q++) {
        memset(tdrv_ptr(t, t->q[q].desc), 0, 0x3000);
        t->q[q].avail_idx = 0;
    }
}

uint8_t tdrv_setup(struct tdrv *t, struct fake_vm *vm, uint16_t device_id, unsigned nq,
                   uint64_t features)
{
    memset(t, 0, sizeof(*t));
    t->vm = vm;
    t->nq = nq;
    t->ram_next = TDRV_DATA_BASE;
    int slot = tdrv_find(vm, device_id);
    if (slot < 0)
        return 0xff;
    t->slot = (unsigned)slot;
    t->bar = tdrv_cfg_read(vm, t->slot, PCI_BAR0, 4) & ~0xfull;
    for (unsigned q = 0; q < nq; q++) {
        t->q[q].size = TDRV_QSIZE;
        t->q[q].desc = 0x100000 + 0x10000ull * q;
        t->q[q].avail = t->q[q].desc + 0x1000;
        t->q[q].used = t->q[q].desc + 0x2000;
    }
    return tdrv_restart(t, features);
}

uint8_t tdrv_restart(struct tdrv *t, uint64_t features)
{
    tdrv_reset(t);
    tdrv_common_write(t, VIRTIO_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
    tdrv_common_write(t, VIRTIO_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
    for (unsigned w = 0; w < 2; w++) {
        tdrv_common_write(t, VIRTIO_COMMON_GFSELECT, w, 4);
        tdrv_common_write(t, VIRTIO_COMMON_GF, (uint32_t)(features >> (32 * w)), 4);
    }
    uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
    tdrv_common_write(t, VIRTIO_COMMON_STATUS, st, 1);
    if (!(tdrv_status(t) & VIRTIO_STATUS_FEATURES_OK))
        return tdrv_status(t);
    for (unsigned q = 0; q < t->nq; q++) {
        tdrv_common_write(t, VIRTIO_COMMON_Q_SELECT, q, 2);
        tdrv_common_write(t, VIRTIO_COMMON_Q_SIZE, t->q[q].size, 2);
        tdrv_common_write(t, VIRTIO_COMMON_Q_DESCLO, t->q[q].desc, 8);
        tdrv_common_write(t, VIRTIO_COMMON_Q_AVAILLO, (uint32_t)t->q[q].avail, 4);
        tdrv_common_write(t, VIRTIO_COMMON_Q_AVAILHI, t->q[q].avail >> 32, 4);
        tdrv_common_write(t, VIRTIO_COMMON_Q_USEDLO, t->q[q].used, 8);
        tdrv_common_write(t, VIRTIO_COMMON_Q_ENABLE, 1, 2);
    }
    tdrv_common_write(t, VIRTIO_COMMON_STATUS, st | VIRTIO_STATUS_DRIVER_OK, 1);
    return tdrv_status(t);
}

uint64_t tdrv_alloc(struct tdrv *t, uint64_t size)
{
    uint64_t gpa = t->ram_next;
    t->ram_next = (t->ram_next + size + 4095) & ~4095ull;
    memset(tdrv_ptr(t, gpa), 0, size);
    return gpa;
}

void *tdrv_ptr(struct tdrv *t, uint64_t gpa)
{
    return t->vm->ram + gpa;
}

void tdrv_desc(struct tdrv *t, unsigned q, uint16_t idx, uint64_t addr, uint32_t len,
               uint16_t flags, uint16_t next)
{
    uint8_t *d = tdrv_ptr(t, t->q[q].desc + 16ull * idx);
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

void tdrv_publish(struct tdrv *t, unsigned q, uint16_t head)
{
    struct tdrv_queue *tq = &t->q[q];
    uint16_t *ring = tdrv_ptr(t, tq->avail + 4);
    ring[tq->avail_idx % tq->size] = head;
    tq->avail_idx++;
    __atomic_store_n((uint16_t *)tdrv_ptr(t, tq->avail + 2), tq->avail_idx, __ATOMIC_RELEASE);
}

void tdrv_kick(struct tdrv *t, unsigned q)
{
    fake_vm_write(t->vm, BUS_MMIO, t->bar + VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * q, q,
                  2);
}

uint16_t tdrv_used_idx(struct tdrv *t, unsigned q)
{
    return __atomic_load_n((uint16_t *)tdrv_ptr(t, t->q[q].used + 2), __ATOMIC_ACQUIRE);
}

bool tdrv_wait_used(struct tdrv *t, unsigned q, uint16_t target)
{
    for (int i = 0; i < 50000; i++) {
        if ((int16_t)(tdrv_used_idx(t, q) - target) >= 0)
            return true;
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    return false;
}

void tdrv_used_elem(struct tdrv *t, unsigned q, uint16_t i, uint32_t *id, uint32_t *len)
{
    const uint8_t *e = tdrv_ptr(t, t->q[q].used + 4 + 8ull * (i % t->q[q].size));
    memcpy(id, e, 4);
    memcpy(len, e + 4, 4);
}

void tdrv_set_used_event(struct tdrv *t, unsigned q, uint16_t v)
{
    uint16_t *p = tdrv_ptr(t, t->q[q].avail + 4 + 2ull * t->q[q].size);
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
