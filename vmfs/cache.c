/* Metadata object cache.  Objects are kept encoded and sealed; a dirty
 * object belongs to the running transaction and is pinned until commit.
 * Clean objects are evicted by a clock sweep over the hash buckets. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int meta_cache_init(struct meta_cache *c, size_t limit)
{
    memset(c, 0, sizeof(*c));
    c->nbuckets = 1;
    while (c->nbuckets < limit)
        c->nbuckets <<= 1;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    c->limit = limit;
    return c->buckets ? 0 : -ENOMEM;
}

static void entry_free(struct meta_entry *e)
{
    vdfs_aligned_free(e->data);
    free(e);
}

void meta_cache_destroy(struct meta_cache *c)
{
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct meta_entry *e = c->buckets ? c->buckets[i] : NULL;
        while (e) {
            struct meta_entry *next = e->hash_next;
            entry_free(e);
            e = next;
        }
    }
    free(c->buckets);
    memset(c, 0, sizeof(*c));
}

static size_t bucket_of(const struct meta_cache *c, uint64_t addr)
{
    uint64_t h = (addr >> 9) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (c->nbuckets - 1);
}

static struct meta_entry *find(struct meta_cache *c, uint64_t addr)
{
    for (struct meta_entry *e = c->buckets[bucket_of(c, addr)]; e; e = e->hash_next)
        if (e->addr == addr)
            return e;
    return NULL;
}

static void evict_some(struct meta_cache *c)
{
    size_t scanned = 0;
    while (c->count >= c->limit && scanned < 2 * c->nbuckets) {
        size_t b = c->clock_bucket;
        c->clock_bucket = (c->clock_bucket + 1) & (c->nbuckets - 1);
        scanned++;
        struct meta_entry **pp = &c->buckets[b];
        while (*pp) {
            struct meta_entry *e = *pp;
            if (!e->dirty && !e->referenced) {
                *pp = e->hash_next;
                entry_free(e);
                c->count--;
                continue;
            }
            e->referenced = false;
            pp = &e->hash_next;
        }
    }
}

static struct meta_entry *insert(struct meta_cache *c, uint64_t addr)
{
    if (c->count >= c->limit)
        evict_some(c);
    struct meta_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->data = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!e->data) {
        free(e);
        return NULL;
    }
    e->addr = addr;
    size_t b = bucket_of(c, addr);
    e->hash_next = c->buckets[b];
    c->buckets[b] = e;
    c->count++;
    return e;
}

static void unlink_entry(struct meta_cache *c, struct meta_entry *victim)
{
    struct meta_entry **pp = &c->buckets[bucket_of(c, victim->addr)];
    while (*pp && *pp != victim)
        pp = &(*pp)->hash_next;
    if (*pp)
        *pp = victim->hash_next;
    c->count--;
}

int meta_get(struct vdfs *fs, uint64_t addr, uint32_t kind, const uint8_t **out)
{
    struct meta_cache *c = &fs->cache;
    struct meta_entry *e = find(c, addr);
    if (!e) {
        e = insert(c, addr);
        if (!e)
            return -ENOMEM;
        int rc = vdfs_dev_read(fs->dev, e->data, VDFS_META_SIZE, addr);
        if (rc == 0)
            rc = vdfs_obj_verify(e->data, VDFS_META_SIZE, kind, addr);
        if (rc != 0) {
            unlink_entry(c, e);
            entry_free(e);
            if (rc == -EIO)
                vdfs_log(VDFS_LOG_ERR, "metadata object at 0x%llx (kind %u) is corrupt: bad checksum or header",
                         (unsigned long long)addr, kind);
            return rc;
        }
        e->kind = kind;
    } else if (e->kind != kind) {
        /* Verified on the way in; only its kind can disagree, e.g. a
         * directory block named by a corrupt pointer as a pointer block. */
        return -EIO;
    }
    e->referenced = true;
    *out = e->data;
    return 0;
}

bool meta_cached(struct vdfs *fs, uint64_t addr)
{
    return find(&fs->cache, addr) != NULL;
}

int meta_prefetch(struct vdfs *fs, uint64_t addr, uint32_t count, uint32_t kind)
{
    struct meta_cache *c = &fs->cache;
    if (count == 0)
        return 0;
    uint8_t *buf = vdfs_aligned_alloc((size_t)count * VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    int rc = vdfs_dev_read(fs->dev, buf, (size_t)count * VDFS_META_SIZE, addr);
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
        uint64_t at = addr + (uint64_t)i * VDFS_META_SIZE;
        const uint8_t *image = buf + (size_t)i * VDFS_META_SIZE;
        /* What is cached may be newer (dirty); what does not verify (never
         * written, or damaged) is left for meta_get to read and report. */
        if (find(c, at) || vdfs_obj_verify(image, VDFS_META_SIZE, kind, at) != 0)
            continue;
        struct meta_entry *e = insert(c, at);
        if (!e)
            break;
        memcpy(e->data, image, VDFS_META_SIZE);
        e->kind = kind;
    }
    vdfs_aligned_free(buf);
    return rc;
}

int meta_put(struct vdfs *fs, uint64_t addr, const uint8_t *image)
{
    if (fs->readonly)
        return -EROFS;
    if (fs->fenced)
        return -EIO;
    fs->mlock_dirty = true;
    struct meta_cache *c = &fs->cache;
    struct meta_entry *e = find(c, addr);
    if (!e) {
        e = insert(c, addr);
        if (!e)
            return -ENOMEM;
    }
    memcpy(e->data, image, VDFS_META_SIZE);
    struct vdfs_header h;
    vdfs_obj_read_header(image, &h);
    e->kind = h.kind;
    e->referenced = true;
    if (!e->dirty) {
        e->dirty = true;
        e->dirty_next = c->dirty_list;
        c->dirty_list = e;
        c->ndirty++;
    }
    return 0;
}

void meta_forget(struct vdfs *fs, uint64_t addr)
{
    struct meta_entry *e = find(&fs->cache, addr);
    if (e && !e->dirty) {
        unlink_entry(&fs->cache, e);
        entry_free(e);
    }
}
