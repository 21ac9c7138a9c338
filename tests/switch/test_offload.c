/* offload.c on frames built here: checksums filled where the virtio-net
 * header says, super-frames split into valid segments, and headers that
 * do not add up refused without reading past the frame. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "offload.h"

#define SEGMENT_CAP 1518

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* The reference: RFC 1071's sum, done the plain way. */
static uint32_t ones_sum(uint32_t sum, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sum += (i % 2 == 0) ? (uint32_t)p[i] << 8 : p[i];
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

/* A valid TCP or UDP checksum makes the whole sum 0xffff. */
static void assert_l4_checksum(const uint8_t *frame, size_t len, size_t l3, size_t l4, bool ipv6, uint8_t proto)
{
    uint8_t pseudo[40] = {0};
    size_t plen;
    if (!ipv6) {
        memcpy(pseudo, frame + l3 + 12, 8);
        pseudo[9] = proto;
        pseudo[10] = (uint8_t)((len - l4) >> 8);
        pseudo[11] = (uint8_t)(len - l4);
        plen = 12;
    } else {
        memcpy(pseudo, frame + l3 + 8, 32);
        pseudo[34] = (uint8_t)((len - l4) >> 8);
        pseudo[35] = (uint8_t)(len - l4);
        pseudo[39] = proto;
        plen = 40;
    }
    assert_int_equal(ones_sum(ones_sum(0, pseudo, plen), frame + l4, len - l4), 0xffff);
}

struct built {
    uint8_t frame[4096];
    size_t len, l3, l4;
};

/* dst|src|[802.1Q]|IPv4 or IPv6|TCP (20 bytes, or 32 with options)|payload. */
static void build_tcp(struct built *b, bool ipv6, bool tagged, size_t tcp_len, size_t payload, uint8_t flags)
{
    memset(b, 0, sizeof(*b));
    uint8_t *f = b->frame;
    memcpy(f, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02", 12);
    b->l3 = 14;
    if (tagged) {
        f[12] = 0x81;
        f[14] = 0x00;
        f[15] = 10;
        b->l3 = 18;
    }
    f[b->l3 - 2] = ipv6 ? 0x86 : 0x08;
    f[b->l3 - 1] = ipv6 ? 0xdd : 0x00;
    uint8_t *ip = f + b->l3;
    if (!ipv6) {
        ip[0] = 0x45;
        ip[4] = 0x12; /* ID 0x1234 */
        ip[5] = 0x34;
        ip[8] = 64;
        ip[9] = 6;
        memcpy(ip + 12, "\x0a\x00\x00\x01\x0a\x00\x00\x02", 8);
        b->l4 = b->l3 + 20;
    } else {
        ip[0] = 0x60;
        ip[6] = 6;
        ip[7] = 64;
        ip[8] = 0xfd;
        ip[23] = 1;
        ip[24] = 0xfd;
        ip[39] = 2;
        b->l4 = b->l3 + 40;
    }
    uint8_t *tcp = f + b->l4;
    tcp[0] = 0x0f; /* ports 4000 -> 5000 */
    tcp[1] = 0xa0;
    tcp[2] = 0x13;
    tcp[3] = 0x88;
    memcpy(tcp + 4, "\xff\xff\xfc\x00", 4); /* sequence numbers wrap past 2^32 */
    tcp[12] = (uint8_t)(tcp_len / 4 << 4);
    tcp[13] = flags;
    for (size_t i = 0; i < payload; i++)
        f[b->l4 + tcp_len + i] = (uint8_t)(i * 7 + 3);
    b->len = b->l4 + tcp_len + payload;
}

static void test_fill_checksum_udp(void **state)
{
    (void)state;
    uint8_t frame[14 + 20 + 8 + 5] = {0};
    frame[12] = 0x08;
    uint8_t *ip = frame + 14, *udp = ip + 20;
    ip[0] = 0x45;
    ip[9] = 17;
    memcpy(ip + 12, "\x0a\x00\x00\x01\x0a\x00\x00\x02", 8);
    udp[5] = 13; /* UDP length */
    memcpy(udp + 8, "hello", 5);
    /* What the stack leaves: the folded pseudo-header sum, not inverted. */
    uint8_t pseudo[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 13};
    uint32_t partial = ones_sum(0, pseudo, sizeof(pseudo));
    udp[6] = (uint8_t)(partial >> 8);
    udp[7] = (uint8_t)partial;
    struct virtio_net_hdr hdr = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 6};
    assert_true(offload_fill_checksum(frame, sizeof(frame), &hdr));
    assert_l4_checksum(frame, sizeof(frame), 14, 34, false, 17);

    hdr.csum_offset = 12; /* the field past the end */
    assert_false(offload_fill_checksum(frame, sizeof(frame), &hdr));
    hdr.csum_start = sizeof(frame);
    hdr.csum_offset = 0;
    assert_false(offload_fill_checksum(frame, sizeof(frame), &hdr));
}

static void split_and_check(const struct built *b, bool ipv6, size_t tcp_len, size_t payload, uint16_t mss,
                            uint8_t flags)
{
    struct virtio_net_hdr hdr = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                 .gso_type = ipv6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4,
                                 .gso_size = mss};
    struct gso_cursor c;
    assert_int_equal(gso_begin(&c, b->frame, b->len, &hdr, SEGMENT_CAP), 0);
    uint8_t seg[SEGMENT_CAP];
    size_t header = b->l4 + tcp_len, got = 0, n;
    unsigned count = 0, want = (unsigned)((payload + mss - 1) / mss);
    while ((n = gso_next(&c, seg)) != 0) {
        size_t part = n - header;
        bool last = count == want - 1;
        assert_true(part == (last ? payload - got : mss));
        assert_memory_equal(seg, b->frame, b->l3); /* Ethernet header and tag as they were */
        assert_memory_equal(seg + header, b->frame + header + got, part);
        if (!ipv6) {
            assert_int_equal(get16(seg + b->l3 + 2), n - b->l3);
            assert_int_equal(get16(seg + b->l3 + 4), 0x1234 + count);
            assert_int_equal(ones_sum(0, seg + b->l3, 20), 0xffff);
        } else {
            assert_int_equal(get16(seg + b->l3 + 4), n - b->l3 - 40);
        }
        uint32_t seq = (uint32_t)get16(seg + b->l4 + 4) << 16 | get16(seg + b->l4 + 6);
        assert_int_equal(seq, (uint32_t)(0xfffffc00u + got));
        uint8_t want_flags = flags;
        if (!last)
            want_flags &= (uint8_t)~0x09; /* FIN, PSH */
        if (count)
            want_flags &= (uint8_t)~0x80; /* CWR */
        assert_int_equal(seg[b->l4 + 13], want_flags);
        assert_memory_equal(seg + b->l4 + 20, b->frame + b->l4 + 20, tcp_len - 20); /* options */
        assert_l4_checksum(seg, n, b->l3, b->l4, ipv6, 6);
        got += part;
        count++;
    }
    assert_int_equal(count, want);
    assert_int_equal(got, payload);
    assert_int_equal(gso_next(&c, seg), 0);
}

