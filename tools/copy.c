/* vdfsctl put and get: copying files and trees between the host and the
 * datastore, keeping holes as holes, hard links as links, and extended
 * attributes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ctl.h"
#include "device.h"
#include "progress.h"

#define COPY_CHUNK (8u << 20)
/* The largest extended attribute value, or list of names, Linux has. */
#define XATTR_BUF XATTR_SIZE_MAX

/* One put or get: the options, the hard links met so far, and whether an
 * extended attribute could not be copied (said at once; the copy goes on
 * and the command fails at the end, as cp -a does). */
struct copy {
    const struct ctl *c;
    struct hardlinks links;
    bool xattr_lost;
};

static void xattr_lost(struct copy *cp, const char *what, const char *name, int err)
{
    fprintf(stderr, "vdfsctl: %s: extended attribute %s not copied: %s\n", what, name, vdfs_strerror(err));
    cp->xattr_lost = true;
}

/* A local file's extended attributes onto datastore file `ino`. */
static int put_xattrs(struct vdfs *fs, struct copy *cp, const char *local, uint32_t ino)
{
    char *names = malloc(XATTR_BUF), *value = malloc(XATTR_BUF);
    ssize_t len = names && value ? llistxattr(local, names, XATTR_BUF) : -1;
    int rc = names && value ? 0 : -ENOMEM;
    if (rc == 0 && len < 0 && errno != ENOTSUP)
        xattr_lost(cp, local, "list", -errno);
    for (ssize_t at = 0; rc == 0 && at < len; at += (ssize_t)strlen(names + at) + 1) {
        const char *name = names + at;
        ssize_t n = lgetxattr(local, name, value, XATTR_BUF);
        int xrc = n < 0 ? -errno : vdfs_setxattr(fs, ino, name, value, (size_t)n, 0);
        if (xrc == -ENOMEM || xrc == -EIO)
            rc = xrc;
        else if (xrc)
            xattr_lost(cp, local, name, xrc);
    }
    free(names);
    free(value);
    return rc;
}

/* Datastore file `ino`'s extended attributes onto a local file. */
static int get_xattrs(struct vdfs *fs, struct copy *cp, uint32_t ino, const char *local)
{
    char *names = malloc(XATTR_BUF), *value = malloc(XATTR_BUF);
    ssize_t len = names && value ? vdfs_listxattr(fs, ino, names, XATTR_BUF) : -ENOMEM;
    int rc = len < 0 ? (int)len : 0;
    for (ssize_t at = 0; rc == 0 && at < len; at += (ssize_t)strlen(names + at) + 1) {
        const char *name = names + at;
        ssize_t n = vdfs_getxattr(fs, ino, name, value, XATTR_BUF);
        if (n < 0)
            rc = (int)n;
        else if (lsetxattr(local, name, value, (size_t)n, 0) != 0)
            xattr_lost(cp, local, name, -errno);
    }
    free(names);
    free(value);
    return rc;
}

