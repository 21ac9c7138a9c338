/* A minimal virtio-pci driver for tests: plays the guest against the fake
 * VM (PCI config through ports 0xCF8/0xCFC, BAR0 through the fake bus,
 * rings in fake RAM). */
#ifndef VDFS_TESTS_TEST_DRIVER_H
#define VDFS_TESTS_TEST_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "fake_vm.h"

#define TDRV_QSIZE 64
#define TDRV_DATA_BASE 0x400000ull /* buffers start here in fake RAM */

struct tdrv_queue {
    uint16_t size;
    uint64_t desc, avail, used;
    uint16_t avail_idx;
};

struct tdrv {
    struct fake_vm *vm;
    unsigned slot;
    uint64_t bar;
    unsigned nq;
    struct tdrv_queue q[2];
    uint64_t ram_next;
};

uint32_t tdrv_cfg_read(struct fake_vm *vm, unsigned slot, unsigned off, unsigned len);
void tdrv_cfg_write(struct fake_vm *vm, unsigned slot, unsigned off, uint32_t val, unsigned len);
/* First slot holding `device_id` of vendor 0x1af4, or -1. */
int tdrv_find(struct fake_vm *vm, uint16_t device_id);
/* Config offset of the first capability with `id` (and virtio cfg_type when
 * id is vendor-specific), or 0. */
unsigned tdrv_find_cap(struct fake_vm *vm, unsigned slot, uint8_t id, int cfg_type);

uint64_t tdrv_common_read(struct tdrv *t, unsigned off, unsigned len);
void tdrv_common_write(struct tdrv *t, unsigned off, uint64_t val, unsigned len);
/* Reset, ACK, DRIVER, features, FEATURES_OK, queues, DRIVER_OK.  Returns
 * the device status read back at the end. */
uint8_t tdrv_setup(struct tdrv *t, struct fake_vm *vm, uint16_t device_id, unsigned nq,
                   uint64_t features);
/* Reset, ACK, DRIVER, features, FEATURES_OK, the t->nq queues as t->q[]
 * describes them, DRIVER_OK.  Returns the device status read back at the
 * end (without DRIVER_OK when FEATURES_OK was refused). */
uint8_t tdrv_restart(struct tdrv *t, uint64_t features);
uint8_t tdrv_status(struct tdrv *t);
/* Writes 0 to device_status and waits for it to read back 0. */
void tdrv_reset(struct tdrv *t);

uint64_t tdrv_alloc(struct tdrv *t, uint64_t size);
void *tdrv_ptr(struct tdrv *t, uint64_t gpa);
void tdrv_desc(struct tdrv *t, unsigned q, uint16_t idx, uint64_t addr, uint32_t len,
               uint16_t flags, uint16_t next);
void tdrv_publish(struct tdrv *t, unsigned q, uint16_t head);
void tdrv_kick(struct tdrv *t, unsigned q);
uint16_t tdrv_used_idx(struct tdrv *t, unsigned q);
/* Polls until used idx reaches `target` (up to 5 s); false on timeout. */
bool tdrv_wait_used(struct tdrv *t, unsigned q, uint16_t target);
void tdrv_used_elem(struct tdrv *t, unsigned q, uint16_t i, uint32_t *id, uint32_t *len);
/* Sets the avail ring's used_event field (event-idx). */
void tdrv_set_used_event(struct tdrv *t, unsigned q, uint16_t v);

#endif
