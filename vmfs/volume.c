/* Mount, unmount, sync and whole-volume figures. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "journal.h"

#define CACHE_OBJECTS 32768 /* 128 MiB of metadata at most */

/* Commits every commit_ms; while this host holds the volume metadata
 * lock, writes back file-lock records LOCK_PUBLISH_MS after they changed,
 * and watches for other hosts asking for the lock and hands it over. */
static void *committer_main(void *arg)
{
    struct vdfs *fs = arg;
    uint64_t last_commit = vdfs_monotonic_ms(), next_watch = 0;
    pthread_mutex_lock(&fs->lock);
    while (!fs->stopping) {
        /* Alone on the datastore, a host that mounts later is seen within
         * one heartbeat interval; its wait for the lock is bounded by
         * the slower poll. */
        uint64_t now = vdfs_monotonic_ms();
        if (now >= next_watch)
            next_watch = now + (!atomic_load(&fs->mlock_held) ? 200 : heartbeat_others_present(fs) ? 5 : 50);
        uint64_t wake = next_watch;
        if (fs->lock_publish_due_ms && fs->lock_publish_due_ms < wake)
            wake = fs->lock_publish_due_ms;
        long nap_ms = wake > now ? (long)(wake - now) : 1;
        struct timespec until; /* stop_cond runs on CLOCK_MONOTONIC: a wall-clock step must not stall hand-overs */
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += nap_ms * 1000000L;
        while (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&fs->stop_cond, &fs->lock, &until);
        if (fs->stopping)
            break;
        now = vdfs_monotonic_ms();
        if (fs->lock_publish_due_ms && now >= fs->lock_publish_due_ms && atomic_load(&fs->mlock_held) &&
            !volume_is_fenced(fs))
            filelocks_publish(fs, LOCK_PUBLISH_MS);
        if (now < next_watch)
            continue;
        if (atomic_load(&fs->mlock_held)) {
            /* The lock record is read without fs->lock, so that operations
             * are not held up by the poll. */
            pthread_mutex_unlock(&fs->lock);
            bool wanted = cluster_release_wanted(fs);
            pthread_mutex_lock(&fs->lock);
            if (fs->stopping)
                break;
            if (wanted) {
                cluster_release(fs);
                last_commit = vdfs_monotonic_ms();
                continue;
            }
        }
        now = vdfs_monotonic_ms();
        if (now - last_commit >= fs->commit_ms) {
            if (!volume_is_fenced(fs))
                journal_commit(fs);
            last_commit = now;
        }
    }
    pthread_mutex_unlock(&fs->lock);
    return NULL;
}

static void fs_free(struct vdfs *fs)
{
    dir_cache_destroy(fs);
    alloc_destroy(fs);
    meta_cache_destroy(&fs->cache);
    lock_cache_destroy(&fs->file_locks);
    journal_close(fs);
    while (fs->open_files) {
        struct open_file *o = fs->open_files;
        fs->open_files = o->next;
        open_file_free(o);
    }
    vdfs_aligned_free(fs->zero_block);
    if (fs->dev)
        vdfs_dev_close(fs->dev);
    pthread_mutex_destroy(&fs->lock);
    pthread_mutex_destroy(&fs->hb_lock);
    pthread_cond_destroy(&fs->stop_cond);
    pthread_cond_destroy(&fs->io_idle);
    free(fs);
}

static int read_super(struct vdfs *fs)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    int rc = vdfs_dev_read(fs->dev, buf, VDFS_META_SIZE, VDFS_SUPER_OFFSET);
    if (rc == 0)
        rc = vdfs_super_decode(buf, VDFS_SUPER_OFFSET, &fs->sb);
    vdfs_aligned_free(buf);
    if (rc == -EOPNOTSUPP) {
        vdfs_log(VDFS_LOG_ERR, "the datastore uses features this version does not know; refusing to mount");
        return rc;
    }
    if (rc) {
        vdfs_log(VDFS_LOG_ERR, "no valid vdfs superblock (%s); run fsck.vdfs", vdfs_strerror(rc));
        return -EINVAL;
    }
    if (vdfs_dev_size(fs->dev) < fs->sb.total_bytes) {
        vdfs_log(VDFS_LOG_ERR, "device is %llu bytes but the datastore needs %llu: truncated",
                 (unsigned long long)vdfs_dev_size(fs->dev), (unsigned long long)fs->sb.total_bytes);
        return -EIO;
    }
    return 0;
}

