/* VM ports: attach after a good hello, detach when the client goes away. */
#ifndef VDFS_VSWITCH_PORT_H
#define VDFS_VSWITCH_PORT_H

#include "vswitch.h"

/* Attaches fd as a port of pg with mac.  On failure returns NULL and sets
 * *status to the hello-ack status; fd stays the caller's. */
struct port *port_attach(struct vswitch *sw, int fd, const uint8_t *mac, struct portgroup *pg,
                         const char *client_name, enum vdsw_status *status);
void port_detach(struct vswitch *sw, struct port *port);
/* Re-reads shaping for every port of pg (or all ports when pg is NULL). */
void ports_policy_changed(struct vswitch *sw, const struct portgroup *pg);
/* Reads one batch from a VM port and forwards it.  Returns false once the
 * client has gone away (the caller detaches the port). */
bool port_receive(struct vswitch *sw, struct port *port, bool peer_closed);

#endif
