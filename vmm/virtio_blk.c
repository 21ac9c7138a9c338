/* virtio-blk device: request parsing and validation, the per-disk I/O
 * thread, and the io_uring plain-file backend. */
#include "virtio_blk.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "virtio_pci.h"
#include "virtqueue.h"
#include "virtio_spec.h"

#define MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per request */
#define DISCARD_ALIGN_SECTORS 8
#define BLK_CONFIG_LEN 60
/* Adjacent reads (or writes) of one batch become one backend I/O of at
 * most this many segments and bytes, as QEMU's request merging does:
 * fewer, larger host I/Os for sequential guests. */
#define MERGE_MAX_IOV 1024 /* IOV_MAX */
#define MERGE_MAX_BYTES (8u << 20)
/* How often writes that found no space are tried again. */
#define SPACE_RETRY_MS 1000
/* Buffered reads are first tried from the page cache alone while at most
 * a quarter of the last CACHE_WINDOW tries missed; otherwise each read
 * goes to the disk at once, and one in CACHE_PROBE_EVERY tries the cache
 * to see whether it has warmed. */
#define CACHE_WINDOW 16
#define CACHE_MAX_MISSES 4
#define CACHE_PROBE_EVERY 16
/* Larger reads always go the disk's way: beside their copy, the system
 * call saved is nothing, and a streaming read that finds only part of its
 * range read ahead would copy that part twice. */
#define CACHE_TRY_MAX_BYTES (64u << 10)

/* ---------------------------------------------------------------------- */
/* io_uring file backend                                                   */

/* FILE_READ_CACHED is a buffered read that may only copy from the page
 * cache (RWF_NOWAIT); what it cannot serve is read again as a FILE_READ. */
enum file_op { FILE_READ, FILE_READ_CACHED, FILE_WRITE, FILE_FLUSH, FILE_PUNCH, FILE_ZERO_RANGE };

struct blk_file {
    struct blk_backend be;
    int fd;          /* O_DIRECT when the disk is cache=none */
    int fd_buffered; /* cache=none: for requests O_DIRECT cannot take; else -1 */
    uint32_t dio_mem_align, dio_offset_align;
    int efd;
    uint64_t capacity;
    struct io_uring ring;
    /* An unsubmitted entry must reach the kernel at once (see file_submit);
     * the others may wait for the end of the batch. */
    bool urgent_unsubmitted;
    /* Buffered disks: whether reads try the page cache first, and how the
     * tries of the current window went. */
    bool reads_try_cache, cache_unsupported;
    unsigned cache_hits, cache_misses, reads_since_probe;
};

static struct io_uring_sqe *file_sqe(struct blk_file *f)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);
    if (!sqe) { /* the batch outgrew the ring: push what we have */
        io_uring_submit(&f->ring);
        sqe = io_uring_get_sqe(&f->ring);
    }
    return sqe;
}

/* cache=writeback: fd is the only descriptor, and it is buffered. */
static bool file_buffered(const struct blk_file *f)
{
    return f->fd_buffered < 0;
}

/* O_DIRECT needs the file offset, every segment's address and every
 * segment's length aligned; a guest may send 512-byte pieces anywhere, and
 * those go through the page cache instead (the kernel writes back and
 * invalidates cached pages around direct I/O, so both views agree). */
static bool direct_ok(const struct blk_file *f, const struct blk_io *io)
{
    if (file_buffered(f))
        return true;
    if (io->offset % f->dio_offset_align)
        return false;
    for (int i = 0; i < io->iovcnt; i++) {
        if ((uintptr_t)io->iov[i].iov_base % f->dio_mem_align ||
            io->iov[i].iov_len % f->dio_offset_align)
            return false;
    }
    return true;
}

static int file_queue(struct blk_file *f, struct blk_io *io, enum file_op op)
{
    struct io_uring_sqe *sqe = file_sqe(f);
    if (!sqe)
        return -EBUSY;
    switch (op) {
    case FILE_READ:
        io_uring_prep_readv(sqe, direct_ok(f, io) ? f->fd : f->fd_buffered, io->iov,
                            (unsigned)io->iovcnt, io->offset);
        break;
    case FILE_READ_CACHED:
        io_uring_prep_readv2(sqe, f->fd, io->iov, (unsigned)io->iovcnt, io->offset, RWF_NOWAIT);
        break;
    case FILE_WRITE:
        io_uring_prep_writev(sqe, direct_ok(f, io) ? f->fd : f->fd_buffered, io->iov,
                             (unsigned)io->iovcnt, io->offset);
        break;
    case FILE_FLUSH:
        io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
        break;
    case FILE_PUNCH:
        io_uring_prep_fallocate(sqe, f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                io->offset, io->len);
        break;
    case FILE_ZERO_RANGE:
        io_uring_prep_fallocate(sqe, f->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                io->offset, io->len);
        break;
    }
    io->backend_state = op;
    io_uring_sqe_set_data(sqe, io);
    /* Only what may touch the disk is urgent: a copy from or into the page
     * cache starts no disk I/O for a batch to hold up. */
    bool page_cache_only = op == FILE_READ_CACHED || (op == FILE_WRITE && file_buffered(f));
    f->urgent_unsubmitted |= !page_cache_only;
    return 0;
}

static struct blk_file *to_file(struct blk_backend *be)
{
    return (struct blk_file *)((char *)be - offsetof(struct blk_file, be));
}

/* A buffered read served by the page cache is a copy, done inside the
 * submitting system call: one call for a whole batch of them costs less
 * than one each (1.4 against 2.2 us of host CPU per 4 KiB read here).  A
 * read the disk must serve wants its own call instead (req_submit), and
 * trying the cache first delays it, so that is done only for small reads
 * and only while the cache serves most of them. */
