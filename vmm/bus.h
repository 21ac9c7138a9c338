/* The contract between the VMM core (vCPUs, memory, boot, platform devices)
 * and the emulated devices (PCI, virtio).  The core owns the VM and its
 * address spaces; devices register handlers and reach guest memory only
 * through the range-checked accessors below. */
#ifndef VDFS_VMM_BUS_H
#define VDFS_VMM_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Guest physical memory: one or more contiguous slots mapped into the VMM. */
struct guest_memory;

/* Returns a host pointer for [gpa, gpa+len) if the whole range lies inside
 * guest RAM (overflow-checked), else NULL.  Devices must never touch guest
 * memory any other way: the guest is untrusted. */
void *guest_memory_at(const struct guest_memory *mem, uint64_t gpa, uint64_t len);
uint64_t guest_memory_size(const struct guest_memory *mem);

/* A port-I/O or MMIO access: for a write `data` holds `len` bytes from the
 * guest; for a read the handler fills it (the bus pre-fills 0xff). */
typedef void (*bus_handler_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                               bool is_write);

enum bus_space { BUS_PIO = 0, BUS_MMIO = 1 };

struct bus;
/* Handlers run on the vCPU thread that exited.  `offset` is relative to base.
 * Returns 0, or -EEXIST for an overlapping range. */
int bus_register(struct bus *bus, enum bus_space space, uint64_t base, uint64_t len,
                 bus_handler_fn fn, void *opaque);
int bus_unregister(struct bus *bus, enum bus_space space, uint64_t base);

/* What a device may ask of the VM (ioeventfd, irqfd with MSI routing). */
struct vm_irq;
struct vm_services {
    struct guest_memory *mem;
    struct bus *bus;
    int vm_fd;
    /* Binds an eventfd to a guest write of `datamatch`-free width `len` at
     * the MMIO or PIO address `addr` (KVM_IOEVENTFD).  0 or -errno. */
    int (*add_ioeventfd)(void *vm, enum bus_space space, uint64_t addr, uint32_t len, int efd);
    int (*del_ioeventfd)(void *vm, enum bus_space space, uint64_t addr, uint32_t len, int efd);
    /* Routes an MSI (address, data) to an irqfd; returns the gsi used, or
     * -errno.  Calling again with the same efd updates the route. */
    int (*set_msi_irqfd)(void *vm, int efd, uint64_t msi_addr, uint32_t msi_data);
    int (*clear_irqfd)(void *vm, int efd);
    void *vm;
};

#endif
