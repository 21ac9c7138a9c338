#include "console.h"
#include "io.h"
#include "lib.h"
#include "platform.h"
#include "virtio_net.h"

/* virtio_net_config offsets */
#define CFG_MAC 0
#define CFG_STATUS 6

#define MAX_QUEUE_SIZE 256

bool net_find(unsigned index, struct pci_device *out)
{
	struct pci_device devices[64];
	size_t count = pci_scan_bus0(devices, ARRAY_SIZE(devices));

	if (count > ARRAY_SIZE(devices))
		count = ARRAY_SIZE(devices);
	for (size_t i = 0; i < count; i++) {
		if (!virtio_pci_matches(&devices[i], VIRTIO_ID_NET, VIRTIO_PCI_DEVICE_TRANSITIONAL_NET))
			continue;
		if (index-- == 0) {
			*out = devices[i];
			return true;
		}
	}
	return false;
}

static uint8_t *rx_buffer(struct net_dev *n, uint16_t id)
{
	return n->rx_buf + (uint64_t)id * NET_BUF_BYTES;
}

bool net_open(struct net_dev *n, const struct pci_device *d)
{
	const uint64_t required = 1ull << VIRTIO_F_VERSION_1;
	const uint64_t wanted = 1ull << VIRTIO_F_RING_EVENT_IDX | 1ull << VIRTIO_NET_F_MAC |
				1ull << VIRTIO_NET_F_STATUS;

	memset(n, 0, sizeof(*n));
	if (!virtio_pci_probe(d, &n->vp) || !virtio_pci_negotiate(&n->vp, required, wanted))
		return false;
	if (!virtio_has(&n->vp, VIRTIO_NET_F_MAC) || !n->vp.device_cfg) {
		/* Without a MAC from the device the guest would have to invent one. */
		console_write("VDFS-GUEST ERROR virtio-net offers no MAC address\n");
		return false;
	}
	for (unsigned i = 0; i < 6; i++)
		n->mac[i] = mmio_read8(n->vp.device_cfg + CFG_MAC + i);
	if (!virtio_pci_setup_queue(&n->vp, NET_RX_QUEUE, MAX_QUEUE_SIZE, &n->rx) ||
	    !virtio_pci_setup_queue(&n->vp, NET_TX_QUEUE, MAX_QUEUE_SIZE, &n->tx))
		return false;
	n->rx_buf = heap_alloc((uint64_t)n->rx.size * NET_BUF_BYTES, 4096);
	n->tx_buf = heap_alloc((uint64_t)n->tx.size * NET_BUF_BYTES, 4096);
	n->tx_free = heap_alloc(2ull * n->tx.size, 8);
	if (!n->rx_buf || !n->tx_buf || !n->tx_free) {
		console_write("VDFS-GUEST ERROR out of memory for virtio-net buffers\n");
		return false;
	}
	for (uint16_t id = 0; id < n->rx.size; id++) {
		n->rx.desc[id] = (struct virtq_desc){ (uint64_t)rx_buffer(n, id), NET_BUF_BYTES,
						      VIRTQ_DESC_F_WRITE, 0 };
		virtq_add(&n->rx, id);
	}
	for (uint16_t id = 0; id < n->tx.size; id++)
		n->tx_free[n->tx_free_count++] = (uint16_t)(n->tx.size - 1 - id);
	virtio_pci_driver_ok(&n->vp);
	virtq_publish(&n->rx);
	return true;
}

bool net_link_up(const struct net_dev *n)
{
	if (!virtio_has(&n->vp, VIRTIO_NET_F_STATUS))
		return true;
	return mmio_read16(n->vp.device_cfg + CFG_STATUS) & VIRTIO_NET_S_LINK_UP;
}

bool net_wait_link(const struct net_dev *n, uint64_t timeout_ms)
{
	uint64_t start = rdtsc(), limit = clock_ticks_from_ms(timeout_ms);

	/* Each check is an MMIO exit; a few thousand a second is plenty. */
	while (!net_link_up(n)) {
		if (rdtsc() - start > limit)
			return false;
		for (int i = 0; i < 1000; i++)
			cpu_relax();
	}
	return true;
}

bool net_rx_poll(struct net_dev *n, uint16_t *id, uint8_t **frame, uint32_t *len)
{
	uint32_t used_id, used_len;

	while (virtq_take_used(&n->rx, &used_id, &used_len)) {
		/* The device's id and length are checked, not trusted. */
		if (used_id >= n->rx.size || used_len < NET_HDR_BYTES + 14 || used_len > NET_BUF_BYTES) {
			n->rx_bad++;
			if (used_id < n->rx.size)
				net_rx_release(n, (uint16_t)used_id);
			continue;
		}
		*id = (uint16_t)used_id;
		*frame = rx_buffer(n, *id) + NET_HDR_BYTES;
		*len = used_len - NET_HDR_BYTES;
		n->rx_frames++;
		return true;
	}
	return false;
}

void net_rx_release(struct net_dev *n, uint16_t id)
{
	virtq_add(&n->rx, id);
}

void net_tx_reclaim(struct net_dev *n)
{
	uint32_t id, len;

	while (virtq_take_used(&n->tx, &id, &len)) {
		if (id < n->tx.size && n->tx_free_count < n->tx.size)
			n->tx_free[n->tx_free_count++] = (uint16_t)id;
		else
			console_printf("VDFS-GUEST ERROR device returned unknown descriptor %u\n", id);
	}
}

uint8_t *net_tx_buffer(struct net_dev *n, uint16_t *id)
{
	if (!n->tx_free_count)
		net_tx_reclaim(n);
	if (!n->tx_free_count)
		return 0;
	*id = n->tx_free[--n->tx_free_count];
	return net_tx_frame(n, *id);
}

void net_tx_queue(struct net_dev *n, uint16_t id, uint32_t len)
{
	uint8_t *buf = n->tx_buf + (uint64_t)id * NET_BUF_BYTES;

	memset(buf, 0, NET_HDR_BYTES);
	n->tx.desc[id] = (struct virtq_desc){ (uint64_t)buf, NET_HDR_BYTES + len, 0, 0 };
	virtq_add(&n->tx, id);
	n->tx_frames++;
}

bool net_send(struct net_dev *n, const void *frame, uint32_t len)
{
	uint16_t id;
	uint8_t *buf;

	if (len < 14 || len > NET_FRAME_MAX || !(buf = net_tx_buffer(n, &id)))
		return false;
	memcpy(buf, frame, len);
	net_tx_queue(n, id, len);
	net_tx_publish(n);
	return true;
}
