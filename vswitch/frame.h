/* Ethernet and 802.1Q parsing, and the VLAN rules of each port kind. */
#ifndef VDFS_VSWITCH_FRAME_H
#define VDFS_VSWITCH_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vswitch.h"

#define ETH_HEADER_LEN 14
#define VLAN_TAG_LEN 4
#define ETHERTYPE_VLAN 0x8100

/* Where a frame sits once its VLAN is known: vlan is the broadcast domain
 * (0 = untagged), tagged says whether the bytes carry an 802.1Q tag. */
struct frame_info {
    uint16_t vlan;
    bool tagged;
};

static inline bool mac_is_multicast(const uint8_t *mac) { return mac[0] & 1; }

bool mac_is_zero(const uint8_t *mac);
bool mac_equal(const uint8_t *a, const uint8_t *b);
/* "aa:bb:cc:dd:ee:ff" into mac; false on anything else. */
bool mac_parse(const char *text, uint8_t mac[6]);
void mac_format(const uint8_t *mac, char out[18]);

/* Classifies a frame arriving from `port`.  Returns DROP_REASONS when the
 * frame is acceptable, else the reason to drop it. */
enum drop_reason frame_classify(const struct port *port, unsigned mtu, const uint8_t *frame, size_t len,
                                struct frame_info *info);

/* Whether a frame of `vlan` may leave through `port`. */
bool port_in_vlan(const struct port *port, uint16_t vlan);

/* Builds the iovecs that put `frame` on the wire of `port` with the right
 * tagging; returns the iovec count.  tag_storage must outlive the iovecs. */
int frame_egress_iov(const struct port *port, const struct frame_info *info, uint8_t *frame, size_t len,
                     struct iovec iov[3], uint8_t tag_storage[4]);

#endif
