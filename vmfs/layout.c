/* Where each region of a datastore goes for a device of a given size.
 *
 * Order on the device: superblock, heartbeat slots, lock records, the
 * per-host journals, the cluster bitmaps (FB, SB, PB, FD), the descriptor,
 * pointer-block and sub-block regions, the backup superblock, and finally
 * the file blocks, which take whatever remains.  Everything is arithmetic
 * on the requested sizes, so the cost does not depend on the capacity. */
#include "format.h"

#include <errno.h>
#include <string.h>

#define LAYOUT_ALIGN       4096u
#define JOURNAL_ALIGN      (1u << 20)
#define MIN_FILE_BLOCKS    16u
#define MAX_BLOCK_SIZE     (64u << 20)
#define MIN_JOURNAL_BLOCKS 2u
#define MIN_DESCRIPTORS    3u   /* descriptor 0 unused, root, lost+found */
#define SMALL_MIN_COUNT    16u  /* floor when a small device scales the minima down */

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static uint64_t div_ceil(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

static uint64_t clamp(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

/* A resource count from its sizing rule.  The rule's minimum is meant for
 * real volumes; on a small device it would not even fit, so the minimum is
 * lowered to what 1/`share` of the device holds.  From a few GiB up this
 * never applies and the count is exactly clamp(rule, lo, hi). */
static uint64_t sized_count(uint64_t rule, uint64_t lo, uint64_t hi, uint64_t total,
                            uint64_t share, uint64_t unit)
{
    uint64_t small_lo = total / share / unit;
    if (small_lo < SMALL_MIN_COUNT)
        small_lo = SMALL_MIN_COUNT;
    if (small_lo < lo)
        lo = small_lo;
    return clamp(rule, lo, hi);
}

static void set_region(struct vdfs_region *r, uint64_t start, uint64_t count, uint32_t unit)
{
    r->start = start;
    r->count = count;
    r->unit_size = unit;
    r->per_cluster = VDFS_RESOURCES_PER_CLUSTER;
    r->clusters = (uint32_t)div_ceil(count, VDFS_RESOURCES_PER_CLUSTER);
}

int vdfs_layout(struct vdfs_super *s, uint64_t fd_count)
{
    return vdfs_layout_growable(s, fd_count, 0);
}

int vdfs_layout_growable(struct vdfs_super *s, uint64_t fd_count, uint64_t grow_limit)
{
    const uint64_t total = s->total_bytes;
    const uint64_t per = VDFS_RESOURCES_PER_CLUSTER;

    if (!is_pow2(s->block_size) || !is_pow2(s->subblock_size) ||
        s->subblock_size < VDFS_META_SIZE || s->subblock_size > s->block_size ||
        s->block_size > MAX_BLOCK_SIZE || s->max_hosts < 1 ||
        s->max_hosts > VDFS_MAX_HOSTS_LIMIT || s->journal_blocks < MIN_JOURNAL_BLOCKS)
        return -EINVAL;
    if (fd_count && (fd_count < MIN_DESCRIPTORS || fd_count > VDFS_PTR_INDEX_MASK))
        return -EINVAL;
    /* Bounds every offset below far from overflow. */
    if (total > (UINT64_MAX >> 2))
        return -EINVAL;
    if (grow_limit == 0)
        grow_limit = total <= (UINT64_MAX >> 2) / VDFS_DEFAULT_GROWTH ? total * VDFS_DEFAULT_GROWTH : UINT64_MAX >> 2;
    if (grow_limit < total || grow_limit > (UINT64_MAX >> 2))
        return -EINVAL;

    uint64_t fds = fd_count ? fd_count
                            : sized_count(total / (256u << 10), 16384, 4194304, total, 16,
                                          VDFS_META_SIZE);
    uint64_t sbs = sized_count(total / (16u << 20), 8192, 1048576, total, 8, s->subblock_size);
    /* Enough pointer blocks for files that fill the datastore at the
     * limit, when that is more than the default growth. */
    uint64_t pb_basis = grow_limit / VDFS_DEFAULT_GROWTH > total ? grow_limit / VDFS_DEFAULT_GROWTH : total;
    uint64_t pbs = sized_count(pb_basis / s->block_size / 256 * 2, 8192, 4194304, total, 16,
                               VDFS_META_SIZE);
    /* The file blocks come last, but their locks and bitmaps come first:
     * reserve them for the most file blocks the device could hold once
     * grown to the limit; a grow then only writes bitmaps into that room
     * (superblock.c). */
    uint64_t fbs_max = grow_limit / s->block_size;
    if (fbs_max > VDFS_PTR_INDEX_MASK)
        fbs_max = VDFS_PTR_INDEX_MASK;
    uint64_t clusters[VDFS_RT_COUNT] = {
        [VDFS_RT_FB] = div_ceil(fbs_max, per),
        [VDFS_RT_SB] = div_ceil(sbs, per),
        [VDFS_RT_PB] = div_ceil(pbs, per),
        [VDFS_RT_FD] = div_ceil(fds, per),
    };

    s->version = VDFS_FORMAT_VERSION;
    s->compat = s->incompat = s->ro_compat = 0;
    s->hdr.kind = VDFS_KIND_SUPER;
    s->hdr.addr = VDFS_SUPER_OFFSET;
    s->root_ino = 1;
    s->lostfound_ino = 2;
    s->hb_interval_ms = 1000;
    s->hb_timeout_ms = 4000;

    s->heartbeat_offset = VDFS_HEARTBEAT_OFFSET;
    uint64_t pos = s->heartbeat_offset + (uint64_t)s->max_hosts * VDFS_SECTOR_SIZE;

    s->lock_offset = align_up(pos, LAYOUT_ALIGN);
    uint64_t lock = 0;
    for (unsigned t = 0; t < VDFS_RT_COUNT; t++) {
        s->region[t].lock_index = lock;
        lock += clusters[t];
    }
    s->fd_lock_index = lock;
    lock += fds;
    s->lock_count = lock;
    pos = s->lock_offset + lock * VDFS_SECTOR_SIZE;

    s->journal_offset = align_up(pos, JOURNAL_ALIGN);
    pos = s->journal_offset + (uint64_t)s->max_hosts * s->journal_blocks * VDFS_META_SIZE;

    for (unsigned t = 0; t < VDFS_RT_COUNT; t++) {
        s->region[t].bitmap_offset = pos;
        pos += clusters[t] * VDFS_META_SIZE;
    }

    set_region(&s->region[VDFS_RT_FD], pos, fds, VDFS_META_SIZE);
    pos += fds * VDFS_META_SIZE;
    set_region(&s->region[VDFS_RT_PB], pos, pbs, VDFS_META_SIZE);
    pos += pbs * VDFS_META_SIZE;
    pos = align_up(pos, s->subblock_size);
    set_region(&s->region[VDFS_RT_SB], pos, sbs, s->subblock_size);
    pos += sbs * s->subblock_size;

    s->backup_offset = pos;
    pos += VDFS_META_SIZE;

    pos = align_up(pos, s->block_size);
    if (pos > total || (total - pos) / s->block_size < MIN_FILE_BLOCKS)
        return -ENOSPC;
    uint64_t fbs = (total - pos) / s->block_size;
    if (fbs > fbs_max)
        fbs = fbs_max;
    set_region(&s->region[VDFS_RT_FB], pos, fbs, s->block_size);
    return 0;
}
