/* Ethernet and 802.1Q parsing, and the VLAN rules of each port kind:
 * an access port (VLAN 0..4094) sends and receives untagged frames; a trunk
 * port (VLAN 4095) and the uplink carry tags for VLANs 1..4094 and untagged
 * frames for VLAN 0. */
#include "frame.h"

#include <stdio.h>
#include <string.h>

bool mac_is_zero(const uint8_t *mac)
{
    static const uint8_t zero[6];
    return memcmp(mac, zero, 6) == 0;
}

bool mac_equal(const uint8_t *a, const uint8_t *b) { return memcmp(a, b, 6) == 0; }

bool mac_parse(const char *text, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
        return false;
    if (strlen(text) != 17)
        return false;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    return true;
}

void mac_format(const uint8_t *mac, char out[18])
{
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

static bool port_is_trunk(const struct port *port)
{
    return port->is_uplink || (port->pg && port->pg->vlan == VSW_VLAN_TRUNK);
}

enum drop_reason frame_classify(const struct port *port, unsigned mtu, const uint8_t *frame, size_t len,
                                struct frame_info *info)
{
    if (len < ETH_HEADER_LEN)
        return DROP_RUNT;
    uint16_t ethertype = (uint16_t)(frame[12] << 8 | frame[13]);
    info->tagged = ethertype == ETHERTYPE_VLAN;
    if (!info->tagged) {
        if (len > mtu + ETH_HEADER_LEN)
            return DROP_OVERSIZE;
        info->vlan = port_is_trunk(port) ? 0 : port->pg->vlan;
        return DROP_REASONS;
    }
    if (len > mtu + ETH_HEADER_LEN + VLAN_TAG_LEN)
        return DROP_OVERSIZE;
    /* A tag must be complete and carry a real VLAN, and only trunks may send tags. */
    if (len < ETH_HEADER_LEN + VLAN_TAG_LEN || !port_is_trunk(port))
        return DROP_BAD_VLAN;
    uint16_t vid = (uint16_t)((frame[14] << 8 | frame[15]) & 0x0fff);
    if (vid == VSW_VLAN_TRUNK)
        return DROP_BAD_VLAN;
    info->vlan = vid; /* VID 0 (priority tag) belongs to the untagged VLAN */
    return DROP_REASONS;
}

bool port_in_vlan(const struct port *port, uint16_t vlan)
{
    return port_is_trunk(port) || port->pg->vlan == vlan;
}

int frame_egress_iov(const struct port *port, const struct frame_info *info, uint8_t *frame, size_t len,
                     struct iovec iov[3], uint8_t tag_storage[4])
{
    bool want_tag = port_is_trunk(port) && info->vlan != 0;
    if (want_tag == info->tagged) {
        iov[0] = (struct iovec){frame, len};
        return 1;
    }
    iov[0] = (struct iovec){frame, 12};
    if (want_tag) {
        tag_storage[0] = ETHERTYPE_VLAN >> 8;
        tag_storage[1] = ETHERTYPE_VLAN & 0xff;
        tag_storage[2] = (uint8_t)(info->vlan >> 8);
        tag_storage[3] = (uint8_t)(info->vlan & 0xff);
        iov[1] = (struct iovec){tag_storage, VLAN_TAG_LEN};
        iov[2] = (struct iovec){frame + 12, len - 12};
        return 3;
    }
    iov[1] = (struct iovec){frame + 12 + VLAN_TAG_LEN, len - 12 - VLAN_TAG_LEN};
    return 2;
}
