/* The public file and directory operations.  Every operation holds
 * fs->lock and ends by letting the journal commit if the running
 * transaction has grown large; durability is fsync's job. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define UNLOCK(fs) pthread_mutex_unlock(&(fs)->lock)

/* Takes the local lock and makes sure this host holds the volume
 * metadata lock (cluster.md): every operation reads and writes metadata
 * under both.  fs->lock is held on return, even on error. */
/* vdfs_check_generation arms an expectation for the calling thread's
 * next operation on the same volume: every load of that descriptor in it
 * must still find that generation.  So check and operation see one state,
 * even if the metadata lock went to another host in between. */
static _Thread_local struct {
    const struct vdfs *fs;
    uint32_t ino, gen;
    bool armed, active;
} expect;

void expect_clear(void)
{
    expect.active = expect.armed = false;
}

static int enter(struct vdfs *fs)
{
    expect.active = expect.armed && expect.fs == fs;
    expect.armed = false;
    pthread_mutex_lock(&fs->lock);
    return cluster_hold(fs);
}

/* Descriptors read together on a miss: 64 KiB. */
#define FD_READAHEAD 16u

int fd_load(struct vdfs *fs, uint32_t ino, struct vdfs_fd *fd)
{
    if (ino == 0 || ino >= fs->sb.region[VDFS_RT_FD].count || !resource_is_allocated(fs, VDFS_RT_FD, ino))
        return -ENOENT;
    uint64_t addr = vdfs_fd_addr(&fs->sb, ino);
    if (!meta_cached(fs, addr)) {
        /* Files made together have neighbouring descriptors and are
         * often used together again (ls -l, a backup, rm -r): one read of
         * FD_READAHEAD descriptors instead of one read each.  Failing is
         * harmless; meta_get reads the one wanted. */
        uint64_t left = fs->sb.region[VDFS_RT_FD].count - ino;
        meta_prefetch(fs, addr, (uint32_t)(left < FD_READAHEAD ? left : FD_READAHEAD), VDFS_KIND_FD);
    }
    const uint8_t *raw;
    int rc = meta_get(fs, addr, VDFS_KIND_FD, &raw);
    if (rc == 0)
        rc = vdfs_fd_decode_verified(raw, fd);
    if (rc == 0 && fd->ino != ino)
        rc = -EIO;
    if (rc == 0 && expect.active && expect.fs == fs && expect.ino == ino && expect.gen != fd->ino_gen)
        return -ESTALE;
    if (rc == -EIO)
        vdfs_log(VDFS_LOG_ERR, "descriptor %u at 0x%llx is corrupt", ino, (unsigned long long)addr);
    return rc;
}

int fd_store(struct vdfs *fs, struct vdfs_fd *fd)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    fd->hdr.gen++;
    vdfs_fd_encode(fd, buf);
    int rc = meta_put(fs, fd->hdr.addr, buf);
    vdfs_aligned_free(buf);
    return rc;
}

static struct vdfs_timespec now_ts(void)
{
    uint64_t ns = vdfs_now_ns();
    return (struct vdfs_timespec){.sec = (int64_t)(ns / 1000000000ull), .nsec = (uint32_t)(ns % 1000000000ull)};
}

static struct timespec to_timespec(struct vdfs_timespec t)
{
    return (struct timespec){.tv_sec = t.sec, .tv_nsec = t.nsec};
}

static struct vdfs_timespec from_timespec(struct timespec t)
{
    return (struct vdfs_timespec){.sec = t.tv_sec, .nsec = (uint32_t)t.tv_nsec};
}

static void fill_stat(const struct vdfs_fd *fd, struct vdfs_stat *st)
{
    if (!st)
        return;
    st->ino = fd->ino;
    st->ino_gen = fd->ino_gen;
    st->mode = fd->mode;
    st->nlink = fd->nlink;
    st->uid = fd->uid;
    st->gid = fd->gid;
    st->rdev = fd->rdev;
    st->size = fd->size;
    st->alloc_bytes = fd->alloc_bytes;
    st->atime = to_timespec(fd->atime);
    st->mtime = to_timespec(fd->mtime);
    st->ctime = to_timespec(fd->ctime);
    st->btime = to_timespec(fd->btime);
}

static uint8_t dtype_of(uint32_t mode)
{
    return (uint8_t)IFTODT(mode);
}

static int check_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0)
        return -ENOENT;
    if (len > VDFS_NAME_MAX)
        return -ENAMETOOLONG;
    if (strchr(name, '/'))
        return -EINVAL;
    return 0;
}

