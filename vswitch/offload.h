/* Frames as a host's stack hands them to an AF_PACKET socket, made into
 * frames a VM can take.  The stack leaves work for the device: a TCP or
 * UDP checksum holding only the pseudo-header sum (checksum offload), and
 * TCP super-frames of up to 64 KiB (TSO from a local sender, GRO on a
 * NIC's receive path).  With PACKET_VNET_HDR the socket says so in a
 * virtio-net header, and this file does the device's part. */
#ifndef VDFS_VSWITCH_OFFLOAD_H
#define VDFS_VSWITCH_OFFLOAD_H

#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fills in the checksum that hdr says is left to do (VIRTIO_NET_HDR_F_NEEDS_CSUM:
 * the ones' complement sum from csum_start to the end, stored at
 * csum_start + csum_offset).  False when those offsets do not fit the frame. */
bool offload_fill_checksum(uint8_t *frame, size_t len, const struct virtio_net_hdr *hdr);

/* UDP segmentation offload (UDP_SEGMENT senders); older headers lack the name. */
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

/* Takes a TCP or UDP super-frame apart into segments of at most gso_size
 * bytes of payload, each with its own IP length, IPv4 ID and checksum and
 * a complete TCP or UDP checksum; TCP segments get their sequence number
 * and flags (FIN and PSH on the last only, CWR on the first only), UDP
 * ones their length (each is a datagram of its own). */
struct gso_cursor {
    const uint8_t *frame;
    size_t len;
    size_t l3, l4, header_len, mss, next; /* next: offset of the next segment's payload */
    unsigned index;
    bool ipv6;
    uint8_t proto; /* 6 TCP, 17 UDP */
};

/* Starts on a frame whose hdr carries a TCPv4, TCPv6 or UDP_L4 gso_type.
 * -EINVAL for another kind or headers that do not add up, -EMSGSIZE when
 * one segment would not fit in `segment_cap` bytes. */
int gso_begin(struct gso_cursor *c, const uint8_t *frame, size_t len, const struct virtio_net_hdr *hdr,
              size_t segment_cap);
/* Writes the next segment into out (segment_cap bytes); its length, or 0
 * when the frame is used up. */
size_t gso_next(struct gso_cursor *c, uint8_t *out);

#endif
