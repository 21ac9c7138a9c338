#include "uplink_tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int tap_open(const char *name, char *ifname, char *err, size_t err_len)
{
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
    snprintf(ifname, IFNAMSIZ, "%s", ifr.ifr_name);
    return fd;
}

unsigned tap_receive(int fd, struct ingress_batch *in, int *gone)
{
    unsigned count = 0;
    *gone = 0;
    while (count < VSW_BATCH) {
        ssize_t n = read(fd, in->buf[count], VSW_BUF_SIZE);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                *gone = errno;
            break;
        }
        in->msgs[count].msg_len = (unsigned)n;
        /* A TAP read shorter than the frame truncates silently, so a full buffer counts as oversize. */
        in->msgs[count].msg_hdr.msg_flags = (size_t)n >= VSW_BUF_SIZE ? MSG_TRUNC : 0;
        count++;
    }
    return count;
}

unsigned tap_send(int fd, struct egress_queue *q, uint64_t *bytes)
{
    unsigned sent = 0;
    for (unsigned i = 0; i < q->count; i++) {
        struct msghdr *m = &q->msgs[i].msg_hdr;
        ssize_t n = writev(fd, m->msg_iov, (int)m->msg_iovlen);
        if (n < 0)
            continue;
        sent++;
        *bytes += (uint64_t)n;
    }
    return sent;
}

void tap_set_mtu(const char *ifname, unsigned mtu)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return;
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    ifr.ifr_mtu = (int)mtu;
    ioctl(s, SIOCSIFMTU, &ifr);
    close(s);
}
