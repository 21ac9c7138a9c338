/* The uplink is port 0: a TAP device (uplink_tap.c) or an existing Ethernet
 * interface through AF_PACKET (uplink_nic.c).  Its frames enter the switch
 * like any port's, except that the uplink carries every VLAN (tagged, VLAN 0
 * untagged) and is the only port whose source MACs are learned. */
#ifndef VDFS_VSWITCH_UPLINK_H
#define VDFS_VSWITCH_UPLINK_H

#include "vswitch.h"

/* Attaches `name` as the uplink: a TAP (created if needed) or a NIC;
 * replaces any previous uplink.  0, or -1 with `err` filled. */
int uplink_open(struct vswitch *sw, enum uplink_kind kind, const char *name, char *err, size_t err_len);
void uplink_close(struct vswitch *sw);
/* "TAP" or "NIC". */
const char *uplink_kind_name(enum uplink_kind kind);
/* A TAP uplink's MTU follows the switch's; best effort.  A NIC's MTU is
 * the host's to set. */
void uplink_apply_mtu(struct vswitch *sw);
/* Reads one batch of frames and forwards it; closes the uplink if its
 * interface is gone. */
void uplink_receive(struct vswitch *sw);
/* Sends the uplink's egress queue. */
void uplink_flush(struct vswitch *sw, struct port *uplink);

#endif
