/* The FUSE low-level operations, each a thin translation onto libvdfs.
 * A FUSE node id is a vdfs descriptor number with the descriptor's
 * generation in its top half (the root is 1 in both), so no inode table is
 * needed and forget has nothing to do. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "vdfs_fuse.h"

#define TIMEOUT_S 1.0
#define TIMEOUT_NS 1000000000ull
#define COPY_CHUNK (1u << 20)
#define COPY_MAX (1u << 30) /* per copy_file_range request */
#define PAGE_ALIGN 4096u
#define CAPS_XATTR "security.capability"
#define NOCAP_SLOTS 4096u

static struct vdfs_fuse *vol(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static fuse_ino_t node_of(const struct vdfs_stat *vs)
{
    if (vs->ino == FUSE_ROOT_ID)
        return FUSE_ROOT_ID;
    return ((fuse_ino_t)vs->ino_gen << 32) | vs->ino;
}

static uint32_t ino_of(fuse_ino_t node)
{
    return (uint32_t)node;
}

/* Another host may free a descriptor and reuse its number while this
 * kernel still caches a name for the old file.  Requests that name a node
 * without an open handle check its generation first: ESTALE makes the
 * kernel look the name up again instead of reaching the new object.
 * Replies the error and returns false when the node is gone. */
static bool node_ok(fuse_req_t req, fuse_ino_t node)
{
    if (node == FUSE_ROOT_ID)
        return true;
    int rc = vdfs_check_generation(vol(req)->fs, ino_of(node), (uint32_t)(node >> 32));
    if (rc)
        fuse_reply_err(req, -rc);
    return rc == 0;
}

/* The kernel asks for security.capability before every write (to drop
 * it, as it drops setuid bits), and it asks while holding the inode lock,
 * so each write of a stream waits for that answer.  Through the volume
 * lock the answer waits behind whatever device I/O is running, which
 * turns a queue of writes into one at a time.  Files almost never carry
 * the attribute, so "this inode has none" is remembered for the attribute
 * timeout, like any other cached attribute, and answered without the
 * library.  A set or remove through this mount forgets it at once; a
 * change made on another host is seen within the timeout. */
struct nocap_slot {
    uint32_t ino;
    uint64_t until_ns;
};
static struct nocap_slot nocap[NOCAP_SLOTS];
static pthread_mutex_t nocap_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool nocap_known(uint32_t ino)
{
    struct nocap_slot *slot = &nocap[ino % NOCAP_SLOTS];
    pthread_mutex_lock(&nocap_lock);
    bool known = slot->ino == ino && slot->until_ns > monotonic_ns();
    pthread_mutex_unlock(&nocap_lock);
    return known;
}

static void nocap_remember(uint32_t ino, uint64_t asked_ns)
{
    struct nocap_slot *slot = &nocap[ino % NOCAP_SLOTS];
    pthread_mutex_lock(&nocap_lock);
    *slot = (struct nocap_slot){.ino = ino, .until_ns = asked_ns + TIMEOUT_NS};
    pthread_mutex_unlock(&nocap_lock);
}

static void nocap_forget(uint32_t ino)
{
    struct nocap_slot *slot = &nocap[ino % NOCAP_SLOTS];
    pthread_mutex_lock(&nocap_lock);
    if (slot->ino == ino)
        slot->until_ns = 0;
    pthread_mutex_unlock(&nocap_lock);
}

/* Each worker thread keeps one page-aligned buffer: the library's
 * O_DIRECT reads land in it without a bounce copy, and a 1 MiB read costs
 * no mmap, munmap and page faults.  Writes copy their data into it (libfuse
 * hands it over just after the request header, never aligned), which is
 * the one copy the library would otherwise make into a buffer of its own
 * allocated and freed per request. */
struct read_buf {
    void *data;
    size_t cap;
};
static pthread_key_t read_buf_key;
static bool read_buf_key_ok;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;

static void read_buf_destroy(void *p)
{
    struct read_buf *b = p;
    free(b->data);
    free(b);
}

static void read_buf_key_create(void)
{
    read_buf_key_ok = pthread_key_create(&read_buf_key, read_buf_destroy) == 0;
}

/* A buffer of at least `size` bytes owned by this thread, or NULL. */
static void *io_buffer(size_t size)
{
    pthread_once(&read_buf_once, read_buf_key_create);
    if (!read_buf_key_ok)
        return NULL;
    struct read_buf *b = pthread_getspecific(read_buf_key);
    if (!b) {
        b = calloc(1, sizeof(*b));
        if (!b || pthread_setspecific(read_buf_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    if (b->cap < size) {
        size_t cap = (size + PAGE_ALIGN - 1) & ~(size_t)(PAGE_ALIGN - 1);
        void *data;
        if (posix_memalign(&data, PAGE_ALIGN, cap) != 0)
            return NULL;
        free(b->data);
        b->data = data;
        b->cap = cap;
    }
    return b->data;
}

static void to_stat(const struct vdfs_fuse *v, const struct vdfs_stat *vs, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = vs->ino;
    st->st_mode = vs->mode;
    st->st_nlink = vs->nlink;
    st->st_uid = vs->uid;
    st->st_gid = vs->gid;
    st->st_rdev = vs->rdev;
    st->st_size = (off_t)vs->size;
    st->st_blocks = (blkcnt_t)(vs->alloc_bytes / 512);
    st->st_blksize = (blksize_t)v->block_size;
    st->st_atim = vs->atime;
    st->st_mtim = vs->mtime;
    st->st_ctim = vs->ctime;
}

static void reply_entry(fuse_req_t req, const struct vdfs_stat *vs)
{
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.ino = node_of(vs);
    e.generation = vs->ino_gen;
    to_stat(vol(req), vs, &e.attr);
    e.attr_timeout = TIMEOUT_S;
    e.entry_timeout = TIMEOUT_S;
    fuse_reply_entry(req, &e);
}

static void reply_attr(fuse_req_t req, const struct vdfs_stat *vs)
{
    struct stat st;
    to_stat(vol(req), vs, &st);
    fuse_reply_attr(req, &st, TIMEOUT_S);
}

static struct vdfs_cred caller(fuse_req_t req)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    return (struct vdfs_cred){.uid = ctx->uid, .gid = ctx->gid};
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    /* Big writes: 1 MiB, one file block, per request.  libfuse asks the
     * kernel for max_pages to match. */
    conn->max_write = 1u << 20;
    conn->max_readahead = 1u << 20;
    struct vdfs_fuse *v = userdata;
    if (v->max_background) {
        conn->max_background = v->max_background;
        conn->congestion_threshold = v->max_background * 3 / 4 ? v->max_background * 3 / 4 : 1;
    }
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    /* O_TRUNC arrives as a setattr(size 0) before open; simpler and the
     * same cost. */
    conn->want &= ~(unsigned)FUSE_CAP_ATOMIC_O_TRUNC;
}

void vdfs_fuse_unmount(struct vdfs_fuse *v)
{
    if (v->unmounted)
        return;
    int wrc = wcache_destroy(v->wc); /* held writes first: the volume is still mounted */
    v->wc = NULL;
    v->unmount_rc = vdfs_unmount(v->fs);
    if (wrc && !v->unmount_rc)
        v->unmount_rc = wrc;
    v->unmounted = true;
    v->fs = NULL;
}

static void op_destroy(void *userdata)
{
    vdfs_fuse_unmount(userdata);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!node_ok(req, parent))
        return;
    struct vdfs_stat vs;
    int rc = vdfs_lookup(vol(req)->fs, ino_of(parent), name, &vs);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_entry(req, &vs);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    removed_dir_forget(ino);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    for (size_t i = 0; i < count; i++)
        removed_dir_forget(forgets[i].ino);
    fuse_reply_none(req);
}

/* getattr checks the generation in the attributes it read, in the same
 * library call: one trip through the volume lock instead of two, and no
 * window between the check and the read. */
static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct vdfs_stat vs;
    int rc = vdfs_getattr(vol(req)->fs, ino_of(ino), &vs);
    if (rc == -ENOENT && ino != FUSE_ROOT_ID)
        rc = -ESTALE; /* freed since the kernel learnt the node, as node_ok says */
    if (rc == 0 && node_of(&vs) != ino)
        rc = -ESTALE;
    if (rc == -ESTALE && removed_dir_stat(ino, &vs))
        rc = 0; /* an open or current directory removed here: stat works, as on ext4 */
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_attr(req, &vs);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
    if (!node_ok(req, ino))
        return;
    struct vdfs_setattr sa;
    memset(&sa, 0, sizeof(sa));
    if (to_set & FUSE_SET_ATTR_MODE) {
        sa.valid |= VDFS_SET_MODE;
        sa.mode = attr->st_mode;
    }
    if (to_set & FUSE_SET_ATTR_UID) {
        sa.valid |= VDFS_SET_UID;
        sa.uid = attr->st_uid;
    }
    if (to_set & FUSE_SET_ATTR_GID) {
        sa.valid |= VDFS_SET_GID;
        sa.gid = attr->st_gid;
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
        sa.valid |= VDFS_SET_SIZE;
        sa.size = (uint64_t)attr->st_size;
    }
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
        sa.valid |= VDFS_SET_ATIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
        sa.valid |= VDFS_SET_ATIME;
        sa.atime = attr->st_atim;
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
        sa.valid |= VDFS_SET_MTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
        sa.valid |= VDFS_SET_MTIME;
        sa.mtime = attr->st_mtim;
    }
    if (to_set & FUSE_SET_ATTR_CTIME) {
        sa.valid |= VDFS_SET_CTIME;
        sa.ctime = attr->st_ctim;
    }
    struct vdfs_stat vs;
    /* Held writes go first: a truncate must not meet them later, and
     * after a chmod (setuid) or utimens the next write must reach the
     * library, which drops the bits and sets the times. */
    struct wc_inode *held;
    int rc = wcache_exclude(vol(req)->wc, ino_of(ino), &held);
    if (rc == 0)
        rc = vdfs_setattr(vol(req)->fs, ino_of(ino), &sa, &vs);
    wcache_unexclude(vol(req)->wc, held);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_attr(req, &vs);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    if (!node_ok(req, ino))
        return;
    char target[PATH_MAX + 1];
    ssize_t n = vdfs_readlink(vol(req)->fs, ino_of(ino), target, PATH_MAX);
    if (n < 0) {
        fuse_reply_err(req, (int)-n);
        return;
    }
    target[n] = 0;
    fuse_reply_readlink(req, target);
}