static bool is_dot(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* Loads a descriptor that must be a directory. */
static int dir_load(struct vdfs *fs, uint32_t ino, struct vdfs_fd *fd)
{
    int rc = fd_load(fs, ino, fd);
    if (rc == 0 && !S_ISDIR(fd->mode))
        rc = -ENOTDIR;
    return rc;
}

static struct open_file *open_file_find(struct vdfs *fs, uint32_t ino)
{
    struct open_file *o = fs->open_files;
    while (o && o->ino != ino)
        o = o->next;
    return o;
}

static bool is_open(struct vdfs *fs, uint32_t ino)
{
    return open_file_find(fs, ino) != NULL;
}

/* Returns a descriptor and all its data to the free pools. */
static int destroy_fd(struct vdfs *fs, struct vdfs_fd *fd)
{
    int rc = filemap_truncate(fs, fd, 0);
    if (rc == 0)
        rc = free_resource(fs, VDFS_RT_FD, fd->ino);
    if (S_ISDIR(fd->mode))
        dir_forget(fs, fd->ino);
    meta_forget(fs, fd->hdr.addr);
    return rc;
}

/* Drops one link; frees the file when nothing names or holds it. */
static int drop_link(struct vdfs *fs, struct vdfs_fd *fd)
{
    struct vdfs_timespec now = now_ts();
    if (S_ISDIR(fd->mode))
        fd->nlink = 0;
    else if (fd->nlink > 0)
        fd->nlink--;
    fd->ctime = now;
    if (fd->nlink == 0 && !is_open(fs, fd->ino) && !filelock_held_elsewhere(fs, fd->ino))
        return destroy_fd(fs, fd);
    return fd_store(fs, fd);
}

static int new_fd(struct vdfs *fs, const struct vdfs_fd *parent, uint32_t mode, uint32_t rdev,
                  const struct vdfs_cred *cred, struct vdfs_fd *fd)
{
    uint64_t ino;
    int rc = alloc_resource(fs, VDFS_RT_FD, &ino);
    if (rc)
        return rc;
    if (S_ISREG(mode))
        filelock_fresh(fs, (uint32_t)ino);
    memset(fd, 0, sizeof(*fd));
    fd->hdr.kind = VDFS_KIND_FD;
    fd->hdr.addr = vdfs_fd_addr(&fs->sb, (uint32_t)ino);
    fd->ino = (uint32_t)ino;
    fd->ino_gen = (uint32_t)(vdfs_now_ns() >> 10);
    fd->mode = mode;
    fd->uid = cred ? cred->uid : 0;
    fd->gid = cred ? cred->gid : 0;
    if (parent->mode & S_ISGID) {
        fd->gid = parent->gid;
        if (S_ISDIR(mode))
            fd->mode |= S_ISGID;
    }
    fd->nlink = S_ISDIR(mode) ? 2 : 1;
    fd->parent = parent->ino;
    fd->rdev = rdev;
    fd->addr_mode = VDFS_AM_RESIDENT;
    fd->atime = fd->mtime = fd->ctime = fd->btime = now_ts();
    return 0;
}

/* Most operations work on one descriptor under the volume lock:
 * fd_begin allocates the buffer, locks and loads `ino` (its result in
 * *rc); fd_end unlocks and frees.  NULL means no buffer and no lock. */
static struct vdfs_fd *fd_begin(struct vdfs *fs, uint32_t ino, int *rc)
{
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    if (!fd) {
        *rc = -ENOMEM;
        return NULL;
    }
    *rc = enter(fs);
    if (*rc == 0)
        *rc = fd_load(fs, ino, fd);
    return fd;
}

static void fd_end(struct vdfs *fs, struct vdfs_fd *fd)
{
    UNLOCK(fs);
    free(fd);
}

static int io_drain(struct vdfs *fs, uint32_t ino);

/* fd_begin for operations that may free or move the file's blocks: no
 * I/O of it runs outside the lock once this returns. */
static struct vdfs_fd *fd_begin_drained(struct vdfs *fs, uint32_t ino, int *rc)
{
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    if (!fd) {
        *rc = -ENOMEM;
        return NULL;
    }
    *rc = enter(fs);
    if (*rc == 0) {
        int drc = io_drain(fs, ino);
        *rc = drc < 0 ? drc : 0;
    }
    if (*rc == 0)
        *rc = fd_load(fs, ino, fd);
    return fd;
}

int vdfs_getattr(struct vdfs *fs, uint32_t ino, struct vdfs_stat *st)
{
    int rc;
    struct vdfs_fd *fd = fd_begin(fs, ino, &rc);
    if (!fd)
        return rc;
    if (rc == 0)
        fill_stat(fd, st);
    fd_end(fs, fd);
    return rc;
}

int vdfs_check_generation(struct vdfs *fs, uint32_t ino, uint32_t gen)
{
    int rc;
    struct vdfs_fd *fd = fd_begin(fs, ino, &rc);
    if (!fd)
        return rc;
    if (rc == -ENOENT || (rc == 0 && fd->ino_gen != gen))
        rc = -ESTALE;
    fd_end(fs, fd);
    if (rc == 0) {
        expect.fs = fs;
        expect.ino = ino;
        expect.gen = gen;
        expect.armed = true;
    }
    return rc;
}

static int lookup_locked(struct vdfs *fs, uint32_t dir, const char *name, struct vdfs_fd *fd)
{
    int rc = dir_load(fs, dir, fd);
    if (rc)
        return rc;
    if (strcmp(name, ".") == 0)
        return 0;
    if (strcmp(name, "..") == 0)
        return fd_load(fs, fd->parent, fd);
    if ((rc = check_name(name)))
        return rc;
    uint32_t ino;
    rc = dir_lookup(fs, dir, name, &ino, NULL);
    if (rc)
        return rc;
    rc = fd_load(fs, ino, fd);
    if (rc == -ENOENT) {
        vdfs_log(VDFS_LOG_ERR, "directory %u names '%s' -> descriptor %u, which is free; run fsck.vdfs", dir,
                 name, ino);
        rc = -EIO;
    }
    return rc;
}

int vdfs_lookup(struct vdfs *fs, uint32_t dir, const char *name, struct vdfs_stat *st)
{
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    if (!fd)
        return -ENOMEM;
    int rc = enter(fs);
    if (rc == 0)
        rc = lookup_locked(fs, dir, name, fd);
    if (rc == 0)
        fill_stat(fd, st);
    UNLOCK(fs);
    free(fd);
    return rc;
}

static ssize_t read_locked(struct vdfs *fs, struct vdfs_fd *fd, void *buf, size_t len, uint64_t off);

int vdfs_resolve(struct vdfs *fs, const char *path, bool follow_last, struct vdfs_stat *st)
{
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    char *work = malloc(8192), *target = malloc(4097);
    if (!fd || !work || !target) {
        free(fd);
        free(work);
        free(target);
        return -ENOMEM;
    }
    if (strlen(path) >= 4096) {
        free(fd);
        free(work);
        free(target);
        return -ENAMETOOLONG;
    }
    snprintf(work, 8192, "%s", path);
    uint32_t cur = fs->sb.root_ino;
    int rc = enter(fs);
    if (rc == 0)
        rc = fd_load(fs, cur, fd);
    int hops = 0;
    char *p = work;
    while (rc == 0) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char name[VDFS_NAME_MAX + 2];
        if (n > VDFS_NAME_MAX) {
            rc = -ENAMETOOLONG;
            break;
        }
        memcpy(name, p, n);
        name[n] = 0;
        p += n;
        bool last = *p == 0 || strspn(p, "/") == strlen(p);
        rc = lookup_locked(fs, cur, name, fd);
        if (rc)
            break;
        if (S_ISLNK(fd->mode) && (!last || follow_last)) {
            if (++hops > 40) {
                rc = -ELOOP;
                break;
            }
            ssize_t tl = read_locked(fs, fd, target, 4096, 0);
            if (tl < 0) {
                rc = (int)tl;
                break;
            }
            target[tl] = 0;
            if (strlen(target) + strlen(p) + 2 > 8192) {
                rc = -ENAMETOOLONG;
                break;
            }
            char *rest = strdup(p);
            if (!rest) {
                rc = -ENOMEM;
                break;
            }
            snprintf(work, 8192, "%s/%s", target, rest);
            free(rest);
            p = work;
            if (target[0] == '/')
                cur = fs->sb.root_ino;
            rc = fd_load(fs, cur, fd);
            continue;
        }
        if (!last && !S_ISDIR(fd->mode)) {
            rc = -ENOTDIR;
            break;
        }
        cur = fd->ino;
    }
    if (rc == 0)
        fill_stat(fd, st);
    UNLOCK(fs);
    free(fd);
    free(work);
    free(target);
    return rc;
}

/* File blocks and sub-blocks freed since the last commit (statfs already
 * counts them free) become allocatable once their free is durable
 * (descriptors and pointer blocks are free at once).  An operation that
 * ran out while some are pending commits and tries once more.  Callers
 * have stored the descriptors they changed, so the commit writes nothing
 * the next periodic commit would not. */
static bool commit_for_space(struct vdfs *fs, ssize_t rc)
{
    return rc == -ENOSPC && (resources_pending_free(fs, VDFS_RT_FB) || resources_pending_free(fs, VDFS_RT_SB)) &&
           journal_commit(fs) == 0;
}

/* Creates a new entry `name` in `dir` for a fresh descriptor. */
static int create_locked(struct vdfs *fs, uint32_t dir, const char *name, uint32_t mode, uint32_t rdev,
                         const struct vdfs_cred *cred, struct vdfs_fd *dirfd, struct vdfs_fd *fd)
{
    int rc = dir_load(fs, dir, dirfd);
    if (rc)
        return rc;
    if (dirfd->nlink == 0)
        return -ENOENT;
    if (is_dot(name))
        return -EEXIST;
    if ((rc = check_name(name)))
        return rc;
    uint32_t existing;
    rc = dir_lookup(fs, dir, name, &existing, NULL);
    if (rc == 0)
        return -EEXIST;
    if (rc != -ENOENT)
        return rc;
    if ((rc = new_fd(fs, dirfd, mode, rdev, cred, fd)))
        return rc;
    rc = dir_add(fs, dirfd, name, fd->ino, dtype_of(mode));
    if (rc) {
        free_resource(fs, VDFS_RT_FD, fd->ino);
        return rc;
    }
    if (S_ISDIR(mode))
        dirfd->nlink++;
    dirfd->mtime = dirfd->ctime = now_ts();
    if ((rc = fd_store(fs, fd)) == 0)
        rc = fd_store(fs, dirfd);
    return rc;
}

int vdfs_create(struct vdfs *fs, uint32_t dir, const char *name, uint32_t mode, uint32_t rdev,
                const struct vdfs_cred *cred, struct vdfs_stat *st)
{
    uint32_t type = mode & S_IFMT;
    if (type != S_IFREG && type != S_IFDIR && type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR &&
        type != S_IFBLK)
        return -EINVAL;
    struct vdfs_fd *dirfd = malloc(sizeof(*dirfd)), *fd = malloc(sizeof(*fd));
    int rc = (!dirfd || !fd) ? -ENOMEM : 0;
    if (rc == 0) {
        rc = enter(fs);
        if (rc == 0)
            rc = create_locked(fs, dir, name, mode, rdev, cred, dirfd, fd);
        if (commit_for_space(fs, rc))
            rc = create_locked(fs, dir, name, mode, rdev, cred, dirfd, fd);
        if (rc == 0) {
            fill_stat(fd, st);
            rc = journal_maybe_commit(fs);
        }
        UNLOCK(fs);
    }
    free(dirfd);
    free(fd);
    return rc;
}

