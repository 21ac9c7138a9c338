/* Heartbeat slots: each mounted host owns one, claimed by compare-and-write
 * and renewed by its owner.  See docs/format.md and BRIEF §2. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "journal.h"

static int read_slot(struct vdfs *fs, uint32_t slot, uint8_t *raw, struct vdfs_heartbeat *hb)
{
    uint64_t addr = vdfs_heartbeat_addr(&fs->sb, slot);
    int rc = vdfs_dev_read_atomic(fs->dev, raw, VDFS_SECTOR_SIZE, addr);
    if (rc)
        return rc;
    rc = vdfs_heartbeat_decode(raw, addr, hb);
    if (rc)
        vdfs_log(VDFS_LOG_ERR, "heartbeat slot %u at 0x%llx is corrupt; fsck.vdfs repairs it", slot,
                 (unsigned long long)addr);
    return rc;
}

static void fill_live(struct vdfs *fs, struct vdfs_heartbeat *hb, uint32_t slot)
{
    hb->hdr.kind = VDFS_KIND_HEARTBEAT;
    hb->hdr.addr = vdfs_heartbeat_addr(&fs->sb, slot);
    hb->hdr.gen++;
    hb->state = VDFS_HB_LIVE;
    hb->slot = slot;
    memcpy(hb->host_uuid, fs->host_uuid, VDFS_UUID_SIZE);
    hb->counter = ++fs->hb_counter;
    hb->stamp_ns = vdfs_now_ns();
    hb->interval_ms = fs->sb.hb_interval_ms;
    hb->pid = (uint32_t)getpid();
    hb->replayer_slot = VDFS_NO_SLOT;
    memcpy(hb->hostname, fs->host_name, sizeof(hb->hostname));
}

/* Frees a dead host's slot after finishing its journal: the breaker's
 * steps 1-3 of BRIEF §2. */
static int recover_slot(struct vdfs *fs, uint32_t slot, uint8_t *raw, struct vdfs_heartbeat *hb)
{
    uint8_t next[VDFS_SECTOR_SIZE];
    char uuid[37];
    vdfs_uuid_format(hb->host_uuid, uuid);
    vdfs_log(VDFS_LOG_INFO, "host %s (slot %u, pid %u) is gone; replaying its journal", uuid, slot, hb->pid);
    struct vdfs_heartbeat mark = *hb;
    mark.state = VDFS_HB_REPLAYING;
    mark.replayer_slot = fs->slot;
    mark.hdr.gen++;
    vdfs_heartbeat_encode(&mark, next);
    int rc = vdfs_dev_compare_and_write(fs->dev, mark.hdr.addr, VDFS_SECTOR_SIZE, raw, next, NULL);
    if (rc)
        return rc == -EAGAIN ? -EBUSY : rc;
    uint64_t next_seq = 0;
    int n = vdfs_journal_replay(fs->dev, &fs->sb, slot, true, &next_seq);
    if (n < 0)
        return n;
    rc = vdfs_dev_flush(fs->dev);
    if (rc == 0)
        rc = vdfs_journal_reset(fs->dev, &fs->sb, slot, next_seq + 1, hb->host_uuid);
    if (rc)
        return rc;
    if (n > 0)
        vdfs_log(VDFS_LOG_INFO, "replayed %d transaction(s) of slot %u", n, slot);
    struct vdfs_heartbeat freed = {0};
    freed.hdr = mark.hdr;
    freed.hdr.gen++;
    freed.state = VDFS_HB_FREE;
    freed.slot = slot;
    freed.hb_gen = hb->hb_gen + 1;
    freed.replayer_slot = VDFS_NO_SLOT;
    uint8_t done[VDFS_SECTOR_SIZE];
    vdfs_heartbeat_encode(&freed, done);
    return vdfs_dev_compare_and_write(fs->dev, mark.hdr.addr, VDFS_SECTOR_SIZE, next, done, NULL);
}

