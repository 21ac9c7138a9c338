/* Internal state of a mounted volume, shared by the library's files. */
#ifndef VDFS_INTERNAL_H
#define VDFS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "device.h"
#include "format.h"
#include "vdfs.h"

/* ---- log.c ---- */
void vdfs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t vdfs_now_ns(void);
uint64_t vdfs_monotonic_ms(void);
void vdfs_random_bytes(void *buf, size_t len);
/* The persistent host UUID in /etc/vdfs/host-uuid (created on first use),
 * or VDFS_HOST_UUID from the environment. */
int vdfs_host_uuid(uint8_t uuid[VDFS_UUID_SIZE]);

/* ---- cache.c: metadata objects by device address ---- */
struct meta_entry {
    uint64_t addr;
    uint8_t *data; /* VDFS_META_SIZE bytes, encoded and sealed */
    uint32_t kind; /* checked when read from the device or installed */
    bool dirty;
    bool referenced;
    struct meta_entry *hash_next;
    struct meta_entry *dirty_next;
};

struct meta_cache {
    struct meta_entry **buckets;
    size_t nbuckets;
    size_t count, limit;
    struct meta_entry *dirty_list;
    size_t ndirty;
    size_t clock_bucket;
};

int meta_cache_init(struct meta_cache *c, size_t limit);
void meta_cache_destroy(struct meta_cache *c);
/* Reads (or finds) the object at addr and verifies it as `kind`.  The
 * returned buffer stays valid until the next cache call. */
int meta_get(struct vdfs *fs, uint64_t addr, uint32_t kind, const uint8_t **out);
/* Installs a new image for addr and marks it dirty (part of the running
 * transaction). */
int meta_put(struct vdfs *fs, uint64_t addr, const uint8_t *image);
void meta_forget(struct vdfs *fs, uint64_t addr);

/* ---- alloc.c: resource clusters ---- */
struct resource_pool {
    struct vdfs_bitmap *clusters; /* decoded, one per cluster */
    bool *dirty;
    uint64_t free;
    uint32_t hint;
    /* Freed in the running transaction; not reusable until it commits. */
    uint64_t *pending;
    size_t npending, cap_pending;
};

int alloc_load(struct vdfs *fs);
void alloc_destroy(struct vdfs *fs);
int alloc_resource(struct vdfs *fs, unsigned rtype, uint64_t *index);
int free_resource(struct vdfs *fs, unsigned rtype, uint64_t index);
bool resource_is_allocated(struct vdfs *fs, unsigned rtype, uint64_t index);
/* Freed in the running transaction: free for statfs, not yet reusable. */
uint64_t resources_pending_free(const struct vdfs *fs, unsigned rtype);
/* Applies pending frees and encodes dirty bitmaps into the cache. */
int alloc_prepare_commit(struct vdfs *fs);

/* ---- journal.c ---- */
struct journal {
    uint32_t slot;
    uint64_t seq;        /* next transaction's sequence number */
    uint32_t head;       /* next free block */
    uint8_t *scratch;    /* aligned buffer for a whole transaction */
    size_t scratch_size;
};
int journal_open(struct vdfs *fs);
void journal_close(struct vdfs *fs);
/* Commits every dirty object: data flush, journal write, flush, write in
 * place.  Caller holds fs->lock. */
int journal_commit(struct vdfs *fs);
/* Commits only if the running transaction has grown past its share. */
int journal_maybe_commit(struct vdfs *fs);

/* ---- heartbeat.c ---- */
int heartbeat_claim(struct vdfs *fs);
int heartbeat_release(struct vdfs *fs);
int heartbeat_renew(struct vdfs *fs);
/* Replays and frees slots of hosts that died on this machine (no OFD lock
 * holder).  Refuses with -EBUSY when another live host holds the volume:
 * until the multi-host protocol lands, one host at a time. */
int heartbeat_recover_and_check(struct vdfs *fs);

