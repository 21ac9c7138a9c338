/* Guest memory map: RAM around the legacy hole, ACPI tables reserved, the
 * remainder of RAM above 4 GiB. */
#include "e820.h"

#include "layout.h"
#include "memory.h"

size_t e820_build(const struct guest_memory *mem, struct e820_entry *out)
{
    size_t n = 0;
    uint64_t low = guest_memory_low_size(mem);
    out[n++] = (struct e820_entry){ 0, LAYOUT_LEGACY_HOLE_START, E820_RAM };
    out[n++] = (struct e820_entry){ LAYOUT_LEGACY_HOLE_START,
                                    LAYOUT_ACPI_BASE - LAYOUT_LEGACY_HOLE_START, E820_RESERVED };
    out[n++] = (struct e820_entry){ LAYOUT_ACPI_BASE, LAYOUT_ACPI_SIZE, E820_ACPI };
    if (low > LAYOUT_LEGACY_HOLE_END)
        out[n++] = (struct e820_entry){ LAYOUT_LEGACY_HOLE_END, low - LAYOUT_LEGACY_HOLE_END,
                                        E820_RAM };
    uint64_t high = guest_memory_high_size(mem);
    if (high)
        out[n++] = (struct e820_entry){ LAYOUT_RAM_HIGH_BASE, high, E820_RAM };
    return n;
}

uint64_t e820_low_ram_end(const struct guest_memory *mem)
{
    return guest_memory_low_size(mem);
}