bool ctl_all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static int put_file(struct vdfs *fs, const struct ctl *c, int src, const struct stat *sst, uint32_t ino,
                    const char *what)
{
    uint8_t *buf = vdfs_aligned_alloc(COPY_CHUNK);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    uint64_t off = 0, size = (uint64_t)sst->st_size;
    uint32_t bs = vdfs_block_size(fs);
    struct progress p;
    progress_begin(&p, c, "put", what, size);
    while (off < size) {
        /* Skip the source's holes so that a thin file stays thin. */
        off_t data = lseek(src, (off_t)off, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break;
        if (data > (off_t)off && (uint64_t)data / bs * bs > off) {
            progress_advance(&p, (uint64_t)data / bs * bs - off);
            off = (uint64_t)data / bs * bs;
        }
        size_t want = size - off < COPY_CHUNK ? (size_t)(size - off) : COPY_CHUNK;
        ssize_t n = pread(src, buf, want, (off_t)off);
        if (n < 0) {
            rc = -errno;
            fprintf(stderr, "vdfsctl: reading %s: %s\n", what, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        /* Whole zero blocks are not written: they read as zeros anyway. */
        size_t pos = 0;
        while (pos < (size_t)n) {
            size_t len = (size_t)n - pos < bs ? (size_t)n - pos : bs;
            size_t run = 0;
            while (pos + run < (size_t)n && !ctl_all_zero(buf + pos + run, len)) {
                run += len;
                len = (size_t)n - pos - run < bs ? (size_t)n - pos - run : bs;
            }
            if (run) {
                ssize_t w = vdfs_pwrite(fs, ino, buf + pos, run, off + pos);
                if (w < 0) {
                    rc = (int)w;
                    fprintf(stderr, "vdfsctl: writing %s into the datastore: %s\n", what, vdfs_strerror(rc));
                    goto out;
                }
                pos += run;
            } else {
                pos += len;
            }
        }
        off += (uint64_t)n;
        progress_advance(&p, (uint64_t)n);
    }
    if (rc == 0) {
        struct vdfs_setattr sa = {.valid = VDFS_SET_SIZE | VDFS_SET_MTIME | VDFS_SET_ATIME,
                                  .size = size,
                                  .mtime = sst->st_mtim,
                                  .atime = sst->st_atim};
        rc = vdfs_setattr(fs, ino, &sa, NULL);
    }
out:
    progress_end(&p);
    vdfs_aligned_free(buf);
    return rc;
}

static int put_one(struct vdfs *fs, struct copy *cp, const char *local, uint32_t parent, const char *name);

static int put_tree(struct vdfs *fs, struct copy *cp, const char *local, uint32_t dir)
{
    DIR *d = opendir(local);
    if (!d) {
        fprintf(stderr, "vdfsctl: %s: %s\n", local, strerror(errno));
        return -errno;
    }
    int rc = 0;
    struct dirent *e;
    char *child = malloc(PATH_MAX);
    while (rc == 0 && child && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(child, PATH_MAX, "%s/%s", local, e->d_name);
        rc = put_one(fs, cp, child, dir, e->d_name);
    }
    free(child);
    closedir(d);
    return rc;
}

/* Another name of a file already copied in as `ino`: a link to it, in
 * place of whatever non-directory had that name. */
static int put_link(struct vdfs *fs, uint32_t ino, uint32_t parent, const char *name)
{
    struct vdfs_stat vs;
    int rc = vdfs_link(fs, ino, parent, name, &vs);
    if (rc != -EEXIST || (rc = vdfs_lookup(fs, parent, name, &vs)) != 0)
        return rc;
    if (vs.ino == ino)
        return 0;
    if (S_ISDIR(vs.mode))
        return -EEXIST;
    rc = vdfs_unlink(fs, parent, name);
    return rc ? rc : vdfs_link(fs, ino, parent, name, &vs);
}

static int put_one(struct vdfs *fs, struct copy *cp, const char *local, uint32_t parent, const char *name)
{
    struct stat st;
    if (lstat(local, &st) != 0) {
        fprintf(stderr, "vdfsctl: %s: %s\n", local, strerror(errno));
        return -errno;
    }
    struct vdfs_cred cred = {st.st_uid, st.st_gid};
    struct vdfs_stat vs;
    int rc;
    bool linked = !S_ISDIR(st.st_mode) && st.st_nlink > 1;
    const struct hardlink *first = linked ? hardlinks_find(&cp->links, st.st_dev, st.st_ino) : NULL;
    if (first) {
        rc = put_link(fs, first->ino, parent, name);
    } else if (S_ISDIR(st.st_mode)) {
        if (!cp->c->recursive) {
            fprintf(stderr, "vdfsctl: %s is a directory (use -r)\n", local);
            return -EISDIR;
        }
        rc = vdfs_create(fs, parent, name, S_IFDIR | (st.st_mode & 07777), 0, &cred, &vs);
        if (rc == -EEXIST)
            rc = vdfs_lookup(fs, parent, name, &vs);
        if (rc == 0)
            rc = put_tree(fs, cp, local, vs.ino);
    } else if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(local, target, sizeof(target) - 1);
        if (n < 0)
            return -errno;
        target[n] = 0;
        rc = vdfs_symlink(fs, parent, name, target, &cred, &vs);
    } else if (S_ISREG(st.st_mode)) {
        int src = open(local, O_RDONLY | O_CLOEXEC);
        if (src < 0) {
            fprintf(stderr, "vdfsctl: %s: %s\n", local, strerror(errno));
            return -errno;
        }
        rc = vdfs_lookup(fs, parent, name, &vs);
        bool existed = rc == 0 && S_ISREG(vs.mode);
        if (rc == -ENOENT)
            rc = vdfs_create(fs, parent, name, S_IFREG | (st.st_mode & 07777), 0, &cred, &vs);
        else if (rc == 0 && !existed)
            rc = -EEXIST;
        /* Opened for write like any writer: a file another host has open
         * (a running VM's disk) is refused, never overwritten. */
        if (rc == 0) {
            rc = vdfs_open(fs, vs.ino, O_WRONLY);
            if (rc == -EBUSY) {
                char host[256];
                if (vdfs_lock_holder(fs, vs.ino, host, sizeof(host)) == 1)
                    fprintf(stderr, "vdfsctl: %s is locked by host %s\n", name, host);
                close(src);
                return rc;
            }
            if (rc == 0) {
                if (existed) {
                    struct vdfs_setattr sa = {.valid = VDFS_SET_SIZE, .size = 0};
                    rc = vdfs_setattr(fs, vs.ino, &sa, NULL);
                }
                if (rc == 0)
                    rc = put_file(fs, cp->c, src, &st, vs.ino, local);
                int rrc = vdfs_release(fs, vs.ino, O_WRONLY);
                if (rc == 0)
                    rc = rrc;
            }
        }
        close(src);
    } else {
        rc = vdfs_create(fs, parent, name, st.st_mode, (uint32_t)st.st_rdev, &cred, &vs);
    }
    if (rc == 0 && !first && !S_ISLNK(st.st_mode))
        rc = put_xattrs(fs, cp, local, vs.ino);
    if (rc == 0 && linked && !first)
        rc = hardlinks_add(&cp->links, st.st_dev, st.st_ino, vs.ino, NULL);
    if (rc && rc != -ENOSPC && rc != -EIO)
        fprintf(stderr, "vdfsctl: %s -> %s: %s\n", local, name, vdfs_strerror(rc));
    else if (rc)
        fprintf(stderr, "vdfsctl: %s: %s\n", local, vdfs_strerror(rc));
    return rc;
}

/* The result of a whole copy: its first error, else -ENOTSUP when some
 * extended attribute could not be copied. */
static int copy_end(struct copy *cp, int rc)
{
    hardlinks_free(&cp->links);
    return rc ? rc : cp->xattr_lost ? -ENOTSUP : 0;
}

static int put_named(struct vdfs *fs, struct copy *cp, const char *local, const char *path)
{
    struct vdfs_stat st;
    const char *base = strrchr(local, '/');
    base = base ? base + 1 : local;
    /* "put x /dir" puts into /dir when it is a directory. */
    if (vdfs_resolve(fs, path, true, &st) == 0 && S_ISDIR(st.mode)) {
        if (!*base) {
            fprintf(stderr, "vdfsctl: cannot name %s inside %s\n", local, path);
            return -EINVAL;
        }
        return put_one(fs, cp, local, st.ino, base);
    }
    uint32_t parent;
    const char *name;
    int rc = ctl_parent(fs, path, &parent, &name);
    if (rc) {
        fprintf(stderr, "vdfsctl: %s: %s\n", path, vdfs_strerror(rc));
        return rc;
    }
    return put_one(fs, cp, local, parent, name);
}

int ctl_put(struct vdfs *fs, const struct ctl *c, const char *local, const char *path)
{
    struct copy cp = {.c = c};
    return copy_end(&cp, put_named(fs, &cp, local, path));
}

static int get_file(struct vdfs *fs, const struct ctl *c, const struct vdfs_stat *st, int dst, const char *what)
{
    uint8_t *buf = vdfs_aligned_alloc(COPY_CHUNK);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    struct progress p;
    progress_begin(&p, c, "get", what, st->size);
    bool seekable = lseek(dst, 0, SEEK_CUR) >= 0;
    for (uint64_t off = 0; off < st->size;) {
        if (seekable) {
            int64_t data = vdfs_lseek(fs, st->ino, off, SEEK_DATA);
            if (data == -ENXIO)
                break;
            if (data > (int64_t)off) {
                progress_advance(&p, (uint64_t)data - off);
                off = (uint64_t)data;
                continue;
            }
        }
        size_t want = st->size - off < COPY_CHUNK ? (size_t)(st->size - off) : COPY_CHUNK;
        if (seekable) {
            int64_t hole = vdfs_lseek(fs, st->ino, off, SEEK_HOLE);
            if (hole > (int64_t)off && (uint64_t)hole - off < want)
                want = (size_t)((uint64_t)hole - off);
        }
        ssize_t n = vdfs_pread(fs, st->ino, buf, want, off);
        if (n <= 0) {
            rc = n ? (int)n : -EIO;
            fprintf(stderr, "vdfsctl: reading %s: %s\n", what, vdfs_strerror(rc));
            break;
        }
        size_t pos = 0;
        while (pos < (size_t)n) {
            ssize_t w = seekable ? pwrite(dst, buf + pos, (size_t)n - pos, (off_t)(off + pos))
                                 : write(dst, buf + pos, (size_t)n - pos);
            if (w < 0) {
                rc = -errno;
                fprintf(stderr, "vdfsctl: writing: %s\n", strerror(errno));
                goto out;
            }
            pos += (size_t)w;
        }
        off += (uint64_t)n;
        progress_advance(&p, (uint64_t)n);
    }
    if (rc == 0 && seekable && ftruncate(dst, (off_t)st->size) != 0)
        rc = -errno;
out:
    progress_end(&p);
    vdfs_aligned_free(buf);
    return rc;
}

int ctl_collect_name(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next)
{
    struct ctl_names *l = ctx;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **more = realloc(l->names, cap * sizeof(*more));
        if (!more)
            return -ENOMEM;
        l->names = more;
        l->cap = cap;
    }
    l->names[l->n] = strdup(name);
    return l->names[l->n++] ? 0 : -ENOMEM;
}

static int get_one(struct vdfs *fs, struct copy *cp, const struct vdfs_stat *st, const char *local)
{
    int rc = 0;
    bool to_stdout = strcmp(local, "-") == 0;
    bool linked = !S_ISDIR(st->mode) && st->nlink > 1 && !to_stdout;
    const struct hardlink *first = linked ? hardlinks_find(&cp->links, st->ino, 0) : NULL;
    if (first) {
        /* Another name of a file already copied out: a link to that copy. */
        if ((unlink(local) != 0 && errno != ENOENT) || link(first->path, local) != 0) {
            fprintf(stderr, "vdfsctl: link %s to %s: %s\n", local, first->path, strerror(errno));
            return -errno;
        }
        return 0;
    }
    if (S_ISDIR(st->mode)) {
        if (mkdir(local, st->mode & 07777) != 0 && errno != EEXIST) {
            fprintf(stderr, "vdfsctl: mkdir %s: %s\n", local, strerror(errno));
            return -errno;
        }
        struct ctl_names l = {0};
        rc = vdfs_readdir(fs, st->ino, 0, ctl_collect_name, &l);
        char *child = malloc(PATH_MAX);
        for (size_t i = 0; i < l.n; i++) {
            struct vdfs_stat cs;
            if (rc == 0 && child) {
                snprintf(child, PATH_MAX, "%s/%s", local, l.names[i]);
                rc = vdfs_lookup(fs, st->ino, l.names[i], &cs);
                if (rc == 0)
                    rc = get_one(fs, cp, &cs, child);
            }
            free(l.names[i]);
        }
        free(l.names);
        free(child);
    } else if (S_ISLNK(st->mode)) {
        char target[4097];
        ssize_t n = vdfs_readlink(fs, st->ino, target, sizeof(target) - 1);
        if (n < 0)
            return (int)n;
        target[n] = 0;
        unlink(local);
        if (symlink(target, local) != 0)
            rc = -errno;
    } else if (S_ISREG(st->mode)) {
        int dst = to_stdout ? STDOUT_FILENO : open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st->mode & 07777);
        if (dst < 0) {
            fprintf(stderr, "vdfsctl: %s: %s\n", local, strerror(errno));
            return -errno;
        }
        rc = get_file(fs, cp->c, st, dst, local);
        if (dst != STDOUT_FILENO && close(dst) != 0 && rc == 0)
            rc = -errno;
    } else {
        if (mknod(local, st->mode, st->rdev) != 0 && errno != EEXIST)
            rc = -errno;
    }
    if (rc == 0 && !to_stdout && !S_ISLNK(st->mode)) {
        rc = get_xattrs(fs, cp, st->ino, local);
        struct timespec times[2] = {st->atime, st->mtime};
        utimensat(AT_FDCWD, local, times, 0);
    }
    if (rc == 0 && linked)
        rc = hardlinks_add(&cp->links, st->ino, 0, 0, local);
    return rc;
}

int ctl_get(struct vdfs *fs, const struct ctl *c, const char *path, const char *local)
{
    struct vdfs_stat st;
    int rc = vdfs_resolve(fs, path, true, &st);
    if (rc) {
        fprintf(stderr, "vdfsctl: %s: %s\n", path, vdfs_strerror(rc));
        return rc;
    }
    if (S_ISDIR(st.mode) && !c->recursive) {
        fprintf(stderr, "vdfsctl: %s is a directory (use -r)\n", path);
        return -EISDIR;
    }
    struct copy cp = {.c = c};
    return copy_end(&cp, get_one(fs, &cp, &st, local));
}
