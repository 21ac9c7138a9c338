/* Resource clusters: the bitmaps of file blocks, sub-blocks, pointer
 * blocks and descriptors.  All bitmaps stay decoded in memory while
 * mounted (8 MiB for a 16 TiB volume).  A freed resource keeps its bit
 * until the transaction that freed it commits, so its old contents are
 * never reused by a transaction that could still be lost. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool bit_test(const uint8_t *bits, uint32_t i) { return (bits[i / 8] >> (i % 8)) & 1u; }
static void bit_set(uint8_t *bits, uint32_t i) { bits[i / 8] |= (uint8_t)(1u << (i % 8)); }
static void bit_clear(uint8_t *bits, uint32_t i) { bits[i / 8] &= (uint8_t)~(1u << (i % 8)); }

int alloc_load(struct vdfs *fs)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE * 64);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    for (unsigned rt = 0; rt < VDFS_RT_COUNT && rc == 0; rt++) {
        const struct vdfs_region *r = &fs->sb.region[rt];
        struct resource_pool *p = &fs->pools[rt];
        p->clusters = calloc(r->clusters, sizeof(*p->clusters));
        p->dirty = calloc(r->clusters, sizeof(*p->dirty));
        if (!p->clusters || !p->dirty) {
            rc = -ENOMEM;
            break;
        }
        for (uint32_t c = 0; c < r->clusters && rc == 0; c += 64) {
            uint32_t batch = r->clusters - c < 64 ? r->clusters - c : 64;
            rc = vdfs_dev_read(fs->dev, buf, (size_t)batch * VDFS_META_SIZE, vdfs_bitmap_addr(&fs->sb, rt, c));
            for (uint32_t i = 0; i < batch && rc == 0; i++) {
                uint64_t addr = vdfs_bitmap_addr(&fs->sb, rt, c + i);
                struct vdfs_bitmap *b = &p->clusters[c + i];
                rc = vdfs_bitmap_decode(buf + (size_t)i * VDFS_META_SIZE, addr, b);
                if (rc == 0 && rt == VDFS_RT_FB && vdfs_bitmap_grown_into(b, &fs->sb, c + i)) {
                    /* See superblock.c: the rest of the cluster is new and free. */
                    uint32_t len = vdfs_cluster_len(r, c + i);
                    b->free += len - b->count;
                    b->count = len;
                    p->dirty[c + i] = true;
                }
                if (rc == 0 && !vdfs_bitmap_is_of(b, &fs->sb, rt, c + i))
                    rc = -EIO;
                if (rc) {
                    vdfs_log(VDFS_LOG_ERR, "bitmap of resource cluster %u (type %u) at 0x%llx is corrupt; run fsck.vdfs",
                             c + i, rt, (unsigned long long)addr);
                    rc = -EIO;
                }
                p->free += p->clusters[c + i].free;
            }
        }
        /* Host affinity: each slot starts its search in its own share of
         * the clusters, so hosts allocate far from each other. */
        if (fs->slot != VDFS_NO_SLOT && fs->sb.max_hosts)
            p->hint = (uint32_t)((uint64_t)fs->slot * r->clusters / fs->sb.max_hosts);
    }
    vdfs_aligned_free(buf);
    /* Nothing half-loaded stays behind: commits and lookups skip pools
     * that are not loaded. */
    if (rc)
        alloc_destroy(fs);
    return rc;
}

void alloc_destroy(struct vdfs *fs)
{
    for (unsigned rt = 0; rt < VDFS_RT_COUNT; rt++) {
        free(fs->pools[rt].clusters);
        free(fs->pools[rt].dirty);
        free(fs->pools[rt].pending);
        memset(&fs->pools[rt], 0, sizeof(fs->pools[rt]));
    }
}

static int find_clear_bit(const struct vdfs_bitmap *b)
{
    for (uint32_t byte = 0; byte * 8 < b->count; byte++) {
        if (b->bits[byte] == 0xff)
            continue;
        for (uint32_t bit = 0; bit < 8; bit++) {
            uint32_t i = byte * 8 + bit;
            if (i >= b->count)
                return -1;
            if (!bit_test(b->bits, i))
                return (int)i;
        }
    }
    return -1;
}

