#include "console.h"
#include "io.h"
#include "lib.h"
#include "platform.h"
#include "virtio.h"

/* virtio_pci_cap.cfg_type */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define PCI_CAP_ID_VENDOR 0x09

/* virtio_pci_common_cfg offsets */
#define COMMON_DEVICE_FEATURE_SELECT 0
#define COMMON_DEVICE_FEATURE 4
#define COMMON_DRIVER_FEATURE_SELECT 8
#define COMMON_DRIVER_FEATURE 12
#define COMMON_DEVICE_STATUS 20
#define COMMON_QUEUE_SELECT 22
#define COMMON_QUEUE_SIZE 24
#define COMMON_QUEUE_MSIX_VECTOR 26
#define COMMON_QUEUE_ENABLE 28
#define COMMON_QUEUE_NOTIFY_OFF 30
#define COMMON_QUEUE_DESC 32
#define COMMON_QUEUE_DRIVER 40
#define COMMON_QUEUE_DEVICE 48

#define VIRTIO_MSI_NO_VECTOR 0xffff
#define MAX_CAPS 48

struct cap_location {
	uint8_t bar;
	uint32_t offset;
	uint32_t extra; /* notify_off_multiplier for the notify capability */
	bool found;
};

static bool find_virtio_caps(const struct pci_device *d, struct cap_location *common,
			     struct cap_location *notify, struct cap_location *device)
{
	uint32_t command_status = pci_read32(d, PCI_COMMAND);
	uint8_t pos;

	if (!((command_status >> 16) & PCI_STATUS_CAP_LIST))
		return false;
	pos = pci_read8(d, PCI_CAPABILITY_LIST) & 0xfc;
	for (int guard = 0; pos && guard < MAX_CAPS; guard++) {
		uint32_t header = pci_read32(d, pos);
		uint8_t type = (uint8_t)(header >> 24);
		struct cap_location *slot = 0;

		if ((header & 0xff) == PCI_CAP_ID_VENDOR) {
			if (type == VIRTIO_PCI_CAP_COMMON_CFG)
				slot = common;
			else if (type == VIRTIO_PCI_CAP_NOTIFY_CFG)
				slot = notify;
			else if (type == VIRTIO_PCI_CAP_DEVICE_CFG)
				slot = device;
		}
		/* The first capability of each type is the preferred one. */
		if (slot && !slot->found) {
			slot->bar = (uint8_t)pci_read32(d, pos + 4);
			slot->offset = pci_read32(d, pos + 8);
			if (slot == notify)
				slot->extra = pci_read32(d, pos + 16);
			slot->found = slot->bar <= 5;
		}
		pos = (uint8_t)(header >> 8) & 0xfc;
	}
	return common->found && notify->found;
}

bool virtio_pci_matches(const struct pci_device *d, uint16_t device_id, uint16_t transitional_id)
{
	struct cap_location common = { 0 }, notify = { 0 }, device = { 0 };

	if (d->vendor != VIRTIO_PCI_VENDOR)
		return false;
	if (d->device == VIRTIO_PCI_DEVICE_BASE + device_id)
		return true;
	return d->device == transitional_id && find_virtio_caps(d, &common, &notify, &device);
}

bool virtio_pci_probe(const struct pci_device *d, struct virtio_pci *vp)
{
	struct cap_location common = { 0 }, notify = { 0 }, device = { 0 };
	uint64_t bars[6] = { 0 };
	struct cap_location *caps[3] = { &common, &notify, &device };

	memset(vp, 0, sizeof(*vp));
	vp->pci = *d;
	if (!find_virtio_caps(d, &common, &notify, &device)) {
		console_printf("VDFS-GUEST ERROR %02x:%02x.%u has no virtio common/notify capability\n",
			       d->bus, d->dev, d->fn);
		return false;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(caps); i++) {
		struct cap_location *c = caps[i];

		if (!c->found)
			continue;
		if (!bars[c->bar])
			bars[c->bar] = pci_bar_address(d, c->bar);
		if (!bars[c->bar])
			return false;
	}
	pci_enable_memory_and_master(d);
	vp->common = bars[common.bar] + common.offset;
	vp->notify = bars[notify.bar] + notify.offset;
	vp->notify_multiplier = notify.extra;
	vp->device_cfg = device.found ? bars[device.bar] + device.offset : 0;
	return true;
}

uint8_t virtio_pci_status(const struct virtio_pci *vp)
{
	return mmio_read8(vp->common + COMMON_DEVICE_STATUS);
}

static void set_status(struct virtio_pci *vp, uint8_t status)
{
	mmio_write8(vp->common + COMMON_DEVICE_STATUS, status);
}

