/* The VMM core's side of the I/O bus: creation and dispatch of exits.
 * Devices only see bus_register/bus_unregister from bus.h. */
#ifndef VDFS_VMM_BUS_CORE_H
#define VDFS_VMM_BUS_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

struct bus *bus_create(void);
void bus_destroy(struct bus *bus);

/* Delivers one access to the handler covering [addr, addr+len).  For a read
 * `data` is pre-filled with 0xff, which is what the guest sees when no
 * handler claims the address.  Returns true if a handler was found. */
bool bus_dispatch(struct bus *bus, enum bus_space space, uint64_t addr, uint8_t *data,
                  uint32_t len, bool is_write);

/* How many accesses hit no handler (reads float to 0xff, writes dropped). */
uint64_t bus_unclaimed_count(struct bus *bus, enum bus_space space);

#endif
