/* Writing a new datastore.  Only metadata is written, so the work grows
 * with the number of resource clusters and hosts, never with capacity:
 *
 *   1. destroy old superblocks (ours and other filesystems'), flush;
 *   2. zero the heartbeat and lock areas where they hold data;
 *   3. one journal header per host slot, every cluster bitmap, the root
 *      and lost+found descriptors and root's directory block; flush;
 *   4. the backup superblock, then the primary; flush.
 *
 * A crash before step 4 completes leaves no valid superblock. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mkfs.h"

#define BATCH_OBJECTS 256u /* 1 MiB of metadata per submission */

/* Encoded objects queue up in one aligned buffer; writes to consecutive
 * addresses from consecutive buffer slots merge into one request. */
struct batch {
    struct vdfs_dev *dev;
    uint8_t *buf;
    struct vdfs_io ios[BATCH_OBJECTS];
    unsigned nobj;
    unsigned nios;
    struct mkfs_stats *stats;
};

static int batch_flush(struct batch *b)
{
    if (b->nios == 0)
        return 0;
    int rc = vdfs_dev_submit(b->dev, b->ios, b->nios);
    b->nobj = 0;
    b->nios = 0;
    return rc;
}

/* A zeroed 4 KiB slot for the next object. */
static int batch_next(struct batch *b, uint8_t **slot)
{
    if (b->nobj == BATCH_OBJECTS) {
        int rc = batch_flush(b);
        if (rc != 0)
            return rc;
    }
    *slot = b->buf + (size_t)b->nobj * VDFS_META_SIZE;
    memset(*slot, 0, VDFS_META_SIZE);
    return 0;
}

/* Queues the object just encoded (and sealed by its encoder) into `slot`. */
static void batch_commit(struct batch *b, uint8_t *slot, uint64_t off)
{
    struct vdfs_io *last = b->nios > 0 ? &b->ios[b->nios - 1] : NULL;
    if (last != NULL && last->off + last->len == off && (uint8_t *)last->buf + last->len == slot) {
        last->len += VDFS_META_SIZE;
    } else {
        b->ios[b->nios++] = (struct vdfs_io){.op = VDFS_IO_WRITE, .buf = slot, .len = VDFS_META_SIZE, .off = off};
    }
    b->nobj++;
    b->stats->bytes_written += VDFS_META_SIZE;
    b->stats->objects++;
}

/* Zeroes [off, off+len) where it may hold data.  On an image file only
 * the allocated extents need it (a hole already reads as zeros), which
 * keeps a fresh sparse image sparse. */
static int zero_where_data(struct vdfs_dev *dev, uint64_t off, uint64_t len, struct mkfs_stats *st)
{
    uint64_t end = off + len;
    if (vdfs_dev_is_blockdev(dev)) {
        st->bytes_zeroed += len;
        return vdfs_dev_zero(dev, off, len);
    }
    int fd = vdfs_dev_fd(dev);
    uint64_t pos = off;
    while (pos < end) {
        off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break;
        if (data < 0) /* no SEEK_DATA here: zero all that is left */
            data = (off_t)pos;
        if ((uint64_t)data >= end)
            break;
        off_t hole = lseek(fd, data, SEEK_HOLE);
        uint64_t seg_end = hole < 0 || (uint64_t)hole > end ? end : (uint64_t)hole;
        uint64_t seg_start = (uint64_t)data & ~(uint64_t)(VDFS_META_SIZE - 1);
        if (seg_start < off)
            seg_start = off;
        seg_end = (seg_end + VDFS_META_SIZE - 1) & ~(uint64_t)(VDFS_META_SIZE - 1);
        if (seg_end > end)
            seg_end = end;
        int rc = vdfs_dev_zero(dev, seg_start, seg_end - seg_start);
        if (rc != 0)
            return rc;
        st->bytes_zeroed += seg_end - seg_start;
        pos = seg_end;
    }
    return 0;
}

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* The first metadata offset after `off`, so that zeroing one area never
 * runs into the next. */
static uint64_t next_area(const struct vdfs_super *sb, uint64_t off)
{
    uint64_t starts[] = {sb->lock_offset, sb->journal_offset, sb->backup_offset, sb->total_bytes,
                         sb->region[0].start, sb->region[1].start, sb->region[2].start, sb->region[3].start,
                         sb->region[0].bitmap_offset, sb->region[1].bitmap_offset,
                         sb->region[2].bitmap_offset, sb->region[3].bitmap_offset};
    uint64_t next = sb->total_bytes;
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
        if (starts[i] > off && starts[i] < next)
            next = starts[i];
    return next;
}

