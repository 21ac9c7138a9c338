#include "uplink_nic.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "offload.h"

#define TAG_BYTES 4
#define MAC_BYTES 12
/* A TSO or GRO super-frame: 64 KiB of IP packet and its Ethernet header. */
#define RAW_FRAME_SIZE (65536 + 64)

/* What the socket gave, kept until all of it is handed on: one super-frame
 * can fill several ingress batches. */
struct nic_state {
    unsigned count, next; /* frames received, the next to hand on */
    bool splitting;       /* frame `next` is being taken apart */
    struct gso_cursor gso;
    struct virtio_net_hdr hdr[VSW_BATCH];
    struct mmsghdr msgs[VSW_BATCH];
    struct iovec iov[VSW_BATCH][2];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    } controls[VSW_BATCH];
    uint8_t frames[VSW_BATCH][RAW_FRAME_SIZE];
    /* Sending: each frame behind a virtio-net header that asks for nothing. */
    struct mmsghdr tx_msgs[VSW_BATCH];
    struct iovec tx_iov[VSW_BATCH][4];
};

static const struct virtio_net_hdr no_offload;

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
    else if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0)
        step = "PACKET_VNET_HDR";
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

struct nic_state *nic_state_new(void) { return calloc(1, sizeof(struct nic_state)); }

void nic_state_free(struct nic_state *st) { free(st); }

bool nic_receive_pending(const struct nic_state *st) { return st->splitting || st->next < st->count; }

static int receive_raw(struct nic_state *st, int fd, int ifindex)
{
    for (unsigned i = 0; i < VSW_BATCH; i++) {
        st->iov[i][0] = (struct iovec){&st->hdr[i], sizeof(st->hdr[i])};
        st->iov[i][1] = (struct iovec){st->frames[i], RAW_FRAME_SIZE};
        st->msgs[i].msg_hdr = (struct msghdr){.msg_iov = st->iov[i], .msg_iovlen = 2,
                                              .msg_control = st->controls[i].buf,
                                              .msg_controllen = sizeof(st->controls[i].buf)};
    }
    int n;
    do
        n = recvmmsg(fd, st->msgs, VSW_BATCH, MSG_DONTWAIT, NULL);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
        st->count = (unsigned)n;
        st->next = 0;
        return 0;
    }
    char name[IF_NAMESIZE];
    /* ENETDOWN is reported once when the interface goes down and when it
     * is deleted; only the second ends the uplink.  EINVAL: the kernel
     * could not describe a frame's offload in a virtio-net header (a kind
     * this interface should not produce); that frame is gone. */
    if (errno != EAGAIN && errno != EINVAL && (errno != ENETDOWN || !if_indextoname((unsigned)ifindex, name)))
        return errno == ENETDOWN ? ENODEV : errno;
    return 0;
}

/* Puts a frame of `len` bytes in in->buf[slot] (a truncated one when it
 * does not fit, which forwarding drops as oversize). */
static void hand_on(struct ingress_batch *in, unsigned slot, const uint8_t *frame, size_t len,
                    const struct virtio_net_hdr *hdr, const struct tpacket_auxdata *aux, bool truncated)
{
    size_t cap = VSW_BUF_SIZE - TAG_BYTES; /* room for a tag to put back */
    truncated |= len > cap;
    unsigned kept = (unsigned)(len > cap ? cap : len);
    if (frame)
        memcpy(in->buf[slot], frame, kept);
    if (!truncated && hdr && (hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
        !offload_fill_checksum(in->buf[slot], kept, hdr))
        truncated = true; /* offsets past the frame: nothing sane to deliver */
    if (!truncated)
        restore_tag(in->buf[slot], &kept, aux);
    in->msgs[slot].msg_len = kept;
    in->msgs[slot].msg_hdr.msg_flags = truncated ? MSG_TRUNC : 0;
}

unsigned nic_receive(struct nic_state *st, int fd, int ifindex, struct ingress_batch *in,
                     struct port_counters *counters, int *gone)
{
    *gone = 0;
    if (!nic_receive_pending(st)) {
        st->count = st->next = 0;
        *gone = receive_raw(st, fd, ifindex);
    }
    unsigned out = 0;
    while (out < VSW_BATCH && nic_receive_pending(st)) {
        unsigned k = st->next;
        struct msghdr *m = &st->msgs[k].msg_hdr;
        const struct tpacket_auxdata *aux = auxdata_of(m);
        if (st->splitting) {
            size_t seg = gso_next(&st->gso, in->buf[out]);
            if (seg == 0) {
                st->splitting = false;
                st->next++;
                continue;
            }
            hand_on(in, out++, NULL, seg, NULL, aux, false);
            continue;
        }
        size_t got = st->msgs[k].msg_len;
        const struct virtio_net_hdr *hdr = &st->hdr[k];
        size_t len = got > sizeof(*hdr) ? got - sizeof(*hdr) : 0;
        bool truncated = (m->msg_flags & MSG_TRUNC) || got < sizeof(*hdr);
        if (!truncated && hdr->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
            if (gso_begin(&st->gso, st->frames[k], len, hdr, VSW_BUF_SIZE - TAG_BYTES) == 0) {
                st->splitting = true;
                counters->gso_split++;
                continue;
            }
            truncated = true; /* a super-frame that cannot be split: too big for any port */
        }
        hand_on(in, out++, st->frames[k], len, hdr, aux, truncated);
        st->next++;
    }
    return out;
}

unsigned nic_send(struct nic_state *st, int fd, struct egress_queue *q, uint64_t *bytes)
{
    for (unsigned i = 0; i < q->count; i++) {
        const struct msghdr *m = &q->msgs[i].msg_hdr;
        st->tx_iov[i][0] = (struct iovec){(void *)&no_offload, sizeof(no_offload)};
        memcpy(&st->tx_iov[i][1], m->msg_iov, m->msg_iovlen * sizeof(struct iovec));
        st->tx_msgs[i].msg_hdr = (struct msghdr){.msg_iov = st->tx_iov[i], .msg_iovlen = m->msg_iovlen + 1};
    }
    unsigned sent = 0;
    for (unsigned i = 0; i < q->count;) {
        int n = sendmmsg(fd, st->tx_msgs + i, q->count - i, MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EINTR)
                i++; /* this frame was refused: a drop; go on with the next */
            continue;
        }
        for (unsigned k = i; k < i + (unsigned)n; k++)
            for (size_t v = 0; v < q->msgs[k].msg_hdr.msg_iovlen; v++)
                *bytes += q->msgs[k].msg_hdr.msg_iov[v].iov_len;
        sent += (unsigned)n;
        i += (unsigned)n;
    }
    return sent;
}
