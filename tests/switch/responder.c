/* A tiny host on a switch port: answers ARP requests and ICMP echo requests
 * for one IPv4 address, so the real `ping` can reach it through the uplink.
 *   responder --socket PATH --ip A.B.C.D --mac MAC [--portgroup PG] [--seconds N] */
#include <arpa/inet.h>
#include <endian.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"

static uint16_t checksum(const uint8_t *data, size_t len)
{
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)(data[i] << 8 | data[i + 1]);
    if (len & 1)
        sum += (uint32_t)data[len - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Returns the reply length, or 0 when the frame needs no answer. */
static size_t answer(const uint8_t *in, size_t len, uint8_t *out, const uint8_t mac[6], const uint8_t ip[4])
{
    if (len < 14)
        return 0;
    uint16_t type = (uint16_t)(in[12] << 8 | in[13]);
    if (type == 0x0806 && len >= 42) { /* ARP request for our address */
        const uint8_t *arp = in + 14;
        if (arp[6] != 0 || arp[7] != 1 || memcmp(arp + 24, ip, 4) != 0)
            return 0;
        memcpy(out, in + 6, 6);
        memcpy(out + 6, mac, 6);
        out[12] = 0x08, out[13] = 0x06;
        uint8_t *r = out + 14;
        memcpy(r, arp, 6);
        r[6] = 0, r[7] = 2;
        memcpy(r + 8, mac, 6);
        memcpy(r + 14, ip, 4);
        memcpy(r + 18, arp + 8, 10);
        return 42;
    }
    if (type == 0x0800 && len >= 34) { /* ICMP echo request to our address */
        const uint8_t *iph = in + 14;
        size_t ihl = (size_t)(iph[0] & 0x0f) * 4;
        size_t total = (size_t)(iph[2] << 8 | iph[3]);
        if ((iph[0] >> 4) != 4 || ihl < 20 || total < ihl + 8 || 14 + total > len || iph[9] != 1 ||
            memcmp(iph + 16, ip, 4) != 0 || iph[ihl] != 8)
            return 0;
        memcpy(out, in + 6, 6);
        memcpy(out + 6, mac, 6);
        out[12] = 0x08, out[13] = 0x00;
        uint8_t *o = out + 14;
        memcpy(o, iph, total);
        memcpy(o + 12, iph + 16, 4);
        memcpy(o + 16, iph + 12, 4);
        o[8] = 64;
        o[10] = o[11] = 0;
        uint16_t c = checksum(o, ihl);
        o[10] = (uint8_t)(c >> 8), o[11] = (uint8_t)c;
        uint8_t *icmp = o + ihl;
        icmp[0] = 0;
        icmp[2] = icmp[3] = 0;
        c = checksum(icmp, total - ihl);
        icmp[2] = (uint8_t)(c >> 8), icmp[3] = (uint8_t)c;
        return 14 + total;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *socket_path = NULL, *ip_text = NULL, *mac_text = NULL, *portgroup = "default";
    int seconds = 30;
    static const struct option options[] = {{"socket", required_argument, NULL, 's'},
                                            {"ip", required_argument, NULL, 'i'},
                                            {"mac", required_argument, NULL, 'm'},
                                            {"portgroup", required_argument, NULL, 'p'},
                                            {"seconds", required_argument, NULL, 't'},
                                            {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case 's': socket_path = optarg; break;
        case 'i': ip_text = optarg; break;
        case 'm': mac_text = optarg; break;
        case 'p': portgroup = optarg; break;
        case 't': seconds = atoi(optarg); break;
        default: return 2;
        }
    }
    uint8_t ip[4], mac[6];
    unsigned m[6];
    if (!socket_path || !ip_text || !mac_text || inet_pton(AF_INET, ip_text, ip) != 1 ||
        sscanf(mac_text, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
        fprintf(stderr, "usage: responder --socket PATH --ip A.B.C.D --mac MAC [--portgroup PG] [--seconds N]\n");
        return 2;
    }
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)m[i];
    int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_path);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        perror("responder: connect");
        return 1;
    }
    struct vdsw_hello hello = {.magic = htole32(VDSW_MAGIC), .version = htole16(VDSW_VERSION)};
    memcpy(hello.mac, mac, 6);
    snprintf(hello.portgroup, sizeof(hello.portgroup), "%s", portgroup);
    memcpy(hello.client_name, "responder", 9);
    struct vdsw_hello_ack ack;
    if (send(fd, &hello, sizeof(hello), 0) != sizeof(hello) || recv(fd, &ack, sizeof(ack), 0) != sizeof(ack) ||
        le16toh(ack.status) != VDSW_STATUS_OK) {
        fprintf(stderr, "responder: attach refused: %.48s\n", ack.message);
        return 1;
    }
    time_t end = time(NULL) + seconds;
    unsigned answered = 0;
    static uint8_t in[VDSW_MAX_MTU + 32], out[VDSW_MAX_MTU + 32];
    while (time(NULL) < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) != 1)
            continue;
        ssize_t n = recv(fd, in, sizeof(in), 0);
        if (n <= 0)
            break;
        size_t reply = answer(in, (size_t)n, out, mac, ip);
        if (reply && send(fd, out, reply, 0) == (ssize_t)reply)
            answered++;
    }
    printf("responder answered %u frames\n", answered);
    return 0;
}