static int zero_cluster_areas(struct vdfs_dev *dev, const struct vdfs_super *sb, struct mkfs_stats *st)
{
    /* The whole heartbeat area up to the hosts limit, so that slots a
     * later, larger max_hosts would use also start out FREE. */
    uint64_t hb_len = round_up((uint64_t)VDFS_MAX_HOSTS_LIMIT * VDFS_SECTOR_SIZE, VDFS_META_SIZE);
    uint64_t hb_room = next_area(sb, sb->heartbeat_offset) - sb->heartbeat_offset;
    uint64_t hb_min = round_up((uint64_t)sb->max_hosts * VDFS_SECTOR_SIZE, VDFS_META_SIZE);
    if (hb_len > hb_room)
        hb_len = hb_room > hb_min ? hb_room : hb_min;
    int rc = zero_where_data(dev, sb->heartbeat_offset, hb_len, st);
    if (rc != 0)
        return rc;
    return zero_where_data(dev, sb->lock_offset, round_up(sb->lock_count * VDFS_SECTOR_SIZE, VDFS_META_SIZE), st);
}

static int write_journal_headers(struct batch *b, const struct vdfs_super *sb)
{
    for (uint32_t slot = 0; slot < sb->max_hosts; slot++) {
        struct vdfs_jheader j = {.hdr = {.kind = VDFS_KIND_JHEADER, .addr = vdfs_journal_addr(sb, slot, 0), .gen = 1},
                                 .slot = slot,
                                 .start_block = 1};
        /* A random starting sequence per slot: descriptors left over from
         * an earlier datastore never continue the new sequence. */
        int rc = mkfs_random_bytes(&j.start_seq, sizeof(j.start_seq));
        uint8_t *slotbuf;
        if (rc == 0)
            rc = batch_next(b, &slotbuf);
        if (rc != 0)
            return rc;
        vdfs_jheader_encode(&j, slotbuf);
        batch_commit(b, slotbuf, j.hdr.addr);
    }
    return 0;
}

/* Resources that exist from the start: descriptors 0 (never used), 1
 * (root) and 2 (lost+found), and sub-block 0 (root's directory block). */
static bool initially_allocated(unsigned rtype, uint64_t index)
{
    if (rtype == VDFS_RT_FD)
        return index <= 2;
    if (rtype == VDFS_RT_SB)
        return index == 0;
    return false;
}

static int write_bitmaps(struct batch *b, const struct vdfs_super *sb)
{
    struct vdfs_bitmap *bm = malloc(sizeof(*bm));
    if (bm == NULL)
        return -ENOMEM;
    int rc = 0;
    for (unsigned r = 0; rc == 0 && r < VDFS_RT_COUNT; r++) {
        const struct vdfs_region *g = &sb->region[r];
        for (uint32_t c = 0; rc == 0 && c < g->clusters; c++) {
            vdfs_bitmap_init_free(bm, sb, r, c);
            for (uint32_t i = 0; i < bm->count && initially_allocated(r, bm->first + i); i++) {
                bm->bits[i / 8] |= (uint8_t)(1u << (i % 8));
                bm->free--;
            }
            uint8_t *slot;
            rc = batch_next(b, &slot);
            if (rc == 0) {
                vdfs_bitmap_encode(bm, slot);
                batch_commit(b, slot, bm->hdr.addr);
            }
        }
    }
    free(bm);
    return rc;
}

static struct vdfs_timespec now_timespec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (struct vdfs_timespec){.sec = ts.tv_sec, .nsec = (uint32_t)ts.tv_nsec};
}

static int write_descriptor(struct batch *b, const struct vdfs_fd *fd)
{
    uint8_t *slot;
    int rc = batch_next(b, &slot);
    if (rc != 0)
        return rc;
    vdfs_fd_encode(fd, slot);
    batch_commit(b, slot, fd->hdr.addr);
    return 0;
}

static void init_directory(struct vdfs_fd *fd, const struct vdfs_super *sb, uint32_t ino, uint32_t mode,
                           uint32_t nlink, struct vdfs_timespec now)
{
    memset(fd, 0, sizeof(*fd));
    fd->hdr = (struct vdfs_header){.kind = VDFS_KIND_FD, .addr = vdfs_fd_addr(sb, ino), .gen = 1};
    fd->ino = ino;
    fd->mode = S_IFDIR | mode;
    /* The datastore's root belongs to whoever made it, so that an image
     * made by a user can be used by that user through FUSE. */
    fd->uid = (uint32_t)getuid();
    fd->gid = (uint32_t)getgid();
    fd->nlink = nlink;
    fd->addr_mode = VDFS_AM_RESIDENT;
    fd->parent = sb->root_ino;
    fd->ino_gen = 1;
    fd->atime = fd->mtime = fd->ctime = fd->btime = now;
}

