/* The per-host redo journal.
 *
 * A transaction is every metadata object dirtied since the last commit,
 * written as full images after a descriptor that names their addresses.
 * The images are only written in place after the transaction is durable
 * in the journal, so replaying complete transactions after a crash always
 * yields a consistent volume.  See docs/format.md, "Journal". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "journal.h"

static uint32_t groups_for(uint32_t images)
{
    return (images + VDFS_JDESC_ADDRS - 1) / VDFS_JDESC_ADDRS;
}

/* Where a journaled image may go: a whole 4 KiB block of a bitmap area
 * or a resource region (descriptors, pointer blocks, and the directory
 * blocks among sub-blocks and file blocks), never the superblocks,
 * heartbeats, locks or journals, and never past the device. */
static bool replay_target_ok(const struct vdfs_super *sb, uint64_t addr)
{
    if (addr % VDFS_META_SIZE)
        return false;
    for (unsigned t = 0; t < VDFS_RT_COUNT; t++) {
        const struct vdfs_region *r = &sb->region[t];
        if (addr >= r->bitmap_offset && addr - r->bitmap_offset < (uint64_t)r->clusters * VDFS_META_SIZE)
            return true;
        if (addr >= r->start && addr - r->start < r->count * r->unit_size)
            return true;
    }
    return false;
}

/* Every image of a descriptor group names the address it goes to, and
 * that address is one a journaled object can have. */
static bool group_targets_ok(const struct vdfs_super *sb, const struct vdfs_jdesc *jd, const uint8_t *images,
                             uint64_t daddr)
{
    for (uint32_t i = 0; i < jd->count; i++) {
        struct vdfs_header h;
        vdfs_obj_read_header(images + (size_t)i * VDFS_META_SIZE, &h);
        if (!replay_target_ok(sb, jd->addrs[i]) || h.addr != jd->addrs[i]) {
            vdfs_log(VDFS_LOG_ERR,
                     "journal descriptor at 0x%llx sends image %u to 0x%llx, which is no metadata address; "
                     "replay stops there: run fsck.vdfs",
                     (unsigned long long)daddr, i, (unsigned long long)jd->addrs[i]);
            return false;
        }
    }
    return true;
}

int vdfs_journal_replay(struct vdfs_dev *dev, const struct vdfs_super *sb, uint32_t slot, bool apply,
                        uint64_t *next_seq)
{
    uint8_t *block = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!block)
        return -ENOMEM;
    struct vdfs_jheader jh;
    int rc = vdfs_dev_read(dev, block, VDFS_META_SIZE, vdfs_journal_addr(sb, slot, 0));
    if (rc == 0)
        rc = vdfs_jheader_decode(block, vdfs_journal_addr(sb, slot, 0), &jh);
    if (rc != 0) {
        vdfs_aligned_free(block);
        return -EIO;
    }
    uint64_t expected = jh.start_seq;
    uint32_t pos = jh.start_block < 1 ? 1 : jh.start_block;
    int complete = 0;
    uint8_t *images = NULL;
    size_t images_cap = 0;
    uint64_t *addrs = NULL;
    size_t naddrs = 0, addrs_cap = 0;
    size_t nimages = 0;
    struct vdfs_jdesc *jd = malloc(sizeof(*jd));
    if (!jd) {
        vdfs_aligned_free(block);
        return -ENOMEM;
    }
    while (pos < sb->journal_blocks) {
        uint64_t daddr = vdfs_journal_addr(sb, slot, pos);
        if (vdfs_dev_read(dev, block, VDFS_META_SIZE, daddr) != 0)
            break;
        if (vdfs_jdesc_decode(block, daddr, jd) != 0 || jd->seq != expected || jd->count == 0 ||
            pos + 1 + jd->count > sb->journal_blocks)
            break;
        size_t need = (nimages + jd->count) * VDFS_META_SIZE;
        if (need > images_cap) {
            uint8_t *bigger = vdfs_aligned_alloc(need * 2);
            if (!bigger)
                break;
            if (images)
                memcpy(bigger, images, nimages * VDFS_META_SIZE);
            vdfs_aligned_free(images);
            images = bigger;
            images_cap = need * 2;
        }
        uint8_t *dst = images + nimages * VDFS_META_SIZE;
        if (vdfs_dev_read(dev, dst, (size_t)jd->count * VDFS_META_SIZE, vdfs_journal_addr(sb, slot, pos + 1)) != 0)
            break;
        if (vdfs_checksum(dst, (size_t)jd->count * VDFS_META_SIZE) != jd->images_csum)
            break;
        if (!group_targets_ok(sb, jd, dst, daddr))
            break;
        if (naddrs + jd->count > addrs_cap) {
            size_t cap = (naddrs + jd->count) * 2;
            uint64_t *more = realloc(addrs, cap * sizeof(*addrs));
            if (!more)
                break;
            addrs = more;
            addrs_cap = cap;
        }
        memcpy(addrs + naddrs, jd->addrs, jd->count * sizeof(uint64_t));
        naddrs += jd->count;
        nimages += jd->count;
        pos += 1 + jd->count;
        if (!(jd->flags & VDFS_JDESC_LAST))
            continue;
        if (apply) {
            for (size_t i = 0; i < nimages; i++) {
                rc = vdfs_dev_write(dev, images + i * VDFS_META_SIZE, VDFS_META_SIZE, addrs[i]);
                if (rc != 0) {
                    complete = rc;
                    goto out;
                }
            }
        }
        complete++;
        expected++;
        nimages = 0;
        naddrs = 0;
    }
