/* Heartbeat slots: each mounted host owns one, claims it by
 * compare-and-write and renews it from its own thread.  Liveness of other
 * hosts is judged on this host's monotonic clock: a slot whose counter has
 * not moved for the timeout is dead, whatever its writer's clock says.  A
 * host that cannot renew within its lease (timeout minus a margin) fences
 * itself before anyone may judge it dead.  See docs/clustering.md. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "departing.h"
#include "internal.h"
#include "journal.h"


/* Reads a slot without an OFD lock: a process stopped inside a read under
 * a shared lock of another host's slot would hold up that host's renewal
 * (a compare-and-write) past its lease.  A slot is written one whole
 * sector at a time; an image caught in the middle of a write fails its
 * checksum and is read again. */
int heartbeat_read_slot(struct vdfs *fs, uint32_t slot, uint8_t *raw, struct vdfs_heartbeat *hb)
{
    uint64_t addr = vdfs_heartbeat_addr(&fs->sb, slot);
    int rc;
    for (int tries = 0;; tries++) {
        rc = vdfs_dev_read_any(fs->dev, raw, VDFS_SECTOR_SIZE, addr);
        if (rc)
            return rc;
        rc = vdfs_heartbeat_decode(raw, addr, hb);
        if (rc == 0 || tries == 3)
            break;
        vdfs_sleep_ms(1);
    }
    if (rc)
        vdfs_log(VDFS_LOG_ERR, "heartbeat slot %u at 0x%llx is corrupt; fsck.vdfs repairs it", slot,
                 (unsigned long long)addr);
    return rc;
}

void volume_fence(struct vdfs *fs, const char *why, bool hard)
{
    if (!atomic_exchange(&fs->fenced, true))
        vdfs_log(VDFS_LOG_ERR, "fencing this host (slot %u): %s; every write now fails with EIO, remount to rejoin",
                 fs->slot, why);
    if (hard && fs->dev)
        vdfs_dev_fence(fs->dev);
}

bool volume_is_fenced(struct vdfs *fs)
{
    if (atomic_load(&fs->fenced))
        return true;
    if (fs->dev && fs->cluster && vdfs_dev_is_fenced(fs->dev)) {
        char why[96];
        snprintf(why, sizeof(why), "heartbeat lease expired (last renewal began %llu ms ago, lease %u ms)",
                 (unsigned long long)(vdfs_monotonic_ms() - atomic_load(&fs->hb_renewed_ms)), fs->lease_ms);
        volume_fence(fs, why, true);
        return true;
    }
    return false;
}

bool vdfs_is_fenced(struct vdfs *fs)
{
    return fs->cluster && volume_is_fenced(fs);
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
    hb->interval_ms = fs->hb_interval_ms;
    hb->timeout_ms = fs->hb_timeout_ms;
    hb->pid = (uint32_t)getpid();
    hb->replayer_slot = VDFS_NO_SLOT;
    memcpy(hb->hostname, fs->host_name, sizeof(hb->hostname));
    hb->flags = fs->readonly ? VDFS_HB_FLAG_READONLY : 0;
}

/* Records what was seen in a slot; returns for how long (on our clock) it
 * has not changed.  Caller holds hb_lock. */
static uint64_t watch_record(struct vdfs *fs, uint32_t slot, const struct vdfs_heartbeat *hb, uint64_t now)
{
    struct slot_watch *w = &fs->watch[slot];
    if (!w->seen || w->state != hb->state || w->hb_gen != hb->hb_gen || w->counter != hb->counter ||
        hb->state == VDFS_HB_FREE) {
        w->seen = true;
        w->state = hb->state;
        w->hb_gen = hb->hb_gen;
        w->counter = hb->counter;
        w->since_ms = now;
    }
    return now - w->since_ms;
}