static int file_read(struct blk_backend *be, struct blk_io *io)
{
    struct blk_file *f = to_file(be);
    bool try_cache = false;
    if (file_buffered(f) && !f->cache_unsupported && io->len <= CACHE_TRY_MAX_BYTES) {
        try_cache = f->reads_try_cache || ++f->reads_since_probe >= CACHE_PROBE_EVERY;
        if (try_cache)
            f->reads_since_probe = 0;
    }
    return file_queue(f, io, try_cache ? FILE_READ_CACHED : FILE_READ);
}

static void note_cache_try(struct blk_file *f, bool hit)
{
    if (hit)
        f->cache_hits++;
    else
        f->cache_misses++;
    if (f->cache_hits + f->cache_misses == CACHE_WINDOW) {
        f->reads_try_cache = f->cache_misses <= CACHE_MAX_MISSES;
        f->cache_hits = f->cache_misses = 0;
    }
}
static int file_write(struct blk_backend *be, struct blk_io *io)
{
    return be->readonly ? -EROFS : file_queue(to_file(be), io, FILE_WRITE);
}
static int file_flush(struct blk_backend *be, struct blk_io *io)
{
    return file_queue(to_file(be), io, FILE_FLUSH);
}
static int file_discard(struct blk_backend *be, struct blk_io *io)
{
    return be->readonly ? -EROFS : file_queue(to_file(be), io, FILE_PUNCH);
}
static int file_write_zeroes(struct blk_backend *be, struct blk_io *io)
{
    if (be->readonly)
        return -EROFS;
    return file_queue(to_file(be), io, io->unmap ? FILE_PUNCH : FILE_ZERO_RANGE);
}
static uint64_t file_capacity(struct blk_backend *be)
{
    return to_file(be)->capacity;
}
static void file_submit(struct blk_backend *be)
{
    struct blk_file *f = to_file(be);
    if (f->urgent_unsubmitted) {
        io_uring_submit(&f->ring);
        f->urgent_unsubmitted = false;
    }
}
static void file_end_batch(struct blk_backend *be)
{
    struct blk_file *f = to_file(be);
    if (io_uring_sq_ready(&f->ring)) {
        io_uring_submit(&f->ring);
        f->urgent_unsubmitted = false;
    }
}
static int file_completion_fd(struct blk_backend *be)
{
    return to_file(be)->efd;
}

static void file_reap(struct blk_backend *be)
{
    struct blk_file *f = to_file(be);
    eventfd_t ignored;
    eventfd_read(f->efd, &ignored);
    bool resubmitted = false;
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&f->ring, &cqe) == 0) {
        struct blk_io *io = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&f->ring, cqe);
        if (io->backend_state == FILE_READ_CACHED && (res < 0 || (uint64_t)res != io->len)) {
            /* Not all in the cache (a short read copied part of it), or a
             * file system that takes no RWF_NOWAIT (EOPNOTSUPP; it is not
             * asked again): the whole read goes to the disk, on its own,
             * as every disk read does. */
            if (res == -EOPNOTSUPP)
                f->cache_unsupported = true;
            note_cache_try(f, false);
            if (file_queue(f, io, FILE_READ) == 0) {
                file_submit(&f->be);
                continue;
            }
            res = -EIO;
        } else if (io->backend_state == FILE_READ_CACHED) {
            note_cache_try(f, true);
        }
        if (res == -EOPNOTSUPP && io->backend_state == FILE_ZERO_RANGE) {
            /* e.g. tmpfs: a punched range reads as zeros just the same */
            if (file_queue(f, io, FILE_PUNCH) == 0) {
                resubmitted = true;
                continue;
            }
            res = -EIO;
        }
        /* A short read means the file shrank; a short write, that its file
         * system filled (the next write would say ENOSPC). */
        if (res >= 0 && io->backend_state == FILE_READ && (uint64_t)res != io->len)
            res = -EIO;
        if (res >= 0 && io->backend_state == FILE_WRITE && (uint64_t)res != io->len)
            res = -ENOSPC;
        io->complete(io, res < 0 ? res : 0);
    }
    if (resubmitted)
        io_uring_submit(&f->ring);
}

static void file_close(struct blk_backend *be)
{
    struct blk_file *f = to_file(be);
    io_uring_queue_exit(&f->ring);
    close(f->efd);
    close(f->fd);
    if (f->fd_buffered >= 0)
        close(f->fd_buffered);
    free(f);
}

static const struct blk_backend_ops file_ops = {
    .read = file_read,
    .write = file_write,
    .flush = file_flush,
    .discard = file_discard,
    .write_zeroes = file_write_zeroes,
    .capacity = file_capacity,
    .close = file_close,
    .submit = file_submit,
    .end_batch = file_end_batch,
    .completion_fd = file_completion_fd,
    .reap = file_reap,
};

/* Alignment O_DIRECT needs on `fd` (statx STATX_DIOALIGN, Linux 6.1);
 * 512 bytes where the kernel does not say, which every device accepts
 * that has 512-byte logical blocks, and a 4 KiB-sector device refuses
 * with EINVAL (an I/O error for that request, never a crash). */
static void dio_alignment(int fd, uint32_t *mem_align, uint32_t *offset_align)
{
    struct statx stx;
    *mem_align = *offset_align = VIRTIO_BLK_SECTOR_SIZE;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_mem_align && stx.stx_dio_offset_align) {
        *mem_align = stx.stx_dio_mem_align;
        *offset_align = stx.stx_dio_offset_align;
    }
}

