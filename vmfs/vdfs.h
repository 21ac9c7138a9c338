/* libvdfs: the public, thread-safe API of a vdfs datastore.
 *
 * A struct vdfs is one mounted volume: one cluster host with its own
 * heartbeat slot and redo journal.  Objects are named by descriptor number
 * (ino), which suits the FUSE low-level API; vdfs_resolve() turns a path
 * into an ino for tools.  Every call returns 0 (or a count) on success and
 * a negative errno on failure.
 */
#ifndef VDFS_H
#define VDFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct vdfs;

/* The longest heartbeat timeout a host may run with; a slot that
 * advertises more is corrupt, and observers use their own instead. */
#define VDFS_HB_TIMEOUT_MAX_MS 600000u

struct vdfs_mount_opts {
    /* Read-only: metadata and data are never written.  The mount still
     * joins the cluster as a host (a heartbeat slot, the metadata lock
     * taken to read), so it sees what other hosts change while it is
     * mounted; it can only write its slot, lock records and, when it
     * recovers a dead host, that host's journal.  A device it cannot
     * write, or `no_host`, makes it a reader that takes no slot and no
     * lock: it sees the datastore as the hosts have left it in place, and
     * not what they change later. */
    bool readonly;
    bool no_host;
    const char *host_uuid;   /* 36-char UUID string; NULL: the persistent host UUID */
    const char *host_name;   /* shown in `vdfsctl hosts`; NULL: gethostname() */
    bool no_direct;          /* do not try O_DIRECT */
    uint32_t commit_ms;      /* journal commit interval; 0: default 5000 */
    /* Cluster (docs/clustering.md).  0: the superblock's values.  Every
     * host of a datastore should use the same timeout; an observer waits
     * for the longer of its own and the one the silent host advertised. */
    uint32_t hb_interval_ms; /* heartbeat renewal interval */
    uint32_t hb_timeout_ms;  /* silence after which a host is dead, at most VDFS_HB_TIMEOUT_MAX_MS */
    bool multiwriter;        /* write opens share the file lock (MULTI_WRITER) */
    /* Without host_uuid: join as a host of its own under a fresh UUID
     * (unless VDFS_HOST_UUID names one), not as this machine's persistent
     * host, so that a tool can work beside a mount of the same machine. */
    bool own_host;
};

int vdfs_mount(const char *device, const struct vdfs_mount_opts *opts, struct vdfs **out);
/* Commits the journal, releases the heartbeat slot and frees everything. */
int vdfs_unmount(struct vdfs *fs);
/* Commits the running transaction and makes all data durable. */
int vdfs_sync(struct vdfs *fs);

/* Messages from the library (corruption found, replay, ...). */
typedef void (*vdfs_log_fn)(int level, const char *msg, void *ctx);
void vdfs_set_logger(vdfs_log_fn fn, void *ctx);
enum { VDFS_LOG_ERR = 3, VDFS_LOG_WARN = 4, VDFS_LOG_INFO = 6, VDFS_LOG_DEBUG = 7 };

struct vdfs_stat {
    uint32_t ino;
    uint32_t ino_gen;
    uint32_t mode;
    uint32_t nlink;
    uint32_t uid, gid;
    uint32_t rdev;
    uint64_t size;
    uint64_t alloc_bytes; /* bytes of data space allocated to the file */
    struct timespec atime, mtime, ctime, btime;
};

uint32_t vdfs_root_ino(const struct vdfs *fs);
uint32_t vdfs_block_size(const struct vdfs *fs);
/* Whether this host has fenced itself: its heartbeat lease ran out, or a
 * metadata write failed.  Every write then fails with EIO, and other hosts
 * may take its locks once its heartbeat has been silent for the timeout:
 * a user of this mount should stop (a VMM, its VM).  A read-only mount is
 * never fenced. */
bool vdfs_is_fenced(struct vdfs *fs);
/* Whether another host may be changing the datastore: a live heartbeat
 * slot of another host at the last watch, or always on a read-only mount
 * (it does not watch).  For caches above the library (a kernel's). */
