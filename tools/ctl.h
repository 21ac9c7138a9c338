/* Shared pieces of vdfsctl's commands. */
#ifndef VDFSCTL_H
#define VDFSCTL_H

#include <stdbool.h>
#include <stdint.h>

#include "vdfs.h"

struct ctl {
    const char *image;
    bool json;
    bool recursive;
    bool parents;
    bool long_format;
    bool quiet;
    bool thick; /* truncate: reserve the blocks (lazy-zeroed thick) */
};

int ctl_put(struct vdfs *fs, const struct ctl *c, const char *local, const char *path);
int ctl_get(struct vdfs *fs, const struct ctl *c, const char *path, const char *local);
int ctl_digest(struct vdfs *fs, const struct ctl *c, const char *path);
/* "20G", "512M", "4096": bytes, with K, M, G, T, P, E (optionally KiB or
 * KB, all powers of 1024). -EINVAL or -ERANGE. */
int ctl_parse_size(const char *text, uint64_t *out);
int ctl_truncate(struct vdfs *fs, const struct ctl *c, const char *path, uint64_t size);
int ctl_cp(struct vdfs *fs, const struct ctl *c, const char *from, const char *to);
/* Grows the datastore to `size` bytes, extending an image file first;
 * 0 means the device's or file's size. */
int ctl_grow(struct vdfs *fs, const struct ctl *c, uint64_t size);
/* Prints the datastore's label (`label` NULL), or sets it. */
int ctl_label(struct vdfs *fs, const struct ctl *c, const char *label);
/* "1.5 GiB". */
void ctl_human(uint64_t v, char *out, size_t n);
/* Whether n bytes at p are all zero: such blocks are not written, so that
 * copies stay thin. */
bool ctl_all_zero(const uint8_t *p, size_t n);
/* Splits "a/b/c" into parent ino of "a/b" and the last name. */
int ctl_parent(struct vdfs *fs, const char *path, uint32_t *parent, const char **name);
void ctl_json_string(const char *s);

/* A directory's names, collected by vdfs_readdir before any other library
 * call: readdir's callback runs under the volume lock. */
struct ctl_names {
    char **names;
    size_t n, cap;
};
int ctl_collect_name(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next);

/* Files with several links met during one tree copy (hardlinks.c), keyed
 * by (a, b): the local (st_dev, st_ino), or the datastore ino and 0.  The
 * entry holds what the first copy became: its datastore ino, or its local
 * path. */
struct hardlink {
    uint64_t a, b;
    uint32_t ino;
    char *path;
    bool used;
};
struct hardlinks {
    struct hardlink *slots;
    size_t cap, n;
};
struct hardlink *hardlinks_find(struct hardlinks *h, uint64_t a, uint64_t b);
int hardlinks_add(struct hardlinks *h, uint64_t a, uint64_t b, uint32_t ino, const char *path);
void hardlinks_free(struct hardlinks *h);

#endif
