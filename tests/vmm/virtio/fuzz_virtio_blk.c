/* libFuzzer target for the virtio-blk device (vmm/virtio_blk.c) through
 * the virtio-pci transport and the virtqueue, against the fake VM and test
 * driver (no KVM).  The disk is an in-memory backend, synchronous or
 * asynchronous (completions through an eventfd, as io_uring's), that
 * checks every operation the device hands it:
 *
 *   - reads and writes: 1..1024 segments, all inside guest RAM, adding up
 *     to the operation's length, a multiple of 512 inside the capacity;
 *   - discard and write-zeroes: a non-empty range inside the capacity;
 *   - nothing that writes reaches a read-only disk.
 *
 * The input is a device setup (read-only, asynchronous, event-idx, queue
 * size, capacity) and a script of driver actions: RAM and descriptor
 * writes, well-formed and sequential requests of any type, avail ring
 * entries and indices, kicks (each waits until the device is idle again),
 * resets, writes to the common configuration registers and any access to
 * the rest of BAR0.  After each kick the used
 * ring must hold only heads below the queue size, no more new entries
 * than chains can be in flight, and the device must not hang.  Anything
 * out of range in guest memory is caught by AddressSanitizer (guest RAM
 * is one heap buffer).  A violation abort()s. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fake_vm.h"
#include "fuzz_input.h"
#include "mem_disk.h"
#include "pci.h"
#include "test_driver.h"
#include "virtio_blk.h"
#include "virtio_pci.h"
#include "virtqueue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WINDOW 0x200000ull /* headers and data */
#define RING_BASE 0x100000ull
#define MAX_STEPS 256
#define MAX_SECTORS 128
#define F(bit) (1ull << (bit))

static FILE *report;

#define CHECK(cond) FUZZ_CHECK("fuzz_virtio_blk", report, cond)


/* Set when a buffer was placed over the rings: the device's own writes
 * (read data, the serial, status bytes) may then make more chains
 * available, as a hostile guest may. */
static bool rings_aliased;

/* Mostly the data window; also the rings themselves, the end of RAM and
 * addresses where addr + len wraps. */
static uint64_t get_gpa(struct input *in)
{
    uint16_t low = get16(in);
    switch (get8(in) & 7) {
    case 5:
        rings_aliased = true;
        return RING_BASE + (low & 0x3fff);
    case 6:
        return FAKE_RAM_SIZE - (low & 0x3ff);
    case 7:
        return UINT64_MAX - low;
    default:
        return WINDOW + low;
    }
}

/* ---- the driver side ---- */

struct harness {
    struct fake_vm *vm;
    struct pci_bus *pci;
    struct mem_disk *disk;
    struct tdrv t;
    uint64_t features;
    uint16_t qsize;
    uint16_t used_seen; /* used idx at the last check */
    bool transport_fuzzed; /* common config written since the last setup */
    uint16_t next_desc;    /* after the last request's descriptors */
    uint64_t next_sector;  /* after the last request's data */
};

static bool fd_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

/* Waits until the device's I/O thread has nothing left to do: no kick and
 * no completion pending, checked after taking the device lock (a register
 * read) so that a pass in progress has finished. */
static void wait_idle(struct harness *h)
{
    int kick = h->vm->ioeventfds[0].efd;
    int done = h->disk->async ? h->disk->efd : -1;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        while (fd_readable(kick) || (done >= 0 && fd_readable(done))) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            CHECK(t.tv_sec - t0.tv_sec < 10); /* the device hung */
            sched_yield();
        }
        (void)tdrv_status(&h->t);
        if (!fd_readable(kick) && !(done >= 0 && fd_readable(done)))
            return;
    }
}

