/* A file's block map: where each logical unit of a file lives.
 *
 * RESIDENT files keep their bytes in the descriptor.  SUB files (at most
 * one file block long) name sub-blocks from their direct slots.  BLOCK
 * files name file blocks through 256 direct slots, 64 single-indirect and
 * 128 double-indirect pointer blocks.  A unit is allocated on first write
 * and reads as zeros until then (thin provisioning). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define SINGLE_BASE ((uint64_t)VDFS_DIRECT_SLOTS)
#define SINGLE_SPAN ((uint64_t)VDFS_PB_ENTRIES)
#define DOUBLE_BASE (SINGLE_BASE + VDFS_SINGLE_SLOTS * SINGLE_SPAN)
#define DOUBLE_SPAN (SINGLE_SPAN * SINGLE_SPAN)
#define MAX_UNITS (DOUBLE_BASE + VDFS_DOUBLE_SLOTS * DOUBLE_SPAN)

uint64_t filemap_max_size(const struct vdfs *fs)
{
    return MAX_UNITS * fs->sb.block_size;
}

uint64_t filemap_unit_size(const struct vdfs *fs, const struct vdfs_fd *fd)
{
    return fd->addr_mode == VDFS_AM_SUB ? fs->sb.subblock_size : fs->sb.block_size;
}

static uint32_t subs_per_block(const struct vdfs *fs)
{
    return fs->sb.block_size / fs->sb.subblock_size;
}

static unsigned unit_rtype(const struct vdfs_fd *fd)
{
    return fd->addr_mode == VDFS_AM_SUB ? VDFS_RT_SB : VDFS_RT_FB;
}

/* Frees a resource of fd's map.  A directory's blocks are journaled
 * metadata: once such a block is free it may become file data, written in
 * place without the journal, so replay must never again write the old
 * directory image there.  The commit that frees it therefore checkpoints
 * the journal before the block can be handed out again. */
static int free_unit(struct vdfs *fs, const struct vdfs_fd *fd, unsigned rtype, uint64_t index)
{
    if (S_ISDIR(fd->mode) && (rtype == VDFS_RT_FB || rtype == VDFS_RT_SB))
        fs->journal.checkpoint_after_commit = true;
    return free_resource(fs, rtype, index);
}

static int check_ptr(struct vdfs *fs, const struct vdfs_fd *fd, unsigned rtype, uint32_t p)
{
    if (vdfs_ptr_present(p) && vdfs_ptr_index(p) >= fs->sb.region[rtype].count) {
        vdfs_log(VDFS_LOG_ERR, "descriptor %u names resource %llu of type %u, beyond the volume; run fsck.vdfs",
                 fd->ino, (unsigned long long)vdfs_ptr_index(p), rtype);
        return -EIO;
    }
    return 0;
}

/* The cached image of pointer block `p` of `fd`, and its address. */
static int pb_image(struct vdfs *fs, const struct vdfs_fd *fd, uint32_t p, uint64_t *addr, const uint8_t **raw)
{
    int rc = check_ptr(fs, fd, VDFS_RT_PB, p);
    if (rc)
        return rc;
    *addr = vdfs_resource_addr(&fs->sb, VDFS_RT_PB, vdfs_ptr_index(p));
    return meta_get(fs, *addr, VDFS_KIND_PB, raw);
}

static int pb_owner_check(const struct vdfs_fd *fd, uint64_t addr, uint32_t owner, uint32_t level, uint32_t want_level)
{
    if (owner == fd->ino && level == want_level)
        return 0;
    vdfs_log(VDFS_LOG_ERR, "pointer block at 0x%llx belongs to descriptor %u level %u, not %u level %u",
             (unsigned long long)addr, owner, level, fd->ino, want_level);
    return -EIO;
}

static int pb_load(struct vdfs *fs, const struct vdfs_fd *fd, uint32_t p, uint32_t level, struct vdfs_pb *pb)
{
    uint64_t addr;
    const uint8_t *raw;
    int rc = pb_image(fs, fd, p, &addr, &raw);
    if (rc == 0)
        rc = vdfs_pb_decode(raw, addr, pb);
    if (rc == 0)
        rc = pb_owner_check(fd, addr, pb->owner_ino, pb->level, level);
    return rc;
}

static int pb_store(struct vdfs *fs, struct vdfs_pb *pb)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    pb->hdr.gen++;
    vdfs_pb_encode(pb, buf);
    int rc = meta_put(fs, pb->hdr.addr, buf);
    vdfs_aligned_free(buf);
    return rc;
}

