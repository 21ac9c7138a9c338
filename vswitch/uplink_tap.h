/* The uplink: a TAP device (IFF_TAP | IFF_NO_PI) owned by the switch as port 0. */
#ifndef VDFS_VSWITCH_UPLINK_TAP_H
#define VDFS_VSWITCH_UPLINK_TAP_H

#include "vswitch.h"

/* Opens (creating if needed) TAP `name` as the uplink; replaces any previous one. */
int uplink_open(struct vswitch *sw, const char *name, char *err, size_t err_len);
void uplink_close(struct vswitch *sw);
/* Sets the TAP's MTU to follow the switch's; best effort. */
void uplink_apply_mtu(struct vswitch *sw);
/* Reads one batch of frames from the TAP and forwards it; closes the
 * uplink if the TAP is gone. */
void uplink_receive(struct vswitch *sw);
/* Writes the uplink's egress queue to the TAP. */
void uplink_flush(struct vswitch *sw, struct port *uplink);

#endif
