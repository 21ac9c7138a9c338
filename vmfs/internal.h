/* Internal state of a mounted volume, shared by the library's files. */
#ifndef VDFS_INTERNAL_H
#define VDFS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "device.h"
#include "format.h"
#include "vdfs.h"

/* ---- log.c ---- */
void vdfs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t vdfs_now_ns(void);
uint64_t vdfs_monotonic_ms(void);
/* Sleeps `ms` milliseconds, through signals. */
void vdfs_sleep_ms(uint32_t ms);
void vdfs_random_bytes(void *buf, size_t len);
/* VDFS_HOST_UUID from the environment; otherwise a new random UUID if
 * `fresh`, else the persistent one in /etc/vdfs/host-uuid (created on
 * first use). */
int vdfs_host_uuid(uint8_t uuid[VDFS_UUID_SIZE], bool fresh);

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
/* Reads `count` consecutive objects of `kind` from addr in one device read
 * and caches those not cached yet that verify (clean: committed objects
 * are always in place on the device, dirty ones stay cached). */
int meta_prefetch(struct vdfs *fs, uint64_t addr, uint32_t count, uint32_t kind);
bool meta_cached(struct vdfs *fs, uint64_t addr);
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
    bool checkpoint_after_commit; /* the transaction frees blocks that held journaled metadata */
    size_t scratch_size;
};
int journal_open(struct vdfs *fs);
void journal_close(struct vdfs *fs);
/* Commits every dirty object: data flush, journal write, flush, write in
 * place.  Caller holds fs->lock. */
int journal_commit(struct vdfs *fs);
/* Commits only if the running transaction has grown past its share. */
int journal_maybe_commit(struct vdfs *fs);
/* Whether journal_maybe_commit would commit now. */
bool journal_commit_due(const struct vdfs *fs);
/* Makes the in-place copies durable and empties the journal. */
int journal_checkpoint(struct vdfs *fs);

/* ---- heartbeat.c: slots, liveness, renewal, fencing, recovery ---- */
/* What this host last saw in another host's slot, and since when (on this
 * host's monotonic clock): liveness is judged by the observer's clock. */
struct slot_watch {
    bool seen;
    uint32_t state;
    uint64_t hb_gen;
    uint64_t counter;
    uint64_t since_ms;
};

enum slot_verdict {
    SLOT_ALIVE = 0,   /* renewing, or not yet silent for the timeout */
    SLOT_GONE = 1,    /* FREE, or its generation moved on: locks it held are stale */
    SLOT_DEAD = 2,    /* silent for the timeout: may be recovered */
    SLOT_BUSY = 3,    /* another host is replaying it right now */
};

/* Mount: refuses a live slot with this host's UUID, claims a free slot,
 * recovers slots of processes that died on this machine, starts renewal. */
int heartbeat_mount(struct vdfs *fs);
void heartbeat_stop(struct vdfs *fs);
/* Frees this host's slot (clean unmount; never when fenced). */
int heartbeat_release(struct vdfs *fs);
/* Whether the last scan saw any other slot in use (the heartbeat thread
 * rescans every interval). */
bool heartbeat_others_present(struct vdfs *fs);
/* Reads and decodes heartbeat slot `slot` without an OFD lock (a stopped
 * reader must never hold up a renewal), again when the checksum catches a
 * write in progress. */
int heartbeat_read_slot(struct vdfs *fs, uint32_t slot, uint8_t *raw, struct vdfs_heartbeat *hb);
/* Judges the holder (slot, hb_gen) of a lock by a fresh read of its slot. */
int heartbeat_judge(struct vdfs *fs, uint32_t slot, uint64_t hb_gen);
/* Recovers a dead slot: mark REPLAYING, replay its journal, reset the
 * journal, free the slot with hb_gen + 1.  -EAGAIN when its state changed
 * under us (someone else recovers it, or it renewed). */
int heartbeat_recover(struct vdfs *fs, uint32_t slot);
/* Stops this host from writing anything, for good. */
/* hard: the lease is gone or the slot was taken; the device refuses every
 * write at once.  Otherwise (a write failed) only operations stop, and a
 * clean unmount within the lease may still hand over (cluster_abandon). */
void volume_fence(struct vdfs *fs, const char *why, bool hard);
bool volume_is_fenced(struct vdfs *fs);

/* ---- lock.c: on-disk locks (volume metadata lock, file locks) ---- */
/* Makes sure this host holds the volume metadata lock; drops every cache
 * when another host changed metadata since this host last held it.
 * Caller holds fs->lock. */
int cluster_hold(struct vdfs *fs);
/* Commits, checkpoints and releases the metadata lock.  Caller holds fs->lock. */
int cluster_release(struct vdfs *fs);
/* Waits (fs->lock held, released while waiting) until no data I/O of a
 * MULTI_WRITER file runs outside fs->lock. */
void multiwriter_io_wait(struct vdfs *fs);
/* Unmount of a host fenced by a write error while its lease holds: replays
 * its own journal, releases the metadata lock with a version bump.  Any
 * failure leaves everything to the host that recovers the slot later. */
int cluster_abandon(struct vdfs *fs);
/* After replaying dead (slot, hb_gen)'s journal: frees the locks it
 * owned and drops it from shared holder lists, across the lock area. */
int locks_drop_slot(struct vdfs *fs, uint32_t slot, uint64_t hb_gen);
/* True when another host waits for the metadata lock this host holds. */
bool cluster_release_wanted(struct vdfs *fs);
/* The file lock of `ino` for an open with open(2) `flags`: taken on the
 * first local open in a mode, released on the last local close. */