int blk_ring_init(struct io_uring *ring, int efd)
{
    static const uint8_t ops[] = { IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC,
                                   IORING_OP_FALLOCATE };
    struct io_uring_restriction res[sizeof(ops)];
    int rc = io_uring_queue_init(VIRTIO_BLK_QUEUE_SIZE, ring, IORING_SETUP_R_DISABLED);
    if (rc < 0)
        return rc;
    rc = io_uring_register_eventfd(ring, efd);
    if (rc == 0) {
        memset(res, 0, sizeof(res));
        for (size_t i = 0; i < sizeof(ops); i++) {
            res[i].opcode = IORING_RESTRICTION_SQE_OP;
            res[i].sqe_op = ops[i];
        }
        /* Raw io_uring_register: Debian's liburing 2.3 does not export
         * its wrappers for these two. */
        rc = syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS,
                     res, (unsigned)sizeof(ops)) < 0 ? -errno : 0;
    }
    if (rc == 0)
        rc = syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS,
                     NULL, 0) < 0 ? -errno : 0;
    if (rc < 0)
        io_uring_queue_exit(ring);
    return rc;
}

static void file_free(struct blk_file *f)
{
    if (f->efd >= 0)
        close(f->efd);
    if (f->fd >= 0)
        close(f->fd);
    if (f->fd_buffered >= 0)
        close(f->fd_buffered);
    free(f);
}

/* One writer or any number of readers per disk file on this host, as
 * QEMU's image locking gives: an OFD lock over the whole file, held as
 * long as the descriptor is open (so until the VMM exits).  Other hosts
 * are kept out by the datastore's file lock (vdfs-fuse or vdfs: disks). */
