/* Pass 3: every allocated descriptor and its block map.
 *
 * Checks each descriptor's checksum and sanity, walks its map (direct
 * slots, single- and double-indirect pointer blocks) and records every
 * file block, sub-block and pointer block it references.  A resource
 * referenced twice gets a private copy for the second owner once all
 * references are known, so the copy never lands on a block in use. */
#include <dirent.h>
#include <stdio.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fsck.h"

struct deferred_alloc {
    uint32_t ino;
    uint64_t counted; /* alloc_bytes the map accounts for */
};

struct pass3 {
    struct fsck *f;
    struct deferred_alloc *def;
    size_t ndef, cap;
};

struct walk {
    struct pass3 *p3;
    uint32_t ino;
    uint64_t fb, sb;
    bool has_dup;
};

static const char *unit_name(unsigned rtype)
{
    switch (rtype) {
    case VDFS_RT_FB: return "file block";
    case VDFS_RT_SB: return "sub-block";
    case VDFS_RT_PB: return "pointer block";
    default: return "descriptor";
    }
}

static void push_dup(struct fsck *f, const struct fsck_dup *d)
{
    if (f->ndups == f->dups_cap) {
        size_t cap = f->dups_cap ? f->dups_cap * 2 : 16;
        struct fsck_dup *n = realloc(f->dups, cap * sizeof(*n));
        if (!n) {
            f->operational_error = true;
            return;
        }
        f->dups = n;
        f->dups_cap = cap;
    }
    f->dups[f->ndups++] = *d;
}

/* Records a reference; false when something else already references it. */
static bool take_ref(struct walk *w, unsigned rtype, uint64_t index, uint32_t container, uint32_t entry)
{
    struct fsck *f = w->p3->f;
    struct fsck_region *r = &f->rs[rtype];
    if (!fsck_bit(r->ref, index)) {
        fsck_set_bit(r->ref, index);
        r->owner[index] = w->ino;
        return true;
    }
    char obj[32];
    snprintf(obj, sizeof(obj), "ino %u", w->ino);
    fsck_problem(f, "dup", obj, vdfs_resource_addr(&f->sb, rtype, index), true,
                 "%s %" PRIu64 " referenced by ino %u and ino %u", unit_name(rtype), index, r->owner[index], w->ino);
    struct fsck_dup d = {.rtype = (uint8_t)rtype, .ino = w->ino, .container = container, .entry = entry, .index = index};
    push_dup(f, &d);
    w->has_dup = true;
    return false;
}

/* Checks a pointer's shape; returns the pointer to keep (maybe 0). */
static uint32_t check_ptr_shape(struct walk *w, unsigned rtype, uint32_t p, const char *where)
{
    struct fsck *f = w->p3->f;
    char obj[32];
    snprintf(obj, sizeof(obj), "ino %u", w->ino);
    if (!vdfs_ptr_present(p)) {
        if (p)
            fsck_problem(f, "ptr_tbz_hole", obj, 0, true, "ino %u: %s is a hole with the to-be-zeroed bit set; clearing",
                         w->ino, where);
        return 0;
    }
    if (rtype != VDFS_RT_FB && vdfs_ptr_tbz(p)) {
        fsck_problem(f, "ptr_tbz", obj, 0, true, "ino %u: %s names a %s with the to-be-zeroed bit; clearing the bit",
                     w->ino, where, unit_name(rtype));
        p &= VDFS_PTR_INDEX_MASK;
    }
    if (vdfs_ptr_index(p) >= f->rs[rtype].count) {
        fsck_problem(f, "ptr_range", obj, vdfs_fd_addr(&f->sb, w->ino), true,
                     "ino %u: %s pointer %s is out of range (%s %" PRIu64 ", region holds %" PRIu64 "); clearing it",
                     w->ino, unit_name(rtype), where, unit_name(rtype), vdfs_ptr_index(p), f->rs[rtype].count);
        return 0;
    }
    return p;
}