/* ---- filemap.c ---- */
struct map_segment {
    uint64_t file_off;
    uint64_t length;
    uint64_t dev_off; /* 0 for a hole or unwritten block: reads as zeros */
    bool resident;
};
/* Finds what backs [off, off+len) for reading, clipped to the unit. */
int filemap_lookup(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, uint64_t len, struct map_segment *seg);
/* Prepares [off, off+len) for writing: allocates and zeroes missing units,
 * clears to-be-zeroed marks, converts addressing modes.  Returns the device
 * segment for the first unit of the range. */
int filemap_prepare_write(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, uint64_t len,
                          struct map_segment *seg);
/* Frees whole units inside [off, end); partial units are zeroed on disk. */
int filemap_punch(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, uint64_t end);
/* Allocates units in [off, end) as to-be-zeroed. */
int filemap_fallocate(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, uint64_t end);
int filemap_truncate(struct vdfs *fs, struct vdfs_fd *fd, uint64_t size);
int filemap_walk(struct vdfs *fs, struct vdfs_fd *fd, vdfs_map_fn fn, void *ctx);
/* SEEK_DATA / SEEK_HOLE within the map. */
int64_t filemap_seek(struct vdfs *fs, struct vdfs_fd *fd, uint64_t off, int whence);
uint64_t filemap_unit_size(const struct vdfs *fs, const struct vdfs_fd *fd);

/* ---- dir.c ---- */
struct dir_index;
int dir_lookup(struct vdfs *fs, uint32_t dir, const char *name, uint32_t *ino, uint8_t *type);
int dir_add(struct vdfs *fs, struct vdfs_fd *dirfd, const char *name, uint32_t ino, uint8_t type);
int dir_remove(struct vdfs *fs, struct vdfs_fd *dirfd, const char *name);
int dir_set_entry(struct vdfs *fs, struct vdfs_fd *dirfd, const char *name, uint32_t ino, uint8_t type);
int dir_is_empty(struct vdfs *fs, uint32_t dir);
typedef int (*dir_iter_fn)(void *ctx, const char *name, size_t name_len, uint32_t ino, uint8_t type,
                           uint64_t position);
int dir_iterate(struct vdfs *fs, uint32_t dir, uint64_t from, dir_iter_fn fn, void *ctx);
void dir_forget(struct vdfs *fs, uint32_t dir);
void dir_cache_destroy(struct vdfs *fs);

/* ---- xattr.c ---- */
int xattr_set(struct vdfs_fd *fd, const char *name, const void *value, size_t size, int flags);
ssize_t xattr_get(const struct vdfs_fd *fd, const char *name, void *value, size_t size);
ssize_t xattr_list(const struct vdfs_fd *fd, char *list, size_t size);
int xattr_remove(struct vdfs_fd *fd, const char *name);

/* ---- inode.c helpers used across files ---- */
int fd_load(struct vdfs *fs, uint32_t ino, struct vdfs_fd *fd);
int fd_store(struct vdfs *fs, struct vdfs_fd *fd);

/* ---- the volume ---- */
struct open_file {
    uint32_t ino;
    uint32_t count;
    uint32_t writers;
    struct open_file *next;
};

struct vdfs {
    pthread_mutex_t lock; /* metadata: held by every operation that reads or changes it */
    struct vdfs_dev *dev;
    struct vdfs_super sb;
    bool readonly;
    bool fenced; /* a fatal write error happened: refuse further metadata writes */
    uint8_t host_uuid[VDFS_UUID_SIZE];
    char host_name[VDFS_HOSTNAME_SIZE + 1];
    uint32_t slot;
    uint64_t hb_gen;
    uint64_t hb_counter;
    struct meta_cache cache;
    struct resource_pool pools[VDFS_RT_COUNT];
    struct journal journal;
    struct dir_index **dirs;
    size_t ndirs_buckets;
    struct open_file *open_files;
    uint8_t *zero_block; /* aligned, block_size bytes of zeros */
    pthread_t committer;
    bool committer_running;
    bool stopping;
    pthread_cond_t stop_cond;
    uint32_t commit_ms;
};

#endif
