/* On-disk locks, taken and released by compare-and-write.
 *
 * The volume metadata lock (descriptor 0's lock record) guards every
 * metadata object.  A host keeps it after its operation until another
 * host asks for it by setting its bit in `waiters`; it then commits,
 * checkpoints (in-place copies durable, journal empty) and releases, and
 * bumps `version` if it changed anything, so the next holder reads a
 * complete in-place state and knows whether its caches are stale.
 *
 * File locks (descriptor ino's record) say who has a file open: one
 * EXCLUSIVE writer, READ_SHARED readers, or MULTI_WRITER sharers.
 * A lock held by a host whose slot was freed or whose generation moved on
 * is stale and is broken by the next acquirer; a holder that went silent
 * for the timeout is recovered first (heartbeat_recover).  See
 * docs/clustering.md. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "journal.h"

#define POLL_MS 3
/* A holder keeps the metadata lock at least a slice once asked for it,
 * so that the hand-over (commit, checkpoint, flush, and the next holder's
 * cache reload) is paid for by many operations; with more hosts waiting
 * each slice is shorter, so a full round stays within ROUND_MS. */
#define MAX_HOLD_MS 250
#define MIN_HOLD_MS 20
#define ROUND_MS 1000

static void entry_refresh(struct vdfs *fs, uint64_t index, const struct vdfs_lock_rec *written);

static uint64_t meta_lock_index(const struct vdfs *fs)
{
    return vdfs_fd_lock_index(&fs->sb, 0);
}

static int lock_read(struct vdfs *fs, uint64_t index, uint8_t *raw, struct vdfs_lock_rec *l)
{
    uint64_t addr = vdfs_lock_addr(&fs->sb, index);
    int rc = vdfs_dev_read_atomic(fs->dev, raw, VDFS_SECTOR_SIZE, addr);
    if (rc)
        return rc;
    rc = vdfs_lock_decode(raw, addr, l);
    if (rc) {
        vdfs_log(VDFS_LOG_ERR, "lock record %llu at 0x%llx is corrupt; fsck.vdfs repairs it",
                 (unsigned long long)index, (unsigned long long)addr);
        return -EIO;
    }
    return 0;
}

/* Writes `l` over the image `raw` it was read as (its new image goes to
 * `written` if given): -EAGAIN if it changed.  No device flush: a lock
 * record only needs to be seen by other hosts, never to survive a crash,
 * since a crash leaves every holder dead and its locks stale by
 * generation; the metadata a holder changed is made durable before it
 * releases the metadata lock. */
static int lock_write_as(struct vdfs *fs, const uint8_t *raw, struct vdfs_lock_rec *l,
                         uint8_t written[VDFS_SECTOR_SIZE])
{
    uint8_t next[VDFS_SECTOR_SIZE];
    l->hdr.kind = VDFS_KIND_LOCK;
    l->hdr.gen++;
    vdfs_lock_encode(l, written ? written : next);
    return vdfs_dev_compare_and_write_flags(fs->dev, l->hdr.addr, VDFS_SECTOR_SIZE, raw, written ? written : next,
                                            NULL, VDFS_CAW_NO_FLUSH);
}

static int lock_write(struct vdfs *fs, const uint8_t *raw, struct vdfs_lock_rec *l)
{
    return lock_write_as(fs, raw, l, NULL);
}

static void set_owner(struct vdfs *fs, struct vdfs_lock_rec *l, uint32_t mode, uint64_t object)
{
    l->mode = mode;
    l->owner_slot = fs->slot;
    l->owner_hb_gen = fs->hb_gen;
    l->object = object;
    l->acquired_ns = vdfs_now_ns();
    l->waiters &= ~(UINT64_C(1) << fs->slot);
}

static void set_free(struct vdfs_lock_rec *l)
{
    l->mode = VDFS_LOCK_FREE;
    l->owner_slot = VDFS_NO_SLOT;
    l->owner_hb_gen = 0;
    l->nholders = 0;
    memset(l->holders, 0, sizeof(l->holders));
}

int caches_drop_and_reload(struct vdfs *fs)
{
    if (fs->cache.ndirty) {
        volume_fence(fs, "uncommitted metadata while another host changed the volume", false);
        return -EIO;
    }
    size_t limit = fs->cache.limit;
    meta_cache_destroy(&fs->cache);
    int rc = meta_cache_init(&fs->cache, limit);
    dir_cache_destroy(fs);
    alloc_destroy(fs);
    if (rc == 0)
        rc = super_refresh(fs);
    if (rc == 0)
        rc = alloc_load(fs);
    return rc;
}