static uint32_t check_data_ptr(struct walk *w, unsigned rtype, uint32_t p, uint32_t container, uint32_t entry,
                               const char *where)
{
    p = check_ptr_shape(w, rtype, p, where);
    if (!p)
        return 0;
    take_ref(w, rtype, vdfs_ptr_index(p), container, entry);
    /* A shared one counts too: it gets a private copy later. */
    if (rtype == VDFS_RT_FB)
        w->fb++;
    else
        w->sb++;
    return p;
}

static uint32_t check_pb_ptr(struct walk *w, uint32_t p, uint32_t level, uint32_t container, uint32_t entry,
                             const char *where)
{
    struct fsck *f = w->p3->f;
    p = check_ptr_shape(w, VDFS_RT_PB, p, where);
    if (!p)
        return 0;
    uint64_t idx = vdfs_ptr_index(p);
    if (!take_ref(w, VDFS_RT_PB, idx, container, entry))
        return p; /* shared: the second owner's pointer is cleared later */
    struct vdfs_pb *pb = malloc(sizeof(*pb));
    if (!pb) {
        f->operational_error = true;
        return p;
    }
    int rc = fsck_pb_load(f, idx, pb);
    uint64_t addr = vdfs_resource_addr(&f->sb, VDFS_RT_PB, idx);
    char obj[32];
    snprintf(obj, sizeof(obj), "ino %u", w->ino);
    if (rc != 0 || pb->owner_ino != w->ino || pb->level != level) {
        if (rc != 0)
            fsck_problem(f, "pb_bad", obj, addr, true,
                         "bad checksum in pointer block %" PRIu64 " of ino %u at 0x%" PRIx64
                         "; clearing the pointer (its blocks become holes)",
                         idx, w->ino, addr);
        else
            fsck_problem(f, "pb_owner", obj, addr, true,
                         "pointer block %" PRIu64 " of ino %u belongs to ino %u at level %u (expected level %u); clearing"
                         " the pointer",
                         idx, w->ino, pb->owner_ino, pb->level, level);
        fsck_ref_release(f, VDFS_RT_PB, idx);
        free(pb);
        return 0;
    }
    bool dirty = false;
    char sub[64];
    for (uint32_t e = 0; e < VDFS_PB_ENTRIES; e++) {
        uint32_t q = pb->entries[e];
        if (!q)
            continue;
        snprintf(sub, sizeof(sub), "entry %u of pointer block %" PRIu64, e, idx);
        uint32_t nq = level == 1 ? check_data_ptr(w, VDFS_RT_FB, q, (uint32_t)idx, e, sub)
                                 : check_pb_ptr(w, q, 1, (uint32_t)idx, e, sub);
        if (nq != q) {
            pb->entries[e] = nq;
            dirty = true;
        }
    }
    if (dirty && f->opt.fix)
        fsck_pb_store(f, idx, pb);
    free(pb);
    return p;
}

static void free_descriptor(struct fsck *f, uint32_t ino)
{
    f->inos[ino].state = INO_BAD;
    fsck_clear_bit(f->rs[VDFS_RT_FD].bits, ino);
    f->rs[VDFS_RT_FD].clusters[ino / f->sb.region[VDFS_RT_FD].per_cluster].dirty = true;
}

static bool check_resident(struct fsck *f, struct vdfs_fd *fd, uint32_t dtype, const char *obj, uint64_t addr)
{
    bool dirty = false;
    uint64_t limit = dtype == DT_DIR ? 0 : VDFS_RESIDENT_MAX;
    if (fd->size > limit) {
        fsck_problem(f, "resident_size", obj, addr, true,
                     "ino %u: size %" PRIu64 " too large for data inside the descriptor; truncating to %" PRIu64,
                     fd->ino, fd->size, limit);
        fd->size = limit;
        dirty = true;
    }
    if (!fsck_all_zero(fd->data.resident + fd->size, VDFS_RESIDENT_MAX - fd->size)) {
        fsck_problem(f, "resident_tail", obj, addr, true, "ino %u: bytes past the end of its resident data; zeroing",
                     fd->ino);
        memset(fd->data.resident + fd->size, 0, VDFS_RESIDENT_MAX - fd->size);
        dirty = true;
    }
    return dirty;
}

