/* The forwarding engine: classify, police, look up, tag and queue each frame,
 * then flush every touched port with one batched send. */
#ifndef VDFS_VSWITCH_FORWARD_H
#define VDFS_VSWITCH_FORWARD_H

#include "vswitch.h"

/* Forwards the first `count` frames of sw->in, read from `ingress`.  A
 * message flagged MSG_TRUNC is counted as oversize. */
void forward_batch(struct vswitch *sw, struct port *ingress, unsigned count);

#endif