static void make_node(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    if (!node_ok(req, parent))
        return;
    struct vdfs_cred cred = caller(req);
    struct vdfs_stat vs;
    int rc = vdfs_create(vol(req)->fs, ino_of(parent), name, mode, (uint32_t)rdev, &cred, &vs);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_entry(req, &vs);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    make_node(req, parent, name, mode, rdev);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    make_node(req, parent, name, (mode & 07777) | S_IFDIR, 0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!node_ok(req, parent))
        return;
    fuse_reply_err(req, -vdfs_unlink(vol(req)->fs, ino_of(parent), name));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (!node_ok(req, parent))
        return;
    struct vdfs_stat before;
    bool known = vdfs_lookup(vol(req)->fs, ino_of(parent), name, &before) == 0;
    int rc = vdfs_rmdir(vol(req)->fs, ino_of(parent), name);
    if (rc == 0 && known)
        removed_dir_note(node_of(&before), &before);
    fuse_reply_err(req, -rc);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    if (!node_ok(req, parent))
        return;
    struct vdfs_cred cred = caller(req);
    struct vdfs_stat vs;
    int rc = vdfs_symlink(vol(req)->fs, ino_of(parent), name, link, &cred, &vs);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_entry(req, &vs);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
        fuse_reply_err(req, EINVAL); /* RENAME_WHITEOUT: no overlay support */
        return;
    }
    if (!node_ok(req, parent) || (newparent != parent && !node_ok(req, newparent)))
        return;
    unsigned vflags = ((flags & RENAME_NOREPLACE) ? VDFS_RENAME_NOREPLACE : 0) |
                      ((flags & RENAME_EXCHANGE) ? VDFS_RENAME_EXCHANGE : 0);
    fuse_reply_err(req, -vdfs_rename(vol(req)->fs, ino_of(parent), name, ino_of(newparent), newname, vflags));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    if (!node_ok(req, ino) || !node_ok(req, newparent))
        return;
    struct vdfs_stat vs;
    int rc = vdfs_link(vol(req)->fs, ino_of(ino), ino_of(newparent), newname, &vs);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_entry(req, &vs);
}

