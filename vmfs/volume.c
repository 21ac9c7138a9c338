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

static void *committer_main(void *arg)
{
    struct vdfs *fs = arg;
    uint64_t last_commit = vdfs_monotonic_ms(), last_beat = last_commit;
    pthread_mutex_lock(&fs->lock);
    while (!fs->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 200 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&fs->stop_cond, &fs->lock, &until);
        if (fs->stopping)
            break;
        uint64_t now = vdfs_monotonic_ms();
        if (!fs->fenced && now - last_beat >= fs->sb.hb_interval_ms) {
            heartbeat_renew(fs);
            last_beat = now;
        }
        if (now - last_commit >= fs->commit_ms) {
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
    journal_close(fs);
    while (fs->open_files) {
        struct open_file *o = fs->open_files;
        fs->open_files = o->next;
        free(o);
    }
    vdfs_aligned_free(fs->zero_block);
    if (fs->dev)
        vdfs_dev_close(fs->dev);
    pthread_mutex_destroy(&fs->lock);
    pthread_cond_destroy(&fs->stop_cond);
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

int vdfs_mount(const char *device, const struct vdfs_mount_opts *opts, struct vdfs **out)
{
    struct vdfs_mount_opts none = {0};
    if (!opts)
        opts = &none;
    struct vdfs *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    pthread_mutex_init(&fs->lock, NULL);
    pthread_cond_init(&fs->stop_cond, NULL);
    fs->readonly = opts->readonly;
    fs->commit_ms = opts->commit_ms ? opts->commit_ms : 5000;
    fs->slot = VDFS_NO_SLOT;
    unsigned flags = (opts->readonly ? VDFS_DEV_RDONLY : 0) | (opts->no_direct ? 0 : VDFS_DEV_DIRECT);
    int rc = vdfs_dev_open(device, flags, &fs->dev);
    if (rc) {
        vdfs_log(VDFS_LOG_ERR, "cannot open %s: %s", device, vdfs_strerror(rc));
        fs->dev = NULL;
        fs_free(fs);
        return rc;
    }
    if ((rc = read_super(fs)))
        goto fail;
    rc = opts->host_uuid ? vdfs_uuid_parse(opts->host_uuid, fs->host_uuid) : vdfs_host_uuid(fs->host_uuid);
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
    if ((rc = heartbeat_recover_and_check(fs)))
        goto fail;
    if (!fs->readonly) {
        if ((rc = heartbeat_claim(fs)))
            goto fail;
        if ((rc = journal_open(fs))) {
            heartbeat_release(fs);
            goto fail;
        }
    }
    if ((rc = alloc_load(fs))) {
        if (!fs->readonly)
            heartbeat_release(fs);
        goto fail;
    }
    if (!fs->readonly) {
        if (pthread_create(&fs->committer, NULL, committer_main, fs) == 0)
            fs->committer_running = true;
    }
    *out = fs;
    return 0;
fail:
    fs_free(fs);
    return rc;
}

int vdfs_sync(struct vdfs *fs)
{
    pthread_mutex_lock(&fs->lock);
    int rc = journal_commit(fs);
    if (rc == 0 && !fs->readonly)
        rc = vdfs_dev_flush(fs->dev);
    pthread_mutex_unlock(&fs->lock);
    return rc;
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
    if (!fs->readonly) {
        pthread_mutex_lock(&fs->lock);
        rc = journal_commit(fs);
        if (rc == 0)
            rc = vdfs_dev_flush(fs->dev);
        /* Everything is in place and durable: leave an empty journal so
         * the next mount and fsck see a clean volume. */
        if (rc == 0)
            rc = vdfs_journal_reset(fs->dev, &fs->sb, fs->slot, fs->journal.seq, fs->host_uuid);
        pthread_mutex_unlock(&fs->lock);
        int hrc = heartbeat_release(fs);
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

int vdfs_statfs(struct vdfs *fs, struct vdfs_statfs *sf)
{
    pthread_mutex_lock(&fs->lock);
    sf->block_size = fs->sb.block_size;
    sf->total_blocks = fs->sb.region[VDFS_RT_FB].count;
    sf->free_blocks = fs->pools[VDFS_RT_FB].free + resources_pending_free(fs, VDFS_RT_FB);
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
    pthread_mutex_lock(&fs->lock);
    for (unsigned rt = 0; rt < VDFS_RT_COUNT; rt++) {
        u->total[rt] = fs->sb.region[rt].count;
        u->used[rt] = fs->sb.region[rt].count - fs->pools[rt].free;
    }
    u->capacity_bytes = fs->sb.region[VDFS_RT_FB].count * fs->sb.block_size;
    u->free_bytes = (fs->pools[VDFS_RT_FB].free + resources_pending_free(fs, VDFS_RT_FB)) * fs->sb.block_size;
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
    info->block_size = fs->sb.block_size;
    info->subblock_size = fs->sb.subblock_size;
    info->max_hosts = fs->sb.max_hosts;
    info->journal_blocks = fs->sb.journal_blocks;
    info->my_slot = fs->slot;
    return 0;
}
