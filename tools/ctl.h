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
};

int ctl_put(struct vdfs *fs, const struct ctl *c, const char *local, const char *path);
int ctl_get(struct vdfs *fs, const struct ctl *c, const char *path, const char *local);
int ctl_digest(struct vdfs *fs, const struct ctl *c, const char *path);
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

#endif