static int lock_disk(int fd, bool readonly, const char *path, char *err, size_t errlen)
{
    struct flock fl = {.l_type = readonly ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    int e = errno;
    if (e != EAGAIN && e != EACCES) {
        snprintf(err, errlen, "disk %s: cannot lock it: %s", path, strerror(e));
        return -e;
    }
    struct flock other = {.l_type = readonly ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET};
    bool writer = fcntl(fd, F_OFD_GETLK, &other) == 0 && other.l_type == F_WRLCK;
    char who[48] = "another VM or process";
    if (other.l_type != F_UNLCK && other.l_pid > 0)
        snprintf(who, sizeof(who), "process %d", (int)other.l_pid);
    snprintf(err, errlen, "disk %s is locked: %s %s (is the VM already running?)", path, who,
             writer ? "has it open for writing"
                    : "holds a shared lock on it (a read-only VM, or another VMM such as QEMU)");
    return -EBUSY;
}

struct blk_backend *blk_file_open(const char *path, bool readonly, bool direct, char *err,
                                  size_t errlen)
{
    struct blk_file *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->fd = f->fd_buffered = f->efd = -1;
    int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    f->fd = open(path, flags);
    if (f->fd < 0) {
        snprintf(err, errlen, "cannot open disk %s: %s", path, strerror(errno));
        file_free(f);
        return NULL;
    }
    struct stat st;
    uint64_t size = 0;
    if (fstat(f->fd, &st) == 0 && S_ISBLK(st.st_mode)) {
        if (ioctl(f->fd, BLKGETSIZE64, &size) < 0)
            size = 0;
    } else if (fstat(f->fd, &st) == 0 && S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
    } else {
        snprintf(err, errlen, "disk %s is not a regular file or block device", path);
        file_free(f);
        return NULL;
    }
    if (lock_disk(f->fd, readonly, path, err, errlen) < 0) {
        file_free(f);
        return NULL;
    }
    if (direct) {
        /* The buffered descriptor stays for unaligned requests. */
        f->fd_buffered = f->fd;
        f->fd = open(path, flags | O_DIRECT);
        if (f->fd < 0) {
            snprintf(err, errlen, "disk %s: cache=none needs O_DIRECT, which %s: %s", path,
                     errno == EINVAL ? "this filesystem does not support" : "failed",
                     strerror(errno));
            file_free(f);
            return NULL;
        }
        dio_alignment(f->fd, &f->dio_mem_align, &f->dio_offset_align);
    }
    f->capacity = size / VIRTIO_BLK_SECTOR_SIZE * VIRTIO_BLK_SECTOR_SIZE;
    f->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int rc = f->efd < 0 ? -errno : blk_ring_init(&f->ring, f->efd);
    if (rc) {
        snprintf(err, errlen, "disk %s: cannot set up io_uring: %s", path, strerror(-rc));
        file_free(f);
        return NULL;
    }
    f->be.ops = &file_ops;
    f->be.readonly = readonly;
    f->reads_try_cache = true;
    return &f->be;
}

/* ---------------------------------------------------------------------- */
/* The device                                                              */

struct virtio_blk;

struct blk_req {
    struct blk_io io;
    struct virtio_blk *blk;
    struct blk_req *next_free;
    uint16_t head;
    uint8_t *status;
    uint32_t used_len;
    bool is_read;
    bool waited;   /* has waited for space since it arrived */
    bool retried;  /* submitted again after waiting for space */
    int (*op)(struct blk_backend *, struct blk_io *);
    struct blk_req *next_stalled;
    struct blk_req *merged;    /* later requests served by this one's I/O */
    struct iovec *merge_iov;   /* MERGE_MAX_IOV entries, kept for reuse */
    struct iovec chain_iov[VIRTIO_BLK_SEG_MAX + 2];
    struct iovec data_iov[VIRTIO_BLK_SEG_MAX];
};

struct virtio_blk {
    struct virtio_blk *next;
    struct virtio_pci *vp;
    struct blk_backend *be;
    char path[CONFIG_PATH_MAX];
    char serial[VIRTIO_BLK_ID_BYTES];
    uint64_t capacity_sectors;
    uint8_t config[BLK_CONFIG_LEN];

    pthread_t thread;
    int epfd;
    int stop_fd;
    pthread_cond_t idle;   /* signalled when inflight drops to 0 */
    unsigned inflight;
    bool resetting;        /* completions are dropped, not pushed */
    bool request_error_logged;
    bool used_pending;     /* pushed entries not yet published */
    struct blk_req *free_reqs;
    /* A read or write of the current batch not yet handed to the backend,
     * which the next request may join; `pending_tail` ends its chain. */
    struct blk_req *pending, *pending_tail;
    /* Writes the host had no space for (ENOSPC, EDQUOT) wait here and are
     * tried again every SPACE_RETRY_MS, as QEMU's werror=enospc and ESXi
     * pause a VM whose thin disk cannot grow: a guest must not see its
     * host's datastore fill up as a failed write. Not counted in inflight,
     * so a reset does not wait for space. */
    struct blk_req *stalled, *stalled_tail;
    int retry_fd;           /* timerfd: when to try them again */
    bool retry_armed;
    bool waiting_for_space; /* since the first wait was logged */
    unsigned retried_inflight;
    uint64_t writes_waited; /* requests that waited, since the first */
};

static struct virtio_blk *all_disks;
static pthread_mutex_t all_disks_lock = PTHREAD_MUTEX_INITIALIZER;

static struct blk_req *req_get(struct virtio_blk *blk)
{
    struct blk_req *r = blk->free_reqs;
    if (r) {
        blk->free_reqs = r->next_free;
    } else {
        r = malloc(sizeof(*r));
        if (!r)
            return NULL;
        r->blk = blk;
        r->merge_iov = NULL;
    }
    r->merged = NULL;
    r->waited = r->retried = false;
    return r;
}

static void req_put(struct virtio_blk *blk, struct blk_req *r)
{
    r->next_free = blk->free_reqs;
    blk->free_reqs = r;
}

static void log_request_error(struct virtio_blk *blk, const char *what)
{
    if (blk->request_error_logged)
        return;
    blk->request_error_logged = true;
    fprintf(stderr, "vdfs-vm: virtio-blk %s (%s): request failed: %s (further errors not "
                    "logged until reset)\n",
            virtio_pci_location(blk->vp), blk->path, what);
}

/* Completes a request (lock held): status byte, used entry; a merged
 * I/O also ends every request it carried, with the same status. */
static void req_finish(struct blk_req *r, uint8_t status)
{
    struct virtio_blk *blk = r->blk;
    struct virtqueue *vq = virtio_pci_live_queue(blk->vp, 0);
    for (struct blk_req *next; r; r = next) {
        next = r->merged;
        if (!blk->resetting && vq) {
            *r->status = status;
            virtqueue_push(vq, r->head, status == VIRTIO_BLK_S_OK ? r->used_len : 1);
            blk->used_pending = true;
        }
        req_put(blk, r);
    }
}

static void blk_publish(struct virtio_blk *blk)
{
    struct virtqueue *vq = virtio_pci_live_queue(blk->vp, 0);
    if (!blk->used_pending || !vq)
        return;
    blk->used_pending = false;
    if (virtqueue_publish(vq))
        virtio_pci_interrupt_queue(blk->vp, 0);
}

static void (*space_wait_hook)(const char *disk, bool waiting);

void virtio_blk_set_space_wait_hook(void (*hook)(const char *disk, bool waiting))
{
    space_wait_hook = hook;
}

static void set_waiting_for_space(struct virtio_blk *blk, bool waiting)
{
    if (blk->waiting_for_space == waiting)
        return;
    blk->waiting_for_space = waiting;
    if (space_wait_hook)
        space_wait_hook(blk->path, waiting);
}

static void wait_for_space(struct virtio_blk *blk, struct blk_req *r, int error)
{
    if (!blk->waiting_for_space) {
        set_waiting_for_space(blk, true);
        blk->writes_waited = 0;
        fprintf(stderr, "vdfs-vm: virtio-blk %s (%s): a write at byte %llu found no space (%s); "
                        "writes that need space wait, and are tried again every %d ms, until "
                        "space is freed\n",
                virtio_pci_location(blk->vp), blk->path, (unsigned long long)r->io.offset,
                strerror(-error), SPACE_RETRY_MS);
    }
    if (!r->waited) {
        r->waited = true;
        for (struct blk_req *carried = r; carried; carried = carried->merged)
            blk->writes_waited++;
    }
    r->next_stalled = NULL;
    if (blk->stalled_tail)
        blk->stalled_tail->next_stalled = r;
    else
        blk->stalled = r;
    blk->stalled_tail = r;
    if (!blk->retry_armed) {
        struct itimerspec when = {.it_value = {SPACE_RETRY_MS / 1000, (SPACE_RETRY_MS % 1000) * 1000000L}};
        blk->retry_armed = timerfd_settime(blk->retry_fd, 0, &when, NULL) == 0;
    }
}

/* Ends the waits of writes the guest no longer expects (a reset, or the
 * VM stopping): they complete unseen. Returns how many there were. */
static unsigned drop_waiting_writes(struct virtio_blk *blk)
{
    unsigned n = 0;
    bool was_resetting = blk->resetting;
    blk->resetting = true; /* nothing is pushed to the ring */
    while (blk->stalled) {
        struct blk_req *r = blk->stalled;
        blk->stalled = r->next_stalled;
        req_finish(r, VIRTIO_BLK_S_IOERR);
        n++;
    }
    blk->stalled_tail = NULL;
    blk->resetting = was_resetting;
    set_waiting_for_space(blk, false);
    return n;
}

static void req_complete(struct blk_io *io, int result)
{
    struct blk_req *r = (struct blk_req *)io;
    struct virtio_blk *blk = r->blk;
    if (r->retried) {
        r->retried = false;
        blk->retried_inflight--;
    }
    if ((result == -ENOSPC || result == -EDQUOT) && !blk->resetting &&
        (r->op == blk->be->ops->write || r->op == blk->be->ops->write_zeroes)) {
        wait_for_space(blk, r, result);
        if (--blk->inflight == 0)
            pthread_cond_broadcast(&blk->idle);
        return;
    }
    if (result < 0 && result != -EOPNOTSUPP) {
        char msg[128];
        snprintf(msg, sizeof(msg), "backend I/O at byte %llu: %s",
                 (unsigned long long)io->offset, strerror(-result));
        log_request_error(blk, msg);
    }
    uint8_t status = result == 0 ? VIRTIO_BLK_S_OK
                     : result == -EOPNOTSUPP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR;
    req_finish(r, status);
    if (blk->waiting_for_space && !blk->stalled && !blk->retried_inflight) {
        set_waiting_for_space(blk, false);
        fprintf(stderr, "vdfs-vm: virtio-blk %s (%s): space found; writes that waited: %llu, "
                        "all done\n",
                virtio_pci_location(blk->vp), blk->path, (unsigned long long)blk->writes_waited);
    }
    if (--blk->inflight == 0)
        pthread_cond_broadcast(&blk->idle);
}

static bool range_ok(struct virtio_blk *blk, uint64_t sector, uint64_t nsectors)
{
    return sector <= blk->capacity_sectors && nsectors <= blk->capacity_sectors - sector;
}

/* Hands a request to the backend and has an asynchronous one start it at
 * once, unless it only touches the host page cache (the backend then
 * starts it at end_batch); on refusal completes it with an error.  One
 * io_uring_enter per host disk I/O rather than one per kick: the host's
 * block layer holds a batch's requests until the whole batch is submitted
 * (100-200 us for 32 O_DIRECT requests here), and the disk here completes
 * what it was given together, so batching left it idle for that long in
 * every round of QD32 (4 KiB random I/O measured 1.22-1.25x faster this
 * way, docs/vmm.md). */
static void req_submit(struct virtio_blk *blk, struct blk_req *r,
                       int (*op)(struct blk_backend *, struct blk_io *))
{
    r->io.complete = req_complete;
    r->op = op;
    blk->inflight++;
    int rc = op(blk->be, &r->io);
    if (rc == 0 && blk->be->ops->submit)
        blk->be->ops->submit(blk->be);
    if (rc < 0) {
        blk->inflight--;
        if (r->retried) {
            r->retried = false;
            blk->retried_inflight--;
        }
        char msg[96];
        snprintf(msg, sizeof(msg), "backend refused the request: %s", strerror(-rc));
        log_request_error(blk, msg);
        req_finish(r, rc == -EOPNOTSUPP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);
    }
}

static void blk_end_batch(struct virtio_blk *blk)
{
    if (blk->be->ops->end_batch)
        blk->be->ops->end_batch(blk->be);
}

/* Timer expiry (lock held): every waiting write goes to the backend again. */
static void retry_writes(struct virtio_blk *blk)
{
    blk->retry_armed = false;
    if (blk->resetting)
        return;
    struct blk_req *r = blk->stalled;
    blk->stalled = blk->stalled_tail = NULL;
    while (r) {
        struct blk_req *next = r->next_stalled;
        r->retried = true;
        blk->retried_inflight++;
        req_submit(blk, r, r->op);
        r = next;
    }
    blk_end_batch(blk);
}

/* Hands the batch's pending read or write (with the requests merged into
 * it) to the backend. */
static void blk_flush_pending(struct virtio_blk *blk)
{
    struct blk_req *p = blk->pending;
    if (!p)
        return;
    blk->pending = blk->pending_tail = NULL;
    req_submit(blk, p, p->is_read ? blk->be->ops->read : blk->be->ops->write);
}

/* Starts a validated read or write: joined to the pending one when it
 * continues it on disk, otherwise pending itself (asynchronous backends;
 * a synchronous one gets each request at once). */
static void blk_start_rw(struct virtio_blk *blk, struct blk_req *r, bool is_read)
{
    r->is_read = is_read;
    r->merged = NULL;
    struct blk_req *p = blk->pending;
    if (p && p->is_read == is_read && p->io.offset + p->io.len == r->io.offset &&
        p->io.iovcnt + r->io.iovcnt <= MERGE_MAX_IOV &&
        p->io.len + r->io.len <= MERGE_MAX_BYTES) {
        if (p->io.iov != p->merge_iov) {
            if (!p->merge_iov)
                p->merge_iov = malloc(MERGE_MAX_IOV * sizeof(struct iovec));
            if (p->merge_iov) {
                memcpy(p->merge_iov, p->io.iov, (size_t)p->io.iovcnt * sizeof(struct iovec));
                p->io.iov = p->merge_iov;
            }
        }
        if (p->io.iov == p->merge_iov) {
            memcpy(p->io.iov + p->io.iovcnt, r->io.iov, (size_t)r->io.iovcnt * sizeof(struct iovec));
            p->io.iovcnt += r->io.iovcnt;
            p->io.len += r->io.len;
            blk->pending_tail->merged = r;
            blk->pending_tail = r;
            return;
        }
    }
    blk_flush_pending(blk);
    if (!blk->be->ops->submit) {
        req_submit(blk, r, is_read ? blk->be->ops->read : blk->be->ops->write);
        return;
    }
    blk->pending = blk->pending_tail = r;
}

/* Validates and starts one request.  Returns false if the chain broke the
 * virtio rules (the device is then in NEEDS_RESET). */
static bool blk_handle(struct virtio_blk *blk, struct blk_req *r, const struct virtq_chain *c)
{
    char why[160];
    if (c->out_len < 16 || c->in_len < 1) {
        snprintf(why, sizeof(why), "request at head %u has %llu readable and %llu writable "
                                   "bytes; needs a 16-byte header and a status byte",
                 c->head, (unsigned long long)c->out_len, (unsigned long long)c->in_len);
        virtio_pci_set_needs_reset(blk->vp, why);
        return false;
    }
    const struct iovec *last = &r->chain_iov[c->nout + c->nin - 1];
    r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
    r->head = c->head;
    r->used_len = 1;
    uint8_t hdr[16];
    iov_copy_from(r->chain_iov, c->nout, 0, hdr, sizeof(hdr));
    uint32_t type = pci_get32(hdr);
    uint64_t sector = pci_get32(hdr + 8) | (uint64_t)pci_get32(hdr + 12) << 32;
    const struct iovec *in_iov = &r->chain_iov[c->nout];
    uint64_t payload_out = c->out_len - 16, payload_in = c->in_len - 1;

    bool directions_ok = true;
    switch (type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_GET_ID:
        directions_ok = payload_out == 0;
        break;
    case VIRTIO_BLK_T_OUT:
    case VIRTIO_BLK_T_FLUSH:
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        directions_ok = payload_in == 0;
        break;
    }
    if (!directions_ok) {
        snprintf(why, sizeof(why), "request type %u at head %u has data in the wrong "
                                   "direction (%llu readable, %llu writable bytes)",
                 type, c->head, (unsigned long long)c->out_len, (unsigned long long)c->in_len);
        virtio_pci_set_needs_reset(blk->vp, why);
        return false;
    }

    /* Other requests keep their place after the reads and writes before. */
    if (type != VIRTIO_BLK_T_IN && type != VIRTIO_BLK_T_OUT)
        blk_flush_pending(blk);
    switch (type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
        bool in = type == VIRTIO_BLK_T_IN;
        uint64_t len = in ? payload_in : payload_out;
        if (!in && blk->be->readonly) {
            log_request_error(blk, "write to a read-only disk");
            req_finish(r, VIRTIO_BLK_S_IOERR);
            return true;
        }
        if (len % VIRTIO_BLK_SECTOR_SIZE || !range_ok(blk, sector, len / VIRTIO_BLK_SECTOR_SIZE)) {
            snprintf(why, sizeof(why), "%s of %llu bytes at sector %llu (capacity %llu sectors)",
                     in ? "read" : "write", (unsigned long long)len,
                     (unsigned long long)sector, (unsigned long long)blk->capacity_sectors);
            log_request_error(blk, why);
            req_finish(r, VIRTIO_BLK_S_IOERR);
            return true;
        }
        int n = in ? iov_slice(in_iov, c->nin, 0, len, r->data_iov, VIRTIO_BLK_SEG_MAX)
                   : iov_slice(r->chain_iov, c->nout, 16, len, r->data_iov, VIRTIO_BLK_SEG_MAX);
        if (n < 0) {
            log_request_error(blk, "more data segments than seg_max");
            req_finish(r, VIRTIO_BLK_S_IOERR);
            return true;
        }
        if (len == 0) {
            req_finish(r, VIRTIO_BLK_S_OK);
            return true;
        }
        r->io.iov = r->data_iov;
        r->io.iovcnt = n;
        r->io.offset = sector * VIRTIO_BLK_SECTOR_SIZE;
        r->io.len = len;
        r->used_len = (uint32_t)(in ? len + 1 : 1);
        blk_start_rw(blk, r, in);
        return true;
    }
    case VIRTIO_BLK_T_FLUSH:
        r->io.iov = NULL;
        r->io.iovcnt = 0;
        r->io.offset = r->io.len = 0;
        req_submit(blk, r, blk->be->ops->flush);
        return true;
    case VIRTIO_BLK_T_GET_ID: {
        uint64_t n = payload_in < VIRTIO_BLK_ID_BYTES ? payload_in : VIRTIO_BLK_ID_BYTES;
        iov_copy_to(in_iov, c->nin, 0, blk->serial, n);
        r->used_len = (uint32_t)n + 1;
        req_finish(r, VIRTIO_BLK_S_OK);
        return true;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
        bool discard = type == VIRTIO_BLK_T_DISCARD;
        int (*op)(struct blk_backend *, struct blk_io *) =
            discard ? blk->be->ops->discard : blk->be->ops->write_zeroes;
        if (blk->be->readonly || !op) {
            log_request_error(blk, discard ? "discard on a read-only disk"
                                           : "write-zeroes on a read-only disk");
            req_finish(r, VIRTIO_BLK_S_UNSUPP);
            return true;
        }
        if (payload_out != 16) { /* max_discard_seg = max_write_zeroes_seg = 1 */
            log_request_error(blk, "discard/write-zeroes with other than one segment");
            req_finish(r, VIRTIO_BLK_S_UNSUPP);
            return true;
        }
        uint8_t seg[16];
        iov_copy_from(r->chain_iov, c->nout, 16, seg, sizeof(seg));
        uint64_t start = pci_get32(seg) | (uint64_t)pci_get32(seg + 4) << 32;
        uint32_t count = pci_get32(seg + 8), flags = pci_get32(seg + 12);
        if ((discard && flags) || (!discard && (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))) {
            log_request_error(blk, "discard/write-zeroes with unsupported flags");
            req_finish(r, VIRTIO_BLK_S_UNSUPP);
            return true;
        }
        if (count > MAX_DISCARD_SECTORS || !range_ok(blk, start, count)) {
            snprintf(why, sizeof(why), "%s of %u sectors at sector %llu (capacity %llu)",
                     discard ? "discard" : "write-zeroes", count, (unsigned long long)start,
                     (unsigned long long)blk->capacity_sectors);
            log_request_error(blk, why);
            req_finish(r, VIRTIO_BLK_S_IOERR);
            return true;
        }
        if (count == 0) {
            req_finish(r, VIRTIO_BLK_S_OK);
            return true;
        }
        r->io.iov = NULL;
        r->io.iovcnt = 0;
        r->io.offset = start * VIRTIO_BLK_SECTOR_SIZE;
        r->io.len = (uint64_t)count * VIRTIO_BLK_SECTOR_SIZE;
        r->io.unmap = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        req_submit(blk, r, op);
        return true;
    }
    default:
        req_finish(r, VIRTIO_BLK_S_UNSUPP);
        return true;
    }
}