static void check_used(struct harness *h)
{
    uint16_t idx = tdrv_used_idx(&h->t, 0);
    uint16_t fresh = (uint16_t)(idx - h->used_seen);
    if (!(tdrv_status(&h->t) & VIRTIO_STATUS_DRIVER_OK))
        return; /* the driver reset or never set up the device */
    if (h->transport_fuzzed)
        return; /* a queue re-enabled by hand starts its used idx over */
    if (rings_aliased)
        return;
    /* The device was idle before the driver's last actions, and at most
     * a ring's worth of chains is available at once. */
    CHECK(fresh <= h->qsize);
    for (uint16_t i = 0; i < fresh && i < h->qsize; i++) {
        uint32_t id, len;
        tdrv_used_elem(&h->t, 0, (uint16_t)(h->used_seen + i), &id, &len);
        CHECK(id < h->qsize);
        CHECK(len >= 1);
    }
    h->used_seen = idx;
}

/* tdrv_setup's steps, with the queue size of the input. */
static void driver_setup(struct harness *h)
{
    struct tdrv *t = &h->t;
    struct tdrv_queue *q = &t->q[0];
    q->size = h->qsize;
    q->desc = RING_BASE;
    q->avail = RING_BASE + 0x1000;
    q->used = RING_BASE + 0x2000;
    h->used_seen = 0;
    h->transport_fuzzed = false;
    CHECK(tdrv_restart(t, h->features) == (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                           VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK));
    wait_idle(h); /* DRIVER_OK kicks the device once */
}

static void ram_write(struct harness *h, uint64_t gpa, const void *src, size_t len)
{
    if (gpa <= FAKE_RAM_SIZE && len <= FAKE_RAM_SIZE - gpa)
        memcpy(h->vm->ram + gpa, src, len);
}

static void desc_write(struct harness *h, uint16_t idx, uint64_t addr, uint32_t len,
                       uint16_t flags, uint16_t next)
{
    tdrv_desc(&h->t, 0, (uint16_t)(idx % h->qsize), addr, len, flags,
              (uint16_t)(next % h->qsize));
}

static const uint32_t request_types[] = {VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH,
                                         VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_DISCARD,
                                         VIRTIO_BLK_T_WRITE_ZEROES, 3};

/* A request as a driver builds it: header, data segments in the
 * direction its type needs (unless the input says otherwise), status. */
static void driver_request(struct harness *h, struct input *in)
{
    uint8_t shape = get8(in);
    uint32_t type = shape & 0x80 ? get32(in) : request_types[shape % 7];
    /* Bit 3: the descriptors follow the previous request's; bit 4: the
     * sector follows its data, as sequential I/O of a real driver (which
     * the device merges). */
    uint16_t first = shape & 0x08 ? h->next_desc : get8(in);
    unsigned nseg = get8(in) % 6;
    uint64_t sector = shape & 0x10 ? h->next_sector : get8(in);
    if (shape & 0x40)
        sector = (uint64_t)get32(in) << 16 | sector;
    uint16_t slot = get8(in);
    uint64_t hdr = WINDOW + 0x10000 + 64ull * slot; /* header, status at +16 */
    uint8_t hbuf[32] = {0};
    memcpy(hbuf, &type, 4);
    memcpy(hbuf + 8, &sector, 8);
    /* discard/write-zeroes segment after the header: sector, count, flags */
    uint64_t seg_sector = get8(in);
    uint32_t seg_count = get8(in) % 16, seg_flags = get8(in) & 0x3 ? 0 : get8(in);
    memcpy(hbuf + 16, &seg_sector, 8);
    memcpy(hbuf + 24, &seg_count, 4);
    ram_write(h, hdr, hbuf, 16);
    ram_write(h, hdr + 32, hbuf + 16, 16);
    bool device_writes = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
    if (shape & 0x20)
        device_writes = !device_writes;
    uint16_t d = first;
    uint64_t data_bytes = 0;
    if (type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES) {
        memcpy(hbuf + 28, &seg_flags, 4);
        ram_write(h, hdr + 32, hbuf + 16, 16);
        desc_write(h, d, hdr, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1));
        d++;
        desc_write(h, d, hdr + 32, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1));
        d++;
    } else {
        desc_write(h, d, hdr, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1));
        d++;
    }
    for (unsigned i = 0; i < nseg; i++) {
        uint8_t sz = get8(in);
        uint32_t len = sz & 0x80 ? (uint32_t)(sz & 0x7f) : 512u * (1 + sz % 8);
        data_bytes += len;
        uint64_t addr = sz & 0x40 ? get_gpa(in) : WINDOW + 0x1000ull * get8(in) % 0x10000;
        desc_write(h, d, addr, len, VIRTQ_DESC_F_NEXT | (device_writes ? VIRTQ_DESC_F_WRITE : 0),
                   (uint16_t)(d + 1));
        d++;
    }
    desc_write(h, d, hdr + 16, 1, VIRTQ_DESC_F_WRITE, 0);
    tdrv_publish(&h->t, 0, (uint16_t)(first % h->qsize));
    h->next_desc = (uint16_t)(d + 1);
    h->next_sector = sector + data_bytes / VIRTIO_BLK_SECTOR_SIZE;
}

