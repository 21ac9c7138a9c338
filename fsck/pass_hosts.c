/* Pass 1 (heartbeat slots and on-disk locks) and pass 2 (journals).
 *
 * Both run before any other metadata is read: a dead host's journal may
 * hold the newest version of descriptors, bitmaps and directory blocks. */
#include <errno.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "departing.h"
#include "fsck.h"
#include "journal.h"

static const char *hb_state_name(uint32_t s)
{
    switch (s) {
    case VDFS_HB_FREE: return "free";
    case VDFS_HB_LIVE: return "live";
    case VDFS_HB_REPLAYING: return "being replayed";
    default: return "invalid";
    }
}

/* Replays a slot's journal and marks it empty: apply, make durable, reset
 * (keeping the header's host UUID).  0, -EBADMSG when the header is
 * damaged (nothing in the journal can be replayed: pass 2 resets it to an
 * empty journal), or another -errno. */
static int replay_slot(struct fsck *f, uint32_t slot)
{
    uint8_t *head = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!head)
        return -ENOMEM;
    struct vdfs_jheader header;
    uint64_t haddr = vdfs_journal_addr(&f->sb, slot, 0);
    int rc = fsck_read(f, head, VDFS_META_SIZE, haddr);
    if (rc == 0 && vdfs_jheader_decode(head, haddr, &header) != 0)
        rc = -EBADMSG;
    vdfs_aligned_free(head);
    if (rc)
        return rc;
    uint64_t next = 0;
    int n = vdfs_journal_replay(f->dev, &f->sb, slot, true, &next);
    if (n < 0)
        return n;
    rc = vdfs_dev_flush(f->dev);
    if (rc < 0)
        return rc;
    return vdfs_journal_reset(f->dev, &f->sb, slot, next, header.host_uuid);
}

static int write_heartbeat(struct fsck *f, uint32_t slot, const struct vdfs_heartbeat *h)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    uint64_t addr = vdfs_heartbeat_addr(&f->sb, slot);
    if (h) {
        struct vdfs_heartbeat c = *h;
        c.hdr.kind = VDFS_KIND_HEARTBEAT;
        c.hdr.addr = addr;
        vdfs_heartbeat_encode(&c, buf);
        vdfs_obj_seal(buf, VDFS_SECTOR_SIZE, &c.hdr);
    } else {
        memset(buf, 0, VDFS_SECTOR_SIZE);
    }
    int rc = fsck_write(f, buf, VDFS_SECTOR_SIZE, addr);
    vdfs_aligned_free(buf);
    return rc;
}

static void say_waiting(uint32_t slot, uint32_t pid, void *arg)
{
    /* On standard error, as the refusal would be: not a finding. */
    fsck_error(arg, "waiting for vdfs-fuse (pid %u, slot %u) to finish unmounting", pid, slot);
}

/* Refuses a datastore some process on this machine has mounted: a mounted
 * host holds an OFD read lock on its slot's liveness byte.  A repair takes
 * every slot's liveness byte exclusively (as mkfs.vdfs does) and keeps it
 * until the device is closed, so no host can mount while fsck writes. */
static bool in_use(struct fsck *f)
{
    /* umount returns before a vdfs-fuse daemon has written back and freed
     * its slot: `umount && fsck.vdfs` waits for it, not refuses. */
    vdfs_wait_departing_hosts(f->dev, f->sb.heartbeat_offset, f->sb.max_hosts, say_waiting, f);
    if (f->opt.fix) {
        int rc = vdfs_dev_try_lock(f->dev, vdfs_liveness_lock_offset(0), VDFS_MAX_HOSTS_LIMIT, true);
        if (rc == 0)
            return false;
        fsck_error(f, rc == -EAGAIN ? "in use by a mounted vdfs host (or another fsck/mkfs); unmount it first"
                                    : "cannot lock the heartbeat slots: %s",
                   strerror(-rc));
        return true;
    }
    for (uint32_t slot = 0; slot < VDFS_MAX_HOSTS_LIMIT; slot++) {
        if (vdfs_dev_probe_lock(f->dev, vdfs_liveness_lock_offset(slot), 1) == 1) {
            fsck_error(f, "in use: heartbeat slot %u belongs to a mounted host; unmount it first", slot);
            return true;
        }
    }
    return false;
}

struct slot_state {
    uint32_t state;
    uint64_t hb_gen;
};