int alloc_resource(struct vdfs *fs, unsigned rtype, uint64_t *index)
{
    struct resource_pool *p = &fs->pools[rtype];
    const struct vdfs_region *r = &fs->sb.region[rtype];
    if (p->free == 0)
        return -ENOSPC;
    for (uint32_t n = 0; n < r->clusters; n++) {
        uint32_t c = (p->hint + n) % r->clusters;
        struct vdfs_bitmap *b = &p->clusters[c];
        if (b->free == 0)
            continue;
        int i = find_clear_bit(b);
        if (i < 0)
            continue;
        bit_set(b->bits, (uint32_t)i);
        b->free--;
        b->affinity = fs->slot;
        p->free--;
        p->dirty[c] = true;
        p->hint = c;
        *index = b->first + (uint64_t)i;
        return 0;
    }
    return -ENOSPC;
}

uint64_t resources_pending_free(const struct vdfs *fs, unsigned rtype)
{
    return fs->pools[rtype].npending;
}

bool resource_is_allocated(struct vdfs *fs, unsigned rtype, uint64_t index)
{
    const struct vdfs_region *r = &fs->sb.region[rtype];
    if (index >= r->count || !fs->pools[rtype].clusters)
        return false;
    const struct vdfs_bitmap *b = &fs->pools[rtype].clusters[index / r->per_cluster];
    return bit_test(b->bits, (uint32_t)(index % r->per_cluster));
}

int free_resource(struct vdfs *fs, unsigned rtype, uint64_t index)
{
    struct resource_pool *p = &fs->pools[rtype];
    if (!resource_is_allocated(fs, rtype, index)) {
        vdfs_log(VDFS_LOG_ERR, "freeing resource %llu of type %u that is not allocated; run fsck.vdfs",
                 (unsigned long long)index, rtype);
        return -EIO;
    }
    if (rtype == VDFS_RT_FD || rtype == VDFS_RT_PB) {
        /* Descriptors and pointer blocks change only through the journal,
         * so reusing one inside the same transaction is safe, and freeing
         * at once means a deleted file is gone at once. */
        const struct vdfs_region *r = &fs->sb.region[rtype];
        uint32_t c = (uint32_t)(index / r->per_cluster);
        bit_clear(p->clusters[c].bits, (uint32_t)(index % r->per_cluster));
        p->clusters[c].free++;
        p->free++;
        p->dirty[c] = true;
        return 0;
    }
    if (p->npending == p->cap_pending) {
        size_t cap = p->cap_pending ? p->cap_pending * 2 : 256;
        uint64_t *more = realloc(p->pending, cap * sizeof(*more));
        if (!more)
            return -ENOMEM;
        p->pending = more;
        p->cap_pending = cap;
    }
    p->pending[p->npending++] = index;
    return 0;
}

int alloc_prepare_commit(struct vdfs *fs)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    for (unsigned rt = 0; rt < VDFS_RT_COUNT; rt++) {
        struct resource_pool *p = &fs->pools[rt];
        const struct vdfs_region *r = &fs->sb.region[rt];
        if (!p->clusters)
            continue;
        for (size_t i = 0; i < p->npending; i++) {
            uint64_t idx = p->pending[i];
            uint32_t c = (uint32_t)(idx / r->per_cluster);
            struct vdfs_bitmap *b = &p->clusters[c];
            if (bit_test(b->bits, (uint32_t)(idx % r->per_cluster))) {
                bit_clear(b->bits, (uint32_t)(idx % r->per_cluster));
                b->free++;
                p->free++;
            }
            p->dirty[c] = true;
        }
        p->npending = 0;
        for (uint32_t c = 0; c < r->clusters && rc == 0; c++) {
            if (!p->dirty[c])
                continue;
            struct vdfs_bitmap *b = &p->clusters[c];
            b->hdr.gen++;
            vdfs_bitmap_encode(b, buf);
            rc = meta_put(fs, b->hdr.addr, buf);
            p->dirty[c] = rc != 0; /* kept for the next try */
        }
    }
    vdfs_aligned_free(buf);
    return rc;
}