static int write_root_and_lost_found(struct batch *b, const struct vdfs_super *sb)
{
    static const char lf_name[] = "lost+found";
    struct vdfs_timespec now = now_timespec();
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    struct vdfs_dirblock *dir = malloc(sizeof(*dir));
    int rc = -ENOMEM;
    if (fd == NULL || dir == NULL)
        goto out;

    /* Root holds one directory block (lost+found's entry) in sub-block 0. */
    init_directory(fd, sb, sb->root_ino, 0755, 3, now);
    fd->addr_mode = VDFS_AM_SUB;
    fd->size = VDFS_META_SIZE;
    fd->alloc_bytes = sb->subblock_size;
    fd->data.slots[0] = vdfs_ptr_make(0, false);
    rc = write_descriptor(b, fd);
    if (rc != 0)
        goto out;

    init_directory(fd, sb, sb->lostfound_ino, 0700, 2, now);
    rc = write_descriptor(b, fd);
    if (rc != 0)
        goto out;

    memset(dir, 0, sizeof(*dir));
    dir->hdr = (struct vdfs_header){.kind = VDFS_KIND_DIR, .addr = vdfs_resource_addr(sb, VDFS_RT_SB, 0), .gen = 1};
    dir->owner_ino = sb->root_ino;
    dir->nentries = 1;
    vdfs_le32 ino = vdfs_put32(sb->lostfound_ino);
    memcpy(dir->entries, &ino, sizeof(ino));
    dir->entries[4] = DT_DIR;
    dir->entries[5] = (uint8_t)(sizeof(lf_name) - 1);
    memcpy(dir->entries + VDFS_DIRENT_FIXED, lf_name, sizeof(lf_name) - 1);
    dir->used = (uint16_t)(VDFS_DIRENT_FIXED + sizeof(lf_name) - 1);
    uint8_t *slot;
    rc = batch_next(b, &slot);
    if (rc == 0) {
        vdfs_dirblock_encode(dir, slot);
        batch_commit(b, slot, dir->hdr.addr);
    }
out:
    free(fd);
    free(dir);
    return rc;
}

static int write_superblocks(struct batch *b, const struct vdfs_super *sb)
{
    struct vdfs_super copy = *sb;
    uint64_t addrs[2] = {sb->backup_offset, VDFS_SUPER_OFFSET};
    for (int i = 0; i < 2; i++) {
        copy.hdr = (struct vdfs_header){.kind = VDFS_KIND_SUPER, .addr = addrs[i], .gen = 1};
        uint8_t *slot;
        int rc = batch_next(b, &slot);
        if (rc != 0)
            return rc;
        vdfs_super_encode(&copy, slot);
        batch_commit(b, slot, addrs[i]);
    }
    return batch_flush(b);
}

int mkfs_write(struct vdfs_dev *dev, const struct vdfs_super *sb, const uint64_t *wipe, unsigned nwipe,
               struct mkfs_stats *stats)
{
    memset(stats, 0, sizeof(*stats));
    struct batch b = {.dev = dev, .buf = vdfs_aligned_alloc((size_t)BATCH_OBJECTS * VDFS_META_SIZE), .stats = stats};
    if (b.buf == NULL)
        return -ENOMEM;

    int rc = zero_where_data(dev, VDFS_SUPER_OFFSET, VDFS_META_SIZE, stats);
    if (rc == 0)
        rc = zero_where_data(dev, sb->backup_offset, VDFS_META_SIZE, stats);
    for (unsigned i = 0; rc == 0 && i < nwipe; i++)
        if (wipe[i] + VDFS_META_SIZE <= sb->total_bytes)
            rc = zero_where_data(dev, wipe[i], VDFS_META_SIZE, stats);
    if (rc == 0)
        rc = vdfs_dev_flush(dev);

    if (rc == 0)
        rc = zero_cluster_areas(dev, sb, stats);
    if (rc == 0)
        rc = write_journal_headers(&b, sb);
    if (rc == 0)
        rc = write_bitmaps(&b, sb);
    if (rc == 0)
        rc = write_root_and_lost_found(&b, sb);
    if (rc == 0)
        rc = batch_flush(&b);
    if (rc == 0)
        rc = vdfs_dev_flush(dev);

    if (rc == 0)
        rc = write_superblocks(&b, sb);
    if (rc == 0)
        rc = vdfs_dev_flush(dev);
    vdfs_aligned_free(b.buf);
    return rc;
}