/* ---- data ---- */

#define IO_BATCH 32

/* Device I/O of a request is gathered and submitted together, so a large
 * read or write keeps several unit-sized requests in flight. */
struct io_batch {
    struct vdfs_io ios[IO_BATCH];
    unsigned n;
};

static int batch_flush(struct vdfs *fs, struct io_batch *b)
{
    int rc = b->n ? vdfs_dev_submit(fs->dev, b->ios, b->n) : 0;
    b->n = 0;
    return rc;
}

static int batch_add(struct vdfs *fs, struct io_batch *b, enum vdfs_io_op op, void *buf, size_t len, uint64_t off)
{
    if (!vdfs_dev_aligned(fs->dev, buf, len, off))
        return op == VDFS_IO_READ ? vdfs_dev_read_any(fs->dev, buf, len, off) : vdfs_dev_write_any(fs->dev, buf, len, off);
    b->ios[b->n++] = (struct vdfs_io){.op = op, .buf = buf, .len = len, .off = off};
    return b->n == IO_BATCH ? batch_flush(fs, b) : 0;
}

/* ---- data I/O outside the volume lock ----
 * Reads and overwrites of a file this host has open do their device I/O
 * without fs->lock, so requests to one file or many run in parallel (a VM
 * disk at queue depth 32, fio through FUSE).  Only ranges whose blocks are
 * allocated and written (not to-be-zeroed) go this way: the map is read
 * under the lock, and whatever frees or moves blocks of the file (truncate,
 * fallocate and punch, a write that allocates or converts the map, the
 * last close) first waits for the file's in-flight count to reach zero.
 * Writes that allocate stay under the lock, which keeps new data on disk
 * before the journal commit that points at it. */

/* Waits (fs->lock held, released while waiting) until no I/O of `ino`
 * runs outside the lock; true when it had to wait. */
static bool io_wait_idle(struct vdfs *fs, uint32_t ino)
{
    bool waited = false;
    struct open_file *o;
    while ((o = open_file_find(fs, ino)) && o->io_inflight) {
        pthread_cond_wait(&fs->io_idle, &fs->lock);
        waited = true;
    }
    return waited;
}

void multiwriter_io_wait(struct vdfs *fs)
{
    for (;;) {
        bool busy = false;
        for (struct open_file *o = fs->open_files; o && !busy; o = o->next)
            busy = o->lock_mode == VDFS_LOCK_MULTI_WRITER && o->io_inflight;
        if (!busy)
            return;
        pthread_cond_wait(&fs->io_idle, &fs->lock);
    }
}

/* io_wait_idle, with the metadata lock taken back after a wait (another
 * host may have had it meanwhile): 1 when it waited (descriptors
 * loaded before are stale), 0, or -errno. */
static int io_drain(struct vdfs *fs, uint32_t ino)
{
    int waited = 0;
    while (io_wait_idle(fs, ino)) {
        waited = 1;
        int rc = cluster_hold(fs);
        if (rc)
            return rc;
    }
    return waited;
}

static void io_done(struct vdfs *fs, struct open_file *o)
{
    pthread_mutex_lock(&fs->lock);
    if (--o->io_inflight == 0)
        pthread_cond_broadcast(&fs->io_idle);
}

/* Maps [off, off + len) (inside the file) into device requests for an
 * unlocked read (write: false; holes and resident bytes are filled in
 * here) or overwrite (write: true; everything must be allocated and
 * written).  False when the range does not qualify. */
static bool map_outside_lock(struct vdfs *fs, struct vdfs_fd *fd, void *buf, size_t len, uint64_t off,
                             bool write, struct io_batch *b)
{
    uint32_t a = vdfs_dev_alignment(fs->dev);
    b->n = 0;
    size_t done = 0;
    while (done < len) {
        struct map_segment seg;
        if (filemap_lookup(fs, fd, off + done, len - done, &seg))
            return false;
        uint8_t *at = buf ? (uint8_t *)buf + done : NULL; /* NULL: only asking whether it qualifies */
        if (seg.resident || seg.dev_off == 0) {
            if (write)
                return false;
            if (seg.resident)
                memcpy(at, fd->data.resident + off + done, seg.length);
            else
                memset(at, 0, seg.length);
        } else {
            if (b->n == IO_BATCH || (a > 1 && (seg.dev_off % a || seg.length % a)))
                return false;
            b->ios[b->n++] = (struct vdfs_io){.op = write ? VDFS_IO_WRITE : VDFS_IO_READ, .buf = at,
                                              .len = seg.length, .off = seg.dev_off};
        }
        done += seg.length;
    }
    return true;
}

/* Runs a mapped batch without fs->lock (held on entry and on return),
 * through an aligned bounce buffer when the caller's (`buf`, `len`) is not
 * aligned; buf NULL: every request's buffer is aligned already. */
static int submit_outside_lock(struct vdfs *fs, struct open_file *o, struct vdfs_io *ios, unsigned n, void *buf,
                               size_t len, bool write)
{
    uint32_t a = vdfs_dev_alignment(fs->dev);
    bool bounce = buf && n && a > 1 && (uintptr_t)buf % a;
    /* Once the metadata lock is on its way to another host, that host may
     * truncate a MULTI_WRITER file and reuse its blocks: such I/O keeps
     * fs->lock, which the hand-over waits for. */
    bool outside = !(fs->mlock_handover && o->lock_mode == VDFS_LOCK_MULTI_WRITER);
    if (outside) {
        o->io_inflight++;
        UNLOCK(fs);
    }
    uint8_t *copy = bounce ? vdfs_aligned_alloc(len) : NULL;
    int rc = bounce && !copy ? -ENOMEM : 0;
    if (rc == 0 && bounce) {
        if (write)
            memcpy(copy, buf, len);
        for (unsigned i = 0; i < n; i++)
            ios[i].buf = copy + ((uint8_t *)ios[i].buf - (uint8_t *)buf);
    }
    if (rc == 0 && n)
        rc = vdfs_dev_submit(fs->dev, ios, n);
    if (rc == 0 && bounce && !write)
        for (unsigned i = 0; i < n; i++)
            memcpy((uint8_t *)buf + ((uint8_t *)ios[i].buf - copy), ios[i].buf, ios[i].len);
    vdfs_aligned_free(copy);
    if (outside)
        io_done(fs, o);
    return rc;
}

static ssize_t read_locked(struct vdfs *fs, struct vdfs_fd *fd, void *buf, size_t len, uint64_t off)
{
    if (S_ISDIR(fd->mode))
        return -EISDIR;
    if (off >= fd->size)
        return 0;
    if (len > fd->size - off)
        len = (size_t)(fd->size - off);
    size_t done = 0;
    int rc = 0;
    struct io_batch batch;
    batch.n = 0;
    while (done < len) {
        struct map_segment seg;
        rc = filemap_lookup(fs, fd, off + done, len - done, &seg);
        if (rc)
            break;
        uint8_t *dst = (uint8_t *)buf + done;
        if (seg.resident)
            memcpy(dst, fd->data.resident + off + done, seg.length);
        else if (seg.dev_off == 0)
            memset(dst, 0, seg.length);
        else if ((rc = batch_add(fs, &batch, VDFS_IO_READ, dst, seg.length, seg.dev_off)))
            break;
        done += seg.length;
    }
    int frc = batch_flush(fs, &batch);
    if (rc == 0)
        rc = frc;
    return rc ? rc : (ssize_t)done;
}

