#include "io.h"
#include "virtio.h"

void virtq_add(struct virtq *vq, uint16_t head)
{
	vq->avail[2 + (vq->avail_shadow & (vq->size - 1))] = head;
	vq->avail_shadow++;
}

/* virtio spec vring_need_event: did [old, new) step over the event index? */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

void virtq_publish(struct virtq *vq)
{
	uint16_t old = vq->avail_published, new_idx = vq->avail_shadow;
	bool kick;

	if (old == new_idx)
		return;
	compiler_barrier(); /* ring entries before the index (x86 keeps store order) */
	vq->avail[1] = new_idx;
	vq->avail_published = new_idx;
	full_barrier(); /* the index store must be visible before reading the device's hint */
	if (vq->event_idx)
		kick = need_event(vq->used[2 + 4 * vq->size], new_idx, old);
	else
		kick = !(vq->used[0] & VIRTQ_USED_F_NO_NOTIFY);
	if (kick) {
		mmio_write16(vq->notify_addr, vq->index);
		vq->kicks++;
	}
}

bool virtq_take_used(struct virtq *vq, uint32_t *id, uint32_t *len)
{
	uint16_t slot;

	if (vq->used[1] == vq->last_used)
		return false;
	compiler_barrier(); /* the element after the index (x86 keeps load order) */
	slot = vq->last_used & (vq->size - 1);
	*id = vq->used_ring[slot].id;
	*len = vq->used_ring[slot].len;
	vq->last_used++;
	if (vq->event_idx)
		vq->avail[2 + vq->size] = (uint16_t)(vq->last_used + 0x8000);
	return true;
}
