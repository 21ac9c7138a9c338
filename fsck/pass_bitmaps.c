/* Loading the resource-cluster bitmaps, and pass 6: comparing them with
 * the references the other passes found, then writing the fixed ones. */
#include <errno.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fsck.h"

int fsck_load_bitmaps(struct fsck *f)
{
    struct vdfs_bitmap *bm = malloc(sizeof(*bm));
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!bm || !buf) {
        free(bm);
        vdfs_aligned_free(buf);
        return -ENOMEM;
    }
    int rc = 0;
    for (unsigned r = 0; r < VDFS_RT_COUNT && rc == 0; r++) {
        const struct vdfs_region *g = &f->sb.region[r];
        struct fsck_region *s = &f->rs[r];
        size_t bytes = (size_t)(g->count + 7) / 8;
        s->count = g->count;
        s->bits = calloc(1, bytes);
        s->disk = calloc(1, bytes);
        s->ref = calloc(1, bytes);
        s->clusters = calloc(g->clusters ? g->clusters : 1, sizeof(*s->clusters));
        if (r != VDFS_RT_FD)
            s->owner = calloc(g->count ? g->count : 1, sizeof(*s->owner));
        if (!s->bits || !s->disk || !s->ref || !s->clusters || (r != VDFS_RT_FD && !s->owner)) {
            rc = -ENOMEM;
            break;
        }
        for (uint32_t c = 0; c < g->clusters; c++) {
            uint64_t addr = vdfs_bitmap_addr(&f->sb, r, c);
            uint64_t first = (uint64_t)c * g->per_cluster;
            uint32_t len = vdfs_cluster_len(&f->sb.region[r], c);
            struct fsck_cluster *cl = &s->clusters[c];
            if (fsck_read(f, buf, VDFS_META_SIZE, addr) < 0 || vdfs_bitmap_decode(buf, addr, bm) != 0) {
                cl->bad = true;
                continue;
            }
            if (r == VDFS_RT_FB && vdfs_bitmap_grown_into(bm, &f->sb, c)) {
                /* What the library accepts after a grow that stopped
                 * before this bitmap was rewritten: the rest is free. */
                cl->grown_from = bm->count;
                bm->free += len - bm->count;
                bm->count = len;
            }
            if (!vdfs_bitmap_is_of(bm, &f->sb, r, c)) {
                cl->bad = true;
                continue;
            }
            cl->disk_free = bm->free;
            cl->affinity = bm->affinity;
            cl->gen = bm->hdr.gen;
            for (uint32_t i = 0; i < len; i++) {
                if (fsck_bit(bm->bits, i)) {
                    fsck_set_bit(s->bits, first + i);
                    fsck_set_bit(s->disk, first + i);
                }
            }
            for (uint32_t i = len; i < VDFS_BITMAP_BITS; i++)
                if (fsck_bit(bm->bits, i))
                    cl->stray = true;
        }
    }
    free(bm);
    vdfs_aligned_free(buf);
    return rc;
}

static int write_cluster(struct fsck *f, unsigned r, uint32_t c)
{
    const struct vdfs_region *g = &f->sb.region[r];
    struct fsck_region *s = &f->rs[r];
    struct vdfs_bitmap *bm = calloc(1, sizeof(*bm));
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!bm || !buf) {
        free(bm);
        vdfs_aligned_free(buf);
        return -ENOMEM;
    }
    uint64_t addr = vdfs_bitmap_addr(&f->sb, r, c);
    uint64_t first = (uint64_t)c * g->per_cluster;
    uint32_t len = vdfs_cluster_len(&f->sb.region[r], c), used = 0;
    for (uint32_t i = 0; i < len; i++) {
        if (fsck_bit(s->bits, first + i)) {
            fsck_set_bit(bm->bits, i);
            used++;
        }
    }
    bm->hdr.kind = VDFS_KIND_BITMAP;
    bm->hdr.addr = addr;
    bm->hdr.gen = s->clusters[c].gen + 1;
    bm->rtype = r;
    bm->cluster = c;
    bm->first = first;
    bm->count = len;
    bm->free = len - used;
    bm->affinity = s->clusters[c].affinity;
    vdfs_bitmap_encode(bm, buf);
    vdfs_obj_seal(buf, VDFS_META_SIZE, &bm->hdr);
    int rc = fsck_write(f, buf, VDFS_META_SIZE, addr);
    free(bm);
    vdfs_aligned_free(buf);
    return rc;
}