ssize_t vdfs_pread(struct vdfs *fs, uint32_t ino, void *buf, size_t len, uint64_t off)
{
    int err;
    struct vdfs_fd *fd = fd_begin(fs, ino, &err);
    if (!fd)
        return err;
    ssize_t rc = err;
    struct open_file *o = rc == 0 && S_ISREG(fd->mode) ? open_file_find(fs, ino) : NULL;
    if (o && off < fd->size) {
        size_t n = len < fd->size - off ? len : (size_t)(fd->size - off);
        struct io_batch batch;
        if (map_outside_lock(fs, fd, buf, n, off, false, &batch)) {
            int src = submit_outside_lock(fs, o, batch.ios, batch.n, buf, n, false);
            fd_end(fs, fd);
            return src ? src : (ssize_t)n;
        }
    }
    if (rc == 0)
        rc = read_locked(fs, fd, buf, len, off);
    fd_end(fs, fd);
    return rc;
}

static bool changed_within_granule(struct vdfs_timespec t, struct vdfs_timespec now)
{
    int64_t ns = (now.sec - t.sec) * 1000000000 + ((int64_t)now.nsec - (int64_t)t.nsec);
    return ns >= 0 && ns < (int64_t)VDFS_TIME_GRANULE_NS;
}

/* What a write does to the descriptor whatever it writes: new mtime and
 * ctime, no setuid bit, no setgid bit on a group-executable file.  The
 * overwrite path applies it before its data goes out, as the kernel's
 * file_modified() does, while fd is current and fs->lock held. */
static bool mark_modified(struct vdfs_fd *fd, struct vdfs_timespec now, bool always)
{
    bool drop_ids = (fd->mode & S_ISUID) || ((fd->mode & S_ISGID) && (fd->mode & S_IXGRP));
    if (!always && !drop_ids && changed_within_granule(fd->mtime, now) && changed_within_granule(fd->ctime, now))
        return false;
    fd->mtime = fd->ctime = now;
    fd->mode &= ~(uint32_t)S_ISUID;
    if (fd->mode & S_IXGRP)
        fd->mode &= ~(uint32_t)S_ISGID;
    return true;
}

static ssize_t write_locked(struct vdfs *fs, struct vdfs_fd *fd, const void *buf, size_t len, uint64_t off)
{
    if (len == 0)
        return 0;
    if (off + len < off || off >= filemap_max_size(fs))
        return -EFBIG;
    size_t done = 0;
    int rc = 0;
    struct io_batch batch;
    batch.n = 0;
    uint64_t old_size = fd->size;
    while (done < len) {
        struct map_segment seg;
        rc = filemap_prepare_write(fs, fd, off + done, len - done, &seg);
        if (rc)
            break;
        const uint8_t *src = (const uint8_t *)buf + done;
        if (seg.resident)
            memcpy(fd->data.resident + off + done, src, seg.length);
        else if ((rc = batch_add(fs, &batch, VDFS_IO_WRITE, (void *)src, seg.length, seg.dev_off)))
            break;
        done += seg.length;
        if (off + done > fd->size)
            fd->size = off + done;
    }
    int frc = batch_flush(fs, &batch);
    if (frc) {
        /* Which parts landed is unknown: report the error, keep the size. */
        rc = frc;
        done = 0;
        fd->size = old_size;
    }
    if (done)
        mark_modified(fd, now_ts(), true);
    /* Even a failed write may have allocated units: keep the map. */
    int src = fd_store(fs, fd);
    if (src)
        return src;
    return done ? (ssize_t)done : rc;
}

/* [off, off + len) is inside the file and all written blocks: mapped into
 * `batch` for a write outside the lock (buf NULL: only asking). */
static bool maps_overwrite(struct vdfs *fs, struct vdfs_fd *fd, const void *buf, size_t len, uint64_t off,
                           struct io_batch *batch)
{
    return len != 0 && off + len >= off && off + len <= fd->size &&
           map_outside_lock(fs, fd, (void *)buf, len, off, true, batch);
}

/* maps_overwrite for a range of any length: one batch maps at most
 * IO_BATCH of the file's units, so the range goes a unit-aligned piece of
 * IO_BATCH units at a time.  Each piece's requests are appended to
 * out[*count] when `out` is given (room for units_spanned() of them). */
static bool maps_overwrite_all(struct vdfs *fs, struct vdfs_fd *fd, const void *buf, size_t len, uint64_t off,
                               struct vdfs_io *out, unsigned *count)
{
    if (len == 0 || off + len < off)
        return false;
    uint64_t unit = filemap_unit_size(fs, fd);
    for (size_t done = 0; done < len;) {
        uint64_t at = off + done, piece_end = at / unit * unit + IO_BATCH * unit;
        size_t piece = piece_end - at < len - done ? (size_t)(piece_end - at) : len - done;
        struct io_batch batch;
        if (!maps_overwrite(fs, fd, buf ? (const uint8_t *)buf + done : NULL, piece, at, &batch))
            return false;
        if (out) {
            memcpy(out + *count, batch.ios, batch.n * sizeof(*out));
            *count += batch.n;
        }
        done += piece;
    }
    return true;
}

/* The most requests maps_overwrite_all makes of `len` bytes. */
static uint64_t units_spanned(const struct vdfs *fs, size_t len)
{
    return len / fs->sb.subblock_size + 2;
}

/* What an overwrite does to the descriptor, stored (when due, see
 * mark_modified) with the journal given its chance to commit. */
/* 1 when the times were due and are stored, 0 when nothing was due, or
 * -errno. */
static int apply_overwrite(struct vdfs *fs, struct vdfs_fd *fd)
{
    if (!mark_modified(fd, now_ts(), false))
        return 0;
    int rc = fd_store(fs, fd);
    rc = rc ? rc : journal_maybe_commit(fs);
    return rc ? rc : 1;
}

/* An overwrite inside the file's allocated, written blocks: the times are
 * updated (when due) and the journal given its chance to commit under the
 * lock, then the device write runs outside it.  False (nothing done) when
 * the range does not qualify. */
static bool overwrite_outside_lock(struct vdfs *fs, struct vdfs_fd *fd, struct open_file *o, const void *buf,
                                   size_t len, uint64_t off, ssize_t *result)
{
    struct io_batch batch;
    if (!maps_overwrite(fs, fd, buf, len, off, &batch))
        return false;
    int rc = apply_overwrite(fs, fd);
    if (rc >= 0)
        rc = submit_outside_lock(fs, o, batch.ios, batch.n, (void *)buf, len, true);
    *result = rc ? rc : (ssize_t)len;
    return true;
}

ssize_t vdfs_pwrite(struct vdfs *fs, uint32_t ino, const void *buf, size_t len, uint64_t off)
{
    int err;
    struct vdfs_fd *fd = fd_begin(fs, ino, &err);
    if (!fd)
        return err;
    ssize_t rc = err;
    if (rc == 0 && S_ISDIR(fd->mode))
        rc = -EISDIR;
    bool append = off == VDFS_APPEND;
    struct open_file *o = rc == 0 && S_ISREG(fd->mode) ? open_file_find(fs, ino) : NULL;
    if (o && !append && overwrite_outside_lock(fs, fd, o, buf, len, off, &rc)) {
        fd_end(fs, fd);
        return rc;
    }
    /* This write may allocate or convert the map: no unlocked I/O of the
     * file may run meanwhile. */
    if (rc == 0 && o) {
        int drc = io_drain(fs, ino);
        if (drc < 0)
            rc = drc;
        else if (drc > 0)
            rc = fd_load(fs, ino, fd);
    }
    /* The end as it is now, after any wait for I/O that released the lock. */
    if (rc == 0 && append)
        off = fd->size;
    if (rc == 0)
        rc = write_locked(fs, fd, buf, len, off);
    if (commit_for_space(fs, rc))
        rc = write_locked(fs, fd, buf, len, off);
    if (rc >= 0) {
        int crc = journal_maybe_commit(fs);
        if (crc)
            rc = crc;
    }
    fd_end(fs, fd);
    return rc;
}

/* A write-back cache may hold an overwrite only while no other host can
 * see the file: this host has it open for writing and holds its lock
 * alone (any write open of a volume without cluster locks). */
static bool held_alone_for_write(struct vdfs *fs, const struct open_file *o)
{
    return o->writers > 0 && (!fs->cluster || o->lock_mode == VDFS_LOCK_EXCLUSIVE);
}

