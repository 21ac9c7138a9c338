/* virtio-blk backend for disks inside a vdfs datastore, named
 * "vdfs:IMAGE:/path/in/datastore" and opened straight through libvdfs: the
 * VMM mounts the datastore as one more cluster host. */
#ifndef VDFS_VMM_DISK_VDFS_H
#define VDFS_VMM_DISK_VDFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio_blk.h"

/* Mounts IMAGE (once per image, shared by its disks), resolves and opens
 * the file.  NULL with a message in `err`. */
struct blk_backend *disk_vdfs_open(const char *spec, bool readonly, char *err, size_t errlen);

/* Reads and writes of all datastore disks so far: those that went straight
 * to the device and those made as libvdfs calls (`-v` reports them). */
void disk_vdfs_counts(uint64_t *direct, uint64_t *library);

#endif