/* Heartbeat timing: mount options, else the superblock.  The lease is
 * what this host allows itself without a successful renewal; the margin
 * to the timeout absorbs scheduling delays and clock-rate differences. */
static int cluster_timing(struct vdfs *fs, const struct vdfs_mount_opts *opts)
{
    fs->hb_interval_ms = opts->hb_interval_ms ? opts->hb_interval_ms : fs->sb.hb_interval_ms;
    fs->hb_timeout_ms = opts->hb_timeout_ms ? opts->hb_timeout_ms : fs->sb.hb_timeout_ms;
    if (fs->hb_interval_ms == 0)
        fs->hb_interval_ms = 250;
    if (fs->hb_timeout_ms == 0)
        fs->hb_timeout_ms = 3000;
    if (fs->hb_timeout_ms > VDFS_HB_TIMEOUT_MAX_MS) {
        vdfs_log(VDFS_LOG_ERR, "heartbeat timeout %u ms%s is more than the maximum, %u ms", fs->hb_timeout_ms,
                 opts->hb_timeout_ms ? "" : " (the datastore's)", VDFS_HB_TIMEOUT_MAX_MS);
        return -EINVAL;
    }
    uint32_t margin = fs->hb_timeout_ms >= 3000 ? 1000 : fs->hb_timeout_ms / 3;
    fs->lease_ms = fs->hb_timeout_ms - margin;
    if (fs->hb_interval_ms < 10 || fs->hb_interval_ms * 2 > fs->lease_ms) {
        vdfs_log(VDFS_LOG_ERR,
                 "heartbeat interval %u ms does not fit timeout %u ms: the interval must be at least 10 ms and at "
                 "most half of the lease (timeout minus %u ms margin)",
                 fs->hb_interval_ms, fs->hb_timeout_ms, margin);
        return -EINVAL;
    }
    return 0;
}

int vdfs_mount(const char *device, const struct vdfs_mount_opts *opts, struct vdfs **out)
{
    struct vdfs_mount_opts none = {0};
    if (!opts)
        opts = &none;
    struct vdfs *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    pthread_mutex_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->hb_lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&fs->stop_cond, &monotonic);
    pthread_condattr_destroy(&monotonic);
    pthread_cond_init(&fs->io_idle, NULL);
    fs->readonly = opts->readonly;
    fs->cluster = !(opts->readonly && opts->no_host);
    fs->multiwriter = opts->multiwriter;
    fs->commit_ms = opts->commit_ms ? opts->commit_ms : 5000;
    fs->slot = VDFS_NO_SLOT;
    unsigned flags = (fs->cluster ? 0 : VDFS_DEV_RDONLY) | (opts->no_direct ? 0 : VDFS_DEV_DIRECT);
    int rc = vdfs_dev_open(device, flags, &fs->dev);
    if (fs->readonly && fs->cluster && (rc == -EROFS || rc == -EACCES || rc == -EPERM)) {
        vdfs_log(VDFS_LOG_INFO,
                 "%s is write-protected (%s): reading it without joining the cluster; changes that hosts "
                 "make while it is mounted are not seen",
                 device, vdfs_strerror(rc));
        fs->cluster = false;
        rc = vdfs_dev_open(device, flags | VDFS_DEV_RDONLY, &fs->dev);
    }
    if (rc) {
        vdfs_log(VDFS_LOG_ERR, "cannot open %s: %s", device, vdfs_strerror(rc));
        fs->dev = NULL;
        fs_free(fs);
        return rc;
    }
    if ((rc = read_super(fs)))
        goto fail;
    if ((rc = cluster_timing(fs, opts)))
        goto fail;
    if (opts->host_uuid)
        rc = vdfs_uuid_parse(opts->host_uuid, fs->host_uuid);
    else
        rc = vdfs_host_uuid(fs->host_uuid, opts->own_host);
    if (rc) {
        vdfs_log(VDFS_LOG_ERR, "bad host UUID");
        goto fail;
    }
    if (opts->host_name)
        snprintf(fs->host_name, sizeof(fs->host_name), "%s", opts->host_name);
    else if (gethostname(fs->host_name, sizeof(fs->host_name) - 1) != 0)
        strcpy(fs->host_name, "unknown");
    if ((rc = meta_cache_init(&fs->cache, CACHE_OBJECTS)))
        goto fail;
    fs->zero_block = vdfs_aligned_alloc(fs->sb.block_size);
    if (!fs->zero_block) {
        rc = -ENOMEM;
        goto fail;
    }
    memset(fs->zero_block, 0, fs->sb.block_size);
    if (!fs->cluster) {
        /* A reader that is no cluster host: it reads what the hosts have
         * written in place and never takes a lock. */
        if ((rc = alloc_load(fs)))
            goto fail;
        *out = fs;
        return 0;
    }
    if ((rc = heartbeat_mount(fs)))
        goto fail;
    /* Our slot was free, so its journal should be empty; if an older
     * version left transactions in it, they are replayed under the
     * metadata lock (taking it loads the allocation bitmaps), and the
     * caches and the lock's version follow what replay changed. */
    pthread_mutex_lock(&fs->lock);
    rc = cluster_hold(fs);
    if (rc == 0)
        rc = journal_open(fs);
    if (rc == 0 && fs->mlock_dirty)
        rc = caches_drop_and_reload(fs);
    pthread_mutex_unlock(&fs->lock);
    if (rc)
        goto fail_slot;
    if (pthread_create(&fs->committer, NULL, committer_main, fs) == 0)
        fs->committer_running = true;
    *out = fs;
    return 0;