int vdfs_overwrite_cached(struct vdfs *fs, uint32_t ino, uint64_t off, size_t len)
{
    int rc;
    struct vdfs_fd *fd = fd_begin(fs, ino, &rc);
    if (!fd)
        return rc;
    struct open_file *o = rc == 0 && S_ISREG(fd->mode) ? open_file_find(fs, ino) : NULL;
    if (rc == 0 && o && held_alone_for_write(fs, o) && !volume_is_fenced(fs) &&
        maps_overwrite_all(fs, fd, NULL, len, off, NULL, NULL)) {
        int arc = apply_overwrite(fs, fd);
        rc = arc < 0 ? arc : 1;
    }
    fd_end(fs, fd);
    return rc;
}

int vdfs_pwrite_back(struct vdfs *fs, uint32_t ino, const struct vdfs_write_back *runs, unsigned n)
{
    if (n == 0 || n > VDFS_WRITE_BACK_MAX)
        return -EINVAL;
    uint64_t room = 0;
    for (unsigned i = 0; i < n; i++)
        room += units_spanned(fs, runs[i].len);
    if (room > UINT_MAX / sizeof(struct vdfs_io))
        return -EINVAL;
    struct vdfs_io *ios = malloc((size_t)room * sizeof(*ios));
    int rc;
    struct vdfs_fd *fd = ios ? fd_begin(fs, ino, &rc) : NULL;
    if (!fd) {
        free(ios);
        return ios ? rc : -ENOMEM;
    }
    struct open_file *o = rc == 0 && S_ISREG(fd->mode) ? open_file_find(fs, ino) : NULL;
    if (rc == 0 && !o)
        rc = -ESTALE;
    unsigned count = 0;
    uint32_t a = vdfs_dev_alignment(fs->dev);
    for (unsigned i = 0; rc == 0 && i < n; i++) {
        const struct vdfs_write_back *r = &runs[i];
        if (a > 1 && (uintptr_t)r->buf % a)
            rc = -EINVAL;
        else if (!maps_overwrite_all(fs, fd, r->buf, r->len, r->off, ios, &count))
            rc = -ESTALE;
    }
    if (rc == 0)
        rc = submit_outside_lock(fs, o, ios, count, NULL, 0, true);
    fd_end(fs, fd);
    free(ios);
    return rc;
}

/* [off, off + len) as one aligned run of the device: every unit written,
 * each following on from the one before (files written in order usually
 * are, so a large request still qualifies). */
static bool map_one_device_run(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, size_t len, uint64_t *dev_off)
{
    uint64_t start = 0, next = 0;
    for (size_t done = 0; done < len;) {
        struct map_segment seg;
        if (filemap_lookup(fs, fd, off + done, len - done, &seg) || seg.resident || seg.dev_off == 0)
            return false;
        if (done == 0)
            start = seg.dev_off;
        else if (seg.dev_off != next)
            return false;
        next = seg.dev_off + seg.length;
        done += seg.length;
    }
    uint32_t a = vdfs_dev_alignment(fs->dev);
    if (a > 1 && (start % a || len % a))
        return false;
    *dev_off = start;
    return true;
}

/* Never waits: a caller on an I/O thread must not stall behind the volume
 * lock or the cluster's metadata lock, so anything but the plain case
 * sends it to vdfs_pread/vdfs_pwrite, which wait and report errors. */
void open_file_free(struct open_file *o)
{
    free(o->direct);
    free(o);
}

/* fd_load for vdfs_direct_map: the open file's snapshot, decoded again only
 * when the cached descriptor's bytes have changed. NULL if it cannot be
 * read (the caller then takes the slow path, which reports errors). */
static struct vdfs_fd *direct_fd(struct vdfs *fs, struct open_file *o)
{
    if (o->ino >= fs->sb.region[VDFS_RT_FD].count || !resource_is_allocated(fs, VDFS_RT_FD, o->ino))
        return NULL;
    const uint8_t *raw;
    if (meta_get(fs, vdfs_fd_addr(&fs->sb, o->ino), VDFS_KIND_FD, &raw) != 0)
        return NULL;
    if (!o->direct && !(o->direct = calloc(1, sizeof(*o->direct))))
        return NULL;
    struct direct_snapshot *s = o->direct;
    if (!s->valid || memcmp(s->raw, raw, VDFS_META_SIZE) != 0) {
        s->valid = vdfs_fd_decode_verified(raw, &s->fd) == 0 && s->fd.ino == o->ino;
        if (!s->valid)
            return NULL;
        memcpy(s->raw, raw, VDFS_META_SIZE);
    }
    return &s->fd;
}

int vdfs_direct_map(struct vdfs *fs, uint32_t ino, uint64_t off, size_t len, bool write, uint64_t *dev_off)
{
    if (len == 0 || off + len < off || vdfs_dev_is_traced(fs->dev))
        return -EAGAIN;
    if (pthread_mutex_trylock(&fs->lock))
        return -EAGAIN;
    int rc = -EAGAIN;
    struct open_file *o = NULL;
    struct vdfs_fd *fd = NULL;
    if (!volume_is_fenced(fs) && (!fs->cluster || atomic_load(&fs->mlock_held)) && !(write && fs->readonly) &&
        (o = open_file_find(fs, ino)) && (fd = direct_fd(fs, o)) && (!S_ISREG(fd->mode) || off + len > fd->size))
        fd = NULL;
    /* The same rule as submit_outside_lock: such I/O must stay under the
     * lock that a hand-over waits for. */
    if (fd && !(fs->mlock_handover && o->lock_mode == VDFS_LOCK_MULTI_WRITER) && (!write || o->writers > 0) &&
        map_one_device_run(fs, fd, off, len, dev_off)) {
        /* apply_overwrite may change the snapshot in place: it is then
         * decoded again from what was stored (or not). */
        int applied = write ? apply_overwrite(fs, fd) : 0;
        if (applied != 0)
            o->direct->valid = false;
        if (applied >= 0) {
            o->io_inflight++;
            rc = 0;
        }
    }
    UNLOCK(fs);
    return rc;
}

void vdfs_direct_done(struct vdfs *fs, uint32_t ino)
{
    pthread_mutex_lock(&fs->lock);
    struct open_file *o = open_file_find(fs, ino);
    if (o && o->io_inflight && --o->io_inflight == 0)
        pthread_cond_broadcast(&fs->io_idle);
    UNLOCK(fs);
}

int vdfs_direct_fd(struct vdfs *fs, uint32_t *alignment)
{
    *alignment = vdfs_dev_alignment(fs->dev);
    return vdfs_dev_fd(fs->dev);
}

int vdfs_fsync(struct vdfs *fs, uint32_t ino, bool datasync)
{
    (void)ino;
    (void)datasync;
    int rc = enter(fs);
    if (rc == 0 && !fs->readonly)
        rc = journal_commit(fs);
    if (rc == 0 && !fs->readonly)
        rc = vdfs_dev_flush(fs->dev);
    UNLOCK(fs);
    return rc;
}

static int remove_locked(struct vdfs *fs, uint32_t dir, const char *name, bool want_dir);

/* The entry and its whole target, or nothing: a link whose target found
 * no space is taken back before anything can commit it. */
static int symlink_locked(struct vdfs *fs, uint32_t dir, const char *name, const char *target, size_t tl,
                          const struct vdfs_cred *cred, struct vdfs_fd *dirfd, struct vdfs_fd *fd)
{
    int rc = create_locked(fs, dir, name, S_IFLNK | 0777, 0, cred, dirfd, fd);
    if (rc)
        return rc;
    ssize_t w = write_locked(fs, fd, target, tl, 0);
    rc = w < 0 ? (int)w : (size_t)w < tl ? -ENOSPC : 0;
    if (rc)
        remove_locked(fs, dir, name, false);
    return rc;
}