static void test_split_ipv4(void **state)
{
    (void)state;
    struct built b;
    build_tcp(&b, false, false, 20, 3001, 0x80 | 0x10 | 0x08 | 0x01);
    split_and_check(&b, false, 20, 3001, 1000, 0x80 | 0x10 | 0x08 | 0x01);
}

static void test_split_tagged_ipv6_with_options(void **state)
{
    (void)state;
    struct built b;
    build_tcp(&b, true, true, 32, 2920, 0x10 | 0x08);
    for (int i = 20; i < 32; i++)
        b.frame[b.l4 + (size_t)i] = (uint8_t)(0x40 + i);
    split_and_check(&b, true, 32, 2920, 1428, 0x10 | 0x08);
}

/* A UDP_SEGMENT super-frame: every segment a datagram of its own, with
 * its length and a full checksum. */
static void split_udp_and_check(bool ipv6, size_t payload, uint16_t mss)
{
    struct built b;
    build_tcp(&b, ipv6, false, 20, 0, 0);
    b.frame[b.l3 + (ipv6 ? 6 : 9)] = 17;
    memset(b.frame + b.l4, 0, 8);
    b.frame[b.l4 + 1] = 53; /* ports 53 -> 5353 */
    b.frame[b.l4 + 2] = 0x14;
    b.frame[b.l4 + 3] = 0xe9;
    for (size_t i = 0; i < payload; i++)
        b.frame[b.l4 + 8 + i] = (uint8_t)(i * 5 + 1);
    b.len = b.l4 + 8 + payload;
    struct virtio_net_hdr hdr = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIRTIO_NET_HDR_GSO_UDP_L4,
                                 .gso_size = mss, .csum_start = (uint16_t)b.l4, .csum_offset = 6};
    struct gso_cursor c;
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), 0);
    assert_true(c.ipv6 == ipv6);
    uint8_t seg[SEGMENT_CAP];
    size_t n, got = 0;
    unsigned count = 0;
    while ((n = gso_next(&c, seg)) != 0) {
        size_t part = n - b.l4 - 8;
        assert_true(part == (payload - got < mss ? payload - got : mss));
        assert_int_equal(get16(seg + b.l4 + 4), 8 + part);
        assert_int_equal(get16(seg + b.l4 + 2), 5353);
        assert_memory_equal(seg + b.l4 + 8, b.frame + b.l4 + 8 + got, part);
        if (!ipv6)
            assert_int_equal(ones_sum(0, seg + b.l3, 20), 0xffff);
        assert_true(get16(seg + b.l4 + 6) != 0);
        assert_l4_checksum(seg, n, b.l3, b.l4, ipv6, 17);
        got += part;
        count++;
    }
    assert_int_equal(got, payload);
    assert_int_equal(count, (payload + mss - 1) / mss);
}