int heartbeat_recover_and_check(struct vdfs *fs)
{
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    for (uint32_t slot = 0; slot < fs->sb.max_hosts; slot++) {
        int rc = read_slot(fs, slot, raw, &hb);
        if (rc)
            return rc;
        if (hb.state == VDFS_HB_FREE)
            continue;
        rc = vdfs_dev_probe_lock(fs->dev, vdfs_liveness_lock_offset(slot), 1);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            char uuid[37];
            vdfs_uuid_format(hb.host_uuid, uuid);
            vdfs_log(VDFS_LOG_ERR,
                     "datastore is mounted by host %s (%s, pid %u, slot %u); one host at a time until multi-host mounting is enabled",
                     hb.hostname, uuid, hb.pid, slot);
            return -EBUSY;
        }
        if (fs->readonly)
            continue;
        rc = recover_slot(fs, slot, raw, &hb);
        if (rc)
            return rc;
    }
    return 0;
}

int heartbeat_claim(struct vdfs *fs)
{
    uint8_t raw[VDFS_SECTOR_SIZE], next[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    for (uint32_t slot = 0; slot < fs->sb.max_hosts; slot++) {
        /* Hold the liveness lock before the slot is LIVE, so no one can
         * mistake a host in the middle of claiming for a dead one. */
        int rc = vdfs_dev_try_lock(fs->dev, vdfs_liveness_lock_offset(slot), 1, false);
        if (rc)
            continue;
        rc = read_slot(fs, slot, raw, &hb);
        if (rc || hb.state != VDFS_HB_FREE) {
            vdfs_dev_unlock(fs->dev, vdfs_liveness_lock_offset(slot), 1);
            continue;
        }
        fill_live(fs, &hb, slot);
        vdfs_heartbeat_encode(&hb, next);
        rc = vdfs_dev_compare_and_write(fs->dev, hb.hdr.addr, VDFS_SECTOR_SIZE, raw, next, NULL);
        if (rc == 0) {
            fs->slot = slot;
            fs->hb_gen = hb.hb_gen;
            return 0;
        }
        vdfs_dev_unlock(fs->dev, vdfs_liveness_lock_offset(slot), 1);
        if (rc != -EAGAIN)
            return rc;
    }
    vdfs_log(VDFS_LOG_ERR, "all %u heartbeat slots of the datastore are taken", fs->sb.max_hosts);
    return -EUSERS;
}

int heartbeat_renew(struct vdfs *fs)
{
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    int rc = read_slot(fs, fs->slot, raw, &hb);
    if (rc == 0 && (hb.state != VDFS_HB_LIVE || memcmp(hb.host_uuid, fs->host_uuid, VDFS_UUID_SIZE) != 0 ||
                    hb.hb_gen != fs->hb_gen))
        rc = -ESTALE;
    if (rc == 0) {
        fill_live(fs, &hb, fs->slot);
        uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
        if (!buf)
            return -ENOMEM;
        /* Compare-and-write, though the owner alone writes its live slot:
         * a slot someone broke while this host stalled is never overwritten. */
        vdfs_heartbeat_encode(&hb, buf);
        rc = vdfs_dev_compare_and_write(fs->dev, hb.hdr.addr, VDFS_SECTOR_SIZE, raw, buf, NULL);
        vdfs_aligned_free(buf);
    }
    if (rc) {
        fs->fenced = true;
        vdfs_log(VDFS_LOG_ERR, "cannot renew heartbeat of slot %u (%s): fencing this host", fs->slot,
                 vdfs_strerror(rc));
    }
    return rc;
}

int heartbeat_release(struct vdfs *fs)
{
    uint8_t raw[VDFS_SECTOR_SIZE], next[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    int rc = read_slot(fs, fs->slot, raw, &hb);
    if (rc == 0) {
        struct vdfs_heartbeat freed = {0};
        freed.hdr = hb.hdr;
        freed.hdr.gen++;
        freed.state = VDFS_HB_FREE;
        freed.slot = fs->slot;
        freed.hb_gen = hb.hb_gen + 1;
        freed.replayer_slot = VDFS_NO_SLOT;
        vdfs_heartbeat_encode(&freed, next);
        rc = vdfs_dev_compare_and_write(fs->dev, hb.hdr.addr, VDFS_SECTOR_SIZE, raw, next, NULL);
    }
    vdfs_dev_unlock(fs->dev, vdfs_liveness_lock_offset(fs->slot), 1);
    return rc;
}
