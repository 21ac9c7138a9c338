/* Hosts on this machine that are leaving: a vdfs-fuse daemon whose mount
 * is already gone but which still holds its heartbeat slot while it writes
 * back, commits its journal and frees the slot.
 *
 * A FUSE mount of an image file ends before its daemon does: umount(8) and
 * fusermount3 -u return once the kernel has dropped the mount, and only
 * then does the daemon see it.  `umount /mnt && fsck.vdfs IMAGE` would
 * meet a host that is still there for a moment (seconds, with much data
 * held for write-back).  Tools that need the datastore to themselves wait
 * for such a host instead of refusing; a host that is still mounted is
 * refused at once, as before. */
#ifndef VDFS_DEPARTING_H
#define VDFS_DEPARTING_H

#include <stdbool.h>
#include <stdint.h>

#include "device.h"

/* How long a tool waits for a departing host before it gives up and
 * refuses, as for a mounted one. */
#define VDFS_DEPARTING_WAIT_MS 120000u

/* Whether process `pid` of this machine is a vdfs-fuse daemon that has the
 * datastore on `dev` open but no mount of it: no more (unmounting), or not
 * yet (between joining the datastore and mounting, when waiting ends with
 * a mounted host, which is refused). */
bool vdfs_host_is_departing(struct vdfs_dev *dev, uint32_t pid);

/* Waits while heartbeat slot `slot`'s liveness lock is held by `pid`, a
 * departing host (above).  0: the lock was released; -EBUSY: it is held by
 * a host that is not departing; -ETIMEDOUT: still held after timeout_ms;
 * or another -errno. */
int vdfs_wait_departing_host(struct vdfs_dev *dev, uint32_t slot, uint32_t pid, unsigned timeout_ms);

/* Waits until no heartbeat slot's liveness lock is held by a host of this
 * machine that is leaving: a departing vdfs-fuse daemon (above; at most
 * VDFS_DEPARTING_WAIT_MS each), or a host that has already written its
 * slot FREE and is about to let go of the lock (a moment).  Hosts that stay
 * (mounted, or claiming a slot) are left for the caller's own check, which
 * refuses them.  `notice`, if given, is called before waiting for a
 * departing daemon (for a message). */
void vdfs_wait_departing_hosts(struct vdfs_dev *dev, uint64_t heartbeat_offset, uint32_t slots,
                               void (*notice)(uint32_t slot, uint32_t pid, void *arg), void *arg);

/* Undoes the \ooo escapes of /proc/PID/mountinfo and /proc/swaps (blanks,
 * backslashes), in place. */
void vdfs_unescape_octal(char *s);

#endif
