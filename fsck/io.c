/* Device access, object load/store and block-map lookup for fsck.vdfs. */
#include <dirent.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsck.h"

int fsck_read(struct fsck *f, void *buf, size_t len, uint64_t off)
{
    if (off > f->dev_size || len > f->dev_size - off)
        return -EIO;
    return vdfs_dev_read(f->dev, buf, len, off);
}

int fsck_write(struct fsck *f, const void *buf, size_t len, uint64_t off)
{
    if (!f->opt.fix)
        return 0;
    int rc = vdfs_dev_write(f->dev, buf, len, off);
    if (rc < 0) {
        fsck_error(f, "write of %zu bytes at 0x%llx failed: %s", len, (unsigned long long)off, strerror(-rc));
        f->operational_error = true;
        fsck_problem_unfixed(f);
    }
    return rc;
}

bool fsck_all_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

bool fsck_bit(const uint8_t *bits, uint64_t i) { return (bits[i >> 3] >> (i & 7)) & 1u; }
void fsck_set_bit(uint8_t *bits, uint64_t i) { bits[i >> 3] |= (uint8_t)(1u << (i & 7)); }
void fsck_clear_bit(uint8_t *bits, uint64_t i) { bits[i >> 3] &= (uint8_t)~(1u << (i & 7)); }

const char *fsck_rtype_name(unsigned rtype)
{
    static const char *const names[VDFS_RT_COUNT] = {"FB", "SB", "PB", "FD"};
    return rtype < VDFS_RT_COUNT ? names[rtype] : "?";
}

uint32_t fsck_dtype_of_mode(uint32_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return DT_REG;
    case S_IFDIR: return DT_DIR;
    case S_IFLNK: return DT_LNK;
    case S_IFIFO: return DT_FIFO;
    case S_IFSOCK: return DT_SOCK;
    case S_IFCHR: return DT_CHR;
    case S_IFBLK: return DT_BLK;
    default: return DT_UNKNOWN;
    }
}

bool fsck_ptr_in_range(const struct fsck *f, unsigned rtype, uint32_t p)
{
    return vdfs_ptr_present(p) && vdfs_ptr_index(p) < f->rs[rtype].count;
}

static void *meta_buf(void)
{
    return vdfs_aligned_alloc(VDFS_META_SIZE);
}

int fsck_fd_load(struct fsck *f, uint32_t ino, struct vdfs_fd *fd)
{
    uint8_t *buf = meta_buf();
    if (!buf)
        return -ENOMEM;
    uint64_t addr = vdfs_fd_addr(&f->sb, ino);
    int rc = fsck_read(f, buf, VDFS_META_SIZE, addr);
    if (rc == 0)
        rc = vdfs_fd_decode(buf, addr, fd);
    if (rc == 0 && fd->ino != ino)
        rc = -EIO;
    vdfs_aligned_free(buf);
    return rc;
}

static int store_meta(struct fsck *f, struct vdfs_header *h, uint32_t kind, uint64_t addr, uint8_t *buf)
{
    /* The object is already encoded in buf; sealing fixes header and checksum. */
    h->kind = kind;
    h->addr = addr;
    vdfs_obj_seal(buf, VDFS_META_SIZE, h);
    return fsck_write(f, buf, VDFS_META_SIZE, addr);
}

int fsck_fd_store(struct fsck *f, struct vdfs_fd *fd)
{
    uint8_t *buf = meta_buf();
    if (!buf)
        return -ENOMEM;
    uint64_t addr = vdfs_fd_addr(&f->sb, fd->ino);
    fd->hdr.gen++;
    fd->hdr.kind = VDFS_KIND_FD;
    fd->hdr.addr = addr;
    vdfs_fd_encode(fd, buf);
    int rc = store_meta(f, &fd->hdr, VDFS_KIND_FD, addr, buf);
    vdfs_aligned_free(buf);
    return rc;
}

int fsck_pb_load(struct fsck *f, uint64_t index, struct vdfs_pb *pb)
{
    if (index >= f->rs[VDFS_RT_PB].count)
        return -ERANGE;
    uint8_t *buf = meta_buf();
    if (!buf)
        return -ENOMEM;
    uint64_t addr = vdfs_resource_addr(&f->sb, VDFS_RT_PB, index);
    int rc = fsck_read(f, buf, VDFS_META_SIZE, addr);
    if (rc == 0)
        rc = vdfs_pb_decode(buf, addr, pb);
    vdfs_aligned_free(buf);
    return rc;
}

int fsck_pb_store(struct fsck *f, uint64_t index, struct vdfs_pb *pb)
{
    uint8_t *buf = meta_buf();
    if (!buf)
        return -ENOMEM;
    uint64_t addr = vdfs_resource_addr(&f->sb, VDFS_RT_PB, index);
    pb->hdr.gen++;
    pb->hdr.kind = VDFS_KIND_PB;
    pb->hdr.addr = addr;
    vdfs_pb_encode(pb, buf);
    int rc = store_meta(f, &pb->hdr, VDFS_KIND_PB, addr, buf);
    vdfs_aligned_free(buf);
    return rc;
}

