/* What the device holds before mkfs touches it: the magic numbers of other
 * filesystems and partition tables, an earlier vdfs (primary or backup
 * superblock), and vdfs hosts that still have it mounted. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "departing.h"
#include "mkfs.h"

struct signature {
    const char *name;
    uint64_t offset;
    const char *magic;
    size_t len;
};

static const struct signature signatures[] = {
    {"ext2/ext3/ext4", 1080, "\x53\xef", 2},
    {"xfs", 0, "XFSB", 4},
    {"btrfs", 65536 + 64, "_BHRfS_M", 8},
    {"LUKS", 0, "LUKS\xba\xbe", 6},
    {"swap", 4096 - 10, "SWAPSPACE2", 10},
    {"swap", 4096 - 10, "SWAP-SPACE", 10},
    {"a GPT partition table", 512, "EFI PART", 8},
    {"a DOS partition table or boot sector", 510, "\x55\xaa", 2},
};

/* One aligned 4 KiB block, read at most once per probe. */
struct block_reader {
    struct vdfs_dev *dev;
    uint8_t *buf;
    uint64_t cached; /* UINT64_MAX: nothing cached */
};

static const uint8_t *read_block(struct block_reader *r, uint64_t off, int *err)
{
    uint64_t base = off & ~(uint64_t)(VDFS_META_SIZE - 1);
    *err = 0;
    if (base + VDFS_META_SIZE > vdfs_dev_size(r->dev))
        return NULL;
    if (r->cached != base) {
        int rc = vdfs_dev_read(r->dev, r->buf, VDFS_META_SIZE, base);
        if (rc != 0) {
            r->cached = UINT64_MAX;
            *err = rc;
            return NULL;
        }
        r->cached = base;
    }
    return r->buf + (off - base);
}

static void add_wipe(struct mkfs_probe *p, uint64_t off)
{
    uint64_t base = off & ~(uint64_t)(VDFS_META_SIZE - 1);
    for (unsigned i = 0; i < p->nwipe; i++)
        if (p->wipe[i] == base)
            return;
    if (p->nwipe < sizeof(p->wipe) / sizeof(p->wipe[0]))
        p->wipe[p->nwipe++] = base;
}

static bool vdfs_magic_at(const uint8_t *obj)
{
    vdfs_le32 magic, kind;
    memcpy(&magic, obj, 4);
    memcpy(&kind, obj + 4, 4);
    return vdfs_get32(magic) == VDFS_MAGIC && vdfs_get32(kind) == VDFS_KIND_SUPER;
}

/* Checks for a vdfs superblock at `off`: magic alone counts as "holds
 * vdfs"; a copy that also decodes becomes p->vdfs. */
static int probe_vdfs_at(struct block_reader *r, uint64_t off, struct mkfs_probe *p)
{
    int err;
    if (off % VDFS_META_SIZE != 0)
        return 0;
    const uint8_t *blk = read_block(r, off, &err);
    if (blk == NULL)
        return err;
    if (!vdfs_magic_at(blk))
        return 0;
    if (p->fs_name == NULL) {
        p->fs_name = "vdfs";
        p->fs_offset = off;
    }
    add_wipe(p, off);
    if (!p->have_vdfs && vdfs_super_decode(blk, off, &p->vdfs) == 0)
        p->have_vdfs = true;
    return 0;
}

static void say_waiting(uint32_t slot, uint32_t pid, void *arg)
{
    (void)arg;
    fprintf(stderr, "mkfs.vdfs: waiting for vdfs-fuse (pid %u, slot %u) to finish unmounting\n", pid, slot);
}

