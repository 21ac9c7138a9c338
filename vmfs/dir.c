/* Directories: an array of checksummed directory blocks, plus an in-memory
 * hash index per directory built on first use, so that lookup, insert and
 * remove stay O(1) at 100k entries and beyond. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

struct dir_name {
    struct dir_name *next;
    uint64_t hash;
    uint32_t ino;
    uint32_t block;
    uint8_t type;
    uint8_t len;
    char name[];
};

struct dir_index {
    struct dir_index *next;
    uint32_t ino;
    size_t nbuckets, count;
    struct dir_name **buckets;
    uint32_t nblocks;
    uint16_t *free_bytes; /* per block */
    uint32_t space_hint;
};

static uint64_t name_hash(const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)name[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void index_free(struct dir_index *d)
{
    for (size_t i = 0; i < d->nbuckets; i++) {
        struct dir_name *n = d->buckets[i];
        while (n) {
            struct dir_name *next = n->next;
            free(n);
            n = next;
        }
    }
    free(d->buckets);
    free(d->free_bytes);
    free(d);
}

static size_t dirs_bucket(struct vdfs *fs, uint32_t ino)
{
    return (ino * 2654435761u) % fs->ndirs_buckets;
}

void dir_forget(struct vdfs *fs, uint32_t dir)
{
    if (!fs->dirs)
        return;
    struct dir_index **pp = &fs->dirs[dirs_bucket(fs, dir)];
    while (*pp) {
        if ((*pp)->ino == dir) {
            struct dir_index *d = *pp;
            *pp = d->next;
            index_free(d);
            return;
        }
        pp = &(*pp)->next;
    }
}

void dir_cache_destroy(struct vdfs *fs)
{
    for (size_t i = 0; fs->dirs && i < fs->ndirs_buckets; i++) {
        struct dir_index *d = fs->dirs[i];
        while (d) {
            struct dir_index *next = d->next;
            index_free(d);
            d = next;
        }
    }
    free(fs->dirs);
    fs->dirs = NULL;
}

static int index_grow(struct dir_index *d)
{
    size_t n = d->nbuckets ? d->nbuckets * 2 : 64;
    struct dir_name **b = calloc(n, sizeof(*b));
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < d->nbuckets; i++) {
        struct dir_name *e = d->buckets[i];
        while (e) {
            struct dir_name *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(d->buckets);
    d->buckets = b;
    d->nbuckets = n;
    return 0;
}

static int index_insert(struct dir_index *d, const char *name, size_t len, uint32_t ino, uint8_t type,
                        uint32_t block)
{
    if (d->count + 1 > d->nbuckets && index_grow(d))
        return -ENOMEM;
    struct dir_name *e = malloc(sizeof(*e) + len + 1);
    if (!e)
        return -ENOMEM;
    e->hash = name_hash(name, len);
    e->ino = ino;
    e->type = type;
    e->block = block;
    e->len = (uint8_t)len;
    memcpy(e->name, name, len);
    e->name[len] = 0;
    e->next = d->buckets[e->hash & (d->nbuckets - 1)];
    d->buckets[e->hash & (d->nbuckets - 1)] = e;
    d->count++;
    return 0;
}

static struct dir_name **index_find(struct dir_index *d, const char *name, size_t len)
{
    if (!d->nbuckets)
        return NULL;
    uint64_t h = name_hash(name, len);
    struct dir_name **pp = &d->buckets[h & (d->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->len == len && memcmp((*pp)->name, name, len) == 0)
            return pp;
    return NULL;
}

/* A directory's size counts its 4 KiB blocks, all of them allocated. */
static int dir_blocks(const struct vdfs_fd *dirfd, uint32_t *nblocks)
{
    uint64_t n = dirfd->size / VDFS_META_SIZE;
    if (dirfd->size % VDFS_META_SIZE || n >= UINT32_MAX) {
        vdfs_log(VDFS_LOG_ERR, "directory %u has impossible size %llu; run fsck.vdfs", dirfd->ino,
                 (unsigned long long)dirfd->size);
        return -EIO;
    }
    *nblocks = (uint32_t)n;
    return 0;
}

/* Device address of directory block `block`, or 0 for a hole. */
static int block_addr(struct vdfs *fs, struct vdfs_fd *dirfd, uint32_t block, uint64_t *addr)
{
    struct map_segment seg;
    int rc = filemap_lookup(fs, dirfd, (uint64_t)block * VDFS_META_SIZE, VDFS_META_SIZE, &seg);
    if (rc)
        return rc;
    if (seg.resident || seg.dev_off == 0 || seg.length != VDFS_META_SIZE) {
        vdfs_log(VDFS_LOG_ERR, "directory %u has no block %u; run fsck.vdfs", dirfd->ino, block);
        return -EIO;
    }
    *addr = seg.dev_off;
    return 0;
}

static int block_load(struct vdfs *fs, struct vdfs_fd *dirfd, uint32_t block, struct vdfs_dirblock *db)
{
    uint64_t addr;
    const uint8_t *raw;
    int rc = block_addr(fs, dirfd, block, &addr);
    if (rc == 0)
        rc = meta_get(fs, addr, VDFS_KIND_DIR, &raw);
    if (rc == 0)
        rc = vdfs_dirblock_decode(raw, addr, db);
    if (rc == 0 && db->owner_ino != dirfd->ino) {
        vdfs_log(VDFS_LOG_ERR, "directory block at 0x%llx belongs to %u, not %u", (unsigned long long)addr,
                 db->owner_ino, dirfd->ino);
        rc = -EIO;
    }
    return rc;
}

static int block_store(struct vdfs *fs, struct vdfs_dirblock *db)
{
    uint8_t *buf = vdfs_aligned_alloc(VDFS_META_SIZE);
    if (!buf)
        return -ENOMEM;
    db->hdr.gen++;
    vdfs_dirblock_encode(db, buf);
    int rc = meta_put(fs, db->hdr.addr, buf);
    vdfs_aligned_free(buf);
    return rc;
}

static int index_get(struct vdfs *fs, uint32_t dir, struct dir_index **out)
{
    if (!fs->dirs) {
        fs->ndirs_buckets = 4096;
        fs->dirs = calloc(fs->ndirs_buckets, sizeof(*fs->dirs));
        if (!fs->dirs)
            return -ENOMEM;
    }
    for (struct dir_index *d = fs->dirs[dirs_bucket(fs, dir)]; d; d = d->next)
        if (d->ino == dir) {
            *out = d;
            return 0;
        }
    struct vdfs_fd *dirfd = malloc(sizeof(*dirfd));
    struct vdfs_dirblock *db = malloc(sizeof(*db));
    struct dir_index *d = calloc(1, sizeof(*d));
    int rc = (!dirfd || !db || !d) ? -ENOMEM : fd_load(fs, dir, dirfd);
    if (rc == 0 && !S_ISDIR(dirfd->mode))
        rc = -ENOTDIR;
    uint32_t nblocks = 0, cap = 0;
    if (rc == 0)
        rc = dir_blocks(dirfd, &nblocks);
    if (rc == 0) {
        d->ino = dir;
        d->nblocks = nblocks;
        rc = index_grow(d);
    }
    for (uint32_t b = 0; rc == 0 && b < d->nblocks; b++) {
        rc = block_load(fs, dirfd, b, db);
        /* Grown as blocks prove to exist: a corrupt size fails at its
         * first missing block, before any allocation of its size. */
        if (rc == 0 && b + 1 >= cap) {
            cap = cap ? (cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2) : 16;
            uint16_t *grown = realloc(d->free_bytes, ((size_t)cap + 1) * sizeof(*grown));
            if (!grown)
                rc = -ENOMEM;
            else
                d->free_bytes = grown;
        }
        uint16_t pos = 0;
        struct vdfs_dirent e;
        while (rc == 0 && vdfs_dirent_next(db, &pos, &e))
            rc = index_insert(d, (const char *)e.name, e.name_len, e.ino, e.type, b);
        if (rc == 0)
            d->free_bytes[b] = (uint16_t)(VDFS_DIR_AREA - db->used);
    }
    free(dirfd);
    free(db);
    if (rc) {
        if (d)
            index_free(d);
        return rc;
    }
    d->next = fs->dirs[dirs_bucket(fs, dir)];
    fs->dirs[dirs_bucket(fs, dir)] = d;
    *out = d;
    return 0;
}

int dir_lookup(struct vdfs *fs, uint32_t dir, const char *name, uint32_t *ino, uint8_t *type)
{
    struct dir_index *d;
    int rc = index_get(fs, dir, &d);
    if (rc)
        return rc;
    struct dir_name **e = index_find(d, name, strlen(name));
    if (!e)
        return -ENOENT;
    *ino = (*e)->ino;
    if (type)
        *type = (*e)->type;
    return 0;
}

int dir_add(struct vdfs *fs, struct vdfs_fd *dirfd, const char *name, uint32_t ino, uint8_t type)
{
    size_t len = strlen(name);
    if (len == 0)
        return -EINVAL;
    if (len > VDFS_NAME_MAX)
        return -ENAMETOOLONG;
    struct dir_index *d;
    int rc = index_get(fs, dirfd->ino, &d);
    if (rc)
        return rc;
    if (index_find(d, name, len))
        return -EEXIST;
    uint16_t need = (uint16_t)(VDFS_DIRENT_FIXED + len);
    uint32_t block = UINT32_MAX;
    for (uint32_t n = 0; n < d->nblocks; n++) {
        uint32_t b = (d->space_hint + n) % d->nblocks;
        if (d->free_bytes[b] >= need) {
            block = b;
            break;
        }
    }
    struct vdfs_dirblock *db = malloc(sizeof(*db));
    if (!db)
        return -ENOMEM;
    if (block == UINT32_MAX) {
        struct map_segment seg;
        uint16_t *grown = realloc(d->free_bytes, (d->nblocks + 2) * sizeof(*grown));
        if (!grown) {
            free(db);
            return -ENOMEM;
        }
        d->free_bytes = grown;
        rc = filemap_prepare_write(fs, dirfd, dirfd->size, VDFS_META_SIZE, &seg);
        if (rc) {
            free(db);
            /* A conversion may have moved the directory's blocks (and freed
             * the old ones) before the allocation failed: the descriptor
             * must say where they are now, before any commit. */
            int src = fd_store(fs, dirfd);
            return src ? src : rc;
        }
        block = d->nblocks++;
        dirfd->size += VDFS_META_SIZE;
        memset(db, 0, sizeof(*db));
        db->hdr.kind = VDFS_KIND_DIR;
        db->hdr.addr = seg.dev_off;
        db->owner_ino = dirfd->ino;
        d->free_bytes[block] = VDFS_DIR_AREA;
    } else if ((rc = block_load(fs, dirfd, block, db))) {
        free(db);
        return rc;
    }
    vdfs_dirent_append(db, ino, type, name, len); /* fits: free_bytes said so */
    rc = block_store(fs, db);
    free(db);
    if (rc)
        return rc;
    d->free_bytes[block] = (uint16_t)(d->free_bytes[block] - need);
    d->space_hint = block;
    return index_insert(d, name, len, ino, type, block);
}

/* Finds `name` inside a loaded block. */
static bool find_in_block(const struct vdfs_dirblock *db, const char *name, size_t len, struct vdfs_dirent *e)
{
    uint16_t pos = 0;
    while (vdfs_dirent_next(db, &pos, e))
        if (e->name_len == len && memcmp(e->name, name, len) == 0)
            return true;
    return false;
}

static int edit_entry(struct vdfs *fs, struct vdfs_fd *dirfd, const char *name, bool remove, uint32_t ino,
                      uint8_t type)
{
    size_t len = strlen(name);
    struct dir_index *d;
    int rc = index_get(fs, dirfd->ino, &d);
    if (rc)
        return rc;
    struct dir_name **pe = index_find(d, name, len);
    if (!pe)
        return -ENOENT;
    struct dir_name *e = *pe;
    struct vdfs_dirblock *db = malloc(sizeof(*db));
    if (!db)
        return -ENOMEM;
    rc = block_load(fs, dirfd, e->block, db);
    struct vdfs_dirent found;
    if (rc == 0 && !find_in_block(db, name, len, &found)) {
        vdfs_log(VDFS_LOG_ERR, "directory %u: entry '%s' missing from block %u", dirfd->ino, name, e->block);
        rc = -EIO;
    }
    if (rc == 0 && remove)
        vdfs_dirent_remove(db, &found);
    else if (rc == 0)
        vdfs_dirent_set(db, &found, ino, type);
    if (rc == 0)
        rc = block_store(fs, db);
    if (rc == 0 && remove) {
        d->free_bytes[e->block] = (uint16_t)(d->free_bytes[e->block] + VDFS_DIRENT_FIXED + len);
        *pe = e->next;
        free(e);
        d->count--;
    } else if (rc == 0) {
        e->ino = ino;
        e->type = type;
    }
    free(db);
    return rc;
}

int dir_remove(struct vdfs *fs, struct vdfs_fd *dirfd, const char *name)
{
    return edit_entry(fs, dirfd, name, true, 0, 0);
}

int dir_set_entry(struct vdfs *fs, struct vdfs_fd *dirfd, const char *name, uint32_t ino, uint8_t type)
{
    return edit_entry(fs, dirfd, name, false, ino, type);
}

int dir_is_empty(struct vdfs *fs, uint32_t dir)
{
    struct dir_index *d;
    int rc = index_get(fs, dir, &d);
    if (rc)
        return rc;
    return d->count == 0;
}

/* Positions: block << 16 | entry number within the block. */
int dir_iterate(struct vdfs *fs, uint32_t dir, uint64_t from, dir_iter_fn fn, void *ctx)
{
    struct vdfs_fd *dirfd = malloc(sizeof(*dirfd));
    struct vdfs_dirblock *db = malloc(sizeof(*db));
    int rc = (!dirfd || !db) ? -ENOMEM : fd_load(fs, dir, dirfd);
    if (rc == 0 && !S_ISDIR(dirfd->mode))
        rc = -ENOTDIR;
    uint32_t nblocks = 0;
    if (rc == 0)
        rc = dir_blocks(dirfd, &nblocks);
    for (uint32_t b = (uint32_t)(from >> 16); rc == 0 && b < nblocks; b++) {
        rc = block_load(fs, dirfd, b, db);
        uint16_t pos = 0;
        struct vdfs_dirent e;
        for (uint32_t idx = 0; rc == 0 && vdfs_dirent_next(db, &pos, &e); idx++) {
            uint64_t here = (uint64_t)b << 16 | idx;
            if (here < from)
                continue;
            int stop = fn(ctx, (const char *)e.name, e.name_len, e.ino, e.type, here + 1);
            if (stop) {
                free(dirfd);
                free(db);
                return stop < 0 ? stop : 0;
            }
        }
    }
    free(dirfd);
    free(db);
    return rc;
}
