/* Directory listings copied at opendir: readdir offsets are indices into
 * the copy, so they stay valid while the directory changes underneath. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vdfs_fuse.h"

struct collect_ctx {
    struct dir_snapshot *snap;
    int err;
};

static int collect_entry(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next_cookie)
{
    struct collect_ctx *c = ctx;
    struct dir_snapshot *s = c->snap;
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        struct dir_entry *grown = realloc(s->entries, cap * sizeof(*grown));
        if (!grown) {
            c->err = -ENOMEM;
            return 1;
        }
        s->entries = grown;
        s->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        c->err = -ENOMEM;
        return 1;
    }
    s->entries[s->count++] = (struct dir_entry){.name = copy, .ino = ino, .mode = mode};
    return 0;
}

int dir_snapshot_take(struct vdfs *fs, uint32_t dir, struct dir_snapshot **out)
{
    struct dir_snapshot *snap = calloc(1, sizeof(*snap));
    if (!snap)
        return -ENOMEM;
    struct collect_ctx c = {.snap = snap, .err = 0};
    int rc = vdfs_readdir(fs, dir, 0, collect_entry, &c);
    if (rc == 0)
        rc = c.err;
    if (rc) {
        dir_snapshot_free(snap);
        return rc;
    }
    *out = snap;
    return 0;
}

static void entries_free(struct dir_snapshot *snap)
{
    for (size_t i = 0; i < snap->count; i++)
        free(snap->entries[i].name);
    free(snap->entries);
}

int dir_snapshot_refresh(struct vdfs *fs, uint32_t dir, struct dir_snapshot *snap)
{
    struct dir_snapshot *now;
    int rc = dir_snapshot_take(fs, dir, &now);
    if (rc)
        return rc;
    entries_free(snap);
    *snap = *now;
    free(now);
    return 0;
}

void dir_snapshot_clear(struct dir_snapshot *snap)
{
    entries_free(snap);
    snap->entries = NULL;
    snap->count = snap->cap = 0;
}

void dir_snapshot_free(struct dir_snapshot *snap)
{
    if (!snap)
        return;
    entries_free(snap);
    free(snap);
}
