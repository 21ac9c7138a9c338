/* PCI bus 0 behind configuration mechanism #1, with up-front BAR assignment. */
#include "pci.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"

#define CONF1_ENABLE 0x80000000u

struct pci_bus {
    struct vm_services *svc;
    pthread_mutex_t lock; /* serialises config accesses from all vCPUs */
    uint32_t conf1_address;
    struct pci_device *slots[PCI_MAX_SLOTS];
    struct pci_device host_bridge;
    uint64_t mmio_next; /* next free address in the MMIO window */
};

static void pci_set_wmask32(struct pci_device *dev, unsigned off, uint32_t mask)
{
    pci_put32(&dev->wmask[off], mask);
}

void pci_device_init(struct pci_device *dev, uint16_t vendor, uint16_t device,
                     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
                     uint16_t subsys_id)
{
    memset(dev, 0, sizeof(*dev));
    pci_put16(&dev->config[PCI_VENDOR_ID], vendor);
    pci_put16(&dev->config[PCI_DEVICE_ID], device);
    dev->config[PCI_REVISION_ID] = revision;
    dev->config[PCI_CLASS_PROG] = (uint8_t)class_code;
    dev->config[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
    dev->config[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
    pci_put16(&dev->config[PCI_SUBSYSTEM_VENDOR_ID], subsys_vendor);
    pci_put16(&dev->config[PCI_SUBSYSTEM_ID], subsys_id);
    /* Firmware-like state: decoding and bus mastering on from the start, so
     * a minimal guest that never touches the command register still works. */
    pci_put16(&dev->config[PCI_COMMAND], PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    pci_put16(&dev->wmask[PCI_COMMAND], PCI_COMMAND_IO | PCI_COMMAND_MEMORY |
                                            PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
    dev->cap_end = 0x40;
}

void pci_device_set_mem_bar(struct pci_device *dev, int bar, uint64_t size, bus_handler_fn fn,
                            void *opaque)
{
    dev->bars[bar].size = size;
    dev->bars[bar].fn = fn;
    dev->bars[bar].opaque = opaque;
    pci_set_wmask32(dev, PCI_BAR0 + 4 * (unsigned)bar, (uint32_t)~(size - 1) & ~0xfu);
}

uint8_t pci_device_add_cap(struct pci_device *dev, uint8_t cap_id, uint8_t len)
{
    unsigned off = (dev->cap_end + 3u) & ~3u;
    if (len < 2 || off + len > PCI_CONFIG_SIZE)
        return 0;
    dev->config[off] = cap_id;
    dev->config[off + 1] = 0;
    if (dev->last_cap)
        dev->config[dev->last_cap + 1] = (uint8_t)off;
    else
        dev->config[PCI_CAPABILITY_LIST] = (uint8_t)off;
    pci_put16(&dev->config[PCI_STATUS],
              (uint16_t)(pci_get16(&dev->config[PCI_STATUS]) | PCI_STATUS_CAP_LIST));
    dev->last_cap = (uint8_t)off;
    dev->cap_end = (uint8_t)(off + len < PCI_CONFIG_SIZE ? off + len : PCI_CONFIG_SIZE - 1);
    return (uint8_t)off;
}

uint64_t pci_bar_address(const struct pci_device *dev, int bar)
{
    return dev->bars[bar].mapped;
}

/* Where the guest wants the BAR to decode now, or 0 for nowhere. */
static uint64_t pci_bar_wanted(const struct pci_device *dev, int bar)
{
    uint64_t size = dev->bars[bar].size;
    if (!(pci_get16(&dev->config[PCI_COMMAND]) & PCI_COMMAND_MEMORY))
        return 0;
    uint64_t addr = pci_get32(&dev->config[PCI_BAR0 + 4 * bar]) & ~0xfull & ~(size - 1);
    if (addr < LAYOUT_MMIO32_BASE || addr + size > LAYOUT_MMIO32_END)
        return 0; /* includes the all-ones pattern left by BAR sizing */
    return addr;
}

static void pci_update_mappings(struct pci_bus *bus, struct pci_device *dev)
{
    for (int bar = 0; bar < PCI_NUM_BARS; bar++) {
        if (!dev->bars[bar].size)
            continue;
        uint64_t want = pci_bar_wanted(dev, bar), old = dev->bars[bar].mapped;
        if (want == old)
            continue;
        if (old)
            bus_unregister(bus->svc->bus, BUS_MMIO, old);
        dev->bars[bar].mapped = 0;
        if (want) {
            int rc = bus_register(bus->svc->bus, BUS_MMIO, want, dev->bars[bar].size,
                                  dev->bars[bar].fn, dev->bars[bar].opaque);
            if (rc == 0)
                dev->bars[bar].mapped = want;
            else
                fprintf(stderr, "vdfs-vm: pci 00:%02x.0: BAR%d at 0x%llx overlaps another "
                                "range; left unmapped\n",
                        dev->slot, bar, (unsigned long long)want);
        }
        if (dev->bar_remap)
            dev->bar_remap(dev, bar, old, dev->bars[bar].mapped);
    }
}

static void pci_config_access(struct pci_bus *bus, struct pci_device *dev, uint32_t reg,
                              uint8_t *data, uint32_t len, bool is_write)
{
    if (reg + len > PCI_CONFIG_SIZE)
        return;
    if (!is_write) {
        if (dev->config_hook)
            dev->config_hook(dev, reg, len, false);
        memcpy(data, &dev->config[reg], len);
        return;
    }
    bool remap = false;
    for (uint32_t i = 0; i < len; i++) {
        uint32_t off = reg + i;
        uint8_t m = dev->wmask[off];
        dev->config[off] = (uint8_t)((dev->config[off] & ~m) | (data[i] & m));
        if ((off >= PCI_COMMAND && off < PCI_COMMAND + 2) ||
            (off >= PCI_BAR0 && off < PCI_BAR0 + 4 * PCI_NUM_BARS))
            remap = true;
    }
    if (remap)
        pci_update_mappings(bus, dev);
    if (dev->config_hook)
        dev->config_hook(dev, reg, len, true);
}

static void pci_conf1_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                         bool is_write)
{
    struct pci_bus *bus = opaque;
    pthread_mutex_lock(&bus->lock);
    if (offset == 0 && len == 4) {
        if (is_write)
            bus->conf1_address = pci_get32(data);
        else
            pci_put32(data, bus->conf1_address);
    } else if (offset >= 4 && offset + len <= 8) {
        uint32_t a = bus->conf1_address;
        unsigned busno = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;
        struct pci_device *dev = bus->slots[slot];
        if ((a & CONF1_ENABLE) && busno == 0 && fn == 0 && dev)
            pci_config_access(bus, dev, (a & 0xfc) + (uint32_t)(offset - 4), data, len,
                              is_write);
    }
    /* Other widths at 0xCF8-0xCFB (e.g. the 0xCF9 reset register) are not ours. */
    pthread_mutex_unlock(&bus->lock);
}

struct pci_bus *pci_bus_create(struct vm_services *svc)
{
    struct pci_bus *bus = calloc(1, sizeof(*bus));
    if (!bus)
        return NULL;
    bus->svc = svc;
    bus->mmio_next = LAYOUT_MMIO32_BASE;
    pthread_mutex_init(&bus->lock, NULL);
    /* The Q35 host bridge identity: every guest kernel knows it. */
    pci_device_init(&bus->host_bridge, 0x8086, 0x29c0, 0x060000, 0, 0x1af4, 0x1100);
    bus->slots[0] = &bus->host_bridge;
    int rc = bus_register(svc->bus, BUS_PIO, LAYOUT_PCI_CONFIG, 8, pci_conf1_io, bus);
    if (rc) {
        fprintf(stderr, "vdfs-vm: pci: cannot claim ports 0xCF8-0xCFF: %s\n", strerror(-rc));
        pthread_mutex_destroy(&bus->lock);
        free(bus);
        return NULL;
    }
    return bus;
}

void pci_bus_destroy(struct pci_bus *bus)
{
    if (!bus)
        return;
    bus_unregister(bus->svc->bus, BUS_PIO, LAYOUT_PCI_CONFIG);
    for (unsigned s = 1; s < PCI_MAX_SLOTS; s++)
        if (bus->slots[s])
            pci_remove_device(bus, bus->slots[s]);
    pthread_mutex_destroy(&bus->lock);
    free(bus);
}

int pci_add_device(struct pci_bus *bus, struct pci_device *dev)
{
    pthread_mutex_lock(&bus->lock);
    unsigned slot = 1;
    while (slot < PCI_MAX_SLOTS && bus->slots[slot])
        slot++;
    if (slot == PCI_MAX_SLOTS) {
        pthread_mutex_unlock(&bus->lock);
        return -ENOSPC;
    }
    uint64_t next = bus->mmio_next;
    for (int bar = 0; bar < PCI_NUM_BARS; bar++) {
        uint64_t size = dev->bars[bar].size;
        if (!size)
            continue;
        uint64_t addr = (next + size - 1) & ~(size - 1); /* natural alignment */
        if (addr + size > LAYOUT_MMIO32_END) {
            pthread_mutex_unlock(&bus->lock);
            return -ENOSPC;
        }
        pci_put32(&dev->config[PCI_BAR0 + 4 * bar], (uint32_t)addr);
        next = addr + size;
    }
    bus->mmio_next = next;
    dev->bus = bus;
    dev->slot = slot;
    bus->slots[slot] = dev;
    pci_update_mappings(bus, dev);
    pthread_mutex_unlock(&bus->lock);
    return (int)slot;
}

void pci_remove_device(struct pci_bus *bus, struct pci_device *dev)
{
    pthread_mutex_lock(&bus->lock);
    for (int bar = 0; bar < PCI_NUM_BARS; bar++) {
        uint64_t old = dev->bars[bar].mapped;
        if (!old)
            continue;
        bus_unregister(bus->svc->bus, BUS_MMIO, old);
        dev->bars[bar].mapped = 0;
        if (dev->bar_remap)
            dev->bar_remap(dev, bar, old, 0);
    }
    if (dev->slot < PCI_MAX_SLOTS && bus->slots[dev->slot] == dev)
        bus->slots[dev->slot] = NULL;
    pthread_mutex_unlock(&bus->lock);
}
