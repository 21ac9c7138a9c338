/* Pass 0: find a trustworthy superblock (primary, else the backup) and
 * check that the device holds everything it describes. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fsck.h"

/* Reads and decodes a superblock copy at `off`.  A backup describes itself
 * with its own address; a copy sealed with address 0 is accepted too. */
static int read_super_at(struct fsck *f, uint64_t off, struct vdfs_super *s)
{
    if (off % VDFS_META_SIZE || off > f->dev_size || f->dev_size - off < VDFS_META_SIZE)
        return -EINVAL;
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    int rc = fsck_read(f, buf, VDFS_META_SIZE, off);
    if (rc == 0) {
        rc = vdfs_super_decode(buf, off, s);
        if (rc == -EIO && off != 0 && vdfs_super_decode(buf, 0, s) == 0)
            rc = 0;
    }
    vdfs_aligned_free(buf);
    return rc;
}

static int write_super_at(struct fsck *f, const struct vdfs_super *src, uint64_t off)
{
    struct vdfs_super s = *src;
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    s.hdr.kind = VDFS_KIND_SUPER;
    s.hdr.addr = off;
    s.hdr.gen++;
    vdfs_super_encode(&s, buf);
    vdfs_obj_seal(buf, VDFS_META_SIZE, &s.hdr);
    int rc = fsck_write(f, buf, VDFS_META_SIZE, off);
    vdfs_aligned_free(buf);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every place mkfs could have put the backup for this device size: the
 * default geometry first, then every block size, sub-block size and host
 * count mkfs accepts.  Returns a malloc'ed array, default first. */
static uint64_t *backup_candidates(uint64_t size, size_t *n)
{
    size_t cap = 1 + 11 * 15 * VDFS_MAX_HOSTS_LIMIT, len = 0;
    uint64_t *c = malloc(cap * sizeof(*c));
    if (!c)
        return NULL;
    struct vdfs_super s;
    memset(&s, 0, sizeof(s));
    s.total_bytes = size;
    s.block_size = VDFS_DEFAULT_BLOCK_SIZE;
    s.subblock_size = VDFS_DEFAULT_SUBBLOCK_SIZE;
    s.max_hosts = VDFS_DEFAULT_MAX_HOSTS;
    s.journal_blocks = VDFS_DEFAULT_JOURNAL_BLOCKS;
    if (vdfs_layout(&s, 0) == 0)
        c[len++] = s.backup_offset;
    size_t rest = len;
    for (uint32_t bs = 64u << 10; bs <= 64u << 20; bs <<= 1) {
        for (uint32_t sbs = 4096; sbs <= bs && sbs <= (64u << 20); sbs <<= 1) {
            for (uint32_t hosts = 1; hosts <= VDFS_MAX_HOSTS_LIMIT; hosts++) {
                memset(&s, 0, sizeof(s));
                s.total_bytes = size;
                s.block_size = bs;
                s.subblock_size = sbs;
                s.max_hosts = hosts;
                s.journal_blocks = VDFS_DEFAULT_JOURNAL_BLOCKS;
                if (vdfs_layout(&s, 0) == 0 && len < cap)
                    c[len++] = s.backup_offset;
            }
        }
    }
    qsort(c + rest, len - rest, sizeof(*c), cmp_u64);
    size_t out = rest;
    for (size_t i = rest; i < len; i++)
        if ((out == rest || c[i] != c[out - 1]) && (rest == 0 || c[i] != c[0]))
            c[out++] = c[i];
    *n = out;
    return c;
}

static uint32_t magic_at(const uint8_t *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Whether the device shows a vdfs datastore without its superblocks: the
 * primary's magic, or a heartbeat slot that a host stamped.  Without such
 * a sign fsck does not read a whole foreign device looking for a backup. */
static bool looks_like_vdfs(struct fsck *f)
{
    const size_t len = VDFS_MAX_HOSTS_LIMIT * VDFS_SECTOR_SIZE;
    uint8_t *buf = vdfs_aligned_alloc(len);
    bool yes = false;
    if (buf && fsck_read(f, buf, VDFS_META_SIZE, 0) == 0)
        yes = magic_at(buf) == VDFS_MAGIC;
    if (buf && !yes && f->dev_size >= VDFS_HEARTBEAT_OFFSET + len &&
        fsck_read(f, buf, len, VDFS_HEARTBEAT_OFFSET) == 0)
        for (size_t i = 0; i < len && !yes; i += VDFS_SECTOR_SIZE)
            yes = magic_at(buf + i) == VDFS_MAGIC;
    vdfs_aligned_free(buf);
    return yes;
}

/* The last resort: a datastore that vdfsctl grow grew, or one made with
 * options the candidates do not cover, keeps its backup where mkfs put it.
 * Every 4 KiB block with data is looked at for a superblock that names
 * itself as the backup (holes of a sparse image are skipped). */
static bool scan_for_backup(struct fsck *f, struct vdfs_super *s, uint64_t *where)
{
    if (!looks_like_vdfs(f))
        return false;
    const size_t chunk = 1u << 20;
    uint8_t *buf = vdfs_aligned_alloc(chunk);
    if (!buf)
        return false;
    fsck_info(f, "no backup superblock where mkfs would put one on a device of this size; searching the device");
    int fd = vdfs_dev_fd(f->dev);
    uint64_t end = f->dev_size & ~(uint64_t)(VDFS_META_SIZE - 1);
    bool found = false;
    for (uint64_t off = VDFS_HEARTBEAT_OFFSET; off < end && !found && !fsck_cancelled(f);) {
        off_t data = lseek(fd, (off_t)off, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break; /* only holes are left */
        uint64_t at = data < 0 ? off : (uint64_t)data & ~(uint64_t)(VDFS_META_SIZE - 1);
        if (at < off)
            at = off;
        if (at >= end)
            break;
        size_t len = end - at < chunk ? (size_t)(end - at) : chunk;
        if (fsck_read(f, buf, len, at) == 0) {
            for (size_t i = 0; i < len && !found; i += VDFS_META_SIZE) {
                const uint8_t *p = buf + i;
                if (magic_at(p) == VDFS_MAGIC && vdfs_super_decode(p, at + i, s) == 0 &&
                    s->backup_offset == at + i) {
                    *where = at + i;
                    found = true;
                }
            }
        }
        off = at + len;
    }
    vdfs_aligned_free(buf);
    return found;
}

static bool find_backup(struct fsck *f, struct vdfs_super *s, uint64_t *where)
{
    if (f->opt.backup_offset) {
        *where = f->opt.backup_offset;
        return read_super_at(f, f->opt.backup_offset, s) == 0;
    }
    size_t n = 0;
    uint64_t *cand = backup_candidates(f->dev_size, &n);
    if (!cand)
        return false;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        if (read_super_at(f, cand[i], s) == 0 && s->backup_offset == cand[i]) {
            *where = cand[i];
            found = true;
        }
    }
    free(cand);
    return found || scan_for_backup(f, s, where);
}

/* Geometry the rest of fsck indexes with; vdfs_super_decode checks the
 * rest.  Refusing here keeps a crafted superblock from sizing our arrays. */
static const char *geometry_error(const struct vdfs_super *s)
{
    for (unsigned r = 0; r < VDFS_RT_COUNT; r++) {
        const struct vdfs_region *g = &s->region[r];
        if (g->per_cluster == 0 || g->per_cluster > VDFS_BITMAP_BITS)
            return "resource cluster size out of range";
        if (g->clusters != (g->count + g->per_cluster - 1) / g->per_cluster)
            return "resource cluster count does not match the region";
        if (g->count > s->total_bytes / (g->unit_size ? g->unit_size : 1) || g->unit_size == 0)
            return "region larger than the device";
    }
    if (s->region[VDFS_RT_FD].count > UINT32_MAX || s->region[VDFS_RT_FD].count < 3)
        return "descriptor count out of range";
    if (s->region[VDFS_RT_FB].count > VDFS_PTR_INDEX_MASK || s->region[VDFS_RT_SB].count > VDFS_PTR_INDEX_MASK ||
        s->region[VDFS_RT_PB].count > VDFS_PTR_INDEX_MASK)
        return "region too large for 31-bit pointers";
    if (s->region[VDFS_RT_FD].unit_size != VDFS_META_SIZE || s->region[VDFS_RT_PB].unit_size != VDFS_META_SIZE)
        return "descriptor or pointer block size is not 4096";
    if (s->region[VDFS_RT_FB].unit_size != s->block_size || s->region[VDFS_RT_SB].unit_size != s->subblock_size)
        return "region unit sizes do not match the block sizes";
    if (s->subblock_size < VDFS_META_SIZE || s->block_size % s->subblock_size ||
        s->block_size / s->subblock_size > VDFS_DIRECT_SLOTS)
        return "sub-block size out of range";
    if (s->max_hosts == 0 || s->max_hosts > VDFS_MAX_HOSTS_LIMIT || s->journal_blocks < 2)
        return "host count or journal size out of range";
    if (s->root_ino == 0 || s->root_ino >= s->region[VDFS_RT_FD].count || s->lostfound_ino == 0 ||
        s->lostfound_ino >= s->region[VDFS_RT_FD].count || s->lostfound_ino == s->root_ino)
        return "root or lost+found descriptor out of range";
    return NULL;
}

int fsck_pass_super(struct fsck *f)
{
    fsck_pass_begin(f, FSCK_PASS_SUPER);
    f->dev_size = vdfs_dev_size(f->dev);
    if (f->dev_size < 2 * VDFS_HEARTBEAT_OFFSET) {
        fsck_error(f, "not a vdfs datastore: only %" PRIu64 " bytes, too small to hold one", f->dev_size);
        f->operational_error = true;
        return -EINVAL;
    }
    struct vdfs_super primary, backup;
    int prc = read_super_at(f, 0, &primary);
    if (prc == -EOPNOTSUPP) {
        fsck_error(f, "the superblock has incompatible features this fsck does not know; refusing to check");
        f->operational_error = true;
        return prc;
    }
    if (prc == 0) {
        f->sb = primary;
    } else {
        uint64_t where = 0;
        if (!find_backup(f, &backup, &where)) {
            if (prc == -EIO) {
                uint8_t head[4] = {0};
                bool magic = fsck_read(f, head, sizeof(head), 0) == 0 &&
                             (head[0] | head[1] << 8 | head[2] << 16 | (uint32_t)head[3] << 24) == VDFS_MAGIC;
                fsck_error(f, magic ? "the superblock is damaged and no backup superblock was found (give its offset with -B)"
                                    : "not a vdfs datastore (no vdfs superblock at offset 0 and no backup found)");
            } else {
                fsck_error(f, "the superblock is unreadable (%s) and no backup superblock was found", strerror(-prc));
            }
            f->operational_error = true;
            return -EINVAL;
        }
        f->sb = backup;
        f->primary_bad = true;
        f->backup_found_at = where;
    }
    const char *why = geometry_error(&f->sb);
    if (why) {
        fsck_error(f, "not a usable vdfs datastore: %s", why);
        f->operational_error = true;
        return -EINVAL;
    }
    if (f->sb.total_bytes > f->dev_size) {
        fsck_error(f, "truncated: the datastore is %" PRIu64 " bytes but the device holds only %" PRIu64,
                   f->sb.total_bytes, f->dev_size);
        f->operational_error = true;
        return -EINVAL;
    }
    if (prc == 0) {
        f->backup_bad = read_super_at(f, f->sb.backup_offset, &backup) != 0;
        if (!f->backup_bad && (backup.total_bytes != f->sb.total_bytes ||
                               backup.region[VDFS_RT_FB].count != f->sb.region[VDFS_RT_FB].count ||
                               strcmp(backup.label, f->sb.label) != 0)) {
            f->backup_stale = true;
            f->backup_stale_bytes = backup.total_bytes;
        }
    }
    f->have_sb = true;
    fsck_info(f, "%" PRIu64 " bytes, block %u, sub-block %u, %u hosts, %" PRIu64 " descriptors", f->sb.total_bytes,
              f->sb.block_size, f->sb.subblock_size, f->sb.max_hosts, f->sb.region[VDFS_RT_FD].count);
    return 0;
}

void fsck_super_repair(struct fsck *f)
{
    int saved_pass = f->pass;
    f->pass = FSCK_PASS_SUPER;
    int rc = 0;
    if (f->primary_bad &&
        fsck_problem(f, "super_primary_bad", "superblock", 0, true,
                     "primary superblock damaged; using the backup at 0x%" PRIx64, f->backup_found_at))
        rc = write_super_at(f, &f->sb, 0);
    if (rc == 0 && f->backup_bad &&
        fsck_problem(f, "super_backup_bad", "backup superblock", f->sb.backup_offset, true,
                     "backup superblock at 0x%" PRIx64 " damaged", f->sb.backup_offset))
        rc = write_super_at(f, &f->sb, f->sb.backup_offset);
    if (rc == 0 && f->backup_stale &&
        fsck_problem(f, "super_backup_stale", "backup superblock", f->sb.backup_offset, true,
                     "the backup superblock gives %" PRIu64 " bytes, the primary %" PRIu64
                     ", or another label (a grow or relabel stopped between them); updating the backup",
                     f->backup_stale_bytes, f->sb.total_bytes))
        rc = write_super_at(f, &f->sb, f->sb.backup_offset);
    if (rc) {
        fsck_error(f, "cannot write the superblock: %s", strerror(-rc));
        fsck_problem_unfixed(f);
        f->operational_error = true;
    }
    f->pass = saved_pass;
}