static int took_meta_lock(struct vdfs *fs, uint64_t version, bool broken)
{
    bool stale = broken || !fs->mlock_version_known || version != fs->mlock_version;
    /* File-lock records may have changed while others held the lock. */
    lock_cache_forget(&fs->file_locks);
    fs->lock_publish_due_ms = 0;
    atomic_store(&fs->mlock_held, true);
    fs->mlock_version = version;
    fs->mlock_version_known = true;
    fs->mlock_dirty = false;
    fs->mlock_acquired_ms = vdfs_monotonic_ms();
    int rc = stale ? caches_drop_and_reload(fs) : 0;
    if (rc) {
        /* Corrupt bitmaps: nothing is loaded.  Hand the lock back (there
         * is nothing to write) and load again on the next hold. */
        cluster_release(fs);
        fs->mlock_version_known = false;
    }
    return rc;
}

static void log_wait(struct vdfs *fs, const struct vdfs_lock_rec *l)
{
    vdfs_log(VDFS_LOG_ERR, "gave up waiting for the volume metadata lock held by slot %u; is that host stuck?",
             l->owner_slot);
    (void)fs;
}

/* Waiter bits of hosts that are gone (their slot FREE) would make every
 * holder hand the lock over after each slice for nothing: the taker
 * clears them. */
static void prune_waiters(struct vdfs *fs, struct vdfs_lock_rec *l)
{
    uint64_t others = l->waiters & ~(UINT64_C(1) << fs->slot);
    for (uint32_t s = 0; others && s < 64; s++) {
        if (!(others >> s & 1))
            continue;
        uint8_t raw[VDFS_SECTOR_SIZE];
        struct vdfs_heartbeat hb;
        if (s >= fs->sb.max_hosts ||
            (heartbeat_read_slot(fs, s, raw, &hb) == 0 && hb.state == VDFS_HB_FREE))
            l->waiters &= ~(UINT64_C(1) << s);
    }
}

/* Acquires the metadata lock; caller holds fs->lock. */
static int meta_lock_acquire(struct vdfs *fs)
{
    const uint64_t mybit = UINT64_C(1) << fs->slot;
    uint64_t limit_ms = 2ull * fs->hb_timeout_ms > 30000 ? 2ull * fs->hb_timeout_ms : 30000;
    uint64_t give_up = vdfs_monotonic_ms() + limit_ms;
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_lock_rec l;
    for (;;) {
        if (volume_is_fenced(fs))
            return -EIO;
        int rc = lock_read(fs, meta_lock_index(fs), raw, &l);
        if (rc)
            return rc;
        if (l.mode == VDFS_LOCK_FREE) {
            /* Someone asked first: let it in before taking the lock again. */
            if ((l.waiters & ~mybit) && !(l.waiters & mybit)) {
                l.waiters |= mybit;
                lock_write(fs, raw, &l);
                vdfs_sleep_ms(POLL_MS);
                continue;
            }
            uint64_t version = l.version;
            set_owner(fs, &l, VDFS_LOCK_EXCLUSIVE, (uint64_t)VDFS_RT_FD << 56);
            prune_waiters(fs, &l);
            rc = lock_write(fs, raw, &l);
            if (rc == -EAGAIN)
                continue;
            if (rc)
                return rc;
            return took_meta_lock(fs, version, false);
        }
        if (l.owner_slot == fs->slot && l.owner_hb_gen == fs->hb_gen)
            return took_meta_lock(fs, l.version, true);
        int verdict = heartbeat_judge(fs, l.owner_slot, l.owner_hb_gen);
        if (verdict < 0)
            return verdict;
        if (verdict == SLOT_GONE) {
            /* Its holder's journal was replayed when its slot was freed:
             * break it, and treat every cache as stale. */
            uint64_t version = l.version + 1;
            set_owner(fs, &l, VDFS_LOCK_EXCLUSIVE, (uint64_t)VDFS_RT_FD << 56);
            l.version = version;
            prune_waiters(fs, &l);
            rc = lock_write(fs, raw, &l);
            if (rc == -EAGAIN)
                continue;
            if (rc)
                return rc;
            vdfs_log(VDFS_LOG_INFO, "broke the stale volume metadata lock of slot %u", l.owner_slot);
            return took_meta_lock(fs, version, true);
        }
        if (verdict == SLOT_DEAD) {
            rc = heartbeat_recover(fs, l.owner_slot);
            if (rc && rc != -EAGAIN)
                return rc;
            continue;
        }
        if (!(l.waiters & mybit)) {
            l.waiters |= mybit;
            rc = lock_write(fs, raw, &l);
            if (rc && rc != -EAGAIN)
                return rc;
            continue;
        }
        if (vdfs_monotonic_ms() > give_up) {
            log_wait(fs, &l);
            l.waiters &= ~mybit;
            lock_write(fs, raw, &l); /* best effort: do not leave a stale request */
            return -EIO;
        }
        vdfs_sleep_ms(POLL_MS);
    }
}

