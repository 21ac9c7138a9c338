/* The vdfs-switch port protocol, shared by the switch and its clients (the
 * VMM's virtio-net backend, test clients, benchmarks).  See docs/switch.md.
 *
 * A client connects a unix SOCK_SEQPACKET socket to the switch, sends one
 * 64-byte hello, and receives one 64-byte hello-ack.  After an ok ack, every
 * message in either direction is exactly one Ethernet frame without FCS, at
 * most mtu + 18 bytes.  All integers are little-endian. */
#ifndef VDFS_VSWITCH_PROTOCOL_H
#define VDFS_VSWITCH_PROTOCOL_H

#include <stdint.h>

#define VDSW_MAGIC 0x57534456u /* "VDSW" read as a little-endian u32 */
#define VDSW_VERSION 1
#define VDSW_HELLO_SIZE 64
#define VDSW_FRAME_OVERHEAD 18 /* Ethernet header + one 802.1Q tag */
#define VDSW_MAX_MTU 9000
#define VDSW_MIN_MTU 68
#define VDSW_DEFAULT_MTU 1500
#define VDSW_SOCKET_DIR "/run/vdfs-switch"

enum vdsw_status {
    VDSW_STATUS_OK = 0,
    VDSW_STATUS_BAD_HELLO = 1,
    VDSW_STATUS_UNKNOWN_PORTGROUP = 2,
    VDSW_STATUS_MAC_IN_USE = 3,
    VDSW_STATUS_SWITCH_FULL = 4,
};

struct vdsw_hello {
    uint32_t magic;
    uint16_t version;
    uint16_t flags; /* must be 0 */
    uint8_t mac[6];
    uint8_t pad[2];
    char portgroup[32];   /* NUL-padded */
    char client_name[16]; /* NUL-padded, e.g. the VM name */
};

struct vdsw_hello_ack {
    uint32_t magic;
    uint16_t version;
    uint16_t status; /* enum vdsw_status */
    uint32_t port_id;
    uint16_t mtu;
    uint8_t pad[2];
    char message[48]; /* NUL-padded human-readable text */
};

_Static_assert(sizeof(struct vdsw_hello) == VDSW_HELLO_SIZE, "hello is 64 bytes");
_Static_assert(sizeof(struct vdsw_hello_ack) == VDSW_HELLO_SIZE, "hello-ack is 64 bytes");

#endif
