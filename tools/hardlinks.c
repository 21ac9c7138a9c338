/* Hard links met while copying a tree: the first copy of a file with more
 * than one link is remembered, so later names of it become links to that
 * copy instead of copies of their own, as cp -a and tar do. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static size_t slot_of(const struct hardlinks *h, uint64_t a, uint64_t b)
{
    uint64_t x = a * 0x9e3779b97f4a7c15u ^ b * 0xc2b2ae3d27d4eb4fu;
    return (size_t)(x ^ x >> 29) & (h->cap - 1);
}

struct hardlink *hardlinks_find(struct hardlinks *h, uint64_t a, uint64_t b)
{
    if (h->cap == 0)
        return NULL;
    for (size_t i = slot_of(h, a, b);; i = (i + 1) & (h->cap - 1)) {
        struct hardlink *e = &h->slots[i];
        if (!e->used)
            return NULL;
        if (e->a == a && e->b == b)
            return e;
    }
}

static int grow(struct hardlinks *h)
{
    struct hardlinks bigger = {.cap = h->cap ? h->cap * 2 : 64, .n = h->n};
    bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
    if (!bigger.slots)
        return -ENOMEM;
    for (size_t i = 0; i < h->cap; i++) {
        if (!h->slots[i].used)
            continue;
        size_t j = slot_of(&bigger, h->slots[i].a, h->slots[i].b);
        while (bigger.slots[j].used)
            j = (j + 1) & (bigger.cap - 1);
        bigger.slots[j] = h->slots[i];
    }
    free(h->slots);
    *h = bigger;
    return 0;
}

int hardlinks_add(struct hardlinks *h, uint64_t a, uint64_t b, uint32_t ino, const char *path)
{
    if ((h->n + 1) * 2 > h->cap && grow(h) != 0)
        return -ENOMEM;
    char *copy = path ? strdup(path) : NULL;
    if (path && !copy)
        return -ENOMEM;
    size_t i = slot_of(h, a, b);
    while (h->slots[i].used)
        i = (i + 1) & (h->cap - 1);
    h->slots[i] = (struct hardlink){.a = a, .b = b, .ino = ino, .path = copy, .used = true};
    h->n++;
    return 0;
}

void hardlinks_free(struct hardlinks *h)
{
    for (size_t i = 0; i < h->cap; i++)
        free(h->slots[i].path);
    free(h->slots);
    *h = (struct hardlinks){0};
}
