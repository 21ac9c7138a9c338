/* device.c: the one layer that touches the datastore's device or image.
 *
 * I/O goes through a small, lazily created pool of io_uring rings; a call
 * borrows a whole ring, submits its batch, reaps every completion and gives
 * the ring back, so rings are never shared between threads mid-flight.
 * When io_uring is unavailable (or VDFS_DEV_NO_URING is set) the same
 * batches run as pread/pwrite loops.
 *
 * Compare-and-write is emulated under OFD byte-range locks; see
 * docs/device.md for why this is atomic across processes and where SCSI
 * COMPARE AND WRITE (SG_IO) would plug in.
 */
#include "device.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define RING_POOL_SIZE 32
#define RING_ENTRIES 64
/* Larger requests are issued in pieces of this size; it is a multiple of
 * every alignment we use and keeps one request from hogging a ring. */
#define MAX_PIECE_BYTES (16u << 20)
#define CAW_SECTOR 512u
#define ZERO_CHUNK_BYTES (1u << 20)
/* Liveness locks (try_lock/probe_lock) live in a byte range disjoint from
 * the one compare-and-write locks, so that a compare-and-write on a
 * heartbeat slot never drops or converts the slot's liveness lock held
 * through the same open file description.  OFD locks may cover any
 * offset, not just bytes inside the file. */
#define LIVENESS_LOCK_BASE (UINT64_C(1) << 62)
/* Holder tags (see vdfs_dev_set_holder_tag): one byte per tag, in a third
 * range disjoint from both; the anonymous tag is the byte after them all. */
#define HOLDER_TAG_BASE (LIVENESS_LOCK_BASE + (UINT64_C(1) << 61))
#define HOLDER_TAG_ANON (UINT64_C(1) << 32)
/* A compare-and-write asks the wait hook once its OFD lock has been busy
 * this long, and again at this period: a live holder is done in well
 * under a millisecond. */
#define WAIT_HOOK_FIRST_MS 10
#define WAIT_HOOK_PERIOD_MS 10

struct ring_slot {
    struct io_uring ring;
    bool created;
    bool busy;
};

struct vdfs_dev {
    int fd;
    uint64_t size;
    bool blockdev;
    bool direct;
    bool readonly;
    uint32_t alignment;     /* what callers must respect */
    uint32_t sector_align;  /* what the device really needs for sector I/O */

    bool use_uring;
    bool uring_unavailable; /* the first ring could not be created */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_free;
    struct ring_slot rings[RING_POOL_SIZE];

    /* OFD locks belong to the open file description, which every thread
     * of this process shares, so they cannot exclude our own threads; and
     * one thread's unlock would drop a shared range another thread still
     * reads under.  Hence one sector operation at a time per device. */
    pthread_mutex_t sector_lock;
    /* While this process holds any OFD lock on a sector window it also
     * holds a read lock on its holder tag's byte (taken with sector_lock),
     * so that a waiter can tell which hosts may hold a window. */
    atomic_uint_fast64_t holder_tag; /* tag byte offset from HOLDER_TAG_BASE */
    uint64_t entered_tag;            /* the tag locked by the sector_lock holder */
    _Atomic(vdfs_dev_wait_hook) wait_hook;
    _Atomic(void *) wait_hook_arg;

    /* Cluster fencing: see vdfs_dev_fence().  Atomic because the heartbeat
     * thread moves the deadline while I/O threads check it. */
    atomic_bool fenced;
    atomic_uint_fast64_t write_deadline_ms; /* CLOCK_MONOTONIC; 0: none */
    atomic_uint lock_patience_ms;           /* 0: wait for OFD locks forever */

    int trace_fd;
    pthread_mutex_t trace_lock;
    /* While tracing, writes hold this shared from trace record to
     * completion and flush holds it exclusive, so that every write traced
     * before a FLUSH record had completed before that flush began. */
    pthread_rwlock_t trace_gate;
};

/* ---------------------------------------------------------------- helpers */

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Checked immediately before every write reaches the kernel: a host whose
 * lease ran out must not write, whatever the caller believed a moment ago.
 * Passing the deadline latches the fence. */
static int write_allowed(struct vdfs_dev *dev)
{
    if (atomic_load(&dev->fenced))
        return -EIO;
    uint64_t deadline = atomic_load(&dev->write_deadline_ms);
    if (deadline && monotonic_ms() > deadline) {
        atomic_store(&dev->fenced, true);
        return -EIO;
    }
    return 0;
}

void vdfs_dev_fence(struct vdfs_dev *dev)
{
    atomic_store(&dev->fenced, true);
}

bool vdfs_dev_is_fenced(struct vdfs_dev *dev)
{
    return write_allowed(dev) != 0;
}

void vdfs_dev_set_write_deadline(struct vdfs_dev *dev, uint64_t monotonic_deadline_ms)
{
    atomic_store(&dev->write_deadline_ms, monotonic_deadline_ms);
}

static bool is_multiple(uint64_t value, uint32_t align)
{
    return align <= 1 || value % align == 0;
}

static bool io_is_aligned(const struct vdfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
    return is_multiple((uintptr_t)buf, dev->alignment) && is_multiple(len, dev->alignment) &&
           is_multiple(off, dev->alignment);
}

void *vdfs_aligned_alloc(size_t len)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, len ? len : 1) != 0)
        return NULL;
    return p;
}

void vdfs_aligned_free(void *p)
{
    free(p);
}

/* ---------------------------------------------------------------- tracing */

static void gate_enter(struct vdfs_dev *dev)
{
    if (dev->trace_fd >= 0)
        pthread_rwlock_rdlock(&dev->trace_gate);
}

static void gate_leave(struct vdfs_dev *dev)
{
    if (dev->trace_fd >= 0)
        pthread_rwlock_unlock(&dev->trace_gate);
}

