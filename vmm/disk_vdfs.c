/* Datastore-backed disks.  A read, or a write over blocks already written,
 * that libvdfs maps to one aligned run of the datastore's device goes
 * straight to the device through the disk's own io_uring, as a plain-file
 * disk's would (vdfs_direct_map pins the file's map until it completes), so
 * a guest's whole queue can be in flight.  Everything else (writes that
 * allocate, holes, flush, discard, and any moment libvdfs would have to
 * wait) is a libvdfs call made by one of a few worker threads per disk.
 * Both kinds complete through one eventfd that the disk's I/O thread
 * watches (the asynchronous side of struct blk_backend_ops).
 * Discard punches holes, so freed space shows in `vdfsctl usage`.
 *
 * The VMM joins each datastore as a cluster host of its own.  Its host UUID
 * is new for every VMM process (VDFS_HOST_UUID overrides it), so a VM and a
 * vdfs-fuse mount of the same datastore on one machine are two hosts, and a
 * second start of a VM meets the disk's file lock, whose holder it names. */
#include "disk_vdfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datastore.h"
#include "vdfs.h"
#include "vmm_seccomp.h"

/* Requests of one disk served at once.  The guest's queue is deeper, but
 * a few I/Os in flight already keep this machine's disk busy; each worker
 * costs a thread and a device ring. */
#define DISK_WORKERS 8
/* The device never has more operations in flight than its queue size. */
#define DISK_JOBS VIRTIO_BLK_QUEUE_SIZE

static _Atomic uint64_t direct_requests, library_requests;

enum disk_op { DISK_READ, DISK_WRITE, DISK_FLUSH, DISK_DISCARD, DISK_WRITE_ZEROES };

struct disk_done {
    struct blk_io *io;
    int result;
};

struct vdfs_disk {
    struct blk_backend be;
    struct datastore *ds;
    uint32_t ino;
    int open_flags;
    uint64_t size;

    pthread_mutex_t lock;
    pthread_cond_t work;
    struct blk_io *queued[DISK_JOBS]; /* accepted, not yet taken: a ring */
    unsigned queued_first, nqueued;
    unsigned running;
    struct disk_done done[DISK_JOBS]; /* finished, not yet reaped */
    unsigned ndone;
    bool stopping;
    int done_fd;
    pthread_t workers[DISK_WORKERS];
    unsigned nworkers;

    /* The direct path, used by the disk's I/O thread only. */
    bool direct;
    struct io_uring ring; /* signals done_fd */
    int dev_fd;
    uint32_t dev_align;
    bool direct_unsubmitted;
};

static struct vdfs_disk *disk_of(struct blk_backend *be)
{
    return (struct vdfs_disk *)((char *)be - offsetof(struct vdfs_disk, be));
}

/* The next run of iovecs that are one contiguous host range (guest RAM
 * is one mapping, so a request's segments often are, and a merged run of
 * requests more so): one libvdfs call for all of it. */
static size_t contiguous_run(const struct iovec *iov, int iovcnt, int *i)
{
    size_t len = iov[*i].iov_len;
    while (*i + 1 < iovcnt && (char *)iov[*i].iov_base + iov[*i].iov_len == (char *)iov[*i + 1].iov_base) {
        (*i)++;
        len += iov[*i].iov_len;
    }
    return len;
}

static int do_read(struct vdfs_disk *d, struct blk_io *io)
{
    uint64_t off = io->offset;
    for (int i = 0; i < io->iovcnt; i++) {
        char *base = io->iov[i].iov_base;
        size_t len = contiguous_run(io->iov, io->iovcnt, &i), done = 0;
        while (done < len) {
            ssize_t n = vdfs_pread(d->ds->fs, d->ino, base + done, len - done, off);
            if (n < 0)
                return (int)n;
            if (n == 0) {
                /* Past the end of the file (it shrank): reads as zeroes. */
                memset(base + done, 0, len - done);
                n = (ssize_t)(len - done);
            }
            done += (size_t)n;
            off += (uint64_t)n;
        }
    }
    return 0;
}

static int do_write(struct vdfs_disk *d, struct blk_io *io)
{
    uint64_t off = io->offset;
    for (int i = 0; i < io->iovcnt; i++) {
        const char *base = io->iov[i].iov_base;
        size_t len = contiguous_run(io->iov, io->iovcnt, &i), done = 0;
        while (done < len) {
            ssize_t n = vdfs_pwrite(d->ds->fs, d->ino, base + done, len - done, off);
            if (n <= 0)
                return n < 0 ? (int)n : -EIO;
            done += (size_t)n;
            off += (uint64_t)n;
        }
    }
    return 0;
}

static int do_write_zeroes(struct vdfs_disk *d, struct blk_io *io)
{
    int mode = io->unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                         : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    int rc = vdfs_fallocate(d->ds->fs, d->ino, mode, io->offset, io->len);
    if (rc == -EOPNOTSUPP && !io->unmap) /* a hole reads as zeroes too */
        rc = vdfs_fallocate(d->ds->fs, d->ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            io->offset, io->len);
    return rc;
}