out:
    if (next_seq)
        *next_seq = expected;
    free(jd);
    free(addrs);
    vdfs_aligned_free(images);
    vdfs_aligned_free(block);
    return complete;
}

int vdfs_journal_reset(struct vdfs_dev *dev, const struct vdfs_super *sb, uint32_t slot, uint64_t next_seq,
                       const uint8_t host_uuid[VDFS_UUID_SIZE])
{
    uint8_t *block = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!block)
        return -ENOMEM;
    struct vdfs_jheader jh = {0};
    jh.hdr.kind = VDFS_KIND_JHEADER;
    jh.hdr.addr = vdfs_journal_addr(sb, slot, 0);
    jh.hdr.gen = next_seq;
    jh.slot = slot;
    jh.start_seq = next_seq;
    jh.start_block = 1;
    if (host_uuid)
        memcpy(jh.host_uuid, host_uuid, VDFS_UUID_SIZE);
    vdfs_jheader_encode(&jh, block);
    int rc = vdfs_dev_write(dev, block, VDFS_META_SIZE, jh.hdr.addr);
    if (rc == 0)
        rc = vdfs_dev_flush(dev);
    vdfs_aligned_free(block);
    return rc;
}

int journal_open(struct vdfs *fs)
{
    struct journal *j = &fs->journal;
    j->slot = fs->slot;
    uint64_t next = 0;
    int n = vdfs_journal_replay(fs->dev, &fs->sb, fs->slot, true, &next);
    if (n < 0)
        return n;
    if (n > 0) {
        fs->mlock_dirty = true; /* other hosts' caches are stale now */
        vdfs_log(VDFS_LOG_INFO, "replayed %d journal transaction(s) of slot %u", n, fs->slot);
        int rc = vdfs_dev_flush(fs->dev);
        if (rc)
            return rc;
    }
    j->seq = next + 1; /* never reuse a sequence number that might sit in the log */
    j->head = 1;
    return vdfs_journal_reset(fs->dev, &fs->sb, fs->slot, j->seq, fs->host_uuid);
}

void journal_close(struct vdfs *fs)
{
    vdfs_aligned_free(fs->journal.scratch);
    fs->journal.scratch = NULL;
    fs->journal.scratch_size = 0;
}

static int ensure_scratch(struct journal *j, size_t bytes)
{
    if (j->scratch_size >= bytes)
        return 0;
    vdfs_aligned_free(j->scratch);
    j->scratch = vdfs_aligned_alloc(bytes);
    j->scratch_size = j->scratch ? bytes : 0;
    return j->scratch ? 0 : -ENOMEM;
}

/* Makes the in-place copies of everything already journaled durable, so
 * the log can start again from block 1. */
int journal_checkpoint(struct vdfs *fs)
{
    if (fs->journal.head <= 1)
        return 0;
    int rc = vdfs_dev_flush(fs->dev);
    if (rc == 0)
        rc = vdfs_journal_reset(fs->dev, &fs->sb, fs->slot, fs->journal.seq, fs->host_uuid);
    if (rc == 0)
        fs->journal.head = 1;
    return rc;
}

static void fence(struct vdfs *fs, int rc, const char *what)
{
    vdfs_log(VDFS_LOG_ERR, "%s failed (%s): metadata writes stopped; the journal keeps the volume consistent",
             what, vdfs_strerror(rc));
    volume_fence(fs, "a metadata write failed", false);
}

