/* A single PCI bus (bus 0) reached through configuration mechanism #1
 * (ports 0xCF8-0xCFF).  Slot 0 holds a host bridge; devices take slots 1..31,
 * function 0 only.  Memory BARs are assigned up front from the 32-bit MMIO
 * window (layout.h), the way firmware would, with memory decoding and bus
 * mastering already enabled; the guest may size them, move them or turn
 * decoding off, and the bus re-maps the BAR's MMIO handler to follow. */
#ifndef VDFS_VMM_PCI_H
#define VDFS_VMM_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

#define PCI_MAX_SLOTS 32
#define PCI_NUM_BARS 6
#define PCI_CONFIG_SIZE 256

/* Standard configuration header offsets used by device code. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d

#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_CAP_LIST 0x10

#define PCI_CAP_ID_MSIX 0x11
#define PCI_CAP_ID_VNDR 0x09

struct pci_bus;
struct pci_device;

/* Called with the guest access already applied to `config` (for writes) or
 * before the value is returned (for reads), so a device can react to a
 * register write or refresh a register it computes on demand. */
typedef void (*pci_config_hook_fn)(struct pci_device *dev, uint32_t offset, uint32_t len,
                                   bool is_write);
/* Called when a memory BAR's decoded address changes; 0 means unmapped. */
typedef void (*pci_bar_remap_fn)(struct pci_device *dev, int bar, uint64_t old_addr,
                                 uint64_t new_addr);

/* Embedded by a device; fill it with pci_device_init and the helpers below,
 * then hand it to pci_add_device.  The bus serialises all config accesses. */
struct pci_device {
    uint8_t config[PCI_CONFIG_SIZE];
    uint8_t wmask[PCI_CONFIG_SIZE]; /* bits the guest may write */
    struct {
        uint64_t size; /* 0: unused; a power of two >= 16 */
        uint64_t mapped; /* address the handler is registered at, 0 = none */
        bus_handler_fn fn;
        void *opaque;
    } bars[PCI_NUM_BARS];
    pci_config_hook_fn config_hook;
    pci_bar_remap_fn bar_remap;
    void *opaque;
    struct pci_bus *bus;
    unsigned slot;
    uint8_t last_cap; /* offset of the last capability, 0 if none */
    uint8_t cap_end;  /* first free byte for the next capability */
};

/* Creates bus 0 with its host bridge and registers 0xCF8-0xCFF on svc->bus.
 * Returns NULL (with a message on stderr) on failure. */
struct pci_bus *pci_bus_create(struct vm_services *svc);
/* Unregisters the ports and all BAR handlers and frees the bus; the devices
 * themselves belong to their creators and must be torn down first. */
void pci_bus_destroy(struct pci_bus *bus);

void pci_device_init(struct pci_device *dev, uint16_t vendor, uint16_t device,
                     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
                     uint16_t subsys_id);
/* Declares a 32-bit non-prefetchable memory BAR of `size` bytes (a power of
 * two, >= 4096) served by `fn`. */
void pci_device_set_mem_bar(struct pci_device *dev, int bar, uint64_t size, bus_handler_fn fn,
                            void *opaque);
/* Appends a capability of `len` bytes (including the 2-byte header) to the
 * capability list; returns its config-space offset, or 0 if it does not fit. */
uint8_t pci_device_add_cap(struct pci_device *dev, uint8_t cap_id, uint8_t len);

/* Puts the device in the next free slot, assigns its BAR addresses from the
 * MMIO window and maps them.  Returns the slot, or -errno. */
int pci_add_device(struct pci_bus *bus, struct pci_device *dev);
/* Unmaps the device's BARs and frees its slot. */
void pci_remove_device(struct pci_bus *bus, struct pci_device *dev);

/* The address a BAR currently decodes at (0 when unmapped). */
uint64_t pci_bar_address(const struct pci_device *dev, int bar);

/* Little-endian accessors for config-space images and guest structures. */
static inline uint16_t pci_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t pci_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void pci_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void pci_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

#endif
