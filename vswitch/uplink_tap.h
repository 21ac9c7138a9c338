/* A TAP device as the uplink (IFF_TAP | IFF_NO_PI): one frame per read or
 * write, since a TAP fd has no recvmmsg. */
#ifndef VDFS_VSWITCH_UPLINK_TAP_H
#define VDFS_VSWITCH_UPLINK_TAP_H

#include <stddef.h>

#include "vswitch.h"

/* Opens (creating if needed) TAP `name`, nonblocking; its kernel name goes
 * to `ifname` (IFNAMSIZ bytes).  The fd, or -1 with `err` filled. */
int tap_open(const char *name, char *ifname, char *err, size_t err_len);
/* Reads up to VSW_BATCH frames into `in`; *gone is set to the errno when
 * the TAP is gone for good (deleted, or its namespace destroyed). */
unsigned tap_receive(int fd, struct ingress_batch *in, int *gone);
/* Writes the queue's frames; returns how many went out (the others were
 * refused and are the caller's drops). */
unsigned tap_send(int fd, struct egress_queue *q, uint64_t *bytes);
/* Sets the TAP's MTU; best effort (it fails once the TAP moved to another
 * network namespace, and the switch enforces its MTU anyway). */
void tap_set_mtu(const char *ifname, unsigned mtu);

#endif