bool vdfs_others_may_write(struct vdfs *fs);
/* For a process that runs `threads` threads of file I/O at once and will
 * forbid io_uring_setup later (seccomp): creates the device's rings for
 * them now, beside those the mount's own threads use.  Returns how many
 * rings exist; 0 means io_uring is unavailable and I/O uses pread/pwrite,
 * which needs no preparation. */
unsigned vdfs_prepare_io_threads(struct vdfs *fs, unsigned threads);

int vdfs_getattr(struct vdfs *fs, uint32_t ino, struct vdfs_stat *st);
/* -ESTALE unless descriptor `ino` is allocated and still has generation
 * `gen` (vdfs_stat.ino_gen): another host may have removed it and reused
 * the number.  On success the calling thread's next call on this volume
 * fails with -ESTALE too if, under its own hold of the metadata lock, it
 * finds `ino` with another generation: check and call see one state. */
int vdfs_check_generation(struct vdfs *fs, uint32_t ino, uint32_t gen);
int vdfs_lookup(struct vdfs *fs, uint32_t dir, const char *name, struct vdfs_stat *st);
/* Path from the root, '/'-separated.  Symlinks in the middle are followed;
 * the last component's is followed only when follow_last. */
int vdfs_resolve(struct vdfs *fs, const char *path, bool follow_last, struct vdfs_stat *st);

struct vdfs_cred {
    uint32_t uid, gid;
};

/* mode carries the file type: S_IFREG, S_IFDIR, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK. */
int vdfs_create(struct vdfs *fs, uint32_t dir, const char *name, uint32_t mode, uint32_t rdev,
                const struct vdfs_cred *cred, struct vdfs_stat *st);
int vdfs_symlink(struct vdfs *fs, uint32_t dir, const char *name, const char *target,
                 const struct vdfs_cred *cred, struct vdfs_stat *st);
ssize_t vdfs_readlink(struct vdfs *fs, uint32_t ino, char *buf, size_t size);
int vdfs_link(struct vdfs *fs, uint32_t ino, uint32_t newdir, const char *newname, struct vdfs_stat *st);
int vdfs_unlink(struct vdfs *fs, uint32_t dir, const char *name);
int vdfs_rmdir(struct vdfs *fs, uint32_t dir, const char *name);

#define VDFS_RENAME_NOREPLACE (1u << 0)
#define VDFS_RENAME_EXCHANGE  (1u << 1)
int vdfs_rename(struct vdfs *fs, uint32_t olddir, const char *oldname, uint32_t newdir,
                const char *newname, unsigned flags);

enum {
    VDFS_SET_MODE = 1u << 0,
    VDFS_SET_UID = 1u << 1,
    VDFS_SET_GID = 1u << 2,
    VDFS_SET_SIZE = 1u << 3,
    VDFS_SET_ATIME = 1u << 4,
    VDFS_SET_MTIME = 1u << 5,
    VDFS_SET_ATIME_NOW = 1u << 6,
    VDFS_SET_MTIME_NOW = 1u << 7,
    VDFS_SET_CTIME = 1u << 8,
};
struct vdfs_setattr {
    unsigned valid;
    uint32_t mode, uid, gid;
    uint64_t size;
    struct timespec atime, mtime, ctime;
};
int vdfs_setattr(struct vdfs *fs, uint32_t ino, const struct vdfs_setattr *sa, struct vdfs_stat *st);

/* Open/release keep an unlinked file alive while it is open, and (for the
 * multi-host protocol) take the file's lock. */
int vdfs_open(struct vdfs *fs, uint32_t ino, int flags);
/* Added to vdfs_open's flags: a write open takes the file lock in
 * MULTI_WRITER mode, shared with other MULTI_WRITER opens only.  Without
 * it (and without the mount option) a write open is EXCLUSIVE: an open
 * for write while another host has the file open fails with -EBUSY, and
 * a read-only open while another host writes it fails with -EBUSY. */
#define VDFS_OPEN_MULTIWRITER 0x40000000
int vdfs_release(struct vdfs *fs, uint32_t ino, int flags);

ssize_t vdfs_pread(struct vdfs *fs, uint32_t ino, void *buf, size_t len, uint64_t off);
/* off VDFS_APPEND writes at the file's end as it is under the volume lock
 * (O_APPEND: the end another host left, not the one a cache remembers). */
