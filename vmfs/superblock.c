/* Changes to the superblock of a mounted datastore, and how the other
 * hosts take them: a new label, and growth.
 *
 * Growing follows the device or image file, as VMFS does when its LUN is
 * extended.
 * vdfs_layout leaves room for the lock records and bitmaps of more file
 * blocks than the device first holds, so growing adds file blocks only
 * and never moves metadata.  The new primary superblock is the commit
 * point:
 *   1. the bitmaps of the new clusters go into that room (unreferenced
 *      until step 2, so a crash before it leaves the old datastore);
 *   2. the primary superblock, then the backup;
 *   3. the last old cluster's bitmap, whose cluster grew, is rewritten
 *      through the journal.
 * A crash between 2 and 3 leaves that bitmap shorter than its cluster
 * with every bit past its end clear: alloc_load accepts exactly that
 * (vdfs_bitmap_grown_into) and writes it again.  A crash between the two
 * superblocks leaves the backup behind, which the next writable host
 * updates (backup_refresh).
 *
 * Both changes are made under the volume metadata lock, whose version the
 * changer bumps, so other hosts see them the next time they take it
 * (super_refresh). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int read_super_at(struct vdfs *fs, uint64_t addr, struct vdfs_super *out)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    int rc = vdfs_dev_read(fs->dev, buf, VDFS_META_SIZE, addr);
    if (rc == 0)
        rc = vdfs_super_decode(buf, addr, out) ? -EIO : 0;
    vdfs_aligned_free(buf);
    return rc;
}

/* Whether a mount would accept `sb`: every area inside the device and
 * apart from every other (vdfs_super_decode's checks). */
static bool super_valid(const struct vdfs_super *sb, uint8_t buf[VDFS_META_SIZE])
{
    struct vdfs_super check;
    vdfs_super_encode(sb, buf);
    return vdfs_super_decode(buf, sb->hdr.addr, &check) == 0;
}

static int write_super_at(struct vdfs *fs, const struct vdfs_super *sb, uint64_t addr)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    struct vdfs_super copy = *sb;
    copy.hdr.addr = addr;
    int rc = super_valid(&copy, buf) ? 0 : -EINVAL;
    if (rc == 0)
        rc = vdfs_dev_write(fs->dev, buf, VDFS_META_SIZE, addr);
    if (rc == 0)
        rc = vdfs_dev_flush(fs->dev);
    vdfs_aligned_free(buf);
    return rc;
}

/* Whether `next` is `cur` grown or relabelled: equal except for the size,
 * the file-block count (neither smaller), the label and the generation.
 * The two are compared encoded, field by field as on the device, so that
 * struct padding cannot make them differ. */
static bool changed_as_allowed(const struct vdfs_super *cur, const struct vdfs_super *next)
{
    if (next->total_bytes < cur->total_bytes || next->region[VDFS_RT_FB].count < cur->region[VDFS_RT_FB].count)
        return false;
    struct vdfs_super b = *next;
    b.total_bytes = cur->total_bytes;
    b.region[VDFS_RT_FB].count = cur->region[VDFS_RT_FB].count;
    b.region[VDFS_RT_FB].clusters = cur->region[VDFS_RT_FB].clusters;
    memcpy(b.label, cur->label, sizeof(b.label));
    b.hdr = cur->hdr;
    uint8_t *raw = malloc(2 * VDFS_META_SIZE);
    if (!raw)
        return false;
    vdfs_super_encode(cur, raw);
    vdfs_super_encode(&b, raw + VDFS_META_SIZE);
    bool same = memcmp(raw, raw + VDFS_META_SIZE, VDFS_META_SIZE) == 0;
    free(raw);
    return same;
}

static bool same_as(const struct vdfs_super *a, const struct vdfs_super *b)
{
    return a->total_bytes == b->total_bytes && a->region[VDFS_RT_FB].count == b->region[VDFS_RT_FB].count &&
           memcmp(a->label, b->label, sizeof(a->label)) == 0;
}