int cluster_hold(struct vdfs *fs)
{
    if (!fs->cluster)
        return 0;
    if (volume_is_fenced(fs))
        return -EIO;
    if (atomic_load(&fs->mlock_held))
        return 0;
    return meta_lock_acquire(fs);
}

bool cluster_release_wanted(struct vdfs *fs)
{
    if (!fs->cluster || !atomic_load(&fs->mlock_held) || volume_is_fenced(fs))
        return false;
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_lock_rec l;
    if (lock_read(fs, meta_lock_index(fs), raw, &l) != 0)
        return false;
    uint64_t others = l.waiters & ~(UINT64_C(1) << fs->slot);
    if (!others)
        return false;
    uint64_t hold = ROUND_MS / (1 + (uint64_t)__builtin_popcountll(others));
    hold = hold > MAX_HOLD_MS ? MAX_HOLD_MS : hold < MIN_HOLD_MS ? MIN_HOLD_MS : hold;
    return vdfs_monotonic_ms() - fs->mlock_acquired_ms >= hold;
}

static int release_held(struct vdfs *fs);

int cluster_release(struct vdfs *fs)
{
    if (!fs->cluster || !atomic_load(&fs->mlock_held))
        return 0;
    if (volume_is_fenced(fs))
        return -EIO;
    /* MULTI_WRITER sharers elsewhere may truncate or punch the file once
     * they hold the lock: no I/O of this host may still be on its way to
     * blocks that could be reused by then. */
    fs->mlock_handover = true;
    multiwriter_io_wait(fs);
    int rc = release_held(fs);
    fs->mlock_handover = false;
    return rc;
}

static int release_held(struct vdfs *fs)
{
    /* Everything this host changed goes in place and becomes durable, and
     * the journal is emptied: nothing of it may be replayed over what the
     * next holder writes. */
    int rc = journal_commit(fs);
    if (rc == 0)
        rc = journal_checkpoint(fs);
    if (rc == 0)
        rc = filelocks_publish(fs, 0);
    if (rc) {
        volume_fence(fs, "could not write back metadata before releasing the volume lock", false);
        return -EIO;
    }
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_lock_rec l;
    for (;;) {
        rc = lock_read(fs, meta_lock_index(fs), raw, &l);
        if (rc)
            return rc;
        if (l.mode != VDFS_LOCK_EXCLUSIVE || l.owner_slot != fs->slot || l.owner_hb_gen != fs->hb_gen) {
            volume_fence(fs, "the volume metadata lock was taken from this host", true);
            return -EIO;
        }
        uint64_t version = fs->mlock_dirty ? l.version + 1 : l.version;
        set_free(&l);
        l.version = version;
        rc = lock_write(fs, raw, &l);
        if (rc == -EAGAIN)
            continue; /* a waiter set its bit meanwhile */
        if (rc)
            return rc;
        atomic_store(&fs->mlock_held, false);
        fs->mlock_version = version;
        fs->mlock_dirty = false;
        lock_cache_forget(&fs->file_locks);
        fs->lock_publish_due_ms = 0;
        return 0;
    }
}

int cluster_abandon(struct vdfs *fs)
{
    /* Closes not yet written back, best effort: what stays is stale by
     * generation once the slot is freed. */
    if (atomic_load(&fs->mlock_held))
        filelocks_publish(fs, 0);
    lock_cache_forget(&fs->file_locks);
    fs->lock_publish_due_ms = 0;
    if (vdfs_dev_is_fenced(fs->dev))
        return -EIO;
    uint64_t next = 0;
    int n = vdfs_journal_replay(fs->dev, &fs->sb, fs->slot, true, &next);
    int rc = n < 0 ? n : vdfs_dev_flush(fs->dev);
    if (rc == 0)
        rc = vdfs_journal_reset(fs->dev, &fs->sb, fs->slot, next + 1, fs->host_uuid);
    if (rc || !atomic_load(&fs->mlock_held))
        return rc;
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_lock_rec l;
    for (;;) {
        rc = lock_read(fs, meta_lock_index(fs), raw, &l);
        if (rc)
            return rc;
        if (l.mode != VDFS_LOCK_EXCLUSIVE || l.owner_slot != fs->slot || l.owner_hb_gen != fs->hb_gen)
            return -EIO;
        /* What reached the device in place is unknown: every cache elsewhere is stale. */
        uint64_t version = l.version + 1;
        set_free(&l);
        l.version = version;
        rc = lock_write(fs, raw, &l);
        if (rc != -EAGAIN)
            break;
    }
    if (rc == 0)
        atomic_store(&fs->mlock_held, false);
    return rc;
}