int vdfs_symlink(struct vdfs *fs, uint32_t dir, const char *name, const char *target,
                 const struct vdfs_cred *cred, struct vdfs_stat *st)
{
    size_t tl = strlen(target);
    if (tl == 0)
        return -ENOENT;
    if (tl >= 4096)
        return -ENAMETOOLONG;
    struct vdfs_fd *dirfd = malloc(sizeof(*dirfd)), *fd = malloc(sizeof(*fd));
    int rc = (!dirfd || !fd) ? -ENOMEM : 0;
    if (rc == 0) {
        rc = enter(fs);
        if (rc == 0)
            rc = symlink_locked(fs, dir, name, target, tl, cred, dirfd, fd);
        if (commit_for_space(fs, rc))
            rc = symlink_locked(fs, dir, name, target, tl, cred, dirfd, fd);
        if (rc == 0) {
            fill_stat(fd, st);
            rc = journal_maybe_commit(fs);
        }
        UNLOCK(fs);
    }
    free(dirfd);
    free(fd);
    return rc;
}

ssize_t vdfs_readlink(struct vdfs *fs, uint32_t ino, char *buf, size_t size)
{
    int err;
    struct vdfs_fd *fd = fd_begin(fs, ino, &err);
    if (!fd)
        return err;
    ssize_t rc = err;
    if (rc == 0 && !S_ISLNK(fd->mode))
        rc = -EINVAL;
    if (rc == 0)
        rc = read_locked(fs, fd, buf, size, 0);
    fd_end(fs, fd);
    return rc;
}

int vdfs_link(struct vdfs *fs, uint32_t ino, uint32_t newdir, const char *newname, struct vdfs_stat *st)
{
    struct vdfs_fd *dirfd = malloc(sizeof(*dirfd)), *fd = malloc(sizeof(*fd));
    int rc = (!dirfd || !fd) ? -ENOMEM : 0;
    if (rc)
        goto out;
    if ((rc = enter(fs)) || (rc = fd_load(fs, ino, fd)))
        goto unlock;
    if (S_ISDIR(fd->mode)) {
        rc = -EPERM;
        goto unlock;
    }
    if (fd->nlink == 0) {
        rc = -ENOENT;
        goto unlock;
    }
    if (fd->nlink >= 65000) {
        rc = -EMLINK;
        goto unlock;
    }
    if ((rc = dir_load(fs, newdir, dirfd)))
        goto unlock;
    if (is_dot(newname)) {
        rc = -EEXIST;
        goto unlock;
    }
    if ((rc = check_name(newname)))
        goto unlock;
    rc = dir_add(fs, dirfd, newname, ino, dtype_of(fd->mode));
    if (commit_for_space(fs, rc))
        rc = dir_add(fs, dirfd, newname, ino, dtype_of(fd->mode));
    if (rc)
        goto unlock;
    fd->nlink++;
    fd->ctime = dirfd->mtime = dirfd->ctime = now_ts();
    if ((rc = fd_store(fs, fd)) == 0 && (rc = fd_store(fs, dirfd)) == 0)
        rc = journal_maybe_commit(fs);
    fill_stat(fd, st);
unlock:
    UNLOCK(fs);
out:
    free(dirfd);
    free(fd);
    return rc;
}

/* As VMFS refuses to delete a running VM's disk: the last name of a file
 * another host has open for writing is neither removed nor renamed over
 * (EBUSY), which would leave that host writing to a file nobody can find.
 * A reader elsewhere keeps POSIX semantics: it reads on until it closes. */
static bool last_name_of_written_file(struct vdfs *fs, const struct vdfs_fd *fd)
{
    return S_ISREG(fd->mode) && fd->nlink <= 1 && filelock_written_elsewhere(fs, fd->ino);
}

static int remove_locked(struct vdfs *fs, uint32_t dir, const char *name, bool want_dir)
{
    struct vdfs_fd *dirfd = malloc(sizeof(*dirfd)), *fd = malloc(sizeof(*fd));
    int rc = (!dirfd || !fd) ? -ENOMEM : 0;
    uint32_t ino = 0;
    if (rc)
        goto out;
    if (strcmp(name, ".") == 0) {
        rc = want_dir ? -EINVAL : -EISDIR;
        goto out;
    }
    if (strcmp(name, "..") == 0) {
        rc = want_dir ? -ENOTEMPTY : -EISDIR;
        goto out;
    }
    if ((rc = check_name(name)) || (rc = dir_load(fs, dir, dirfd)))
        goto out;
    if ((rc = dir_lookup(fs, dir, name, &ino, NULL)) || (rc = fd_load(fs, ino, fd)))
        goto out;
    if (want_dir && !S_ISDIR(fd->mode)) {
        rc = -ENOTDIR;
        goto out;
    }
    if (!want_dir && S_ISDIR(fd->mode)) {
        rc = -EISDIR;
        goto out;
    }
    if (want_dir) {
        rc = dir_is_empty(fs, ino);
        if (rc < 0)
            goto out;
        if (rc == 0) {
            rc = -ENOTEMPTY;
            goto out;
        }
    } else if (last_name_of_written_file(fs, fd)) {
        rc = -EBUSY;
        goto out;
    }
    if ((rc = dir_remove(fs, dirfd, name)))
        goto out;
    if (want_dir)
        dirfd->nlink--;
    dirfd->mtime = dirfd->ctime = now_ts();
    if ((rc = fd_store(fs, dirfd)) == 0)
        rc = drop_link(fs, fd);
    if (rc == 0)
        rc = journal_maybe_commit(fs);
out:
    free(dirfd);
    free(fd);
    return rc;
}

int vdfs_unlink(struct vdfs *fs, uint32_t dir, const char *name)
{
    int rc = enter(fs);
    if (rc == 0)
        rc = remove_locked(fs, dir, name, false);
    UNLOCK(fs);
    return rc;
}

int vdfs_rmdir(struct vdfs *fs, uint32_t dir, const char *name)
{
    int rc = enter(fs);
    if (rc == 0)
        rc = remove_locked(fs, dir, name, true);
    UNLOCK(fs);
    return rc;
}

/* True if `ino` is `dir` or one of its ancestors. */
static int is_ancestor(struct vdfs *fs, uint32_t ino, uint32_t dir, struct vdfs_fd *scratch)
{
    for (int depth = 0; depth < 100000; depth++) {
        if (dir == ino)
            return 1;
        if (dir == fs->sb.root_ino)
            return 0;
        int rc = fd_load(fs, dir, scratch);
        if (rc)
            return rc;
        dir = scratch->parent;
    }
    return -ELOOP;
}

struct rename_state {
    struct vdfs_fd od, nd, src, dst, scratch;
};