static int probe_live_hosts(struct vdfs_dev *dev, uint64_t hb_off, uint32_t slots, struct mkfs_probe *p)
{
    /* umount returns before a vdfs-fuse daemon has written back and freed
     * its slot: `umount && mkfs.vdfs -f` waits for it, not refuses. */
    vdfs_wait_departing_hosts(dev, hb_off, slots, say_waiting, NULL);
    size_t len = ((size_t)slots * VDFS_SECTOR_SIZE + VDFS_META_SIZE - 1) & ~(size_t)(VDFS_META_SIZE - 1);
    if (hb_off % VDFS_META_SIZE != 0 || hb_off + len > vdfs_dev_size(dev))
        return 0;
    uint8_t *buf = vdfs_aligned_alloc(len);
    if (buf == NULL)
        return -ENOMEM;
    int rc = vdfs_dev_read(dev, buf, len, hb_off);
    for (uint32_t slot = 0; rc == 0 && slot < slots && !p->live_host; slot++) {
        uint64_t addr = hb_off + (uint64_t)slot * VDFS_SECTOR_SIZE;
        struct vdfs_heartbeat hb;
        if (vdfs_heartbeat_decode(buf + (size_t)slot * VDFS_SECTOR_SIZE, addr, &hb) != 0 || hb.state == VDFS_HB_FREE)
            continue;
        /* A mounted host holds the liveness lock of its slot; the lock on
         * the slot's own sectors is the older convention, still honoured. */
        if (vdfs_dev_probe_lock(dev, vdfs_liveness_lock_offset(slot), 1) == 1 ||
            vdfs_dev_probe_lock(dev, addr, VDFS_SECTOR_SIZE) == 1) {
            p->live_host = true;
            p->live_slot = slot;
            p->live_pid = hb.pid;
            memcpy(p->live_hostname, hb.hostname, sizeof(p->live_hostname));
        }
    }
    vdfs_aligned_free(buf);
    return rc;
}

int mkfs_probe_device(struct vdfs_dev *dev, const struct vdfs_super *planned, struct mkfs_probe *p)
{
    memset(p, 0, sizeof(*p));
    struct block_reader r = {.dev = dev, .buf = vdfs_aligned_alloc(VDFS_META_SIZE), .cached = UINT64_MAX};
    if (r.buf == NULL)
        return -ENOMEM;
    int rc = probe_vdfs_at(&r, VDFS_SUPER_OFFSET, p);
    if (rc == 0 && p->have_vdfs)
        rc = probe_vdfs_at(&r, p->vdfs.backup_offset, p);
    if (rc == 0)
        rc = probe_vdfs_at(&r, planned->backup_offset, p);
    if (rc == 0) {
        /* An earlier default-geometry vdfs keeps its backup where the
         * default layout puts it, whatever options this run was given. */
        struct vdfs_super d = {.total_bytes = planned->total_bytes,
                               .block_size = VDFS_DEFAULT_BLOCK_SIZE,
                               .subblock_size = VDFS_DEFAULT_SUBBLOCK_SIZE,
                               .max_hosts = VDFS_DEFAULT_MAX_HOSTS,
                               .journal_blocks = VDFS_DEFAULT_JOURNAL_BLOCKS};
        if (vdfs_layout(&d, 0) == 0)
            rc = probe_vdfs_at(&r, d.backup_offset, p);
    }
    for (size_t i = 0; rc == 0 && i < sizeof(signatures) / sizeof(signatures[0]); i++) {
        const struct signature *s = &signatures[i];
        const uint8_t *at = read_block(&r, s->offset, &rc);
        if (at == NULL || memcmp(at, s->magic, s->len) != 0)
            continue;
        if (p->fs_name == NULL) {
            p->fs_name = s->name;
            p->fs_offset = s->offset;
        }
        add_wipe(p, s->offset);
    }
    vdfs_aligned_free(r.buf);
    if (rc != 0 || p->fs_name == NULL || strcmp(p->fs_name, "vdfs") != 0)
        return rc;
    if (p->have_vdfs)
        return probe_live_hosts(dev, p->vdfs.heartbeat_offset,
                                p->vdfs.max_hosts < VDFS_MAX_HOSTS_LIMIT ? p->vdfs.max_hosts : VDFS_MAX_HOSTS_LIMIT, p);
    return probe_live_hosts(dev, VDFS_HEARTBEAT_OFFSET, VDFS_MAX_HOSTS_LIMIT, p);
}
