/* File-lock records held in memory while this host holds the volume
 * metadata lock.
 *
 * Every change of a file-lock record happens under the metadata lock
 * (recovery of a dead host aside, which only removes that host), so the
 * holder of the metadata lock knows each record it has read and need not
 * read it again.  A change it makes is written back before it releases
 * the metadata lock, and within LOCK_PUBLISH_MS for `vdfsctl locks`; an
 * open and close that follow each other within that time write nothing.
 * A direct-mapped table, its entries allocated as records are met (a
 * mount that opens one VM disk uses one): a record that meets another's
 * place is written back first if it is dirty. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define LOCK_CACHE_SLOTS 16384u

int lock_cache_init(struct lock_cache *c)
{
    c->slots = calloc(LOCK_CACHE_SLOTS, sizeof(*c->slots));
    c->nslots = c->slots ? LOCK_CACHE_SLOTS : 0;
    c->nfilled = c->ndirty = 0;
    return c->slots ? 0 : -1;
}

void lock_cache_destroy(struct lock_cache *c)
{
    for (size_t i = 0; i < c->nslots; i++)
        free(c->slots[i]);
    free(c->slots);
    memset(c, 0, sizeof(*c));
}

struct lock_entry **lock_cache_place(struct lock_cache *c, uint64_t index)
{
    return c->nslots ? &c->slots[index % c->nslots] : NULL;
}

struct lock_entry *lock_cache_find(struct lock_cache *c, uint64_t index)
{
    struct lock_entry **place = lock_cache_place(c, index);
    return place && *place && (*place)->index == index ? *place : NULL;
}

void lock_cache_forget(struct lock_cache *c)
{
    if (c->ndirty == 0 && c->nfilled == 0)
        return;
    for (size_t i = 0; i < c->nslots; i++) {
        free(c->slots[i]);
        c->slots[i] = NULL;
    }
    c->ndirty = 0;
    c->nfilled = 0;
}
