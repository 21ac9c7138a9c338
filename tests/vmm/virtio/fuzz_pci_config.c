/* libFuzzer target for what a guest can do through PCI configuration space
 * (vmm/pci.c, mechanism #1 on ports 0xCF8-0xCFF) and the virtio-pci modern
 * transport registers (vmm/virtio_pci.c), against the fake VM and test
 * driver (no KVM).  Each input gets a fresh bus with two virtio-blk
 * functions: A with a synchronous in-memory disk, B with an asynchronous
 * one (completions through an eventfd, as io_uring's), so that a reset can
 * meet I/O in flight; and a virtio-net function C (two queues, three
 * vectors) whose switch is never there, so its link stays down and it
 * needs no socket peer.  Their device configs differ (capacities, MAC),
 * which tells them apart when the harness probes an address.  Requests
 * are made on the disks only.
 *
 * The input is a setup byte (ioeventfd available or not) and a script of
 * guest actions: 0xCF8 address writes of any value (disabled, other buses,
 * functions, absent slots, low bits set); data-port accesses of any width
 * at any port offset; BAR sizing and BAR moves (onto the other function,
 * the window's edges, outside it); command register toggles; MSI-X control
 * writes; accesses of any width anywhere in BAR0 (common config with
 * biased values, notify, ISR, device config, MSI-X table and PBA, past
 * them); the VIRTIO_PCI_CAP_PCI_CFG window; and structured sequences:
 * well-formed bring-ups with a request, bring-ups with features the device
 * refuses, an MSI-X interrupt through a masked or unmasked vector, and a
 * reset while requests are in flight.
 *
 * Checks (a violation abort()s):
 *   - a config read of a function that does not exist (enable bit clear,
 *     bus != 0, function != 0, empty slot) returns all-ones; 0xCF8 reads
 *     back as written;
 *   - bytes the PCI and virtio specs make read-only (IDs, class, status,
 *     header type, subsystem, capability pointer, every capability's id
 *     and next, the MSI-X table size, table and PBA locations, the virtio
 *     capabilities' type, BAR, offset and length) never change;
 *   - BAR0 reads never show address bits below its 32 KiB size nor type
 *     bits (32-bit memory), so sizing reads back ~(size - 1); BARs 1-5 read 0;
 *   - a function decodes its BAR exactly where a model of pci.c's stated
 *     rules puts it (memory decoding on, inside the MMIO window, not
 *     overlapping the other function's mapped BAR, else unmapped), and
 *     nowhere else;
 *   - common config: num_queues constant; device_feature shows the offered
 *     features for selects 0 and 1 and 0 above; queue_size reads 0 for a
 *     queue that does not exist; queue_enable reads 0 or 1 and, once 1,
 *     stays 1 with its ring geometry frozen until a reset; MSI-X vectors
 *     read back as a vector of the table or NO_VECTOR; the notify offset
 *     lies inside the notify capability;
 *   - writing 0 to device_status reads back 0 within a bounded number of
 *     reads, with every queue_enable 0 and queue_size back at its maximum;
 *   - FEATURES_OK does not stick when the driver accepted a feature the
 *     device did not offer or left out VERSION_1, and then the device does
 *     not serve its queue;
 *   - after every well-formed bring-up (whatever came before) the device
 *     completes a GET_ID or read request correctly within 5 s;
 *   - MSI-X: an unmasked vector of an enabled table delivers to the irqfd
 *     routed for its (address, data); a masked one sets its pending bit
 *     instead and delivers on unmask; no pending bit beyond the table;
 *   - reading ISR clears it (when no queue can be live);
 *   - device config reads (capacity) are unchanged by writes.
 * AddressSanitizer catches out-of-bounds accesses behind all of this. */
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
#include "layout.h"
#include "pci.h"
#include "test_driver.h"
#include "virtio_blk.h"
#include "virtio_net.h"
#include "virtio_pci.h"
#include "virtqueue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NDEV 3 /* two disks and a NIC */
#define NDISK 2
#define MAX_STEPS 400
#define SECTORS_A 8
#define SECTORS_B 24
#define BAR_SIZE VIRTIO_PCI_BAR_SIZE
#define CONF1_ENABLE 0x80000000u
#define RING_BASE 0x100000ull /* device d's rings at + 0x10000 * d */
#define DATA_BASE 0x400000ull /* device d's buffers at + 0x10000 * d */
#define MSI_ADDR 0xfee00000u
#define F(bit) (1ull << (bit))
#define STATUS_LIVE (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | \
                     VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK)

static FILE *report;

#define CHECK(cond) FUZZ_CHECK("fuzz_pci_config", report, cond)

/* ---- the harness ---- */

struct queue_seen {
    bool enabled; /* seen enabled since the last reset */
    uint16_t size;
    uint64_t desc, driver, device;
};

struct dev {
    unsigned slot;
    bool net;
    uint64_t capacity_sectors;
    uint64_t signature, sig_mask; /* device config bytes 0-7: capacity or MAC */
    char serial[VIRTIO_BLK_ID_BYTES + 1];
    uint64_t bar_assigned;     /* where the "firmware" put BAR0 */
    uint64_t mapped;           /* model: where BAR0 decodes now, 0 = nowhere */
    uint16_t num_queues, queue_max, nvectors;
    uint32_t device_features[2];
    uint8_t msix_cap, pcicfg_cap, notify_cap;
    uint32_t notify_len;
    uint8_t snapshot[PCI_CONFIG_SIZE];
    uint8_t ro[PCI_CONFIG_SIZE]; /* 1: read-only by the specs */
    struct queue_seen q[VIRTIO_PCI_MAX_QUEUES];
    struct tdrv t;
    uint16_t used_seen;        /* used idx after the last request of a bring-up */
    bool live;                 /* set up by the harness and untouched since */
};

struct harness {
    struct fake_vm *vm;
    struct pci_bus *pci;
    struct dev dev[NDEV];
    struct mem_disk *disk[NDISK];
    uint32_t conf1;              /* what the guest last wrote to 0xCF8 */
    uint8_t host_snapshot[PCI_CONFIG_SIZE];
    uint8_t host_ro[PCI_CONFIG_SIZE];
};

/* Config-space reads for the checks: through 0xCF8/0xCFC like any access,
 * then 0xCF8 is given back the guest's value. */
static uint32_t cfg_peek(struct harness *h, unsigned slot, unsigned off, unsigned len)
{
    uint32_t v = tdrv_cfg_read(h->vm, slot, off, len);
    fake_vm_write(h->vm, BUS_PIO, 0xcf8, h->conf1, 4);
    return v;
}

static uint64_t bar_reg_addr(struct harness *h, unsigned d)
{
    return cfg_peek(h, h->dev[d].slot, PCI_BAR0, 4) & ~(uint64_t)(BAR_SIZE - 1);
}