static int pb_new(struct vdfs *fs, const struct vdfs_fd *fd, uint32_t level, uint32_t *p, struct vdfs_pb *pb)
{
    uint64_t idx;
    int rc = alloc_resource(fs, VDFS_RT_PB, &idx);
    if (rc)
        return rc;
    memset(pb, 0, sizeof(*pb));
    pb->hdr.kind = VDFS_KIND_PB;
    pb->hdr.addr = vdfs_resource_addr(&fs->sb, VDFS_RT_PB, idx);
    pb->owner_ino = fd->ino;
    pb->level = level;
    *p = vdfs_ptr_make(idx, false);
    return pb_store(fs, pb);
}

static bool pb_empty(const struct vdfs_pb *pb)
{
    for (uint32_t i = 0; i < VDFS_PB_ENTRIES; i++)
        if (pb->entries[i])
            return false;
    return true;
}

/* One entry of a cached pointer block, for lookups: meta_get verified
 * the image when it came in from the device, so the only checks left are
 * whose block it is; decoding all of its entries for one would cost more
 * than the rest of a 4 KiB overwrite's bookkeeping. */
static int pb_entry(struct vdfs *fs, const struct vdfs_fd *fd, uint32_t p, uint32_t level, uint32_t index,
                    uint32_t *out)
{
    uint64_t addr;
    const uint8_t *raw;
    int rc = pb_image(fs, fd, p, &addr, &raw);
    if (rc)
        return rc;
    vdfs_le32 owner, lvl, entry;
    memcpy(&owner, raw + offsetof(struct vdfs_disk_pb, owner_ino), sizeof(owner));
    memcpy(&lvl, raw + offsetof(struct vdfs_disk_pb, level), sizeof(lvl));
    memcpy(&entry, raw + offsetof(struct vdfs_disk_pb, entries) + (size_t)index * sizeof(entry), sizeof(entry));
    rc = pb_owner_check(fd, addr, vdfs_get32(owner), vdfs_get32(lvl), level);
    if (rc == 0)
        *out = vdfs_get32(entry);
    return rc;
}

/* Reads the pointer of unit L; 0 means a hole. */
static int ptr_get(struct vdfs *fs, struct vdfs_fd *fd, uint64_t L, uint32_t *out)
{
    int rc;
    *out = 0;
    if (fd->addr_mode == VDFS_AM_SUB) {
        if (L < subs_per_block(fs))
            *out = fd->data.slots[L];
        return check_ptr(fs, fd, VDFS_RT_SB, *out);
    }
    if (L < SINGLE_BASE) {
        *out = fd->data.slots[L];
    } else if (L < DOUBLE_BASE) {
        uint64_t rel = L - SINGLE_BASE;
        uint32_t p = fd->data.slots[VDFS_DIRECT_SLOTS + rel / SINGLE_SPAN];
        if (!vdfs_ptr_present(p))
            return 0;
        if ((rc = pb_entry(fs, fd, p, 1, (uint32_t)(rel % SINGLE_SPAN), out)))
            return rc;
    } else if (L < MAX_UNITS) {
        uint64_t rel = L - DOUBLE_BASE;
        uint32_t p = fd->data.slots[VDFS_DIRECT_SLOTS + VDFS_SINGLE_SLOTS + rel / DOUBLE_SPAN];
        if (!vdfs_ptr_present(p))
            return 0;
        if ((rc = pb_entry(fs, fd, p, 2, (uint32_t)((rel / SINGLE_SPAN) % SINGLE_SPAN), &p)))
            return rc;
        if (!vdfs_ptr_present(p))
            return 0;
        if ((rc = pb_entry(fs, fd, p, 1, (uint32_t)(rel % SINGLE_SPAN), out)))
            return rc;
    }
    return check_ptr(fs, fd, VDFS_RT_FB, *out);
}

