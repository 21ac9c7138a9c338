/* The control socket: a unix stream socket; each connection carries one
 * request line and gets one response, then the switch closes it. */
#ifndef VDFS_VSWITCH_CONTROL_H
#define VDFS_VSWITCH_CONTROL_H

#include "vswitch.h"

void control_accept(struct vswitch *sw);
void control_handle(struct vswitch *sw, struct control_conn *conn, uint32_t events);
void control_expire(struct vswitch *sw, uint64_t now_s);
void control_close_all(struct vswitch *sw);

#endif