static int run_job(struct vdfs_disk *d, struct blk_io *io)
{
    switch ((enum disk_op)io->backend_state) {
    case DISK_READ:
        return do_read(d, io);
    case DISK_WRITE:
        return do_write(d, io);
    case DISK_FLUSH:
        return vdfs_fsync(d->ds->fs, d->ino, true);
    case DISK_DISCARD:
        return vdfs_fallocate(d->ds->fs, d->ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, io->offset,
                              io->len);
    case DISK_WRITE_ZEROES:
        return do_write_zeroes(d, io);
    }
    return -EINVAL;
}

/* A worker takes its seccomp allow-list with its first job, not at its
 * start: jobs come only once the VM runs, after setup, while a worker
 * waiting for the end of setup could not be stopped if setup failed. */
static void *worker(void *arg)
{
    struct vdfs_disk *d = arg;
    bool confined = false, unconfinable = false;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (d->nqueued == 0 && !d->stopping)
            pthread_cond_wait(&d->work, &d->lock);
        if (d->nqueued == 0)
            break;
        if (!confined) {
            pthread_mutex_unlock(&d->lock);
            if (seccomp_thread_confine(SECCOMP_PROFILE_IO) < 0) {
                fprintf(stderr, "vdfs-vm: datastore disk worker: cannot install its seccomp filter; "
                                "its requests fail\n");
                unconfinable = true;
            }
            confined = true;
            pthread_mutex_lock(&d->lock);
            continue;
        }
        struct blk_io *io = d->queued[d->queued_first];
        d->queued_first = (d->queued_first + 1) % DISK_JOBS;
        d->nqueued--;
        d->running++;
        pthread_mutex_unlock(&d->lock);
        int result = unconfinable ? -EIO : run_job(d, io);
        pthread_mutex_lock(&d->lock);
        d->running--;
        d->done[d->ndone++] = (struct disk_done){io, result};
        eventfd_write(d->done_fd, 1);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

static bool iov_aligned(const struct blk_io *io, uint32_t align)
{
    if (align <= 1)
        return true;
    for (int i = 0; i < io->iovcnt; i++)
        if ((uintptr_t)io->iov[i].iov_base % align || io->iov[i].iov_len % align)
            return false;
    return true;
}

/* True when the request went to the device directly; false: nothing was
 * done and it goes to the workers. */
static bool direct_start(struct vdfs_disk *d, struct blk_io *io, bool write)
{
    uint64_t dev_off;
    if (!d->direct || io->iovcnt > IOV_MAX || !iov_aligned(io, d->dev_align) ||
        vdfs_direct_map(d->ds->fs, d->ino, io->offset, io->len, write, &dev_off) < 0)
        return false;
    /* The device never has more operations in flight than the ring has
     * entries, so a full submission queue only needs submitting. */
    struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);
    if (!sqe) {
        io_uring_submit(&d->ring);
        sqe = io_uring_get_sqe(&d->ring);
    }
    if (!sqe) {
        vdfs_direct_done(d->ds->fs, d->ino);
        return false;
    }
    if (write)
        io_uring_prep_writev(sqe, d->dev_fd, io->iov, (unsigned)io->iovcnt, dev_off);
    else
        io_uring_prep_readv(sqe, d->dev_fd, io->iov, (unsigned)io->iovcnt, dev_off);
    io_uring_sqe_set_data(sqe, io);
    d->direct_unsubmitted = true;
    return true;
}