static void test_split_udp(void **state)
{
    (void)state;
    split_udp_and_check(false, 3500, 1000);
    split_udp_and_check(true, 2400, 1200);
    /* A UDP_L4 header on a TCP frame is refused. */
    struct built b;
    build_tcp(&b, false, false, 20, 3000, 0x10);
    struct virtio_net_hdr hdr = {.gso_type = VIRTIO_NET_HDR_GSO_UDP_L4, .gso_size = 1000};
    struct gso_cursor c;
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), -EINVAL);
}

static void test_refused(void **state)
{
    (void)state;
    struct built b;
    struct gso_cursor c;
    struct virtio_net_hdr hdr = {.gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .gso_size = 1000};
    build_tcp(&b, false, false, 20, 3000, 0x10);
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), 0);

    hdr.gso_type = VIRTIO_NET_HDR_GSO_UDP;
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), -EINVAL);
    hdr.gso_type = VIRTIO_NET_HDR_GSO_TCPV6; /* says IPv6, holds IPv4 */
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), -EINVAL);
    hdr.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    hdr.gso_size = 0;
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), -EINVAL);
    hdr.gso_size = 1500; /* 54 bytes of headers + 1500 > the cap */
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), -EMSGSIZE);
    hdr.gso_size = 1000;
    assert_int_equal(gso_begin(&c, b.frame, 54, &hdr, SEGMENT_CAP), -EINVAL); /* no payload */
    assert_int_equal(gso_begin(&c, b.frame, 40, &hdr, SEGMENT_CAP), -EINVAL); /* TCP header cut */
    assert_int_equal(gso_begin(&c, b.frame, 13, &hdr, SEGMENT_CAP), -EINVAL);

    b.frame[b.l4 + 12] = 4 << 4; /* data offset below 5 words */
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), -EINVAL);
    b.frame[b.l4 + 12] = 15 << 4; /* 60 bytes of TCP header */
    assert_int_equal(gso_begin(&c, b.frame, 80, &hdr, SEGMENT_CAP), -EINVAL);
    b.frame[b.l4 + 12] = 5 << 4;
    b.frame[b.l3 + 9] = 17; /* not TCP */
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), -EINVAL);
    b.frame[b.l3 + 9] = 6;
    b.frame[12] = 0x08;
    b.frame[13] = 0x06; /* ARP */
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), -EINVAL);

    build_tcp(&b, true, false, 20, 3000, 0x10);
    hdr.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), 0);
    b.frame[b.l3 + 6] = 0; /* a hop-by-hop extension header first */
    assert_int_equal(gso_begin(&c, b.frame, b.len, &hdr, SEGMENT_CAP), -EINVAL);
}