static uint64_t watch_update(struct vdfs *fs, uint32_t slot, const struct vdfs_heartbeat *hb, uint64_t now)
{
    pthread_mutex_lock(&fs->hb_lock);
    uint64_t silent = watch_record(fs, slot, hb, now);
    pthread_mutex_unlock(&fs->hb_lock);
    return silent;
}

/* The writer may run with a longer timeout than ours: wait for the longer.
 * No host runs with more than the maximum, so a slot that says so is
 * damaged and its figure would keep its locks for good. */
static uint64_t timeout_for(const struct vdfs *fs, const struct vdfs_heartbeat *hb)
{
    if (hb->timeout_ms > VDFS_HB_TIMEOUT_MAX_MS)
        return fs->hb_timeout_ms;
    return hb->timeout_ms > fs->hb_timeout_ms ? hb->timeout_ms : fs->hb_timeout_ms;
}

bool heartbeat_others_present(struct vdfs *fs)
{
    bool others = false;
    pthread_mutex_lock(&fs->hb_lock);
    for (uint32_t slot = 0; slot < fs->sb.max_hosts && !others; slot++)
        others = slot != fs->slot && fs->watch[slot].seen && fs->watch[slot].state != VDFS_HB_FREE;
    pthread_mutex_unlock(&fs->hb_lock);
    return others;
}

static bool slot_is_dead(struct vdfs *fs, uint32_t slot, const struct vdfs_heartbeat *hb, uint64_t silent);

#define REPLAY_PATIENCE_TIMEOUTS 10

/* A REPLAYING slot is abandoned when its replayer is dead: a live one may
 * take longer than the timeout over a long journal, and a second replay
 * beside it could write old images over what a later holder wrote.  A
 * dead replayer's lease is over (its device refuses writes), so the slot
 * can be taken over at once.  A slot that names no valid replayer is
 * judged by its own silence. */
static bool replay_abandoned(struct vdfs *fs, uint32_t slot, const struct vdfs_heartbeat *hb, uint64_t silent)
{
    uint32_t rslot = hb->replayer_slot;
    if (rslot >= fs->sb.max_hosts || rslot == slot)
        return silent >= timeout_for(fs, hb);
    /* A live replayer that failed half-way and never needs a lock again
     * would hold the slot for good: past this long (40 s by default, far
     * more than a whole journal takes) the replay is taken over anyway. */
    if (silent >= REPLAY_PATIENCE_TIMEOUTS * timeout_for(fs, hb))
        return true;
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat replayer;
    if (heartbeat_read_slot(fs, rslot, raw, &replayer) != 0)
        return false; /* unreadable: judged again on the next look */
    if (replayer.state != VDFS_HB_LIVE || replayer.hb_gen != hb->replayer_hb_gen)
        return true; /* freed, recovered or being recovered: it was judged dead */
    /* Our own replay that did not finish (a compare-and-write lost, an I/O
     * error): recovery runs under fs->lock, so none of ours is running
     * now, and we take it up again. */
    if (rslot == fs->slot)
        return true;
    return slot_is_dead(fs, rslot, &replayer, watch_update(fs, rslot, &replayer, vdfs_monotonic_ms()));
}

/* Dead: silent for the timeout on our clock, or LIVE while no process
 * holds its OFD liveness lock any more.  The lock's absence is as sure as
 * at mount time: a mounted process holds it from before its slot turns
 * LIVE until after it is freed, and the kernel drops it only when the
 * process's last reference to the device (in-flight I/O included) is
 * gone, so that process can write nothing more (kill -9 fails over at
 * once).  Its presence proves nothing: a stopped process keeps it.  A
 * REPLAYING slot is judged by its replayer (replay_abandoned). */
static bool slot_is_dead(struct vdfs *fs, uint32_t slot, const struct vdfs_heartbeat *hb, uint64_t silent)
{
    if (hb->state == VDFS_HB_REPLAYING)
        return replay_abandoned(fs, slot, hb, silent);
    if (silent >= timeout_for(fs, hb))
        return true;
    return hb->state == VDFS_HB_LIVE && vdfs_dev_probe_lock(fs->dev, vdfs_liveness_lock_offset(slot), 1) == 0;
}