/* Clears what a dead host (slot, hb_gen) owned or shared, after its
 * journal was replayed: a record it owned becomes FREE (version bumped,
 * so caches of the metadata lock's users drop), and it leaves shared
 * holder lists.  Records that change meanwhile are left to the lazy
 * breaking by generation. */
static bool drop_dead_holder(struct vdfs_lock_rec *l, uint32_t slot, uint64_t hb_gen)
{
    if (l->mode == VDFS_LOCK_FREE)
        return false;
    if (l->mode == VDFS_LOCK_EXCLUSIVE) {
        if (l->owner_slot != slot || l->owner_hb_gen != hb_gen)
            return false;
        set_free(l);
        l->version++;
        return true;
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < l->nholders && i < VDFS_LOCK_HOLDERS; i++)
        if (!(l->holders[i].slot == slot && l->holders[i].hb_gen == (uint32_t)hb_gen))
            l->holders[kept++] = l->holders[i];
    if (kept == l->nholders)
        return false;
    for (uint32_t i = kept; i < VDFS_LOCK_HOLDERS; i++)
        l->holders[i].slot = l->holders[i].hb_gen = 0;
    l->nholders = kept;
    if (kept == 0)
        set_free(l);
    return true;
}

int locks_drop_slot(struct vdfs *fs, uint32_t slot, uint64_t hb_gen)
{
    const size_t chunk = 2048; /* records per read: 1 MiB */
    uint8_t *buf = vdfs_aligned_alloc(chunk * VDFS_SECTOR_SIZE);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    for (uint64_t first = 0; first < fs->sb.lock_count && rc == 0; first += chunk) {
        size_t n = (size_t)(fs->sb.lock_count - first < chunk ? fs->sb.lock_count - first : chunk);
        uint64_t addr = vdfs_lock_addr(&fs->sb, first);
        if (!vdfs_dev_is_blockdev(fs->dev)) {
            off_t data = lseek(vdfs_dev_fd(fs->dev), (off_t)addr, SEEK_DATA);
            if ((data < 0 && errno == ENXIO) || (data >= 0 && (uint64_t)data >= addr + n * VDFS_SECTOR_SIZE))
                continue;
        }
        /* The last chunk need not be whole blocks of an O_DIRECT device. */
        rc = vdfs_dev_read_any(fs->dev, buf, n * VDFS_SECTOR_SIZE, addr);
        for (size_t i = 0; i < n && rc == 0; i++) {
            uint8_t *raw = buf + i * VDFS_SECTOR_SIZE;
            struct vdfs_lock_rec l;
            if (vdfs_lock_decode(raw, addr + i * VDFS_SECTOR_SIZE, &l) != 0 || !drop_dead_holder(&l, slot, hb_gen))
                continue;
            int wrc = lock_write(fs, raw, &l);
            if (wrc == 0)
                entry_refresh(fs, first + i, &l);
            if (wrc && wrc != -EAGAIN)
                rc = wrc;
        }
    }
    vdfs_aligned_free(buf);
    return rc;
}

/* ---- file locks ---- */

static bool holder_is_me(const struct vdfs *fs, uint32_t slot, uint64_t gen)
{
    return slot == fs->slot && (uint32_t)gen == (uint32_t)fs->hb_gen;
}

/* Removes holders whose host is gone, recovering silent ones first.
 * Returns 0, or -EBUSY when a live host other than us still holds it. */
