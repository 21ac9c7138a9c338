#include "port.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "forward.h"
#include "loop.h"
#include "mactable.h"
#include "security.h"
#include "shaping.h"

/* A deep send buffer lets a burst to a slow reader wait in the kernel instead of being dropped. */
#define PORT_SNDBUF (4 << 20)

static void recount_promiscuous(struct vswitch *sw);

struct port *port_attach(struct vswitch *sw, int fd, const uint8_t *mac, struct portgroup *pg,
                         const char *client_name, enum vdsw_status *status)
{
    struct port *port = NULL;
    for (int id = 1; id < VSW_MAX_PORTS; id++) {
        if (!sw->ports[id].in_use) {
            port = &sw->ports[id];
            break;
        }
    }
    if (!port) {
        *status = VDSW_STATUS_SWITCH_FULL;
        return NULL;
    }
    if (mac_table_find_static(&sw->macs, mac) >= 0) {
        *status = VDSW_STATUS_MAC_IN_USE;
        return NULL;
    }
    struct egress_queue *queue = calloc(1, sizeof(*queue));
    if (!queue) {
        *status = VDSW_STATUS_SWITCH_FULL;
        return NULL;
    }
    int id = (int)(port - sw->ports);
    memset(port, 0, sizeof(*port));
    port->ev.kind = EV_PORT;
    port->id = id;
    port->fd = fd;
    port->pg = pg;
    port->queue = queue;
    memcpy(port->mac, mac, 6);
    snprintf(port->client_name, sizeof(port->client_name), "%s", client_name);
    port->attached_at = vsw_now_s();
    int sndbuf = PORT_SNDBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    if (loop_watch(sw, fd, EPOLLIN | EPOLLRDHUP, &port->ev) < 0) {
        free(queue);
        port->queue = NULL;
        *status = VDSW_STATUS_SWITCH_FULL;
        return NULL;
    }
    mac_table_add_static(&sw->macs, mac, id);
    shaping_reset(&port->bucket, shaping_effective(sw, pg), sw->mtu, vsw_monotonic_ns());
    port->in_use = true;
    pg->attached_ports++;
    sw->attached_ports++;
    recount_promiscuous(sw);
    *status = VDSW_STATUS_OK;
    return port;
}

void port_detach(struct vswitch *sw, struct port *port)
{
    if (!port->in_use || port->is_uplink)
        return;
    loop_unwatch(sw, port->fd);
    close(port->fd);
    security_forget_changed_mac(sw, port);
    if (mac_table_find_static(&sw->macs, port->mac) == port->id)
        mac_table_remove_static(&sw->macs, port->mac);
    port->pg->attached_ports--;
    sw->attached_ports--;
    free(port->queue);
    int id = port->id;
    memset(port, 0, sizeof(*port));
    port->id = id;
    port->fd = -1;
    recount_promiscuous(sw);
}

void ports_policy_changed(struct vswitch *sw, const struct portgroup *pg)
{
    uint64_t now = vsw_monotonic_ns();
    for (int id = 1; id < VSW_MAX_PORTS; id++) {
        struct port *port = &sw->ports[id];
        if (!port->in_use || (pg && port->pg != pg))
            continue;
        shaping_reset(&port->bucket, shaping_effective(sw, port->pg), sw->mtu, now);
        if (security_effective(sw, port->pg).mac_changes != POLICY_ACCEPT)
            security_forget_changed_mac(sw, port);
    }
    recount_promiscuous(sw);
}

static void recount_promiscuous(struct vswitch *sw)
{
    unsigned n = 0;
    for (int id = 1; id < VSW_MAX_PORTS; id++)
        if (sw->ports[id].in_use && security_effective(sw, sw->ports[id].pg).promiscuous == POLICY_ACCEPT)
            n++;
    sw->promiscuous_ports = n;
}

static bool peer_has_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP));
}

bool port_receive(struct vswitch *sw, struct port *port, bool peer_closed)
{
    struct ingress_batch *in = sw->in;
    for (unsigned i = 0; i < VSW_BATCH; i++) {
        in->iov[i] = (struct iovec){in->buf[i], VSW_BUF_SIZE};
        in->msgs[i].msg_hdr = (struct msghdr){.msg_iov = &in->iov[i], .msg_iovlen = 1};
    }
    int n = recvmmsg(port->fd, in->msgs, VSW_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR;
    /* A SEQPACKET socket reads an empty message at EOF; a client may also
     * send an empty message, which is a runt, so ask the socket which it is. */
    unsigned frames = (unsigned)n;
    bool eof = false;
    for (unsigned i = 0; i < frames; i++) {
        if (in->msgs[i].msg_len == 0 && (peer_closed || peer_has_closed(port->fd))) {
            frames = i;
            eof = true;
            break;
        }
    }
    forward_batch(sw, port, frames);
    return !eof && !(n == 0 && peer_closed);
}