static void adopt(struct vdfs *fs, const struct vdfs_super *next)
{
    fs->sb.total_bytes = next->total_bytes;
    fs->sb.region[VDFS_RT_FB].count = next->region[VDFS_RT_FB].count;
    fs->sb.region[VDFS_RT_FB].clusters = next->region[VDFS_RT_FB].clusters;
    memcpy(fs->sb.label, next->label, sizeof(fs->sb.label));
    fs->sb.hdr = next->hdr;
}

/* A grow or relabel that stopped between the two superblocks left the
 * backup behind: the first writable hold of the metadata lock after the
 * mount brings it up to the primary, so that fsck finds nothing. */
static void backup_refresh(struct vdfs *fs)
{
    if (fs->readonly || fs->backup_checked)
        return;
    fs->backup_checked = true;
    struct vdfs_super backup;
    if (read_super_at(fs, fs->sb.backup_offset, &backup) != 0 || same_as(&backup, &fs->sb) ||
        !changed_as_allowed(&backup, &fs->sb))
        return; /* current, or damaged beyond this: fsck.vdfs's business */
    if (write_super_at(fs, &fs->sb, fs->sb.backup_offset) == 0)
        vdfs_log(VDFS_LOG_INFO, "the backup superblock was behind the primary (a grow or relabel stopped "
                                "part-way); updated");
}

int super_refresh(struct vdfs *fs)
{
    struct vdfs_super next;
    int rc = read_super_at(fs, VDFS_SUPER_OFFSET, &next);
    if (rc) {
        vdfs_log(VDFS_LOG_ERR, "cannot read the superblock again (%s); run fsck.vdfs", vdfs_strerror(rc));
        return rc;
    }
    if (same_as(&next, &fs->sb)) {
        backup_refresh(fs);
        return 0;
    }
    if (!changed_as_allowed(&fs->sb, &next)) {
        vdfs_log(VDFS_LOG_ERR, "the superblock changed under this host in a way other than growth or a new "
                               "label; unmount and run fsck.vdfs");
        return -EIO;
    }
    if (next.total_bytes > vdfs_dev_size(fs->dev)) {
        vdfs_dev_refresh_size(fs->dev);
        if (next.total_bytes > vdfs_dev_size(fs->dev)) {
            vdfs_log(VDFS_LOG_ERR,
                     "the datastore grew to %llu bytes but this host sees a device of %llu: rescan the device",
                     (unsigned long long)next.total_bytes, (unsigned long long)vdfs_dev_size(fs->dev));
            return -EIO;
        }
    }
    if (next.total_bytes != fs->sb.total_bytes)
        vdfs_log(VDFS_LOG_INFO, "the datastore grew from %llu to %llu bytes", (unsigned long long)fs->sb.total_bytes,
                 (unsigned long long)next.total_bytes);
    adopt(fs, &next);
    backup_refresh(fs);
    return 0;
}

static int write_new_bitmaps(struct vdfs *fs, const struct vdfs_super *next)
{
    const struct vdfs_region *fb = &next->region[VDFS_RT_FB];
    struct vdfs_bitmap *bm = malloc(sizeof(*bm));
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    int rc = bm && buf ? 0 : -ENOMEM;
    for (uint32_t c = fs->sb.region[VDFS_RT_FB].clusters; c < fb->clusters && rc == 0; c++) {
        vdfs_bitmap_init_free(bm, next, VDFS_RT_FB, c);
        vdfs_bitmap_encode(bm, buf);
        rc = vdfs_dev_write(fs->dev, buf, VDFS_META_SIZE, bm->hdr.addr);
    }
    free(bm);
    vdfs_aligned_free(buf);
    return rc;
}