static int prune_holders(struct vdfs *fs, struct vdfs_lock_rec *l, bool *changed)
{
    *changed = false;
    if (l->mode == VDFS_LOCK_FREE)
        return 0;
    if (l->mode == VDFS_LOCK_EXCLUSIVE) {
        if (holder_is_me(fs, l->owner_slot, l->owner_hb_gen))
            return 0;
        int verdict = heartbeat_judge(fs, l->owner_slot, l->owner_hb_gen);
        if (verdict == SLOT_DEAD && heartbeat_recover(fs, l->owner_slot) == 0)
            verdict = SLOT_GONE;
        if (verdict < 0)
            return verdict;
        if (verdict != SLOT_GONE)
            return -EBUSY;
        set_free(l);
        *changed = true;
        return 0;
    }
    uint32_t kept = 0;
    bool others = false;
    for (uint32_t i = 0; i < l->nholders && i < VDFS_LOCK_HOLDERS; i++) {
        uint32_t slot = l->holders[i].slot, gen = l->holders[i].hb_gen;
        int verdict = SLOT_ALIVE;
        if (!holder_is_me(fs, slot, gen)) {
            uint8_t raw[VDFS_SECTOR_SIZE];
            struct vdfs_heartbeat hb;
            /* Holder records keep the low 32 bits of the generation. */
            if (slot >= fs->sb.max_hosts)
                verdict = SLOT_GONE;
            else if (heartbeat_read_slot(fs, slot, raw, &hb) == 0)
                verdict = heartbeat_judge(fs, slot, (uint32_t)hb.hb_gen == gen ? hb.hb_gen : hb.hb_gen + 1);
            if (verdict == SLOT_DEAD && heartbeat_recover(fs, slot) == 0)
                verdict = SLOT_GONE;
            if (verdict < 0)
                return verdict;
        }
        if (verdict == SLOT_GONE) {
            *changed = true;
            continue;
        }
        if (!holder_is_me(fs, slot, gen))
            others = true;
        l->holders[kept++] = l->holders[i];
    }
    for (uint32_t i = kept; i < VDFS_LOCK_HOLDERS; i++)
        l->holders[i].slot = l->holders[i].hb_gen = 0;
    l->nholders = kept;
    if (kept == 0) {
        set_free(l);
        *changed = true;
    }
    (void)others;
    return 0;
}

static bool has_other_holders(const struct vdfs *fs, const struct vdfs_lock_rec *l)
{
    if (l->mode == VDFS_LOCK_EXCLUSIVE)
        return !holder_is_me(fs, l->owner_slot, l->owner_hb_gen);
    for (uint32_t i = 0; i < l->nholders; i++)
        if (!holder_is_me(fs, l->holders[i].slot, l->holders[i].hb_gen))
            return true;
    return false;
}

static bool add_holder(struct vdfs *fs, struct vdfs_lock_rec *l)
{
    for (uint32_t i = 0; i < l->nholders; i++)
        if (holder_is_me(fs, l->holders[i].slot, l->holders[i].hb_gen))
            return true;
    if (l->nholders >= VDFS_LOCK_HOLDERS)
        return false;
    l->holders[l->nholders].slot = fs->slot;
    l->holders[l->nholders].hb_gen = (uint32_t)fs->hb_gen;
    l->nholders++;
    return true;
}

static void remove_holder(struct vdfs *fs, struct vdfs_lock_rec *l)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < l->nholders; i++)
        if (!holder_is_me(fs, l->holders[i].slot, l->holders[i].hb_gen))
            l->holders[kept++] = l->holders[i];
    for (uint32_t i = kept; i < VDFS_LOCK_HOLDERS; i++)
        l->holders[i].slot = l->holders[i].hb_gen = 0;
    l->nholders = kept;
}

static uint32_t wanted_mode(const struct vdfs *fs, int flags)
{
    if ((flags & O_ACCMODE) == O_RDONLY)
        return VDFS_LOCK_READ_SHARED;
    if ((flags & VDFS_OPEN_MULTIWRITER) || fs->multiwriter)
        return VDFS_LOCK_MULTI_WRITER;
    return VDFS_LOCK_EXCLUSIVE;
}

/* Whether holding `have` already covers an open that needs `want`. */
static bool covers(uint32_t have, uint32_t want)
{
    if (have == want)
        return true;
    if (want == VDFS_LOCK_READ_SHARED)
        return have == VDFS_LOCK_EXCLUSIVE || have == VDFS_LOCK_MULTI_WRITER;
    return false;
}

/* This host's mode in `l`, 0 when it holds no part of it. */
static uint32_t my_mode(const struct vdfs *fs, const struct vdfs_lock_rec *l)
{
    if (l->mode == VDFS_LOCK_EXCLUSIVE)
        return holder_is_me(fs, l->owner_slot, l->owner_hb_gen) ? VDFS_LOCK_EXCLUSIVE : 0;
    if (l->mode == VDFS_LOCK_FREE)
        return 0;
    for (uint32_t i = 0; i < l->nholders && i < VDFS_LOCK_HOLDERS; i++)
        if (holder_is_me(fs, l->holders[i].slot, l->holders[i].hb_gen))
            return l->mode;
    return 0;
}

