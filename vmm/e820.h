/* The guest's physical memory map, in e820 terms, shared by both boot
 * paths (PVH memmap and boot_params e820 table). */
#ifndef VDFS_VMM_E820_H
#define VDFS_VMM_E820_H

#include <stddef.h>
#include <stdint.h>

#include "bus.h"

enum e820_type {
    E820_RAM = 1,
    E820_RESERVED = 2,
    E820_ACPI = 3,
};

struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

#define E820_MAX_ENTRIES 8

/* Fills `out` (E820_MAX_ENTRIES) for `mem`; returns the entry count. */
size_t e820_build(const struct guest_memory *mem, struct e820_entry *out);

/* Highest usable RAM address below 4 GiB (exclusive): where to put an
 * initrd. */
uint64_t e820_low_ram_end(const struct guest_memory *mem);

#endif