#define VDFS_APPEND UINT64_MAX
ssize_t vdfs_pwrite(struct vdfs *fs, uint32_t ino, const void *buf, size_t len, uint64_t off);
int vdfs_fsync(struct vdfs *fs, uint32_t ino, bool datasync);

/* How stale an overwrite may leave mtime and ctime.  Like the kernel's
 * coarse timestamps (one tick, 4 ms at HZ=250): a write within this long
 * after the last change of both times leaves the descriptor alone, so a
 * stream of small overwrites is not a stream of descriptor updates. */
#define VDFS_TIME_GRANULE_NS 4000000u

/* For a write-back cache above the library (vdfs-fuse's).  Returns 1 when
 * [off, off + len) lies in written blocks inside the size of a regular file
 * that this host has open for writing and holds alone (its lock EXCLUSIVE,
 * so no other host can open it), after applying what a write does to the
 * descriptor (mtime, ctime, setuid and setgid bits): the caller may then
 * keep the data and write it later with vdfs_pwrite_back.  0 when the
 * write must go through vdfs_pwrite; < 0 an error. */
int vdfs_overwrite_cached(struct vdfs *fs, uint32_t ino, uint64_t off, size_t len);
/* Writes kept data into the file's blocks, without touching its times, as
 * one device batch: up to VDFS_WRITE_BACK_MAX runs of any length (however
 * many file blocks each spans), each with a buffer aligned for the
 * device.  0, or -ESTALE when a run is no longer written blocks of an
 * open file (the cache missed a truncate or punch: nothing is written),
 * or the device's error. */
#define VDFS_WRITE_BACK_MAX 256u
struct vdfs_write_back {
    const void *buf;
    size_t len;
    uint64_t off;
};
int vdfs_pwrite_back(struct vdfs *fs, uint32_t ino, const struct vdfs_write_back *runs, unsigned n);

/* Data I/O the caller issues itself (a VMM with its own io_uring), for
 * reads and overwrites that need nothing of the library but the map.
 * vdfs_direct_map: 0 when [off, off + len) of open regular file `ino` is
 * one run of written blocks on the device, aligned for vdfs_direct_fd's
 * alignment; *dev_off is where it starts.  The file's map is then pinned
 * (a truncate, punch or hand-over waits) until vdfs_direct_done, which the
 * caller must call once the I/O has completed.  A write has already done
 * what a write does to the descriptor (mtime, ctime, setuid) and was
 * checked against the fence: issue it at once.  -EAGAIN (nothing pinned)
 * when the range or the moment does not qualify (a hole, resident data, a
 * busy volume lock, the cluster lock elsewhere, a fenced volume): use
 * vdfs_pread/vdfs_pwrite, which wait, allocate and report errors.
 * vdfs_direct_fd: the device's file descriptor (owned by the mount; do not
 * close it) and the alignment its buffers, offsets and lengths need. */
int vdfs_direct_map(struct vdfs *fs, uint32_t ino, uint64_t off, size_t len, bool write, uint64_t *dev_off);
void vdfs_direct_done(struct vdfs *fs, uint32_t ino);
int vdfs_direct_fd(struct vdfs *fs, uint32_t *alignment);

/* mode: 0 or a combination of FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
 * (with KEEP_SIZE) and FALLOC_FL_ZERO_RANGE.  Mode 0 allocates lazily
 * zeroed blocks (thick, lazy-zeroed). */
int vdfs_fallocate(struct vdfs *fs, uint32_t ino, int mode, uint64_t off, uint64_t len);
/* whence is SEEK_DATA or SEEK_HOLE; -ENXIO past the end. */
int64_t vdfs_lseek(struct vdfs *fs, uint32_t ino, uint64_t off, int whence);

/* Callbacks of vdfs_readdir and vdfs_map run under the volume lock: they
 * must not call back into the library. */

/* Calls fn for each entry from `cookie` on ("." and ".." first); fn returns
 * non-zero to stop.  next_cookie resumes after that entry. */
typedef int (*vdfs_readdir_fn)(void *ctx, const char *name, uint32_t ino, uint32_t mode,
                               uint64_t next_cookie);
int vdfs_readdir(struct vdfs *fs, uint32_t dir, uint64_t cookie, vdfs_readdir_fn fn, void *ctx);

