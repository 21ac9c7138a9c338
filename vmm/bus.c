/* Port-I/O and MMIO range registry.  Handlers may register or unregister
 * ranges while another vCPU dispatches (a PCI BAR being moved), so a
 * lookup copies the handler out under the lock and calls it unlocked. */
#include "bus_core.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct bus_range {
    uint64_t base;
    uint64_t len;
    bus_handler_fn fn;
    void *opaque;
};

struct bus_space_table {
    struct bus_range *ranges;
    size_t count;
    size_t capacity;
    atomic_uint_fast64_t unclaimed;
};

struct bus {
    pthread_mutex_t lock;
    struct bus_space_table spaces[2];
};

struct bus *bus_create(void)
{
    struct bus *bus = calloc(1, sizeof(*bus));
    if (!bus)
        return NULL;
    pthread_mutex_init(&bus->lock, NULL);
    return bus;
}

void bus_destroy(struct bus *bus)
{
    if (!bus)
        return;
    for (int i = 0; i < 2; i++)
        free(bus->spaces[i].ranges);
    pthread_mutex_destroy(&bus->lock);
    free(bus);
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

int bus_register(struct bus *bus, enum bus_space space, uint64_t base, uint64_t len,
                 bus_handler_fn fn, void *opaque)
{
    if ((space != BUS_PIO && space != BUS_MMIO) || len == 0 || !fn || base + len < base)
        return -EINVAL;
    struct bus_space_table *t = &bus->spaces[space];
    int rc = 0;
    pthread_mutex_lock(&bus->lock);
    for (size_t i = 0; i < t->count; i++) {
        if (ranges_overlap(base, len, t->ranges[i].base, t->ranges[i].len)) {
            rc = -EEXIST;
            goto out;
        }
    }
    if (t->count == t->capacity) {
        size_t cap = t->capacity ? t->capacity * 2 : 16;
        struct bus_range *grown = realloc(t->ranges, cap * sizeof(*grown));
        if (!grown) {
            rc = -ENOMEM;
            goto out;
        }
        t->ranges = grown;
        t->capacity = cap;
    }
    t->ranges[t->count++] = (struct bus_range){ base, len, fn, opaque };
out:
    pthread_mutex_unlock(&bus->lock);
    return rc;
}

int bus_unregister(struct bus *bus, enum bus_space space, uint64_t base)
{
    if (space != BUS_PIO && space != BUS_MMIO)
        return -EINVAL;
    struct bus_space_table *t = &bus->spaces[space];
    int rc = -ENOENT;
    pthread_mutex_lock(&bus->lock);
    for (size_t i = 0; i < t->count; i++) {
        if (t->ranges[i].base == base) {
            t->ranges[i] = t->ranges[--t->count];
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&bus->lock);
    return rc;
}

bool bus_dispatch(struct bus *bus, enum bus_space space, uint64_t addr, uint8_t *data,
                  uint32_t len, bool is_write)
{
    struct bus_space_table *t = &bus->spaces[space];
    struct bus_range hit = { 0 };
    bool found = false;
    if (!is_write)
        memset(data, 0xff, len);
    pthread_mutex_lock(&bus->lock);
    for (size_t i = 0; i < t->count; i++) {
        const struct bus_range *r = &t->ranges[i];
        if (addr >= r->base && addr - r->base < r->len && len <= r->len - (addr - r->base)) {
            hit = *r;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&bus->lock);
    if (!found) {
        atomic_fetch_add(&t->unclaimed, 1);
        return false;
    }
    hit.fn(hit.opaque, addr - hit.base, data, len, is_write);
    return true;
}

uint64_t bus_unclaimed_count(struct bus *bus, enum bus_space space)
{
    return atomic_load(&bus->spaces[space].unclaimed);
}
