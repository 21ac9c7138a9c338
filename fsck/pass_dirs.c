/* Pass 4: directory blocks and entries, and which entry names each
 * directory.  Every directory is read in descriptor order (so orphaned
 * ones are checked too); the tree is then walked from the root with an
 * explicit queue, never recursion, so depth costs no stack. */
#include <dirent.h>
#include <stdio.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "fsck.h"

static void printable_name(const struct vdfs_dirent *e, char *out, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < e->name_len && n + 5 < len; i++) {
        uint8_t c = e->name[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, len - n, "\\x%02x", c);
    }
    out[n] = '\0';
}

static void push_edge(struct fsck *f, uint32_t dir, uint32_t target, uint32_t block)
{
    if (f->nedges == f->edges_cap) {
        size_t cap = f->edges_cap ? f->edges_cap * 2 : 256;
        struct fsck_dir_edge *n = realloc(f->edges, cap * sizeof(*n));
        if (!n) {
            f->operational_error = true;
            return;
        }
        f->edges = n;
        f->edges_cap = cap;
    }
    f->edges[f->nedges++] = (struct fsck_dir_edge){dir, target, block};
}

/* The names seen so far in one directory, to find a name given twice
 * (the library's lookups would see one of them, readdir both). */
struct name_set {
    char **slots; /* open addressing; each name is [len][bytes] */
    size_t cap, count;
    bool failed; /* out of memory: duplicates go unchecked */
};