/* Sets the pointer of unit L, creating pointer blocks on the way. */
static int ptr_set(struct vdfs *fs, struct vdfs_fd *fd, uint64_t L, uint32_t value)
{
    struct vdfs_pb *pb1 = malloc(sizeof(*pb1)), *pb2 = malloc(sizeof(*pb2));
    int rc = 0;
    if (!pb1 || !pb2) {
        rc = -ENOMEM;
        goto out;
    }
    if (fd->addr_mode == VDFS_AM_SUB || L < SINGLE_BASE) {
        fd->data.slots[L] = value;
    } else if (L < DOUBLE_BASE) {
        uint64_t rel = L - SINGLE_BASE;
        uint32_t *slot = &fd->data.slots[VDFS_DIRECT_SLOTS + rel / SINGLE_SPAN];
        if (!vdfs_ptr_present(*slot))
            rc = pb_new(fs, fd, 1, slot, pb1);
        else
            rc = pb_load(fs, fd, *slot, 1, pb1);
        if (rc == 0) {
            pb1->entries[rel % SINGLE_SPAN] = value;
            rc = pb_store(fs, pb1);
        }
    } else if (L < MAX_UNITS) {
        uint64_t rel = L - DOUBLE_BASE;
        uint32_t *slot = &fd->data.slots[VDFS_DIRECT_SLOTS + VDFS_SINGLE_SLOTS + rel / DOUBLE_SPAN];
        if (!vdfs_ptr_present(*slot))
            rc = pb_new(fs, fd, 2, slot, pb2);
        else
            rc = pb_load(fs, fd, *slot, 2, pb2);
        if (rc)
            goto out;
        uint32_t *mid = &pb2->entries[(rel / SINGLE_SPAN) % SINGLE_SPAN];
        if (!vdfs_ptr_present(*mid)) {
            rc = pb_new(fs, fd, 1, mid, pb1);
            if (rc == 0)
                rc = pb_store(fs, pb2);
        } else {
            rc = pb_load(fs, fd, *mid, 1, pb1);
        }
        if (rc == 0) {
            pb1->entries[rel % SINGLE_SPAN] = value;
            rc = pb_store(fs, pb1);
        }
    } else {
        rc = -EFBIG;
    }
out:
    free(pb1);
    free(pb2);
    return rc;
}

static uint64_t unit_addr(struct vdfs *fs, const struct vdfs_fd *fd, uint32_t p)
{
    return vdfs_resource_addr(&fs->sb, unit_rtype(fd), vdfs_ptr_index(p));
}

/* Starts a segment at `off`: resident files take the whole range, others
 * are clipped to the unit holding `off`, whose index goes to *unit_index. */
static bool segment_start(struct vdfs *fs, const struct vdfs_fd *fd, uint64_t off, uint64_t len,
                          struct map_segment *seg, uint64_t *unit_index)
{
    memset(seg, 0, sizeof(*seg));
    seg->file_off = off;
    if (fd->addr_mode == VDFS_AM_RESIDENT) {
        seg->resident = true;
        seg->length = len;
        return false;
    }
    uint64_t unit = filemap_unit_size(fs, fd);
    uint64_t within = off % unit;
    *unit_index = off / unit;
    seg->length = unit - within < len ? unit - within : len;
    return true;
}

int filemap_lookup(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, uint64_t len, struct map_segment *seg)
{
    uint64_t L;
    if (!segment_start(fs, fd, off, len, seg, &L))
        return 0;
    uint64_t within = off % filemap_unit_size(fs, fd);
    uint32_t p;
    int rc = ptr_get(fs, fd, L, &p);
    if (rc)
        return rc;
    if (vdfs_ptr_present(p) && !vdfs_ptr_tbz(p))
        seg->dev_off = unit_addr(fs, fd, p) + within;
    return 0;
}

/* Allocates one unit of the file's current kind, zeroed on the device
 * unless the caller will overwrite all of it. */
static int new_unit(struct vdfs *fs, struct vdfs_fd *fd, bool zero, uint32_t *p)
{
    unsigned rt = unit_rtype(fd);
    uint64_t idx;
    int rc = alloc_resource(fs, rt, &idx);
    if (rc)
        return rc;
    uint64_t size = fs->sb.region[rt].unit_size;
    if (zero) {
        rc = vdfs_dev_zero(fs->dev, vdfs_resource_addr(&fs->sb, rt, idx), size);
        if (rc) {
            free_unit(fs, fd, rt, idx);
            return rc;
        }
    }
    fd->alloc_bytes += size;
    *p = vdfs_ptr_make(idx, false);
    return 0;
}

/* RESIDENT -> SUB or BLOCK, and SUB -> BLOCK: the data moves into the
 * first unit of the new kind. */
/* A directory that outgrows its sub-blocks moves into a file block.  Its
 * blocks are metadata: their latest images are in the cache and journal,
 * not necessarily on the device, and each names its own address.  So each
 * is re-sealed at its new address through the cache, and the old address
 * forgotten, instead of copying device bytes. */
