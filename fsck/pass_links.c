/* Pass 5: connectivity and link counts.  Descriptors no directory names
 * (and directory trees cut off from the root) go to lost+found as "#ino";
 * then every link count and directory parent field is compared with what
 * the tree says. */
#include <dirent.h>
#include <stdio.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fsck.h"

static const char *type_word(uint8_t dtype)
{
    switch (dtype) {
    case DT_DIR: return "directory";
    case DT_REG: return "file";
    case DT_LNK: return "symlink";
    default: return "special file";
    }
}

/* Finds the kept entry naming directory `t` and removes it. */
static void drop_kept_edge(struct fsck *f, uint32_t t)
{
    for (size_t i = 0; i < f->nedges; i++) {
        if (f->edges[i].target == t && f->inos[t].parent == f->edges[i].dir) {
            fsck_remove_entry(f, f->edges[i].dir, f->edges[i].block, t);
            f->inos[f->edges[i].dir].subdirs--;
            f->edges[i].target = 0; /* never matches a child again */
            break;
        }
    }
    f->inos[t].flags &= (uint16_t)~INO_HAS_PARENT;
}

static bool lost_found_ready(struct fsck *f)
{
    uint32_t lf = f->sb.lostfound_ino, root = f->sb.root_ino;
    struct fsck_ino *in = &f->inos[lf];
    char obj[32];
    snprintf(obj, sizeof(obj), "ino %u", lf);
    if (in->state == INO_OK && in->dtype == DT_DIR) {
        if (in->flags & INO_REACHED)
            return true;
        fsck_problem(f, "lostfound_unlinked", obj, 0, true,
                     "lost+found (ino %u) is not reachable from the root; linking it into the root", lf);
        if (in->flags & INO_HAS_PARENT)
            drop_kept_edge(f, lf);
    } else if (in->state != INO_OK) {
        fsck_problem(f, "lostfound_missing", obj, 0, true, "lost+found (ino %u) is missing; recreating it", lf);
        if (fsck_make_dir(f, lf, root, 0700) < 0) {
            fsck_problem_unfixed(f);
            return false;
        }
    } else {
        fsck_problem(f, "lostfound_type", obj, 0, false,
                     "descriptor %u (lost+found) is not a directory; orphans cannot be reconnected", lf);
        return false;
    }
    if (fsck_dir_add(f, root, "lost+found", lf, DT_DIR) < 0) {
        fsck_problem_unfixed(f);
        return false;
    }
    in->parent = root;
    in->flags |= INO_HAS_PARENT | INO_RECONNECTED;
    f->inos[root].subdirs++;
    fsck_reach_from(f, lf);
    return true;
}

static void reconnect(struct fsck *f, uint32_t ino, bool lf_ok)
{
    uint32_t lf = f->sb.lostfound_ino;
    struct fsck_ino *in = &f->inos[ino];
    char name[16];
    snprintf(name, sizeof(name), "#%u", ino);
    if (!lf_ok || fsck_dir_add(f, lf, name, ino, in->dtype) < 0) {
        fsck_problem_unfixed(f);
        /* Still walk the tree below it, so its subdirectories are not
         * reported again one by one. */
        if (in->dtype == DT_DIR)
            fsck_reach_from(f, ino);
        return;
    }
    if (in->dtype == DT_DIR) {
        in->parent = lf;
        in->flags |= INO_HAS_PARENT | INO_RECONNECTED;
        f->inos[lf].subdirs++;
        fsck_reach_from(f, ino);
    } else {
        in->links++;
    }
}

/* The top of the unreachable tree holding `ino`; *loop when its parent
 * chain is a cycle, in which case the returned directory is on it. */
static uint32_t tree_top(struct fsck *f, uint32_t ino, bool *loop)
{
    uint32_t cur = ino;
    *loop = false;
    for (;;) {
        f->inos[cur].flags |= INO_CHASE;
        if (!(f->inos[cur].flags & INO_HAS_PARENT))
            return cur;
        uint32_t p = f->inos[cur].parent;
        if (f->inos[p].flags & INO_REACHED)
            return cur;
        if (f->inos[p].flags & INO_CHASE) {
            *loop = true;
            return cur;
        }
        cur = p;
    }
}

int fsck_pass_links(struct fsck *f)
{
    fsck_pass_begin(f, FSCK_PASS_LINKS);
    uint32_t root = f->sb.root_ino, lf = f->sb.lostfound_ino;
    bool lf_ok = lost_found_ready(f);
    for (uint32_t ino = 1; ino < f->nino && !fsck_cancelled(f); ino++) {
        struct fsck_ino *in = &f->inos[ino];
        if (in->state != INO_OK || ino == root || ino == lf)
            continue;
        char obj[32];
        snprintf(obj, sizeof(obj), "ino %u", ino);
        if (in->dtype == DT_DIR) {
            if (in->flags & INO_REACHED)
                continue;
            bool loop;
            uint32_t top = tree_top(f, ino, &loop);
            if (loop) {
                fsck_problem(f, "dir_loop", obj, 0, true,
                             "directory %u is in a loop of directories cut off from the root; moving it to lost+found as "
                             "'#%u'",
                             top, top);
                drop_kept_edge(f, top);
            } else {
                fsck_problem(f, "orphan", obj, vdfs_fd_addr(&f->sb, top), true,
                             "orphan directory %u is not reachable from the root; moving it to lost+found as '#%u'", top,
                             top);
            }
            reconnect(f, top, lf_ok);
        } else if (in->links == 0) {
            fsck_problem(f, "orphan", obj, vdfs_fd_addr(&f->sb, ino), true,
                         "orphan descriptor %u (%s) is named by no directory; moving it to lost+found as '#%u'", ino,
                         type_word(in->dtype), ino);
            reconnect(f, ino, lf_ok);
        }
    }
    for (uint32_t ino = 1; ino < f->nino && !fsck_cancelled(f); ino++) {
        struct fsck_ino *in = &f->inos[ino];
        in->flags &= (uint16_t)~INO_CHASE;
        if (in->state != INO_OK)
            continue;
        bool dir = in->dtype == DT_DIR;
        uint32_t want_links = dir ? 2 + in->subdirs : in->links;
        uint32_t want_parent = ino == root ? root : in->parent;
        bool fix_links = false, fix_parent = false;
        char obj[32];
        snprintf(obj, sizeof(obj), "ino %u", ino);
        if (in->nlink != want_links && (dir || in->links > 0))
            fix_links = fsck_problem(f, "nlink", obj, vdfs_fd_addr(&f->sb, ino), true,
                                     "descriptor %u (%s) has link count %u, should be %u; fixing", ino,
                                     type_word(in->dtype), in->nlink, want_links);
        if (dir && (in->flags & (INO_REACHED)) && in->disk_parent != want_parent) {
            if (in->flags & INO_RECONNECTED)
                fix_parent = f->opt.fix; /* part of the reconnection fix */
            else
                fix_parent = fsck_problem(f, "dir_parent", obj, vdfs_fd_addr(&f->sb, ino), true,
                                          "directory %u has parent %u, should be %u; fixing", ino, in->disk_parent,
                                          want_parent);
        }
        if (!fix_links && !fix_parent)
            continue;
        struct vdfs_fd *fd = malloc(sizeof(*fd));
        if (fd && fsck_fd_load(f, ino, fd) == 0) {
            if (fix_links)
                fd->nlink = want_links;
            if (fix_parent)
                fd->parent = want_parent;
            fsck_fd_store(f, fd);
        }
        free(fd);
    }
    return 0;
}
