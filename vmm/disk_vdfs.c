/* Datastore-backed disks: synchronous libvdfs calls on the disk's I/O
 * thread.  Discard punches holes, so freed space shows in `vdfsctl usage`.
 *
 * The VMM joins each datastore as a cluster host of its own.  Its host UUID
 * is new for every VMM process (VDFS_HOST_UUID overrides it), so a VM and a
 * vdfs-fuse mount of the same datastore on one machine are two hosts, and a
 * second start of a VM meets the disk's file lock, whose holder it names. */
#include "disk_vdfs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vdfs.h"

/* One mount per datastore image, shared by every disk that lives on it. */
struct datastore {
    char image[4096];
    struct vdfs *fs;
    bool readonly;
    unsigned users;
    struct datastore *next;
};

static pthread_mutex_t datastores_lock = PTHREAD_MUTEX_INITIALIZER;
static struct datastore *datastores;

struct vdfs_disk {
    struct blk_backend be;
    struct datastore *ds;
    uint32_t ino;
    int open_flags;
    uint64_t size;
};

int disk_vdfs_parse(const char *spec, char *image, size_t image_len, char *path, size_t path_len)
{
    if (strncmp(spec, "vdfs:", 5) != 0)
        return -1;
    const char *rest = spec + 5;
    const char *sep = strstr(rest, ":/");
    if (!sep || sep == rest)
        return -1;
    size_t ilen = (size_t)(sep - rest);
    if (ilen >= image_len || strlen(sep + 1) >= path_len)
        return -1;
    memcpy(image, rest, ilen);
    image[ilen] = '\0';
    strcpy(path, sep + 1);
    return 0;
}

static struct datastore *datastore_get(const char *image, bool readonly, char *err, size_t errlen)
{
    pthread_mutex_lock(&datastores_lock);
    struct datastore *ds = datastores;
    while (ds && strcmp(ds->image, image) != 0)
        ds = ds->next;
    if (ds && ds->readonly && !readonly) {
        snprintf(err, errlen, "datastore %s is already joined read-only", image);
        ds = NULL;
        goto out;
    }
    if (!ds) {
        ds = calloc(1, sizeof(*ds));
        if (!ds) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        snprintf(ds->image, sizeof(ds->image), "%s", image);
        struct vdfs_mount_opts opts = { .readonly = readonly, .own_host = true };
        int rc = vdfs_mount(image, &opts, &ds->fs);
        if (rc < 0) {
            snprintf(err, errlen, "cannot join datastore %s: %s", image, vdfs_strerror(rc));
            free(ds);
            ds = NULL;
            goto out;
        }
        ds->readonly = readonly;
        ds->next = datastores;
        datastores = ds;
    }
    ds->users++;
out:
    pthread_mutex_unlock(&datastores_lock);
    return ds;
}

static void datastore_put(struct datastore *ds)
{
    pthread_mutex_lock(&datastores_lock);
    if (--ds->users == 0) {
        struct datastore **pp = &datastores;
        while (*pp != ds)
            pp = &(*pp)->next;
        *pp = ds->next;
        vdfs_unmount(ds->fs);
        free(ds);
    }
    pthread_mutex_unlock(&datastores_lock);
}

static struct vdfs_disk *disk_of(struct blk_backend *be)
{
    return (struct vdfs_disk *)((char *)be - offsetof(struct vdfs_disk, be));
}

static int finish(struct blk_io *io, int result)
{
    io->complete(io, result);
    return 0;
}

static int disk_read(struct blk_backend *be, struct blk_io *io)
{
    struct vdfs_disk *d = disk_of(be);
    uint64_t off = io->offset;
    for (int i = 0; i < io->iovcnt; i++) {
        size_t done = 0;
        while (done < io->iov[i].iov_len) {
            ssize_t n = vdfs_pread(d->ds->fs, d->ino, (char *)io->iov[i].iov_base + done,
                                   io->iov[i].iov_len - done, off);
            if (n < 0)
                return finish(io, (int)n);
            if (n == 0) {
                /* Past the end of the file (it shrank): reads as zeroes. */
                memset((char *)io->iov[i].iov_base + done, 0, io->iov[i].iov_len - done);
                n = (ssize_t)(io->iov[i].iov_len - done);
            }
            done += (size_t)n;
            off += (uint64_t)n;
        }
    }
    return finish(io, 0);
}