/* Takes every available request (lock held); each host I/O starts as soon
 * as it is formed (req_submit). */
static void blk_process_queue(struct virtio_blk *blk)
{
    char err[256];
    struct virtqueue *vq;
    bool stop = blk->resetting; /* a reset is draining: start nothing new */
    while (!stop && (vq = virtio_pci_live_queue(blk->vp, 0))) {
        virtqueue_disable_notify(vq);
        for (;;) {
            struct blk_req *r = req_get(blk);
            if (!r) { /* out of memory: the chains stay available for the next kick */
                stop = true;
                break;
            }
            struct virtq_chain c = {.iov = r->chain_iov, .iov_cap = VIRTIO_BLK_SEG_MAX + 2};
            int rc = virtqueue_pop(vq, &c, err, sizeof(err));
            if (rc <= 0) {
                req_put(blk, r);
                if (rc < 0) {
                    virtio_pci_set_needs_reset(blk->vp, err);
                    stop = true;
                }
                break;
            }
            if (!blk_handle(blk, r, &c)) {
                req_put(blk, r);
                stop = true;
                break;
            }
        }
        if (stop)
            break;
        /* While requests are in flight, their completions wake this thread
         * and it looks at the ring again then, so the guest need not kick
         * (each kick is a VM exit).  Only an idle device asks for kicks. */
        if (blk->inflight && blk->be->ops->reap)
            break;
        if (!virtqueue_enable_notify(vq))
            break;
    }
    blk_flush_pending(blk);
    blk_end_batch(blk);
    blk_publish(blk);
}