/* fi->fh bits: opened with direct_io; opened with O_APPEND. */
#define FH_DIRECT_IO 1u
#define FH_APPEND 2u

/* What the kernel keeps of an open file.  Its pages are dropped at open,
 * so another host's changes are seen.  O_DIRECT opens take FUSE's direct
 * path: otherwise the kernel asks for security.capability before every
 * write, under the inode lock, so a queue of writes is answered one round
 * trip at a time.  O_APPEND opens take it too, and their writes go to the
 * end the library finds: the kernel places them at the size it remembers,
 * which another host may have moved within the attribute timeout, and
 * the write would land on that host's data (and in our page cache at the
 * wrong place).  Write requests carry fh, not direct_io. */
static void set_open_reply(struct fuse_file_info *fi)
{
    fi->keep_cache = 0;
    fi->direct_io = (fi->flags & (O_DIRECT | O_APPEND)) != 0;
    fi->fh = (fi->direct_io ? FH_DIRECT_IO : 0) | (fi->flags & O_APPEND ? FH_APPEND : 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (!node_ok(req, ino))
        return;
    struct vdfs_fuse *v = vol(req);
    int rc = vdfs_open(v->fs, ino_of(ino), fi->flags);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    /* The kernel may remember a size from before another host's last
     * change for up to the attribute timeout; reads would stop at it and
     * SEEK_END land on it.  Once its attributes are invalid, a read past
     * that size and SEEK_END ask for them afresh.  Only the attributes
     * (offset -1): no page is locked, so this cannot wait on the open. */
    if (vdfs_others_may_write(v->fs))
        fuse_lowlevel_notify_inval_inode(v->se, ino, -1, 0);
    set_open_reply(fi);
    if (fuse_reply_open(req, fi) == -ENOENT) /* the opener was interrupted */
        vdfs_release(vol(req)->fs, ino_of(ino), fi->flags);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
    if (!node_ok(req, parent))
        return;
    struct vdfs_fuse *v = vol(req);
    struct vdfs_cred cred = caller(req);
    struct vdfs_stat vs;
    int rc = vdfs_create(v->fs, ino_of(parent), name, (mode & 07777) | S_IFREG, 0, &cred, &vs);
    if (rc == 0)
        rc = vdfs_open(v->fs, vs.ino, fi->flags);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof(e));
    e.ino = node_of(&vs);
    e.generation = vs.ino_gen;
    to_stat(v, &vs, &e.attr);
    e.attr_timeout = TIMEOUT_S;
    e.entry_timeout = TIMEOUT_S;
    set_open_reply(fi);
    if (fuse_reply_create(req, &e, fi) == -ENOENT)
        vdfs_release(v->fs, vs.ino, fi->flags);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    void *buf = io_buffer(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    ssize_t n = wcache_read(vol(req)->wc, ino_of(ino), buf, size, (uint64_t)off);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
}

static int drop_caps_on_write(struct vdfs *fs, uint32_t ino);

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    struct vdfs_fuse *v = vol(req);
    if (fi->fh & FH_DIRECT_IO) {
        int krc = drop_caps_on_write(v->fs, ino_of(ino));
        if (krc) {
            fuse_reply_err(req, -krc);
            return;
        }
    }
    /* fcntl(F_SETFL) may have cleared O_APPEND since the open. */
    bool append = (fi->fh & FH_APPEND) && (fi->flags & O_APPEND);
    int held = append ? 0 : wcache_write(v->wc, ino_of(ino), buf, size, (uint64_t)off);
    if (held) {
        if (held < 0)
            fuse_reply_err(req, -held);
        else
            fuse_reply_write(req, size);
        return;
    }
    const void *data = buf;
    if ((uintptr_t)buf % PAGE_ALIGN) {
        void *aligned = io_buffer(size ? size : 1);
        if (aligned) {
            memcpy(aligned, buf, size);
            data = aligned;
        }
    }
    ssize_t n = vdfs_pwrite(v->fs, ino_of(ino), data, size, append ? VDFS_APPEND : (uint64_t)off);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_write(req, (size_t)n);
}