static int rehome_dir_blocks(struct vdfs *fs, const struct vdfs_fd *fd, const uint32_t *old_slots,
                             uint64_t new_base)
{
    struct vdfs_dirblock *db = malloc(sizeof(*db));
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    int rc = db && buf ? 0 : -ENOMEM;
    uint32_t per_sub = fs->sb.subblock_size / VDFS_META_SIZE;
    for (uint64_t k = 0; rc == 0 && k < fd->size / VDFS_META_SIZE; k++) {
        uint32_t p = old_slots[k / per_sub];
        if (!vdfs_ptr_present(p))
            continue;
        uint64_t from = vdfs_resource_addr(&fs->sb, VDFS_RT_SB, vdfs_ptr_index(p)) + (k % per_sub) * VDFS_META_SIZE;
        uint64_t to = new_base + k * VDFS_META_SIZE;
        const uint8_t *raw;
        rc = meta_get(fs, from, VDFS_KIND_DIR, &raw);
        if (rc == 0)
            rc = vdfs_dirblock_decode(raw, from, db);
        if (rc == 0) {
            db->hdr.addr = to;
            db->hdr.gen++;
            vdfs_dirblock_encode(db, buf);
            rc = meta_put(fs, to, buf);
        }
        if (rc == 0)
            meta_forget(fs, from);
    }
    free(db);
    vdfs_aligned_free(buf);
    return rc;
}

static int convert(struct vdfs *fs, struct vdfs_fd *fd, uint32_t to_mode)
{
    uint32_t bs = fs->sb.block_size;
    uint8_t *img = vdfs_aligned_alloc(bs);
    if (!img)
        return -ENOMEM;
    memset(img, 0, bs);
    int rc = 0;
    bool any = false;
    uint32_t old_slots[VDFS_SLOTS];
    uint32_t old_mode = fd->addr_mode;
    uint64_t old_alloc = fd->alloc_bytes;
    if (old_mode == VDFS_AM_RESIDENT) {
        if (fd->size) {
            memcpy(img, fd->data.resident, fd->size < VDFS_RESIDENT_MAX ? fd->size : VDFS_RESIDENT_MAX);
            any = true;
        }
    } else {
        bool dir = S_ISDIR(fd->mode);
        for (uint32_t i = 0; i < subs_per_block(fs); i++) {
            uint32_t p = fd->data.slots[i];
            if (!vdfs_ptr_present(p))
                continue;
            if ((rc = check_ptr(fs, fd, VDFS_RT_SB, p)))
                goto out;
            any = true;
            if (dir)
                continue; /* moved through the cache below */
            rc = vdfs_dev_read(fs->dev, img + (size_t)i * fs->sb.subblock_size, fs->sb.subblock_size,
                               vdfs_resource_addr(&fs->sb, VDFS_RT_SB, vdfs_ptr_index(p)));
            if (rc)
                goto out;
        }
    }
    memcpy(old_slots, fd->data.slots, sizeof(old_slots));
    memset(&fd->data, 0, sizeof(fd->data));
    fd->addr_mode = to_mode;
    fd->alloc_bytes = old_mode == VDFS_AM_SUB ? 0 : old_alloc;
    if (any) {
        uint32_t p;
        rc = new_unit(fs, fd, false, &p);
        if (rc == 0 && S_ISDIR(fd->mode) && old_mode == VDFS_AM_SUB)
            rc = rehome_dir_blocks(fs, fd, old_slots, unit_addr(fs, fd, p));
        else if (rc == 0)
            rc = vdfs_dev_write(fs->dev, img, filemap_unit_size(fs, fd), unit_addr(fs, fd, p));
        if (rc) {
            fd->addr_mode = old_mode;
            memcpy(fd->data.slots, old_slots, sizeof(old_slots));
            fd->alloc_bytes = old_alloc;
            if (old_mode == VDFS_AM_RESIDENT)
                memcpy(fd->data.resident, img, fd->size < VDFS_RESIDENT_MAX ? fd->size : VDFS_RESIDENT_MAX);
            goto out;
        }
        fd->data.slots[0] = p;
    }
    if (old_mode == VDFS_AM_SUB)
        for (uint32_t i = 0; i < subs_per_block(fs); i++)
            if (vdfs_ptr_present(old_slots[i]))
                free_unit(fs, fd, VDFS_RT_SB, vdfs_ptr_index(old_slots[i]));
out:
    vdfs_aligned_free(img);
    return rc;
}

/* Chooses the addressing mode a file needs to hold `end` bytes. */
static int ensure_mode(struct vdfs *fs, struct vdfs_fd *fd, uint64_t end, bool is_dir)
{
    if (fd->addr_mode == VDFS_AM_RESIDENT) {
        if (end <= VDFS_RESIDENT_MAX && !is_dir)
            return 0;
        bool sub_ok = end <= fs->sb.block_size && fs->pools[VDFS_RT_SB].free > 0;
        return convert(fs, fd, sub_ok ? VDFS_AM_SUB : VDFS_AM_BLOCK);
    }
    if (fd->addr_mode == VDFS_AM_SUB && end > fs->sb.block_size)
        return convert(fs, fd, VDFS_AM_BLOCK);
    return 0;
}

