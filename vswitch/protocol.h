/* The vdfs-switch port protocol, shared by the switch and its clients (the
 * VMM's virtio-net backend, test clients, benchmarks).  See docs/switch.md.
 *
 * A client connects a unix SOCK_SEQPACKET socket to the switch, sends one
 * 64-byte hello, and receives one 64-byte hello-ack.  After an ok ack, every
 * message in either direction is exactly one Ethernet frame without FCS, at
 * most mtu + 18 bytes.  All integers are little-endian. */
#ifndef VDFS_VSWITCH_PROTOCOL_H
#define VDFS_VSWITCH_PROTOCOL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define VDSW_MAGIC 0x57534456u /* "VDSW" read as a little-endian u32 */
#define VDSW_VERSION 1
#define VDSW_HELLO_SIZE 64
#define VDSW_FRAME_OVERHEAD 18 /* Ethernet header + one 802.1Q tag */
#define VDSW_MAX_MTU 9000
#define VDSW_MIN_MTU 68
#define VDSW_DEFAULT_MTU 1500
#define VDSW_SOCKET_DIR "/run/vdfs-switch"
#define VDSW_NAME_MAX 32 /* a switch or port group name with its NUL */

/* Switch and port group names (a VM's config names both): 1 to
 * VDSW_NAME_MAX - 1 of A-Z a-z 0-9 _ . - */
static inline bool vdsw_name_is_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= VDSW_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.'))
            return false;
    }
    return true;
}

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