static int rename_locked(struct vdfs *fs, uint32_t olddir, const char *oldname, uint32_t newdir,
                         const char *newname, unsigned flags, struct rename_state *s)
{
    if ((flags & VDFS_RENAME_EXCHANGE) && (flags & VDFS_RENAME_NOREPLACE))
        return -EINVAL;
    if (flags & ~(VDFS_RENAME_EXCHANGE | VDFS_RENAME_NOREPLACE))
        return -EINVAL;
    if (is_dot(oldname) || is_dot(newname))
        return -EBUSY;
    int rc;
    if ((rc = check_name(oldname)) || (rc = check_name(newname)))
        return rc;
    if ((rc = dir_load(fs, olddir, &s->od)))
        return rc;
    struct vdfs_fd *nd = &s->od;
    if (newdir != olddir) {
        if ((rc = dir_load(fs, newdir, &s->nd)))
            return rc;
        nd = &s->nd;
    }
    uint32_t src_ino, dst_ino = 0;
    if ((rc = dir_lookup(fs, olddir, oldname, &src_ino, NULL)) || (rc = fd_load(fs, src_ino, &s->src)))
        return rc;
    rc = dir_lookup(fs, newdir, newname, &dst_ino, NULL);
    if (rc && rc != -ENOENT)
        return rc;
    bool dst_exists = rc == 0;
    if (dst_exists && (rc = fd_load(fs, dst_ino, &s->dst)))
        return rc;
    bool src_dir = S_ISDIR(s->src.mode);
    bool dst_dir = dst_exists && S_ISDIR(s->dst.mode);
    struct vdfs_timespec now = now_ts();

    if (flags & VDFS_RENAME_EXCHANGE) {
        if (!dst_exists)
            return -ENOENT;
        if (src_ino == dst_ino)
            return 0;
        /* Neither may end up inside itself. */
        if (src_dir && newdir != olddir && (rc = is_ancestor(fs, src_ino, newdir, &s->scratch)) != 0)
            return rc < 0 ? rc : -EINVAL;
        if (dst_dir && newdir != olddir && (rc = is_ancestor(fs, dst_ino, olddir, &s->scratch)) != 0)
            return rc < 0 ? rc : -EINVAL;
        if ((rc = dir_set_entry(fs, &s->od, oldname, dst_ino, dtype_of(s->dst.mode))) ||
            (rc = dir_set_entry(fs, nd, newname, src_ino, dtype_of(s->src.mode))))
            return rc;
        if (newdir != olddir) {
            if (src_dir) {
                s->src.parent = newdir;
                s->od.nlink--;
                nd->nlink++;
            }
            if (dst_dir) {
                s->dst.parent = olddir;
                nd->nlink--;
                s->od.nlink++;
            }
        }
        s->src.ctime = s->dst.ctime = now;
        s->od.mtime = s->od.ctime = nd->mtime = nd->ctime = now;
        if ((rc = fd_store(fs, &s->src)) || (rc = fd_store(fs, &s->dst)) || (rc = fd_store(fs, &s->od)))
            return rc;
        return nd != &s->od ? fd_store(fs, nd) : 0;
    }

    if (dst_exists) {
        if (flags & VDFS_RENAME_NOREPLACE)
            return -EEXIST;
        if (src_ino == dst_ino)
            return 0;
        if (src_dir && !dst_dir)
            return -ENOTDIR;
        if (!src_dir && dst_dir)
            return -EISDIR;
        if (dst_dir) {
            rc = dir_is_empty(fs, dst_ino);
            if (rc < 0)
                return rc;
            if (rc == 0)
                return -ENOTEMPTY;
        } else if (last_name_of_written_file(fs, &s->dst)) {
            return -EBUSY;
        }
    }
    if (src_dir && newdir != olddir) {
        rc = is_ancestor(fs, src_ino, newdir, &s->scratch);
        if (rc)
            return rc < 0 ? rc : -EINVAL;
    }
    if (dst_exists)
        rc = dir_set_entry(fs, nd, newname, src_ino, dtype_of(s->src.mode));
    else
        rc = dir_add(fs, nd, newname, src_ino, dtype_of(s->src.mode));
    if (rc)
        return rc;
    if ((rc = dir_remove(fs, &s->od, oldname)))
        return rc;
    if (src_dir && newdir != olddir) {
        s->src.parent = newdir;
        s->od.nlink--;
        nd->nlink++;
    }
    if (dst_dir)
        nd->nlink--;
    s->src.ctime = now;
    s->od.mtime = s->od.ctime = nd->mtime = nd->ctime = now;
    if ((rc = fd_store(fs, &s->src)) || (rc = fd_store(fs, &s->od)))
        return rc;
    if (nd != &s->od && (rc = fd_store(fs, nd)))
        return rc;
    if (dst_exists)
        rc = drop_link(fs, &s->dst);
    return rc;
}

int vdfs_rename(struct vdfs *fs, uint32_t olddir, const char *oldname, uint32_t newdir, const char *newname,
                unsigned flags)
{
    struct rename_state *s = malloc(sizeof(*s));
    if (!s)
        return -ENOMEM;
    int rc = enter(fs);
    if (rc == 0)
        rc = rename_locked(fs, olddir, oldname, newdir, newname, flags, s);
    if (rc == 0)
        rc = journal_maybe_commit(fs);
    UNLOCK(fs);
    free(s);
    return rc;
}

static int truncate_allowed(struct vdfs *fs, uint32_t ino)
{
    struct open_file *o = open_file_find(fs, ino);
    if (o && o->lock_mode == VDFS_LOCK_MULTI_WRITER)
        return 0;
    return filelock_held_elsewhere(fs, ino) ? -EBUSY : 0;
}

int vdfs_setattr(struct vdfs *fs, uint32_t ino, const struct vdfs_setattr *sa, struct vdfs_stat *st)
{
    int rc;
    struct vdfs_fd *fd = fd_begin_drained(fs, ino, &rc);
    if (!fd)
        return rc;
    struct vdfs_timespec now = now_ts();
    if (rc)
        goto out;
    if (sa->valid & VDFS_SET_MODE)
        fd->mode = (fd->mode & S_IFMT) | (sa->mode & 07777);
    if (sa->valid & VDFS_SET_UID)
        fd->uid = sa->uid;
    if (sa->valid & VDFS_SET_GID)
        fd->gid = sa->gid;
    if (sa->valid & VDFS_SET_SIZE) {
        if (S_ISDIR(fd->mode)) {
            rc = -EISDIR;
            goto out;
        }
        if (!S_ISREG(fd->mode)) {
            rc = -EINVAL;
            goto out;
        }
        /* A truncate (open with O_TRUNC arrives as one before the open)
         * must not destroy a file another host has open: a running VM's
         * disk.  Multi-writer sharers may truncate. */
        if (sa->size > filemap_max_size(fs)) {
            rc = -EFBIG;
            goto out;
        }
        if ((rc = truncate_allowed(fs, ino)))
            goto out;
        if ((rc = filemap_truncate(fs, fd, sa->size)))
            goto out;
        fd->size = sa->size;
        fd->mtime = now;
    }
    if (sa->valid & VDFS_SET_ATIME)
        fd->atime = from_timespec(sa->atime);
    if (sa->valid & VDFS_SET_ATIME_NOW)
        fd->atime = now;
    if (sa->valid & VDFS_SET_MTIME)
        fd->mtime = from_timespec(sa->mtime);
    if (sa->valid & VDFS_SET_MTIME_NOW)
        fd->mtime = now;
    fd->ctime = (sa->valid & VDFS_SET_CTIME) ? from_timespec(sa->ctime) : now;
    if ((rc = fd_store(fs, fd)) == 0)
        rc = journal_maybe_commit(fs);
    fill_stat(fd, st);
out:
    fd_end(fs, fd);
    return rc;
}

int vdfs_open(struct vdfs *fs, uint32_t ino, int flags)
{
    int rc;
    struct vdfs_fd *fd = fd_begin(fs, ino, &rc);
    if (!fd)
        return rc;
    if (rc == 0 && (flags & O_ACCMODE) != O_RDONLY && fs->readonly)
        rc = -EROFS;
    if (rc == 0) {
        struct open_file *o = open_file_find(fs, ino);
        bool fresh = o == NULL;
        if (fresh) {
            o = calloc(1, sizeof(*o));
            if (!o)
                rc = -ENOMEM;
            else
                o->ino = ino;
        }
        /* Directories and special files carry no file lock: only data
         * files are opened for exclusive use (a VM disk). */
        if (rc == 0 && S_ISREG(fd->mode)) {
            int lrc = filelock_open(fs, ino, flags, &o->lock_mode);
            if (lrc)
                rc = lrc;
        }
        if (rc == 0) {
            if (fresh) {
                o->ino_gen = fd->ino_gen;
                o->next = fs->open_files;
                fs->open_files = o;
            }
            o->count++;
            if ((flags & O_ACCMODE) != O_RDONLY)
                o->writers++;
        } else if (fresh) {
            open_file_free(o);
        }
    }
    fd_end(fs, fd);
    return rc;
}