int fsck_pass_bitmaps(struct fsck *f)
{
    fsck_pass_begin(f, FSCK_PASS_BITMAPS);
    for (unsigned r = 0; r < VDFS_RT_COUNT && !fsck_cancelled(f); r++) {
        const struct vdfs_region *g = &f->sb.region[r];
        struct fsck_region *s = &f->rs[r];
        const char *name = fsck_rtype_name(r);
        for (uint32_t c = 0; c < g->clusters; c++) {
            struct fsck_cluster *cl = &s->clusters[c];
            uint64_t first = (uint64_t)c * g->per_cluster;
            uint32_t len = vdfs_cluster_len(&f->sb.region[r], c);
            uint64_t addr = vdfs_bitmap_addr(&f->sb, r, c);
            char obj[48];
            snprintf(obj, sizeof(obj), "%s cluster %u", name, c);
            if (cl->bad) {
                fsck_problem(f, "bitmap_bad", obj, addr, true,
                             "bad checksum in the %s bitmap of cluster %u at 0x%" PRIx64 "; rebuilding it from references",
                             name, c, addr);
                for (uint32_t i = 0; i < len; i++) {
                    if (fsck_bit(s->ref, first + i))
                        fsck_set_bit(s->bits, first + i);
                    else
                        fsck_clear_bit(s->bits, first + i);
                }
                cl->dirty = true;
                continue;
            }
            if (cl->grown_from) {
                fsck_problem(f, "bitmap_grown", obj, addr, true,
                             "the file-block bitmap of cluster %u covers %u of its %u blocks (a grow of the datastore "
                             "stopped before rewriting it); extending it",
                             c, cl->grown_from, len);
                cl->dirty = true;
            }
            uint32_t leaked = 0, unmarked = 0, disk_used = 0;
            uint64_t first_leak = 0, first_unmarked = 0;
            for (uint32_t i = 0; i < len; i++) {
                uint64_t x = first + i;
                bool bit = fsck_bit(s->bits, x), ref = fsck_bit(s->ref, x);
                disk_used += fsck_bit(s->disk, x);
                if (bit && !ref) {
                    if (!leaked++)
                        first_leak = x;
                    fsck_clear_bit(s->bits, x);
                } else if (!bit && ref) {
                    if (!unmarked++)
                        first_unmarked = x;
                    fsck_set_bit(s->bits, x);
                }
            }
            if (leaked) {
                fsck_problem(f, "leaked", obj, addr, true,
                             "%u leaked %s resource%s in cluster %u (allocated but unreferenced, first %" PRIu64 "); freeing",
                             leaked, name, leaked == 1 ? "" : "s", c, first_leak);
                cl->dirty = true;
            }
            if (unmarked) {
                fsck_problem(f, "unmarked", obj, addr, true,
                             "%u %s resource%s in use but marked free in cluster %u (first %" PRIu64 "); marking",
                             unmarked, name, unmarked == 1 ? "" : "s", c, first_unmarked);
                cl->dirty = true;
            }
            if (cl->disk_free != len - disk_used) {
                fsck_problem(f, "free_count", obj, addr, true,
                             "wrong free count in %s cluster %u: %u recorded, %u counted", name, c, cl->disk_free,
                             len - disk_used);
                cl->dirty = true;
            }
            if (cl->stray) {
                fsck_problem(f, "bitmap_stray", obj, addr, true, "bits set past the end of %s cluster %u; clearing",
                             name, c);
                cl->dirty = true;
            }
        }
        for (uint32_t c = 0; c < g->clusters; c++)
            if (s->clusters[c].dirty && f->opt.fix)
                write_cluster(f, r, c);
    }
    return 0;
}
