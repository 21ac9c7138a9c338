/* A checking in-memory virtio-blk backend for the fuzz targets: every
 * request the device hands it must lie inside the disk, be sector-aligned,
 * and (for reads and writes) have buffers inside guest RAM whose lengths
 * add up; a broken rule aborts through FUZZ_CHECK.  Synchronous, or
 * asynchronous with completions in reverse order (the device must not rely
 * on order). */
#ifndef VDFS_TEST_MEM_DISK_H
#define VDFS_TEST_MEM_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "virtio_blk.h"

struct mem_disk {
    struct blk_backend be;
    uint8_t *data;
    uint64_t capacity;
    const uint8_t *ram;
    size_t ram_size;
    bool async;
    int efd;
    FILE *report; /* where a broken rule is described */
    struct blk_io *queued[1024];
    unsigned nqueued;
};

/* A disk of `sectors` sectors, its bytes `fill`; guest RAM is
 * [ram, ram + ram_size). */
struct mem_disk *mem_disk_create(uint64_t sectors, uint8_t (*fill)(size_t at), bool readonly, bool async,
                                 const uint8_t *ram, size_t ram_size, FILE *report);

#endif
