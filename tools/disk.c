/* vdfsctl truncate and cp: making, growing and cloning files (VM disks)
 * inside the datastore, as vmkfstools -c, -X and -i do on ESXi. A new or
 * grown file is thin, or with --thick has its blocks reserved and reading
 * as zeros (lazy-zeroed thick); a copy takes space only for the source's
 * data, never for its holes or its blocks of zeros. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "device.h"
#include "progress.h"

#define COPY_CHUNK (8u << 20)

int ctl_parse_size(const char *text, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*text))
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno)
        return -ERANGE;
    static const char units[] = "KMGTPE";
    unsigned shift = 0;
    if (*end) {
        const char *u = strchr(units, *end);
        if (!u)
            return -EINVAL;
        shift = 10u * (unsigned)(u - units + 1);
        end++;
        if (!strcmp(end, "iB") || !strcmp(end, "B"))
            end += strlen(end);
        if (*end)
            return -EINVAL;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

static void report_locked(struct vdfs *fs, uint32_t ino, const char *path, int rc)
{
    char host[256];
    if (rc == -EBUSY && vdfs_lock_holder(fs, ino, host, sizeof(host)) == 1)
        fprintf(stderr, "vdfsctl: %s is locked by host %s\n", path, host);
}

int ctl_truncate(struct vdfs *fs, const struct ctl *c, const char *path, uint64_t size)
{
    uint32_t parent = 0;
    const char *name = NULL;
    struct vdfs_stat st;
    bool created = false;
    int rc = vdfs_resolve(fs, path, true, &st);
    if (rc == 0 && !S_ISREG(st.mode)) {
        rc = S_ISDIR(st.mode) ? -EISDIR : -EINVAL;
    } else if (rc == -ENOENT && (rc = ctl_parent(fs, path, &parent, &name)) == 0) {
        struct vdfs_cred cred = {getuid(), getgid()};
        rc = vdfs_create(fs, parent, name, S_IFREG | 0644, 0, &cred, &st);
        created = rc == 0;
    }
    if (rc) {
        fprintf(stderr, "vdfsctl: truncate %s: %s\n", path, vdfs_strerror(rc));
        return rc;
    }
    rc = vdfs_open(fs, st.ino, O_WRONLY);
    if (rc) {
        report_locked(fs, st.ino, path, rc);
        fprintf(stderr, "vdfsctl: truncate %s: %s\n", path, vdfs_strerror(rc));
        return rc;
    }
    struct vdfs_setattr sa = {.valid = VDFS_SET_SIZE, .size = size};
    /* fallocate without KEEP_SIZE reserves the range and sets the size. */
    if (c->thick && size > st.size)
        rc = vdfs_fallocate(fs, st.ino, 0, 0, size);
    else
        rc = vdfs_setattr(fs, st.ino, &sa, NULL);
    if (rc == 0 && c->thick && size <= st.size && size > 0)
        rc = vdfs_fallocate(fs, st.ino, 0, 0, size);
    int rrc = vdfs_release(fs, st.ino, O_WRONLY);
    rc = rc ? rc : rrc;
    if (rc) {
        fprintf(stderr, "vdfsctl: truncate %s to %llu bytes: %s\n", path, (unsigned long long)size,
                vdfs_strerror(rc));
        if (created)
            vdfs_unlink(fs, parent, name);
    }
    return rc;
}

/* The data of `from` into `to` (both open; `to` empty): only the source's
 * data ranges are read, and only their blocks that are not all zeros are
 * written. */