static bool check_map(struct walk *w, struct vdfs_fd *fd)
{
    struct fsck *f = w->p3->f;
    bool dirty = false;
    char where[32];
    uint32_t first_unused = VDFS_SLOTS;
    if (fd->addr_mode == VDFS_AM_SUB) {
        first_unused = f->sb.block_size / f->sb.subblock_size;
        for (uint32_t u = 0; u < first_unused; u++) {
            if (!fd->data.slots[u])
                continue;
            snprintf(where, sizeof(where), "slot %u", u);
            uint32_t np = check_data_ptr(w, VDFS_RT_SB, fd->data.slots[u], UINT32_MAX, u, where);
            dirty |= np != fd->data.slots[u];
            fd->data.slots[u] = np;
        }
    } else {
        for (uint32_t s = 0; s < VDFS_SLOTS; s++) {
            uint32_t p = fd->data.slots[s];
            if (!p)
                continue;
            snprintf(where, sizeof(where), "slot %u", s);
            uint32_t np;
            if (s < VDFS_DIRECT_SLOTS)
                np = check_data_ptr(w, VDFS_RT_FB, p, UINT32_MAX, s, where);
            else
                np = check_pb_ptr(w, p, s < VDFS_DIRECT_SLOTS + VDFS_SINGLE_SLOTS ? 1 : 2, UINT32_MAX, s, where);
            dirty |= np != p;
            fd->data.slots[s] = np;
        }
    }
    for (uint32_t s = first_unused; s < VDFS_SLOTS; s++) {
        if (fd->data.slots[s]) {
            char obj[32];
            snprintf(obj, sizeof(obj), "ino %u", fd->ino);
            fsck_problem(f, "slot_stray", obj, vdfs_fd_addr(&f->sb, fd->ino), true,
                         "ino %u: slot %u is set but unused by sub-block addressing; clearing", fd->ino, s);
            fd->data.slots[s] = 0;
            dirty = true;
        }
    }
    return dirty;
}

