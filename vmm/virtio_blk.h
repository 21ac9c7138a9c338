/* virtio-blk (virtio 1.2 §5.2) over the virtio-pci transport, with a small
 * backend interface so a disk can be a plain file served through io_uring
 * or anything else that can read, write, flush and punch holes.
 *
 * Offered features: VERSION_1, RING_EVENT_IDX, SEG_MAX, BLK_SIZE, FLUSH and,
 * for writable disks, DISCARD and WRITE_ZEROES; RO for read-only disks.
 * GET_ID returns the configured serial.  One request queue of 256 entries,
 * served from one I/O thread per disk; each host I/O (a request, or a run
 * of adjacent reads or writes of one kick merged into one) is submitted as
 * soon as it is formed, and requests complete in any order.
 *
 * A request that breaks the virtio rules (bad chain, data in the wrong
 * direction, no status byte) puts the device in NEEDS_RESET; one that is
 * merely wrong (sector past the end, write to a read-only disk, bad length)
 * completes with VIRTIO_BLK_S_IOERR or _UNSUPP.  The first such event per
 * device reset is logged on stderr.  A write the backend has no space for
 * (-ENOSPC, -EDQUOT) is not an error: it waits and is retried every second
 * until it fits (docs/vmm.md, "When a disk's space runs out"). */
#ifndef VDFS_VMM_VIRTIO_BLK_H
#define VDFS_VMM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <liburing.h>

#include "bus.h"
#include "config.h"
#include "pci.h"

#define VIRTIO_BLK_SECTOR_SIZE 512u
#define VIRTIO_BLK_SEG_MAX 126u     /* data segments per request */
#define VIRTIO_BLK_QUEUE_SIZE 256u

/* One backend operation.  `complete` runs exactly once for every operation
 * a backend accepted (returned 0 for): inside the call for a synchronous
 * backend, or from reap() for an asynchronous one.  `result` is 0 or -errno;
 * -EOPNOTSUPP becomes VIRTIO_BLK_S_UNSUPP; -ENOSPC and -EDQUOT on a write
 * make it wait for space; anything else is VIRTIO_BLK_S_IOERR. */
struct blk_io {
    uint64_t offset; /* bytes */
    uint64_t len;    /* bytes (read/write: sum of iov; discard/zeroes: range) */
    struct iovec *iov;
    int iovcnt;
    bool unmap;      /* write_zeroes: the range may be deallocated */
    unsigned backend_state; /* scratch for the backend */
    void (*complete)(struct blk_io *io, int result);
};

struct blk_backend;
struct blk_backend_ops {
    /* Each returns 0 when accepted or -errno when refused at once (then
     * `complete` is not called). */
    int (*read)(struct blk_backend *be, struct blk_io *io);
    int (*write)(struct blk_backend *be, struct blk_io *io);
    int (*flush)(struct blk_backend *be, struct blk_io *io);
    int (*discard)(struct blk_backend *be, struct blk_io *io);
    int (*write_zeroes)(struct blk_backend *be, struct blk_io *io);
    uint64_t (*capacity)(struct blk_backend *be); /* bytes, a multiple of 512 */
    void (*close)(struct blk_backend *be);
    /* Asynchronous backends only; NULL for synchronous ones.  submit() starts
     * what was accepted since the last call (the device calls it after
     * each accepted operation); a backend with end_batch() may hold work
     * that loses nothing by waiting until end_batch(), which the device
     * calls once it has taken every request it was given (optional);
     * completion_fd() is readable when reap() has completions to deliver. */
    void (*submit)(struct blk_backend *be);
    void (*end_batch)(struct blk_backend *be);
    int (*completion_fd)(struct blk_backend *be);
    void (*reap)(struct blk_backend *be);
};

struct blk_backend {
    const struct blk_backend_ops *ops;
    bool readonly;
};

/* The plain-file (or block-device) backend: I/O through one io_uring,
 * buffered, or O_DIRECT when `direct` (requests whose buffers are not
 * aligned for O_DIRECT then go through the page cache); discard punches
 * holes (FALLOC_FL_PUNCH_HOLE|KEEP_SIZE), write-zeroes uses
 * FALLOC_FL_ZERO_RANGE or a punch.  NULL with `err` filled on failure. */
struct blk_backend *blk_file_open(const char *path, bool readonly, bool direct, char *err,
                                  size_t errlen);

/* A disk's io_uring (VIRTIO_BLK_QUEUE_SIZE entries) that signals `efd` on
 * completions and may only do what a disk needs
 * (IORING_REGISTER_RESTRICTIONS: readv, writev, fsync, fallocate): a
 * thread the guest subverted cannot use it to open files or sockets, and
 * its seccomp profile lets it make no other ring.  0 or -errno. */
int blk_ring_init(struct io_uring *ring, int efd);

/* Creates a virtio-blk PCI function for cfg->path (a plain path; the
 * "vdfs:" form needs a libvdfs backend passed to virtio_blk_create_backend).
 * Returns 0 or -errno with a message on stderr. */
int virtio_blk_create(struct pci_bus *pci, struct vm_services *svc, const struct disk_config *cfg);
/* Called (from a disk's I/O thread) when a disk's writes start waiting for
 * space and when they stop, because space was found or they were dropped. */
void virtio_blk_set_space_wait_hook(void (*hook)(const char *disk, bool waiting));
/* The same with a backend the caller opened; the device owns it from here
 * on (also on failure).  cfg->path is used in messages only. */
int virtio_blk_create_backend(struct pci_bus *pci, struct vm_services *svc,
                              const struct disk_config *cfg, struct blk_backend *be);
/* Stops every disk's I/O thread, waits for in-flight I/O, closes the
 * backends and removes the PCI functions.  Call before pci_bus_destroy. */
void virtio_blk_destroy_all(void);

#endif