static int write_all_vectors(int fd, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        ssize_t n = writev(fd, iov, iovcnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/* Appends one record; a trace that silently loses records would make the
 * crash tests lie, so failures are returned to the caller. */
static int trace_record(struct vdfs_dev *dev, enum vdfs_trace_op op, uint64_t off, uint64_t len,
                        const void *data)
{
    if (dev->trace_fd < 0)
        return 0;
    uint8_t header[24];
    uint32_t op_le = htole32((uint32_t)op), reserved = 0;
    uint64_t off_le = htole64(off), len_le = htole64(len);
    memcpy(header + 0, &op_le, 4);
    memcpy(header + 4, &reserved, 4);
    memcpy(header + 8, &off_le, 8);
    memcpy(header + 16, &len_le, 8);
    struct iovec iov[2] = {
        { .iov_base = header, .iov_len = sizeof header },
        { .iov_base = (void *)data, .iov_len = data ? (size_t)len : 0 },
    };
    pthread_mutex_lock(&dev->trace_lock);
    int rc = write_all_vectors(dev->trace_fd, iov, data ? 2 : 1);
    pthread_mutex_unlock(&dev->trace_lock);
    return rc;
}

/* -------------------------------------------------------------- ring pool */

/* The ring this thread used last.  The kernel links a task to each ring
 * it submits to and looks the link up whenever the task's ring differs
 * from its previous one, so a thread that keeps to one ring skips that
 * look-up on every request. */
static _Thread_local struct {
    const struct vdfs_dev *dev;
    int slot;
} last_ring;

static struct ring_slot *ring_acquire(struct vdfs_dev *dev)
{
    if (!dev->use_uring)
        return NULL;
    pthread_mutex_lock(&dev->pool_lock);
    if (last_ring.dev == dev) {
        struct ring_slot *mine = &dev->rings[last_ring.slot];
        if (mine->created && !mine->busy) {
            mine->busy = true;
            pthread_mutex_unlock(&dev->pool_lock);
            return mine;
        }
    }
    for (;;) {
        if (dev->uring_unavailable) {
            pthread_mutex_unlock(&dev->pool_lock);
            return NULL;
        }
        struct ring_slot *empty = NULL;
        for (int i = 0; i < RING_POOL_SIZE; i++) {
            struct ring_slot *slot = &dev->rings[i];
            if (slot->created && !slot->busy) {
                slot->busy = true;
                last_ring.dev = dev;
                last_ring.slot = i;
                pthread_mutex_unlock(&dev->pool_lock);
                return slot;
            }
            if (!slot->created && !empty)
                empty = slot;
        }
        if (empty) {
            int rc = io_uring_queue_init(RING_ENTRIES, &empty->ring, 0);
            if (rc == 0) {
                empty->created = true;
                empty->busy = true;
                last_ring.dev = dev;
                last_ring.slot = (int)(empty - dev->rings);
                pthread_mutex_unlock(&dev->pool_lock);
                return empty;
            }
            bool any_created = false;
            for (int i = 0; i < RING_POOL_SIZE; i++)
                any_created |= dev->rings[i].created;
            if (!any_created) {
                /* ENOSYS, EPERM (seccomp, io_uring_disabled), ENOMEM
                 * (memlock): fall back to pread/pwrite for good. */
                dev->uring_unavailable = true;
                continue;
            }
            /* The pool cannot grow right now; wait for a ring to return. */
        }
        pthread_cond_wait(&dev->pool_free, &dev->pool_lock);
    }
}

unsigned vdfs_dev_prepare_rings(struct vdfs_dev *dev, unsigned count)
{
    unsigned have = 0;
    if (!dev->use_uring)
        return 0;
    pthread_mutex_lock(&dev->pool_lock);
    for (int i = 0; i < RING_POOL_SIZE; i++)
        have += dev->rings[i].created;
    for (int i = 0; i < RING_POOL_SIZE && have < count && !dev->uring_unavailable; i++) {
        struct ring_slot *slot = &dev->rings[i];
        if (slot->created)
            continue;
        if (io_uring_queue_init(RING_ENTRIES, &slot->ring, 0) != 0) {
            if (have == 0)
                dev->uring_unavailable = true;
            break;
        }
        slot->created = true;
        have++;
    }
    pthread_mutex_unlock(&dev->pool_lock);
    return dev->uring_unavailable ? 0 : have;
}

static void ring_release(struct vdfs_dev *dev, struct ring_slot *slot, bool broken)
{
    pthread_mutex_lock(&dev->pool_lock);
    if (broken) {
        /* Unsubmitted entries may linger in a ring whose submit failed;
         * nobody may ever submit them, so the ring goes. */
        io_uring_queue_exit(&slot->ring);
        slot->created = false;
    }
    slot->busy = false;
    pthread_cond_signal(&dev->pool_free);
    pthread_mutex_unlock(&dev->pool_lock);
}

/* ---------------------------------------------------------- batch engines */

static size_t piece_length(size_t remaining)
{
    return remaining > MAX_PIECE_BYTES ? MAX_PIECE_BYTES : remaining;
}

/* Accounts for `res` bytes (or -errno) of one piece; returns true when the
 * request is finished (successfully or not). */
static bool account_result(struct vdfs_io *io, size_t *done, long res)
{
    if (res == -EINTR || res == -EAGAIN)
        return false;
    if (res < 0) {
        io->result = (int)res;
        return true;
    }
    if (res == 0) {
        /* A read at or past the end, or a write the device refused to
         * extend: the whole-length contract cannot be kept. */
        io->result = -EIO;
        return true;
    }
    *done += (size_t)res;
    if (*done >= io->len) {
        io->result = 0;
        return true;
    }
    return false;
}

static void run_with_syscalls(struct vdfs_dev *dev, struct vdfs_io **ios, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        struct vdfs_io *io = ios[i];
        size_t done = 0;
        if (io->len == 0) {
            io->result = 0;
            continue;
        }
        for (;;) {
            int fence_error = io->op == VDFS_IO_WRITE ? write_allowed(dev) : 0;
            if (fence_error) {
                io->result = fence_error;
                break;
            }
            char *p = (char *)io->buf + done;
            size_t n = piece_length(io->len - done);
            off_t at = (off_t)(io->off + done);
            ssize_t res = io->op == VDFS_IO_READ ? pread(dev->fd, p, n, at) : pwrite(dev->fd, p, n, at);
            if (account_result(io, &done, res < 0 ? -errno : res))
                break;
        }
    }
}

static void prep_piece(struct io_uring_sqe *sqe, int fd, struct vdfs_io *io, size_t done)
{
    char *p = (char *)io->buf + done;
    unsigned n = (unsigned)piece_length(io->len - done);
    uint64_t at = io->off + done;
    if (io->op == VDFS_IO_READ)
        io_uring_prep_read(sqe, fd, p, n, at);
    else
        io_uring_prep_write(sqe, fd, p, n, at);
}

/* Runs up to RING_ENTRIES requests to completion, resubmitting the rest of
 * any short transfer.  Returns false if the ring must be discarded. */
static bool run_window_on_ring(struct vdfs_dev *dev, struct io_uring *ring, struct vdfs_io **ios,
                               unsigned count)
{
    size_t done[RING_ENTRIES] = { 0 };
    bool finished[RING_ENTRIES] = { false };
    unsigned remaining = 0;
    for (unsigned i = 0; i < count; i++) {
        if (ios[i]->len == 0) {
            ios[i]->result = 0;
            finished[i] = true;
        } else {
            remaining++;
        }
    }
    while (remaining > 0) {
        /* The lease again, for every round: a batch can wait for a ring,
         * or run many rounds, long after the caller's check. */
        int fence_error = 0;
        bool fence_checked = false;
        unsigned queued = 0;
        for (unsigned i = 0; i < count; i++) {
            if (finished[i])
                continue;
            if (ios[i]->op == VDFS_IO_WRITE) {
                if (!fence_checked) {
                    fence_error = write_allowed(dev);
                    fence_checked = true;
                }
                if (fence_error) {
                    ios[i]->result = fence_error;
                    finished[i] = true;
                    remaining--;
                    continue;
                }
            }
            struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
            prep_piece(sqe, dev->fd, ios[i], done[i]);
            io_uring_sqe_set_data64(sqe, i);
            queued++;
        }
        unsigned submitted = 0;
        int submit_error = 0;
        while (submitted < queued) {
            /* Submitting and waiting for the first completion is one
             * system call instead of two. */
            int rc = io_uring_submit_and_wait(ring, 1);
            if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) {
                sched_yield();
                continue;
            }
            if (rc <= 0) {
                submit_error = rc < 0 ? rc : -EIO;
                break;
            }
            submitted += (unsigned)rc;
        }
        for (unsigned reaped = 0; reaped < submitted;) {
            struct io_uring_cqe *cqe;
            int rc = io_uring_wait_cqe(ring, &cqe);
            if (rc == -EINTR)
                continue;
            if (rc < 0) {
                submit_error = rc;
                break;
            }
            unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
            if (account_result(ios[i], &done[i], cqe->res)) {
                finished[i] = true;
                remaining--;
            }
            io_uring_cqe_seen(ring, cqe);
            reaped++;
        }
        if (submit_error) {
            for (unsigned i = 0; i < count; i++)
                if (!finished[i])
                    ios[i]->result = submit_error;
            return false;
        }
    }
    return true;
}