static void run_steps(struct harness *h, struct input *in)
{
    for (unsigned step = 0; step < MAX_STEPS && in->n; step++) {
        uint8_t op = get8(in);
        switch (op % 12) {
        case 0: { /* raw bytes */
            uint64_t gpa = get_gpa(in);
            uint8_t buf[32];
            uint8_t len = get_bytes(in, buf, sizeof(buf));
            ram_write(h, gpa, buf, len);
            break;
        }
        case 1: { /* raw descriptor */
            uint16_t idx = get8(in);
            uint64_t addr = get_gpa(in);
            uint16_t len_lo = get16(in);
            uint8_t len_hi = get8(in);
            uint32_t len = len_hi & 0x80 ? (uint32_t)len_hi << 24 | len_lo : len_lo;
            uint16_t flags = get8(in), next = get8(in);
            desc_write(h, idx, addr, len, flags, next);
            break;
        }
        case 2:
        case 3:
        case 4:
            driver_request(h, in);
            break;
        case 5: /* a head made available */
            tdrv_publish(&h->t, 0, get8(in));
            break;
        case 6: { /* avail idx set to anything */
            uint16_t v = get16(in);
            ram_write(h, h->t.q[0].avail + 2, &v, 2);
            break;
        }
        case 7: { /* avail flags or used_event */
            uint16_t v = get16(in);
            if (v & 0x8000)
                tdrv_set_used_event(&h->t, 0, v & 0x7fff);
            else
                ram_write(h, h->t.q[0].avail, &v, 2);
            break;
        }
        case 8:
        case 9:
            tdrv_kick(&h->t, 0);
            wait_idle(h);
            check_used(h);
            break;
        case 10: /* driver reset and set up again */
            tdrv_reset(&h->t);
            driver_setup(h);
            break;
        case 11: { /* a common configuration register, or (width byte's top
                    * bit) any access to BAR0: ISR, device config, notify,
                    * MSI-X table and PBA */
            uint8_t off = get8(in) % VIRTIO_PCI_COMMON_LEN;
            uint8_t width = get8(in);
            unsigned len = 1u << (width % 3);
            uint32_t val = get32(in);
            if (width & 0x80) {
                uint64_t bar_off = get16(in) % VIRTIO_PCI_BAR_SIZE;
                len = 1u << (width % 4);
                if (width & 0x40)
                    fake_vm_write(h->vm, BUS_MMIO, h->t.bar + bar_off, val, len);
                else
                    (void)fake_vm_read(h->vm, BUS_MMIO, h->t.bar + bar_off, len);
            } else if (off + len <= VIRTIO_PCI_COMMON_LEN) {
                tdrv_common_write(&h->t, off, val, len);
            }
            h->transport_fuzzed = true;
            wait_idle(h);
            break;
        }
        }
    }
    tdrv_kick(&h->t, 0);
    wait_idle(h);
    check_used(h);
}