bool virtio_pci_negotiate(struct virtio_pci *vp, uint64_t required, uint64_t wanted)
{
	uint64_t offered;
	uint8_t status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	set_status(vp, 0);
	for (int tries = 0; virtio_pci_status(vp) != 0; tries++) {
		if (tries > 1000000) {
			console_write("VDFS-GUEST ERROR virtio reset did not complete\n");
			return false;
		}
		cpu_relax();
	}
	set_status(vp, VIRTIO_STATUS_ACKNOWLEDGE);
	set_status(vp, status);

	mmio_write32(vp->common + COMMON_DEVICE_FEATURE_SELECT, 0);
	offered = mmio_read32(vp->common + COMMON_DEVICE_FEATURE);
	mmio_write32(vp->common + COMMON_DEVICE_FEATURE_SELECT, 1);
	offered |= (uint64_t)mmio_read32(vp->common + COMMON_DEVICE_FEATURE) << 32;
	if ((offered & required) != required) {
		console_printf("VDFS-GUEST ERROR device offers features 0x%lx, lacking required 0x%lx\n",
			       offered, required & ~offered);
		set_status(vp, status | VIRTIO_STATUS_FAILED);
		return false;
	}
	vp->features = offered & (required | wanted);
	mmio_write32(vp->common + COMMON_DRIVER_FEATURE_SELECT, 0);
	mmio_write32(vp->common + COMMON_DRIVER_FEATURE, (uint32_t)vp->features);
	mmio_write32(vp->common + COMMON_DRIVER_FEATURE_SELECT, 1);
	mmio_write32(vp->common + COMMON_DRIVER_FEATURE, (uint32_t)(vp->features >> 32));
	status |= VIRTIO_STATUS_FEATURES_OK;
	set_status(vp, status);
	if (!(virtio_pci_status(vp) & VIRTIO_STATUS_FEATURES_OK)) {
		console_printf("VDFS-GUEST ERROR device refused features 0x%lx\n", vp->features);
		set_status(vp, status | VIRTIO_STATUS_FAILED);
		return false;
	}
	return true;
}

static void write64(uint64_t addr, uint64_t value)
{
	/* Two 32-bit halves: the spec allows it and every transport accepts it. */
	mmio_write32(addr, (uint32_t)value);
	mmio_write32(addr + 4, (uint32_t)(value >> 32));
}

bool virtio_pci_setup_queue(struct virtio_pci *vp, uint16_t index, uint16_t max_size, struct virtq *vq)
{
	uint16_t size;
	uint64_t desc_bytes, avail_bytes, used_bytes;
	uint8_t *ring;

	memset(vq, 0, sizeof(*vq));
	mmio_write16(vp->common + COMMON_QUEUE_SELECT, index);
	size = mmio_read16(vp->common + COMMON_QUEUE_SIZE);
	if (!size) {
		console_printf("VDFS-GUEST ERROR virtqueue %u is not available\n", index);
		return false;
	}
	/* Split rings need a power of two; the device's maximum is one. */
	while (size > max_size)
		size /= 2;
	desc_bytes = 16ull * size;
	avail_bytes = 6 + 2ull * size;
	used_bytes = 6 + 8ull * size;
	ring = heap_alloc(align_up(desc_bytes + avail_bytes, 4096) + align_up(used_bytes, 4096), 4096);
	if (!ring) {
		console_write("VDFS-GUEST ERROR out of memory for a virtqueue\n");
		return false;
	}
	vq->size = size;
	vq->index = index;
	vq->desc = (struct virtq_desc *)ring;
	vq->avail = (volatile uint16_t *)(ring + desc_bytes);
	vq->used = (volatile uint16_t *)(ring + align_up(desc_bytes + avail_bytes, 4096));
	vq->used_ring = (volatile struct virtq_used_elem *)(vq->used + 2);
	vq->event_idx = virtio_has(vp, VIRTIO_F_RING_EVENT_IDX);
	/* Polled: interrupts are never wanted.  With event-idx the device looks
	 * only at used_event, so park it half the ring space away. */
	if (vq->event_idx)
		vq->avail[2 + size] = 0x8000;
	else
		vq->avail[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;

	mmio_write16(vp->common + COMMON_QUEUE_SIZE, size);
	mmio_write16(vp->common + COMMON_QUEUE_MSIX_VECTOR, VIRTIO_MSI_NO_VECTOR);
	write64(vp->common + COMMON_QUEUE_DESC, (uint64_t)vq->desc);
	write64(vp->common + COMMON_QUEUE_DRIVER, (uint64_t)vq->avail);
	write64(vp->common + COMMON_QUEUE_DEVICE, (uint64_t)vq->used);
	vq->notify_addr = vp->notify +
			  (uint64_t)mmio_read16(vp->common + COMMON_QUEUE_NOTIFY_OFF) * vp->notify_multiplier;
	mmio_write16(vp->common + COMMON_QUEUE_ENABLE, 1);
	return true;
}

void virtio_pci_driver_ok(struct virtio_pci *vp)
{
	set_status(vp, virtio_pci_status(vp) | VIRTIO_STATUS_DRIVER_OK);
}