static void check_fd(struct pass3 *p3, uint32_t ino, bool bitmap_unknown)
{
    struct fsck *f = p3->f;
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    if (!fd) {
        f->operational_error = true;
        return;
    }
    uint64_t addr = vdfs_fd_addr(&f->sb, ino);
    char obj[32];
    snprintf(obj, sizeof(obj), "ino %u", ino);
    int rc = fsck_fd_load(f, ino, fd);
    uint32_t dtype = rc == 0 ? fsck_dtype_of_mode(fd->mode) : DT_UNKNOWN;
    if (bitmap_unknown) {
        /* Its bitmap is gone: a descriptor counts as allocated when it is
         * intact and still linked; pass 6 rebuilds the bitmap. */
        if (rc != 0 || fd->nlink == 0 || dtype == DT_UNKNOWN) {
            free(fd);
            return;
        }
        fsck_set_bit(f->rs[VDFS_RT_FD].bits, ino);
    }
    if (rc != 0) {
        fsck_problem(f, "fd_bad", obj, addr, true, "bad checksum in descriptor %u at 0x%" PRIx64 "; freeing it", ino,
                     addr);
        free_descriptor(f, ino);
        free(fd);
        return;
    }
    if (dtype == DT_UNKNOWN || fd->addr_mode > VDFS_AM_BLOCK ||
        (fd->addr_mode == VDFS_AM_SUB && fd->size > f->sb.block_size)) {
        fsck_problem(f, "fd_insane", obj, addr, true,
                     "descriptor %u is not usable (mode 0%o, addressing mode %u, size %" PRIu64 "); freeing it", ino,
                     fd->mode, fd->addr_mode, fd->size);
        free_descriptor(f, ino);
        free(fd);
        return;
    }
    struct walk w = {.p3 = p3, .ino = ino};
    bool dirty = false;
    if (fd->addr_mode == VDFS_AM_RESIDENT)
        dirty |= check_resident(f, fd, dtype, obj, addr);
    else
        dirty |= check_map(&w, fd);
    if (dtype == DT_DIR && fd->size % VDFS_META_SIZE) {
        fsck_problem(f, "dir_size", obj, addr, true,
                     "directory %u: size %" PRIu64 " is not a whole number of directory blocks; rounding down", ino,
                     fd->size);
        fd->size -= fd->size % VDFS_META_SIZE;
        dirty = true;
    }
    uint64_t counted = w.fb * f->sb.block_size + w.sb * f->sb.subblock_size;
    /* A directory has every block of its size allocated; one that claims
     * more would send pass 4 through up to 2^44 / 4 KiB missing blocks. */
    if (dtype == DT_DIR && fd->addr_mode != VDFS_AM_RESIDENT && fd->size > counted) {
        uint64_t cut = counted - counted % VDFS_META_SIZE;
        fsck_problem(f, "dir_size_beyond_blocks", obj, addr, true,
                     "directory %u: size %" PRIu64 " is beyond its %" PRIu64 " allocated bytes; cutting it to %" PRIu64,
                     ino, fd->size, counted, cut);
        fd->size = cut;
        dirty = true;
    }
    if (w.has_dup) {
        if (p3->ndef == p3->cap) {
            size_t cap = p3->cap ? p3->cap * 2 : 16;
            struct deferred_alloc *n = realloc(p3->def, cap * sizeof(*n));
            if (n) {
                p3->def = n;
                p3->cap = cap;
            }
        }
        if (p3->ndef < p3->cap)
            p3->def[p3->ndef++] = (struct deferred_alloc){ino, counted};
    } else if (fd->alloc_bytes != counted) {
        fsck_problem(f, "alloc_bytes", obj, addr, true,
                     "ino %u: allocated bytes %" PRIu64 " recorded, %" PRIu64 " counted; fixing", ino, fd->alloc_bytes,
                     counted);
        fd->alloc_bytes = counted;
        dirty = true;
    }
    if (dirty && f->opt.fix)
        fsck_fd_store(f, fd);
    struct fsck_ino *in = &f->inos[ino];
    in->state = INO_OK;
    in->dtype = (uint8_t)dtype;
    in->nlink = fd->nlink;
    in->disk_parent = fd->parent;
    fsck_set_bit(f->rs[VDFS_RT_FD].ref, ino);
    free(fd);
}

static int set_pointer(struct fsck *f, const struct fsck_dup *d, uint32_t p)
{
    if (!f->opt.fix)
        return 0;
    int rc;
    if (d->container == UINT32_MAX) {
        struct vdfs_fd *fd = malloc(sizeof(*fd));
        if (!fd)
            return -ENOMEM;
        rc = fsck_fd_load(f, d->ino, fd);
        if (rc == 0) {
            fd->data.slots[d->entry] = p;
            rc = fsck_fd_store(f, fd);
        }
        free(fd);
    } else {
        struct vdfs_pb *pb = malloc(sizeof(*pb));
        if (!pb)
            return -ENOMEM;
        rc = fsck_pb_load(f, d->container, pb);
        if (rc == 0) {
            pb->entries[d->entry] = p;
            rc = fsck_pb_store(f, d->container, pb);
        }
        free(pb);
    }
    return rc;
}

static uint32_t current_pointer(struct fsck *f, const struct fsck_dup *d)
{
    uint32_t p = vdfs_ptr_make(d->index, false);
    if (d->container == UINT32_MAX) {
        struct vdfs_fd *fd = malloc(sizeof(*fd));
        if (fd && fsck_fd_load(f, d->ino, fd) == 0)
            p = fd->data.slots[d->entry];
        free(fd);
    } else {
        struct vdfs_pb *pb = malloc(sizeof(*pb));
        if (pb && fsck_pb_load(f, d->container, pb) == 0)
            p = pb->entries[d->entry];
        free(pb);
    }
    return p;
}