static void *blk_thread(void *arg)
{
    struct virtio_blk *blk = arg;
    int kick_fd = virtio_pci_queue_eventfd(blk->vp, 0);
    virtio_pci_io_thread_start(blk->vp);
    for (;;) {
        struct epoll_event ev[4];
        int n = epoll_wait(blk->epfd, ev, 4, -1);
        if (n < 0 && errno != EINTR) {
            perror("vdfs-vm: virtio-blk: epoll_wait");
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            if (fd == blk->stop_fd)
                return NULL;
            virtio_pci_lock(blk->vp);
            if (fd == kick_fd) {
                eventfd_t ignored;
                eventfd_read(kick_fd, &ignored);
            } else if (fd == blk->retry_fd) {
                uint64_t expirations;
                if (read(blk->retry_fd, &expirations, sizeof(expirations)) > 0)
                    retry_writes(blk);
            } else {
                /* The driver sees its completions before new chains are
                 * parsed and submitted (each submission is a few us of
                 * host kernel time), so it can refill meanwhile. */
                blk->be->ops->reap(blk->be);
                blk_publish(blk);
            }
            blk_process_queue(blk);
            virtio_pci_unlock(blk->vp);
        }
    }
}

/* Transport callbacks (lock held). */
static void blk_reset(void *opaque)
{
    struct virtio_blk *blk = opaque;
    blk->resetting = true;
    /* The I/O thread reaps (taking the lock cond_wait releases). */
    while (blk->inflight)
        pthread_cond_wait(&blk->idle, virtio_pci_mutex(blk->vp));
    unsigned dropped = drop_waiting_writes(blk);
    if (dropped)
        fprintf(stderr, "vdfs-vm: virtio-blk %s (%s): reset; writes that waited for space "
                        "dropped: %u\n",
                virtio_pci_location(blk->vp), blk->path, dropped);
    blk->resetting = false;
    blk->used_pending = false;
    blk->request_error_logged = false;
}