/* Whether the process that holds slot's holder tag can write no more.  It
 * set that tag only once its slot was LIVE and drops it before freeing
 * the slot, so a FREE or REPLAYING slot means it was judged dead and
 * recovered (no new process can claim the slot before it is FREE), and a
 * LIVE one is judged like any lock holder.  Never waits for hb_lock: the
 * asking thread may be the renewal, which holds it. */
static bool tag_holder_dead(struct vdfs *fs, uint32_t slot)
{
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    if (heartbeat_read_slot(fs, slot, raw, &hb) != 0)
        return false;
    if (hb.state == VDFS_HB_FREE || hb.state == VDFS_HB_REPLAYING)
        return true;
    uint64_t now = vdfs_monotonic_ms();
    if (pthread_mutex_trylock(&fs->hb_lock) != 0)
        return false; /* asked again in 10 ms */
    uint64_t silent = watch_record(fs, slot, &hb, now);
    pthread_mutex_unlock(&fs->hb_lock);
    return slot_is_dead(fs, slot, &hb, silent);
}

/* The device's wait hook: a compare-and-write waits for an OFD lock on a
 * record.  Its holder holds a holder tag; if every tag held by another
 * process belongs to a host dead by the timeout (lease over: its device
 * refuses writes), the holder is one of them and the write may go on
 * without the lock.  This ends the wait when the holder dies, not a whole
 * patience after the wait began.  A held anonymous tag (a host mounting
 * or unmounting, a tool) or no tag at all proves nothing: keep waiting. */
static bool window_holders_dead(void *arg, uint64_t *dead_tags)
{
    struct vdfs *fs = arg;
    if (vdfs_dev_probe_holder_tags(fs->dev, VDFS_DEV_TAG_ANON, 1) != 0)
        return false;
    if (vdfs_dev_probe_holder_tags(fs->dev, 0, fs->sb.max_hosts) != 1)
        return false;
    uint32_t dead = VDFS_NO_SLOT;
    for (uint32_t slot = 0; slot < fs->sb.max_hosts; slot++) {
        int held = vdfs_dev_probe_holder_tags(fs->dev, slot, 1);
        if (held < 0)
            return false;
        /* Our own slot's tag held by another process: an earlier
         * incarnation, recovered before we could claim the slot. */
        if (held && slot != fs->slot && !tag_holder_dead(fs, slot))
            return false;
        if (held) {
            dead = slot;
            *dead_tags |= UINT64_C(1) << slot;
        }
    }
    if (*dead_tags == 0)
        return false; /* the holder let go meanwhile: just try again */
    /* Every write of that record meets the lock until the stopped
     * process is continued or killed: say so now and then, not each time. */
    static _Atomic uint64_t last_said_ms;
    uint64_t now = vdfs_monotonic_ms(), said = atomic_load(&last_said_ms);
    if ((said == 0 || now - said >= 10000) && atomic_compare_exchange_strong(&last_said_ms, &said, now))
        vdfs_log(VDFS_LOG_INFO,
                 "a record's OFD lock is held by a stopped host dead by the heartbeat timeout (slot %u); "
                 "writing without it",
                 dead);
    return true;
}

int heartbeat_judge(struct vdfs *fs, uint32_t slot, uint64_t hb_gen)
{
    if (slot >= fs->sb.max_hosts)
        return SLOT_GONE;
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    int rc = heartbeat_read_slot(fs, slot, raw, &hb);
    if (rc)
        return rc;
    if (hb.state == VDFS_HB_FREE || hb.hb_gen != hb_gen)
        return SLOT_GONE;
    uint64_t silent = watch_update(fs, slot, &hb, vdfs_monotonic_ms());
    if (!slot_is_dead(fs, slot, &hb, silent))
        return hb.state == VDFS_HB_REPLAYING ? SLOT_BUSY : SLOT_ALIVE;
    return SLOT_DEAD;
}

