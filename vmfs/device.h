/* The one layer that touches the device or image file.
 *
 * I/O goes through io_uring (a small pool of rings so that threads do not
 * serialise on one ring), with O_DIRECT where the device allows it and
 * plain pread/pwrite when io_uring is unavailable.  All calls are
 * thread-safe.  Every call returns 0 or a negative errno.
 */
#ifndef VDFS_DEVICE_H
#define VDFS_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vdfs_dev;

enum {
    VDFS_DEV_RDONLY = 1u << 0,
    VDFS_DEV_DIRECT = 1u << 1,  /* ask for O_DIRECT; falls back to buffered if refused */
    VDFS_DEV_NO_URING = 1u << 2, /* force the pread/pwrite path (tests) */
};

int vdfs_dev_open(const char *path, unsigned flags, struct vdfs_dev **out);
void vdfs_dev_close(struct vdfs_dev *dev);

uint64_t vdfs_dev_size(const struct vdfs_dev *dev);
/* Reads the size again: the image file or the LUN may have grown. */
int vdfs_dev_refresh_size(struct vdfs_dev *dev);
bool vdfs_dev_is_blockdev(const struct vdfs_dev *dev);
bool vdfs_dev_is_direct(const struct vdfs_dev *dev);
bool vdfs_dev_is_readonly(const struct vdfs_dev *dev);
/* Buffers, offsets and lengths passed to read/write/submit must be
 * multiples of this (1 when buffered, the logical block size when
 * O_DIRECT).  Metadata I/O is always 4096-aligned, so it always fits. */
uint32_t vdfs_dev_alignment(const struct vdfs_dev *dev);
int vdfs_dev_fd(const struct vdfs_dev *dev);
/* Creates io_uring rings now until `count` exist (at most the pool's
 * size), for a process that will forbid io_uring_setup later (seccomp) and
 * then runs that many threads of I/O at once.  Returns how many exist
 * (0 when io_uring is unavailable: I/O then uses pread/pwrite). */
unsigned vdfs_dev_prepare_rings(struct vdfs_dev *dev, unsigned count);

/* Whole-length I/O.  Reading past the end of the device is -EIO. */
int vdfs_dev_read(struct vdfs_dev *dev, void *buf, size_t len, uint64_t off);
int vdfs_dev_write(struct vdfs_dev *dev, const void *buf, size_t len, uint64_t off);

/* True if buf, len and off meet vdfs_dev_alignment(). */
bool vdfs_dev_aligned(const struct vdfs_dev *dev, const void *buf, size_t len, uint64_t off);
/* The same I/O at any alignment: when O_DIRECT needs alignment the caller
 * lacks, it goes through an aligned bounce buffer, reading back only the
 * partial sectors at either end of a write.  Not atomic against other
 * writers of those sectors. */
int vdfs_dev_read_any(struct vdfs_dev *dev, void *buf, size_t len, uint64_t off);
int vdfs_dev_write_any(struct vdfs_dev *dev, const void *buf, size_t len, uint64_t off);

/* A batch: all requests are queued, submitted together and waited for.
 * Each request's `result` gets 0 or -errno; the call returns the first
 * error or 0. */
enum vdfs_io_op { VDFS_IO_READ = 0, VDFS_IO_WRITE = 1 };
struct vdfs_io {
    enum vdfs_io_op op;
    void *buf;
    size_t len;
    uint64_t off;
    int result;
};
int vdfs_dev_submit(struct vdfs_dev *dev, struct vdfs_io *ios, unsigned count);
/* Writes are being recorded (VDFS_TRACE_WRITES): they must all pass through
 * vdfs_dev_submit. */
bool vdfs_dev_is_traced(const struct vdfs_dev *dev);

/* Makes every completed write durable (fdatasync). */
int vdfs_dev_flush(struct vdfs_dev *dev);

/* Makes a range read as zeros without writing data where the device can:
 * on files it punches a hole (so a thin image stays thin), falling back to
 * ZERO_RANGE; on block devices BLKZEROOUT; otherwise it writes zeros. */
int vdfs_dev_zero(struct vdfs_dev *dev, uint64_t off, uint64_t len);

/* Returns a range's backing space to the host (punch hole / BLKDISCARD).
 * Best effort: the range's content is unspecified afterwards. */
int vdfs_dev_discard(struct vdfs_dev *dev, uint64_t off, uint64_t len);

/* Sector-atomic compare-and-write.  Under an OFD write lock on the range
 * it reads `len` bytes at `off`; if they equal `expect` it writes `data`
 * and makes it durable, else it copies what it found into `found` (when
 * not NULL) and returns -EAGAIN.  len and off are multiples of 512. */
int vdfs_dev_compare_and_write(struct vdfs_dev *dev, uint64_t off, size_t len,
                               const void *expect, const void *data, void *found);

/* The same with flags.  VDFS_CAW_NO_FLUSH: the write is visible to every
 * other reader of the device when this returns, but not yet durable; for
 * records whose meaning dies with their writer (a file's open lock). */