static bool name_set_grow(struct name_set *s)
{
    size_t cap = s->cap ? s->cap * 2 : 64;
    char **slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return false;
    for (size_t i = 0; i < s->cap; i++) {
        char *n = s->slots[i];
        if (!n)
            continue;
        size_t at = XXH3_64bits(n + 1, (uint8_t)n[0]) & (cap - 1);
        while (slots[at])
            at = (at + 1) & (cap - 1);
        slots[at] = n;
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return true;
}

/* True when `name` was already in the set; adds it otherwise. */
static bool name_set_seen(struct name_set *s, const uint8_t *name, uint8_t len)
{
    if (s->failed || ((s->count + 1) * 2 > s->cap && !name_set_grow(s))) {
        s->failed = true;
        return false;
    }
    size_t at = XXH3_64bits(name, len) & (s->cap - 1);
    for (char *n; (n = s->slots[at]); at = (at + 1) & (s->cap - 1))
        if ((uint8_t)n[0] == len && memcmp(n + 1, name, len) == 0)
            return true;
    char *n = malloc((size_t)len + 1);
    if (!n) {
        s->failed = true;
        return false;
    }
    n[0] = (char)len;
    memcpy(n + 1, name, len);
    s->slots[at] = n;
    s->count++;
    return false;
}

static void name_set_free(struct name_set *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
}

/* Checks the entries of one block; true if it changed. */
static bool check_entries(struct fsck *f, uint32_t dir, uint32_t block, struct vdfs_dirblock *d, uint64_t addr,
                          struct name_set *names)
{
    bool changed = false;
    uint16_t pos = 0;
    struct vdfs_dirent e;
    char obj[32], name[4 * VDFS_NAME_MAX + 1];
    snprintf(obj, sizeof(obj), "ino %u", dir);
    while (vdfs_dirent_next(d, &pos, &e)) {
        uint32_t t = e.ino;
        printable_name(&e, name, sizeof(name));
        bool drop = true;
        if (t == 0 || t >= f->nino)
            fsck_problem(f, "dirent_range", obj, addr, true,
                         "entry '%s' in directory %u points to descriptor %u, out of range; removing it", name, dir, t);
        else if (f->inos[t].state != INO_OK)
            fsck_problem(f, "dirent_free", obj, addr, true,
                         "entry '%s' in directory %u points to free descriptor %u; removing it", name, dir, t);
        else if (t == f->sb.root_ino)
            fsck_problem(f, "dirent_root", obj, addr, true,
                         "entry '%s' in directory %u names the root directory; removing it", name, dir);
        else if (t == dir)
            fsck_problem(f, "dirent_self", obj, addr, true, "entry '%s' in directory %u names itself; removing it",
                         name, dir);
        else if (dir == f->sb.root_ino && t != f->sb.lostfound_ino && e.name_len == 10 &&
                 !memcmp(e.name, "lost+found", 10))
            /* The name belongs to the descriptor the superblock names; left
             * here, pass 5 would add a second 'lost+found' beside it. */
            fsck_problem(f, "dirent_lostfound", obj, addr, true,
                         "entry 'lost+found' in the root names descriptor %u, not lost+found (descriptor %u); "
                         "removing it",
                         t, f->sb.lostfound_ino);
        else if (name_set_seen(names, e.name, e.name_len))
            fsck_problem(f, "dirent_duplicate", obj, addr, true,
                         "entry '%s' in directory %u (descriptor %u) repeats a name already in it; removing it", name,
                         dir, t);
        else
            drop = false;
        if (drop) {
            vdfs_dirent_remove(d, &e);
            pos = e.offset;
            changed = true;
            continue;
        }
        uint8_t want = f->inos[t].dtype;
        if (e.type != want) {
            fsck_problem(f, "dirent_type", obj, addr, true,
                         "entry '%s' in directory %u has type %u but descriptor %u is type %u; fixing the entry", name,
                         dir, e.type, t, want);
            d->entries[e.offset + 4] = want;
            changed = true;
        }
        if (want == DT_DIR)
            push_edge(f, dir, t, block);
        else
            f->inos[t].links++;
    }
    return changed;
}

static void scan_dir(struct fsck *f, uint32_t dir)
{
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    struct vdfs_dirblock *d = malloc(sizeof(*d));
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!fd || !d || !buf) {
        f->operational_error = true;
        goto out;
    }
    if (fsck_fd_load(f, dir, fd) != 0 || fd->addr_mode == VDFS_AM_RESIDENT)
        goto out;
    char obj[32];
    snprintf(obj, sizeof(obj), "ino %u", dir);
    uint32_t nblocks = (uint32_t)(fd->size / VDFS_META_SIZE);
    bool fd_dirty = false;
    struct name_set names = {0};
    for (uint32_t k = 0; k < nblocks && !fsck_cancelled(f); k++) {
        uint64_t addr = 0;
        int rc = fsck_map_lookup(f, fd, (uint64_t)k * VDFS_META_SIZE, &addr);
        if (rc < 0) {
            f->operational_error = true;
            continue;
        }
        if (rc == 1) {
            bool fix = fsck_problem(f, "dir_hole", obj, vdfs_fd_addr(&f->sb, dir), true,
                                    "directory %u has no block %u (a hole in its map); adding an empty one", dir, k);
            if (fsck_dir_map_block(f, fd, k) != 0 ||
                fsck_map_lookup(f, fd, (uint64_t)k * VDFS_META_SIZE, &addr) != 0) {
                fsck_problem_unfixed(f);
                continue;
            }
            fd_dirty = true;
            if (fix) {
                memset(d, 0, sizeof(*d));
                d->owner_ino = dir;
                fsck_dirblock_store(f, addr, d);
            }
            continue;
        }
        if (fsck_read(f, buf, VDFS_META_SIZE, addr) != 0 || vdfs_dirblock_decode(buf, addr, d) != 0 ||
            d->owner_ino != dir) {
            if (fsck_problem(f, "dir_block_bad", obj, addr, true,
                             "bad checksum in block %u of directory %u at 0x%" PRIx64
                             "; rewriting it empty (its files go to lost+found)",
                             k, dir, addr)) {
                struct vdfs_header old;
                vdfs_obj_read_header(buf, &old);
                memset(d, 0, sizeof(*d));
                d->hdr.gen = old.gen;
                d->owner_ino = dir;
                fsck_dirblock_store(f, addr, d);
            }
            continue;
        }
        if (check_entries(f, dir, k, d, addr, &names) && f->opt.fix)
            fsck_dirblock_store(f, addr, d);
    }
    if (names.failed)
        f->operational_error = true;
    name_set_free(&names);
    if (fd_dirty && f->opt.fix)
        fsck_fd_store(f, fd);
out:
    free(fd);
    free(d);
    vdfs_aligned_free(buf);
}

int fsck_remove_entry(struct fsck *f, uint32_t dir, uint32_t block, uint32_t target)
{
    if (!f->opt.fix)
        return 0;
    struct vdfs_fd *fd = malloc(sizeof(*fd));
    struct vdfs_dirblock *d = malloc(sizeof(*d));
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    int rc = -ENOMEM;
    uint64_t addr;
    if (fd && d && buf && (rc = fsck_fd_load(f, dir, fd)) == 0 &&
        (rc = fsck_map_lookup(f, fd, (uint64_t)block * VDFS_META_SIZE, &addr)) == 0 &&
        (rc = fsck_read(f, buf, VDFS_META_SIZE, addr)) == 0 && (rc = vdfs_dirblock_decode(buf, addr, d)) == 0) {
        uint16_t pos = 0;
        struct vdfs_dirent e;
        rc = -ENOENT;
        while (vdfs_dirent_next(d, &pos, &e)) {
            if (e.ino == target) {
                vdfs_dirent_remove(d, &e);
                rc = fsck_dirblock_store(f, addr, d);
                break;
            }
        }
    }
    if (rc > 0)
        rc = -EIO;
    if (rc < 0)
        fsck_problem_unfixed(f);
    free(fd);
    free(d);
    vdfs_aligned_free(buf);
    return rc;
}