static void blk_activate(void *opaque)
{
    struct virtio_blk *blk = opaque;
    /* Chains made available before DRIVER_OK get looked at now. */
    eventfd_write(virtio_pci_queue_eventfd(blk->vp, 0), 1);
}

static const struct virtio_pci_ops blk_ops = {.reset = blk_reset, .activate = blk_activate};

static void blk_fill_config(struct virtio_blk *blk)
{
    uint8_t *c = blk->config;
    memset(c, 0, sizeof(blk->config));
    pci_put32(c + 0, (uint32_t)blk->capacity_sectors);
    pci_put32(c + 4, (uint32_t)(blk->capacity_sectors >> 32));
    pci_put32(c + 12, VIRTIO_BLK_SEG_MAX);
    pci_put32(c + 20, VIRTIO_BLK_SECTOR_SIZE);
    pci_put16(c + 34, 1);
    pci_put32(c + 36, MAX_DISCARD_SECTORS);
    pci_put32(c + 40, 1);
    pci_put32(c + 44, DISCARD_ALIGN_SECTORS);
    pci_put32(c + 48, MAX_DISCARD_SECTORS);
    pci_put32(c + 52, 1);
    c[56] = 1; /* write_zeroes_may_unmap */
}

static void blk_free(struct virtio_blk *blk)
{
    while (blk->free_reqs) {
        struct blk_req *r = blk->free_reqs;
        blk->free_reqs = r->next_free;
        free(r->merge_iov);
        free(r);
    }
    if (blk->epfd >= 0)
        close(blk->epfd);
    if (blk->stop_fd >= 0)
        close(blk->stop_fd);
    if (blk->retry_fd >= 0)
        close(blk->retry_fd);
    pthread_cond_destroy(&blk->idle);
    if (blk->be)
        blk->be->ops->close(blk->be);
    free(blk);
}