int filelock_open(struct vdfs *fs, uint32_t ino, int flags, uint32_t *held_mode);
int filelock_close(struct vdfs *fs, uint32_t ino);
/* ino was just allocated under the metadata lock: no live host holds
 * its file lock, so the record need not be read before it is taken. */
void filelock_fresh(struct vdfs *fs, uint32_t ino);
/* True when another live host holds ino's file lock (unlink keeps it). */
bool filelock_held_elsewhere(struct vdfs *fs, uint32_t ino);
/* True when another live host holds it open for writing (exclusive or
 * multi-writer): its last name may not be removed (EBUSY). */
bool filelock_written_elsewhere(struct vdfs *fs, uint32_t ino);

/* Writes back file-lock records changed at least LOCK_PUBLISH_MS ago
 * (all of them with 0).  Caller holds fs->lock and the metadata lock. */
int filelocks_publish(struct vdfs *fs, uint64_t older_than_ms);
#define LOCK_PUBLISH_MS 10

/* ---- lockcache.c: file-lock records kept under the metadata lock ---- */
struct lock_entry {
    uint64_t index;
    bool raw_known;                /* false: a fresh file's record, not read yet */
    uint8_t raw[VDFS_SECTOR_SIZE]; /* the record as the device has it */
    struct vdfs_lock_rec disk;     /* raw, decoded */
    struct vdfs_lock_rec cur;      /* what this host made of it */
    uint64_t dirty_ms;             /* when cur started to differ from disk; 0: it does not */
};
struct lock_cache {
    struct lock_entry **slots;
    size_t nslots;
    size_t nfilled; /* entries allocated */
    size_t ndirty;
};
int lock_cache_init(struct lock_cache *c);
void lock_cache_destroy(struct lock_cache *c);
/* Where the entry of `index` goes; it may hold another record's entry. */
struct lock_entry **lock_cache_place(struct lock_cache *c, uint64_t index);
struct lock_entry *lock_cache_find(struct lock_cache *c, uint64_t index);
/* Frees every entry, written back or not. */
void lock_cache_forget(struct lock_cache *c);

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
/* The largest file size the block map can address (EFBIG beyond, as ext4's s_maxbytes). */
uint64_t filemap_max_size(const struct vdfs *fs);

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
/* Forgets a vdfs_check_generation expectation of the calling thread. */
void expect_clear(void);

/* ---- the volume ---- */
int caches_drop_and_reload(struct vdfs *fs);
/* superblock.c: takes the superblock from the device again, where another
 * host may have grown or relabelled the datastore; any other change is
 * -EIO. */
int super_refresh(struct vdfs *fs);

struct open_file {
    uint32_t ino;
    uint32_t count;
    uint32_t writers;
    uint32_t lock_mode; /* this host's mode in the file's on-disk lock */
    uint32_t ino_gen;   /* so a close never frees a reused descriptor */
    uint32_t io_inflight; /* reads and overwrites running outside fs->lock */
    struct direct_snapshot *direct; /* vdfs_direct_map's decoded descriptor, or NULL */
    struct open_file *next;
};

/* The descriptor as vdfs_direct_map last decoded it, beside the bytes it
 * was decoded from: reused while the cached object holds exactly those
 * bytes, whoever may have rewritten it, so a VM disk's every request does
 * not decode the descriptor again (it was most of the datastore path's
 * cost per 4 KiB write). */
struct direct_snapshot {
    bool valid;
    uint8_t raw[VDFS_META_SIZE];
    struct vdfs_fd fd;
};

void open_file_free(struct open_file *o);

struct vdfs {
    pthread_mutex_t lock; /* metadata: held by every operation that reads or changes it */
    pthread_cond_t io_idle; /* (with lock) an open file's io_inflight fell to zero */
    struct vdfs_dev *dev;
    struct vdfs_super sb;
    bool readonly;
    /* A fatal write error happened or the heartbeat lease ran out: no more
     * writes of any kind (the device refuses them too). */
    atomic_bool fenced;
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

    /* Cluster (rw mounts): heartbeat renewal runs in its own thread. */
    bool cluster;
    bool backup_checked; /* super_refresh looked at the backup superblock */
    bool multiwriter;
    uint32_t hb_interval_ms, hb_timeout_ms, lease_ms;
    pthread_mutex_t hb_lock; /* hb_raw, watch */
    pthread_t heartbeat_thread;
    bool heartbeat_running;
    atomic_bool hb_stopping;
    uint8_t hb_raw[VDFS_SECTOR_SIZE]; /* the image of our slot we last wrote */
    atomic_uint_fast64_t hb_renewed_ms; /* CLOCK_MONOTONIC start of the last renewal that succeeded */
    struct slot_watch watch[VDFS_MAX_HOSTS_LIMIT];
    bool liveness_locked;

    /* The volume metadata lock (descriptor 0's lock record). */
    atomic_bool mlock_held;
    bool mlock_version_known;
    bool mlock_dirty; /* metadata changed while held: bump the version on release */
    /* Being released: MULTI_WRITER data I/O runs under fs->lock (see
     * multiwriter_io_wait). */
    bool mlock_handover;
    uint64_t mlock_version;
    uint64_t mlock_acquired_ms;
    struct lock_cache file_locks; /* valid while the metadata lock is held */
    uint64_t lock_publish_due_ms; /* 0: nothing waits to be written back */
};

#endif
