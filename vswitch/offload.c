#include "offload.h"

#include <errno.h>
#include <string.h>

#include "frame.h"

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define ETHERTYPE_QINQ 0x88a8
#define IPV6_HEADER_LEN 40
#define IPPROTO_TCP_NUMBER 6
#define IPPROTO_UDP_NUMBER 17
#define UDP_HEADER_LEN 8
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* The Internet checksum's sum of 16-bit big-endian words; a trailing odd
 * byte counts as its word's high half. */
static uint64_t sum_words(uint64_t sum, const uint8_t *p, size_t n)
{
    for (; n >= 2; p += 2, n -= 2)
        sum += get16(p);
    if (n)
        sum += (uint64_t)p[0] << 8;
    return sum;
}

static uint16_t fold_complement(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

bool offload_fill_checksum(uint8_t *frame, size_t len, const struct virtio_net_hdr *hdr)
{
    size_t start = hdr->csum_start, field = start + hdr->csum_offset;
    if (start >= len || field + 2 > len)
        return false;
    uint16_t check = fold_complement(sum_words(0, frame + start, len - start));
    /* A computed zero goes out as 0xffff: zero would mean "no checksum" to UDP. */
    put16(frame + field, check ? check : 0xffff);
    return true;
}

int gso_begin(struct gso_cursor *c, const uint8_t *frame, size_t len, const struct virtio_net_hdr *hdr,
              size_t segment_cap)
{
    unsigned type = hdr->gso_type & (unsigned)~VIRTIO_NET_HDR_GSO_ECN;
    if ((type != VIRTIO_NET_HDR_GSO_TCPV4 && type != VIRTIO_NET_HDR_GSO_TCPV6 &&
         type != VIRTIO_NET_HDR_GSO_UDP_L4) ||
        hdr->gso_size == 0 || len < ETH_HEADER_LEN)
        return -EINVAL;
    *c = (struct gso_cursor){.frame = frame, .len = len, .mss = hdr->gso_size, .l3 = ETH_HEADER_LEN,
                             .proto = type == VIRTIO_NET_HDR_GSO_UDP_L4 ? IPPROTO_UDP_NUMBER : IPPROTO_TCP_NUMBER};
    uint16_t ethertype = get16(frame + 12);
    if (ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ) {
        c->l3 += VLAN_TAG_LEN;
        if (len < c->l3)
            return -EINVAL;
        ethertype = get16(frame + c->l3 - 2);
    }
    /* UDP_L4 names no IP version: the frame does. */
    c->ipv6 = type == VIRTIO_NET_HDR_GSO_TCPV6 || (type == VIRTIO_NET_HDR_GSO_UDP_L4 && ethertype == ETHERTYPE_IPV6);
    const uint8_t *ip = frame + c->l3;
    if (!c->ipv6) {
        if (ethertype != ETHERTYPE_IPV4 || len < c->l3 + 20 || ip[0] >> 4 != 4 || (ip[0] & 0xf) < 5 ||
            ip[9] != c->proto)
            return -EINVAL;
        c->l4 = c->l3 + (size_t)(ip[0] & 0xf) * 4;
    } else {
        /* Extension headers would need the pseudo-header's final address:
         * no stack sends GSO that way, so such frames are refused. */
        if (ethertype != ETHERTYPE_IPV6 || len < c->l3 + IPV6_HEADER_LEN || ip[0] >> 4 != 6 ||
            ip[6] != c->proto)
            return -EINVAL;
        c->l4 = c->l3 + IPV6_HEADER_LEN;
    }
    size_t l4_len;
    if (c->proto == IPPROTO_UDP_NUMBER) {
        l4_len = UDP_HEADER_LEN;
    } else {
        if (len < c->l4 + 20)
            return -EINVAL;
        l4_len = (size_t)(frame[c->l4 + 12] >> 4) * 4;
        if (l4_len < 20)
            return -EINVAL;
    }
    c->header_len = c->l4 + l4_len;
    if (c->header_len >= len)
        return -EINVAL;
    if (c->header_len + c->mss > segment_cap)
        return -EMSGSIZE;
    c->next = c->header_len;
    return 0;
}

size_t gso_next(struct gso_cursor *c, uint8_t *out)
{
    if (c->next >= c->len)
        return 0;
    size_t payload = c->len - c->next < c->mss ? c->len - c->next : c->mss;
    size_t seg = c->header_len + payload;
    bool first = c->index == 0, last = c->next + payload == c->len;
    memcpy(out, c->frame, c->header_len);
    memcpy(out + c->header_len, c->frame + c->next, payload);

    uint8_t *ip = out + c->l3, *l4 = out + c->l4;
    uint64_t pseudo;
    if (!c->ipv6) {
        size_t ihl = c->l4 - c->l3;
        put16(ip + 2, (uint16_t)(seg - c->l3));
        put16(ip + 4, (uint16_t)(get16(ip + 4) + c->index));
        put16(ip + 10, 0);
        put16(ip + 10, fold_complement(sum_words(0, ip, ihl)));
        pseudo = sum_words(0, ip + 12, 8);
    } else {
        put16(ip + 4, (uint16_t)(seg - c->l3 - IPV6_HEADER_LEN));
        pseudo = sum_words(0, ip + 8, 32);
    }
    pseudo += c->proto + (uint64_t)(seg - c->l4);

    if (c->proto == IPPROTO_UDP_NUMBER) {
        put16(l4 + 4, (uint16_t)(seg - c->l4));
        put16(l4 + 6, 0);
        uint16_t check = fold_complement(sum_words(pseudo, l4, seg - c->l4));
        put16(l4 + 6, check ? check : 0xffff); /* zero would mean "no checksum" */
    } else {
        put32(l4 + 4, get32(l4 + 4) + (uint32_t)(c->next - c->header_len));
        if (!last)
            l4[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
        if (!first)
            l4[13] &= (uint8_t)~TCP_CWR;
        put16(l4 + 16, 0);
        put16(l4 + 16, fold_complement(sum_words(pseudo, l4, seg - c->l4)));
    }

    c->next += payload;
    c->index++;
    return seg;
}
