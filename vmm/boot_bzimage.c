/* Linux bzImage through the x86 64-bit boot protocol: the protected-mode
 * kernel at its preferred address, a boot_params "zero page" carrying the
 * setup header, e820 map, cmdline and initrd, and entry at load + 0x200. */
#include <stdio.h>
#include <string.h>

#include "boot.h"
#include "e820.h"
#include "layout.h"

/* Offsets inside struct boot_params (Documentation/arch/x86/zero-page). */
#define BP_ACPI_RSDP_ADDR  0x070
#define BP_EXT_RAMDISK_IMG 0x0c0
#define BP_EXT_RAMDISK_SZ  0x0c4
#define BP_EXT_CMD_LINE    0x0c8
#define BP_E820_ENTRIES    0x1e8
#define BP_E820_TABLE      0x2d0
#define BP_E820_MAX        128
#define BP_SIZE            0x1000

/* Offsets of setup header fields (inside the same page). */
#define HDR_START            0x1f1
#define HDR_SETUP_SECTS      0x1f1
#define HDR_JUMP_END         0x201
#define HDR_VERSION          0x206
#define HDR_TYPE_OF_LOADER   0x210
#define HDR_LOADFLAGS        0x211
#define HDR_RAMDISK_IMAGE    0x218
#define HDR_RAMDISK_SIZE     0x21c
#define HDR_HEAP_END_PTR     0x224
#define HDR_CMD_LINE_PTR     0x228
#define HDR_INITRD_ADDR_MAX  0x22c
#define HDR_RELOCATABLE      0x234
#define HDR_XLOADFLAGS       0x236
#define HDR_CMDLINE_SIZE     0x238
#define HDR_PREF_ADDRESS     0x258
#define HDR_INIT_SIZE        0x260

#define LOADFLAG_LOADED_HIGH  0x01
#define LOADFLAG_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64         0x01
#define BOOT_PROTOCOL_MIN     0x020c /* 2.12: xloadflags */

static uint16_t rd16(const uint8_t *p, size_t off)
{
    uint16_t v;
    memcpy(&v, p + off, sizeof(v));
    return v;
}

static uint32_t rd32(const uint8_t *p, size_t off)
{
    uint32_t v;
    memcpy(&v, p + off, sizeof(v));
    return v;
}

static uint64_t rd64(const uint8_t *p, size_t off)
{
    uint64_t v;
    memcpy(&v, p + off, sizeof(v));
    return v;
}

static void wr32(uint8_t *p, size_t off, uint32_t v)
{
    memcpy(p + off, &v, sizeof(v));
}

static void wr64(uint8_t *p, size_t off, uint64_t v)
{
    memcpy(p + off, &v, sizeof(v));
}

int boot_load_bzimage(struct guest_memory *mem, const struct boot_image *image,
                      const struct boot_request *req, struct boot_entry *entry, char *err,
                      size_t errlen)
{
    const char *path = req->kernel;
    const uint8_t *f = image->data;
    if (image->size < 0x270) {
        snprintf(err, errlen, "kernel %s: truncated bzImage header", path);
        return -1;
    }
    uint16_t version = rd16(f, HDR_VERSION);
    if (version < BOOT_PROTOCOL_MIN) {
        snprintf(err, errlen, "kernel %s: boot protocol %u.%02u, need 2.12 or later", path,
                 version >> 8, version & 0xff);
        return -1;
    }
    if (!(rd16(f, HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
        snprintf(err, errlen, "kernel %s: bzImage has no 64-bit entry point (XLF_KERNEL_64)",
                 path);
        return -1;
    }
    if (!(f[HDR_LOADFLAGS] & LOADFLAG_LOADED_HIGH)) {
        snprintf(err, errlen, "kernel %s: zImage (not loaded high) is not supported", path);
        return -1;
    }
    unsigned setup_sects = f[HDR_SETUP_SECTS] ? f[HDR_SETUP_SECTS] : 4;
    uint64_t pm_offset = (uint64_t)(setup_sects + 1) * 512;
    size_t hdr_end = 0x202 + f[HDR_JUMP_END];
    if (pm_offset >= image->size || hdr_end > BP_SIZE || hdr_end > image->size) {
        snprintf(err, errlen, "kernel %s: setup header sizes are inconsistent", path);
        return -1;
    }
    uint64_t pm_size = image->size - pm_offset;
    uint64_t load = rd64(f, HDR_PREF_ADDRESS);
    if (load < LAYOUT_LEGACY_HOLE_END || (load & 0xfff))
        load = LAYOUT_KERNEL_DEFAULT;
    uint64_t init_size = rd32(f, HDR_INIT_SIZE);
    uint64_t footprint = init_size > pm_size ? init_size : pm_size;
    uint8_t *dst = guest_memory_at(mem, load, footprint);
    if (!dst) {
        snprintf(err, errlen,
                 "kernel %s needs [0x%llx, +0x%llx) of guest RAM: give the VM more memory", path,
                 (unsigned long long)load, (unsigned long long)footprint);
        return -1;
    }
    memcpy(dst, f + pm_offset, pm_size);

    uint8_t *bp = guest_memory_at(mem, LAYOUT_BOOT_INFO, BP_SIZE);
    memset(bp, 0, BP_SIZE);
    memcpy(bp + HDR_START, f + HDR_START, hdr_end - HDR_START);
    bp[HDR_TYPE_OF_LOADER] = 0xff;
    bp[HDR_LOADFLAGS] |= LOADFLAG_CAN_USE_HEAP;
    uint16_t heap_end = 0xe000 - 0x200;
    memcpy(bp + HDR_HEAP_END_PTR, &heap_end, sizeof(heap_end));
    wr64(bp, BP_ACPI_RSDP_ADDR, req->rsdp);

    if (req->cmdline && req->cmdline[0]) {
        uint32_t max = rd32(f, HDR_CMDLINE_SIZE);
        uint64_t at = boot_place_cmdline(mem, req->cmdline, max ? (size_t)max + 1 : 256, err,
                                         errlen);
        if (!at)
            return -1;
        wr32(bp, HDR_CMD_LINE_PTR, (uint32_t)at);
        wr32(bp, BP_EXT_CMD_LINE, (uint32_t)(at >> 32));
    }
    if (req->initrd && req->initrd[0]) {
        uint64_t limit = (uint64_t)rd32(f, HDR_INITRD_ADDR_MAX) + 1;
        if (limit > e820_low_ram_end(mem))
            limit = e820_low_ram_end(mem);
        uint64_t addr, size;
        if (boot_place_initrd(mem, req->initrd, load + footprint, limit, &addr, &size, err,
                              errlen) < 0)
            return -1;
        wr32(bp, HDR_RAMDISK_IMAGE, (uint32_t)addr);
        wr32(bp, HDR_RAMDISK_SIZE, (uint32_t)size);
        wr32(bp, BP_EXT_RAMDISK_IMG, (uint32_t)(addr >> 32));
        wr32(bp, BP_EXT_RAMDISK_SZ, (uint32_t)(size >> 32));
    }
    struct e820_entry map[E820_MAX_ENTRIES];
    size_t n = e820_build(mem, map);
    for (size_t i = 0; i < n && i < BP_E820_MAX; i++) {
        uint8_t *e = bp + BP_E820_TABLE + i * 20;
        wr64(e, 0, map[i].addr);
        wr64(e, 8, map[i].size);
        wr32(e, 16, map[i].type);
    }
    bp[BP_E820_ENTRIES] = (uint8_t)n;

    entry->mode = BOOT_LINUX64;
    entry->entry = load + 0x200;
    entry->info = LAYOUT_BOOT_INFO;
    return 0;
}
