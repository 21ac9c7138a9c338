#include "uplink.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "forward.h"
#include "loop.h"
#include "mactable.h"
#include "uplink_nic.h"
#include "uplink_tap.h"

const char *uplink_kind_name(enum uplink_kind kind)
{
    return kind == UPLINK_NIC ? "NIC" : "TAP";
}

int uplink_open(struct vswitch *sw, enum uplink_kind kind, const char *name, char *err, size_t err_len)
{
    if (strlen(name) == 0 || strlen(name) >= IFNAMSIZ) {
        snprintf(err, err_len, "bad %s name '%s' (1-%d characters)", uplink_kind_name(kind), name, IFNAMSIZ - 1);
        return -1;
    }
    char ifname[IFNAMSIZ];
    int ifindex = 0;
    int fd;
    if (kind == UPLINK_NIC) {
        fd = nic_open(name, &ifindex, err, err_len);
        snprintf(ifname, sizeof(ifname), "%s", name);
    } else {
        fd = tap_open(name, ifname, err, err_len);
    }
    if (fd < 0)
        return -1;
    struct egress_queue *queue = calloc(1, sizeof(*queue));
    struct nic_state *nic = kind == UPLINK_NIC ? nic_state_new() : NULL;
    if (!queue || (kind == UPLINK_NIC && !nic)) {
        snprintf(err, err_len, "out of memory");
        free(queue);
        nic_state_free(nic);
        close(fd);
        return -1;
    }
    uplink_close(sw);
    struct port *up = &sw->ports[VSW_UPLINK_PORT];
    memset(up, 0, sizeof(*up));
    up->ev.kind = EV_PORT;
    up->id = VSW_UPLINK_PORT;
    up->fd = fd;
    up->is_uplink = true;
    up->queue = queue;
    up->nic = nic;
    up->attached_at = vsw_now_s();
    up->uplink_kind = kind;
    up->uplink_ifindex = ifindex;
    snprintf(up->uplink_ifname, sizeof(up->uplink_ifname), "%s", ifname);
    snprintf(up->client_name, sizeof(up->client_name), "uplink");
    if (loop_watch(sw, fd, EPOLLIN, &up->ev) < 0) {
        snprintf(err, err_len, "epoll: %s", strerror(errno));
        free(queue);
        nic_state_free(nic);
        close(fd);
        up->queue = NULL;
        up->nic = NULL;
        return -1;
    }
    up->in_use = true;
    uplink_apply_mtu(sw);
    return 0;
}

void uplink_close(struct vswitch *sw)
{
    struct port *up = &sw->ports[VSW_UPLINK_PORT];
    if (!up->in_use)
        return;
    loop_unwatch(sw, up->fd);
    close(up->fd);
    free(up->queue);
    nic_state_free(up->nic);
    memset(up, 0, sizeof(*up));
    up->fd = -1;
    mac_table_flush_learned(&sw->macs);
}

void uplink_apply_mtu(struct vswitch *sw)
{
    struct port *up = &sw->ports[VSW_UPLINK_PORT];
    if (up->in_use && up->uplink_kind == UPLINK_TAP)
        tap_set_mtu(up->uplink_ifname, sw->mtu);
}

void uplink_receive(struct vswitch *sw)
{
    struct port *up = &sw->ports[VSW_UPLINK_PORT];
    int gone;
    if (up->uplink_kind == UPLINK_NIC) {
        /* Until all that one receive got is forwarded: a super-frame can
         * be more frames than one batch holds. */
        do {
            unsigned count = nic_receive(up->nic, up->fd, up->uplink_ifindex, sw->in, &up->counters, &gone);
            if (count)
                forward_batch(sw, up, count);
        } while (!gone && nic_receive_pending(up->nic));
    } else {
        unsigned count = tap_receive(up->fd, sw->in, &gone);
        if (count)
            forward_batch(sw, up, count);
    }
    if (gone) {
        /* The interface was deleted (or its namespace destroyed): the
         * descriptor stays in error for good, and polling it would spin. */
        fprintf(stderr, "vdfs-switch: uplink %s %s went away (%s); the switch now has no uplink\n",
                uplink_kind_name(up->uplink_kind), up->uplink_ifname, strerror(gone));
        uplink_close(sw);
    }
}

void uplink_flush(struct vswitch *sw, struct port *uplink)
{
    (void)sw;
    struct egress_queue *q = uplink->queue;
    uint64_t bytes = 0;
    unsigned sent = uplink->uplink_kind == UPLINK_NIC ? nic_send(uplink->nic, uplink->fd, q, &bytes)
                                                      : tap_send(uplink->fd, q, &bytes);
    uplink->counters.tx_frames += sent;
    uplink->counters.tx_bytes += bytes;
    uplink->counters.drops[DROP_QUEUE_FULL] += q->count - sent;
}