/* Same mode, same holders: writing one over the other changes nothing. */
static bool same_holding(const struct vdfs_lock_rec *a, const struct vdfs_lock_rec *b)
{
    if (a->mode != b->mode)
        return false;
    if (a->mode == VDFS_LOCK_FREE)
        return true;
    if (a->mode == VDFS_LOCK_EXCLUSIVE)
        return a->owner_slot == b->owner_slot && a->owner_hb_gen == b->owner_hb_gen;
    return a->nholders == b->nholders && a->nholders <= VDFS_LOCK_HOLDERS &&
           memcmp(a->holders, b->holders, sizeof(a->holders[0]) * a->nholders) == 0;
}

/* Puts this host's holding `mode` (0: none) into a record read from the
 * device, which may have changed under a cached copy only by the recovery
 * of a dead host. */
static void apply_mine(struct vdfs *fs, struct vdfs_lock_rec *l, uint32_t mode, uint64_t object)
{
    if (l->mode == VDFS_LOCK_EXCLUSIVE && holder_is_me(fs, l->owner_slot, l->owner_hb_gen)) {
        set_free(l);
    } else if (l->mode != VDFS_LOCK_FREE) {
        remove_holder(fs, l);
        if (l->nholders == 0)
            set_free(l);
    }
    if (mode == 0)
        return;
    if (mode == VDFS_LOCK_EXCLUSIVE || l->mode != mode) {
        set_free(l);
        set_owner(fs, l, mode, object);
    }
    if (mode != VDFS_LOCK_EXCLUSIVE)
        add_holder(fs, l);
}

/* Marks `e` dirty or clean after its `cur` changed. */
static void entry_settle(struct vdfs *fs, struct lock_entry *e)
{
    if (same_holding(&e->cur, &e->disk)) {
        e->cur = e->disk;
        if (e->dirty_ms) {
            e->dirty_ms = 0;
            fs->file_locks.ndirty--;
        }
        return;
    }
    if (e->dirty_ms)
        return;
    uint64_t now = vdfs_monotonic_ms();
    e->dirty_ms = now ? now : 1;
    fs->file_locks.ndirty++;
    if (!fs->lock_publish_due_ms) {
        fs->lock_publish_due_ms = e->dirty_ms + LOCK_PUBLISH_MS;
        pthread_cond_signal(&fs->stop_cond); /* the committer writes it back */
    }
}

/* Writes a dirty entry to the device by compare-and-write. */
static int entry_write_back(struct vdfs *fs, struct lock_entry *e)
{
    for (int attempt = 0; e->dirty_ms && attempt < 1000; attempt++) {
        /* Not volume_is_fenced: a host stopped by a failed write still
         * gives back its locks while its lease holds (cluster_abandon). */
        if (vdfs_dev_is_fenced(fs->dev))
            return -EIO;
        struct vdfs_lock_rec next = e->cur;
        uint8_t image[VDFS_SECTOR_SIZE];
        next.hdr = e->disk.hdr;
        int rc = e->raw_known ? lock_write_as(fs, e->raw, &next, image) : -EAGAIN;
        if (rc == 0) {
            memcpy(e->raw, image, sizeof(image));
            e->disk = e->cur = next;
            e->dirty_ms = 0;
            fs->file_locks.ndirty--;
            return 0;
        }
        if (rc != -EAGAIN)
            return rc;
        /* Not read yet, or a dead host's recovery changed it: put our
         * holding into what is there now. */
        uint32_t mine = my_mode(fs, &e->cur);
        uint64_t object = e->cur.object;
        rc = lock_read(fs, e->index, e->raw, &e->disk);
        if (rc)
            return rc;
        e->raw_known = true;
        e->cur = e->disk;
        apply_mine(fs, &e->cur, mine, object);
        entry_settle(fs, e);
    }
    return e->dirty_ms ? -EBUSY : 0;
}

/* A place for the entry of `index`: the one there, or a new or reused
 * one with index UINT64_MAX (matches nothing) and clean. */
static int entry_place(struct vdfs *fs, uint64_t index, struct lock_entry **out)
{
    if (!fs->file_locks.slots && lock_cache_init(&fs->file_locks) != 0)
        return -ENOMEM;
    struct lock_entry **place = lock_cache_place(&fs->file_locks, index);
    struct lock_entry *e = *place;
    if (e && e->index == index) {
        *out = e;
        return 0;
    }
    if (e) {
        int rc = entry_write_back(fs, e);
        if (rc)
            return rc;
    } else if (!(e = *place = malloc(sizeof(*e)))) {
        return -ENOMEM;
    } else {
        fs->file_locks.nfilled++;
    }
    e->index = UINT64_MAX;
    e->dirty_ms = 0;
    *out = e;
    return 0;
}

