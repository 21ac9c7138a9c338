#include "console.h"
#include "io.h"
#include "lib.h"
#include "platform.h"
#include "virtio_blk.h"

/* virtio_blk_config offsets */
#define CFG_CAPACITY 0
#define CFG_SIZE_MAX 8
#define CFG_SEG_MAX 12
#define CFG_BLK_SIZE 20
#define CFG_MAX_DISCARD_SECTORS 36
#define CFG_MAX_DISCARD_SEG 40
#define CFG_MAX_WRITE_ZEROES_SECTORS 48
#define CFG_MAX_WRITE_ZEROES_SEG 52

#define MAX_QUEUE_SIZE 256

struct blk_slot {
	struct {
		uint32_t type;
		uint32_t ioprio;
		uint64_t sector;
	} header;
	uint8_t status;
	bool busy;
} __attribute__((aligned(64)));

bool blk_find(unsigned index, struct pci_device *out)
{
	struct pci_device devices[64];
	size_t count = pci_scan_bus0(devices, ARRAY_SIZE(devices));

	if (count > ARRAY_SIZE(devices))
		count = ARRAY_SIZE(devices);
	for (size_t i = 0; i < count; i++) {
		if (!virtio_pci_matches(&devices[i], VIRTIO_ID_BLOCK, VIRTIO_PCI_DEVICE_TRANSITIONAL_BLOCK))
			continue;
		if (index-- == 0) {
			*out = devices[i];
			return true;
		}
	}
	return false;
}

static uint32_t config32(const struct blk_dev *b, uint32_t offset)
{
	return mmio_read32(b->vp.device_cfg + offset);
}

static void read_config(struct blk_dev *b)
{
	b->capacity = config32(b, CFG_CAPACITY) | (uint64_t)config32(b, CFG_CAPACITY + 4) << 32;
	if (blk_has(b, VIRTIO_BLK_F_SIZE_MAX))
		b->size_max = config32(b, CFG_SIZE_MAX);
	if (blk_has(b, VIRTIO_BLK_F_SEG_MAX))
		b->seg_max = config32(b, CFG_SEG_MAX);
	b->blk_size = blk_has(b, VIRTIO_BLK_F_BLK_SIZE) ? config32(b, CFG_BLK_SIZE) : SECTOR_SIZE;
	if (blk_has(b, VIRTIO_BLK_F_DISCARD)) {
		b->max_discard_sectors = config32(b, CFG_MAX_DISCARD_SECTORS);
		b->max_discard_seg = config32(b, CFG_MAX_DISCARD_SEG);
	}
	if (blk_has(b, VIRTIO_BLK_F_WRITE_ZEROES)) {
		b->max_write_zeroes_sectors = config32(b, CFG_MAX_WRITE_ZEROES_SECTORS);
		b->max_write_zeroes_seg = config32(b, CFG_MAX_WRITE_ZEROES_SEG);
	}
}

bool blk_open(struct blk_dev *b, const struct pci_device *d, uint16_t slots, uint64_t timeout_ms)
{
	const uint64_t required = 1ull << VIRTIO_F_VERSION_1;
	const uint64_t wanted = 1ull << VIRTIO_F_RING_EVENT_IDX | 1ull << VIRTIO_BLK_F_SIZE_MAX |
				1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_RO |
				1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH |
				1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;

	memset(b, 0, sizeof(*b));
	b->timeout_ticks = clock_ticks_from_ms(timeout_ms);
	if (!virtio_pci_probe(d, &b->vp) || !virtio_pci_negotiate(&b->vp, required, wanted))
		return false;
	if (!b->vp.device_cfg) {
		console_write("VDFS-GUEST ERROR virtio-blk has no device configuration capability\n");
		return false;
	}
	read_config(b);
	if (!virtio_pci_setup_queue(&b->vp, 0, MAX_QUEUE_SIZE, &b->vq))
		return false;
	/* Each slot owns a fixed run of descriptors: header, data segments, status. */
	if (slots == 0 || b->vq.size / slots < 3) {
		console_printf("VDFS-GUEST ERROR %u requests in flight need %u descriptors; the queue has %u\n",
			       slots, 3u * slots, b->vq.size);
		return false;
	}
	b->slots = slots;
	b->descs_per_slot = (uint16_t)(b->vq.size / slots);
	b->slot = heap_alloc(sizeof(struct blk_slot) * slots, 64);
	if (!b->slot) {
		console_write("VDFS-GUEST ERROR out of memory for request slots\n");
		return false;
	}
	virtio_pci_driver_ok(&b->vp);
	return true;
}

static bool device_writes_data(uint32_t type)
{
	return type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
}

bool blk_queue(struct blk_dev *b, uint16_t slot, uint32_t type, uint64_t sector, void *data, uint32_t len)
{
	struct blk_slot *s = &b->slot[slot];
	uint16_t head = (uint16_t)(slot * b->descs_per_slot), d = head;
	uint32_t max_segment = b->size_max ? b->size_max : len;
	uint32_t segments = len ? (len + max_segment - 1) / max_segment : 0;
	uint16_t data_flags = device_writes_data(type) ? VIRTQ_DESC_F_WRITE : 0;
	struct virtq_desc *desc = b->vq.desc;

	if (s->busy || segments + 2 > b->descs_per_slot || (b->seg_max && segments > b->seg_max))
		return false;
	s->header.type = type;
	s->header.ioprio = 0;
	s->header.sector = sector;
	s->status = 0xff;
	s->busy = true;

	desc[d] = (struct virtq_desc){ (uint64_t)&s->header, sizeof(s->header), VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1) };
	d++;
	for (uint32_t off = 0; off < len; off += max_segment, d++) {
		uint32_t n = len - off < max_segment ? len - off : max_segment;

		desc[d] = (struct virtq_desc){ (uint64_t)data + off, n, data_flags | VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1) };
	}
	desc[d] = (struct virtq_desc){ (uint64_t)&s->status, 1, VIRTQ_DESC_F_WRITE, 0 };
	virtq_add(&b->vq, head);
	return true;
}

bool blk_poll(struct blk_dev *b, uint16_t *slot, uint8_t *status)
{
	uint32_t id, len;
	uint16_t n;

	for (;;) {
		if (!virtq_take_used(&b->vq, &id, &len))
			return false;
		n = (uint16_t)(id / b->descs_per_slot);
		/* A device returning a head we never queued is ignored, not trusted. */
		if (id % b->descs_per_slot == 0 && n < b->slots && b->slot[n].busy)
			break;
		console_printf("VDFS-GUEST ERROR device returned unknown descriptor %u\n", id);
	}
	compiler_barrier();
	b->slot[n].busy = false;
	*slot = n;
	*status = b->slot[n].status;
	return true;
}

bool blk_wait(struct blk_dev *b, uint16_t *slot, uint8_t *status)
{
	uint64_t start = rdtsc();

	while (!blk_poll(b, slot, status)) {
		if (rdtsc() - start > b->timeout_ticks)
			return false;
		cpu_relax();
	}
	return true;
}

int blk_run(struct blk_dev *b, uint32_t type, uint64_t sector, void *data, uint32_t len)
{
	uint16_t slot;
	uint8_t status;

	for (slot = 0; slot < b->slots && b->slot[slot].busy; slot++)
		;
	if (slot == b->slots || !blk_queue(b, slot, type, sector, data, len))
		return BLK_REJECTED;
	blk_publish(b);
	if (!blk_wait(b, &slot, &status))
		return BLK_TIMEOUT;
	return status;
}