fail_slot:
    pthread_mutex_lock(&fs->lock);
    if (atomic_load(&fs->mlock_held))
        cluster_release(fs);
    pthread_mutex_unlock(&fs->lock);
    heartbeat_stop(fs);
    heartbeat_release(fs);
fail:
    fs_free(fs);
    return rc;
}

int vdfs_sync(struct vdfs *fs)
{
    pthread_mutex_lock(&fs->lock);
    int rc = cluster_hold(fs);
    if (rc == 0)
        rc = journal_commit(fs);
    if (rc == 0 && !fs->readonly)
        rc = vdfs_dev_flush(fs->dev);
    pthread_mutex_unlock(&fs->lock);
    return rc;
}

/* Gives up every file lock this host still holds (files left open). */
static void release_file_locks(struct vdfs *fs)
{
    for (struct open_file *o = fs->open_files; o; o = o->next)
        if (o->lock_mode)
            filelock_close(fs, o->ino);
}

int vdfs_unmount(struct vdfs *fs)
{
    if (!fs)
        return -EINVAL;
    pthread_mutex_lock(&fs->lock);
    fs->stopping = true;
    pthread_cond_broadcast(&fs->stop_cond);
    pthread_mutex_unlock(&fs->lock);
    if (fs->committer_running)
        pthread_join(fs->committer, NULL);
    int rc = 0;
    if (fs->cluster) {
        bool release_slot = true;
        pthread_mutex_lock(&fs->lock);
        if (!volume_is_fenced(fs)) {
            rc = cluster_hold(fs);
            if (rc == 0)
                release_file_locks(fs);
            if (rc == 0)
                rc = journal_commit(fs);
            if (rc == 0)
                rc = vdfs_dev_flush(fs->dev);
            /* Everything is in place and durable: leave an empty journal so
             * the next mount and fsck see a clean volume. */
            if (rc == 0)
                rc = vdfs_journal_reset(fs->dev, &fs->sb, fs->slot, fs->journal.seq, fs->host_uuid);
            fs->journal.head = 1;
            if (rc == 0)
                rc = cluster_release(fs);
            /* Not finished (no memory, a write or flush error): the lock may
             * still be held and the journal full, so freeing the slot as if
             * all were done would let the next holder skip the replay. */
            if (rc)
                volume_fence(fs, "could not write everything back at unmount", false);
        }
        if (volume_is_fenced(fs)) {
            /* A write failed: within the lease this host can still finish
             * its own journal and hand over.  After the lease others may
             * have replayed it and moved on: then it writes nothing, not
             * even its slot, which the next host recovers. */
            rc = -EIO;
            if (!vdfs_dev_is_fenced(fs->dev) && cluster_abandon(fs) == 0) {
                release_file_locks(fs);
            } else {
                release_slot = false;
                vdfs_log(VDFS_LOG_WARN, "unmounting a fenced host: nothing is written; its slot is recovered by the next host");
            }
        }
        pthread_mutex_unlock(&fs->lock);
        heartbeat_stop(fs);
        int hrc = release_slot ? heartbeat_release(fs) : 0;
        if (!release_slot && fs->liveness_locked)
            vdfs_dev_unlock(fs->dev, vdfs_liveness_lock_offset(fs->slot), 1);
        if (rc == 0)
            rc = hrc;
    }
    fs_free(fs);
    return rc;
}

