/* The port handshake: accept a client, read its hello, answer with an ack. */
#ifndef VDFS_VSWITCH_HELLO_H
#define VDFS_VSWITCH_HELLO_H

#include "vswitch.h"

/* Accepts pending connections on the port socket. */
void hello_accept(struct vswitch *sw);
/* Reads the hello of a pending connection and attaches or rejects it. */
void hello_receive(struct vswitch *sw, struct hello_conn *conn);
/* Drops connections that sent no hello in time. */
void hello_expire(struct vswitch *sw, uint64_t now_s);
void hello_close_all(struct vswitch *sw);

#endif