/* pci.c's rule for where a BAR decodes, from what the guest can read. */
static uint64_t bar_wanted(struct harness *h, unsigned d)
{
    if (!(cfg_peek(h, h->dev[d].slot, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY))
        return 0;
    uint64_t a = bar_reg_addr(h, d);
    if (a < LAYOUT_MMIO32_BASE || a + BAR_SIZE > LAYOUT_MMIO32_END)
        return 0;
    return a;
}

/* After a write touching device d's command register or a BAR: a changed
 * placement is tried, and refused if it overlaps the other mapped BAR. */
static void model_remap(struct harness *h, unsigned d)
{
    uint64_t want = bar_wanted(h, d);
    if (want == h->dev[d].mapped)
        return;
    h->dev[d].mapped = 0;
    h->dev[d].live = false;
    if (!want)
        return;
    for (unsigned e = 0; e < NDEV; e++)
        if (e != d && h->dev[e].mapped && want < h->dev[e].mapped + BAR_SIZE &&
            h->dev[e].mapped < want + BAR_SIZE)
            return;
    h->dev[d].mapped = want;
}

static int dev_of_slot(struct harness *h, unsigned slot)
{
    for (unsigned d = 0; d < NDEV; d++)
        if (h->dev[d].slot == slot)
            return (int)d;
    return -1;
}

static int dev_mapped_at(struct harness *h, uint64_t addr)
{
    for (unsigned d = 0; d < NDEV; d++)
        if (h->dev[d].mapped && addr >= h->dev[d].mapped && addr < h->dev[d].mapped + BAR_SIZE)
            return (int)d;
    return -1;
}

static uint64_t signature_at(struct harness *h, uint64_t bar)
{
    return fake_vm_read(h->vm, BUS_MMIO, bar + VIRTIO_PCI_DEVICE_OFF, 8);
}

static uint64_t common_read(struct harness *h, unsigned d, unsigned off, unsigned len)
{
    return fake_vm_read(h->vm, BUS_MMIO, h->dev[d].mapped + off, len);
}

static void common_write(struct harness *h, unsigned d, unsigned off, uint64_t v, unsigned len)
{
    fake_vm_write(h->vm, BUS_MMIO, h->dev[d].mapped + off, v, len);
}

static void forget_queues(struct dev *dv)
{
    memset(dv->q, 0, sizeof(dv->q));
}

/* ---- checks ---- */

static void check_ro(struct harness *h, unsigned slot, const uint8_t *snap, const uint8_t *ro)
{
    for (unsigned dw = 0; dw < PCI_CONFIG_SIZE; dw += 4) {
        if (!(ro[dw] | ro[dw + 1] | ro[dw + 2] | ro[dw + 3]))
            continue;
        uint32_t v = cfg_peek(h, slot, dw, 4);
        for (unsigned i = 0; i < 4; i++)
            if (ro[dw + i])
                CHECK((uint8_t)(v >> (8 * i)) == snap[dw + i]);
    }
}

static void check_bars(struct harness *h, unsigned d)
{
    CHECK((cfg_peek(h, h->dev[d].slot, PCI_BAR0, 4) & (BAR_SIZE - 1)) == 0);
    for (unsigned b = 1; b < PCI_NUM_BARS; b++)
        CHECK(cfg_peek(h, h->dev[d].slot, PCI_BAR0 + 4 * b, 4) == 0);
}

static void check_mapping(struct harness *h)
{
    for (unsigned d = 0; d < NDEV; d++) {
        struct dev *dv = &h->dev[d];
        if (dv->mapped) {
            CHECK((signature_at(h, dv->mapped) & dv->sig_mask) == dv->signature);
        } else {
            uint64_t a = bar_reg_addr(h, d);
            if (a >= LAYOUT_MMIO32_BASE && a + BAR_SIZE <= LAYOUT_MMIO32_END)
                CHECK((signature_at(h, a) & dv->sig_mask) != dv->signature);
        }
    }
}

static bool vector_ok(struct dev *dv, uint16_t v)
{
    return v < dv->nvectors || v == VIRTIO_MSI_NO_VECTOR;
}

/* What can be read of the common configuration without writing it. */
static void check_common(struct harness *h, unsigned d)
{
    struct dev *dv = &h->dev[d];
    if (!dv->mapped)
        return;
    CHECK(common_read(h, d, VIRTIO_COMMON_NUMQ, 2) == dv->num_queues);
    uint32_t dfsel = (uint32_t)common_read(h, d, VIRTIO_COMMON_DFSELECT, 4);
    uint32_t df = (uint32_t)common_read(h, d, VIRTIO_COMMON_DF, 4);
    CHECK(df == (dfsel < 2 ? dv->device_features[dfsel] : 0));
    CHECK(vector_ok(dv, (uint16_t)common_read(h, d, VIRTIO_COMMON_MSIX, 2)));
    uint16_t sel = (uint16_t)common_read(h, d, VIRTIO_COMMON_Q_SELECT, 2);
    uint16_t size = (uint16_t)common_read(h, d, VIRTIO_COMMON_Q_SIZE, 2);
    uint16_t enable = (uint16_t)common_read(h, d, VIRTIO_COMMON_Q_ENABLE, 2);
    if (sel >= dv->num_queues) {
        CHECK(size == 0);
        return;
    }
    CHECK(enable <= 1);
    CHECK(vector_ok(dv, (uint16_t)common_read(h, d, VIRTIO_COMMON_Q_MSIX, 2)));
    uint32_t noff = (uint32_t)common_read(h, d, VIRTIO_COMMON_Q_NOFF, 2);
    CHECK(noff * VIRTIO_PCI_NOTIFY_MULT + 2 <= dv->notify_len);
    struct queue_seen now = {
        .enabled = enable == 1,
        .size = size,
        .desc = common_read(h, d, VIRTIO_COMMON_Q_DESCLO, 8),
        .driver = common_read(h, d, VIRTIO_COMMON_Q_AVAILLO, 8),
        .device = common_read(h, d, VIRTIO_COMMON_Q_USEDLO, 8),
    };
    struct queue_seen *was = &dv->q[sel];
    if (was->enabled) {
        /* Only a reset disables a queue; the geometry is frozen while enabled. */
        CHECK(now.enabled);
        CHECK(now.size == was->size && now.desc == was->desc && now.driver == was->driver &&
              now.device == was->device);
    } else if (now.enabled) {
        *was = now;
    }
}

/* Device config is read-only here: its capacity never changes. */
static void check_device_config(struct harness *h, unsigned d)
{
    if (h->dev[d].mapped)
        CHECK((signature_at(h, h->dev[d].mapped) & h->dev[d].sig_mask) == h->dev[d].signature);
}

/* After the driver wrote 0 to device_status. */
static void check_reset(struct harness *h, unsigned d)
{
    struct dev *dv = &h->dev[d];
    forget_queues(dv);
    dv->live = false;
    if (!dv->mapped)
        return;
    unsigned reads = 0;
    while (common_read(h, d, VIRTIO_COMMON_STATUS, 1) != 0)
        CHECK(++reads < 100000); /* the reset never completed */
    uint16_t sel = (uint16_t)common_read(h, d, VIRTIO_COMMON_Q_SELECT, 2);
    for (unsigned q = 0; q < dv->num_queues; q++) {
        common_write(h, d, VIRTIO_COMMON_Q_SELECT, q, 2);
        CHECK(common_read(h, d, VIRTIO_COMMON_Q_ENABLE, 2) == 0);
        CHECK(common_read(h, d, VIRTIO_COMMON_Q_SIZE, 2) == dv->queue_max);
    }
    common_write(h, d, VIRTIO_COMMON_Q_SELECT, sel, 2);
}

static void check_pba(struct harness *h, unsigned d)
{
    struct dev *dv = &h->dev[d];
    if (!dv->mapped)
        return;
    uint64_t pba = fake_vm_read(h->vm, BUS_MMIO, dv->mapped + VIRTIO_PCI_MSIX_PBA_OFF, 8);
    CHECK((pba >> dv->nvectors) == 0);
}

static void check_all(struct harness *h)
{
    check_mapping(h);
    for (unsigned d = 0; d < NDEV; d++) {
        check_common(h, d);
        check_pba(h, d);
    }
}

/* ---- guest actions ---- */

/* Which function a mechanism #1 address selects, or -1 for none. */
static int conf1_target(struct harness *h, uint32_t a)
{
    unsigned bus = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;
    if (!(a & CONF1_ENABLE) || bus != 0 || fn != 0)
        return -1;
    if (slot == 0)
        return 0;
    return dev_of_slot(h, slot) >= 0 ? (int)slot : -1;
}

static const uint8_t *slot_snapshot(struct harness *h, unsigned slot, const uint8_t **ro)
{
    int d = dev_of_slot(h, slot);
    if (d < 0) {
        *ro = h->host_ro;
        return h->host_snapshot;
    }
    *ro = h->dev[d].ro;
    return h->dev[d].snapshot;
}

/* A guest access to ports 0xCF8-0xCFF. */
static uint32_t conf1_access(struct harness *h, unsigned port, unsigned len, uint32_t val,
                             bool is_write)
{
    if (port == 0 && len == 4) {
        if (is_write) {
            fake_vm_write(h->vm, BUS_PIO, 0xcf8, val, 4);
            h->conf1 = val;
            return 0;
        }
        uint32_t v = (uint32_t)fake_vm_read(h->vm, BUS_PIO, 0xcf8, 4);
        CHECK(v == h->conf1);
        return v;
    }
    if (is_write)
        fake_vm_write(h->vm, BUS_PIO, 0xcf8 + port, val, len);
    uint32_t got = is_write ? 0 : (uint32_t)fake_vm_read(h->vm, BUS_PIO, 0xcf8 + port, len);
    uint32_t ones = len == 4 ? 0xffffffffu : (1u << (8 * len)) - 1;
    if (port < 4) { /* not the data port: nothing of ours answers */
        if (!is_write)
            CHECK(got == ones);
        return got;
    }
    if (port + len > 8) {
        if (!is_write)
            CHECK(got == ones);
        return got;
    }
    int slot = conf1_target(h, h->conf1);
    unsigned reg = (h->conf1 & 0xfc) + (port - 4);
    if (slot < 0) {
        if (!is_write)
            CHECK(got == ones);
        return got;
    }
    const uint8_t *ro;
    const uint8_t *snap = slot_snapshot(h, (unsigned)slot, &ro);
    if (!is_write) {
        for (unsigned i = 0; i < len; i++)
            if (ro[reg + i])
                CHECK((uint8_t)(got >> (8 * i)) == snap[reg + i]);
        return got;
    }
    int d = dev_of_slot(h, (unsigned)slot);
    if (d >= 0) {
        bool remap = false;
        for (unsigned i = 0; i < len; i++) {
            unsigned off = reg + i;
            if ((off >= PCI_COMMAND && off < PCI_COMMAND + 2) ||
                (off >= PCI_BAR0 && off < PCI_BAR0 + 4 * PCI_NUM_BARS))
                remap = true;
        }
        struct dev *dv = &h->dev[d];
        unsigned cfgdata = dv->pcicfg_cap + 16u;
        if (reg < cfgdata + 4 && cfgdata < reg + len) { /* a BAR0 write through the window */
            forget_queues(dv);
            dv->live = false;
        }
        if (remap)
            model_remap(h, (unsigned)d);
        check_ro(h, (unsigned)slot, snap, ro);
        check_bars(h, (unsigned)d);
    } else {
        check_ro(h, (unsigned)slot, snap, ro);
    }
    return got;
}

static void cfg_write(struct harness *h, unsigned slot, unsigned off, uint32_t val, unsigned len)
{
    conf1_access(h, 0, 4, CONF1_ENABLE | slot << 11 | (off & 0xfc), true);
    conf1_access(h, 4 + (off & 3), len, val, true);
}

static uint32_t cfg_read(struct harness *h, unsigned slot, unsigned off, unsigned len)
{
    conf1_access(h, 0, 4, CONF1_ENABLE | slot << 11 | (off & 0xfc), true);
    return conf1_access(h, 4 + (off & 3), len, 0, false);
}

/* An access at BAR0 + off of device d (wherever the model says BAR0
 * decodes; if nowhere, at its BAR register's address, where nothing of d
 * answers).  Returns what a read got. */
static uint64_t bar_access(struct harness *h, unsigned d, uint64_t off, unsigned len, uint64_t val,
                           bool is_write)
{
    uint64_t base = h->dev[d].mapped ? h->dev[d].mapped : bar_reg_addr(h, d);
    uint64_t addr = base + off;
    int e = dev_mapped_at(h, addr);
    if (!is_write) {
        uint64_t v = fake_vm_read(h->vm, BUS_MMIO, addr, len);
        if (e < 0)
            CHECK(v == (len == 8 ? UINT64_MAX : (1ull << (8 * len)) - 1));
        return v;
    }
    fake_vm_write(h->vm, BUS_MMIO, addr, val, len);
    if (e < 0)
        return 0;
    uint64_t o = addr - h->dev[e].mapped;
    if (o < VIRTIO_PCI_COMMON_LEN && o + len <= VIRTIO_PCI_COMMON_LEN) {
        h->dev[e].live = false;
        if (o <= VIRTIO_COMMON_STATUS && VIRTIO_COMMON_STATUS < o + len &&
            (uint8_t)(val >> (8 * (VIRTIO_COMMON_STATUS - o))) == 0)
            check_reset(h, (unsigned)e);
    }
    return 0;
}

/* The firmware's placement again: decoding off, BAR0 back where it was
 * assigned, unused BARs 0, MSI-X off, then decoding on. */
static void firmware_restore(struct harness *h)
{
    for (unsigned d = 0; d < NDEV; d++)
        cfg_write(h, h->dev[d].slot, PCI_COMMAND, PCI_COMMAND_MASTER, 2);
    for (unsigned d = 0; d < NDEV; d++) {
        struct dev *dv = &h->dev[d];
        cfg_write(h, dv->slot, PCI_BAR0, (uint32_t)dv->bar_assigned, 4);
        for (unsigned b = 1; b < PCI_NUM_BARS; b++)
            cfg_write(h, dv->slot, PCI_BAR0 + 4 * b, 0, 4);
        cfg_write(h, dv->slot, dv->msix_cap + 2u, 0, 2);
    }
    for (unsigned d = 0; d < NDEV; d++)
        cfg_write(h, h->dev[d].slot, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
    for (unsigned d = 0; d < NDEV; d++)
        CHECK(h->dev[d].mapped == h->dev[d].bar_assigned);
}

static uint64_t good_features(struct dev *dv)
{
    return ((uint64_t)dv->device_features[1] << 32 | dv->device_features[0]) &
           ~F(VIRTIO_F_RING_EVENT_IDX);
}

static void bring_up(struct harness *h, unsigned d, uint16_t qsize)
{
    firmware_restore(h);
    struct dev *dv = &h->dev[d];
    struct tdrv *t = &dv->t;
    t->vm = h->vm;
    t->slot = dv->slot;
    t->bar = dv->mapped;
    t->nq = dv->num_queues;
    t->ram_next = DATA_BASE + 0x10000ull * d;
    for (unsigned q = 0; q < t->nq; q++) {
        t->q[q].size = qsize;
        t->q[q].desc = RING_BASE + 0x10000ull * d + 0x4000ull * q;
        t->q[q].avail = t->q[q].desc + 0x1000;
        t->q[q].used = t->q[q].desc + 0x2000;
    }
    bar_access(h, d, VIRTIO_COMMON_STATUS, 1, 0, true); /* checked by check_reset */
    uint64_t features = good_features(dv);
    CHECK(tdrv_restart(t, features) == STATUS_LIVE);
    for (unsigned w = 0; w < 2; w++) {
        common_write(h, d, VIRTIO_COMMON_GFSELECT, w, 4);
        CHECK(common_read(h, d, VIRTIO_COMMON_GF, 4) == (uint32_t)(features >> (32 * w)));
    }
    dv->used_seen = 0;
    dv->live = true;
}

/* Publishes a GET_ID (or a read of `sector`) on a live device; returns the
 * status byte's address. */
static uint64_t publish_request(struct harness *h, unsigned d, bool read, unsigned sector,
                                unsigned slot)
{
    struct dev *dv = &h->dev[d];
    struct tdrv *t = &dv->t;
    uint16_t qsize = t->q[0].size;
    uint64_t buf = DATA_BASE + 0x10000ull * d + 0x1000ull * (slot % 8);
    uint8_t hdr[16] = {0};
    uint32_t type = read ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_GET_ID;
    uint64_t sec = sector;
    memcpy(hdr, &type, 4);
    memcpy(hdr + 8, &sec, 8);
    memcpy(tdrv_ptr(t, buf), hdr, 16);
    memset(tdrv_ptr(t, buf + 0x100), 0xa5, 512);
    *(uint8_t *)tdrv_ptr(t, buf + 0x400) = 0xee;
    uint16_t head = (uint16_t)((3u * (slot % 8)) % qsize);
    tdrv_desc(t, 0, head, buf, 16, VIRTQ_DESC_F_NEXT, (uint16_t)((head + 1) % qsize));
    tdrv_desc(t, 0, (uint16_t)((head + 1) % qsize), buf + 0x100,
              read ? 512 : VIRTIO_BLK_ID_BYTES, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
              (uint16_t)((head + 2) % qsize));
    tdrv_desc(t, 0, (uint16_t)((head + 2) % qsize), buf + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
    tdrv_publish(t, 0, head);
    return buf;
}

static void check_request_done(struct harness *h, unsigned d, uint64_t buf, bool read,
                               unsigned sector)
{
    struct dev *dv = &h->dev[d];
    struct tdrv *t = &dv->t;
    CHECK(*(uint8_t *)tdrv_ptr(t, buf + 0x400) == VIRTIO_BLK_S_OK);
    const uint8_t *got = tdrv_ptr(t, buf + 0x100);
    if (read) {
        const uint8_t *want = h->disk[d]->data + (size_t)sector * VIRTIO_BLK_SECTOR_SIZE;
        CHECK(memcmp(got, want, VIRTIO_BLK_SECTOR_SIZE) == 0);
    } else {
        CHECK(memcmp(got, dv->serial, strlen(dv->serial)) == 0);
    }
}

/* One well-formed request on a live device, completed within 5 s. */
static void valid_request(struct harness *h, unsigned d, bool read, unsigned sector)
{
    struct dev *dv = &h->dev[d];
    sector %= (unsigned)dv->capacity_sectors;
    uint64_t buf = publish_request(h, d, read, sector, dv->used_seen);
    tdrv_kick(&dv->t, 0);
    /* Yield to the I/O thread first: tdrv_wait_used sleeps 100 us a poll. */
    uint16_t target = (uint16_t)(dv->used_seen + 1);
    for (unsigned i = 0; i < 2000 && tdrv_used_idx(&dv->t, 0) != target; i++)
        sched_yield();
    CHECK(tdrv_wait_used(&dv->t, 0, target));
    dv->used_seen++;
    check_request_done(h, d, buf, read, sector);
}

static void drain_routes(struct harness *h)
{
    for (unsigned i = 0; i < h->vm->nroutes; i++) {
        eventfd_t ignored;
        eventfd_read(h->vm->routes[i].efd, &ignored);
    }
}

static bool fd_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

/* Some irqfd routed for (addr, data) was signalled (the other function
 * may have been given the same route by the script). */
static bool delivered(struct harness *h, uint64_t addr, uint32_t data)
{
    for (unsigned i = 0; i < h->vm->nroutes; i++)
        if (h->vm->routes[i].addr == addr && h->vm->routes[i].data == data &&
            fd_readable(h->vm->routes[i].efd))
            return true;
    return false;
}

/* An interrupt for queue 0 through MSI-X vector 0, masked (by the entry or
 * the function mask) or not, then unmasked. */
static void msix_scenario(struct harness *h, unsigned d, uint8_t how, uint32_t msi_data)
{
    bring_up(h, d, TDRV_QSIZE);
    struct dev *dv = &h->dev[d];
    uint64_t table = dv->mapped + VIRTIO_PCI_MSIX_TABLE_OFF;
    bool entry_masked = how & 1, function_masked = how & 2;
    uint64_t addr = MSI_ADDR | (how & 0xf0u) << 8 | d << 2;
    fake_vm_write(h->vm, BUS_MMIO, table, addr, 4);
    fake_vm_write(h->vm, BUS_MMIO, table + 4, 0, 4);
    fake_vm_write(h->vm, BUS_MMIO, table + 8, msi_data, 4);
    fake_vm_write(h->vm, BUS_MMIO, table + 12, entry_masked, 4);
    cfg_write(h, dv->slot, dv->msix_cap + 2u, 0x8000u | (function_masked ? 0x4000u : 0), 2);
    common_write(h, d, VIRTIO_COMMON_Q_SELECT, 0, 2);
    common_write(h, d, VIRTIO_COMMON_Q_MSIX, 0, 2);
    if (common_read(h, d, VIRTIO_COMMON_Q_MSIX, 2) != 0)
        return; /* the device may refuse a vector; then it has no interrupt */
    drain_routes(h);
    fake_vm_read(h->vm, BUS_MMIO, dv->mapped + VIRTIO_PCI_ISR_OFF, 1);
    valid_request(h, d, how & 4, how >> 3);
    (void)common_read(h, d, VIRTIO_COMMON_STATUS, 1); /* the I/O thread's pass is over */
    uint64_t pba = fake_vm_read(h->vm, BUS_MMIO, dv->mapped + VIRTIO_PCI_MSIX_PBA_OFF, 8);
    if (!entry_masked && !function_masked) {
        CHECK(delivered(h, addr, msi_data));
        CHECK(!(pba & 1));
        return;
    }
    CHECK(pba & 1);
    if (entry_masked)
        fake_vm_write(h->vm, BUS_MMIO, table + 12, 0, 4);
    if (function_masked)
        cfg_write(h, dv->slot, dv->msix_cap + 2u, 0x8000u, 2);
    pba = fake_vm_read(h->vm, BUS_MMIO, dv->mapped + VIRTIO_PCI_MSIX_PBA_OFF, 8);
    CHECK(!(pba & 1));
    CHECK(delivered(h, addr, msi_data));
}

/* Requests in flight, then a reset; afterwards the device works again. */
static void reset_mid_operation(struct harness *h, unsigned d, uint8_t n, uint8_t how)
{
    bring_up(h, d, TDRV_QSIZE);
    struct dev *dv = &h->dev[d];
    for (unsigned i = 0; i < 1u + n % 8; i++)
        publish_request(h, d, true, i, i);
    tdrv_kick(&dv->t, 0);
    if (how & 1)
        sched_yield();
    if (how & 2) { /* through the VIRTIO_PCI_CAP_PCI_CFG window */
        unsigned cap = dv->pcicfg_cap;
        cfg_write(h, dv->slot, cap + 4, 0, 1);
        cfg_write(h, dv->slot, cap + 8, VIRTIO_COMMON_STATUS, 4);
        cfg_write(h, dv->slot, cap + 12, 1, 4);
        cfg_write(h, dv->slot, cap + 16, 0, 1);
        check_reset(h, d);
    } else {
        bar_access(h, d, VIRTIO_COMMON_STATUS, 1, 0, true);
    }
    bring_up(h, d, TDRV_QSIZE);
    valid_request(h, d, how & 4, n);
}

/* A driver that accepts what was not offered, or no VERSION_1. */
static void bad_features(struct harness *h, unsigned d, uint8_t which)
{
    firmware_restore(h);
    struct dev *dv = &h->dev[d];
    uint64_t f = good_features(dv);
    static const unsigned unoffered[] = {0, 1, 4, 27, 31, 33, 34, 40, 63};
    if (which & 1)
        f &= ~F(VIRTIO_F_VERSION_1);
    else
        f |= F(unoffered[(which >> 1) % 9]);
    struct tdrv *t = &dv->t;
    t->vm = h->vm;
    t->slot = dv->slot;
    t->bar = dv->mapped;
    t->nq = dv->num_queues;
    for (unsigned q = 0; q < t->nq; q++) {
        t->q[q].size = TDRV_QSIZE;
        t->q[q].desc = RING_BASE + 0x10000ull * d + 0x4000ull * q;
        t->q[q].avail = t->q[q].desc + 0x1000;
        t->q[q].used = t->q[q].desc + 0x2000;
    }
    forget_queues(dv);
    dv->live = false;
    uint8_t st = tdrv_restart(t, f);
    CHECK(!(st & VIRTIO_STATUS_FEATURES_OK));
    /* The driver goes on anyway: its queue must not be served. */
    common_write(h, d, VIRTIO_COMMON_Q_SELECT, 0, 2);
    common_write(h, d, VIRTIO_COMMON_Q_DESCLO, t->q[0].desc, 8);
    common_write(h, d, VIRTIO_COMMON_Q_AVAILLO, t->q[0].avail, 8);
    common_write(h, d, VIRTIO_COMMON_Q_USEDLO, t->q[0].used, 8);
    common_write(h, d, VIRTIO_COMMON_Q_ENABLE, 1, 2);
    common_write(h, d, VIRTIO_COMMON_STATUS, st | VIRTIO_STATUS_FEATURES_OK, 1);
    CHECK(!(common_read(h, d, VIRTIO_COMMON_STATUS, 1) & VIRTIO_STATUS_FEATURES_OK));
    dv->used_seen = 0;
    publish_request(h, d, false, 0, 0);
    tdrv_kick(&dv->t, 0);
    (void)common_read(h, d, VIRTIO_COMMON_STATUS, 1);
    sched_yield();
    (void)common_read(h, d, VIRTIO_COMMON_STATUS, 1);
    CHECK(tdrv_used_idx(t, 0) == 0);
}

/* BAR sizing as an OS does it (decoding off or not), then BAR0 put back,
 * or moved somewhere odd. */
static void bar_sizing(struct harness *h, unsigned d, unsigned bar, uint8_t how)
{
    struct dev *dv = &h->dev[d];
    unsigned reg = PCI_BAR0 + 4 * (bar % PCI_NUM_BARS);
    uint16_t cmd = (uint16_t)cfg_read(h, dv->slot, PCI_COMMAND, 2);
    if (how & 1)
        cfg_write(h, dv->slot, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY, 2);
    uint32_t old = cfg_read(h, dv->slot, reg, 4);
    if (how & 2) { /* byte by byte */
        for (unsigned i = 0; i < 4; i++)
            cfg_write(h, dv->slot, reg + i, 0xff, 1);
    } else {
        cfg_write(h, dv->slot, reg, 0xffffffffu, 4);
    }
    uint32_t mask = cfg_read(h, dv->slot, reg, 4);
    if (reg == PCI_BAR0)
        CHECK(mask == (uint32_t)~(BAR_SIZE - 1)); /* 32-bit memory, 32 KiB */
    else
        CHECK(mask == 0); /* unimplemented */
    cfg_write(h, dv->slot, reg, (how & 4) ? cfg_read(h, h->dev[(d + 1) % NDEV].slot, PCI_BAR0, 4)
                                          : old, 4);
    if (how & 1)
        cfg_write(h, dv->slot, PCI_COMMAND, cmd, 2);
}

static uint32_t odd_bar_value(struct harness *h, struct input *in)
{
    uint8_t k = get8(in);
    switch (k % 10) {
    case 0: return (uint32_t)h->dev[0].bar_assigned;
    case 1: return (uint32_t)h->dev[1].bar_assigned;
    case 2: return (uint32_t)LAYOUT_MMIO32_BASE;
    case 3: return (uint32_t)(LAYOUT_MMIO32_END - BAR_SIZE);
    case 4: return (uint32_t)(LAYOUT_MMIO32_END - BAR_SIZE / 2); /* straddles the end */
    case 5: return (uint32_t)(LAYOUT_MMIO32_BASE - BAR_SIZE);
    case 6: return 0;
    case 7: return 0xfffffff0u;
    case 8: return (uint32_t)h->dev[k & 1].bar_assigned + get16(in); /* misaligned */
    default: return get32(in);
    }
}

static const uint16_t common_offsets[] = {
    VIRTIO_COMMON_DFSELECT, VIRTIO_COMMON_DF, VIRTIO_COMMON_GFSELECT, VIRTIO_COMMON_GF,
    VIRTIO_COMMON_MSIX, VIRTIO_COMMON_NUMQ, VIRTIO_COMMON_STATUS, VIRTIO_COMMON_CFGGENERATION,
    VIRTIO_COMMON_Q_SELECT, VIRTIO_COMMON_Q_SIZE, VIRTIO_COMMON_Q_MSIX, VIRTIO_COMMON_Q_ENABLE,
    VIRTIO_COMMON_Q_NOFF, VIRTIO_COMMON_Q_DESCLO, VIRTIO_COMMON_Q_DESCHI, VIRTIO_COMMON_Q_AVAILLO,
    VIRTIO_COMMON_Q_AVAILHI, VIRTIO_COMMON_Q_USEDLO, VIRTIO_COMMON_Q_USEDHI};

static uint64_t biased_value(struct input *in)
{
    static const uint64_t vals[] = {0, 1, 2, 3, 4, 8, 0xb, 0xf, 0x40, 0x80, 0xff, 0x100, 0x7fff,
                                    0x8000, 0xffff, 0x10000, 0xffffffff, 0x100000, 0x101000,
                                    0x102000, F(32), UINT64_MAX};
    uint8_t k = get8(in);
    if (k < 2 * (sizeof(vals) / sizeof(vals[0])))
        return vals[k / 2];
    uint64_t lo = get32(in);
    return lo | (k & 1 ? (uint64_t)get32(in) << 32 : 0);
}

static const uint8_t status_values[] = {
    0, VIRTIO_STATUS_ACKNOWLEDGE, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER,
    VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, STATUS_LIVE,
    VIRTIO_STATUS_DRIVER_OK, VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK,
    VIRTIO_STATUS_FAILED, VIRTIO_STATUS_NEEDS_RESET, 0xff};

static unsigned width(uint8_t w)
{
    return 1u << (w % 4);
}

static void run_steps(struct harness *h, struct input *in)
{
    for (unsigned step = 0; step < MAX_STEPS && in->n; step++) {
        uint8_t op = get8(in);
        unsigned d = get8(in) % NDEV;
        struct dev *dv = &h->dev[d];
        switch (op % 22) {
        case 0: { /* 0xCF8 with any value, often almost a good one */
            uint8_t shape = get8(in);
            uint32_t a;
            if ((shape & 3) == 0) {
                a = get32(in);
            } else {
                uint32_t bus = shape & 8 ? get8(in) : 0;
                uint32_t slot = get8(in) % (shape & 0x10 ? 32u : 4u);
                uint32_t fn = shape & 0x20 ? get8(in) & 7u : 0;
                uint32_t reg = get8(in);
                uint32_t reserved = shape & 0x40 ? (get8(in) & 0x7fu) << 24 : 0;
                a = (shape & 4 ? 0 : CONF1_ENABLE) | reserved | bus << 16 | slot << 11 |
                    fn << 8 | reg;
            }
            conf1_access(h, 0, 4, a, true);
            break;
        }
        case 1: { /* any width at any of ports 0xCF8-0xCFF */
            uint8_t w = get8(in);
            unsigned port = w & 0x80 ? get8(in) % 8 : 4 + get8(in) % 4;
            unsigned len = 1u << (w % 3);
            conf1_access(h, port, len, get32(in), w & 0x40);
            break;
        }
        case 2: { /* a config write where it matters */
            uint8_t k = get8(in), w = get8(in);
            unsigned off;
            switch (k % 8) {
            case 0: off = PCI_COMMAND; break;
            case 1: off = PCI_BAR0 + 4 * (get8(in) % 6); break;
            case 2: off = dv->msix_cap + get8(in) % 12u; break;
            case 3: off = dv->pcicfg_cap + get8(in) % 20u; break;
            case 4: off = get8(in) % 0x40u; break;
            default: off = get8(in); break;
            }
            unsigned len = 1u << (w % 3);
            unsigned slot = w & 0x80 ? 0 : dv->slot;
            if ((off & 3) + len > 4)
                len = 1;
            cfg_write(h, slot, off, get32(in), len);
            break;
        }
        case 3: { /* a config read anywhere */
            uint8_t w = get8(in);
            unsigned off = get8(in), len = 1u << (w % 3);
            if ((off & 3) + len > 4)
                len = 1;
            cfg_read(h, w & 0x80 ? (unsigned)get8(in) % 32 : dv->slot, off, len);
            break;
        }
        case 4: {
            uint8_t bar = get8(in);
            bar_sizing(h, d, bar, get8(in));
            break;
        }
        case 5: { /* BAR0 (or another) moved somewhere odd, any width */
            uint8_t w = get8(in);
            uint32_t v = odd_bar_value(h, in);
            unsigned reg = PCI_BAR0 + 4 * (w & 0x80 ? get8(in) % 6u : 0);
            if (w & 1)
                cfg_write(h, dv->slot, reg + 2, v >> 16, 2);
            else
                cfg_write(h, dv->slot, reg, v, 4);
            break;
        }
        case 6: { /* command register: decoding on and off */
            uint16_t cmd = get16(in);
            cfg_write(h, dv->slot, PCI_COMMAND, cmd, get8(in) & 1 ? 1 : 2);
            break;
        }
        case 7: { /* capability walk */
            CHECK(cfg_read(h, dv->slot, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
            unsigned off = cfg_read(h, dv->slot, PCI_CAPABILITY_LIST, 1);
            unsigned hops = 0, found = 0;
            while (off) {
                CHECK(++hops < 48 && off >= 0x40 && off % 4 == 0);
                uint8_t id = (uint8_t)cfg_read(h, dv->slot, off, 1);
                if (id == PCI_CAP_ID_MSIX) {
                    found |= 1;
                    CHECK((cfg_read(h, dv->slot, off + 2, 2) & 0x7ff) + 1u == dv->nvectors);
                } else if (id == PCI_CAP_ID_VNDR) {
                    uint8_t type = (uint8_t)cfg_read(h, dv->slot, off + 3, 1);
                    CHECK(type >= 1 && type <= 5);
                    found |= 1u << type;
                    if (type != 5) {
                        uint32_t o = cfg_read(h, dv->slot, off + 8, 4);
                        uint32_t l = cfg_read(h, dv->slot, off + 12, 4);
                        CHECK(cfg_read(h, dv->slot, off + 4, 1) == 0);
                        CHECK(o <= BAR_SIZE && l <= BAR_SIZE - o);
                    }
                }
                off = cfg_read(h, dv->slot, off + 1, 1);
            }
            CHECK(found == 0x3f); /* MSI-X and virtio types 1-5 */
            break;
        }
        case 8: { /* MSI-X enable and function mask */
            unsigned off = dv->msix_cap + 2u + (get8(in) & 1);
            uint16_t v = get16(in);
            cfg_write(h, dv->slot, off, off & 1 ? v >> 8 : v, get8(in) & 1 ? 1 : 2);
            break;
        }
        case 9: { /* MSI-X table and PBA, any width, in range or past it */
            uint8_t w = get8(in);
            uint64_t off = (w & 0x80 ? VIRTIO_PCI_MSIX_PBA_OFF + get8(in) % 24u
                                     : VIRTIO_PCI_MSIX_TABLE_OFF + get8(in) % 64u);
            uint64_t v = biased_value(in);
            bar_access(h, d, off, width(w), v, w & 0x40);
            break;
        }
        case 10: { /* a common config register, biased */
            uint8_t w = get8(in);
            unsigned off = w & 0x80 ? get8(in) % VIRTIO_PCI_COMMON_LEN
                                    : common_offsets[get8(in) % 19];
            unsigned len = width(w);
            if (off + len > VIRTIO_PCI_COMMON_LEN)
                len = 1;
            bar_access(h, d, off, len, biased_value(in), true);
            break;
        }
        case 11: { /* a common config read */
            uint8_t w = get8(in);
            unsigned off = get8(in) % VIRTIO_PCI_COMMON_LEN, len = width(w);
            if (off + len > VIRTIO_PCI_COMMON_LEN)
                len = 1;
            bar_access(h, d, off, len, 0, false);
            break;
        }
        case 12: /* device_status */
            bar_access(h, d, VIRTIO_COMMON_STATUS, 1, status_values[get8(in) % 10], true);
            break;
        case 13: { /* feature selects and words */
            uint8_t k = get8(in);
            bar_access(h, d, k & 1 ? VIRTIO_COMMON_GFSELECT : VIRTIO_COMMON_DFSELECT, 4,
                       k & 2 ? get32(in) : (k >> 2) % 3, true);
            bar_access(h, d, VIRTIO_COMMON_GF, 4, k & 0x80 ? get32(in) : good_features(dv) >>
                                                  (k & 0x40 ? 32 : 0), true);
            break;
        }
        case 14: { /* notify, existing queue or not, any width */
            uint8_t w = get8(in);
            uint64_t off = VIRTIO_PCI_NOTIFY_OFF + get8(in) % 40u;
            bar_access(h, d, off, width(w), get16(in), true);
            break;
        }
        case 15: { /* ISR, device config, anywhere else in BAR0 */
            uint8_t w = get8(in);
            uint64_t off;
            switch ((w >> 2) % 4) {
            case 0: off = VIRTIO_PCI_ISR_OFF + get8(in) % 8u; break;
            case 1: off = VIRTIO_PCI_DEVICE_OFF + get8(in) % 72u; break;
            case 2: off = get16(in) % BAR_SIZE; break;
            default: off = BAR_SIZE - 1 - get8(in) % 8u; break;
            }
            unsigned len = width(w);
            uint64_t v = biased_value(in);
            if (off == VIRTIO_PCI_ISR_OFF && !(w & 0x40) && dv->mapped) {
                uint8_t st = (uint8_t)common_read(h, d, VIRTIO_COMMON_STATUS, 1);
                (void)fake_vm_read(h->vm, BUS_MMIO, dv->mapped + off, len);
                uint64_t again = fake_vm_read(h->vm, BUS_MMIO, dv->mapped + off, 1);
                if ((st & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET)) !=
                    VIRTIO_STATUS_DRIVER_OK)
                    CHECK(again == 0);
                break;
            }
            bar_access(h, d, off, len, v, w & 0x40);
            check_device_config(h, d);
            break;
        }
        case 16: { /* the VIRTIO_PCI_CAP_PCI_CFG window into BAR0 */
            static const uint32_t offs[] = {VIRTIO_COMMON_NUMQ, VIRTIO_COMMON_STATUS,
                                            VIRTIO_COMMON_Q_SELECT, VIRTIO_PCI_ISR_OFF,
                                            VIRTIO_PCI_DEVICE_OFF, VIRTIO_PCI_NOTIFY_OFF,
                                            VIRTIO_PCI_MSIX_TABLE_OFF, VIRTIO_PCI_MSIX_PBA_OFF};
            uint8_t k = get8(in);
            unsigned cap = dv->pcicfg_cap;
            uint32_t boff = k & 0x80 ? get32(in) : offs[k % 8];
            uint32_t blen = k & 0x40 ? get32(in) : 1u << ((k >> 3) % 3);
            uint8_t bar = k & 0x20 ? get8(in) : 0;
            cfg_write(h, dv->slot, cap + 4, bar, 1);
            cfg_write(h, dv->slot, cap + 8, boff, 4);
            cfg_write(h, dv->slot, cap + 12, blen, 4);
            if (k & 0x10) {
                uint32_t v = (uint32_t)biased_value(in);
                cfg_write(h, dv->slot, cap + 16, v, 4);
                /* The capability's rules for a window access (virtio 1.2 §4.1.4.9). */
                bool valid = bar == 0 && (blen == 1 || blen == 2 || blen == 4) &&
                             boff % blen == 0 && boff <= BAR_SIZE - blen;
                if (valid && boff <= VIRTIO_COMMON_STATUS && VIRTIO_COMMON_STATUS < boff + blen &&
                    (uint8_t)(v >> (8 * (VIRTIO_COMMON_STATUS - boff))) == 0)
                    check_reset(h, d);
            } else {
                uint32_t v = cfg_read(h, dv->slot, cap + 16, 4);
                if (!(k & 0x60) && boff == VIRTIO_COMMON_NUMQ && blen == 2)
                    CHECK((v & 0xffff) == dv->num_queues);
                if (!(k & 0x60) && boff == VIRTIO_PCI_DEVICE_OFF && blen == 4)
                    CHECK(v == (uint32_t)dv->signature);
            }
            break;
        }
        case 17: { /* a well-formed bring-up and requests (disks) */
            uint8_t k = get8(in);
            bring_up(h, d, (uint16_t)(4u << (k % 7)));
            for (unsigned i = 0; !dv->net && i <= (k >> 3) % 3; i++)
                valid_request(h, d, k & 0x20, get8(in));
            break;
        }
        case 18:
            bad_features(h, d, get8(in));
            break;
        case 19: {
            uint8_t how = get8(in);
            msix_scenario(h, d % NDISK, how, get32(in));
            break;
        }
        case 20: {
            uint8_t n = get8(in);
            reset_mid_operation(h, d % NDISK, n, get8(in));
            break;
        }
        case 21: /* a live device goes on working after whatever came before */
            if (dv->live && !dv->net) {
                bool read = get8(in) & 1;
                valid_request(h, d, read, get8(in));
            } else {
                firmware_restore(h);
            }
            break;
        }
        check_all(h);
    }
}

/* ---- the rig, fresh for every input ---- */

static void mark(uint8_t *ro, unsigned off, unsigned len)
{
    for (unsigned i = off; i < off + len && i < PCI_CONFIG_SIZE; i++)
        ro[i] = 1;
}

static void snapshot(struct harness *h, unsigned slot, uint8_t *snap, uint8_t *ro)
{
    for (unsigned off = 0; off < PCI_CONFIG_SIZE; off += 4)
        pci_put32(snap + off, cfg_peek(h, slot, off, 4));
    mark(ro, PCI_VENDOR_ID, 4);
    mark(ro, PCI_STATUS, 2);
    mark(ro, PCI_REVISION_ID, 4);
    mark(ro, PCI_HEADER_TYPE, 1);
    mark(ro, PCI_SUBSYSTEM_VENDOR_ID, 4);
    mark(ro, PCI_CAPABILITY_LIST, 1);
    mark(ro, PCI_INTERRUPT_PIN, 1);
    for (unsigned off = snap[PCI_CAPABILITY_LIST], hops = 0; off && hops < 48; hops++) {
        mark(ro, off, 2);
        if (snap[off] == PCI_CAP_ID_MSIX) {
            mark(ro, off + 2, 1);
            mark(ro, off + 4, 8);
        } else if (snap[off] == PCI_CAP_ID_VNDR) {
            mark(ro, off + 2, 2);
            if (snap[off + 3] == 5) {
                mark(ro, off + 5, 3);
            } else {
                mark(ro, off + 4, 12);
                if (snap[off + 3] == 2)
                    mark(ro, off + 16, 4);
            }
        }
        off = snap[off + 1];
    }
}

static uint8_t disk_pattern(size_t at)
{
    return (uint8_t)(at * 7 + at / 512);
}

/* The fake VM (16 MiB of RAM) is kept from one input to the next, the
 * zones the harness uses cleared; the bus and devices are new each time. */
static struct fake_vm *vm_get(bool ioeventfd_fails)
{
    static struct fake_vm *vms[2];
    struct fake_vm *vm = vms[ioeventfd_fails];
    if (!vm)
        vm = vms[ioeventfd_fails] = fake_vm_create(ioeventfd_fails);
    /* The last input's devices took their ioeventfds and MSI routes with them. */
    CHECK(vm->nioeventfds == 0 && vm->nroutes == 0);
    memset(vm->ram + RING_BASE, 0, 0x10000ull * NDEV);
    memset(vm->ram + DATA_BASE, 0, 0x10000ull * NDEV);
    return vm;
}

static void rig_create(struct harness *h, bool ioeventfd_fails)
{
    h->vm = vm_get(ioeventfd_fails);
    h->pci = pci_bus_create(&h->vm->svc);
    CHECK(h->pci);
    static const unsigned sectors[NDISK] = {SECTORS_A, SECTORS_B};
    for (unsigned d = 0; d < NDISK; d++) {
        h->disk[d] = mem_disk_create(sectors[d], disk_pattern, false, d == 1, h->vm->ram, FAKE_RAM_SIZE, report);
        struct disk_config cfg = {.readonly = false};
        snprintf(cfg.path, sizeof(cfg.path), "fuzz-disk-%u", d);
        snprintf(cfg.serial, sizeof(cfg.serial), "FUZZ-PCI-%c", 'A' + d);
        CHECK(virtio_blk_create_backend(h->pci, &h->vm->svc, &cfg, &h->disk[d]->be) == 0);
        struct dev *dv = &h->dev[d];
        dv->slot = d + 1;
        dv->capacity_sectors = sectors[d];
        dv->signature = sectors[d];
        dv->sig_mask = UINT64_MAX;
        snprintf(dv->serial, sizeof(dv->serial), "%s", cfg.serial);
    }
    /* The NIC's switch is never there: the link stays down, the transport
     * works all the same, and no socket peer is needed. */
    struct nic_config nic = {.mac_set = true, .mac = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
    snprintf(nic.portgroup, sizeof(nic.portgroup), "fuzz");
    snprintf(nic.switch_socket, sizeof(nic.switch_socket), "/nonexistent/vdfs-pcifuzz/sw.sock");
    CHECK(virtio_net_create(h->pci, &h->vm->svc, &nic) >= 0);
    struct dev *net = &h->dev[NDISK];
    net->net = true;
    net->slot = NDISK + 1;
    net->signature = 0x554433221102ull;
    net->sig_mask = 0xffffffffffffull;
    h->conf1 = 0;
    fake_vm_write(h->vm, BUS_PIO, 0xcf8, 0, 4);
    snapshot(h, 0, h->host_snapshot, h->host_ro);
    for (unsigned d = 0; d < NDEV; d++) {
        struct dev *dv = &h->dev[d];
        CHECK(cfg_peek(h, dv->slot, PCI_VENDOR_ID, 2) == VIRTIO_PCI_VENDOR);
        CHECK(cfg_peek(h, dv->slot, PCI_DEVICE_ID, 2) ==
              VIRTIO_PCI_DEVICE_BASE + (dv->net ? VIRTIO_ID_NET : VIRTIO_ID_BLOCK));
        snapshot(h, dv->slot, dv->snapshot, dv->ro);
        dv->bar_assigned = bar_reg_addr(h, d);
        dv->mapped = dv->bar_assigned; /* decoding is on from the start */
        dv->msix_cap = (uint8_t)tdrv_find_cap(h->vm, dv->slot, PCI_CAP_ID_MSIX, -1);
        dv->pcicfg_cap = (uint8_t)tdrv_find_cap(h->vm, dv->slot, PCI_CAP_ID_VNDR, 5);
        dv->notify_cap = (uint8_t)tdrv_find_cap(h->vm, dv->slot, PCI_CAP_ID_VNDR, 2);
        CHECK(dv->msix_cap && dv->pcicfg_cap && dv->notify_cap);
        fake_vm_write(h->vm, BUS_PIO, 0xcf8, 0, 4);
        dv->notify_len = pci_get32(dv->snapshot + dv->notify_cap + 12);
        dv->nvectors = (uint16_t)((pci_get16(dv->snapshot + dv->msix_cap + 2) & 0x7ff) + 1);
        dv->num_queues = (uint16_t)common_read(h, d, VIRTIO_COMMON_NUMQ, 2);
        dv->queue_max = (uint16_t)common_read(h, d, VIRTIO_COMMON_Q_SIZE, 2);
        for (unsigned w = 0; w < 2; w++) {
            common_write(h, d, VIRTIO_COMMON_DFSELECT, w, 4);
            dv->device_features[w] = (uint32_t)common_read(h, d, VIRTIO_COMMON_DF, 4);
        }
        common_write(h, d, VIRTIO_COMMON_DFSELECT, 0, 4);
        CHECK(dv->device_features[1] & 1); /* VERSION_1 */
        /* Every MSI-X entry starts masked (PCI: mask bit 1 after reset). */
        for (unsigned v = 0; v < dv->nvectors; v++)
            CHECK(fake_vm_read(h->vm, BUS_MMIO, dv->mapped + VIRTIO_PCI_MSIX_TABLE_OFF + 16 * v +
                                                    12, 4) & 1);
    }
    check_all(h);
}

static void rig_destroy(struct harness *h)
{
    virtio_blk_destroy_all();
    virtio_net_destroy_all();
    pci_bus_destroy(h->pci);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet_stderr(&report);
    struct input in = {data, size};
    static struct harness h;
    memset(&h, 0, sizeof(h));
    rig_create(&h, get8(&in) & 1);
    run_steps(&h, &in);
    /* Whatever happened, a driver can take each device over again. */
    for (unsigned d = 0; d < NDEV; d++) {
        bring_up(&h, d, TDRV_QSIZE);
        if (!h.dev[d].net)
            valid_request(&h, d, d == 1, 1);
    }
    check_all(&h);
    rig_destroy(&h);
    stderr = report;
    return 0;
}