static int copy_data(struct vdfs *fs, uint32_t from, uint32_t to, uint64_t size, struct progress *p)
{
    uint8_t *buf = vdfs_aligned_alloc(COPY_CHUNK);
    if (!buf)
        return -ENOMEM;
    uint32_t bs = vdfs_block_size(fs);
    int rc = 0;
    uint64_t off = 0;
    while (rc == 0 && off < size) {
        int64_t data = vdfs_lseek(fs, from, off, SEEK_DATA);
        if (data == -ENXIO)
            break;
        int64_t hole = data < 0 ? data : vdfs_lseek(fs, from, (uint64_t)data, SEEK_HOLE);
        if (hole < 0) {
            rc = (int)hole;
            break;
        }
        progress_advance(p, (uint64_t)data - off);
        for (off = (uint64_t)data; rc == 0 && off < (uint64_t)hole;) {
            size_t want = (uint64_t)hole - off < COPY_CHUNK ? (size_t)((uint64_t)hole - off) : COPY_CHUNK;
            ssize_t n = vdfs_pread(fs, from, buf, want, off);
            if (n <= 0) {
                rc = n < 0 ? (int)n : -EIO;
                break;
            }
            for (size_t pos = 0; rc == 0 && pos < (size_t)n;) {
                size_t len = (size_t)n - pos < bs ? (size_t)n - pos : bs;
                if (!ctl_all_zero(buf + pos, len)) {
                    ssize_t w = vdfs_pwrite(fs, to, buf + pos, len, off + pos);
                    rc = w < 0 ? (int)w : (size_t)w < len ? -EIO : 0;
                }
                pos += len;
            }
            off += (uint64_t)n;
            progress_advance(p, (uint64_t)n);
        }
    }
    vdfs_aligned_free(buf);
    return rc;
}

static int copy_xattrs(struct vdfs *fs, uint32_t from, uint32_t to)
{
    char *names = malloc(XATTR_LIST_MAX), *value = malloc(XATTR_SIZE_MAX);
    ssize_t len = names && value ? vdfs_listxattr(fs, from, names, XATTR_LIST_MAX) : -ENOMEM;
    int rc = len < 0 ? (int)len : 0;
    for (ssize_t at = 0; rc == 0 && at < len; at += (ssize_t)strlen(names + at) + 1) {
        ssize_t n = vdfs_getxattr(fs, from, names + at, value, XATTR_SIZE_MAX);
        rc = n < 0 ? (int)n : vdfs_setxattr(fs, to, names + at, value, (size_t)n, 0);
    }
    free(names);
    free(value);
    return rc;
}

/* Regular file `src` into a new or emptied file `name` of directory
 * `parent`. Both are opened as any reader and writer would be, so a file
 * a running VM has open for writing is neither read half-written nor
 * overwritten. */
static int copy_file(struct vdfs *fs, const struct ctl *c, const struct vdfs_stat *src, const char *from_path,
                     uint32_t parent, const char *name, const char *to_path)
{
    struct vdfs_stat dst;
    int rc = vdfs_lookup(fs, parent, name, &dst);
    bool created = false;
    if (rc == 0 && dst.ino == src->ino) {
        fprintf(stderr, "vdfsctl: cp: %s and %s are the same file\n", from_path, to_path);
        return -EINVAL;
    }
    if (rc == 0 && !S_ISREG(dst.mode))
        rc = -EEXIST;
    if (rc == -ENOENT) {
        struct vdfs_cred cred = {src->uid, src->gid};
        rc = vdfs_create(fs, parent, name, S_IFREG | (src->mode & 07777), 0, &cred, &dst);
        created = rc == 0;
    }
    if (rc) {
        fprintf(stderr, "vdfsctl: cp %s: %s\n", to_path, vdfs_strerror(rc));
        return rc;
    }
    rc = vdfs_open(fs, src->ino, O_RDONLY);
    if (rc) {
        report_locked(fs, src->ino, from_path, rc);
        fprintf(stderr, "vdfsctl: cp: cannot read %s: %s\n", from_path, vdfs_strerror(rc));
        if (created)
            vdfs_unlink(fs, parent, name);
        return rc;
    }
    rc = vdfs_open(fs, dst.ino, O_WRONLY);
    if (rc) {
        report_locked(fs, dst.ino, to_path, rc);
        fprintf(stderr, "vdfsctl: cp: cannot write %s: %s\n", to_path, vdfs_strerror(rc));
        vdfs_release(fs, src->ino, O_RDONLY);
        if (created)
            vdfs_unlink(fs, parent, name);
        return rc;
    }
    /* Its size now that it is open and no other host may be writing it. */
    struct vdfs_stat now;
    rc = vdfs_getattr(fs, src->ino, &now);
    struct vdfs_setattr empty = {.valid = VDFS_SET_SIZE, .size = 0};
    if (rc == 0 && !created)
        rc = vdfs_setattr(fs, dst.ino, &empty, NULL);
    struct progress p;
    progress_begin(&p, c, "cp", from_path, rc == 0 ? now.size : 0);
    if (rc == 0)
        rc = copy_data(fs, src->ino, dst.ino, now.size, &p);
    progress_end(&p);
    struct vdfs_setattr sized = {.valid = VDFS_SET_SIZE, .size = rc == 0 ? now.size : 0};
    if (rc == 0)
        rc = vdfs_setattr(fs, dst.ino, &sized, NULL);
    if (rc == 0)
        rc = copy_xattrs(fs, src->ino, dst.ino);
    int rrc = vdfs_release(fs, dst.ino, O_WRONLY);
    vdfs_release(fs, src->ino, O_RDONLY);
    rc = rc ? rc : rrc;
    if (rc) {
        fprintf(stderr, "vdfsctl: cp %s %s: %s\n", from_path, to_path, vdfs_strerror(rc));
        if (created)
            vdfs_unlink(fs, parent, name);
    }
    return rc;
}