static int disk_write(struct blk_backend *be, struct blk_io *io)
{
    struct vdfs_disk *d = disk_of(be);
    uint64_t off = io->offset;
    for (int i = 0; i < io->iovcnt; i++) {
        size_t done = 0;
        while (done < io->iov[i].iov_len) {
            ssize_t n = vdfs_pwrite(d->ds->fs, d->ino, (const char *)io->iov[i].iov_base + done,
                                    io->iov[i].iov_len - done, off);
            if (n <= 0)
                return finish(io, n < 0 ? (int)n : -EIO);
            done += (size_t)n;
            off += (uint64_t)n;
        }
    }
    return finish(io, 0);
}

static int disk_flush(struct blk_backend *be, struct blk_io *io)
{
    struct vdfs_disk *d = disk_of(be);
    return finish(io, vdfs_fsync(d->ds->fs, d->ino, true));
}

static int disk_discard(struct blk_backend *be, struct blk_io *io)
{
    struct vdfs_disk *d = disk_of(be);
    return finish(io, vdfs_fallocate(d->ds->fs, d->ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                     io->offset, io->len));
}

static int disk_write_zeroes(struct blk_backend *be, struct blk_io *io)
{
    struct vdfs_disk *d = disk_of(be);
    int mode = io->unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                         : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    int rc = vdfs_fallocate(d->ds->fs, d->ino, mode, io->offset, io->len);
    if (rc == -EOPNOTSUPP && !io->unmap) /* a hole reads as zeroes too */
        rc = vdfs_fallocate(d->ds->fs, d->ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            io->offset, io->len);
    return finish(io, rc);
}

static uint64_t disk_capacity(struct blk_backend *be)
{
    return disk_of(be)->size & ~(uint64_t)(VIRTIO_BLK_SECTOR_SIZE - 1);
}

static void disk_close(struct blk_backend *be)
{
    struct vdfs_disk *d = disk_of(be);
    vdfs_release(d->ds->fs, d->ino, d->open_flags);
    datastore_put(d->ds);
    free(d);
}

static const struct blk_backend_ops vdfs_disk_ops = {
    .read = disk_read,
    .write = disk_write,
    .flush = disk_flush,
    .discard = disk_discard,
    .write_zeroes = disk_write_zeroes,
    .capacity = disk_capacity,
    .close = disk_close,
};

struct blk_backend *disk_vdfs_open(const char *spec, bool readonly, char *err, size_t errlen)
{
    char image[4096], path[4096];
    if (disk_vdfs_parse(spec, image, sizeof(image), path, sizeof(path)) < 0) {
        snprintf(err, errlen, "disk %s: expected vdfs:IMAGE:/path/in/datastore", spec);
        return NULL;
    }
    struct vdfs_disk *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    char why[4096 + 256];
    d->ds = datastore_get(image, readonly, why, sizeof(why));
    if (!d->ds) {
        snprintf(err, errlen, "disk %s: %s", spec, why);
        free(d);
        return NULL;
    }
    struct vdfs_stat st;
    int rc = vdfs_resolve(d->ds->fs, path, true, &st);
    if (rc == 0 && !S_ISREG(st.mode))
        rc = -EISDIR;
    if (rc == 0) {
        d->open_flags = readonly ? O_RDONLY : O_RDWR;
        rc = vdfs_open(d->ds->fs, st.ino, d->open_flags);
    }
    if (rc < 0) {
        char holder[512];
        if ((rc == -EBUSY || rc == -EAGAIN) && vdfs_lock_holder(d->ds->fs, st.ino, holder, sizeof(holder)) == 1)
            snprintf(err, errlen, "disk %s: %s is locked by host %s", spec, path, holder);
        else if (rc == -EBUSY || rc == -EAGAIN)
            snprintf(err, errlen, "disk %s: %s is locked by another host", spec, path);
        else
            snprintf(err, errlen, "disk %s: %s: %s", spec, path, vdfs_strerror(rc));
        datastore_put(d->ds);
        free(d);
        return NULL;
    }
    d->ino = st.ino;
    d->size = st.size;
    d->be.ops = &vdfs_disk_ops;
    d->be.readonly = readonly;
    return &d->be;
}