/* close(2): held writes go to the device, and a write-back error is
 * the close's error. */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, -wcache_flush(vol(req)->wc, ino_of(ino)));
}

/* Held writes reach the device before the file's lock can go to another
 * host. */
static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    int wrc = wcache_flush(vol(req)->wc, ino_of(ino));
    int rc = vdfs_release(vol(req)->fs, ino_of(ino), fi->flags);
    fuse_reply_err(req, -(rc ? rc : wrc));
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    int wrc = wcache_flush(vol(req)->wc, ino_of(ino));
    int rc = vdfs_fsync(vol(req)->fs, ino_of(ino), datasync != 0);
    fuse_reply_err(req, -(wrc ? wrc : rc));
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct dir_snapshot *snap = NULL;
    struct vdfs_stat gone;
    /* node_ok's check, but a working directory removed here still opens,
     * and lists nothing, as on a local file system. */
    int rc = ino == FUSE_ROOT_ID ? 0 : vdfs_check_generation(vol(req)->fs, ino_of(ino), (uint32_t)(ino >> 32));
    if ((rc == -ESTALE || rc == -ENOENT) && removed_dir_stat(ino, &gone)) {
        snap = calloc(1, sizeof(*snap));
        rc = snap ? 0 : -ENOMEM;
    } else if (rc == 0) {
        rc = dir_snapshot_take(vol(req)->fs, ino_of(ino), &snap);
    }
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)snap;
    if (fuse_reply_open(req, fi) == -ENOENT)
        dir_snapshot_free(snap);
}