static void run_batch(struct vdfs_dev *dev, struct vdfs_io **ios, unsigned count)
{
    if (count == 0)
        return;
    struct ring_slot *slot = ring_acquire(dev);
    if (!slot) {
        run_with_syscalls(dev, ios, count);
        return;
    }
    bool healthy = true;
    for (unsigned first = 0; first < count && healthy; first += RING_ENTRIES) {
        unsigned n = count - first < RING_ENTRIES ? count - first : RING_ENTRIES;
        healthy = run_window_on_ring(dev, &slot->ring, ios + first, n);
        if (!healthy)
            for (unsigned i = first + n; i < count; i++)
                ios[i]->result = -EIO;
    }
    ring_release(dev, slot, !healthy);
}

/* One request, no checks and no tracing: for callers that already did both. */
static int raw_io(struct vdfs_dev *dev, enum vdfs_io_op op, void *buf, size_t len, uint64_t off)
{
    struct vdfs_io io = { .op = op, .buf = buf, .len = len, .off = off, .result = 0 };
    struct vdfs_io *one = &io;
    run_batch(dev, &one, 1);
    return io.result;
}

/* ------------------------------------------------------------------- open */

static int query_geometry(struct vdfs_dev *dev, const struct stat *st)
{
    if (S_ISBLK(st->st_mode)) {
        uint64_t bytes = 0;
        int logical = 0;
        if (ioctl(dev->fd, BLKGETSIZE64, &bytes) < 0)
            return -errno;
        if (ioctl(dev->fd, BLKSSZGET, &logical) < 0)
            return -errno;
        dev->blockdev = true;
        dev->size = bytes;
        dev->sector_align = logical > 0 ? (uint32_t)logical : CAW_SECTOR;
        dev->alignment = dev->direct ? dev->sector_align : 1;
        return 0;
    }
    dev->size = (uint64_t)st->st_size;
    dev->alignment = dev->direct ? 4096 : 1;
    dev->sector_align = dev->alignment;
#ifdef STATX_DIOALIGN
    /* The public alignment stays 4096 so that callers are portable, but
     * 512-byte compare-and-write need not widen to a page when the
     * filesystem accepts finer direct I/O. */
    struct statx stx;
    if (dev->direct && statx(dev->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align > 0 &&
        stx.stx_dio_offset_align <= 4096 && stx.stx_dio_mem_align <= 4096)
        dev->sector_align = stx.stx_dio_offset_align;
#endif
    return 0;
}

static int open_device_fd(const char *path, unsigned flags, bool *direct)
{
    /* O_NONBLOCK keeps a FIFO given by mistake from hanging the open; it
     * has no effect on files and block devices and is cleared below. */
    int base = ((flags & VDFS_DEV_RDONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK;
    *direct = false;
    if (flags & VDFS_DEV_DIRECT) {
        int fd = open(path, base | O_DIRECT);
        if (fd >= 0) {
            *direct = true;
            return fd;
        }
        if (errno != EINVAL)
            return -errno;
    }
    int fd = open(path, base);
    return fd >= 0 ? fd : -errno;
}

static int open_trace(struct vdfs_dev *dev)
{
    const char *trace_path = getenv(VDFS_TRACE_ENV);
    if (!trace_path || !*trace_path)
        return 0;
    dev->trace_fd = open(trace_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    return dev->trace_fd >= 0 ? 0 : -errno;
}

static void init_sync_objects(struct vdfs_dev *dev)
{
    pthread_mutex_init(&dev->pool_lock, NULL);
    pthread_cond_init(&dev->pool_free, NULL);
    pthread_mutex_init(&dev->sector_lock, NULL);
    pthread_mutex_init(&dev->trace_lock, NULL);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* A flush must not starve behind a stream of writes. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&dev->trace_gate, &attr);
    pthread_rwlockattr_destroy(&attr);
}

int vdfs_dev_open(const char *path, unsigned flags, struct vdfs_dev **out)
{
    *out = NULL;
    if (!path || !*path)
        return -EINVAL;
    struct vdfs_dev *dev = calloc(1, sizeof *dev);
    if (!dev)
        return -ENOMEM;
    dev->trace_fd = -1;
    atomic_store(&dev->holder_tag, HOLDER_TAG_ANON);
    dev->readonly = flags & VDFS_DEV_RDONLY;
    dev->use_uring = !(flags & VDFS_DEV_NO_URING);

    int rc = open_device_fd(path, flags, &dev->direct);
    if (rc < 0) {
        free(dev);
        return rc;
    }
    dev->fd = rc;
    rc = 0;
    int fl = fcntl(dev->fd, F_GETFL);
    struct stat st;
    if (fl < 0 || fcntl(dev->fd, F_SETFL, fl & ~O_NONBLOCK) < 0 || fstat(dev->fd, &st) < 0)
        rc = -errno;
    else if (S_ISDIR(st.st_mode))
        rc = -EISDIR;
    else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        rc = -ENOTBLK;
    if (rc == 0)
        rc = query_geometry(dev, &st);
    if (rc == 0)
        rc = open_trace(dev);
    if (rc < 0) {
        if (dev->trace_fd >= 0)
            close(dev->trace_fd);
        close(dev->fd);
        free(dev);
        return rc;
    }
    init_sync_objects(dev);
    *out = dev;
    return 0;
}

void vdfs_dev_close(struct vdfs_dev *dev)
{
    if (!dev)
        return;
    for (int i = 0; i < RING_POOL_SIZE; i++)
        if (dev->rings[i].created)
            io_uring_queue_exit(&dev->rings[i].ring);
    if (dev->trace_fd >= 0)
        close(dev->trace_fd);
    close(dev->fd);
    pthread_rwlock_destroy(&dev->trace_gate);
    pthread_mutex_destroy(&dev->trace_lock);
    pthread_mutex_destroy(&dev->sector_lock);
    pthread_cond_destroy(&dev->pool_free);
    pthread_mutex_destroy(&dev->pool_lock);
    free(dev);
}

uint64_t vdfs_dev_size(const struct vdfs_dev *dev) { return dev->size; }

int vdfs_dev_refresh_size(struct vdfs_dev *dev)
{
    struct stat st;
    if (fstat(dev->fd, &st) < 0)
        return -errno;
    if (S_ISBLK(st.st_mode)) {
        uint64_t bytes = 0;
        if (ioctl(dev->fd, BLKGETSIZE64, &bytes) < 0)
            return -errno;
        dev->size = bytes;
    } else {
        dev->size = (uint64_t)st.st_size;
    }
    return 0;
}
bool vdfs_dev_is_blockdev(const struct vdfs_dev *dev) { return dev->blockdev; }
bool vdfs_dev_is_direct(const struct vdfs_dev *dev) { return dev->direct; }
bool vdfs_dev_is_readonly(const struct vdfs_dev *dev) { return dev->readonly; }
uint32_t vdfs_dev_alignment(const struct vdfs_dev *dev) { return dev->alignment; }
int vdfs_dev_fd(const struct vdfs_dev *dev) { return dev->fd; }
bool vdfs_dev_is_traced(const struct vdfs_dev *dev) { return dev->trace_fd >= 0; }

/* ----------------------------------------------------------------- I/O */

int vdfs_dev_submit(struct vdfs_dev *dev, struct vdfs_io *ios, unsigned count)
{
    struct vdfs_io *stack_list[RING_ENTRIES];
    struct vdfs_io **valid = count <= RING_ENTRIES ? stack_list : malloc(count * sizeof *valid);
    if (!valid)
        return -ENOMEM;
    unsigned nvalid = 0;
    for (unsigned i = 0; i < count; i++) {
        struct vdfs_io *io = &ios[i];
        io->result = 0;
        if (io->op != VDFS_IO_READ && io->op != VDFS_IO_WRITE)
            io->result = -EINVAL;
        else if (io->op == VDFS_IO_WRITE && dev->readonly)
            io->result = -EROFS;
        else if (dev->direct && !io_is_aligned(dev, io->buf, io->len, io->off))
            io->result = -EINVAL;
        else if (io->off + io->len < io->off || io->off + io->len > (uint64_t)INT64_MAX)
            io->result = -EINVAL;
        else
            valid[nvalid++] = io;
    }

    bool writes = false;
    for (unsigned i = 0; i < nvalid; i++)
        writes |= valid[i]->op == VDFS_IO_WRITE;
    int fence_error = writes ? write_allowed(dev) : 0;
    if (fence_error) {
        /* One batch is all or nothing against the fence. */
        unsigned kept = 0;
        for (unsigned i = 0; i < nvalid; i++) {
            if (valid[i]->op == VDFS_IO_WRITE)
                valid[i]->result = fence_error;
            else
                valid[kept++] = valid[i];
        }
        nvalid = kept;
    }

    gate_enter(dev);
    int trace_error = 0;
    for (unsigned i = 0; i < nvalid && !trace_error; i++)
        if (valid[i]->op == VDFS_IO_WRITE)
            trace_error = trace_record(dev, VDFS_TRACE_WRITE, valid[i]->off, valid[i]->len, valid[i]->buf);
    if (trace_error)
        for (unsigned i = 0; i < nvalid; i++)
            valid[i]->result = trace_error;
    else
        run_batch(dev, valid, nvalid);
    gate_leave(dev);

    if (valid != stack_list)
        free(valid);
    for (unsigned i = 0; i < count; i++)
        if (ios[i].result)
            return ios[i].result;
    return 0;
}

int vdfs_dev_read(struct vdfs_dev *dev, void *buf, size_t len, uint64_t off)
{
    struct vdfs_io io = { .op = VDFS_IO_READ, .buf = buf, .len = len, .off = off };
    return vdfs_dev_submit(dev, &io, 1);
}

int vdfs_dev_write(struct vdfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
    struct vdfs_io io = { .op = VDFS_IO_WRITE, .buf = (void *)buf, .len = len, .off = off };
    return vdfs_dev_submit(dev, &io, 1);
}

static int sync_device(struct vdfs_dev *dev)
{
    /* A block device's fdatasync and fsync are the same cache flush;
     * fsync is used there so that no metadata question ever arises. */
    int rc;
    do
        rc = dev->blockdev ? fsync(dev->fd) : fdatasync(dev->fd);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

int vdfs_dev_flush(struct vdfs_dev *dev)
{
    if (dev->trace_fd < 0)
        return sync_device(dev);
    pthread_rwlock_wrlock(&dev->trace_gate);
    int rc = sync_device(dev);
    if (rc == 0)
        rc = trace_record(dev, VDFS_TRACE_FLUSH, 0, 0, NULL);
    pthread_rwlock_unlock(&dev->trace_gate);
    return rc;
}

/* ---------------------------------------------------------- zero, discard */

static int write_zeros(struct vdfs_dev *dev, uint64_t off, uint64_t len)
{
    if (dev->direct && (!is_multiple(off, dev->sector_align) || !is_multiple(len, dev->sector_align)))
        return -EINVAL;
    size_t chunk = len < ZERO_CHUNK_BYTES ? (size_t)len : ZERO_CHUNK_BYTES;
    void *zeros = vdfs_aligned_alloc(chunk);
    if (!zeros)
        return -ENOMEM;
    memset(zeros, 0, chunk);
    int rc = 0;
    while (len > 0 && rc == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        rc = raw_io(dev, VDFS_IO_WRITE, zeros, n, off);
        off += n;
        len -= n;
    }
    vdfs_aligned_free(zeros);
    return rc;
}

static int punch_hole(struct vdfs_dev *dev, uint64_t off, uint64_t len)
{
    return fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0
               ? -errno
               : 0;
}

static int block_range_ioctl(struct vdfs_dev *dev, unsigned long request, uint64_t off, uint64_t len)
{
    uint64_t range[2] = { off, len };
    return ioctl(dev->fd, request, range) < 0 ? -errno : 0;
}

static int zero_range(struct vdfs_dev *dev, uint64_t off, uint64_t len)
{
    int rc;
    if (dev->blockdev) {
        if (!is_multiple(off, CAW_SECTOR) || !is_multiple(len, CAW_SECTOR))
            return -EINVAL;
        rc = block_range_ioctl(dev, BLKZEROOUT, off, len);
        if (rc != -EOPNOTSUPP && rc != -ENOTTY)
            return rc;
        return write_zeros(dev, off, len);
    }
    /* A hole keeps a thin image thin and reads as zeros. */
    rc = punch_hole(dev, off, len);
    if (rc != -EOPNOTSUPP)
        return rc;
    rc = fallocate(dev->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0 ? -errno : 0;
    if (rc != -EOPNOTSUPP)
        return rc;
    return write_zeros(dev, off, len);
}

static bool range_is_valid(uint64_t off, uint64_t len)
{
    return off + len >= off && off + len <= (uint64_t)INT64_MAX;
}

int vdfs_dev_zero(struct vdfs_dev *dev, uint64_t off, uint64_t len)
{
    if (dev->readonly)
        return -EROFS;
    int fence_error = write_allowed(dev);
    if (fence_error)
        return fence_error;
    if (!range_is_valid(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    gate_enter(dev);
    int rc = trace_record(dev, VDFS_TRACE_ZERO, off, len, NULL);
    if (rc == 0)
        rc = zero_range(dev, off, len);
    gate_leave(dev);
    return rc;
}

int vdfs_dev_discard(struct vdfs_dev *dev, uint64_t off, uint64_t len)
{
    if (dev->readonly)
        return -EROFS;
    int fence_error = write_allowed(dev);
    if (fence_error)
        return fence_error;
    if (!range_is_valid(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    gate_enter(dev);
    int rc = trace_record(dev, VDFS_TRACE_DISCARD, off, len, NULL);
    if (rc == 0) {
        if (dev->blockdev)
            rc = (is_multiple(off, CAW_SECTOR) && is_multiple(len, CAW_SECTOR))
                     ? block_range_ioctl(dev, BLKDISCARD, off, len)
                     : -EINVAL;
        else
            rc = punch_hole(dev, off, len);
        if (rc == -EOPNOTSUPP)
            rc = 0; /* discard is advice */
    }
    gate_leave(dev);
    return rc;
}

/* --------------------------------------------------- OFD byte-range locks */

static int ofd_lock(int fd, int cmd, short type, uint64_t off, uint64_t len)
{
    struct flock fl = {
        .l_type = type,
        .l_whence = SEEK_SET,
        .l_start = (off_t)off,
        .l_len = (off_t)len,
        .l_pid = 0, /* required by OFD lock commands */
    };
    int rc;
    do
        rc = fcntl(fd, cmd, &fl);
    while (rc < 0 && errno == EINTR && cmd == F_OFD_SETLKW);
    return rc < 0 ? -errno : 0;
}

static int liveness_range(uint64_t off, uint64_t len, uint64_t *lock_off)
{
    if (len == 0 || off >= LIVENESS_LOCK_BASE || len > LIVENESS_LOCK_BASE - off ||
        LIVENESS_LOCK_BASE + off + len > (uint64_t)INT64_MAX)
        return -EINVAL;
    *lock_off = LIVENESS_LOCK_BASE + off;
    return 0;
}

int vdfs_dev_try_lock(struct vdfs_dev *dev, uint64_t off, uint64_t len, bool exclusive)
{
    uint64_t at;
    int rc = liveness_range(off, len, &at);
    if (rc < 0)
        return rc;
    rc = ofd_lock(dev->fd, F_OFD_SETLK, exclusive ? F_WRLCK : F_RDLCK, at, len);
    return rc == -EACCES ? -EAGAIN : rc;
}

int vdfs_dev_unlock(struct vdfs_dev *dev, uint64_t off, uint64_t len)
{
    uint64_t at;
    int rc = liveness_range(off, len, &at);
    if (rc < 0)
        return rc;
    return ofd_lock(dev->fd, F_OFD_SETLK, F_UNLCK, at, len);
}

int vdfs_dev_probe_lock(struct vdfs_dev *dev, uint64_t off, uint64_t len)
{
    uint64_t at;
    int rc = liveness_range(off, len, &at);
    if (rc < 0)
        return rc;
    struct flock fl = {
        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)at, .l_len = (off_t)len, .l_pid = 0,
    };
    if (fcntl(dev->fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type == F_UNLCK ? 0 : 1;
}

/* ------------------------------------------------------- compare-and-write */

/* The sector range widened to what the device can transfer directly. */
struct sector_window {
    uint64_t start;
    size_t len;
    size_t skip; /* offset of the caller's range inside the window */
};

static int sector_window(const struct vdfs_dev *dev, uint64_t off, size_t len, struct sector_window *w)
{
    if (len == 0 || off % CAW_SECTOR || len % CAW_SECTOR || !range_is_valid(off, len))
        return -EINVAL;
    uint32_t unit = dev->direct && dev->sector_align > CAW_SECTOR ? dev->sector_align : CAW_SECTOR;
    w->start = off - off % unit;
    uint64_t end = off + len;
    if (end % unit)
        end += unit - end % unit;
    w->len = (size_t)(end - w->start);
    w->skip = (size_t)(off - w->start);
    return 0;
}

static void nap_ms(long ms)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* One sector operation at a time per device (see sector_lock), under this
 * process's holder tag. */
static int sector_enter(struct vdfs_dev *dev)
{
    pthread_mutex_lock(&dev->sector_lock);
    uint64_t tag = atomic_load(&dev->holder_tag);
    int rc = ofd_lock(dev->fd, F_OFD_SETLK, F_RDLCK, HOLDER_TAG_BASE + tag, 1);
    if (rc) {
        pthread_mutex_unlock(&dev->sector_lock);
        return rc;
    }
    dev->entered_tag = tag;
    return 0;
}

static void sector_leave(struct vdfs_dev *dev)
{
    ofd_lock(dev->fd, F_OFD_SETLK, F_UNLCK, HOLDER_TAG_BASE + dev->entered_tag, 1);
    pthread_mutex_unlock(&dev->sector_lock);
}

/* 1 if another open file description holds a lock on one of the tag
 * bytes [first, first+count), 0 if not, or -errno. */
static int tags_held(struct vdfs_dev *dev, uint64_t first, uint64_t count)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = (off_t)(HOLDER_TAG_BASE + first),
        .l_len = (off_t)count,
        .l_pid = 0,
    };
    if (fcntl(dev->fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type == F_UNLCK ? 0 : 1;
}

/* Under the mutex, right after the window was found busy again: the wait
 * hook's verdict still stands only if some tag in `dead` is held and no
 * other tag is (a live process that took the window since the hook
 * looked holds its own tag). */
static bool only_dead_tags_held(struct vdfs_dev *dev, uint64_t dead)
{
    if (dead == 0 || tags_held(dev, HOLDER_TAG_ANON, 1) != 0)
        return false;
    bool any = false;
    for (uint64_t t = 0; t < HOLDER_TAG_ANON;) {
        if (t < 64 && (dead >> t & 1)) {
            if (!any)
                any = tags_held(dev, t, 1) == 1;
            t++;
            continue;
        }
        uint64_t end = t;
        while (end < 64 && !(dead >> end & 1))
            end++;
        if (end >= 64)
            end = HOLDER_TAG_ANON;
        if (tags_held(dev, t, end - t) != 0)
            return false;
        t = end;
    }
    return any;
}

/* Enters the sector mutex (with the holder tag) and takes an OFD lock on
 * the window, waiting at most the patience for the OFD lock (forever when
 * it is 0).  A process that is stopped (SIGSTOP) inside a sector
 * operation keeps its OFD lock for as long as it is stopped.  A writer
 * (`ask_hook`) stops waiting early when the wait hook says that every
 * process that may hold the window is dead; otherwise the patience is
 * the fallback: by its end the stopped holder's lease is over, so it can
 * never write again, and waiting on would only stall live hosts.  Neither
 * the mutex nor the tag is held while waiting, so this process's
 * heartbeat thread is never held up by it.  On return 0 the mutex is
 * held; *locked says whether the OFD lock is too (false: the holder is
 * dead or the patience ran out). */
static int window_lock(struct vdfs_dev *dev, short type, uint64_t start, size_t len, uint64_t patience_ms,
                       bool ask_hook, bool *locked)
{
    *locked = false;
    int rc;
    /* Polled, never F_OFD_SETLKW: a waiter must not hold its tag. */
    uint64_t began = monotonic_ms();
    uint64_t give_up = patience_ms ? began + patience_ms : UINT64_MAX, next_ask = began + WAIT_HOOK_FIRST_MS;
    bool holders_dead = false;
    uint64_t dead_tags = 0;
    long nap = 1;
    for (;;) {
        if ((rc = sector_enter(dev)))
            return rc;
        rc = ofd_lock(dev->fd, F_OFD_SETLK, type, start, len);
        if (rc == 0) {
            *locked = true;
            return 0;
        }
        if (rc != -EAGAIN && rc != -EACCES) {
            sector_leave(dev);
            return rc;
        }
        uint64_t now = monotonic_ms();
        if (holders_dead) {
            if (only_dead_tags_held(dev, dead_tags))
                return 0; /* mutex held, OFD lock not */
            holders_dead = false;
        } else if (now > give_up) {
            return 0;
        }
        sector_leave(dev);
        vdfs_dev_wait_hook hook = ask_hook ? atomic_load(&dev->wait_hook) : NULL;
        if (hook && now >= next_ask) {
            /* Asked without the mutex: the hook reads heartbeat slots. */
            dead_tags = 0;
            holders_dead = hook(atomic_load(&dev->wait_hook_arg), &dead_tags);
            next_ask = monotonic_ms() + WAIT_HOOK_PERIOD_MS;
            if (holders_dead)
                continue; /* one more try for the lock, then go on without it */
        }
        nap_ms(nap);
        if (nap < 8)
            nap *= 2;
    }
}

void vdfs_dev_set_holder_tag(struct vdfs_dev *dev, uint32_t tag)
{
    atomic_store(&dev->holder_tag, tag == VDFS_DEV_TAG_ANON ? HOLDER_TAG_ANON : (uint64_t)tag);
}

int vdfs_dev_probe_holder_tags(struct vdfs_dev *dev, uint32_t first, uint32_t count)
{
    if (count == 0)
        return -EINVAL;
    if (first == VDFS_DEV_TAG_ANON)
        return tags_held(dev, HOLDER_TAG_ANON, 1);
    if ((uint64_t)first + count > HOLDER_TAG_ANON)
        return -EINVAL;
    return tags_held(dev, first, count);
}

void vdfs_dev_set_wait_hook(struct vdfs_dev *dev, vdfs_dev_wait_hook hook, void *arg)
{
    if (hook)
        atomic_store(&dev->wait_hook_arg, arg);
    atomic_store(&dev->wait_hook, hook);
}

void vdfs_dev_set_lock_patience(struct vdfs_dev *dev, uint32_t ms)
{
    atomic_store(&dev->lock_patience_ms, ms);
}

/* Without the OFD lock (its holder is stopped), a compare-and-write
 * settles and reads back: a racing writer that compared before our write
 * writes within microseconds of its compare, so after the settle time
 * the later of the two writes is what both read back, and only its
 * writer reports success. */
#define CAW_SETTLE_MS 20

int vdfs_dev_compare_and_write(struct vdfs_dev *dev, uint64_t off, size_t len, const void *expect,
                               const void *data, void *found)
{
    return vdfs_dev_compare_and_write_flags(dev, off, len, expect, data, found, 0);
}

int vdfs_dev_compare_and_write_flags(struct vdfs_dev *dev, uint64_t off, size_t len, const void *expect,
                                     const void *data, void *found, unsigned flags)
{
    struct sector_window w;
    int rc = sector_window(dev, off, len, &w);
    if (rc < 0)
        return rc;
    if (dev->readonly)
        return -EROFS;
    void *bounce = vdfs_aligned_alloc(w.len);
    if (!bounce)
        return -ENOMEM;

    /* The lock covers the whole window because a widened write rewrites
     * the neighbouring sectors with what was read under this lock. */
    bool locked;
    rc = window_lock(dev, F_WRLCK, w.start, w.len, atomic_load(&dev->lock_patience_ms), true, &locked);
    bool wrote = false;
    if (rc == 0) {
        rc = raw_io(dev, VDFS_IO_READ, bounce, w.len, w.start);
        if (rc == 0 && memcmp((char *)bounce + w.skip, expect, len) != 0) {
            if (found)
                memcpy(found, (char *)bounce + w.skip, len);
            rc = -EAGAIN;
        } else if (rc == 0) {
            memcpy((char *)bounce + w.skip, data, len);
            gate_enter(dev);
            rc = write_allowed(dev);
            if (rc == 0)
                rc = trace_record(dev, VDFS_TRACE_WRITE, w.start, w.len, bounce);
            if (rc == 0)
                rc = raw_io(dev, VDFS_IO_WRITE, bounce, w.len, w.start);
            gate_leave(dev);
            wrote = rc == 0;
        }
        if (locked)
            ofd_lock(dev->fd, F_OFD_SETLK, F_UNLCK, w.start, w.len);
        sector_leave(dev);
    }
    if (wrote && !locked) {
        nap_ms(CAW_SETTLE_MS);
        void *check = vdfs_aligned_alloc(w.len);
        rc = check ? raw_io(dev, VDFS_IO_READ, check, w.len, w.start) : -ENOMEM;
        if (rc == 0 && memcmp((char *)check + w.skip, data, len) != 0) {
            if (found)
                memcpy(found, (char *)check + w.skip, len);
            rc = -EAGAIN;
        }
        vdfs_aligned_free(check);
    }
    /* Durable before the caller acts on it; flushed outside the lock so
     * that the lock is held for as short a time as possible. */
    if (wrote && rc == 0 && !(flags & VDFS_CAW_NO_FLUSH))
        rc = vdfs_dev_flush(dev);
    vdfs_aligned_free(bounce);
    return rc;
}

int vdfs_dev_read_atomic(struct vdfs_dev *dev, void *buf, size_t len, uint64_t off)
{
    struct sector_window w;
    int rc = sector_window(dev, off, len, &w);
    if (rc < 0)
        return rc;
    void *bounce = vdfs_aligned_alloc(w.len);
    void *again = vdfs_aligned_alloc(w.len);
    if (!bounce || !again) {
        vdfs_aligned_free(bounce);
        vdfs_aligned_free(again);
        return -ENOMEM;
    }
    uint32_t patience = atomic_load(&dev->lock_patience_ms);
    bool locked;
    rc = window_lock(dev, F_RDLCK, w.start, w.len, patience ? 50 : 0, false, &locked);
    if (rc) {
        vdfs_aligned_free(bounce);
        vdfs_aligned_free(again);
        return rc;
    }
    if (locked) {
        rc = raw_io(dev, VDFS_IO_READ, bounce, w.len, w.start);
        ofd_lock(dev->fd, F_OFD_SETLK, F_UNLCK, w.start, w.len);
    } else {
        /* A writer holds the range and does not finish (stopped): a
         * stopped process is never in the middle of copying a write, so
         * two equal reads in a row are a whole image. */
        rc = raw_io(dev, VDFS_IO_READ, bounce, w.len, w.start);
        for (int tries = 0; rc == 0 && tries < 100; tries++) {
            nap_ms(1);
            rc = raw_io(dev, VDFS_IO_READ, again, w.len, w.start);
            if (rc == 0 && memcmp(bounce, again, w.len) == 0)
                break;
            if (rc == 0)
                memcpy(bounce, again, w.len);
        }
    }
    if (rc == 0)
        memcpy(buf, (char *)bounce + w.skip, len);
    sector_leave(dev);
    vdfs_aligned_free(bounce);
    vdfs_aligned_free(again);
    return rc;
}

bool vdfs_dev_aligned(const struct vdfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
    uint32_t a = vdfs_dev_alignment(dev);
    return a <= 1 || (off % a == 0 && len % a == 0 && (uintptr_t)buf % a == 0);
}

/* The aligned range [*a0, *a1) that covers [off, off + len). */
static void aligned_cover(uint32_t a, size_t len, uint64_t off, uint64_t *a0, uint64_t *a1)
{
    *a0 = off / a * a;
    *a1 = (off + len + a - 1) / a * a;
}

int vdfs_dev_read_any(struct vdfs_dev *dev, void *buf, size_t len, uint64_t off)
{
    if (vdfs_dev_aligned(dev, buf, len, off))
        return vdfs_dev_read(dev, buf, len, off);
    uint64_t a0, a1;
    aligned_cover(vdfs_dev_alignment(dev), len, off, &a0, &a1);
    uint8_t *bounce = vdfs_aligned_alloc(a1 - a0);
    if (!bounce)
        return -ENOMEM;
    int rc = vdfs_dev_read(dev, bounce, a1 - a0, a0);
    if (rc == 0)
        memcpy(buf, bounce + (off - a0), len);
    vdfs_aligned_free(bounce);
    return rc;
}

int vdfs_dev_write_any(struct vdfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
    if (vdfs_dev_aligned(dev, buf, len, off))
        return vdfs_dev_write(dev, buf, len, off);
    uint32_t a = vdfs_dev_alignment(dev);
    uint64_t a0, a1;
    aligned_cover(a, len, off, &a0, &a1);
    uint8_t *bounce = vdfs_aligned_alloc(a1 - a0);
    if (!bounce)
        return -ENOMEM;
    int rc = 0;
    bool head_partial = off != a0;
    bool tail_partial = (off + len) % a != 0;
    if (head_partial)
        rc = vdfs_dev_read(dev, bounce, a, a0);
    /* One sector holding both ends was read above already. */
    if (rc == 0 && tail_partial && !(head_partial && a1 - a0 == a))
        rc = vdfs_dev_read(dev, bounce + (a1 - a0 - a), a, a1 - a);
    if (rc == 0) {
        memcpy(bounce + (off - a0), buf, len);
        rc = vdfs_dev_write(dev, bounce, a1 - a0, a0);
    }
    vdfs_aligned_free(bounce);
    return rc;
}