#define VDFS_XATTR_CREATE  1
#define VDFS_XATTR_REPLACE 2
int vdfs_setxattr(struct vdfs *fs, uint32_t ino, const char *name, const void *value, size_t size,
                  int flags);
ssize_t vdfs_getxattr(struct vdfs *fs, uint32_t ino, const char *name, void *value, size_t size);
ssize_t vdfs_listxattr(struct vdfs *fs, uint32_t ino, char *list, size_t size);
int vdfs_removexattr(struct vdfs *fs, uint32_t ino, const char *name);

/* File data lives in file blocks and, for files up to one block, in
 * sub-blocks: both regions count as the datastore's data space. */
struct vdfs_statfs {
    uint64_t block_size;
    uint64_t total_blocks, free_blocks;
    uint64_t subblock_size;
    uint64_t total_subblocks, free_subblocks;
    uint64_t total_files, free_files;
    uint32_t name_max;
};
int vdfs_statfs(struct vdfs *fs, struct vdfs_statfs *sf);

struct vdfs_usage {
    uint64_t capacity_bytes;    /* the file-block and sub-block regions: all data space */
    uint64_t free_bytes;
    uint64_t provisioned_bytes; /* sum of file sizes: what thin files promise */
    uint64_t allocated_bytes;   /* data space actually handed out */
    uint64_t files, directories;
    uint64_t used[4], total[4]; /* per resource type: FB, SB, PB, FD */
};
int vdfs_usage(struct vdfs *fs, struct vdfs_usage *u);

/* A file's block map in logical order: allocated ranges and holes. */
struct vdfs_extent {
    uint64_t logical;  /* byte offset in the file */
    uint64_t length;
    uint64_t physical; /* byte offset on the device; 0 for a hole */
    bool hole;
    bool unwritten;    /* allocated but to-be-zeroed (reads as zeros) */
    bool subblock;
};
typedef int (*vdfs_map_fn)(void *ctx, const struct vdfs_extent *ext);
int vdfs_map(struct vdfs *fs, uint32_t ino, vdfs_map_fn fn, void *ctx);

/* Volume facts for `vdfsctl info`. */
struct vdfs_info {
    char uuid[37];
    char label[65];
    uint32_t version;
    uint64_t total_bytes;
    uint64_t grow_limit; /* the largest total_bytes vdfs_grow can reach */
    uint64_t backup_offset; /* of the backup superblock, for fsck.vdfs -B */
    uint32_t block_size, subblock_size, max_hosts, journal_blocks;
    uint32_t my_slot;
};
int vdfs_get_info(struct vdfs *fs, struct vdfs_info *info);

/* Grows the datastore to `new_total` bytes of its device, which must
 * already be that large, adding file blocks into the room mkfs left
 * (vdfs_info.grow_limit).  Other hosts see the new size when they next
 * take the volume metadata lock.  0 (also when the size is unchanged),
 * -EINVAL to shrink, -EFBIG past grow_limit, -ENOSPC when the device is
 * smaller, -EROFS on a read-only mount. */
struct vdfs_grow_result {
    uint64_t old_bytes, new_bytes, limit_bytes;
    uint64_t added_blocks;
};
int vdfs_grow(struct vdfs *fs, uint64_t new_total, struct vdfs_grow_result *res);

/* Renames the datastore (at most 64 bytes; "" for none), in both
 * superblocks.  Other hosts see it when they next take the volume metadata
 * lock.  0, -ENAMETOOLONG, -EROFS. */
int vdfs_set_label(struct vdfs *fs, const char *label);

/* Names the other host that holds ino's file lock: host name, UUID, slot
 * and pid in `host`.  1 when another host holds it, 0 when it is free or
 * held by this host only, or a negative errno. */
int vdfs_lock_holder(struct vdfs *fs, uint32_t ino, char *host, size_t len);

const char *vdfs_strerror(int err);

/* UUIDs in their 36-character text form (8-4-4-4-12 hex digits). */
int vdfs_uuid_parse(const char *text, uint8_t uuid[16]);
void vdfs_uuid_format(const uint8_t uuid[16], char text[37]);
/* A new random (version 4) UUID. */
void vdfs_uuid_generate(uint8_t uuid[16]);

#endif
