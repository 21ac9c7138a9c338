/* A polled virtio-net driver: every RX and TX descriptor owns one fixed
 * buffer holding the 12-byte virtio_net_hdr and the frame, so a frame is one
 * descriptor and buffers are recycled without allocation. */
#ifndef GUEST_VIRTIO_NET_H
#define GUEST_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio.h"

#define VIRTIO_PCI_DEVICE_TRANSITIONAL_NET 0x1000
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1

#define NET_HDR_BYTES 12 /* virtio_net_hdr with num_buffers (VERSION_1) */
#define NET_BUF_BYTES 2048
#define NET_FRAME_MAX (NET_BUF_BYTES - NET_HDR_BYTES)
#define NET_RX_QUEUE 0
#define NET_TX_QUEUE 1

struct net_dev {
	struct virtio_pci vp;
	struct virtq rx, tx;
	uint8_t mac[6];
	uint8_t *rx_buf, *tx_buf;  /* queue size * NET_BUF_BYTES each */
	uint16_t *tx_free;         /* stack of TX descriptors not in flight */
	uint16_t tx_free_count;
	uint64_t rx_frames, tx_frames, rx_bad;
};

/* Finds the index-th virtio-net function on bus 0 (0 = first). */
bool net_find(unsigned index, struct pci_device *out);
/* Brings the device up with every RX buffer posted. */
bool net_open(struct net_dev *n, const struct pci_device *d);
/* The config status bit; true when the device has no STATUS feature. */
bool net_link_up(const struct net_dev *n);
/* Waits up to timeout_ms for the link; false if it stays down. */
bool net_wait_link(const struct net_dev *n, uint64_t timeout_ms);

/* The next received frame (without the virtio header), or false.  The
 * buffer stays the caller's until net_rx_release; net_rx_publish hands
 * released buffers back to the device in one go. */
bool net_rx_poll(struct net_dev *n, uint16_t *id, uint8_t **frame, uint32_t *len);
void net_rx_release(struct net_dev *n, uint16_t id);
static inline void net_rx_publish(struct net_dev *n)
{
	virtq_publish(&n->rx);
}

/* Takes back every TX buffer the device has finished with. */
void net_tx_reclaim(struct net_dev *n);
/* A free TX buffer's frame area (NET_FRAME_MAX bytes), or 0 when all are in
 * flight even after reclaiming. */
uint8_t *net_tx_buffer(struct net_dev *n, uint16_t *id);
/* The frame area of TX buffer id, to rewrite a frame already built there. */
static inline uint8_t *net_tx_frame(struct net_dev *n, uint16_t id)
{
	return n->tx_buf + (uint64_t)id * NET_BUF_BYTES + NET_HDR_BYTES;
}
/* Queues buffer id (taken from net_tx_buffer) with len frame bytes,
 * unpublished. */
void net_tx_queue(struct net_dev *n, uint16_t id, uint32_t len);
static inline void net_tx_publish(struct net_dev *n)
{
	virtq_publish(&n->tx);
}
/* Copies one frame into a TX buffer and publishes it; false when every
 * buffer is in flight or len is out of range. */
bool net_send(struct net_dev *n, const void *frame, uint32_t len);

#endif