int vdfs_release(struct vdfs *fs, uint32_t ino, int flags)
{
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    if (!fd)
        return -ENOMEM;
    expect_clear();
    pthread_mutex_lock(&fs->lock);
    int rc = 0;
    io_wait_idle(fs, ino);
    struct open_file **pp = &fs->open_files;
    while (*pp && (*pp)->ino != ino)
        pp = &(*pp)->next;
    if (*pp) {
        struct open_file *o = *pp;
        if ((flags & O_ACCMODE) != O_RDONLY && o->writers)
            o->writers--;
        if (--o->count == 0) {
            *pp = o->next;
            uint32_t gen = o->ino_gen;
            bool locked = o->lock_mode != 0;
            open_file_free(o);
            /* File-lock records change only under the metadata lock (a
             * host fenced by a failed write still holds it, and gives
             * the record back when it abandons the volume). */
            if (locked && (atomic_load(&fs->mlock_held) || (rc = cluster_hold(fs)) == 0))
                rc = filelock_close(fs, ino);
            /* The last close of an unlinked file frees it, unless another
             * host still has it open (that host frees it on its close). */
            if (rc == 0 && !fs->readonly && (rc = cluster_hold(fs)) == 0 && fd_load(fs, ino, fd) == 0 &&
                fd->ino_gen == gen && fd->nlink == 0 && !filelock_held_elsewhere(fs, ino)) {
                rc = destroy_fd(fs, fd);
                if (rc == 0)
                    rc = journal_maybe_commit(fs);
            }
        }
    }
    UNLOCK(fs);
    free(fd);
    return rc;
}

/* The change itself; stores the descriptor whatever happened. */
static int fallocate_locked(struct vdfs *fs, struct vdfs_fd *fd, int mode, uint64_t off, uint64_t len)
{
    int rc = 0;
    uint64_t end = off + len;
    uint64_t old_size = fd->size;
    if (mode & FALLOC_FL_PUNCH_HOLE) {
        rc = filemap_punch(fs, fd, off, end < fd->size ? end : fd->size);
    } else if (mode & FALLOC_FL_ZERO_RANGE) {
        if (end > fd->size && !(mode & FALLOC_FL_KEEP_SIZE) && (rc = filemap_truncate(fs, fd, end)) == 0)
            fd->size = end;
        if (rc == 0)
            rc = filemap_punch(fs, fd, off, end < fd->size ? end : fd->size);
    } else {
        if (end > fd->size && !(mode & FALLOC_FL_KEEP_SIZE)) {
            if ((rc = filemap_truncate(fs, fd, end)) == 0)
                fd->size = end;
        }
        if (rc == 0)
            rc = filemap_fallocate(fs, fd, off, end);
    }
    if (rc && fd->size != old_size) {
        /* A failed fallocate (ENOSPC part-way) leaves the size as it was,
         * and gives back what it allocated past it. */
        filemap_truncate(fs, fd, old_size);
        fd->size = old_size;
    }
    if (rc == 0) {
        fd->ctime = now_ts();
        if (!(mode & FALLOC_FL_KEEP_SIZE) || (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)))
            fd->mtime = fd->ctime;
    }
    int src = fd_store(fs, fd);
    return rc ? rc : src;
}

int vdfs_fallocate(struct vdfs *fs, uint32_t ino, int mode, uint64_t off, uint64_t len)
{
    if (len == 0)
        return -EINVAL;
    if (off + len < off || (!(mode & FALLOC_FL_PUNCH_HOLE) && off + len > filemap_max_size(fs)))
        return -EFBIG;
    int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
    if (mode & ~known)
        return -EOPNOTSUPP;
    if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
        return -EOPNOTSUPP;
    if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE))
        return -EOPNOTSUPP;
    int rc;
    struct vdfs_fd *fd = fd_begin_drained(fs, ino, &rc);
    if (!fd)
        return rc;
    if (rc == 0 && S_ISDIR(fd->mode))
        rc = -EISDIR;
    else if (rc == 0 && !S_ISREG(fd->mode))
        rc = -ENODEV;
    /* Like a truncate: not the blocks of a file another host has open. */
    if (rc == 0)
        rc = truncate_allowed(fs, ino);
    if (rc == 0)
        rc = fallocate_locked(fs, fd, mode, off, len);
    if (commit_for_space(fs, rc))
        rc = fallocate_locked(fs, fd, mode, off, len);
    if (rc == 0)
        rc = journal_maybe_commit(fs);
    fd_end(fs, fd);
    return rc;
}

int64_t vdfs_lseek(struct vdfs *fs, uint32_t ino, uint64_t off, int whence)
{
    if (whence != SEEK_DATA && whence != SEEK_HOLE)
        return -EINVAL;
    int err;
    struct vdfs_fd *fd = fd_begin(fs, ino, &err);
    if (!fd)
        return err;
    int64_t rc = err;
    if (rc == 0)
        rc = filemap_seek(fs, fd, off, whence);
    fd_end(fs, fd);
    return rc;
}

struct readdir_ctx {
    vdfs_readdir_fn fn;
    void *ctx;
};

static int readdir_entry(void *ctx, const char *name, size_t len, uint32_t ino, uint8_t type, uint64_t next)
{
    struct readdir_ctx *r = ctx;
    char buf[VDFS_NAME_MAX + 1];
    memcpy(buf, name, len);
    buf[len] = 0;
    return r->fn(r->ctx, buf, ino, DTTOIF(type), next + 2);
}

int vdfs_readdir(struct vdfs *fs, uint32_t dir, uint64_t cookie, vdfs_readdir_fn fn, void *ctx)
{
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    if (!fd)
        return -ENOMEM;
    int rc = enter(fs);
    if (rc == 0)
        rc = dir_load(fs, dir, fd);
    if (rc == 0 && cookie == 0 && fn(ctx, ".", fd->ino, S_IFDIR, 1))
        goto out;
    if (rc == 0 && cookie <= 1 && fn(ctx, "..", fd->parent, S_IFDIR, 2))
        goto out;
    if (rc == 0) {
        struct readdir_ctx r = {fn, ctx};
        rc = dir_iterate(fs, dir, cookie >= 2 ? cookie - 2 : 0, readdir_entry, &r);
    }
out:
    UNLOCK(fs);
    free(fd);
    return rc;
}

static int xattr_op(struct vdfs *fs, uint32_t ino, const char *name, const void *value, size_t size, int flags,
                    bool remove)
{
    int rc;
    struct vdfs_fd *fd = fd_begin(fs, ino, &rc);
    if (!fd)
        return rc;
    if (rc == 0)
        rc = remove ? xattr_remove(fd, name) : xattr_set(fd, name, value, size, flags);
    if (rc == 0) {
        fd->ctime = now_ts();
        rc = fd_store(fs, fd);
    }
    if (rc == 0)
        rc = journal_maybe_commit(fs);
    fd_end(fs, fd);
    return rc;
}

int vdfs_setxattr(struct vdfs *fs, uint32_t ino, const char *name, const void *value, size_t size, int flags)
{
    return xattr_op(fs, ino, name, value, size, flags, false);
}

int vdfs_removexattr(struct vdfs *fs, uint32_t ino, const char *name)
{
    return xattr_op(fs, ino, name, NULL, 0, 0, true);
}

ssize_t vdfs_getxattr(struct vdfs *fs, uint32_t ino, const char *name, void *value, size_t size)
{
    int err;
    struct vdfs_fd *fd = fd_begin(fs, ino, &err);
    if (!fd)
        return err;
    ssize_t rc = err;
    if (rc == 0)
        rc = xattr_get(fd, name, value, size);
    fd_end(fs, fd);
    return rc;
}

ssize_t vdfs_listxattr(struct vdfs *fs, uint32_t ino, char *list, size_t size)
{
    int err;
    struct vdfs_fd *fd = fd_begin(fs, ino, &err);
    if (!fd)
        return err;
    ssize_t rc = err;
    if (rc == 0)
        rc = xattr_list(fd, list, size);
    fd_end(fs, fd);
    return rc;
}

int vdfs_map(struct vdfs *fs, uint32_t ino, vdfs_map_fn fn, void *ctx)
{
    int rc;
    struct vdfs_fd *fd = fd_begin(fs, ino, &rc);
    if (!fd)
        return rc;
    if (rc == 0)
        rc = filemap_walk(fs, fd, fn, ctx);
    fd_end(fs, fd);
    return rc;
}
