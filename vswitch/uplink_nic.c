#include "uplink_nic.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define TAG_BYTES 4
#define MAC_BYTES 12

/* One control buffer per frame of a batch; the switch is one thread. */
static union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
} controls[VSW_BATCH];

static bool is_ethernet(int fd, const char *name)
{
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    return ioctl(fd, SIOCGIFHWADDR, &ifr) == 0 && ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER;
}

int nic_open(const char *name, int *ifindex, char *err, size_t err_len)
{
    unsigned index = if_nametoindex(name);
    if (index == 0) {
        snprintf(err, err_len, "no network interface '%s'", name);
        return -1;
    }
    /* Protocol 0 until bound: an ETH_P_ALL socket would queue other
     * interfaces' frames in the meantime. */
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open an AF_PACKET socket: %s%s", strerror(errno),
                 errno == EPERM ? " (a NIC uplink needs CAP_NET_RAW)" : "");
        return -1;
    }
    if (!is_ethernet(fd, name)) {
        snprintf(err, err_len, "'%s' is not an Ethernet interface", name);
        close(fd);
        return -1;
    }
    int one = 1;
    struct sockaddr_ll at = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)index};
    struct packet_mreq promisc = {.mr_ifindex = (int)index, .mr_type = PACKET_MR_PROMISC};
    const char *step = NULL;
    if (setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)) < 0)
        step = "PACKET_AUXDATA";
    else if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) < 0)
        step = "PACKET_IGNORE_OUTGOING";
    else if (bind(fd, (struct sockaddr *)&at, sizeof(at)) < 0)
        step = "bind";
    else if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &promisc, sizeof(promisc)) < 0)
        step = "promiscuous mode";
    if (step) {
        snprintf(err, err_len, "cannot use '%s' as the uplink: %s: %s", name, step, strerror(errno));
        close(fd);
        return -1;
    }
    *ifindex = (int)index;
    return fd;
}

static const struct tpacket_auxdata *auxdata_of(struct msghdr *m)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
        if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct tpacket_auxdata)))
            return (const struct tpacket_auxdata *)CMSG_DATA(c);
    return NULL;
}

/* The tag the driver took off (VLAN acceleration), back after the MACs. */
static void restore_tag(uint8_t *frame, unsigned *len, const struct tpacket_auxdata *aux)
{
    if (!aux || !(aux->tp_status & TP_STATUS_VLAN_VALID) || *len < MAC_BYTES)
        return;
    uint16_t tpid = (aux->tp_status & TP_STATUS_VLAN_TPID_VALID) ? aux->tp_vlan_tpid : ETH_P_8021Q;
    memmove(frame + MAC_BYTES + TAG_BYTES, frame + MAC_BYTES, *len - MAC_BYTES);
    frame[MAC_BYTES] = (uint8_t)(tpid >> 8);
    frame[MAC_BYTES + 1] = (uint8_t)tpid;
    frame[MAC_BYTES + 2] = (uint8_t)(aux->tp_vlan_tci >> 8);
    frame[MAC_BYTES + 3] = (uint8_t)aux->tp_vlan_tci;
    *len += TAG_BYTES;
}

unsigned nic_receive(int fd, int ifindex, struct ingress_batch *in, int *gone)
{
    *gone = 0;
    for (unsigned i = 0; i < VSW_BATCH; i++) {
        /* Room for a tag to put back. */
        in->iov[i] = (struct iovec){in->buf[i], VSW_BUF_SIZE - TAG_BYTES};
        in->msgs[i].msg_hdr = (struct msghdr){.msg_iov = &in->iov[i], .msg_iovlen = 1,
                                              .msg_control = controls[i].buf, .msg_controllen = sizeof(controls[i].buf)};
    }
    int n;
    do
        n = recvmmsg(fd, in->msgs, VSW_BATCH, MSG_DONTWAIT, NULL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        char name[IF_NAMESIZE];
        /* ENETDOWN is reported once when the interface goes down and
         * when it is deleted; only the second ends the uplink. */
        if (errno != EAGAIN && (errno != ENETDOWN || !if_indextoname((unsigned)ifindex, name)))
            *gone = errno == ENETDOWN ? ENODEV : errno;
        return 0;
    }
    for (int i = 0; i < n; i++) {
        struct msghdr *m = &in->msgs[i].msg_hdr;
        if (!(m->msg_flags & MSG_TRUNC))
            restore_tag(in->buf[i], &in->msgs[i].msg_len, auxdata_of(m));
        m->msg_flags &= MSG_TRUNC; /* what forwarding reads: truncated means oversize */
    }
    return (unsigned)n;
}

unsigned nic_send(int fd, struct egress_queue *q, uint64_t *bytes)
{
    unsigned sent = 0;
    for (unsigned i = 0; i < q->count;) {
        int n = sendmmsg(fd, q->msgs + i, q->count - i, MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EINTR)
                i++; /* this frame was refused: a drop; go on with the next */
            continue;
        }
        for (int k = 0; k < n; k++)
            *bytes += q->msgs[i + (unsigned)k].msg_len;
        sent += (unsigned)n;
        i += (unsigned)n;
    }
    return sent;
}