static int enqueue(struct blk_backend *be, struct blk_io *io, enum disk_op op)
{
    struct vdfs_disk *d = disk_of(be);
    pthread_mutex_lock(&d->lock);
    if (d->nqueued + d->running + d->ndone >= DISK_JOBS) {
        pthread_mutex_unlock(&d->lock);
        return -EBUSY;
    }
    io->backend_state = op;
    d->queued[(d->queued_first + d->nqueued) % DISK_JOBS] = io;
    d->nqueued++;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static int read_or_write(struct blk_backend *be, struct blk_io *io, bool write)
{
    if (direct_start(disk_of(be), io, write)) {
        atomic_fetch_add(&direct_requests, 1);
        return 0;
    }
    int rc = enqueue(be, io, write ? DISK_WRITE : DISK_READ);
    if (rc == 0)
        atomic_fetch_add(&library_requests, 1);
    return rc;
}

static int disk_read(struct blk_backend *be, struct blk_io *io) { return read_or_write(be, io, false); }
static int disk_write(struct blk_backend *be, struct blk_io *io) { return read_or_write(be, io, true); }

static int disk_flush(struct blk_backend *be, struct blk_io *io) { return enqueue(be, io, DISK_FLUSH); }
static int disk_discard(struct blk_backend *be, struct blk_io *io) { return enqueue(be, io, DISK_DISCARD); }
static int disk_write_zeroes(struct blk_backend *be, struct blk_io *io)
{
    return enqueue(be, io, DISK_WRITE_ZEROES);
}

static void disk_submit(struct blk_backend *be)
{
    struct vdfs_disk *d = disk_of(be);
    if (d->direct_unsubmitted) {
        /* A direct write was checked against the fence just now: it must
         * reach the kernel at once, not at the end of the batch. */
        io_uring_submit(&d->ring);
        d->direct_unsubmitted = false;
    }
    pthread_mutex_lock(&d->lock);
    if (d->nqueued == 1)
        pthread_cond_signal(&d->work);
    else if (d->nqueued > 1)
        pthread_cond_broadcast(&d->work);
    pthread_mutex_unlock(&d->lock);
}

static int disk_completion_fd(struct blk_backend *be)
{
    return disk_of(be)->done_fd;
}

static void disk_reap(struct blk_backend *be)
{
    struct vdfs_disk *d = disk_of(be);
    eventfd_t ignored;
    eventfd_read(d->done_fd, &ignored);
    struct disk_done batch[DISK_JOBS];
    pthread_mutex_lock(&d->lock);
    unsigned n = d->ndone;
    memcpy(batch, d->done, n * sizeof(batch[0]));
    d->ndone = 0;
    pthread_mutex_unlock(&d->lock);
    for (unsigned i = 0; i < n; i++)
        batch[i].io->complete(batch[i].io, batch[i].result);
    struct io_uring_cqe *cqe;
    while (d->direct && io_uring_peek_cqe(&d->ring, &cqe) == 0) {
        struct blk_io *io = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&d->ring, cqe);
        vdfs_direct_done(d->ds->fs, d->ino);
        /* O_DIRECT inside the image's size moves all or fails. */
        io->complete(io, res < 0 ? res : (uint64_t)res == io->len ? 0 : -EIO);
    }
}

static uint64_t disk_capacity(struct blk_backend *be)
{
    return disk_of(be)->size & ~(uint64_t)(VIRTIO_BLK_SECTOR_SIZE - 1);
}

static void stop_workers(struct vdfs_disk *d)
{
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_broadcast(&d->work);
    pthread_mutex_unlock(&d->lock);
    for (unsigned i = 0; i < d->nworkers; i++)
        pthread_join(d->workers[i], NULL);
    d->nworkers = 0;
}

static void disk_free(struct vdfs_disk *d)
{
    stop_workers(d);
    if (d->direct)
        io_uring_queue_exit(&d->ring);
    if (d->done_fd >= 0)
        close(d->done_fd);
    pthread_cond_destroy(&d->work);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* The device reaped everything in flight before closing its backend. */
static void disk_close(struct blk_backend *be)
{
    struct vdfs_disk *d = disk_of(be);
    stop_workers(d);
    vdfs_release(d->ds->fs, d->ino, d->open_flags);
    datastore_put(d->ds);
    disk_free(d);
}

static const struct blk_backend_ops vdfs_disk_ops = {
    .read = disk_read,
    .write = disk_write,
    .flush = disk_flush,
    .discard = disk_discard,
    .write_zeroes = disk_write_zeroes,
    .capacity = disk_capacity,
    .close = disk_close,
    .submit = disk_submit,
    .completion_fd = disk_completion_fd,
    .reap = disk_reap,
};

void disk_vdfs_counts(uint64_t *direct, uint64_t *library)
{
    *direct = atomic_load(&direct_requests);
    *library = atomic_load(&library_requests);
}

struct blk_backend *disk_vdfs_open(const char *spec, bool readonly, char *err, size_t errlen)
{
    char image[4096], path[4096];
    if (datastore_parse(spec, image, sizeof(image), path, sizeof(path)) < 0) {
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
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->work, NULL);
    d->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rc = d->done_fd < 0 ? -errno : 0;
    /* libvdfs's rings for the workers and the I/O thread, made while this
     * process may still make them: for every disk on this datastore so far
     * (setup is single-threaded). */
    vdfs_prepare_io_threads(d->ds->fs, d->ds->users * (DISK_WORKERS + 1));
    const char *direct = getenv("VDFS_VM_DIRECT_IO");
    d->dev_fd = vdfs_direct_fd(d->ds->fs, &d->dev_align);
    if (rc == 0 && !(direct && strcmp(direct, "0") == 0) && d->dev_fd >= 0)
        d->direct = blk_ring_init(&d->ring, d->done_fd) == 0; /* else every request goes to the workers */
    for (unsigned i = 0; rc == 0 && i < DISK_WORKERS; i++) {
        rc = -pthread_create(&d->workers[i], NULL, worker, d);
        if (rc == 0)
            d->nworkers++;
    }
    if (rc < 0) {
        snprintf(err, errlen, "disk %s: cannot start its I/O workers: %s", spec, strerror(-rc));
        vdfs_release(d->ds->fs, d->ino, d->open_flags);
        datastore_put(d->ds);
        disk_free(d);
        return NULL;
    }
    return &d->be;
}
