/* vdfs-fuse's write-back cache of overwrites (see wcache.c). */
#ifndef VDFS_FUSE_WCACHE_H
#define VDFS_FUSE_WCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vdfs.h"

struct wcache;
struct wc_inode;

/* How much written data the cache may hold before the flusher starts
 * (limit) and before a writer must write back itself (hard limit). */
struct wcache_limits {
    uint64_t limit_bytes;
    uint64_t hard_bytes;
    uint64_t expire_ms;   /* data older than this is written back */
    uint64_t interval_ms; /* how often the flusher looks for it */
};

/* The kernel's page-cache writeback settings (/proc/sys/vm/dirty_*), so
 * that data held here is held as long and as much as the kernel would
 * hold it for a local file system; limit_mb, when not 0, overrides the
 * limit (and the hard limit becomes twice it). */
void wcache_default_limits(uint64_t limit_mb, struct wcache_limits *out);

/* With limit_bytes 0 the cache holds nothing: every write goes through.
 * 0 or -errno. */
int wcache_create(struct vdfs *fs, const struct wcache_limits *limits, struct wcache **out);
/* Writes everything back and stops the flusher; the first error. */
int wcache_destroy(struct wcache *wc);

/* 1: the write is held (whole pages that overwrite written blocks of a
 * file this host holds alone); 0: the caller must write it through the
 * library (anything the cache held of the file is written back first);
 * < 0: an error. */
int wcache_write(struct wcache *wc, uint32_t ino, const void *buf, size_t len, uint64_t off);
/* vdfs_pread with the held pages laid over what the device returned. */
ssize_t wcache_read(struct wcache *wc, uint32_t ino, void *buf, size_t len, uint64_t off);
/* Writes the file's held pages back; returns, and forgets, the first
 * write-back error since the last call (as fsync(2) reports writeback
 * errors). */
int wcache_flush(struct wcache *wc, uint32_t ino);
/* The same, leaving any error for the next fsync or close. */
void wcache_write_back(struct wcache *wc, uint32_t ino);

/* For operations that change which blocks a file has (truncate,
 * fallocate, a copy into it): writes its held pages back and keeps new
 * ones out until wcache_unexclude.  *held is for wcache_unexclude.  A
 * write-back error is left for the next fsync or close; the result is
 * 0 or -ENOMEM. */
int wcache_exclude(struct wcache *wc, uint32_t ino, struct wc_inode **held);
void wcache_unexclude(struct wcache *wc, struct wc_inode *held);

#endif
