/* Runs the passes in order on an opened device. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsck.h"

static bool stop(struct fsck *f)
{
    return f->operational_error || fsck_cancelled(f);
}

static void done(struct fsck *f, int pass)
{
    f->pass_done[pass] = true;
}

int fsck_run(struct fsck *f)
{
    if (!f->opt.json)
        printf("fsck.vdfs %s: %s\n", f->path,
               f->opt.fix ? "checking and repairing" : "checking only (read-only: no changes will be made; -y repairs)");
    if (fsck_pass_super(f) == 0)
        done(f, FSCK_PASS_SUPER);
    if (stop(f))
        goto out;
    if (fsck_pass_hosts(f) == 0)
        done(f, FSCK_PASS_HOSTS);
    if (stop(f))
        goto out;
    /* Only now, with no host mounted, is a damaged superblock copy
     * reported and rewritten. */
    fsck_super_repair(f);
    if (stop(f))
        goto out;
    fsck_pass_journal(f);
    done(f, FSCK_PASS_JOURNAL);
    if (stop(f))
        goto out;
    f->nino = (uint32_t)f->sb.region[VDFS_RT_FD].count;
    f->inos = calloc(f->nino, sizeof(*f->inos));
    if (!f->inos || fsck_load_bitmaps(f) < 0) {
        fsck_error(f, "out of memory for %u descriptors", f->nino);
        f->operational_error = true;
        goto out;
    }
    int (*const passes[])(struct fsck *) = {fsck_pass_files, fsck_pass_dirs, fsck_pass_links, fsck_pass_bitmaps};
    for (int i = 0; i < 4; i++) {
        passes[i](f);
        if (fsck_cancelled(f))
            goto out;
        done(f, FSCK_PASS_FILES + i);
    }
out:
    if (f->opt.fix && f->dev && vdfs_dev_flush(f->dev) < 0) {
        fsck_error(f, "flush failed");
        f->operational_error = true;
    }
    return fsck_exit_code(f);
}

void fsck_free(struct fsck *f)
{
    for (unsigned r = 0; r < VDFS_RT_COUNT; r++) {
        free(f->rs[r].bits);
        free(f->rs[r].disk);
        free(f->rs[r].ref);
        free(f->rs[r].owner);
        free(f->rs[r].clusters);
    }
    free(f->inos);
    free(f->edges);
    free(f->dups);
    for (size_t i = 0; i < f->nproblems; i++) {
        free(f->problems[i].object);
        free(f->problems[i].message);
    }
    free(f->problems);
    memset(f, 0, sizeof(*f));
}
