/* virtio 1.x: the modern PCI transport and split virtqueues, polled. */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "pci.h"
#include "virtio_spec.h"

#define VIRTIO_PCI_DEVICE_TRANSITIONAL_BLOCK 0x1001

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq {
	uint16_t size;
	uint16_t index;
	struct virtq_desc *desc;
	volatile uint16_t *avail;   /* flags, idx, ring[size], used_event */
	volatile uint16_t *used;    /* flags, idx, then elements, avail_event */
	volatile struct virtq_used_elem *used_ring;
	uint16_t avail_shadow;      /* next avail index to publish */
	uint16_t avail_published;   /* avail index the device has been shown */
	uint16_t last_used;
	bool event_idx;
	uint64_t notify_addr;
	uint64_t kicks;             /* notification writes: one exit each */
};

struct virtio_pci {
	struct pci_device pci;
	uint64_t common;
	uint64_t notify;
	uint32_t notify_multiplier;
	uint64_t device_cfg;
	uint64_t features;          /* negotiated */
};

static inline bool virtio_has(const struct virtio_pci *vp, unsigned bit)
{
	return (vp->features >> bit) & 1;
}

/* True for modern virtio devices of type device_id, and for the transitional
 * id when the device also carries the modern capabilities. */
bool virtio_pci_matches(const struct pci_device *d, uint16_t device_id, uint16_t transitional_id);
/* Finds the common, notify and device capabilities and their BARs, enables
 * memory decoding and bus mastering. */
bool virtio_pci_probe(const struct pci_device *d, struct virtio_pci *vp);
/* Resets the device and negotiates: every bit of required must be offered,
 * bits of wanted are taken when offered.  Ends in FEATURES_OK. */
bool virtio_pci_negotiate(struct virtio_pci *vp, uint64_t required, uint64_t wanted);
/* Sets up queue index with at most max_size entries in guest RAM. */
bool virtio_pci_setup_queue(struct virtio_pci *vp, uint16_t index, uint16_t max_size, struct virtq *vq);
void virtio_pci_driver_ok(struct virtio_pci *vp);
uint8_t virtio_pci_status(const struct virtio_pci *vp);

/* Adds a descriptor chain starting at head to the avail ring, unpublished. */
void virtq_add(struct virtq *vq, uint16_t head);
/* Publishes what virtq_add queued and notifies the device only when its
 * event index says it is waiting for it. */
void virtq_publish(struct virtq *vq);
/* Takes one used element if the device has returned one; never blocks. */
bool virtq_take_used(struct virtq *vq, uint32_t *id, uint32_t *len);

#endif
