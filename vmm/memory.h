/* Guest RAM: one lazily-populated anonymous host mapping, exposed to the
 * guest as up to two KVM memory slots (below the 32-bit MMIO window and
 * above 4 GiB).  The accessors guest_memory_at/size are declared in bus.h. */
#ifndef VDFS_VMM_MEMORY_H
#define VDFS_VMM_MEMORY_H

#include <stdint.h>

#include "bus.h"

/* Maps `size` bytes of guest RAM (MAP_NORESERVE: only touched pages cost
 * host memory).  NULL with errno set on failure. */
struct guest_memory *guest_memory_create(uint64_t size);
void guest_memory_destroy(struct guest_memory *mem);

/* Registers the slots with the VM.  0 or -errno. */
int guest_memory_attach(struct guest_memory *mem, int vm_fd);

/* Bytes of RAM at GPA 0 and at LAYOUT_RAM_HIGH_BASE. */
uint64_t guest_memory_low_size(const struct guest_memory *mem);
uint64_t guest_memory_high_size(const struct guest_memory *mem);

/* Bytes of guest RAM currently resident on the host (mincore). */
uint64_t guest_memory_resident(const struct guest_memory *mem);

#endif