int fsck_dirblock_store(struct fsck *f, uint64_t addr, struct vdfs_dirblock *d)
{
    uint8_t *buf = meta_buf();
    if (!buf)
        return -ENOMEM;
    d->hdr.gen++;
    d->hdr.kind = VDFS_KIND_DIR;
    d->hdr.addr = addr;
    vdfs_dirblock_encode(d, buf);
    int rc = store_meta(f, &d->hdr, VDFS_KIND_DIR, addr, buf);
    vdfs_aligned_free(buf);
    return rc;
}

/* Follows one pointer-block level; 1 when the pointer or block is unusable. */
static int pb_entry(struct fsck *f, uint32_t p, uint32_t owner, uint32_t level, uint32_t entry, uint32_t *out)
{
    if (!fsck_ptr_in_range(f, VDFS_RT_PB, p))
        return 1;
    struct vdfs_pb *pb = malloc(sizeof(*pb));
    if (!pb)
        return -ENOMEM;
    int rc = fsck_pb_load(f, vdfs_ptr_index(p), pb);
    if (rc == -ENOMEM) {
        free(pb);
        return rc;
    }
    if (rc == 0 && (pb->owner_ino != owner || pb->level != level))
        rc = -EIO;
    if (rc == 0)
        *out = pb->entries[entry];
    free(pb);
    return rc == 0 ? 0 : 1;
}

int fsck_map_lookup(struct fsck *f, const struct vdfs_fd *fd, uint64_t logical, uint64_t *addr)
{
    const struct vdfs_super *s = &f->sb;
    if (fd->addr_mode == VDFS_AM_SUB) {
        uint64_t unit = logical / s->subblock_size;
        if (unit >= s->block_size / s->subblock_size)
            return 1;
        uint32_t p = fd->data.slots[unit];
        if (!fsck_ptr_in_range(f, VDFS_RT_SB, p))
            return 1;
        *addr = vdfs_resource_addr(s, VDFS_RT_SB, vdfs_ptr_index(p)) + logical % s->subblock_size;
        return 0;
    }
    if (fd->addr_mode != VDFS_AM_BLOCK)
        return 1;
    uint64_t l = logical / s->block_size;
    uint32_t p;
    int rc;
    if (l < VDFS_DIRECT_SLOTS) {
        p = fd->data.slots[l];
    } else if (l < VDFS_DIRECT_SLOTS + (uint64_t)VDFS_SINGLE_SLOTS * VDFS_PB_ENTRIES) {
        uint64_t i = l - VDFS_DIRECT_SLOTS;
        rc = pb_entry(f, fd->data.slots[VDFS_DIRECT_SLOTS + i / VDFS_PB_ENTRIES], fd->ino, 1,
                      (uint32_t)(i % VDFS_PB_ENTRIES), &p);
        if (rc)
            return rc;
    } else {
        uint64_t i = l - VDFS_DIRECT_SLOTS - (uint64_t)VDFS_SINGLE_SLOTS * VDFS_PB_ENTRIES;
        uint64_t per2 = (uint64_t)VDFS_PB_ENTRIES * VDFS_PB_ENTRIES;
        if (i / per2 >= VDFS_DOUBLE_SLOTS)
            return 1;
        uint32_t l1;
        rc = pb_entry(f, fd->data.slots[VDFS_DIRECT_SLOTS + VDFS_SINGLE_SLOTS + i / per2], fd->ino, 2,
                      (uint32_t)((i / VDFS_PB_ENTRIES) % VDFS_PB_ENTRIES), &l1);
        if (rc)
            return rc;
        rc = pb_entry(f, l1, fd->ino, 1, (uint32_t)(i % VDFS_PB_ENTRIES), &p);
        if (rc)
            return rc;
    }
    if (!fsck_ptr_in_range(f, VDFS_RT_FB, p))
        return 1;
    *addr = vdfs_resource_addr(s, VDFS_RT_FB, vdfs_ptr_index(p)) + logical % s->block_size;
    return 0;
}

static void mark_dirty(struct fsck *f, unsigned rtype, uint64_t index)
{
    uint32_t per = f->sb.region[rtype].per_cluster;
    f->rs[rtype].clusters[index / per].dirty = true;
}

bool fsck_alloc(struct fsck *f, unsigned rtype, uint32_t owner, uint64_t *index)
{
    struct fsck_region *r = &f->rs[rtype];
    /* Only called once every reference is known.  Prefer resources that are
     * free in the bitmap; a leaked one (marked but unreferenced) will do. */
    for (int strict = 1; strict >= 0; strict--) {
        for (uint64_t i = 0; i < r->count; i++) {
            if (fsck_bit(r->ref, i) || (strict && fsck_bit(r->bits, i)))
                continue;
            fsck_set_bit(r->ref, i);
            fsck_set_bit(r->bits, i);
            if (r->owner)
                r->owner[i] = owner;
            mark_dirty(f, rtype, i);
            *index = i;
            return true;
        }
    }
    return false;
}

void fsck_ref_release(struct fsck *f, unsigned rtype, uint64_t index)
{
    struct fsck_region *r = &f->rs[rtype];
    fsck_clear_bit(r->ref, index);
    fsck_clear_bit(r->bits, index);
    if (r->owner)
        r->owner[index] = 0;
    mark_dirty(f, rtype, index);
}