/* One device per (read-only, asynchronous, capacity) setup, each in its
 * own fake VM, created on first use and kept: a reset between inputs is
 * what a driver does anyway, and creating a device per input (a thread,
 * eventfds, 16 MiB of RAM) would make the fuzzer ten times slower. */
static const unsigned capacities[] = {0, 1, 8, MAX_SECTORS};

struct rig {
    struct fake_vm *vm;
    struct pci_bus *pci;
    struct mem_disk *disk;
    unsigned slot;
    uint64_t bar;
};

static struct rig *rig_get(bool readonly, bool async, unsigned capacity_sectors)
{
    static struct rig rigs[2][2][sizeof(capacities) / sizeof(capacities[0])];
    unsigned c = 0;
    while (capacities[c] != capacity_sectors)
        c++;
    struct rig *r = &rigs[readonly][async][c];
    if (r->vm)
        return r;
    r->vm = fake_vm_create(false);
    r->pci = pci_bus_create(&r->vm->svc);
    CHECK(r->pci);
    struct mem_disk *d = mem_disk_create(capacity_sectors, NULL, readonly, async, r->vm->ram, FAKE_RAM_SIZE, report);
    r->disk = d;
    struct disk_config cfg = {.readonly = readonly};
    snprintf(cfg.path, sizeof(cfg.path), "fuzz-disk");
    snprintf(cfg.serial, sizeof(cfg.serial), "FUZZ-SERIAL");
    CHECK(virtio_blk_create_backend(r->pci, &r->vm->svc, &cfg, &d->be) == 0);
    int slot = tdrv_find(r->vm, 0x1040 + VIRTIO_ID_BLOCK);
    CHECK(slot >= 0);
    r->slot = (unsigned)slot;
    r->bar = tdrv_cfg_read(r->vm, r->slot, PCI_BAR0, 4) & ~0xfull;
    return r;
}

/* Every guest address this harness makes (get_gpa, driver_request, the
 * rings) lies in these zones, so clearing them gives each input the same
 * fresh RAM. */
static void clear_zones(uint8_t *ram)
{
    memset(ram + RING_BASE, 0, 0x14000);
    memset(ram + WINDOW, 0, 0x20000);
    memset(ram + FAKE_RAM_SIZE - 0x1000, 0, 0x1000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet_stderr(&report);
    struct input in = {data, size};
    rings_aliased = false;
    uint8_t setup = get8(&in);
    struct harness h = {0};
    h.qsize = (uint16_t)(1u << (1 + get8(&in) % 8));
    struct rig *r = rig_get(setup & 1, setup & 2, capacities[get8(&in) % 4]);
    h.vm = r->vm;
    h.pci = r->pci;
    h.disk = r->disk;
    clear_zones(h.vm->ram);
    memset(h.disk->data, 0, h.disk->capacity);
    h.features = F(VIRTIO_F_VERSION_1) | F(VIRTIO_BLK_F_SEG_MAX) | F(VIRTIO_BLK_F_BLK_SIZE) |
                 F(VIRTIO_BLK_F_FLUSH);
    if (setup & 4)
        h.features |= F(VIRTIO_F_RING_EVENT_IDX);
    h.features |= h.disk->be.readonly ? F(VIRTIO_BLK_F_RO)
                                      : F(VIRTIO_BLK_F_DISCARD) | F(VIRTIO_BLK_F_WRITE_ZEROES);
    h.t.vm = h.vm;
    h.t.nq = 1;
    h.t.slot = r->slot;
    h.t.bar = r->bar;
    h.t.ram_next = TDRV_DATA_BASE;
    driver_setup(&h);
    run_steps(&h, &in);
    /* Leave the device idle and reset, its disk drained, for the next. */
    tdrv_reset(&h.t);
    CHECK(h.disk->nqueued == 0);
    stderr = report;
    return 0;
}
