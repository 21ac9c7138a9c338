/* The uplink is port 0: a TAP device whose frames enter the switch like any
 * port's, except that the uplink carries every VLAN (tagged, VLAN 0
 * untagged) and is the only port whose source MACs are learned.  A TAP fd has
 * no recvmmsg, so a batch is a run of nonblocking reads. */
#include "uplink_tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "forward.h"
#include "loop.h"
#include "mactable.h"

int uplink_open(struct vswitch *sw, const char *name, char *err, size_t err_len)
{
    if (strlen(name) == 0 || strlen(name) >= IFNAMSIZ) {
        snprintf(err, err_len, "bad TAP name '%s' (1-%d characters)", name, IFNAMSIZ - 1);
        return -1;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open /dev/net/tun: %s", strerror(errno));
        return -1;
    }
    struct ifreq ifr = {0};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        snprintf(err, err_len, "cannot attach TAP '%s': %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    struct egress_queue *queue = calloc(1, sizeof(*queue));
    if (!queue) {
        snprintf(err, err_len, "out of memory");
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
    up->attached_at = vsw_now_s();
    snprintf(up->tap_name, sizeof(up->tap_name), "%s", ifr.ifr_name);
    snprintf(up->client_name, sizeof(up->client_name), "uplink");
    if (loop_watch(sw, fd, EPOLLIN, &up->ev) < 0) {
        snprintf(err, err_len, "epoll: %s", strerror(errno));
        free(queue);
        close(fd);
        up->queue = NULL;
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
    memset(up, 0, sizeof(*up));
    up->fd = -1;
    mac_table_flush_learned(&sw->macs);
}

void uplink_apply_mtu(struct vswitch *sw)
{
    struct port *up = &sw->ports[VSW_UPLINK_PORT];
    if (!up->in_use)
        return;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return;
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", up->tap_name);
    ifr.ifr_mtu = (int)sw->mtu;
    /* Fails if the TAP moved to another network namespace; the switch still enforces its MTU. */
    ioctl(s, SIOCSIFMTU, &ifr);
    close(s);
}

void uplink_receive(struct vswitch *sw)
{
    struct port *up = &sw->ports[VSW_UPLINK_PORT];
    struct ingress_batch *in = sw->in;
    unsigned count = 0;
    int gone = 0;
    while (count < VSW_BATCH && !gone) {
        ssize_t n = read(up->fd, in->buf[count], VSW_BUF_SIZE);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                gone = errno;
            break;
        }
        in->msgs[count].msg_len = (unsigned)n;
        /* A TAP read shorter than the frame truncates silently, so a full buffer counts as oversize. */
        in->msgs[count].msg_hdr.msg_flags = (size_t)n >= VSW_BUF_SIZE ? MSG_TRUNC : 0;
        count++;
    }
    if (count)
        forward_batch(sw, up, count);
    if (gone) {
        /* The TAP was deleted (or its namespace destroyed): its descriptor
         * stays in error for good, and polling it would spin. */
        fprintf(stderr, "vdfs-switch: uplink TAP %s went away (%s); the switch now has no uplink\n",
                up->tap_name, strerror(gone));
        uplink_close(sw);
    }
}

void uplink_flush(struct vswitch *sw, struct port *uplink)
{
    struct egress_queue *q = uplink->queue;
    for (unsigned i = 0; i < q->count; i++) {
        struct msghdr *m = &q->msgs[i].msg_hdr;
        ssize_t n = writev(uplink->fd, m->msg_iov, (int)m->msg_iovlen);
        if (n < 0) {
            uplink->counters.drops[DROP_QUEUE_FULL]++;
            continue;
        }
        uplink->counters.tx_frames++;
        uplink->counters.tx_bytes += (uint64_t)n;
    }
}