int journal_commit(struct vdfs *fs)
{
    struct journal *j = &fs->journal;
    if (fs->readonly)
        return 0;
    if (fs->fenced)
        return -EIO;
    /* From here on the frees of this transaction are allocatable in
     * memory: any failure must stop all writing (fence), or a freed block
     * could be reused before its free is durable. */
    int rc = alloc_prepare_commit(fs);
    if (rc) {
        fence(fs, rc, "journal commit (bitmaps)");
        return -EIO;
    }
    struct meta_cache *c = &fs->cache;
    uint32_t n = (uint32_t)c->ndirty;
    if (n == 0)
        return 0;
    uint32_t groups = groups_for(n);
    uint32_t need = n + groups;
    if (need > fs->sb.journal_blocks - 1) {
        fence(fs, -ENOSPC, "journal commit (transaction larger than the journal)");
        return -EIO;
    }
    if (j->head + need > fs->sb.journal_blocks) {
        rc = journal_checkpoint(fs);
        if (rc) {
            fence(fs, rc, "journal checkpoint");
            return -EIO;
        }
    }
    struct meta_entry **entries = malloc(n * sizeof(*entries));
    struct vdfs_jdesc *jd = malloc(sizeof(*jd));
    if (ensure_scratch(j, (size_t)need * VDFS_META_SIZE) || !entries || !jd) {
        free(entries);
        free(jd);
        fence(fs, -ENOMEM, "journal commit");
        return -EIO;
    }
    uint32_t k = 0;
    for (struct meta_entry *e = c->dirty_list; e; e = e->dirty_next)
        entries[k++] = e;
    uint32_t done = 0, block = j->head;
    uint8_t *out = j->scratch;
    while (done < n) {
        uint32_t count = n - done > VDFS_JDESC_ADDRS ? VDFS_JDESC_ADDRS : n - done;
        memset(jd, 0, sizeof(*jd));
        jd->hdr.kind = VDFS_KIND_JDESC;
        jd->hdr.addr = vdfs_journal_addr(&fs->sb, fs->slot, block);
        jd->hdr.gen = j->seq;
        jd->seq = j->seq;
        jd->count = count;
        jd->flags = done + count == n ? VDFS_JDESC_LAST : 0;
        uint8_t *img = out + VDFS_META_SIZE;
        for (uint32_t i = 0; i < count; i++) {
            jd->addrs[i] = entries[done + i]->addr;
            memcpy(img + (size_t)i * VDFS_META_SIZE, entries[done + i]->data, VDFS_META_SIZE);
        }
        jd->images_csum = vdfs_checksum(img, (size_t)count * VDFS_META_SIZE);
        vdfs_jdesc_encode(jd, out);
        out += (size_t)(count + 1) * VDFS_META_SIZE;
        block += count + 1;
        done += count;
    }
    free(jd);
    /* Data written before this commit must be durable before the
     * transaction that makes it reachable. */
    rc = vdfs_dev_flush(fs->dev);
    if (rc == 0)
        rc = vdfs_dev_write(fs->dev, j->scratch, (size_t)need * VDFS_META_SIZE,
                            vdfs_journal_addr(&fs->sb, fs->slot, j->head));
    if (rc == 0)
        rc = vdfs_dev_flush(fs->dev);
    if (rc) {
        free(entries);
        fence(fs, rc, "journal write");
        return -EIO;
    }
    j->head += need;
    j->seq++;
    struct vdfs_io *ios = calloc(n, sizeof(*ios));
    if (!ios) {
        /* The transaction is durable in the journal; replay will finish it. */
        free(entries);
        fence(fs, -ENOMEM, "in-place metadata write");
        return -EIO;
    }
    for (uint32_t i = 0; i < n; i++) {
        ios[i].op = VDFS_IO_WRITE;
        ios[i].buf = entries[i]->data;
        ios[i].len = VDFS_META_SIZE;
        ios[i].off = entries[i]->addr;
    }
    rc = vdfs_dev_submit(fs->dev, ios, n);
    free(ios);
    for (uint32_t i = 0; i < n; i++) {
        entries[i]->dirty = false;
        entries[i]->dirty_next = NULL;
    }
    c->dirty_list = NULL;
    c->ndirty = 0;
    free(entries);
    if (rc) {
        /* The transaction is durable in the journal; replay will finish it. */
        fence(fs, rc, "in-place metadata write");
        return -EIO;
    }
    /* Blocks this transaction freed held journaled directory images: empty
     * the journal before they can be reused as (unjournaled) file data. */
    if (j->checkpoint_after_commit) {
        rc = journal_checkpoint(fs);
        if (rc) {
            fence(fs, rc, "journal checkpoint");
            return -EIO;
        }
        j->checkpoint_after_commit = false;
    }
    return 0;
}

bool journal_commit_due(const struct vdfs *fs)
{
    return fs->cache.ndirty * 4 >= fs->sb.journal_blocks || fs->cache.ndirty >= 4096;
}

int journal_maybe_commit(struct vdfs *fs)
{
    return journal_commit_due(fs) ? journal_commit(fs) : 0;
}