static int copy_unit(struct fsck *f, unsigned rtype, uint64_t from, uint64_t to)
{
    if (!f->opt.fix)
        return 0;
    uint32_t unit = f->sb.region[rtype].unit_size;
    size_t chunk = unit < (1u << 20) ? unit : (1u << 20);
    uint8_t *buf = vdfs_aligned_alloc(chunk);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    for (uint64_t off = 0; off < unit && rc == 0; off += chunk) {
        rc = fsck_read(f, buf, chunk, vdfs_resource_addr(&f->sb, rtype, from) + off);
        if (rc == 0)
            rc = fsck_write(f, buf, chunk, vdfs_resource_addr(&f->sb, rtype, to) + off);
    }
    vdfs_aligned_free(buf);
    return rc;
}

static void resolve_dups(struct pass3 *p3)
{
    struct fsck *f = p3->f;
    for (size_t i = 0; i < f->ndups; i++) {
        const struct fsck_dup *d = &f->dups[i];
        uint32_t newp = 0;
        uint64_t ni;
        if (d->rtype != VDFS_RT_PB && fsck_alloc(f, d->rtype, d->ino, &ni)) {
            uint32_t old = current_pointer(f, d);
            if (copy_unit(f, d->rtype, d->index, ni) == 0) {
                newp = vdfs_ptr_make(ni, d->rtype == VDFS_RT_FB && vdfs_ptr_tbz(old));
                fsck_info(f, "ino %u: %s %" PRIu64 " copied to %" PRIu64, d->ino, unit_name(d->rtype), d->index, ni);
            }
        }
        if (!newp) {
            fsck_info(f, "ino %u: shared %s %" PRIu64 " dropped from its map (now a hole)", d->ino,
                      unit_name(d->rtype), d->index);
            for (size_t k = 0; k < p3->ndef; k++)
                if (p3->def[k].ino == d->ino && d->rtype != VDFS_RT_PB)
                    p3->def[k].counted -= f->sb.region[d->rtype].unit_size;
        }
        if (set_pointer(f, d, newp) < 0)
            f->operational_error = true;
    }
    for (size_t k = 0; k < p3->ndef; k++) {
        struct vdfs_fd *fd = malloc(sizeof(*fd));
        uint32_t ino = p3->def[k].ino;
        if (fd && fsck_fd_load(f, ino, fd) == 0 && fd->alloc_bytes != p3->def[k].counted) {
            char obj[32];
            snprintf(obj, sizeof(obj), "ino %u", ino);
            if (fsck_problem(f, "alloc_bytes", obj, vdfs_fd_addr(&f->sb, ino), true,
                             "ino %u: allocated bytes %" PRIu64 " recorded, %" PRIu64 " counted; fixing", ino,
                             fd->alloc_bytes, p3->def[k].counted)) {
                fd->alloc_bytes = p3->def[k].counted;
                fsck_fd_store(f, fd);
            }
        }
        free(fd);
    }
}

int fsck_pass_files(struct fsck *f)
{
    fsck_pass_begin(f, FSCK_PASS_FILES);
    struct pass3 p3 = {.f = f};
    struct fsck_region *fdr = &f->rs[VDFS_RT_FD];
    uint32_t per = f->sb.region[VDFS_RT_FD].per_cluster;
    /* Descriptor 0 is reserved and always marked allocated. */
    fsck_set_bit(fdr->ref, 0);
    for (uint32_t ino = 1; ino < f->nino; ino++) {
        if (fsck_cancelled(f))
            break;
        bool unknown = fdr->clusters[ino / per].bad;
        if (unknown || fsck_bit(fdr->bits, ino))
            check_fd(&p3, ino, unknown);
        if ((ino & 1023) == 0)
            fsck_progress(f, ino, f->nino);
    }
    fsck_progress(f, f->nino, f->nino);
    if (!fsck_cancelled(f))
        resolve_dups(&p3);
    free(p3.def);
    for (uint32_t ino = 1; ino < f->nino; ino++) {
        if (f->inos[ino].state != INO_OK)
            continue;
        switch (f->inos[ino].dtype) {
        case DT_REG: f->files++; break;
        case DT_DIR: f->directories++; break;
        case DT_LNK: f->symlinks++; break;
        default: f->others++; break;
        }
    }
    return 0;
}
