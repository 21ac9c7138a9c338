/* On-disk locks, taken and released by compare-and-write.  A lock whose
 * owner's heartbeat slot is no longer live with the same generation is
 * stale and may be taken over. */
#include <errno.h>
#include <string.h>

#include "internal.h"

static bool owner_is_live(struct vdfs *fs, const struct vdfs_lock_rec *l)
{
    if (l->owner_slot >= fs->sb.max_hosts)
        return false;
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    uint64_t addr = vdfs_heartbeat_addr(&fs->sb, l->owner_slot);
    if (vdfs_dev_read_atomic(fs->dev, raw, VDFS_SECTOR_SIZE, addr) || vdfs_heartbeat_decode(raw, addr, &hb))
        return true; /* unknown: assume alive, the safe answer */
    return hb.state == VDFS_HB_LIVE && hb.hb_gen == l->owner_hb_gen;
}

int disk_lock_acquire(struct vdfs *fs, uint64_t lock_index, uint32_t mode, uint64_t object,
                      struct vdfs_lock_rec *held_by)
{
    uint64_t addr = vdfs_lock_addr(&fs->sb, lock_index);
    uint8_t raw[VDFS_SECTOR_SIZE], next[VDFS_SECTOR_SIZE];
    for (int attempt = 0; attempt < 8; attempt++) {
        struct vdfs_lock_rec l;
        int rc = vdfs_dev_read_atomic(fs->dev, raw, VDFS_SECTOR_SIZE, addr);
        if (rc == 0 && (rc = vdfs_lock_decode(raw, addr, &l)) != 0)
            vdfs_log(VDFS_LOG_ERR, "lock record at 0x%llx is corrupt; fsck.vdfs repairs it", (unsigned long long)addr);
        if (rc)
            return rc;
        bool mine = l.mode != VDFS_LOCK_FREE && l.owner_slot == fs->slot && l.owner_hb_gen == fs->hb_gen;
        if (l.mode != VDFS_LOCK_FREE && !mine && owner_is_live(fs, &l)) {
            if (held_by)
                *held_by = l;
            return -EBUSY;
        }
        struct vdfs_lock_rec n = {0};
        n.hdr.kind = VDFS_KIND_LOCK;
        n.hdr.addr = addr;
        n.hdr.gen = l.hdr.gen + 1;
        n.mode = mode;
        n.owner_slot = fs->slot;
        n.owner_hb_gen = fs->hb_gen;
        n.object = object;
        n.acquired_ns = vdfs_now_ns();
        n.nholders = 1;
        n.holders[0].slot = fs->slot;
        n.holders[0].hb_gen = (uint32_t)fs->hb_gen;
        vdfs_lock_encode(&n, next);
        rc = vdfs_dev_compare_and_write(fs->dev, addr, VDFS_SECTOR_SIZE, raw, next, NULL);
        if (rc != -EAGAIN)
            return rc;
    }
    return -EBUSY;
}

int disk_lock_release(struct vdfs *fs, uint64_t lock_index)
{
    uint64_t addr = vdfs_lock_addr(&fs->sb, lock_index);
    uint8_t raw[VDFS_SECTOR_SIZE], next[VDFS_SECTOR_SIZE];
    for (int attempt = 0; attempt < 8; attempt++) {
        struct vdfs_lock_rec l;
        int rc = vdfs_dev_read_atomic(fs->dev, raw, VDFS_SECTOR_SIZE, addr);
        if (rc == 0)
            rc = vdfs_lock_decode(raw, addr, &l);
        if (rc)
            return rc;
        if (l.mode == VDFS_LOCK_FREE || l.owner_slot != fs->slot || l.owner_hb_gen != fs->hb_gen)
            return 0;
        struct vdfs_lock_rec n = {0};
        n.hdr.kind = VDFS_KIND_LOCK;
        n.hdr.addr = addr;
        n.hdr.gen = l.hdr.gen + 1;
        n.mode = VDFS_LOCK_FREE;
        n.owner_slot = VDFS_NO_SLOT;
        n.object = l.object;
        vdfs_lock_encode(&n, next);
        rc = vdfs_dev_compare_and_write(fs->dev, addr, VDFS_SECTOR_SIZE, raw, next, NULL);
        if (rc != -EAGAIN)
            return rc;
    }
    return -EBUSY;
}
