/* The geometry of the new datastore: the superblock mkfs will write, with
 * every region placed by vdfs_layout(), and the smallest device that would
 * hold it when the given one is too small. */
#include <errno.h>
#include <string.h>

#include "mkfs.h"

/* Largest device the minimum-size search considers (1 EiB). */
#define MKFS_SEARCH_LIMIT (1ull << 60)

static void fill_request(const struct mkfs_options *o, uint64_t total, uint64_t now_ns, struct vdfs_super *sb)
{
    memset(sb, 0, sizeof(*sb));
    sb->hdr.kind = VDFS_KIND_SUPER;
    sb->hdr.addr = VDFS_SUPER_OFFSET;
    sb->hdr.gen = 1;
    sb->version = VDFS_FORMAT_VERSION;
    memcpy(sb->uuid, o->uuid, VDFS_UUID_SIZE);
    memcpy(sb->label, o->label, sizeof(sb->label));
    sb->created_ns = now_ns;
    sb->total_bytes = total & ~(uint64_t)(VDFS_META_SIZE - 1);
    sb->block_size = o->block_size;
    sb->subblock_size = o->subblock_size;
    sb->max_hosts = o->max_hosts;
    sb->journal_blocks = o->journal_blocks;
    sb->root_ino = 1;
    sb->lostfound_ino = 2;
}

/* -G below the size being tried means no growth; mkfs_plan refuses it
 * for the real size. */
static uint64_t grow_limit_for(const struct mkfs_options *o, uint64_t total)
{
    return o->grow_limit && o->grow_limit < total ? total : o->grow_limit;
}

static bool fits(const struct mkfs_options *o, uint64_t total)
{
    struct vdfs_super sb;
    fill_request(o, total, 0, &sb);
    return vdfs_layout_growable(&sb, o->fd_count, grow_limit_for(o, sb.total_bytes)) == 0;
}

/* Smallest size (4 KiB granularity) that vdfs_layout accepts, or 0 when
 * none up to the search limit does. */
static uint64_t minimum_size(const struct mkfs_options *o, uint64_t too_small)
{
    uint64_t lo = too_small & ~(uint64_t)(VDFS_META_SIZE - 1), hi = lo < VDFS_META_SIZE ? VDFS_META_SIZE : lo;
    while (!fits(o, hi)) {
        lo = hi;
        if (hi >= MKFS_SEARCH_LIMIT)
            return 0;
        hi *= 2;
    }
    while (hi - lo > VDFS_META_SIZE) {
        uint64_t mid = (lo + (hi - lo) / 2) & ~(uint64_t)(VDFS_META_SIZE - 1);
        if (fits(o, mid))
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

/* The writer relies on these; a layout that breaks them is a bug there,
 * reported rather than written. */
static bool layout_usable(const struct vdfs_super *sb)
{
    for (unsigned r = 0; r < VDFS_RT_COUNT; r++) {
        const struct vdfs_region *g = &sb->region[r];
        if (g->per_cluster == 0 || g->per_cluster > VDFS_BITMAP_BITS || g->count == 0)
            return false;
        if (g->clusters != (g->count + g->per_cluster - 1) / g->per_cluster)
            return false;
    }
    return sb->region[VDFS_RT_FD].count > 2 && sb->region[VDFS_RT_SB].unit_size == sb->subblock_size &&
           sb->backup_offset % VDFS_META_SIZE == 0 && sb->backup_offset != VDFS_SUPER_OFFSET;
}

/* Without -J, a device too small for the default 16 MiB journals gets
 * the largest journal, halving down to 1 MiB, that lets it fit: the
 * journals of 32 hosts would otherwise take 512 MiB of any datastore, as
 * mke2fs picks a smaller journal for a small file system. */
static uint32_t fitting_journal(const struct mkfs_options *o, uint64_t total)
{
    struct mkfs_options smaller = *o;
    const uint32_t least = MIN_JOURNAL_BYTES / VDFS_META_SIZE;
    while (smaller.journal_blocks / 2 >= least) {
        smaller.journal_blocks /= 2;
        if (fits(&smaller, total))
            return smaller.journal_blocks;
    }
    return least;
}

int mkfs_plan(const struct mkfs_options *o, uint64_t total, uint64_t now_ns, struct vdfs_super *sb,
              uint64_t *min_bytes)
{
    struct mkfs_options chosen = *o;
    if (!o->journal_given && !fits(o, total))
        chosen.journal_blocks = fitting_journal(o, total);
    o = &chosen;
    fill_request(o, total, now_ns, sb);
    if (o->grow_limit && o->grow_limit < sb->total_bytes)
        return -EDOM;
    int rc = vdfs_layout_growable(sb, o->fd_count, o->grow_limit);
    if (rc == -ENOSPC) {
        *min_bytes = minimum_size(o, total);
        return -ENOSPC;
    }
    if (rc != 0)
        return rc;
    if (!layout_usable(sb))
        return -EINVAL;
    /* Never write a superblock the library would refuse to read back. */
    uint8_t buf[VDFS_META_SIZE];
    struct vdfs_super check;
    vdfs_super_encode(sb, buf);
    return vdfs_super_decode(buf, VDFS_SUPER_OFFSET, &check) == 0 ? 0 : -EINVAL;
}