#define VDFS_CAW_NO_FLUSH 1u
int vdfs_dev_compare_and_write_flags(struct vdfs_dev *dev, uint64_t off, size_t len, const void *expect,
                                     const void *data, void *found, unsigned flags);

/* Reads a sector range under a shared OFD lock, so that it never sees a
 * compare-and-write half done. */
int vdfs_dev_read_atomic(struct vdfs_dev *dev, void *buf, size_t len, uint64_t off);

/* OFD byte-range locks on the device, for process liveness on one machine:
 * a mounted host holds a read lock on its heartbeat slot so that others on
 * the same machine can tell a dead process at once.  try_lock returns 0 or
 * -EAGAIN; probe returns 1 if some other open file description holds a
 * conflicting lock, 0 if not. */
int vdfs_dev_try_lock(struct vdfs_dev *dev, uint64_t off, uint64_t len, bool exclusive);
int vdfs_dev_unlock(struct vdfs_dev *dev, uint64_t off, uint64_t len);
int vdfs_dev_probe_lock(struct vdfs_dev *dev, uint64_t off, uint64_t len);

/* Fencing for the cluster protocol.  Once fenced, or once CLOCK_MONOTONIC
 * passes the write deadline (the host's heartbeat lease), every write,
 * zero, discard and compare-and-write fails with -EIO; the check runs
 * right before the request is handed to the kernel, so a host that was
 * stopped (SIGSTOP, a long stall) and resumes after its lease never
 * writes.  Passing the deadline fences for good.  Reads still work. */
void vdfs_dev_fence(struct vdfs_dev *dev);
bool vdfs_dev_is_fenced(struct vdfs_dev *dev);
/* 0: no deadline (single-process tools, mkfs, fsck). */
void vdfs_dev_set_write_deadline(struct vdfs_dev *dev, uint64_t monotonic_deadline_ms);

/* How long compare-and-write (and read_atomic, 50 ms) waits for another
 * process's OFD lock on the range before it goes on without it: a process
 * stopped inside a compare-and-write keeps that lock while stopped.  0
 * (the default) waits forever.  Without the lock a compare-and-write
 * reads back after a 20 ms settle time and reports -EAGAIN unless its own
 * image is still there; read_atomic returns two equal reads in a row.
 * The library sets the heartbeat timeout: by then the stopped holder's
 * lease is over and the device layer refuses its writes.  The wait hook
 * below usually ends the wait sooner. */
void vdfs_dev_set_lock_patience(struct vdfs_dev *dev, uint32_t ms);

/* Holder tags.  While a process holds an OFD lock on a sector window
 * (inside compare-and-write or read_atomic) it also holds a read lock on
 * the byte of its holder tag, taken before and dropped after, so the set
 * of tags held at any moment covers every process that may hold a window.
 * A cluster host sets its heartbeat slot as its tag once the slot is
 * LIVE, and VDFS_DEV_TAG_ANON (the default: mounting, unmounting, tools)
 * otherwise.  probe_holder_tags returns 1 when another open file
 * description holds one of the tags first..first+count-1 (first ==
 * VDFS_DEV_TAG_ANON: the anonymous tag), 0 when none, or -errno. */
#define VDFS_DEV_TAG_ANON UINT32_MAX
void vdfs_dev_set_holder_tag(struct vdfs_dev *dev, uint32_t tag);
int vdfs_dev_probe_holder_tags(struct vdfs_dev *dev, uint32_t first, uint32_t count);

/* Called about every 10 ms, without any device lock held, while a
 * compare-and-write has waited 10 ms or more for another process's OFD
 * lock on its window.  Returning true asserts that the processes holding
 * the tags set in *dead_tags (bit t: tag t < 64) can write no more (the
 * cluster's rules: a host dead by its heartbeat timeout, its lease over).
 * The compare-and-write then tries the lock once more and, if it is still
 * busy while one of those tags and no other is held, goes on without it
 * as after the patience.  NULL: none. */
typedef bool (*vdfs_dev_wait_hook)(void *arg, uint64_t *dead_tags);
void vdfs_dev_set_wait_hook(struct vdfs_dev *dev, vdfs_dev_wait_hook hook, void *arg);

/* Crash testing: when the environment variable VDFS_TRACE_WRITES names a
 * file at open time, every write, zero, discard and flush that reaches the
 * device is appended to it in order (see tests/crash/). */
#define VDFS_TRACE_ENV "VDFS_TRACE_WRITES"
enum vdfs_trace_op { VDFS_TRACE_WRITE = 1, VDFS_TRACE_FLUSH = 2, VDFS_TRACE_ZERO = 3, VDFS_TRACE_DISCARD = 4 };
/* Trace record: le32 op, le32 reserved, le64 offset, le64 length, then
 * `length` data bytes for VDFS_TRACE_WRITE only. */

/* Aligned buffer helpers for O_DIRECT (alignment 4096). */
void *vdfs_aligned_alloc(size_t len);
void vdfs_aligned_free(void *p);

#endif