static void check_heartbeats(struct fsck *f, struct slot_state *slots)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf) {
        f->operational_error = true;
        return;
    }
    for (uint32_t slot = 0; slot < f->sb.max_hosts; slot++) {
        uint64_t addr = vdfs_heartbeat_addr(&f->sb, slot);
        slots[slot].state = VDFS_HB_FREE;
        slots[slot].hb_gen = 0;
        if (fsck_read(f, buf, VDFS_SECTOR_SIZE, addr) < 0) {
            fsck_error(f, "cannot read heartbeat slot %u", slot);
            f->operational_error = true;
            continue;
        }
        if (fsck_all_zero(buf, VDFS_SECTOR_SIZE))
            continue;
        struct vdfs_heartbeat h;
        char obj[32];
        snprintf(obj, sizeof(obj), "heartbeat slot %u", slot);
        if (vdfs_heartbeat_decode(buf, addr, &h) != 0 || h.slot != slot || h.state > VDFS_HB_REPLAYING) {
            if (fsck_problem(f, "heartbeat_bad", obj, addr, true,
                             "bad checksum in heartbeat slot %u at 0x%" PRIx64 "; resetting it to free", slot, addr))
                write_heartbeat(f, slot, NULL);
            continue;
        }
        slots[slot].state = h.state;
        slots[slot].hb_gen = h.hb_gen;
        if (h.state == VDFS_HB_FREE)
            continue;
        /* in_use() already proved that no process holds it: the host is gone. */
        if (fsck_problem(f, "heartbeat_stale", obj, addr, true,
                         "stale heartbeat: slot %u (host '%s', pid %u) is %s but its host is gone", slot, h.hostname,
                         h.pid, hb_state_name(h.state))) {
            int rc = replay_slot(f, slot);
            if (rc == -EBADMSG) {
                fsck_info(f, "slot %u's journal header is damaged: nothing to replay (pass 2 resets it)", slot);
            } else if (rc < 0) {
                fsck_error(f, "replay of slot %u's journal failed: %s; slot left as it is", slot, strerror(-rc));
                fsck_problem_unfixed(f);
                continue;
            }
            struct vdfs_heartbeat fr = h;
            fr.state = VDFS_HB_FREE;
            fr.hb_gen = h.hb_gen + 1;
            fr.replayer_slot = VDFS_NO_SLOT;
            fr.replayer_hb_gen = 0;
            fr.pid = 0;
            fr.hdr.gen = h.hdr.gen + 1;
            write_heartbeat(f, slot, &fr);
        }
        slots[slot].state = VDFS_HB_FREE;
        slots[slot].hb_gen = h.hb_gen + 1;
    }
    vdfs_aligned_free(buf);
}

static bool holder_alive(const struct fsck *f, const struct slot_state *slots, uint32_t slot, uint64_t gen)
{
    return slot < f->sb.max_hosts && slots[slot].state == VDFS_HB_LIVE && slots[slot].hb_gen == gen;
}

static const char *lock_object(uint64_t object, char *buf, size_t len)
{
    unsigned rtype = (unsigned)(object >> 56);
    uint64_t index = object & ((UINT64_C(1) << 56) - 1);
    if (rtype == VDFS_RT_FD && index == 0)
        snprintf(buf, len, "the volume metadata");
    else if (rtype == VDFS_RT_FD)
        snprintf(buf, len, "ino %" PRIu64, index);
    else
        snprintf(buf, len, "%s cluster %" PRIu64, fsck_rtype_name(rtype), index);
    return buf;
}

/* Returns true if the record changed and must be written back. */
static bool check_lock(struct fsck *f, const struct slot_state *slots, uint64_t index, uint8_t *rec)
{
    uint64_t addr = vdfs_lock_addr(&f->sb, index);
    char obj[64], what[48];
    snprintf(obj, sizeof(obj), "lock %" PRIu64, index);
    struct vdfs_lock_rec l;
    if (vdfs_lock_decode(rec, addr, &l) != 0 || l.mode > VDFS_LOCK_MULTI_WRITER || l.nholders > VDFS_LOCK_HOLDERS) {
        if (fsck_problem(f, "lock_bad", obj, addr, true,
                         "bad checksum in lock record %" PRIu64 " at 0x%" PRIx64 "; resetting it to free", index, addr)) {
            memset(rec, 0, VDFS_SECTOR_SIZE);
            return true;
        }
        return false;
    }
    if (l.mode == VDFS_LOCK_FREE)
        return false;
    bool stale;
    uint32_t kept = 0;
    if (l.mode == VDFS_LOCK_EXCLUSIVE) {
        stale = !holder_alive(f, slots, l.owner_slot, l.owner_hb_gen);
    } else {
        for (uint32_t i = 0; i < l.nholders; i++)
            if (holder_alive(f, slots, l.holders[i].slot, l.holders[i].hb_gen))
                l.holders[kept++] = l.holders[i];
        stale = kept != l.nholders;
    }
    if (!stale)
        return false;
    lock_object(l.object, what, sizeof(what));
    bool fix;
    if (l.mode == VDFS_LOCK_EXCLUSIVE || kept == 0)
        fix = fsck_problem(f, "lock_stale", obj, addr, true,
                           "stale lock on %s held by slot %u (generation %" PRIu64 ") of a host that is gone; freeing it",
                           what, l.owner_slot, l.owner_hb_gen);
    else
        fix = fsck_problem(f, "lock_stale", obj, addr, true, "stale holders of the shared lock on %s; dropping %u of them",
                           what, l.nholders - kept);
    if (!fix)
        return false;
    if (l.mode == VDFS_LOCK_EXCLUSIVE || kept == 0) {
        l.mode = VDFS_LOCK_FREE;
        l.owner_slot = VDFS_NO_SLOT;
        l.owner_hb_gen = 0;
        kept = 0;
    }
    for (uint32_t i = kept; i < VDFS_LOCK_HOLDERS; i++)
        l.holders[i].slot = l.holders[i].hb_gen = 0;
    l.nholders = kept;
    l.hdr.gen++;
    l.hdr.kind = VDFS_KIND_LOCK;
    l.hdr.addr = addr;
    vdfs_lock_encode(&l, rec);
    vdfs_obj_seal(rec, VDFS_SECTOR_SIZE, &l.hdr);
    return true;
}

