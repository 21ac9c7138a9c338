/* An existing Ethernet interface (a physical NIC, a bond, a veth) as the
 * uplink, through an AF_PACKET socket bound to it in promiscuous mode:
 * frames move in batches (recvmmsg/sendmmsg).  Frames the host itself sends
 * on the interface are not seen (PACKET_IGNORE_OUTGOING), and a VLAN tag
 * the driver stripped on receive is put back from the packet's auxdata, so
 * the switch sees the frame as it was on the wire. */
#ifndef VDFS_VSWITCH_UPLINK_NIC_H
#define VDFS_VSWITCH_UPLINK_NIC_H

#include <stddef.h>
#include <stdint.h>

#include "vswitch.h"

/* Binds to interface `name`.  The fd (nonblocking) and *ifindex, or -1
 * with `err` filled (no such interface, not Ethernet, no CAP_NET_RAW). */
int nic_open(const char *name, int *ifindex, char *err, size_t err_len);
/* Receives up to VSW_BATCH frames into `in`; *gone is set to an errno
 * when the interface no longer exists.  An interface that is merely down
 * gives no frames until it is up again. */
unsigned nic_receive(int fd, int ifindex, struct ingress_batch *in, int *gone);
/* Sends the queue's frames; returns how many went out (the others, e.g.
 * larger than the interface's MTU, are the caller's drops). */
unsigned nic_send(int fd, struct egress_queue *q, uint64_t *bytes);

#endif
