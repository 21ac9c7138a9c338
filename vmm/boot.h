/* Loading a kernel into guest memory: an ELF with a Xen PVH entry note, or
 * a Linux bzImage entered through the 64-bit boot protocol. */
#ifndef VDFS_VMM_BOOT_H
#define VDFS_VMM_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "cpu_setup.h"

struct boot_request {
    const char *kernel;  /* path */
    const char *initrd;  /* path or NULL/"" */
    const char *cmdline; /* may be "" */
    uint64_t rsdp;       /* guest address of the ACPI RSDP */
};

/* A kernel file mapped read-only for parsing. */
struct boot_image {
    const uint8_t *data;
    size_t size;
    bool malloced; /* read from a datastore, not mapped */
};

/* Detects the kernel format and loads it, the initrd and the cmdline;
 * fills `entry`.  0, or -1 with a message in `err`. */
int boot_load(struct guest_memory *mem, const struct boot_request *req, struct boot_entry *entry,
              char *err, size_t errlen);

int boot_load_pvh(struct guest_memory *mem, const struct boot_image *image,
                  const struct boot_request *req, struct boot_entry *entry, char *err,
                  size_t errlen);
int boot_load_bzimage(struct guest_memory *mem, const struct boot_image *image,
                      const struct boot_request *req, struct boot_entry *entry, char *err,
                      size_t errlen);

/* Copies the initrd to the top of low RAM, below `limit` and above
 * `kernel_end`.  0 with its address and size, or -1 with a message. */
int boot_place_initrd(struct guest_memory *mem, const char *path, uint64_t kernel_end,
                      uint64_t limit, uint64_t *addr, uint64_t *size, char *err, size_t errlen);

/* Copies the command line to its fixed place; returns its address, or 0
 * with a message if it does not fit. */
uint64_t boot_place_cmdline(struct guest_memory *mem, const char *cmdline, size_t max_len,
                            char *err, size_t errlen);

#endif