static void check_locks(struct fsck *f, const struct slot_state *slots)
{
    const size_t chunk = 2048; /* records per read: 1 MiB */
    uint8_t *buf = vdfs_aligned_alloc(chunk * VDFS_SECTOR_SIZE);
    if (!buf) {
        f->operational_error = true;
        return;
    }
    for (uint64_t first = 0; first < f->sb.lock_count && !fsck_cancelled(f); first += chunk) {
        size_t n = (size_t)(f->sb.lock_count - first < chunk ? f->sb.lock_count - first : chunk);
        uint64_t addr = vdfs_lock_addr(&f->sb, first);
        /* Most lock records of a big volume were never written: on a
         * sparse image skip the holes instead of reading gigabytes of zeros. */
        if (!vdfs_dev_is_blockdev(f->dev)) {
            off_t data = lseek(vdfs_dev_fd(f->dev), (off_t)addr, SEEK_DATA);
            bool hole = data < 0 ? errno == ENXIO : (uint64_t)data >= addr + n * VDFS_SECTOR_SIZE;
            if (hole) {
                fsck_progress(f, first + n, f->sb.lock_count);
                continue;
            }
        }
        if (fsck_read(f, buf, n * VDFS_SECTOR_SIZE, addr) < 0) {
            fsck_error(f, "cannot read lock records at 0x%" PRIx64, addr);
            f->operational_error = true;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            uint8_t *rec = buf + i * VDFS_SECTOR_SIZE;
            if (fsck_all_zero(rec, VDFS_SECTOR_SIZE))
                continue;
            if (check_lock(f, slots, first + i, rec))
                fsck_write(f, rec, VDFS_SECTOR_SIZE, addr + i * VDFS_SECTOR_SIZE);
        }
        fsck_progress(f, first + n, f->sb.lock_count);
    }
    vdfs_aligned_free(buf);
}

int fsck_pass_hosts(struct fsck *f)
{
    fsck_pass_begin(f, FSCK_PASS_HOSTS);
    if (in_use(f)) {
        f->operational_error = true;
        return -EBUSY;
    }
    struct slot_state *slots = calloc(f->sb.max_hosts, sizeof(*slots));
    if (!slots) {
        f->operational_error = true;
        return -ENOMEM;
    }
    check_heartbeats(f, slots);
    check_locks(f, slots);
    free(slots);
    return 0;
}

static bool journal_unused(struct fsck *f, uint32_t slot)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return false;
    bool unused = fsck_read(f, buf, VDFS_META_SIZE, vdfs_journal_addr(&f->sb, slot, 0)) == 0 &&
                  fsck_all_zero(buf, VDFS_META_SIZE);
    vdfs_aligned_free(buf);
    return unused;
}

int fsck_pass_journal(struct fsck *f)
{
    fsck_pass_begin(f, FSCK_PASS_JOURNAL);
    for (uint32_t slot = 0; slot < f->sb.max_hosts && !fsck_cancelled(f); slot++) {
        uint64_t next = 0;
        uint64_t addr = vdfs_journal_addr(&f->sb, slot, 0);
        char obj[32];
        snprintf(obj, sizeof(obj), "journal %u", slot);
        int n = vdfs_journal_replay(f->dev, &f->sb, slot, false, &next);
        if (n == 0)
            continue;
        if (n < 0) {
            if (journal_unused(f, slot))
                continue;
            if (fsck_problem(f, "journal_header_bad", obj, addr, true,
                             "journal header of slot %u at 0x%" PRIx64 " is damaged; marking the journal empty", slot,
                             addr)) {
                /* A start sequence no old record can carry keeps stale
                 * transactions behind the header from ever replaying. */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                uint64_t seq = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
                uint8_t uuid[VDFS_UUID_SIZE] = {0};
                int rc = vdfs_journal_reset(f->dev, &f->sb, slot, seq, uuid);
                if (rc < 0) {
                    fsck_error(f, "reset of journal %u failed: %s", slot, strerror(-rc));
                    fsck_problem_unfixed(f);
                    f->operational_error = true;
                }
            }
            continue;
        }
        if (fsck_problem(f, "journal_replay", obj, addr, true,
                         "journal of slot %u needs replay: %d committed transaction%s not yet applied", slot, n,
                         n == 1 ? "" : "s")) {
            int rc = replay_slot(f, slot);
            if (rc < 0) {
                fsck_error(f, "replay of journal %u failed: %s", slot, strerror(-rc));
                fsck_problem_unfixed(f);
                f->operational_error = true;
            }
        } else {
            f->journal_pending = true;
        }
    }
    if (f->journal_pending && !f->opt.json)
        printf("  note: the journal was not replayed (read-only check); later passes see the metadata before replay\n");
    return 0;
}