/* The cached entry of ino's file lock, read from the device on a miss. */
static int entry_get(struct vdfs *fs, uint32_t ino, struct lock_entry **out)
{
    uint64_t index = vdfs_fd_lock_index(&fs->sb, ino);
    struct lock_entry *e;
    int rc = entry_place(fs, index, &e);
    if (rc || e->index == index) {
        *out = e;
        return rc;
    }
    rc = lock_read(fs, index, e->raw, &e->disk);
    if (rc)
        return rc;
    e->index = index;
    e->raw_known = true;
    e->cur = e->disk;
    *out = e;
    return 0;
}

void filelock_fresh(struct vdfs *fs, uint32_t ino)
{
    if (!fs->cluster)
        return;
    uint64_t index = vdfs_fd_lock_index(&fs->sb, ino);
    struct lock_entry *e;
    if (entry_place(fs, index, &e) != 0 || e->index == index)
        return; /* known already, or the next open reads it */
    memset(&e->disk, 0, sizeof(e->disk));
    e->disk.hdr.kind = VDFS_KIND_LOCK;
    e->disk.hdr.addr = vdfs_lock_addr(&fs->sb, index);
    e->disk.mode = VDFS_LOCK_FREE;
    e->disk.owner_slot = VDFS_NO_SLOT;
    e->cur = e->disk;
    e->raw_known = false;
    e->index = index;
}

/* A record that locks_drop_slot rewrote: the cached entry follows. */
static void entry_refresh(struct vdfs *fs, uint64_t index, const struct vdfs_lock_rec *written)
{
    struct lock_entry *e = lock_cache_find(&fs->file_locks, index);
    if (!e)
        return;
    uint32_t mine = my_mode(fs, &e->cur);
    uint64_t object = e->cur.object;
    vdfs_lock_encode(written, e->raw);
    e->raw_known = true;
    e->disk = *written;
    e->cur = *written;
    apply_mine(fs, &e->cur, mine, object);
    entry_settle(fs, e);
}

int filelocks_publish(struct vdfs *fs, uint64_t older_than_ms)
{
    struct lock_cache *c = &fs->file_locks;
    uint64_t now = vdfs_monotonic_ms(), next_due = 0;
    int rc = 0;
    for (size_t i = 0; i < c->nslots && c->ndirty; i++) {
        struct lock_entry *e = c->slots[i];
        if (!e || !e->dirty_ms)
            continue;
        if (now - e->dirty_ms < older_than_ms) {
            uint64_t due = e->dirty_ms + older_than_ms;
            next_due = next_due && next_due < due ? next_due : due;
            continue;
        }
        int erc = entry_write_back(fs, e);
        if (erc && rc == 0)
            rc = erc;
    }
    if (rc)
        next_due = now + LOCK_PUBLISH_MS; /* try again */
    fs->lock_publish_due_ms = c->ndirty ? next_due : 0;
    return rc;
}

int filelock_open(struct vdfs *fs, uint32_t ino, int flags, uint32_t *held_mode)
{
    if (!fs->cluster)
        return 0;
    uint32_t want = wanted_mode(fs, flags);
    if (*held_mode && covers(*held_mode, want))
        return 0;
    if (volume_is_fenced(fs))
        return -EIO;
    struct lock_entry *e;
    int rc = entry_get(fs, ino, &e);
    if (rc)
        return rc;
    /* An upgrade from READ_SHARED keeps the reader's share until it wins. */
    struct vdfs_lock_rec l = e->cur;
    bool changed;
    rc = prune_holders(fs, &l, &changed);
    if (rc)
        return rc;
    if (l.mode != VDFS_LOCK_FREE && has_other_holders(fs, &l) && (want == VDFS_LOCK_EXCLUSIVE || l.mode != want))
        return -EBUSY;
    uint64_t object = ((uint64_t)VDFS_RT_FD << 56) | ino;
    if (want == VDFS_LOCK_EXCLUSIVE) {
        set_free(&l);
        set_owner(fs, &l, VDFS_LOCK_EXCLUSIVE, object);
    } else {
        if (l.mode == VDFS_LOCK_EXCLUSIVE) /* ours: the upgrade's reverse never happens */
            set_free(&l);
        if (l.mode != want) {
            set_free(&l);
            set_owner(fs, &l, want, object);
        }
        if (!add_holder(fs, &l))
            return -EBUSY;
    }
    e->cur = l;
    entry_settle(fs, e);
    *held_mode = want;
    return 0;
}