/* Fills one reply buffer from the snapshot, starting at index `off`. */
static void reply_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
    struct dir_snapshot *snap = (struct dir_snapshot *)(uintptr_t)fi->fh;
    struct vdfs_fuse *v = vol(req);
    /* Offsets index the copy, so it stays as it was; but a listing read
     * again from the start (rewinddir) shows the directory as it is now. */
    int rc = 0;
    if (off == 0 && snap->served) {
        struct vdfs_stat now;
        int live = vdfs_getattr(v->fs, ino_of(ino), &now);
        if (live == -ENOENT || (live == 0 && node_of(&now) != ino))
            dir_snapshot_clear(snap); /* removed since: it lists nothing, as on ext4 */
        else
            rc = live ? live : dir_snapshot_refresh(v->fs, ino_of(ino), snap);
    }
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used = 0;
    for (size_t i = off < 0 ? 0 : (size_t)off; i < snap->count; i++) {
        const struct dir_entry *d = &snap->entries[i];
        size_t len;
        if (plus) {
            struct fuse_entry_param e;
            memset(&e, 0, sizeof(e));
            struct vdfs_stat vs;
            bool dot = strcmp(d->name, ".") == 0 || strcmp(d->name, "..") == 0;
            /* The kernel links (and counts a lookup for) every named entry
             * but the dots, so the name is looked up now: the snapshot's
             * descriptor may have been freed and reused (by another host)
             * since opendir.  An entry gone since then is listed bare. */
            if (!dot && vdfs_lookup(v->fs, ino_of(ino), d->name, &vs) == 0) {
                e.ino = node_of(&vs);
                e.generation = vs.ino_gen;
                to_stat(v, &vs, &e.attr);
                e.attr_timeout = TIMEOUT_S;
                e.entry_timeout = TIMEOUT_S;
            } else {
                e.attr.st_ino = d->ino;
                e.attr.st_mode = d->mode;
            }
            len = fuse_add_direntry_plus(req, buf + used, size - used, d->name, &e, (off_t)(i + 1));
        } else {
            struct stat st;
            memset(&st, 0, sizeof(st));
            st.st_ino = d->ino;
            st.st_mode = d->mode;
            len = fuse_add_direntry(req, buf + used, size - used, d->name, &st, (off_t)(i + 1));
        }
        if (len > size - used)
            break;
        used += len;
    }
    snap->served |= used > 0;
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    reply_dir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    reply_dir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    dir_snapshot_free((struct dir_snapshot *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    fuse_reply_err(req, -vdfs_fsync(vol(req)->fs, ino_of(ino), datasync != 0));
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct vdfs_statfs sf;
    int rc = vdfs_statfs(vol(req)->fs, &sf);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    struct statvfs st;
    memset(&st, 0, sizeof(st));
    /* Counted in sub-blocks, so that df's used space takes in small
     * files and directories, as du does. */
    uint64_t per_block = sf.block_size / sf.subblock_size;
    st.f_bsize = sf.block_size;
    st.f_frsize = sf.subblock_size;
    st.f_blocks = sf.total_blocks * per_block + sf.total_subblocks;
    st.f_bfree = sf.free_blocks * per_block + sf.free_subblocks;
    st.f_bavail = st.f_bfree;
    st.f_files = sf.total_files;
    st.f_ffree = sf.free_files;
    st.f_favail = sf.free_files;
    st.f_namemax = sf.name_max;
    fuse_reply_statfs(req, &st);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
                        int flags)
{
    if (!node_ok(req, ino))
        return;
    int vflags = ((flags & XATTR_CREATE) ? VDFS_XATTR_CREATE : 0) | ((flags & XATTR_REPLACE) ? VDFS_XATTR_REPLACE : 0);
    nocap_forget(ino_of(ino));
    fuse_reply_err(req, -vdfs_setxattr(vol(req)->fs, ino_of(ino), name, value, size, vflags));
}

/* getxattr and listxattr share the FUSE protocol: size 0 asks for the size. */
static void reply_xattr(fuse_req_t req, size_t size, ssize_t (*get)(struct vdfs *, uint32_t, const char *, char *, size_t),
                        fuse_ino_t ino, const char *name)
{
    if (!node_ok(req, ino))
        return;
    char *buf = size ? malloc(size) : NULL;
    if (size && !buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    ssize_t n = get(vol(req)->fs, ino_of(ino), name, buf, size);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

static ssize_t get_value(struct vdfs *fs, uint32_t ino, const char *name, char *buf, size_t size)
{
    return vdfs_getxattr(fs, ino, name, buf, size);
}

static ssize_t get_names(struct vdfs *fs, uint32_t ino, const char *name, char *buf, size_t size)
{
    return vdfs_listxattr(fs, ino, buf, size);
}

/* security.capability through the library, remembering its absence. */
static ssize_t get_caps(struct vdfs *fs, uint32_t ino, const char *name, char *buf, size_t size)
{
    uint64_t asked_ns = monotonic_ns();
    ssize_t n = vdfs_getxattr(fs, ino, name, buf, size);
    if (n == -ENODATA)
        nocap_remember(ino, asked_ns);
    return n;
}

/* A direct_io write (an O_DIRECT open) skips the kernel's
 * file_remove_privs, so security.capability is dropped here as it would
 * drop it; the setuid and setgid bits are dropped by the library on every
 * write. */
static int drop_caps_on_write(struct vdfs *fs, uint32_t ino)
{
    if (nocap_known(ino))
        return 0;
    ssize_t n = get_caps(fs, ino, CAPS_XATTR, NULL, 0);
    if (n == -ENODATA)
        return 0;
    if (n < 0)
        return (int)n;
    nocap_forget(ino);
    int rc = vdfs_removexattr(fs, ino, CAPS_XATTR);
    return rc == -ENODATA ? 0 : rc;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    bool caps = strcmp(name, CAPS_XATTR) == 0;
    if (caps && nocap_known(ino_of(ino))) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    reply_xattr(req, size, caps ? get_caps : get_value, ino, name);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    reply_xattr(req, size, get_names, ino, NULL);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    if (!node_ok(req, ino))
        return;
    nocap_forget(ino_of(ino));
    fuse_reply_err(req, -vdfs_removexattr(vol(req)->fs, ino_of(ino), name));
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
    if (offset < 0 || length <= 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    struct wc_inode *held;
    int rc = wcache_exclude(vol(req)->wc, ino_of(ino), &held);
    if (rc == 0)
        rc = vdfs_fallocate(vol(req)->fs, ino_of(ino), mode, (uint64_t)offset, (uint64_t)length);
    wcache_unexclude(vol(req)->wc, held);
    fuse_reply_err(req, -rc);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    int64_t pos = vdfs_lseek(vol(req)->fs, ino_of(ino), (uint64_t)off, whence);
    if (pos < 0)
        fuse_reply_err(req, (int)-pos);
    else
        fuse_reply_lseek(req, (off_t)pos);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in,
                               fuse_ino_t ino_out, off_t off_out, struct fuse_file_info *fi_out, size_t len,
                               int flags)
{
    struct vdfs *fs = vol(req)->fs;
    if (off_in < 0 || off_out < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    /* The reply carries the count in 32 bits: copy less (the caller loops,
     * as for any short copy), never more than it can be told. */
    if (len > COPY_MAX)
        len = COPY_MAX;
    size_t chunk = len < COPY_CHUNK ? len : COPY_CHUNK;
    char *buf = malloc(chunk ? chunk : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* Both files' held writes go first; the copy itself goes through. */
    struct wc_inode *held = NULL;
    wcache_write_back(vol(req)->wc, ino_of(ino_in));
    int werr = wcache_exclude(vol(req)->wc, ino_of(ino_out), &held);
    if (werr) {
        free(buf);
        fuse_reply_err(req, -werr);
        return;
    }
    size_t done = 0;
    int err = 0;
    while (done < len) {
        size_t want = len - done < chunk ? len - done : chunk;
        ssize_t got = vdfs_pread(fs, ino_of(ino_in), buf, want, (uint64_t)off_in + done);
        if (got <= 0) {
            err = got < 0 ? (int)-got : 0;
            break;
        }
        ssize_t put = vdfs_pwrite(fs, ino_of(ino_out), buf, (size_t)got, (uint64_t)off_out + done);
        if (put < 0) {
            err = (int)-put;
            break;
        }
        done += (size_t)put;
        if (put < got)
            break;
    }
    wcache_unexclude(vol(req)->wc, held);
    free(buf);
    /* Like write(2): a partial copy reports what was copied. */
    if (done == 0 && err)
        fuse_reply_err(req, err);
    else
        fuse_reply_write(req, done);
}

const struct fuse_lowlevel_ops vdfs_fuse_ops = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .fallocate = op_fallocate,
    .lseek = op_lseek,
    .copy_file_range = op_copy_file_range,
};