uint32_t vdfs_root_ino(const struct vdfs *fs)
{
    return fs->sb.root_ino;
}

uint32_t vdfs_block_size(const struct vdfs *fs)
{
    return fs->sb.block_size;
}

unsigned vdfs_prepare_io_threads(struct vdfs *fs, unsigned threads)
{
    /* The heartbeat thread and the committer borrow rings too. */
    return vdfs_dev_prepare_rings(fs->dev, threads + 2);
}

bool vdfs_others_may_write(struct vdfs *fs)
{
    return !fs->cluster || heartbeat_others_present(fs);
}

int vdfs_statfs(struct vdfs *fs, struct vdfs_statfs *sf)
{
    pthread_mutex_lock(&fs->lock);
    int rc = cluster_hold(fs);
    if (rc) {
        pthread_mutex_unlock(&fs->lock);
        return rc;
    }
    sf->block_size = fs->sb.block_size;
    sf->total_blocks = fs->sb.region[VDFS_RT_FB].count;
    sf->free_blocks = fs->pools[VDFS_RT_FB].free + resources_pending_free(fs, VDFS_RT_FB);
    sf->subblock_size = fs->sb.subblock_size;
    sf->total_subblocks = fs->sb.region[VDFS_RT_SB].count;
    sf->free_subblocks = fs->pools[VDFS_RT_SB].free + resources_pending_free(fs, VDFS_RT_SB);
    sf->total_files = fs->sb.region[VDFS_RT_FD].count - 1;
    sf->free_files = fs->pools[VDFS_RT_FD].free;
    sf->name_max = VDFS_NAME_MAX;
    pthread_mutex_unlock(&fs->lock);
    return 0;
}

int vdfs_usage(struct vdfs *fs, struct vdfs_usage *u)
{
    memset(u, 0, sizeof(*u));
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    if (!fd)
        return -ENOMEM;
    expect_clear();
    pthread_mutex_lock(&fs->lock);
    int rc = cluster_hold(fs);
    if (rc) {
        pthread_mutex_unlock(&fs->lock);
        free(fd);
        return rc;
    }
    for (unsigned rt = 0; rt < VDFS_RT_COUNT; rt++) {
        u->total[rt] = fs->sb.region[rt].count;
        u->used[rt] = fs->sb.region[rt].count - fs->pools[rt].free;
    }
    for (unsigned rt = VDFS_RT_FB; rt <= VDFS_RT_SB; rt++) {
        uint64_t unit = fs->sb.region[rt].unit_size;
        u->capacity_bytes += fs->sb.region[rt].count * unit;
        u->free_bytes += (fs->pools[rt].free + resources_pending_free(fs, rt)) * unit;
    }
    for (uint64_t ino = 1; ino < fs->sb.region[VDFS_RT_FD].count; ino++) {
        if (!resource_is_allocated(fs, VDFS_RT_FD, ino))
            continue;
        if (fd_load(fs, (uint32_t)ino, fd) != 0)
            continue; /* a corrupt descriptor is fsck's business, not usage's */
        if (S_ISDIR(fd->mode)) {
            u->directories++;
        } else {
            u->files++;
            if (S_ISREG(fd->mode))
                u->provisioned_bytes += fd->size;
        }
        u->allocated_bytes += fd->alloc_bytes;
    }
    pthread_mutex_unlock(&fs->lock);
    free(fd);
    return 0;
}

int vdfs_get_info(struct vdfs *fs, struct vdfs_info *info)
{
    memset(info, 0, sizeof(*info));
    vdfs_uuid_format(fs->sb.uuid, info->uuid);
    snprintf(info->label, sizeof(info->label), "%s", fs->sb.label);
    info->version = fs->sb.version;
    info->total_bytes = fs->sb.total_bytes;
    info->grow_limit = vdfs_grow_limit(&fs->sb);
    info->backup_offset = fs->sb.backup_offset;
    info->block_size = fs->sb.block_size;
    info->subblock_size = fs->sb.subblock_size;
    info->max_hosts = fs->sb.max_hosts;
    info->journal_blocks = fs->sb.journal_blocks;
    info->my_slot = fs->slot;
    return 0;
}