static bool map_is_empty(const struct vdfs_fd *fd)
{
    for (uint32_t i = 0; i < VDFS_SLOTS; i++)
        if (fd->data.slots[i])
            return false;
    return true;
}

/* Resident bytes past the size must read as zeros. */
static void become_resident(struct vdfs_fd *fd)
{
    fd->addr_mode = VDFS_AM_RESIDENT;
    memset(&fd->data, 0, sizeof(fd->data));
}

/* An empty file that ensure_mode just moved out of RESIDENT and that then
 * got no unit (nor pointer block) goes back: with file blocks gone, its
 * mode would otherwise stay BLOCK, and a retry after sub-blocks came free
 * would still fail. */
static int undo_empty_conversion(struct vdfs_fd *fd, uint32_t mode_before, int rc)
{
    if (mode_before == VDFS_AM_RESIDENT && fd->addr_mode != VDFS_AM_RESIDENT && map_is_empty(fd))
        become_resident(fd);
    return rc;
}

int filemap_prepare_write(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, uint64_t len, struct map_segment *seg)
{
    uint32_t mode_before = fd->addr_mode;
    int rc = ensure_mode(fs, fd, off + len, S_ISDIR(fd->mode));
    if (rc)
        return rc;
    uint64_t L;
    if (!segment_start(fs, fd, off, len, seg, &L))
        return 0;
    if (L >= MAX_UNITS)
        return -EFBIG;
    uint64_t unit = filemap_unit_size(fs, fd), within = off % unit;
    bool whole = within == 0 && seg->length == unit;
    uint32_t p;
    if ((rc = ptr_get(fs, fd, L, &p)))
        return rc;
    if (!vdfs_ptr_present(p)) {
        if ((rc = new_unit(fs, fd, !whole, &p)))
            return undo_empty_conversion(fd, mode_before, rc);
        rc = ptr_set(fs, fd, L, p);
        if (rc) {
            free_unit(fs, fd, unit_rtype(fd), vdfs_ptr_index(p));
            fd->alloc_bytes -= unit;
            return undo_empty_conversion(fd, mode_before, rc);
        }
    } else if (vdfs_ptr_tbz(p)) {
        if (!whole && (rc = vdfs_dev_zero(fs->dev, unit_addr(fs, fd, p), unit)))
            return rc;
        p &= ~VDFS_PTR_TBZ;
        if ((rc = ptr_set(fs, fd, L, p)))
            return rc;
    }
    seg->dev_off = unit_addr(fs, fd, p) + within;
    return 0;
}

/* ---- walking and freeing ranges of units ---- */

typedef int (*unit_fn)(void *ctx, uint64_t L, uint32_t p);

static int walk_pb(struct vdfs *fs, struct vdfs_fd *fd, uint32_t p, uint32_t level, uint64_t base, uint64_t lo,
                   uint64_t hi, unit_fn fn, void *ctx)
{
    struct vdfs_pb *pb = malloc(sizeof(*pb));
    if (!pb)
        return -ENOMEM;
    int rc = pb_load(fs, fd, p, level, pb);
    uint64_t span = level == 2 ? SINGLE_SPAN : 1;
    for (uint32_t i = 0; rc == 0 && i < VDFS_PB_ENTRIES; i++) {
        uint64_t start = base + i * span;
        if (start + span <= lo || start >= hi || !vdfs_ptr_present(pb->entries[i]))
            continue;
        if (level == 2)
            rc = walk_pb(fs, fd, pb->entries[i], 1, start, lo, hi, fn, ctx);
        else if ((rc = check_ptr(fs, fd, VDFS_RT_FB, pb->entries[i])) == 0)
            rc = fn(ctx, start, pb->entries[i]);
    }
    free(pb);
    return rc;
}

/* Calls fn for each allocated unit in [lo, hi), in order; fn returning a
 * positive value stops the walk (and is returned). */
