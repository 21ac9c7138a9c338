/* virtio-net (virtio 1.2 §5.1) attached to a vdfs-switch port.
 *
 * The device connects a unix SOCK_SEQPACKET socket to cfg->switch_socket
 * (default /run/vdfs-switch/sw0.sock), sends the 64-byte hello of
 * vswitch/protocol.h with its MAC and port group, and after an ok ack moves
 * one Ethernet frame per message.  Queue 0 receives, queue 1 transmits;
 * every buffer starts with the 12-byte virtio_net_hdr (v1), always zero on
 * receive apart from num_buffers = 1, and ignored on transmit (no offloads
 * are offered).  Offered features: VERSION_1, RING_EVENT_IDX, MAC, STATUS.
 *
 * When the switch goes away the link goes down (config change interrupt),
 * transmitted frames are dropped and counted, and the device reconnects
 * with a backoff from 100 ms up to 5 s.  Frames larger than the guest's
 * receive buffer, or arriving with no buffer posted, stay in or are dropped
 * by the socket; malformed transmit chains are dropped and counted. */
#ifndef VDFS_VMM_VIRTIO_NET_H
#define VDFS_VMM_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "config.h"
#include "pci.h"
#include "../vswitch/protocol.h"

#define VIRTIO_NET_DEFAULT_SOCKET VDSW_SOCKET_DIR "/sw0.sock"

/* Frames the device may hold, taken from the switch port, while the
 * driver has no receive buffer for them (they are dropped if the port is
 * lost first). */
#define VIRTIO_NET_RX_HOLD 16

struct virtio_net_stats {
    uint64_t tx_frames, rx_frames;
    uint64_t tx_dropped_disconnected; /* the switch was not connected */
    uint64_t tx_dropped_malformed;    /* runt, oversize or header-less chains */
    uint64_t rx_dropped_oversize;     /* larger than the posted buffer */
    uint32_t rx_held;                 /* taken from the port, waiting for a buffer */
    uint64_t connects;                /* successful hellos, reconnects included */
    bool link_up;
    uint32_t port_id;
    uint16_t mtu;
};

/* Creates a virtio-net PCI function and starts connecting.  A switch that
 * is not running yet is not an error: the link stays down until it is.
 * Returns the NIC's index (0, 1, ...) or -errno with a message on stderr. */
int virtio_net_create(struct pci_bus *pci, struct vm_services *svc, const struct nic_config *cfg);
/* Counters of NIC `index`; -ENOENT if there is no such NIC. */
int virtio_net_get_stats(int index, struct virtio_net_stats *out);
/* Stops every NIC's I/O thread, closes the sockets and removes the PCI
 * functions.  Call before pci_bus_destroy. */
void virtio_net_destroy_all(void);

#endif
