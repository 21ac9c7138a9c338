/* Forwarding rules (BRIEF section 5):
 * - VM port MACs are known from the hello; only the uplink learns sources.
 * - Broadcast, multicast and unknown unicast flood the frame's VLAN, never
 *   back to the ingress port.
 * - Promiscuous ports get a copy of every frame in their VLAN.
 * Frames are never copied: egress queues hold iovecs into the ingress batch,
 * with a 4-byte tag inserted or skipped as the egress port requires. */
#include "forward.h"

#include <errno.h>
#include <string.h>

#include "frame.h"
#include "mactable.h"
#include "security.h"
#include "shaping.h"
#include "uplink.h"

static void flush_port(struct vswitch *sw, struct port *port)
{
    struct egress_queue *q = port->queue;
    if (q->count == 0)
        return;
    if (port->is_uplink) {
        uplink_flush(sw, port);
    } else {
        unsigned sent = 0;
        while (sent < q->count) {
            int n = sendmmsg(port->fd, q->msgs + sent, q->count - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                break; /* EAGAIN: the reader is behind; EPIPE: it left and epoll reports the hangup */
            }
            for (int i = 0; i < n; i++) {
                port->counters.tx_frames++;
                port->counters.tx_bytes += q->msgs[sent + (unsigned)i].msg_len;
            }
            sent += (unsigned)n;
        }
        port->counters.drops[DROP_QUEUE_FULL] += q->count - sent;
    }
    q->count = 0;
}

static void flush_dirty(struct vswitch *sw)
{
    for (unsigned i = 0; i < sw->dirty_count; i++) {
        struct port *port = &sw->ports[sw->dirty[i]];
        flush_port(sw, port);
        port->dirty = false;
    }
    sw->dirty_count = 0;
}

static void enqueue(struct vswitch *sw, struct port *port, uint8_t *frame, size_t len,
                    const struct frame_info *info)
{
    if (!port->is_uplink &&
        !shaping_admit(&port->bucket, shaping_effective(sw, port->pg), sw->mtu, len, sw->now_ns)) {
        port->counters.drops[DROP_SHAPING]++;
        return;
    }
    struct egress_queue *q = port->queue;
    if (q->count == VSW_BATCH)
        flush_port(sw, port);
    unsigned i = q->count++;
    int iovcnt = frame_egress_iov(port, info, frame, len, q->iov[i], q->tag[i]);
    q->msgs[i].msg_hdr = (struct msghdr){.msg_iov = q->iov[i], .msg_iovlen = (size_t)iovcnt};
    if (!port->dirty) {
        port->dirty = true;
        sw->dirty[sw->dirty_count++] = port->id;
    }
}

static bool is_promiscuous(const struct vswitch *sw, const struct port *port)
{
    return !port->is_uplink && security_effective(sw, port->pg).promiscuous == POLICY_ACCEPT;
}

/* Returns how many ports the frame was queued to. */
static unsigned flood(struct vswitch *sw, struct port *ingress, uint8_t *frame, size_t len,
                      const struct frame_info *info)
{
    unsigned delivered = 0;
    for (int id = 0; id < VSW_MAX_PORTS; id++) {
        struct port *port = &sw->ports[id];
        if (!port->in_use || port == ingress || !port_in_vlan(port, info->vlan))
            continue;
        enqueue(sw, port, frame, len, info);
        delivered++;
    }
    return delivered;
}

static unsigned copy_to_promiscuous(struct vswitch *sw, struct port *ingress, int skip_id, uint8_t *frame,
                                    size_t len, const struct frame_info *info)
{
    unsigned delivered = 0;
    for (int id = 1; id < VSW_MAX_PORTS; id++) {
        struct port *port = &sw->ports[id];
        if (!port->in_use || port == ingress || id == skip_id || !port_in_vlan(port, info->vlan) ||
            !is_promiscuous(sw, port))
            continue;
        enqueue(sw, port, frame, len, info);
        delivered++;
    }
    return delivered;
}

static unsigned deliver(struct vswitch *sw, struct port *ingress, uint8_t *frame, size_t len,
                        const struct frame_info *info)
{
    const uint8_t *dst = frame;
    if (mac_is_multicast(dst))
        return flood(sw, ingress, frame, len, info);
    int target = mac_table_find_static(&sw->macs, dst);
    if (target >= 0 && !port_in_vlan(&sw->ports[target], info->vlan))
        target = -1; /* that VM is in another VLAN: here the address is unknown */
    if (target < 0) {
        int learned = mac_table_find_learned(&sw->macs, dst, info->vlan, sw->now_ns / 1000000000u);
        if (learned >= 0 && sw->ports[learned].in_use)
            target = learned;
    }
    if (target < 0)
        return flood(sw, ingress, frame, len, info);
    unsigned delivered = 0;
    if (&sw->ports[target] != ingress) {
        enqueue(sw, &sw->ports[target], frame, len, info);
        delivered++;
    }
    if (sw->promiscuous_ports)
        delivered += copy_to_promiscuous(sw, ingress, target, frame, len, info);
    return delivered;
}

void forward_batch(struct vswitch *sw, struct port *ingress, unsigned count)
{
    struct ingress_batch *in = sw->in;
    sw->now_ns = vsw_monotonic_ns();
    uint64_t now_s = sw->now_ns / 1000000000u;
    for (unsigned i = 0; i < count; i++) {
        uint8_t *frame = in->buf[i];
        size_t len = in->msgs[i].msg_len;
        ingress->counters.rx_frames++;
        ingress->counters.rx_bytes += len;
        struct frame_info info;
        enum drop_reason reason = (in->msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
                                      ? DROP_OVERSIZE
                                      : frame_classify(ingress, sw->mtu, frame, len, &info);
        if (reason == DROP_REASONS) {
            const uint8_t *src = frame + 6;
            if (!ingress->is_uplink) {
                reason = security_check_source(sw, ingress, src);
            } else if (mac_is_multicast(src) || mac_is_zero(src)) {
                reason = DROP_BAD_SOURCE;
            } else if (mac_table_find_static(&sw->macs, src) < 0 &&
                       mac_table_learn(&sw->macs, src, info.vlan, ingress->id, now_s) == LEARN_TABLE_FULL) {
                ingress->counters.unlearned++;
            }
        }
        if (reason == DROP_REASONS && deliver(sw, ingress, frame, len, &info) == 0)
            reason = DROP_NO_ROUTE;
        if (reason != DROP_REASONS)
            ingress->counters.drops[reason]++;
    }
    flush_dirty(sw);
}