static int walk_units(struct vdfs *fs, struct vdfs_fd *fd, uint64_t lo, uint64_t hi, unit_fn fn, void *ctx)
{
    int rc = 0;
    if (fd->addr_mode == VDFS_AM_RESIDENT)
        return 0;
    uint32_t direct = fd->addr_mode == VDFS_AM_SUB ? subs_per_block(fs) : VDFS_DIRECT_SLOTS;
    unsigned rt = unit_rtype(fd);
    for (uint64_t L = lo; rc == 0 && L < hi && L < direct; L++)
        if (vdfs_ptr_present(fd->data.slots[L]) && (rc = check_ptr(fs, fd, rt, fd->data.slots[L])) == 0)
            rc = fn(ctx, L, fd->data.slots[L]);
    if (fd->addr_mode == VDFS_AM_SUB)
        return rc;
    for (uint32_t s = 0; rc == 0 && s < VDFS_SINGLE_SLOTS; s++) {
        uint64_t start = SINGLE_BASE + s * SINGLE_SPAN;
        uint32_t p = fd->data.slots[VDFS_DIRECT_SLOTS + s];
        if (start + SINGLE_SPAN > lo && start < hi && vdfs_ptr_present(p))
            rc = walk_pb(fs, fd, p, 1, start, lo, hi, fn, ctx);
    }
    for (uint32_t d = 0; rc == 0 && d < VDFS_DOUBLE_SLOTS; d++) {
        uint64_t start = DOUBLE_BASE + d * DOUBLE_SPAN;
        uint32_t p = fd->data.slots[VDFS_DIRECT_SLOTS + VDFS_SINGLE_SLOTS + d];
        if (start + DOUBLE_SPAN > lo && start < hi && vdfs_ptr_present(p))
            rc = walk_pb(fs, fd, p, 2, start, lo, hi, fn, ctx);
    }
    return rc;
}

/* Frees the units of [lo, hi) and pointer blocks left empty. */
static int free_pb_range(struct vdfs *fs, struct vdfs_fd *fd, uint32_t *p, uint32_t level, uint64_t base,
                         uint64_t lo, uint64_t hi)
{
    struct vdfs_pb *pb = malloc(sizeof(*pb));
    if (!pb)
        return -ENOMEM;
    int rc = pb_load(fs, fd, *p, level, pb);
    uint64_t span = level == 2 ? SINGLE_SPAN : 1;
    bool changed = false;
    for (uint32_t i = 0; rc == 0 && i < VDFS_PB_ENTRIES; i++) {
        uint64_t start = base + i * span;
        if (start + span <= lo || start >= hi || !vdfs_ptr_present(pb->entries[i]))
            continue;
        if (level == 2) {
            uint32_t before = pb->entries[i];
            rc = free_pb_range(fs, fd, &pb->entries[i], 1, start, lo, hi);
            changed |= before != pb->entries[i];
        } else if ((rc = check_ptr(fs, fd, VDFS_RT_FB, pb->entries[i])) == 0) {
            rc = free_unit(fs, fd, VDFS_RT_FB, vdfs_ptr_index(pb->entries[i]));
            fd->alloc_bytes -= fs->sb.block_size;
            pb->entries[i] = 0;
            changed = true;
        }
    }
    if (rc == 0 && pb_empty(pb)) {
        rc = free_unit(fs, fd, VDFS_RT_PB, vdfs_ptr_index(*p));
        *p = 0;
    } else if (rc == 0 && changed) {
        rc = pb_store(fs, pb);
    }
    free(pb);
    return rc;
}

static int free_units(struct vdfs *fs, struct vdfs_fd *fd, uint64_t lo, uint64_t hi)
{
    int rc = 0;
    if (fd->addr_mode == VDFS_AM_RESIDENT || lo >= hi)
        return 0;
    uint32_t direct = fd->addr_mode == VDFS_AM_SUB ? subs_per_block(fs) : VDFS_DIRECT_SLOTS;
    unsigned rt = unit_rtype(fd);
    for (uint64_t L = lo; rc == 0 && L < hi && L < direct; L++) {
        uint32_t p = fd->data.slots[L];
        if (!vdfs_ptr_present(p) || (rc = check_ptr(fs, fd, rt, p)))
            continue;
        rc = free_unit(fs, fd, rt, vdfs_ptr_index(p));
        fd->alloc_bytes -= fs->sb.region[rt].unit_size;
        fd->data.slots[L] = 0;
    }
    if (fd->addr_mode == VDFS_AM_SUB)
        return rc;
    for (uint32_t s = 0; rc == 0 && s < VDFS_SINGLE_SLOTS; s++) {
        uint64_t start = SINGLE_BASE + s * SINGLE_SPAN;
        uint32_t *p = &fd->data.slots[VDFS_DIRECT_SLOTS + s];
        if (start + SINGLE_SPAN > lo && start < hi && vdfs_ptr_present(*p))
            rc = free_pb_range(fs, fd, p, 1, start, lo, hi);
    }
    for (uint32_t d = 0; rc == 0 && d < VDFS_DOUBLE_SLOTS; d++) {
        uint64_t start = DOUBLE_BASE + d * DOUBLE_SPAN;
        uint32_t *p = &fd->data.slots[VDFS_DIRECT_SLOTS + VDFS_SINGLE_SLOTS + d];
        if (start + DOUBLE_SPAN > lo && start < hi && vdfs_ptr_present(*p))
            rc = free_pb_range(fs, fd, p, 2, start, lo, hi);
    }
    return rc;
}

