/* An existing Ethernet interface (a physical NIC, a bond, a veth) as the
 * uplink, through an AF_PACKET socket bound to it in promiscuous mode:
 * frames move in batches (recvmmsg/sendmmsg).  Frames the host itself sends
 * on the interface are not seen (PACKET_IGNORE_OUTGOING), and a VLAN tag
 * the driver stripped on receive is put back from the packet's auxdata, so
 * the switch sees the frame as it was on the wire.  Offloads the host's
 * stack left undone (a partial checksum, a TSO or GRO super-frame) are
 * finished here (offload.c), since a VM's port takes plain frames. */
#ifndef VDFS_VSWITCH_UPLINK_NIC_H
#define VDFS_VSWITCH_UPLINK_NIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vswitch.h"

/* Binds to interface `name`.  The fd (nonblocking) and *ifindex, or -1
 * with `err` filled (no such interface, not Ethernet, no CAP_NET_RAW). */
int nic_open(const char *name, int *ifindex, char *err, size_t err_len);
/* The uplink's buffers: what one receive call got, until all of it is
 * handed on (a super-frame becomes many frames), and the send headers. */
struct nic_state *nic_state_new(void);
void nic_state_free(struct nic_state *st);
/* Hands on up to VSW_BATCH frames in `in`, receiving more only when what
 * the last receive got is all handed on; counts split super-frames in
 * counters.  *gone is set to an errno when the interface no longer
 * exists.  An interface that is merely down gives no frames until it is
 * up again. */
unsigned nic_receive(struct nic_state *st, int fd, int ifindex, struct ingress_batch *in,
                     struct port_counters *counters, int *gone);
/* Whether received frames are still waiting to be handed on. */
bool nic_receive_pending(const struct nic_state *st);
/* Sends the queue's frames; returns how many went out (the others, e.g.
 * larger than the interface's MTU, are the caller's drops). */
unsigned nic_send(struct nic_state *st, int fd, struct egress_queue *q, uint64_t *bytes);

#endif