static int cmp_target(const void *a, const void *b)
{
    const struct fsck_dir_edge *x = a, *y = b;
    if (x->target != y->target)
        return x->target < y->target ? -1 : 1;
    if (x->dir != y->dir)
        return x->dir < y->dir ? -1 : 1;
    return (x->block > y->block) - (x->block < y->block);
}

static int cmp_dir(const void *a, const void *b)
{
    const struct fsck_dir_edge *x = a, *y = b;
    if (x->dir != y->dir)
        return x->dir < y->dir ? -1 : 1;
    return (x->target > y->target) - (x->target < y->target);
}

/* A directory has exactly one name: keep the entry in the directory its
 * parent field names (else the first found) and drop the others. */
static void decide_edges(struct fsck *f)
{
    qsort(f->edges, f->nedges, sizeof(*f->edges), cmp_target);
    size_t kept = 0;
    for (size_t i = 0; i < f->nedges;) {
        size_t j = i;
        uint32_t t = f->edges[i].target;
        while (j < f->nedges && f->edges[j].target == t)
            j++;
        size_t keep = i;
        for (size_t k = i; k < j; k++) {
            if (f->edges[k].dir == f->inos[t].disk_parent) {
                keep = k;
                break;
            }
        }
        for (size_t k = i; k < j; k++) {
            if (k == keep)
                continue;
            char obj[32];
            snprintf(obj, sizeof(obj), "ino %u", t);
            if (fsck_problem(f, "dir_hardlink", obj, 0, true,
                             "directory %u is named in directory %u and again in directory %u; removing the second entry",
                             t, f->edges[keep].dir, f->edges[k].dir))
                fsck_remove_entry(f, f->edges[k].dir, f->edges[k].block, t);
        }
        struct fsck_dir_edge e = f->edges[keep];
        f->inos[t].parent = e.dir;
        f->inos[t].flags |= INO_HAS_PARENT;
        f->inos[e.dir].subdirs++;
        f->edges[kept++] = e;
        i = j;
    }
    f->nedges = kept;
    qsort(f->edges, f->nedges, sizeof(*f->edges), cmp_dir);
}

void fsck_reach_from(struct fsck *f, uint32_t dir)
{
    uint32_t *queue = malloc((f->nedges + 1) * sizeof(*queue));
    if (!queue) {
        f->operational_error = true;
        return;
    }
    size_t head = 0, tail = 0;
    f->inos[dir].flags |= INO_REACHED;
    queue[tail++] = dir;
    while (head < tail) {
        uint32_t d = queue[head++];
        /* Kept edges are sorted by directory: find d's first child. */
        size_t lo = 0, hi = f->nedges;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (f->edges[mid].dir < d)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < f->nedges && f->edges[i].dir == d; i++) {
            uint32_t c = f->edges[i].target;
            if (!(f->inos[c].flags & INO_REACHED) && f->inos[c].parent == d && tail <= f->nedges) {
                f->inos[c].flags |= INO_REACHED;
                queue[tail++] = c;
            }
        }
    }
    free(queue);
}

/* The units a damaged descriptor mapped belong to nothing once it is
 * recreated empty: unreferenced, pass 6 frees them in this same run. */
static void forget_units_of(struct fsck *f, uint32_t ino)
{
    for (unsigned rtype = 0; rtype < VDFS_RT_COUNT; rtype++) {
        struct fsck_region *r = &f->rs[rtype];
        if (rtype == VDFS_RT_FD || !r->owner || !r->ref)
            continue;
        for (uint64_t i = 0; i < r->count; i++)
            if (r->owner[i] == ino && fsck_bit(r->ref, i))
                fsck_clear_bit(r->ref, i);
    }
}

int fsck_pass_dirs(struct fsck *f)
{
    fsck_pass_begin(f, FSCK_PASS_DIRS);
    uint32_t root = f->sb.root_ino;
    if (f->inos[root].state != INO_OK || f->inos[root].dtype != DT_DIR) {
        char obj[32];
        snprintf(obj, sizeof(obj), "ino %u", root);
        fsck_problem(f, "root_bad", obj, vdfs_fd_addr(&f->sb, root), true,
                     "the root directory (ino %u) is missing or not a directory; recreating it empty", root);
        if (f->inos[root].state == INO_OK)
            forget_units_of(f, root);
        if (fsck_make_dir(f, root, root, 0755) < 0)
            fsck_problem_unfixed(f);
    }
    f->inos[root].parent = root;
    for (uint32_t ino = 1; ino < f->nino && !fsck_cancelled(f); ino++) {
        if (f->inos[ino].state == INO_OK && f->inos[ino].dtype == DT_DIR)
            scan_dir(f, ino);
        if ((ino & 1023) == 0)
            fsck_progress(f, ino, f->nino);
    }
    fsck_progress(f, f->nino, f->nino);
    decide_edges(f);
    fsck_reach_from(f, root);
    return 0;
}