/* Zeroes [off, end) inside one allocated unit on the device. */
static int zero_partial(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, uint64_t end)
{
    if (off >= end)
        return 0;
    struct map_segment seg;
    int rc = filemap_lookup(fs, fd, off, end - off, &seg);
    if (rc || seg.resident || seg.dev_off == 0)
        return rc;
    return vdfs_dev_write_any(fs->dev, fs->zero_block, seg.length, seg.dev_off);
}

int filemap_punch(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, uint64_t end)
{
    if (off >= end)
        return 0;
    if (fd->addr_mode == VDFS_AM_RESIDENT) {
        if (off < fd->size)
            memset(fd->data.resident + off, 0, (end < fd->size ? end : fd->size) - off);
        return 0;
    }
    uint64_t unit = filemap_unit_size(fs, fd);
    uint64_t first_full = (off + unit - 1) / unit, last_full = end / unit;
    int rc = 0;
    if (first_full > last_full) /* inside one unit */
        return zero_partial(fs, fd, off, end);
    rc = zero_partial(fs, fd, off, first_full * unit);
    if (rc == 0)
        rc = free_units(fs, fd, first_full, last_full);
    if (rc == 0 && last_full * unit < end)
        rc = zero_partial(fs, fd, last_full * unit, end);
    return rc;
}

int filemap_fallocate(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, uint64_t end)
{
    if (off >= end)
        return 0;
    int rc = ensure_mode(fs, fd, end, S_ISDIR(fd->mode));
    if (rc)
        return rc;
    if (fd->addr_mode == VDFS_AM_RESIDENT)
        return 0;
    uint64_t unit = filemap_unit_size(fs, fd);
    for (uint64_t L = off / unit; L * unit < end; L++) {
        if (L >= MAX_UNITS)
            return -EFBIG;
        uint32_t p;
        if ((rc = ptr_get(fs, fd, L, &p)))
            return rc;
        if (vdfs_ptr_present(p))
            continue;
        uint64_t idx;
        unsigned rt = unit_rtype(fd);
        if ((rc = alloc_resource(fs, rt, &idx)))
            return rc;
        /* Sub-blocks are small enough to zero now; file blocks are marked
         * to-be-zeroed and zeroed on first write (lazy-zeroed thick). */
        bool tbz = rt == VDFS_RT_FB;
        if (!tbz && (rc = vdfs_dev_zero(fs->dev, vdfs_resource_addr(&fs->sb, rt, idx), unit))) {
            free_unit(fs, fd, rt, idx);
            return rc;
        }
        if ((rc = ptr_set(fs, fd, L, vdfs_ptr_make(idx, tbz)))) {
            free_unit(fs, fd, rt, idx);
            return rc;
        }
        fd->alloc_bytes += unit;
        /* A long allocation commits on the way; the descriptor goes in
         * with its bitmaps and pointer blocks (a SUB -> BLOCK conversion
         * freed its sub-blocks, which that commit makes allocatable). */
        if (journal_commit_due(fs) && ((rc = fd_store(fs, fd)) || (rc = journal_commit(fs))))
            return rc;
    }
    return 0;
}

int filemap_truncate(struct vdfs *fs, struct vdfs_fd *fd, uint64_t size)
{
    int rc = 0;
    if (size > fd->size) {
        if (fd->addr_mode == VDFS_AM_RESIDENT && size <= VDFS_RESIDENT_MAX && !S_ISDIR(fd->mode))
            return 0;
        if (fd->addr_mode == VDFS_AM_RESIDENT && fd->size == 0) {
            fd->addr_mode = size <= fs->sb.block_size ? VDFS_AM_SUB : VDFS_AM_BLOCK;
            memset(&fd->data, 0, sizeof(fd->data));
            return 0;
        }
        return ensure_mode(fs, fd, size, S_ISDIR(fd->mode));
    }
    if (fd->addr_mode == VDFS_AM_RESIDENT) {
        memset(fd->data.resident + size, 0, VDFS_RESIDENT_MAX - size);
        return 0;
    }
    uint64_t unit = filemap_unit_size(fs, fd);
    uint64_t keep = (size + unit - 1) / unit;
    if (size % unit)
        rc = zero_partial(fs, fd, size, keep * unit);
    if (rc == 0)
        rc = free_units(fs, fd, keep, MAX_UNITS);
    /* Emptied, a file starts over as resident, free to take sub-blocks
     * again (a failed fallocate of an empty file comes back here). */
    if (rc == 0 && size == 0 && !S_ISDIR(fd->mode) && map_is_empty(fd))
        become_resident(fd);
    return rc;
}