int filelock_close(struct vdfs *fs, uint32_t ino)
{
    if (!fs->cluster)
        return 0;
    if (vdfs_dev_is_fenced(fs->dev))
        return -EIO;
    struct lock_entry *e;
    int rc = entry_get(fs, ino, &e);
    if (rc)
        return rc;
    if (my_mode(fs, &e->cur) == 0)
        return 0;
    apply_mine(fs, &e->cur, 0, 0);
    entry_settle(fs, e);
    return 0;
}

/* The mode of a file's lock when a live host other than this one holds
 * it, after the holders of gone hosts are dropped; else VDFS_LOCK_FREE. */
static uint32_t mode_held_elsewhere(struct vdfs *fs, uint32_t ino)
{
    if (!fs->cluster)
        return VDFS_LOCK_FREE;
    struct lock_entry *e;
    if (entry_get(fs, ino, &e) != 0)
        return VDFS_LOCK_FREE;
    struct vdfs_lock_rec l = e->cur;
    bool changed;
    if (prune_holders(fs, &l, &changed) == -EBUSY)
        return l.mode;
    return l.mode != VDFS_LOCK_FREE && has_other_holders(fs, &l) ? l.mode : VDFS_LOCK_FREE;
}

bool filelock_held_elsewhere(struct vdfs *fs, uint32_t ino)
{
    return mode_held_elsewhere(fs, ino) != VDFS_LOCK_FREE;
}

bool filelock_written_elsewhere(struct vdfs *fs, uint32_t ino)
{
    uint32_t mode = mode_held_elsewhere(fs, ino);
    return mode == VDFS_LOCK_EXCLUSIVE || mode == VDFS_LOCK_MULTI_WRITER;
}

/* ---- naming a holder, for "file is locked by host X" messages ---- */

static void describe_slot(struct vdfs *fs, uint32_t slot, char *host, size_t len)
{
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    char uuid[37];
    if (slot < fs->sb.max_hosts &&
        heartbeat_read_slot(fs, slot, raw, &hb) == 0) {
        vdfs_uuid_format(hb.host_uuid, uuid);
        snprintf(host, len, "%s (%s, slot %u, pid %u)", hb.hostname, uuid, slot, hb.pid);
    } else {
        snprintf(host, len, "slot %u", slot);
    }
}

static bool slot_generation_matches(struct vdfs *fs, uint32_t slot, uint64_t gen)
{
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_heartbeat hb;
    if (slot >= fs->sb.max_hosts ||
        heartbeat_read_slot(fs, slot, raw, &hb) != 0)
        return false;
    return hb.state != VDFS_HB_FREE && (uint32_t)hb.hb_gen == (uint32_t)gen;
}

int vdfs_lock_holder(struct vdfs *fs, uint32_t ino, char *host, size_t len)
{
    if (ino == 0 || ino >= fs->sb.region[VDFS_RT_FD].count)
        return -EINVAL;
    if (host && len)
        host[0] = 0;
    uint8_t raw[VDFS_SECTOR_SIZE];
    struct vdfs_lock_rec l;
    int rc = lock_read(fs, vdfs_fd_lock_index(&fs->sb, ino), raw, &l);
    if (rc)
        return rc;
    if (l.mode == VDFS_LOCK_FREE)
        return 0;
    /* Holders whose slot was recovered since (FREE, or a newer
     * generation) hold nothing any more. */
    uint32_t slot = VDFS_NO_SLOT;
    if (l.mode == VDFS_LOCK_EXCLUSIVE) {
        if (!(fs->slot != VDFS_NO_SLOT && holder_is_me(fs, l.owner_slot, l.owner_hb_gen)) &&
            slot_generation_matches(fs, l.owner_slot, l.owner_hb_gen))
            slot = l.owner_slot;
    } else {
        for (uint32_t i = 0; i < l.nholders && slot == VDFS_NO_SLOT; i++) {
            if (fs->slot != VDFS_NO_SLOT && holder_is_me(fs, l.holders[i].slot, l.holders[i].hb_gen))
                continue;
            if (slot_generation_matches(fs, l.holders[i].slot, l.holders[i].hb_gen))
                slot = l.holders[i].slot;
        }
    }
    if (slot == VDFS_NO_SLOT)
        return 0;
    if (host && len)
        describe_slot(fs, slot, host, len);
    return 1;
}