/* Random frames and headers, from a fixed seed: whatever gso_begin
 * accepts comes out as segments that fit, carry the frame's payload in
 * order and have valid checksums; the rest is refused.  Frames sit at
 * the end of a heap block, so ASan catches a read past them. */
static void test_random_frames(void **state)
{
    (void)state;
    srand(20261127);
    unsigned accepted = 0;
    for (int round = 0; round < 20000; round++) {
        struct built b;
        bool ipv6 = rand() % 2, tagged = rand() % 4 == 0;
        size_t tcp_len = 20 + 4 * (size_t)(rand() % 11);
        size_t payload = (size_t)(rand() % 3000);
        build_tcp(&b, ipv6, tagged, tcp_len, payload, (uint8_t)rand());
        size_t len = b.len;
        int damage = rand() % 4;
        if (damage == 1) /* a few bytes of the headers changed */
            for (int i = 0; i < 3; i++)
                b.frame[(size_t)rand() % (b.l4 + tcp_len)] = (uint8_t)rand();
        else if (damage == 2) /* cut short */
            len = (size_t)rand() % (len + 1);
        uint8_t *frame = malloc(len ? len : 1);
        memcpy(frame, b.frame, len);
        struct virtio_net_hdr hdr = {.flags = (uint8_t)(rand() % 2),
                                     .gso_type = (uint8_t)(rand() % 8 == 0 ? rand() : ipv6 ? 4 : 1),
                                     .gso_size = (uint16_t)(rand() % 8 == 0 ? rand() : 1 + rand() % 1500),
                                     .csum_start = (uint16_t)(rand() % 2 ? b.l4 : (size_t)rand() % 4000),
                                     .csum_offset = (uint16_t)(rand() % 2 ? 16 : rand() % 64)};
        if (damage == 3)
            memset(&hdr, rand(), sizeof(hdr));
        offload_fill_checksum(frame, len, &hdr);
        struct gso_cursor c;
        if (gso_begin(&c, frame, len, &hdr, SEGMENT_CAP) == 0) {
            accepted++;
            uint8_t seg[SEGMENT_CAP];
            size_t n, carried = 0;
            while ((n = gso_next(&c, seg)) != 0) {
                assert_true(n > c.header_len && n <= SEGMENT_CAP);
                assert_true(n - c.header_len <= hdr.gso_size);
                assert_memory_equal(seg + c.header_len, frame + c.header_len + carried, n - c.header_len);
                assert_l4_checksum(seg, n, c.l3, c.l4, c.ipv6, c.proto);
                if (!c.ipv6)
                    assert_int_equal(ones_sum(0, seg + c.l3, c.l4 - c.l3), 0xffff);
                carried += n - c.header_len;
            }
            assert_int_equal(c.header_len + carried, len);
        }
        free(frame);
    }
    assert_true(accepted > 1000); /* the generator does reach the splitting */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_checksum_udp),
        cmocka_unit_test(test_split_ipv4),
        cmocka_unit_test(test_split_tagged_ipv6_with_options),
        cmocka_unit_test(test_split_udp),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_random_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