/* The breaker's steps 1-3 of BRIEF §2 on a slot read as `raw`/`hb`. */
static int recover_slot(struct vdfs *fs, uint32_t slot, const uint8_t *raw, const struct vdfs_heartbeat *hb)
{
    uint8_t next[VDFS_SECTOR_SIZE];
    char uuid[37];
    vdfs_uuid_format(hb->host_uuid, uuid);
    vdfs_log(VDFS_LOG_INFO, "host %s (%s, slot %u, pid %u) is gone; replaying its journal", hb->hostname, uuid,
             slot, hb->pid);
    struct vdfs_heartbeat mark = *hb;
    mark.state = VDFS_HB_REPLAYING;
    mark.replayer_slot = fs->slot;
    mark.replayer_hb_gen = fs->hb_gen;
    mark.stamp_ns = vdfs_now_ns();
    mark.hdr.gen++;
    vdfs_heartbeat_encode(&mark, next);
    int rc = vdfs_dev_compare_and_write(fs->dev, mark.hdr.addr, VDFS_SECTOR_SIZE, raw, next, NULL);
    if (rc)
        return rc;
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
    rc = locks_drop_slot(fs, slot, hb->hb_gen);
    if (rc)
        return rc;
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

int heartbeat_recover(struct vdfs *fs, uint32_t slot)
{
    if (slot >= fs->sb.max_hosts || slot == fs->slot)
        return -EINVAL;
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    int rc = heartbeat_read_slot(fs, slot, raw, &hb);
    if (rc)
        return rc;
    if (hb.state == VDFS_HB_FREE)
        return 0;
    /* Judge again on this very image: the CAW below is against it, so a
     * renewal since then makes it fail instead of breaking a live host. */
    if (!slot_is_dead(fs, slot, &hb, watch_update(fs, slot, &hb, vdfs_monotonic_ms())))
        return -EAGAIN;
    return recover_slot(fs, slot, raw, &hb);
}

/* Until the slot is ours, recovery writes are bounded by a provisional
 * lease too: a mount that stalls must not replay over a newer state. */
static void arm_provisional_lease(struct vdfs *fs)
{
    uint64_t now = vdfs_monotonic_ms();
    atomic_store(&fs->hb_renewed_ms, now);
    vdfs_dev_set_write_deadline(fs->dev, now + fs->lease_ms);
}

/* Mount-time scan: a slot held LIVE by this host's UUID refuses the mount;
 * a LIVE slot whose process is gone from this machine (no OFD liveness
 * lock: kill -9 releases it, SIGSTOP does not) is recovered at once. */
static int scan_slots(struct vdfs *fs, bool recover)
{
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    for (uint32_t slot = 0; slot < fs->sb.max_hosts; slot++) {
        int rc = heartbeat_read_slot(fs, slot, raw, &hb);
        if (rc == -EIO)
            continue; /* a corrupt slot is nobody's; fsck.vdfs repairs it */
        if (rc)
            return rc;
        watch_update(fs, slot, &hb, vdfs_monotonic_ms());
        if (hb.state != VDFS_HB_LIVE || slot == fs->slot)
            continue;
        rc = vdfs_dev_probe_lock(fs->dev, vdfs_liveness_lock_offset(slot), 1);
        if (rc < 0)
            return rc;
        bool held = rc == 1;
        bool ours = memcmp(hb.host_uuid, fs->host_uuid, VDFS_UUID_SIZE) == 0;
        /* This host's previous process: unmounted a moment ago and still
         * writing back (umount returns before a FUSE daemon is done), or
         * just killed (the kernel drops its locks when the last reference
         * to its open file goes, which an exiting process's io_uring
         * requests can hold for a moment after it is reaped).  A mount
         * that is really still there is refused at once. */
        if (held && ours) {
            if (vdfs_host_is_departing(fs->dev, hb.pid))
                vdfs_log(VDFS_LOG_INFO, "waiting for this host's previous mount (pid %u, slot %u) to finish unmounting",
                         hb.pid, slot);
            /* Once the slot is claimed (the second scan) its heartbeat is
             * not renewed yet: no more waiting than the lease allows. */
            unsigned patience = recover ? VDFS_DEPARTING_WAIT_MS : fs->lease_ms / 2;
            rc = vdfs_wait_departing_host(fs->dev, slot, hb.pid, patience);
            if (rc == -EBUSY || rc == -ETIMEDOUT) {
                char uuid[37];
                vdfs_uuid_format(hb.host_uuid, uuid);
                const char *how = rc == -EBUSY ? "already mounted" : "still held, while mounting or unmounting,";
                vdfs_log(VDFS_LOG_ERR,
                         "datastore is %s by host %s (pid %u, slot %u) with the same host UUID %s; "
                         "each mount of one datastore needs its own host UUID",
                         how, hb.hostname, hb.pid, slot, uuid);
                return -EBUSY;
            }
            if (rc)
                return rc;
            /* Released: it freed its slot on the way out, or it was killed
             * and left the slot LIVE, to be recovered below.  The wait may
             * have outlasted the provisional lease; what follows is decided
             * on what is read from here on. */
            if (recover)
                arm_provisional_lease(fs);
            rc = heartbeat_read_slot(fs, slot, raw, &hb);
            if (rc == -EIO)
                continue;
            if (rc)
                return rc;
            if (hb.state != VDFS_HB_LIVE)
                continue;
            held = false;
        }
        if (held || !recover)
            continue;
        rc = recover_slot(fs, slot, raw, &hb);
        if (rc && rc != -EAGAIN)
            return rc;
    }
    return 0;
}

static int claim_slot(struct vdfs *fs)
{
    uint8_t raw[VDFS_SECTOR_SIZE], next[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    for (uint32_t slot = 0; slot < fs->sb.max_hosts; slot++) {
        /* Hold the liveness lock before the slot is LIVE, so no one can
         * mistake a host in the middle of claiming for a dead one. */
        int rc = vdfs_dev_try_lock(fs->dev, vdfs_liveness_lock_offset(slot), 1, false);
        if (rc)
            continue;
        rc = heartbeat_read_slot(fs, slot, raw, &hb);
        if (rc || hb.state != VDFS_HB_FREE) {
            vdfs_dev_unlock(fs->dev, vdfs_liveness_lock_offset(slot), 1);
            continue;
        }
        uint64_t started = vdfs_monotonic_ms();
        fill_live(fs, &hb, slot);
        vdfs_heartbeat_encode(&hb, next);
        rc = vdfs_dev_compare_and_write(fs->dev, hb.hdr.addr, VDFS_SECTOR_SIZE, raw, next, NULL);
        if (rc == 0) {
            fs->slot = slot;
            fs->hb_gen = hb.hb_gen;
            fs->liveness_locked = true;
            memcpy(fs->hb_raw, next, VDFS_SECTOR_SIZE);
            atomic_store(&fs->hb_renewed_ms, started);
            vdfs_dev_set_write_deadline(fs->dev, started + fs->lease_ms);
            vdfs_dev_set_holder_tag(fs->dev, slot);
            return 0;
        }
        vdfs_dev_unlock(fs->dev, vdfs_liveness_lock_offset(slot), 1);
        if (rc != -EAGAIN)
            return rc;
    }
    vdfs_log(VDFS_LOG_ERR,
             "all %u heartbeat slots of the datastore are taken by live hosts; unmount one (vdfsctl hosts lists them)",
             fs->sb.max_hosts);
    return -EUSERS;
}

/* One renewal: compare-and-write against the image we wrote last, so a
 * slot someone recovered while we stalled is never overwritten.  Without a
 * device flush when the device is opened O_DIRECT: other hosts only need
 * to read the new counter, and a flush waits for whatever else the storage
 * holds dirty (seconds on a busy image file), which would eat the lease for
 * nothing.  A renewal lost with the storage's cache reads as a changed
 * counter all the same; ours then no longer matches, and the next renewal
 * fences this host.  Through a page cache (no O_DIRECT) only the flush
 * puts the counter where another machine can read it. */
static int renew(struct vdfs *fs)
{
    struct vdfs_heartbeat hb;
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    pthread_mutex_lock(&fs->hb_lock);
    int rc = vdfs_heartbeat_decode(fs->hb_raw, vdfs_heartbeat_addr(&fs->sb, fs->slot), &hb);
    if (rc == 0) {
        fill_live(fs, &hb, fs->slot);
        vdfs_heartbeat_encode(&hb, buf);
        rc = vdfs_dev_compare_and_write_flags(fs->dev, hb.hdr.addr, VDFS_SECTOR_SIZE, fs->hb_raw, buf, NULL,
                                              vdfs_dev_is_direct(fs->dev) ? VDFS_CAW_NO_FLUSH : 0);
        if (rc == 0)
            memcpy(fs->hb_raw, buf, VDFS_SECTOR_SIZE);
    }
    pthread_mutex_unlock(&fs->hb_lock);
    vdfs_aligned_free(buf);
    return rc;
}

/* Reads every slot so that silences are measured from when they began.
 * Without the OFD lock: a process stopped inside a read under a shared
 * lock of the whole area would hold up every host's renewal (a
 * compare-and-write on its own slot) past its lease.  A slot caught in the
 * middle of a write fails its checksum and is simply looked at next time. */
static void watch_all(struct vdfs *fs)
{
    size_t len = (size_t)fs->sb.max_hosts * VDFS_SECTOR_SIZE;
    uint8_t *buf = vdfs_aligned_alloc(len < VDFS_META_SIZE ? VDFS_META_SIZE : len);
    if (!buf)
        return;
    if (vdfs_dev_read_any(fs->dev, buf, len, vdfs_heartbeat_addr(&fs->sb, 0)) == 0) {
        uint64_t now = vdfs_monotonic_ms();
        for (uint32_t slot = 0; slot < fs->sb.max_hosts; slot++) {
            struct vdfs_heartbeat hb;
            uint64_t addr = vdfs_heartbeat_addr(&fs->sb, slot);
            if (vdfs_heartbeat_decode(buf + (size_t)slot * VDFS_SECTOR_SIZE, addr, &hb) == 0)
                watch_update(fs, slot, &hb, now);
        }
    }
    vdfs_aligned_free(buf);
}

/* How often the other slots are read.  A silence is timed from when this
 * host first saw the last counter, up to one watch period after it was
 * written: a quarter interval bounds that lag, so a stopped host is dead
 * here at most timeout + interval/4 after it stopped. */
static uint32_t watch_period_ms(const struct vdfs *fs)
{
    return fs->hb_interval_ms / 4 > 10 ? fs->hb_interval_ms / 4 : 10;
}

static void *heartbeat_main(void *arg)
{
    struct vdfs *fs = arg;
    uint64_t lease_until = vdfs_monotonic_ms() + fs->lease_ms;
    uint64_t next_watch = 0;
    while (!atomic_load(&fs->hb_stopping)) {
        /* Short naps so that unmount does not wait a whole interval;
         * between renewals the other slots are watched. */
        uint64_t renew_at = vdfs_monotonic_ms() + fs->hb_interval_ms;
        for (uint64_t now = vdfs_monotonic_ms(); now < renew_at && !atomic_load(&fs->hb_stopping);
             now = vdfs_monotonic_ms()) {
            if (now >= next_watch) {
                watch_all(fs);
                next_watch = now + watch_period_ms(fs);
                continue;
            }
            uint64_t until = next_watch < renew_at ? next_watch : renew_at;
            vdfs_sleep_ms(until - now < 20 ? (uint32_t)(until - now) : 20);
        }
        if (atomic_load(&fs->hb_stopping) || volume_is_fenced(fs))
            break;
        uint64_t started = vdfs_monotonic_ms();
        if (started > lease_until) {
            volume_fence(fs, "the heartbeat could not be renewed within the lease", true);
            break;
        }
        int rc = renew(fs);
        uint64_t took = vdfs_monotonic_ms() - started;
        if (rc) {
            char why[128];
            snprintf(why, sizeof(why), "%s (%s after %llu ms)",
                     rc == -EAGAIN ? "another host took over this host's heartbeat slot"
                                   : "the heartbeat could not be written",
                     strerror(-rc), (unsigned long long)took);
            volume_fence(fs, why, true);
            break;
        }
        /* A slow storage path eats the lease long before it fences:
         * say so while there is still time to look. */
        if (took > fs->lease_ms / 4)
            vdfs_log(VDFS_LOG_WARN, "heartbeat renewal took %llu ms (lease %u ms)", (unsigned long long)took,
                     fs->lease_ms);
        /* The lease runs from before the write: an observer saw the new
         * counter no earlier than that. */
        lease_until = started + fs->lease_ms;
        atomic_store(&fs->hb_renewed_ms, started);
        vdfs_dev_set_write_deadline(fs->dev, lease_until);
    }
    return NULL;
}

int heartbeat_mount(struct vdfs *fs)
{
    vdfs_dev_set_lock_patience(fs->dev, fs->hb_timeout_ms);
    vdfs_dev_set_wait_hook(fs->dev, window_holders_dead, fs);
    arm_provisional_lease(fs);
    int rc = scan_slots(fs, true);
    if (rc == 0)
        rc = claim_slot(fs);
    if (rc)
        return rc;
    /* A twin that claimed concurrently with the same UUID: the later slot yields. */
    rc = scan_slots(fs, false);
    if (rc) {
        heartbeat_release(fs);
        return rc;
    }
    atomic_store(&fs->hb_stopping, false);
    if (pthread_create(&fs->heartbeat_thread, NULL, heartbeat_main, fs) != 0) {
        heartbeat_release(fs);
        return -EAGAIN;
    }
    fs->heartbeat_running = true;
    return 0;
}

void heartbeat_stop(struct vdfs *fs)
{
    atomic_store(&fs->hb_stopping, true);
    if (fs->heartbeat_running)
        pthread_join(fs->heartbeat_thread, NULL);
    fs->heartbeat_running = false;
}

int heartbeat_release(struct vdfs *fs)
{
    int rc = 0;
    /* From the CAW that frees the slot on, a held tag of this slot would
     * read as a recovered (dead) host's. */
    vdfs_dev_set_holder_tag(fs->dev, VDFS_DEV_TAG_ANON);
    if (!vdfs_dev_is_fenced(fs->dev)) {
        struct vdfs_heartbeat hb;
        uint8_t next[VDFS_SECTOR_SIZE];
        pthread_mutex_lock(&fs->hb_lock);
        rc = vdfs_heartbeat_decode(fs->hb_raw, vdfs_heartbeat_addr(&fs->sb, fs->slot), &hb);
        if (rc == 0) {
            struct vdfs_heartbeat freed = {0};
            freed.hdr = hb.hdr;
            freed.hdr.gen++;
            freed.state = VDFS_HB_FREE;
            freed.slot = fs->slot;
            freed.hb_gen = hb.hb_gen + 1;
            freed.replayer_slot = VDFS_NO_SLOT;
            vdfs_heartbeat_encode(&freed, next);
            rc = vdfs_dev_compare_and_write(fs->dev, hb.hdr.addr, VDFS_SECTOR_SIZE, fs->hb_raw, next, NULL);
        }
        pthread_mutex_unlock(&fs->hb_lock);
    }
    if (fs->liveness_locked)
        vdfs_dev_unlock(fs->dev, vdfs_liveness_lock_offset(fs->slot), 1);
    fs->liveness_locked = false;
    return rc;
}