static int copy_one(struct vdfs *fs, const struct ctl *c, struct hardlinks *links, const struct vdfs_stat *src,
                    const char *from_path, uint32_t parent, const char *name, const char *to_path);

static int copy_tree(struct vdfs *fs, const struct ctl *c, struct hardlinks *links, uint32_t from_dir,
                     const char *from_path, uint32_t to_dir, const char *to_path)
{
    struct ctl_names l = {0};
    int rc = vdfs_readdir(fs, from_dir, 0, ctl_collect_name, &l);
    rc = rc < 0 ? rc : 0;
    for (size_t i = 0; i < l.n; i++) {
        const char *child = l.names[i];
        if (rc == 0) {
            struct vdfs_stat st;
            char *from_child = malloc(strlen(from_path) + strlen(child) + 2);
            char *to_child = malloc(strlen(to_path) + strlen(child) + 2);
            rc = from_child && to_child ? vdfs_lookup(fs, from_dir, child, &st) : -ENOMEM;
            if (rc == 0) {
                sprintf(from_child, "%s/%s", from_path, child);
                sprintf(to_child, "%s/%s", to_path, child);
                rc = copy_one(fs, c, links, &st, from_child, to_dir, child, to_child);
            }
            free(from_child);
            free(to_child);
        }
        free(l.names[i]);
    }
    free(l.names);
    return rc;
}