static int grow_locked(struct vdfs *fs, uint64_t new_total, struct vdfs_grow_result *res)
{
    new_total &= ~(uint64_t)(VDFS_META_SIZE - 1);
    const struct vdfs_region *fb = &fs->sb.region[VDFS_RT_FB];
    res->old_bytes = fs->sb.total_bytes;
    res->new_bytes = fs->sb.total_bytes;
    res->limit_bytes = vdfs_grow_limit(&fs->sb);
    res->added_blocks = 0;
    if (new_total < fs->sb.total_bytes)
        return -EINVAL;
    if (new_total > res->limit_bytes)
        return -EFBIG;
    if (new_total == fs->sb.total_bytes)
        return 0;
    /* Nothing of this host's may be in flight when the caches reload. */
    int rc = journal_commit(fs);
    if (rc == 0 && new_total > vdfs_dev_size(fs->dev))
        rc = vdfs_dev_refresh_size(fs->dev);
    if (rc)
        return rc;
    if (new_total > vdfs_dev_size(fs->dev))
        return -ENOSPC;

    struct vdfs_super next = fs->sb;
    next.total_bytes = new_total;
    next.hdr.gen++;
    uint64_t blocks = (new_total - fb->start) / fb->unit_size;
    uint64_t room = vdfs_fb_cluster_room(&fs->sb) * fb->per_cluster;
    if (blocks > room)
        blocks = room;
    if (blocks > VDFS_PTR_INDEX_MASK)
        blocks = VDFS_PTR_INDEX_MASK;
    if (blocks < fb->count)
        blocks = fb->count;
    next.region[VDFS_RT_FB].count = blocks;
    next.region[VDFS_RT_FB].clusters = (uint32_t)((blocks + fb->per_cluster - 1) / fb->per_cluster);
    /* The new bitmaps and locks must lie in free room: checked before
     * anything is written (a crafted superblock could put other metadata
     * there). */
    uint8_t *check = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!check)
        return -ENOMEM;
    bool valid = super_valid(&next, check);
    vdfs_aligned_free(check);
    if (!valid) {
        vdfs_log(VDFS_LOG_ERR, "the datastore's layout has no room to grow to %llu bytes", (unsigned long long)new_total);
        return -EFBIG;
    }

    rc = write_new_bitmaps(fs, &next);
    if (rc == 0)
        rc = vdfs_dev_flush(fs->dev);
    if (rc == 0)
        rc = write_super_at(fs, &next, VDFS_SUPER_OFFSET);
    if (rc)
        return rc;
    /* The datastore has grown.  Other hosts reload when they next take
     * the metadata lock. */
    res->added_blocks = blocks - fb->count;
    res->new_bytes = new_total;
    fs->mlock_dirty = true;
    adopt(fs, &next);
    int backup_rc = write_super_at(fs, &next, next.backup_offset);
    rc = caches_drop_and_reload(fs);
    if (rc) {
        /* Nothing is loaded: as when taking the lock, hand it back and
         * load again on the next hold. */
        cluster_release(fs);
        fs->mlock_version_known = false;
        return rc;
    }
    rc = journal_commit(fs);
    return rc ? rc : backup_rc;
}

int vdfs_grow(struct vdfs *fs, uint64_t new_total, struct vdfs_grow_result *res)
{
    struct vdfs_grow_result scratch;
    if (!res)
        res = &scratch;
    memset(res, 0, sizeof(*res));
    if (fs->readonly)
        return -EROFS;
    pthread_mutex_lock(&fs->lock);
    int rc = cluster_hold(fs);
    if (rc == 0)
        rc = grow_locked(fs, new_total, res);
    pthread_mutex_unlock(&fs->lock);
    return rc;
}

int vdfs_set_label(struct vdfs *fs, const char *label)
{
    if (strlen(label) > VDFS_LABEL_SIZE)
        return -ENAMETOOLONG;
    if (fs->readonly)
        return -EROFS;
    pthread_mutex_lock(&fs->lock);
    int rc = cluster_hold(fs);
    if (rc == 0 && strcmp(fs->sb.label, label) != 0) {
        struct vdfs_super next = fs->sb;
        memset(next.label, 0, sizeof(next.label));
        memcpy(next.label, label, strlen(label));
        next.hdr.gen++;
        /* A crash between the two leaves the backup behind, which the
         * next writing host updates (backup_refresh). */
        rc = write_super_at(fs, &next, VDFS_SUPER_OFFSET);
        if (rc == 0) {
            adopt(fs, &next);
            fs->mlock_dirty = true;
            rc = write_super_at(fs, &next, next.backup_offset);
        }
    }
    pthread_mutex_unlock(&fs->lock);
    return rc;
}