int virtio_blk_create_backend(struct pci_bus *pci, struct vm_services *svc,
                              const struct disk_config *cfg, struct blk_backend *be)
{
    struct virtio_blk *blk = calloc(1, sizeof(*blk));
    if (!blk) {
        be->ops->close(be);
        return -ENOMEM;
    }
    blk->be = be;
    blk->epfd = blk->stop_fd = blk->retry_fd = -1;
    pthread_cond_init(&blk->idle, NULL);
    snprintf(blk->path, sizeof(blk->path), "%s", cfg->path);
    memcpy(blk->serial, cfg->serial, strnlen(cfg->serial, VIRTIO_BLK_ID_BYTES));
    blk->capacity_sectors = be->ops->capacity(be) / VIRTIO_BLK_SECTOR_SIZE;
    blk_fill_config(blk);

    uint64_t features = 1ull << VIRTIO_F_RING_EVENT_IDX | 1ull << VIRTIO_BLK_F_SEG_MAX |
                        1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH;
    if (be->readonly)
        features |= 1ull << VIRTIO_BLK_F_RO;
    else
        features |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
    struct virtio_pci_params params = {
        .name = "virtio-blk",
        .device_type = VIRTIO_ID_BLOCK,
        .class_code = 0x018000,
        .features = features,
        .num_queues = 1,
        .queue_max_size = VIRTIO_BLK_QUEUE_SIZE,
        .device_config = blk->config,
        .device_config_len = BLK_CONFIG_LEN,
    };
    int rc = -ENOMEM;
    blk->epfd = epoll_create1(EPOLL_CLOEXEC);
    blk->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    blk->retry_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (blk->epfd < 0 || blk->stop_fd < 0 || blk->retry_fd < 0) {
        rc = -errno;
        goto fail;
    }
    blk->vp = virtio_pci_create(pci, svc, &params, &blk_ops, blk);
    if (!blk->vp) {
        rc = -ENODEV;
        goto fail;
    }
    int fds[4] = {virtio_pci_queue_eventfd(blk->vp, 0), blk->stop_fd, blk->retry_fd,
                  be->ops->completion_fd ? be->ops->completion_fd(be) : -1};
    for (int i = 0; i < 4; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        if (fds[i] >= 0 && epoll_ctl(blk->epfd, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
            rc = -errno;
            goto fail_vp;
        }
    }
    rc = -pthread_create(&blk->thread, NULL, blk_thread, blk);
    if (rc)
        goto fail_vp;
    pthread_mutex_lock(&all_disks_lock);
    blk->next = all_disks;
    all_disks = blk;
    pthread_mutex_unlock(&all_disks_lock);
    return 0;
fail_vp:
    virtio_pci_destroy(blk->vp);
fail:
    fprintf(stderr, "vdfs-vm: virtio-blk %s: cannot create device: %s\n", cfg->path,
            strerror(-rc));
    blk_free(blk);
    return rc;
}

int virtio_blk_create(struct pci_bus *pci, struct vm_services *svc, const struct disk_config *cfg)
{
    if (strncmp(cfg->path, "vdfs:", 5) == 0) {
        fprintf(stderr, "vdfs-vm: disk %s: datastore disks need the libvdfs backend\n",
                cfg->path);
        return -ENOTSUP;
    }
    char err[512];
    struct blk_backend *be = blk_file_open(cfg->path, cfg->readonly, cfg->direct, err,
                                           sizeof(err));
    if (!be) {
        fprintf(stderr, "vdfs-vm: %s\n", err);
        return -ENOENT;
    }
    return virtio_blk_create_backend(pci, svc, cfg, be);
}

void virtio_blk_destroy_all(void)
{
    pthread_mutex_lock(&all_disks_lock);
    struct virtio_blk *list = all_disks;
    all_disks = NULL;
    pthread_mutex_unlock(&all_disks_lock);
    while (list) {
        struct virtio_blk *blk = list;
        list = blk->next;
        eventfd_write(blk->stop_fd, 1);
        pthread_join(blk->thread, NULL);
        /* Drain what the backend still holds so no completion outlives us. */
        virtio_pci_lock(blk->vp);
        blk->resetting = true;
        while (blk->inflight && blk->be->ops->reap) {
            virtio_pci_unlock(blk->vp);
            struct epoll_event ev;
            epoll_wait(blk->epfd, &ev, 1, 100);
            virtio_pci_lock(blk->vp);
            blk->be->ops->reap(blk->be);
        }
        unsigned dropped = drop_waiting_writes(blk);
        if (dropped)
            fprintf(stderr, "vdfs-vm: virtio-blk %s (%s): the VM stopped; writes that waited "
                            "for space, not written: %u\n",
                    virtio_pci_location(blk->vp), blk->path, dropped);
        virtio_pci_unlock(blk->vp);
        virtio_pci_destroy(blk->vp);
        blk_free(blk);
    }
}