static int copy_one(struct vdfs *fs, const struct ctl *c, struct hardlinks *links, const struct vdfs_stat *src,
                    const char *from_path, uint32_t parent, const char *name, const char *to_path)
{
    struct vdfs_stat made;
    struct vdfs_cred cred = {src->uid, src->gid};
    int rc;
    const struct hardlink *first =
        !S_ISDIR(src->mode) && src->nlink > 1 ? hardlinks_find(links, src->ino, 0) : NULL;
    if (first) {
        rc = vdfs_link(fs, first->ino, parent, name, &made);
    } else if (S_ISDIR(src->mode)) {
        if (!c->recursive) {
            fprintf(stderr, "vdfsctl: cp: %s is a directory (use -r)\n", from_path);
            return -EISDIR;
        }
        rc = vdfs_create(fs, parent, name, S_IFDIR | (src->mode & 07777), 0, &cred, &made);
        if (rc == 0)
            rc = copy_xattrs(fs, src->ino, made.ino);
        if (rc == 0)
            rc = copy_tree(fs, c, links, src->ino, from_path, made.ino, to_path);
        return rc;
    } else if (S_ISREG(src->mode)) {
        rc = copy_file(fs, c, src, from_path, parent, name, to_path);
        if (rc)
            return rc;
        rc = vdfs_lookup(fs, parent, name, &made);
    } else if (S_ISLNK(src->mode)) {
        char target[4096];
        ssize_t n = vdfs_readlink(fs, src->ino, target, sizeof(target) - 1);
        rc = n < 0 ? (int)n : 0;
        if (rc == 0) {
            target[n] = '\0';
            rc = vdfs_symlink(fs, parent, name, target, &cred, &made);
        }
    } else {
        rc = vdfs_create(fs, parent, name, src->mode, src->rdev, &cred, &made);
    }
    if (rc == 0 && !first && src->nlink > 1)
        rc = hardlinks_add(links, src->ino, 0, made.ino, NULL);
    if (rc)
        fprintf(stderr, "vdfsctl: cp %s %s: %s\n", from_path, to_path, vdfs_strerror(rc));
    return rc;
}

/* Whether directory `dir` is `ancestor` or lies below it. */
static bool inside(struct vdfs *fs, uint32_t dir, uint32_t ancestor)
{
    uint32_t root = vdfs_root_ino(fs);
    for (unsigned depth = 0; depth < 4096; depth++) {
        if (dir == ancestor)
            return true;
        struct vdfs_stat up;
        if (dir == root || vdfs_lookup(fs, dir, "..", &up) != 0)
            return false;
        dir = up.ino;
    }
    return true; /* deeper than any real tree: refuse rather than loop */
}

/* As cp(1): into TO when it is a directory, else as TO. */
int ctl_cp(struct vdfs *fs, const struct ctl *c, const char *from, const char *to)
{
    struct vdfs_stat src, st;
    int rc = vdfs_resolve(fs, from, true, &src);
    if (rc) {
        fprintf(stderr, "vdfsctl: cp %s: %s\n", from, vdfs_strerror(rc));
        return rc;
    }
    const char *base = strrchr(from, '/') ? strrchr(from, '/') + 1 : from;
    char *to_path = NULL;
    uint32_t parent;
    const char *name;
    if (vdfs_resolve(fs, to, true, &st) == 0 && S_ISDIR(st.mode)) {
        if (!*base) {
            fprintf(stderr, "vdfsctl: cp %s: name the source file, not a directory ending in /\n", from);
            return -EINVAL;
        }
        parent = st.ino;
        name = base;
        to_path = malloc(strlen(to) + strlen(base) + 2);
        if (to_path)
            sprintf(to_path, "%s/%s", to, base);
    } else {
        rc = ctl_parent(fs, to, &parent, &name);
        to_path = strdup(to);
        if (rc) {
            fprintf(stderr, "vdfsctl: cp %s: %s\n", to, vdfs_strerror(rc));
            free(to_path);
            return rc;
        }
    }
    if (!to_path)
        return -ENOMEM;
    char name_copy[256];
    snprintf(name_copy, sizeof(name_copy), "%s", name); /* ctl_parent reuses its buffer */
    struct hardlinks links = {0};
    if (S_ISDIR(src.mode) && c->recursive) {
        struct vdfs_stat existing;
        rc = vdfs_lookup(fs, parent, name_copy, &existing) == 0 ? -EEXIST
             : inside(fs, parent, src.ino)                    ? -ELOOP
                                                              : 0;
        if (rc) {
            fprintf(stderr, "vdfsctl: cp -r %s %s: %s\n", from, to_path,
                    rc == -EEXIST ? "the target exists (trees are not merged)" : "cannot copy a directory into itself");
            free(to_path);
            return rc;
        }
    }
    rc = copy_one(fs, c, &links, &src, from, parent, name_copy, to_path);
    hardlinks_free(&links);
    free(to_path);
    return rc;
}