struct map_walk_ctx {
    struct vdfs *fs;
    struct vdfs_fd *fd;
    vdfs_map_fn fn;
    void *ctx;
    uint64_t next; /* first byte not yet reported */
    uint64_t unit;
    struct vdfs_extent cur;
    bool have;
};

static int flush_extent(struct map_walk_ctx *w)
{
    if (!w->have)
        return 0;
    w->have = false;
    return w->fn(w->ctx, &w->cur);
}

static int map_unit(void *ctx, uint64_t L, uint32_t p)
{
    struct map_walk_ctx *w = ctx;
    uint64_t off = L * w->unit;
    uint64_t phys = unit_addr(w->fs, w->fd, p);
    int rc;
    if (off > w->next) {
        if ((rc = flush_extent(w)))
            return rc;
        struct vdfs_extent hole = {.logical = w->next, .length = off - w->next, .hole = true};
        if ((rc = w->fn(w->ctx, &hole)))
            return rc;
    }
    bool tbz = vdfs_ptr_tbz(p);
    bool sub = w->fd->addr_mode == VDFS_AM_SUB;
    if (w->have && w->cur.logical + w->cur.length == off && w->cur.physical + w->cur.length == phys &&
        w->cur.unwritten == tbz) {
        w->cur.length += w->unit;
    } else {
        if ((rc = flush_extent(w)))
            return rc;
        w->cur = (struct vdfs_extent){.logical = off, .length = w->unit, .physical = phys, .unwritten = tbz,
                                      .subblock = sub};
        w->have = true;
    }
    w->next = off + w->unit;
    return 0;
}

int filemap_walk(struct vdfs *fs, struct vdfs_fd *fd, vdfs_map_fn fn, void *ctx)
{
    int rc;
    if (fd->addr_mode == VDFS_AM_RESIDENT) {
        if (fd->size == 0)
            return 0;
        struct vdfs_extent e = {.logical = 0, .length = fd->size};
        return fn(ctx, &e);
    }
    struct map_walk_ctx w = {.fs = fs, .fd = fd, .fn = fn, .ctx = ctx, .unit = filemap_unit_size(fs, fd)};
    rc = walk_units(fs, fd, 0, MAX_UNITS, map_unit, &w);
    if (rc == 0)
        rc = flush_extent(&w);
    if (rc == 0 && w.next < fd->size) {
        struct vdfs_extent hole = {.logical = w.next, .length = fd->size - w.next, .hole = true};
        rc = fn(ctx, &hole);
    }
    return rc;
}

struct seek_ctx {
    uint64_t unit;
    uint64_t from;
    uint64_t found;
    bool want_data;
    uint64_t expect; /* for holes: next unit expected if data is contiguous */
};

static int seek_unit(void *ctx, uint64_t L, uint32_t p)
{
    struct seek_ctx *s = ctx;
    bool data = !vdfs_ptr_tbz(p);
    uint64_t start = L * s->unit;
    if (s->want_data) {
        if (!data)
            return 0;
        s->found = start > s->from ? start : s->from;
        return 1;
    }
    /* Looking for a hole: any gap before this unit, or an unwritten unit. */
    if (start > s->expect || !data) {
        s->found = s->expect > s->from ? s->expect : s->from;
        return 1;
    }
    s->expect = start + s->unit;
    return 0;
}

int64_t filemap_seek(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, int whence)
{
    if (off >= fd->size)
        return -ENXIO;
    if (fd->addr_mode == VDFS_AM_RESIDENT)
        return whence == SEEK_DATA ? (int64_t)off : (int64_t)fd->size;
    uint64_t unit = filemap_unit_size(fs, fd);
    struct seek_ctx s = {.unit = unit, .from = off, .want_data = whence == SEEK_DATA};
    s.expect = off / unit * unit;
    int rc = walk_units(fs, fd, off / unit, (fd->size + unit - 1) / unit, seek_unit, &s);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return s.found < fd->size ? (int64_t)s.found : (whence == SEEK_DATA ? -ENXIO : (int64_t)fd->size);
    if (whence == SEEK_DATA)
        return -ENXIO;
    uint64_t hole = s.expect > off ? s.expect : off;
    return hole < fd->size ? (int64_t)hole : (int64_t)fd->size;
}
